// Fleet mode with PostgreSQL down, from outside: every plane answers 503 store_unavailable (never a
// 200 whose evidence is not committed, never a 500 or a 400 that blames the request), and answers
// again by itself once PostgreSQL is back.
// Tool plane: a tool call's answer is an acknowledgement too, so with its evidence not committed
// it is refused (HTTP tools 503, MCP a JSON-RPC error, both store_unavailable), never a result a
// kill -9 of the replica would lose; the refused call's events are committed once PostgreSQL answers.
// Admin API: key changes, usage and the audit trail are PostgreSQL's; a held call's approval too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore, type PgProxy } from './helpers/fleet.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';
import { startHttpFixture, STDIO_TIMEOUT_MS, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** One JSON-RPC message of an MCP answer (JSON or one SSE event). */
async function rpcAnswer(r: Response): Promise<{ result?: unknown; error?: { code: number; message: string; data?: Record<string, unknown> } }> {
  const text = await r.text();
  return JSON.parse(r.headers.get('content-type')?.includes('text/event-stream') ? text.split('\n').find((l) => l.startsWith('data: '))!.slice(6) : text);
}

const ADMIN = 'admin-token-for-pg-down-tests-0123456789';
let store: FleetTestStore;
let mcp: RunningFixture;
let api: LocalServer;
let apiCalls = 0;
let proxy: PgProxy;
let sql: postgres.Sql;
let gw: Awaited<ReturnType<typeof startGateway>>;
let url = '';
let key = '';

before(async () => {
  store = await fleetStore();
  mcp = await startHttpFixture();
  api = await localServer((_req, res) => { apiCalls++; res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'); });
  proxy = await pgProxy(store.databaseUrl, (send) => send());
  sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const d = tempDir('aam-fleet-pg-down-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, yaml(
    doc('McpServer', 'web', { transport: 'streamable-http', url: mcp.url, resource: 'salesforce.accounts', timeout_ms: STDIO_TIMEOUT_MS, tools: { read_account: { action: 'read' } } }),
    doc('HttpTool', 'mail', { baseUrl: api.url, resource: 'mail', actions: { list: { method: 'GET', path: '/messages' }, send: { method: 'POST', path: '/send' }, archive: { method: 'POST', path: '/archive', mutating: true } } }),
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'small', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
    doc('Agent', 'mailer', { workload: 'spiffe://test/agent/mailer', team: 'ops' }),
    doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, models: { allow: ['small'] }, tools: [{ resource: 'mail', actions: ['list', 'archive'] }, { resource: 'mail', actions: ['send'], approval: 'required' }, { resource: 'salesforce.accounts', actions: ['read'] }] }),
  ));
  gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_DATABASE_URL: proxy.url, AAM_ADMIN_TOKEN: ADMIN, AAM_LOG_LEVEL: 'error' } });
  url = `http://127.0.0.1:${gw.port}`;
  key = (await gw.rt.keyBook.create('mailer')).secret;
});

after(async () => {
  await gw?.close();
  proxy?.close();
  await sql?.end();
  await mcp?.close();
  await api?.close();
  await store?.drop();
});

const httpTool = (action = 'list') => fetch(`${url}/tools/mail/${action}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
// MCP 2026-07-28: no session, so nothing but the call itself needs a store.
const mcpCall = (id: number) => fetch(`${url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${key}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'web__read_account' },
  body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'web__read_account', arguments: { id: 'a1' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' } } } }) });
const adminCall = (method: string, path: string, body?: unknown) => fetch(`${url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });

test('PostgreSQL down: an HTTP tool call and an MCP tools/call are refused store_unavailable (never a result whose evidence is not committed); their evidence is committed and calls are answered once it is back', async () => {
  try {
    await until(async () => (await httpTool()).status === 200, 15_000, 'the HTTP tool answering');
    await until(async () => (await rpcAnswer(await mcpCall(1))).result !== undefined, 60_000, 'the MCP server answering');
    proxy.stop();
    const h = await httpTool();
    const hBody = (await h.json()) as { error: { code: string; message: string } };
    assert.equal(h.status, 503, JSON.stringify(hBody));
    assert.equal(hBody.error.code, 'store_unavailable');
    assert.match(hBody.error.message, /audit trail could not record/);
    const hId = h.headers.get('x-request-id')!;
    // A mutating call's intent cannot be recorded: not forwarded, and the store named as on the other refusals.
    const before = apiCalls;
    const m0 = await httpTool('archive');
    const mBody = (await m0.json()) as { error: { code: string; message: string } };
    assert.equal(m0.status, 503, JSON.stringify(mBody));
    assert.equal(mBody.error.code, 'store_unavailable', JSON.stringify(mBody));
    assert.match(mBody.error.message, /not forwarded/);
    assert.equal(apiCalls, before, 'the tool never saw the call');
    const m = await mcpCall(2);
    assert.equal(m.status, 503, 'MCP 2026 (no session) answers the same HTTP status as every other plane');
    const mId = m.headers.get('x-request-id')!;
    const answer = await rpcAnswer(m);
    assert.equal(answer.result, undefined, `no result while its evidence is not committed: ${JSON.stringify(answer)}`);
    assert.equal(answer.error?.data?.code, 'store_unavailable', JSON.stringify(answer));
    assert.match(answer.error?.message ?? '', /audit trail could not record/);
    // Counted where an operator looks (the refused calls moved no other counter).
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const refused = Number(/^aam_evidence_refusals_total\{code="store_unavailable"\} (\d+)$/m.exec(metrics)?.[1] ?? 0);
    assert.ok(refused >= 2, `the HTTP tool's and the MCP call's refusals counted: ${refused}`);
    proxy.start();
    await until(async () => (await httpTool()).status === 200, 20_000, 'HTTP tool calls answered again, with no restart');
    await until(async () => (await rpcAnswer(await mcpCall(3))).result !== undefined, 20_000, 'MCP calls answered again');
    // The refused calls' events were kept and committed once PostgreSQL answered.
    for (const id of [hId, mId]) {
      await until(async () => (await sql`SELECT 1 FROM audit_trail WHERE request_id = ${id} AND type = 'tool.outcome'`).length > 0, 10_000, `the evidence of ${id} in PostgreSQL`);
    }
  } finally {
    proxy.start();
  }
});

test('PostgreSQL down: the admin API answers 503 store_unavailable (key changes, usage, the audit trail), an approval-held tool call too (never a 500, or a 400 blaming the request); all answer again once it is back', async () => {
  await until(async () => (await httpTool()).status === 200, 20_000, 'the replica serving');
  proxy.stop();
  try {
    for (const [method, path, body] of [['POST', '/keys', { agent: 'mailer' }], ['GET', '/usage'], ['GET', '/audit?limit=1'], ['GET', '/audit/requests/req_x']] as const) {
      const r = await adminCall(method, path, body);
      const j = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 503, `${method} ${path}: ${JSON.stringify(j)}`);
      assert.equal(j.error.code, 'store_unavailable', `${method} ${path}`);
      assert.match(j.error.message, /PostgreSQL/);
      assert.equal(r.headers.get('retry-after'), '1');
    }
    // Whether a call was approved is PostgreSQL's: 503, not an internal error.
    const held = await httpTool('send');
    const j = (await held.json()) as { error: { code: string; message: string } };
    assert.equal(held.status, 503, JSON.stringify(j));
    assert.equal(j.error.code, 'store_unavailable');
  } finally {
    proxy.start();
  }
  await until(async () => (await adminCall('POST', '/keys', { agent: 'mailer' })).status === 201, 20_000, 'key changes again, with no restart');
  assert.equal((await adminCall('GET', '/usage')).status, 200);
  assert.equal((await adminCall('GET', '/audit?limit=1')).status, 200);
  assert.equal((await httpTool('send')).status, 403, 'held for approval again');
});

test('PostgreSQL down: a stream (chat completions, Messages, Responses) ends with an error event whose code is store_unavailable, as the same request unstreamed is answered', async () => {
  const post = (path: string, body: Record<string, unknown>) => fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'small', stream: true, ...body }) });
  await until(async () => (await post('/v1/chat/completions', { stream: false, messages: [{ role: 'user', content: 'hi' }] })).status === 200, 20_000, 'the replica serving');
  proxy.stop();
  try {
    const lastData = async (r: Response) => JSON.parse((await r.text()).trim().split('\n').filter((l) => l.startsWith('data: ')).at(-1)!.slice(6)) as Record<string, any>;
    const chat = await lastData(await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(chat.error?.code, 'store_unavailable', JSON.stringify(chat));
    assert.match(chat.error.message, /audit trail could not record/);
    const messages = await lastData(await post('/v1/messages', { max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(messages.type, 'error', JSON.stringify(messages));
    assert.equal(messages.error?.code, 'store_unavailable', JSON.stringify(messages));
    const responses = await lastData(await post('/v1/responses', { input: 'hi' }));
    assert.equal(responses.type, 'error', JSON.stringify(responses));
    assert.equal(responses.code, 'store_unavailable', JSON.stringify(responses));
    assert.equal(responses.error?.code, 'store_unavailable');
  } finally {
    proxy.start();
  }
});
