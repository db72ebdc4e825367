// How an identity appears in audit events and usage: the whole Agent record, never a secret.
import type { Identity } from '../identity/types.ts';
import type { AuditIdentity } from '../audit/event.ts';
import type { Ctx } from './request.ts';
import { parseTraceparent } from '../observability/tracing.ts';

export function identityEvidence(id: Identity): AuditIdentity {
  const a = id.agent;
  return {
    spiffe_id: a.spiffeId, agent: a.name, owner: a.owner, team: a.team, environment: a.environment, deployment: a.deployment,
    method: id.method, key_id: id.keyId, token_id: id.tokenId,
  };
}

/**
 * Whether this request encodes its evidence's head (audit eventHead) while its upstream works:
 * only alone in flight, when the main thread would wait anyway; with company it has other work
 * then, and the head is encoded with the rest, after the answer.
 */
export function encodesAhead(ctx: Ctx): boolean {
  return ctx.rt.inFlight <= 1;
}

/** Where an event belongs: its request, and the trace that request is part of. */
export interface EvidenceAt { requestId: string; traceId?: string }

/**
 * The trace this request belongs to, stamped on its evidence: the span's when tracing is on, else
 * the caller's `traceparent` (so `aam audit query --trace` finds an agent's trace even when aam
 * exports none), else a new one, made on first use only.
 */
export function requestTraceId(ctx: Ctx): string {
  if (ctx.span) return ctx.span.context.traceId;
  return ctx.traceId ??= parseTraceparent(ctx.req.headers.traceparent)?.traceId ?? ctx.rt.ids.traceId();
}
