// The client codecs' output, served as-is, must be accepted by the official SDKs: streamed
// tool calls, usage and stop reasons come out assembled correctly on the client side.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { codecFor } from '../src/providers/index.ts';
import type { ChatResult } from '../src/providers/types.ts';

const STREAMS = join(import.meta.dirname, 'golden', 'streams');
let server: Server;
let base = '';
/** Body the next request gets, and whether it is SSE. */
let next: { body: string; sse: boolean } = { body: '', sse: false };

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': next.sse ? 'text/event-stream' : 'application/json' }).end(next.body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((r) => server.close(() => r())));

const openai = (): OpenAI => new OpenAI({ apiKey: 'k', baseURL: `${base}/v1`, maxRetries: 0 });
const anthropic = (): Anthropic => new Anthropic({ apiKey: 'k', baseURL: base, maxRetries: 0 });

test('openai sdk assembles the interleaved parallel tool calls from our chunks', async () => {
  next = { body: readFileSync(join(STREAMS, 'openai-parallel-tools.to-openai.sse'), 'utf8'), sse: true };
  const final = await openai().chat.completions.stream({ model: 'my-route', messages: [{ role: 'user', content: 'x' }] }).finalChatCompletion();
  const calls = (final.choices[0].message.tool_calls ?? []).map((c) => (c.type === 'function' ? [c.id, c.function.name, JSON.parse(c.function.arguments)] : []));
  assert.deepEqual(calls, [
    ['call_Qe1mV2GkD0xWnJ4uH8aT3bYz', 'get_weather', { location: 'Paris', unit: 'c' }],
    ['call_Lp7sX9cW4eRt2yU6iO1aS5dF', 'get_time', { tz: 'Europe/Paris' }],
  ]);
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(final.usage?.prompt_tokens, 92);
});

test('openai sdk reads anthropic- and gemini-sourced streams', async () => {
  next = { body: readFileSync(join(STREAMS, 'anthropic-tools.to-openai.sse'), 'utf8'), sse: true };
  const a = await openai().chat.completions.stream({ model: 'r', messages: [{ role: 'user', content: 'x' }] }).finalChatCompletion();
  assert.equal(a.choices[0].message.content, "I'll check both for you.");
  assert.equal(a.choices[0].message.tool_calls?.length, 2);
  next = { body: readFileSync(join(STREAMS, 'gemini-text-function-call.to-openai.sse'), 'utf8'), sse: true };
  const g = await openai().chat.completions.stream({ model: 'r', messages: [{ role: 'user', content: 'x' }] }).finalChatCompletion();
  assert.equal(g.choices[0].message.content, 'Let me check the weather in Paris.');
  assert.equal(g.usage?.completion_tokens, 33);
});

test('anthropic sdk assembles tool_use blocks translated from an openai stream', async () => {
  next = { body: readFileSync(join(STREAMS, 'openai-parallel-tools.to-anthropic.sse'), 'utf8'), sse: true };
  const m = await anthropic().messages.stream({ model: 'my-route', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
  assert.equal(m.stop_reason, 'tool_use');
  assert.deepEqual(m.content.map((b) => (b.type === 'tool_use' ? [b.name, b.input] : [b.type])), [
    ['get_weather', { location: 'Paris', unit: 'c' }],
    ['get_time', { tz: 'Europe/Paris' }],
  ]);
  assert.equal(m.usage.output_tokens, 48);
  assert.equal(m.usage.input_tokens, 92);
});

test('anthropic sdk reads text streams with cache usage', async () => {
  next = { body: readFileSync(join(STREAMS, 'openai-text.to-anthropic.sse'), 'utf8'), sse: true };
  const m = await anthropic().messages.stream({ model: 'r', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
  assert.deepEqual(m.content, [{ type: 'text', text: 'Hello! The capital of France is Paris.' }]);
  assert.equal(m.usage.cache_read_input_tokens, 1024);
  assert.equal(m.usage.input_tokens, 1250 - 1024);
});

test('both sdks read encodeResult bodies', async () => {
  const r: ChatResult = {
    id: 'x1', model: 'upstream', created: 1764081600, text: 'hi', finishReason: 'tool_calls',
    toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":[1]}' } }],
    usage: { inputTokens: 7, outputTokens: 3 },
  };
  next = { body: JSON.stringify(codecFor('openai').encodeResult(r, 'route')), sse: false };
  const o = await openai().chat.completions.create({ model: 'route', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(o.model, 'route');
  assert.equal(o.choices[0].message.tool_calls?.[0].id, 'call_1');
  next = { body: JSON.stringify(codecFor('anthropic').encodeResult(r, 'route')), sse: false };
  const a = await anthropic().messages.create({ model: 'route', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] });
  assert.deepEqual(a.content, [{ type: 'text', text: 'hi' }, { type: 'tool_use', id: 'call_1', name: 'f', input: { a: [1] } }]);
  assert.equal(a.stop_reason, 'tool_use');
});

test('sdks surface a mid-stream error from streamError', async () => {
  next = { body: codecFor('openai').streamEncoder({ includeUsage: false, model: 'r' })({ type: 'text', text: 'partial' }) + codecFor('openai').streamError('upstream cut the stream', 'upstream_incomplete'), sse: true };
  const s = await openai().chat.completions.create({ model: 'r', stream: true, messages: [{ role: 'user', content: 'x' }] });
  await assert.rejects((async () => { for await (const c of s) void c; })(), /upstream cut the stream/);
  const enc = codecFor('anthropic').streamEncoder({ includeUsage: true, model: 'r' });
  next = { body: enc({ type: 'start', id: 'msg_1', model: 'm' }) + enc({ type: 'text', text: 'partial' }) + codecFor('anthropic').streamError('upstream cut the stream', 'api_error'), sse: true };
  await assert.rejects(anthropic().messages.stream({ model: 'r', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }).finalMessage(), /upstream cut the stream/);
});
