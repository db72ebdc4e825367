// Per-rule call limits (`rate: { rpm }`, `budget: { calls_per_day, calls_per_month }` on a tools
// or agents rule) through the runtime's Limiter, so they hold fleet-wide: the rule's rpm per
// agent and per virtual key, then one call reserved per agent and per key (all or nothing), in
// the same ledger and UTC day/month windows as model budgets, counted in calls instead of
// dollars. Counters are per rule: every call a rule allows shares its bucket. A call that is never
// forwarded is given back. Each plane frames the refusal its own way (`refuse`).
import type { AccessRuntime } from './runtime-view.ts';
import type { Identity } from '../identity/types.ts';
import type { AdmitResult } from '../store/types.ts';
import { storeUnchecked, rateEntriesOf, resetsAt } from './decide.ts';

export interface LimitedRule {
  policy: string;
  index: number;
  /** "tools[2]", "agents[0]" */
  path: string;
  rate: { rpm: number } | null;
  budget: { calls_per_day?: number; calls_per_month?: number } | null;
}

export interface RuleAdmission { forwarded(): void; dropped(): void }

export interface RuleRefusal {
  code: 'rate_limited' | 'budget_exceeded';
  message: string;
  retryAfterSeconds: number;
  /** Where the limit is (policy, rule) and, for budgets, when it resets. */
  data: Record<string, unknown>;
}

/** Nothing to count (no rate or budget on the deciding rule). */
export const UNCOUNTED: RuleAdmission = Object.freeze({ forwarded() {}, dropped() {} });

/**
 * Admit one call under `rule`'s limits. `plane` names the counters ("tool", "a2a": kept apart)
 * and the calls in messages; `refuse` builds the plane's error; `storeFailure` maps a fleet
 * store that cannot answer (a limit is never skipped).
 */
export function admitRuleCall(rt: AccessRuntime, identity: Identity, rule: LimitedRule, plane: 'tool' | 'a2a',
  refuse: (r: RuleRefusal) => Error, storeFailure: (e: unknown) => unknown): RuleAdmission | Promise<RuleAdmission> {
  if (!rule.rate && !rule.budget) return UNCOUNTED;
  const prefix = `${plane}:${rule.policy}/${rule.path}:`;
  const b = rule.budget;
  const limits = b ? { daily_usd: b.calls_per_day, monthly_usd: b.calls_per_month, alert_at: [] } : undefined;
  const budgets = limits ? rateEntriesOf(identity, prefix, {}).map((e) => ({ key: e.key, limits })) : [];
  const req = { rates: rule.rate ? rateEntriesOf(identity, prefix, rule.rate) : [], tokens: 0, budgets, amountUsd: 1 };
  let r: AdmitResult | Promise<AdmitResult>;
  try { r = rt.limiter.admit(req); } catch (e) { throw storeUnchecked(rt, identity, e, storeFailure); }
  const done = (v: AdmitResult) => admitted(rt, identity, prefix, rule, plane, v, refuse);
  if (r instanceof Promise) return r.then(done, (e: unknown) => { throw storeUnchecked(rt, identity, e, storeFailure); });
  return done(r);
}

function admitted(rt: AccessRuntime, identity: Identity, prefix: string, rule: LimitedRule, plane: 'tool' | 'a2a', r: AdmitResult, refuse: (r: RuleRefusal) => Error): RuleAdmission {
  const where = { policy: rule.policy, rule: rule.index };
  if (r.ok) {
    const ticket = r.ticket;
    if (!ticket) return UNCOUNTED;
    let done = false;
    return {
      forwarded: () => { if (!done) { done = true; rt.limiter.settle(ticket, 1, null); } },
      dropped: () => { if (!done) { done = true; rt.limiter.release(ticket); } },
    };
  }
  rt.metrics?.limited(r.code, identity.agent.name);
  if (r.code === 'rate_limited') {
    throw refuse({ code: 'rate_limited', retryAfterSeconds: r.retryAfterSeconds, data: { retry_after_seconds: r.retryAfterSeconds, ...where },
      message: `rate limit exceeded: ${r.limit} limit of ${rule.rate?.rpm} for ${r.key} (policy ${rule.policy} ${rule.path}); retry after ${r.retryAfterSeconds}s` });
  }
  const retry = Math.max(1, Math.ceil((r.resetAt.getTime() - Date.now()) / 1000));
  const per = r.period === 'daily' ? 'day' : 'month';
  throw refuse({ code: 'budget_exceeded', retryAfterSeconds: retry, data: { retry_after_seconds: retry, ...where, resets_at: r.resetAt.toISOString() },
    message: `${plane === 'tool' ? 'tool' : 'A2A'} call budget exhausted: policy "${rule.policy}" ${rule.path}.budget allows ${r.limit} calls per ${per} for ${r.key.slice(prefix.length)}, and ${r.spent} were made; ${resetsAt(r.resetAt)}` });
}
