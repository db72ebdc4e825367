// Embedded store, the trail's segment write failing: a request whose call was written (model_call,
// tool.outcome) but whose evidence could not be made durable is refused 503, or its stream cut
// after its 200 head. The trail then says what the caller got beside the call, in one
// evidence_refused event under the same request id (never a second event of the call's type, which
// `aam policy diff` and usage counts would count twice); `aam audit show` prints it, the metrics
// count what the caller got, and `aam audit verify` passes, then catches the event altered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { policyDiffCommands } from '../src/cli/policy-diff.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { rewriteTrail, runAudit } from './audit-helpers.ts';
import { parseProm } from './helpers/prom.ts';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server as McpServer } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema, ListToolsRequestSchema, McpError, ReadResourceRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { queryEvents } from '../src/audit/query.ts';

let g: Running;
let api: Server;
let mcp: Server;
let url = '';
let key = '';
let dir = '';
const data = () => join(dir, 'data');

const config = (toolUrl: string, mcpUrl: string, allow: string[]) => yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'small', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
  doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'demo', model: 'demo-embed' }] }),
  doc('HttpTool', 'crm', { baseUrl: toolUrl, resource: 'crm.accounts', actions: { read: { method: 'GET', path: '/accounts/{id}' } } }),
  doc('McpServer', 'kb', { transport: 'streamable-http', url: mcpUrl }),
  doc('Agent', 'writer', { workload: 'spiffe://test/agent/writer', team: 'ops' }),
  doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, models: { allow }, tools: [{ resource: 'crm.accounts', actions: ['read'] }, { resource: 'kb', actions: ['lookup', 'resources/read', 'prompts/get'] }] }),
);

before(async () => {
  api = createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"a1","name":"Acme"}'); });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  // A stateless MCP server with one tool.
  const read = (req: IncomingMessage) => new Promise<string>((r) => { const c: Buffer[] = []; req.on('data', (d: Buffer) => c.push(d)); req.on('end', () => r(Buffer.concat(c).toString())); });
  mcp = createServer(async (req, res) => {
    if (req.method !== 'POST') { res.writeHead(405).end(); return; }
    const server = new McpServer({ name: 'kb', version: '1.0.0' }, { capabilities: { tools: {}, resources: {}, prompts: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'lookup', inputSchema: { type: 'object' } }] }));
    server.setRequestHandler(ListResourcesRequestSchema, async () => ({ resources: [{ uri: 'kb://notes', name: 'notes' }] }));
    server.setRequestHandler(ReadResourceRequestSchema, async () => ({ contents: [{ uri: 'kb://notes', text: 'the notes' }] }));
    server.setRequestHandler(ListPromptsRequestSchema, async () => ({ prompts: [{ name: 'brief' }] }));
    server.setRequestHandler(GetPromptRequestSchema, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'brief me' } }] }));
    server.setRequestHandler(CallToolRequestSchema, async () => ({ content: [{ type: 'text', text: 'found it' }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    await transport.handleRequest(req, res, JSON.parse(await read(req)));
  });
  await new Promise<void>((r) => mcp.listen(0, '127.0.0.1', r));
  dir = tempDir('aam-evidence-refused-');
  const toolUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const mcpUrl = `http://127.0.0.1:${(mcp.address() as AddressInfo).port}/mcp`;
  writeFileSync(join(dir, 'aam.yaml'), config(toolUrl, mcpUrl, ['small', 'embed']));
  // NEW for `aam policy diff`: the chat route no longer allowed.
  writeFileSync(join(dir, 'new.yaml'), config(toolUrl, mcpUrl, ['embed']));
  g = await startGateway({ configPath: join(dir, 'aam.yaml'), dataDir: data(), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error' }, parseConfig: parseConfigTexts });
  url = `http://127.0.0.1:${g.port}`;
  key = g.rt.keys.create('writer').secret;
});

after(async () => {
  await g?.close();
  await new Promise<void>((r) => api ? api.close(() => r()) : r());
  mcp?.closeAllConnections();
  await new Promise<void>((r) => mcp ? mcp.close(() => r()) : r());
});

const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const chat = (stream = false) => post('/v1/chat/completions', { model: 'small', stream, messages: [{ role: 'user', content: 'hi' }] });

/** The audit log's journal wait fails for the length of `f` (the segment write failed: a full or gone disk). */
async function withJournalFailing<T>(f: () => Promise<T>): Promise<T> {
  const audit = g.rt.audit as { journaledNow?: (now?: boolean) => Promise<void> | undefined };
  const real = audit.journaledNow;
  assert.ok(real, 'the embedded audit log has a journal wait');
  audit.journaledNow = () => Promise.reject(new Error('the disk is gone'));
  try { return await f(); } finally { audit.journaledNow = real; }
}

async function trailOf(requestId: string): Promise<Array<Record<string, unknown>>> {
  await g.rt.auditLog!.flush();
  const r = await runAudit('audit show', data(), { json: true }, [requestId]);
  assert.equal(r.code, 0, r.err);
  return (JSON.parse(r.out) as { events: Array<Record<string, unknown>> }).events;
}

async function modelRequests(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of parseProm(await (await fetch(`${url}/metrics`)).text())) {
    if (s.name === 'aam_model_requests_total' && s.labels.agent === 'writer') out[s.labels.status] = (out[s.labels.status] ?? 0) + s.value;
  }
  return out;
}

const REFUSAL = 'the audit trail could not record this request, so it is not acknowledged: the disk is gone';
const ids: string[] = [];

test('a whole answer refused 503: its model_call (the upstream\'s 200) and, beside it, evidence_refused (answered 503); `aam audit show` says so', async () => {
  const before = await modelRequests();
  const r = await withJournalFailing(() => chat());
  const body = await r.json() as { error: { code: string; message: string } };
  assert.equal(r.status, 503, JSON.stringify(body));
  assert.equal(body.error.code, 'unavailable');
  const id = r.headers.get('x-request-id')!;
  ids.push(id);
  const events = await trailOf(id);
  assert.deepEqual(events.map((e) => e.type), ['model_call', 'evidence_refused']);
  const [call, amended] = events;
  assert.equal((call.outcome as { status: number }).status, 200, 'the model_call says what the upstream answered');
  assert.deepEqual(amended.outcome, { status: 503, error_class: 'evidence_not_durable', error: REFUSAL });
  assert.deepEqual([amended.amends, amended.answered, amended.request_id, amended.trace_id], ['model_call', 'refused', id, call.trace_id]);
  assert.deepEqual(amended.identity, call.identity, 'under the same caller');
  assert.equal(amended.model, undefined, 'no usage: nothing counts it as a call');
  assert.equal(amended.policy, undefined, 'no decision: policy diff does not replay it');
  const shown = await runAudit('audit show', data(), {}, [id]);
  const lines = shown.out.trim().split('\n');
  assert.equal(lines.length, 2, shown.out);
  assert.match(lines[1], /evidence_refused .*answered 503: evidence not durable, the model_call above was not acknowledged/);
  const after = await modelRequests();
  assert.equal((after['503'] ?? 0) - (before['503'] ?? 0), 1, 'counted as answered');
  assert.equal(after['200'] ?? 0, before['200'] ?? 0);
});

test('a stream cut after its 200 head (an error event, no [DONE]): evidence_refused says stream_cut, and the metrics count 503 as the trail does, not 200', async () => {
  const before = await modelRequests();
  const { status, text, id } = await withJournalFailing(async () => {
    const res = await chat(true);
    return { status: res.status, text: await res.text(), id: res.headers.get('x-request-id')! };
  });
  assert.equal(status, 200);
  assert.match(text, /"error"/);
  assert.doesNotMatch(text, /\[DONE\]/);
  ids.push(id);
  const events = await trailOf(id);
  assert.deepEqual(events.map((e) => e.type), ['model_call', 'evidence_refused']);
  assert.deepEqual([events[1].amends, events[1].answered, (events[1].outcome as { status: number }).status], ['model_call', 'stream_cut', 503]);
  const shown = await runAudit('audit show', data(), {}, [id]);
  assert.match(shown.out, /stream cut \(200 head sent, then an error event; counted 503\): evidence not durable/);
  const after = await modelRequests();
  assert.deepEqual([(after['503'] ?? 0) - (before['503'] ?? 0), (after['200'] ?? 0) - (before['200'] ?? 0)], [1, 0], JSON.stringify({ before, after }));
});

test('embeddings refused 503: the same evidence_refused beside its model_call', async () => {
  const r = await withJournalFailing(() => post('/v1/embeddings', { model: 'embed', input: 'hi' }));
  assert.equal(r.status, 503);
  const events = await trailOf(r.headers.get('x-request-id')!);
  assert.deepEqual(events.map((e) => [e.type, (e.outcome as { status: number }).status]), [['model_call', 200], ['evidence_refused', 503]]);
});

test('an HTTP tool call refused 503 after its outcome was written: evidence_refused (amends tool.outcome), no second tool.outcome', async () => {
  const r = await withJournalFailing(() => post('/tools/crm/read', { id: 'a1' }));
  assert.equal(r.status, 503, await r.clone().text());
  const events = await trailOf(r.headers.get('x-aam-request-id') ?? r.headers.get('x-request-id')!);
  assert.deepEqual(events.map((e) => e.type), ['tool.decision', 'tool.outcome', 'evidence_refused']);
  const amended = events[2];
  assert.deepEqual([amended.amends, amended.answered, amended.agent, amended.plane, amended.resource, amended.action], ['tool.outcome', 'refused', 'writer', 'http', 'crm.accounts', 'read']);
  assert.deepEqual(amended.outcome, { status: 503, error_class: 'evidence_not_durable', error: REFUSAL });
});

test('an MCP tools/call refused after its outcome was written: a JSON-RPC error, and evidence_refused (amends tool.outcome) instead of a second tool.outcome', async () => {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  try {
    const e = await withJournalFailing(() => client.callTool({ name: 'kb__lookup', arguments: {} }).then(() => null, (x: unknown) => x));
    assert.ok(e instanceof McpError, String(e));
    assert.match(e.message, /the audit trail could not record this request/);
  } finally { await client.close(); }
  await g.rt.auditLog!.flush();
  const [amended] = queryEvents(g.rt.auditLog!.db, { type: 'evidence_refused', agent: 'writer', limit: 1 });
  assert.equal(amended.plane, 'mcp');
  const events = await trailOf(amended.request_id);
  assert.deepEqual(events.map((x) => [x.type, (x.outcome as { status: unknown } | undefined)?.status ?? null]), [['tool.decision', null], ['tool.outcome', 'ok'], ['evidence_refused', 503]]);
  assert.deepEqual([amended.amends, amended.answered, amended.server, amended.tool], ['tool.outcome', 'refused', 'kb', 'lookup']);
});

test('MCP reads (resources/read, prompts/get) refused for their evidence: a JSON-RPC error, and evidence_refused beside the read\'s tool.decision', async () => {
  const client = new Client({ name: 'test-agent', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  try {
    await client.listResources();
    for (const [what, read] of [['resources/read', () => client.readResource({ uri: 'kb://notes' })], ['prompts/get', () => client.getPrompt({ name: 'kb__brief' })]] as const) {
      const e = await withJournalFailing(() => (read() as Promise<unknown>).then(() => null, (x: unknown) => x));
      assert.ok(e instanceof McpError, `${what}: ${String(e)}`);
      assert.match(e.message, /the audit trail could not record this request/, what);
      await g.rt.auditLog!.flush();
      const amended = queryEvents(g.rt.auditLog!.db, { type: 'evidence_refused', agent: 'writer', limit: 10 }).find((x) => x.action === what);
      assert.ok(amended, `${what}: an evidence_refused event`);
      const events = await trailOf(amended.request_id);
      assert.deepEqual(events.map((x) => x.type), ['tool.decision', 'evidence_refused'], what);
      assert.deepEqual([amended.amends, amended.answered, amended.plane, amended.server], ['tool.decision', 'refused', 'mcp', 'kb'], what);
    }
  } finally { await client.close(); }
});

test('answered once the trail writes again; `aam policy diff` replays the calls, not their amendments; verify passes, then catches an altered evidence_refused', async () => {
  assert.equal((await chat()).status, 200);
  await g.rt.auditLog!.flush();
  let out = '';
  const orig = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((c: string | Uint8Array) => { out += c.toString(); return true; }) as typeof process.stdout.write;
  let code: number;
  try {
    code = await policyDiffCommands['policy diff'].run({ values: { 'against-trail': '1h', json: true }, positionals: [join(dir, 'aam.yaml'), join(dir, 'new.yaml')], g: { config: join(dir, 'aam.yaml'), data: data() } });
  } finally { process.stdout.write = orig; }
  const diff = JSON.parse(out) as { replayed: number; changed: number };
  // Chat: refused, cut, answered (3 model_calls); embeddings 1; the HTTP and MCP tools' decisions 2, the MCP reads' 2. Their 7 evidence_refused events are not replayed.
  assert.deepEqual([code, diff.replayed, diff.changed], [1, 8, 3], out);
  await g.close();
  const ok = await runAudit('audit verify', data());
  assert.equal(ok.code, 0, ok.out + ok.err);
  rewriteTrail(data(), (events) => {
    const i = events.findIndex((e) => e.line.includes('"type":"evidence_refused"'));
    assert.ok(i >= 0);
    events[i] = { ...events[i], line: events[i].line.replace('"status":503', '"status":200') };
  });
  const bad = await runAudit('audit verify', data());
  assert.equal(bad.code, 1, bad.out);
  assert.match(bad.out, /TAMPERED/);
});
