// Fleet mode, usage: two replicas on one real PostgreSQL + Redis add their usage rollups to the
// fleet's usage_rollup, so `aam usage` (the CLI with AAM_DATABASE_URL) and GET /admin/v1/usage on
// either replica count the calls served by both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { runCli, until } from './helpers/e2e.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';

const ADMIN = randomBytes(24).toString('hex');
let store: FleetTestStore;
let dir: string;
let configPath: string;
const replicas: Running[] = [];
const urls: string[] = [];
let key: string;

before(async () => {
  store = await fleetStore();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-usage-'));
  configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])));
  for (const i of [0, 1]) {
    const r = await startGateway({ configPath, dataDir: join(dir, `data-${i}`), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_LOG_LEVEL: 'error' } });
    replicas.push(r);
    urls.push(`http://127.0.0.1:${r.port}`);
  }
  key = (await replicas[0].rt.keyBook.create('tester')).secret;
  await until(async () => (await fetch(`${urls[1]}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status === 200, 10_000, 'the key on replica 1');
});

after(async () => {
  for (const r of replicas) await r.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function chat(url: string): Promise<void> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 200, await r.text());
}

const adminUsage = async (url: string) => {
  const r = await fetch(`${url}/admin/v1/usage?by=agent&since=1h`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(r.status, 200);
  return ((await r.json()) as { data: Array<{ agent: string; requests: number }> }).data.find((x) => x.agent === 'tester')?.requests ?? 0;
};

test('usage answers fleet-wide: 3 calls on A and 2 on B are 5 in `aam usage` and in the admin API (totals and daily) of either replica', async () => {
  for (let i = 0; i < 3; i++) await chat(urls[0]);
  for (let i = 0; i < 2; i++) await chat(urls[1]);
  // Each replica adds its rollups about once a second, off the request path.
  await until(async () => (await adminUsage(urls[0])) === 5, 10_000, 'replica 0 counting both replicas\' calls');
  assert.equal(await adminUsage(urls[1]), 5);
  const daily = await fetch(`${urls[1]}/admin/v1/usage/daily?by=agent&since=1h`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const days = ((await daily.json()) as { data: Array<{ key: string; requests: number; day: string }> }).data.filter((d) => d.key === 'tester');
  assert.equal(days.reduce((n, d) => n + d.requests, 0), 5, 'the daily series counts both replicas too');
  assert.match(days[0].day, /^\d{4}-\d{2}-\d{2}$/);
  const r = await runCli(['usage', '--json', '--since', '1h', '--config', configPath, '--data', join(dir, 'cli-data')], { env: { ...process.env, ...store.env } });
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as Array<{ agent: string; requests: number; input_tokens: number | null }>;
  const tester = rows.find((x) => x.agent === 'tester');
  assert.equal(tester?.requests, 5, r.stdout);
  assert.equal(typeof tester?.requests, 'number', 'numbers, not numeric strings');
  // Without the fleet URLs the CLI reads its own (empty) data dir: the fleet's usage is only in PostgreSQL.
  const local = await runCli(['usage', '--json', '--since', '1h', '--config', configPath, '--data', join(dir, 'cli-data')]);
  assert.equal(local.code, 0, local.stderr);
  assert.deepEqual(JSON.parse(local.stdout), []);
});
