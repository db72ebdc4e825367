// aam's own prompts/list, resources/list and resources/templates/list answers are paged like its
// tools/list: 200 items a page, an opaque nextCursor while more follow, -32602 for a cursor aam did
// not make; in both generations (the MCP SDK's 2025-11-25 session client, which a caller pages by
// following nextCursor, and raw 2026-07-28 requests). Two upstreams (2026-07-28, written from the
// spec) answer after a random delay, so the servers' answers arrive in a different order each
// time: the pages must still be cut from one order (no item twice, none missing).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { ADMIN_TOKEN, connectClient, mcpSchemaCheck, serversReady, type SchemaCheck } from './helpers/mcp.ts';
import { listenLoopback, closeAll } from './helpers/e2e.ts';

const VERSION = '2026-07-28';
const PAGE = 200;
/** Items each upstream has of each list. */
const SIZES: Record<string, number> = { big: 250, small: 3 };

const upstreams: HttpServer[] = [];
let gw: TestGateway;
let key: string;
let client: Client;
let check: SchemaCheck = () => {};

async function startUpstream(name: string): Promise<string> {
  const n = SIZES[name];
  const ids = Array.from({ length: n }, (_, i) => `${name}-${String(i).padStart(3, '0')}`);
  const upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string };
    const ok = (result: Record<string, unknown>) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { resultType: 'complete', ttlMs: 0, cacheScope: 'public', ...result } }));
    };
    // The servers answer in a different order each time.
    await new Promise((r) => setTimeout(r, Math.random() * 30));
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: {}, prompts: {}, resources: {} } });
    if (body.method === 'tools/list') return ok({ tools: [{ name: 'noop', inputSchema: { type: 'object', properties: {} } }] });
    if (body.method === 'prompts/list') return ok({ prompts: ids.map((id) => ({ name: id })) });
    if (body.method === 'resources/list') return ok({ resources: ids.map((id) => ({ uri: `memo://${id}`, name: id })) });
    if (body.method === 'resources/templates/list') return ok({ resourceTemplates: ids.map((id) => ({ uriTemplate: `memo://${id}/{part}`, name: id })) });
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, error: { code: -32601, message: `Method not found: ${body.method}` } }));
  });
  upstreams.push(upstream);
  return listenLoopback(upstream, '/mcp');
}

before(async () => {
  check = await mcpSchemaCheck();
  const [big, small] = [await startUpstream('big'), await startUpstream('small')];
  gw = await startTestGateway(yaml(
    doc('Agent', 'reader', { workload: 'spiffe://prod/agent/reader' }),
    doc('AgentPolicy', 'reader-policy', { identity: { workload: 'spiffe://prod/agent/reader' }, tools: [{ resource: 'big', actions: ['*'] }, { resource: 'small', actions: ['*'] }] }),
    doc('McpServer', 'big', { transport: 'streamable-http', url: big, timeout_ms: 60_000 }),
    doc('McpServer', 'small', { transport: 'streamable-http', url: small, timeout_ms: 60_000 }),
  ), { AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  key = gw.key('reader');
  await serversReady(gw);
  client = (await connectClient(gw, key)).client;
});

after(() => closeAll(client, gw, ...upstreams));

/** What /mcp lists: every item of both servers, named <server>__<name> for prompts. */
const expected = (f: (server: string, id: string) => string) => Object.keys(SIZES).flatMap((server) =>
  Array.from({ length: SIZES[server] }, (_, i) => f(server, `${server}-${String(i).padStart(3, '0')}`))).sort();

/** Every page of a list through the SDK client, following nextCursor; the size of each page. */
async function pages<R extends { nextCursor?: string }>(list: (p?: { cursor: string }) => Promise<R>, items: (r: R) => string[]): Promise<{ all: string[]; sizes: number[] }> {
  const all: string[] = [];
  const sizes: number[] = [];
  let cursor: string | undefined;
  do {
    const r = await list(cursor ? { cursor } : undefined);
    all.push(...items(r));
    sizes.push(items(r).length);
    cursor = r.nextCursor;
  } while (cursor);
  return { all, sizes };
}

test('a 2025-11-25 session (the SDK client) gets prompts, resources and resource templates in pages of 200, and all of them by following nextCursor', async () => {
  const lists = {
    prompts: [await pages((p) => client.listPrompts(p), (r) => r.prompts.map((x) => x.name)), expected((s, id) => `${s}__${id}`)],
    resources: [await pages((p) => client.listResources(p), (r) => r.resources.map((x) => x.uri)), expected((_, id) => `memo://${id}`)],
    templates: [await pages((p) => client.listResourceTemplates(p), (r) => r.resourceTemplates.map((x) => x.uriTemplate)), expected((_, id) => `memo://${id}/{part}`)],
  } as const;
  for (const [name, [got, want]] of Object.entries(lists)) {
    assert.deepEqual(got.sizes, [PAGE, want.length - PAGE], `${name}: a full page, then the rest`);
    assert.equal(new Set(got.all).size, got.all.length, `${name}: nothing twice across pages`);
    assert.deepEqual([...got.all].sort(), want, `${name}: every item`);
  }
  // Listed twice, the pages hold the same items in the same order, whichever server answered first.
  for (let i = 0; i < 3; i++) {
    const again = await pages((p) => client.listPrompts(p), (r) => r.prompts.map((x) => x.name));
    assert.deepEqual(again.all, lists.prompts[0].all, 'the same order every time');
  }
});

test('a 2025-11-25 session: a cursor aam did not make is refused with -32602, as tools/list does', async () => {
  for (const [method, call] of [
    ['prompts/list', () => client.listPrompts({ cursor: 'garbage' })],
    ['resources/list', () => client.listResources({ cursor: 'garbage' })],
    ['resources/templates/list', () => client.listResourceTemplates({ cursor: 'garbage' })],
    ['tools/list', () => client.listTools({ cursor: 'garbage' })],
  ] as const) {
    const e = await call().then(() => assert.fail(`${method}: a bad cursor was accepted`), (err: unknown) => err);
    assert.ok(e instanceof McpError, String(e));
    assert.equal(e.code, -32602, `${method}: ${e.message}`);
    assert.match(e.message, new RegExp(`invalid ${method.replace('/', '\\/')} cursor`));
  }
});

/** A raw 2026-07-28 request to /mcp. */
async function modern(method: string, params: Record<string, unknown> = {}): Promise<{ status: number; body: { result?: Record<string, any>; error?: { code: number; message: string } } }> {
  const body = { jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const r = await fetch(`${gw.url}/mcp`, {
    method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}`, 'mcp-protocol-version': VERSION, 'mcp-method': method },
  });
  return { status: r.status, body: await r.json() as { result?: Record<string, any>; error?: { code: number; message: string } } };
}

test('a 2026-07-28 request: the first page carries 200 items and a nextCursor, the page it names the rest and none; a bad cursor gets tools/list\'s -32602', async () => {
  for (const [method, field, def] of [['prompts/list', 'prompts', 'ListPromptsResult'], ['resources/list', 'resources', 'ListResourcesResult'], ['resources/templates/list', 'resourceTemplates', 'ListResourceTemplatesResult']] as const) {
    const first = await modern(method);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    check(def, first.body.result);
    assert.equal(first.body.result![field].length, PAGE, method);
    assert.equal(typeof first.body.result!.nextCursor, 'string', `${method}: nextCursor on the first page`);
    const second = await modern(method, { cursor: first.body.result!.nextCursor });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    check(def, second.body.result);
    assert.equal(second.body.result![field].length, SIZES.big + SIZES.small - PAGE, method);
    assert.equal(second.body.result!.nextCursor, undefined, `${method}: no nextCursor on the last page`);
    const seen = [...first.body.result![field], ...second.body.result![field]].map((x: Record<string, string>) => JSON.stringify(x));
    assert.equal(new Set(seen).size, SIZES.big + SIZES.small, `${method}: nothing twice across pages`);
    // As tools/list answers it: a JSON-RPC -32602 (an error result, HTTP 200).
    const [bad, tools] = [await modern(method, { cursor: 'not-a-cursor' }), await modern('tools/list', { cursor: 'not-a-cursor' })];
    assert.equal(bad.status, tools.status);
    assert.equal(bad.body.error?.code, -32602, JSON.stringify(bad.body));
    assert.equal(bad.body.error?.code, tools.body.error?.code);
    assert.equal(bad.body.error!.message, tools.body.error!.message.replace('tools/list', method));
  }
});
