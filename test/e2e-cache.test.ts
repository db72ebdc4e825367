// End-to-end response cache through the real gateway: exact cache (hit/miss, scopes agent and
// team, cache-control: no-cache, stream replay, policy before cache, $0 usage rows) and the
// semantic cache with a local OpenAI-compatible embeddings server backed by the test embedder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, sseContent, localServer, auditOf, type LocalServer } from './helpers/e2e.ts';
import { embedSync } from '../src/cache/test-embedder.ts';
import type { EmbeddedLimiter } from '../src/policy/limits.ts';

let fake: FakeUpstream;
let embedder: LocalServer;
let embedCalls = 0;
let gw: TestGateway;
const keys: Record<string, string> = {};

function agent(name: string, team: string, models: string[]): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team, environment: 'dev' }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: models } }),
  ];
}

const ALL = ['by-agent', 'by-team', 'semantic', 'embed'];

before(async () => {
  fake = await startFakeUpstream();
  // A tiny OpenAI-compatible embeddings server speaking the deterministic test embedder.
  embedder = await localServer((req, res, body) => {
    if (req.url !== '/v1/embeddings') { res.writeHead(404).end(); return; }
    embedCalls++;
    const b = JSON.parse(body) as { input: string | string[]; model: string; encoding_format?: string };
    const inputs = Array.isArray(b.input) ? b.input : [b.input];
    const data = inputs.map((text, index) => {
      const v = embedSync(String(text));
      return { object: 'embedding', index, embedding: b.encoding_format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v) };
    });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', model: b.model, data, usage: { prompt_tokens: inputs.length, total_tokens: inputs.length } }));
  });
  const config = yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Provider', 'local-embed', { type: 'openai-compatible', baseUrl: `${embedder.url}/v1` }),
    doc('Model', 'by-agent', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 1, output_per_1m: 2 }, cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'by-team', { targets: [{ provider: 'oai', model: 'ok' }], cache: { mode: 'exact', ttl_seconds: 60, scope: 'team' } }),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'local-embed', model: 'test-embedder' }] }),
    doc('Model', 'semantic', { targets: [{ provider: 'oai', model: 'ok' }], cache: { mode: 'semantic', threshold: 0.8, embedding_model: 'embed', ttl_seconds: 60, scope: 'agent' } }),
    doc('Model', 'other', { targets: [{ provider: 'oai', model: 'ok' }] }),
    // Priced: each embedding (1 token from the local embedder) costs $0.005, about half of frugal's
    // budget (which leaves room for the two answers' few millionths of a dollar).
    doc('Model', 'embed-priced', { kind: 'embeddings', targets: [{ provider: 'local-embed', model: 'test-embedder' }], pricing: { input_per_1m: 5000, output_per_1m: 0 } }),
    doc('Model', 'semantic-priced', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 1, output_per_1m: 1 }, cache: { mode: 'semantic', threshold: 0.8, embedding_model: 'embed-priced', ttl_seconds: 60, scope: 'agent' } }),
    doc('Agent', 'frugal', { workload: 'spiffe://test/agent/frugal', team: 'red', environment: 'dev' }),
    doc('AgentPolicy', 'frugal-policy', { identity: { workload: 'spiffe://test/agent/frugal' }, models: { allow: ['semantic-priced'], budget: { daily_usd: 0.0101, scope: 'agent' } } }),
    // Room for one embedding ($0.005), not for a long answer.
    doc('Agent', 'tight', { workload: 'spiffe://test/agent/tight', team: 'red', environment: 'dev' }),
    doc('AgentPolicy', 'tight-policy', { identity: { workload: 'spiffe://test/agent/tight' }, models: { allow: ['semantic-priced'], budget: { daily_usd: 0.00502, scope: 'agent' } } }),
    ...agent('red-1', 'red', ALL),
    ...agent('red-2', 'red', ALL),
    ...agent('blue-1', 'blue', ALL),
    ...agent('outsider', 'red', ['other']),
  );
  gw = await startTestGateway(config);
  for (const a of ['red-1', 'red-2', 'blue-1', 'outsider', 'frugal', 'tight']) keys[a] = gw.key(a);
});
after(async () => { await gw?.close(); await fake?.close(); await embedder?.close(); });

const upstreamCalls = () => fake.requests.filter((r) => r.path === '/v1/chat/completions').length;

test('exact cache: miss then hit; the upstream is called once; the hit is $0 usage marked hit', async () => {
  fake.reset();
  const first = await chat(gw.url, keys['red-1'], 'by-agent', 'cache me please');
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('x-aam-cache'), 'miss');
  const second = await chat(gw.url, keys['red-1'], 'by-agent', 'cache me please');
  assert.equal(second.status, 200);
  assert.equal(second.headers.get('x-aam-cache'), 'hit');
  assert.equal(upstreamCalls(), 1, 'second identical request served from cache');
  const content = (r: typeof first) => (r.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
  assert.equal(content(second), content(first));
  gw.g.rt.usage.flush();
  // Usage is rolled up per minute: this agent's calls on this route so far are exactly these two.
  const usage = gw.g.rt.db.prepare(`SELECT cache, status, sum(requests) AS requests, sum(cost_usd) AS cost_usd, sum(unknown_cost_requests) AS unknown
    FROM usage_rollup WHERE agent = 'red-1' AND route = 'by-agent' GROUP BY cache, status ORDER BY cache`).all().map((r) => ({ ...r }));
  assert.equal(usage.length, 2, JSON.stringify(usage));
  const [hit, miss] = usage;
  assert.equal(miss.cache, 'miss');
  assert.ok(Number(miss.cost_usd) > 0, 'the miss was billed');
  assert.deepEqual(hit, { cache: 'hit', status: 200, requests: 1, cost_usd: 0, unknown: 0 });
  // ...and in the audit trail, with the policy decision that let it through.
  const evs = await auditOf(gw, second.requestId);
  const call = evs.find((e) => e.type === 'model_call');
  assert.equal(call?.model?.cache, 'hit');
  assert.equal(call?.model?.cost_usd, 0);
  assert.equal(evs.find((e) => e.policy)?.policy?.decision, 'allow');
  // The OpenAI SDK sees the same answer on a hit.
  const client = new OpenAI({ apiKey: keys['red-1'], baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'by-agent', messages: [{ role: 'user', content: 'cache me please' }] }).withResponse();
  assert.equal(response.headers.get('x-aam-cache'), 'hit');
  assert.equal(data.choices[0].message.content, content(first));
  assert.equal(upstreamCalls(), 1);
});

test('scope agent: two agents never share an entry, even in the same team', async () => {
  fake.reset();
  const a = await chat(gw.url, keys['red-1'], 'by-agent', 'agent scoped question');
  const b = await chat(gw.url, keys['red-2'], 'by-agent', 'agent scoped question');
  assert.equal(a.headers.get('x-aam-cache'), 'miss');
  assert.equal(b.headers.get('x-aam-cache'), 'miss', 'a second agent must not get the first agent\'s answer');
  assert.equal(upstreamCalls(), 2);
  const b2 = await chat(gw.url, keys['red-2'], 'by-agent', 'agent scoped question');
  assert.equal(b2.headers.get('x-aam-cache'), 'hit');
});

test('scope team: shared within a team, not with another team', async () => {
  fake.reset();
  const a = await chat(gw.url, keys['red-1'], 'by-team', 'team scoped question');
  const b = await chat(gw.url, keys['red-2'], 'by-team', 'team scoped question');
  const c = await chat(gw.url, keys['blue-1'], 'by-team', 'team scoped question');
  assert.deepEqual([a, b, c].map((r) => r.headers.get('x-aam-cache')), ['miss', 'hit', 'miss']);
  assert.equal(upstreamCalls(), 2);
});

test('cache-control: no-cache bypasses the lookup (upstream called) and refreshes the entry', async () => {
  fake.reset();
  await chat(gw.url, keys['red-1'], 'by-agent', 'fresh please');
  const bypass = await chat(gw.url, keys['red-1'], 'by-agent', 'fresh please', { headers: { 'cache-control': 'no-cache' } });
  assert.equal(bypass.status, 200);
  assert.equal(bypass.headers.get('x-aam-cache'), 'miss');
  assert.equal(upstreamCalls(), 2, 'no-cache must reach the upstream');
  const again = await chat(gw.url, keys['red-1'], 'by-agent', 'fresh please');
  assert.equal(again.headers.get('x-aam-cache'), 'hit');
  assert.equal(upstreamCalls(), 2);
});

test('a streamed request after a cached JSON answer is replayed as a stream with the same text', async () => {
  fake.reset();
  const json = await chat(gw.url, keys['blue-1'], 'by-agent', 'replay me as a stream');
  const answer = (json.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
  const raw = await chat(gw.url, keys['blue-1'], 'by-agent', 'replay me as a stream', { stream: true });
  assert.equal(raw.status, 200);
  assert.match(raw.headers.get('content-type') ?? '', /text\/event-stream/);
  assert.equal(raw.headers.get('x-aam-cache'), 'hit');
  const s = sseContent(raw.text);
  assert.equal(s.text, answer);
  assert.equal(s.done, true);
  const client = new OpenAI({ apiKey: keys['blue-1'], baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: 'by-agent', stream: true, messages: [{ role: 'user', content: 'replay me as a stream' }] });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  assert.equal(text, answer);
  assert.equal(upstreamCalls(), 1, 'both streams came from the cache');
});

test('a cache hit still needs policy: a denied agent gets 403, not the cached answer', async () => {
  await chat(gw.url, keys['red-1'], 'by-team', 'team secret plan');
  const hit = await chat(gw.url, keys['red-2'], 'by-team', 'team secret plan');
  assert.equal(hit.headers.get('x-aam-cache'), 'hit');
  // outsider is in team red (same cache scope) but its policy does not allow the route.
  const denied = await chat(gw.url, keys['outsider'], 'by-team', 'team secret plan');
  assert.equal(denied.status, 403);
  assert.equal((denied.json as { error: { code: string } }).error.code, 'policy_denied');
  assert.ok(!denied.text.includes('echo:'), 'no cached content in the denial');
  assert.equal(denied.headers.get('x-aam-cache'), null);
});

test('semantic cache: a paraphrase hits, an unrelated question misses', async () => {
  fake.reset();
  embedCalls = 0;
  const first = await chat(gw.url, keys['red-1'], 'semantic', 'What is the capital of France?');
  assert.equal(first.status, 200, first.text);
  assert.equal(first.headers.get('x-aam-cache'), 'miss');
  const para = await chat(gw.url, keys['red-1'], 'semantic', "what's France's capital city");
  assert.equal(para.headers.get('x-aam-cache'), 'hit', 'paraphrase should be served from the semantic cache');
  const firstText = (first.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
  assert.equal((para.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content, firstText);
  const other = await chat(gw.url, keys['red-1'], 'semantic', 'How do I bake sourdough bread at home?');
  assert.equal(other.headers.get('x-aam-cache'), 'miss');
  assert.equal(upstreamCalls(), 2, 'only the first and the unrelated question reached the upstream');
  assert.ok(embedCalls >= 3, `the embedding route was used (${embedCalls} calls)`);
  // Semantic entries are scoped like exact ones: another agent's paraphrase misses.
  const otherAgent = await chat(gw.url, keys['red-2'], 'semantic', "what's France's capital city");
  assert.equal(otherAgent.headers.get('x-aam-cache'), 'miss');
});

test("semantic cache: the lookup's embedding is an upstream call of its own, in the audit trail and usage with its cost, and charged to the caller's budget, hit or miss", async () => {
  const client = new OpenAI({ apiKey: keys['frugal'], baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const ask = (q: string) => client.chat.completions.create({ model: 'semantic-priced', max_tokens: 16, messages: [{ role: 'user', content: q }] }).withResponse();
  const miss = await ask('What is the capital of Portugal?');
  const hit = await ask("what's Portugal's capital city");
  assert.deepEqual([miss.response.headers.get('x-aam-cache'), hit.response.headers.get('x-aam-cache')], ['miss', 'hit']);
  for (const r of [miss, hit]) {
    const calls = (await auditOf(gw, r.response.headers.get('x-request-id') ?? '', 'model_call')).map((e) => e.model);
    assert.deepEqual(calls.map((m) => [m?.route, m?.provider]), [['embed-priced', 'local-embed'], ['semantic-priced', r === miss ? 'oai' : null]]);
    assert.equal(calls[0]?.cost_usd, 0.005);
    assert.equal(calls[1]?.cost_usd === 0, r === hit, 'the answer itself: a hit is $0');
  }
  gw.g.rt.usage.flush();
  const usage = gw.g.rt.db.prepare(`SELECT sum(cost_usd) AS c, count(*) AS n FROM usage_rollup WHERE agent = 'frugal' AND route = 'embed-priced'`).get() as { c: number };
  assert.equal(usage.c, 0.01, 'both embeddings in the usage');
  // Each embedding was charged as it answered: the next request's embedding is made (the budget
  // is not yet overspent) and charged, and the request (its answer's worst case a few millionths
  // of a dollar) is refused.
  const refused = await ask('And the capital of Spain?').then(() => null, (e: unknown) => e);
  assert.ok(refused instanceof OpenAI.RateLimitError && (refused.error as { code?: string }).code === 'budget_exceeded', String(refused));
  // Its embedding is recorded and the refusal is still the request's decision event.
  const events = await auditOf(gw, refused.headers?.get('x-request-id') ?? '');
  assert.deepEqual(events.map((e) => [e.type, e.model?.route, e.outcome?.status]), [['model_call', 'embed-priced', 200], ['decision', 'semantic-priced', 429]]);
});

test("semantic cache: the lookup's embedding is charged to the budget when the request it was made for is then refused", async () => {
  const client = new OpenAI({ apiKey: keys['tight'], baseURL: `${gw.url}/v1`, maxRetries: 0 });
  // Its worst case (10,000 output tokens: $0.01) is over the budget, embedding or not.
  const refused = await client.chat.completions.create({ model: 'semantic-priced', max_tokens: 10_000, messages: [{ role: 'user', content: 'What is the capital of Norway?' }] }).then(() => null, (e: unknown) => e);
  assert.ok(refused instanceof OpenAI.RateLimitError && (refused.error as { code?: string }).code === 'budget_exceeded', String(refused));
  const events = await auditOf(gw, refused.headers?.get('x-request-id') ?? '');
  assert.deepEqual(events.map((e) => [e.type, e.model?.route, e.model?.cost_usd, e.outcome?.status]), [['model_call', 'embed-priced', 0.005, 200], ['decision', 'semantic-priced', undefined, 429]]);
  // The upstream billed the embedding: the budget is charged with it, nothing left reserved.
  const ledger = (gw.g.rt.limiter as EmbeddedLimiter).ledger.usage('agent:tight');
  assert.deepEqual([Math.round(ledger.daily * 1e6) / 1e6, ledger.reserved], [0.005, 0]);
  gw.g.rt.usage.flush();
  const usage = gw.g.rt.db.prepare(`SELECT sum(cost_usd) AS c FROM usage_rollup WHERE agent = 'tight' AND route = 'embed-priced'`).get() as { c: number };
  assert.equal(usage.c, 0.005, 'and in the usage');
});
