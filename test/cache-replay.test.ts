import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventsToResult, resultToEvents, StreamRecorder } from '../src/cache/replay.ts';
import { adapterFor, codecFor, SseParser } from '../src/providers/index.ts';
import type { ChatResult, StreamEvent } from '../src/providers/types.ts';

const NOW = 1_800_000_000_000;
const twoTools = (): ChatResult => ({
  id: 'chatcmpl-1', model: 'gpt-4o', created: NOW / 1000, text: 'Let me look both up. '.repeat(30), finishReason: 'tool_calls',
  toolCalls: [
    { id: 'call_a', type: 'function', function: { name: 'get_weather', arguments: JSON.stringify({ city: 'Paris', detail: 'x'.repeat(600) }) } },
    { id: 'call_b', type: 'function', function: { name: 'get_time', arguments: '{"tz":"Europe/Paris"}' } },
  ],
  usage: { inputTokens: 12, outputTokens: 34, cachedTokens: 2 },
});

test('resultToEvents: canonical order, text and args chunked, usage before finish', () => {
  const ev = resultToEvents(twoTools());
  assert.deepEqual(ev[0], { type: 'start', id: 'chatcmpl-1', model: 'gpt-4o', usage: twoTools().usage }, 'the usage opens the replay too (an Anthropic client\'s message_start)');
  const types = ev.map((e) => e.type);
  assert.ok(types.filter((t) => t === 'text').length >= 2, 'long text is split into several chunks');
  assert.deepEqual(types.slice(-2), ['usage', 'finish']);
  const firstTool = types.indexOf('tool_start');
  assert.ok(types.lastIndexOf('text') < firstTool);
  const argsA = ev.filter((e): e is Extract<StreamEvent, { type: 'tool_args' }> => e.type === 'tool_args' && e.index === 0);
  assert.ok(argsA.length >= 2, 'long arguments are split');
  const starts = ev.filter((e) => e.type === 'tool_start');
  assert.deepEqual(starts.map((e) => e.type === 'tool_start' && [e.index, e.id, e.name]), [[0, 'call_a', 'get_weather'], [1, 'call_b', 'get_time']]);
  // Each tool's args come after its own start and before the next tool's start.
  const idxB = ev.findIndex((e) => e.type === 'tool_start' && e.index === 1);
  assert.ok(ev.slice(idxB).every((e) => e.type !== 'tool_args' || e.index === 1));
});

test('round trip result -> events -> result, including two tool calls', () => {
  const r = twoTools();
  assert.deepEqual(eventsToResult(resultToEvents(r), NOW), r);
  const textOnly: ChatResult = { id: 'x', model: 'm', created: NOW / 1000, text: 'hi 👋 there', toolCalls: [], finishReason: 'stop' };
  assert.deepEqual(eventsToResult(resultToEvents(textOnly, 3), NOW), textOnly, 'small chunks never split a surrogate pair');
  for (const e of resultToEvents({ ...textOnly, text: '👋'.repeat(20) }, 1)) if (e.type === 'text') assert.ok(e.text.isWellFormed(), JSON.stringify(e.text));
  const noText: ChatResult = { ...twoTools(), text: null };
  assert.deepEqual(eventsToResult(resultToEvents(noText), NOW), noText);
});

test('incomplete or errored streams are never stored', () => {
  const ev = resultToEvents(twoTools());
  assert.equal(eventsToResult(ev.slice(0, -1)), null, 'no finish');
  assert.equal(eventsToResult([...ev.slice(0, 3), { type: 'error', message: 'boom', errorType: 'api_error' }, ...ev.slice(3)]), null, 'error event');
  assert.equal(eventsToResult([{ type: 'start', id: 'x', model: 'm' }, { type: 'tool_args', index: 0, delta: '{}' }, { type: 'finish', reason: 'tool_calls' }]), null, 'args without start');
  assert.equal(eventsToResult([{ type: 'start', id: 'x', model: 'm' }, { type: 'tool_start', index: 1, id: 'c', name: 'f' }, { type: 'finish', reason: 'tool_calls' }]), null, 'gap in tool indexes');
  const rec = new StreamRecorder(10);
  for (const e of resultToEvents({ id: 'x', model: 'm', created: 0, text: 'more than ten characters', toolCalls: [], finishReason: 'stop' })) rec.push(e);
  assert.equal(rec.result(), null, 'over maxChars');
});

test('interleaved tool deltas (as upstreams send them) are reassembled per index', () => {
  const ev: StreamEvent[] = [
    { type: 'start', id: 'x', model: 'm' },
    { type: 'tool_start', index: 0, id: 'a', name: 'f' }, { type: 'tool_start', index: 1, id: 'b', name: 'g' },
    { type: 'tool_args', index: 1, delta: '{"y"' }, { type: 'tool_args', index: 0, delta: '{"x"' },
    { type: 'tool_args', index: 0, delta: ':1}' }, { type: 'tool_args', index: 1, delta: ':2}' },
    { type: 'finish', reason: 'tool_calls' },
  ];
  const r = eventsToResult(ev, NOW)!;
  assert.deepEqual(r.toolCalls.map((t) => t.function.arguments), ['{"x":1}', '{"y":2}']);
  assert.equal(r.text, null);
  assert.equal(r.usage, undefined);
});

// A replayed hit goes through the client's real codec; parsing that SSE back must give the same answer.
for (const wire of ['openai', 'anthropic'] as const) {
  test(`replay encodes with the ${wire} codec and parses back to the same answer`, () => {
    const r = twoTools();
    const encode = codecFor(wire).streamEncoder({ includeUsage: true, model: 'fast' });
    let sse = '';
    for (const e of resultToEvents(r)) sse += encode(e);
    sse += codecFor(wire).streamDone;
    const parser = adapterFor(wire).streamParser();
    const rec = new StreamRecorder(Infinity, NOW);
    for (const recd of new SseParser().push(sse)) {
      if (recd.data === '[DONE]') continue;
      for (const e of parser.push(recd.data, recd.event)) rec.push(e);
    }
    for (const e of parser.end()) rec.push(e);
    const back = rec.result();
    assert.ok(back, 'complete stream');
    assert.equal(back.text, r.text);
    assert.deepEqual(back.toolCalls, r.toolCalls);
    assert.equal(back.finishReason, 'tool_calls');
    assert.equal(back.usage?.outputTokens, 34);
  });
}
