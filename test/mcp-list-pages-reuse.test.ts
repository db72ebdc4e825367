// aam's paged prompts/list, resources/list and resources/templates/list: the first page gathers the
// servers' whole lists, the later pages of that listing are cut from the gathering instead of asking
// every server again, within the list caching rules (server/utilities/caching): only while the
// lists' ttlMs has not lapsed (ttlMs 0: every page asks again), only for the caller who gathered it
// (a `private` list is never served to another identity, whatever cursor it presents), and not
// after a list_changed or a reload. The upstream is a 2026-07-28 server written from the spec with
// 500 items in each list, counting the requests it gets; the client sends raw 2026-07-28 requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { ADMIN_TOKEN, mcpSchemaCheck, serversReady, sseMessages, type SchemaCheck } from './helpers/mcp.ts';
import { until, listenLoopback, closeAll } from './helpers/e2e.ts';

const VERSION = '2026-07-28';
const N = 500;
const ids = Array.from({ length: N }, (_, i) => `item-${String(i).padStart(3, '0')}`);
/** How the upstream marks its lists, and the requests it got per method. */
const mode = { ttlMs: 60_000, cacheScope: 'public' };
const asked: Record<string, number> = {};
/** aam's listen streams to the upstream. */
const streams: Array<{ write(msg: Record<string, unknown>): void; closed: boolean }> = [];

let upstream: HttpServer;
let gw: TestGateway;
let reader: string;
let other: string;
let check: SchemaCheck = () => {};

async function startUpstream(): Promise<string> {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params?: { notifications?: Record<string, unknown> } };
    asked[body.method] = (asked[body.method] ?? 0) + 1;
    const ok = (result: Record<string, unknown>) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { resultType: 'complete', ...result } }));
    };
    const list = { ttlMs: mode.ttlMs, cacheScope: mode.cacheScope };
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: {}, prompts: { listChanged: true }, resources: { listChanged: true } }, ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'tools/list') return ok({ tools: ids.map((name) => ({ name, inputSchema: { type: 'object', properties: {} } })), ttlMs: 600_000, cacheScope: 'public' });
    if (body.method === 'prompts/list') return ok({ prompts: ids.map((id) => ({ name: id })), ...list });
    if (body.method === 'resources/list') return ok({ resources: ids.map((id) => ({ uri: `memo://${id}`, name: id })), ...list });
    if (body.method === 'resources/templates/list') return ok({ resourceTemplates: ids.map((id) => ({ uriTemplate: `memo://${id}/{part}`, name: id })), ...list });
    if (body.method === 'subscriptions/listen') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const st = { closed: false, write: (msg: Record<string, unknown>) => { res.write(`data: ${JSON.stringify(msg)}\n\n`); } };
      streams.push(st);
      res.on('close', () => { st.closed = true; });
      st.write({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: body.params?.notifications ?? {}, _meta: { 'io.modelcontextprotocol/subscriptionId': body.id } } });
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, error: { code: -32601, message: `Method not found: ${body.method}` } }));
  });
  return listenLoopback(upstream, '/mcp');
}

let config = '';
before(async () => {
  check = await mcpSchemaCheck();
  const url = await startUpstream();
  const agent = (name: string) => [
    doc('Agent', name, { workload: `spiffe://prod/agent/${name}` }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://prod/agent/${name}` }, tools: [{ resource: 'wide', actions: ['*'] }] }),
  ];
  config = yaml(...agent('reader'), ...agent('other'), doc('McpServer', 'wide', { transport: 'streamable-http', url, timeout_ms: 60_000 }));
  gw = await startTestGateway(config, { AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  reader = gw.key('reader');
  other = gw.key('other');
  await serversReady(gw);
});

after(() => closeAll(gw, upstream));

type Body = { result?: Record<string, any>; error?: { code: number; message: string } };
/** A raw 2026-07-28 request to /mcp/wide. */
async function modern(method: string, params: Record<string, unknown> = {}, token = reader): Promise<Body> {
  const body = { jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const r = await fetch(`${gw.url}/mcp/wide`, {
    method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'mcp-protocol-version': VERSION, 'mcp-method': method },
  });
  assert.equal(r.status, 200);
  return await r.json() as Body;
}

const LISTS = [['prompts/list', 'prompts', 'ListPromptsResult'], ['resources/list', 'resources', 'ListResourcesResult'], ['resources/templates/list', 'resourceTemplates', 'ListResourceTemplatesResult']] as const;

/** Every page of `method` for a caller, following nextCursor (`between`: run before each later page); the items and how many requests the upstream got for it meanwhile. */
async function pageAll(method: string, field: string, def: string, token = reader, between?: () => Promise<void>): Promise<{ items: string[]; pages: number; upstream: number }> {
  const before = asked[method] ?? 0;
  const items: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    if (cursor !== undefined) await between?.();
    const r = await modern(method, cursor === undefined ? {} : { cursor }, token);
    check(def, r.result);
    for (const x of r.result![field] as Array<Record<string, string>>) items.push(JSON.stringify(x));
    cursor = r.result!.nextCursor as string | undefined;
    pages++;
  } while (cursor);
  return { items, pages, upstream: (asked[method] ?? 0) - before };
}

test('a 500-item list within its ttlMs: the later pages are cut from the first page\'s gathering (1 upstream request per full paging, not 1 per page), every item once', async () => {
  mode.ttlMs = 60_000; mode.cacheScope = 'public';
  for (const [method, field, def] of LISTS) {
    const got = await pageAll(method, field, def);
    assert.equal(got.pages, 3, method);
    assert.equal(got.items.length, N, method);
    assert.equal(new Set(got.items).size, N, `${method}: nothing twice`);
    assert.equal(got.upstream, 1, `${method}: upstream requests for one full paging`);
    // A new listing (no cursor) gathers again: the gathering serves the listing it was made for.
    assert.equal((await pageAll(method, field, def)).upstream, 1, `${method}: a second paging`);
  }
});

test('tools/list of 500 tools (a shared list within its ttlMs): paged from aam\'s catalog, no upstream request per page, as before', async () => {
  const got = await pageAll('tools/list', 'tools', 'ListToolsResult');
  assert.equal(got.pages, 3);
  assert.equal(new Set(got.items).size, N);
  assert.equal(got.upstream, 0, 'upstream tools/list requests for one full paging');
});

test('ttlMs 0 (immediately stale): every page asks the upstream again, as before', async () => {
  mode.ttlMs = 0;
  try {
    for (const [method, field, def] of LISTS) assert.equal((await pageAll(method, field, def)).upstream, 3, method);
  } finally { mode.ttlMs = 60_000; }
});

test('a private list: another identity presenting the caller\'s cursor is never served the caller\'s gathering (aam lists for it, as it)', async () => {
  mode.cacheScope = 'private';
  try {
    for (const [method, field, def] of LISTS) {
      const first = await modern(method);
      const cursor = first.result!.nextCursor as string;
      assert.equal(typeof cursor, 'string');
      const before = asked[method];
      const stolen = await modern(method, { cursor }, other);
      check(def, stolen.result);
      assert.equal(asked[method], before + 1, `${method}: the other identity's page is listed for it upstream`);
      // Its own gathering then serves its later pages.
      const third = await modern(method, { cursor: stolen.result!.nextCursor as string }, other);
      assert.equal(asked[method], before + 1, `${method}: its own gathering serves it`);
      assert.equal(third.result!.nextCursor, undefined);
      // The caller's own cursor still works from its gathering.
      await modern(method, { cursor });
      assert.equal(asked[method], before + 1, method);
    }
  } finally { mode.cacheScope = 'public'; }
});

test('a list_changed or a reload between two pages: the next page is gathered again', async () => {
  // A reload (policies may differ): the gathering is not served.
  for (const [method, field, def] of LISTS) {
    let n = 0;
    const got = await pageAll(method, field, def, reader, async () => {
      // A config that differs each time (an unchanged one is not reloaded).
      writeFileSync(gw.configPath, yaml(config, doc('Agent', `spare-${method.replace(/\W/g, '-')}-${n++}`, { workload: 'spiffe://prod/agent/spare' })));
      assert.equal(gw.g.rt.reload(), null);
    });
    assert.equal(got.upstream, 3, `${method}: after a reload each page gathers again`);
  }
  // A list_changed heard from the upstream (aam listens to it for a client's listen stream).
  const ac = new AbortController();
  const body = { jsonrpc: '2.0', id: 7, method: 'subscriptions/listen', params: { notifications: { promptsListChanged: true, resourcesListChanged: true }, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const r = await fetch(`${gw.url}/mcp/wide`, { method: 'POST', signal: ac.signal, body: JSON.stringify(body), headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${reader}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' } });
  const heard = sseMessages(r.body);
  try {
    await until(() => heard.length > 0 && streams.some((s) => !s.closed), 20_000, 'aam listening to the upstream');
    for (const [method, field, def] of LISTS) {
      const list = method === 'prompts/list' ? 'prompts' : 'resources';
      const got = await pageAll(method, field, def, reader, async () => {
        const seen = heard.length;
        for (const s of streams) if (!s.closed) s.write({ jsonrpc: '2.0', method: `notifications/${list}/list_changed`, params: {} });
        await until(() => heard.length > seen && heard.at(-1)?.method === `notifications/${list}/list_changed`, 20_000, 'the list_changed relayed');
      });
      assert.equal(got.upstream, 3, `${method}: after a list_changed each page gathers again`);
    }
  } finally { ac.abort(); }
});
