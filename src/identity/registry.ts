// Agent registry: Agent resources compiled once per config load into frozen lookup tables.
// A reload builds a new registry; the old one is never mutated, so in-flight requests stay consistent.
import type { ConfigSet } from '../config/schema.ts';
import type { AgentRecord } from './types.ts';
import { parseSpiffeId } from './spiffe-id.ts';

export interface AgentRegistry {
  bySpiffeId(spiffeId: string): AgentRecord | undefined;
  byName(name: string): AgentRecord | undefined;
  /** All agents in config order. */
  all(): readonly AgentRecord[];
  readonly size: number;
}

/**
 * Build from the config's Agent resources. Throws when a workload is not a strict SPIFFE ID
 * (the config schema is looser), because such an agent could never be matched by a JWT/X.509 SVID.
 */
export function buildAgentRegistry(config: Pick<ConfigSet, 'agents'>): AgentRegistry {
  const byId = new Map<string, AgentRecord>();
  const byName = new Map<string, AgentRecord>();
  const problems: string[] = [];
  for (const a of config.agents.values()) {
    const id = parseSpiffeId(a.spec.workload);
    if (typeof id === 'string') {
      problems.push(`${a.file} (document ${a.index + 1}): Agent "${a.name}": spec.workload: ${id}`);
      continue;
    }
    const record: AgentRecord = Object.freeze({
      name: a.name,
      spiffeId: id.id,
      trustDomain: id.trustDomain,
      ...(a.spec.owner !== undefined ? { owner: a.spec.owner } : {}),
      ...(a.spec.team !== undefined ? { team: a.spec.team } : {}),
      ...(a.spec.environment !== undefined ? { environment: a.spec.environment } : {}),
      ...(a.spec.deployment !== undefined ? { deployment: a.spec.deployment } : {}),
      // metadata.labels and spec.labels both describe the agent; spec wins on a clash.
      labels: Object.freeze({ ...a.labels, ...a.spec.labels }),
    });
    byId.set(record.spiffeId, record);
    byName.set(record.name, record);
  }
  if (problems.length) throw new Error(problems.join('\n'));
  const list = Object.freeze([...byName.values()]);
  return Object.freeze({
    bySpiffeId: (spiffeId: string) => byId.get(spiffeId),
    byName: (name: string) => byName.get(name),
    all: () => list,
    size: list.length,
  });
}
