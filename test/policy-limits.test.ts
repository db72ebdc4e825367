import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BudgetLedger, RateLimiter, type BudgetAlert, type Reservation } from '../src/policy/limits.ts';

const T0 = new Date('2026-11-25T10:00:00Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

test('64 concurrent reservations never commit more than the limit', async () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 1 };
  // 64 "requests" interleaved on the event loop: each reserves, awaits the upstream, then settles.
  let admitted = 0;
  let rejected = 0;
  let maxCommitted = 0;
  await Promise.all(Array.from({ length: 64 }, async (_, i) => {
    await new Promise((r) => setImmediate(r));
    const res = ledger.reserve('agent:a', 0.1, limits, T0);
    if (!res.ok) { rejected++; assert.equal(res.code, 'budget_exceeded'); return; }
    admitted++;
    const u = ledger.usage('agent:a', T0);
    maxCommitted = Math.max(maxCommitted, u.daily + u.reserved);
    await new Promise((r) => setTimeout(r, i % 3));
    ledger.settle(res.reservation, 0.1, T0);
  }));
  assert.equal(admitted, 10);
  assert.equal(rejected, 54);
  assert.ok(maxCommitted <= 1 + 1e-9, `committed ${maxCommitted}`);
  assert.ok(ledger.usage('agent:a', T0).daily <= 1 + 1e-9);
  assert.equal(ledger.usage('agent:a', T0).reserved < 1e-9, true);
});

test('rejection carries reset time, spent and limit; daily and monthly windows are UTC', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 5, monthly_usd: 8 };
  const r1 = ledger.reserve('agent:a', 4, limits, T0);
  assert.ok(r1.ok);
  ledger.settle(r1.reservation, 4, T0);
  const r2 = ledger.reserve('agent:a', 2, limits, T0);
  assert.ok(!r2.ok);
  assert.equal(r2.period, 'daily');
  assert.equal(r2.resetAt.toISOString(), '2026-11-26T00:00:00.000Z');
  assert.equal(r2.spent, 4);
  assert.equal(r2.limit, 5);
  // Next UTC day: daily resets, monthly does not.
  const r3 = ledger.reserve('agent:a', 4, limits, new Date('2026-11-26T00:00:01Z'));
  assert.ok(r3.ok);
  ledger.settle(r3.reservation, 4, new Date('2026-11-26T00:00:01Z'));
  const r4 = ledger.reserve('agent:a', 1, limits, new Date('2026-11-26T01:00:00Z'));
  assert.ok(!r4.ok);
  assert.equal(r4.period, 'monthly');
  assert.equal(r4.resetAt.toISOString(), '2026-12-01T00:00:00.000Z');
  assert.ok(ledger.reserve('agent:a', 1, limits, new Date('2026-12-01T00:00:00Z')).ok);
});

test('windows end exactly at the UTC midnight / first of the month, and a clock set back opens the earlier window', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 5, monthly_usd: 100 };
  const spend = (iso: string, usd: number) => { const r = ledger.reserve('k', usd, limits, new Date(iso)); assert.ok(r.ok, iso); ledger.settle(r.reservation, usd, new Date(iso)); };
  spend('2026-11-30T00:00:00.000Z', 5);
  assert.ok(!ledger.reserve('k', 1, limits, new Date('2026-11-30T23:59:59.999Z')).ok, 'last ms of the day is still that day');
  spend('2026-12-01T00:00:00.000Z', 5); // a new day and a new month
  assert.deepEqual(ledger.usage('k', new Date('2026-12-01T12:00:00Z')), { daily: 5, monthly: 5, reserved: 0 });
  // The clock goes back: the earlier day is a window of its own again (spend there starts at 0).
  assert.ok(ledger.reserve('k', 4, limits, new Date('2026-11-30T23:00:00.000Z')).ok);
});

test('settle: unknown cost keeps the estimate (flagged); release gives it back; double settle is a no-op', () => {
  const ledger = new BudgetLedger();
  const limits = { daily_usd: 10 };
  const a = ledger.reserve('k', 3, limits, T0);
  assert.ok(a.ok);
  assert.deepEqual(ledger.settle(a.reservation, null, T0), { chargedUsd: 3, estimated: true });
  assert.equal(ledger.settle(a.reservation, 5, T0).chargedUsd, 0);
  assert.equal(ledger.usage('k', T0).daily, 3);
  const b = ledger.reserve('k', 6, limits, T0);
  assert.ok(b.ok);
  assert.equal(ledger.reserve('k', 2, limits, T0).ok, false);
  ledger.release(b.reservation, T0);
  assert.equal(ledger.usage('k', T0).reserved, 0);
  assert.equal(ledger.usage('k', T0).daily, 3);
  assert.ok(ledger.reserve('k', 2, limits, T0).ok);
});

test('reserveMany is all-or-nothing across agent and team keys', () => {
  const ledger = new BudgetLedger();
  ledger.load('team:fin', 'daily', 9.5);
  const r = ledger.reserveMany([{ key: 'agent:a', limits: { daily_usd: 100 } }, { key: 'team:fin', limits: { daily_usd: 10 } }], 1, new Date());
  assert.ok(!r.ok);
  assert.equal(r.key, 'team:fin');
  assert.equal(ledger.usage('agent:a').reserved, 0, 'nothing reserved on the agent key');
});

test('alert thresholds fire once per period', () => {
  const alerts: BudgetAlert[] = [];
  const ledger = new BudgetLedger({ onAlert: (a) => alerts.push(a) });
  const limits = { daily_usd: 10, alert_at: [50, 80, 100] };
  const spend = (usd: number, now: Date) => {
    const r = ledger.reserve('agent:a', usd, limits, now);
    if (r.ok) ledger.settle(r.reservation, usd, now);
    return r.ok;
  };
  spend(4, T0);
  assert.equal(alerts.length, 0);
  spend(1, T0);
  assert.deepEqual(alerts.map((a) => a.threshold), [50]);
  spend(0.5, T0);
  assert.equal(alerts.length, 1, 'no second 50% alert');
  spend(3, T0);
  assert.deepEqual(alerts.map((a) => a.threshold), [50, 80]);
  assert.equal(spend(2, T0), false); // exhausted: 100 % fires once
  assert.equal(spend(2, T0), false);
  assert.deepEqual(alerts.map((a) => a.threshold), [50, 80, 100]);
  assert.equal(alerts[2].period, 'daily');
  // A request larger than the whole budget is refused without the 100 % alert (nothing is exhausted).
  const fresh: BudgetAlert[] = [];
  const l3 = new BudgetLedger({ onAlert: (a) => fresh.push(a) });
  assert.equal(l3.reserve('agent:b', 11, limits, T0).ok, false);
  assert.equal(fresh.length, 0);
  // New day: alerts fire again.
  spend(6, new Date('2026-11-26T08:00:00Z'));
  assert.deepEqual(alerts.map((a) => a.threshold), [50, 80, 100, 50]);
  // Seeded spend does not re-alert thresholds already crossed.
  const alerts2: BudgetAlert[] = [];
  const l2 = new BudgetLedger({ onAlert: (a) => alerts2.push(a) });
  l2.load('agent:a', 'daily', 6, limits, T0);
  const r = l2.reserve('agent:a', 0.5, limits, T0);
  assert.ok(r.ok);
  l2.settle(r.reservation, 0.5, T0);
  assert.equal(alerts2.length, 0);
});

test('ledger sweeps accounts of past months with nothing in flight', () => {
  const ledger = new BudgetLedger();
  for (let i = 0; i < 100; i++) {
    const r = ledger.reserve(`agent:${i}`, 1, { daily_usd: 5 }, T0);
    if (r.ok && i % 2 === 0) ledger.settle(r.reservation, 1, T0);
  }
  ledger.sweep(new Date('2027-01-02T00:00:00Z'));
  assert.equal(ledger.size, 50, 'keys with in-flight reservations are kept');
});

test('rpm: the (rpm+1)th request in a minute is refused with retry-after', () => {
  const rl = new RateLimiter();
  for (let i = 0; i < 5; i++) assert.deepEqual(rl.check('agent:a', { rpm: 5 }, 0, at(i)), { ok: true });
  const no = rl.check('agent:a', { rpm: 5 }, 0, at(10));
  assert.ok(!no.ok);
  assert.equal(no.limit, 'rpm');
  assert.equal(no.retryAfterSeconds, 12); // one slot refills every 12 s
  // Another key is independent.
  assert.ok(rl.check('agent:b', { rpm: 5 }, 0, at(10)).ok);
  // After the retry-after the request is admitted.
  assert.ok(rl.check('agent:a', { rpm: 5 }, 0, at(12_000)).ok);
  assert.ok(!rl.check('agent:a', { rpm: 5 }, 0, at(12_001)).ok);
});

test('tpm: estimates count, record() corrects, checkMany is all-or-nothing', () => {
  const rl = new RateLimiter();
  const lim = { tpm: 1000 };
  assert.ok(rl.check('agent:a', lim, 800, T0).ok);
  const no = rl.check('agent:a', lim, 300, T0);
  assert.ok(!no.ok);
  assert.equal(no.limit, 'tpm');
  assert.equal(no.retryAfterSeconds, 6); // 100 tokens over at 1000/min
  rl.record('agent:a', 200, 800, T0); // the real usage was smaller
  assert.ok(rl.check('agent:a', lim, 300, T0).ok);
  // checkMany: key b is full, so key c must not be charged.
  assert.ok(rl.check('agent:b', { rpm: 1 }, 0, T0).ok);
  const many = rl.checkMany([{ key: 'agent:c', limits: { rpm: 1 } }, { key: 'agent:b', limits: { rpm: 1 } }], 0, T0);
  assert.ok(!many.ok);
  assert.equal(many.key, 'agent:b');
  assert.ok(rl.check('agent:c', { rpm: 1 }, 0, T0).ok);
});

test('rate limiter forgets refilled keys (bounded memory)', () => {
  const rl = new RateLimiter();
  for (let i = 0; i < 500; i++) rl.check(`k${i}`, { rpm: 10 }, 0, T0);
  assert.equal(rl.size, 500);
  rl.sweep(at(61_000));
  assert.equal(rl.size, 0);
});

test('reservations are objects the caller holds', () => {
  const ledger = new BudgetLedger();
  const r = ledger.reserve('x', 1, {}, T0);
  assert.ok(r.ok);
  const res: Reservation = r.reservation;
  assert.equal(res.amountUsd, 1);
  assert.equal(res.done, false);
  ledger.release(res);
  assert.equal(res.done, true);
});

test('a reservation and its settle over the frozen entries the access path passes make no iterator per request', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const ledger = new BudgetLedger();
  // As decide.ts budgetEntriesOf passes them: frozen, made once per policy set.
  const entries = Object.freeze([{ key: 'agent:a', limits: { daily_usd: 1e9 } }, { key: 'team:t', limits: { daily_usd: 1e9, monthly_usd: 1e9 } }]);
  const N = 2000;
  const once = () => { const r = ledger.reserveMany(entries, 0.000001, T0); if (r.ok) ledger.settle(r.reservation, 0, T0); };
  for (let i = 0; i < 20000; i++) once(); // warm
  const per: number[] = [];
  for (let round = 0; round < 3; round++) {
    gc();
    const before = getHeapStatistics().used_heap_size;
    for (let i = 0; i < N; i++) once();
    per.push((getHeapStatistics().used_heap_size - before) / N);
  }
  // About 200 B (the reservation, its entries' copy, the results); with for-of over the frozen
  // entries (an iterator and its results) and an empty thresholds array per settle, about 550.
  const least = Math.min(...per);
  assert.ok(least < 380, `${least.toFixed(0)} bytes per reservation (rounds: ${per.map((p) => p.toFixed(0)).join(', ')})`);
  assert.equal(ledger.usage('agent:a', T0).reserved, 0);
});
