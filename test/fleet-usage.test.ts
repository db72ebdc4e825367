// Fleet mode, usage: two replicas on one real PostgreSQL + Redis add their usage rollups to the
// fleet's usage_rollup, so `aam usage` (the CLI with AAM_DATABASE_URL) and GET /admin/v1/usage on
// either replica count the calls served by both; so does the console's spend per agent (budget live
// totals from Redis, 30-day usage from the rollups).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import postgres from 'postgres';
import { join } from 'node:path';
import { fleetStore, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { localServer, runCli, until, type LocalServer } from './helpers/e2e.ts';

const ADMIN = randomBytes(24).toString('hex');
let store: FleetTestStore;
let dir: string;
let configPath: string;
let replicaSet: Replicas;
let urls: string[];
let key: string;
let upstream: LocalServer;

before(async () => {
  store = await fleetStore();
  // 100 completion tokens at $1000 per 1M: $0.10 a call on the priced route.
  upstream = await localServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    // Anthropic (the 'cached' route): a prompt-cache write of 1200 tokens and a read of 800.
    if (req.url === '/v1/messages') {
      res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null,
        usage: { input_tokens: 5, output_tokens: 10, cache_creation_input_tokens: 1200, cache_read_input_tokens: 800 } }));
      return;
    }
    res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 100, total_tokens: 105 } }));
  });
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-usage-'));
  configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upstream.url}/v1` }),
    doc('Model', 'priced', { targets: [{ provider: 'up', model: 'm' }], pricing: { input_per_1m: 0, output_per_1m: 1000 } }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${upstream.url}/v1` }),
    doc('Model', 'cached', { targets: [{ provider: 'ant', model: 'claude-sonnet-4-5' }] }),
    ...agentDocs(['one', 'priced', 'cached'], { budget: { daily_usd: 100 } })));
  replicaSet = await startReplicas({ store, configPath, dir, agents: ['tester'], env: { AAM_ADMIN_TOKEN: ADMIN } });
  ({ urls, keys: { tester: key } } = replicaSet);
});

after(async () => {
  await replicaSet?.close();
  await store?.drop();
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function chat(url: string, model = 'one'): Promise<void> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
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
  // Without the fleet URLs the CLI reads a data dir, and this one holds nothing: it says so (before: [], exit 0).
  const local = await runCli(['usage', '--json', '--since', '1h', '--config', configPath, '--data', join(dir, 'cli-data')]);
  assert.equal(local.code, 1, local.stdout);
  assert.match(local.stderr, /no aam data in .*cli-data \(no aam\.db\): give the gateway's data dir \(--data or AAM_DATA_DIR\), or a fleet's AAM_DATABASE_URL and AAM_REDIS_URL/);
});

interface AgentRow { budgets: Array<{ key: string; spent: { daily: number; monthly: number; reserved: number } }>; usage_30d: { cost_usd: number } | null; last_model_call: string | null }
const agentRow = async (url: string): Promise<AgentRow> => {
  const r = await fetch(`${url}/admin/v1/agents`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(r.status, 200);
  return ((await r.json()) as { data: Array<AgentRow & { name: string }> }).data.find((a) => a.name === 'tester')!;
};

test('the console\'s spend per agent is fleet-wide: $0.10 on A and $0.20 on B are $0.30 on either replica (budget live total, 30-day usage)', async () => {
  await chat(urls[0], 'priced');
  await chat(urls[1], 'priced');
  await chat(urls[1], 'priced');
  const near = (a: number | undefined, b: number) => a !== undefined && Math.abs(a - b) < 1e-6;
  // Settlements reach Redis within the settle delay, rollups PostgreSQL about once a second.
  await until(async () => (await Promise.all(urls.map(agentRow))).every((a) => near(a.budgets[0]?.spent.daily, 0.3) && near(a.usage_30d?.cost_usd, 0.3)),
    10_000, 'both replicas showing $0.30 spent');
  for (const url of urls) {
    const a = await agentRow(url);
    assert.equal(a.budgets[0].key, 'agent:tester');
    assert.ok(near(a.budgets[0].spent.monthly, 0.3) && a.budgets[0].spent.reserved === 0, JSON.stringify(a.budgets));
    assert.match(String(a.last_model_call), /^\d{4}-/);
  }
});

test('prompt-cache reads and writes in the fleet rollups: `aam usage` (table and JSON) and the admin API show them; rows from before the column read as 0', async () => {
  // A row as schema 12 wrote it (no cache_write_tokens): NULL, read as 0.
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`INSERT INTO usage_rollup (minute, agent, team, key_id, route, provider, model, status, stream, cache, requests, input_tokens, output_tokens, cached_tokens, cost_usd, unknown_cost_requests, latency_ms_sum, latency_ms_max)
      VALUES (${Math.floor(Date.now() / 60_000) * 60_000}, 'old-agent', '', '', 'cached', 'ant', 'claude-sonnet-4-5', 200, 0, '', 1, 100, 10, 40, 0.001, 0, 5, 5)`;
  } finally { await sql.end(); }
  const r = await fetch(`${urls[0]}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'cached', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(r.status, 200, await r.text());
  const byRoute = async () => {
    const res = await fetch(`${urls[1]}/admin/v1/usage?by=route&since=1h`, { headers: { authorization: `Bearer ${ADMIN}` } });
    return ((await res.json()) as { data: Array<{ route: string; requests: number; cache_read_tokens: number; cache_write_tokens: number }> }).data.find((x) => x.route === 'cached');
  };
  await until(async () => (await byRoute())?.requests === 2, 10_000, 'the call in the fleet rollups');
  const row = await byRoute();
  assert.deepEqual([row?.cache_read_tokens, row?.cache_write_tokens], [840, 1200], 'the old row counts 40 reads and no writes');
  const cli = ['usage', '--since', '1h', '--by', 'route', '--config', configPath, '--data', join(dir, 'cli-data')];
  const json = await runCli([...cli, '--json'], { env: { ...process.env, ...store.env } });
  assert.equal(json.code, 0, json.stderr);
  const mine = (JSON.parse(json.stdout) as Array<{ route: string; cache_read_tokens: number; cache_write_tokens: number }>).find((x) => x.route === 'cached');
  assert.deepEqual([mine?.cache_read_tokens, mine?.cache_write_tokens], [840, 1200]);
  const table = await runCli(cli, { env: { ...process.env, ...store.env } });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /CACHE_READ\s+CACHE_WRITE/);
  assert.match(table.stdout, /^cached\s+2\s+\d+\s+\d+\s+840\s+1200\s/m);
});
