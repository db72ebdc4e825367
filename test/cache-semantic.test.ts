import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { SemanticCache, textForEmbedding, contextHash, embeddingFromResult, type SemanticScope } from '../src/cache/semantic.ts';
import { embedSync, testEmbedder } from '../src/cache/test-embedder.ts';
import type { CachedEntry } from '../src/cache/store.ts';
import type { ChatRequest, ChatResult } from '../src/providers/types.ts';

const T0 = 1_800_000_000_000;
const TH = 0.8;
const A: SemanticScope = { scopeKey: 'agent:spiffe://prod/agent/a', route: 'fast', routeVersion: 'v1' };
const B: SemanticScope = { ...A, scopeKey: 'agent:spiffe://prod/agent/b' };
const embed = testEmbedder();

const ask = (q: string, extra: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'fast', messages: [{ role: 'system', content: 'Answer in one word.' }, { role: 'user', content: q }], ...extra,
});
const answer = (text: string, scope = A): CachedEntry => ({
  kind: 'chat', createdAt: T0, route: scope.route, scopeKey: scope.scopeKey, routeVersion: scope.routeVersion,
  result: { id: 'c', model: 'm', created: 1, text, toolCalls: [], finishReason: 'stop' } satisfies ChatResult,
});

async function remember(c: SemanticCache, req: ChatRequest, text: string, scope = A, ttl = 60): Promise<void> {
  const { hit, probe } = await c.lookup(req, scope, TH, { now: T0 });
  assert.equal(hit, null);
  assert.ok(probe);
  c.store(scope, probe, answer(text, scope), ttl, T0);
}
const textOf = (h: { entry: CachedEntry } | null) => (h?.entry.result as ChatResult | undefined)?.text;

function tempDir(t: { after(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'aam-sem-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('test embedder calibration: paraphrases >= 0.85, other entity < 0.7, unrelated < 0.35', () => {
  const cos = (a: string, b: string) => { const x = embedSync(a), y = embedSync(b); let s = 0; for (let i = 0; i < x.length; i++) s += x[i] * y[i]; return s; };
  const q = 'What is the capital of France?';
  for (const p of ["what's France's capital city", 'Which city is the capital of France?', 'Tell me the capital of france']) assert.ok(cos(q, p) >= 0.85, `${p}: ${cos(q, p)}`);
  assert.ok(cos(q, 'What is the capital of Germany?') < 0.7);
  assert.ok(cos(q, 'What is the population of France?') < 0.7);
  // Every pair of unrelated questions (66 pairs) stays far below the 0.8 test threshold; the
  // residue is hash collisions at dim 256 (max 0.29, mean 0.05 when written).
  const unrelated = [q, 'How do I bake sourdough bread?', 'Who wrote Hamlet?', 'Summarise the Q3 revenue report', 'Translate good morning into Spanish',
    'Write a haiku about autumn leaves', 'What is the boiling point of water at sea level?', 'List the planets in the solar system',
    'Explain quantum entanglement simply', 'Best way to learn TypeScript generics', 'Convert 100 USD to EUR', 'Draft an email declining a meeting'];
  for (let i = 0; i < unrelated.length; i++) for (let j = i + 1; j < unrelated.length; j++) {
    assert.ok(Math.abs(cos(unrelated[i], unrelated[j])) < 0.35, `${unrelated[i]} / ${unrelated[j]}: ${cos(unrelated[i], unrelated[j])}`);
  }
});

test('semantic hit on a paraphrase, miss on an unrelated or near-template question', async () => {
  const c = new SemanticCache(null, { embed, sweepIntervalMs: 0 });
  await remember(c, ask('What is the capital of France?'), 'Paris');
  const hit = await c.lookup(ask("what's France's capital city"), A, TH, { now: T0 + 1 });
  assert.equal(textOf(hit.hit), 'Paris');
  assert.ok(hit.hit!.similarity >= 0.85);
  assert.equal((await c.lookup(ask('How do I bake sourdough bread?'), A, TH, { now: T0 })).hit, null);
  assert.equal((await c.lookup(ask('What is the capital of Germany?'), A, TH, { now: T0 })).hit, null);
  // A higher threshold turns the paraphrase into a miss.
  assert.equal((await c.lookup(ask('Which city is the capital of France?'), A, 0.99, { now: T0 })).hit, null);
  assert.deepEqual([c.stats().hits, c.stats().entries], [1, 1]);
});

test('never across scopes: agent B does not get agent A\'s answer', async () => {
  const c = new SemanticCache(null, { embed, sweepIntervalMs: 0 });
  await remember(c, ask('What is the capital of France?'), 'Paris (for A)');
  assert.equal((await c.lookup(ask('What is the capital of France?'), B, TH, { now: T0 })).hit, null, 'identical question, other agent');
  await remember(c, ask('What is the capital of France?'), 'Paris (for B)', B);
  assert.equal(textOf((await c.lookup(ask('capital of France'), B, TH, { now: T0 })).hit), 'Paris (for B)');
  assert.equal(textOf((await c.lookup(ask('capital of France'), A, TH, { now: T0 })).hit), 'Paris (for A)');
});

test('the rest of the request must match exactly: system prompt, history, parameters, route, version', async () => {
  const c = new SemanticCache(null, { embed, sweepIntervalMs: 0 });
  await remember(c, ask('What is the capital of France?'), 'Paris');
  const miss = async (req: ChatRequest, scope = A) => assert.equal((await c.lookup(req, scope, TH, { now: T0 })).hit, null, JSON.stringify(req).slice(0, 120));
  await miss({ ...ask('What is the capital of France?'), messages: [{ role: 'system', content: 'Answer in French.' }, { role: 'user', content: 'What is the capital of France?' }] });
  await miss({ ...ask('x'), messages: [{ role: 'system', content: 'Answer in one word.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'What is the capital of France?' }] });
  await miss(ask('What is the capital of France?', { temperature: 1.5 }));
  await miss(ask('What is the capital of France?', { tools: [{ type: 'function', function: { name: 'lookup' } }] }));
  await miss(ask('What is the capital of France?'), { ...A, route: 'other' });
  await miss(ask('What is the capital of France?'), { ...A, routeVersion: 'v2' });
  // Delivery fields still do not matter.
  assert.ok((await c.lookup(ask('What is the capital of France?', { stream: true, user: 'u1' }), A, TH, { now: T0 })).hit);
});

test('not eligible: last message not user text (images, tool results) -> no probe, no hit', async () => {
  const c = new SemanticCache(null, { embed, sweepIntervalMs: 0 });
  const img = ask('x');
  img.messages[1] = { role: 'user', content: [{ type: 'text', text: 'What is in this picture?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] };
  assert.equal(textForEmbedding(img), null);
  assert.deepEqual(await c.lookup(img, A, TH), { hit: null, probe: null });
  assert.equal(textForEmbedding({ model: 'm', messages: [{ role: 'tool', content: '42', tool_call_id: 'c' }] }), null);
  assert.equal(textForEmbedding(ask('  hello  ')), 'hello');
  assert.equal(textForEmbedding(ask('word '.repeat(2000))), null, 'too long to compare by meaning');
  assert.notEqual(contextHash(ask('a')), contextHash({ ...ask('a'), messages: [{ role: 'system', content: 'other' }, { role: 'user', content: 'a' }] }));
  assert.equal(contextHash(ask('a')), contextHash(ask('b')), 'the last user message is compared by meaning, not hashed');
});

test('TTL, per-scope LRU cap and pruneRoutes', async () => {
  const c = new SemanticCache(null, { embed, maxPerScope: 2, sweepIntervalMs: 0 });
  await remember(c, ask('capital of France'), 'Paris', A, 10);
  assert.equal((await c.lookup(ask('capital of France'), A, TH, { now: T0 + 10_000 })).hit, null, 'expired');
  await remember(c, ask('Who wrote Hamlet?'), 'Shakespeare');
  await remember(c, ask('How do I bake sourdough bread?'), 'Slowly');
  await remember(c, ask('tallest mountain on earth'), 'Everest');
  await remember(c, ask('tallest mountain on earth'), 'Everest (B)', B);
  assert.equal(c.stats().entries, 3, 'two in A (cap), one in B');
  assert.equal((await c.lookup(ask('Who wrote Hamlet?'), A, TH, { now: T0 })).hit, null, 'oldest in A evicted');
  assert.ok((await c.lookup(ask('tallest mountain on earth'), B, TH, { now: T0 })).hit, 'B untouched by A\'s cap');
  assert.equal(c.pruneRoutes(new Map([['fast', 'v2']])), 3, 'route version changed: everything goes');
  assert.equal(c.stats().entries, 0);
});

test('global bound on entries evicts least recently used across scopes', async () => {
  const c = new SemanticCache(null, { embed, maxEntries: 2, sweepIntervalMs: 0 });
  await remember(c, ask('capital of France'), 'Paris', A);
  await remember(c, ask('capital of France'), 'Paris', B);
  assert.ok((await c.lookup(ask('capital of France'), A, TH, { now: T0 })).hit); // A is now most recent
  await remember(c, ask('Who wrote Hamlet?'), 'Shakespeare', { ...A, scopeKey: 'team:x' });
  assert.ok((await c.lookup(ask('capital of France'), A, TH, { now: T0 })).hit);
  assert.equal((await c.lookup(ask('capital of France'), B, TH, { now: T0 })).hit, null);
});

test('persisted across reopen (embedding as BLOB); stores the probe without embedding twice', async (t) => {
  const dir = tempDir(t);
  let calls = 0;
  const counting = async (s: string) => { calls++; return embed(s); };
  let db = openDatabase(dir);
  let c = new SemanticCache(db, { embed: counting, sweepIntervalMs: 0 });
  await remember(c, ask('What is the capital of France?'), 'Paris');
  assert.equal(calls, 1);
  c.close();
  db.close();
  db = openDatabase(dir);
  c = new SemanticCache(db, { embed, sweepIntervalMs: 0 });
  assert.equal(c.stats().entries, 1);
  const { hit } = await c.lookup(ask("what's France's capital city"), A, TH, { now: T0 });
  assert.equal(textOf(hit), 'Paris');
  assert.equal((await c.lookup(ask("what's France's capital city"), B, TH, { now: T0 })).hit, null, 'scope survives the restart');
  c.clear();
  c.close();
  db.close();
  db = openDatabase(dir);
  c = new SemanticCache(db, { embed, sweepIntervalMs: 0 });
  assert.equal(c.stats().entries, 0, 'clear() removed the rows');
  c.close();
  db.close();
});

test('embeddingFromResult reads float arrays and base64 float32', () => {
  const v = [0.5, -0.25, 1];
  assert.deepEqual([...embeddingFromResult({ model: 'e', data: [{ index: 0, embedding: v }] })], v);
  const b64 = Buffer.from(new Float32Array(v).buffer).toString('base64');
  assert.deepEqual([...embeddingFromResult({ model: 'e', data: [{ index: 0, embedding: b64 }] })], v);
  assert.throws(() => embeddingFromResult({ model: 'e', data: [] }), /no vectors/);
  assert.throws(() => embeddingFromResult({ model: 'e', data: [{ index: 0, embedding: Buffer.from([1, 2, 3]).toString('base64') }] }), /float32/);
});
