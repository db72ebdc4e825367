// End-to-end through the real gateway (identity, policy, credentials, guardrails, scrubbing and
// audit all aam's own): the MCP SDK client against /mcp, with the accounts fixture upstream over
// stdio (crm) and Streamable HTTP (web), and server-everything over stdio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { ADMIN_TOKEN, connectClient, rpcError, serversReady, textOf, toolEvents } from './helpers/mcp.ts';
import { NODE, STDIO_TIMEOUT_MS, callsIn, startHttpFixture, stdioServerDoc, tempFile, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

const crmCalls = tempFile('crm-calls.jsonl');
const webCalls = tempFile('web-calls.jsonl');
const EVERYTHING = join(process.cwd(), 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const WEB_SECRET = 'web-secret-NEEDLE-0a1b2c3d4e5f';
const CRM_SECRET = 'crm-secret-NEEDLE-9z8y7x6w5v4u';
/** Every form an upstream may echo a credential in; none may reach an agent. */
const forms = (s: string) => [s, Buffer.from(s).toString('base64'), encodeURIComponent(s), 'NEEDLE'];
const EXTRA_TOOLS = 200;
/** Only the `sluggish` server (the web fixture again) has a short timeout: a slow CPU must not trip the others. */
const SLUGGISH_TIMEOUT_MS = 1000;

let web: RunningFixture;
let gw: TestGateway;
let analyst: Client;
let intern: Client;
const keys: Record<string, string> = {};

const agent = (name: string, workload: string, team: string, environment: string) => doc('Agent', name, { workload, team, environment });

before(async () => {
  web = await startHttpFixture({ CALLS_FILE: webCalls, MANY_TOOLS: String(EXTRA_TOOLS) });
  const config = yaml(
    doc('Credential', 'web-token', { env: 'TEST_WEB_TOKEN' }),
    doc('Credential', 'crm-token', { env: 'TEST_CRM_TOKEN' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'no-falcon-out', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    agent('finance-analyst', 'spiffe://prod/agent/finance-analyst', 'finance', 'prod'),
    agent('intern', 'spiffe://dev/agent/intern', 'finance', 'dev'),
    agent('nobody', 'spiffe://prod/agent/nobody', 'ops', 'prod'),
    agent('careful', 'spiffe://prod/agent/careful', 'support', 'prod'),
    doc('AgentPolicy', 'finance-analyst-readonly', {
      identity: { workload: 'spiffe://prod/agent/finance-analyst' },
      tools: [
        { resource: 'salesforce.accounts', deny: ['export', 'update'] },
        { resource: 'salesforce.accounts', actions: ['search'], args: { limit: { max: 100 } } },
        { resource: 'salesforce.accounts', actions: ['read'] },
        { resource: 'salesforce.accounts', actions: ['delete'], approval: 'required' },
        { resource: 'crm', actions: ['crash', 'slow', 'big', 'whoami', 'leak', 'echo', 'mutate', 'resources/read', 'prompts/get'] },
        { resource: 'web', actions: ['*'] },
        { resource: 'sluggish', actions: ['slow'] },
        { resource: 'everything', actions: ['*'] },
      ],
    }),
    doc('AgentPolicy', 'intern-search', { identity: { workload: 'spiffe://dev/agent/intern' }, tools: [{ resource: 'salesforce.accounts', actions: ['search'], args: { limit: { max: 10 } } }] }),
    // read needs prod: a condition on the identity alone also hides the tool from tools/list.
    doc('AgentPolicy', 'prod-readers', { identity: { team: 'finance' }, tools: [{ resource: 'salesforce.accounts', actions: ['read'], when: 'identity.environment == "prod"' }] }),
    doc('AgentPolicy', 'careful-policy', {
      identity: { workload: 'spiffe://prod/agent/careful' }, guardrails: ['mask-email-out', 'no-falcon-out'],
      tools: [{ resource: 'salesforce.accounts', actions: ['read'] }, { resource: 'crm', actions: ['echo'] }],
    }),
    stdioServerDoc('crm', { CALLS_FILE: crmCalls, ECHO_ENV: 'CRM_TOKEN' }, '  credential: crm-token\n  max_result_bytes: 100000\n'),
    doc('McpServer', 'web', { transport: 'streamable-http', url: web.url, credential: 'web-token', timeout_ms: STDIO_TIMEOUT_MS }),
    doc('McpServer', 'sluggish', { transport: 'streamable-http', url: web.url, timeout_ms: SLUGGISH_TIMEOUT_MS }),
    // A guardrail attached to the server applies to every caller's results, whatever their policy says.
    doc('McpServer', 'everything', { transport: 'stdio', command: NODE, args: [EVERYTHING, 'stdio'], timeout_ms: STDIO_TIMEOUT_MS, guardrails: ['mask-email-out'] }),
  );
  gw = await startTestGateway(config, { TEST_WEB_TOKEN: WEB_SECRET, TEST_CRM_TOKEN: CRM_SECRET, AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  for (const a of ['finance-analyst', 'intern', 'nobody', 'careful']) keys[a] = gw.key(a);
  await serversReady(gw);
  analyst = (await connectClient(gw, keys['finance-analyst'])).client;
  intern = (await connectClient(gw, keys.intern)).client;
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
  assert.equal(first.tools.length, 200, 'a page holds 200 tools');
  assert.ok(first.nextCursor, 'more pages follow');
  const a = await allTools(analyst);
  for (const t of ['crm__search_accounts', 'crm__read_account', 'crm__delete_account', 'crm__whoami', 'web__search_accounts', 'web__export_accounts', 'web__tool_199', 'everything__echo']) assert.ok(a.includes(t), `analyst sees ${t}`);
  assert.ok(!a.includes('crm__export_accounts'), 'explicitly denied export is hidden');
  assert.equal(new Set(a).size, a.length, 'no duplicates across pages');
  assert.deepEqual(await allTools(intern), ['crm__search_accounts'], 'intern (dev) sees only search; read needs prod');
  const nobody = (await connectClient(gw, keys.nobody)).client;
  assert.deepEqual(await allTools(nobody), []);
  await nobody.close();
  await assert.rejects(analyst.listTools({ cursor: 'garbage' }), /invalid tools\/list cursor/);
});

test('allowed call with argument condition reaches the upstream and is on record', async () => {
  const r = await analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'acme', limit: 50 } });
  assert.match(textOf(r), /Acme Corp/);
  assert.ok(callsIn(crmCalls).some((c) => c.tool === 'search_accounts' && c.args.limit === 50));
  const ev = (await toolEvents(gw, { type: 'tool.outcome', agent: 'finance-analyst' })).find((e) => (e as { tool?: unknown }).tool === 'search_accounts');
  assert.equal(ev?.outcome?.status, 'ok');
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
  assert.match(dev.message, /prod-readers/);
  const hidden = await rpcError(intern.callTool({ name: 'crm__whoami', arguments: {} }));
  assert.match(hidden.message, /no policy allows it \(default deny\)/, 'calling a hidden tool directly is still decided (and denied)');
  const seen = callsIn(crmCalls);
  assert.ok(!seen.some((c) => c.args.limit === 500), 'over-limit search not forwarded');
  assert.ok(!seen.some((c) => c.tool === 'export_accounts' || c.tool === 'whoami'), 'denied tools not forwarded');
  const ok = await analyst.callTool({ name: 'crm__read_account', arguments: { id: 'a1' } });
  assert.match(textOf(ok), /Acme/, 'read allowed for the prod analyst');
  const denials = (await toolEvents(gw, { type: 'tool.decision', agent: 'finance-analyst' })).filter((e) => (e as { decision?: { effect?: string } }).decision?.effect === 'deny');
  assert.ok(denials.length >= 2, 'denials are evidence');
  assert.equal((denials[0] as { spiffe_id?: string }).spiffe_id, 'spiffe://prod/agent/finance-analyst');
});

test('schema-invalid and unknown calls are rejected and never reach the upstream', async () => {
  const bad = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 7 } }));
  assert.equal(bad.code, -32602);
  assert.match(bad.message, /do not match its input schema: .*query must be string/);
  const missing = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { limit: 5 } }));
  assert.match(missing.message, /must have required property 'query'/);
  const extra = await rpcError(analyst.callTool({ name: 'crm__search_accounts', arguments: { query: 'x', drop: 'table' } }));
  assert.match(extra.message, /additional properties/);
  // A name no tool has is decided like a tool of that name: the analyst may not call action "nope" on crm.
  const unknown = await rpcError(analyst.callTool({ name: 'crm__nope', arguments: {} }));
  assert.equal(unknown.code, -32001);
  assert.match(unknown.message, /tools\/call "crm__nope" \(resource crm, action nope\) denied/);
  assert.ok(!callsIn(crmCalls).some((c) => c.args.query === 7 || c.args.drop || (c.args.limit === 5 && c.args.query === undefined)), 'upstream saw none of them');
});

test('a caller the server is closed to learns nothing about which tools or servers exist: every name is the same -32001 (both generations)', async () => {
  const before = callsIn(crmCalls).length;
  const session = async (name: string) => rpcError(intern.callTool({ name, arguments: { id: 7 } }));
  const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'probe', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
  const modern = async (name: string) => {
    const r = await fetch(`${gw.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keys.intern}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': name },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { id: 7 }, _meta: meta } }),
    });
    return (await r.json() as { error: { code: number; message: string } }).error;
  };
  // web__whoami exists, web__no_such_tool does not, nosuch__tool names no server: intern has no rule for any of them.
  for (const name of ['web__whoami', 'web__no_such_tool', 'nosuch__tool']) {
    for (const e of [await session(name), await modern(name)]) {
      assert.equal(e.code, -32001, `${name}: ${e.message}`);
      assert.match(e.message, new RegExp(`tools/call "${name}" \\(resource \\w+, action \\w+\\) denied: no policy allows it \\(default deny\\)`));
    }
  }
  // Prompts: a name of no server is decided too (the prefix as the resource), like one of a real server.
  const prompt = await rpcError(intern.getPrompt({ name: 'nosuch__p', arguments: {} }));
  assert.equal(prompt.code, -32001, prompt.message);
  assert.match(prompt.message, /prompts\/get "nosuch__p" \(resource nosuch\) denied/);
  assert.equal(callsIn(crmCalls).length, before);
  // A caller the server is open to is told the truth.
  assert.match((await rpcError(analyst.callTool({ name: 'web__no_such_tool', arguments: {} }))).message, /unknown tool "web__no_such_tool"/);
});

test('credential injected at the last hop; the agent gets [REDACTED:<credential>] in results and errors, never the secret', async () => {
  // HTTP upstream: the credential travels as a header.
  const who = JSON.parse(textOf(await analyst.callTool({ name: 'web__whoami', arguments: {} }))) as { authorization?: string };
  assert.equal(who.authorization, 'Bearer [REDACTED:web-token]');
  const last = callsIn(webCalls).at(-1);
  assert.equal(last?.authorization, `Bearer ${WEB_SECRET}`, 'the upstream got the real credential');
  for (const c of callsIn(webCalls)) assert.ok(!String(c.authorization ?? '').includes(keys['finance-analyst']), "the agent's key never reaches the upstream");
  // stdio upstream: the credential travels as an environment variable of the process.
  const env = JSON.parse(textOf(await analyst.callTool({ name: 'crm__whoami', arguments: {} }))) as { env_token?: string };
  assert.equal(env.env_token, '[REDACTED:crm-token]');
  assert.equal(callsIn(crmCalls).at(-1)?.env_token, CRM_SECRET);
  // Raw, base64 and URL-encoded echoes, in a result and in an upstream error.
  for (const [tool, secret, name] of [['web__leak', WEB_SECRET, 'web-token'], ['crm__leak', CRM_SECRET, 'crm-token']] as const) {
    const r = textOf(await analyst.callTool({ name: tool, arguments: { as: 'result' } }));
    assert.equal(r, `raw=[REDACTED:${name}] base64=[REDACTED:${name}] url=[REDACTED:${name}]`);
    const err = await rpcError(analyst.callTool({ name: tool, arguments: { as: 'error' } }));
    assert.match(err.message, new RegExp(`raw=\\[REDACTED:${name}\\]`));
    for (const f of forms(secret)) assert.ok(!r.includes(f) && !err.message.includes(f), `${tool} leaked ${f}`);
  }
});

test('guardrails see tool results: a policy guardrail redacts or blocks them, a server guardrail applies to every caller', async () => {
  const careful = (await connectClient(gw, keys.careful)).client;
  try {
    // read_account returns the owner's email: redacted before the agent sees it.
    const read = textOf(await careful.callTool({ name: 'crm__read_account', arguments: { id: 'a1' } }));
    assert.match(read, /Acme Corp/);
    assert.ok(read.includes('[EMAIL]'), read);
    assert.ok(!read.includes('jane@example.com'));
    // A result that trips a block guardrail is withheld, naming the guardrail; the call itself did happen.
    const before = callsIn(crmCalls).length;
    const blocked = await rpcError(careful.callTool({ name: 'crm__echo', arguments: { text: 'status of project falcon' } }));
    assert.equal(blocked.code, -32001);
    assert.match(blocked.message, /no-falcon-out/);
    assert.doesNotMatch(blocked.message, /status of project falcon/);
    assert.equal(callsIn(crmCalls).length, before + 1, 'output guardrails act on the result, after the upstream call');
    const evs = (await toolEvents(gw, { type: 'guardrail', agent: 'careful' })) as Array<{ guardrail?: { direction: string; verdict: string } }>;
    assert.deepEqual(evs.map((e) => [e.guardrail?.direction, e.guardrail?.verdict]), [['output', 'redact'], ['output', 'block']]);
  } finally {
    await careful.close();
  }
  // The analyst's policy attaches no guardrail; the everything server's own one still masks its results.
  const echoed = textOf(await analyst.callTool({ name: 'everything__echo', arguments: { message: 'write to jane@example.com' } }));
  assert.ok(echoed.includes('[EMAIL]') && !echoed.includes('jane@example.com'), echoed);
  const plain = textOf(await analyst.callTool({ name: 'crm__read_account', arguments: { id: 'a1' } }));
  assert.ok(plain.includes('jane@example.com'), 'no guardrail on crm for the analyst');
});

test('session is bound to the identity that created it', async () => {
  const { client, transport } = await connectClient(gw, keys['finance-analyst']);
  const sid = transport.sessionId;
  assert.ok(sid);
  const res = await fetch(`${gw.url}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys.intern}`, 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
  });
  assert.equal(res.status, 403);
  assert.match(((await res.json()) as { error: { message: string } }).error.message, /belongs to another identity/);
  const wrongScope = await fetch(`${gw.url}/mcp/crm`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys['finance-analyst']}`, 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list', params: {} }),
  });
  assert.equal(wrongScope.status, 400);
  const noSession = await fetch(`${gw.url}/mcp`, {
    method: 'POST', headers: { authorization: `Bearer ${keys['finance-analyst']}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  assert.equal(noSession.status, 400);
  const unknown = await fetch(`${gw.url}/mcp`, {
    method: 'POST', headers: { authorization: `Bearer ${keys['finance-analyst']}`, 'mcp-session-id': 'nope', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  assert.equal(unknown.status, 404);
  assert.ok((await client.listTools()).tools.length > 0, 'the owner keeps using it');
  await client.close();
});

test('protocol versions 2025-06-18 and 2025-11-25 are negotiated', async () => {
  for (const v of ['2025-06-18', '2025-11-25']) {
    const res = await fetch(`${gw.url}/mcp`, {
      method: 'POST', headers: { authorization: `Bearer ${keys['finance-analyst']}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: v, capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    assert.equal(res.status, 200);
    assert.ok(res.headers.get('mcp-session-id'));
    assert.match(await res.text(), new RegExp(`"protocolVersion":"${v}"`));
  }
});

test('/mcp/<server> exposes one server with original tool names', async () => {
  const { client } = await connectClient(gw, keys['finance-analyst'], '/mcp/crm');
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('search_accounts') && !names.some((n) => n.includes('__')));
  const r = await client.callTool({ name: 'search_accounts', arguments: { query: 'glob' } });
  assert.match(textOf(r), /Globex/);
  const denied = await rpcError(client.callTool({ name: 'export_accounts', arguments: {} }));
  assert.equal(denied.code, -32001);
  await client.close();
  const res = await fetch(`${gw.url}/mcp/missing`, { method: 'POST', headers: { authorization: `Bearer ${keys['finance-analyst']}`, 'content-type': 'application/json' }, body: '{}' });
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
  const { client: internCrm } = await connectClient(gw, keys.intern, '/mcp/crm');
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
  const { client: sub } = await connectClient(gw, keys['finance-analyst'], '/mcp/crm');
  const { client: other } = await connectClient(gw, keys['finance-analyst'], '/mcp/crm');
  const seen: string[] = [];
  const otherSeen: string[] = [];
  sub.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => { seen.push(n.params.uri); });
  other.setNotificationHandler(ResourceUpdatedNotificationSchema, async (n) => { otherSeen.push(n.params.uri); });
  await sub.subscribeResource({ uri: 'account://a1' });
  // The upstream changes its accounts (variant '' keeps tool descriptions as they were).
  await other.callTool({ name: 'mutate', arguments: { variant: '' } });
  await until(() => seen.length > 0, 10_000, 'resources/updated at the subscriber');
  assert.deepEqual(seen, ['account://a1']);
  assert.deepEqual(otherSeen, [], 'a session that did not subscribe hears nothing');
  await sub.unsubscribeResource({ uri: 'account://a1' });
  // The other session subscribes now: once the next update reached it, it has passed sub by.
  await other.subscribeResource({ uri: 'account://a1' });
  await other.callTool({ name: 'mutate', arguments: { variant: '' } });
  await until(() => otherSeen.length > 0, 10_000, 'resources/updated at the new subscriber');
  assert.deepEqual(seen, ['account://a1'], 'no update after unsubscribe');
  // Subscribing is decided like a read: the intern may not read crm resources.
  const { client: internCrm } = await connectClient(gw, keys.intern, '/mcp/crm');
  const denied = await rpcError(internCrm.subscribeResource({ uri: 'account://a1' }));
  assert.equal(denied.code, -32001);
  await Promise.all([sub.close(), other.close(), internCrm.close()]);
});

test('huge results and hung upstreams give clear errors', async () => {
  const big = await rpcError(analyst.callTool({ name: 'crm__big', arguments: { bytes: 200_000 } }));
  assert.match(big.message, /over the 100000 byte limit/);
  const t0 = Date.now();
  const slow = await rpcError(analyst.callTool({ name: 'sluggish__slow', arguments: { ms: 60_000 } }));
  assert.match(slow.message, new RegExp(`MCP server "sluggish" did not answer tools/call "slow" within ${SLUGGISH_TIMEOUT_MS} ms`));
  assert.ok(Date.now() - t0 < 45_000, 'the timeout, not the upstream, ended the call');
});

test('progress notifications are forwarded', async () => {
  const seen: number[] = [];
  // The upstream reports 4 times, 500 ms apart. The MCP SDK handles a notification a microtask
  // after a response that arrived in the same chunk, and drops progress after the response: so the
  // last one may race the result, and the gaps must outlast a busy CPU's stalls (at 30 ms apart,
  // none was seen at load 20 on one core; with no gap at all, 0 or 1 of 4).
  const r = await analyst.callTool({ name: 'crm__slow', arguments: { ms: 2000 } }, undefined, { onprogress: (p) => { seen.push(p.progress); } });
  assert.equal(textOf(r), 'done');
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
  const { transport } = await connectClient(gw, keys['finance-analyst']);
  const sid = transport.sessionId as string;
  const headers = { authorization: `Bearer ${keys['finance-analyst']}`, 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
  const bad = await fetch(`${gw.url}/mcp`, { method: 'POST', headers, body: '{"jsonrpc":' });
  assert.equal(bad.status, 400);
  const before = callsIn(crmCalls).length;
  const batch = await fetch(`${gw.url}/mcp`, {
    method: 'POST', headers, body: JSON.stringify([
      { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'crm__search_accounts', arguments: { query: 'acme', limit: 1 } } },
      { jsonrpc: '2.0', id: 'b', method: 'tools/call', params: { name: 'crm__export_accounts', arguments: {} } },
    ]),
  });
  const text = await batch.text();
  if (batch.status === 200) {
    assert.match(text, /"id":"b".*-32001|-32001.*"id":"b"/s, 'the denied member gets its own error');
    const after = callsIn(crmCalls).slice(before);
    assert.deepEqual(after.map((c) => c.tool), ['search_accounts'], 'only the allowed member reached the upstream');
  } else {
    assert.equal(batch.status, 400, `batch refused: ${text}`);
    assert.equal(callsIn(crmCalls).length, before);
  }
  await transport.close();
});
