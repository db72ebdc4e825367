// Fleet mode, response cache: two replicas on one real PostgreSQL + Redis. An answer cached
// through one replica is a hit on the other (exact and semantic), never across the scopes the
// embedded cache separates (agent, team); the Redis entries are bounded; Redis down skips the
// cache (a miss, not a 503) while limits still fail closed; Redis round trips per request counted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, privateRedis, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { chat, localServer, until, type LocalServer } from './helpers/e2e.ts';
import { startGateway } from '../src/cli/serve.ts';
import { embedSync } from '../src/cache/test-embedder.ts';
import { FleetCache } from '../src/store/fleet-cache.ts';
import { openFleet } from '../src/store/fleet.ts';
import type { FleetLimiter } from '../src/store/fleet-limits.ts';

let store: FleetTestStore;
let fake: FakeUpstream;
let embedder: LocalServer;
let dir: string;
let configPath: string;
let replicaSet: Replicas;
let replicas: Replicas['replicas'];
let urls: string[];
let keys: Record<string, string>;

function agent(name: string, team: string): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: ['by-agent', 'by-team', 'semantic', 'embed', 'budgeted', 'team-priced', 'embed-cached'] } }),
  ];
}

before(async () => {
  store = await fleetStore();
  fake = await startFakeUpstream();
  embedder = await localServer((req, res, body) => {
    const b = JSON.parse(body) as { input: string | string[]; model: string };
    const inputs = Array.isArray(b.input) ? b.input : [b.input];
    const data = inputs.map((text, index) => ({ object: 'embedding', index, embedding: Array.from(embedSync(String(text))) }));
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', model: b.model, data, usage: { prompt_tokens: 1, total_tokens: 1 } }));
  });
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-cache-'));
  configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Provider', 'local-embed', { type: 'openai-compatible', baseUrl: `${embedder.url}/v1` }),
    doc('Model', 'by-agent', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { free: true }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'by-team', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { free: true }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'team' } }),
    doc('Model', 'budgeted', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 1, output_per_1m: 2 }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'local-embed', model: 'test-embedder' }], pricing: { free: true } }),
    doc('Model', 'semantic', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { free: true }, cache: { mode: 'semantic', threshold: 0.8, embedding_model: 'embed', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'embed-cached', { kind: 'embeddings', targets: [{ provider: 'local-embed', model: 'test-embedder' }], pricing: { input_per_1m: 1, output_per_1m: 0 }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'team-priced', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 1, output_per_1m: 2 }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'team' } }),
    ...agent('red-1', 'red'), ...agent('red-2', 'red'), ...agent('blue-1', 'blue'), ...agent('green-rich', 'green'), ...agent('green-poor', 'green'),
    doc('AgentPolicy', 'spend', { identity: { team: 'red' }, models: { budget: { daily_usd: 100 } } }),
    // Less than one call's worst case (4096 output tokens at $2 per 1M): only $0 hits get through.
    doc('AgentPolicy', 'poor', { identity: { agent: 'green-poor' }, models: { budget: { daily_usd: 0.001 } } }),
  ));
  replicaSet = await startReplicas({ store, configPath, dir, agents: ['red-1', 'red-2', 'blue-1', 'green-rich', 'green-poor'] });
  ({ replicas, urls, keys } = replicaSet);
});

after(async () => {
  await replicaSet?.close();
  await fake?.close();
  await embedder?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const upstreamCalls = () => fake.requests.filter((r) => r.path === '/v1/chat/completions').length;
const cacheHeader = async (url: string, agent: string, model: string, prompt: string): Promise<string> => {
  const r = await chat(url, keys[agent], model, prompt);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  return r.headers.get('x-aam-cache') ?? '';
};

test('exact: cached through one replica, a hit on the other; never across agents (scope agent) or teams (scope team)', async () => {
  fake.reset();
  assert.equal(await cacheHeader(urls[0], 'red-1', 'by-agent', 'fleet exact one'), 'miss');
  assert.equal(await cacheHeader(urls[1], 'red-1', 'by-agent', 'fleet exact one'), 'hit');
  assert.equal(upstreamCalls(), 1);
  assert.equal(await cacheHeader(urls[1], 'red-2', 'by-agent', 'fleet exact one'), 'miss', 'another agent of the team: scope agent');
  // Team scope: red-2 (same team) hits red-1's answer on the other replica; blue-1 does not.
  assert.equal(await cacheHeader(urls[1], 'red-1', 'by-team', 'fleet team one'), 'miss');
  assert.equal(await cacheHeader(urls[0], 'red-2', 'by-team', 'fleet team one'), 'hit');
  assert.equal(await cacheHeader(urls[0], 'blue-1', 'by-team', 'fleet team one'), 'miss', 'another team');
  assert.equal(upstreamCalls(), 4);
});

test('semantic: a paraphrase on the other replica hits; another agent does not', async () => {
  fake.reset();
  assert.equal(await cacheHeader(urls[0], 'red-1', 'semantic', 'What is the capital of France?'), 'miss');
  // Replica 1 learns the entry from the shared stream (milliseconds); wait for it rather than race it.
  await until(() => replicas[1].rt.cache.semantic.stats().entries >= 1, 10_000, 'the semantic entry on replica 1');
  assert.equal(await cacheHeader(urls[1], 'red-1', 'semantic', "what's France's capital city"), 'hit');
  assert.equal(await cacheHeader(urls[1], 'red-2', 'semantic', "what's France's capital city"), 'miss', 'scope agent');
  assert.equal(upstreamCalls(), 2);
});

test('Redis round trips per model request on a cached route: one (the admission script reads the cache entry); a caller with no limits: the cache read alone', async () => {
  const cacheA = (replicas[0].rt.cache as unknown as { shared: FleetCache }).shared;
  const cacheB = (replicas[1].rt.cache as unknown as { shared: FleetCache }).shared;
  const limA = replicas[0].rt.limiter as FleetLimiter;
  const limB = replicas[1].rt.limiter as FleetLimiter;
  const calls = () => cacheA.calls + cacheB.calls + limA.admitCalls + limB.admitCalls;
  let n = calls();
  assert.equal(await cacheHeader(urls[0], 'red-1', 'budgeted', 'count my round trips'), 'miss');
  assert.equal(calls() - n, 1, 'miss: one admission script, which read the cache too');
  n = calls();
  assert.equal(await cacheHeader(urls[1], 'red-1', 'budgeted', 'count my round trips'), 'hit');
  assert.equal(calls() - n, 1, 'hit on the other replica: the admission script found it (a hit counts against rpm, reserves $0)');
  n = calls();
  assert.equal(await cacheHeader(urls[1], 'red-1', 'budgeted', 'count my round trips'), 'hit');
  assert.equal(calls() - n, 1, 'repeated hit: served from the replica\'s memory copy, only the admission');
  // blue-1 has no budget or rate limit: no admission script, so the cache is read alone.
  n = calls();
  assert.equal(await cacheHeader(urls[0], 'blue-1', 'by-agent', 'count my round trips'), 'miss');
  assert.equal(await cacheHeader(urls[1], 'blue-1', 'by-agent', 'count my round trips'), 'hit');
  assert.equal(calls() - n, 2, 'one GET per request');
});

test('embeddings on a cached route: one Redis round trip per request too (miss on one replica, hit on the other)', async () => {
  const cacheA = (replicas[0].rt.cache as unknown as { shared: FleetCache }).shared;
  const cacheB = (replicas[1].rt.cache as unknown as { shared: FleetCache }).shared;
  const limA = replicas[0].rt.limiter as FleetLimiter;
  const limB = replicas[1].rt.limiter as FleetLimiter;
  const calls = () => cacheA.calls + cacheB.calls + limA.admitCalls + limB.admitCalls;
  const embed = async (url: string) => {
    const r = await fetch(`${url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${keys['red-1']}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'embed-cached', input: 'embed me once' }) });
    assert.equal(r.status, 200, await r.clone().text());
    await r.arrayBuffer();
    return r.headers.get('x-aam-cache');
  };
  let n = calls();
  assert.equal(await embed(urls[0]), 'miss');
  assert.equal(calls() - n, 1, 'miss: the admission script, which read the cache too');
  n = calls();
  assert.equal(await embed(urls[1]), 'hit');
  assert.equal(calls() - n, 1, 'hit on the other replica: found by the admission script');
});

test('a hit the admission script finds in Redis reserves nothing: an agent whose budget cannot cover one call still gets it', async () => {
  fake.reset();
  assert.equal(await cacheHeader(urls[0], 'green-rich', 'team-priced', 'shared by the green team'), 'miss');
  // Replica 1 has never seen it: only Redis has it, and the admission is what reads it.
  const r = await chat(urls[1], keys['green-poor'], 'team-priced', 'shared by the green team');
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.headers.get('x-aam-cache'), 'hit');
  assert.equal(r.headers.get('x-aam-cost-usd'), '0');
  const fresh = await chat(urls[1], keys['green-poor'], 'team-priced', 'not cached anywhere');
  assert.equal(fresh.status, 429, 'a miss must reserve its worst case, which the budget cannot cover');
  assert.equal(upstreamCalls(), 1);
});

test('the Redis cache is bounded: storing past maxEntries/maxBytes evicts the soonest to expire', async () => {
  const fleet = await openFleet({ databaseUrl: store.databaseUrl, redisUrl: store.redisUrl }, { follow: false, migrate: false });
  try {
    const c = new FleetCache(fleet, { maxEntries: 3, maxBytes: 2000 });
    const now = Date.now();
    for (let i = 0; i < 5; i++) c.set(`bound-${i}`, JSON.stringify({ i }), now + 60_000 + i);
    await until(async () => (await c.get('bound-4')) !== null, 5000, 'the last entry');
    const live = await Promise.all([0, 1, 2, 3, 4].map(async (i) => (await c.get(`bound-${i}`)) !== null));
    assert.deepEqual(live, [false, false, true, true, true]);
    c.set('big', 'x'.repeat(1500), now + 120_000);
    await until(async () => (await c.get('big')) !== null, 5000, 'the big entry');
    assert.equal((await c.get('bound-2')) !== null && (await c.get('bound-3')) !== null, false, 'bytes bound evicted older entries');
    c.close();
  } finally { await fleet.close(); }
});

test('Redis down: the cache is skipped (a miss, answered), while a budgeted agent still fails closed (503)', async () => {
  const redis = await privateRedis();
  const own = await fleetStore(redis.url);
  const gw = await startGateway({ configPath, dataDir: join(dir, 'data-down'), port: 0, host: '127.0.0.1', env: { ...process.env, ...own.env, AAM_LOG_LEVEL: 'error' } });
  const url = `http://127.0.0.1:${gw.port}`;
  try {
    const saved = { ...keys };
    keys['red-1'] = (await gw.rt.keyBook.create('red-1')).secret;
    keys['blue-1'] = (await gw.rt.keyBook.create('blue-1')).secret;
    try {
      // blue-1 has no budget or rate limit: nothing but the cache needs Redis for its requests.
      assert.equal(await cacheHeader(url, 'blue-1', 'by-agent', 'before the outage'), 'miss');
      await redis.stop();
      fake.reset();
      assert.equal(await cacheHeader(url, 'blue-1', 'by-agent', 'during the outage'), 'miss');
      assert.equal(await cacheHeader(url, 'blue-1', 'by-agent', 'during the outage'), 'hit', 'this replica\'s own memory copy still answers');
      assert.equal(upstreamCalls(), 1);
      const r = await chat(url, keys['red-1'], 'budgeted', 'during the outage');
      assert.equal(r.status, 503);
      assert.equal((r.json as { error: { code: string } }).error.code, 'store_unavailable');
      await redis.start();
      await until(async () => (await chat(url, keys['red-1'], 'budgeted', 'after the outage')).status === 200, 15_000, 'budgeted route back with Redis');
    } finally { Object.assign(keys, saved); }
  } finally {
    await gw.close();
    await redis.stop();
    await own.drop();
  }
});
