// Fleet mode, MCP notifications across replicas (real PostgreSQL + Redis, two replicas): a
// 2025-11-25 session's notification stream (GET) is held by replica A while its resources/subscribe
// lands on replica B, so the upstream's update reaches B; B hands it to A over the fleet's pub/sub,
// keyed by session, and A sends it on the client's stream. Negative: another session on A that did
// not subscribe hears nothing. A 2026-07-28 subscriptions/listen needs no relay: the replica that
// serves the stream listens upstream itself, so a change made through the other replica reaches it.
// A session's subscriptions are fleet-wide state: a resources/unsubscribe on A undoes the one held
// by B, and a session whose stream first opens on A (A cannot know what it missed) gets an update
// for each URI B holds for it. A server's list_changed said on B's connection only reaches a
// session's stream on A, decided for each caller there (agent b may list crm's tools, not its prompts or resources); so
// does a 2026-07-28 subscriptions/listen stream held by A.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { until, listenLoopback, closeAll } from './helpers/e2e.ts';
import { startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';
import { sseMessages } from './helpers/mcp.ts';

let store: FleetTestStore;
let upstream: RunningFixture;
let dir: string;
let fleet: Replicas;
let modern: Server;
/** The 2026-07-28 upstream's open listen streams (one per replica that listens) and what each names. */
const streams: Array<{ uris: string[]; res: ServerResponse }> = [];

/** A 2026-07-28 server: tools/call "touch" changes memo://x, announced on every listen stream naming it. */
async function startModern(): Promise<string> {
  modern = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, any> };
    const ok = (result: Record<string, unknown>) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { resultType: 'complete', ...result } })); };
    if (body.method === 'server/discover') return ok({ supportedVersions: ['2026-07-28'], capabilities: { tools: {}, resources: { subscribe: true } } });
    if (body.method === 'tools/list') return ok({ tools: [{ name: 'touch', inputSchema: { type: 'object', properties: {} } }], ttlMs: 600_000, cacheScope: 'public' });
    if (body.method === 'subscriptions/listen') {
      const n = body.params.notifications as { resourceSubscriptions?: string[] };
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: n } })}\n\n`);
      const st = { uris: n.resourceSubscriptions ?? [], res };
      streams.push(st);
      res.on('close', () => streams.splice(streams.indexOf(st), 1));
      return;
    }
    if (body.method === 'tools/call') {
      for (const st of streams) if (st.uris.includes('memo://x')) st.res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'memo://x' } })}\n\n`);
      return ok({ content: [{ type: 'text', text: 'touched' }] });
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: body.id, error: { code: -32601, message: 'no such method' } }));
  });
  return listenLoopback(modern, '/mcp');
}

before(async () => {
  store = await fleetStore();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-mcp-notify-'));
  upstream = await startHttpFixture({ SUBS_FILE: join(dir, 'subs.jsonl') });
  const modernUrl = await startModern();
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('McpServer', 'crm', { transport: 'streamable-http', url: upstream.url, timeout_ms: 60_000 }),
    doc('McpServer', 'memo', { transport: 'streamable-http', url: modernUrl, timeout_ms: 60_000 }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/a' }, tools: [{ resource: 'crm', actions: ['*'] }, { resource: 'memo', actions: ['*'] }] }),
    doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }),
    doc('AgentPolicy', 'pb', { identity: { workload: 'spiffe://test/agent/b' }, tools: [{ resource: 'crm', actions: ['search_accounts'] }] }),
  ));
  // A dropped listen stream's upstream watch is kept for the grace (default 10 s): the last test waits it out.
  fleet = await startReplicas({ store, configPath, dir, agents: ['a', 'b'], env: { AAM_MCP_STREAM_GRACE: '1s' } });
});

after(async () => {
  await closeAll(fleet, upstream, modern);
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };

/** One JSON-RPC request of a session (or initialize without one) on one replica, as `agent`. */
async function rpc(url: string, method: string, params: Record<string, unknown>, session?: string, agent = 'a'): Promise<{ status: number; session: string | null; text: string }> {
  const r = await fetch(`${url}/mcp/crm`, {
    method: 'POST', headers: { ...HEADERS, authorization: `Bearer ${fleet.keys[agent]}`, ...(session ? { 'mcp-session-id': session } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params }),
  });
  return { status: r.status, session: r.headers.get('mcp-session-id'), text: await r.text() };
}

/** A session opened on `url`, with its notification stream (GET) held there: the messages it receives. */
async function sessionWithStream(url: string, agent = 'a'): Promise<{ id: string; messages: Array<Record<string, any>>; close(): void }> {
  const init = await rpc(url, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } }, undefined, agent);
  assert.equal(init.status, 200, init.text);
  const id = init.session!;
  const ac = new AbortController();
  const r = await fetch(`${url}/mcp/crm`, { signal: ac.signal, headers: { ...HEADERS, accept: 'text/event-stream', authorization: `Bearer ${fleet.keys[agent]}`, 'mcp-session-id': id } });
  assert.equal(r.status, 200);
  const messages = sseMessages(r.body);
  return { id, messages, close: () => ac.abort() };
}

test('a session\'s resource update reaches its stream on replica A when its resources/subscribe landed on replica B; a session that did not subscribe hears nothing', async () => {
  const [a, b] = fleet.urls;
  const subscriber = await sessionWithStream(a);
  const bystander = await sessionWithStream(a);
  try {
    // The subscription is made on B (B's upstream connection subscribes), and the upstream changes through B.
    const sub = await rpc(b, 'resources/subscribe', { uri: 'account://a1' }, subscriber.id);
    assert.equal(sub.status, 200, sub.text);
    assert.doesNotMatch(sub.text, /"error"/, sub.text);
    const m = await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'fleet-v2' } }, subscriber.id);
    assert.equal(m.status, 200, m.text);
    assert.doesNotMatch(m.text, /"isError":true|"error"/, m.text);
    const updated = () => subscriber.messages.filter((x) => x.method === 'notifications/resources/updated');
    await until(async () => updated().length > 0, 20_000, 'the update on the stream held by replica A');
    assert.deepEqual(updated()[0].params, { uri: 'account://a1' });
    assert.ok(!bystander.messages.some((x) => x.method === 'notifications/resources/updated'), 'nothing for a session that did not subscribe');
  } finally { subscriber.close(); bystander.close(); }
});

const okRpc = (r: { status: number; text: string }) => { assert.equal(r.status, 200, r.text); assert.doesNotMatch(r.text, /"isError":true|"error"/, r.text); };

test('a session whose stream first opens on replica A while its subscription is held by B (A cannot know what it missed) gets an update for that URI from B; one that did not subscribe gets none', async () => {
  const [a, b] = fleet.urls;
  const open = async (id: string) => {
    const ac = new AbortController();
    const r = await fetch(`${a}/mcp/crm`, { signal: ac.signal, headers: { ...HEADERS, accept: 'text/event-stream', authorization: `Bearer ${fleet.keys.a}`, 'mcp-session-id': id } });
    assert.equal(r.status, 200);
    return { messages: sseMessages(r.body), close: () => ac.abort() };
  };
  const init = async () => (await rpc(b, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } })).session!;
  const subscriber = await init();
  const other = await init();
  okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a1' }, subscriber));
  // Nothing changes upstream: the update says "re-read it, you may have missed a change".
  const [s, o] = [await open(subscriber), await open(other)];
  try {
    const updated = (m: Array<Record<string, any>>) => m.filter((x) => x.method === 'notifications/resources/updated');
    await until(async () => updated(s.messages).length > 0, 20_000, 'an update for account://a1 on the stream A holds');
    assert.deepEqual(updated(s.messages).map((x) => x.params), [{ uri: 'account://a1' }]);
    await until(async () => o.messages.some((x) => x.method === 'notifications/tools/list_changed'), 20_000, 'the other session\'s stream announcing its lists');
    assert.deepEqual(updated(o.messages), [], 'no update for a session without subscriptions');
  } finally { s.close(); o.close(); }
});

test('a resources/unsubscribe that lands on another replica than the subscribe undoes it there: that session hears no more updates, another session\'s subscription stands', async () => {
  const [a, b] = fleet.urls;
  const leaving = await sessionWithStream(a);
  const staying = await sessionWithStream(a);
  const updates = (s: { messages: Array<Record<string, any>> }) => s.messages.filter((x) => x.method === 'notifications/resources/updated').length;
  try {
    for (const s of [leaving, staying]) okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a1' }, s.id));
    okRpc(await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'unsub-v1' } }, staying.id));
    await until(async () => updates(leaving) === 1 && updates(staying) === 1, 20_000, 'both sessions\' first update');
    // Unsubscribed through A, which holds no subscription of it: B (which does) undoes it.
    okRpc(await rpc(a, 'resources/unsubscribe', { uri: 'account://a1' }, leaving.id));
    okRpc(await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'unsub-v2' } }, staying.id));
    await until(async () => updates(staying) === 2, 20_000, 'the staying session\'s second update');
    assert.equal(updates(leaving), 1, 'no update after the unsubscribe');
  } finally { leaving.close(); staying.close(); }
});

/** The upstream's resources/subscribe and unsubscribe requests so far (from every replica's connection). */
const subs = (): Array<{ subscribe?: string; unsubscribe?: string }> => {
  const f = join(dir, 'subs.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { subscribe?: string; unsubscribe?: string }) : [];
};

test('a session ended (DELETE) through replica A releases the subscription replica B holds for it, upstream too', async () => {
  const [a, b] = fleet.urls;
  const s = await sessionWithStream(a);
  try {
    okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a2' }, s.id));
    assert.ok(subs().some((x) => x.subscribe === 'account://a2'), 'B subscribed upstream');
    const del = await fetch(`${a}/mcp/crm`, { method: 'DELETE', headers: { ...HEADERS, authorization: `Bearer ${fleet.keys.a}`, 'mcp-session-id': s.id } });
    assert.equal(del.status, 200, await del.text());
    await until(async () => subs().some((x) => x.unsubscribe === 'account://a2'), 20_000, 'B to unsubscribe upstream');
  } finally { s.close(); }
});

test('a server\'s list_changed said on replica B\'s connection only reaches sessions whose streams are on replica A, decided per caller', async () => {
  const [a, b] = fleet.urls;
  const full = await sessionWithStream(a);
  const narrow = await sessionWithStream(a, 'b');
  const actor = await rpc(b, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
  assert.equal(actor.status, 200, actor.text);
  const lists = (s: { messages: Array<Record<string, any>> }) => s.messages.map((x) => String(x.method)).filter((m) => m.endsWith('/list_changed')).sort();
  try {
    // The upstream tells the session of B's connection (the one the call came through), not A's.
    okRpc(await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'lists-v1' } }, actor.session!));
    await until(async () => lists(full).length >= 3, 20_000, 'the three list_changed on the stream held by A');
    assert.deepEqual([...new Set(lists(full))], ['notifications/prompts/list_changed', 'notifications/resources/list_changed', 'notifications/tools/list_changed']);
    await until(async () => lists(narrow).includes('notifications/tools/list_changed'), 20_000, 'tools/list_changed for agent b');
    assert.deepEqual([...new Set(lists(narrow))], ['notifications/tools/list_changed'], 'agent b may not list crm\'s prompts or resources');
  } finally { full.close(); narrow.close(); }
});

/** A 2026-07-28 request on one replica (headers mirrored from the body), to /mcp/memo as agent a unless told; the raw response. */
function modernRequest(url: string, method: string, params: Record<string, unknown>, signal?: AbortSignal, o: { server?: string; agent?: string } = {}): Promise<Response> {
  const body = { jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${fleet.keys[o.agent ?? 'a']}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': method };
  if (typeof params.name === 'string') headers['mcp-name'] = params.name;
  return fetch(`${url}/mcp/${o.server ?? 'memo'}`, { method: 'POST', headers, body: JSON.stringify(body), signal });
}

test('a server\'s list_changed said on replica B\'s connection reaches 2026-07-28 listen streams held by replica A, decided per caller', async () => {
  const [a, b] = fleet.urls;
  const ac = new AbortController();
  const all = { toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true };
  const open = async (agent: string) => {
    const r = await modernRequest(a, 'subscriptions/listen', { notifications: all }, ac.signal, { server: 'crm', agent });
    assert.equal(r.status, 200);
    return sseMessages(r.body);
  };
  const full = await open('a');
  const narrow = await open('b');
  const actor = await rpc(b, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
  assert.equal(actor.status, 200, actor.text);
  const lists = (m: Array<Record<string, any>>) => [...new Set(m.map((x) => String(x.method)).filter((x) => x.endsWith('/list_changed')))].sort();
  try {
    await until(async () => full.length > 0 && narrow.length > 0, 20_000, 'both acknowledgements');
    assert.equal(full[0].method, 'notifications/subscriptions/acknowledged');
    // The upstream tells B's session only (the call came through B); A hears it over the fleet channel.
    okRpc(await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'listen-fleet-v1' } }, actor.session!));
    await until(async () => lists(full).length === 3, 20_000, 'the three list_changed on agent a\'s listen stream held by A');
    assert.deepEqual(lists(full), ['notifications/prompts/list_changed', 'notifications/resources/list_changed', 'notifications/tools/list_changed']);
    for (const x of full.slice(1)) assert.equal(typeof x.params._meta['io.modelcontextprotocol/subscriptionId'], 'number', 'each carries the listen stream\'s id');
    await until(async () => lists(narrow).includes('notifications/tools/list_changed'), 20_000, 'tools/list_changed on agent b\'s listen stream');
    assert.deepEqual(lists(narrow), ['notifications/tools/list_changed'], 'agent b may not list crm\'s prompts or resources');
  } finally { ac.abort(); }
});

test('a 2026-07-28 subscriptions/listen on replica A hears an update made through replica B: A listens upstream itself', async () => {
  const [a, b] = fleet.urls;
  const ac = new AbortController();
  const r = await modernRequest(a, 'subscriptions/listen', { notifications: { resourceSubscriptions: ['memo://x'] } }, ac.signal);
  assert.equal(r.status, 200);
  let text = '';
  void (async () => { try { for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) text += Buffer.from(c).toString('utf8'); } catch { /* aborted */ } })();
  try {
    await until(async () => text.includes('notifications/subscriptions/acknowledged') && streams.length === 1, 20_000, 'the acknowledgement and A\'s own stream upstream');
    const t = await modernRequest(b, 'tools/call', { name: 'touch', arguments: {} });
    assert.equal(t.status, 200, await t.text());
    await until(async () => text.includes('notifications/resources/updated'), 20_000, 'the update on A\'s listen stream');
    assert.match(text, /"uri":"memo:\/\/x"/);
    assert.equal(streams.length, 1, 'only the replica serving the listen stream listens upstream');
  } finally { ac.abort(); }
  await until(async () => streams.length === 0, 20_000, 'A to end its upstream stream (after the 1 s grace)');
});
