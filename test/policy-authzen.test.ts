import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent } from '../src/policy/compile.ts';
import { evaluateAuthZen, evaluateAuthZenBatch, lookupInConfig } from '../src/policy/authzen.ts';
import { runPolicyTests, explain, requestOf } from '../src/policy/test-runner.ts';

const SEED = readFileSync(new URL('./fixtures/policy-seed.yaml', import.meta.url), 'utf8');
const CASES = readFileSync(new URL('./fixtures/policy-cases.yaml', import.meta.url), 'utf8');
const EXTRA = `
---
apiVersion: access.envisionai.dev/v1
kind: AgentPolicy
metadata: { name: crm-prod }
spec:
  identity: { workload: 'spiffe://prod/**' }
  tools:
    - { resource: crm.deals, actions: [search], args: { limit: { max: 100 } }, when: 'identity.environment == "prod"' }
    - { resource: crm.deals, actions: [update], approval: required }
`;
const c = compilePolicies(parseConfigTexts([{ file: 'seed.yaml', text: SEED + EXTRA }]));
const lookup = lookupInConfig(c);
type Body = { decision: boolean; context: { reason: string; policy: string; rule: number; effect: string } };

test('AuthZEN: model decision by agent name and by SPIFFE ID', () => {
  const yes = evaluateAuthZen({ subject: { type: 'agent', id: 'finance-analyst' }, resource: { type: 'model', id: 'reasoning-high' }, action: { name: 'use' } }, lookup, c);
  assert.equal(yes.status, 200);
  const yb = yes.body as Body;
  assert.equal(yb.decision, true);
  assert.equal(yb.context.policy, 'finance-analyst-readonly');
  const no = evaluateAuthZen({ subject: { type: 'workload', id: 'spiffe://prod/agent/finance-analyst' }, resource: { type: 'model', id: 'gpt-4' }, action: { name: 'use' } }, lookup, c);
  assert.equal((no.body as Body).decision, false);
  assert.match((no.body as Body).context.reason, /no policy allows model "gpt-4"/);
});

test('AuthZEN: tool decision with args from context, explicit deny names the rule', () => {
  const ask = (action: string, args?: unknown, id = 'salesforce.accounts') => evaluateAuthZen(
    { subject: { type: 'agent', id: 'finance-analyst' }, resource: { type: 'tool', id }, action: { name: action }, context: args === undefined ? undefined : { args } }, lookup, c).body as Body;
  assert.equal(ask('read').decision, true);
  const exp = ask('export');
  assert.equal(exp.decision, false);
  assert.equal(exp.context.rule, 0);
  assert.match(exp.context.reason, /tools\[0\] denies action "export"/);
  assert.equal(ask('search', { limit: 50 }, 'crm.deals').decision, true);
  assert.equal(ask('search', { limit: 500 }, 'crm.deals').decision, false);
  const appr = ask('update', {}, 'crm.deals');
  assert.equal(appr.decision, false);
  assert.equal(appr.context.effect, 'approval_required');
});

test('AuthZEN: unknown SPIFFE subject uses properties; unknown name is a deny, not an error', () => {
  const adhoc = evaluateAuthZen({ subject: { type: 'workload', id: 'spiffe://prod/agent/new', properties: { environment: 'prod' } }, resource: { type: 'tool', id: 'crm.deals' }, action: { name: 'search' }, context: { args: { limit: 1 } } }, lookup, c);
  assert.equal((adhoc.body as Body).decision, true);
  const dev = evaluateAuthZen({ subject: { type: 'workload', id: 'spiffe://prod/agent/new', properties: { environment: 'dev' } }, resource: { type: 'tool', id: 'crm.deals' }, action: { name: 'search' } }, lookup, c);
  assert.equal((dev.body as Body).decision, false);
  const ghost = evaluateAuthZen({ subject: { type: 'agent', id: 'ghost' }, resource: { type: 'model', id: 'gpt-4' }, action: { name: 'use' } }, lookup, c);
  assert.equal(ghost.status, 200);
  assert.equal((ghost.body as Body).decision, false);
  assert.match((ghost.body as Body).context.reason, /unknown subject "ghost"/);
});

test('AuthZEN: bad input is a 400 naming the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /request body must be a JSON object/],
    [{ resource: { type: 'model', id: 'x' }, action: { name: 'use' } }, /subject must be a JSON object/],
    [{ subject: { type: 'agent' }, resource: { type: 'model', id: 'x' }, action: { name: 'a' } }, /subject.id must be a non-empty string/],
    [{ subject: { type: 'agent', id: 'finance-analyst' }, resource: { type: 'tool' }, action: { name: 'a' } }, /resource.id/],
    [{ subject: { type: 'agent', id: 'finance-analyst' }, resource: { type: 'tool', id: 'x' }, action: {} }, /action.name/],
    [{ subject: { type: 'agent', id: 'finance-analyst' }, resource: { type: 'tool', id: 'x' }, action: { name: 'a' }, context: { args: [1] } }, /context.args must be a JSON object/],
    [{ subject: { type: 'agent', id: 'ghost' }, resource: { type: 'tool', id: 'x' }, action: 'read' }, /action must be a JSON object/],
  ];
  for (const [body, re] of cases) {
    const r = evaluateAuthZen(body, lookup, c);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.match((r.body as { error: { message: string } }).error.message, re);
  }
});

test('AuthZEN batch: defaults, overrides and semantics', () => {
  const base = { subject: { type: 'agent', id: 'finance-analyst' }, action: { name: 'use' } };
  const r = evaluateAuthZenBatch({ ...base, evaluations: [
    { resource: { type: 'model', id: 'reasoning-high' } },
    { resource: { type: 'model', id: 'gpt-4' } },
    { resource: { type: 'tool', id: 'salesforce.accounts' }, action: { name: 'read' } },
  ] }, lookup, c);
  assert.equal(r.status, 200);
  assert.deepEqual((r.body as { evaluations: Body[] }).evaluations.map((e) => e.decision), [true, false, true]);
  const first = evaluateAuthZenBatch({ ...base, options: { evaluations_semantic: 'deny_on_first_deny' }, evaluations: [
    { resource: { type: 'model', id: 'gpt-4' } }, { resource: { type: 'model', id: 'reasoning-high' } },
  ] }, lookup, c);
  assert.equal((first.body as { evaluations: Body[] }).evaluations.length, 1);
  const bad = evaluateAuthZenBatch({ ...base, evaluations: [{ resource: { type: 'model' } }] }, lookup, c);
  assert.equal(bad.status, 400);
  assert.match((bad.body as { error: { message: string } }).error.message, /evaluations\[0\]: resource.id/);
});

test('policy test runner: all fixture cases pass', () => {
  const report = runPolicyTests(CASES, c, c.agents);
  assert.equal(report.failed, 0, report.lines.join('\n'));
  assert.equal(report.passed, 5);
  assert.match(report.lines[0], /^PASS analyst may use reasoning-high: allow \(policy "finance-analyst-readonly" models.allow\[0\]\)/);
  assert.equal(report.lines.at(-1), '5 passed, 0 failed');
});

test('policy test runner: mismatches and malformed cases fail with reasons', () => {
  const report = runPolicyTests(`
- { name: wrong effect, agent: finance-analyst, model: gpt-4, expect: allow }
- { name: wrong policy, agent: finance-analyst, model: reasoning-high, expect: allow, expect_policy: other }
- { name: no agent, agent: nobody, model: gpt-4, expect: deny }
- { name: no target, agent: finance-analyst, expect: deny }
- { name: bad expect, agent: finance-analyst, model: gpt-4, expect: maybe }
- { agent: finance-analyst, resource: salesforce.accounts, action: delete, expect: deny }
`, c, c.agents);
  assert.equal(report.failed, 5);
  assert.equal(report.passed, 1);
  assert.match(report.lines[0], /^FAIL wrong effect: expected allow, got deny \(default deny\): no policy allows model "gpt-4"/);
  assert.match(report.lines[1], /expected the decision from policy "other"/);
  assert.match(report.lines[2], /unknown agent "nobody"/);
  assert.match(report.lines[3], /needs model, or resource and action/);
  assert.match(report.lines[4], /expect must be allow, deny or approval_required/);
  assert.match(report.lines[5], /^PASS case 6: finance-analyst delete salesforce.accounts: deny/);
  assert.throws(() => runPolicyTests('a: [', c), /not valid YAML/);
  assert.throws(() => runPolicyTests('a: 1', c), /must be a YAML list/);
});

test('explain lists every rule that applies and the deciding one', () => {
  const fa = findAgent(c, 'finance-analyst');
  assert.ok(fa);
  const lines = explain({ kind: 'tool', agent: fa, resource: 'crm.deals', action: 'search', args: { limit: 500 } }, c);
  const text = lines.join('\n');
  assert.match(text, /identity: spiffe:\/\/prod\/agent\/finance-analyst \(agent "finance-analyst"\) \[team=finance/);
  assert.match(text, /policies that apply: finance-analyst-readonly \(workload spiffe:\/\/prod\/agent\/finance-analyst\); crm-prod/);
  assert.match(text, /policy "crm-prod" tools\[0\] \(resource crm.deals\): covers "search"; args fail: args.limit exceeds max 100; when `identity.environment == "prod"` is true/);
  assert.match(text, /policy "crm-prod" tools\[1\] \(resource crm.deals\): does not cover "search"/);
  assert.match(text, /decision: DENY by policy "crm-prod" tools\[0\]/);
  const m = explain(requestOf({ agent: 'finance-analyst', model: 'summarization' }, c), c).join('\n');
  assert.match(m, /policy "finance-analyst-readonly" models.allow\[1\]: allows/);
  assert.match(m, /policy "crm-prod": does not mention this model/);
  assert.match(m, /decision: ALLOW/);
});
