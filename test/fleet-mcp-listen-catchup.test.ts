// Fleet mode, a 2026-07-28 subscriptions/listen stream that drops on one replica (real PostgreSQL +
// Redis, two replicas, a conformant listen client, an MCP 2026-07-28 upstream): while its caller is
// away, replica A holds its upstream listening and the upstream announces list changes and resource
// updates; the caller listens again through replica B (no sticky sessions) and B sends it what it
// missed right after the acknowledgement: one per list and URI, only what it asks for (not prompts),
// once (a further listen on A gets nothing of it). Another identity listening on B meanwhile gets
// nothing of it; and once the grace has run out after a stream dropped, a new listen gets nothing.
// Redis (this file's own) down: a listen is refused with 503 store_unavailable, as session requests
// are, not answered without what it may have missed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, privateRedis, startReplicas, type FleetTestStore, type PrivateRedis, type Replicas } from './helpers/fleet.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { until, listenLoopback, closeAll } from './helpers/e2e.ts';
import { sseMessages } from './helpers/mcp.ts';

const VERSION = '2026-07-28';
/** AAM_MCP_STREAM_GRACE of both replicas. */
const GRACE_MS = 2000;

let redis: PrivateRedis;
let store: FleetTestStore;
let dir: string;
let fleet: Replicas;
let upstream: Server;
/** The upstream's tools (aam relists on a tools list_changed and tells its callers only when they differ). */
let tools = ['lookup'];
/** aam's listen streams on the upstream (one per replica and caller that listens), with what each names. */
const streams: Array<{ notifications: Record<string, unknown>; write(msg: Record<string, unknown>): void; closed: boolean }> = [];
const openStreams = () => streams.filter((st) => !st.closed);
/** The upstream says a list changed, on every listen stream. */
const push = (list: string) => { for (const st of openStreams()) st.write({ jsonrpc: '2.0', method: `notifications/${list}/list_changed`, params: {} }); };
/** The upstream says `uri` changed, on each listen stream naming it. */
const pushUpdated = (uri: string) => {
  for (const st of openStreams()) if ((st.notifications.resourceSubscriptions as string[] | undefined)?.includes(uri)) st.write({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri } });
};
const watchingUri = (uri: string) => openStreams().some((st) => (st.notifications.resourceSubscriptions as string[] | undefined)?.includes(uri));

async function startUpstream(): Promise<string> {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, unknown> & { _meta?: Record<string, unknown> } };
    const reply = (status: number, msg: Record<string, unknown>) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, ...msg })); };
    const ok = (result: Record<string, unknown>) => reply(200, { result: { resultType: 'complete', ...result } });
    if (body.params?._meta?.['io.modelcontextprotocol/protocolVersion'] !== VERSION) return reply(400, { error: { code: -32022, message: 'Unsupported protocol version' } });
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: { listChanged: true }, prompts: { listChanged: true }, resources: { subscribe: true, listChanged: true } } });
    if (body.method === 'tools/list') return ok({ tools: tools.map((name) => ({ name, inputSchema: { type: 'object', properties: {} } })), ttlMs: 600_000, cacheScope: 'public' });
    if (body.method === 'prompts/list') return ok({ prompts: [{ name: 'brief' }], ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'resources/list') return ok({ resources: [{ uri: 'memo://one', name: 'one' }, { uri: 'memo://two', name: 'two' }], ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'subscriptions/listen') {
      const notifications = (body.params.notifications ?? {}) as Record<string, unknown>;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const st = { notifications, closed: false, write: (msg: Record<string, unknown>) => { res.write(`data: ${JSON.stringify(msg)}\n\n`); } };
      streams.push(st);
      res.on('close', () => { st.closed = true; });
      st.write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications, _meta: { 'io.modelcontextprotocol/subscriptionId': body.id } } });
      return;
    }
    return reply(404, { error: { code: -32601, message: `Method not found: ${body.method}` } });
  });
  return listenLoopback(upstream, '/mcp');
}

before(async () => {
  redis = await privateRedis();
  store = await fleetStore(redis.url);
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-listen-'));
  const url = await startUpstream();
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('McpServer', 'memo', { transport: 'streamable-http', url, timeout_ms: 60_000 }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'pa', { identity: { workload: 'spiffe://test/agent/a' }, tools: [{ resource: 'memo', actions: ['*'] }] }),
    doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }),
    doc('AgentPolicy', 'pb', { identity: { workload: 'spiffe://test/agent/b' }, tools: [{ resource: 'memo', actions: ['*'] }] }),
  ));
  fleet = await startReplicas({ store, configPath, dir, agents: ['a', 'b'], env: { AAM_MCP_STREAM_GRACE: String(GRACE_MS / 1000) } });
});

after(async () => {
  await closeAll(fleet, upstream);
  await store?.drop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const FILTER = { toolsListChanged: true, resourceSubscriptions: ['memo://one', 'memo://two'] };

/** A conformant 2026-07-28 subscriptions/listen request (no session) on one replica as `agent`: the JSON-RPC messages it gets. */
async function listen(url: string, agent: string, notifications: Record<string, unknown> = FILTER): Promise<{ id: number; messages: Array<Record<string, any>>; close(): void }> {
  const id = Math.floor(Math.random() * 1e9);
  const body = { jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'listen-agent', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const ac = new AbortController();
  const r = await fetch(`${url}/mcp/memo`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${fleet.keys[agent]}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, r.status === 200 ? '' : await r.text());
  const messages = sseMessages(r.body);
  await until(async () => messages.length > 0, 20_000, 'the acknowledgement');
  assert.equal(messages[0].method, 'notifications/subscriptions/acknowledged');
  return { id, messages, close: () => ac.abort() };
}
/** The tool names a 2026-07-28 tools/list on one replica answers `agent`. */
async function toolNames(url: string, agent: string): Promise<string[]> {
  const body = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'listen-agent', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const r = await fetch(`${url}/mcp/memo`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${fleet.keys[agent]}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' }, body: JSON.stringify(body) });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return ((JSON.parse(text) as { result: { tools: Array<{ name: string }> } }).result.tools).map((t) => t.name).sort();
}
/** What a listen stream heard after its acknowledgement: list changes by list, updates as `updated <uri>`. */
const heardOn = (l: { messages: Array<Record<string, any>> }) => l.messages.slice(1).map((m) => (m.method === 'notifications/resources/updated' ? `updated ${m.params.uri}` : String(m.method).split('/')[1]));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The upstream streams aam holds for it: none left once every replica let go. */
const quiet = () => until(async () => openStreams().length === 0, GRACE_MS + 20_000, 'aam to end its upstream listen streams');

test('a listen stream that drops on replica A: its caller listening again on replica B within the grace gets what it missed (once, only what it asks for); another identity gets none of it', async () => {
  const [a, b] = fleet.urls;
  const first = await listen(a, 'a');
  const opened: Array<{ close(): void }> = [first];
  try {
    await until(async () => watchingUri('memo://one') && openStreams().some((st) => st.notifications.toolsListChanged === true), 20_000, 'A listening upstream for it');
    first.close();
    await sleep(300);
    // While it is away, replica A (holding its upstream listening) hears these.
    pushUpdated('memo://one');
    tools = [...tools, 'while-away'];
    push('tools');
    pushUpdated('memo://one');
    push('prompts'); // not asked for
    await sleep(500);
    // Another identity listening on B for memo://one: its own stream, none of a's catch-up. (Not for tools:
    // B learns of the tools change when a's catch-up reaches it and tells every stream of a caller that may list them.)
    const other = await listen(b, 'b', { resourceSubscriptions: ['memo://one'] });
    opened.push(other);
    // The caller itself, on the other replica.
    const again = await listen(b, 'a');
    opened.push(again);
    await until(async () => again.messages.length >= 3, 20_000, 'the missed tools list_changed and update on B');
    await sleep(500);
    assert.deepEqual(heardOn(again).sort(), ['tools', 'updated memo://one'], 'one per list and URI it missed, nothing it did not ask for');
    for (const m of again.messages) assert.equal(m.params._meta['io.modelcontextprotocol/subscriptionId'], again.id);
    // B never heard the change itself (it listened for nobody then): the list it answers now has it.
    assert.deepEqual(await toolNames(b, 'a'), ['lookup', 'while-away'], 'tools/list on B after the catch-up');
    assert.deepEqual(heardOn(other), [], 'another identity gets nothing of it');
    // Once: a further stream of the caller, on A (which held it), gets nothing of it.
    const third = await listen(a, 'a');
    opened.push(third);
    await sleep(700);
    assert.deepEqual(heardOn(third), [], 'the catch-up was sent once');
    // From here B's stream hears for itself.
    pushUpdated('memo://two');
    await until(async () => heardOn(again).includes('updated memo://two'), 20_000, 'a later update on B\'s stream');
  } finally { for (const o of opened) o.close(); }
  await quiet();
});

test('once the grace has run out after a listen stream dropped, the caller listening on the other replica is sent nothing of it', async () => {
  const [a, b] = fleet.urls;
  const first = await listen(b, 'a');
  let again: Awaited<ReturnType<typeof listen>> | undefined;
  try {
    await until(async () => watchingUri('memo://one'), 20_000, 'B listening upstream for it');
    first.close();
    await sleep(300);
    pushUpdated('memo://one');
    tools = [...tools, 'after-grace'];
    push('tools');
    await sleep(GRACE_MS + 1000);
    again = await listen(a, 'a');
    await sleep(1000);
    assert.deepEqual(heardOn(again), [], 'nothing after the grace');
  } finally { first.close(); again?.close(); }
  await quiet();
});

test('Redis down: a subscriptions/listen is refused with 503 store_unavailable (what it missed cannot be checked); once Redis is back, listening works again', async () => {
  const [a] = fleet.urls;
  await redis.stop();
  try {
    const body = { jsonrpc: '2.0', id: 7, method: 'subscriptions/listen', params: { notifications: FILTER, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'listen-agent', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
    const r = await fetch(`${a}/mcp/memo`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${fleet.keys.a}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' }, body: JSON.stringify(body) });
    const text = await r.text();
    assert.equal(r.status, 503, text);
    assert.equal(r.headers.get('retry-after'), '1');
    const err = (JSON.parse(text) as { error: { message: string; data: Record<string, unknown> } }).error;
    assert.equal(err.data.store, 'redis', text);
    assert.match(err.message, /listen/, text);
  } finally { await redis.start(); }
  await until(async () => {
    try { const l = await listen(a, 'a'); l.close(); return true; } catch { return false; }
  }, 20_000, 'listening again once Redis is back');
  await quiet();
});

test('replica A shut down (drained) with a listen stream open: the stream ends as a dropped one and its caller, listening again on B, is told every list and URI it asked for (A no longer hears what changes)', async () => {
  const [a, b] = fleet.urls;
  const first = await listen(a, 'a');
  let again: Awaited<ReturnType<typeof listen>> | undefined;
  try {
    await until(async () => watchingUri('memo://one'), 20_000, 'A listening upstream for it');
    const t0 = performance.now();
    await fleet.replicas[0].close();
    assert.ok(performance.now() - t0 < 10_000, `A closed in ${Math.round(performance.now() - t0)} ms`);
    assert.ok(!first.messages.some((m) => m.id === first.id), 'ended with no completion result: the client listens again');
    again = await listen(b, 'a');
    await until(async () => again!.messages.length >= 4, 20_000, 'the catch-up on B');
    await sleep(500);
    assert.deepEqual(heardOn(again).sort(), ['tools', 'updated memo://one', 'updated memo://two']);
  } finally { first.close(); again?.close(); }
  await quiet();
});
