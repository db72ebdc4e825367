// agents: rules (A2A) without a server: load-time checks, and the decision semantics shared with
// tool rules (deny wins, default deny, when fails closed), explained with policy and rule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies, findAgent, setFor, type CompiledPolicies } from '../src/policy/compile.ts';
import { decide, MEMO_AGENT_CALLS } from '../src/policy/decide.ts';
import { cardRefusal, maxDelegationDepth } from '../src/policy/agents.ts';
import { evaluateAuthZen, lookupInConfig } from '../src/policy/authzen.ts';
import { runPolicyTests, explain, requestOf } from '../src/policy/test-runner.ts';

const doc = (kind: string, name: string, spec: unknown) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;

const BASE = [
  doc('Credential', 'scorer-token', { env: 'A2A_POLICY_TEST_TOKEN' }),
  doc('Agent', 'planner', { workload: 'spiffe://prod/agent/planner', team: 'risk' }),
  doc('Agent', 'risk-scorer', { workload: 'spiffe://prod/agent/risk-scorer', a2a: { url: 'https://scorer.example/a2a', credential: 'scorer-token' } }),
  doc('Agent', 'reporter', { workload: 'spiffe://prod/agent/reporter', a2a: { url: 'https://reporter.example/a2a' } }),
];

function compile(...policies: string[]): CompiledPolicies {
  return compilePolicies(parseConfigTexts([{ file: 'a2a.yaml', text: [...BASE, ...policies].join('---\n') }]), 'v-test');
}

function loadErrors(...docs: string[]): string {
  try { compile(...docs); } catch (e) { if (e instanceof ConfigError) return e.message; throw e; }
  return '';
}

const call = (c: CompiledPolicies, callee: string, skill: string, context: Record<string, unknown> = {}) =>
  decide({ kind: 'agent', agent: findAgent(c, 'planner')!, callee, skill, context }, c);

test('an agents rule allows the listed skills only; a rule without skills allows any', () => {
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', skills: ['score'] }, { agent: 'reporter' }] }));
  const ok = call(c, 'risk-scorer', 'score');
  assert.equal(ok.effect, 'allow');
  assert.equal(ok.rulePath, 'agents[0]');
  assert.match(ok.reason, /policy "p" agents\[0\] allows skill "score" of agent "risk-scorer"/);
  const other = call(c, 'risk-scorer', 'export');
  assert.equal(other.effect, 'deny');
  assert.match(other.reason, /only skills score of agent "risk-scorer", not "export"/);
  assert.equal(call(c, 'risk-scorer', '').effect, 'deny', 'a message naming no skill is not one of the listed skills');
  assert.equal(call(c, 'reporter', 'anything').effect, 'allow');
  assert.equal(call(c, 'reporter', '').effect, 'allow');
});

test('deny wins over any allow, in any policy; "*" denies the agent and hides its card', () => {
  const c = compile(
    doc('AgentPolicy', 'allow-all', { identity: { agent: 'planner' }, agents: [{ agent: '*' }] }),
    doc('AgentPolicy', 'no-export', { identity: { team: 'risk' }, agents: [{ agent: 'risk-scorer', deny: ['export'] }, { agent: 'reporter', deny: ['*'] }] }),
  );
  assert.equal(call(c, 'risk-scorer', 'score').effect, 'allow');
  const d = call(c, 'risk-scorer', 'export');
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /policy "no-export" agents\[0\] denies skill "export"/);
  assert.equal(call(c, 'reporter', 'x').effect, 'deny');
  const set = setFor(findAgent(c, 'planner')!, c);
  assert.equal(cardRefusal(set, 'risk-scorer') === null, true);
  assert.equal(cardRefusal(set, 'reporter') === null, false);
});

test('default deny names the caller and how to allow; when is CEL over the call and fails closed', () => {
  const none = compile(doc('AgentPolicy', 'models-only', { identity: { agent: 'planner' }, models: { allow: [] } }));
  assert.match(call(none, 'risk-scorer', 'score').reason, /no policy has an agents rule allowing spiffe:\/\/prod\/agent\/planner \(agent "planner"\) to call skill "score" of agent "risk-scorer"/);
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', when: 'context.hop <= 1 && identity.team == "risk" && action == "score"' }] }));
  assert.equal(call(c, 'risk-scorer', 'score', { hop: 1 }).effect, 'allow');
  const far = call(c, 'risk-scorer', 'score', { hop: 2 });
  assert.equal(far.effect, 'deny');
  assert.match(far.reason, /only when `context.hop <= 1/);
  assert.equal(call(c, 'risk-scorer', 'score', {}).effect, 'deny', 'a missing field is an evaluation error: denied');
});

test('max_delegation_depth: default 4, the smallest of the caller\'s policies', () => {
  const c = compile(
    doc('AgentPolicy', 'a', { identity: { agent: 'planner' }, agents: [{ agent: 'reporter' }], max_delegation_depth: 3 }),
    doc('AgentPolicy', 'b', { identity: { team: 'risk' }, max_delegation_depth: 2 }),
  );
  assert.equal(maxDelegationDepth(setFor(findAgent(c, 'planner')!, c)), 2);
  assert.equal(maxDelegationDepth(setFor(findAgent(c, 'risk-scorer')!, c)), 4);
});

test('load errors: unknown callee, a callee without spec.a2a, a dangling credential, bad CEL, a skill both allowed and denied', () => {
  const msg = loadErrors(
    doc('Agent', 'broken', { workload: 'spiffe://prod/agent/broken', a2a: { url: 'https://b.example', credential: 'nope' } }),
    doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'ghost' }, { agent: 'planner' }] }),
  );
  assert.match(msg, /spec\.agents\[0\]\.agent.*unknown Agent "ghost"/);
  assert.match(msg, /spec\.agents\[1\]\.agent.*Agent "planner" publishes no A2A endpoint; add spec\.a2a/);
  assert.match(msg, /spec\.a2a\.credential.*unknown Credential "nope"/);
  const cel = loadErrors(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'reporter', when: 'identty.team == "x"' }, { agent: 'risk-scorer', skills: ['a'], deny: ['a'] }] }));
  assert.match(cel, /spec\.agents\[0\]\.when/);
  assert.match(cel, /skill "a" is both in skills and deny/);
  assert.match(loadErrors(doc('Agent', 'x', { workload: 'spiffe://prod/agent/x', a2a: { url: 'ftp://x.example' } })), /spec\.a2a\.url/);
});

test('AuthZEN: resource.type "agent" asks the same decision (callee and skill)', () => {
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', skills: ['score'] }] }));
  const ask = (skill: string) => evaluateAuthZen({ subject: { type: 'agent', id: 'planner' }, resource: { type: 'agent', id: 'risk-scorer' }, action: { name: skill } }, lookupInConfig(c), c);
  const yes = ask('score').body as { decision: boolean; context: { rule_path: string } };
  assert.equal(yes.decision, true);
  assert.equal(yes.context.rule_path, 'agents[0]');
  assert.equal((ask('export').body as { decision: boolean }).decision, false);
});

test('aam policy test and explain take A2A cases: callee and skill', () => {
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', skills: ['score'], deny: ['export'] }] }));
  const report = runPolicyTests('- { agent: planner, callee: risk-scorer, skill: score, expect: allow }\n- { agent: planner, callee: risk-scorer, skill: export, expect: deny }\n', c);
  assert.equal(report.failed, 0, report.lines.join('\n'));
  const text = explain(requestOf({ agent: 'planner', callee: 'risk-scorer', skill: 'export' }, c), c).join('\n');
  assert.match(text, /call skill "export" of agent "risk-scorer"/);
  assert.match(text, /policy "p" agents\[0\] \(agent risk-scorer\): skills score; deny export/);
});

test('a decision no `when` took part in is made once per (callee, skill) and set, bounded; one a `when` decided is made per call', () => {
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [
    { agent: 'risk-scorer', skills: ['score'] },
    { agent: 'reporter', when: 'context.method == "SendMessage"' },
  ] }));
  // Memoized: the same frozen decision, allow and deny alike.
  const first = call(c, 'risk-scorer', 'score');
  assert.equal(call(c, 'risk-scorer', 'score'), first);
  assert.equal(first.effect, 'allow');
  const miss = call(c, 'risk-scorer', 'export');
  assert.equal(call(c, 'risk-scorer', 'export'), miss);
  assert.equal(miss.effect, 'deny');
  assert.notEqual(call(c, 'risk-scorer', 'score'), miss);
  // A `when` over the call's context: decided again for each call (never a memo of another call's context).
  const send = call(c, 'reporter', 'x', { method: 'SendMessage' });
  assert.equal(send.effect, 'allow');
  const get = call(c, 'reporter', 'x', { method: 'GetTask' });
  assert.equal(get.effect, 'deny');
  assert.match(get.reason, /only when `context.method == "SendMessage"`, which is false for this call/);
  assert.equal(call(c, 'reporter', 'x', { method: 'SendMessage' }).effect, 'allow');
  assert.notEqual(call(c, 'reporter', 'x', { method: 'SendMessage' }), send);
  // Skills are the caller's text: past the bound, decisions are made per call and not kept.
  for (let i = 0; i < MEMO_AGENT_CALLS + 10; i++) call(c, 'risk-scorer', `s${i}`);
  const late = call(c, 'risk-scorer', `s${MEMO_AGENT_CALLS + 5}`);
  assert.equal(late.effect, 'deny');
  assert.notEqual(call(c, 'risk-scorer', `s${MEMO_AGENT_CALLS + 5}`), late);
  assert.equal(setFor(findAgent(c, 'planner')!, c).agentMemo.size, MEMO_AGENT_CALLS);
  // Another config (a reload) decides with its own sets.
  const c2 = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', deny: ['score'] }] }));
  assert.equal(call(c2, 'risk-scorer', 'score').effect, 'deny');
  assert.equal(call(c, 'risk-scorer', 'score'), first);
});

test('a call\'s context is read only where a `when` is evaluated (a memo hit or a rule without one never builds it)', () => {
  const c = compile(doc('AgentPolicy', 'p', { identity: { agent: 'planner' }, agents: [
    { agent: 'risk-scorer', skills: ['score'] },
    { agent: 'reporter', when: 'context.hop <= 1' },
  ] }));
  let reads = 0;
  // The gateway's request builds its context in a getter (HopCall): each read is one object made.
  const req = (callee: string, skill: string) => ({ kind: 'agent' as const, agent: findAgent(c, 'planner')!, callee, skill, get context() { reads++; return { hop: 1 }; } });
  assert.equal(decide(req('risk-scorer', 'score'), c).effect, 'allow');
  assert.equal(decide(req('risk-scorer', 'score'), c).effect, 'allow');
  assert.equal(decide(req('risk-scorer', 'export'), c).effect, 'deny');
  assert.equal(reads, 0, 'no `when` was evaluated, so no context was made');
  assert.equal(decide(req('reporter', 'x'), c).effect, 'allow');
  assert.equal(reads, 1, 'the `when` read it once');
});
