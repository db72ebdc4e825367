// `aam fleet status` against real PostgreSQL + Redis and two real `aam serve` replicas: each
// replica heartbeats (id, host, pid, start, version, config digest); two replicas on different
// configs are flagged as drift (exit 1); a hot reload shows in the next heartbeat; a replica that
// stops leaves the list (one left: no drift, exit 0); a store that does not answer is named and exits 1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, type ServeChild } from './helpers/serve-child.ts';
import { runCli, until } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import type { FleetStatus } from '../src/store/fleet-status.ts';
import { SCHEMA_VERSION } from '../src/store/postgres.ts';

const ADMIN = randomBytes(24).toString('hex');
const config = (agents: string[]) => yaml(...agents.map((a) => doc('Agent', a, { workload: `spiffe://test/agent/${a}`, team: 'qa' })));

let store: FleetTestStore;
let dir: string;
let replicas: ServeChild[] = [];

const status = async (env: Record<string, string> = store.env) => {
  const r = await runCli(['fleet', 'status', '--json'], { env: { ...process.env, ...env } });
  return { code: r.code, s: JSON.parse(r.stdout) as FleetStatus, stderr: r.stderr };
};

before(async () => {
  store = await fleetStore();
  dir = tempDir('aam-fleet-status-');
  replicas = await Promise.all([0, 1].map((i) => {
    // Each replica its own directory (as on its own machine), the config file named alike.
    const data = join(dir, `r${i}`, 'data');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(dir, `r${i}`, 'aam.yaml'), config(i === 0 ? ['a'] : ['a', 'b']));
    return startServeChild({ config: join(dir, `r${i}`, 'aam.yaml'), data, env: { ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_FLEET_HEARTBEAT_MS: '500' } });
  }));
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await store?.drop();
});

test('two replicas on different configs: both seen, drift flagged (exit 1), stores healthy; a reload shows in the next beat', async () => {
  const { code, s } = await status();
  assert.equal(code, 1, 'drift exits 1');
  assert.equal(s.replicas.length, 2);
  for (const r of s.replicas) {
    assert.match(r.id, /^[0-9a-f]{12}$/);
    assert.ok(r.pid > 0 && r.host.length > 0 && Date.parse(r.started_at) > 0);
    assert.equal(r.version, JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
  }
  assert.equal(s.drift, true);
  assert.equal(Object.keys(s.configs).length, 2);
  assert.deepEqual(s.stores, { postgres: { ok: true, schema: SCHEMA_VERSION, known: SCHEMA_VERSION }, redis: { ok: true } });
  const human = await runCli(['fleet', 'status'], { env: { ...process.env, ...store.env } });
  assert.equal(human.code, 1);
  assert.match(human.stdout, /^REPLICA +HOST +PID +VERSION +CONFIG/m);
  assert.match(human.stdout, /config DRIFT: 2 different configs/);
  assert.match(human.stdout, /postgres: ok, schema \d+\nredis: ok/);

  // Replica 1 reloads replica 0's config, at its own path: the same config is no drift.
  const [pid0, pid1] = replicas.map((r) => r.proc.pid);
  const digestOf = (st: FleetStatus, pid: number | undefined) => st.replicas.find((r) => r.pid === pid)?.config;
  writeFileSync(join(dir, 'r1', 'aam.yaml'), config(['a']));
  await until(async () => { const now = await status(); return digestOf(now.s, pid1) === digestOf(now.s, pid0) && now.code === 0 && !now.s.drift; }, 30_000, 'the same config at another path to count as one config (no drift)');
  // Then another config: its next heartbeat carries the new digest, and that is drift again.
  writeFileSync(join(dir, 'r1', 'aam.yaml'), config(['a', 'c']));
  await until(async () => { const now = await status(); return digestOf(now.s, pid1) !== digestOf(now.s, pid0) && digestOf(now.s, pid0) === digestOf(s, pid0) && now.code === 1 && now.s.drift; }, 30_000, 'the reloaded config digest in the heartbeat, flagged as drift');
});

test('a replica that stops leaves the list: at once when it drains (SIGTERM), within 3 beats when killed', async () => {
  const drained = replicas[1];
  drained.proc.kill('SIGTERM');
  await drained.exited;
  const one = await status();
  assert.deepEqual(one.s.replicas.map((r) => r.pid), [replicas[0].proc.pid]);
  assert.deepEqual([one.code, one.s.drift], [0, false], 'one config left: no drift');
  const killed = replicas[0];
  killed.proc.kill('SIGKILL');
  await killed.exited;
  await until(async () => (await status()).s.replicas.length === 0, 15_000, 'the killed replica\'s heartbeat to expire');
  const { code, s } = await status();
  assert.equal(code, 0, 'no replicas is not an error');
  assert.deepEqual(s.configs, {});
});

test('a store that does not answer is named, and exits 1', async () => {
  const { code, s } = await status({ ...store.env, AAM_REDIS_URL: 'redis://127.0.0.1:1' });
  assert.equal(code, 1);
  assert.equal(s.stores.redis.ok, false);
  assert.equal(s.stores.postgres.ok, true);
  const human = await runCli(['fleet', 'status'], { env: { ...process.env, ...store.env, AAM_REDIS_URL: 'redis://127.0.0.1:1' } });
  assert.match(human.stdout, /redis: DOWN \(/);
  const noFleet = await runCli(['fleet', 'status'], { env: { ...process.env, AAM_DATABASE_URL: '', AAM_REDIS_URL: '' } });
  assert.equal(noFleet.code, 1);
  assert.match(noFleet.stderr, /set AAM_DATABASE_URL and AAM_REDIS_URL/);
});
