// Provider catalogs (`provider/model` without a Model document) and route names with "/" through
// the real gateway against the fake upstream (the policy side: test/catalog-policy.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { chat } from './helpers/e2e.ts';

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

test('GET /v1/models: a "*" OpenAI-compatible catalog lists what its upstream serves (its GET /models, with the credential, kept 60 s), filtered by policy', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Credential', 'loc-key', { env: 'TEST_LOC_KEY' }),
    doc('Provider', 'loc', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, credential: 'loc-key', models: '*' }),
    doc('Provider', 'down', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', models: '*' }),
    doc('Model', 'plain', { targets: [{ provider: 'loc', model: 'ok' }] }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['plain', 'loc/*', 'down/*'], deny: ['loc/fail-*'] } }),
  ), { TEST_LOC_KEY: 'sk-loc-secret-0123456789' });
  try {
    const key = gw.key('bot');
    const list = async () => ((await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    const ids = await list();
    for (const want of ['plain', 'loc/ok', 'loc/tools', 'loc/cut-stream']) assert.ok(ids.includes(want), `${want} in ${ids.join(', ')}`);
    for (const not of ['loc/fail-500', 'loc/fail-429']) assert.ok(!ids.includes(not), `${not} is denied, so not listed`);
    assert.ok(!ids.some((id) => id.startsWith('down/')), 'an upstream that does not answer lists nothing (the rest still does)');
    const asked = fake.requests.filter((r) => r.method === 'GET' && r.path === '/v1/models');
    assert.equal(asked.length, 1);
    assert.equal(asked[0].headers.authorization, 'Bearer sk-loc-secret-0123456789', 'asked with the provider\'s credential');
    assert.deepEqual(await list(), ids, 'the same list from what was kept');
    assert.equal(fake.requests.filter((r) => r.method === 'GET').length, 1, 'kept: not asked again');
    // A listed model answers as listed.
    const r = await chat(gw.url, key, 'loc/tools', 'hi');
    assert.equal(r.status, 200, r.text);
  } finally { await gw.close(); await fake.close(); }
});

test('GET /v1/models of a "*" catalog: the listing is kept per credential as injected for the caller (a caller whose policy may not use it lists nothing of it), and the ids pass the caller\'s output guardrails', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Credential', 'loc-key', { env: 'TEST_LOC_KEY' }),
    doc('Credential', 'another-key', { env: 'TEST_LOC_KEY' }),
    doc('Provider', 'loc', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, credential: 'loc-key', models: '*' }),
    doc('Guardrail', 'no-tools-word', { on: ['output'], keywords: ['tools'], action: 'block' }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other' }),
    doc('Agent', 'guarded', { workload: 'spiffe://test/agent/guarded' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['loc/*'] }, credentials: { allow: ['loc-key'] } }),
    doc('AgentPolicy', 'o', { identity: { agent: 'other' }, models: { allow: ['loc/*'] }, credentials: { allow: ['another-key'] } }),
    doc('AgentPolicy', 'g', { identity: { agent: 'guarded' }, models: { allow: ['loc/*'] }, guardrails: ['no-tools-word'] }),
  ), { TEST_LOC_KEY: 'sk-loc-secret-0123456789' });
  try {
    const list = async (agent: string) => ((await (await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${gw.key(agent)}` } })).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    const ids = await list('bot');
    assert.ok(ids.includes('loc/ok') && ids.includes('loc/tools'), ids.join(', '));
    // Kept 60 s, but not for a caller whose policy may not use the credential it was asked with.
    assert.deepEqual(await list('other'), [], 'credentials.allow is checked on every listing');
    // Same credential: the kept listing; the ids as the caller's output guardrails leave them.
    const guarded = await list('guarded');
    assert.ok(guarded.includes('loc/ok'), guarded.join(', '));
    assert.ok(!guarded.includes('loc/tools'), 'an id an output guardrail blocks is withheld');
    assert.equal(fake.requests.filter((r) => r.method === 'GET' && r.path === '/v1/models').length, 1, 'one credential, one upstream listing');
  } finally { await gw.close(); await fake.close(); }
});
