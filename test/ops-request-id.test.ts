// aam owns the request id evidence is keyed by. An agent's x-request-id is kept beside it
// (client_request_id, echoed as x-client-request-id) and can never make two requests share a trail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queryEvents } from '../src/audit/query.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { chat, auditOf, localServer } from './helpers/e2e.ts';
import { stdioServerDoc } from './fixtures/mcp-accounts/upstream.ts';

test('two requests sending the same x-request-id get distinct aam ids and separate evidence; the client id is kept beside it', async () => {
  const api = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Model', 'other', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('HttpTool', 'crm', { baseUrl: api.url, resource: 'crm', actions: { read: { method: 'GET', path: '/r' } } }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/*' }, models: { allow: ['one'] }, tools: [{ resource: 'crm', actions: ['read'] }] }),
  ));
  try {
    const headers = { 'x-request-id': 'collide-1' };
    const a = await chat(gw.url, gw.key('a'), 'one', 'from a', { headers });
    const b = await chat(gw.url, gw.key('b'), 'other', 'from b', { headers }); // denied: a decision event
    assert.equal(a.status, 200);
    assert.equal(b.status, 403);
    for (const r of [a, b]) {
      assert.match(r.requestId, /^req_[0-9a-f]{8}[0-9a-z]{8}$/, 'aam generates the id');
      assert.equal(r.headers.get('x-client-request-id'), 'collide-1', 'the client id is echoed separately');
    }
    assert.notEqual(a.requestId, b.requestId);
    const evA = await auditOf(gw, a.requestId);
    const evB = await auditOf(gw, b.requestId);
    assert.ok(evA.length > 0 && evB.length > 0);
    assert.ok(evA.every((e) => e.identity?.spiffe_id === 'spiffe://test/agent/a' && e.client_request_id === 'collide-1'), JSON.stringify(evA));
    assert.ok(evB.every((e) => e.identity?.spiffe_id === 'spiffe://test/agent/b' && e.client_request_id === 'collide-1'), JSON.stringify(evB));
    assert.equal(evB[0].type, 'decision');
    assert.deepEqual(await auditOf(gw, 'collide-1'), [], 'no evidence is keyed by an agent-chosen id');
    // The tool plane too: its id is aam's, whatever the agent sent.
    const t = await fetch(`${gw.url}/tools/crm/read`, { headers: { authorization: `Bearer ${gw.key('a')}`, 'x-request-id': 'collide-1' } });
    assert.equal(t.status, 200);
    assert.match(t.headers.get('x-aam-request-id') ?? '', /^req_/);
    await gw.g.rt.auditLog!.flush();
    assert.equal(queryEvents(gw.g.rt.auditLog!.db, { requestId: 'collide-1' }).length, 0);
  } finally { await gw.close(); await api.close(); }
});

test('an x-request-id that is not a sane token is neither kept nor echoed', async () => {
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }), doc('AgentPolicy', 'p', { identity: { agent: 'a' }, models: { allow: ['one'] } })));
  try {
    for (const bad of ['has space', 'x'.repeat(129), '<script>']) {
      const r = await chat(gw.url, gw.key('a'), 'one', 'hi', { headers: { 'x-request-id': bad } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('x-client-request-id'), null);
      assert.ok((await auditOf(gw, r.requestId)).every((e) => e.client_request_id === undefined));
    }
  } finally { await gw.close(); }
});

test('the tool planes answer with aam\'s x-request-id and key their evidence by it: an MCP session call and an HTTP tool whose upstream sends its own id', async () => {
  const api = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'upstream-9' }); res.end('{"ok":true}'); });
  const gw = await startTestGateway(yaml(
    doc('HttpTool', 'crm', { baseUrl: api.url, resource: 'crm', actions: { read: { method: 'GET', path: '/r' } } }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'a' }, tools: [{ resource: 'crm', actions: ['read'] }, { resource: 'salesforce.accounts', actions: ['search'] }, { resource: 'accounts', actions: ['resources/read'] }] }),
  ) + '---\n' + stdioServerDoc('accounts'));
  try {
    const headers = { authorization: `Bearer ${gw.key('a')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-request-id': 'collide-1' };
    const post = (body: unknown, more: Record<string, string> = {}) => fetch(`${gw.url}/mcp`, { method: 'POST', headers: { ...headers, ...more }, body: JSON.stringify(body) });
    const init = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    await init.text();
    const session = { 'mcp-session-id': init.headers.get('mcp-session-id') ?? '', 'mcp-protocol-version': '2025-11-25' };
    await (await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, session)).text();
    const call = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'accounts__search_accounts', arguments: { query: 'Acme' } } }, session);
    assert.match(await call.text(), /Acme Corp/);
    const mcpId = call.headers.get('x-request-id') ?? '';
    assert.match(mcpId, /^req_[0-9a-f]{8}[0-9a-z]{8}$/, 'an MCP answer carries aam\'s request id');
    const mcpEvents = await auditOf(gw, mcpId);
    assert.deepEqual(mcpEvents.map((e) => e.type), ['tool.decision', 'tool.outcome'], 'aam show ID finds the call');
    assert.ok(mcpEvents.every((e) => e.client_request_id === 'collide-1'), 'the client\'s id is kept beside aam\'s');
    // A resource read too (decided like a tool call, with its own evidence).
    const read = await post({ jsonrpc: '2.0', id: 3, method: 'resources/read', params: { uri: 'account://a1' } }, session);
    assert.match(await read.text(), /Acme/);
    const readId = read.headers.get('x-request-id') ?? '';
    const readEvents = await auditOf(gw, readId);
    assert.ok(readEvents.some((e) => e.type === 'tool.decision') && readEvents.every((e) => e.client_request_id === 'collide-1'), `resources/read under ${readId}: ${JSON.stringify(readEvents)}`);
    const t = await fetch(`${gw.url}/tools/crm/read`, { headers });
    assert.equal(t.status, 200);
    const toolId = t.headers.get('x-request-id') ?? '';
    assert.match(toolId, /^req_/, 'an HTTP tool answer carries aam\'s request id, not the upstream\'s');
    const toolEvents = await auditOf(gw, toolId);
    assert.ok(toolEvents.some((e) => e.type === 'tool.outcome'));
    assert.ok(toolEvents.every((e) => e.client_request_id === 'collide-1'), JSON.stringify(toolEvents));
    assert.deepEqual(await auditOf(gw, 'collide-1'), [], 'no evidence is keyed by an agent-chosen id');
  } finally { await gw.close(); await api.close(); }
});

test('a credential an upstream echoes is redacted and its credential_leak event is filed under the request that carried it', async () => {
  process.env.AAM_TEST_ECHOED_TOKEN = 'echoed-secret-5f1d9c3a7b2e4d60';
  const api = await localServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ got: req.headers.authorization })); });
  const gw = await startTestGateway(yaml(
    doc('Credential', 'crm-token', { env: 'AAM_TEST_ECHOED_TOKEN' }),
    doc('HttpTool', 'crm', { baseUrl: api.url, credential: 'crm-token', resource: 'crm', actions: { read: { method: 'GET', path: '/r' } } }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'a' }, tools: [{ resource: 'crm', actions: ['read'] }] }),
  ));
  try {
    const t = await fetch(`${gw.url}/tools/crm/read`, { headers: { authorization: `Bearer ${gw.key('a')}` } });
    const text = await t.text();
    assert.equal(t.status, 200, text);
    assert.doesNotMatch(text, /echoed-secret/);
    assert.match(text, /REDACTED:crm-token/);
    const id = t.headers.get('x-request-id') ?? '';
    const leaks = (await auditOf(gw, id)).filter((e) => e.type === 'credential_leak');
    assert.equal(leaks.length, 1, `aam audit show ${id} lists the leak`);
    assert.deepEqual(leaks[0].credential, { names: ['crm-token'] });
  } finally { await gw.close(); await api.close(); delete process.env.AAM_TEST_ECHOED_TOKEN; }
});
