// Per-rule limits on agents: rules (rate: { rpm }, budget: { calls_per_day }) through the same
// Limiter as tools[].rate/budget: refused with 429 before the callee is called, on both A2A
// bindings, each rule with its own bucket; a call the rule never allowed does not count.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';

let gw: TestGateway;
let agents: TestAgents;
const keys: Record<string, string> = {};

before(async () => {
  const aamUrl = () => gw.url;
  agents = await startTestAgents([
    { name: 'helper', skills: ['help'], aamUrl, key: () => keys.helper },
    { name: 'risk-scorer', skills: ['score', 'export'], aamUrl, key: () => keys['risk-scorer'] },
  ]);
  const agent = (name: string) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, a2a: { url: `${agents.base}/${name}` } });
  gw = await startTestGateway(yaml(
    agent('helper'), agent('risk-scorer'),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('AgentPolicy', 'limited', { identity: { agent: 'planner' }, agents: [
      { agent: 'helper', rate: { rpm: 2 } },
      { agent: 'risk-scorer', skills: ['score'], budget: { calls_per_day: 2 } },
    ] }),
  ));
  keys.planner = gw.key('planner');
});

after(async () => {
  await gw?.close();
  await agents?.close();
});

const msg = (text: string, skill?: string) => ({ message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }], ...(skill ? { metadata: { skill } } : {}) } });

async function jsonRpc(agent: string, text: string, skill?: string) {
  const r = await fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.planner}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: msg(text, skill) }),
  });
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() as { error?: { code: number; message: string; data: { code: string } } } };
}

async function rest(agent: string, text: string, skill?: string) {
  const r = await fetch(`${gw.url}/a2a/${agent}/message:send`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.planner}` }, body: JSON.stringify(msg(text, skill)),
  });
  return { status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() as { error?: { status: string; message: string; details: Array<{ reason: string }> } } };
}

test('agents[].rate: the third call in a minute is 429 rate_limited (-32029) naming the rule, and never reaches the callee', async () => {
  let n = 0;
  const count = () => { if (agents.received.has('helper')) { n++; agents.received.delete('helper'); } };
  assert.equal((await jsonRpc('helper', 'one')).status, 200); count();
  assert.equal((await rest('helper', 'two')).status, 200); count();
  const third = await jsonRpc('helper', 'three');
  count();
  assert.equal(third.status, 429);
  assert.equal(third.body.error?.code, -32029);
  assert.equal(third.body.error?.data.code, 'rate_limited');
  assert.match(third.body.error!.message, /rate limit exceeded: rpm limit of 2 .*policy limited agents\[0\]/);
  assert.ok(Number(third.retryAfter) >= 1);
  assert.equal(n, 2, 'the refused call was not forwarded');
  // Another rule's bucket is untouched.
  assert.equal((await jsonRpc('risk-scorer', 'fine', 'score')).status, 200);
});

test('agents[].budget: calls per day are counted per rule on both bindings; a denied skill does not spend it', async () => {
  // One call was made by the previous test; one more is allowed, denied skills spend nothing.
  assert.equal((await rest('risk-scorer', 'nope', 'export')).status, 403);
  assert.equal((await rest('risk-scorer', 'two', 'score')).status, 200);
  agents.received.delete('risk-scorer');
  const over = await rest('risk-scorer', 'three', 'score');
  assert.equal(over.status, 429);
  assert.equal(over.body.error?.status, 'RESOURCE_EXHAUSTED');
  assert.equal(over.body.error?.details[0].reason, 'BUDGET_EXCEEDED');
  assert.match(over.body.error!.message, /A2A call budget exhausted: policy "limited" agents\[1\]\.budget allows 2 calls per day for agent:spiffe:\/\/test\/agent\/planner, and 2 were made; it will reset at /);
  assert.ok(Number(over.retryAfter) >= 1);
  assert.equal(agents.received.get('risk-scorer'), undefined, 'the callee never saw it');
  const rpc = await jsonRpc('risk-scorer', 'four', 'score');
  assert.equal(rpc.status, 429);
  assert.equal(rpc.body.error?.data.code, 'budget_exceeded');
});

test('agents[].budget needs a period, and a rule that denies the agent outright cannot carry limits', () => {
  const load = (rule: Record<string, unknown>) => {
    try {
      compilePolicies(parseConfigTexts([{ file: 'x.yaml', text: yaml(doc('Agent', 'a', { workload: 'spiffe://t/a' }), doc('Agent', 'b', { workload: 'spiffe://t/b', a2a: { url: 'http://b.example' } }), doc('AgentPolicy', 'p', { identity: { agent: 'a' }, agents: [rule] })) }]), 'v');
    } catch (e) { if (e instanceof ConfigError) return e.message; throw e; }
    return '';
  };
  assert.match(load({ agent: 'b', budget: {} }), /agents\[0\]\.budget.*calls_per_day, calls_per_month or both/);
  assert.match(load({ agent: 'b', deny: ['*'], rate: { rpm: 1 } }), /agents\[0\].*denies the agent outright/);
  assert.match(load({ agent: 'b', rate: { rpm: 0 } }), /rpm/);
  assert.equal(load({ agent: 'b', rate: { rpm: 3 }, budget: { calls_per_month: 10 } }), '');
});
