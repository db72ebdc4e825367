// The OpenAI stream parser reads text chunks in the frame of one parsed whole by comparing the
// frame (providers/chunk-template.ts). Every chunk must still give exactly the events a whole
// parse gives: escapes, non-strings and broken JSON in the content slot, tool calls, finish.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { adapterFor } from '../src/providers/index.ts';
import { learnTemplate, matchTemplate } from '../src/providers/chunk-template.ts';
import type { StreamEvent } from '../src/providers/types.ts';

const PRE = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[';
const text = (lit: string) => `${PRE}{"index":0,"delta":{"content":${lit}},"logprobs":null,"finish_reason":null}],"usage":null}`;
const ROLE = `${PRE}{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`;
const FINISH = `${PRE}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`;
const USAGE = `${PRE}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`;

function events(chunks: string[]): StreamEvent[] {
  const p = adapterFor('openai').streamParser();
  const out: StreamEvent[] = [];
  for (const c of chunks) out.push(...p.push(c));
  out.push(...p.push('[DONE]'), ...p.end());
  return out;
}

/** The same chunks, each parsed by a fresh parser (never a template), as a whole parse reads them. */
function wholeEvents(chunks: string[]): StreamEvent[] {
  // A parser that has started, fed one chunk at a time from a new instance per chunk, would emit
  // start again; so compare the text/tool/error events only, in order.
  const out: StreamEvent[] = [];
  for (const c of chunks) {
    const p = adapterFor('openai').streamParser();
    for (const ev of p.push(c)) if (ev.type !== 'start') out.push(ev);
  }
  return out;
}

/** Events of chunks pushed into one parser (no end), but start. */
function bodyEvents(chunks: string[]): StreamEvent[] {
  const p = adapterFor('openai').streamParser();
  return chunks.flatMap((c) => p.push(c)).filter((e) => e.type !== 'start');
}

test('chunk template: a text stream gives the same events as whole parses, with far fewer JSON.parse calls', () => {
  const words = ['Hello', '!', ' I', "'m", ' a', ' mock', ' upstream', ' that', ' answers', ' as'];
  const chunks = [ROLE, ...Array.from({ length: 40 }, (_, i) => text(JSON.stringify(words[i % words.length]))), FINISH, USAGE];
  const parse = JSON.parse;
  let calls = 0;
  JSON.parse = ((s: string, r?: Parameters<typeof JSON.parse>[1]) => { calls++; return parse(s, r); }) as typeof JSON.parse;
  let got: StreamEvent[];
  try { got = events(chunks); } finally { JSON.parse = parse; }
  assert.deepEqual(got[0], { type: 'start', id: 'chatcmpl-1', model: 'm' });
  assert.equal(got.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join(''), Array.from({ length: 40 }, (_, i) => words[i % words.length]).join(''));
  assert.deepEqual(got.slice(-2), [{ type: 'usage', usage: { inputTokens: 3, outputTokens: 2 } }, { type: 'finish', reason: 'stop' }]);
  // role chunk, first text chunk, finish, usage: parsed whole; the other 39 text chunks are not.
  assert.ok(calls <= 5, `JSON.parse ran ${calls} times for ${chunks.length} chunks`);
});

test('chunk template: escapes in the content string decode as JSON.parse decodes them', () => {
  const lits = ['"a\\"b"', '"\\u00e9\\u4e2d\\ud83d\\ude00"', '"line\\nnext\\t\\\\"', '"\\/"', '"plain é 中"'];
  const chunks = [text('"first"'), ...lits.map(text)];
  assert.deepEqual(bodyEvents(chunks), wholeEvents(chunks));
  assert.deepEqual(bodyEvents(chunks).map((e) => (e as { text: string }).text), ['first', 'a"b', 'é中😀', 'line\nnext\t\\', '/', 'plain é 中']);
});

test('chunk template: whatever is not one valid string in the frame is parsed whole (same events)', () => {
  const odd = [
    text('"x","content":"y"'), // two values in the slot: the last one wins in JSON.parse
    text('42'), text('null'), text('{"a":"b"}'), text('""'),
    text('"bad \\x escape"'), // invalid JSON: an error event
    text('"raw\u0001control"'), // a raw control character is not JSON either
  ];
  for (const c of odd) {
    const chunks = [text('"first"'), c, text('"after"')];
    const got = bodyEvents(chunks);
    const want = wholeEvents(chunks);
    // A parser stops at its first error event; the rest is the caller's business.
    const cut = want.findIndex((e) => e.type === 'error');
    assert.deepEqual(cut < 0 ? got : got.slice(0, cut + 1), cut < 0 ? want : want.slice(0, cut + 1), c);
  }
});

test('chunk template: tool-call, finish and usage chunks in another frame are read whole', () => {
  const tool = `${PRE}{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\":"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`;
  const args = `${PRE}{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}`;
  const fin = `${PRE}{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}`;
  const got = events([ROLE, text('"thinking"'), text('" more"'), tool, args, fin, USAGE]);
  assert.deepEqual(got.slice(1), [
    { type: 'text', text: 'thinking' }, { type: 'text', text: ' more' },
    { type: 'tool_start', index: 0, id: 'call_1', name: 'f' }, { type: 'tool_args', index: 0, delta: '{"a":' },
    { type: 'tool_args', index: 0, delta: '1}' },
    { type: 'usage', usage: { inputTokens: 3, outputTokens: 2 } }, { type: 'finish', reason: 'tool_calls' },
  ]);
});

test('chunk template: learned only where the content key is the one JSON.parse read', () => {
  assert.equal(learnTemplate('{"content":"a","content":"b"}', 'b'), null);
  assert.equal(learnTemplate('{"x":"say \\"content","delta":{"content":"a"}}', 'a'), null);
  // Spaces after the colon (Gemini's style) belong to the frame: a compact chunk is another frame.
  const spaced = learnTemplate('{"delta":{"content": "a"}}', 'a');
  assert.ok(spaced);
  assert.equal(matchTemplate(spaced, '{"delta":{"content": "b"}}'), 'b');
  assert.equal(matchTemplate(spaced, '{"delta":{"content":"b"}}'), null);
  assert.equal(learnTemplate('{"content" "a"}', 'a'), null); // no colon: not a key
  const t = learnTemplate('{"delta":{"content":"a"},"n":1}', 'a');
  assert.ok(t);
  assert.equal(matchTemplate(t, '{"delta":{"content":"bc"},"n":1}'), 'bc');
  assert.equal(matchTemplate(t, '{"delta":{"content":"bc"},"n":2}'), null);
  assert.equal(matchTemplate(t, '{"delta":{"content":"b"},"x":"c"},"n":1}'), null);
  assert.equal(matchTemplate(t, '{"delta":{"content":"b\\"},"n":1}'), null);
});

test('chunk template: OpenAI\'s obfuscation padding, different in every chunk, still matches; odd padding is parsed whole', () => {
  const padded = (lit: string, pad: string) => text(lit).slice(0, -1) + `,"obfuscation":${pad}}`;
  const chunks = [ROLE, ...Array.from({ length: 30 }, (_, i) => padded(JSON.stringify(`w${i} `), JSON.stringify('x'.repeat(i % 7)))), FINISH, USAGE];
  const parse = JSON.parse;
  let calls = 0;
  JSON.parse = ((s: string, r?: Parameters<typeof JSON.parse>[1]) => { calls++; return parse(s, r); }) as typeof JSON.parse;
  let got: StreamEvent[];
  try { got = events(chunks); } finally { JSON.parse = parse; }
  assert.equal(got.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join(''), Array.from({ length: 30 }, (_, i) => `w${i} `).join(''));
  assert.ok(calls <= 5, `JSON.parse ran ${calls} times for ${chunks.length} chunks`);
  const odd = [padded('"a"', '"q\\"x"'), padded('"b"', '7'), `${text('"c"').slice(0, -1)},"obfuscation":"p","more":"z"}`, padded('"d"', '"p"') + ' '];
  const all = [padded('"first"', '"p"'), ...odd, padded('"after"', '"pp"')];
  assert.deepEqual(bodyEvents(all), wholeEvents(all));
});

/** Counts JSON.parse calls while fn runs. */
function countingParse<T>(fn: () => T): { value: T; calls: number } {
  const parse = JSON.parse;
  let calls = 0;
  JSON.parse = ((s: string, r?: Parameters<typeof JSON.parse>[1]) => { calls++; return parse(s, r); }) as typeof JSON.parse;
  try { return { value: fn(), calls }; } finally { JSON.parse = parse; }
}

type Rec = { data: string; event?: string };
/** Every record through one parser, and each through a fresh one (a whole parse), as events but start. */
function bothWays(type: 'anthropic' | 'gemini', recs: Rec[]): { one: StreamEvent[]; whole: StreamEvent[]; calls: number } {
  const { value: one, calls } = countingParse(() => {
    const p = adapterFor(type).streamParser();
    return recs.flatMap((r) => p.push(r.data, r.event)).filter((e) => e.type !== 'start');
  });
  const whole: StreamEvent[] = [];
  for (const r of recs) {
    for (const ev of adapterFor(type).streamParser().push(r.data, r.event)) if (ev.type !== 'start') whole.push(ev);
  }
  return { one, whole, calls };
}

const A_DELTA = (lit: string) => `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":${lit}}}`;
const aRec = (data: string, event = /"type":"(\w+)"/.exec(data)?.[1]): Rec => ({ event, data });
const A_START = aRec('{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3,"output_tokens":1}}}');
const A_BLOCK = aRec('{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}');
const A_STOP = aRec('{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}');

test('chunk template, Anthropic: text_delta events in one frame are read without JSON.parse, same events as whole parses', () => {
  const words = Array.from({ length: 40 }, (_, i) => `w${i} `);
  const recs = [A_START, A_BLOCK, ...words.map((w) => aRec(A_DELTA(JSON.stringify(w)))), aRec('{"type":"content_block_stop","index":0}'), A_STOP];
  const { one, calls } = bothWays('anthropic', recs);
  assert.equal(one.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join(''), words.join(''));
  assert.deepEqual(one.slice(-2), [{ type: 'usage', usage: { inputTokens: 3, outputTokens: 7 } }, { type: 'finish', reason: 'stop' }]);
  assert.ok(calls <= 6, `JSON.parse ran ${calls} times for ${recs.length} events`);
  // Escapes, odd values, another index, another SSE event name, a tool's input_json_delta: as whole parses read them.
  const odd = [aRec(A_DELTA('"a\\"b\\u00e9"')), aRec(A_DELTA('42')), aRec(A_DELTA('""')), aRec(A_DELTA('"x\\q"')),
    aRec(A_DELTA('"other index"').replace('"index":0', '"index":1')), { event: 'ping', data: A_DELTA('"event differs"') },
    aRec(A_DELTA('"plain"').replace('"type":"content_block_delta",', ''), 'content_block_delta')];
  for (const r of odd) {
    const chunks = [aRec(A_DELTA('"first"')), r, aRec(A_DELTA('"after"'))];
    const got = bothWays('anthropic', chunks);
    assert.deepEqual(got.one, got.whole, r.data);
  }
});

const G = (lit: string, usage = '{"promptTokenCount": 5,"totalTokenCount": 5}', extra = '') =>
  `{"candidates": [{"content": {"parts": [{"text": ${lit}}],"role": "model"}${extra},"index": 0}],"usageMetadata": ${usage},"modelVersion": "gemini-2.5-flash","responseId": "r1"}`;
const gRec = (data: string): Rec => ({ data });

test('chunk template, Gemini: text chunks in one frame are read without JSON.parse, same events and usage as whole parses', () => {
  const words = Array.from({ length: 40 }, (_, i) => `g${i} `);
  const last = G('"."', '{"promptTokenCount": 5,"candidatesTokenCount": 41,"totalTokenCount": 46}', ',"finishReason": "STOP"');
  const recs = [...words.map((w) => gRec(G(JSON.stringify(w)))), gRec(last)];
  const { one, calls } = bothWays('gemini', recs);
  assert.equal(one.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join(''), words.join('') + '.');
  assert.deepEqual(one.slice(-2), [{ type: 'usage', usage: { inputTokens: 5, outputTokens: 41 } }, { type: 'finish', reason: 'stop' }]);
  assert.ok(calls <= 4, `JSON.parse ran ${calls} times for ${recs.length} chunks`);
  // A thought, a function call, two parts, a usage that changes: parsed whole, as before.
  const odd = [G('"t"').replace('{"text": "t"}', '{"text": "t","thought": true}'), G('"f"').replace('{"text": "f"}', '{"functionCall": {"name": "f","args": {}}}'),
    G('"a"').replace('{"text": "a"}', '{"text": "a"},{"text": "b"}'), G('"u"', '{"promptTokenCount": 6,"totalTokenCount": 6}'), G('"\\u00e9\\n"'), G('7')];
  for (const d of odd) {
    const got = bothWays('gemini', [gRec(G('"first"')), gRec(d), gRec(G('"after"'))]);
    assert.deepEqual(got.one, got.whole, d);
  }
});

test('chunk template, Gemini: a chunk in the template\'s frame restores the usage it carries, though a chunk parsed whole changed it since', () => {
  const u1 = '{"promptTokenCount": 5,"candidatesTokenCount": 1,"totalTokenCount": 6}';
  const u2 = '{"promptTokenCount": 5,"candidatesTokenCount": 9,"totalTokenCount": 14}';
  const fin = G('""', '{"promptTokenCount": 5,"totalTokenCount": 5}', ',"finishReason": "STOP"').replace(',"usageMetadata": {"promptTokenCount": 5,"totalTokenCount": 5}', '');
  // learned with u1; a two-part chunk (parsed whole, not learned) sets u2; a u1-frame chunk then means u1 again.
  const recs = [G('"a"', u1), G('"b"', u2).replace('{"text": "b"}', '{"text": "b"},{"text": "c"}'), G('"d"', u1), fin].map(gRec);
  const p = adapterFor('gemini').streamParser();
  const evs = recs.flatMap((r) => p.push(r.data));
  assert.deepEqual(evs.find((e) => e.type === 'usage'), { type: 'usage', usage: { inputTokens: 5, outputTokens: 1 } });
});
