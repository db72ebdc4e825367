// End-to-end: the real MCP SDK client against aam's /mcp, with the accounts fixture upstream over
// stdio (crm) and Streamable HTTP (web), and server-everything over stdio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { McpError, ResourceUpdatedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  ANALYST, NODE, config, connectClient, waitFor, makeDeps, startGateway, startHttpFixture, stdioServerDoc, tempFile,
  type RunningFixture, type RunningGateway, type TestDeps,
} from './fixtures/mcp-accounts/harness.ts';

const crmCalls = tempFile('crm-calls.jsonl');
const webCalls = tempFile('web-calls.jsonl');
const EVERYTHING = join(process.cwd(), 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
let web: RunningFixture;
let gw: RunningGateway;
let deps: TestDeps;
let analyst: Client;
let intern: Client;

const calls = (file: string) => existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tool: string; args: Record<string, unknown>; authorization?: string; upstream_token?: string }) : [];
const textOf = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

async function rpcError(p: Promise<unknown>): Promise<McpError> {
  try { await p; } catch (e) { assert.ok(e instanceof McpError, `expected McpError, got ${String(e)}`); return e; }
  assert.fail('expected the call to fail');
}

before(async () => {
  web = await startHttpFixture({ CALLS_FILE: webCalls });
  deps = makeDeps();
  const yaml = [
    stdioServerDoc('crm', { CALLS_FILE: crmCalls }),
    `apiVersion: access.envisionai.dev/v1
kind: Credential
metadata: { name: web-token }
spec: { env: WEB_TOKEN }
---
apiVersion: access.envisionai.dev/v1
kind: McpServer
metadata: { name: web }
spec: { transport: streamable-http, url: ${JSON.stringify(web.url)}, credential: web-token, timeout_ms: 600 }
---
apiVersion: access.envisionai.dev/v1
kind: McpServer
metadata: { name: everything }
spec: { transport: stdio, command: ${JSON.stringify(NODE)}, args: [${JSON.stringify(EVERYTHING)}, stdio], timeout_ms: 5000 }
`].join('---\n');
  gw = await startGateway(config(yaml), deps, { maxResultBytes: 100_000, pageSize: 7 });
  analyst = (await connectClient(gw.base, 'tok-analyst')).client;
  intern = (await connectClient(gw.base, 'tok-intern')).client;
});

after(async () => {
  await analyst?.close();
  await intern?.close();
  await gw?.close();
  await web?.close();
});

async function allTools(c: Client): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const r = await c.listTools(cursor ? { cursor } : undefined);
    names.push(...r.tools.map((t) => t.name));
    cursor = r.nextCursor;
  } while (cursor);
  return names.sort();
}

test('tools/list shows each identity only the tools it could call, paginated', async () => {
  const first = await analyst.listTools();
  assert.equal(first.tools.length, 7, 'page size is 7');
  assert.ok(first.nextCursor, 'more pages follow');
  const a = await allTools(analyst);
  for (const t of ['crm__search_accounts', 'crm__read_account', 'crm__delete_account', 'crm__whoami', 'web__search_accounts', 'web__export_accounts', 'everything__echo']) assert.ok(a.includes(t), `analyst sees ${t}`);
  assert.ok(!a.includes('crm__export_accounts'), 'explicitly denied export is hidden');
  assert.equal(new Set(a).size, a.length, 'no duplicates across pages');
  assert.deepEqual(await allTools(intern), ['crm__search_accounts'], 'intern (dev) sees only search; read needs prod');
  const nobody = (await connectClient(gw.base, 'tok-nobody')).client;
  assert.deepEqual(await allTools(nobody), []);
  await nobody.close();
  await assert.rejects(analyst.listTools({ cursor: 'garbage' }), /invalid tools\/list cursor/);
});

test('allowed call with argument condition reaches the upstream', async () => {
  const r = await analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'acme', limit: 50 } });
  assert.match(textOf(r), /Acme Corp/);
  assert.ok(calls(crmCalls).some((c) => c.tool === 'search_accounts' && c.args.limit === 50));
  const ev = deps.events.find((e) => e.type === 'tool.outcome' && e.tool === 'search_accounts');
  assert.equal((ev?.outcome as { status: string }).status, 'ok');
});

test('denied calls name the policy and rule and never reach the upstream', async () => {
  const over = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'acme', limit: 500 } }));
  assert.equal(over.code, -32001);
  assert.match(over.message, /policy "finance-analyst-readonly" rule tools\[1\]/);
  const exp = await rpcError(analyst.callTool({ name: 'crm__export_accounts', arguments: {} }));
  assert.equal(exp.code, -32001);
  assert.match(exp.message, /denied by policy "finance-analyst-readonly" rule tools\[0\]/);
  const dev = await rpcError(intern.callTool({ name: 'crm__read_account', arguments: { id: 'a1' } }));
  assert.equal(dev.code, -32001, 'read only in prod: intern is dev');
  const hidden = await rpcError(intern.callTool({ name: 'crm__whoami', arguments: {} }));
  assert.match(hidden.message, /no policy allows it \(default deny\)/, 'calling a hidden tool directly is still decided (and denied)');
  const seen = calls(crmCalls);
  assert.ok(!seen.some((c) => c.args.limit === 500), 'over-limit search not forwarded');
  assert.ok(!seen.some((c) => c.tool === 'export_accounts' || c.tool === 'whoami'), 'denied tools not forwarded');
  const ok = await analyst.callTool({ name: 'crm__read_account', arguments: { id: 'a1' } });
  assert.match(textOf(ok), /Acme/, 'read allowed for the prod analyst');
  const denial = deps.events.find((e) => e.type === 'tool.decision' && (e.decision as { effect: string }).effect === 'deny');
  assert.equal(denial?.spiffe_id, ANALYST.agent.spiffeId);
});

test('schema-invalid and unknown calls are rejected before policy and upstream', async () => {
  const before = deps.authorizeCalls;
  const bad = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'x', limit: 'many' } }));
  assert.equal(bad.code, -32602);
  assert.match(bad.message, /do not match its input schema: .*limit must be integer/);
  const missing = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { limit: 5 } }));
  assert.match(missing.message, /must have required property 'query'/);
  const extra = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'x', drop: 'table' } }));
  assert.match(extra.message, /additional properties/);
  const unknown = await rpcError(analyst.callTool({ name: 'crm__nope', arguments: {} }));
  assert.match(unknown.message, /unknown tool "crm__nope"/);
  assert.equal(deps.authorizeCalls, before, 'policy not consulted for malformed calls');
  assert.ok(!calls(crmCalls).some((c) => c.args.limit === 'many' || c.args.drop), 'upstream saw none of them');
});

test('credential injected per caller on HTTP upstreams; the agent token never passes through', async () => {
  const r = JSON.parse(textOf(await analyst.callTool({ name: 'web__whoami', arguments: {} }))) as { authorization?: string; upstream_token?: string };
  assert.equal(r.upstream_token, 'secret-web-token-for-finance-analyst');
  assert.equal(r.authorization, undefined);
  for (const c of calls(webCalls)) assert.ok(!String(c.authorization ?? '').includes('tok-analyst'));
});

test('session is bound to the identity that created it', async () => {
  const { client, transport } = await connectClient(gw.base, 'tok-analyst');
  const sid = transport.sessionId;
  assert.ok(sid);
  const res = await fetch(`${gw.base}/mcp`, {
    method: 'POST',
    headers: { authorization: 'Bearer tok-intern', 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
  });
  assert.equal(res.status, 403);
  assert.match(((await res.json()) as { error: { message: string } }).error.message, /belongs to another identity/);
  const wrongScope = await fetch(`${gw.base}/mcp/crm`, {
    method: 'POST',
    headers: { authorization: 'Bearer tok-analyst', 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
  });
  assert.equal(wrongScope.status, 400);
  const noSession = await fetch(`${gw.base}/mcp`, {
    method: 'POST', headers: { authorization: 'Bearer tok-analyst', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  assert.equal(noSession.status, 400);
  const unknown = await fetch(`${gw.base}/mcp`, {
    method: 'POST', headers: { authorization: 'Bearer tok-analyst', 'mcp-session-id': 'nope', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  assert.equal(unknown.status, 404);
  assert.ok((await client.listTools()).tools.length > 0, 'the owner keeps using it');
  await client.close();
});

test('protocol versions 2025-06-18 and 2025-11-25 are negotiated', async () => {
  for (const v of ['2025-06-18', '2025-11-25']) {
    const res = await fetch(`${gw.base}/mcp`, {
      method: 'POST', headers: { authorization: 'Bearer tok-analyst', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('mcp-session-id'));
    assert.match(await res.text(), new RegExp(`"protocolVersion":"${v}"`));
  }
});

test('/mcp/<server> exposes one server with original tool names', async () => {
  const { client } = await connectClient(gw.base, 'tok-analyst', '/mcp/crm');
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('search_accounts') && !names.some((n) => n.includes('__')));
  const r = await client.callTool({ name: 'search_accounts', arguments: { query: 'glob' } });
  assert.match(textOf(r), /Globex/);
  const denied = await rpcError(client.callTool({ name: 'export_accounts', arguments: {} }));
  assert.equal(denied.code, -32001);
  await client.close();
  const res = await fetch(`${gw.base}/mcp/missing`, { method: 'POST', headers: { authorization: 'Bearer tok-analyst', 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 404);
});

test('resources and prompts pass through under the same policy', async () => {
  const res = await analyst.listResources();
  assert.ok(res.resources.some((r) => r.uri === 'account://a1'));
  const read = await analyst.readResource({ uri: 'account://a2' });
  assert.match(JSON.stringify(read.contents), /Globex/);
  assert.deepEqual((await intern.listResources()).resources, []);
  const unknown = await rpcError(intern.readResource({ uri: 'account://a1' }));
  assert.match(unknown.message, /call resources\/list or resources\/templates\/list first/, 'aggregated: the owner of a URI is known from listing');
  const { client: internCrm } = await connectClient(gw.base, 'tok-intern', '/mcp/crm');
  const denied = await rpcError(internCrm.readResource({ uri: 'account://a1' }));
  assert.equal(denied.code, -32001);
  await internCrm.close();
  // Resource templates: listed under the same policy, and a URI built from one is routed to the
  // server that listed it and authorized like any read.
  const templates = await analyst.listResourceTemplates();
  assert.ok(templates.resourceTemplates.some((t) => t.uriTemplate === 'account-history://{id}/{year}'));
  const history = await analyst.readResource({ uri: 'account-history://a1/2025' });
  assert.match(JSON.stringify(history.contents), /\\"deals\\":3/);
  assert.deepEqual((await intern.listResourceTemplates()).resourceTemplates, [], 'hidden from a caller who may not read');
  const internHistory = await rpcError(intern.readResource({ uri: 'account-history://a1/2025' }));
  assert.match(internHistory.message, /resources\/templates\/list first/);
  const prompts = await analyst.listPrompts();
  assert.ok(prompts.prompts.some((p) => p.name === 'crm__summarize_account'));
  const p = await analyst.getPrompt({ name: 'crm__summarize_account', arguments: { id: 'a1' } });
  assert.match(JSON.stringify(p.messages), /Summarize account a1/);
  await assert.rejects(intern.getPrompt({ name: 'crm__summarize_account', arguments: { id: 'a1' } }), /denied/);
});

test('resource subscriptions: allowed like a read, updates reach only the subscribed session, unsubscribe stops them', async () => {
  const { client: sub } = await connectClient(gw.base, 'tok-analyst', '/mcp/crm');
  const { client: other } = await connectClient(gw.base, 'tok-analyst', '/mcp/crm');
  const seen: string[] = [];
  const otherSeen: string[] = [];
  sub.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => { seen.push(n.params.uri); });
  other.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => { otherSeen.push(n.params.uri); });
  await sub.subscribeResource({ uri: 'account://a1' });
  // The upstream changes its accounts (variant '' keeps tool descriptions as they were).
  await other.callTool({ name: 'mutate', arguments: { variant: '' } });
  await waitFor(() => seen.length > 0, 5000, 'resources/updated at the subscriber');
  assert.deepEqual(seen, ['account://a1']);
  assert.deepEqual(otherSeen, [], 'a session that did not subscribe hears nothing');
  await sub.unsubscribeResource({ uri: 'account://a1' });
  await other.callTool({ name: 'mutate', arguments: { variant: '' } });
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(seen, ['account://a1'], 'no update after unsubscribe');
  // Subscribing is decided like a read: the intern may not read crm resources.
  const { client: internCrm } = await connectClient(gw.base, 'tok-intern', '/mcp/crm');
  const denied = await rpcError(internCrm.subscribeResource({ uri: 'account://a1' }));
  assert.equal(denied.code, -32001);
  await Promise.all([sub.close(), other.close(), internCrm.close()]);
});

test('huge results and hung upstreams give clear errors', async () => {
  const big = await rpcError(analyst.callTool({ name: 'crm__big', arguments: { bytes: 200_000 } }));
  assert.match(big.message, /over the 100000 byte limit/);
  const t0 = Date.now();
  const slow = await rpcError(analyst.callTool({ name: 'web__slow', arguments: { ms: 2000 } }));
  assert.match(slow.message, /MCP server "web" did not answer tools\/call "slow" within 600 ms/);
  assert.ok(Date.now() - t0 < 1800);
});

test('progress notifications are forwarded', async () => {
  const seen: number[] = [];
  const r = await analyst.callTool({ name: 'crm__slow', arguments: { ms: 120 } }, undefined, { onprogress: (p) => { seen.push(p.progress); } });
  assert.equal(textOf(r), 'done');
  // The last notification may race the result (the client drops progress after the response).
  assert.ok(seen.length >= 3, `progress forwarded: ${seen.join(',')}`);
  assert.deepEqual(seen, [...seen].sort(), 'in order');
});

test('server-everything over stdio works through the gateway', async () => {
  const r = await analyst.callTool({ name: 'everything__echo', arguments: { message: 'hi aam' } });
  assert.match(textOf(r), /hi aam/);
  const bad = await rpcError(analyst.callTool({ name: 'everything__echo', arguments: {} }));
  assert.equal(bad.code, -32602);
});

test('malformed JSON and batches with denied calls', async () => {
  const { transport } = await connectClient(gw.base, 'tok-analyst');
  const sid = transport.sessionId as string;
  const headers = { authorization: 'Bearer tok-analyst', 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
  const bad = await fetch(`${gw.base}/mcp`, { method: 'POST', headers, body: '{"jsonrpc":' });
  assert.equal(bad.status, 400);
  const raw = await fetch(`${gw.base}/mcp`, { method: 'POST', headers: { ...headers, 'x-test-raw-body': '1' }, body: '{"jsonrpc":' });
  assert.equal(raw.status, 400);
  assert.equal(((await raw.json()) as { error: { code: number } }).error.code, -32700, 'gateway parses bodies it is not given');
  const rawOk = await fetch(`${gw.base}/mcp`, { method: 'POST', headers: { ...headers, 'x-test-raw-body': '1' }, body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list', params: {} }) });
  assert.equal(rawOk.status, 200);
  assert.match(await rawOk.text(), /crm__search_accounts/);
  const before = calls(crmCalls).length;
  const batch = await fetch(`${gw.base}/mcp`, {
    method: 'POST', headers, body: JSON.stringify([
      { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'crm__search_accounts', arguments: { query: 'acme', limit: 1 } } },
      { jsonrpc: '2.0', id: 'b', method: 'tools/call', params: { name: 'crm__export_accounts', arguments: {} } },
    ]),
  });
  const text = await batch.text();
  if (batch.status === 200) {
    assert.match(text, /"id":"b".*-32001|-32001.*"id":"b"/s, 'the denied member gets its own error');
    const after = calls(crmCalls).slice(before);
    assert.deepEqual(after.map((c) => c.tool), ['search_accounts'], 'only the allowed member reached the upstream');
  } else {
    assert.equal(batch.status, 400, `batch refused: ${text}`);
    assert.equal(calls(crmCalls).length, before);
  }
  await transport.close();
});
