// Guardrails see what a listing shows the agent: a tool description (or schema, prompt, resource)
// is text the agent's model reads, so a poisoned one is exactly what output guardrails are for.
// A block withholds that item alone; a redaction shows the redacted item; on both MCP generations.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { ADMIN_TOKEN, connectClient, rpcError, serversReady, toolEvents } from './helpers/mcp.ts';
import { stdioServerDoc } from './fixtures/mcp-accounts/upstream.ts';

const SSN = '078-05-1120';
let gw: TestGateway;
let client: Client;
let plain: Client;

before(async () => {
  gw = await startTestGateway(yaml(
    doc('Guardrail', 'no-ssn-out', { on: ['output'], detect: ['ssn'], action: 'block' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'no-globex-out', { on: ['output'], keywords: ['globex', 'summarize an account'], action: 'block' }),
    doc('Agent', 'guarded', { workload: 'spiffe://prod/agent/guarded' }),
    doc('Agent', 'plain', { workload: 'spiffe://prod/agent/plain' }),
    doc('AgentPolicy', 'guarded-policy', { identity: { agent: 'guarded' }, guardrails: ['no-ssn-out', 'no-globex-out'], tools: [{ resource: 'salesforce.accounts', actions: ['search', 'read'] }, { resource: 'crm', actions: ['resources/read', 'prompts/get'] }] }),
    doc('AgentPolicy', 'plain-policy', { identity: { agent: 'plain' }, tools: [{ resource: 'salesforce.accounts', actions: ['search', 'read'] }, { resource: 'crm', actions: ['resources/read', 'prompts/get'] }] }),
    // crm's search_accounts description carries an SSN; mail's an email, and mail masks emails for every caller.
    stdioServerDoc('crm', { DESC_VARIANT: `Escalations: call the owner, SSN ${SSN}.` }),
    stdioServerDoc('mail', { DESC_VARIANT: 'Questions to ops@example.com.' }, '  guardrails: [mask-email-out]\n'),
  ), { AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  await serversReady(gw);
  client = (await connectClient(gw, gw.key('guarded'))).client;
  plain = (await connectClient(gw, gw.key('plain'))).client;
});

after(async () => {
  await client?.close();
  await plain?.close();
  await gw?.close();
});

const descriptions = (tools: Array<{ name: string; description?: string }>) => Object.fromEntries(tools.map((t) => [t.name, t.description ?? '']));

test('tools/list: a definition a blocking output guardrail refuses is withheld alone; a server guardrail redacts its definitions for every caller', async () => {
  const seen = descriptions((await client.listTools()).tools);
  assert.equal(seen.crm__search_accounts, undefined, 'the poisoned definition is not shown');
  assert.equal(seen.crm__read_account, 'Read one account by id.', 'the server\'s other tools still are');
  assert.equal(seen.mail__search_accounts, 'Search accounts by name. Questions to [EMAIL].');
  assert.ok(!JSON.stringify(seen).includes(SSN));
  // Without that guardrail in its policy, another caller sees the tool (the server's own guardrail still masks mail's).
  const other = descriptions((await plain.listTools()).tools);
  assert.match(other.crm__search_accounts, new RegExp(SSN));
  assert.equal(other.mail__search_accounts, 'Search accounts by name. Questions to [EMAIL].');
  // /mcp/<server> shows the same.
  const scoped = (await connectClient(gw, gw.key('guarded'), '/mcp/crm')).client;
  try {
    const names = (await scoped.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('read_account') && !names.includes('search_accounts'), names.join(', '));
  } finally { await scoped.close(); }
  // The block is on record, naming the guardrail and where.
  const events = await toolEvents(gw, { type: 'guardrail' });
  assert.ok(events.some((e) => { const g = (e as { guardrail?: { where: string; verdict: string; findings: Array<{ guardrail: string }> } }).guardrail;
    return g?.verdict === 'block' && g.where === 'tools/list crm' && g.findings.some((f) => f.guardrail === 'no-ssn-out'); }), JSON.stringify(events.slice(-3)));
});

test('MCP 2026-07-28 tools/list: the same listing', async () => {
  const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('guarded')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' } } } }) });
  const body = (await r.json()) as { result: { tools: Array<{ name: string; description: string }> } };
  const seen = descriptions(body.result.tools);
  assert.equal(seen.crm__search_accounts, undefined);
  assert.equal(seen.crm__read_account, 'Read one account by id.');
  assert.equal(seen.mail__search_accounts, 'Search accounts by name. Questions to [EMAIL].');
});

test('resources/list and prompts/list: an item a blocking output guardrail refuses is withheld, the others listed', async () => {
  assert.deepEqual((await client.listResources()).resources.map((r) => r.name), ['Acme Corp'], 'Globex is withheld');
  assert.deepEqual((await plain.listResources()).resources.map((r) => r.name), ['Acme Corp', 'Globex']);
  assert.deepEqual((await client.listPrompts()).prompts, []);
  assert.deepEqual((await plain.listPrompts()).prompts.map((p) => p.name), ['crm__summarize_account']);
});

test('tools/call of a tool the listing withholds is refused like a tool no server lists (same error, no upstream call); a caller without the guardrail calls it', async () => {
  const args = { query: 'acme' };
  // The caller may call search_accounts (policy): a name no server lists is then "unknown tool" (-32602).
  const withheld = await rpcError(client.callTool({ name: 'crm__search_accounts', arguments: args }));
  const unknown = { code: -32602, message: 'MCP error -32602: unknown tool "crm__search_accounts"; call tools/list for the tools you may call' };
  assert.equal(withheld.code, unknown.code);
  assert.equal(withheld.message, unknown.message, 'nothing tells a withheld tool from a missing one');
  assert.ok(!withheld.message.includes(SSN) && !JSON.stringify(withheld.data ?? null).includes('no-ssn-out'));
  const calls = (await toolEvents(gw, { type: 'tool.call' })).filter((e) => (e as { tool?: string }).tool === 'search_accounts' && (e as { identity?: { agent?: string } }).identity?.agent === 'guarded');
  assert.equal(calls.length, 0, 'never forwarded');
  // The same on /mcp/<server> and in the stateless 2026-07-28 generation.
  const scoped = (await connectClient(gw, gw.key('guarded'), '/mcp/crm')).client;
  try {
    const e = await rpcError(scoped.callTool({ name: 'search_accounts', arguments: args }));
    assert.equal(e.code, unknown.code);
  } finally { await scoped.close(); }
  const r = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('guarded')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'crm__search_accounts' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'crm__search_accounts', arguments: args, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' } } } }) });
  const body = await r.json() as { error?: { code: number } };
  assert.equal(body.error?.code, unknown.code, JSON.stringify(body));
  // A caller whose policy has no such guardrail calls it as usual; the redacting server guardrail does not withhold.
  const ok = await plain.callTool({ name: 'crm__search_accounts', arguments: args });
  assert.ok(!ok.isError, JSON.stringify(ok));
  const masked = await client.callTool({ name: 'mail__search_accounts', arguments: args });
  assert.ok(!masked.isError, JSON.stringify(masked));
});

test('every listing that withholds an item records it: a second tools/list, prompts/list and resources/list (verdicts cached, evidence not)', async () => {
  const blocks = async (where: string) => (await toolEvents(gw, { type: 'guardrail' })).filter((e) => {
    const g = (e as { guardrail?: { where: string; verdict: string } }).guardrail;
    return g?.verdict === 'block' && g.where === where;
  }).length;
  for (const [where, list] of [['tools/list crm', () => client.listTools()], ['prompts/list crm', () => client.listPrompts()], ['resources/list crm', () => client.listResources()]] as const) {
    await list();
    const before = await blocks(where);
    assert.ok(before >= 1, `${where}: the first listing's block is on record`);
    await list();
    const again = await connectClient(gw, gw.key('guarded'));
    try {
      await (where.startsWith('tools') ? again.client.listTools() : where.startsWith('prompts') ? again.client.listPrompts() : again.client.listResources());
    } finally { await again.client.close(); }
    assert.equal(await blocks(where), before + 2, `${where}: each later listing (this session's and a new one's) records the block it withholds`);
  }
});
