// Issue 16: Anthropic prompt caching through aam, end to end with the real SDKs and the fake
// upstream. An Anthropic client's cache_control (system blocks, message blocks, tools, a
// tool_result), thinking blocks and is_error reach an Anthropic upstream as the client wrote them
// (the raw path: its bytes, the route's model in place); OpenAI-format clients' cache_control in
// LiteLLM's form reaches Anthropic too and no other upstream; the upstream's cache writes and
// reads come back in the usage each client reads and are billed at their own prices.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { adapterFor, parseAnthropicRequest } from '../src/providers/index.ts';
import { anthropicChatResponse } from '../src/providers/anthropic.ts';
import { anthropicCodec } from '../src/providers/anthropic-codec.ts';
import { bedrockUsage } from '../src/providers/bedrock.ts';
import { resultToEvents } from '../src/cache/replay.ts';
import type { ChatResult } from '../src/providers/types.ts';
import { costUsd } from '../src/gateway/pricing.ts';
import { builtinPricing, resolvePricing } from '../src/config/pricing.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let key = '';
const PRICE = { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3, cache_write_input_per_1m: 3.75, cache_write_1h_input_per_1m: 6 };

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1` }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'claude-cache', { targets: [{ provider: 'ant', model: 'prompt-cache' }], pricing: PRICE }),
    doc('Model', 'claude-oai', { targets: [{ provider: 'ant', model: 'prompt-cache' }] }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }] }),
    ...agentDocs(['claude-cache', 'claude-oai', 'gpt']),
  ));
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await fake?.close(); });

const last = () => fake.requests[fake.requests.length - 1];

/** Cost billed for a route so far (usage rollup). */
function billed(route: string): number {
  gw.g.rt.usage.flush();
  const row = gw.g.rt.db.prepare(`SELECT sum(cost_usd) AS c FROM usage_rollup WHERE agent = 'tester' AND route = ?`).get(route) as { c: number | null };
  return row.c ?? 0;
}

const cc = { type: 'ephemeral' as const };
const cc1h = { type: 'ephemeral' as const, ttl: '1h' as const };

test('Anthropic SDK: cache_control, thinking and is_error reach the Anthropic upstream byte for byte (raw path); cache writes and reads come back and are priced', async () => {
  const anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
  // The order an SDK user writes; aam's own serialisation would put messages before system and tools.
  const params = {
    model: 'claude-cache',
    max_tokens: 256,
    system: [{ type: 'text' as const, text: 'You answer questions about the contract.' }, { type: 'text' as const, text: '<the whole contract>', cache_control: cc1h }],
    tools: [{ name: 'find_clause', description: 'Find a clause', input_schema: { type: 'object' as const, properties: { topic: { type: 'string' } } }, cache_control: cc }],
    messages: [
      { role: 'user' as const, content: [{ type: 'text' as const, text: 'Who may terminate?', cache_control: cc }] },
      { role: 'assistant' as const, content: [
        { type: 'thinking' as const, thinking: 'I should look up the termination clause.', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h' },
        { type: 'redacted_thinking' as const, data: 'EmwKAhgBEgy3va3pzix/LafPsn4a' },
        { type: 'tool_use' as const, id: 'toolu_01', name: 'find_clause', input: { topic: 'termination' } },
      ] },
      { role: 'user' as const, content: [
        { type: 'tool_result' as const, tool_use_id: 'toolu_01', content: 'index unavailable', is_error: true, cache_control: cc },
        { type: 'text' as const, text: 'Answer from what you know.' },
      ] },
    ],
  };
  const sent = JSON.stringify({ ...params, model: 'prompt-cache' });
  // Re-serialised, the same request would read otherwise: byte equality below is the raw path.
  const p = parseAnthropicRequest(params);
  assert.ok(p.ok);
  assert.notEqual(adapterFor('anthropic').chatRequest(p.req, { model: 'prompt-cache', stream: false, options: {} }).body, sent);

  const before = billed('claude-cache');
  const m = await anthropic.messages.create(params);
  assert.equal(last().raw, sent, 'the upstream got the client\'s bytes, cache_control and all');
  assert.equal(m.usage.cache_creation_input_tokens, 1200, 'the cache write is reported');
  assert.equal(m.usage.cache_read_input_tokens ?? 0, 0);
  assert.ok(m.usage.input_tokens > 0 && m.usage.input_tokens < 1200, 'input_tokens as Anthropic counts it: without the cache write');

  // Streamed, the second time: a cache read.
  let usage: { input_tokens?: number | null; output_tokens?: number | null; cache_read_input_tokens?: number | null; cache_creation_input_tokens?: number | null } = {};
  const st = await anthropic.messages.create({ ...params, stream: true });
  for await (const ev of st) if (ev.type === 'message_delta') usage = ev.usage;
  assert.equal(last().raw, JSON.stringify({ ...params, stream: true, model: 'prompt-cache' }));
  assert.equal(usage.cache_read_input_tokens, 1200, 'the cache read is reported');

  // Billed: fresh input at input price, the write at 1.25x (its one-hour part, 1000 of 1200 tokens, at 2x), the read at 0.1x.
  const cost = (u: typeof usage) => ((u.input_tokens ?? 0) * 3 + (u.cache_creation_input_tokens ? 200 * 3.75 + 1000 * 6 : 0) + (u.cache_read_input_tokens ?? 0) * 0.3 + (u.output_tokens ?? 0) * 15) / 1e6;
  const want = cost(m.usage) + cost(usage);
  assert.ok(Math.abs(billed('claude-cache') - before - want) < 1e-12, `billed ${billed('claude-cache') - before}, want ${want}`);
  assert.ok(cost(m.usage) > ((m.usage.input_tokens + 1200) * 3 + m.usage.output_tokens * 15) / 1e6, 'a write costs more than plain input');
});

test('Anthropic SDK, streamed: a cache write\'s 5-minute / 1-hour split comes back in message_start (where the SDK reads it) and message_delta, the total kept, each part at its price', async () => {
  const up = await startFakeUpstream(); // its first prompt-cache answer writes: 200 tokens for 5 minutes, 1000 for an hour
  const g = await startTestGateway(yaml(
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${up.url}/v1` }),
    doc('Model', 'claude-cache', { targets: [{ provider: 'ant', model: 'prompt-cache' }], pricing: PRICE }),
    ...agentDocs(['claude-cache']),
  ));
  try {
    const anthropic = new Anthropic({ apiKey: g.key('tester'), baseURL: g.url, maxRetries: 0 });
    const stream = anthropic.messages.stream({ model: 'claude-cache', max_tokens: 64, system: [{ type: 'text', text: '<the whole contract>', cache_control: cc1h }], messages: [{ role: 'user', content: 'Who may terminate?' }] });
    let delta: Record<string, unknown> = {};
    stream.on('streamEvent', (ev) => { if (ev.type === 'message_delta') delta = ev.usage as unknown as Record<string, unknown>; });
    const m = await stream.finalMessage();
    const split = { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 1000 };
    assert.deepEqual(m.usage.cache_creation, split, 'the SDK\'s message has the split (from message_start)');
    assert.equal(m.usage.cache_creation_input_tokens, 1200, 'and the total');
    assert.deepEqual([delta.cache_creation, delta.cache_creation_input_tokens], [split, 1200], 'message_delta carries both too');
    g.g.rt.usage.flush();
    const row = g.g.rt.db.prepare(`SELECT sum(cost_usd) AS c FROM usage_rollup WHERE route = 'claude-cache'`).get() as { c: number };
    const want = (m.usage.input_tokens * 3 + 200 * 3.75 + 1000 * 6 + m.usage.output_tokens * 15) / 1e6;
    assert.ok(Math.abs(row.c - want) < 1e-12, `${row.c} vs ${want}`);
  } finally { await g.close(); await up.close(); }
});

test('cache writes\' split, unit: relayed whole and streamed (a cache replay too) only when the upstream split them; a split with no one-hour part is still a split', () => {
  const enc = (r: ChatResult) => anthropicCodec.encodeResult(r, 'x') as { usage: Record<string, unknown> };
  const split = anthropicChatResponse({ id: 'm', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn',
    usage: { input_tokens: 10, cache_creation_input_tokens: 1200, cache_creation: { ephemeral_5m_input_tokens: 1200, ephemeral_1h_input_tokens: 0 }, output_tokens: 5 } });
  assert.deepEqual(enc(split).usage, { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 1200, cache_creation: { ephemeral_5m_input_tokens: 1200, ephemeral_1h_input_tokens: 0 } });
  const frames = resultToEvents(split).map(anthropicCodec.streamEncoder({ includeUsage: true, model: 'x' })).join('');
  const start = /event: message_start\ndata: (.*)\n/.exec(frames)?.[1] ?? '';
  const delta = /event: message_delta\ndata: (.*)\n/.exec(frames)?.[1] ?? '';
  assert.deepEqual((JSON.parse(start) as { message: { usage: unknown } }).message.usage, enc(split).usage, 'a replay opens with the usage, split included');
  assert.deepEqual((JSON.parse(delta) as { usage: unknown }).usage, enc(split).usage);
  // No split from the upstream (an older Anthropic answer; Converse without cacheDetails): the total only.
  const total = anthropicChatResponse({ id: 'm', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', usage: { input_tokens: 10, cache_creation_input_tokens: 1200, output_tokens: 5 } });
  assert.deepEqual(enc(total).usage, { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 1200 });
  assert.equal(bedrockUsage({ inputTokens: 10, outputTokens: 5, cacheWriteInputTokens: 1200 })?.cacheWrite1hTokens, undefined);
  assert.equal(bedrockUsage({ inputTokens: 10, outputTokens: 5, cacheWriteInputTokens: 1200, cacheDetails: [{ ttl: '5m', inputTokens: 1200 }] })?.cacheWrite1hTokens, 0);
});

/** LiteLLM's form: cache_control on content parts, on a message, on a function tool. */
const litellmBody = (model: string) => ({
  model,
  max_tokens: 64,
  messages: [
    { role: 'system', content: [{ type: 'text', text: 'You answer questions about the contract.' }, { type: 'text', text: '<the whole contract>', cache_control: cc }] },
    { role: 'user', content: 'Who may terminate?', cache_control: cc },
  ],
  tools: [{ type: 'function', function: { name: 'find_clause', parameters: { type: 'object', properties: {} } }, cache_control: cc }],
});

test('OpenAI SDK (chat completions): LiteLLM-style cache_control reaches an Anthropic target and no OpenAI one; cached_tokens comes back', async () => {
  const openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const create = (model: string) => openai.chat.completions.create(litellmBody(model) as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);
  await create('claude-oai'); // the first request to prompt-cache writes (the test above may have run first)
  const r = await create('claude-oai');
  const up = last().body as { system: unknown; messages: Array<{ content: unknown }>; tools: Array<{ cache_control?: unknown }> };
  assert.deepEqual(up.system, [{ type: 'text', text: 'You answer questions about the contract.' }, { type: 'text', text: '<the whole contract>', cache_control: cc }]);
  assert.deepEqual(up.messages[0].content, [{ type: 'text', text: 'Who may terminate?', cache_control: cc }]);
  assert.deepEqual(up.tools[0].cache_control, cc);
  assert.equal(r.usage?.prompt_tokens_details?.cached_tokens, 1200, 'the cache read, as OpenAI reports cached prompt tokens');
  assert.ok((r.usage?.prompt_tokens ?? 0) > 1200, 'prompt_tokens includes the cached ones');

  // An OpenAI-wire target: accepted, and the upstream never sees the Anthropic-only field.
  const o = await create('gpt');
  assert.match(o.choices[0].message.content ?? '', /echo: Who may terminate\?/);
  assert.doesNotMatch(last().raw, /cache_control/);
});

test('Responses API client: cache_control on an input part and a function tool reaches an Anthropic target and no OpenAI one', async () => {
  const body = (model: string, parts: boolean, tool: boolean) => ({
    model,
    instructions: 'Be brief.',
    input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: '<the whole contract>', ...(parts ? { cache_control: cc } : {}) }, { type: 'input_text', text: 'Who may terminate?' }] }],
    tools: [{ type: 'function', name: 'find_clause', parameters: { type: 'object', properties: {} }, ...(tool ? { cache_control: cc } : {}) }],
    store: false,
  });
  const post = (model: string, parts = true, tool = true) => fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body(model, parts, tool)) });
  const r = await post('claude-oai');
  assert.equal(r.status, 200, await r.clone().text());
  const up = last().body as { messages: Array<{ content: unknown }>; tools: Array<{ cache_control?: unknown }> };
  assert.deepEqual(up.messages[0].content, [{ type: 'text', text: '<the whole contract>', cache_control: cc }, { type: 'text', text: 'Who may terminate?' }]);
  assert.deepEqual(up.tools[0].cache_control, cc);
  const res = (await r.json()) as { usage: { input_tokens_details: { cached_tokens: number } } };
  assert.equal(res.usage.input_tokens_details.cached_tokens, 1200);
  // To an OpenAI-wire target, a breakpoint on an input part alone, on a tool alone: accepted, never sent.
  for (const [parts, tool] of [[true, false], [false, true]]) {
    const o = await post('gpt', parts, tool);
    assert.equal(o.status, 200, await o.text());
    assert.doesNotMatch(last().raw, /cache_control/, `parts ${parts}, tool ${tool}`);
  }
});

test('pricing: Anthropic\'s cache reads, 5-minute and one-hour writes each at their price (built in for Claude: 0.1x, 1.25x, 2x input)', () => {
  const r = anthropicChatResponse({ id: 'm', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn',
    usage: { input_tokens: 100, cache_read_input_tokens: 4000, cache_creation_input_tokens: 1200, cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 1000 }, output_tokens: 50 } });
  assert.deepEqual(r.usage, { inputTokens: 5300, outputTokens: 50, cachedTokens: 4000, cacheWriteTokens: 1200, cacheWrite1hTokens: 1000 });
  const p = builtinPricing('claude-sonnet-4-5');
  assert.deepEqual(p, { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3, cache_write_input_per_1m: 3.75, cache_write_1h_input_per_1m: 6 });
  const want = (100 * 3 + 4000 * 0.3 + 200 * 3.75 + 1000 * 6 + 50 * 15) / 1e6;
  assert.ok(Math.abs((costUsd(r.usage, p) ?? 0) - want) < 1e-15, `${costUsd(r.usage, p)} vs ${want}`);
  // A route's own price without the one-hour field: one-hour writes cost a write's price; without either, input's.
  assert.ok(Math.abs((costUsd(r.usage, resolvePricing('anthropic', 'x', { input_per_1m: 3, output_per_1m: 15, cache_write_input_per_1m: 3.75 })) ?? 0) - (100 * 3 + 4000 * 3 + 1200 * 3.75 + 50 * 15) / 1e6) < 1e-15);
  assert.ok(Math.abs((costUsd(r.usage, resolvePricing('anthropic', 'x', { input_per_1m: 3, output_per_1m: 15 })) ?? 0) - (5300 * 3 + 50 * 15) / 1e6) < 1e-15);
});
