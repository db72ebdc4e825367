// A giant upstream SSE event (a 2 MB content delta) is parsed across loop turns
// (src/gateway/stream.ts, eventsInTurns), with the same events a whole JSON.parse gives, for each
// upstream wire, and the same refusal when it is not JSON.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openUpstreamStream } from '../src/gateway/stream.ts';
import type { UpstreamBody } from '../src/gateway/upstream.ts';
import type { Target } from '../src/gateway/routes.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
import { anthropicAdapter } from '../src/providers/anthropic.ts';
import { geminiAdapter } from '../src/providers/gemini.ts';
import { responsesUpstreamAdapter } from '../src/providers/responses-upstream.ts';
import type { ProviderAdapter, StreamEvent } from '../src/providers/types.ts';
import type { OpenStream } from '../src/gateway/stream.ts';
import { prng } from './helpers/hostile-text.ts';

const target = { label: 'up/x', provider: {} } as unknown as Target;

/** Every event after an open stream's head, batch by batch (a batch is a value when it is there, else a promise). */
async function restOf(stream: OpenStream): Promise<StreamEvent[]> {
  const out: StreamEvent[] = [];
  for (let b = stream.next(); ; b = stream.next()) {
    const batch = b instanceof Promise ? await b : b;
    if (batch === null) return out;
    out.push(...batch);
  }
}

function bodyOf(chunks: string[]): UpstreamBody {
  const it = (async function* () { for (const c of chunks) yield Buffer.from(c); })();
  return Object.assign(it, { destroy() {}, drained: false }) as UpstreamBody;
}

async function eventsOf(adapter: ProviderAdapter, chunks: string[]): Promise<{ events: StreamEvent[]; turns: number; failed?: string }> {
  let turns = 0, running = true;
  const tick = () => { turns++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const r = await openUpstreamStream(target, bodyOf(chunks), adapter.streamParser());
  const events: StreamEvent[] = [];
  if (r.ok) events.push(...r.value.head, ...await restOf(r.value));
  running = false;
  return { events, turns, failed: r.ok ? undefined : r.message };
}

function text(n: number): string {
  const units = ['a', ' ', '"', '\\', '\n', 'é', '😀', '\u2028', 'x'.repeat(30)];
  const r = prng(4);
  let s = '';
  while (s.length < n) s += units[Math.floor(r() * units.length)];
  return s;
}

const sse = (data: unknown, event?: string) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
const BIG = text(2_000_000);

const WIRES: Array<[string, ProviderAdapter, (t: string) => string[]]> = [
  ['openai', openaiAdapter, (t) => [
    sse({ id: 'c', choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }),
    sse({ id: 'c', choices: [{ index: 0, delta: { content: t } }] }),
    sse({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n']],
  ['anthropic', anthropicAdapter, (t) => [
    sse({ type: 'message_start', message: { id: 'm', model: 'x', usage: { input_tokens: 1 } } }, 'message_start'),
    sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start'),
    sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } }, 'content_block_delta'),
    sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 1 } }, 'message_delta'),
    sse({ type: 'message_stop' }, 'message_stop')]],
  ['gemini', geminiAdapter, (t) => [
    sse({ candidates: [{ content: { parts: [{ text: t }] } }] }),
    sse({ candidates: [{ content: { parts: [] }, finishReason: 'STOP' }], usageMetadata: { promptTokenCount: 1, candidatesTokenCount: 1 } })]],
  ['responses', responsesUpstreamAdapter, (t) => [
    sse({ type: 'response.created', response: { id: 'r', model: 'x' } }),
    sse({ type: 'response.output_text.delta', delta: t }),
    sse({ type: 'response.completed', response: { id: 'r', model: 'x', status: 'completed', usage: { input_tokens: 1, output_tokens: 1 } } })]],
];

const textOf = (evs: StreamEvent[]) => evs.map((e) => (e.type === 'text' ? e.text : '')).join('');
const kinds = (evs: StreamEvent[]) => evs.map((e) => e.type).join(',');

for (const [name, adapter, frames] of WIRES) {
  test(`${name}: a 2 MB stream event is parsed across loop turns into the same events as a short one`, async () => {
    const big = await eventsOf(adapter, frames(BIG));
    assert.equal(big.failed, undefined);
    assert.equal(textOf(big.events), BIG);
    const small = await eventsOf(adapter, frames('hello'));
    assert.equal(kinds(big.events), kinds(small.events));
    assert.ok(big.turns >= 3, `parsed in ${big.turns} loop turns`);
  });
}

test('a 2 MB stream event that is not JSON is refused as a short one is', async () => {
  const bad = `data: {"id":"c","choices":[{"index":0,"delta":{"content":"${'a'.repeat(2_000_000)}"}}]\n\n`;
  const r = await eventsOf(openaiAdapter, [sse({ id: 'c', choices: [{ index: 0, delta: { role: 'assistant' } }] }), bad]);
  const short = await eventsOf(openaiAdapter, [sse({ id: 'c', choices: [{ index: 0, delta: { role: 'assistant' } }] }), 'data: {"id":"c"\n\n']);
  assert.match(r.failed ?? '', /not JSON/);
  assert.equal(r.failed, short.failed);
});

test('a read of several chunks is framed chunk by chunk, unjoined, with the events of one whole buffer (splits inside a UTF-8 character and a CRLF)', async () => {
  const frame = (t: string) => `data: {"choices":[{"index":0,"delta":{"content":${JSON.stringify(t)}},"finish_reason":null}]}\r\n\r\n`;
  const sse = `data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\r\n\r\n${
    ['é中', '😀 a', 'b\u2028c', 'plain', 'é'].map(frame).join('')}data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\n\r\ndata: [DONE]\r\n\r\n`;
  const bytes = Buffer.from(sse);
  const read = async (parts: readonly (Buffer | readonly Buffer[])[]) => {
    const it = (async function* () { yield* parts; })();
    const r = await openUpstreamStream(target, Object.assign(it, { destroy() {}, drained: false }) as UpstreamBody, openaiAdapter.streamParser());
    assert.ok(r.ok);
    return [...r.value.head, ...await restOf(r.value)];
  };
  const want = await read([bytes]);
  assert.equal(want.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join(''), 'é中😀 ab\u2028cplainé');
  // The first chunk alone (as the body delivers it), then the rest of the read as unjoined pieces cut at every byte.
  for (let cut = 1; cut < bytes.length - 1; cut += 3) {
    const rest = bytes.subarray(cut);
    const pieces = [rest.subarray(0, 5), rest.subarray(5, 6), rest.subarray(6, (rest.length >> 1) + (cut % 7)), rest.subarray((rest.length >> 1) + (cut % 7))];
    assert.deepEqual(await read([bytes.subarray(0, cut), pieces]), want, `cut at ${cut}`);
  }
});
