// Compiling AgentPolicies (src/policy/compile.ts) as the caller, the operator and the limiter see
// the result, with no gateway: what a `when` condition knows about the caller, the load errors a
// mistaken policy gets, which models.allow/deny entry decides, regions and prices, the limits the
// gateway enforces, and which policy set a caller whose attributes differ from its Agent gets.
// Written for the mutants `npm run mutate -- policy -- --mutate src/policy/compile.ts` found; a
// mutant it kills costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts } from '../src/config/load.ts';
import { ConfigError } from '../src/config/errors.ts';
import { compilePolicies, decidingToolRule, findAgent, setFor, trustDomainOfId, type CompiledPolicies } from '../src/policy/compile.ts';
import { decide } from '../src/policy/decide.ts';
import type { AgentRecord } from '../src/identity/types.ts';
import { doc, yaml } from './helpers/config-docs.ts';

const BASE = [
  doc('Provider', 'demo', { type: 'demo' }),
  ...['alpha', 'beta', 'gamma'].map((m) => doc('Model', m, { targets: [{ provider: 'demo', model: `${m}-1` }] })),
  doc('Agent', 'ann', { workload: 'spiffe://corp.example/agent/ann', team: 'finance', environment: 'prod', owner: 'o@example.com', deployment: 'v2', labels: { tier: 'gold' } }),
  doc('Agent', 'bare', { workload: 'spiffe://corp.example/agent/bare' }),
];

function compile(...docs: string[]): CompiledPolicies {
  return compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(...BASE, ...docs) }]), 'v1');
}
const policy = (name: string, spec: Record<string, unknown>) => doc('AgentPolicy', name, spec);
const who = (c: CompiledPolicies, name: string): AgentRecord => findAgent(c, name)!;
const model = (c: CompiledPolicies, a: AgentRecord | string, m: string) => decide({ kind: 'model', agent: typeof a === 'string' ? who(c, a) : a, model: m }, c);
const tool = (c: CompiledPolicies, a: AgentRecord | string, resource: string, action: string) =>
  decide({ kind: 'tool', agent: typeof a === 'string' ? who(c, a) : a, resource, action, args: {} }, c);

/** The issues (path: message) a config is refused with. */
function refused(...docs: string[]): string[] {
  try { compile(...docs); } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('expected the config to be refused');
}

test('conditions see who the caller is: SPIFFE ID, name, trust domain, attributes, and labels where spec.labels win', () => {
  const ann = `${doc('Agent', 'lab', { workload: 'spiffe://corp.example/agent/lab', labels: { tier: 'gold' } }).replace('metadata: { name: lab }', 'metadata: { name: lab, labels: { tier: silver, zone: a } }')}`;
  const c = compile(ann,
    policy('who', { identity: { workload: 'spiffe://corp.example/**' }, tools: [
      { resource: 'ann.only', actions: ['read'], when: 'identity.spiffe_id == "spiffe://corp.example/agent/ann" && identity.agent == "ann" && identity.trust_domain == "corp.example" && identity.team == "finance" && identity.environment == "prod" && identity.owner == "o@example.com" && identity.deployment == "v2" && identity.labels.tier == "gold"' },
      // An attribute the Agent does not set is "" (a condition on it is false, not an error).
      { resource: 'unset', actions: ['read'], when: 'identity.team == "" && identity.environment == "" && identity.owner == "" && identity.deployment == ""' },
      { resource: 'labels', actions: ['read'], when: 'identity.labels.tier == "gold" && identity.labels.zone == "a"' },
    ] }));
  assert.equal(tool(c, 'ann', 'ann.only', 'read').effect, 'allow', tool(c, 'ann', 'ann.only', 'read').reason);
  assert.equal(tool(c, 'bare', 'ann.only', 'read').effect, 'deny');
  assert.equal(tool(c, 'bare', 'unset', 'read').effect, 'allow', tool(c, 'bare', 'unset', 'read').reason);
  assert.equal(tool(c, 'ann', 'unset', 'read').effect, 'deny');
  assert.equal(tool(c, 'lab', 'labels', 'read').effect, 'allow', tool(c, 'lab', 'labels', 'read').reason);
  assert.equal(who(c, 'ann').trustDomain, 'corp.example');
  for (const [id, domain] of [['spiffe://prod/agent/x', 'prod'], ['spiffe://prod', 'prod'], ['prod/agent/x', 'prod'], ['spiffe://', '']]) assert.equal(trustDomainOfId(id), domain, id);
});

test('a mistaken policy is refused at load with every problem, each at its path', () => {
  assert.deepEqual(refused(policy('bad', {
    identity: { agent: 'ann' },
    models: { allow: ['alp*'], deny: ['*'] },
    tools: [
      { resource: 'a', actions: ['read', 'list'], deny: ['list'] },
      { resource: 'b' },
      { resource: 'c', deny: ['x'], rate: { rpm: 1 } },
      { resource: 'd', deny: ['x'], budget: { calls_per_day: 1 } },
      { resource: 'e', actions: ['read'], budget: {} },
      { resource: 'f', actions: ['read'], when: 'identity.team == "a" &&' },
      { resource: 'g', actions: ['read'], when: 'resource + "x"' },
      { resource: 'h', actions: ['read'], args: { n: { min: 2, max: 1 } } },
      { resource: 'i', actions: ['read'], deny: ['write'], rate: { rpm: 1 }, budget: { calls_per_month: 1 } },
    ],
    agents: [{ agent: 'peer', when: 'identity.team ==' }],
  }), doc('Agent', 'peer', { workload: 'spiffe://corp.example/agent/peer', a2a: { url: 'http://127.0.0.1:9/a2a' } }), policy('exact', { identity: { workload: 'prod/agent/x' }, models: { allow: ['alpha'], deny: ['*', 'alpha'] } })), [
    'spec.models.deny[0]: models.deny "*" denies every model, so models.allow in the same policy can never apply; remove one',
    'spec.tools[0].deny: action "list" is both allowed (actions) and denied (deny) in the same rule; remove it from one list',
    'spec.tools[1]: a tool rule needs actions (to allow) or deny (to deny)',
    'spec.tools[2].rate: rate limits the calls a rule allows, and this rule allows none; add actions or move rate to the rule that allows them',
    'spec.tools[3].budget: budget limits the calls a rule allows, and this rule allows none; add actions or move budget to the rule that allows them',
    'spec.tools[4].budget: budget needs calls_per_day, calls_per_month or both',
    'spec.tools[5].when: CEL syntax error: Unexpected token: EOF at column 24 in `identity.team == "a" &&`',
    'spec.tools[6].when: CEL condition must return bool, this one returns string at column 1 in `resource + "x"`',
    'spec.tools[7].args.n: min 2 is greater than max 1',
    'spec.agents[0].when: CEL syntax error: Unexpected token: EOF at column 17 in `identity.team ==`',
    'spec.models.deny[0]: models.deny "*" denies every model, so models.allow in the same policy can never apply; remove one',
    'spec.models.deny[1]: model "alpha" is both in models.allow and models.deny; remove it from one list',
    'spec.identity.workload: must be a SPIFFE ID or glob starting with spiffe:// (or "**" for every workload)',
  ]);
  // "*" in both lists is one mistake, not two; "*" and "**" are workloads that match everyone.
  assert.deepEqual(refused(policy('stars', { identity: { agent: 'ann' }, models: { allow: ['*'], deny: ['*'] } })), [
    'spec.models.deny[0]: models.deny "*" denies every model, so models.allow in the same policy can never apply; remove one',
  ]);
  const c = compile(policy('all', { identity: { workload: '**' }, models: { allow: ['alpha'] } }), policy('one', { identity: { workload: '*' }, models: { deny: ['*'] } }));
  assert.equal(model(c, 'ann', 'beta').policy, 'one');
  assert.equal(model(c, 'bare', 'alpha').policy, 'one');
});

test('models: the first entry naming a model decides, an exact name before "*", "*" before a glob', () => {
  const c = compile(
    policy('dup', { identity: { agent: 'ann' }, models: { allow: ['alpha', 'beta', 'alpha'], deny: ['gamma', 'gamma'] } }),
    policy('mixed', { identity: { agent: 'bare' }, models: { allow: ['al*', 'alpha', 'be*', 'b*', '*'] } }),
  );
  const rule = (a: string, m: string) => model(c, a, m).rulePath;
  assert.equal(rule('ann', 'alpha'), 'models.allow[0]');
  assert.equal(rule('ann', 'gamma'), 'models.deny[0]');
  assert.equal(rule('bare', 'alpha'), 'models.allow[1]', 'an exact name wins over an earlier glob');
  assert.equal(rule('bare', 'beta'), 'models.allow[4]', '"*" wins over the globs');
  // The same order for denies: the entry the refusal names.
  const denies = compile(policy('d', { identity: { agent: 'ann' }, models: { allow: ['alpha'], deny: ['g*', 'gamma'] } }), policy('e', { identity: { agent: 'bare' }, models: { deny: ['g*', '*'] } }));
  assert.equal(model(denies, 'ann', 'gamma').rulePath, 'models.deny[1]', 'an exact deny wins over an earlier glob');
  assert.equal(model(denies, 'bare', 'gamma').rulePath, 'models.deny[1]', '"*" wins over an earlier glob');
  assert.equal(model(denies, 'bare', 'alpha').rulePath, 'models.deny[1]');
  const globs = compile(policy('g', { identity: { agent: 'bare' }, models: { allow: ['be*', 'b*'], deny: ['g*'] } }));
  assert.equal(model(globs, 'bare', 'beta').rulePath, 'models.allow[0]', 'the first matching glob');
  assert.equal(model(globs, 'bare', 'gamma').rulePath, 'models.deny[0]');
  assert.equal(model(globs, 'bare', 'alpha').effect, 'deny');
  assert.deepEqual(setFor(who(globs, 'bare'), globs).allowedModels, ['beta']);
});

test('models.regions: several policies intersect; a model with no target there is refused, one with some is served only there', () => {
  const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Provider', 'openai', { type: 'openai', models: '*', region: 'us' }),
    doc('Model', 'eu-chat', { targets: [{ provider: 'demo', model: 'eu-1', region: 'eu' }] }),
    doc('Model', 'us-chat', { targets: [{ provider: 'demo', model: 'us-1', region: 'us' }] }),
    doc('Model', 'mixed', { targets: [{ provider: 'demo', model: 'us-2', region: 'us' }, { provider: 'demo', model: 'eu-2', region: 'eu' }] }),
    doc('Model', 'nowhere', { targets: [{ provider: 'demo', model: 'x-1' }] }),
    doc('Agent', 'ann', { workload: 'spiffe://corp.example/agent/ann' }),
    doc('Agent', 'free', { workload: 'spiffe://corp.example/agent/free' }),
    doc('AgentPolicy', 'a', { identity: { agent: 'ann' }, models: { allow: ['eu-chat', 'us-chat', 'mixed', 'nowhere', 'openai/*'], regions: ['us', 'eu'] } }),
    doc('AgentPolicy', 'open', { identity: { workload: '**' }, models: { allow: ['eu-chat', 'us-chat', 'openai/*'] } }),
    doc('AgentPolicy', 'b', { identity: { agent: 'ann' }, models: { regions: ['eu', 'ap'] } }),
  ) }]), 'v1');
  const ann = who(c, 'ann');
  assert.deepEqual(setFor(ann, c).regions, { allow: new Set(['eu']), policies: ['a', 'b'] });
  assert.deepEqual([model(c, ann, 'eu-chat').effect, model(c, ann, 'eu-chat').reason], ['allow', 'policy "a" models.allow[0] allows model "eu-chat"; regions eu (models.regions of a, b) leave targets demo/eu-1']);
  assert.equal(model(c, ann, 'mixed').reason, 'policy "a" models.allow[2] allows model "mixed"; regions eu (models.regions of a, b) leave targets demo/eu-2');
  for (const m of ['us-chat', 'nowhere', 'openai/gpt-4o']) {
    const d = model(c, ann, m);
    assert.deepEqual([d.effect, d.policy, d.rulePath], ['deny', 'a', 'models.regions'], m);
  }
  assert.match(model(c, ann, 'nowhere').reason, /no target of model "nowhere" runs there \(demo\/x-1: no region\)/);
  assert.deepEqual(setFor(ann, c).allowedModels, ['eu-chat', 'mixed']);
  // Without models.regions every target serves (the reason names no regions).
  const free = who(c, 'free');
  assert.equal(setFor(free, c).regions, null);
  assert.equal(model(c, free, 'us-chat').reason, 'policy "open" models.allow[1] allows model "us-chat"');
  assert.equal(model(c, free, 'openai/gpt-4o').effect, 'allow');
});

test('a budget refuses catalog models it cannot price, and only those', () => {
  const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(
    doc('Provider', 'openai', { type: 'openai', models: '*' }),
    doc('Agent', 'spender', { workload: 'spiffe://corp.example/agent/spender' }),
    doc('Agent', 'free', { workload: 'spiffe://corp.example/agent/free' }),
    doc('AgentPolicy', 'open', { identity: { workload: '**' }, models: { allow: ['openai/*'] } }),
    doc('AgentPolicy', 'cap', { identity: { agent: 'spender' }, models: { budget: { monthly_usd: 50 } } }),
  ) }]), 'v1');
  const d = model(c, 'spender', 'openai/my-finetune');
  assert.deepEqual([d.effect, d.policy, d.rulePath], ['deny', 'cap', 'models.budget']);
  assert.match(d.reason, /^model "openai\/my-finetune" has no known price \(openai\/my-finetune\), and policy "cap" puts a budget on/);
  assert.equal(model(c, 'spender', 'openai/gpt-4o').effect, 'allow', 'a built-in price');
  assert.equal(model(c, 'free', 'openai/my-finetune').effect, 'allow', 'no budget: nothing to price');
});

test('limits: the smallest amount per field wins, alerts merge, each budget is kept where its scope says', () => {
  const c = compile(
    policy('p1', { identity: { agent: 'ann' }, models: { allow: ['alpha'], budget: { daily_usd: 5, alert_at: [80, 100] }, rate: { rpm: 10 } } }),
    policy('p2', { identity: { agent: 'ann' }, models: { budget: { monthly_usd: 50, alert_at: [50, 80] }, rate: { tpm: 1000 } } }),
    policy('p3', { identity: { agent: 'ann' }, models: { budget: { daily_usd: 3, monthly_usd: 80 }, rate: { rpm: 20, tpm: 500 } } }),
    policy('team', { identity: { team: 'finance' }, models: { budget: { daily_usd: 100, scope: 'team', alert_at: [90] } } }),
    // No amount and no limit: nothing to enforce.
    policy('empty', { identity: { agent: 'ann' }, models: { budget: { scope: 'team', alert_at: [10] }, rate: {} } }),
    policy('bare-team', { identity: { agent: 'bare' }, models: { allow: ['alpha'], budget: { daily_usd: 2, scope: 'team' }, rate: { tpm: 7 } } }),
    policy('bare-more', { identity: { agent: 'bare' }, models: { budget: { daily_usd: 1 }, rate: { rpm: 9 } } }),
    policy('strangers', { identity: { workload: 'spiffe://corp.example/x/*' }, models: { budget: { daily_usd: 1 } } }),
  );
  assert.deepEqual(setFor(who(c, 'ann'), c).limits, {
    budgets: [
      { scope: 'agent', key: 'agent:ann', daily_usd: 3, monthly_usd: 50, alert_at: [50, 80, 100], policies: ['p1', 'p2', 'p3'] },
      { scope: 'team', key: 'team:finance', daily_usd: 100, monthly_usd: undefined, alert_at: [90], policies: ['team'] },
    ],
    rate: { rpm: 10, tpm: 500, policies: ['p1', 'p2', 'p3'] },
  });
  // A team budget on an agent without a team binds the agent; one that is not an Agent resource is keyed by SPIFFE ID.
  assert.deepEqual(setFor(who(c, 'bare'), c).limits, {
    budgets: [{ scope: 'agent', key: 'agent:bare', daily_usd: 1, monthly_usd: undefined, alert_at: [], policies: ['bare-team', 'bare-more'] }],
    rate: { rpm: 9, tpm: 7, policies: ['bare-team', 'bare-more'] },
  });
  const stranger: AgentRecord = { name: '', spiffeId: 'spiffe://corp.example/x/s', trustDomain: 'corp.example', labels: {} };
  assert.deepEqual(setFor(stranger, c).limits.budgets.map((b) => b.key), ['agent:spiffe://corp.example/x/s']);
});

test('a tool rule\'s rate and budget apply to the calls it decides, and a default deny names no rule', () => {
  const c = compile(policy('crm', { identity: { agent: 'ann' }, tools: [
    { resource: 'crm.deals', actions: ['read'], rate: { rpm: 5 }, budget: { calls_per_day: 10 } },
    { resource: 'crm.notes', actions: ['read'], approval: 'none' },
    { resource: 'crm.mail', actions: ['send'], budget: { calls_per_month: 30 } },
    // "*" alone is every resource, "/" and all (a glob's "*" stays within one segment).
    { resource: '*', deny: ['delete'] },
    { resource: 'files/*', deny: ['purge'] },
  ] }));
  const set = setFor(who(c, 'ann'), c);
  const deals = decidingToolRule(set, tool(c, 'ann', 'crm.deals', 'read'))!;
  assert.deepEqual([deals.rate, deals.budget], [{ rpm: 5 }, { calls_per_day: 10 }]);
  const notes = decidingToolRule(set, tool(c, 'ann', 'crm.notes', 'read'))!;
  assert.deepEqual([notes.rate, notes.budget, notes.approval], [null, null, false]);
  assert.equal(tool(c, 'ann', 'crm.notes', 'read').effect, 'allow');
  assert.deepEqual(decidingToolRule(set, tool(c, 'ann', 'crm.mail', 'send'))!.budget, { calls_per_month: 30 });
  assert.equal(tool(c, 'ann', 'files/reports/q1', 'delete').rulePath, 'tools[3]');
  assert.equal(tool(c, 'ann', 'files/reports', 'purge').rulePath, 'tools[4]');
  assert.equal(tool(c, 'ann', 'files/reports/q1', 'purge').rulePath, '', 'a glob "*" does not cross a "/"');
  assert.equal(decidingToolRule(set, tool(c, 'ann', 'crm.other', 'read')), undefined);
  assert.equal(decidingToolRule(set, { policy: '', rule: 1 }), undefined);
  assert.equal(decidingToolRule(set, { policy: 'crm', rule: -1 }), undefined);
  assert.equal(decidingToolRule(set, { policy: 'nope', rule: 0 }), undefined);
});

test('a caller naming ever new tool resources: each is decided by the rules that match it, and the per-caller memo of them stays at 4096', () => {
  const c = compile(policy('files', { identity: { agent: 'ann' }, tools: [{ resource: 'files/*', actions: ['read'] }, { resource: 'files/secret-*', deny: ['read'] }] }));
  const set = setFor(who(c, 'ann'), c);
  for (let i = 0; i < 5000; i++) {
    const d = tool(c, 'ann', i % 2 ? `files/r${i}` : `files/secret-${i}`, 'read');
    assert.equal(d.rulePath, i % 2 ? 'tools[0]' : 'tools[1]', String(i));
  }
  assert.equal(set.toolMemo.size, 4096, 'an agent cannot make the gateway remember every name it sends');
  // Past the bound, a resource seen before and one never seen are still decided by their rules.
  assert.equal(tool(c, 'ann', 'files/r1', 'read').effect, 'allow');
  assert.equal(tool(c, 'ann', 'files/secret-4998', 'read').effect, 'deny');
  assert.equal(tool(c, 'ann', 'other/r1', 'read').rulePath, '');
});

test('what a set gathers from its policies: guardrails, credentials and audit records, each once', () => {
  const c = compile(
    doc('Credential', 'c1', { env: 'AAM_MUTATION_COMPILE_C1' }),
    doc('Credential', 'c2', { env: 'AAM_MUTATION_COMPILE_C2' }),
    doc('Guardrail', 'pii', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'secrets', { on: ['output'], detect: ['secrets'], action: 'block' }),
    policy('p1', { identity: { agent: 'ann' }, guardrails: ['secrets', 'pii'], credentials: { allow: ['c1'] }, audit: { record: ['identity', 'policy'] } }),
    policy('p2', { identity: { team: 'finance' }, guardrails: ['pii'], credentials: { allow: ['c2', 'c1'] }, audit: { record: ['policy', 'outcome'] } }),
    policy('p3', { identity: { workload: '**' }, models: { allow: ['alpha'] } }),
  );
  const ann = setFor(who(c, 'ann'), c);
  assert.deepEqual(ann.guardrails, ['secrets', 'pii']);
  assert.deepEqual(ann.credentials, { allow: new Set(['c1', 'c2']), policies: ['p1', 'p2'] });
  assert.deepEqual(ann.auditRecord, ['identity', 'policy', 'outcome']);
  const bare = setFor(who(c, 'bare'), c);
  assert.deepEqual([bare.guardrails, bare.credentials, bare.auditRecord], [[], null, null]);
});

test('a caller whose attributes differ from its Agent gets the policies of the attributes it has', () => {
  const c = compile(
    policy('exact', { identity: { workload: 'spiffe://corp.example/agent/ann', team: 'finance', environment: 'prod', owner: 'o@example.com', deployment: 'v2', labels: { tier: 'gold' } }, models: { allow: ['alpha'] } }),
    policy('no-x', { identity: { labels: { x: 'y' } }, models: { deny: ['alpha'] } }),
  );
  const ann = who(c, 'ann');
  assert.equal(setFor({ ...ann, labels: { ...ann.labels } }, c), setFor(ann, c), 'the same attributes: the configured set');
  assert.equal(model(c, { ...ann, labels: { tier: 'gold' } }, 'alpha').effect, 'allow');
  const changed: Array<Partial<AgentRecord>> = [
    { spiffeId: 'spiffe://corp.example/agent/other' }, { team: 'sales' }, { environment: 'dev' }, { owner: 'x@example.com' },
    { deployment: 'v3' }, { labels: { tier: 'silver' } }, { labels: { tier: 'gold', x: 'y' } }, { labels: {} },
  ];
  for (const diff of changed) assert.equal(model(c, { ...ann, ...diff }, 'alpha').effect, 'deny', JSON.stringify(diff));
  assert.equal(model(c, ann, 'alpha').effect, 'allow', 'the configured agent is unaffected');
});

test('identities that are not Agents: a bounded cache that keeps the most recently used', () => {
  const c = compile(policy('glob', { identity: { workload: 'spiffe://corp.example/x/*' }, models: { allow: ['alpha'] } }));
  c.unknownCacheMax = 2;
  const rec = (n: string): AgentRecord => ({ name: '', spiffeId: `spiffe://corp.example/x/${n}`, trustDomain: 'corp.example', labels: {} });
  const a = setFor(rec('a'), c);
  setFor(rec('b'), c);
  assert.equal(setFor(rec('a'), c), a, 'a hit');
  setFor(rec('c'), c);
  assert.equal(c.unknownCache.size, 2);
  assert.equal(setFor(rec('a'), c), a, 'the least recently used (b) went, not a');
  assert.equal(model(c, rec('d'), 'alpha').effect, 'allow');
  assert.equal(model(c, { ...rec('e'), spiffeId: 'spiffe://corp.example/y/e' }, 'alpha').effect, 'deny');
  // Attributes are part of who the caller is: the same SPIFFE ID with another label is another entry.
  const labelled = setFor({ ...rec('a'), labels: { k: 'v' } }, c);
  assert.notEqual(labelled, a);
  assert.equal(setFor({ ...rec('a'), labels: { k: 'v' } }, c), labelled);
  assert.notEqual(setFor({ ...rec('a'), labels: { k: 'w' } }, c), labelled);
  // So is every attribute: a cached set is never handed to a stranger that differs in one.
  for (const f of ['team', 'environment', 'owner', 'deployment'] as const) {
    const t = compile(policy('glob', { identity: { workload: 'spiffe://corp.example/x/*' }, models: { allow: ['alpha'] } }), policy('no-sales', { identity: { [f]: 'sales' }, models: { deny: ['alpha'] } }));
    assert.equal(model(t, { ...rec('s'), [f]: 'ops' }, 'alpha').effect, 'allow', f);
    assert.equal(model(t, { ...rec('s'), [f]: 'sales' }, 'alpha').effect, 'deny', f);
  }
});

test('shadow mode: audit-mode policies are left out of what is enforced and kept in the shadow', () => {
  const c = compile(
    policy('open', { identity: { agent: 'ann' }, models: { allow: ['alpha', 'beta'] } }),
    policy('tighten', { mode: 'audit', identity: { agent: 'ann' }, models: { deny: ['beta'] } }),
    policy('enforced', { mode: 'enforce', identity: { agent: 'ann' }, models: { deny: ['gamma'] } }),
  );
  assert.equal(model(c, 'ann', 'beta').effect, 'allow');
  assert.equal(model(c, 'ann', 'gamma').policy, 'enforced');
  assert.ok(c.shadow);
  assert.equal(model(c.shadow, 'ann', 'beta').policy, 'tighten');
  assert.equal(model(c.shadow, 'ann', 'gamma').policy, 'enforced');
  assert.equal(compile(policy('open', { identity: { agent: 'ann' }, models: { allow: ['alpha'] } })).shadow, undefined);
});

test('the compiled config finds agents by name or SPIFFE ID and lists routes in config order', () => {
  const c = compile(policy('open', { identity: { agent: 'ann' }, models: { allow: ['alpha'] } }));
  assert.equal(findAgent(c, 'ann')?.name, 'ann');
  assert.equal(findAgent(c, 'spiffe://corp.example/agent/bare')?.name, 'bare');
  assert.equal(findAgent(c, 'spiffe://corp.example/agent/nobody'), undefined);
  assert.equal(findAgent(c, 'nobody'), undefined);
  assert.deepEqual([c.models, [...c.modelSet], c.listed, c.configVersion], [['alpha', 'beta', 'gamma'], ['alpha', 'beta', 'gamma'], ['alpha', 'beta', 'gamma'], 'v1']);
  assert.deepEqual(setFor(who(c, 'ann'), c).allowedModels, ['alpha']);
});

test('catalog models: a literal allow of an unpriced one is listed, an unknown one under a budget is left to routing, regions alone need no price', () => {
  const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(
    doc('Provider', 'openai', { type: 'openai', models: '*', region: 'us' }),
    doc('Agent', 'ann', { workload: 'spiffe://corp.example/agent/ann' }),
    doc('Agent', 'spender', { workload: 'spiffe://corp.example/agent/spender' }),
    doc('Agent', 'local', { workload: 'spiffe://corp.example/agent/local' }),
    doc('AgentPolicy', 'named', { identity: { agent: 'ann' }, models: { allow: ['openai/my-finetune', 'openai/o*'] } }),
    doc('AgentPolicy', 'capped', { identity: { agent: 'spender' }, models: { allow: ['*'], budget: { monthly_usd: 50 } } }),
    doc('AgentPolicy', 'here', { identity: { agent: 'local' }, models: { allow: ['openai/*'], regions: ['us'] } }),
  ) }]), 'v1');
  // GET /v1/models lists a catalog model an allow list names, though no price list knows it.
  assert.ok(c.listed.includes('openai/my-finetune'), c.listed.join(', '));
  assert.ok(!c.listed.some((m) => m.includes('*')), 'a glob is not a model name');
  assert.ok(setFor(who(c, 'ann'), c).allowedModels.includes('openai/my-finetune'));
  // "*" under a budget: a name nothing serves is allowed by policy (routing answers it is unknown), not a crash.
  const unknown = model(c, 'spender', 'no-such-model');
  assert.deepEqual([unknown.effect, unknown.policy, unknown.rulePath], ['allow', 'capped', 'models.allow[0]']);
  assert.equal(model(c, 'spender', 'openai/my-finetune').rulePath, 'models.budget', 'a catalog model it cannot price is refused');
  // models.regions without a budget: an unpriced catalog model in the region is served (nothing to price).
  const d = model(c, 'local', 'openai/my-finetune');
  assert.deepEqual([d.effect, d.policy, d.rulePath], ['allow', 'here', 'models.allow[0]'], d.reason);
});
