import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheKey, routeVersion, scopeKey, stableStringify, type CacheScope } from '../src/cache/key.ts';
import type { ChatRequest, EmbeddingsRequest } from '../src/providers/types.ts';

const A: CacheScope = { mode: 'agent', agent: 'spiffe://prod/agent/a', team: 'finance' };
const V = 'v1';
const base = (): ChatRequest => ({
  model: 'fast', temperature: 0.2, max_tokens: 100,
  messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'What is the capital of France?' }],
});
const k = (req: ChatRequest, scope = A, version = V, route = 'fast') => cacheKey('chat', route, req, scope, version);

test('key is sha256 hex and stable', () => {
  assert.match(k(base()), /^[0-9a-f]{64}$/);
  assert.equal(k(base()), k(base()));
});

test('field order does not matter, at any depth', () => {
  const r1: ChatRequest = { ...base(), response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { a: 1, b: 2 } } } };
  const r2 = JSON.parse(JSON.stringify({
    messages: r1.messages, response_format: { json_schema: { schema: { b: 2, a: 1 }, name: 'x' }, type: 'json_schema' },
    max_tokens: 100, temperature: 0.2, model: 'fast',
  })) as ChatRequest;
  assert.equal(k(r1), k(r2));
  assert.equal(stableStringify({ b: 1, a: { d: 1, c: [2, { y: 1, x: 0 }] } }), '{"a":{"c":[2,{"x":0,"y":1}],"d":1},"b":1}');
});

test('fields that change the answer change the key', () => {
  const b = k(base());
  assert.notEqual(k({ ...base(), temperature: 0.3 }), b);
  assert.notEqual(k({ ...base(), max_tokens: 101 }), b);
  assert.notEqual(k({ ...base(), tools: [{ type: 'function', function: { name: 'f' } }] }), b);
  assert.notEqual(k({ ...base(), response_format: { type: 'json_object' } }), b);
  assert.notEqual(k({ ...base(), extra: { seed: 7 } }), b);
  assert.notEqual(k({ ...base(), anthropicExtra: { top_k: 5 } }), b);
  assert.notEqual(k({ ...base(), messages: [...base().messages.slice(0, 1), { role: 'user', content: 'What is the capital of Spain?' }] }), b);
  assert.notEqual(k({ ...base(), messages: [{ role: 'system', content: 'be verbose' }, base().messages[1]] }), b);
});

test('delivery and bookkeeping fields do not change the key', () => {
  const b = k(base());
  assert.equal(k({ ...base(), stream: true, stream_options: { include_usage: true } }), b);
  assert.equal(k({ ...base(), user: 'someone' }), b);
  assert.equal(k({ ...base(), extra: { metadata: { x: '1' }, store: true, service_tier: 'flex' } }), b);
  assert.equal(k({ ...base(), anthropicExtra: { metadata: { user_id: 'u' } } }), b);
  // A single text part is the same message as the bare string.
  const parts = base();
  parts.messages[1] = { role: 'user', content: [{ type: 'text', text: 'What is the capital of France?' }] };
  assert.equal(k(parts), b);
});

test('scope, route and route version are part of the key', () => {
  const b = k(base());
  const B: CacheScope = { mode: 'agent', agent: 'spiffe://prod/agent/b', team: 'finance' };
  assert.notEqual(k(base(), B), b, 'another agent never shares an agent-scoped entry');
  assert.notEqual(k(base(), A, 'v2'), b);
  assert.notEqual(k(base(), A, V, 'other-route'), b);
  const teamA: CacheScope = { ...A, mode: 'team' };
  const teamB: CacheScope = { ...B, mode: 'team' };
  assert.equal(k(base(), teamA), k(base(), teamB), 'team scope is shared within a team');
  assert.notEqual(k(base(), teamA), k(base(), { ...teamB, team: 'legal' }));
  assert.equal(k(base(), { ...A, mode: 'global' }), k(base(), { ...B, team: 'legal', mode: 'global' }));
});

test('team scope without a team falls back to the agent (fail closed)', () => {
  assert.equal(scopeKey({ mode: 'team', agent: 'spiffe://x/a' }), 'agent:spiffe://x/a');
  assert.notEqual(k(base(), { mode: 'team', agent: 'spiffe://x/a' }), k(base(), { mode: 'team', agent: 'spiffe://x/b' }));
});

test('chat and embeddings keys differ; embeddings ignore user, keep format and dimensions', () => {
  const e: EmbeddingsRequest = { model: 'emb', input: 'hello' };
  const ke = (r: EmbeddingsRequest) => cacheKey('embeddings', 'emb', r, A, V);
  assert.equal(ke(e), ke({ ...e, user: 'x' }));
  assert.equal(ke(e), ke({ ...e, encoding_format: 'float' }));
  assert.notEqual(ke(e), ke({ ...e, encoding_format: 'base64' }));
  assert.notEqual(ke(e), ke({ ...e, dimensions: 256 }));
  assert.notEqual(ke(e), ke({ ...e, input: ['hello'] }));
});

test('routeVersion changes with targets, not with pricing or timeouts', () => {
  const spec = { targets: [{ provider: 'openai', model: 'gpt-4o' }] };
  const v = routeVersion(spec);
  assert.equal(routeVersion({ ...spec, strategy: 'fallback' }), v);
  assert.equal(routeVersion({ targets: [{ provider: { name: 'openai' }, model: 'gpt-4o', weight: 1 }] }), v, 'compiled route shape gives the same version');
  assert.notEqual(routeVersion({ targets: [{ provider: 'openai', model: 'gpt-4o-mini' }] }), v);
  assert.notEqual(routeVersion({ targets: [{ provider: 'azure', model: 'gpt-4o' }] }), v);
  assert.notEqual(routeVersion({ ...spec, strategy: 'loadbalance' }), v);
});
