// Config load errors a user acts on: an unknown kind is named, and a budget that could never
// bind (a budgeted route without a price) is refused at load, naming the route, target and policy.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { runCli } from './helpers/e2e.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Every issue message of a config text ([] when it loads). */
function problems(text: string): string[] {
  try { parseConfigTexts([{ file: 'aam.yaml', text }]); return []; } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

test('aam validate names the unknown kind it found (and the nearest known one)', async () => {
  const file = join(dir, 'kinds.yaml');
  writeFileSync(file, yaml(doc('Robot', 'r', {}), doc('Providr', 'p', { type: 'demo' }), doc('Provider', 'ok', { type: 'demo' })));
  const r = await runCli(['validate', file], { env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /\(document 1\): kind: must be one of [^\n]*, not the string "Robot"\n/);
  assert.match(r.stderr, /\(document 2\): kind: [^\n]*not the string "Providr" \(did you mean Provider\?\)/);
  assert.match(r.stderr, /2 problems found/);
});

const local = doc('Provider', 'local', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1' });
const demo = doc('Provider', 'demo', { type: 'demo' });
const agent = doc('Agent', 'a', { workload: 'spiffe://test/agent/a', team: 'qa' });
const policy = (models: Record<string, unknown>) => doc('AgentPolicy', 'capped', { identity: { agent: 'a' }, models });

test('a route a budgeted policy allows must have a price: the error names route, target and policy and says how to fix it', () => {
  const route = (spec: Record<string, unknown>) => doc('Model', 'llama', { targets: [{ provider: 'demo', model: 'd' }, { provider: 'local', model: 'llama-3' }], ...spec });
  const [msg, ...rest] = problems(yaml(local, demo, route({}), agent, policy({ allow: ['llama'], budget: { daily_usd: 5 } })));
  assert.equal(rest.length, 0);
  assert.match(msg, /^spec\.targets\[1\]: no price for model "llama-3" \(provider local\), but AgentPolicy "capped" puts a budget on route "llama"/);
  assert.match(msg, /pricing: \{ input_per_1m, output_per_1m \}/);
  assert.match(msg, /pricing: \{ free: true \}/);
  // Every way a budget reaches the route counts: "*", monthly budgets, team scope.
  assert.equal(problems(yaml(local, demo, route({}), agent, policy({ allow: ['*'], budget: { monthly_usd: 50, scope: 'team' } }))).length, 1);
  // Fixes: a route price, a target price, or the explicit opt-in.
  assert.deepEqual(problems(yaml(local, demo, route({ pricing: { input_per_1m: 0.1, output_per_1m: 0.2 } }), agent, policy({ allow: ['llama'], budget: { daily_usd: 5 } }))), []);
  assert.deepEqual(problems(yaml(local, demo, route({ pricing: { free: true } }), agent, policy({ allow: ['llama'], budget: { daily_usd: 5 } }))), []);
  assert.deepEqual(problems(yaml(local, demo,
    doc('Model', 'llama', { targets: [{ provider: 'local', model: 'llama-3', pricing: { input_per_1m: 0.1, output_per_1m: 0.2 } }] }),
    agent, policy({ allow: ['llama'], budget: { daily_usd: 5 } }))), []);
  // No budget, or the route denied by the budgeted policy: nothing to bind, nothing to refuse.
  assert.deepEqual(problems(yaml(local, demo, route({}), agent, policy({ allow: ['llama'], rate: { rpm: 5 } }))), []);
  assert.deepEqual(problems(yaml(local, demo, route({}), doc('Model', 'other', { targets: [{ provider: 'demo', model: 'd' }] }), agent,
    policy({ allow: ['*'], deny: ['llama'], budget: { daily_usd: 5 } }))), []);
  // Built-in prices count (by upstream model name).
  assert.deepEqual(problems(yaml(local, doc('Model', 'mini', { targets: [{ provider: 'local', model: 'gpt-4o-mini' }] }), agent, policy({ allow: ['mini'], budget: { daily_usd: 5 } }))), []);
});

test('pricing is either both per-1M prices or only free: true', () => {
  const with_ = (pricing: unknown) => problems(yaml(local, doc('Model', 'm', { targets: [{ provider: 'local', model: 'x' }], pricing })));
  assert.match(with_({ free: true, input_per_1m: 1 }).join('\n'), /spec\.pricing: set input_per_1m and output_per_1m/);
  assert.match(with_({ input_per_1m: 1 }).join('\n'), /spec\.pricing: set input_per_1m and output_per_1m/);
  assert.match(with_({ free: false }).join('\n'), /spec\.pricing\.free/);
  assert.deepEqual(with_({ input_per_1m: 1, output_per_1m: 2, cached_input_per_1m: 0.5 }), []);
});

test('the demo config and the seed fixture still load', async () => {
  for (const f of ['aam.yaml', 'test/fixtures/policy-seed.yaml']) {
    const r = await runCli(['validate', f], { env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
    assert.equal(r.code, 0, `${f}: ${r.stderr}`);
  }
});

test('the config digest names the content, not where the file lies (fleet drift compares digests)', () => {
  const text = yaml(doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }));
  const other = yaml(doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }));
  const at = (file: string, t = text) => parseConfigTexts([{ file, text: t }]).digest;
  assert.equal(at('/etc/aam/aam.yaml'), at('/srv/replica-2/config.yaml'), 'same config at another path: same digest');
  assert.notEqual(at('/etc/aam/aam.yaml'), at('/etc/aam/aam.yaml', other), 'another config: another digest');
  // A directory's file names still count: they decide the merge order.
  const dir = (a: string, b: string) => parseConfigTexts([{ file: `/x/${a}`, text }, { file: `/x/${b}`, text: other }]).digest;
  assert.equal(dir('1.yaml', '2.yaml'), parseConfigTexts([{ file: '/y/1.yaml', text }, { file: '/y/2.yaml', text: other }]).digest);
  assert.notEqual(dir('1.yaml', '2.yaml'), dir('1.yaml', '3.yaml'));
});

test('a value of the wrong type is named as found, not reported missing (zod issues carry no input)', () => {
  const budget = (b: unknown) => problems(yaml(demo, doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), agent, policy({ allow: ['m'], budget: b })));
  assert.deepEqual(budget({ daily_usd: '75' }), ['spec.models.budget.daily_usd: expected a number, not the string "75"']);
  assert.deepEqual(budget({ daily_usd: null }), ['spec.models.budget.daily_usd: expected a number, not null (an empty value)']);
  assert.deepEqual(problems(yaml(doc('Provider', 'p', { type: 'demo', optional: 'yes' }))), ['spec.optional: expected true or false, not the string "yes"']);
  assert.deepEqual(problems(yaml(demo, agent, doc('AgentPolicy', 'x', { identity: { agent: 'a' }, models: { allow: 'm' } }))), ['spec.models.allow: expected a list, not the string "m"']);
  // Before: zod's 'Invalid option: expected one of "fallback"|"loadbalance"|...' for every closed list but kind.
  assert.deepEqual(problems(yaml(doc('Model', 'm', { strategy: 'fastest', targets: [{ provider: 'demo', model: 'd' }] }), demo)), ['spec.strategy: must be one of fallback, loadbalance, latency, cost, not the string "fastest"']);
  assert.deepEqual(problems(yaml(doc('McpServer', 's', { transport: 'htp', url: 'http://127.0.0.1:1/mcp' }))), ['spec.transport: must be one of streamable-http, sse, stdio, not the string "htp"']);
  // A schema's own words stay (a literal with its reason).
  assert.deepEqual(problems(yaml(agent, doc('AgentPolicy', 'x', { identity: { agent: 'a' }, credentials: { expose_to_agent: true } }))), ['spec.credentials.expose_to_agent: must be false (aam never hands credentials to agents), not the boolean true']);
  // Absent is still "missing".
  assert.deepEqual(problems(yaml(doc('Model', 'm', {}))), ['spec.targets: required field is missing (expected a list)']);
});

test('a misspelt field gets the nearest real one (or the list of fields there); a reference to a refused document says it is invalid, not unknown', () => {
  const route = (spec: Record<string, unknown>) => doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }], ...spec });
  const refs = problems(yaml(demo, route({ stratgy: 'fallback' }), agent, doc('AgentPolicy', 'x', { identity: { agnet: 'a', agent: 'a' }, models: { allow: ['m'], budgt: {} }, tools: [{ resource: 'r', actoins: ['read'] }], colour: 'blue' })));
  assert.deepEqual(refs, [
    'spec: unknown field "stratgy" (did you mean strategy?)',
    'spec.identity: unknown field "agnet" (did you mean agent?)',
    'spec.models: unknown field "budgt" (did you mean budget?)',
    'spec.tools[0]: unknown field "actoins" (did you mean actions?)',
    'spec: unknown field "colour" (fields here: mode, identity, models, tools, agents, max_delegation_depth, credentials, audit, guardrails)',
  ]);
  // The policy is fine; only the route it allows was refused: before, "unknown Model route "m" (defined: none)".
  assert.deepEqual(problems(yaml(demo, route({ stratgy: 'fallback' }), agent, policy({ allow: ['m'] }))), [
    'spec: unknown field "stratgy" (did you mean strategy?)',
    'spec.models.allow[0]: Model "m" is defined but invalid (see aam.yaml document 2, listed above)',
  ]);
  assert.deepEqual(problems(yaml(doc('McpServer', 's', { transport: 'stdio', command: 'x', tools: { t: { acton: 'a' } } }))), ['spec.tools.t: unknown field "acton" (did you mean action?)']);
});

test('a reference to a missing document names the nearest name (a typo), else the names there are, else the kind to add; the same words for every kind of reference', () => {
  const cred = doc('Credential', 'openai-key', { env: 'OPENAI_API_KEY' });
  const tool = (credential: string) => doc('HttpTool', 'crm', { baseUrl: 'http://127.0.0.1:1', resource: 'crm', credential, actions: { read: { method: 'GET', path: '/a' } } });
  // Before: "unknown Credential "opnai-key"" with no hint (HttpTool, McpServer, credentials.allow, identity.agent, a2a),
  // and "(defined: none defined)" where there was none.
  assert.deepEqual(problems(yaml(cred, tool('opnai-key'))), ['spec.credential: unknown Credential "opnai-key" (did you mean openai-key?)']);
  assert.deepEqual(problems(yaml(cred, tool('vault-token'))), ['spec.credential: unknown Credential "vault-token" (defined: openai-key)']);
  assert.deepEqual(problems(yaml(tool('vault-token'))), ['spec.credential: unknown Credential "vault-token" (there is none: add a kind: Credential document)']);
  assert.deepEqual(problems(yaml(demo, agent, doc('AgentPolicy', 'p', { identity: { agent: 'b' }, models: { allow: ['nope'] } }))), [
    'spec.identity.agent: unknown Agent "b" (did you mean a?)',
    'spec.models.allow[0]: unknown Model route "nope" (there is none: add a kind: Model document)',
  ]);
});

test('a number or list out of its bounds says the bound and what was found (before: zod\'s "Too big: expected number to be <=10")', () => {
  assert.deepEqual(problems(yaml(demo, doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd', timeouts: { connect_ms: -5 } }], retries: { attempts: 20 }, breaker: { failures: 0 } }))), [
    'spec.targets[0].timeouts.connect_ms: must be more than 0, not -5',
    'spec.retries.attempts: must be at most 10, not 20',
    'spec.breaker.failures: must be at least 1, not 0',
  ]);
  assert.deepEqual(problems(yaml(doc('Guardrail', 'g', { on: [], action: 'block' }))), ['spec.on: must be at least 1 item (it has 0)']);
});

test('the document head is described like the spec: a misspelt metadata or name gets the nearest real one, a missing field is "missing", a YAML syntax error has its line', () => {
  const at = (text: string): string[] => {
    try { parseConfigTexts([{ file: 'aam.yaml', text }]); return []; } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      return e.issues.map((i) => `${i.line ?? '-'} ${i.path}: ${i.message}`);
    }
  };
  const head = 'apiVersion: access.envisionai.dev/v1\nkind: Provider\n';
  // Before: 'metadata: Invalid input: expected object, received undefined' and ': Unrecognized key: "metdata"'.
  assert.deepEqual(at(`${head}metdata: { name: p }\nspec: { type: demo }\n`), ['1 metadata: required field is missing (expected a mapping)', '1 : unknown field "metdata" (did you mean metadata?)']);
  assert.deepEqual(at(`${head}metadata: { nam: p }\nspec: { type: demo }\n`), ['3 metadata.name: required field is missing (expected a string)', '3 metadata: unknown field "nam" (did you mean name?)']);
  assert.deepEqual(at('- a\n- b\n'), ['1 : expected a mapping, not a list']);
  assert.deepEqual(at('apiVersion: access.envisionai.dev/v1\nmetadata: { name: p }\nspec: {}\n'), [`1 kind: must be one of ${['Credential', 'Provider', 'Model', 'Agent', 'AgentPolicy', 'McpServer', 'HttpTool', 'Guardrail', 'TrustDomain', 'RoleBinding'].join(', ')} (none given)`]);
  // Before: 'kind: kind must be ...' and 'apiVersion: apiVersion must be ...' (the field named twice).
  assert.deepEqual(at('apiVersion: v2\nkind: Provider\nmetadata: { name: p }\nspec: { type: demo }\n'), ['1 apiVersion: must be access.envisionai.dev/v1, not the string "v2"']);
  // A misspelt value of a closed list gets the nearest option too.
  assert.deepEqual(at(`${head}metadata: { name: p }\nspec: { type: openia }\n`), ['4 spec.type: must be one of openai, openai-compatible, anthropic, gemini, azure-openai, bedrock, vertex, demo, not the string "openia" (did you mean openai?)']);
  // Before: 'spec: required field is missing (expected nonoptional)'.
  assert.deepEqual(at(`${head}metadata: { name: p }\n`), ['1 spec: required field is missing (expected a value)']);
  // Before: no line (the yaml library fills linePos only with prettyErrors).
  assert.deepEqual(at(`${head}metadata: { name: p }\nspec:\n\ttype: demo\n`), ['5 : YAML syntax: Tabs are not allowed as indentation']);
});

test('a config directory with no YAML file is refused (before: "OK (0 providers, 0 models, ...)" and a gateway that refused every request)', async () => {
  const empty = join(dir, 'empty-config-dir');
  mkdirSync(empty);
  writeFileSync(join(empty, 'README.txt'), 'not a config');
  const r = await runCli(['validate', empty], { env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /empty-config-dir: a directory with no \*\.yaml or \*\.yml file: nothing to load/);
});

test('TrustDomain absent_kid_seconds: how long a kid its JWKS lacked is refused without a fetch, beside refresh_seconds (default 60), checked with a clear error', async () => {
  const { trustDomainsFromConfig } = await import('../src/identity/jwks-cache.ts');
  const td = (spec: Record<string, unknown>) => yaml(doc('TrustDomain', 'partner.example', { jwks_url: 'https://partner.example/jwks.json', ...spec }));
  const sources = (text: string) => trustDomainsFromConfig(parseConfigTexts([{ file: 'aam.yaml', text }]));
  assert.equal(sources(td({ absent_kid_seconds: 15 }))[0].absentKidSeconds, 15);
  assert.equal(sources(td({}))[0].absentKidSeconds, 60);
  assert.equal(sources(td({ absent_kid_seconds: 0 }))[0].absentKidSeconds, 0);
  assert.deepEqual(problems(td({ absent_kid_seconds: 7200 })), ['spec.absent_kid_seconds: at most 3600: a kid refused longer keeps a partner\'s new key out for as long after a rotation; give 0 to 3600 (default 60)']);
  assert.deepEqual(problems(td({ absent_kid_seconds: 1.5 })), ['spec.absent_kid_seconds: expected int, not the number 1.5']);
  assert.deepEqual(problems(td({ absent_kid_seconds: '60s' })), ['spec.absent_kid_seconds: expected a number, not the string "60s"']);
  assert.deepEqual(problems(td({ absent_kid_seconds: -1 })), ['spec.absent_kid_seconds: must be 0 (look the kid up every time, at most once a second) or more seconds, to 3600 (default 60)']);
});
