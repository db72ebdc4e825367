// The audit event: one per decision and per upstream action, chained by hash.
// hash = sha256(prev_hash + canonical(event without hash)); see canonical.ts.
import { canonicalEntries, canonicalJson, joinEntries, sha256Hex } from './canonical.ts';
import type { JsonValue } from './canonical.ts';

export type AuditEventType =
  | 'decision'
  | 'model_call'
  | 'tool_intent'
  | 'tool_call'
  | 'admin'
  | 'guardrail'
  | 'budget_alert'
  | 'credential_leak'
  | (string & {});

export interface AuditIdentity {
  spiffe_id: string;
  agent: string;
  owner?: string;
  team?: string;
  environment?: string;
  deployment?: string;
  key_id?: string;
  token_id?: string;
  method: string;
}

export interface AuditPolicy {
  name: string;
  /** Config/policy version digest the decision was made against. */
  version: string;
  rule: number | string;
  decision: 'allow' | 'deny' | 'approval_required' | (string & {});
  reason: string;
}

export interface AuditCredential {
  name: string;
  version?: string | number;
}

export interface AuditModel {
  route: string;
  /** null/absent when no upstream was reached (all targets failed, served from cache, denied). */
  provider?: string | null;
  model?: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  cached_tokens?: number | null;
  /** null = unknown (never record unknown spend as 0); absent when no call was made. */
  cost_usd?: number | null;
  latency_ms?: number;
  stream?: boolean;
  /** Response cache: hit (served at $0 from cache), miss, or null when the route has no cache. */
  cache?: 'hit' | 'miss' | null;
}

export interface AuditTool {
  /** Absent on a decision made before any server/tool was involved (e.g. AuthZEN-style resource/action). */
  server?: string;
  tool?: string;
  resource?: string;
  action?: string;
  args_digest?: string;
  /** Only when configured, after guardrail redaction. */
  args?: JsonValue;
}

export interface AuditAdmin {
  action: string;
  target?: string;
  actor: string;
}

export interface AuditOutcome {
  status: string | number;
  error_class?: string;
  error?: string;
}

/**
 * What callers pass to record(): everything except the fields the log assigns (seq, prev_hash,
 * hash). A type alias, not an interface, so it is assignable to Record<string, unknown>.
 * Top-level fields not listed here are kept in the trail as given (JSON values only).
 */
export type AuditEventInput = {
  type: AuditEventType;
  request_id: string;
  /** ISO-8601; stamped by record() when omitted. */
  time?: string;
  trace_id?: string;
  identity?: AuditIdentity;
  policy?: AuditPolicy;
  credential?: AuditCredential;
  model?: AuditModel;
  tool?: AuditTool;
  admin?: AuditAdmin;
  outcome?: AuditOutcome;
  /** Event-specific extras (guardrail findings, budget thresholds, config digest...). */
  detail?: { [key: string]: JsonValue };
  /** Other fields (e.g. the tool plane's `plane`, `approval_id`) are chained as given. */
  [key: string]: unknown;
};

export type AuditEvent = AuditEventInput & {
  seq: number;
  time: string;
  prev_hash: string;
  hash: string;
};

export const GENESIS_HASH = '0'.repeat(64);

/** Assigned by the log; a caller's values for these are ignored. */
const ASSIGNED = new Set(['seq', 'time', 'prev_hash', 'hash']);

/**
 * Build the chained event: every field the caller gave (a trail keeps what it was told) plus
 * seq, time and prev_hash, and its hash. Throws if a field is not canonicalisable.
 */
export function sealEvent(input: AuditEventInput, seq: number, prevHash: string, time: string): { hash: string; body: string } {
  const unsealed: Record<string, unknown> = { seq, time, prev_hash: prevHash };
  const given: Record<string, unknown> = input;
  for (const k of Object.keys(given)) if (!ASSIGNED.has(k)) unsealed[k] = given[k];
  // Encode once: the hashed text is the body without `hash`; the body gets `hash` spliced in.
  const entries = canonicalEntries(unsealed);
  const hash = sha256Hex(prevHash + joinEntries(entries));
  const at = entries.findIndex(([k]) => k > 'hash');
  entries.splice(at < 0 ? entries.length : at, 0, ['hash', '"' + hash + '"']);
  return { hash, body: joinEntries(entries) };
}

/** hash over everything but `hash` itself; prev_hash is part of the content and also prefixed. */
export function eventHash(eventWithoutHash: Record<string, unknown>): string {
  const { hash: _ignored, ...rest } = eventWithoutHash;
  return sha256Hex(String(rest.prev_hash) + canonicalJson(rest));
}

/** Copies of event fields kept in indexed columns for queries; the verifier checks they agree. */
export function indexColumns(e: Record<string, unknown>): { agent: string | null; decision: string | null } {
  const identity = e.identity as Record<string, unknown> | undefined;
  const policy = e.policy as Record<string, unknown> | undefined;
  const decision = e.decision as Record<string, unknown> | string | undefined;
  const agent = typeof identity?.agent === 'string' ? identity.agent : typeof e.agent === 'string' ? e.agent : null;
  const effect = typeof policy?.decision === 'string' ? policy.decision
    : typeof decision === 'string' ? decision
      : typeof decision?.effect === 'string' ? decision.effect : null;
  return { agent, decision: effect };
}

/** The event that replaces one whose content cannot be encoded: the failure is recorded, never dropped. */
export function encodingFailureEvent(input: AuditEventInput, err: unknown): AuditEventInput {
  return {
    type: typeof input.type === 'string' ? input.type : 'unknown',
    request_id: typeof input.request_id === 'string' ? input.request_id : 'unknown',
    time: typeof input.time === 'string' ? input.time : undefined,
    outcome: { status: 'audit_encoding_error', error_class: 'audit_encoding', error: err instanceof Error ? err.message : String(err) },
  };
}
