// A2A on /metrics, after real A2A calls through aam to real @a2a-js/sdk agents: calls by caller,
// callee, skill and outcome with their latency, streams' time to first event, a callee that
// fails, and calls refused before the callee (policy, a bad request). A skill is the caller's
// text: past A2A_SKILLS_PER_CALLEE per caller and callee they are counted as "other".
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { parseProm, sumOf, type Sample } from './helpers/prom.ts';
import { freePort } from './helpers/e2e.ts';
import { A2A_SKILLS_PER_CALLEE } from '../src/observability/metrics.ts';

let gw: TestGateway;
let agents: TestAgents;
let key = '';

before(async () => {
  const aamUrl = () => gw.url;
  agents = await startTestAgents([
    { name: 'scorer', skills: ['score', 'export'], aamUrl, key: () => key },
    { name: 'helper', skills: ['help'], aamUrl, key: () => key },
  ]);
  const port = await freePort(); // nothing listens there: a callee that is unreachable
  gw = await startTestGateway(yaml(
    doc('Agent', 'scorer', { workload: 'spiffe://test/agent/scorer', a2a: { url: `${agents.base}/scorer` } }),
    doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', a2a: { url: `${agents.base}/helper` } }),
    doc('Agent', 'gone', { workload: 'spiffe://test/agent/gone', a2a: { url: `http://127.0.0.1:${port}/a2a` } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'scorer', skills: ['score'] }, { agent: 'helper' }, { agent: 'gone' }] }),
  ));
  key = gw.key('planner');
});

after(async () => {
  await gw?.close();
  await agents?.close();
});

function rpc(agent: string, method: string, text: string, skill: string, body?: string): Promise<Response> {
  return fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: body ?? JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }], metadata: { skill } } } }),
  });
}

async function scrape(): Promise<Sample[]> { return parseProm(await (await fetch(`${gw.url}/metrics`)).text()); }

test('A2A calls, their latency, streams\' first events, callee failures and refusals are on /metrics', async () => {
  assert.equal((await rpc('scorer', 'SendMessage', 'hello', 'score')).status, 200);
  const streamed = await rpc('scorer', 'SendStreamingMessage', 'stream please', 'score');
  assert.equal(streamed.status, 200);
  assert.match(await streamed.text(), /completed|TASK_STATE_COMPLETED|"state"/);
  assert.equal((await rpc('scorer', 'SendMessage', 'hello', 'export')).status, 403, 'a skill the rule does not name');
  assert.equal((await rpc('gone', 'SendMessage', 'hello', 'x')).status, 502);
  assert.equal((await rpc('helper', 'SendMessage', '', '', '{"jsonrpc":"2.0","id":1,"method":"NoSuchMethod","params":{}}')).status, 200, 'a JSON-RPC error');

  const s = await scrape();
  const sum = (name: string, match: Record<string, string>) => sumOf(s, name, match);
  assert.equal(sum('aam_a2a_requests_total', { agent: 'planner', callee: 'scorer', skill: 'score', outcome: 'ok' }), 2, 'the call and the stream');
  assert.equal(sum('aam_a2a_requests_total', { agent: 'planner', callee: 'gone', skill: 'x', outcome: 'error' }), 1);
  assert.equal(sum('aam_a2a_requests_total', { callee: 'helper' }), 0, 'a refused call never reached its callee');
  assert.equal(sum('aam_a2a_request_duration_seconds_count', { agent: 'planner', callee: 'scorer', outcome: 'ok' }), 2);
  assert.ok(sum('aam_a2a_request_duration_seconds_sum', { agent: 'planner', callee: 'scorer', outcome: 'ok' }) > 0);
  assert.equal(sum('aam_a2a_time_to_first_event_seconds_count', { callee: 'scorer' }), 1, 'the stream only');
  assert.ok(sum('aam_a2a_time_to_first_event_seconds_sum', { callee: 'scorer' }) > 0);
  assert.equal(sum('aam_a2a_callee_errors_total', { callee: 'gone', status: '502' }), 1);
  assert.equal(sum('aam_a2a_callee_errors_total', { callee: 'scorer' }), 0);
  assert.equal(sum('aam_a2a_refusals_total', { agent: 'planner', callee: 'scorer', code: 'policy_denied' }), 1);
  assert.equal(sum('aam_a2a_refusals_total', { agent: 'planner', callee: 'helper', code: 'method_not_found' }), 1);
});

test('skills past the cap per caller and callee are counted as "other": the label stays bounded', async () => {
  const n = A2A_SKILLS_PER_CALLEE + 8;
  for (let i = 0; i < n; i++) assert.equal((await rpc('helper', 'SendMessage', 'hi', `skill-${i}`)).status, 200);
  const rows = (await scrape()).filter((x) => x.name === 'aam_a2a_requests_total' && x.labels.callee === 'helper');
  const skills = new Set(rows.map((r) => r.labels.skill));
  assert.ok(skills.size <= A2A_SKILLS_PER_CALLEE + 1, `${skills.size} skill values`);
  assert.ok(skills.has('other'));
  assert.equal(rows.reduce((t, r) => t + r.value, 0), n, 'every call counted once');
});
