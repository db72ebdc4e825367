// One conformance suite per kind of state, run against every implementation of the store seam:
// the embedded one (SQLite + memory) and the fleet one (real PostgreSQL + Redis). The same calls
// must give the same answers, so planes cannot tell which store runs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { embeddedKeyBook, openKeyStore } from '../src/identity/keys.ts';
import { BudgetLedger, EmbeddedLimiter, RateLimiter } from '../src/policy/limits.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openFleet, type Fleet } from '../src/store/fleet.ts';
import { FleetKeyBook } from '../src/store/fleet-keys.ts';
import { FleetLimiter } from '../src/store/fleet-limits.ts';
import type { KeyBook, Limiter, AdmitResult } from '../src/store/types.ts';
import { fleetStore } from './helpers/fleet.ts';
import { tempDir } from './helpers/temp.ts';

interface Impl { name: string; keys: KeyBook; limiter: Limiter }

const closers: Array<() => Promise<void> | void> = [];
after(async () => { for (const c of closers.reverse()) await c(); });

async function embedded(): Promise<Impl> {
  const dir = tempDir('aam-conf-');
  const db = openDatabase(join(dir, 'data'));
  const keys = embeddedKeyBook(openKeyStore(db, join(dir, 'data')));
  closers.push(() => { keys.close(); db.close(); });
  return { name: 'embedded', keys, limiter: new EmbeddedLimiter(new BudgetLedger(), new RateLimiter()) };
}

async function fleet(): Promise<Impl> {
  const s = await fleetStore();
  const f: Fleet = await openFleet({ databaseUrl: s.databaseUrl, redisUrl: s.redisUrl }, { follow: true, migrate: true });
  const keys = await FleetKeyBook.open(f, { follow: true });
  const limiter = new FleetLimiter(f);
  closers.push(async () => { keys.close(); await limiter.close(); await f.close(); await s.drop(); });
  return { name: 'fleet', keys, limiter };
}

const impls = [embedded, fleet];

for (const make of impls) {
  test(`KeyBook (${make.name}): create, authenticate, rotate, revoke, expire, list`, async () => {
    const { keys } = await make();
    const a = await keys.create('alpha', { name: 'ci' });
    const auth = keys.authenticate(a.secret);
    assert.ok(auth.ok && auth.key.id === a.key.id && auth.key.agent === 'alpha' && auth.key.name === 'ci');
    const gen1 = auth.ok ? auth.generation : '';
    assert.equal(keys.generationProblem(a.key.id, gen1), undefined);
    assert.deepEqual(keys.authenticate('aam_not-a-key'), { ok: false, reason: 'unknown API key' });
    assert.equal(keys.get(a.key.id)?.agent, 'alpha');

    const r = await keys.rotate(a.key.id, 0);
    assert.equal(r.key.id, a.key.id);
    const old = keys.authenticate(a.secret, Date.now() + 1);
    assert.ok(!old.ok && /rotated and its grace period ended/.test(old.reason), JSON.stringify(old));
    assert.ok(keys.authenticate(r.secret).ok);
    const graced = await keys.rotate(a.key.id, 3600);
    assert.ok(keys.authenticate(r.secret).ok, 'the previous secret works during its grace period');
    assert.ok(keys.authenticate(graced.secret).ok);
    assert.ok((keys.generationValidUntil(gen1) ?? Infinity) <= Date.now() + 1);

    const revoked = await keys.revoke(a.key.id);
    assert.ok(revoked.revokedAt);
    const after = keys.authenticate(graced.secret);
    assert.ok(!after.ok && /was revoked at/.test(after.reason));
    assert.match(keys.generationProblem(a.key.id, gen1) ?? '', /rotated|revoked/);
    await assert.rejects(keys.rotate(a.key.id, 0), /is revoked; create a new key instead/);
    await assert.rejects(keys.revoke('key_nope'), /no API key with id key_nope/);

    const past = await keys.create('beta', { expiresAt: new Date(Date.now() - 1000).toISOString() });
    const expired = keys.authenticate(past.secret);
    assert.ok(!expired.ok && /expired at/.test(expired.reason));

    const list = (await keys.list()).map((k) => [k.agent, k.secrets, k.revokedAt !== null, k.lastRotatedAt !== null]).sort();
    assert.deepEqual(list, [['alpha', 3, true, true], ['beta', 1, false, false]]);
  });

  test(`Limiter (${make.name}): rpm, tpm, budget reservations, release and settle`, async () => {
    const { limiter } = await make();
    const admit = async (r: Parameters<Limiter['admit']>[0]): Promise<AdmitResult> => limiter.admit(r);
    const rpm = { rates: [{ key: 'agent:r', limits: { rpm: 3 } }], tokens: 0, budgets: [], amountUsd: 0 };
    for (let i = 0; i < 3; i++) assert.equal((await admit(rpm)).ok, true);
    const fourth = await admit(rpm);
    assert.ok(!fourth.ok && fourth.code === 'rate_limited' && fourth.limit === 'rpm' && fourth.key === 'agent:r' && fourth.retryAfterSeconds >= 1, JSON.stringify(fourth));

    const tpm = { rates: [{ key: 'agent:t', limits: { tpm: 100 } }], tokens: 50, budgets: [], amountUsd: 0 };
    assert.equal((await admit(tpm)).ok, true);
    assert.equal((await admit(tpm)).ok, true);
    const third = await admit(tpm);
    assert.ok(!third.ok && third.code === 'rate_limited' && third.limit === 'tpm');

    const budget = { rates: [], tokens: 0, budgets: [{ key: 'team:b', limits: { daily_usd: 1 } }], amountUsd: 0.4 };
    const one = await admit(budget);
    const two = await admit(budget);
    assert.ok(one.ok && two.ok && one.ticket && two.ticket);
    const over = await admit(budget);
    assert.ok(!over.ok && over.code === 'budget_exceeded' && over.period === 'daily' && over.key === 'team:b' && over.limit === 1);
    assert.ok(Math.abs(over.spent - 0.8) < 1e-9, `committed spend incl. reservations: ${over.spent}`);
    assert.ok(over.resetAt.getTime() > Date.now());
    limiter.release(two.ticket);
    // A released reservation frees its amount (fleet: the release is sent without waiting, so poll).
    const end = Date.now() + 5000;
    let again = await admit(budget);
    while (!again.ok && Date.now() < end) { await new Promise((r) => setTimeout(r, 10)); again = await admit(budget); }
    assert.ok(again.ok && again.ticket);
    // Unknown cost charges the reserved estimate: 0.4 + 0.4 settled, so 0.4 more no longer fits.
    limiter.settle(one.ticket, null, null);
    limiter.settle(again.ticket, 0.4, null);
    let last = await admit(budget);
    while (last.ok && Date.now() < end) { if (last.ticket) limiter.release(last.ticket); await new Promise((r) => setTimeout(r, 10)); last = await admit(budget); }
    assert.ok(!last.ok && last.code === 'budget_exceeded' && Math.abs(last.spent - 0.8) < 1e-9, JSON.stringify(last));
  });

  test(`Limiter (${make.name}): a request its budget refuses uses no rpm/tpm (it did no work upstream)`, async () => {
    const { limiter } = await make();
    const req = (amountUsd: number) => ({ rates: [{ key: 'agent:rb', limits: { rpm: 2, tpm: 100 } }], tokens: 40, budgets: [{ key: 'agent:rb', limits: { daily_usd: 1 } }], amountUsd });
    const first = await limiter.admit(req(0.6));
    assert.ok(first.ok, JSON.stringify(first));
    const refused = await limiter.admit(req(0.6));
    assert.ok(!refused.ok && refused.code === 'budget_exceeded', JSON.stringify(refused));
    // The refusal counted neither a request nor its 40 tokens: one more fits both (2 rpm, 80 of 100 tpm).
    const second = await limiter.admit(req(0.3));
    assert.ok(second.ok, JSON.stringify(second));
    const third = await limiter.admit(req(0));
    assert.ok(!third.ok && third.code === 'rate_limited' && third.limit === 'rpm', JSON.stringify(third));
  });
}
