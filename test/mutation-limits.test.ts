// Budgets and rate limits (src/policy/limits.ts) where they must bite: the exact edge of a limit, a
// window that rolls over (December into January, a clock set back), a cost or token count that is
// not a number, alerts with what they report, memory that stays bounded, and the embedded Limiter
// the gateway admits through. Written for the mutants `npm run mutate -- policy -- --mutate
// src/policy/limits.ts` found alive; no gateway, so a mutant it kills costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BudgetLedger, EmbeddedLimiter, RateLimiter, rateEntries, type BudgetAlert } from '../src/policy/limits.ts';
import type { Ticket } from '../src/store/types.ts';

const T0 = new Date('2026-11-25T10:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

function ledgerWithAlerts(): { ledger: BudgetLedger; alerts: BudgetAlert[] } {
  const alerts: BudgetAlert[] = [];
  return { ledger: new BudgetLedger({ onAlert: (a) => alerts.push(a) }), alerts };
}

/** Reserve and settle `usd` on one key; false when the budget refused it. */
function spend(ledger: BudgetLedger, key: string, usd: number, limits: Parameters<BudgetLedger['reserve']>[2], now: Date): boolean {
  const r = ledger.reserve(key, usd, limits, now);
  if (r.ok) ledger.settle(r.reservation, usd, now);
  return r.ok;
}

test('budget: spending up to the limit exactly is allowed, a cent more is refused with what is committed', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 1 };
  for (let i = 0; i < 10; i++) assert.ok(spend(ledger, 'k', 0.1, limits, T0), `call ${i + 1}`);
  const no = ledger.reserve('k', 0.01, limits, T0);
  assert.ok(!no.ok);
  assert.equal(no.code, 'budget_exceeded');
  // In-flight reservations count: 0.6 reserved + 0.5 asked is over 1 even with nothing settled.
  const fresh = new BudgetLedger();
  const held = fresh.reserve('k', 0.6, limits, T0);
  assert.ok(held.ok);
  const over = fresh.reserve('k', 0.5, limits, T0);
  assert.ok(!over.ok);
  assert.deepEqual([over.key, over.spent, over.limit, over.period], ['k', 0.6, 1, 'daily']);
  assert.ok(fresh.reserve('k', 0.4, limits, T0).ok);
});

test('budget: a cost that is not a positive number reserves nothing and makes no room', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 1 };
  for (const bad of [-5, NaN, Infinity, -Infinity, 0]) {
    const r = ledger.reserve('k', bad, limits, T0);
    assert.ok(r.ok, String(bad));
    assert.equal(r.reservation.amountUsd, 0, String(bad));
  }
  assert.equal(ledger.usage('k', T0).reserved, 0);
  assert.ok(spend(ledger, 'k', 1, limits, T0));
  assert.equal(ledger.reserve('k', 0.5, limits, T0).ok, false, 'a negative reservation earlier made no room');
});

test('budget: an unknown, NaN or negative real cost charges the estimate, flagged', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 100 };
  let expected = 0;
  for (const actual of [null, NaN, -1, Infinity]) {
    const r = ledger.reserve('k', 2, limits, T0);
    assert.ok(r.ok);
    assert.deepEqual(ledger.settle(r.reservation, actual, T0), { chargedUsd: 2, estimated: true }, String(actual));
    expected += 2;
  }
  const r = ledger.reserve('k', 2, limits, T0);
  assert.ok(r.ok);
  assert.deepEqual(ledger.settle(r.reservation, 0, T0), { chargedUsd: 0, estimated: false }, 'a real $0 is charged as $0');
  assert.deepEqual(ledger.usage('k', T0), { daily: expected, monthly: expected, reserved: 0 });
});

test('budget: giving back a settled reservation does not free another one', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 10 };
  const a = ledger.reserve('k', 4, limits, T0);
  assert.ok(a.ok);
  ledger.settle(a.reservation, 4, T0);
  const b = ledger.reserve('k', 5, limits, T0);
  assert.ok(b.ok);
  ledger.release(a.reservation, T0);
  assert.equal(ledger.usage('k', T0).reserved, 5);
  assert.equal(ledger.reserve('k', 2, limits, T0).ok, false, 'b is still in flight');
  ledger.release(b.reservation, T0);
  ledger.release(b.reservation, T0);
  assert.equal(ledger.usage('k', T0).reserved, 0);
  // Settling after a release charges nothing twice and leaves reserved at 0, not below.
  assert.equal(ledger.settle(b.reservation, 5, T0).chargedUsd, 0);
  assert.deepEqual(ledger.usage('k', T0), { daily: 4, monthly: 4, reserved: 0 });
});

test('budget: the monthly window of December ends on January 1st, and a clock set back a month opens that month again', () => {
  const ledger = new BudgetLedger();
  const limits = { monthly_usd: 10 };
  const dec = new Date('2026-12-31T23:00:00Z');
  assert.ok(spend(ledger, 'k', 10, limits, dec));
  const no = ledger.reserve('k', 1, limits, dec);
  assert.ok(!no.ok);
  assert.deepEqual([no.period, no.resetAt.toISOString()], ['monthly', '2027-01-01T00:00:00.000Z']);
  assert.ok(ledger.reserve('k', 1, limits, new Date('2027-01-01T00:00:00Z')).ok);
  const back = new BudgetLedger();
  assert.ok(spend(back, 'k', 10, limits, new Date('2026-12-02T00:00:00Z')));
  assert.ok(back.reserve('k', 1, limits, new Date('2026-11-30T12:00:00Z')).ok, 'November is a window of its own');
  // usage() reports only the current windows.
  const u = new BudgetLedger();
  assert.ok(spend(u, 'k', 3, { daily_usd: 5 }, new Date('2026-11-30T12:00:00Z')));
  assert.deepEqual(u.usage('k', new Date('2026-11-30T13:00:00Z')), { daily: 3, monthly: 3, reserved: 0 });
  assert.deepEqual(u.usage('k', new Date('2026-12-01T00:00:00Z')), { daily: 0, monthly: 0, reserved: 0 });
  assert.deepEqual(u.usage('k', new Date('2026-11-01T00:00:00Z')), { daily: 0, monthly: 3, reserved: 0 });
  assert.deepEqual(u.usage('nobody', T0), { daily: 0, monthly: 0, reserved: 0 });
});

test('budget: spend seeded at start-up counts against its period; thresholds it already crossed do not alert again', () => {
  const limits = { daily_usd: 10, monthly_usd: 10, alert_at: [50, 80] };
  const { ledger, alerts } = ledgerWithAlerts();
  ledger.load('k', 'monthly', 9.5, limits, T0);
  const no = ledger.reserve('k', 1, limits, T0);
  assert.ok(!no.ok);
  assert.deepEqual([no.period, no.spent], ['monthly', 9.5]);
  ledger.load('d', 'daily', 5, limits, T0); // exactly 50 %: already crossed
  assert.ok(spend(ledger, 'd', 0.1, limits, T0));
  assert.deepEqual(alerts, []);
  // Below a threshold at start-up: crossing it later alerts; without limits nothing is marked.
  const second = ledgerWithAlerts();
  second.ledger.load('k', 'daily', 4.9, limits, T0);
  second.ledger.load('n', 'daily', 9, undefined, T0);
  assert.ok(spend(second.ledger, 'k', 0.1, limits, T0));
  assert.ok(spend(second.ledger, 'n', 0.1, limits, T0));
  assert.deepEqual(second.alerts.map((a) => `${a.key} ${a.period} ${a.threshold}`), ['k daily 50', 'n daily 50', 'n daily 80']);
});

test('budget alerts: exactly at a threshold, per period, with the key, spend, limit and window', () => {
  const { ledger, alerts } = ledgerWithAlerts();
  const limits = { daily_usd: 10, monthly_usd: 40, alert_at: [25, 50, 100] };
  assert.ok(spend(ledger, 'agent:a', 5, limits, T0));
  assert.deepEqual(alerts, [
    { key: 'agent:a', period: 'daily', threshold: 25, spent: 5, limit: 10, windowStart: new Date('2026-11-25T00:00:00Z') },
    { key: 'agent:a', period: 'daily', threshold: 50, spent: 5, limit: 10, windowStart: new Date('2026-11-25T00:00:00Z') },
  ]);
  assert.ok(spend(ledger, 'agent:a', 5, limits, T0));
  assert.deepEqual(alerts.slice(2).map((a) => `${a.period} ${a.threshold} ${a.spent}`), ['daily 100 10', 'monthly 25 10']);
  // Exhausted before spend reaches 100 %: the 100 % alert still fires, once, with the settled spend.
  const ex = ledgerWithAlerts();
  const monthly = { monthly_usd: 10, alert_at: [100] };
  assert.ok(spend(ex.ledger, 'k', 9, monthly, T0));
  assert.equal(ex.ledger.reserve('k', 2, monthly, T0).ok, false);
  assert.equal(ex.ledger.reserve('k', 2, monthly, T0).ok, false);
  assert.deepEqual(ex.alerts, [{ key: 'k', period: 'monthly', threshold: 100, spent: 9, limit: 10, windowStart: new Date('2026-11-01T00:00:00Z') }]);
  // No 100 in alert_at: exhaustion alerts nothing; no alert_at at all: settling alerts nothing.
  const quiet = ledgerWithAlerts();
  assert.ok(spend(quiet.ledger, 'k', 9, { daily_usd: 10, alert_at: [95] }, T0));
  assert.equal(quiet.ledger.reserve('k', 2, { daily_usd: 10, alert_at: [95] }, T0).ok, false);
  assert.ok(spend(quiet.ledger, 'j', 9, { daily_usd: 10 }, T0));
  assert.deepEqual(quiet.alerts, []);
});

test('budget: the ledger forgets past months by itself (every 1024 reservations), keeping what is in flight', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 1e9 };
  assert.ok(spend(ledger, 'old', 1, limits, new Date('2026-10-01T00:00:00Z')));
  const held = ledger.reserve('held', 1, limits, new Date('2026-10-01T00:00:00Z'));
  assert.ok(held.ok);
  for (let i = 0; i < 1021; i++) assert.ok(ledger.reserve('now', 0, limits, T0).ok);
  assert.equal(ledger.size, 3, 'no sweep before the 1024th');
  assert.ok(ledger.reserve('now', 0, limits, T0).ok);
  assert.equal(ledger.size, 2, '"old" swept, "held" kept');
  ledger.sweep(T0);
  assert.equal(ledger.size, 2);
  ledger.release(held.reservation, T0);
  ledger.sweep(new Date('2027-01-01T00:00:00Z'));
  assert.equal(ledger.size, 0);
});

test('rate: a wait under a second is still "retry after 1 s", and exactly one slot later is admitted', () => {
  const rl = new RateLimiter();
  assert.ok(rl.check('k', { rpm: 60 }, 0, T0).ok);
  for (let i = 1; i < 60; i++) assert.ok(rl.check('k', { rpm: 60 }, 0, T0).ok);
  const no = rl.check('k', { rpm: 60 }, 0, at(999));
  assert.deepEqual(no, { ok: false, retryAfterSeconds: 1, limit: 'rpm', key: 'k' });
  assert.deepEqual(rl.check('k', { rpm: 60 }, 0, at(1000)), { ok: true });
  assert.equal(rl.check('k', { rpm: 60 }, 0, at(1000)).ok, false, 'the admitted request took the slot');
  // A refused request counts nothing: the next slot opens one interval after the last admitted one.
  assert.ok(rl.check('k', { rpm: 60 }, 0, at(2000)).ok);
});

test('tpm: a request larger than the minute budget gets an empty bucket only, then everyone waits for it', () => {
  const rl = new RateLimiter();
  const lim = { tpm: 1000 };
  assert.ok(rl.check('k', lim, 5000, T0).ok, 'an empty bucket admits it');
  const no = rl.check('k', lim, 1, T0);
  assert.ok(!no.ok);
  assert.deepEqual([no.limit, no.retryAfterSeconds], ['tpm', 241]); // 5000 tokens at 1000/min = 300 s; one minute of burst
  assert.ok(!rl.check('k', lim, 5000, at(299_000)).ok);
  // Token counts that are not positive numbers cost nothing, and do not make room.
  const z = new RateLimiter();
  assert.ok(z.check('z', lim, 1000, T0).ok);
  for (const bad of [0, -500, NaN, Infinity]) assert.ok(z.check('z', lim, bad, T0).ok, String(bad));
  assert.equal(z.check('z', lim, 1, T0).ok, false);
  // rpm and tpm together: either one refuses.
  const both = new RateLimiter();
  assert.ok(both.check('b', { rpm: 100, tpm: 100 }, 100, T0).ok);
  assert.deepEqual(both.check('b', { rpm: 100, tpm: 100 }, 50, T0), { ok: false, retryAfterSeconds: 30, limit: 'tpm', key: 'b' });
  assert.ok(both.check('b', { rpm: 100, tpm: 100 }, 0, T0).ok, 'a request of no tokens is counted by rpm only');
});

test('tpm: the real token count corrects the estimate, in either direction, never into the past', () => {
  const rl = new RateLimiter();
  const lim = { tpm: 600 }; // 100 ms per token
  assert.ok(rl.check('k', lim, 100, T0).ok);
  rl.record('k', 700, 100, T0); // 600 more than estimated: a full minute of debt
  const no = rl.check('k', lim, 1, T0);
  assert.ok(!no.ok);
  assert.equal(no.retryAfterSeconds, 11); // 70 s of tokens, 60 s burst, plus this one
  // A smaller real count gives tokens back, but not more than the bucket holds.
  const back = new RateLimiter();
  assert.ok(back.check('k', lim, 600, T0).ok);
  rl.record('nobody', 10, 1, T0);
  back.record('k', 0, 600, at(1000));
  assert.ok(back.check('k', lim, 600, at(1000)).ok);
  assert.equal(back.check('k', lim, 1, at(1000)).ok, false, 'the bucket never holds more than one minute');
  // An estimate that was not a number counts as 0; a real count that is not a number is ignored.
  const est = new RateLimiter();
  assert.ok(est.check('k', lim, 100, T0).ok);
  assert.ok(est.check('k', lim, NaN, T0).ok);
  est.record('k', 600, NaN, T0);
  assert.equal(est.check('k', lim, 1, T0).ok, false);
  const nan = new RateLimiter();
  assert.ok(nan.check('k', lim, 600, T0).ok);
  nan.record('k', NaN, 600, T0);
  nan.record('k', Infinity, 600, T0);
  assert.equal(nan.check('k', lim, 1, T0).ok, false);
  assert.ok(nan.check('k', lim, 1, at(100)).ok);
  // A key limited by rpm only has no token bucket to correct.
  const rpm = new RateLimiter();
  assert.ok(rpm.check('k', { rpm: 1000 }, 10, T0).ok);
  rpm.record('k', 1e9, 10, T0);
  assert.ok(rpm.check('k', { rpm: 1000, tpm: 1000 }, 1000, T0).ok);
});

test('rate: the limiter forgets refilled keys by itself (every 1024 checks), never one still counting', () => {
  const rl = new RateLimiter();
  assert.ok(rl.check('old', { rpm: 1 }, 0, T0).ok);
  assert.ok(rl.check('busy', { tpm: 10 }, 10, at(1000)).ok);
  for (let i = 0; i < 1021; i++) assert.ok(rl.check('now', {}, 0, at(60_500)).ok);
  assert.equal(rl.size, 3, 'no sweep before the 1024th');
  assert.ok(rl.check('now', {}, 0, at(60_500)).ok);
  assert.deepEqual(rl.size, 2, '"old" refilled and swept; "busy" refills at 61 s');
  rl.sweep(at(61_000));
  assert.equal(rl.size, 0, 'a bucket full again exactly now is forgotten');
  assert.equal(rl.check('busy', { tpm: 10 }, 10, at(61_000)).ok, true);
});

test('rate entries: the agent by name (SPIFFE ID when it has none) and the virtual key', () => {
  assert.deepEqual(rateEntries({ name: 'a', spiffeId: 'spiffe://x/a' }, 'key_1', { rpm: 1 }), [{ key: 'agent:a', limits: { rpm: 1 } }, { key: 'key:key_1', limits: { rpm: 1 } }]);
  assert.deepEqual(rateEntries({ name: '', spiffeId: 'spiffe://x/a' }, undefined, { rpm: 1 }), [{ key: 'agent:spiffe://x/a', limits: { rpm: 1 } }]);
  assert.deepEqual(rateEntries({ name: 'a', spiffeId: 'spiffe://x/a' }, '', {}).map((e) => e.key), ['agent:a']);
});

test('embedded limiter: rate first, then budget; settle charges the cost and corrects tokens; release gives the budget back', () => {
  const limiter = new EmbeddedLimiter(new BudgetLedger(), new RateLimiter());
  const budgets = [{ key: 'agent:a', limits: { daily_usd: 1 } }, { key: 'team:t', limits: { daily_usd: 10 } }];
  const rates = [{ key: 'agent:a', limits: { rpm: 100, tpm: 1000 } }, { key: 'key:k', limits: { rpm: 100, tpm: 1000 } }];
  const admitted = (r: ReturnType<EmbeddedLimiter['admit']>): Ticket => { assert.ok('ok' in r && r.ok, JSON.stringify(r)); return r.ticket!; };
  const t1 = admitted(limiter.admit({ rates, tokens: 100, budgets, amountUsd: 0.6 }));
  assert.deepEqual(limiter.ledger.usage('team:t').reserved, 0.6);
  const over = limiter.admit({ rates, tokens: 100, budgets, amountUsd: 0.6 });
  assert.deepEqual(over, { ok: false, code: 'budget_exceeded', key: 'agent:a', resetAt: (over as { resetAt: Date }).resetAt, spent: 0.6, limit: 1, period: 'daily' });
  limiter.settle(t1, 0.25, 900);
  assert.deepEqual(limiter.ledger.usage('agent:a'), { daily: 0.25, monthly: 0.25, reserved: 0 });
  assert.deepEqual(limiter.ledger.usage('team:t'), { daily: 0.25, monthly: 0.25, reserved: 0 });
  // 100 estimated (the budget's refusal counted none), then it was 900: 900 tokens on both keys, so 150 more are over the 1000 tpm.
  const rated = limiter.admit({ rates, tokens: 150, budgets: [], amountUsd: 0 });
  assert.deepEqual(rated, { ok: false, code: 'rate_limited', limit: 'tpm', key: 'agent:a', retryAfterSeconds: (rated as { retryAfterSeconds: number }).retryAfterSeconds });
  assert.equal(limiter.admit({ rates: [rates[1]], tokens: 150, budgets: [], amountUsd: 0 }).ok, false, 'the virtual key was corrected too');
  const t2 = admitted(limiter.admit({ rates: [], tokens: 0, budgets, amountUsd: 0.7 }));
  limiter.release(t2);
  assert.equal(limiter.ledger.usage('agent:a').reserved, 0);
  // Unknown cost and unknown tokens: the estimate is charged, tokens are left as estimated.
  const t3 = admitted(limiter.admit({ rates: [{ key: 'agent:c', limits: { tpm: 100 } }], tokens: 50, budgets: [{ key: 'agent:c', limits: { daily_usd: 1 } }], amountUsd: 0.3 }));
  limiter.settle(t3, null, null);
  assert.equal(limiter.ledger.usage('agent:c').daily, 0.3);
  assert.ok(limiter.admit({ rates: [{ key: 'agent:c', limits: { tpm: 100 } }], tokens: 50, budgets: [], amountUsd: 0 }).ok);
  // No budgets and no rates: admitted with nothing to settle.
  const t4 = admitted(limiter.admit({ rates: [], tokens: 10, budgets: [], amountUsd: 5 }));
  limiter.settle(t4, 5, 10);
  limiter.release(t4);
  assert.equal(limiter.ledger.size, 3, 'agent:a, team:t, agent:c');
});

test('budget: spend at the first instant of a day or month still counts at that instant', () => {
  const ledger = new BudgetLedger();
  const midnight = new Date('2026-11-26T00:00:00.000Z');
  assert.ok(spend(ledger, 'd', 5, { daily_usd: 5 }, midnight));
  assert.equal(ledger.reserve('d', 1, { daily_usd: 5 }, midnight).ok, false);
  const first = new Date('2026-12-01T00:00:00.000Z');
  assert.ok(spend(ledger, 'm', 10, { monthly_usd: 10 }, first));
  assert.equal(ledger.reserve('m', 1, { monthly_usd: 10 }, first).ok, false);
});

test('budget: settling or giving back one reservation leaves the others in flight counted', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 10 };
  const a = ledger.reserve('k', 4, limits, T0);
  const b = ledger.reserve('k', 4, limits, T0);
  assert.ok(a.ok && b.ok);
  ledger.settle(a.reservation, 4, T0);
  assert.equal(ledger.usage('k', T0).reserved, 4);
  assert.equal(ledger.reserve('k', 3, limits, T0).ok, false, '4 spent + 4 in flight + 3 is over 10');
  const c = ledger.reserve('k', 2, limits, T0);
  assert.ok(c.ok);
  ledger.release(c.reservation, T0);
  assert.equal(ledger.usage('k', T0).reserved, 4);
  assert.equal(ledger.reserve('k', 3, limits, T0).ok, false);
  // The keys a reservation holds are the ones it was made on, whatever the caller does with its list.
  const entries = [{ key: 'x', limits }];
  const r = ledger.reserveMany(entries, 1, T0);
  assert.ok(r.ok);
  entries.push({ key: 'y', limits });
  ledger.settle(r.reservation, 1, T0);
  assert.deepEqual([ledger.usage('x', T0).daily, ledger.usage('y', T0).daily], [1, 0]);
});

test('budget alerts: monthly spend seeded at start-up is measured against the monthly limit; no alert_at, no alerts', () => {
  const { ledger, alerts } = ledgerWithAlerts();
  const limits = { daily_usd: 100, monthly_usd: 10, alert_at: [50] };
  ledger.load('k', 'monthly', 6, limits, T0);
  ledger.load('n', 'monthly', 6, undefined, T0);
  assert.ok(spend(ledger, 'k', 0.1, limits, T0));
  assert.deepEqual(alerts, [], 'monthly 50 % was crossed before the restart');
  assert.ok(spend(ledger, 'm', 9, { monthly_usd: 10 }, T0));
  assert.deepEqual(alerts, []);
});

test('tpm: a request without a token estimate is not held back by token debt; an estimate that is no count corrects nothing', () => {
  const rl = new RateLimiter();
  const lim = { tpm: 600 }; // 100 ms per token
  assert.ok(rl.check('k', lim, 600, T0).ok);
  rl.record('k', 1200, 600, T0); // two minutes of tokens
  assert.equal(rl.check('k', lim, 1, T0).ok, false);
  assert.ok(rl.check('k', lim, 0, T0).ok, 'no estimate: rpm alone decides');
  // The estimate record() is given back is what check() counted: nothing for a negative or infinite one.
  const neg = new RateLimiter();
  assert.ok(neg.check('k', lim, 100, T0).ok);
  assert.ok(neg.check('k', lim, -100, T0).ok);
  neg.record('k', 490, -100, T0);
  assert.ok(neg.check('k', lim, 1, T0).ok, '100 + 490 tokens fit in the minute');
  const inf = new RateLimiter();
  assert.ok(inf.check('k', lim, 100, T0).ok);
  assert.ok(inf.check('k', lim, Infinity, T0).ok);
  inf.record('k', 600, Infinity, T0);
  assert.equal(inf.check('k', lim, 1, T0).ok, false, '100 + 600 tokens are over the minute');
});

test('rate: a key still counting requests is kept by a sweep, one refilled exactly now is not; rpm-only keys are swept too', () => {
  const rl = new RateLimiter();
  assert.ok(rl.check('rpm', { rpm: 1 }, 0, at(30_000)).ok);
  rl.sweep(at(60_000));
  assert.equal(rl.size, 1);
  assert.equal(rl.check('rpm', { rpm: 1 }, 0, at(60_000)).ok, false, 'its count survived the sweep');
  rl.sweep(at(90_000));
  assert.equal(rl.size, 0, 'refilled exactly at 90 s');
  assert.ok(rl.check('tokens', { rpm: 10 }, 500, T0).ok, 'tokens on a key with no tpm');
  rl.sweep(at(6_000));
  assert.equal(rl.size, 0);
});
