import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies, findAgent, type CompiledPolicies } from '../src/policy/compile.ts';
import { decide, allowedModels, toolVisible, limitsFor, guardrailsFor } from '../src/policy/decide.ts';
import type { AgentRecord } from '../src/identity/types.ts';

const SEED = readFileSync(new URL('./fixtures/policy-seed.yaml', import.meta.url), 'utf8');

const HEAD = (kind: string, name: string) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\n`;

function compile(...extra: string[]): CompiledPolicies {
  const text = [SEED, ...extra].join('\n---\n');
  return compilePolicies(parseConfigTexts([{ file: 'test.yaml', text }]), 'v-test');
}

function agent(c: CompiledPolicies, name: string): AgentRecord {
  const a = findAgent(c, name);
  assert.ok(a, `agent ${name} exists`);
  return a;
}

const tool = (a: AgentRecord, resource: string, action: string, args: Record<string, unknown> = {}, context?: Record<string, unknown>) =>
  ({ kind: 'tool' as const, agent: a, resource, action, args, context });

const AGENT = (name: string, extra: string) => `${HEAD('Agent', name)}spec: { workload: spiffe://prod/agent/${name}${extra} }`;

test('seed policy loads unchanged and decides models', () => {
  const c = compile();
  const fa = agent(c, 'finance-analyst');
  const ok = decide({ kind: 'model', agent: fa, model: 'reasoning-high' }, c);
  assert.equal(ok.effect, 'allow');
  assert.equal(ok.allowed, true);
  assert.equal(ok.policy, 'finance-analyst-readonly');
  assert.equal(ok.rulePath, 'models.allow[0]');
  assert.equal(ok.configVersion, 'v-test');
  const no = decide({ kind: 'model', agent: fa, model: 'gpt-4' }, c);
  assert.equal(no.effect, 'deny');
  assert.equal(no.allowed, false);
  assert.match(no.reason, /no policy allows model "gpt-4" for spiffe:\/\/prod\/agent\/finance-analyst/);
  assert.match(no.reason, /finance-analyst-readonly/);
  assert.match(no.reason, /allowed: reasoning-high, summarization/);
  assert.deepEqual(allowedModels(fa, c), ['reasoning-high', 'summarization']);
  // Same answer twice (memoized) and frozen so callers cannot corrupt the memo.
  assert.equal(decide({ kind: 'model', agent: fa, model: 'reasoning-high' }, c), ok);
  assert.ok(Object.isFrozen(ok));
});

test('seed policy decides tools: allow, explicit deny naming the rule, default deny', () => {
  const c = compile();
  const fa = agent(c, 'finance-analyst');
  for (const action of ['read', 'search']) {
    const d = decide(tool(fa, 'salesforce.accounts', action), c);
    assert.equal(d.effect, 'allow', action);
    assert.equal(d.rule, 0);
  }
  const exp = decide(tool(fa, 'salesforce.accounts', 'export'), c);
  assert.equal(exp.effect, 'deny');
  assert.equal(exp.policy, 'finance-analyst-readonly');
  assert.equal(exp.rule, 0);
  assert.equal(exp.reason, 'policy "finance-analyst-readonly" tools[0] denies action "export" on salesforce.accounts');
  const unknown = decide(tool(fa, 'salesforce.accounts', 'merge'), c);
  assert.equal(unknown.effect, 'deny');
  assert.equal(unknown.policy, '');
  assert.match(unknown.reason, /no policy allows action "merge" on salesforce.accounts .*allowed actions: read, search/);
  const otherRes = decide(tool(fa, 'github.repos', 'read'), c);
  assert.equal(otherRes.effect, 'deny');
  assert.match(otherRes.reason, /no policy has a tool rule for github.repos/);
  assert.equal(toolVisible(fa, 'salesforce.accounts', 'read', c), true);
  assert.equal(toolVisible(fa, 'salesforce.accounts', 'export', c), false);
  assert.equal(toolVisible(fa, 'github.repos', 'read', c), false);
  const lim = limitsFor(fa, c);
  assert.deepEqual(lim.budgets.map((b) => [b.key, b.daily_usd]), [['agent:finance-analyst', 75]]);
  assert.equal(lim.rate, null);
});

test('unknown identity with no policy is denied by default', () => {
  const c = compile();
  const stranger: AgentRecord = { name: '', spiffeId: 'spiffe://prod/agent/stranger', trustDomain: 'prod', labels: {} };
  const d = decide({ kind: 'model', agent: stranger, model: 'reasoning-high' }, c);
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /no AgentPolicy applies to spiffe:\/\/prod\/agent\/stranger/);
  // A record claiming a known name but another SPIFFE ID does not get that agent's policies.
  const spoof: AgentRecord = { ...agent(c, 'finance-analyst'), spiffeId: 'spiffe://dev/agent/x' };
  assert.equal(decide({ kind: 'model', agent: spoof, model: 'reasoning-high' }, c).effect, 'deny');
});

test('an explicit deny in one policy wins over an allow in another', () => {
  const c = compile(`${HEAD('AgentPolicy', 'finance-team')}spec:
  identity: { team: finance }
  models: { allow: ['*'], deny: [summarization] }
  tools:
    - { resource: salesforce.accounts, actions: [export, read] }
    - { resource: 'salesforce.*', deny: [read] }`);
  const fa = agent(c, 'finance-analyst');
  const m = decide({ kind: 'model', agent: fa, model: 'summarization' }, c);
  assert.equal(m.effect, 'deny');
  assert.equal(m.policy, 'finance-team');
  assert.equal(m.rulePath, 'models.deny[0]');
  assert.equal(decide({ kind: 'model', agent: fa, model: 'gpt-4' }, c).effect, 'allow');
  assert.deepEqual(allowedModels(fa, c), ['reasoning-high', 'gpt-4']);
  // export allowed by finance-team but denied by the seed policy: deny wins.
  const e = decide(tool(fa, 'salesforce.accounts', 'export'), c);
  assert.equal(e.effect, 'deny');
  assert.equal(e.policy, 'finance-analyst-readonly');
  // read allowed by both but denied by a glob rule in finance-team: deny wins.
  const r = decide(tool(fa, 'salesforce.accounts', 'read'), c);
  assert.equal(r.effect, 'deny');
  assert.equal(r.policy, 'finance-team');
  assert.equal(r.rule, 1);
  assert.equal(decide(tool(fa, 'salesforce.accounts', 'search'), c).effect, 'allow');
});

test('team selector and glob workload subjects', () => {
  const c = compile(
    AGENT('ops-bot', ', team: ops, environment: dev'),
    AGENT('sales-bot', ', team: sales, environment: prod'),
    `${HEAD('AgentPolicy', 'ops-team')}spec:\n  identity: { team: ops }\n  models: { allow: [gpt-4] }`,
    `${HEAD('AgentPolicy', 'all-prod-agents')}spec:\n  identity: { workload: 'spiffe://prod/agent/*', environment: prod }\n  models: { allow: [summarization] }`,
    `${HEAD('AgentPolicy', 'everyone')}spec:\n  identity: { workload: '**' }\n  guardrails: []`,
  );
  const ops = agent(c, 'ops-bot');
  const sales = agent(c, 'sales-bot');
  assert.equal(decide({ kind: 'model', agent: ops, model: 'gpt-4' }, c).effect, 'allow');
  assert.equal(decide({ kind: 'model', agent: sales, model: 'gpt-4' }, c).effect, 'deny');
  // environment selector narrows the glob: ops-bot is dev.
  assert.equal(decide({ kind: 'model', agent: ops, model: 'summarization' }, c).effect, 'deny');
  assert.equal(decide({ kind: 'model', agent: sales, model: 'summarization' }, c).policy, 'all-prod-agents');
  // An identity that is not an Agent resource (JWT-SVID) still matches the glob.
  const jwt: AgentRecord = { name: '', spiffeId: 'spiffe://prod/agent/new-one', trustDomain: 'prod', environment: 'prod', labels: {} };
  assert.equal(decide({ kind: 'model', agent: jwt, model: 'summarization' }, c).effect, 'allow');
  // '*' is one path segment only.
  const deep: AgentRecord = { ...jwt, spiffeId: 'spiffe://prod/agent/a/b' };
  assert.equal(decide({ kind: 'model', agent: deep, model: 'summarization' }, c).effect, 'deny');
  const dev: AgentRecord = { ...jwt, spiffeId: 'spiffe://dev/agent/new-one' };
  assert.equal(decide({ kind: 'model', agent: dev, model: 'summarization' }, c).effect, 'deny');
});

const CRM = (rules: string, identity = '{ team: finance }') => `${HEAD('AgentPolicy', 'crm')}spec:\n  identity: ${identity}\n  tools:\n${rules}`;

test('CEL when: environment == "prod" allows prod and denies dev', () => {
  const c = compile(
    AGENT('dev-analyst', ', team: finance, environment: dev'),
    CRM(`    - { resource: crm.deals, actions: [read], when: 'identity.environment == "prod"' }`),
  );
  const prod = decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read'), c);
  assert.equal(prod.effect, 'allow');
  // tools/list: an identity-only condition is evaluated, so dev does not even see the tool.
  assert.equal(toolVisible(agent(c, 'finance-analyst'), 'crm.deals', 'read', c), true);
  assert.equal(toolVisible(agent(c, 'dev-analyst'), 'crm.deals', 'read', c), false);
  const dev = decide(tool(agent(c, 'dev-analyst'), 'crm.deals', 'read'), c);
  assert.equal(dev.effect, 'deny');
  assert.equal(dev.policy, 'crm');
  assert.match(dev.reason, /only when `identity.environment == "prod"`, which is false/);
});

test('CEL sees args, action, resource and context (time, hour, metadata)', () => {
  const c = compile(CRM(`    - resource: crm.deals
      actions: [read]
      when: 'context.hour >= 9 && context.hour < 17 && context.ip == "10.0.0.1" && args.region in ["eu", "us"] && resource == "crm.deals" && action == "read"'`));
  const fa = agent(c, 'finance-analyst');
  assert.equal(toolVisible(fa, 'crm.deals', 'read', c), true, 'conditions on args/context are left to the call');
  const at = (iso: string, region: string) => decide(tool(fa, 'crm.deals', 'read', { region }, { time: iso, ip: '10.0.0.1' }), c).effect;
  assert.equal(at('2026-11-25T10:00:00Z', 'eu'), 'allow');
  assert.equal(at('2026-11-25T20:00:00Z', 'eu'), 'deny');
  assert.equal(at('2026-11-25T10:00:00Z', 'apac'), 'deny');
  assert.equal(decide(tool(fa, 'crm.deals', 'read', { region: 'eu' }, { time: new Date('2026-11-25T10:00:00Z'), ip: '10.0.0.1' }), c).effect, 'allow');
});

test('args constraints: limit <= 100, enum, pattern, required', () => {
  const c = compile(CRM(`    - resource: crm.deals
      actions: [search]
      args:
        limit: { max: 100, min: 1 }
        sort: { enum: [asc, desc] }
        query: { pattern: '^[a-z ]+$', maxLength: 20, required: true }`));
  const fa = agent(c, 'finance-analyst');
  const s = (args: Record<string, unknown>) => decide(tool(fa, 'crm.deals', 'search', args), c);
  assert.equal(s({ query: 'acme', limit: 100 }).effect, 'allow');
  const big = s({ query: 'acme', limit: 101 });
  assert.equal(big.effect, 'deny');
  assert.equal(big.policy, 'crm');
  assert.match(big.reason, /args.limit exceeds max 100/);
  assert.doesNotMatch(big.reason, /101/, 'argument values are not echoed into reasons (audit sees reasons)');
  assert.match(s({ query: 'acme', limit: '5' }).reason, /args.limit must be a number/);
  assert.match(s({ query: 'acme', sort: 'random' }).reason, /not one of "asc", "desc"/);
  assert.match(s({ query: 'DROP TABLE' }).reason, /args.query does not match pattern/);
  assert.doesNotMatch(s({ query: 'DROP TABLE' }).reason, /DROP/);
  assert.match(s({ query: 'a'.repeat(21) }).reason, /maxLength 20/);
  assert.match(s({ limit: 5 }).reason, /args.query is required/);
  assert.equal(s({ query: 'acme', sort: 'asc' }).effect, 'allow');
});

test('args null (an MCP task\'s tasks/* calls, its arguments decided when it was created): args constraints are not checked again; a when reading args still fails closed; deny rules still apply', () => {
  const c = compile(CRM(`    - resource: crm.deals
      actions: [search]
      args:
        query: { pattern: '^[a-z ]+$', required: true }
    - { resource: crm.deals, actions: [export], when: 'args.format == "csv"' }
    - { resource: crm.deals, deny: [delete] }`));
  const fa = agent(c, 'finance-analyst');
  const decided = (action: string) => decide({ kind: 'tool', agent: fa, resource: 'crm.deals', action, args: null }, c);
  assert.match(decide(tool(fa, 'crm.deals', 'search', {}), c).reason, /args.query is required/, 'with {} a required argument is missing');
  assert.equal(decided('search').effect, 'allow');
  assert.equal(decided('export').effect, 'deny');
  assert.match(decided('export').reason, /could not be evaluated.*fail closed/);
  assert.equal(decided('delete').effect, 'deny');
});

test('CEL runtime error denies (fail closed) even when another rule would allow', () => {
  const c = compile(CRM(`    - { resource: crm.deals, actions: [read], when: 'args.filter.owner == "me"' }
    - { resource: crm.deals, actions: [read] }`));
  const d = decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read', {}), c);
  assert.equal(d.effect, 'deny');
  assert.equal(d.rule, 0);
  assert.match(d.reason, /could not be evaluated .*fail closed/);
  const ok = decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read', { filter: { owner: 'me' } }), c);
  assert.equal(ok.effect, 'allow');
});

test('CEL non-boolean result denies', () => {
  const c = compile(CRM(`    - { resource: crm.deals, actions: [read], when: 'args.flag' }`));
  const d = decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read', { flag: 'yes' }), c);
  assert.equal(d.effect, 'deny');
  assert.match(d.reason, /not a boolean/);
  assert.equal(decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read', { flag: true }), c).effect, 'allow');
});

test('CEL syntax and type errors are load errors with the position', () => {
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], when: 'identity.team == ' }`)), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    const i = e.issues[0];
    assert.equal(i.path, 'spec.tools[0].when');
    assert.equal(i.file, 'test.yaml');
    assert.match(i.message, /CEL syntax error: .* at column 18/);
    return true;
  });
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], when: 'identty.team == "x"' }`)), /Unknown variable: identty at column 1/);
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], when: '1 + 2' }`)), /must return bool/);
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], args: { q: { pattern: '(' } } }`)), /spec.tools\[0\].args.q: invalid pattern/);
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], deny: [read] }`)), /both allowed .* and denied/);
});

test('CEL cost is bounded at load: no comprehension over args that reads args again, matches() only with a literal linear-time pattern', () => {
  const refused = (when: string, why: RegExp, column: number) => assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], when: '${when}' }`)), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.issues[0].path, 'spec.tools[0].when');
    assert.match(e.issues[0].message, why);
    assert.match(e.issues[0].message, new RegExp(`at column ${column} in`));
    return true;
  });
  // Measured before: 38 ms at 3,000 items, growing with the square; 30 s for matches on 29 characters.
  refused('args.to.all(x, x in args.to)', /CEL cost: all\(\) over the caller's data reads the caller's data again/, 1);
  refused('args.to.size() < 5 && args.to.exists(x, args.cc.exists(y, y == x))', /exists\(\) over the caller's data/, 23);
  refused('args.rows.all(r, r.all(c, c in r))', /all\(\) over the caller's data/, 18);
  refused('args.q.matches(args.p)', /matches\(\) needs its pattern as a string literal/, 1);
  refused('args.q.matches("^(a+)\\\\1$")', /matches\(\) pattern .* cannot run in linear time: it uses a backreference/, 16);
  // One pass over the caller's data stays allowed, and so does a literal list around it.
  const c = compile(CRM(`    - resource: crm.deals
      actions: [read]
      when: 'args.to.all(x, x.endsWith("@corp.example") && ["a", "b"].exists(p, x.startsWith(p))) && args.q.matches("^(a+)+$") == false'`));
  const fa = agent(c, 'finance-analyst');
  const started = performance.now();
  const d = decide(tool(fa, 'crm.deals', 'read', { to: ['a@corp.example', 'b@corp.example'], q: `${'a'.repeat(27)}!` }), c);
  assert.equal(d.effect, 'allow');
  assert.ok(performance.now() - started < 1000, `a backtracking pattern is bounded (${performance.now() - started} ms)`);
  assert.equal(decide(tool(fa, 'crm.deals', 'read', { to: ['c@corp.example'], q: 'x' }), c).effect, 'deny');
});

test('approval: required yields approval_required, and wins over a plain allow', () => {
  const c = compile(CRM(`    - { resource: crm.deals, actions: [update], approval: required }
    - { resource: 'crm.*', actions: [update, read] }`));
  const fa = agent(c, 'finance-analyst');
  const d = decide(tool(fa, 'crm.deals', 'update'), c);
  assert.equal(d.effect, 'approval_required');
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 0);
  assert.match(d.reason, /only with approval/);
  assert.equal(decide(tool(fa, 'crm.deals', 'read'), c).effect, 'allow');
  assert.equal(decide(tool(fa, 'crm.notes', 'update'), c).effect, 'allow');
});

test('limits: smallest wins across policies; team scope; guardrails combine', () => {
  const c = compile(
    `${HEAD('Guardrail', 'pii')}spec: { on: [input], detect: [email], action: redact }`,
    `${HEAD('Guardrail', 'secrets')}spec: { on: [output], detect: [secrets], action: block }`,
    `${HEAD('AgentPolicy', 'finance-team')}spec:
  identity: { team: finance }
  models: { budget: { daily_usd: 500, monthly_usd: 2000, scope: team, alert_at: [80, 50] }, rate: { rpm: 60, tpm: 100000 } }
  guardrails: [pii]`,
    `${HEAD('AgentPolicy', 'analyst-extra')}spec:
  identity: { agent: finance-analyst }
  models: { budget: { daily_usd: 40, monthly_usd: 900, alert_at: [100] }, rate: { rpm: 30 } }
  guardrails: [secrets, pii]`,
  );
  const fa = agent(c, 'finance-analyst');
  const lim = limitsFor(fa, c);
  const byKey = Object.fromEntries(lim.budgets.map((b) => [b.key, b]));
  assert.equal(byKey['agent:finance-analyst'].daily_usd, 40);
  assert.equal(byKey['agent:finance-analyst'].monthly_usd, 900);
  assert.deepEqual(byKey['team:finance'].alert_at, [50, 80]);
  assert.equal(byKey['team:finance'].daily_usd, 500);
  assert.deepEqual(lim.rate && [lim.rate.rpm, lim.rate.tpm], [30, 100000]);
  assert.deepEqual(guardrailsFor(fa, c), ['pii', 'secrets']);
});

test('unknown identities are cached in a bounded LRU', () => {
  const c = compile(`${HEAD('AgentPolicy', 'glob')}spec:\n  identity: { workload: 'spiffe://prod/agent/*' }\n  models: { allow: [gpt-4] }`);
  c.unknownCacheMax = 8;
  for (let i = 0; i < 50; i++) {
    const a: AgentRecord = { name: '', spiffeId: `spiffe://prod/agent/x${i}`, trustDomain: 'prod', labels: {} };
    assert.equal(decide({ kind: 'model', agent: a, model: 'gpt-4' }, c).effect, 'allow');
  }
  assert.ok(c.unknownCache.size <= 8);
});

test('label, owner and deployment selectors must all match; "*" workload matches everyone', () => {
  const c = compile(
    `${HEAD('Agent', 'labeled')}spec: { workload: spiffe://prod/agent/labeled, owner: bob@example.com, deployment: v2, labels: { tier: gold, region: eu } }`,
    `${HEAD('AgentPolicy', 'gold-eu')}spec:\n  identity: { labels: { tier: gold, region: eu }, owner: bob@example.com, deployment: v2 }\n  models: { allow: [gpt-4] }`,
    `${HEAD('AgentPolicy', 'gold-us')}spec:\n  identity: { labels: { tier: gold, region: us } }\n  models: { allow: [summarization] }`,
    `${HEAD('AgentPolicy', 'all')}spec:\n  identity: { workload: '*' }\n  tools: [ { resource: '*', deny: [delete] } ]`,
  );
  const a = agent(c, 'labeled');
  assert.equal(decide({ kind: 'model', agent: a, model: 'gpt-4' }, c).effect, 'allow');
  assert.equal(decide({ kind: 'model', agent: a, model: 'summarization' }, c).effect, 'deny');
  const del = decide(tool(agent(c, 'finance-analyst'), 'anything.at.all', 'delete'), c);
  assert.equal(del.policy, 'all');
  assert.equal(del.effect, 'deny');
});

test('odd inputs never throw and never allow by accident', () => {
  const c = compile(CRM(`    - { resource: crm.deals, actions: [read], when: 'context.time < timestamp("2100-01-01T00:00:00Z")' }
    - { resource: crm.notes, actions: [read], args: { id: { required: true, max: 10 } } }`));
  const fa = agent(c, 'finance-analyst');
  // Invalid time string: the condition cannot be evaluated, so deny.
  const badTime = decide(tool(fa, 'crm.deals', 'read', {}, { time: 'not-a-date' }), c);
  assert.equal(badTime.effect, 'deny');
  assert.equal(decide(tool(fa, 'crm.deals', 'read', {}, { time: '2026-01-01T00:00:00Z' }), c).effect, 'allow');
  // Missing args object, inherited properties do not satisfy "required".
  const noArgs = decide({ kind: 'tool', agent: fa, resource: 'crm.notes', action: 'read', args: undefined as unknown as Record<string, unknown> }, c);
  assert.equal(noArgs.effect, 'deny');
  const proto = decide(tool(fa, 'crm.notes', 'read', Object.create({ id: 1 }) as Record<string, unknown>), c);
  assert.equal(proto.effect, 'deny');
  assert.match(proto.reason, /args.id is required/);
  assert.equal(decide(tool(fa, 'crm.notes', 'read', JSON.parse('{"id": 3, "__proto__": {"x": 1}}') as Record<string, unknown>), c).effect, 'allow');
});

test('a workload that is not a SPIFFE ID or glob is a load error', () => {
  assert.throws(() => compile(`${HEAD('AgentPolicy', 'bad')}spec:\n  identity: { workload: prod/agent/x }\n  models: { allow: [gpt-4] }`),
    /spec.identity.workload: must be a SPIFFE ID or glob starting with spiffe:\/\//);
  assert.throws(() => compile(`${HEAD('AgentPolicy', 'bad')}spec:\n  identity: { team: finance }\n  models: { allow: [gpt-4], deny: [gpt-4] }`),
    /both in models.allow and models.deny/);
});

// Issue 12, finding 1 (same class): an args pattern meets agent-controlled text, so it runs on the
// linear-time engine: a catastrophic pattern costs time proportional to the argument, not exponential.
test('args pattern on a hostile argument runs in linear time', () => {
  const c = compile(CRM(`    - { resource: crm.deals, actions: [read], args: { q: { pattern: '^(a+)+$' } } }`));
  const hostile = 'a'.repeat(30_000) + '!';
  const cpu = process.cpuUsage();
  const d = decide(tool(agent(c, 'finance-analyst'), 'crm.deals', 'read', { q: hostile }), c);
  const used = process.cpuUsage(cpu);
  assert.equal(d.allowed, false);
  assert.match(d.reason, /does not match pattern/);
  assert.ok((used.user + used.system) / 1000 < 500, `took ${(used.user + used.system) / 1000} ms of CPU`);
  assert.throws(() => compile(CRM(`    - { resource: crm.deals, actions: [read], args: { q: { pattern: '(a)\\1' } } }`)), /args.q: invalid pattern.*backreference/);
});
