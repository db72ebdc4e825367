// Fleet mode, tool plane: tools[].rate and tools[].budget hold fleet-wide. Two real `aam serve`
// replicas on one real PostgreSQL + Redis admit exactly what one process admits, wherever the
// calls land, and a Redis outage refuses tool calls with 503 store_unavailable (never an
// unchecked call upstream), healing by itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fleetStore, keyOnEveryReplica, privateRedis, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, type ServeChild } from './helpers/serve-child.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';
import { connectClient } from './helpers/mcp.ts';
import type { TestGateway } from './helpers/gateway.ts';
import { startHttpFixture, STDIO_TIMEOUT_MS, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

const ADMIN = randomBytes(24).toString('hex');

function configFor(api: string, mcp?: string): string {
  return yaml(
    ...(mcp ? [doc('McpServer', 'web', { transport: 'streamable-http', url: mcp, resource: 'salesforce.accounts', timeout_ms: STDIO_TIMEOUT_MS, tools: { read_account: { action: 'read' } } })] : []),
    doc('HttpTool', 'mail', { baseUrl: api, resource: 'mail', actions: {
      send: { method: 'POST', path: '/send' }, list: { method: 'GET', path: '/messages' },
    } }),
    doc('Agent', 'mailer', { workload: 'spiffe://test/agent/mailer', team: 'ops' }),
    doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, tools: [
      { resource: 'mail', actions: ['list'], rate: { rpm: 5 } },
      { resource: 'mail', actions: ['send'], budget: { calls_per_day: 5 } },
      { resource: 'salesforce.accounts', actions: ['read'], rate: { rpm: 100 } },
    ] }),
  );
}

/** A key created on `url`, once every replica accepts it (propagation takes up to ~1 s). */
async function newKey(url: string, agent: string): Promise<string> {
  return keyOnEveryReplica([url, ...replicas.map((r) => r.url).filter((u) => u !== url)], agent, ADMIN);
}

async function callTool(url: string, key: string, action: 'list' | 'send'): Promise<string> {
  const r = await fetch(`${url}/tools/mail/${action}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string } };
  return r.status === 200 ? '200' : `${r.status} ${body.error?.code}`;
}

/** n calls at once, spread round-robin over the urls; counts by status/code. */
async function spread(urls: string[], key: string, action: 'list' | 'send', n: number): Promise<Record<string, number>> {
  const out = await Promise.all(Array.from({ length: n }, (_, i) => callTool(urls[i % urls.length], key, action)));
  const counts: Record<string, number> = {};
  for (const k of out) counts[k] = (counts[k] ?? 0) + 1;
  return counts;
}

let store: FleetTestStore;
let api: LocalServer & { calls: number };
let replicas: ServeChild[] = [];

before(async () => {
  store = await fleetStore();
  const dir = tempDir('aam-fleet-tools-');
  const s = await localServer((_req, res) => { api.calls++; res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'); });
  api = Object.assign(s, { calls: 0 });
  const config = join(dir, 'aam.yaml');
  writeFileSync(config, configFor(api.url));
  replicas = await Promise.all([0, 1].map((i) => {
    const data = join(dir, `data-${i}`);
    mkdirSync(data);
    return startServeChild({ config, data, env: { ...store.env, AAM_ADMIN_TOKEN: ADMIN } });
  }));
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await api?.close();
  await store?.drop();
});

test('tools[].rate: rpm 5 holds fleet-wide (12 calls over 2 replicas: exactly 5 reach the tool)', async () => {
  const key = await newKey(replicas[0].url, 'mailer');
  api.calls = 0;
  assert.deepEqual(await spread(replicas.map((r) => r.url), key, 'list', 12), { 200: 5, '429 rate_limited': 7 });
  assert.equal(api.calls, 5, 'refused calls never reached the tool');
});

test('tools[].budget: calls_per_day 5 holds fleet-wide (12 calls over 2 replicas: exactly 5)', async () => {
  const key = await newKey(replicas[1].url, 'mailer');
  api.calls = 0;
  assert.deepEqual(await spread(replicas.map((r) => r.url), key, 'send', 12), { 200: 5, '429 budget_exceeded': 7 });
  assert.equal(api.calls, 5);
  // Spent for the day on every replica, with another key of the same agent too.
  const other = await newKey(replicas[0].url, 'mailer');
  assert.deepEqual(await spread(replicas.map((r) => r.url), other, 'send', 2), { '429 budget_exceeded': 2 });
});

test('Redis down: tool calls and MCP sessions get 503 store_unavailable (never forwarded unchecked; MCP: -32603 naming the store); back by itself', async () => {
  const mcp: RunningFixture = await startHttpFixture();
  const redis = await privateRedis();
  const own = await fleetStore(redis.url);
  const d = tempDir('aam-fleet-tools-redis-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, configFor(api.url, mcp.url));
  const gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...own.env, AAM_LOG_LEVEL: 'error' } });
  const url = `http://127.0.0.1:${gw.port}`;
  try {
    const key = (await gw.rt.keyBook.create('mailer')).secret;
    assert.equal(await callTool(url, key, 'send'), '200');
    const before = await connectClient({ url } as TestGateway, key);
    const sid = before.transport.sessionId!;
    await redis.stop();
    api.calls = 0;
    const r = await fetch(`${url}/tools/mail/list`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
    const j = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(j.error.code, 'store_unavailable');
    assert.match(j.error.message, /Redis .* is unavailable/);
    assert.equal(await callTool(url, key, 'send'), '503 store_unavailable');
    assert.equal(api.calls, 0, 'nothing reached the tool while its limits could not be checked');
    // An MCP session (its owner is in the fleet's session registry) cannot be checked: 503, the store named.
    const r2 = await fetch(`${url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'web__read_account', arguments: { id: 'a1' } } }) });
    assert.equal(r2.status, 503);
    assert.equal(r2.headers.get('retry-after'), '1');
    const e = ((await r2.json()) as { error: { code: number; message: string; data: unknown } }).error;
    assert.equal(e.code, -32603);
    assert.match(e.message, /Redis .* is unavailable/);
    assert.deepEqual(e.data, { code: 'store_unavailable', retry_after_seconds: 1, store: 'redis' }, 'the contract\'s code, as on every other plane');
    await before.client.close();
    // MCP 2026 has no session: the tool rule's own rpm (tool-deps' admission) is what cannot be counted.
    const r4 = await fetch(`${url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'web__read_account' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'web__read_account', arguments: { id: 'a1' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' } } } }) });
    const t4 = await r4.text(); assert.equal(r4.status, 503, t4); // the same HTTP status as a session's (the Contract's 503)
    assert.equal(r4.headers.get('retry-after'), '1');
    const e4 = (JSON.parse(t4) as { error: { code: number; message: string; data: unknown } }).error;
    assert.equal(e4.code, -32603);
    assert.match(e4.message, /Redis .* is unavailable/);
    assert.deepEqual(e4.data, { code: 'store_unavailable', retry_after_seconds: 1, store: 'redis' }, 'the same refusal as a session\'s');
    // A new session cannot be opened either (its caps are counted in Redis).
    const r3 = await fetch(`${url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }) });
    assert.equal(r3.status, 503);
    assert.equal(((await r3.json()) as { error: { data: { code: string } } }).error.data.code, 'store_unavailable');
    await redis.start();
    await until(async () => (await callTool(url, key, 'list')) === '200', 15_000, 'tool calls to recover with Redis');
    // This Redis came back empty, so the old session is gone (like an idle one); a new one works.
    const { client } = await connectClient({ url } as TestGateway, key);
    try {
      assert.ok(!(await client.callTool({ name: 'web__read_account', arguments: { id: 'a1' } })).isError, 'MCP calls recover too');
    } finally { await client.close(); }
  } finally {
    await mcp.close();
    await gw.close();
    await redis.stop();
    await own.drop();
  }
});
