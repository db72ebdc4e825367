// The audit page's team and plane filters (GET /admin/v1/audit?team=&plane=) and an agent's last
// activity on every plane (GET /admin/v1/agents), against a gateway that serves a model call, an
// HTTP tool call and an A2A call. Fleet mode (PostgreSQL columns, migration 9) is in
// fleet-audit-filters.test.ts; the browser side in console-e2e.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import type { AuditEvent } from '../src/audit/event.ts';
import { planeOf } from '../src/audit/event.ts';

const TOKEN = 'audit-filters-admin-token-0123456789abcdef';
let gw: TestGateway;
let upstream: LocalServer;
const keys: Record<string, string> = {};

before(async () => {
  upstream = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
  gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('HttpTool', 'notes', { baseUrl: upstream.url, resource: 'notes', actions: { read: { method: 'GET', path: '/notes/{id}' } } }),
    doc('Agent', 'ana', { workload: 'spiffe://test/agent/ana', team: 'finance' }),
    doc('Agent', 'bob', { workload: 'spiffe://test/agent/bob', team: 'ops' }),
    doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', team: 'ops', a2a: { url: 'https://helper.example/a2a' } }),
    doc('AgentPolicy', 'all', { identity: { workload: 'spiffe://test/agent/*' }, models: { allow: ['m'] }, tools: [{ resource: 'notes', actions: ['read'] }] }),
  ), { AAM_ADMIN_TOKEN: TOKEN });
  for (const a of ['ana', 'bob']) keys[a] = gw.key(a);
  const as = (agent: string) => ({ authorization: `Bearer ${keys[agent]}`, 'content-type': 'application/json' });
  const chat = (agent: string) => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: as(agent), body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal((await chat('ana')).status, 200);
  assert.equal((await chat('bob')).status, 200);
  assert.equal((await fetch(`${gw.url}/tools/notes/read`, { method: 'POST', headers: as('ana'), body: '{"id":"7"}' })).status, 200);
  // No agents: rule lets ana call helper: denied, and the denial is an A2A event of ana's.
  const a2a = await fetch(`${gw.url}/a2a/helper`, {
    method: 'POST', headers: { ...as('ana'), 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }),
  });
  assert.ok(a2a.status === 403 || ((await a2a.json()) as { error?: unknown }).error, 'the A2A call is refused');
});
after(async () => { await gw?.close(); await upstream?.close(); });

const audit = async (query: string): Promise<AuditEvent[]> => {
  const r = await fetch(`${gw.url}/admin/v1/audit?${query}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { data: AuditEvent[] }).data;
};
const agentOf = (e: AuditEvent) => e.identity?.agent ?? (e as { agent?: string }).agent;

test('planeOf: a decision is in the plane of what it decided on; other events by their type', () => {
  assert.equal(planeOf({ type: 'decision', model: { route: 'm' } }), 'model');
  assert.equal(planeOf({ type: 'decision', a2a: { agent: 'x' } }), 'a2a');
  assert.equal(planeOf({ type: 'decision', tool: { resource: 'r', action: 'a' } }), 'tool');
  assert.equal(planeOf({ type: 'tool.outcome' }), 'tool');
  assert.equal(planeOf({ type: 'a2a_call' }), 'a2a');
  assert.equal(planeOf({ type: 'model_call' }), 'model');
  assert.equal(planeOf({ type: 'admin' }), 'admin');
  assert.equal(planeOf({ type: 'guardrail' }), null);
});

test('GET /admin/v1/audit?plane=: only that plane\'s events, decisions included by what they decided on', async () => {
  const tool = await audit('plane=tool');
  assert.ok(tool.length >= 2, 'decision and outcome of the tool call');
  assert.ok(tool.every((e) => e.type.startsWith('tool') && agentOf(e) === 'ana'), JSON.stringify(tool.map((e) => e.type)));
  const a2a = await audit('plane=a2a');
  assert.ok(a2a.length >= 1);
  assert.ok(a2a.every((e) => planeOf(e) === 'a2a' && agentOf(e) === 'ana'), JSON.stringify(a2a));
  const model = await audit('plane=model');
  assert.deepEqual(model.map((e) => e.type).sort(), ['model_call', 'model_call']);
  assert.ok((await audit('plane=admin')).every((e) => e.type === 'admin'));
  const bad = await fetch(`${gw.url}/admin/v1/audit?plane=email`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /plane \\?"email\\?" is not one of model, tool, a2a, admin/);
  // A limit that is not a number was read as 100; one over the bound as the bound: both are named now.
  for (const limit of ['abc', '0', '20000']) {
    const r = await fetch(`${gw.url}/admin/v1/audit?limit=${limit}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.status, 400, limit);
    assert.match(await r.text(), new RegExp(`limit \\\\?"${limit}\\\\?" is not a whole number from 1 to 10000`));
  }
  assert.equal((await audit('limit=1&plane=admin')).length, 1);
  // since= takes a duration ago as the usage API does.
  assert.ok((await audit('since=1h&plane=model')).length >= 2);
});

test('GET /admin/v1/audit?team=: the events of that team\'s agents, with the other filters', async () => {
  const finance = await audit('team=finance');
  assert.ok(finance.length >= 4);
  assert.deepEqual([...new Set(finance.map(agentOf))], ['ana']);
  assert.deepEqual((await audit('team=ops')).map(agentOf), ['bob'], 'bob\'s model call; helper did nothing');
  assert.deepEqual((await audit('team=finance&plane=model')).map((e) => e.type), ['model_call']);
  assert.deepEqual((await audit('team=ops&plane=tool')), []);
  assert.deepEqual(await audit('team=nobody'), [], 'a team with no agents has no events');
});

test('GET /admin/v1/agents: last activity per plane (model, tool, A2A) and overall, not only model calls', async () => {
  const r = await fetch(`${gw.url}/admin/v1/agents`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const rows = ((await r.json()) as { data: Array<{ name: string; identity_methods: Record<string, string>; last_activity: Record<string, string | null> }> }).data;
  const by = (n: string) => rows.find((a) => a.name === n)!;
  const ana = by('ana').last_activity;
  for (const p of ['model', 'tool', 'a2a']) assert.ok(ana[p] && Date.parse(ana[p]!) > 0, `ana's ${p} activity`);
  assert.equal(ana.at, [ana.model, ana.tool, ana.a2a].sort().at(-1), 'overall = the newest plane');
  assert.equal(by('bob').last_activity.tool, null);
  assert.ok(by('bob').last_activity.model);
  assert.deepEqual(by('helper').last_activity, { at: null, model: null, tool: null, a2a: null });
  assert.deepEqual(Object.keys(by('ana').identity_methods), ['virtual_key'], 'planes are not identity methods');
});
