// End-to-end through the real server with real policy: the seed AgentPolicy governs an MCP
// server's tools and an HTTP tool; identities come from virtual keys and JWT-SVIDs (aam-issued
// via the token endpoint, and from an external trust domain's JWKS).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import OpenAI from 'openai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { FIXTURE, NODE, STDIO_TIMEOUT_MS, tempFile } from './fixtures/mcp-accounts/upstream.ts';

let gw: TestGateway;
let api: Server;
let apiUrl: string;
const apiSeen: Array<{ url: string; headers: Record<string, unknown> }> = [];
let extKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const jwksFile = tempFile('ext-jwks.json');
const callsFile = tempFile('mcp-calls.jsonl');
const TOOL_SECRET = 'crm-token-abcdefghijklmnop';

before(async () => {
  api = createServer((req, res) => {
    apiSeen.push({ url: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'a1', name: 'Acme', echo_auth: req.headers.authorization }));
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
  const kp = await generateKeyPair('ES256', { extractable: true });
  extKey = kp.privateKey;
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'ext-1', alg: 'ES256', use: 'sig' }] }));
  const config = yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'reasoning-high', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
    doc('Model', 'summarization', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
    doc('Credential', 'crm-token', { env: 'TEST_CRM_TOKEN' }),
    doc('TrustDomain', 'partner.example', { jwks_file: jwksFile }),
    doc('Agent', 'finance-analyst', { workload: 'spiffe://prod/agent/finance-analyst', team: 'finance', environment: 'prod', owner: 'jane@example.com' }),
    doc('Agent', 'partner-bot', { workload: 'spiffe://partner.example/bot', team: 'partners', environment: 'prod' }),
    // timeout_ms bounds the server's start too: a start slower than that is stopped and begun again,
    // as cold, each time (at load 34-42 the 90 s wait below ran out once with the 30 s default).
    doc('McpServer', 'salesforce', {
      transport: 'stdio', command: NODE, args: [FIXTURE, 'stdio'], env: { CALLS_FILE: callsFile }, timeout_ms: STDIO_TIMEOUT_MS,
      tools: { search_accounts: { resource: 'salesforce.accounts', action: 'search' }, read_account: { resource: 'salesforce.accounts', action: 'read' }, export_accounts: { resource: 'salesforce.accounts', action: 'export' } },
    }),
    doc('HttpTool', 'crm', { baseUrl: apiUrl, credential: 'crm-token', resource: 'salesforce.accounts', actions: { read: { method: 'GET', path: '/accounts/{id}' }, export: { method: 'POST', path: '/accounts/export' } } }),
    // The seed policy, plus an argument condition on search.
    `apiVersion: access.envisionai.dev/v1
kind: AgentPolicy
metadata: { name: finance-analyst-readonly }
spec:
  identity: { workload: spiffe://prod/agent/finance-analyst }
  models:
    allow: [reasoning-high, summarization]
    budget: { daily_usd: 75 }
  tools:
    - resource: salesforce.accounts
      actions: [read, search]
      deny: [export, update, delete]
      args: { limit: { max: 100 } }
  credentials: { injection: runtime, expose_to_agent: false }
  audit: { record: [identity, policy, action, outcome] }
`,
    doc('AgentPolicy', 'partners', { identity: { team: 'partners' }, models: { allow: ['summarization'] } }),
  );
  gw = await startTestGateway(config, { TEST_CRM_TOKEN: TOOL_SECRET });
  // A cold stdio server on a loaded CPU takes seconds: no test depends on how fast it starts.
  await until(() => Object.values(gw.g.rt.tools?.mcp.status() ?? {}).every((s) => s.state === 'ready'), 90_000, 'the salesforce MCP server ready');
});
after(async () => { await gw?.close(); await new Promise((r) => api?.close(r)); });

async function mcpClient(token: string): Promise<Client> {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
  return client;
}

const calls = (): Array<{ tool: string }> => existsSync(callsFile) ? readFileSync(callsFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];

test('MCP: the seed policy governs the server tools; denied calls never reach the upstream', async () => {
  const client = await mcpClient(gw.key('finance-analyst'));
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  assert.ok(names.includes('salesforce__search_accounts'));
  assert.ok(names.includes('salesforce__read_account'));
  assert.ok(!names.includes('salesforce__export_accounts'), 'explicitly denied tool is not listed');
  const ok = await client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme', limit: 10 } });
  assert.notEqual(ok.isError, true);
  const before = calls().length;
  const tooMany = await client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme', limit: 500 } }).catch((e: Error) => ({ isError: true, content: [{ type: 'text', text: e.message }] }));
  assert.equal(tooMany.isError, true);
  assert.match(JSON.stringify(tooMany.content), /finance-analyst-readonly/);
  const exp = await client.callTool({ name: 'salesforce__export_accounts', arguments: {} }).catch((e: Error) => ({ isError: true, content: [{ type: 'text', text: e.message }] }));
  assert.equal(exp.isError, true);
  assert.match(JSON.stringify(exp.content), /finance-analyst-readonly/);
  assert.equal(calls().length, before, 'upstream saw neither denied call');
  await client.close();
});

test('MCP: no credentials -> 401 pointing at RFC 9728 metadata; a partner agent sees no salesforce tools', async () => {
  const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate') ?? '', /resource_metadata=/);
  const meta = (await (await fetch(`${gw.url}/.well-known/oauth-protected-resource/mcp`)).json()) as { resource: string };
  assert.match(meta.resource, /\/mcp$/);
  const client = await mcpClient(gw.key('partner-bot'));
  const { tools } = await client.listTools();
  assert.equal(tools.length, 0);
  await client.close();
});

test('HTTP tool: allowed read gets the injected credential; export denied; traversal rejected; secret never echoed back', async () => {
  const key = gw.key('finance-analyst');
  const call = (action: string, body: unknown) => fetch(`${gw.url}/tools/crm/${action}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  apiSeen.length = 0;
  const r = await call('read', { id: 'a1' });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.equal(apiSeen[0].url, '/accounts/a1');
  assert.equal(apiSeen[0].headers.authorization, `Bearer ${TOOL_SECRET}`);
  assert.ok(!JSON.stringify(apiSeen[0].headers).includes(key), 'agent key must not be forwarded');
  assert.ok(!text.includes(TOOL_SECRET), 'credential echoed by the upstream must be scrubbed');
  const d = await call('export', {});
  assert.equal(d.status, 403);
  const t = await call('read', { id: '../admin' });
  assert.ok(t.status === 400 || t.status === 403, `traversal got ${t.status}`);
  assert.equal(apiSeen.length, 1, 'neither the denied nor the traversal call reached the API');
});

test('JWT-SVID: exchange a virtual key at the token endpoint, use the token, lose it on key revocation', async () => {
  const k = gw.g.rt.keys.create('finance-analyst');
  const tr = await fetch(`${gw.url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${k.secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ ttl: '5m' }) });
  assert.equal(tr.status, 200);
  const { access_token, spiffe_id } = (await tr.json()) as { access_token: string; spiffe_id: string };
  assert.equal(spiffe_id, 'spiffe://prod/agent/finance-analyst');
  const jwks = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: unknown[] };
  assert.ok(jwks.keys.length >= 1);
  const client = new OpenAI({ apiKey: access_token, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const r = await client.chat.completions.create({ model: 'reasoning-high', messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(r.choices[0].message.content);
  await assert.rejects(client.chat.completions.create({ model: 'frontier', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404 || e.status === 403);
  gw.g.rt.keys.revoke(k.key.id);
  await assert.rejects(client.models.list(), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 401);
});

test('JWT-SVID from an external trust domain; forged, expired and wrong-audience tokens are refused', async () => {
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Record<string, unknown>, key = extKey, kid = 'ext-1') =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
  const good = await sign({ sub: 'spiffe://partner.example/bot', aud: 'aam', iat: now, exp: now + 300 });
  const ok = new OpenAI({ apiKey: good, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const r = await ok.chat.completions.create({ model: 'summarization', messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(r.choices[0].message.content);
  await assert.rejects(ok.chat.completions.create({ model: 'reasoning-high', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 403);
  const bad: Array<[string, string]> = [
    ['forged SPIFFE ID (partner key claiming prod)', await sign({ sub: 'spiffe://prod/agent/finance-analyst', aud: 'aam', iat: now, exp: now + 300 })],
    ['expired', await sign({ sub: 'spiffe://partner.example/bot', aud: 'aam', iat: now - 900, exp: now - 600 })],
    ['wrong audience', await sign({ sub: 'spiffe://partner.example/bot', aud: 'someone-else', iat: now, exp: now + 300 })],
    ['unknown signer', await sign({ sub: 'spiffe://partner.example/bot', aud: 'aam', iat: now, exp: now + 300 }, (await generateKeyPair('ES256')).privateKey)],
    ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'spiffe://partner.example/bot', aud: 'aam', exp: now + 300 })).toString('base64url')}.`],
  ];
  for (const [what, token] of bad) {
    const res = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401, `${what} must be refused`);
  }
});

test('admin API needs the admin token; an agent key is refused', async () => {
  const r = await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${gw.key('finance-analyst')}` } });
  assert.equal(r.status, 401);
  const z = await fetch(`${gw.url}/access/v1/evaluation`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('finance-analyst')}` }, body: '{}' });
  assert.equal(z.status, 401);
});

test('credentials.allow: an identity may only use the credentials its policy names (403 otherwise)', async () => {
  const gw2 = await startTestGateway(yaml(
    doc('Credential', 'crm-token', { env: 'TEST_CRM_TOKEN' }),
    doc('HttpTool', 'crm', { baseUrl: apiUrl, credential: 'crm-token', resource: 'crm', actions: { read: { method: 'GET', path: '/accounts/{id}' } } }),
    doc('Agent', 'a', { workload: 'spiffe://prod/agent/a' }),
    doc('AgentPolicy', 'a', { identity: { agent: 'a' }, tools: [{ resource: 'crm', actions: ['read'] }], credentials: { expose_to_agent: false, allow: ['other'] } }),
    doc('Credential', 'other', { env: 'TEST_CRM_TOKEN' }),
  ), { TEST_CRM_TOKEN: TOOL_SECRET });
  try {
    apiSeen.length = 0;
    const r = await fetch(`${gw2.url}/tools/crm/read`, { method: 'POST', headers: { authorization: `Bearer ${gw2.key('a')}`, 'content-type': 'application/json' }, body: '{"id":"a1"}' });
    assert.equal(r.status, 403);
    assert.match(await r.text(), /credentials\.allow/);
    assert.equal(apiSeen.length, 0);
  } finally { await gw2.close(); }
});

test('expose_to_agent: true is refused at load with a reason', async () => {
  const { parseConfigTexts, ConfigError } = await import('../src/config/load.ts');
  assert.throws(() => parseConfigTexts([{ file: 'x.yaml', text: doc('AgentPolicy', 'p', { identity: { team: 't' }, credentials: { expose_to_agent: true } }) }]),
    (e: InstanceType<typeof ConfigError>) => /expose_to_agent: must be false \(aam never hands credentials to agents\)/.test(e.message));
});
