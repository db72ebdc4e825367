// Fleet mode, the limiter's round trips: one Redis script per request. The settle of a request
// rides on the replica's next admission script (its reservation holds the budget until then), and
// a settlement no admission carries is sent alone within the settle delay, so spend is never lost.
// Real PostgreSQL + Redis; Redis commands counted on the limiter's own connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { openFleet, type Fleet } from '../src/store/fleet.ts';
import { FleetLimiter } from '../src/store/fleet-limits.ts';
import type { AdmitRequest, Ticket } from '../src/store/types.ts';

let store: FleetTestStore;
let fleet: Fleet;
let scripts = 0;

before(async () => {
  store = await fleetStore();
  fleet = await openFleet({ databaseUrl: store.databaseUrl, redisUrl: store.redisUrl }, { follow: false, migrate: true });
  // Every command of the connection goes through sendCommand (pipelined ones too): count the scripts.
  const send = fleet.redis.sendCommand.bind(fleet.redis);
  fleet.redis.sendCommand = ((cmd, ...rest) => {
    if (cmd.name === 'evalsha' || cmd.name === 'eval') scripts++;
    return send(cmd, ...rest);
  }) as typeof fleet.redis.sendCommand;
});

after(async () => {
  await fleet.close();
  await store.drop();
});

const today = (): string => { const d = new Date(); return `d:${Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate())}`; };

function request(budgetKey: string): AdmitRequest {
  return {
    rates: [{ key: `agent:${budgetKey}`, limits: { rpm: 10_000, tpm: 1_000_000 } }], tokens: 100,
    budgets: [{ key: budgetKey, limits: { daily_usd: 10 } }], amountUsd: 0.1,
  };
}

async function admitted(lim: FleetLimiter, req: AdmitRequest): Promise<Ticket> {
  const r = await lim.admit(req);
  assert.ok(r.ok && r.ticket, `admitted: ${JSON.stringify(r)}`);
  return r.ticket;
}

/** Settled spend and reservations held, as the admission script sees them. */
async function budget(key: string): Promise<{ spent: number; reserved: number }> {
  const [spent, reserved] = await fleet.redis.hmget(`${fleet.prefix}b:${key}`, today(), 'r');
  return { spent: Number(spent ?? 0), reserved: Number(reserved ?? 0) };
}

const near = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;

test('one Redis script per request: each settle rides on the next admission, its reservation held until then', async () => {
  // A settle delay longer than the test: only admissions carry settlements here.
  const lim = new FleetLimiter(fleet, { settleDelayMs: 600_000 });
  try {
    lim.settle(await admitted(lim, request('agent:rider')), 0.05, 50); // loads the budget, the script
    scripts = 0;
    for (let i = 0; i < 10; i++) lim.settle(await admitted(lim, request('agent:rider')), 0.05, 50);
    assert.equal(scripts, 10, '10 requests, 10 scripts (no settle round trips)');
    assert.equal(lim.settleCalls, 0);
    // 10 settlements carried (the warm-up's and 9 of these); the last one's reservation still counts.
    const b = await budget('agent:rider');
    assert.ok(near(b.spent, 0.5) && near(b.reserved, 0.1), `spent $0.50 and $0.10 reserved: ${JSON.stringify(b)}`);
  } finally { await lim.close(); }
  // close() sends what is still queued.
  const b = await budget('agent:rider');
  assert.ok(near(b.spent, 0.55) && near(b.reserved, 0), `spent $0.55, nothing reserved: ${JSON.stringify(b)}`);
});

test('a settlement no admission carries is sent alone within the settle delay (spend never waits on traffic)', async () => {
  const lim = new FleetLimiter(fleet, { settleDelayMs: 50 });
  try {
    const t = await admitted(lim, request('agent:idle'));
    lim.release(await admitted(lim, request('agent:idle')));
    lim.settle(t, 0.07, 10);
    await until(async () => { const b = await budget('agent:idle'); return near(b.spent, 0.07) && near(b.reserved, 0); }, 10_000, '$0.07 settled and no reservation left, with no further request');
    assert.equal(lim.settleCalls, 1, 'both settlements in one script');
  } finally { await lim.close(); }
});
