// The evidence side of a model request: one place writes usage, metrics, trace attributes and
// the audit event, for chat and embeddings alike.
import type { Usage } from '../providers/types.ts';
import type { Identity } from '../identity/types.ts';
import type { Ctx } from './plane.ts';
import { encodesAhead, identityEvidence, requestTraceId } from '../access/evidence.ts';
import { policyEvidence, recordEvidence, recordUnacknowledged } from '../access/decide.ts';
import { modelSpanAttributes } from '../observability/otlp-genai.ts';
import type { Route, Target } from './routes.ts';
import { UPSTREAM_MESSAGE_MAX, type AttemptLog } from './upstream.ts';
import { EvidenceUnavailable } from '../access/errors.ts';
import { EVENT_HEAD, eventHead, type AuditIdentity, type AuditModel, type AuditPolicy, type EventHead, type UnacknowledgedAs } from '../audit/event.ts';

/**
 * Usage rollup, metrics, span attributes and the model_call audit event (carrying the request's
 * decision) for one model request, whatever its outcome. call.target null: no upstream answered.
 */
export function recordCall(ctx: Ctx, identity: Identity, route: Route, call: CallOutcome, operation: 'chat' | 'embeddings' = 'chat'): void {
  countCall(ctx, identity, route, call, operation);
  recordCallEvidence(ctx, identity, route, call);
}

/** A request whose attempts all failed (or that the client left): no upstream answered it. */
export function failedCall(ctx: Ctx, status: number, stream: boolean, error: string, attempts: readonly AttemptLog[]): CallOutcome {
  return { target: null, usage: undefined, status, stream, error, cost: null, cache: null, latencyMs: performance.now() - ctx.start, attempts };
}

/**
 * An upstream call made on a request's behalf before its own (the semantic cache embedding the
 * prompt): counted and recorded as a model_call of its route like any upstream call, without
 * closing the request's decision (the request's own outcome, a refusal included, still writes
 * it), and its credential not left for the request's own event (a cache hit used none). Its cost
 * is charged to the budgets by its caller (Access.admitSide), not with the request's.
 */
export function recordSideCall(ctx: Ctx, identity: Identity, route: Route, call: CallOutcome, operation: 'chat' | 'embeddings'): void {
  countCall(ctx, identity, route, call, operation);
  const decision = ctx.decision;
  const closed = decision?.recorded ?? false;
  recordCallEvidence(ctx, identity, route, call);
  if (decision) decision.recorded = closed;
  ctx.credentialUsed = undefined;
}

/** What one model request came to, as its counters and its evidence record it. */
export interface CallOutcome {
  target: Target | null;
  usage: Usage | undefined;
  status: number;
  stream: boolean;
  error?: string;
  cost: number | null;
  cache: 'hit' | 'miss' | null;
  latencyMs: number;
  /**
   * The upstream attempts of this call that failed before its outcome, in order (runAttempts'
   * result): carried with the call, so a side call on the same request never lends or takes any.
   */
  attempts: readonly AttemptLog[];
}

/**
 * The call as its caller was answered: a 503 when its evidence could not be committed
 * (EvidenceUnavailable, the same in a fleet and on one process), its usage and cost kept (the
 * upstream billed them, and the budget was charged). Counted with the upstream's 200 before, so
 * aam_model_requests_total and the usage rollups showed no refusal while every caller got 503.
 */
export function answeredAs(call: CallOutcome, e: unknown): CallOutcome {
  return e instanceof EvidenceUnavailable ? { ...call, status: e.status } : call;
}

/**
 * A call whose model_call event was written, then its answer failed (`e`): counted as answered
 * (answeredAs), and when its evidence was not durable, the trail says so beside the model_call (an
 * evidence_refused event: the model_call keeps the upstream's 200, which is what the upstream
 * answered and billed). `answered`: refused (503), or a stream cut after its 200 head.
 */
export function unacknowledgedCall(ctx: Ctx, identity: Identity, route: Route, call: CallOutcome, e: unknown, operation: 'chat' | 'embeddings' = 'chat', answered: UnacknowledgedAs = 'refused'): void {
  countCall(ctx, identity, route, answeredAs(call, e), operation);
  recordUnacknowledged(ctx, identity, 'model_call', e, answered);
}

/**
 * Usage rollup, metrics and span attributes of a model request: counters, not evidence, so a
 * caller may count after the answer is out (the model_call event is what must precede it).
 */
export function countCall(ctx: Ctx, identity: Identity, route: Route, call: CallOutcome, operation: 'chat' | 'embeddings' = 'chat'): void {
  const { target, usage, status, stream, cost, cache, latencyMs, attempts } = call;
  const a = identity.agent;
  ctx.rt.usage.record({
    agent: a.name || a.spiffeId, team: a.team ?? null, keyId: identity.keyId ?? null,
    route: route.name, provider: target?.provider.name ?? null, model: target?.model ?? null,
    inputTokens: usage?.inputTokens ?? null, outputTokens: usage?.outputTokens ?? null, cachedTokens: usage?.cachedTokens ?? null,
    cacheWriteTokens: usage?.cacheWriteTokens ?? null, costUsd: cost, latencyMs, status, stream, cache,
  });
  const metrics = ctx.rt.metrics;
  if (metrics) {
    metrics.modelCall(a.name, a.team, route.name, target?.provider.name ?? '', status, latencyMs, usage, cost);
    if (cache) metrics.cacheLookup?.(route.name, cache);
    if (attempts.length > 0) metrics.failedAttempts?.(route.name, attempts);
  }
  ctx.span?.setAttributes(modelSpanAttributes({ operation, provider: target?.provider.type, route: route.name, requestModel: target?.model, inputTokens: usage?.inputTokens, outputTokens: usage?.outputTokens, costUsd: cost ?? undefined }));
}

/**
 * The model_call event's members known before the upstream answers (type, request, trace,
 * identity, policy), made and encoded ahead: a request alone in flight does it while its upstream
 * works, so that once the answer is in, what is left before the evidence's write leaves is its
 * outcome. The event is the same as without it (encodeEvent: the same bytes).
 */
export interface CallEvidenceAhead {
  readonly members: { type: 'model_call'; request_id: string; trace_id: string; identity: AuditIdentity; policy: AuditPolicy | undefined };
  readonly head: EventHead;
}

/** See CallEvidenceAhead; undefined when more than this request is in flight (the main thread has other work then: nothing to gain). */
export function callEvidenceAhead(ctx: Ctx, identity: Identity): CallEvidenceAhead | undefined {
  if (!encodesAhead(ctx)) return undefined;
  const members = callMembers(ctx, identity);
  return { members, head: eventHead(members) };
}

function callMembers(ctx: Ctx, identity: Identity): CallEvidenceAhead['members'] {
  const decision = ctx.decision;
  return {
    type: 'model_call', request_id: ctx.requestId, trace_id: requestTraceId(ctx), identity: identityEvidence(identity),
    policy: decision ? policyEvidence(decision.d) : undefined,
  };
}

/** The model_call audit event, carrying the request's decision: written before the request is answered. */
export function recordCallEvidence(ctx: Ctx, identity: Identity, route: Route, call: CallOutcome, ahead?: CallEvidenceAhead): void {
  const { target, usage, status, stream, error, cost, cache, latencyMs, attempts } = call;
  const decision = ctx.decision;
  if (decision) decision.recorded = true;
  const m = ahead?.members ?? callMembers(ctx, identity);
  const model: AuditModel = {
    route: route.name, provider: target?.provider.name ?? null, model: target?.model ?? null, stream,
    input_tokens: usage?.inputTokens ?? null, output_tokens: usage?.outputTokens ?? null, cached_tokens: usage?.cachedTokens ?? null,
    cost_usd: cost, latency_ms: Math.round(latencyMs * 1000) / 1000, cache,
  };
  // Last, as the event has always listed it; no spread of an empty object per call without it.
  if (usage?.cacheWriteTokens !== undefined) model.cache_write_tokens = usage.cacheWriteTokens;
  // The targets tried before the outcome: the request went to each of them (data left for every
  // provider named here), so the evidence names them, with what each answered.
  if (attempts.length > 0) model.attempts = attempts.map((f) => ({ target: f.target, status: f.status, error: ctx.rt.scrub(f.message, UPSTREAM_MESSAGE_MAX) }));
  recordEvidence(ctx, identity, {
    type: m.type, request_id: m.request_id, trace_id: m.trace_id, identity: m.identity, policy: m.policy,
    [EVENT_HEAD]: ahead?.head,
    // Guardrails that checked this call; their block/redact/flag verdicts are 'guardrail' events,
    // so an applied guardrail without such an event allowed the call.
    guardrails: ctx.guardrails,
    // Which credential (name and version, never the value) the call went out with.
    credential: ctx.credentialUsed ?? (target?.provider.credential ? { name: target.provider.credential } : undefined),
    model,
    outcome: { status, error_class: error ? (status >= 500 ? 'upstream' : 'client') : undefined, error },
  });
}
