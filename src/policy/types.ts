// What the policy engine answers. Pure data so it can be logged, audited and returned by AuthZEN.
import type { AgentRecord } from '../identity/types.ts';

export type Effect = 'allow' | 'deny' | 'approval_required';

export interface Decision {
  effect: Effect;
  allowed: boolean;
  /** Policy that decided ('' when no policy matched: default deny). */
  policy: string;
  /** Index of the rule inside that policy (e.g. tools[2]); -1 when not applicable. */
  rule: number;
  /** Where in the policy the rule is, e.g. "tools[0]", "models.allow[1]" ('' for default deny). */
  rulePath?: string;
  /** Human-readable reason, e.g. 'model "gpt-4" is not in models.allow of policy "x"'. */
  reason: string;
  /** Config digest the decision was made against. */
  configVersion: string;
}

/** A request to decide, in the shape shared by the model plane, tool plane and AuthZEN. */
export type AccessRequest =
  | { kind: 'model'; agent: AgentRecord; model: string }
  | {
      kind: 'tool';
      agent: AgentRecord;
      resource: string;
      action: string;
      args: Readonly<Record<string, unknown>>;
      context?: Readonly<Record<string, unknown>>;
    };
