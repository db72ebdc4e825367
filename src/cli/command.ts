// The shape of one `aam` subcommand, apart from the table of them (main.ts), so the files that
// add commands (commands.ts, import.ts, policy-diff.ts) depend on it and main.ts depends on them.
import type { ParseArgsConfig } from 'node:util';

export interface Globals { config: string; data: string }

export type Command = {
  summary: string;
  usage: string;
  options?: ParseArgsConfig['options'];
  /** Its positional arguments as usage names them (`[FILE]` optional, `ID...` one or more); none when absent. More is a usage error (main.ts). */
  args?: readonly string[];
  run(args: { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; g: Globals }): Promise<number> | number;
};
