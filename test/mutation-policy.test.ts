// Policy decisions as the agent and the audit trail see them: the effect, the policy and rule it
// is attributed to, and the exact reason (the 403 message and the evidence). Written for the
// mutants `npm run mutate -- policy` found alive in src/policy/decide.ts: wildcard denies,
// approval winning whatever the rule order, tools/list hiding what a call would deny, default
// denies naming no rule, and conditions on time when the caller gives none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent, setFor, type CompiledPolicies } from '../src/policy/compile.ts';
import { decide, toolVisible } from '../src/policy/decide.ts';
import { cardRefusal, decidingAgentRule, maxDelegationDepth } from '../src/policy/agents.ts';
import { explain, requestOf } from '../src/policy/test-runner.ts';
import type { AgentRecord } from '../src/identity/types.ts';
import type { Decision } from '../src/policy/types.ts';

const HEAD = (kind: string, name: string) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\n`;
const BASE = [
  `${HEAD('Provider', 'demo')}spec: { type: demo }`,
  ...['alpha', 'beta', 'gamma'].map((m) => `${HEAD('Model', m)}spec: { targets: [ { provider: demo, model: d } ] }`),
  `${HEAD('Agent', 'ann')}spec: { workload: spiffe://prod/agent/ann, team: finance, environment: prod }`,
  `${HEAD('Agent', 'bob')}spec: { workload: spiffe://prod/agent/bob, team: sales, environment: prod }`,
];
const ANN = 'spiffe://prod/agent/ann (agent "ann")';
const BOB = 'spiffe://prod/agent/bob (agent "bob")';

function compile(...policies: string[]): CompiledPolicies {
  return compilePolicies(parseConfigTexts([{ file: 't.yaml', text: [...BASE, ...policies].join('\n---\n') }]), 'v1');
}
const policy = (name: string, identity: string, body: string) => `${HEAD('AgentPolicy', name)}spec:\n  identity: ${identity}\n${body}`;
const who = (c: CompiledPolicies, name: string): AgentRecord => findAgent(c, name)!;
const model = (c: CompiledPolicies, a: string, m: string) => decide({ kind: 'model', agent: who(c, a), model: m }, c);
const tool = (c: CompiledPolicies, a: string, resource: string, action: string, args: Record<string, unknown> = {}, context?: Record<string, unknown>) =>
  decide({ kind: 'tool', agent: who(c, a), resource, action, args, context }, c);
const shape = (d: Decision) => ({ effect: d.effect, allowed: d.allowed, policy: d.policy, rule: d.rule, rulePath: d.rulePath, reason: d.reason });

test('models: a wildcard deny refuses every model, even one another policy allows, and says which rule', () => {
  const c = compile(
    policy('open', '{ team: finance }', '  models: { allow: [alpha, beta] }'),
    policy('freeze', '{ workload: spiffe://prod/agent/ann }', "  models: { deny: ['*'] }"),
  );
  assert.deepEqual(shape(model(c, 'ann', 'alpha')), {
    effect: 'deny', allowed: false, policy: 'freeze', rule: 0, rulePath: 'models.deny[0]',
    reason: 'policy "freeze" models.deny[0] denies model "alpha" for spiffe://prod/agent/ann (agent "ann")',
  });
  assert.equal(model(c, 'ann', 'gamma').effect, 'deny');
});

test('models: allow and default-deny decisions name the policy, rule and what is allowed', () => {
  const c = compile(
    policy('fin', '{ team: finance }', '  models: { allow: [gamma, alpha] }'),
    policy('fin-extra', '{ team: finance }', '  models: { allow: [beta] }'),
    policy('sales-none', '{ team: sales }', '  guardrails: []'),
  );
  assert.deepEqual(shape(model(c, 'ann', 'alpha')), {
    effect: 'allow', allowed: true, policy: 'fin', rule: 1, rulePath: 'models.allow[1]', reason: 'policy "fin" models.allow[1] allows model "alpha"',
  });
  assert.deepEqual(shape(model(c, 'ann', 'nope')), {
    effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '',
    reason: `no policy allows model "nope" for ${ANN} (policies: fin, fin-extra); allowed: alpha, beta, gamma`,
  });
  // A policy that applies but allows no model at all says so.
  assert.equal(model(c, 'bob', 'alpha').reason, `no policy allows model "alpha" for ${BOB} (policies: sales-none); allowed: none`);
  assert.equal(model(c, 'bob', 'alpha').rule, -1);
  const none = compile();
  assert.deepEqual(shape(model(none, 'ann', 'alpha')), {
    effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '',
    reason: `no AgentPolicy applies to ${ANN}, so model "alpha" is denied by default`,
  });
});

test('tools: approval wins over a plain allow whichever rule comes first', () => {
  for (const order of [['plain', 'approval'], ['approval', 'plain']]) {
    const rules = order.map((k) => (k === 'plain' ? '    - { resource: crm.deals, actions: [update, read] }' : '    - { resource: crm.deals, actions: [update], approval: required }'));
    const c = compile(policy('crm', '{ team: finance }', `  tools:\n${rules.join('\n')}`));
    const i = order.indexOf('approval');
    assert.deepEqual(shape(tool(c, 'ann', 'crm.deals', 'update')), {
      effect: 'approval_required', allowed: false, policy: 'crm', rule: i, rulePath: `tools[${i}]`,
      reason: `policy "crm" tools[${i}] allows action "update" on crm.deals only with approval`,
    }, `rules in order ${order.join(', ')}`);
    assert.equal(tool(c, 'ann', 'crm.deals', 'read').effect, 'allow');
  }
});

test('tools: every kind of deny and allow has its exact reason and rule', () => {
  const c = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.deals, actions: [read, search], deny: [export] }
    - { resource: crm.deals, actions: [update], when: 'identity.environment == "dev"' }
    - { resource: crm.notes, actions: [read], args: { id: { required: true, max: 10 } } }
    - { resource: crm.audit, deny: [read] }`));
  assert.deepEqual(shape(tool(c, 'ann', 'crm.deals', 'read')), {
    effect: 'allow', allowed: true, policy: 'crm', rule: 0, rulePath: 'tools[0]', reason: 'policy "crm" tools[0] allows action "read" on crm.deals',
  });
  assert.deepEqual(shape(tool(c, 'ann', 'crm.deals', 'export')), {
    effect: 'deny', allowed: false, policy: 'crm', rule: 0, rulePath: 'tools[0]', reason: 'policy "crm" tools[0] denies action "export" on crm.deals',
  });
  assert.deepEqual(shape(tool(c, 'ann', 'crm.deals', 'update')), {
    effect: 'deny', allowed: false, policy: 'crm', rule: 1, rulePath: 'tools[1]',
    reason: 'policy "crm" tools[1] allows action "update" on crm.deals only when `identity.environment == "dev"`, which is false for this request',
  });
  assert.deepEqual(shape(tool(c, 'ann', 'crm.notes', 'read', { id: 3 })), {
    effect: 'allow', allowed: true, policy: 'crm', rule: 2, rulePath: 'tools[2]', reason: 'policy "crm" tools[2] allows action "read" on crm.notes',
  });
  assert.deepEqual(shape(tool(c, 'ann', 'crm.notes', 'read', { id: 11 })), {
    effect: 'deny', allowed: false, policy: 'crm', rule: 2, rulePath: 'tools[2]',
    reason: 'policy "crm" tools[2] allows action "read" on crm.notes only within its args constraints: args.id exceeds max 10',
  });
  // Default denies name no rule (rule -1), and say what would be allowed.
  assert.deepEqual(shape(tool(c, 'ann', 'crm.deals', 'merge')), {
    effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '',
    reason: `no policy allows action "merge" on crm.deals for ${ANN}; allowed actions: read, search, update`,
  });
  assert.equal(tool(c, 'ann', 'crm.audit', 'write').reason, `no policy allows action "write" on crm.audit for ${ANN}; allowed actions: none`);
  assert.deepEqual(shape(tool(c, 'ann', 'github.repos', 'read')), {
    effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '',
    reason: `no policy has a tool rule for github.repos for ${ANN}, so action "read" on github.repos is denied by default`,
  });
  assert.deepEqual(shape(tool(c, 'bob', 'crm.deals', 'read')), {
    effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '',
    reason: `no AgentPolicy applies to ${BOB}, so action "read" on crm.deals is denied by default`,
  });
});

test('tools/list shows a tool exactly when some call of it could be allowed', () => {
  const c = compile(
    policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.deals, actions: [read, update] }
    - { resource: crm.deals, deny: [update] }
    - { resource: crm.notes, actions: [search] }
    - { resource: crm.notes, actions: [read] }
    - { resource: 'crm.*', actions: ['*'] }
    - { resource: crm.secret, deny: ['*'] }`),
  );
  const visible = (resource: string, action: string) => toolVisible(who(c, 'ann'), resource, action, c);
  assert.equal(visible('crm.deals', 'read'), true);
  assert.equal(visible('crm.deals', 'update'), false, 'an explicit deny of the action hides it, even after a rule that allows it');
  assert.equal(visible('crm.notes', 'read'), true, 'a later rule for the action makes it visible');
  assert.equal(visible('crm.notes', 'delete'), true, "'*' actions allow any action");
  assert.equal(visible('crm.secret', 'read'), false, 'deny * hides every action');
  assert.equal(visible('github.repos', 'read'), false);
  const narrow = compile(policy('crm', '{ team: finance }', '  tools:\n    - { resource: crm.notes, actions: [search] }'));
  assert.equal(toolVisible(who(narrow, 'ann'), 'crm.notes', 'read', narrow), false, 'a rule for another action does not show this one');
  assert.equal(toolVisible(who(narrow, 'ann'), 'crm.notes', 'search', narrow), true);
  // Whatever tools/list shows or hides, the call agrees when the rule does not depend on the call.
  for (const [r, a] of [['crm.deals', 'read'], ['crm.deals', 'update'], ['crm.secret', 'read'], ['crm.notes', 'read']]) {
    assert.equal(tool(c, 'ann', r, a).allowed, visible(r, a), `${r} ${a}`);
  }
});

test('time conditions read the time the caller gives (ISO text, epoch ms or Date), else the current time', () => {
  const c = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.deals, actions: [read], when: 'context.hour >= 9 && context.hour < 17 && context.weekday == 3' }
    - { resource: crm.clock, actions: [read], when: 'context.hour >= 0 && context.hour < 24 && context.time > timestamp("2020-01-01T00:00:00Z")' }`));
  const wed10 = Date.parse('2026-11-25T10:00:00Z');
  const wed20 = Date.parse('2026-11-25T20:00:00Z');
  for (const t of [wed10, new Date(wed10), new Date(wed10).toISOString()]) assert.equal(tool(c, 'ann', 'crm.deals', 'read', {}, { time: t }).effect, 'allow', String(t));
  for (const t of [wed20, new Date(wed20), new Date(wed20).toISOString()]) assert.equal(tool(c, 'ann', 'crm.deals', 'read', {}, { time: t }).effect, 'deny', String(t));
  assert.equal(tool(c, 'ann', 'crm.clock', 'read').effect, 'allow', 'no context: the current time is used');
  assert.equal(tool(c, 'ann', 'crm.clock', 'read', {}, { ip: '10.0.0.1' }).effect, 'allow', 'context without time: the current time is used');
});

test('when several rules match, the decision names the first one that decides it', () => {
  const c = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: 'crm.*', actions: [read] }
    - { resource: crm.deals, actions: [read, write] }
    - { resource: crm.deals, actions: [write], args: { id: { max: 10 } } }
    - { resource: crm.deals, actions: [write], args: { id: { max: 5 } } }`));
  assert.deepEqual([tool(c, 'ann', 'crm.deals', 'read').rule, tool(c, 'ann', 'crm.deals', 'read').rulePath], [0, 'tools[0]'], 'two plain allows: the first');
  const narrow = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.deals, actions: [write], args: { id: { max: 10 } } }
    - { resource: crm.deals, actions: [write], args: { id: { max: 5 } } }`));
  const d = tool(narrow, 'ann', 'crm.deals', 'write', { id: 20 });
  assert.deepEqual([d.effect, d.rule], ['deny', 0], 'every args constraint fails: the first rule is named');
  assert.match(d.reason, /tools\[0\] allows action "write" on crm.deals only within its args constraints: args.id exceeds max 10$/);
  assert.equal(tool(narrow, 'ann', 'crm.deals', 'write', { id: 7 }).rule, 0);
});

test('tools: argument constraints allow their bounds exactly and refuse with a reason naming the argument and the constraint', () => {
  const c = compile(policy('crm', '{ agent: ann }', `  tools:
    - resource: crm.deals
      actions: [read]
      args:
        n: { min: 1, max: 10 }
        low: { min: 5 }
        sort: { enum: [asc, desc] }
        code: { maxLength: 3 }
        id: { required: true }`));
  const ok = { id: 'x' };
  const why = (args: Record<string, unknown>): string => {
    const d = tool(c, 'ann', 'crm.deals', 'read', args);
    return d.allowed ? 'allowed' : d.reason.replace(/^.*?: /, '');
  };
  assert.equal(why(ok), 'allowed');
  // Bounds are inclusive.
  for (const args of [{ n: 1 }, { n: 10 }, { low: 5 }, { low: 1e9 }, { code: 'abc' }, { code: '' }, { sort: 'desc' }]) assert.equal(why({ ...ok, ...args }), 'allowed', JSON.stringify(args));
  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ n: 0 }, /args\.n is below min 1/],
    [{ n: 11 }, /args\.n exceeds max 10/],
    [{ low: 4 }, /args\.low is below min 5/],
    [{ n: '5' }, /args\.n must be a number/],
    [{ sort: 'random' }, /args\.sort is not one of "asc", "desc"/],
    [{ code: 'abcd' }, /args\.code is longer than maxLength 3/],
    [{ code: 123 }, /args\.code must be a string/],
    [{ id: null }, /args\.id is required/],
    [{ id: undefined }, /args\.id is required/],
  ];
  assert.match(tool(c, 'ann', 'crm.deals', 'read', {}).reason, /args\.id is required/);
  for (const [args, reason] of refused) {
    const d = tool(c, 'ann', 'crm.deals', 'read', { ...ok, ...args });
    assert.equal(d.allowed, false, JSON.stringify(args));
    assert.match(d.reason, reason);
  }
  // A constraint on an argument that is absent or null holds unless it is required.
  assert.equal(why({ ...ok, n: null, sort: null, code: null }), 'allowed');
  // min above max is a config error; equal bounds are one allowed value.
  assert.throws(() => compile(policy('bad', '{ agent: bob }', '  tools: [ { resource: crm.deals, actions: [read], args: { n: { min: 5, max: 1 } } } ]')), /spec\.tools\[0\]\.args\.n: min 5 is greater than max 1/);
  const one = compile(policy('one', '{ agent: bob }', '  tools: [ { resource: crm.deals, actions: [read], args: { n: { min: 5, max: 5 } } } ]'));
  assert.equal(tool(one, 'bob', 'crm.deals', 'read', { n: 5 }).allowed, true);
  assert.equal(tool(one, 'bob', 'crm.deals', 'read', { n: 6 }).allowed, false);
});

// Conditions (cel.ts), subjects (subject.ts) and A2A rules (agents.ts): written for the mutants
// `npm run mutate -- policy -- --mutate src/policy/cel.ts` (and subject.ts, agents.ts) found alive.

test('conditions: a mixed list loads; a dyn condition that is no boolean denies; an evaluation error is named in one line', () => {
  const c = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.mixed, actions: [read, write, '9'], when: 'action in ["read", 9]' }
    - { resource: crm.flag, actions: [read], when: 'args.flag' }
    - { resource: crm.owner, actions: [read], when: 'args.filter.owner == "me"' }`));
  assert.equal(tool(c, 'ann', 'crm.mixed', 'read').effect, 'allow');
  assert.equal(tool(c, 'ann', 'crm.mixed', 'write').effect, 'deny');
  assert.equal(tool(c, 'ann', 'crm.flag', 'read', { flag: 'yes' }).reason,
    'policy "crm" tools[1] condition `args.flag` could not be evaluated (returned string, not a boolean); denied because conditions fail closed');
  assert.equal(tool(c, 'ann', 'crm.flag', 'read', { flag: true }).effect, 'allow');
  assert.equal(tool(c, 'ann', 'crm.flag', 'read', { flag: false }).effect, 'deny');
  const err = tool(c, 'ann', 'crm.owner', 'read', {});
  assert.match(err.reason, /^policy "crm" tools\[2\] condition `args\.filter\.owner == "me"` could not be evaluated \([^\n)]+\); denied because conditions fail closed$/);
  assert.equal(err.reason, 'policy "crm" tools[2] condition `args.filter.owner == "me"` could not be evaluated (No such key: filter); denied because conditions fail closed');
  assert.throws(() => compile(policy('bad', '{ team: finance }', "  tools: [ { resource: x, actions: [read], when: 'identty.team == \"a\"' } ]")), (e: Error) => e.message.endsWith('spec.tools[0].when: CEL type error: Unknown variable: identty at column 1 in `identty.team == "a"`'));
  assert.throws(() => compile(policy('bad', '{ team: finance }', "  tools: [ { resource: x, actions: [read], when: 'size(resource)' } ]")), /CEL condition must return bool, this one returns int at column 1/);
});

test('tools/list: a condition on args or context lists the tool (the call decides); one on identity alone is evaluated', () => {
  const c = compile(policy('crm', '{ team: finance }', `  tools:
    - { resource: crm.args, actions: [read], when: 'args.limit < 10' }
    - { resource: crm.context, actions: [read], when: 'context.hour < 25' }
    - { resource: crm.sales, actions: [read], when: 'identity.team == "sales"' }
    - { resource: crm.finance, actions: [read], when: 'identity.team == "finance" && action == "read" && resource == "crm.finance"' }`));
  const visible = (r: string) => toolVisible(who(c, 'ann'), r, 'read', c);
  assert.deepEqual(['crm.args', 'crm.context', 'crm.sales', 'crm.finance'].map(visible), [true, true, false, true]);
  assert.equal(tool(c, 'ann', 'crm.args', 'read', { limit: 5 }).effect, 'allow');
  assert.equal(tool(c, 'ann', 'crm.context', 'read', {}, { time: Date.parse('2026-11-25T10:00:00Z') }).effect, 'allow');
});

test('explain names what each policy that applies selects on', () => {
  const c = compile(
    `${HEAD('Agent', 'full')}spec: { workload: spiffe://prod/agent/full, team: finance, environment: prod, owner: o@example.com, deployment: v2, labels: { tier: gold, zone: a } }`,
    policy('all', '{ workload: spiffe://prod/agent/full, team: finance, environment: prod, owner: o@example.com, deployment: v2, agent: full, labels: { tier: gold, zone: a } }', '  models: { allow: [alpha] }'),
    policy('glob', "{ workload: 'spiffe://prod/**' }", '  models: { allow: [beta] }'),
  );
  const lines = explain(requestOf({ agent: 'full', model: 'alpha' }, c), c);
  assert.ok(lines.includes('policies that apply: all (workload spiffe://prod/agent/full, team=finance, environment=prod, owner=o@example.com, deployment=v2, agent=full, labels.tier=gold, labels.zone=a); glob (workload spiffe://prod/**)'), lines.join('\n'));
  // Every selector must hold: one label of two, or a glob one segment short, is not enough.
  const half: AgentRecord = { ...who(c, 'full'), labels: { tier: 'gold' } };
  assert.equal(decide({ kind: 'model', agent: half, model: 'alpha' }, c).effect, 'deny');
  const other: AgentRecord = { name: '', spiffeId: 'spiffe://test/agent/full', trustDomain: 'test', labels: {} };
  assert.equal(decide({ kind: 'model', agent: other, model: 'beta' }, c).effect, 'deny');
});

const A2A = [
  `${HEAD('Agent', 'scorer')}spec: { workload: spiffe://prod/agent/scorer, a2a: { url: 'http://127.0.0.1:9/a2a' } }`,
  `${HEAD('Agent', 'writer')}spec: { workload: spiffe://prod/agent/writer, a2a: { url: 'http://127.0.0.1:9/a2a' } }`,
];
const call = (c: CompiledPolicies, a: string, callee: string, skill: string, context: Record<string, unknown> = {}) =>
  decide({ kind: 'agent', agent: who(c, a), callee, skill, context }, c);

test('A2A: each kind of refusal has its exact reason; a condition that is false beats a skill that is not listed', () => {
  const c = compile(...A2A, policy('a2a', '{ agent: ann }', `  agents:
    - { agent: scorer, skills: [] }
    - { agent: scorer, skills: [score], when: 'context.hop == 1' }
    - { agent: writer, skills: [draft], when: 'context.hop > 0' }`));
  assert.equal(call(c, 'ann', 'scorer', 'score', { hop: 2 }).reason, 'policy "a2a" agents[1] allows skill "score" of agent "scorer" only when `context.hop == 1`, which is false for this call');
  assert.equal(call(c, 'ann', 'scorer', 'other', { hop: 1 }).reason, 'policy "a2a" agents[0] allows only skills none of agent "scorer", not "other"');
  assert.equal(call(c, 'ann', 'scorer', '', { hop: 1 }).reason, 'policy "a2a" agents[0] allows only skills none of agent "scorer", not a message without message.metadata.skill');
  assert.equal(call(c, 'ann', 'writer', 'draft', {}).reason, 'policy "a2a" agents[2] condition `context.hop > 0` could not be evaluated (' + (call(c, 'ann', 'writer', 'draft', {}).reason.match(/evaluated \((.*)\); denied/)?.[1] ?? '?') + '); denied because conditions fail closed');
  assert.deepEqual([call(c, 'ann', 'writer', 'draft', { hop: 1 }).effect, call(c, 'ann', 'writer', 'draft', { hop: 1 }).rulePath], ['allow', 'agents[2]']);
  assert.equal(call(c, 'bob', 'scorer', 'score').reason, `no AgentPolicy applies to ${BOB}, so calling skill "score" of agent "scorer" is denied by default`);
  assert.equal(call(c, 'ann', 'ann', '').reason, `no policy has an agents rule allowing ${ANN} to call agent "ann" (no skill named in message.metadata.skill); add \`agents: [{ agent: ann }]\` to its AgentPolicy`);
  // Both default denies name no policy and no rule (the audit trail and AuthZEN show them so).
  const none = { effect: 'deny', allowed: false, policy: '', rule: -1, rulePath: '' };
  assert.deepEqual({ ...shape(call(c, 'bob', 'scorer', 'score')), reason: '' }, { ...none, reason: '' });
  assert.deepEqual({ ...shape(call(c, 'ann', 'ann', '')), reason: '' }, { ...none, reason: '' });
  // A skill not listed: the reason lists the rule's skills.
  const two = compile(...A2A, policy('two', '{ agent: ann }', '  agents: [ { agent: writer, skills: [draft, edit] } ]'));
  assert.equal(call(two, 'ann', 'writer', 'publish').reason, 'policy "two" agents[0] allows only skills draft, edit of agent "writer", not "publish"');
});

test('A2A: a rule\'s rate and budget go with the calls it allows; max_delegation_depth is the smallest set, above the default too', () => {
  const c = compile(...A2A,
    policy('a2a', '{ agent: ann }', `  max_delegation_depth: 9
  agents:
    - { agent: scorer, rate: { rpm: 3 }, budget: { calls_per_month: 7 } }
    - { agent: writer }`),
    policy('deep', '{ team: finance }', '  max_delegation_depth: 12'),
    policy('any', '{ agent: bob }', "  agents: [ { agent: '*', deny: [delete] } ]"));
  const set = setFor(who(c, 'ann'), c);
  const rule = decidingAgentRule(set, call(c, 'ann', 'scorer', 'x'))!;
  assert.deepEqual([rule.rate, rule.budget], [{ rpm: 3 }, { calls_per_month: 7 }]);
  assert.deepEqual([decidingAgentRule(set, call(c, 'ann', 'writer', 'x'))!.rate, decidingAgentRule(set, call(c, 'ann', 'writer', 'x'))!.budget], [null, null]);
  assert.equal(decidingAgentRule(set, call(c, 'ann', 'nobody', 'x')), undefined);
  assert.equal(decidingAgentRule(set, { policy: 'a2a', rule: -1 }), undefined);
  assert.equal(decidingAgentRule(set, { policy: 'other', rule: 0 }), undefined);
  assert.equal(maxDelegationDepth(set), 9);
  assert.equal(maxDelegationDepth(setFor(who(c, 'bob'), c)), 4);
  const bob = setFor(who(c, 'bob'), c);
  assert.deepEqual([cardRefusal(bob, 'scorer') === null, call(c, 'bob', 'scorer', 'score').effect, call(c, 'bob', 'scorer', 'delete').effect], [true, 'allow', 'deny']);
  assert.equal(cardRefusal(set, 'ann') === null, false);
  assert.throws(() => compile(...A2A, policy('bad', '{ agent: ann }', `  agents:
    - { agent: scorer, deny: ['*'], rate: { rpm: 1 } }
    - { agent: writer, deny: ['*'], budget: { calls_per_day: 1 } }
    - { agent: writer, budget: {} }`)), (e: Error) => {
    assert.equal(e.message.split('\n').map((l) => l.replace(/^.*?: (spec\.)/, '$1')).join('\n'), [
      'spec.agents[0]: rate and budget limit the calls a rule allows, and this rule denies the agent outright; move them to the rule that allows it',
      'spec.agents[1]: rate and budget limit the calls a rule allows, and this rule denies the agent outright; move them to the rule that allows it',
      'spec.agents[2].budget: budget needs calls_per_day, calls_per_month or both',
    ].join('\n'));
    return true;
  });
});

test('A2A: a mistaken agents rule is refused at load, each problem at its path, with what to change', () => {
  assert.throws(() => compile(...A2A, policy('bad', '{ agent: ann }', `  agents:
    - { agent: scorer, when: 'identty.team == "x"' }
    - { agent: writer, skills: [a, b, c], deny: [x, c, b] }
    - { agent: writer, when: 'size(resource)' }
    - { agent: scorer, skills: [a], deny: [b] }`)), (e: Error) => {
    assert.equal(e.message.split('\n').map((l) => l.replace(/^.*?: (spec\.)/, '$1')).join('\n'), [
      'spec.agents[0].when: CEL type error: Unknown variable: identty at column 1 in `identty.team == "x"`',
      'spec.agents[1].deny: skill "b" is both in skills and deny; remove it from one list',
      'spec.agents[2].when: CEL condition must return bool, this one returns int at column 1 in `size(resource)`',
    ].join('\n'));
    return true;
  });
});
