// The audit event: one per decision and per upstream action, chained by hash.
// hash = sha256(prev_hash + canonical(event without hash)); see canonical.ts.
import { canonicalJson, sha256Hex } from './canonical.ts';
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
  version?: string;
}

export interface AuditModel {
  route: string;
  provider: string;
  model: string;
  input_tokens?: number | null;
  output_tokens?: number | null;
  cached_tokens?: number | null;
  /** null = unknown (never record unknown spend as 0). */
  cost_usd: number | null;
  latency_ms?: number;
  stream?: boolean;
}

export interface AuditTool {
  server: string;
  tool: string;
  resource?: string;
  action?: string;
  args_digest: string;
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

/** What callers pass to record(): everything except the fields the log assigns. */
export interface AuditEventInput {
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
}

export interface AuditEvent extends AuditEventInput {
  seq: number;
  time: string;
  prev_hash: string;
  hash: string;
}

export const GENESIS_HASH = '0'.repeat(64);

const OPTIONAL_FIELDS = ['trace_id', 'identity', 'policy', 'credential', 'model', 'tool', 'admin', 'outcome', 'detail'] as const;

/**
 * Build the chained event: copies only known fields (so a caller's extra properties never reach
 * the trail) and computes the hash. Throws if a field is not canonicalisable.
 */
export function sealEvent(input: AuditEventInput, seq: number, prevHash: string, time: string): { hash: string; body: string } {
  const unsealed: Record<string, unknown> = {
    seq,
    time,
    type: input.type,
    request_id: input.request_id,
    prev_hash: prevHash,
  };
  for (const f of OPTIONAL_FIELDS) if (input[f] !== undefined) unsealed[f] = input[f];
  const hash = eventHash(unsealed);
  unsealed.hash = hash;
  return { hash, body: canonicalJson(unsealed) };
}

/** hash over everything but `hash` itself; prev_hash is part of the content and also prefixed. */
export function eventHash(eventWithoutHash: Record<string, unknown>): string {
  const { hash: _ignored, ...rest } = eventWithoutHash;
  return sha256Hex(String(rest.prev_hash) + canonicalJson(rest));
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
