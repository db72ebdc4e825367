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
  /** Shadow mode: an AgentPolicy with mode: audit would have denied this (allowed) request. */
  wouldDeny?: { policy: string; rule: number; rulePath?: string; reason: string };
}

/** A request to decide, in the shape shared by the model plane, tool plane and AuthZEN. */
export type AccessRequest =
  | { kind: 'model'; agent: AgentRecord; model: string }
  /** An A2A call: `callee` (Agent name) and the skill named in message.metadata.skill ('' when none). */
  | { kind: 'agent'; agent: AgentRecord; callee: string; skill: string; context?: Readonly<Record<string, unknown>> }
  | {
      kind: 'tool';
      agent: AgentRecord;
      resource: string;
      action: string;
      /** null: the arguments were decided earlier (an MCP task's tasks/* calls): args constraints are not checked again. */
      args: Readonly<Record<string, unknown>> | null;
      context?: Readonly<Record<string, unknown>>;
    };
