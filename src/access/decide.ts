// Step 2 of every access path: may this identity do this? Policy decision, then rate limits and
// budget reservation. Every decision is recorded as evidence, allow or deny.
import { decide, decideModel, shadowDeny } from '../policy/decide.ts';
import type { AgentRecord } from '../identity/types.ts';
import { setFor, type PolicySet } from '../policy/compile.ts';
import type { AccessRequest, Decision } from '../policy/types.ts';
import type { RateLimits } from '../policy/limits.ts';
import { StoreUnavailable, type AdmitResult, type BudgetLimits, type SharedCacheEntry, type Ticket } from '../store/types.ts';
import { AamError, EvidenceUnavailable } from './errors.ts';
import { clip } from '../lib/error-message.ts';
import type { Ctx } from './request.ts';
import type { Identity } from '../identity/types.ts';
import type { AccessRuntime } from './runtime-view.ts';
import { identityEvidence, requestTraceId } from './evidence.ts';
import { decisionSpanAttributes, targetSpanAttributes } from '../observability/otlp-genai.ts';
import { selectForRecord } from '../audit/select.ts';
import { evidenceRefusedMembers, planeOf, type AuditEventInput, type AuditPolicy, type UnacknowledgedAs } from '../audit/event.ts';

/**
 * Decide; throws 403 (policy_denied) when not allowed. A denial is recorded at once. An allow is
 * carried on the request and written with its outcome (the model_call event, or the error that
 * ended the request): one audit event per request on the hot path, and never an allow without
 * its outcome.
 */
export function authorize(ctx: Ctx, identity: Identity, req: AccessRequest, set?: PolicySet): Decision {
  const d = shadowed(ctx, identity.agent, req, set && req.kind === 'model' ? decideModel(set, req.model, ctx.cfg.policies) : decide(req, ctx.cfg.policies));
  ctx.span?.setAttributes(decisionSpanAttributes({ policy: d.policy, decision: d.effect, rule: d.rule, reason: d.reason, configVersion: d.configVersion }));
  ctx.rt.metrics?.decision(d.effect, identity.agent.name);
  if (d.effect === 'deny') {
    ctx.decision = { d, identity, req, recorded: false };
    throw new AamError(403, 'policy_denied', d.reason);
  }
  // Never act without evidence: a full audit queue (storage down for long) refuses new requests.
  if (ctx.rt.audit && !ctx.rt.auditHasRoom()) throw ctx.rt.evidenceRefusal('the audit trail cannot record right now, so aam refuses to act; retry shortly');
  ctx.decision = { d, identity, req, recorded: false };
  return d;
}

/**
 * Shadow mode: when AgentPolicies in mode: audit exist, an enforced allow is decided again with
 * them counted as enforced; a deny there is carried on the decision as `wouldDeny` (evidence) and
 * counted (aam_policy_decisions_total{effect="would_deny"}), and the request goes on.
 */
export function shadowed(ctx: Ctx, agent: AgentRecord, req: AccessRequest, d: Decision): Decision {
  // Every plane's decision passes here: the one place the SERVER span learns what the request targets.
  if (ctx.span) ctx.span.setAttributes(targetSpanAttributes(req) ?? {});
  const s = shadowDeny(req, ctx.cfg.policies, d);
  if (!s) return d;
  ctx.rt.metrics?.decision('would_deny', agent.name);
  return { ...d, wouldDeny: { policy: s.policy, rule: s.rule, rulePath: s.rulePath, reason: s.reason } };
}

/** The decision as it appears in audit events. */
export function policyEvidence(d: Decision): AuditPolicy {
  const p: AuditPolicy = { name: d.policy, version: d.configVersion, rule: d.rule, decision: d.effect, reason: d.reason };
  if (d.wouldDeny) p.would_deny = { policy: d.wouldDeny.policy, rule: d.wouldDeny.rulePath ?? d.wouldDeny.rule, reason: d.wouldDeny.reason };
  return p;
}

/** Write the request's decision with the outcome that ended it, unless an event already carried it. */
export function recordDecision(ctx: Ctx, status: number, error?: string): void {
  const p = ctx.decision;
  if (!p || p.recorded) return;
  p.recorded = true;
  recordEvidence(ctx, p.identity, {
    type: 'decision', request_id: ctx.requestId, trace_id: requestTraceId(ctx), identity: identityEvidence(p.identity),
    policy: policyEvidence(p.d),
    ...(p.req.kind === 'model' ? { model: { route: p.req.model } } : p.req.kind === 'agent' ? { a2a: { agent: p.req.callee, skill: clip(p.req.skill) } } : { tool: { resource: p.req.resource, action: p.req.action } }),
    outcome: { status, error_class: status >= 500 ? 'server' : status >= 400 ? 'client' : undefined, error },
  });
}

/** Record an event about one identity, keeping only what its policies' audit.record selects. */
export function recordEvidence(ctx: Ctx, identity: Identity, ev: AuditEventInput, set: PolicySet = ctx.access?.identity === identity ? ctx.access.set : setFor(identity.agent, ctx.cfg.policies)): void {
  const sel = set.auditRecord;
  // Every event names its trace (aam audit query --trace), with or without an OTLP exporter.
  if (ev.trace_id === undefined) ev = { ...ev, trace_id: requestTraceId(ctx) };
  if (ctx.clientRequestId) ev = { ...ev, client_request_id: ctx.clientRequestId };
  ctx.rt.audit?.record(sel ? selectForRecord(ev, sel) : ev);
  noteActivity(ctx.rt, identity.agent.name, ev);
}

/**
 * A request whose event (`amends`: model_call, a2a_call) is written but whose evidence could not be
 * made durable (EvidenceUnavailable; other errors: nothing to amend): the trail says what the caller
 * got, in an evidence_refused event under the same request id (audit/event.ts EVIDENCE_REFUSED).
 * Queued like the event it amends, it is committed with it once the trail recovers.
 */
export function recordUnacknowledged(ctx: Ctx, identity: Identity, amends: string, e: unknown, answered: UnacknowledgedAs, set?: PolicySet): void {
  if (!(e instanceof EvidenceUnavailable)) return;
  recordEvidence(ctx, identity, { request_id: ctx.requestId, identity: identityEvidence(identity), ...evidenceRefusedMembers(amends, answered, e.status, e.message) }, set);
}

/** The agent's last activity on the event's plane (the console's "Last activity"), for every plane's evidence. */
export function noteActivity(rt: AccessRuntime, agent: unknown, ev: Record<string, unknown>): void {
  const plane = planeOf(ev);
  if (typeof agent === 'string' && plane !== null && plane !== 'admin') rt.identitySeen.note(agent, plane);
}

/** cached: the shared response cache entry the admission read (null: none; undefined: not read, see admit()). */
export interface Admission { ticket: Ticket | null; cached?: SharedCacheEntry | null }

const NOTHING_COUNTED: Admission = { ticket: null };
const NO_RATES: ReadonlyArray<{ key: string; limits: RateLimits }> = [];

/**
 * A policy set's budget entries, made once per compiled set (a config reload compiles new sets)
 * and frozen: the fleet limiter keeps their Redis names and script arguments per frozen array.
 */
const budgetEntries = new WeakMap<PolicySet['limits'], ReadonlyArray<{ key: string; limits: BudgetLimits }>>();
function budgetEntriesOf(limits: PolicySet['limits']): ReadonlyArray<{ key: string; limits: BudgetLimits }> {
  let e = budgetEntries.get(limits);
  if (!e) budgetEntries.set(limits, e = Object.freeze(limits.budgets.map((b) => ({ key: b.key, limits: b }))));
  return e;
}

/**
 * Rate limits, then budget, checked and counted together by the store's Limiter: embedded, with
 * no await in between (the result is not a promise); fleet, in one Redis script. Either way,
 * concurrent requests cannot all pass on the same remaining allowance. A store that cannot
 * answer refuses the request (503 store_unavailable): a limit is never skipped.
 * cacheKey: the fleet's response cache entry to read in the same round trip (a hit there reserves
 * nothing); it is read only when there is something to count.
 */
export function admit(ctx: Ctx, identity: Identity, tokensEstimate: number, costEstimateUsd: number, set: PolicySet = setFor(identity.agent, ctx.cfg.policies), cacheKey?: string): Admission | Promise<Admission> {
  const limits = set.limits;
  const rates = limits.rate ? rateEntriesOf(identity, '', limits.rate) : NO_RATES;
  if (rates.length === 0 && limits.budgets.length === 0) return NOTHING_COUNTED;
  const req = { rates, tokens: tokensEstimate, budgets: budgetEntriesOf(limits), amountUsd: costEstimateUsd, cacheKey };
  let r: AdmitResult | Promise<AdmitResult>;
  try { r = ctx.rt.limiter.admit(req); } catch (e) { throw storeUnchecked(ctx.rt, identity, e, storeFailure); }
  if (r instanceof Promise) return r.then((v) => admitted(ctx, identity, set, v, costEstimateUsd), (e: unknown) => { throw storeUnchecked(ctx.rt, identity, e, storeFailure); });
  return admitted(ctx, identity, set, r, costEstimateUsd);
}

function admitted(ctx: Ctx, identity: Identity, set: PolicySet, r: AdmitResult, costEstimateUsd: number): Admission {
  if (r.ok) return r.cached !== undefined ? { ticket: r.ticket, cached: r.cached } : r.ticket ? { ticket: r.ticket } : NOTHING_COUNTED;
  if (r.code === 'rate_limited') {
    ctx.rt.metrics?.limited('rate_limited', identity.agent.name);
    const rate = set.limits.rate!;
    throw new AamError(429, 'rate_limited', `rate limit exceeded: ${r.limit} limit of ${rate[r.limit]} for ${r.key} (policy ${rate.policies.join(', ')}); retry after ${r.retryAfterSeconds}s`,
      { headers: { 'retry-after': String(r.retryAfterSeconds) } });
  }
  ctx.rt.metrics?.limited('budget_exceeded', identity.agent.name);
  const retry = Math.max(1, Math.ceil((r.resetAt.getTime() - Date.now()) / 1000));
  throw new AamError(429, 'budget_exceeded', budgetRefusal(r, costEstimateUsd), { headers: { 'retry-after': String(retry) } });
}

/**
 * How a spent budget's refusal ends, on every plane: "it will reset at <ISO time>". The words are what
 * LangChain JS reads as a spent quota (@langchain/core's AsyncCaller matches /will reset at/i on a 429):
 * RateLimitQuotaExhaustedError, marked not retryable, instead of RateLimitCapacityError, marked
 * retryable (which a retry wrapper around the model, or a graph's retry policy, would try again).
 */
export const resetsAt = (at: Date): string => `it will reset at ${at.toISOString()}`;

/**
 * Why a budget refused: spent, or not spent but short of what this request may cost (its worst
 * case is reserved, so concurrent requests cannot overspend): "exhausted ($0.0000 spent)" sent users looking for spend there
 * was none of, when lowering the output limit was the fix.
 */
function budgetRefusal(r: { period: string; key: string; spent: number; limit: number; resetAt: Date }, costEstimateUsd: number): string {
  const budget = `${r.period} budget of $${r.limit} for ${r.key}`;
  const resets = resetsAt(r.resetAt);
  const left = r.limit - r.spent;
  if (left <= 1e-9) return `${budget} is exhausted ($${r.spent.toFixed(4)} spent incl. in-flight reservations); ${resets}`;
  return `${budget} has $${left.toFixed(4)} left (incl. in-flight reservations), less than this request may cost ($${costEstimateUsd.toFixed(4)}: its prompt and output limit, max_tokens or max_output_tokens (when unset: the model's own output limit on OpenAI and Gemini, 4096 for models aam does not know and for Claude, plus the budget of the thinking a reasoning effort adds on Claude), at the route's price, held until it settles); lower that limit, or wait: ${resets}`;
}

/**
 * The budgets held for an upstream call made on a request's behalf before its own (the semantic
 * cache's embedding): nothing reserved and no rate counted (the request's own admission does
 * those); the call's cost is charged by settling it once the call answers, whatever then becomes
 * of the request (refused, failed or answered: the upstream billed the call). null: a budget is
 * already overspent, so no such call is made. A store that cannot answer rejects (storeFailure).
 */
export function admitSide(ctx: Ctx, set: PolicySet): Admission | null | Promise<Admission | null> {
  const limits = set.limits;
  if (limits.budgets.length === 0) return NOTHING_COUNTED;
  let r: AdmitResult | Promise<AdmitResult>;
  try { r = ctx.rt.limiter.admit({ rates: NO_RATES, tokens: 0, budgets: budgetEntriesOf(limits), amountUsd: 0 }); } catch (e) { return Promise.reject(storeFailure(e)); }
  if (r instanceof Promise) return r.then(sideAdmitted, (e: unknown) => { throw storeFailure(e); });
  return sideAdmitted(r);
}

function sideAdmitted(r: AdmitResult): Admission | null {
  return r.ok ? (r.ticket ? { ticket: r.ticket } : NOTHING_COUNTED) : null;
}

/**
 * The one step every plane's refusal passes when a fleet store could not answer a check (Redis
 * down: a limit, an MCP session's owner, an A2A task's owner or live call): counted with the
 * limits' refusals (aam_limited_total, code store_unavailable, by agent), then mapped to the
 * plane's error by `refuse`. Such a request never reaches an upstream, so no other counter saw it:
 * during a Redis outage a plane that went around this step only went quiet. Each plane records
 * the refusal as evidence on its own error path (tests: fleet-redis-refusals, one row per plane).
 */
export function storeUnchecked(rt: AccessRuntime, identity: Identity, e: unknown, refuse: (e: unknown) => unknown): unknown {
  if (e instanceof StoreUnavailable) rt.metrics?.limited('store_unavailable', identity.agent.name);
  return refuse(e);
}

/** A fleet store that cannot answer: fail closed, naming the store, never admit unchecked. */
export function storeFailure(e: unknown): unknown {
  if (!(e instanceof StoreUnavailable)) return e;
  return new AamError(503, 'store_unavailable', storeUnavailableMessage(e), { headers: { 'retry-after': '1' } });
}

/** What a caller refused because the fleet store is down is told (model and tool planes alike). */
export function storeUnavailableMessage(e: StoreUnavailable): string {
  return `${e.storeName} (the fleet store for budgets and rate limits) is unavailable, so aam refuses rather than skip a limit: ${e.message}; retry shortly`;
}

/**
 * Rate-limit counters of one caller: per agent, and per virtual key when it came with one.
 * `prefix` keeps one limit's counters apart from another's (models: '', a tool rule: its own).
 */
export function rateEntriesOf(identity: Identity, prefix: string, limits: RateLimits): Array<{ key: string; limits: RateLimits }> {
  const entries = [{ key: `${prefix}agent:${identity.agent.spiffeId}`, limits }];
  if (identity.keyId) entries.push({ key: `${prefix}key:${identity.keyId}`, limits });
  return entries;
}

/** After the call: charge the real cost (null = unknown: the estimate stays charged) and correct tpm. */
export function settle(ctx: Ctx, a: Admission, costUsd: number | null, tokens: number | null): void {
  if (a.ticket) ctx.rt.limiter.settle(a.ticket, costUsd, tokens);
}

/** The call never reached an upstream that could bill us: give the reservation back. */
export function release(ctx: Ctx, a: Admission): void {
  if (a.ticket) ctx.rt.limiter.release(a.ticket);
}
