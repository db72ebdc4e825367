// completion/complete and upstream log messages through aam, end to end, in both generations aam
// speaks to clients (2025-11-25 sessions with the SDK's client; 2026-07-28 stateless requests from a
// conformant request builder, every message checked against the spec's JSON Schema), against a
// 2025-11-25 SDK server and a 2026-07-28 server written from the spec (server/utilities/completion,
// server/utilities/logging). Completions are routed to the server owning the prompt or template and
// decided like prompts/get / resources/read; log messages reach only the client whose request the
// upstream was serving, at or above its level, scrubbed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, CompleteRequestSchema, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourceTemplatesRequestSchema, ListToolsRequestSchema,
  LoggingMessageNotificationSchema, type LoggingMessageNotification,
} from '@modelcontextprotocol/sdk/types.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient, mcpSchemaCheck, rpcError, serversReady, sseMessages, textOf, toolEvents, ADMIN_TOKEN, type SchemaCheck } from './helpers/mcp.ts';
import { listenLoopback, closeAll } from './helpers/e2e.ts';

const SECRET = 'complog-upstream-secret-NEEDLE-3c2b1a';
const VERSION = '2026-07-28';
const LEVELS = ['debug', 'info', 'warning', 'error'] as const;

/** What the upstreams were asked to complete (as they received it). */
const completions: Array<{ server: string; params: Record<string, unknown> }> = [];
/** The log level each 2026-07-28 upstream request carried in _meta. */
const modernLevels: unknown[] = [];
let legacyUp: HttpServer;
let modernUp: HttpServer;
let gw: TestGateway;
let key: string;
let intruderKey: string;
let check: SchemaCheck = () => {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A 2025-11-25 SDK server (one per POST, answering on event streams); ?plain: tools only (no completions, no logging). */
async function startLegacy(): Promise<string> {
  legacyUp = createServer(async (req, res) => {
    const auth = String(req.headers.authorization ?? '');
    const plain = (req.url ?? '').includes('plain');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown : undefined;
    const server = new Server({ name: 'legacy', version: '1.0.0' }, { capabilities: plain ? { tools: {} } : { tools: {}, prompts: {}, resources: {}, completions: {}, logging: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'chatty', inputSchema: { type: 'object', properties: { tag: { type: 'string' } } } }] }));
    server.setRequestHandler(CallToolRequestSchema, async (r, extra) => {
      const tag = String(r.params.arguments?.tag);
      if (!plain) {
        for (const level of LEVELS) {
          await extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'chatty', data: `${tag} ${level} with ${auth}` } });
          await sleep(20); // calls of different clients interleave
        }
      }
      return { content: [{ type: 'text', text: `chatty ${tag} done` }] };
    });
    if (!plain) {
      server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: [{ name: 'review', arguments: [{ name: 'language' }] }] }));
      server.setRequestHandler(GetPromptRequestSchema, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'review this' } }] }));
      server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({ resourceTemplates: [{ uriTemplate: 'memo://{region}', name: 'memo' }] }));
      server.setRequestHandler(CompleteRequestSchema, async (r) => {
        completions.push({ server: 'legacy', params: r.params as Record<string, unknown> });
        const v = r.params.argument.value;
        const all = r.params.ref.type === 'ref/prompt' ? ['python', 'pytorch', 'perl', `py-token ${auth}`] : ['eu-west', 'eu-north', 'us-east'];
        const values = all.filter((x) => x.startsWith(v));
        return { completion: { values, total: values.length, hasMore: false } };
      });
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  return listenLoopback(legacyUp, '/mcp');
}

/** A 2026-07-28 server from the spec: completions, and log messages on a request's own stream when its _meta asks for them. */
async function startModern(): Promise<string> {
  modernUp = createServer(async (req, res) => {
    const auth = String(req.headers.authorization ?? '');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, unknown> & { _meta?: Record<string, unknown>; arguments?: Record<string, unknown> } };
    const msg = (m: Record<string, unknown>) => JSON.stringify({ jsonrpc: '2.0', ...m });
    const ok = (result: Record<string, unknown>) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(msg({ id: body.id, result: { resultType: 'complete', ...result } })); };
    if (body.params?._meta?.['io.modelcontextprotocol/protocolVersion'] !== VERSION) { res.writeHead(400, { 'content-type': 'application/json' }); return void res.end(msg({ id: body.id, error: { code: -32022, message: 'Unsupported protocol version' } })); }
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: {}, prompts: {}, completions: {}, logging: {} } });
    if (body.method === 'tools/list') return ok({ tools: [{ name: 'chatty', inputSchema: { type: 'object', properties: { tag: { type: 'string' } } } }], ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'prompts/list') return ok({ prompts: [{ name: 'review', arguments: [{ name: 'language' }] }] });
    if (body.method === 'completion/complete') {
      check('CompleteRequest', body);
      completions.push({ server: 'modern', params: body.params });
      return ok({ completion: { values: ['modern-python', `modern ${auth}`], hasMore: false } });
    }
    if (body.method === 'tools/call') {
      check('CallToolRequest', body);
      const level = body.params._meta?.['io.modelcontextprotocol/logLevel'];
      modernLevels.push(level);
      const tag = String(body.params.arguments?.tag);
      const result = msg({ id: body.id, result: { resultType: 'complete', content: [{ type: 'text', text: `modern chatty ${tag} done` }] } });
      if (level === undefined) { res.writeHead(200, { 'content-type': 'application/json' }); return void res.end(result); }
      // Every level (aam filters what a server sends below the level asked for), then the answer.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const l of LEVELS) res.write(`data: ${msg({ method: 'notifications/message', params: { level: l, data: `${tag} ${l} with ${auth}` } })}\n\n`);
      return void res.end(`data: ${result}\n\n`);
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(msg({ id: body.id, error: { code: -32601, message: `Method not found: ${body.method}` } }));
  });
  return listenLoopback(modernUp, '/mcp');
}

interface Sent { status: number; type: string; messages: Array<Record<string, any>> }

/** A conformant 2026-07-28 request (checked against the schema); every JSON-RPC message of its answer (JSON or event stream). */
async function modern(method: string, params: Record<string, unknown>, o: { path?: string; token?: string; meta?: Record<string, unknown>; accept?: string; unchecked?: boolean } = {}): Promise<Sent> {
  const body = { jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'spec-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {}, ...o.meta } } };
  if (!o.unchecked) check(method === 'completion/complete' ? 'CompleteRequest' : method === 'tools/call' ? 'CallToolRequest' : method === 'prompts/get' ? 'GetPromptRequest' : 'JSONRPCRequest', body);
  const headers: Record<string, string> = {
    'content-type': 'application/json', accept: o.accept ?? 'application/json, text/event-stream', authorization: `Bearer ${o.token ?? key}`, 'mcp-protocol-version': VERSION, 'mcp-method': method,
  };
  if (typeof params.name === 'string' && method !== 'completion/complete') headers['mcp-name'] = params.name;
  const r = await fetch(`${gw.url}${o.path ?? '/mcp'}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const type = r.headers.get('content-type') ?? '';
  if (type.includes('text/event-stream')) {
    const messages = sseMessages(r.body);
    await r.text().catch(() => {});
    await sleep(0);
    return { status: r.status, type, messages };
  }
  return { status: r.status, type, messages: [JSON.parse(await r.text()) as Record<string, any>] };
}

before(async () => {
  check = await mcpSchemaCheck();
  const legacy = await startLegacy();
  const modernUrl = await startModern();
  gw = await startTestGateway(yaml(
    doc('Credential', 'up-token', { env: 'TEST_UP_TOKEN' }),
    doc('Agent', 'navigator', { workload: 'spiffe://prod/agent/navigator', team: 'ops', environment: 'prod' }),
    doc('Agent', 'intruder', { workload: 'spiffe://prod/agent/intruder', team: 'ops', environment: 'prod' }),
    doc('AgentPolicy', 'navigator-policy', { identity: { workload: 'spiffe://prod/agent/navigator' }, tools: [
      { resource: 'legacy', actions: ['chatty', 'prompts/get', 'resources/read'] }, { resource: 'modern', actions: ['chatty', 'prompts/get'] }, { resource: 'plain', actions: ['chatty'] }] }),
    // May call the tool, not get the prompts or read the resources: so it may not complete their arguments either.
    doc('AgentPolicy', 'intruder-policy', { identity: { workload: 'spiffe://prod/agent/intruder' }, tools: [{ resource: 'legacy', actions: ['chatty'] }, { resource: 'modern', actions: ['chatty'] }] }),
    doc('McpServer', 'legacy', { transport: 'streamable-http', url: legacy, credential: 'up-token', timeout_ms: 60_000 }),
    doc('McpServer', 'modern', { transport: 'streamable-http', url: modernUrl, credential: 'up-token', timeout_ms: 60_000 }),
    doc('McpServer', 'plain', { transport: 'streamable-http', url: `${legacy}?plain=1`, timeout_ms: 60_000 }),
  ), { TEST_UP_TOKEN: SECRET, AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  key = gw.key('navigator');
  intruderKey = gw.key('intruder');
  await serversReady(gw);
});

after(() => closeAll(gw, legacyUp, modernUp));

/** A session whose log messages are collected. */
async function session(k = key, path = '/mcp'): Promise<{ client: Client; logs: LoggingMessageNotification['params'][]; close(): Promise<void> }> {
  const { client, transport } = await connectClient(gw, k, path);
  const logs: LoggingMessageNotification['params'][] = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, async (n) => { logs.push(n.params); });
  return { client, logs, close: async () => { await transport.terminateSession().catch(() => {}); await client.close(); } };
}

test('2025-11-25 session: completion/complete is routed to the server owning the prompt or template, decided and scrubbed', async () => {
  const s = await session();
  try {
    assert.deepEqual(s.client.getServerCapabilities()?.completions, {}, 'a server in scope offers completions: aam declares them');
    assert.deepEqual(s.client.getServerCapabilities()?.logging, {});
    const from = completions.length;
    const r = await s.client.complete({ ref: { type: 'ref/prompt', name: 'legacy__review' }, argument: { name: 'language', value: 'py' } });
    assert.deepEqual(r.completion.values.slice(0, 2), ['python', 'pytorch']);
    assert.equal(r.completion.values.length, 3);
    assert.ok(!JSON.stringify(r).includes(SECRET), 'the credential the upstream echoed in a value is scrubbed');
    assert.match(r.completion.values[2], /\[REDACTED:up-token\]/);
    // The upstream got its own prompt name (aam's prefix removed).
    const { _meta, ...asked } = completions[from].params;
    assert.deepEqual(asked, { ref: { type: 'ref/prompt', name: 'review' }, argument: { name: 'language', value: 'py' } });
    assert.deepEqual(Object.keys(_meta ?? {}), ['traceparent'], 'only aam\'s own _meta (its trace context)');
    // A resource template, found by listing the templates (which server serves which).
    await s.client.listResourceTemplates();
    const t = await s.client.complete({ ref: { type: 'ref/resource', uri: 'memo://{region}' }, argument: { name: 'region', value: 'eu' } });
    assert.deepEqual(t.completion.values, ['eu-west', 'eu-north']);
    // Evidence: the decision, under the policy of prompts/get and resources/read, naming the method.
    const ev = (await toolEvents(gw, { type: 'tool.decision', agent: 'navigator' })).map((e) => e as unknown as { method?: string; server?: string; action?: string; decision: { allowed: boolean } })
      .filter((e) => e.method === 'completion/complete');
    assert.deepEqual(ev.slice(-2).map((e) => [e.server, e.action, e.decision.allowed]), [['legacy', 'prompts/get', true], ['legacy', 'resources/read', true]]);
  } finally { await s.close(); }
});

test('2025-11-25: a caller who may not get the prompt may not complete its arguments (the same error as prompts/get), nothing reaches the upstream', async () => {
  const s = await session(intruderKey);
  try {
    const from = completions.length;
    const denied = await rpcError(s.client.complete({ ref: { type: 'ref/prompt', name: 'legacy__review' }, argument: { name: 'language', value: 'py' } }));
    const get = await rpcError(s.client.getPrompt({ name: 'legacy__review' }));
    assert.equal(denied.code, get.code, denied.message);
    assert.deepEqual(denied.data, get.data);
    assert.match(denied.message, /completion\/complete of prompt "legacy__review"/);
    // Templates it may not read are not listed for it: the template is as unknown to it as for resources/read.
    await s.client.listResourceTemplates();
    const t = await rpcError(s.client.complete({ ref: { type: 'ref/resource', uri: 'memo://{region}' }, argument: { name: 'region', value: 'eu' } }));
    const read = await rpcError(s.client.readResource({ uri: 'memo://eu' }));
    assert.deepEqual([t.code, t.data], [read.code, read.data]);
    assert.equal(completions.length, from, 'the upstream was not asked');
  } finally { await s.close(); }
});

test('2025-11-25: /mcp/<server> completes with the server\'s own names; a scope whose server offers neither is not told completions or logging', async () => {
  const s = await session(key, '/mcp/legacy');
  const p = await session(key, '/mcp/plain');
  try {
    const r = await s.client.complete({ ref: { type: 'ref/prompt', name: 'review' }, argument: { name: 'language', value: 'pe' } });
    assert.deepEqual(r.completion.values, ['perl']);
    assert.equal(p.client.getServerCapabilities()?.completions, undefined);
    assert.equal(p.client.getServerCapabilities()?.logging, undefined);
    const e = await rpcError(p.client.complete({ ref: { type: 'ref/prompt', name: 'review' }, argument: { name: 'language', value: 'p' } }));
    assert.equal(e.code, -32601);
  } finally { await s.close(); await p.close(); }
});

test('2025-11-25: each session gets the upstream log messages of its own requests, at or above its logging/setLevel, scrubbed; none before it sets one', async () => {
  const a = await session();
  const b = await session();
  const c = await session();
  try {
    await a.client.setLoggingLevel('warning');
    await b.client.setLoggingLevel('debug');
    // Concurrent calls: the upstream interleaves its messages for the three.
    const [ra, rb, rc] = await Promise.all([
      a.client.callTool({ name: 'legacy__chatty', arguments: { tag: 'A' } }),
      b.client.callTool({ name: 'legacy__chatty', arguments: { tag: 'B' } }),
      c.client.callTool({ name: 'legacy__chatty', arguments: { tag: 'C' } }),
    ]);
    assert.deepEqual([textOf(ra), textOf(rb), textOf(rc)], ['chatty A done', 'chatty B done', 'chatty C done']);
    assert.deepEqual(a.logs.map((l) => l.data), ['A warning with Bearer [REDACTED:up-token]', 'A error with Bearer [REDACTED:up-token]']);
    assert.deepEqual(b.logs.map((l) => l.level), ['debug', 'info', 'warning', 'error']);
    assert.ok(b.logs.every((l) => String(l.data).startsWith('B ')), `B got only its own: ${JSON.stringify(b.logs)}`);
    assert.deepEqual(c.logs, [], 'a session that set no level gets none');
    assert.ok(!JSON.stringify([a.logs, b.logs]).includes(SECRET));
    // A level set on a session holds for its later requests (raised: fewer messages).
    await b.client.setLoggingLevel('error');
    b.logs.length = 0;
    await b.client.callTool({ name: 'legacy__chatty', arguments: { tag: 'B2' } });
    assert.deepEqual(b.logs.map((l) => l.level), ['error']);
    // From a 2026-07-28 upstream too (aam asks it per request).
    a.logs.length = 0;
    await a.client.callTool({ name: 'modern__chatty', arguments: { tag: 'A3' } });
    assert.deepEqual(a.logs.map((l) => l.data), ['A3 warning with Bearer [REDACTED:up-token]', 'A3 error with Bearer [REDACTED:up-token]']);
    assert.equal(modernLevels.at(-1), 'warning');
  } finally { await a.close(); await b.close(); await c.close(); }
});

test('2026-07-28: server/discover declares completions and logging when a server in scope has them; completion/complete both upstream generations, schema-checked', async () => {
  const d = await modern('server/discover', {});
  check('DiscoverResult', d.messages[0].result);
  assert.deepEqual([d.messages[0].result.capabilities.completions, d.messages[0].result.capabilities.logging], [{}, {}]);
  const plain = await modern('server/discover', {}, { path: '/mcp/plain' });
  assert.deepEqual([plain.messages[0].result.capabilities.completions, plain.messages[0].result.capabilities.logging], [undefined, undefined]);
  const from = completions.length;
  const r = await modern('completion/complete', { ref: { type: 'ref/prompt', name: 'legacy__review' }, argument: { name: 'language', value: 'py' } });
  check('CompleteResultResponse', r.messages[0]);
  assert.deepEqual(r.messages[0].result.completion.values.slice(0, 2), ['python', 'pytorch']);
  const m = await modern('completion/complete', { ref: { type: 'ref/prompt', name: 'modern__review' }, argument: { name: 'language', value: 'py' }, context: { arguments: { style: 'strict' } } });
  check('CompleteResultResponse', m.messages[0]);
  assert.deepEqual(m.messages[0].result.completion.values, ['modern-python', 'modern Bearer [REDACTED:up-token]']);
  assert.deepEqual(completions.slice(from).map((c) => [c.server, (c.params.ref as { name: string }).name]), [['legacy', 'review'], ['modern', 'review']]);
  assert.deepEqual(completions.at(-1)?.params.context, { arguments: { style: 'strict' } });
  // Without a session: the templates are listed (as this caller) to find which server serves one.
  const t = await modern('completion/complete', { ref: { type: 'ref/resource', uri: 'memo://{region}' }, argument: { name: 'region', value: 'us' } });
  check('CompleteResultResponse', t.messages[0]);
  assert.deepEqual(t.messages[0].result.completion.values, ['us-east']);
  assert.ok(!JSON.stringify([r, m, t]).includes(SECRET));
});

test('2026-07-28: a denied completion has the same error as the denied prompts/get, and reaches no upstream', async () => {
  const from = completions.length;
  const denied = await modern('completion/complete', { ref: { type: 'ref/prompt', name: 'modern__review' }, argument: { name: 'language', value: 'py' } }, { token: intruderKey });
  const get = await modern('prompts/get', { name: 'modern__review' }, { token: intruderKey });
  check('JSONRPCErrorResponse', denied.messages[0]);
  assert.equal(denied.status, get.status);
  assert.equal(denied.messages[0].error.code, get.messages[0].error.code);
  assert.deepEqual(denied.messages[0].error.data, get.messages[0].error.data);
  assert.equal(completions.length, from);
});

test('2026-07-28: a request\'s _meta log level brings the upstream log messages of that request only, on its own stream, scrubbed', async () => {
  const meta = (level: string) => ({ 'io.modelcontextprotocol/logLevel': level });
  // Concurrent requests of the same caller with different levels, through both upstream generations.
  const [a, b, none] = await Promise.all([
    modern('tools/call', { name: 'legacy__chatty', arguments: { tag: 'MA' } }, { meta: meta('warning') }),
    modern('tools/call', { name: 'modern__chatty', arguments: { tag: 'MB' } }, { meta: meta('info') }),
    modern('tools/call', { name: 'legacy__chatty', arguments: { tag: 'MC' } }),
  ]);
  for (const x of [...a.messages, ...b.messages]) check(x.method === 'notifications/message' ? 'LoggingMessageNotification' : 'JSONRPCResultResponse', x);
  const logsOf = (s: Sent) => s.messages.filter((x) => x.method === 'notifications/message').map((x) => x.params as { level: string; data: string });
  assert.deepEqual(logsOf(a).map((l) => l.data), ['MA warning with Bearer [REDACTED:up-token]', 'MA error with Bearer [REDACTED:up-token]']);
  assert.deepEqual(logsOf(b).map((l) => l.data), ['MB info with Bearer [REDACTED:up-token]', 'MB warning with Bearer [REDACTED:up-token]', 'MB error with Bearer [REDACTED:up-token]']);
  assert.equal(a.messages.at(-1)?.result?.content[0].text, 'chatty MA done', 'the answer comes after its log messages');
  assert.ok(modernLevels.includes('info'), 'the 2026-07-28 upstream was asked for the level in _meta');
  // No level: no log messages, a plain JSON answer.
  assert.match(none.type, /application\/json/);
  assert.deepEqual(logsOf(none), []);
  assert.equal(none.messages[0].result.content[0].text, 'chatty MC done');
  assert.ok(!JSON.stringify([a, b]).includes(SECRET));
  // An unknown level is refused (-32602), the call not made.
  const bad = await modern('tools/call', { name: 'legacy__chatty', arguments: { tag: 'MD' } }, { meta: meta('loud'), unchecked: true });
  assert.equal(bad.messages[0].error.code, -32602);
});

test('2026-07-28: log messages need a client that accepts an event stream; without one the answer is plain JSON', async () => {
  const r = await modern('tools/call', { name: 'legacy__chatty', arguments: { tag: 'J' } }, { meta: { 'io.modelcontextprotocol/logLevel': 'debug' }, accept: 'application/json' });
  assert.match(r.type, /application\/json/);
  assert.equal(r.messages[0].result.content[0].text, 'chatty J done');
});

test('2026-07-28: completion/complete with a malformed ref is invalid params', async () => {
  const r = await modern('completion/complete', { ref: { type: 'ref/nothing' }, argument: { name: 'x', value: 'y' } }, { unchecked: true });
  assert.equal(r.messages[0].error.code, -32602);
});
