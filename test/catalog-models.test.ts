// Provider catalogs (`provider/model` without a Model document), route names with "/", and globs
// in models.allow / models.deny: the policy engine on its own, then the real gateway against the
// fake upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies, findAgent } from '../src/policy/compile.ts';
import { decide } from '../src/policy/decide.ts';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { chat } from './helpers/e2e.ts';

const agentDoc = doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' });
const providers = [
  doc('Provider', 'openai', { type: 'openai', models: '*' }),
  doc('Provider', 'openai-evil', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', models: '*' }),
  doc('Provider', 'anthropic', { type: 'anthropic', models: ['claude-sonnet-4-5'] }),
];

function compiled(models: Record<string, unknown>, extra: string[] = []) {
  const set = parseConfigTexts([{ file: 't.yaml', text: yaml(...providers, agentDoc, doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models }), ...extra) }]);
  const c = compilePolicies(set);
  const agent = findAgent(c, 'bot')!;
  return (model: string) => decide({ kind: 'model', agent, model }, c);
}

function loadError(...docs: string[]): string {
  try { parseConfigTexts([{ file: 't.yaml', text: yaml(...docs) }]); } catch (e) { if (e instanceof ConfigError) return e.message; throw e; }
  assert.fail('expected a load error');
}

test('glob "openai/*" allows that provider\'s models and nothing across the provider boundary', () => {
  const d = compiled({ allow: ['openai/*'] });
  const ok = d('openai/gpt-4o');
  assert.equal(ok.effect, 'allow');
  assert.equal(ok.rulePath, 'models.allow[0]');
  for (const m of ['openai-evil/gpt-4o', 'anthropic/claude-sonnet-4-5', 'openai', 'xopenai/gpt-4o', 'openai/ft/gpt-4o', 'OPENAI/gpt-4o']) {
    assert.equal(d(m).effect, 'deny', `${m} must not be allowed by openai/*`);
  }
});

test('glob "openai/gpt-4o-*" matches only names with that prefix in the model segment', () => {
  const d = compiled({ allow: ['openai/gpt-4o-*'] });
  assert.equal(d('openai/gpt-4o-mini').effect, 'allow');
  for (const m of ['openai/gpt-4o', 'openai/gpt-4.1', 'openai/gpt-4o-mini/x', 'openai-evil/gpt-4o-mini']) assert.equal(d(m).effect, 'deny', m);
});

test('deny beats allow for globs, within one policy and across policies; default deny is unchanged', () => {
  const d = compiled({ allow: ['openai/*'], deny: ['openai/gpt-4o-*'] });
  assert.equal(d('openai/gpt-4o').effect, 'allow');
  const denied = d('openai/gpt-4o-mini');
  assert.equal(denied.effect, 'deny');
  assert.equal(denied.rulePath, 'models.deny[0]');
  assert.match(denied.reason, /policy "p" models\.deny\[0\] denies model "openai\/gpt-4o-mini"/);
  // Another policy's glob deny wins over this policy's exact allow.
  const other = doc('AgentPolicy', 'q', { identity: { agent: 'bot' }, models: { deny: ['anthropic/*'] } });
  const d2 = compiled({ allow: ['anthropic/claude-sonnet-4-5'] }, [other]);
  assert.equal(d2('anthropic/claude-sonnet-4-5').effect, 'deny');
  assert.equal(d2('anthropic/claude-sonnet-4-5').policy, 'q');
  // Nothing allows it: default deny.
  assert.equal(compiled({ allow: ['anthropic/*'] })('openai/gpt-4o').effect, 'deny');
});

test('load: "/" only in Model names; allow entries must name a route, a catalog model or a glob that reaches one', () => {
  const pol = (models: unknown) => doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models });
  assert.match(loadError(doc('Agent', 'a/b', { workload: 'spiffe://test/agent/x' })), /metadata\.name: .*"\/" only in Model names/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['anthropic/claude-opus-4-1'] })), /not in the catalog of Provider "anthropic"/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['nothing/*'] })), /matches no Model route and no provider catalog/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['*/gpt-4o'] })), /provider part must be literal/);
  assert.match(loadError(doc('Provider', 'x', { type: 'openai', models: ['gpt-*'] })), /no globs in a list/);
  // And the valid forms load: a Model named with "/", catalog literals, globs over routes and catalogs.
  parseConfigTexts([{ file: 't.yaml', text: yaml(...providers, agentDoc, doc('Model', 'team/gpt', { targets: [{ provider: 'openai', model: 'gpt-4o' }] }),
    pol({ allow: ['team/*', 'openai/gpt-4o', 'openai-evil/**', 'anthropic/claude-sonnet-4-5'], deny: ['openai/o3'] })) }]);
});

test('a glob in a budgeted policy makes the load check that every matched route has a price', () => {
  const msg = loadError(
    doc('Provider', 'local', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1' }),
    doc('Model', 'team/llama', { targets: [{ provider: 'local', model: 'llama-3' }] }),
    agentDoc, doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['team/*'], budget: { daily_usd: 5 } } }),
  );
  assert.match(msg, /no price for model "llama-3".*AgentPolicy "p" puts a budget on route "team\/llama"/);
});

test('gateway: catalog models reach the provider by their bare name, under policy, with built-in prices', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai', baseUrl: `${fake.url}/v1`, models: '*' }),
    doc('Provider', 'listed', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, models: ['ok', 'other-model'] }),
    doc('Model', 'oai/special', { targets: [{ provider: 'listed', model: 'ok' }], pricing: { free: true } }),
    doc('Model', 'plain', { targets: [{ provider: 'listed', model: 'ok' }] }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['oai/*', 'listed/ok', 'oai/special', 'oai/gpt-4o-2024-08-06'], deny: ['oai/o3'] } }),
  ));
  try {
    const key = gw.key('bot');
    const r = await chat(gw.url, key, 'oai/gpt-4o', 'hi');
    assert.equal(r.status, 200, r.text);
    assert.equal(fake.requests.at(-1)!.model, 'gpt-4o', 'the provider sees the bare model name');
    assert.equal(r.headers.get('x-aam-target'), 'oai/gpt-4o');
    assert.notEqual(r.headers.get('x-aam-cost-usd'), 'unknown', 'gpt-4o has a built-in price');
    // An explicit Model document wins over the catalog name.
    const special = await chat(gw.url, key, 'oai/special', 'hi');
    assert.equal(special.status, 200, special.text);
    assert.equal(special.headers.get('x-aam-target'), 'listed/ok');
    // Outside a listed catalog: 404 model_not_found naming the catalog.
    const miss = await chat(gw.url, key, 'listed/gpt-4o', 'hi');
    assert.equal(miss.status, 404);
    assert.match(miss.text, /model_not_found/);
    assert.match(miss.text, /not in the catalog of provider \\"listed\\"/);
    // In the catalog but not allowed: 403; explicitly denied by a literal in deny.
    const notAllowed = await chat(gw.url, key, 'listed/other-model', 'hi');
    assert.equal(notAllowed.status, 403, notAllowed.text);
    const denied = await chat(gw.url, key, 'oai/o3', 'hi');
    assert.equal(denied.status, 403);
    assert.match(denied.text, /models\.deny\[0\]/);
    // GET /v1/models: routes with "/", allowed catalog models (priced ones of "*", literal allow names), nothing denied.
    const list = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    const ids = ((await list.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    for (const want of ['oai/special', 'oai/gpt-4o', 'oai/gpt-4o-mini', 'oai/gpt-4o-2024-08-06', 'listed/ok']) assert.ok(ids.includes(want), `${want} in ${ids.join(', ')}`);
    for (const not of ['plain', 'oai/o3', 'listed/other-model']) assert.ok(!ids.includes(not), `${not} must not be listed`);
  } finally { await gw.close(); await fake.close(); }
});

test('gateway: a catalog model without a known price under a budget is refused, naming pricing', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, models: '*' }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['oai/*'], budget: { daily_usd: 5 } } }),
  ));
  try {
    const key = gw.key('bot');
    const r = await chat(gw.url, key, 'oai/my-local-llama', 'hi');
    assert.equal(r.status, 403, r.text);
    const err = (r.json as { error: { code: string; message: string } }).error;
    assert.equal(err.code, 'policy_denied');
    assert.match(err.message, /no known price .*budget.*pricing: \{ input_per_1m, output_per_1m \}/);
    assert.equal(fake.requests.length, 0, 'the upstream never saw the refused call');
    // A catalog model with a built-in price binds the budget and is served.
    const priced = await chat(gw.url, key, 'oai/gpt-4o-mini', 'hi');
    assert.equal(priced.status, 200, priced.text);
  } finally { await gw.close(); await fake.close(); }
});
