// MCP 2026-07-28 (stateless) and 2025-11-25 (sessions) on the same aam endpoints, end to end: the
// SDK's v1 client for 2025-11-25; for 2026-07-28 the SDK's v2 client (@modelcontextprotocol/client,
// its versionNegotiation pinned or auto) and, for what it would never send (mismatched headers, bad
// versions, batches), a small client written from the spec (basic/transports/streamable-http,
// server/discover). One upstream is a real SDK server that speaks only 2025-11-25, so every modern
// call to it is translated by aam; the other a 2026-07-28 server written from the spec.
// Every modern message sent and received is also validated against the spec's JSON Schema
// (vendored in test/fixtures/mcp-schema).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { Client as ModernClient, StreamableHTTPClientTransport as ModernTransport, ProtocolError } from '@modelcontextprotocol/client';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient, mcpSchemaCheck, serversReady, textOf, ADMIN_TOKEN, type SchemaCheck } from './helpers/mcp.ts';
import { listenLoopback, closeAll } from './helpers/e2e.ts';

const SECRET = 'upstream-secret-NEEDLE-5f4e3d2c1b0a';
const VERSION = '2026-07-28';
/** Only modern-slow has a short timeout (it bounds its server/discover probe too): a slow CPU must not trip it. */
const SLOW_TIMEOUT_MS = 2000;

/** What the legacy upstream saw: JSON-RPC methods, tool calls and the Authorization headers. */
const seen = { methods: [] as string[], calls: [] as string[], auth: [] as string[], traceparents: [] as string[] };
/** What the 2026-07-28-only upstream saw: each POST's headers and body. */
const modernSeen: Array<{ headers: Record<string, string | string[] | undefined>; body: { method: string; params: Record<string, unknown> } }> = [];
let upstream: HttpServer;
let modernUpstream: HttpServer;
let gw: TestGateway;
let key: string;

const TOOLS = [
  { name: 'search', description: 'search accounts in a region', inputSchema: { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' }, q: { type: 'string' }, limit: { type: 'integer', 'x-mcp-header': 'Limit' } }, required: ['region', 'q'] } },
  { name: 'leak', description: 'echoes the token it was called with', inputSchema: { type: 'object', properties: {} } },
  { name: 'wipe', description: 'deletes everything', inputSchema: { type: 'object', properties: {} } },
];

/** A 2025-11-25-only MCP server (the SDK's), stateless transport, one Server per POST. */
async function startLegacyUpstream(): Promise<string> {
  upstream = createServer(async (req, res) => {
    seen.auth.push(String(req.headers.authorization ?? ''));
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) as { method?: string } : undefined;
    if (body?.method) seen.methods.push(body.method);
    const server = new Server({ name: 'legacy-upstream', version: '1.0.0' }, { capabilities: { tools: {}, resources: {} } });
    server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: [{ uri: 'memo://q3', name: 'q3 memo' }] }));
    server.setRequestHandler(ReadResourceRequestSchema, async (r) => ({ contents: [{ uri: r.params.uri, text: 'the q3 memo' }] }));
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }) as never);
    server.setRequestHandler(CallToolRequestSchema, async (r) => {
      seen.calls.push(r.params.name);
      seen.traceparents.push(String(r.params._meta?.traceparent ?? ''));
      if (r.params.name === 'leak') return { content: [{ type: 'text', text: `I was called with ${req.headers.authorization}` }] };
      const a = r.params.arguments as { region: string; q: string };
      return { content: [{ type: 'text', text: `found ${a.q} in ${a.region}` }] };
    });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  return listenLoopback(upstream, '/mcp');
}

/**
 * A 2026-07-28-only MCP server written from the spec: stateless, validates the mirrored headers
 * against the body (-32020), answers server/discover, refuses initialize (modern-only).
 */
async function startModernUpstream(): Promise<string> {
  modernUpstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, unknown> & { _meta?: Record<string, unknown>; arguments?: Record<string, unknown> } };
    modernSeen.push({ headers: req.headers, body });
    const reply = (status: number, msg: Record<string, unknown>) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, ...msg })); };
    const version = body.params?._meta?.['io.modelcontextprotocol/protocolVersion'];
    if (version !== VERSION) return reply(400, { error: { code: -32022, message: 'Unsupported protocol version', data: { supported: [VERSION], requested: version ?? null } } });
    const name = body.params.name ?? body.params.uri;
    const region = body.params.arguments?.region;
    const raw = String(req.headers['mcp-param-region'] ?? '');
    const b64 = /^=\?base64\?(.*)\?=$/.exec(raw);
    const regionHeader = b64 ? Buffer.from(b64[1], 'base64').toString('utf8') : raw;
    if (req.headers['mcp-protocol-version'] !== VERSION || req.headers['mcp-method'] !== body.method
      || (typeof name === 'string' && req.headers['mcp-name'] !== name)
      || (region !== undefined && regionHeader !== region)) return reply(400, { error: { code: -32020, message: 'Header mismatch' } });
    const ok = (result: Record<string, unknown>) => reply(200, { result: { resultType: 'complete', ...result } });
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: {} }, ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'tools/list') return ok({ tools: [TOOLS[0], { name: 'whoami', inputSchema: { type: 'object', properties: {} } }, { name: 'hang', inputSchema: { type: 'object', properties: {} } }], ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'tools/call' && name === 'hang') return; // never answers (the client gives up)
    if (body.method === 'tools/call' && name === 'search') return ok({ content: [{ type: 'text', text: `modern found ${String(body.params.arguments?.q)} in ${String(region)}` }] });
    if (body.method === 'tools/call' && name === 'whoami') return ok({ content: [{ type: 'text', text: `token ${req.headers.authorization}` }] });
    return reply(404, { error: { code: -32601, message: `Method not found: ${body.method}` } });
  });
  return listenLoopback(modernUpstream, '/mcp');
}

let check: SchemaCheck = () => {};

interface Sent { status: number; body: { id?: unknown; result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } } }

/**
 * A conformant 2026-07-28 request: _meta with version and capabilities, MCP-Protocol-Version,
 * Mcp-Method, Mcp-Name for named methods, Mcp-Param-* for x-mcp-header arguments; `headers` overrides.
 */
async function modern(method: string, params: Record<string, unknown> = {}, o: { path?: string; headers?: Record<string, string | null>; token?: string; version?: string; meta?: Record<string, unknown> } = {}): Promise<Sent> {
  const version = o.version ?? VERSION;
  const body = { jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': version, 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {}, ...o.meta } } };
  const headers: Record<string, string> = {
    'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${o.token ?? key}`,
    'mcp-protocol-version': version, 'mcp-method': method,
  };
  const name = params.name ?? params.uri;
  if (typeof name === 'string') headers['mcp-name'] = name;
  const args = params.arguments as Record<string, unknown> | undefined;
  if (method === 'tools/call' && args) {
    if (args.region !== undefined) headers['mcp-param-region'] = String(args.region);
    if (args.limit !== undefined) headers['mcp-param-limit'] = String(args.limit);
  }
  for (const [k, v] of Object.entries(o.headers ?? {})) { if (v === null) delete headers[k]; else headers[k] = v; }
  if (!o.version) check(method === 'tools/call' ? 'CallToolRequest' : method === 'tools/list' ? 'ListToolsRequest' : method === 'server/discover' ? 'DiscoverRequest' : 'JSONRPCRequest', body);
  const r = await fetch(`${gw.url}${o.path ?? '/mcp'}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) as Sent['body'] : {} };
}

before(async () => {
  check = await mcpSchemaCheck();
  const url = await startLegacyUpstream();
  const modernUrl = await startModernUpstream();
  gw = await startTestGateway(yaml(
    doc('Credential', 'up-token', { env: 'TEST_UP_TOKEN' }),
    doc('Agent', 'navigator', { workload: 'spiffe://prod/agent/navigator', team: 'ops', environment: 'prod' }),
    doc('AgentPolicy', 'navigator-policy', { identity: { workload: 'spiffe://prod/agent/navigator' }, tools: [{ resource: 'legacy', actions: ['search', 'leak', 'resources/read'], deny: ['wipe'] }, { resource: 'modern', actions: ['search', 'whoami'] }, { resource: 'modern-slow', actions: ['hang'] }] }),
    doc('McpServer', 'legacy', { transport: 'streamable-http', url, credential: 'up-token', timeout_ms: 60_000 }),
    doc('McpServer', 'modern', { transport: 'streamable-http', url: modernUrl, credential: 'up-token', timeout_ms: 60_000 }),
    doc('McpServer', 'modern-slow', { transport: 'streamable-http', url: modernUrl, timeout_ms: SLOW_TIMEOUT_MS }),
  ), { TEST_UP_TOKEN: SECRET, AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  key = gw.key('navigator');
  await serversReady(gw);
});

after(() => closeAll(gw, upstream, modernUpstream));

test('server/discover answers both generations on /mcp and /mcp/<server>, without a session', async () => {
  for (const path of ['/mcp', '/mcp/legacy']) {
    const r = await modern('server/discover', {}, { path });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const res = r.body.result!;
    assert.deepEqual((res.supportedVersions as string[]).slice(0, 2), ['2026-07-28', '2025-11-25']);
    assert.equal(res.resultType, 'complete');
    assert.ok((res.capabilities as Record<string, unknown>).tools);
    assert.equal(res.cacheScope, 'private', 'what aam lists depends on who asks');
    check('DiscoverResultResponse', r.body);
  }
});

test('a modern client lists and calls tools of a 2025-11-25 upstream through aam; the upstream sees aam\'s credential only', async () => {
  const list = await modern('tools/list');
  assert.equal(list.status, 200);
  check('ListToolsResultResponse', list.body);
  const names = (list.body.result!.tools as Array<{ name: string }>).map((t) => t.name).filter((n) => n.startsWith('legacy__')).sort();
  assert.deepEqual(names, ['legacy__leak', 'legacy__search'], 'the denied tool is not listed');
  const before = seen.auth.length;
  const call = await modern('tools/call', { name: 'legacy__search', arguments: { region: 'us-west1', q: 'acme', limit: 5 } });
  assert.equal(call.status, 200, JSON.stringify(call.body));
  check('CallToolResultResponse', call.body);
  assert.equal(call.body.result!.resultType, 'complete');
  assert.equal(textOf(call.body.result), 'found acme in us-west1');
  const one = await modern('tools/call', { name: 'search', arguments: { region: 'eu', q: 'x' } }, { path: '/mcp/legacy' });
  assert.equal(textOf(one.body.result), 'found x in eu');
  const upstreamAuth = seen.auth.slice(before);
  assert.ok(upstreamAuth.length > 0);
  for (const a of upstreamAuth) {
    assert.ok(!a.includes(key), 'the client\'s token never goes upstream');
    assert.ok(a.includes(SECRET), 'the upstream gets the credential aam injects');
  }
  // aam probed it once (server/discover, answered -32601 by a legacy server), then initialized a session.
  assert.ok(seen.methods.indexOf('initialize') > seen.methods.indexOf('server/discover'), 'the legacy upstream is spoken to in its own generation');
  assert.equal(seen.methods.filter((m) => m === 'server/discover').length, 1);
});

test('the SDK\'s 2025-11-25 client keeps initialize and sessions on the same endpoint', async () => {
  const { client } = await connectClient(gw, key);
  try {
    assert.equal(client.getServerVersion()?.name, 'aam');
    const tools = (await client.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith('legacy__')).sort();
    assert.deepEqual(tools, ['legacy__leak', 'legacy__search']);
    const r = await client.callTool({ name: 'legacy__search', arguments: { region: 'ap', q: 'y' } });
    assert.equal(textOf(r), 'found y in ap');
    // a modern request in between, on the same endpoint, is still answered statelessly
    assert.equal((await modern('tools/list')).status, 200);
    assert.equal(textOf(await client.callTool({ name: 'legacy__search', arguments: { region: 'ap', q: 'z' } })), 'found z in ap');
  } finally {
    await client.close();
  }
});

test('header/body mismatch is -32020 with 400, before routing or deciding: nothing reaches the upstream', async () => {
  const calls = seen.calls.length;
  const cases: Array<[string, Record<string, unknown>, Record<string, string | null>, RegExp]> = [
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-name': 'legacy__leak' }, /Mcp-Name header value "legacy__leak" does not match/],
    ['tools/call', { name: 'legacy__wipe', arguments: {} }, { 'mcp-name': 'legacy__search' }, /Mcp-Name/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-method': 'tools/list' }, /Mcp-Method header "tools\/list" does not match/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-name': null }, /missing Mcp-Name/],
    ['tools/list', {}, { 'mcp-method': null }, /missing Mcp-Method/],
    ['tools/list', {}, { 'mcp-protocol-version': '2025-11-25' }, /MCP-Protocol-Version header "2025-11-25" does not match/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-param-region': 'eu' }, /Mcp-Param-Region header does not match/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-param-region': null }, /missing Mcp-Param-Region/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a', limit: 5 } }, { 'mcp-param-limit': '6' }, /Mcp-Param-Limit/],
    ['tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 'a' } }, { 'mcp-param-limit': '6' }, /Mcp-Param-Limit header sent but arguments.limit is absent/],
  ];
  for (const [method, params, headers, message] of cases) {
    const r = await modern(method, params, { headers });
    assert.equal(r.status, 400, `${JSON.stringify(headers)}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, -32020);
    assert.match(r.body.error!.message, message);
    check('HeaderMismatchError', r.body);
  }
  assert.equal(seen.calls.length, calls, 'no mismatched call reached the upstream');
  // Base64 sentinel values decode before comparison; integers compare as numbers.
  const ok = await modern('tools/call', { name: 'legacy__search', arguments: { region: 'Zürich', q: 'b', limit: 7 } },
    { headers: { 'mcp-param-region': `=?base64?${Buffer.from('Zürich').toString('base64')}?=`, 'mcp-param-limit': '7.0' } });
  assert.equal(textOf(ok.body.result), 'found b in Zürich');
});

test('a denied tool is still denied on the modern generation, naming the policy, and never reaches the upstream', async () => {
  const calls = seen.calls.length;
  const r = await modern('tools/call', { name: 'legacy__wipe', arguments: {} });
  assert.equal(r.body.error?.code, -32001);
  assert.match(r.body.error!.message, /navigator-policy/);
  assert.equal(seen.calls.length, calls);
});

test('a secret echoed by the upstream is scrubbed on the modern generation', async () => {
  const r = await modern('tools/call', { name: 'legacy__leak', arguments: {} });
  const raw = JSON.stringify(r.body);
  assert.equal(r.status, 200);
  assert.ok(seen.calls.includes('leak'));
  assert.ok(!raw.includes(SECRET) && !raw.includes('NEEDLE'), raw);
});

test('versions: an unknown one is -32022 listing the supported ones; capabilities are required', async () => {
  const r = await modern('tools/list', {}, { version: '1900-01-01' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error?.code, -32022);
  assert.deepEqual(r.body.error?.data?.requested, '1900-01-01');
  assert.ok((r.body.error?.data?.supported as string[]).includes('2026-07-28'));
  check('UnsupportedProtocolVersionError', r.body);
  const noSession = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }) });
  assert.equal(noSession.status, 400, 'a request of neither generation is refused');
  assert.match(((await noSession.json()) as Sent['body']).error!.message, /initialize.*or send MCP 2026-07-28 requests/);
  const noCaps = await fetch(`${gw.url}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION } } }),
  });
  assert.equal(noCaps.status, 400);
  assert.match(((await noCaps.json()) as Sent['body']).error!.message, /clientCapabilities"\] is required/);
  const unknown = await modern('logging/setLevel', { level: 'info' });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error?.code, -32601);
});

test('a body that is not one request object, without a session, is -32600 saying so (no batches since 2025-06-18), not "missing Mcp-Session-Id"', async () => {
  const item = { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const upstreamBefore = seen.methods.length + modernSeen.length;
  for (const [what, body, headers] of [
    ['a 2026-07-28 batch', [item, { ...item, id: 2 }], { 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' }],
    ['an empty batch', [], { 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/list' }],
    ['a batch without version headers', [item], {}],
    ['a JSON string', 'tools/list', {}],
    ['null', null, {}],
  ] as const) {
    const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: JSON.stringify(body) });
    const j = await r.json() as Sent['body'];
    assert.equal(r.status, 400, what);
    assert.equal(j.error?.code, -32600, `${what}: ${JSON.stringify(j)}`);
    assert.match(j.error!.message, /one JSON-RPC request object/, what);
    assert.doesNotMatch(j.error!.message, /Mcp-Session-Id/, what);
  }
  assert.equal(seen.methods.length + modernSeen.length, upstreamBefore, 'nothing reached an upstream');
});

test('an id that is not a string or an integer (MCP: never null) is -32600 with id null, not echoed back as if valid', async () => {
  const upstreamBefore = seen.methods.length + modernSeen.length;
  for (const id of [null, { a: 1 }, [1], true, 1.5]) {
    const body = { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'legacy__search', arguments: { region: 'eu', q: 'x' }, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientCapabilities': {} } } };
    const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/call', 'mcp-name': 'legacy__search', 'mcp-param-region': 'eu' }, body: JSON.stringify(body) });
    const j = await r.json() as Sent['body'];
    assert.equal(r.status, 400, JSON.stringify(id));
    assert.equal(j.error?.code, -32600, `${JSON.stringify(id)}: ${JSON.stringify(j)}`);
    assert.equal(j.id, null);
    assert.match(j.error!.message, /id must be a string or an integer/);
  }
  assert.equal(seen.methods.length + modernSeen.length, upstreamBefore, 'nothing reached an upstream');
});

test('tokens for another audience are refused (RFC 8707): a JWT-SVID for another resource, an on-behalf-of assertion', async () => {
  const issuer = gw.g.rt.issuer!;
  const spiffeId = 'spiffe://prod/agent/navigator';
  const good = await issuer.mint({ spiffeId, audience: 'aam', ttlSeconds: 60 });
  assert.equal((await modern('tools/list', {}, { token: good })).status, 200, 'a JWT-SVID for aam works');
  const elsewhere = await issuer.mint({ spiffeId, audience: 'https://other.example.com/mcp', ttlSeconds: 60 });
  const obo = await issuer.signAssertion({ sub: spiffeId, aud: 'https://downstream.example.com' });
  const calls = seen.calls.length;
  for (const token of [elsewhere, obo]) {
    const r = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'mcp-protocol-version': VERSION, 'mcp-method': 'tools/call', 'mcp-name': 'legacy__leak' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'legacy__leak', arguments: {}, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientCapabilities': {} } } }),
    });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /resource_metadata="[^"]+\/\.well-known\/oauth-protected-resource\/mcp"/);
  }
  assert.equal(seen.calls.length, calls);
  const meta = await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json() as { resource: string };
  assert.match(meta.resource, /\/mcp$/);
});

test('aam speaks 2026-07-28 to an upstream that does: SDK (2025-11-25) and modern clients both reach it, with mirrored headers and aam\'s credential', async () => {
  const start = modernSeen.length;
  const { client } = await connectClient(gw, key);
  try {
    const tools = (await client.listTools()).tools.map((t) => t.name).filter((n) => n.startsWith('modern__')).sort();
    assert.deepEqual(tools, ['modern__search', 'modern__whoami']);
    assert.equal(textOf(await client.callTool({ name: 'modern__search', arguments: { region: 'Zürich', q: 'acme' } })), 'modern found acme in Zürich');
    const who = textOf(await client.callTool({ name: 'modern__whoami', arguments: {} }));
    assert.ok(!who.includes(SECRET) && !who.includes(key), 'the credential is scrubbed and the client key never went upstream');
  } finally {
    await client.close();
  }
  const call = await modern('tools/call', { name: 'search', arguments: { region: 'eu', q: 'm' } }, { path: '/mcp/modern' });
  assert.equal(textOf(call.body.result), 'modern found m in eu');
  const got = modernSeen.slice(start);
  assert.ok(got.length >= 3);
  assert.ok(got.every((r) => r.body.method !== 'initialize' && r.headers['mcp-session-id'] === undefined), 'no handshake, no session');
  const calls = got.filter((r) => r.body.method === 'tools/call');
  assert.equal(calls.length, 3, 'every call reached the upstream once, none refused for its headers');
  const zurich = calls.find((r) => (r.body.params.arguments as { q?: string }).q === 'acme')!;
  assert.equal(zurich.headers['mcp-param-region'], `=?base64?${Buffer.from('Zürich').toString('base64')}?=`, 'non-ASCII header values are Base64-encoded');
  for (const r of calls) {
    assert.ok(String(r.headers.authorization).includes(SECRET) && !String(r.headers.authorization).includes(key));
    assert.equal((r.body.params._meta as Record<string, unknown>)['io.modelcontextprotocol/protocolVersion'], VERSION);
  }
});

/** The MCP SDK's v2 client (2026-07-28) on aam's `path`, as the caller: pinned to 2026-07-28, or probing (auto). */
async function sdkModern(path: string, mode: 'auto' | { pin: '2026-07-28' }): Promise<ModernClient> {
  const client = new ModernClient({ name: 'sdk-v2', version: '1.0.0' }, { capabilities: {}, versionNegotiation: { mode } });
  await client.connect(new ModernTransport(new URL(`${gw.url}${path}`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return client;
}

test('the MCP SDK\'s own 2026-07-28 client (v2, pinned or auto) through aam: discover, list, call both upstream generations with its mirrored headers, a denial it raises, scrubbed answers', async () => {
  for (const mode of [{ pin: '2026-07-28' } as const, 'auto' as const]) {
    const start = modernSeen.length;
    const client = await sdkModern('/mcp', mode);
    try {
      assert.equal(client.getServerVersion()?.name, 'aam');
      const tools = (await client.listTools()).tools.map((t) => t.name).filter((n) => /^(legacy|modern)__/.test(n)).sort();
      assert.deepEqual(tools, ['legacy__leak', 'legacy__search', 'modern__search', 'modern__whoami'], 'the denied tool is not listed');
      assert.equal(textOf(await client.callTool({ name: 'legacy__search', arguments: { region: 'Zürich', q: 'a', limit: 3 } })), 'found a in Zürich');
      assert.equal(textOf(await client.callTool({ name: 'modern__search', arguments: { region: 'Zürich', q: 'b', limit: 4 } })), 'modern found b in Zürich');
      const leaked = textOf(await client.callTool({ name: 'legacy__leak', arguments: {} }));
      assert.ok(!leaked.includes(SECRET) && !leaked.includes(key), 'the credential is scrubbed and the client key never went upstream');
      await assert.rejects(client.callTool({ name: 'legacy__wipe', arguments: {} }), (e: unknown) => e instanceof ProtocolError && e.code === -32001 && /navigator-policy/.test(e.message));
      const read = await client.readResource({ uri: 'memo://q3' });
      assert.equal((read.contents[0] as { text: string }).text, 'the q3 memo');
    } finally {
      await client.close();
    }
    const modernCall = modernSeen.slice(start).find((r) => r.body.method === 'tools/call')!;
    assert.equal(modernCall.headers['mcp-param-region'], `=?base64?${Buffer.from('Zürich').toString('base64')}?=`, 'aam accepted the SDK\'s mirrored headers and mirrored them upstream');
  }
});

test('a trace the modern client carries in params._meta is continued to the upstream', async () => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const r = await modern('tools/call', { name: 'legacy__search', arguments: { region: 'us', q: 't' } }, { meta: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
  assert.equal(textOf(r.body.result), 'found t in us');
  assert.match(seen.traceparents.at(-1)!, new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
});

test('resources on the modern generation: listed and read without a session (the owner is found per request), private to the caller', async () => {
  const list = await modern('resources/list');
  assert.deepEqual((list.body.result!.resources as Array<{ uri: string }>).map((r) => r.uri), ['memo://q3']);
  check('ListResourcesResultResponse', list.body);
  const read = await modern('resources/read', { uri: 'memo://q3' });
  assert.equal(read.status, 200, JSON.stringify(read.body));
  check('ReadResourceResultResponse', read.body);
  assert.equal((read.body.result!.contents as Array<{ text: string }>)[0].text, 'the q3 memo');
  assert.equal(read.body.result!.cacheScope, 'private');
  assert.equal(read.body.result!.ttlMs, 0);
});

test('a 2026-07-28 upstream that does not answer in time gets the same clear timeout as a session-based one', async () => {
  const r = await modern('tools/call', { name: 'modern-slow__hang', arguments: {} });
  assert.equal(r.body.error?.code, -32603, JSON.stringify(r.body));
  assert.match(r.body.error!.message, new RegExp(`MCP server "modern-slow" did not answer tools/call "hang" within ${SLOW_TIMEOUT_MS} ms \\(raise spec.timeout_ms`));
});

test('the spec schema check is live: a tool call without a name is refused by it, a well-formed error passes', () => {
  assert.throws(() => check('CallToolRequest', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { arguments: {} } }), /CallToolRequest/);
  assert.doesNotThrow(() => check('JSONRPCErrorResponse', { jsonrpc: '2.0', id: 1, error: { code: -32601, message: 'Method not found' } }));
});
