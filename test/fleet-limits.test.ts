// Fleet mode, budgets and rate limits: three real `aam serve` replicas on one real PostgreSQL +
// Redis admit exactly what one process admits. A burst of 64 spread over the replicas never
// spends past the budget (each call reserves its worst case in one Redis script), rpm holds
// fleet-wide, a replica killed mid-request leaks its reservation only until it expires, and a
// Redis outage answers 503 store_unavailable (never an unchecked 200) and heals by itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, keyOnEveryReplica, privateRedis, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, heldUpstream, type ServeChild } from './helpers/serve-child.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, startTestGateway } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';

const ADMIN = randomBytes(24).toString('hex');
// 100 output tokens at $1000 per 1M = $0.10 a call, and max_tokens 100 reserves exactly that.
const PRICE = { input_per_1m: 0, output_per_1m: 1000 };

function configFor(upstream: string, budgetUsd: number, rpm = 20): string {
  return yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upstream}/v1` }),
    doc('Model', 'priced', { targets: [{ provider: 'up', model: 'm' }], pricing: PRICE }),
    doc('Model', 'free', { targets: [{ provider: 'up', model: 'm' }] }),
    doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
    doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['priced'], budget: { daily_usd: budgetUsd, alert_at: [50, 100] } } }),
    doc('Agent', 'chatty', { workload: 'spiffe://test/agent/chatty', team: 'qa' }),
    doc('AgentPolicy', 'chatty', { identity: { agent: 'chatty' }, models: { allow: ['free'], rate: { rpm } } }),
  );
}

/** OpenAI-shaped upstream: 100 completion tokens per call, after a short delay so a burst overlaps. */
async function pricedUpstream(): Promise<LocalServer & { calls: number }> {
  const s = await localServer(async (_req, res) => {
    up.calls++;
    await new Promise((r) => setTimeout(r, 30));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 100, total_tokens: 105 } }));
  });
  const up = Object.assign(s, { calls: 0 });
  return up;
}

async function call(url: string, key: string, model: string): Promise<{ status: number; code?: string }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: r.status, code: body.error?.code };
}

/** A key created on `url`, once every replica accepts it (propagation takes up to ~1 s). */
async function newKey(url: string, agent: string, others: string[] = replicas.map((r) => r.url)): Promise<string> {
  return keyOnEveryReplica([url, ...others.filter((u) => u !== url)], agent, ADMIN);
}

/** c requests at once, spread round-robin over the urls; counts by status/code. */
async function burst(urls: string[], key: string, model: string, c: number): Promise<Record<string, number>> {
  const out = await Promise.all(Array.from({ length: c }, (_, i) => call(urls[i % urls.length], key, model)));
  const counts: Record<string, number> = {};
  for (const r of out) { const k = r.status === 200 ? '200' : `${r.status} ${r.code}`; counts[k] = (counts[k] ?? 0) + 1; }
  return counts;
}

async function settledSpend(databaseUrl: string, key: string): Promise<number> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [r] = await sql<Array<{ usd: number | null }>>`SELECT sum(spent_usd) AS usd FROM budget_spend WHERE key = ${key} AND period = 'daily'`;
    return r.usd ?? 0;
  } finally { await sql.end(); }
}

let store: FleetTestStore;
let dir: string;
let upstream: LocalServer & { calls: number };
let replicas: ServeChild[] = [];

before(async () => {
  store = await fleetStore();
  dir = tempDir('aam-fleet-limits-');
  upstream = await pricedUpstream();
  const config = join(dir, 'aam.yaml');
  writeFileSync(config, configFor(upstream.url, 1));
  replicas = await Promise.all([0, 1, 2].map((i) => {
    const data = join(dir, `data-${i}`);
    mkdirSync(data);
    return startServeChild({ config, data, env: { ...store.env, AAM_ADMIN_TOKEN: ADMIN } });
  }));
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await upstream.close();
  await store.drop();
});

test('budget: a burst of 64 over 3 replicas admits exactly what one process admits and never overspends', async () => {
  const key = await newKey(replicas[0].url, 'spender');
  upstream.calls = 0;
  const fleet = await burst(replicas.map((r) => r.url), key, 'priced', 64);
  assert.deepEqual(fleet, { 200: 10, '429 budget_exceeded': 54 }, 'a $1 budget at $0.10 a call admits exactly 10');
  assert.equal(upstream.calls, 10, 'refused calls never reached the upstream');
  // Settled spend reaches PostgreSQL (batched about once a second): exactly the budget.
  await until(async () => Math.abs(await settledSpend(store.databaseUrl, 'agent:spender') - 1) < 1e-9, 10_000, 'settled spend of $1 in PostgreSQL');
  // alert_at 50 and 100: each fires once for the whole fleet, on whichever replica crossed it.
  const alerts = (t: number) => replicas.reduce((n, r) => n + r.stderr().split('\n').filter((l) => l.includes('"event":"budget_alert"') && l.includes(`"threshold":${t},`)).length, 0);
  await until(() => alerts(50) > 0 && alerts(100) > 0, 10_000, 'the 50 % and 100 % budget alerts');
  assert.deepEqual([alerts(50), alerts(100)], [1, 1]);

  // The same burst against one embedded process: the same answers.
  const one = await startTestGateway(configFor(upstream.url, 1));
  try {
    assert.deepEqual(await burst([one.url], one.key('spender'), 'priced', 64), fleet);
  } finally { await one.close(); }
});

test('rpm: at most the limit per window fleet-wide (20 of 64, wherever they land)', async () => {
  const key = await newKey(replicas[1].url, 'chatty');
  const counts = await burst(replicas.map((r) => r.url), key, 'free', 64);
  assert.deepEqual(counts, { 200: 20, '429 rate_limited': 44 });
});

test('a replica killed mid-request holds its reservation only until it expires', async () => {
  const held = await heldUpstream();
  const d = tempDir('aam-fleet-crash-');
  const config = join(d, 'aam.yaml');
  // Budget for exactly one call; reservations expire after 2 s.
  writeFileSync(config, configFor(held.url, 0.1));
  const mk = (i: number) => { mkdirSync(join(d, `data-${i}`)); return startServeChild({ config, data: join(d, `data-${i}`), env: { ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_RESERVATION_TTL_MS: '2000' } }); };
  const started = await Promise.allSettled([mk(0), mk(1)]);
  const up = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  if (up.length < 2) {
    await Promise.all(up.map((c) => c.stop()));
    await held.close();
    throw (started.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
  }
  const [a, b] = up;
  try {
    // A fresh budget key for this test: the agent's spend so far is in another window of keys.
    const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
    await sql`DELETE FROM budget_spend WHERE key = 'agent:spender'`;
    await sql.end();
    const { Redis } = await import('ioredis');
    const r = new Redis(store.redisUrl);
    const prefix = `aam:{${new URL(store.databaseUrl).pathname.slice(1)}}:`;
    await r.del(`${prefix}b:agent:spender`, `${prefix}bq:agent:spender`);
    r.disconnect();

    const key = await newKey(a.url, 'spender', [b.url]);
    const inFlight = call(a.url, key, 'priced').catch(() => null);
    await until(() => held.received === 1, 30_000, 'the call to be in flight on replica A');
    a.proc.kill('SIGKILL');
    await a.exited;
    void inFlight;
    const t0 = Date.now();
    assert.deepEqual(await call(b.url, key, 'priced'), { status: 429, code: 'budget_exceeded' }, 'the dead replica\'s reservation still counts');
    held.release();
    await until(async () => (await call(b.url, key, 'priced')).status === 200, 15_000, 'the reservation to expire');
    assert.ok(Date.now() - t0 >= 1000, 'not before it expired');
  } finally { await a.stop(); await b.stop(); await held.close(); }
});

test('/readyz asks the stores: a Redis frozen while the replica is idle is named within ~1 s (nothing in flight would notice it); thawed, ready again', async () => {
  const redis = await privateRedis();
  const own = await fleetStore(redis.url);
  const d = tempDir('aam-fleet-frozen-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, configFor(upstream.url, 0.3));
  const gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...own.env, AAM_LOG_LEVEL: 'error' } });
  const url = `http://127.0.0.1:${gw.port}`;
  try {
    assert.equal((await fetch(`${url}/readyz`)).status, 200);
    redis.pause();
    const t0 = performance.now();
    const ready = await fetch(`${url}/readyz`);
    const ms = performance.now() - t0;
    const body = (await ready.json()) as { down: string[]; store: { stores: { redis: { error: string } } } };
    assert.equal(ready.status, 503, JSON.stringify(body));
    assert.deepEqual(body.down, ['redis']);
    assert.match(body.store.stores.redis.error, /no answer within 1000 ms/);
    assert.ok(ms < 1_500, `answered in ${ms.toFixed(0)} ms`);
    redis.resume();
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, 15_000, '/readyz to recover');
  } finally {
    redis.resume();
    await gw.close();
    await redis.stop();
    await own.drop();
  }
});

test('Redis down: 503 store_unavailable (never an unchecked 200), counted in aam_limited_total, /readyz names redis; back by itself, budget still enforced', async () => {
  const redis = await privateRedis();
  const own = await fleetStore(redis.url);
  const d = tempDir('aam-fleet-redis-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, configFor(upstream.url, 0.3));
  const gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...own.env, AAM_LOG_LEVEL: 'error' } });
  const url = `http://127.0.0.1:${gw.port}`;
  try {
    const key = (await gw.rt.keyBook.create('spender')).secret;
    assert.equal((await call(url, key, 'priced')).status, 200);
    assert.equal((await call(url, key, 'priced')).status, 200);
    await until(async () => Math.abs(await settledSpend(own.databaseUrl, 'agent:spender') - 0.2) < 1e-9, 10_000, 'spend of $0.20 settled in PostgreSQL');

    await redis.stop();
    const down = await call(url, key, 'priced');
    assert.deepEqual(down, { status: 503, code: 'store_unavailable' });
    // Counted where an operator looks: such a request reaches no upstream, so before this no
    // counter moved and the model plane's metrics only went quiet during the outage.
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^aam_limited_total\{code="store_unavailable",agent="spender"\} 1$/m, metrics.split('\n').filter((l) => l.startsWith('aam_limited')).join('\n'));
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(((await ready.json()) as { down: string[] }).down, ['redis']);

    // Redis returns empty: the spend settled in PostgreSQL is loaded again, so $0.10 is left.
    await redis.start();
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, 15_000, '/readyz to recover');
    assert.equal((await call(url, key, 'priced')).status, 200);
    assert.deepEqual(await call(url, key, 'priced'), { status: 429, code: 'budget_exceeded' });
  } finally {
    await gw.close();
    await redis.stop();
    await own.drop();
  }
});
