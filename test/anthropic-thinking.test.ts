// Issue 16: Anthropic extended thinking through aam. With thinking and tools, Anthropic requires
// the assistant turn's thinking blocks (signature unchanged) to come back before its tool_use: a
// client that never received them cannot make its next turn. aam relays thinking and
// redacted_thinking blocks in streams (re-encoded from canonical events) and whole answers, to
// Anthropic clients; OpenAI-format clients are answered as before (no thinking field).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { startFakeUpstream, thinkingToolsAnswer, interleavedContent, THINKING, THINKING2, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { anthropicAdapter, anthropicChatResponse } from '../src/providers/anthropic.ts';
import { anthropicCodec } from '../src/providers/anthropic-codec.ts';
import { bedrockAdapter, bedrockChatResponse } from '../src/providers/bedrock.ts';
import { parseAnthropicRequest } from '../src/providers/anthropic-parse.ts';
import { SseParser } from '../src/providers/sse.ts';
import { resultToEvents, eventsToResult } from '../src/cache/replay.ts';
import type { ChatResult, StreamEvent } from '../src/providers/types.ts';
import { ModelCache } from '../src/cache/model-cache.ts';
import { createEventScrubber } from '../src/access/scrub-events.ts';
import { Scrubber } from '../src/credentials/scrub.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let key = '';
let guardedKey = '';
let textGuardKey = '';

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'claude-think', { targets: [{ provider: 'ant', model: 'thinking-tools' }] }),
    doc('Model', 'claude-interleaved', { targets: [{ provider: 'ant', model: 'thinking-interleaved' }] }),
    doc('Model', 'claude-interleaved-cached', { targets: [{ provider: 'ant', model: 'thinking-interleaved' }], cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    doc('Guardrail', 'no-wants', { on: ['output'], keywords: ['the user wants'], action: 'redact' }),
    doc('Guardrail', 'no-check', { on: ['output'], keywords: ['let me check'], action: 'redact' }),
    ...agentDocs(['claude-think', 'claude-interleaved', 'claude-interleaved-cached']),
    doc('Agent', 'guarded', { workload: 'spiffe://test/agent/guarded', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'guarded-policy', { identity: { workload: 'spiffe://test/agent/guarded' }, models: { allow: ['claude-think'] }, guardrails: ['no-wants'] }),
    doc('Agent', 'textguard', { workload: 'spiffe://test/agent/textguard', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'textguard-policy', { identity: { workload: 'spiffe://test/agent/textguard' }, models: { allow: ['claude-interleaved'] }, guardrails: ['no-check'] }),
  ));
  key = gw.key('tester');
  guardedKey = gw.key('guarded');
  textGuardKey = gw.key('textguard');
});
after(async () => { await gw?.close(); await fake?.close(); });

const last = () => fake.requests[fake.requests.length - 1];

const tools = [{ name: 'get_weather', description: 'Weather for a place', input_schema: { type: 'object' as const, properties: { location: { type: 'string' } } } }];
const ask = { role: 'user' as const, content: 'What is the weather in Paris?' };
const params = { model: 'claude-think', max_tokens: 2048, thinking: { type: 'enabled' as const, budget_tokens: 1024 }, tools, messages: [ask] };

/** The second turn of the tool loop: the first answer's content sent back as it came, then the tool's result. */
function turn2(content: Anthropic.ContentBlock[]): Anthropic.MessageCreateParamsNonStreaming {
  const use = content.find((b) => b.type === 'tool_use');
  assert.ok(use, 'the first turn called the tool');
  return { ...params, messages: [ask, { role: 'assistant', content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21 C' }] }] };
}

test('Anthropic SDK, streamed: thinking and redacted_thinking blocks arrive with their signature; the next turn sends them back and the upstream accepts it', async () => {
  const anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
  const m = await anthropic.messages.stream(params).finalMessage();
  assert.deepEqual(m.content.map((b) => b.type), ['thinking', 'redacted_thinking', 'text', 'tool_use']);
  assert.deepEqual(m.content[0], THINKING.thinking, 'thinking text and signature, as the upstream sent them');
  assert.deepEqual(m.content[1], THINKING.redacted);
  assert.equal(m.stop_reason, 'tool_use');

  const second = await anthropic.messages.stream({ ...turn2(m.content), stream: true }).finalMessage();
  assert.equal(second.content[0].type === 'text' ? second.content[0].text : '', 'final: the tool said sunny, 21 C');
  assert.ok(last().raw.includes(JSON.stringify(THINKING.thinking.signature)), 'the signature reached the upstream byte for byte');
});

test('Anthropic SDK, whole answers: the same tool loop (the raw upstream body, thinking included)', async () => {
  const anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
  const m = await anthropic.messages.create(params);
  assert.deepEqual(m.content.slice(0, 2), [THINKING.thinking, THINKING.redacted]);
  const second = await anthropic.messages.create(turn2(m.content));
  assert.equal(second.content[0].type === 'text' ? second.content[0].text : '', 'final: the tool said sunny, 21 C');
});

test('output guardrails read thinking text (streamed and whole): a redaction there reaches the client, and its next turn fails closed at Anthropic', async () => {
  const anthropic = new Anthropic({ apiKey: guardedKey, baseURL: gw.url, maxRetries: 0 });
  for (const stream of [true, false]) {
    const m = stream ? await anthropic.messages.stream(params).finalMessage() : await anthropic.messages.create(params);
    assert.deepEqual(m.content.map((b) => b.type), ['thinking', 'redacted_thinking', 'text', 'tool_use'], `stream ${stream}`);
    const th = m.content[0] as Anthropic.ThinkingBlock;
    assert.doesNotMatch(th.thinking, /the user wants/i, `stream ${stream}: redacted`);
    assert.match(th.thinking, /get_weather for Paris/);
    assert.equal(th.signature, THINKING.thinking.signature, 'the signature itself is not touched');
    await assert.rejects(anthropic.messages.create(turn2(m.content)), (e: unknown) => e instanceof Anthropic.BadRequestError, `stream ${stream}: Anthropic refuses the altered block`);
  }
});

test('OpenAI SDK to the same Anthropic route: tool calls as before, no thinking anywhere (stream and not)', async () => {
  const openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const body = { model: 'claude-think', messages: [{ role: 'user' as const, content: 'What is the weather in Paris?' }], tools: [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }] };
  const r = await openai.chat.completions.create(body);
  assert.equal(r.choices[0].message.tool_calls?.[0]?.type === 'function' ? r.choices[0].message.tool_calls[0].function.name : '', 'get_weather');
  assert.equal(r.choices[0].message.content, 'Let me check.');
  // The fake upstream's model is named thinking-tools: the answer's model field names it, nothing else may.
  assert.equal(r.model, 'thinking-tools');
  assert.doesNotMatch(JSON.stringify({ ...r, model: '' }), /signature|thinking|redacted/);
  let text = '';
  let args = '';
  let raw = '';
  for await (const c of await openai.chat.completions.create({ ...body, stream: true })) {
    raw += JSON.stringify({ ...c, model: '' });
    text += c.choices[0]?.delta.content ?? '';
    args += c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '';
  }
  assert.equal(text, 'Let me check.');
  assert.deepEqual(JSON.parse(args), { location: 'Paris' });
  assert.doesNotMatch(raw, /signature|thinking|redacted/);
});

/** An Anthropic SSE text as (event, data) pairs, pings left out. */
function frames(sse: string): Array<{ event?: string; data: unknown }> {
  return new SseParser().push(sse).filter((r) => r.event !== 'ping').map((r) => ({ event: r.event, data: JSON.parse(r.data) as unknown }));
}

/** Content block events with each block's consecutive deltas of one type joined into one. */
function joined(fs: Array<{ event?: string; data: unknown }>): unknown[] {
  const out: Array<{ event?: string; data: { index?: number; delta?: Record<string, string> } }> = [];
  for (const f of fs) {
    const d = f.data as { index?: number; delta?: Record<string, string> };
    const prev = out[out.length - 1];
    if (d.delta !== undefined && prev?.data.delta !== undefined && prev.data.index === d.index && prev.data.delta.type === d.delta.type) {
      const k = Object.keys(d.delta).find((x) => x !== 'type')!;
      prev.data = { ...prev.data, delta: { ...prev.data.delta, [k]: prev.data.delta[k] + d.delta[k] } };
    } else out.push({ event: f.event, data: d });
  }
  return out;
}

test('parser + encoder round trip: the stream the client gets has the upstream\'s blocks, indexes and deltas; a whole answer its content', () => {
  const { sse, message } = thinkingToolsAnswer('thinking-tools');
  const parser = anthropicAdapter.streamParser();
  const events: StreamEvent[] = [];
  for (const r of new SseParser().push(sse)) events.push(...parser.push(r.data, r.event));
  events.push(...parser.end());
  const encode = anthropicCodec.streamEncoder({ includeUsage: true, model: 'thinking-tools' });
  const out = events.map(encode).join('');
  // Every content block event as the upstream sent it: same types, indexes, deltas (the encoder sends
  // no empty input_json_delta, and message_start / message_delta carry aam's usage form).
  const blocks = (s: string) => frames(s).filter((f) => String(f.event).startsWith('content_block_'))
    .filter((f) => (f.data as { delta?: { type?: string; partial_json?: string } }).delta?.partial_json !== '');
  assert.deepEqual(blocks(out), blocks(sse));
  // Replayed from the cache: the same blocks again, the deltas of a block cut in other places.
  const stored = eventsToResult(events);
  assert.ok(stored);
  const encode2 = anthropicCodec.streamEncoder({ includeUsage: true, model: 'thinking-tools' });
  assert.deepEqual(joined(blocks(resultToEvents(stored).map(encode2).join(''))), joined(blocks(sse)));

  // Not streamed: re-encoded, the content is the upstream's (thinking first, signature and data untouched).
  const body = anthropicCodec.encodeResult(anthropicChatResponse(message), 'thinking-tools') as { content: unknown };
  assert.deepEqual(body.content, message.content);
  assert.deepEqual(stored.thinking, [THINKING.thinking, THINKING.redacted]);
});

test('the event scrubber: a credential split across thinking deltas is redacted like text; held thinking comes out before its signature and before the text block', () => {
  const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';
  const scrubber = new Scrubber([{ name: 'openai-key', value: SECRET }]);
  const s = createEventScrubber(() => scrubber.stream());
  const evs: StreamEvent[] = [
    { type: 'thinking_start' }, { type: 'thinking', text: `the key is ${SECRET.slice(0, 9)}` }, { type: 'thinking', text: SECRET.slice(9) },
    { type: 'thinking_signature', signature: 'sig' }, { type: 'text', text: 'sk-live' }, { type: 'thinking', text: '-4f9a8b7c6d5e4f3a2b1c' }, { type: 'finish', reason: 'stop' },
  ];
  const out = [...evs.flatMap((e) => s.push(e)), ...s.end()];
  const order = out.map((e) => e.type).filter((k, i, all) => k !== all[i - 1]);
  assert.deepEqual(order, ['thinking_start', 'thinking', 'thinking_signature', 'text', 'thinking', 'finish']);
  const thinking = out.filter((e) => e.type === 'thinking').map((e) => (e as { text: string }).text).join('');
  assert.equal(thinking, 'the key is [REDACTED:openai-key]-4f9a8b7c6d5e4f3a2b1c', 'a text block between two thinking streams: the halves are not joined');
  assert.deepEqual(out.find((e) => e.type === 'thinking_signature'), { type: 'thinking_signature', signature: 'sig' });
});

test('Claude on Bedrock: reasoningContent (streamed and whole) reaches an Anthropic client as thinking blocks, and goes back as reasoningContent, signature and redacted bytes as received', () => {
  const sig = 'EqQBCgIYAhIM1gbcDa9GJwZA2b3h+/Gx0pkiMOYds=';
  const red = 'EmwKAhgBEgy3va3pzix/LafPsn4a';
  const frames: Array<[string, unknown]> = [
    ['messageStart', { role: 'assistant' }],
    ['contentBlockDelta', { contentBlockIndex: 0, delta: { reasoningContent: { text: 'Weather: ' } } }],
    ['contentBlockDelta', { contentBlockIndex: 0, delta: { reasoningContent: { text: 'call get_weather.' } } }],
    ['contentBlockDelta', { contentBlockIndex: 0, delta: { reasoningContent: { signature: sig } } }],
    ['contentBlockStop', { contentBlockIndex: 0 }],
    ['contentBlockDelta', { contentBlockIndex: 1, delta: { reasoningContent: { redactedContent: red } } }],
    ['contentBlockStop', { contentBlockIndex: 1 }],
    ['contentBlockDelta', { contentBlockIndex: 2, delta: { text: 'Let me check.' } }],
    ['contentBlockStop', { contentBlockIndex: 2 }],
    ['contentBlockStart', { contentBlockIndex: 3, start: { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather' } } }],
    ['contentBlockDelta', { contentBlockIndex: 3, delta: { toolUse: { input: '{"location":"Paris"}' } } }],
    ['contentBlockStop', { contentBlockIndex: 3 }],
    ['messageStop', { stopReason: 'tool_use' }],
    ['metadata', { usage: { inputTokens: 30, outputTokens: 9, totalTokens: 39 } }],
  ];
  const parser = bedrockAdapter.streamParser();
  const events = [...frames.flatMap(([e, p]) => parser.push(JSON.stringify(p), e)), ...parser.end()];
  const encode = anthropicCodec.streamEncoder({ includeUsage: true, model: 'claude' });
  const got = frames0(events.map(encode).join(''));
  assert.deepEqual(got.slice(0, 6), [
    { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Weather: ' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'call get_weather.' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: sig } },
    { type: 'content_block_stop', index: 0 },
    { type: 'content_block_start', index: 1, content_block: { type: 'redacted_thinking', data: red } },
  ]);
  const want = [{ type: 'thinking', thinking: 'Weather: call get_weather.', signature: sig }, { type: 'redacted_thinking', data: red }];
  assert.deepEqual(eventsToResult(events)?.thinking, want);
  // Whole: the same blocks.
  const whole = bedrockChatResponse({ output: { message: { role: 'assistant', content: [
    { reasoningContent: { reasoningText: { text: 'Weather: call get_weather.', signature: sig } } }, { reasoningContent: { redactedContent: red } },
    { text: 'Let me check.' }, { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { location: 'Paris' } } },
  ] } }, stopReason: 'tool_use', usage: { inputTokens: 30, outputTokens: 9 } });
  assert.deepEqual(whole.thinking, want);
  assert.deepEqual((anthropicCodec.encodeResult(whole, 'claude') as { content: unknown[] }).content.slice(0, 2), want);
  // Sent back by the Anthropic client: Converse reasoningContent first in the assistant turn.
  const p = parseAnthropicRequest({ model: 'claude', max_tokens: 64, messages: [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: [...want, { type: 'tool_use', id: 'tooluse_1', name: 'get_weather', input: { location: 'Paris' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'tooluse_1', content: 'sunny' }] },
  ] });
  assert.ok(p.ok);
  const body = JSON.parse(bedrockAdapter.chatRequest(p.req, { model: 'anthropic.claude', stream: false, options: {} }).body) as { messages: Array<{ content: unknown[] }> };
  assert.deepEqual(body.messages[1].content.slice(0, 2), [
    { reasoningContent: { reasoningText: { text: 'Weather: call get_weather.', signature: sig } } }, { reasoningContent: { redactedContent: red } },
  ]);
  // Another model on Bedrock (a fallback after Claude): Claude's signed blocks are not its to read.
  const nova = JSON.parse(bedrockAdapter.chatRequest(p.req, { model: 'amazon.nova-pro-v1:0', stream: false, options: {} }).body) as { messages: Array<{ content: Array<Record<string, unknown>> }> };
  assert.ok(!nova.messages[1].content.some((b) => 'reasoningContent' in b));
});

/** The data of an Anthropic SSE text's content block events. */
function frames0(sse: string): unknown[] {
  return frames(sse).filter((f) => String(f.event).startsWith('content_block_')).map((f) => f.data);
}

// ---- interleaved thinking (the beta: thinking blocks between tool calls in one turn) ----

const KINDS = ['thinking', 'text', 'tool_use', 'thinking', 'text', 'tool_use'];
const iparams = { ...params, model: 'claude-interleaved' };

/** Turn 2 of the interleaved loop: the answer's content sent back as it came, both tools' results. */
function iturn2(content: Anthropic.ContentBlock[], model = 'claude-interleaved'): Anthropic.MessageCreateParamsNonStreaming {
  const uses = content.filter((b) => b.type === 'tool_use');
  assert.equal(uses.length, 2);
  return { ...params, model, messages: [ask, { role: 'assistant', content }, { role: 'user', content: uses.map((u) => ({ type: 'tool_result' as const, tool_use_id: u.id, content: 'sunny, 21 C' })) }] };
}

test('interleaved thinking, whole answer rebuilt (an output guardrail changed its text block): the blocks arrive in the upstream\'s order and the next turn is accepted', async () => {
  const anthropic = new Anthropic({ apiKey: textGuardKey, baseURL: gw.url, maxRetries: 0 });
  const m = await anthropic.messages.create(iparams);
  assert.deepEqual(m.content.map((b) => b.type), KINDS);
  assert.deepEqual([m.content[0], m.content[3]], [THINKING.thinking, THINKING2], 'both thinking blocks, signatures untouched');
  assert.doesNotMatch((m.content[1] as Anthropic.TextBlock).text, /let me check/i, 'rebuilt: the guardrail redacted the text');
  assert.equal((m.content[4] as Anthropic.TextBlock).text, 'And the time.', 'each text block in its place');
  const second = await anthropic.messages.create(iturn2(m.content));
  assert.equal(second.content[0].type === 'text' ? second.content[0].text : '', 'final: the tool said sunny, 21 C');
  // The request went to Anthropic in the client's order too (not thinking first).
  const sent = (JSON.parse(last().raw) as { messages: Array<{ content: Array<{ type: string }> }> }).messages[1].content.map((b) => b.type);
  assert.deepEqual(sent, KINDS);
});

test('interleaved thinking from the response cache: whole and streamed replays keep the upstream\'s order; turn 2 (re-serialised or raw) is accepted', async () => {
  const anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
  const p = { ...iparams, model: 'claude-interleaved-cached' };
  for (const stream of [false, true]) {
    const ask2 = { ...p, messages: [{ role: 'user' as const, content: `What is the weather in Paris? (${stream ? 'streamed' : 'whole'})` }] };
    const miss = stream ? await anthropic.messages.stream(ask2).finalMessage() : await anthropic.messages.create(ask2);
    const { data: hit, response } = stream
      ? { data: await anthropic.messages.stream(ask2).finalMessage(), response: undefined }
      : await anthropic.messages.create(ask2).withResponse();
    if (response) assert.equal(response.headers.get('x-aam-cache'), 'hit');
    assert.deepEqual(miss.content.map((b) => b.type), KINDS, `stream ${stream}: miss`);
    assert.deepEqual(hit.content, miss.content, `stream ${stream}: the cached answer is the upstream's, in order`);
    const second = await anthropic.messages.create(iturn2(hit.content, 'claude-interleaved-cached'));
    assert.equal(second.content[0].type === 'text' ? second.content[0].text : '', 'final: the tool said sunny, 21 C');
  }
});

test('interleaved thinking, a credential in a text block, from the response cache: the scrubbed entry replays every block in its place (whole and streamed), each text with its own redaction; turn 2 is accepted', async () => {
  // A credential whose value the answer's second text block holds ("And the time."): scrubbed.
  const sgw = await startTestGateway(yaml(
    doc('Credential', 'time-key', { env: 'THINKING_TEST_TIME_KEY' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'time-key' }),
    doc('Model', 'claude-interleaved-scrubbed', { targets: [{ provider: 'ant', model: 'thinking-interleaved' }], cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    ...agentDocs(['claude-interleaved-scrubbed']),
  ), { THINKING_TEST_TIME_KEY: 'the time' });
  try {
    const anthropic = new Anthropic({ apiKey: sgw.key('tester'), baseURL: sgw.url, maxRetries: 0 });
    const p = { ...iparams, model: 'claude-interleaved-scrubbed' };
    const miss = await anthropic.messages.create(p);
    const { data: hit, response } = await anthropic.messages.create(p).withResponse();
    assert.equal(response.headers.get('x-aam-cache'), 'hit');
    const streamed = await anthropic.messages.stream(p).finalMessage();
    for (const [what, m] of [['miss', miss], ['hit', hit], ['streamed hit', streamed]] as const) {
      assert.deepEqual(m.content.map((b) => b.type), KINDS, `${what}: the upstream's blocks, order and count`);
      assert.equal((m.content[1] as Anthropic.TextBlock).text, 'Let me check.', `${what}: the first text block as it was`);
      assert.equal((m.content[4] as Anthropic.TextBlock).text, 'And [REDACTED:time-key].', `${what}: the second text block, scrubbed, in its place`);
      assert.deepEqual([m.content[0], m.content[3]], [THINKING.thinking, THINKING2], `${what}: thinking untouched`);
    }
    const second = await anthropic.messages.create(iturn2(hit.content, 'claude-interleaved-scrubbed'));
    assert.equal(second.content[0].type === 'text' ? second.content[0].text : '', 'final: the tool said sunny, 21 C');
  } finally { await sgw.close(); }
});

test('interleaved thinking, unit: the cache scrubs text blocks as joined texts: a credential split across two is redacted where it starts, the blocks keep their places', async () => {
  const sc = new Scrubber([{ name: 'k', value: 'check.And the' }]);
  const cache = new ModelCache(null, { scrub: (json) => sc.scrub(json).text, scrubTexts: (texts) => sc.scrubJoined(texts).texts });
  const r = anthropicChatResponse({ ...thinkingToolsAnswer('thinking-tools').message, content: interleavedContent() });
  const route = { name: 'r', targets: [{ provider: 'p', model: 'm' }], cache: { mode: 'exact' as const, ttl_seconds: 60 } };
  const req = { model: 'r', messages: [{ role: 'user' as const, content: 'hi' }] };
  assert.ok((await cache.lookup('chat', route, req, { agent: 'a' }, {})).save(r));
  const hit = await cache.lookup('chat', route, req, { agent: 'a' }, {});
  cache.close();
  const content = (anthropicCodec.encodeResult(hit.entry!.result as ChatResult, 'x') as { content: Array<{ type: string; text?: string }> }).content;
  assert.deepEqual(content.map((b) => b.type), KINDS);
  assert.deepEqual([content[1].text, content[4].text], ['Let me [REDACTED:k]', ' time.']);
});

test('interleaved thinking, unit: Anthropic whole answer, cache record of a stream, guardrail-changed text, turn-2 request (raw), Bedrock reasoningContent both ways', () => {
  const content = interleavedContent();
  const { message } = thinkingToolsAnswer('thinking-tools');
  const up = { ...message, content };
  const r = anthropicChatResponse(up);
  assert.deepEqual((anthropicCodec.encodeResult(r, 'x') as { content: unknown }).content, content, 'rebuilt: the upstream\'s order');
  // Text that no longer matches the order's lengths (rewritten elsewhere): one text block where the
  // first was; thinking and tool calls keep their places.
  const rewritten = { ...r, text: '[REDACTED]' };
  assert.deepEqual((anthropicCodec.encodeResult(rewritten, 'x') as { content: Array<{ type: string }> }).content.map((b) => b.type), ['thinking', 'text', 'tool_use', 'thinking', 'tool_use']);
  // A stream recorded for the cache, replayed whole and as a stream.
  const events = resultToEvents(r, 8);
  const stored = eventsToResult(events);
  assert.ok(stored);
  assert.deepEqual((anthropicCodec.encodeResult(stored, 'x') as { content: unknown }).content, content);
  const encode = anthropicCodec.streamEncoder({ includeUsage: true, model: 'x' });
  const starts = frames0(resultToEvents(stored).map(encode).join('')).filter((f) => (f as { type: string }).type === 'content_block_start').map((f) => (f as { content_block: { type: string } }).content_block.type);
  assert.deepEqual(starts, KINDS);
  // A plain (not interleaved) answer carries no order: nothing changes for it.
  assert.equal(anthropicChatResponse(message).order, undefined);

  // Turn 2 from an Anthropic client: the body Anthropic gets is the client's (so the raw path takes it).
  const client = { model: 'claude', max_tokens: 64, messages: [ask, { role: 'assistant', content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_fake_weather_001', content: 'sunny' }] }] };
  const p = parseAnthropicRequest(client);
  assert.ok(p.ok);
  const body = JSON.parse(anthropicAdapter.chatRequest(p.req, { model: 'claude', stream: false, options: {} }).body) as { messages: unknown[] };
  assert.deepEqual(body.messages.slice(1), client.messages.slice(1));
  const head = anthropicAdapter.rawChatRequest!(client, p.req, { model: 'claude', stream: false, options: {} });
  assert.ok(head.add !== undefined, 'the raw path: the client\'s bytes go as they are');

  // Bedrock: interleaved reasoningContent in a whole answer, and sent back in the client's order.
  const bedrockContent = [
    { reasoningContent: { reasoningText: { text: THINKING.thinking.thinking, signature: THINKING.thinking.signature } } }, { text: 'Let me check.' },
    { toolUse: { toolUseId: 'toolu_fake_weather_001', name: 'get_weather', input: { location: 'Paris' } } },
    { reasoningContent: { reasoningText: { text: THINKING2.thinking, signature: THINKING2.signature } } }, { text: 'And the time.' },
    { toolUse: { toolUseId: 'toolu_fake_time_002', name: 'get_time', input: { tz: 'Europe/Paris' } } },
  ];
  const whole = bedrockChatResponse({ output: { message: { role: 'assistant', content: bedrockContent } }, stopReason: 'tool_use', usage: { inputTokens: 30, outputTokens: 9 } });
  assert.deepEqual((anthropicCodec.encodeResult(whole, 'claude') as { content: unknown }).content, content);
  const br = JSON.parse(bedrockAdapter.chatRequest(p.req, { model: 'anthropic.claude', stream: false, options: {} }).body) as { messages: Array<{ content: unknown[] }> };
  assert.deepEqual(br.messages[1].content, bedrockContent);
});

test('a credential cut across two thinking blocks, from the response cache: stored joined-scrubbed, and an entry holding it in pieces (as an older aam stored it) is scrubbed joined on replay, whole and streamed', async () => {
  // A credential whose value spans the end of the first thinking block and the start of the second.
  const cut = 'Paris.Paris is';
  assert.ok(THINKING.thinking.thinking.endsWith('Paris.') && THINKING2.thinking.startsWith('Paris is'));
  const sgw = await startTestGateway(yaml(
    doc('Credential', 'cut-key', { env: 'THINKING_TEST_CUT_KEY' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'cut-key' }),
    doc('Model', 'claude-cut-cached', { targets: [{ provider: 'ant', model: 'thinking-interleaved' }], cache: { mode: 'exact', ttl_seconds: 60, scope: 'agent' } }),
    ...agentDocs(['claude-cut-cached']),
  ), { THINKING_TEST_CUT_KEY: cut });
  try {
    const anthropic = new Anthropic({ apiKey: sgw.key('tester'), baseURL: sgw.url, maxRetries: 0 });
    const p = { ...iparams, model: 'claude-cut-cached' };
    const thinkingOf = (m: Anthropic.Message) => m.content.flatMap((b) => (b.type === 'thinking' ? [b.thinking] : []));
    const want = [THINKING.thinking.thinking.replace('Paris.', '[REDACTED:cut-key]'), THINKING2.thinking.slice('Paris is'.length)];
    assert.deepEqual(thinkingOf(await anthropic.messages.create(p)), want, 'the miss');
    const mem = (sgw.g.rt.cache.exact as unknown as { mem: Map<string, { entry: { result: ChatResult } }> }).mem;
    assert.equal(mem.size, 1);
    for (const item of mem.values()) {
      assert.deepEqual(item.entry.result.thinking?.map((b) => (b.type === 'thinking' ? b.thinking : '')), want, 'stored scrubbed');
      // Two thinking blocks next to each other (not interleaved: a text between them ends a streamed block's scrub).
      item.entry = { ...item.entry, result: { ...item.entry.result, thinking: [{ ...THINKING.thinking }, { ...THINKING2 }], order: undefined } };
    }
    const { data: hit, response } = await anthropic.messages.create(p).withResponse();
    assert.equal(response.headers.get('x-aam-cache'), 'hit');
    assert.deepEqual(thinkingOf(hit), want, 'the whole hit');
    assert.deepEqual(thinkingOf(await anthropic.messages.stream(p).finalMessage()), want, 'the streamed hit');
  } finally { await sgw.close(); }
});

test('Gemini thought blocks (no Anthropic signature) sent back on a route that falls back to Anthropic: left out of the Anthropic request, so Claude answers; a tool loop whose turn keeps no thinking of Claude\'s is sent without thinking', async () => {
  const sgw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'THINKING_TEST_UP_KEY' }),
    doc('Provider', 'gem', { type: 'gemini', baseUrl: `${fake.url}/v1beta`, credential: 'up-key' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Model', 'gem-then-claude', { targets: [{ provider: 'gem', model: 'fail-500' }, { provider: 'ant', model: 'ok' }], retries: { attempts: 0 } }),
    ...agentDocs(['gem-then-claude']),
  ), { THINKING_TEST_UP_KEY: 'up-key-value-123456' });
  try {
    const anthropic = new Anthropic({ apiKey: sgw.key('tester'), baseURL: sgw.url, maxRetries: 0 });
    // What aam answered an Anthropic client for a Gemini thought summary: a thinking block, signature empty.
    const thought = { type: 'thinking' as const, thinking: 'Gemini thought about the weather.', signature: '' };
    const base = { model: 'gem-then-claude', max_tokens: 2048, thinking: { type: 'enabled' as const, budget_tokens: 1024 } };
    const sent = () => JSON.parse(last().raw) as { thinking?: unknown; messages: Array<{ role: string; content: Array<{ type: string }> }> };
    const m = await anthropic.messages.create({ ...base, messages: [ask, { role: 'assistant', content: [thought, { type: 'text', text: 'Sunny, I think.' }] }, { role: 'user', content: 'And tomorrow?' }] });
    assert.equal(m.content.at(-1)?.type, 'text');
    assert.equal(last().path, '/v1/messages', 'the fallback answered');
    assert.deepEqual(sent().messages[1].content.map((b) => b.type), ['text'], 'the Gemini thought was left out');
    assert.ok(sent().thinking, 'not a tool loop: thinking stays on');
    // A tool loop begun on Gemini: its turn's thinking is Gemini's, so Claude gets the turn without thinking.
    const loop = await anthropic.messages.create({ ...base, tools, messages: [ask,
      { role: 'assistant', content: [thought, { type: 'tool_use', id: 'call_0', name: 'get_weather', input: { location: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_0', content: 'sunny, 21 C' }] }] });
    assert.equal(loop.content.at(-1)?.type, 'text');
    assert.deepEqual(sent().messages[1].content.map((b) => b.type), ['tool_use']);
    assert.equal(sent().thinking, undefined, 'thinking off for this call: Anthropic requires the tool loop\'s turn to start with its own thinking');
    // Streamed too.
    const streamed = await anthropic.messages.stream({ ...base, messages: [ask, { role: 'assistant', content: [thought, { type: 'text', text: 'Sunny.' }] }, { role: 'user', content: 'Sure?' }] }).finalMessage();
    assert.equal(streamed.content.at(-1)?.type, 'text');
  } finally { await sgw.close(); }
});

test('Gemini thought parts reach a client as thinking blocks with no signature, Gemini\'s thoughtSignature included (it is no signature Claude takes)', async () => {
  const { geminiChatResponse } = await import('../src/providers/gemini.ts');
  const r = geminiChatResponse({ candidates: [{ content: { role: 'model', parts: [{ text: 'a thought', thought: true, thoughtSignature: 'R2VtaW5pU2ln' }, { text: 'Hi' }] }, finishReason: 'STOP' }] });
  assert.deepEqual(r.thinking, [{ type: 'thinking', thinking: 'a thought', signature: '' }]);
  // Sent back by an Anthropic client to Claude on Bedrock: left out there too, and a tool loop's call goes without thinking.
  const p = parseAnthropicRequest({ model: 'claude', max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 }, tools, messages: [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: [{ type: 'thinking', thinking: 'a thought', signature: '' }, { type: 'tool_use', id: 'call_0', name: 'get_weather', input: { location: 'Paris' } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_0', content: 'sunny' }] },
  ] });
  assert.ok(p.ok);
  const body = JSON.parse(bedrockAdapter.chatRequest(p.req, { model: 'anthropic.claude-sonnet-4-5-v1:0', stream: false, options: {} }).body) as { messages: Array<{ content: Array<Record<string, unknown>> }>; additionalModelRequestFields?: Record<string, unknown> };
  assert.deepEqual(body.messages[1].content.map((b) => Object.keys(b)[0]), ['toolUse']);
  assert.equal(body.additionalModelRequestFields?.thinking, undefined);
  const direct = JSON.parse(anthropicAdapter.chatRequest(p.req, { model: 'claude-sonnet-4-5', stream: false, options: {} }).body) as { messages: Array<{ content: Array<{ type: string }> }>; thinking?: unknown };
  assert.deepEqual(direct.messages[1].content.map((b) => b.type), ['tool_use']);
  assert.equal(direct.thinking, undefined);
});
