// The model plane's lookup/save facade: route settings, caller scope, cache-control, exact then semantic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelCache, type CacheableRoute, type CacheCaller } from '../src/cache/model-cache.ts';
import { testEmbedder } from '../src/cache/test-embedder.ts';
import type { ChatRequest, ChatResult, EmbeddingsResult } from '../src/providers/types.ts';

const T0 = 1_800_000_000_000;
const route = (cache: CacheableRoute['cache'], model = 'gpt-4o'): CacheableRoute => ({ name: 'fast', targets: [{ provider: 'openai', model }], cache });
const EXACT = route({ mode: 'exact', ttl_seconds: 60, scope: 'agent' });
const alice: CacheCaller = { agent: 'spiffe://prod/agent/alice', team: 'finance' };
const bob: CacheCaller = { agent: 'spiffe://prod/agent/bob', team: 'finance' };
const eve: CacheCaller = { agent: 'spiffe://prod/agent/eve', team: 'legal' };
const ask = (q: string): ChatRequest => ({ model: 'fast', messages: [{ role: 'user', content: q }] });
const result = (text: string): ChatResult => ({ id: 'c', model: 'gpt-4o', created: 1, text, toolCalls: [], finishReason: 'stop', usage: { inputTokens: 5, outputTokens: 2 } });
const textOf = (l: { entry: { result: unknown } | null }) => (l.entry?.result as ChatResult | undefined)?.text;

test('miss then hit; agent scope isolates agents', async () => {
  const c = new ModelCache(null);
  const first = await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 });
  assert.equal(first.status, 'miss');
  assert.equal(first.save(result('hello'), T0), true);
  const again = await c.lookup('chat', EXACT, { ...ask('hi'), stream: true }, alice, {}, { now: T0 + 1 });
  assert.deepEqual([again.status, again.via, textOf(again)], ['hit', 'exact', 'hello']);
  assert.equal(again.entry?.scopeKey, 'agent:spiffe://prod/agent/alice');
  assert.equal((await c.lookup('chat', EXACT, ask('hi'), bob, {}, { now: T0 })).status, 'miss', 'same team, agent scope: no sharing');
  c.close();
});

test('team scope shares within a team only; global shares with all', async () => {
  const c = new ModelCache(null);
  const team = route({ mode: 'exact', scope: 'team' });
  (await c.lookup('chat', team, ask('hi'), alice, {}, { now: T0 })).save(result('team answer'), T0);
  assert.equal(textOf(await c.lookup('chat', team, ask('hi'), bob, {}, { now: T0 })), 'team answer');
  assert.equal((await c.lookup('chat', team, ask('hi'), eve, {}, { now: T0 })).status, 'miss');
  assert.equal((await c.lookup('chat', team, ask('hi'), { agent: 'spiffe://prod/agent/loner' }, {}, { now: T0 })).status, 'miss', 'no team: own scope');
  const global = route({ mode: 'exact', scope: 'global' });
  (await c.lookup('chat', global, ask('hi'), alice, {}, { now: T0 })).save(result('global answer'), T0);
  assert.equal(textOf(await c.lookup('chat', global, ask('hi'), eve, {}, { now: T0 })), 'global answer');
  c.close();
});

test('route without cache is off; default ttl is 300 s', async () => {
  const c = new ModelCache(null);
  const off = await c.lookup('chat', route(undefined), ask('hi'), alice, {});
  assert.equal(off.status, 'off');
  assert.equal(off.save(result('x')), false);
  const noTtl = route({ mode: 'exact' });
  (await c.lookup('chat', noTtl, ask('hi'), alice, {}, { now: T0 })).save(result('x'), T0);
  assert.equal((await c.lookup('chat', noTtl, ask('hi'), alice, {}, { now: T0 + 299_000 })).status, 'hit');
  assert.equal((await c.lookup('chat', noTtl, ask('hi'), alice, {}, { now: T0 + 300_000 })).status, 'miss');
  c.close();
});

test('cache-control: no-cache skips lookup but stores; no-store does neither', async () => {
  const c = new ModelCache(null);
  (await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 })).save(result('old'), T0);
  const nc = await c.lookup('chat', EXACT, ask('hi'), alice, { 'cache-control': 'no-cache' }, { now: T0 + 1 });
  assert.equal(nc.status, 'miss');
  nc.save(result('fresh'), T0 + 1);
  assert.equal(textOf(await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 + 2 })), 'fresh', 'no-cache refreshed the entry');
  const ns = await c.lookup('chat', EXACT, ask('hi'), alice, { 'cache-control': 'no-store' }, { now: T0 + 3 });
  assert.equal(ns.status, 'off');
  assert.equal(ns.save(result('never')), false);
  assert.equal(textOf(await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 + 4 })), 'fresh');
  c.close();
});

test('a content_filter stop is not cached', async () => {
  const c = new ModelCache(null);
  const l = await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 });
  assert.equal(l.save({ ...result(''), finishReason: 'content_filter' }, T0), false);
  assert.equal((await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 })).status, 'miss');
  c.close();
});

test('a route change (new target model) invalidates; pruneRoutes frees the old entries', async () => {
  const c = new ModelCache(null);
  (await c.lookup('chat', EXACT, ask('hi'), alice, {}, { now: T0 })).save(result('from gpt-4o'), T0);
  const changed = route({ mode: 'exact', ttl_seconds: 60, scope: 'agent' }, 'gpt-4o-mini');
  assert.equal((await c.lookup('chat', changed, ask('hi'), alice, {}, { now: T0 })).status, 'miss');
  const sameShape = route({ mode: 'exact', ttl_seconds: 120, scope: 'agent' });
  assert.equal((await c.lookup('chat', sameShape, ask('hi'), alice, {}, { now: T0 })).status, 'hit', 'a cache-settings-only change keeps entries');
  assert.equal(c.pruneRoutes([changed]), 1);
  assert.equal(c.exact.stats().entries, 0);
  c.close();
});

test('embeddings are cached exactly (semantic mode does not apply to them)', async () => {
  const c = new ModelCache(null, { semantic: { embed: testEmbedder() } });
  const r = route({ mode: 'semantic', scope: 'agent', threshold: 0.8 });
  const req = { model: 'fast', input: 'hello' };
  const emb: EmbeddingsResult = { model: 'e', data: [{ index: 0, embedding: [0.1, 0.2] }], usage: { inputTokens: 1, outputTokens: 0 } };
  (await c.lookup('embeddings', r, req, alice, {}, { now: T0 })).save(emb, T0);
  const hit = await c.lookup('embeddings', r, req, alice, {}, { now: T0 });
  assert.deepEqual([hit.status, hit.via], ['hit', 'exact']);
  assert.deepEqual(hit.entry?.result, emb);
  assert.equal(c.semantic.stats().entries, 0);
  c.close();
});

test('semantic mode: paraphrase hits within scope, unrelated and other agents miss', async () => {
  const c = new ModelCache(null);
  const sem = route({ mode: 'semantic', ttl_seconds: 60, scope: 'agent', threshold: 0.8, embedding_model: 'emb' });
  const embed = testEmbedder();
  const first = await c.lookup('chat', sem, ask('What is the capital of France?'), alice, {}, { embed, now: T0 });
  assert.equal(first.status, 'miss');
  first.save(result('Paris'), T0);
  const para = await c.lookup('chat', sem, ask("what's France's capital city"), alice, {}, { embed, now: T0 });
  assert.deepEqual([para.status, para.via, textOf(para)], ['hit', 'semantic', 'Paris']);
  assert.ok(para.similarity! >= 0.8);
  assert.equal((await c.lookup('chat', sem, ask('How do I bake sourdough bread?'), alice, {}, { embed, now: T0 })).status, 'miss');
  assert.equal((await c.lookup('chat', sem, ask("what's France's capital city"), bob, {}, { embed, now: T0 })).status, 'miss');
  // No embed function available: semantic is skipped, exact still works.
  assert.equal((await c.lookup('chat', sem, ask("what's France's capital city"), alice, {}, { now: T0 })).status, 'miss');
  assert.equal((await c.lookup('chat', sem, ask('What is the capital of France?'), alice, {}, { now: T0 })).via, 'exact');
  c.close();
});

test('a failing embedding call degrades to a miss and does not store semantically', async () => {
  const c = new ModelCache(null);
  const sem = route({ mode: 'semantic', scope: 'agent', threshold: 0.8 });
  const broken = async (): Promise<Float32Array> => { throw new Error('embedding route timed out'); };
  const l = await c.lookup('chat', sem, ask('What is the capital of France?'), alice, {}, { embed: broken, now: T0 });
  assert.equal(l.status, 'miss');
  assert.match(l.semanticError ?? '', /embedding route timed out/);
  assert.equal(l.save(result('Paris'), T0), true, 'exact entry still stored');
  assert.equal(c.semantic.stats().entries, 0);
  c.close();
});

test('an answer whose credential is cut across thinking blocks or summary parts is stored scrubbed as a reader joins them: nothing of it in the database, the marker where it starts', async () => {
  const { DatabaseSync } = await import('node:sqlite');
  const { Scrubber } = await import('../src/credentials/scrub.ts');
  const SECRET = 'sk-live-9d8c7b6a5f4e3d2c1b0a';
  const sc = new Scrubber([{ name: 'k', value: SECRET }]);
  const db = new DatabaseSync(':memory:');
  const cache = new ModelCache(db, { scrub: (json) => sc.scrub(json).text, scrubTexts: (texts) => sc.scrubJoined(texts).texts });
  const cut = (at: number) => [`the key is ${SECRET.slice(0, at)}`, `${SECRET.slice(at)} ok`];
  const answers: Array<[string, ChatResult]> = [
    ['two Claude thinking blocks', { ...result('ok'), thinking: cut(9).map((t, i) => ({ type: 'thinking' as const, thinking: t, signature: `sig-${i}` })) }],
    ['three, the middle one all secret', { ...result('ok'), thinking: [`a ${SECRET.slice(0, 4)}`, SECRET.slice(4, 20), `${SECRET.slice(20)} z`].map((t, i) => ({ type: 'thinking' as const, thinking: t, signature: `sig-${i}` })) }],
    ['a reasoning item\'s two summary parts', { ...result('ok'), thinking: [{ type: 'reasoning', summary: cut(14), item: { id: 'rs_1', type: 'reasoning', summary: [], encrypted_content: 'gAAA' } }] }],
    ['summary then raw reasoning', { ...result('ok'), thinking: [{ type: 'reasoning', summary: [cut(3)[0]], content: [cut(3)[1]], item: { id: 'rs_2', type: 'reasoning', summary: [], content: [] } }] }],
  ];
  for (const [what, answer] of answers) {
    const look = await cache.lookup('chat', EXACT, ask(what), alice, {}, { now: T0 });
    assert.ok(look.save(answer, T0), what);
    const rows = db.prepare('SELECT body FROM cache_entries').all().map((r) => String((r as { body: unknown }).body)).join('\n');
    for (const piece of [SECRET.slice(0, 9), SECRET.slice(9), SECRET.slice(4, 20), SECRET.slice(14), SECRET.slice(3)]) assert.ok(!rows.includes(piece), `${what}: "${piece}" of the credential is in the stored entry`);
    const hit = await cache.lookup('chat', EXACT, ask(what), alice, {}, { now: T0 + 1 });
    const th = (hit.entry?.result as ChatResult).thinking ?? [];
    const texts = th.flatMap((b) => (b.type === 'thinking' ? [b.thinking] : b.type === 'reasoning' ? [...b.summary, ...b.content ?? []] : []));
    assert.match(texts.join(''), /^(the key is|a) \[REDACTED:k\] (ok|z)$/, `${what}: the hit's thinking, joined`);
    assert.equal(th.length, answer.thinking?.length, `${what}: every block kept`);
  }
  cache.close();
});
