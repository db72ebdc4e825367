// Who a policy applies to: compiled once from spec.identity into a predicate over AgentRecord.
// Workloads are exact SPIFFE IDs or globs ('*' = one path segment, '**' = anything);
// every selector that is given must match (AND), so adding a selector only narrows a policy.
import type { AgentRecord } from '../identity/types.ts';
import type { PolicySpec } from '../config/schema.ts';
import { hasWildcard, stringMatcher } from '../config/glob.ts';

// Globs live with the config (load checks model globs too); re-exported for the policy engine.
export { globToRegExp, hasWildcard, stringMatcher } from '../config/glob.ts';

type IdentitySpec = PolicySpec['identity'];

export interface SubjectMatcher {
  /** Exact SPIFFE ID when the workload has no wildcard (lets compile index it). */
  exactWorkload: string | null;
  /** Human-readable description, for explain output. */
  describe: string;
  matches(agent: AgentRecord): boolean;
}

export function compileSubject(id: IdentitySpec): SubjectMatcher {
  const checks: Array<(a: AgentRecord) => boolean> = [];
  const parts: string[] = [];
  let exactWorkload: string | null = null;
  if (id.workload !== undefined) {
    const w = id.workload;
    if (hasWildcard(w)) {
      const m = stringMatcher(w, true);
      checks.push((a) => m(a.spiffeId));
    } else {
      exactWorkload = w;
      checks.push((a) => a.spiffeId === w);
    }
    parts.push(`workload ${w}`);
  }
  const field = (key: 'team' | 'environment' | 'owner' | 'deployment', want: string | undefined) => {
    if (want === undefined) return;
    checks.push((a) => a[key] === want);
    parts.push(`${key}=${want}`);
  };
  field('team', id.team);
  field('environment', id.environment);
  field('owner', id.owner);
  field('deployment', id.deployment);
  if (id.agent !== undefined) {
    const name = id.agent;
    checks.push((a) => a.name === name);
    parts.push(`agent=${name}`);
  }
  if (id.labels) {
    const entries = Object.entries(id.labels);
    checks.push((a) => entries.every(([k, v]) => a.labels[k] === v));
    for (const [k, v] of entries) parts.push(`labels.${k}=${v}`);
  }
  return {
    exactWorkload,
    describe: parts.join(', '),
    matches: (a) => {
      for (const c of checks) if (!c(a)) return false;
      return true;
    },
  };
}
