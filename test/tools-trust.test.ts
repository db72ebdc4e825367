// Tool-plane trust findings (issue 12), end to end through the real gateway:
// credentials.allow per call on every MCP transport (stdio included), sessions decided with the
// identity as it is now, a per-identity session cap, malformed percent-encoding, annotations in
// the tool digest, inject.query credentials, decide-before-validate, and tools[].rate.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { connectClient, rpcError } from './helpers/mcp.ts';
import { FIXTURE, NODE, STDIO_TIMEOUT_MS, startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';
import { createToolIntegrity, legacyToolDigest, toolDigest } from '../src/tools/tool-integrity.ts';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';

const ANNOTATED = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'mcp-annotated.ts');
const CRM_SECRET = 'crm-token-1234567890abcdef';
const QUERY_SECRET = 'qkey-abcdef1234567890zz';

const dir = mkdtempSync(join(tmpdir(), 'aam-tools-trust-'));
const callsFile = join(dir, 'calls.jsonl');
const annotationsFile = join(dir, 'annotations.json');
let gw: TestGateway;
let fixture: RunningFixture;
let proxy: Server;
let api: Server;
const proxySeen: string[] = [];
const apiSeen: Array<{ method: string; url: string }> = [];

/** Stdio upstream calls so far (the accounts fixture appends one line per tools/call it receives). */
const calls = (): number => (existsSync(callsFile) ? readFileSync(callsFile, 'utf8').trim().split('\n').filter(Boolean).length : 0);

async function listen(s: Server): Promise<string> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

before(async () => {
  writeFileSync(annotationsFile, JSON.stringify({ readOnlyHint: true }));
  fixture = await startHttpFixture();
  const upstream = new URL(fixture.url);
  // A recording proxy in front of the Streamable HTTP fixture: shows the URL aam calls (query credentials).
  proxy = createServer((req, res) => {
    proxySeen.push(req.url ?? '');
    const up = httpRequest({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  const proxyUrl = await listen(proxy);
  api = createServer((req, res) => {
    apiSeen.push({ method: req.method ?? '', url: req.url ?? '' });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, url: req.url }));
  });
  const apiUrl = await listen(api);
  gw = await startTestGateway(yaml(
    doc('Credential', 'crm-token', { env: 'TEST_CRM_TOKEN' }),
    doc('Credential', 'qkey', { env: 'TEST_Q_KEY', inject: { query: 'api_key' } }),
    doc('McpServer', 'salesforce', {
      transport: 'stdio', command: NODE, args: [FIXTURE, 'stdio'], env: { CALLS_FILE: callsFile }, credential: 'crm-token', resource: 'salesforce.accounts', timeout_ms: STDIO_TIMEOUT_MS,
      tools: { search_accounts: { action: 'search' }, read_account: { action: 'read' }, export_accounts: { action: 'export' }, delete_account: { action: 'delete', mutating: true } },
    }),
    doc('McpServer', 'web', { transport: 'streamable-http', url: `${proxyUrl}/mcp`, credential: 'qkey', resource: 'web', timeout_ms: STDIO_TIMEOUT_MS }),
    doc('McpServer', 'annotated', { transport: 'stdio', command: NODE, args: [ANNOTATED], env: { ANNOTATIONS_FILE: annotationsFile }, timeout_ms: STDIO_TIMEOUT_MS }),
    doc('HttpTool', 'crm', { baseUrl: apiUrl, credential: 'qkey', resource: 'crm', actions: {
      search: { method: 'GET', path: '/accounts' }, read: { method: 'GET', path: '/accounts/{id}' }, remove: { method: 'DELETE', path: '/accounts/{id}' },
    } }),
    doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
    doc('Agent', 'other', { workload: 'spiffe://prod/agent/other', team: 'finance' }),
    doc('Agent', 'capper', { workload: 'spiffe://prod/agent/capper', team: 'finance' }),
    doc('Agent', 'outsider', { workload: 'spiffe://prod/agent/outsider', team: 'ops' }),
    doc('Agent', 'partner', { workload: 'spiffe://prod/agent/partner', team: 'partners' }),
    doc('AgentPolicy', 'finance', { identity: { team: 'finance' }, credentials: { allow: ['crm-token', 'qkey'] }, tools: [
      { resource: 'salesforce.accounts', actions: ['search', 'resources/read', 'prompts/get'] },
      { resource: 'salesforce.accounts', actions: ['read'], rate: { rpm: 2 } },
      { resource: 'salesforce.accounts', deny: ['delete', 'export'] },
      { resource: 'web', actions: ['*'] },
      { resource: 'annotated', actions: ['*'] },
      { resource: 'crm', actions: ['search'] },
      { resource: 'crm', actions: ['read'], rate: { rpm: 2 } },
      { resource: 'crm', deny: ['remove'] },
    ] }),
    // May call the salesforce tools, but not with the credential their server uses.
    doc('AgentPolicy', 'ops-policy', { identity: { team: 'ops' }, credentials: { allow: ['qkey'] }, tools: [
      { resource: 'salesforce.accounts', actions: ['search', 'read', 'resources/read', 'prompts/get'] },
      { resource: 'web', actions: ['*'] },
    ] }),
    doc('AgentPolicy', 'partners-policy', { identity: { team: 'partners' }, credentials: { allow: ['crm-token'] }, tools: [{ resource: 'web', actions: ['*'] }] }),
  ), { TEST_CRM_TOKEN: CRM_SECRET, TEST_Q_KEY: QUERY_SECRET, AAM_MCP_SESSIONS_PER_IDENTITY: '3' });
});

// Every MCP client a test opens is closed after it, passed or failed: an open session holds a
// slot of the per-identity cap and its SSE stream would keep the gateway from closing.
type Conn = { client: Client; transport: StreamableHTTPClientTransport };
const open: Conn[] = [];
afterEach(async () => { for (const c of open.splice(0)) await closeClient(c); });

after(async () => {
  await gw?.close();
  await fixture?.close();
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await new Promise((r) => api?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

async function mcpClient(key: string, path = '/mcp', g = gw): Promise<Conn> {
  const c = await connectClient(g, key, path);
  open.push(c);
  return c;
}

async function closeClient(c: Conn): Promise<void> {
  const i = open.indexOf(c);
  if (i >= 0) open.splice(i, 1);
  await c.transport.terminateSession().catch(() => {});
  await c.client.close();
}

const text = (r: unknown): string => JSON.stringify(r);

test('credentials.allow is checked per call on a stdio MCP server: every operation is refused with -32001 naming the policy, the upstream sees nothing', async () => {
  const ok = await mcpClient(gw.key('analyst'));
  await ok.client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme' } });
  await closeClient(ok);
  const before = calls();
  assert.ok(before >= 1, 'the allowed caller reached the stdio server');

  const key = gw.key('outsider');
  const agg = await mcpClient(key);
  const names = (await agg.client.listTools()).tools.map((t) => t.name);
  assert.ok(!names.some((n) => n.startsWith('salesforce__')), `tools of a server whose credential the caller may not use are not listed: ${names}`);
  assert.ok(names.includes('web__whoami'), 'servers whose credential it may use are listed');
  const e = await rpcError(agg.client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme' } }));
  assert.equal(e.code, -32001);
  assert.match(e.message, /credential "crm-token"/);
  assert.match(e.message, /"ops-policy"/);
  await closeClient(agg);

  const one = await mcpClient(key, '/mcp/salesforce');
  for (const [what, p] of [
    ['tools/list', one.client.listTools()],
    ['resources/list', one.client.listResources()],
    ['resources/templates/list', one.client.listResourceTemplates()],
    ['prompts/list', one.client.listPrompts()],
    ['resources/read', one.client.readResource({ uri: 'account://a1' })],
    ['resources/subscribe', one.client.subscribeResource({ uri: 'account://a1' })],
    ['prompts/get', one.client.getPrompt({ name: 'summarize_account', arguments: { id: 'a1' } })],
    ['tools/call', one.client.callTool({ name: 'read_account', arguments: { id: 'a1' } })],
  ] as const) {
    const err = await rpcError(p);
    assert.equal(err.code, -32001, `${what}: ${err.message}`);
    assert.match(err.message, /credentials\.allow of policy "ops-policy"/, what);
  }
  await closeClient(one);
  assert.equal(calls(), before, 'the stdio server saw none of the refused calls');
});

test('credentials.allow is checked per call on a Streamable HTTP MCP server too, before the upstream sees the call', async () => {
  const c = await mcpClient(gw.key('partner'));
  const seen = proxySeen.length;
  const e = await rpcError(c.client.callTool({ name: 'web__whoami', arguments: {} }));
  assert.equal(e.code, -32001);
  assert.match(e.message, /credential "qkey".*"partners-policy"/);
  assert.equal(proxySeen.length, seen, 'the upstream saw nothing');
  await closeClient(c);
});

test('inject.query credentials reach MCP (Streamable HTTP) and HTTP tool upstreams as a query parameter, and never the agent', async () => {
  const c = await mcpClient(gw.key('analyst'));
  proxySeen.length = 0;
  const r = await c.client.callTool({ name: 'web__whoami', arguments: {} });
  assert.notEqual(r.isError, true);
  assert.ok(proxySeen.some((u) => new URL(u, 'http://x').searchParams.get('api_key') === QUERY_SECRET), `upstream URLs: ${proxySeen.join(' ')}`);
  await closeClient(c);

  apiSeen.length = 0;
  const res = await fetch(`${gw.url}/tools/crm/search?x=1`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('other')}`, 'content-type': 'application/json' }, body: JSON.stringify({ q: 'acme' }) });
  const body = await res.text();
  assert.equal(res.status, 200, body);
  assert.equal(apiSeen.length, 1);
  const url = new URL(apiSeen[0].url, 'http://x');
  assert.equal(url.searchParams.get('api_key'), QUERY_SECRET);
  assert.equal(url.searchParams.get('q'), 'acme');
  assert.ok(!body.includes(QUERY_SECRET), 'the upstream echoed the URL; the secret is scrubbed');
});

test('decide before validating: a denied action is refused 403 / -32001 naming the policy, whatever its input', async () => {
  const key = gw.key('analyst');
  apiSeen.length = 0;
  for (const body of ['{}', '[1,2]', '"x"']) {
    const r = await fetch(`${gw.url}/tools/crm/remove`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
    const j = (await r.json()) as { error: { code: string; message: string } };
    assert.equal(r.status, 403, `body ${body}: ${j.error.message}`);
    assert.equal(j.error.code, 'policy_denied');
    assert.match(j.error.message, /"finance"/);
  }
  // An allowed action still validates its input.
  const bad = await fetch(`${gw.url}/tools/crm/search`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '[1]' });
  assert.equal(bad.status, 400);
  assert.equal(apiSeen.length, 0);

  const c = await mcpClient(key);
  const before = calls();
  const e = await rpcError(c.client.callTool({ name: 'salesforce__delete_account', arguments: { nonsense: true } }));
  assert.equal(e.code, -32001, e.message);
  assert.match(e.message, /"finance"/);
  const inv = await rpcError(c.client.callTool({ name: 'salesforce__search_accounts', arguments: { nonsense: true } }));
  assert.equal(inv.code, -32602, 'an allowed tool still validates its arguments');
  assert.equal(calls(), before);
  await closeClient(c);
});

test('tools[].rate: the rule\'s rpm holds per agent on MCP (-32029 with retry_after_seconds) and HTTP tools (429 with retry-after)', async () => {
  const key = gw.key('analyst');
  const c = await mcpClient(key);
  for (let i = 0; i < 2; i++) await c.client.callTool({ name: 'salesforce__read_account', arguments: { id: 'a1' } });
  const before = calls();
  const e = await rpcError(c.client.callTool({ name: 'salesforce__read_account', arguments: { id: 'a1' } }));
  assert.equal(e.code, -32029, e.message);
  assert.match(e.message, /rate limit exceeded: rpm limit of 2 .*finance tools\[1\]/);
  const data = e.data as { retry_after_seconds: number };
  assert.ok(data.retry_after_seconds >= 1 && data.retry_after_seconds <= 60, text(data));
  assert.equal(calls(), before, 'a limited call is not forwarded');
  // Another of the same agent's keys shares the agent's bucket; another agent has its own.
  const c2 = await mcpClient(gw.key('analyst'));
  assert.equal((await rpcError(c2.client.callTool({ name: 'salesforce__read_account', arguments: { id: 'a1' } }))).code, -32029);
  const o = await mcpClient(gw.key('other'));
  await o.client.callTool({ name: 'salesforce__read_account', arguments: { id: 'a1' } });
  // Calls a rule without a rate allows are not counted.
  await c.client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'a' } });
  for (const x of [c, c2, o]) await closeClient(x);

  const call = () => fetch(`${gw.url}/tools/crm/read`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"id":"a1"}' });
  assert.equal((await call()).status, 200);
  assert.equal((await call()).status, 200);
  const limited = await call();
  assert.equal(limited.status, 429);
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  const j = (await limited.json()) as { error: { code: string; type: string; message: string } };
  assert.equal(j.error.code, 'rate_limited');
  assert.equal(j.error.type, 'rate_limit_error');
  assert.match(j.error.message, /finance tools\[6\]/);
});

test('tools[].rate on a rule that allows nothing is a load error', () => {
  const set = parseConfigTexts([{ file: 'p.yaml', text: doc('AgentPolicy', 'p', { identity: { team: 't' }, tools: [{ resource: 'crm', deny: ['remove'], rate: { rpm: 5 } }] }) }]);
  assert.throws(() => compilePolicies(set), (e: InstanceType<typeof ConfigError>) => /tools\[0\]\.rate/.test(e.message) && /allows none/.test(e.message));
});

test('malformed percent-encoding under /mcp/ and /tools/ is a 400 with a reason (401 without identity), never a 500', async () => {
  const key = gw.key('analyst');
  const post = (path: string, auth = true) => fetch(`${gw.url}${path}`, {
    method: 'POST', headers: { ...(auth ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}',
  });
  for (const path of ['/mcp/%E0%A4%A', '/mcp/%zz', '/tools/%zz/read', '/tools/crm/%']) {
    const r = await post(path);
    const body = await r.text();
    assert.equal(r.status, 400, `${path}: ${body}`);
    assert.match(body, /malformed percent-encoding/);
    assert.equal((await post(path, false)).status, 401, `${path} without identity`);
  }
});

test('/mcp refuses a body it cannot read, or a caller without identity, with a JSON-RPC error (aam\'s code in data.code), as MCP clients expect', async () => {
  const post = (body: string, headers: Record<string, string> = {}) => fetch(`${gw.url}/mcp`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.key('analyst')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body,
  });
  type RpcErr = { jsonrpc: string; id: null; error: { code: number; message: string; data: { code: string } } };
  const cases: Array<[string, Record<string, string>, number, number, string]> = [
    ['{"jsonrpc":', {}, 400, -32700, 'invalid_json'],
    ['', {}, 400, -32700, 'invalid_json'],
    [`{"x":${'['.repeat(200)}${']'.repeat(200)}}`, {}, 400, -32700, 'invalid_json'],
    ['{"jsonrpc":"2.0","id":1,"method":"tools/list"}', { 'content-type': 'text/plain' }, 415, -32600, 'unsupported_media_type'],
    ['{"jsonrpc":"2.0","id":1,"method":"tools/list"}', { authorization: '' }, 401, -32001, 'missing_credentials'],
  ];
  for (const [body, headers, status, code, aamCode] of cases) {
    const r = await post(body, headers);
    const j = await r.json() as RpcErr;
    assert.equal(r.status, status, JSON.stringify(j));
    assert.equal(j.jsonrpc, '2.0');
    assert.equal(j.id, null);
    assert.equal(j.error.code, code, JSON.stringify(j));
    assert.equal(j.error.data.code, aamCode);
    assert.ok(j.error.message.length > 10);
    if (status === 401) assert.match(r.headers.get('www-authenticate') ?? '', /resource_metadata=/);
  }
  // A method /mcp does not serve is refused by the router, before the MCP route runs: JSON-RPC too.
  const put = await fetch(`${gw.url}/mcp`, { method: 'PUT', headers: { authorization: `Bearer ${gw.key('analyst')}`, 'content-type': 'application/json' }, body: '{}' });
  const j = await put.json() as RpcErr;
  assert.equal(put.status, 405);
  assert.match(put.headers.get('allow') ?? '', /POST/);
  assert.deepEqual([j.jsonrpc, j.error.code, j.error.data.code], ['2.0', -32600, 'method_not_allowed'], JSON.stringify(j));
  // Other paths keep their wire: /mcpx is not an MCP route (OpenAI's error shape).
  const other = await (await fetch(`${gw.url}/mcpx`)).json() as { error: { code: string } };
  assert.equal(other.error.code, 'not_found');
});

test('MCP sessions are capped per identity (429 naming the limit); other identities are not locked out; closing one frees a slot', async () => {
  const init = (key: string) => fetch(`${gw.url}/mcp`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
  });
  const key = gw.key('capper');
  const sids: string[] = [];
  // A burst: concurrent initializes cannot overshoot the cap.
  const burst = await Promise.all(Array.from({ length: 6 }, () => init(key)));
  for (const r of burst) {
    const body = await r.text();
    if (r.status === 200) sids.push(r.headers.get('mcp-session-id') ?? '');
    else {
      assert.equal(r.status, 429, body);
      const j = JSON.parse(body) as { error: { code: number; message: string } };
      assert.equal(j.error.code, -32029);
      assert.match(j.error.message, /too many open MCP sessions for spiffe:\/\/prod\/agent\/capper \(limit 3 per identity\)/);
    }
  }
  assert.equal(sids.length, 3);
  const other = await init(gw.key('other'));
  await other.text();
  assert.equal(other.status, 200, 'another identity still gets a session');
  const del = await fetch(`${gw.url}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${key}`, 'mcp-session-id': sids[0], 'mcp-protocol-version': '2025-06-18' } });
  await del.text();
  assert.ok(del.ok, `DELETE ${del.status}`);
  const again = await init(key);
  await again.text();
  assert.equal(again.status, 200, 'a closed session frees its slot');
});

test('tool digests cover annotations: an upstream that flips readOnlyHint has the tool withheld until accepted', async () => {
  const c = await mcpClient(gw.key('analyst'));
  const r = await c.client.callTool({ name: 'annotated__lookup', arguments: {} });
  assert.notEqual(r.isError, true);
  writeFileSync(annotationsFile, JSON.stringify({ readOnlyHint: false, destructiveHint: true }));
  await c.client.callTool({ name: 'annotated__announce', arguments: {} });
  await until(async () => !(await c.client.listTools()).tools.some((t) => t.name === 'annotated__lookup'), 10_000, 'the changed tool to be withheld');
  const e = await rpcError(c.client.callTool({ name: 'annotated__lookup', arguments: {} }));
  assert.match(e.message, /withheld: tool definition changed/);
  const diff = gw.g.rt.tools?.mcp.toolDiff('annotated', 'lookup');
  assert.deepEqual(diff?.changed, ['annotations']);
  await gw.g.rt.tools?.mcp.acceptTool('annotated', 'lookup', 'test');
  assert.notEqual((await c.client.callTool({ name: 'annotated__lookup', arguments: {} })).isError, true);
  await closeClient(c);
});

test('digest upgrade: definitions accepted or pinned before annotations were covered keep working (with a notice); later changes are withheld', () => {
  const db = new DatabaseSync(':memory:');
  try {
    const integ = createToolIntegrity(db);
    const tool = (annotations?: Record<string, unknown>) => ({ name: 't', description: 'd', inputSchema: { type: 'object' }, annotations });
    const plain = tool();
    assert.equal(toolDigest(plain), legacyToolDigest(plain), 'a tool without annotations keeps its old digest');
    const v1 = tool({ readOnlyHint: true });
    assert.notEqual(toolDigest(v1), legacyToolDigest(v1));
    assert.notEqual(toolDigest(v1), toolDigest(tool({ readOnlyHint: false })));
    // An install from before the upgrade accepted v1 under its legacy digest.
    integ.check('s', [v1], {});
    db.prepare('UPDATE mcp_tool_digests SET accepted_digest = ?, current_digest = ? WHERE server = ? AND tool = ?').run(legacyToolDigest(v1), legacyToolDigest(v1), 's', 't');
    const up = integ.check('s', [v1], {}).get('t');
    assert.equal(up?.ok, true);
    assert.match(up?.ok ? up.notice ?? '' : '', /upgraded/);
    assert.equal(integ.diff('s', 't').acceptedDigest, toolDigest(v1));
    assert.equal(integ.check('s', [v1], {}).get('t')?.ok, true);
    assert.equal(integ.check('s', [tool({ readOnlyHint: false })], {}).get('t')?.ok, false, 'an annotation change after the upgrade is withheld');
    // A legacy pin still holds for what it covered, and says how to cover annotations.
    const pinned = integ.check('s', [v1], { t: legacyToolDigest(v1) }).get('t');
    assert.equal(pinned?.ok, true);
    assert.match(pinned?.ok ? pinned.notice ?? '' : '', new RegExp(`pin ${toolDigest(v1)}`));
    assert.equal(integ.check('s', [tool({ readOnlyHint: true, x: 1 })], { t: legacyToolDigest(v1) }).get('t')?.ok, true, 'legacy pins never covered annotations');
    assert.equal(integ.check('s', [{ ...v1, description: 'changed' }], { t: legacyToolDigest(v1) }).get('t')?.ok, false);
  } finally { db.close(); }
});

test('a session is decided with the identity as it is now: after the agent moves team and the config reloads, the same session gets the new team\'s policy', async () => {
  const config = (team: string) => yaml(
    doc('McpServer', 'accounts', { transport: 'streamable-http', url: fixture.url, resource: 'accounts', tools: { search_accounts: { action: 'search' } } }),
    doc('Agent', 'mover', { workload: 'spiffe://prod/agent/mover', team }),
    doc('Agent', 'bystander', { workload: 'spiffe://prod/agent/bystander', team: 'finance' }),
    doc('AgentPolicy', 'finance-tools', { identity: { team: 'finance' }, tools: [{ resource: 'accounts', actions: ['search'] }] }),
    doc('AgentPolicy', 'ops-tools', { identity: { team: 'ops' }, tools: [{ resource: 'accounts', deny: ['search'] }] }),
  );
  const g = await startTestGateway(config('finance'));
  try {
    const c = await mcpClient(g.key('mover'), '/mcp', g);
    assert.ok((await c.client.listTools()).tools.some((t) => t.name === 'accounts__search_accounts'));
    assert.notEqual((await c.client.callTool({ name: 'accounts__search_accounts', arguments: { query: 'a' } })).isError, true);
    writeFileSync(g.configPath, config('ops'));
    assert.equal(g.g.rt.reload('test'), null);
    const e = await rpcError(c.client.callTool({ name: 'accounts__search_accounts', arguments: { query: 'a' } }));
    assert.equal(e.code, -32001);
    assert.match(e.message, /"ops-tools"/);
    assert.ok(!(await c.client.listTools()).tools.some((t) => t.name === 'accounts__search_accounts'), 'tools/list on the old session follows the new policy too');
    // Still bound to its SPIFFE ID: another agent cannot use it.
    const sid = c.transport.sessionId ?? '';
    const r = await fetch(`${g.url}/mcp`, {
      method: 'POST', headers: { authorization: `Bearer ${g.key('bystander')}`, 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    assert.equal(r.status, 403, await r.text());
  } finally {
    for (const x of open.splice(0)) await closeClient(x);
    await g.close();
  }
});

test('closing the gateway while a stdio MCP server is still starting stops that process (no orphan, no restart)', async () => {
  const pidFile = join(dir, 'starting.pid');
  // Never answers initialize: the connection stays "starting" until the gateway closes.
  const script = `require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 60000);`;
  const g = await startTestGateway(yaml(doc('McpServer', 'slowstart', { transport: 'stdio', command: NODE, args: ['-e', script], timeout_ms: 120_000 })));
  let pid = 0;
  try {
    await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8') !== '', 60_000, 'the stdio server to start');
    pid = Number(readFileSync(pidFile, 'utf8'));
    await g.close();
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    await until(() => !alive(), 10_000, `the starting stdio server (pid ${pid}) to be stopped by close()`);
  } finally {
    if (pid > 0) try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    await g.close();
  }
});
