// The shape of one `aam` subcommand, apart from the table of them (main.ts), so the files that
// add commands (commands.ts, import.ts, policy-diff.ts) depend on it and main.ts depends on them.
import type { ParseArgsConfig } from 'node:util';
import { UsageError } from '../lib/usage-error.ts';

export interface Globals { config: string; data: string }

export type Command = {
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  /** Its positional arguments as usage names them (`[FILE]` optional, `ID...` one or more); none when absent. More is a usage error (main.ts). */
  args?: readonly string[];
  run(args: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; g: Globals }): Promise<number> | number;
};

/** --agent NAME names an Agent of the config, or the command stops with a usage error (exit 2) listing those there are. */
export function agentMustExist(config: { agents: ReadonlyMap<string, unknown> }, file: string, agent: string): void {
  if (!config.agents.has(agent)) throw new UsageError(`no Agent "${agent}" in ${file} (defined: ${[...config.agents.keys()].join(', ') || 'none'})`);
}
