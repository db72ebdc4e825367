// `aam policy diff --against-trail` in fleet mode: with AAM_DATABASE_URL set it replays every
// replica's recorded decisions straight from PostgreSQL (no `aam audit export` file in between).
// Real PostgreSQL (npm test starts it); the events are written by the fleet trail's own writer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { migrate } from '../src/store/postgres.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';

const common = [
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'fast', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
];
const policy = (models: string[]) => doc('AgentPolicy', 'analyst', { identity: { agent: 'analyst' }, models: { allow: models } });

let store: FleetTestStore;
let sql: postgres.Sql;
let dir: string;
let oldPath: string;
let newPath: string;
before(async () => {
  store = await fleetStore();
  sql = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  await migrate(sql);
  dir = tempDir('aam-fleet-policy-diff-');
  oldPath = join(dir, 'old.yaml');
  newPath = join(dir, 'new.yaml');
  writeFileSync(oldPath, yaml(...common, policy(['fast', 'big'])));
  writeFileSync(newPath, yaml(...common, policy(['fast'])));
  // Two replicas' chains, as a fleet leaves them: "big" allowed twice on one, "fast" on the other; one old event out of the window.
  const identity = { spiffe_id: 'spiffe://prod/agent/analyst', agent: 'analyst', team: 'finance', method: 'virtual_key' };
  const allow = (route: string, request: string, time?: string) => ({ type: 'model_call', request_id: request, ...(time ? { time } : {}), identity,
    policy: { name: 'analyst', version: 'v', rule: 'models.allow[0]', decision: 'allow', reason: 'allowed' }, model: { route } });
  for (const [replica, events] of [['a', [allow('big', 'r1'), allow('big', 'r2')]], ['b', [allow('fast', 'r3'), allow('big', 'r0', '2020-01-01T00:00:00.000Z')]]] as const) {
    const log = await openFleetAuditLog(sql, { replica: `${replica}-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    for (const e of events) log.record(e);
    await log.close();
  }
});
after(async () => {
  await sql?.end();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('policy diff --against-trail with AAM_DATABASE_URL replays every replica\'s decisions from PostgreSQL; exit 1', async () => {
  const r = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--json'], { env: { ...process.env, ...store.env } });
  assert.equal(r.code, 1, r.stderr);
  const out = JSON.parse(r.stdout) as { replayed: number; changed: number; changes: Array<{ agent: string; target: string; count: number }> };
  assert.equal(out.replayed, 3, 'both replicas\' decisions in the window; the 2020 one is outside it');
  assert.equal(out.changed, 2);
  assert.deepEqual(out.changes.map((c) => [c.agent, c.target, c.count]), [['analyst', 'big', 2]]);
  // The same config changes nothing.
  const same = await runCli(['policy', 'diff', oldPath, oldPath, '--against-trail', '7d'], { env: { ...process.env, ...store.env } });
  assert.equal(same.code, 0, same.stderr + same.stdout);
});

test('policy diff --against-trail (negative): a fleet database that does not answer is exit 2 naming AAM_DATABASE_URL', async () => {
  const r = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d'], { env: { ...process.env, ...store.env, AAM_DATABASE_URL: 'postgres://aam:wrong@127.0.0.1:1/none' } });
  assert.equal(r.code, 2);
  // The words every command uses for a database it cannot reach, then what to replay instead.
  assert.match(r.stderr, /cannot use the fleet database \(AAM_DATABASE_URL\):.*PostgreSQL is unreachable.*; or replay an `aam audit export` file with --file/);
});
