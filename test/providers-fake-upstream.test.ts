// Proves the fake upstream speaks each wire format well enough for the official SDKs and for
// aam's own parsers, so end-to-end tests that use it are testing aam, not the fake.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startFakeUpstream } from './fake-upstream.ts';
import type { FakeUpstream } from './fake-upstream.ts';
import { adapterFor, SseParser } from '../src/providers/index.ts';
import type { StreamEvent } from '../src/providers/types.ts';

let up: FakeUpstream;
let openai: OpenAI;
let anthropic: Anthropic;

before(async () => {
  up = await startFakeUpstream();
  openai = new OpenAI({ apiKey: 'sk-test', baseURL: `${up.url}/v1`, maxRetries: 0, timeout: 2000 });
  anthropic = new Anthropic({ apiKey: 'sk-ant-test', baseURL: up.url, maxRetries: 0, timeout: 2000 });
});
after(async () => { await up.close(); });

test('openai sdk: non-streaming echo and usage; request recorded', async () => {
  up.reset();
  const r = await openai.chat.completions.create({ model: 'ok', messages: [{ role: 'user', content: 'hello there' }] });
  assert.equal(r.choices[0].message.content, 'echo: hello there');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok((r.usage?.prompt_tokens ?? 0) > 0);
  assert.equal(up.requests.length, 1);
  assert.equal(up.requests[0].path, '/v1/chat/completions');
  assert.equal(up.requests[0].headers.authorization, 'Bearer sk-test');
  assert.equal(up.count('ok'), 1);
});

test('openai sdk: streaming text, usage only when asked', async () => {
  const s = await openai.chat.completions.create({ model: 'ok', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'one two three' }] });
  let text = '';
  let usage: unknown;
  for await (const c of s) {
    text += c.choices[0]?.delta.content ?? '';
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, 'echo: one two three');
  assert.ok(usage !== undefined);
  const s2 = await openai.chat.completions.create({ model: 'ok', stream: true, messages: [{ role: 'user', content: 'x' }] });
  for await (const c of s2) assert.ok(!c.usage, 'no usage without include_usage');
});

test('openai sdk: streamed tool calls assemble into two calls', async () => {
  const s = openai.chat.completions.stream({ model: 'tools', messages: [{ role: 'user', content: 'weather?' }] });
  const final = await s.finalChatCompletion();
  const calls = final.choices[0].message.tool_calls ?? [];
  assert.equal(calls.length, 2);
  const fns = calls.map((c) => (c.type === 'function' ? [c.function.name, JSON.parse(c.function.arguments)] : []));
  assert.deepEqual(fns, [['get_weather', { location: 'Paris' }], ['get_time', { tz: 'Europe/Paris' }]]);
});

test('openai sdk: errors carry status and retry-after', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'fail-429', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.APIError);
    assert.equal(e.status, 429);
    assert.equal(e.headers?.get('retry-after'), '1');
    return true;
  });
  await assert.rejects(openai.chat.completions.create({ model: 'fail-500', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 500);
  await assert.rejects(openai.chat.completions.create({ model: 'fail-400', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 400);
});

test('openai sdk: embeddings and models', async () => {
  const e = await openai.embeddings.create({ model: 'emb', input: ['a', 'bb'], dimensions: 4 });
  assert.equal(e.data.length, 2);
  assert.equal(e.data[1].embedding.length, 4);
  assert.ok(Math.abs(e.data[1].embedding[1] - 0.3) < 1e-6);
  const models = await openai.models.list();
  assert.ok(models.data.some((m) => m.id === 'tools'));
});

test('anthropic sdk: non-streaming text and tool use', async () => {
  const r = await anthropic.messages.create({ model: 'ok', max_tokens: 100, messages: [{ role: 'user', content: 'hi claude' }] });
  assert.deepEqual(r.content, [{ type: 'text', text: 'echo: hi claude' }]);
  assert.equal(r.stop_reason, 'end_turn');
  const t = await anthropic.messages.create({ model: 'tools', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] });
  assert.deepEqual(t.content.filter((b) => b.type === 'tool_use').map((b) => b.type === 'tool_use' ? b.input : null), [{ location: 'Paris' }, { tz: 'Europe/Paris' }]);
  // @anthropic-ai/sdk 1.x sends the key as a Bearer token; older versions used x-api-key.
  const h = up.requests[up.requests.length - 1].headers;
  assert.ok(h['x-api-key'] === 'sk-ant-test' || h.authorization === 'Bearer sk-ant-test');
});

test('anthropic sdk: streaming text and tool use with usage', async () => {
  const s = anthropic.messages.stream({ model: 'ok', max_tokens: 100, messages: [{ role: 'user', content: 'stream me' }] });
  let text = '';
  s.on('text', (d) => { text += d; });
  const final = await s.finalMessage();
  assert.equal(text, 'echo: stream me');
  assert.ok(final.usage.output_tokens > 0);
  const t = await anthropic.messages.stream({ model: 'tools', max_tokens: 100, messages: [{ role: 'user', content: 'x' }] }).finalMessage();
  assert.equal(t.stop_reason, 'tool_use');
  assert.deepEqual(t.content.filter((b) => b.type === 'tool_use').map((b) => b.type === 'tool_use' ? b.name : ''), ['get_weather', 'get_time']);
});

test('anthropic sdk: error shape and error-before-content stream', async () => {
  await assert.rejects(anthropic.messages.create({ model: 'fail-500', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.APIError && e.status === 500);
  const s = anthropic.messages.stream({ model: 'error-before-content', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
  await assert.rejects(s.finalMessage(), /Overloaded/);
});

async function parseWith(type: 'openai' | 'anthropic' | 'gemini', res: Response): Promise<StreamEvent[]> {
  const sse = new SseParser();
  const p = adapterFor(type).streamParser();
  const out: StreamEvent[] = [];
  const dec = new TextDecoder();
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      for (const r of sse.push(dec.decode(chunk, { stream: true }))) out.push(...p.push(r.data, r.event));
    }
  } catch {
    // a destroyed socket ends the body with an error; the parser reports the truncation
  }
  for (const r of sse.end()) out.push(...p.push(r.data, r.event));
  return out.concat(p.end());
}

const post = (path: string, body: unknown): Promise<Response> => fetch(up.url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('gemini and azure routes parse with aam adapters', async () => {
  const g = await post('/v1beta/models/tools:streamGenerateContent?alt=sse', { contents: [{ role: 'user', parts: [{ text: 'x' }] }] });
  const ev = await parseWith('gemini', g);
  assert.deepEqual(ev.filter((e) => e.type === 'tool_start').map((e) => e.type === 'tool_start' ? e.name : ''), ['get_weather', 'get_time']);
  assert.equal(ev[ev.length - 1].type, 'finish');
  const gj = await post('/v1beta/models/ok:generateContent', { contents: [{ role: 'user', parts: [{ text: 'gem' }] }] });
  assert.equal(adapterFor('gemini').chatResponse(await gj.json()).text, 'echo: gem');
  const az = await post('/openai/deployments/ok/chat/completions?api-version=2024-10-21', { messages: [{ role: 'user', content: 'az' }] });
  assert.equal(adapterFor('azure-openai').chatResponse(await az.json()).text, 'echo: az');
  assert.equal(up.count('ok') > 0, true);
});

test('cut-stream delivers two content pieces then an incomplete stream', async () => {
  for (const [type, path, body] of [
    ['openai', '/v1/chat/completions', { model: 'cut-stream', stream: true, messages: [{ role: 'user', content: 'a b c d e' }] }],
    ['anthropic', '/v1/messages', { model: 'cut-stream', stream: true, max_tokens: 5, messages: [{ role: 'user', content: 'a b c d e' }] }],
  ] as const) {
    const ev = await parseWith(type, await post(path, body));
    assert.equal(ev.filter((e) => e.type === 'text').length, 2, type);
    const last = ev[ev.length - 1];
    assert.equal(last.type === 'error' ? last.errorType : last.type, 'upstream_incomplete', type);
  }
});

test('error-before-content (openai): role chunk then error, no content', async () => {
  const ev = await parseWith('openai', await post('/v1/chat/completions', { model: 'error-before-content', stream: true, messages: [{ role: 'user', content: 'x' }] }));
  assert.deepEqual(ev.map((e) => e.type), ['start', 'error', 'error']);
});

test('garbage, slow, silent, flaky and hang behave as named', async () => {
  const g = await post('/v1/chat/completions', { model: 'garbage', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(g.status, 200);
  await assert.rejects(g.json());
  let t0 = performance.now();
  const slow = await post('/v1/chat/completions', { model: 'slow-150', messages: [{ role: 'user', content: 'x' }] });
  assert.ok(performance.now() - t0 >= 140);
  assert.equal(slow.status, 200);
  await slow.arrayBuffer();
  t0 = performance.now();
  const silent = await post('/v1/messages', { model: 'silent-150', stream: true, max_tokens: 5, messages: [{ role: 'user', content: 'x y' }] });
  const ev = await parseWith('anthropic', silent);
  assert.ok(performance.now() - t0 >= 140);
  assert.equal(ev[ev.length - 1].type, 'finish');
  const f1 = await post('/v1/chat/completions', { model: 'flaky-1', messages: [{ role: 'user', content: 'x' }] });
  const f2 = await post('/v1/chat/completions', { model: 'flaky-1', messages: [{ role: 'user', content: 'x' }] });
  assert.deepEqual([f1.status, f2.status], [503, 200]);
  await Promise.all([f1.arrayBuffer(), f2.arrayBuffer()]);
  const hang = post('/v1/chat/completions', { model: 'hang', messages: [{ role: 'user', content: 'x' }] });
  const winner = await Promise.race([hang.then(() => 'answered'), new Promise((r) => setTimeout(() => r('hung'), 200))]);
  assert.equal(winner, 'hung');
  hang.catch(() => undefined); // close() destroys the socket
});

test('aborted requests are recorded', async () => {
  up.reset();
  const ac = new AbortController();
  const p = fetch(`${up.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'hang', messages: [] }), signal: ac.signal });
  await new Promise((r) => setTimeout(r, 50));
  ac.abort();
  await assert.rejects(p);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(up.requests[0].aborted, true);
});
