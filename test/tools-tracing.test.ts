// Tool-plane observability like the model plane's: an execute_tool span per MCP and HTTP tool call
// (OpenTelemetry GenAI conventions), the trace context handed to MCP servers in params._meta and to
// HTTP tools as a traceparent header, trace_id on every audit event (so `aam audit query --trace`
// finds the chat and tool events of one trace), and tool-call latency per agent in /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema, ReadResourceRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, localServer, runCli, type LocalServer } from './helpers/e2e.ts';
import { ADMIN_TOKEN, admin, textOf } from './helpers/mcp.ts';
import { parseProm, sumOf } from './helpers/prom.ts';
import { startCollector, type Collector } from './observability-collector.ts';
import { queryEvents } from '../src/audit/query.ts';

type Attr = { key: string; value: Record<string, unknown> };
type OtlpSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes: Attr[]; status?: { code?: number } };

/** A Streamable HTTP MCP server (stateless) that records the _meta of every tools/call (and, apart, every read) it receives. */
async function fakeMcp(): Promise<{ url: string; metas: Array<Record<string, unknown> | undefined>; readMetas: Map<string, Record<string, unknown> | undefined>; close(): Promise<void> }> {
  const metas: Array<Record<string, unknown> | undefined> = [];
  const readMetas = new Map<string, Record<string, unknown> | undefined>();
  const read = (req: IncomingMessage) => new Promise<string>((r) => { const c: Buffer[] = []; req.on('data', (d: Buffer) => c.push(d)); req.on('end', () => r(Buffer.concat(c).toString())); });
  const http: HttpServer = createServer(async (req, res) => {
    if (req.method !== 'POST') { res.writeHead(405).end(); return; }
    const body = JSON.parse(await read(req)) as { method?: string; params?: { _meta?: Record<string, unknown> } };
    if (body.method === 'tools/call') metas.push(body.params?._meta);
    if (body.method === 'resources/read' || body.method === 'prompts/get') readMetas.set(body.method, body.params?._meta);
    const server = new Server({ name: 'fake', version: '1.0.0' }, { capabilities: { tools: {}, resources: {}, prompts: {} } });
    server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: [{ uri: 'doc://kb/faq', name: 'faq' }] }));
    server.setRequestHandler(ReadResourceRequestSchema, async (r) => ({ contents: [{ uri: r.params.uri, text: 'the faq' }] }));
    server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: [{ name: 'greet' }] }));
    server.setRequestHandler(GetPromptRequestSchema, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }] }));
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'lookup', inputSchema: { type: 'object' } }] }));
    server.setRequestHandler(CallToolRequestSchema, async () => ({ content: [{ type: 'text', text: 'found it' }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`, metas, readMetas,
    close: () => new Promise((r) => { http.closeAllConnections(); http.close(() => r()); }),
  };
}

const config = (mcpUrl: string, crmUrl: string) => yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'fast', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('McpServer', 'kb', { transport: 'streamable-http', url: mcpUrl }),
  doc('HttpTool', 'crm', { baseUrl: crmUrl, resource: 'crm.accounts', actions: { read: { method: 'GET', path: '/accounts' }, broken: { method: 'GET', path: '/broken' }, secret: { method: 'GET', path: '/secret' } } }),
  doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' }),
  doc('Guardrail', 'flag-falcon', { on: ['input'], keywords: ['project falcon'], action: 'flag' }),
  doc('AgentPolicy', 'tester', { identity: { agent: 'tester' }, guardrails: ['flag-falcon'], models: { allow: ['fast'] }, tools: [{ resource: 'kb', actions: ['lookup', 'resources/read', 'prompts/get'] }, { resource: 'crm.accounts', actions: ['read', 'broken'] }] }),
);

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const TP = `00-${TRACE}-00f067aa0ba902b7-01`;

let mcp: Awaited<ReturnType<typeof fakeMcp>>;
let crm: LocalServer;
const crmHeaders: IncomingMessage['headers'][] = [];
let collector: Collector;
let traced: TestGateway;
let plain: TestGateway;

before(async () => {
  mcp = await fakeMcp();
  crm = await localServer((req, res) => {
    crmHeaders.push(req.headers);
    res.writeHead(req.url?.startsWith('/broken') ? 500 : 200, { 'content-type': 'application/json' });
    res.end('{"rows":1}');
  });
  collector = await startCollector();
  traced = await startTestGateway(config(mcp.url, crm.url), { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50' });
  plain = await startTestGateway(config(mcp.url, crm.url), { AAM_ADMIN_TOKEN: ADMIN_TOKEN });
});
after(async () => { await traced?.close(); await plain?.close(); await collector?.close(); await crm?.close(); await mcp?.close(); });

/** An agent's MCP client whose every request carries `traceparent` (one trace for the whole task). */
async function agentClient(gw: TestGateway, key: string, traceparent: string): Promise<Client> {
  const client = new Client({ name: 'agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}`, traceparent } } }));
  return client;
}

function spansOf(c: Collector): OtlpSpan[] {
  const out: OtlpSpan[] = [];
  for (const r of c.received) {
    const b = r.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
    for (const rs of b.resourceSpans ?? []) for (const ss of rs.scopeSpans) out.push(...ss.spans);
  }
  return out;
}
const attr = (s: OtlpSpan, k: string) => s.attributes.find((a) => a.key === k)?.value;

test('tracing on: execute_tool spans for MCP and HTTP tool calls reach the collector; upstreams continue them', async () => {
  const key = traced.key('tester');
  const client = await agentClient(traced, key, TP);
  try {
    const r = await client.callTool({ name: 'kb__lookup', arguments: {} });
    assert.equal(textOf(r), 'found it');
  } finally { await client.close(); }
  const res = await fetch(`${traced.url}/tools/crm/read`, { headers: { authorization: `Bearer ${key}`, traceparent: TP } });
  assert.equal(res.status, 200, await res.clone().text());

  await traced.g.rt.tracer!.flush();
  await collector.waitFor((c) => spansOf(c).filter((s) => s.name.startsWith('execute_tool')).length >= 2, 10_000);
  const spans = spansOf(collector);
  const mcpSpan = spans.find((s) => s.name === 'execute_tool lookup');
  assert.ok(mcpSpan, `an execute_tool span for the MCP call (spans: ${spans.map((s) => s.name).join(', ')})`);
  assert.equal(mcpSpan.traceId, TRACE, 'the agent\'s trace continues through aam');
  assert.equal(mcpSpan.kind, 3, 'CLIENT span');
  assert.equal(attr(mcpSpan, 'gen_ai.operation.name')?.stringValue, 'execute_tool');
  assert.equal(attr(mcpSpan, 'gen_ai.tool.name')?.stringValue, 'lookup');
  assert.equal(attr(mcpSpan, 'mcp.method.name')?.stringValue, 'tools/call');
  assert.equal(attr(mcpSpan, 'gen_ai.agent.name')?.stringValue, 'tester');
  assert.equal(attr(mcpSpan, 'aam.tool.server')?.stringValue, 'kb');
  const parent = spans.find((s) => s.spanId === mcpSpan.parentSpanId);
  assert.equal(parent?.kind, 2, 'child of the POST /mcp server span');
  // The SERVER span's name is the route template: it names the MCP server and tool resource as attributes.
  assert.deepEqual([attr(parent!, 'aam.tool.server')?.stringValue, typeof attr(parent!, 'aam.tool.resource')?.stringValue], ['kb', 'string']);
  // The MCP server got this span as its parent in params._meta.
  const meta = mcp.metas.at(-1);
  assert.equal(meta?.traceparent, `00-${TRACE}-${mcpSpan.spanId}-01`);

  const httpSpan = spans.find((s) => s.name === 'execute_tool crm/read');
  assert.ok(httpSpan, `an execute_tool span for the HTTP tool call (spans: ${spans.map((s) => s.name).join(', ')})`);
  assert.equal(httpSpan.traceId, TRACE);
  assert.equal(attr(httpSpan, 'gen_ai.tool.name')?.stringValue, 'crm/read');
  assert.equal(attr(httpSpan, 'aam.tool.resource')?.stringValue, 'crm.accounts');
  assert.equal(crmHeaders.at(-1)?.traceparent, `00-${TRACE}-${httpSpan.spanId}-01`, 'the HTTP tool got the span as parent');
  const httpServer = spans.find((s) => s.spanId === httpSpan.parentSpanId)!;
  assert.equal(httpServer.kind, 2);
  assert.deepEqual([attr(httpServer, 'aam.tool.resource')?.stringValue, attr(httpServer, 'aam.tool.action')?.stringValue], ['crm.accounts', attr(httpSpan, 'aam.tool.action')?.stringValue]);
});

test('tracing on: resources/read and prompts/get get spans of their own ({method} {target}, MCP conventions); servers continue them; no tool-call metric', async () => {
  const key = traced.key('tester');
  const client = await agentClient(traced, key, TP);
  try {
    await client.listResources();
    const r = await client.readResource({ uri: 'doc://kb/faq' });
    assert.equal((r.contents[0] as { text?: string }).text, 'the faq');
    const p = await client.getPrompt({ name: 'kb__greet' });
    assert.equal(p.messages.length, 1);
  } finally { await client.close(); }
  await traced.g.rt.tracer!.flush();
  await collector.waitFor((c) => spansOf(c).some((s) => s.name === 'resources/read doc://kb/faq') && spansOf(c).some((s) => s.name === 'prompts/get greet'), 10_000);
  const spans = spansOf(collector);
  for (const [method, name] of [['resources/read', 'resources/read doc://kb/faq'], ['prompts/get', 'prompts/get greet']] as const) {
    const span = spans.find((s) => s.name === name);
    assert.ok(span, `a span for ${method} (spans: ${spans.map((s) => s.name).join(', ')})`);
    assert.equal(span.traceId, TRACE, 'the agent\'s trace continues through aam');
    assert.equal(span.kind, 3, 'CLIENT span');
    assert.equal(attr(span, 'mcp.method.name')?.stringValue, method);
    assert.equal(attr(span, 'gen_ai.operation.name'), undefined, 'not a tool call (MCP conventions)');
    assert.equal(attr(span, 'aam.tool.server')?.stringValue, 'kb');
    assert.equal(spans.find((s) => s.spanId === span.parentSpanId)?.kind, 2, 'child of the POST /mcp server span');
    assert.equal(mcp.readMetas.get(method)?.traceparent, `00-${TRACE}-${span.spanId}-01`, `the server got the ${method} span as parent in _meta`);
  }
  const samples = parseProm(await (await fetch(`${traced.url}/metrics`)).text());
  const kbCalls = sumOf(samples, 'aam_tool_call_duration_seconds_count', { agent: 'tester', server: 'kb' });
  assert.equal(kbCalls, spans.filter((s) => s.name === 'execute_tool lookup').length, 'reads are not counted as tool calls');
});

test('tracing off: upstreams still get the caller\'s trace; one trace id finds the chat and tool events (aam audit query --trace)', async () => {
  const key = plain.key('tester');
  const trace = 'a'.repeat(31) + '1';
  const tp = `00-${trace}-1111111111111111-01`;
  const c = await chat(plain.url, key, 'fast', 'plan project falcon', { headers: { traceparent: tp } });
  assert.equal(c.status, 200);
  const client = await agentClient(plain, key, tp);
  try { await client.callTool({ name: 'kb__lookup', arguments: {} }); } finally { await client.close(); }
  assert.equal(mcp.metas.at(-1)?.traceparent, tp, 'MCP server: the caller\'s traceparent, unchanged');
  const res = await fetch(`${plain.url}/tools/crm/read`, { headers: { authorization: `Bearer ${key}`, traceparent: tp } });
  assert.equal(res.status, 200);
  assert.equal(crmHeaders.at(-1)?.traceparent, tp, 'HTTP tool: the caller\'s traceparent, unchanged');
  // Another request without a traceparent gets a trace of its own (and upstreams are told it, unsampled).
  await fetch(`${plain.url}/tools/crm/read`, { headers: { authorization: `Bearer ${key}` } });
  const own = String(crmHeaders.at(-1)?.traceparent ?? '');
  assert.match(own, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.notEqual(own.slice(3, 35), trace);

  await plain.g.rt.auditLog!.flush();
  const events = queryEvents(plain.g.rt.auditLog!.db, { traceId: trace, order: 'asc' });
  const types = events.map((e) => `${e.type}${e.plane ? `:${String(e.plane)}` : ''}`);
  assert.ok(types.includes('model_call'), types.join(', '));
  assert.ok(types.includes('guardrail'), `guardrail events carry the trace too: ${types.join(', ')}`);
  assert.ok(types.includes('tool.decision:mcp') && types.includes('tool.outcome:mcp'), types.join(', '));
  assert.ok(types.includes('tool.decision:http') && types.includes('tool.outcome:http'), types.join(', '));
  assert.ok(events.every((e) => e.trace_id === trace));
  const ownEvents = queryEvents(plain.g.rt.auditLog!.db, { traceId: own.slice(3, 35) });
  assert.ok(ownEvents.length >= 2 && ownEvents.every((e) => e.type.startsWith('tool.')), 'the untraced request\'s events carry the trace id it was given');

  // The admin API (the console's audit search) filters the same way.
  const api = await admin<{ data: Array<{ trace_id: string }> }>(plain, 'GET', `/audit?trace_id=${trace}&limit=1000`);
  assert.equal(api.status, 200);
  assert.equal(api.json.data.length, events.length);
  assert.equal((await admin(plain, 'GET', '/audit?trace_id=nope')).status, 400);

  // The CLI: --trace, and a clear error for something that is not a trace id.
  const cli = await runCli(['audit', 'query', '--trace', trace.toUpperCase(), '--json', '--data', plain.dataDir]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal((JSON.parse(cli.stdout) as Array<{ trace_id: string }>).filter((e) => e.trace_id === trace).length, events.length, cli.stdout);
  const bad = await runCli(['audit', 'query', '--trace', 'req_123', '--data', plain.dataDir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /trace id "req_123" is not 32 hex digits/);
});

test('tracing on: a failing tool call\'s span is an error; a denied call has no execute_tool span and never reaches the tool', async () => {
  const key = traced.key('tester');
  const seen = crmHeaders.length;
  const broken = await fetch(`${traced.url}/tools/crm/broken`, { headers: { authorization: `Bearer ${key}`, traceparent: TP } });
  assert.equal(broken.status, 500);
  const denied = await fetch(`${traced.url}/tools/crm/secret`, { headers: { authorization: `Bearer ${key}`, traceparent: TP } });
  assert.equal(denied.status, 403);
  assert.equal(crmHeaders.length, seen + 1, 'only the allowed call reached the tool');
  await traced.g.rt.tracer!.flush();
  await collector.waitFor((c) => spansOf(c).some((s) => s.name === 'execute_tool crm/broken'), 10_000);
  const spans = spansOf(collector);
  const failed = spans.find((s) => s.name === 'execute_tool crm/broken')!;
  assert.equal(attr(failed, 'error.type')?.stringValue, '500');
  assert.equal(failed.status?.code, 2, 'status ERROR');
  assert.ok(!spans.some((s) => s.name === 'execute_tool crm/secret'), 'no tool span for a denied call');
  const samples = parseProm(await (await fetch(`${traced.url}/metrics`)).text());
  assert.equal(sumOf(samples, 'aam_tool_call_duration_seconds_count', { agent: 'tester', server: 'crm', outcome: 'tool_error' }), 1);
});

test('an MCP message carrying its own trace in params._meta (MCP semconv) is continued, with and without tracing', async () => {
  const carried = 'c'.repeat(31) + '2';
  const ctp = `00-${carried}-2222222222222222-01`;
  for (const gw of [traced, plain]) {
    const client = await agentClient(gw, gw.key('tester'), TP);
    try { await client.callTool({ name: 'kb__lookup', arguments: {}, _meta: { traceparent: ctp } }); } finally { await client.close(); }
    await gw.g.rt.auditLog!.flush();
    const events = queryEvents(gw.g.rt.auditLog!.db, { traceId: carried, order: 'asc' });
    assert.deepEqual(events.map((e) => e.type), ['tool.decision', 'tool.outcome'], 'the call\'s evidence is filed under the trace it carried');
    const sent = String(mcp.metas.at(-1)?.traceparent ?? '');
    if (gw === plain) { assert.equal(sent, ctp, 'untraced: passed on unchanged'); continue; }
    await gw.g.rt.tracer!.flush();
    await collector.waitFor((c) => spansOf(c).some((s) => s.name === 'execute_tool lookup' && s.traceId === carried), 10_000);
    const span = spansOf(collector).find((s) => s.name === 'execute_tool lookup' && s.traceId === carried)!;
    assert.equal(span.parentSpanId, '2222222222222222', 'child of the span the message named');
    assert.equal(sent, `00-${carried}-${span.spanId}-01`);
  }
});

test('metrics: tool-call latency per agent (aam_tool_call_duration_seconds{agent, server, outcome})', async () => {
  const samples = parseProm(await (await fetch(`${plain.url}/metrics`)).text());
  assert.ok(sumOf(samples, 'aam_tool_call_duration_seconds_count', { agent: 'tester', server: 'kb', outcome: 'ok' }) >= 1);
  assert.ok(sumOf(samples, 'aam_tool_call_duration_seconds_count', { agent: 'tester', server: 'crm', outcome: 'ok' }) >= 2);
  assert.ok(sumOf(samples, 'aam_tool_call_duration_seconds_bucket', { agent: 'tester', server: 'crm', outcome: 'ok', le: '+Inf' }) >= 2);
});
