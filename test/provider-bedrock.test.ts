// Bedrock Converse translation (golden files, like the other providers) and the AWS event-stream
// decoder (prelude, headers, both CRCs, any chunking, hostile lengths). Vertex shares Gemini's
// translation; its request goldens are here too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { adapterFor, codecFor, parseAnthropicRequest, parseOpenAIChatRequest } from '../src/providers/index.ts';
import { crc32, decodeMessage, EventStreamDecoder, EventStreamFramer, encodeMessage, MAX_MESSAGE } from '../src/providers/bedrock-eventstream.ts';
import type { StreamEvent } from '../src/providers/types.ts';
import { golden } from './helpers/golden.ts';
import { eventsToResult } from '../src/cache/replay.ts';
import { builtinPricing, resolvePricing } from '../src/config/pricing.ts';
import { eventFrame, eventStream, exceptionFrame, type Frame } from './helpers/eventstream.ts';

const DIR = join(import.meta.dirname, 'golden');
const reqDir = join(DIR, 'requests');
const streamDir = join(DIR, 'streams');

// ---- event-stream framing ----

test('eventstream: crc32 is the zlib CRC-32', () => {
  let x = 7;
  for (const n of [0, 1, 2, 15, 16, 255, 1000]) {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) & 0x7fffffff; b[i] = x & 0xff; }
    assert.equal(crc32(b), zlibCrc32(b), `length ${n}`);
  }
});

test('eventstream: a message round-trips; prelude and message CRCs are checked', () => {
  const payload = new TextEncoder().encode('{"a":1}');
  const m = encodeMessage({ ':event-type': 'chunk', ':message-type': 'event' }, payload);
  const d = decodeMessage(m);
  assert.deepEqual(d.headers, { ':event-type': 'chunk', ':message-type': 'event' });
  assert.equal(new TextDecoder().decode(d.payload), '{"a":1}');
  const badPrelude = m.slice(); badPrelude[9] ^= 1;
  assert.throws(() => decodeMessage(badPrelude), /prelude CRC mismatch/);
  const badPayload = m.slice(); badPayload[m.length - 6] ^= 0x20;
  assert.throws(() => decodeMessage(badPayload), /message CRC mismatch/);
});

/** A message with every header type, built by hand from the spec (independent of encodeMessage). */
function typedHeadersMessage(): Uint8Array {
  const h: number[] = [];
  const name = (s: string) => { h.push(s.length, ...Buffer.from(s)); };
  name('t'); h.push(0);
  name('f'); h.push(1);
  name('b'); h.push(2, 0xff);
  name('s'); h.push(3, 0x01, 0x02);
  name('i'); h.push(4, 0x00, 0x00, 0x01, 0x00);
  name('l'); h.push(5, 0, 0, 0, 0, 0, 0, 0, 9);
  name('y'); h.push(6, 0, 2, 0xde, 0xad);
  name('str'); h.push(7, 0, 2, 0x68, 0x69);
  name('ts'); h.push(8, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0x00);
  name('u'); h.push(9, ...new Array<number>(16).fill(0xab));
  const payload = [0x7b, 0x7d];
  const total = 12 + h.length + payload.length + 4;
  const out = Buffer.alloc(total);
  out.writeUInt32BE(total, 0);
  out.writeUInt32BE(h.length, 4);
  out.writeUInt32BE(zlibCrc32(out.subarray(0, 8)), 8);
  Buffer.from(h).copy(out, 12);
  Buffer.from(payload).copy(out, 12 + h.length);
  out.writeUInt32BE(zlibCrc32(out.subarray(0, total - 4)), total - 4);
  return out;
}

test('eventstream: every header type decodes', () => {
  const d = decodeMessage(typedHeadersMessage());
  assert.equal(d.headers.t, true);
  assert.equal(d.headers.f, false);
  assert.equal(d.headers.b, -1);
  assert.equal(d.headers.s, 0x0102);
  assert.equal(d.headers.i, 256);
  assert.equal(d.headers.l, 9n);
  assert.deepEqual([...(d.headers.y as Uint8Array)], [0xde, 0xad]);
  assert.equal(d.headers.str, 'hi');
  assert.equal(d.headers.ts, 1700000000000);
  assert.equal((d.headers.u as Uint8Array).length, 16);
  const bad = Buffer.from(typedHeadersMessage());
  bad[12 + 2] = 42; // type byte of the first header
  bad.writeUInt32BE(zlibCrc32(bad.subarray(0, bad.length - 4)), bad.length - 4);
  assert.throws(() => decodeMessage(bad), /unknown type 42/);
});

test('eventstream: messages decode the same at any chunk boundary (byte by byte, random)', () => {
  const frames = [eventFrame('a', { x: 'é'.repeat(50) }), eventFrame('b', { y: 2 }), exceptionFrame('throttlingException', 'slow down')];
  const all = Buffer.concat(frames);
  const view = (ms: ReturnType<EventStreamDecoder['push']>) => ms.map((m) => ({ headers: m.headers, payload: Buffer.from(m.payload).toString() }));
  const reference = view(new EventStreamDecoder().push(all));
  assert.equal(reference.length, 3);
  for (const step of [1, 2, 3, 7, 13, 100]) {
    const d = new EventStreamDecoder();
    const got = [];
    for (let i = 0; i < all.length; i += step) got.push(...d.push(all.subarray(i, i + step)));
    assert.deepEqual(view(got), reference, `step ${step}`);
    assert.equal(d.pending, 0);
  }
});

test('eventstream: a hostile length is refused before buffering; corruption poisons the stream', () => {
  const big = Buffer.alloc(12);
  big.writeUInt32BE(MAX_MESSAGE + 1, 0);
  big.writeUInt32BE(0, 4);
  big.writeUInt32BE(zlibCrc32(big.subarray(0, 8)), 8);
  const d = new EventStreamDecoder();
  assert.throws(() => d.push(big), /declares \d+ bytes/);
  assert.throws(() => d.push(eventFrame('a', {})), /declares/, 'stays failed: framing is lost');
  const garbage = Buffer.from('not an event stream at all, just text');
  assert.throws(() => new EventStreamDecoder().push(garbage), /prelude CRC mismatch/);
});

test('eventstream framer: records carry the event type; exceptions, corruption and truncation become error records', () => {
  const f = new EventStreamFramer();
  assert.deepEqual(f.push(eventFrame('messageStart', { role: 'assistant' })), [{ event: 'messageStart', data: '{"role":"assistant"}' }]);
  assert.deepEqual(f.push(exceptionFrame('validationException', 'bad input')), [{ event: 'exception:validationException', data: '{"message":"bad input"}' }]);
  const cut = eventFrame('metadata', { usage: {} });
  assert.deepEqual(f.push(cut.subarray(0, 20)), []);
  assert.match(f.end()[0].event ?? '', /^error:eventstream$/);
  const g = new EventStreamFramer();
  const corrupt = eventFrame('contentBlockDelta', { delta: { text: 'hi' } });
  corrupt[corrupt.length - 8] ^= 1;
  const rec = g.push(corrupt);
  assert.equal(rec.length, 1);
  assert.equal(rec[0].event, 'error:eventstream');
  assert.match(rec[0].data, /CRC mismatch/);
  assert.deepEqual(g.push(eventFrame('a', {})), [], 'nothing is read after corruption');
});

// ---- request translation (goldens) ----

const TARGETS = {
  bedrock: { type: 'bedrock' as const, target: { model: 'anthropic.claude-3-5-sonnet-20240620-v1:0', options: {} } },
  vertex: { type: 'vertex' as const, target: { model: 'gemini-2.5-flash', options: {} } },
};

for (const c of readdirSync(reqDir).filter((f) => /^[^.]+\.json$/.test(f)).map((f) => f.slice(0, -5))) {
  test(`request golden: ${c} -> bedrock, vertex`, () => {
    const parsed = parseOpenAIChatRequest(JSON.parse(readFileSync(join(reqDir, `${c}.json`), 'utf8')));
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.message);
    for (const [name, { type, target }] of Object.entries(TARGETS)) {
      let view: unknown;
      try {
        const up = adapterFor(type).chatRequest(parsed.req, { ...target, stream: parsed.req.stream === true });
        assert.equal(up.headers.authorization, undefined, 'providers never add credentials');
        view = { method: up.method, path: up.path, headers: up.headers, body: JSON.parse(up.body) as unknown };
      } catch (e) {
        view = { error: (e as Error).message };
      }
      golden(join(reqDir, `${c}.${name}.json`), JSON.stringify(view, null, 2) + '\n');
    }
  });
}

// Anthropic clients (/v1/messages) to Claude on Bedrock: cache breakpoints become cachePoint blocks
// (system, content, tools), thinking blocks reasoningContent, in the client's order.
const antDir = join(reqDir, '..', 'anthropic-requests');
for (const c of readdirSync(antDir).filter((f) => /^[^.]+\.json$/.test(f)).map((f) => f.slice(0, -5))) {
  test(`request golden (Anthropic client): ${c} -> bedrock`, () => {
    // Bedrock takes no image links: the cases' linked images go inline (a 1x1 PNG).
    const text = readFileSync(join(antDir, `${c}.json`), 'utf8').replace(/\{ "type": "url", "url": "[^"]+" \}/g, '{ "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo=" }');
    const parsed = parseAnthropicRequest(JSON.parse(text));
    assert.ok(parsed.ok, parsed.ok ? '' : parsed.message);
    const up = adapterFor('bedrock').chatRequest(parsed.req, { ...TARGETS.bedrock.target, stream: parsed.req.stream === true });
    golden(join(antDir, `${c}.bedrock.json`), JSON.stringify({ method: up.method, path: up.path, headers: up.headers, body: JSON.parse(up.body) as unknown }, null, 2) + '\n');
    assert.doesNotMatch(up.body, /cache_control/);
  });
}

test('bedrock request: cache points only for models that take them (Claude, Nova), never without a breakpoint', () => {
  const parsed = parseOpenAIChatRequest(JSON.parse(readFileSync(join(reqDir, 'cache-control.json'), 'utf8')));
  assert.ok(parsed.ok);
  const body = (model: string) => adapterFor('bedrock').chatRequest(parsed.req, { model, options: {}, stream: false }).body;
  assert.match(body('us.amazon.nova-pro-v1:0'), /"cachePoint"/);
  assert.doesNotMatch(body('meta.llama3-70b-instruct-v1:0'), /"cachePoint"/, 'Llama would refuse the block');
  const plain = parseOpenAIChatRequest(JSON.parse(readFileSync(join(reqDir, 'basic.json'), 'utf8')));
  assert.ok(plain.ok);
  assert.doesNotMatch(adapterFor('bedrock').chatRequest(plain.req, { ...TARGETS.bedrock.target, stream: false }).body, /cachePoint/);
});

test('bedrock usage: cache reads and writes apart from inputTokens; cacheDetails\' one-hour writes priced as such', () => {
  const r = adapterFor('bedrock').chatResponse({ output: { message: { content: [{ text: 'x' }] } }, stopReason: 'end_turn',
    usage: { inputTokens: 10, outputTokens: 2, cacheReadInputTokens: 100, cacheWriteInputTokens: 300, cacheDetails: [{ ttl: '1h', inputTokens: 250 }, { ttl: '5m', inputTokens: 50 }] } });
  assert.deepEqual(r.usage, { inputTokens: 410, outputTokens: 2, cachedTokens: 100, cacheWriteTokens: 300, cacheWrite1hTokens: 250 });
});

test('bedrock request: the Vertex body is the Gemini body (one translation), only the path differs', () => {
  const parsed = parseOpenAIChatRequest(JSON.parse(readFileSync(join(reqDir, 'tools-roundtrip.json'), 'utf8')));
  assert.ok(parsed.ok);
  const t = { model: 'gemini-2.5-flash', options: {}, stream: true };
  assert.deepEqual(adapterFor('vertex').chatRequest(parsed.req, t), adapterFor('gemini').chatRequest(parsed.req, t));
});

test('bedrock request: tool_choice none leaves tools out unless the history holds tool blocks', () => {
  const base = { model: 'm', tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }], tool_choice: 'none' };
  const plain = parseOpenAIChatRequest({ ...base, messages: [{ role: 'user', content: 'hi' }] });
  assert.ok(plain.ok);
  assert.equal(JSON.parse(adapterFor('bedrock').chatRequest(plain.req, { model: 'm', options: {}, stream: false }).body).toolConfig, undefined);
  const hist = parseOpenAIChatRequest({ ...base, messages: [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
  ] });
  assert.ok(hist.ok);
  const body = JSON.parse(adapterFor('bedrock').chatRequest(hist.req, { model: 'm', options: {}, stream: false }).body);
  assert.equal(body.toolConfig.tools[0].toolSpec.name, 'f');
  assert.equal(body.toolConfig.toolChoice, undefined);
  assert.deepEqual(body.messages[2].content[0], { toolResult: { toolUseId: 'call_1', content: [{ text: 'ok' }] } });
});

// ---- response translation ----

test('bedrock response: text, tool calls, stop reason and usage (cached tokens counted in input)', () => {
  const r = adapterFor('bedrock').chatResponse({
    output: { message: { role: 'assistant', content: [
      { text: 'Checking.' },
      { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { location: 'Paris' } } },
    ] } },
    stopReason: 'tool_use',
    usage: { inputTokens: 100, outputTokens: 20, totalTokens: 120, cacheReadInputTokens: 50 },
    metrics: { latencyMs: 300 },
  });
  assert.equal(r.text, 'Checking.');
  assert.deepEqual(r.toolCalls, [{ id: 'tooluse_1', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }]);
  assert.equal(r.finishReason, 'tool_calls');
  assert.deepEqual(r.usage, { inputTokens: 150, outputTokens: 20, cachedTokens: 50 });
  assert.equal(adapterFor('bedrock').chatResponse({ output: { message: { content: [{ text: 'x' }] } }, stopReason: 'max_tokens' }).finishReason, 'length');
  assert.equal(adapterFor('bedrock').chatResponse({ output: { message: { content: [] } }, stopReason: 'guardrail_intervened' }).finishReason, 'content_filter');
  assert.throws(() => adapterFor('bedrock').chatResponse({ message: 'nope' }), /no output.message.content/);
});

test('bedrock pricing: built-in prices apply to Bedrock model ids and inference profiles (budgets bind without pricing)', () => {
  const sonnet4 = builtinPricing('claude-sonnet-4');
  assert.ok(sonnet4);
  assert.deepEqual(resolvePricing('bedrock', 'us.anthropic.claude-sonnet-4-20250514-v1:0'), sonnet4);
  assert.deepEqual(resolvePricing('bedrock', 'anthropic.claude-3-5-sonnet-20240620-v1:0'), builtinPricing('claude-3-5-sonnet'));
  assert.equal(resolvePricing('bedrock', 'amazon.nova-pro-v1:0'), null, 'unknown models stay unpriced');
  assert.equal(resolvePricing('openai', 'anthropic.claude-3-5-sonnet'), null, 'only Bedrock ids are rewritten');
});

test('bedrock errors: a rejected signature says where to look', () => {
  const e = adapterFor('bedrock').errorMessage(403, { message: 'The request signature we calculated does not match the signature you provided.' });
  assert.equal(e.type, 'authentication_error');
  assert.match(e.message, /signature we calculated does not match.*check the AWS access key id and secret/);
  assert.equal(adapterFor('bedrock').errorMessage(429, { message: 'Too many requests' }).type, 'rate_limit_error');
});

// ---- stream translation (goldens) ----

function parseFrames(bytes: Buffer, step: number): StreamEvent[] {
  const framer = new EventStreamFramer();
  const parser = adapterFor('bedrock').streamParser();
  const events: StreamEvent[] = [];
  for (let i = 0; i < bytes.length; i += step) for (const r of framer.push(bytes.subarray(i, i + step))) events.push(...parser.push(r.data, r.event));
  for (const r of framer.end()) events.push(...parser.push(r.data, r.event));
  events.push(...parser.end());
  return events.map((e) => (e.type === 'start' ? { ...e, id: 'bedrock-0' } : e));
}

function encode(wire: 'openai' | 'anthropic', events: StreamEvent[]): string {
  const codec = codecFor(wire);
  const enc = codec.streamEncoder({ includeUsage: true, model: 'my-route' });
  let s = '';
  for (const ev of events) s += enc(ev);
  return (s + codec.streamDone).replace(/"created":\d+/g, '"created":0');
}

for (const name of readdirSync(streamDir).filter((f) => f.startsWith('bedrock-') && f.endsWith('.eventstream.json')).map((f) => f.slice(0, -'.eventstream.json'.length))) {
  const frames = JSON.parse(readFileSync(join(streamDir, `${name}.eventstream.json`), 'utf8')) as Frame[];
  const bytes = eventStream(frames);

  test(`stream golden: ${name} parses the same at any chunk boundary; usage right before finish`, () => {
    const reference = parseFrames(bytes, bytes.length);
    for (const step of [1, 2, 5, 11, 64]) assert.deepEqual(parseFrames(bytes, step), reference, `step ${step}`);
    golden(join(streamDir, `${name}.events.json`), JSON.stringify(reference, null, 1) + '\n');
    assert.equal(reference[0].type, 'start');
    assert.equal(reference[reference.length - 1].type, 'finish');
    assert.equal(reference[reference.length - 2].type, 'usage');
  });

  test(`stream golden: ${name} -> openai and anthropic clients`, () => {
    const events = parseFrames(bytes, bytes.length);
    golden(join(streamDir, `${name}.to-openai.sse`), encode('openai', events));
    golden(join(streamDir, `${name}.to-anthropic.sse`), encode('anthropic', events));
    // The whole answer the stream makes (what the response cache keeps and replays), as an Anthropic client gets it.
    const whole = eventsToResult(events, 0);
    assert.ok(whole, 'a complete stream makes an answer');
    golden(join(streamDir, `${name}.to-anthropic-message.json`), JSON.stringify(codecFor('anthropic').encodeResult(whole, 'my-route'), null, 1) + '\n');
  });

  test(`stream golden: ${name} cut short ends with upstream_incomplete, never a finish`, () => {
    const cutAfterStop = eventStream(frames.filter((f) => f.event !== 'metadata' && f.event !== 'messageStop'));
    for (const b of [bytes.subarray(0, Math.floor(bytes.length / 2)), cutAfterStop]) {
      const events = parseFrames(b, 7);
      const last = events[events.length - 1];
      assert.equal(last.type, 'error');
      assert.ok(!events.some((e) => e.type === 'finish'));
    }
  });
}

test('bedrock stream: messageStop without metadata still finishes (no usage); an exception is an error event', () => {
  const noMeta = parseFrames(eventStream([
    { event: 'messageStart', payload: { role: 'assistant' } },
    { event: 'contentBlockDelta', payload: { contentBlockIndex: 0, delta: { text: 'hi' } } },
    { event: 'messageStop', payload: { stopReason: 'end_turn' } },
  ]), 3);
  assert.deepEqual(noMeta.slice(1), [{ type: 'text', text: 'hi' }, { type: 'finish', reason: 'stop' }]);
  const ex = parseFrames(Buffer.concat([eventFrame('messageStart', { role: 'assistant' }), exceptionFrame('modelStreamErrorException', 'model failed')]), 5);
  assert.deepEqual(ex.find((e) => e.type === 'error'), { type: 'error', message: 'model failed', errorType: 'modelStreamErrorException' });
});

test('config: bedrock and vertex providers need their region block; an aws_sigv4 credential only signs for bedrock', async () => {
  const { parseConfigTexts } = await import('../src/config/load.ts');
  const { doc, yaml } = await import('./helpers/gateway.ts');
  const load = (...docs: string[]) => { try { parseConfigTexts([{ file: 'c.yaml', text: yaml(...docs) }]); return ''; } catch (e) { return (e as Error).message; } };
  assert.match(load(doc('Provider', 'b', { type: 'bedrock' })), /spec\.bedrock: bedrock needs bedrock: \{ region: us-east-1 \}/);
  assert.match(load(doc('Provider', 'v', { type: 'vertex' })), /spec\.vertex: vertex needs vertex: \{ project/);
  assert.match(load(doc('Provider', 'b', { type: 'bedrock', bedrock: { region: 'Frankfurt' } })), /must be an AWS region like us-east-1/);
  assert.match(load(doc('Credential', 'aws', { env: 'X', aws: { access_key_id: 'AKIAIOSFODNN7EXAMPLE' } }), doc('Provider', 'o', { type: 'openai', credential: 'aws' })),
    /Credential "aws" signs AWS requests \(aws_sigv4\); only a Provider of type bedrock can use it/);
  assert.match(load(doc('Credential', 'g', { env: 'X', kind: 'api_key', google: {} })), /google only applies to kind google_service_account/);
  assert.match(load(doc('Credential', 'aws', { env: 'X', aws: { access_key_id: 'AKIAIOSFODNN7EXAMPLE', access_key_id_env: 'AWS_ACCESS_KEY_ID' } })), /set access_key_id or access_key_id_env, not both/);
  assert.match(load(doc('Credential', 'aws', { env: 'X', aws: { access_key_id_env: 'AWS ACCESS' } })), /must be an environment variable name/);
  assert.equal(load(
    doc('Credential', 'aws', { env: 'X', aws: { access_key_id: 'AKIAIOSFODNN7EXAMPLE' } }), doc('Provider', 'b', { type: 'bedrock', credential: 'aws', bedrock: { region: 'eu-central-1' } }),
    doc('Credential', 'sa', { file: '/run/sa.json', kind: 'google_service_account' }), doc('Provider', 'v', { type: 'vertex', credential: 'sa', vertex: { project: 'p-1', region: 'global' } }),
  ), '');
});
