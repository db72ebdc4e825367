// An A2A call that fails at the callee (here: nothing listens at its URL) is answered 502
// upstream_error, recorded once as its a2a_call (outcome and delegation, under its request id), and
// gives back what it was admitted with: the caller's budget reservation and the deciding rule's
// call count (a call the callee never served spends neither).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway;
let key = '';

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

before(async () => {
  const port = await closedPort();
  gw = await startTestGateway(yaml(
    doc('Agent', 'gone', { workload: 'spiffe://test/agent/gone', a2a: { url: `http://127.0.0.1:${port}/a2a` } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    // Room for two calls' budget probes at once ($0.000001 each), and two counted calls a day.
    doc('AgentPolicy', 'tight', { identity: { agent: 'planner' }, models: { budget: { daily_usd: 0.0000025 } }, agents: [{ agent: 'gone', budget: { calls_per_day: 2 } }] }),
  ));
  key = gw.key('planner');
});

after(async () => {
  await gw?.close();
});

test('a call the callee never served is a 502, recorded once, and spends neither the caller\'s budget nor the rule\'s call count', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const r = await fetch(`${gw.url}/a2a/gone`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: i, method: 'SendMessage', params: { message: { messageId: `m${i}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], metadata: { skill: 'x' } } } }),
    });
    const body = await r.json() as { id: number; error: { code: number; message: string; data: { code: string } } };
    assert.equal(r.status, 502, `call ${i}: ${JSON.stringify(body)}`);
    assert.equal(body.id, i);
    assert.equal(body.error.data.code, 'upstream_error');
    assert.match(body.error.message, /^agent "gone" is unreachable: /);
    ids.push(r.headers.get('x-request-id')!);
  }
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const db = gw.g.rt.auditLog!.db;
  for (const id of ids) {
    const events = queryEvents(db, { requestId: id, limit: 10 });
    assert.deepEqual(events.map((e) => e.type), ['a2a_call'], `one event for ${id}`);
    const [call] = events as unknown as Array<{ outcome: { status: number; error: string }; a2a: { agent: string; skill: string; delegation: { hop: number } } }>;
    assert.equal(call.outcome.status, 502);
    assert.match(call.outcome.error, /is unreachable/);
    assert.deepEqual([call.a2a.agent, call.a2a.skill, call.a2a.delegation.hop], ['gone', 'x', 1]);
  }
});

test('a card the callee does not serve is a 502 naming it, and an a2a_call event (card) for the identified caller, not a refusal', async () => {
  const r = await fetch(`${gw.url}/a2a/gone/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${key}` } });
  const body = await r.json() as { error: { message: string } };
  assert.equal(r.status, 502, JSON.stringify(body));
  assert.match(body.error.message, /^agent "gone" did not serve its agent card: /);
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const events = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.headers.get('x-request-id')!, limit: 10 }) as unknown as Array<{ type: string; a2a: unknown; outcome: { status: number; error_class: string } }>;
  assert.deepEqual(events.map((e) => [e.type, e.a2a, e.outcome.status, e.outcome.error_class]), [['a2a_call', { agent: 'gone', card: true }, 502, 'server']]);
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  assert.ok(!/aam_a2a_refusals_total\{[^}]*code="upstream_error"/.test(metrics), 'not counted as a refusal');
});
