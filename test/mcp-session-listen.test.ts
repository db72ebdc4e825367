// A 2025-11-25 session client (the MCP SDK's, initialize + Mcp-Session-Id, notifications on its
// GET stream) of a 2026-07-28 upstream (stateless: list changes come only on a
// subscriptions/listen stream) must not keep a stale list: aam listens to the upstream for the
// session while its stream is open, re-announces the lists once its own listen stream to the
// upstream is back after an outage, keeps what a client misses while its stream reconnects, and
// announces every list when it cannot know what was missed; resource updates of subscribed URIs
// likewise (kept one per URI, or one for each URI when unknown). The upstream is a small 2026-07-28
// server written from the spec (server/discover, tools/prompts/resources lists, subscriptions/listen);
// a TCP proxy between the client and aam cuts the client's stream like a network does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { PromptListChangedNotificationSchema, ResourceListChangedNotificationSchema, ResourceUpdatedNotificationSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { serversReady, sseMessages, ADMIN_TOKEN } from './helpers/mcp.ts';
import { until, listenLoopback, closeAll } from './helpers/e2e.ts';

const VERSION = '2026-07-28';
/** aam keeps listening for a session this long after its stream closed (AAM_MCP_STREAM_GRACE). */
const GRACE_MS = 2000;

/** The upstream: its tools, whether it is down (503 to everything), and the listen streams aam has open on it. */
const up = { tools: ['lookup'], down: false, listenTries: 0 };
const streams: Array<{ notifications: Record<string, unknown>; write(msg: Record<string, unknown>): void; end(): void; closed: boolean }> = [];
const openStreams = () => streams.filter((st) => !st.closed);
const push = (method: string) => { for (const st of openStreams()) st.write({ jsonrpc: '2.0', method, params: {} }); };
/** The upstream says `uri` changed, on each listen stream that names it. */
const pushUpdated = (uri: string) => {
  for (const st of openStreams()) if ((st.notifications.resourceSubscriptions as string[] | undefined)?.includes(uri)) st.write({ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri } });
};
/** aam's listen stream to the upstream naming `uri` (a session subscribed to it). */
const watchingUri = (uri: string) => openStreams().some((st) => (st.notifications.resourceSubscriptions as string[] | undefined)?.includes(uri));

let upstream: HttpServer;
let gw: TestGateway;
let key: string;

async function startUpstream(): Promise<string> {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, unknown> & { _meta?: Record<string, unknown> } };
    if (body.method === 'subscriptions/listen') up.listenTries++;
    if (up.down) { res.writeHead(503).end(); return; }
    const reply = (status: number, msg: Record<string, unknown>) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, ...msg })); };
    const ok = (result: Record<string, unknown>) => reply(200, { result: { resultType: 'complete', ...result } });
    if (body.params?._meta?.['io.modelcontextprotocol/protocolVersion'] !== VERSION) return reply(400, { error: { code: -32022, message: 'Unsupported protocol version' } });
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: { listChanged: true }, prompts: { listChanged: true }, resources: { listChanged: true } }, ttlMs: 0, cacheScope: 'public' });
    // A long ttlMs: aam relists only when told (or when it may have missed being told).
    if (body.method === 'tools/list') return ok({ tools: up.tools.map((name) => ({ name, inputSchema: { type: 'object', properties: {} } })), ttlMs: 600_000, cacheScope: 'public' });
    // Two pages each: aam must follow nextCursor.
    const second = body.params.cursor === 'page-2';
    if (body.method === 'prompts/list') return ok({ prompts: [{ name: second ? 'later' : 'brief' }], ...(second ? {} : { nextCursor: 'page-2' }), ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'resources/list') return ok({ resources: [{ uri: second ? 'memo://two' : 'memo://one', name: second ? 'two' : 'one' }], ...(second ? {} : { nextCursor: 'page-2' }), ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'subscriptions/listen') {
      const notifications = (body.params.notifications ?? {}) as Record<string, unknown>;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const st = { notifications, closed: false, write: (msg: Record<string, unknown>) => { res.write(`data: ${JSON.stringify(msg)}\n\n`); }, end: () => { res.end(); } };
      streams.push(st);
      res.on('close', () => { st.closed = true; });
      st.write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications, _meta: { 'io.modelcontextprotocol/subscriptionId': body.id } } });
      return;
    }
    return reply(404, { error: { code: -32601, message: `Method not found: ${body.method}` } });
  });
  return listenLoopback(upstream, '/mcp');
}

/** A TCP proxy to aam whose connections can be cut (a network blip) and refused for a while. */
interface Proxy { url: string; server: TcpServer; refuse: boolean; cut(): void }
async function startProxy(port: number): Promise<Proxy> {
  const pairs = new Set<[Socket, Socket]>();
  const p: Proxy = {
    url: '', server: createTcpServer((client) => {
      if (p.refuse) return void client.destroy();
      const server = connect(port, '127.0.0.1');
      const pair: [Socket, Socket] = [client, server];
      pairs.add(pair);
      const drop = () => { pairs.delete(pair); client.destroy(); server.destroy(); };
      client.on('error', drop).on('close', drop);
      server.on('error', drop).on('close', drop);
      client.pipe(server).pipe(client);
    }),
    refuse: false,
    cut() { for (const [a, b] of pairs) { a.destroy(); b.destroy(); } pairs.clear(); },
  };
  await new Promise<void>((r) => p.server.listen(0, '127.0.0.1', r));
  p.url = `http://127.0.0.1:${(p.server.address() as AddressInfo).port}`;
  return p;
}

let proxy: Proxy;

/** The config; `allowed`: navigator may use the server (else its policy names another resource). */
const config = (url: string, allowed = true) => yaml(
  doc('Agent', 'navigator', { workload: 'spiffe://prod/agent/navigator', team: 'ops', environment: 'prod' }),
  doc('AgentPolicy', 'navigator-policy', { identity: { workload: 'spiffe://prod/agent/navigator' }, tools: [{ resource: allowed ? 'modern' : 'elsewhere', actions: ['*'] }] }),
  doc('McpServer', 'modern', { transport: 'streamable-http', url, timeout_ms: 60_000 }),
);
let upstreamUrl = '';

before(async () => {
  upstreamUrl = await startUpstream();
  gw = await startTestGateway(config(upstreamUrl), { AAM_MCP_STREAM_GRACE: String(GRACE_MS / 1000), AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  key = gw.key('navigator');
  await serversReady(gw);
  proxy = await startProxy(gw.port);
});

after(async () => {
  proxy?.cut();
  await new Promise((r) => proxy?.server.close(r));
  await closeAll(gw, upstream);
});

interface Session { client: Client; transport: StreamableHTTPClientTransport; heard: string[] }

/** An SDK client session on /mcp/modern through the proxy; `heard`: the list_changed (list) and resources/updated (`updated <uri>`) notifications it got, in order. */
async function session(): Promise<Session> {
  const client = new Client({ name: 'session-agent', version: '1.0.0' });
  // Reconnects its GET stream every 200 ms while it cannot (the SDK's default gives up after 2 tries).
  const transport = new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp/modern`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
    reconnectionOptions: { initialReconnectionDelay: 200, maxReconnectionDelay: 200, reconnectionDelayGrowFactor: 1, maxRetries: 1000 },
  });
  const heard: string[] = [];
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => { heard.push('tools'); });
  client.setNotificationHandler(PromptListChangedNotificationSchema, async () => { heard.push('prompts'); });
  client.setNotificationHandler(ResourceListChangedNotificationSchema, async () => { heard.push('resources'); });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => { heard.push(`updated ${n.params.uri}`); });
  await client.connect(transport);
  return { client, transport, heard };
}

async function closeSession(s: Session): Promise<void> {
  await s.transport.terminateSession().catch(() => {});
  await s.client.close();
}

/** aam's listen stream to the upstream asking for all three lists (what a session's open stream needs). */
const listening = () => openStreams().some((st) => ['toolsListChanged', 'promptsListChanged', 'resourcesListChanged'].every((k) => st.notifications[k] === true));

/**
 * A session that is cut off once `ready` saw aam listen upstream for it: the client's connections
 * drop and it cannot reconnect until `proxy.refuse` is false again; `heard` is empty from there.
 * Runs `body`, then lets the client back in and ends the session.
 */
async function cutOffSession(ready: (s: Session) => Promise<void>, body: (s: Session) => Promise<void>): Promise<void> {
  const s = await session();
  try {
    await ready(s);
    s.heard.length = 0;
    proxy.refuse = true;
    proxy.cut();
    await body(s);
  } finally { proxy.refuse = false; await closeSession(s); }
}
const listensForLists = () => until(listening, 20_000, 'aam\'s listen stream to the upstream');

test('a session of a 2026-07-28 upstream hears its list changes: aam listens to it while the session\'s stream is open, and stops once the session ends', async () => {
  const s = await session();
  try {
    assert.deepEqual((await s.client.listTools()).tools.map((t) => t.name), ['lookup']);
    await until(listening, 20_000, 'aam\'s listen stream to the upstream, for the session');
    push('notifications/prompts/list_changed');
    await until(() => s.heard.includes('prompts'), 20_000, 'prompts list_changed relayed to the session');
    up.tools = ['lookup', 'added'];
    push('notifications/tools/list_changed');
    await until(() => s.heard.includes('tools'), 20_000, 'tools list_changed relayed to the session');
    assert.deepEqual((await s.client.listTools()).tools.map((t) => t.name).sort(), ['added', 'lookup']);
  } finally { await closeSession(s); }
  await until(() => openStreams().length === 0, GRACE_MS + 20_000, 'aam to end its listen stream once the session is gone');
});

test('aam\'s listen stream to the upstream ends (an outage): once it is back, the session is told every list changed and its subscribed resource updated, and a changed tools list is served', async () => {
  const s = await session();
  try {
    await s.client.subscribeResource({ uri: 'memo://one' });
    await until(() => listening() && watchingUri('memo://one'), 20_000, 'aam\'s listen stream to the upstream, naming the URI');
    s.heard.length = 0;
    // The upstream goes down and comes back with other tools; the change was never announced on any stream.
    up.down = true;
    for (const st of openStreams()) st.end();
    const tries = up.listenTries;
    await until(() => up.listenTries > tries, 20_000, 'aam to try the upstream again');
    up.tools = ['lookup', 'added', 'after-outage'];
    up.down = false;
    await until(listening, 30_000, 'aam\'s listen stream to the upstream, once it is back');
    // What the upstream said meanwhile never came: the lists may have changed, and the resource.
    await until(() => ['tools', 'prompts', 'resources', 'updated memo://one'].every((l) => s.heard.includes(l)), 20_000, 'tools, prompts and resources list_changed and the update of memo://one to the session');
    assert.deepEqual((await s.client.listTools()).tools.map((t) => t.name).sort(), ['added', 'after-outage', 'lookup']);
  } finally { await closeSession(s); up.down = false; }
});

test('the session\'s own stream drops and reconnects within the grace: the list changes it missed meanwhile are sent once it is back, and only those', async () => {
  await cutOffSession(listensForLists, async (s) => {
    // It cannot reconnect for a moment (less than the grace).
    await new Promise((r) => setTimeout(r, 300));
    push('notifications/prompts/list_changed');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(s.heard, [], 'nothing can reach it while its stream is down');
    proxy.refuse = false;
    await until(() => s.heard.includes('prompts'), 20_000, 'the missed prompts list_changed, once its stream is back');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(s.heard, ['prompts'], 'what it missed, not every list');
  });
});

test('the session\'s stream comes back after the grace (aam stopped listening for it): it is told every list it may list changed', async () => {
  await cutOffSession(listensForLists, async (s) => {
    // aam stops listening for it after the grace; nothing else keeps the upstream stream open.
    await until(() => openStreams().length === 0, GRACE_MS + 20_000, 'aam to stop listening once the grace ran out');
    proxy.refuse = false;
    await until(() => ['tools', 'prompts', 'resources'].every((l) => s.heard.includes(l)), 20_000, 'every list_changed, once its stream is back');
    await until(listening, 20_000, 'aam listening for it again');
  });
});

test('a reload that takes the server away from the session\'s caller ends aam\'s listening for it at once; one that gives it back listens again', async () => {
  const s = await session();
  try {
    await until(listening, 20_000, 'aam\'s listen stream to the upstream');
    writeFileSync(gw.configPath, config(upstreamUrl, false));
    assert.equal(gw.g.rt.reload(), null);
    // Well within the grace: the stream closes because of the policy, not because the session left.
    await until(() => openStreams().length === 0, GRACE_MS, 'aam to stop listening for a caller that may no longer list anything there');
    writeFileSync(gw.configPath, config(upstreamUrl));
    assert.equal(gw.g.rt.reload(), null);
    await until(listening, 20_000, 'aam listening for it again');
  } finally {
    writeFileSync(gw.configPath, config(upstreamUrl));
    gw.g.rt.reload();
    await closeSession(s);
  }
});

test('paginated prompts and resources lists of the upstream are followed to their last page', async () => {
  const s = await session();
  try {
    assert.deepEqual((await s.client.listPrompts()).prompts.map((p) => p.name), ['brief', 'later']);
    assert.deepEqual((await s.client.listResources()).resources.map((r) => r.uri), ['memo://one', 'memo://two']);
  } finally { await closeSession(s); }
});

test('resource updates due while the session\'s stream is down are kept, one per URI, and sent once it is back within the grace', async () => {
  await cutOffSession(async (s) => {
    await s.client.subscribeResource({ uri: 'memo://one' });
    await s.client.subscribeResource({ uri: 'memo://two' });
    await until(() => listening() && watchingUri('memo://one') && watchingUri('memo://two'), 20_000, 'aam\'s listen stream to the upstream naming both URIs');
    pushUpdated('memo://one');
    await until(() => s.heard.includes('updated memo://one'), 20_000, 'an update relayed while the stream is open');
  }, async (s) => {
    await new Promise((r) => setTimeout(r, 300));
    // memo://one changes twice, memo://two once, while the client cannot hear anything.
    pushUpdated('memo://one');
    pushUpdated('memo://two');
    pushUpdated('memo://one');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(s.heard, [], 'nothing can reach it while its stream is down');
    proxy.refuse = false;
    await until(() => s.heard.includes('updated memo://one') && s.heard.includes('updated memo://two'), 20_000, 'the missed updates, once its stream is back');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(s.heard.sort(), ['updated memo://one', 'updated memo://two'], 'one update per URI, and no list changes');
  });
});

test('the session\'s stream comes back after the grace: it gets an update for every URI it is subscribed to (aam no longer kept what it missed)', async () => {
  await cutOffSession(async (s) => {
    await s.client.subscribeResource({ uri: 'memo://one' });
    await s.client.subscribeResource({ uri: 'memo://two' });
    await s.client.unsubscribeResource({ uri: 'memo://two' });
    await until(() => listening() && watchingUri('memo://one') && !watchingUri('memo://two'), 20_000, 'aam\'s listen stream to the upstream naming memo://one only');
  }, async (s) => {
    // The grace is over once aam stops listening for the session's lists (the stream naming the URI stays).
    await until(() => !listening() && watchingUri('memo://one'), GRACE_MS + 20_000, 'aam to stop listening for its lists once the grace ran out');
    proxy.refuse = false;
    await until(() => ['tools', 'prompts', 'resources', 'updated memo://one'].every((l) => s.heard.includes(l)), 20_000, 'every list_changed and an update for its subscribed URI, once its stream is back');
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!s.heard.includes('updated memo://two'), 'no update for a URI it unsubscribed from');
  });
});

/** A conformant 2026-07-28 subscriptions/listen request through the proxy (no session): the JSON-RPC messages it gets, and its id. */
async function listenStream(notifications: Record<string, unknown>): Promise<{ id: number; messages: Array<Record<string, any>>; close(): void }> {
  const id = Math.floor(Math.random() * 1e9);
  const body = { jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'listen-agent', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const ac = new AbortController();
  const r = await fetch(`${proxy.url}/mcp/modern`, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200);
  return { id, messages: sseMessages(r.body), close: () => ac.abort() };
}
/** What a listen stream heard after its acknowledgement: list changes by list, updates as `updated <uri>`. */
const heardOn = (l: { messages: Array<Record<string, any>> }) => l.messages.slice(1).map((m) => (m.method === 'notifications/resources/updated' ? `updated ${m.params.uri}` : String(m.method).split('/')[1]));

test('a 2026-07-28 listen stream drops and its client listens again within the grace: it is sent what it missed meanwhile (one per list and URI, only what it asks for), right after the acknowledgement', async () => {
  const filter = { toolsListChanged: true, resourceSubscriptions: ['memo://one', 'memo://two'] };
  const first = await listenStream(filter);
  let again: Awaited<ReturnType<typeof listenStream>> | undefined;
  try {
    await until(() => first.messages.length > 0 && openStreams().some((st) => st.notifications.toolsListChanged === true) && watchingUri('memo://one') && watchingUri('memo://two'), 20_000, 'aam\'s listen stream to the upstream for it');
    assert.deepEqual(first.messages[0].params.notifications, filter);
    // The network drops the stream; the client cannot reconnect for a moment.
    proxy.refuse = true;
    proxy.cut();
    await new Promise((r) => setTimeout(r, 300));
    pushUpdated('memo://one');
    up.tools = [...up.tools, 'while-away'];
    push('notifications/tools/list_changed');
    pushUpdated('memo://one');
    push('notifications/prompts/list_changed'); // it did not ask for prompts
    await new Promise((r) => setTimeout(r, 300));
    proxy.refuse = false;
    again = await listenStream(filter);
    await until(() => again!.messages.length >= 3, 20_000, 'the missed tools list_changed and update, on the new stream');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(again.messages[0].method, 'notifications/subscriptions/acknowledged', 'the acknowledgement first');
    assert.deepEqual(heardOn(again).sort(), ['tools', 'updated memo://one'], 'one per list and URI it missed, nothing it did not ask for');
    for (const m of again.messages) assert.equal(m.params._meta['io.modelcontextprotocol/subscriptionId'], again.id);
    // From here the new stream hears as any does.
    pushUpdated('memo://two');
    await until(() => heardOn(again!).includes('updated memo://two'), 20_000, 'a later update on the new stream');
  } finally { proxy.refuse = false; first.close(); again?.close(); }
  // Once the grace runs out after the last stream closed, aam listens to the upstream for it no more.
  await until(() => openStreams().length === 0, GRACE_MS + 20_000, 'aam to end its listen stream to the upstream');
});
