// The client's own chat body goes upstream as it is when nothing in it must change
// (src/gateway/raw-body.ts), and a body with a repeated key is refused (src/access/json-keys.ts):
// aam's policy and guardrails and the upstream must never read two different requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { keyCount, memberCount, scanJsonKeys, textMemberCount, topLevelModel } from '../src/access/json-keys.ts';
import { jsonTooDeep } from '../src/access/json-depth.ts';
import { startTestGateway, yaml, doc, type TestGateway } from './helpers/gateway.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
import { azureAdapter } from '../src/providers/azure.ts';
import { parseOpenAIChatRequest } from '../src/providers/openai-parse.ts';
import { anthropicAdapter } from '../src/providers/anthropic.ts';
import { parseAnthropicRequest } from '../src/providers/anthropic-parse.ts';
import type { ChatRequest, ProviderAdapter, TargetInfo } from '../src/providers/types.ts';
import { chatUpstream, clientBody } from '../src/gateway/raw-body.ts';
import type { JsonBody } from '../src/access/request.ts';
import { sameEntries } from '../src/lib/json.ts';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';

const scan = (s: string | Buffer) => scanJsonKeys(typeof s === 'string' ? Buffer.from(s) : s);

/** rawChatRequest refuses the client's bytes: it answers with the adapter's own body, the very request chatRequest sends. */
function refused(adapter: ProviderAdapter, client: Record<string, unknown>, req: ChatRequest, target: TargetInfo): void {
  const r = adapter.rawChatRequest?.(client, req, target);
  assert.ok(r?.body !== undefined, 'refused');
  assert.deepEqual({ ...r.head, body: JSON.stringify(r.body) }, adapter.chatRequest(req, target));
}

test('scanJsonKeys: a key repeated in one object is found, with its path and offset; the same key in other objects is not', () => {
  assert.equal(scan('{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}').duplicate, null);
  assert.deepEqual(scan('{"a":1,"b":2,"a":3}').duplicate, { path: 'a', offset: 13 });
  const body = '{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"user","content":"bad","content":"good"}]}';
  assert.deepEqual(scan(body).duplicate, { path: 'messages[1].content', offset: body.lastIndexOf('"content"') });
  // Escapes spell the same key: JSON.parse reads one key twice.
  assert.equal(scan('{"model":"a","mod\\u0065l":"b"}').duplicate?.path, 'model');
  assert.equal(scan('{"a\\"b":1,"a\\\\b":2}').duplicate, null);
  // Keys are compared as JSON.parse reads them: two different bad UTF-8 bytes both read as U+FFFD.
  assert.equal(scan(Buffer.concat([Buffer.from('{"'), Buffer.from([0xff]), Buffer.from('":1,"'), Buffer.from([0xfe]), Buffer.from('":2}')])).duplicate?.path, '\ufffd');
  // Many keys (compared in a Set), the repeat last.
  const many = `{${Array.from({ length: 40 }, (_, i) => `"k${i}":${i}`).join(',')},"k7":0}`;
  assert.equal(scan(many).duplicate?.path, 'k7');
  // Strings holding quotes, braces, commas and colons are not structure.
  assert.equal(scan('{"a":"{\\"a\\":1,\\"a\\":2}","b":"x,\\"a\\":"}').duplicate, null);
  assert.equal(scan('[{"x":1},{"x":2}]').duplicate, null);
  assert.equal(scan('[{"x":1},{"y":[1,2,{"z":1,"z":2}]}]').duplicate?.path, '[1].y[2].z');
});

test('memberCount (colons outside strings) equals keyCount of the parsed value exactly when no key repeats', () => {
  const same = (s: string) => memberCount(Buffer.from(s)) === keyCount(JSON.parse(s));
  for (const s of ['{}', '[]', '"a:b"', '{"a":1,"b":{"c":[1,{"d":"e:f\\":"}]},"g":[]}', '{"__proto__":{"x":1},"y":2}', '[{"a":1},{"a":1}]', '{"a\\":":1}']) assert.ok(same(s), s);
  for (const s of ['{"a":1,"a":1}', '{"x":[{"b":1,"c":2,"b":3}]}', '{"a":1,"\\u0061":2}']) assert.ok(!same(s), s);
  assert.equal(memberCount(Buffer.from(`{"a":${'['.repeat(200)}${']'.repeat(200)}}`)), -1);
});

test('textMemberCount reads the same count from a string as memberCount from its UTF-8 bytes (an SSE event\'s data, no Buffer)', () => {
  const texts = ['{}', '[]', '"a:b"', '{"a":1,"b":{"c":[1,{"d":"e:f\\":"}]},"g":[]}', '{"__proto__":{"x":1},"y":2}', '[{"a":1},{"a":1}]', '{"a\\":":1}',
    '{"a":1,"a":1}', '{"x":[{"b":1,"c":2,"b":3}]}', '{"a":1,"\\u0061":2}',
    // Non-ASCII text (one character, two UTF-16 units, several UTF-8 bytes) beside the structure; runs of backslashes before a quote.
    '{"é:😀":"ü\\\\","k":"\\\\\\":x","z":{"q":"日本:語"}}', '{"a":"' + 'x'.repeat(100) + ':\\"' + '"}', '{"t":"\\\\"}', '{"a":"x\\":y","b":1}', '{"a":"\\\\\\"{:","b":[{"c":"\\\\"},{"d":2}]}'];
  for (const s of texts) {
    JSON.parse(s);
    assert.equal(textMemberCount(s), memberCount(Buffer.from(s)), s);
  }
  assert.equal(textMemberCount('{"é":1,"é":2}') === keyCount(JSON.parse('{"é":1,"é":2}')), false);
  assert.equal(textMemberCount(`{"a":${'['.repeat(200)}${']'.repeat(200)}}`), -1);
  assert.equal(textMemberCount('{"a":"unterminated'), 1);
});

test('scanJsonKeys: the top-level "model" string\'s byte range; nesting as jsonTooDeep counts it', () => {
  const body = '{ "messages": [{"model": "inner"}], "model" : "gpt-4o" , "x": {"model":"no"}}';
  const m = scan(body).model;
  assert.ok(m);
  assert.equal(body.slice(m[0], m[1]), '"gpt-4o"');
  assert.equal(scan('{"model":7}').model, null);
  assert.equal(scan('{"x":{"model":"a"}}').model, null);
  const esc = '{"model":"a\\"b"}';
  const e = scan(esc).model;
  assert.ok(e);
  assert.equal(esc.slice(e[0], e[1]), '"a\\"b"');
  // topLevelModel (the raw path's splice) finds what the full scan finds.
  for (const b of [body, '{"model":7}', '{"x":{"model":"a"}}', esc, '{"a":[{"model":"in"}],"b":"model","model":"top"}', '{"a":"x\\","model" :\n "m"}', '[{"model":"a"}]', '{"mod\\u0065l":"a"}', '{"model":{"a":1}}', '{"a":{"b":[1,{"c":"}"}]},"model":"z"}']) {
    assert.deepEqual(topLevelModel(Buffer.from(b)), scan(b).model, b);
  }
  for (const depth of [127, 128, 129, 400]) {
    const deep = Buffer.from(`{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`);
    assert.equal(scanJsonKeys(deep).tooDeep, jsonTooDeep(deep) !== null, `depth ${depth}`);
  }
});

test('rawChatRequest: the adapter\'s own method, path and headers when the client body says what its body would; its own request otherwise', () => {
  const client = JSON.parse('{"model":"route","messages":[{"role":"user","content":"hi"}],"x_vendor":[1],"max_tokens":5}') as Record<string, unknown>;
  const p = parseOpenAIChatRequest(client);
  assert.ok(p.ok);
  const target = { model: 'dep-1', stream: false, options: { apiVersion: '2024-10-21' } };
  for (const adapter of [openaiAdapter, azureAdapter]) {
    const { body, ...head } = adapter.chatRequest(p.req, target);
    assert.deepEqual(adapter.rawChatRequest?.(client, p.req, target), { head, add: null });
    // The same JSON but for model (and key order): the client's bytes say it.
    assert.deepEqual({ ...(JSON.parse(body) as object), model: 'route' }, client);
    // A value aam changed (a redaction: a new messages array), a field it drops or adds: not the same.
    refused(adapter, client, { ...p.req, messages: [...p.req.messages] }, target);
    refused(adapter, { ...client, tools: null }, p.req, target);
    // A field only aam's body has is one it adds (here a stream's, as a stream the client did not ask for would be).
    assert.deepEqual(adapter.rawChatRequest?.(client, p.req, { ...target, stream: true })?.add, { stream: true, stream_options: { include_usage: true } });
    assert.equal(adapter.rawChatRequest?.({ ...client, stream: true, stream_options: { include_usage: true } }, { ...p.req, stream: true, stream_options: { include_usage: true } }, { ...target, stream: true })?.add, null);
    // A stream that did not ask for usage: aam adds the option (it meters every stream).
    const streamed = { ...client, stream: true };
    const ps = parseOpenAIChatRequest(streamed);
    assert.ok(ps.ok);
    assert.deepEqual(adapter.rawChatRequest?.(streamed, ps.req, { ...target, stream: true })?.add, { stream_options: { include_usage: true } });
    // One the client wrote otherwise is a changed field: not the same.
    const noUsage = { ...client, stream: true, stream_options: { include_usage: false } };
    const pn = parseOpenAIChatRequest(noUsage);
    assert.ok(pn.ok);
    refused(adapter, noUsage, pn.req, { ...target, stream: true });
  }
});

// A fake OpenAI upstream that keeps the exact bytes of every request.
let upstream: Server;
let upUrl = '';
const got: Buffer[] = [];
let gw: TestGateway;
let key = '';
const ANSWER = { id: 'c1', object: 'chat.completion', created: 1, model: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };

/** An Anthropic Messages answer (JSON, or SSE when the request streams), usage always in it as the API does. */
function anthropicAnswer(body: Buffer, res: import('node:http').ServerResponse): void {
  if ((JSON.parse(body.toString('utf8')) as { stream?: boolean }).stream !== true) {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model: 'x', content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 3, output_tokens: 2 } }));
    return;
  }
  const ev = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.end(ev('message_start', { type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'x', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } } })
    + ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } })
    + ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } })
    + ev('content_block_stop', { type: 'content_block_stop', index: 0 })
    + ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } })
    + ev('message_stop', { type: 'message_stop' }));
}

before(async () => {
  upstream = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      got.push(body);
      if (req.url === '/v1/messages') { anthropicAnswer(body, res); return; }
      if ((JSON.parse(body.toString('utf8')) as { stream?: boolean }).stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ANSWER));
        return;
      }
      // As OpenAI does: usage (a chunk of its own) only when the request asked for it.
      const usage = (JSON.parse(body.toString('utf8')) as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage === true
        ? 'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n' : '';
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n${usage}data: [DONE]\n\n`);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upUrl}/v1` }),
    doc('Model', 'same', { targets: [{ provider: 'up', model: 'same' }] }),
    doc('Model', 'renamed', { targets: [{ provider: 'up', model: 'upstream-model-é' }] }),
    doc('Model', 'guarded', { targets: [{ provider: 'up', model: 'guarded' }], guardrails: ['mask-email'] }),
    doc('Guardrail', 'mask-email', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${upUrl}/v1` }),
    doc('Model', 'claude', { targets: [{ provider: 'ant', model: 'claude' }] }),
    doc('Model', 'claude-renamed', { targets: [{ provider: 'ant', model: 'claude-up-é' }] }),
    doc('Model', 'claude-guarded', { targets: [{ provider: 'ant', model: 'claude' }], guardrails: ['mask-email'] }),
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'tester-policy', { identity: { workload: 'spiffe://test/agent/tester' }, models: { allow: ['same', 'renamed', 'guarded', 'claude', 'claude-renamed', 'claude-guarded'] } }),
  ));
  key = gw.key('tester');
});
after(async () => {
  await gw?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

async function post(body: string | Buffer, path = '/v1/chat/completions'): Promise<{ status: number; text: string; sent: Buffer | undefined }> {
  const n = got.length;
  const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
  const text = await r.text();
  return { status: r.status, text, sent: got.length > n ? got[got.length - 1] : undefined };
}

test('a body the upstream would get re-serialised the same goes as the client sent it, byte for byte (stream and not)', async () => {
  // Odd spacing, key order, an unknown field and a number written two ways: only re-serialising would change them.
  const body = '{ "messages" : [ {"content":"Say hi","role":"user"} ],\n "vendor_flag": {"deep": [1.50, 2e1]}, "max_tokens": 10.0, "model":"same" }';
  const r = await post(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.sent?.toString('utf8'), body);
  // A stream that already asks for usage (aam always does) says the same as aam would.
  const streamed = '{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}';
  const s = await post(streamed);
  assert.equal(s.status, 200, s.text);
  assert.match(s.text, /data: \[DONE\]/);
  assert.equal(s.sent?.toString('utf8'), streamed);
});

test('the route\'s target model takes the place of the client\'s, the other bytes as sent', async () => {
  const body = '{"model" : "renamed" ,"messages":[{"role":"user","content":"hi \\u00e9"}],  "temperature":0.20}';
  const r = await post(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.sent?.toString('utf8'), body.replace('"renamed"', '"upstream-model-é"'));
});

/** Input tokens recorded for route `route`'s streamed calls so far. */
function streamedInput(route: string): number {
  gw.g.rt.usage.flush();
  const row = gw.g.rt.db.prepare(`SELECT sum(input_tokens) AS n FROM usage_rollup WHERE agent = 'tester' AND route = ? AND stream = 1`).get(route) as { n: number | null };
  return row.n ?? 0;
}

test('a stream that did not ask for usage: the option is put into the client\'s bytes; usage is recorded, the client gets no usage chunk', async () => {
  const before = streamedInput('same');
  const body = ' {"model":"same", "stream":true,"messages":[{"role":"user","content":"hi"}] }';
  const s = await post(body);
  assert.equal(s.status, 200, s.text);
  // The client's bytes, the option written first in the object: not a re-serialised body.
  assert.equal(s.sent?.toString('utf8'), ' {"stream_options":{"include_usage":true},"model":"same", "stream":true,"messages":[{"role":"user","content":"hi"}] }');
  assert.match(s.text, /data: \[DONE\]/);
  assert.doesNotMatch(s.text, /"usage"/, 'the client did not ask for usage');
  assert.equal(streamedInput('same'), before + 3, 'the upstream\'s usage was recorded');
  // With the route's model put in too (the option first, then the model in its place).
  const renamed = await post('{"model":"renamed","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(renamed.status, 200, renamed.text);
  assert.equal(renamed.sent?.toString('utf8'), '{"stream_options":{"include_usage":true},"model":"upstream-model-é","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.doesNotMatch(renamed.text, /"usage"/);
  // Twice in a row: the option's bytes (kept once serialised) are the same.
  const again = await post(body);
  assert.equal(again.sent?.toString('utf8'), s.sent?.toString('utf8'));
  // A client that asked for usage gets it (the usage chunk is the upstream's).
  const asked = await post('{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}');
  assert.match(asked.text, /"usage":\{"prompt_tokens":3/);
});

test('what aam must change is re-serialised: a redaction, a forced stream option, a dropped null, bad UTF-8', async () => {
  const redacted = await post('{"model":"guarded","messages":[{"role":"user","content":"mail jane@example.com"}]}');
  assert.equal(redacted.status, 200, redacted.text);
  const sentText = redacted.sent?.toString('utf8') ?? '';
  assert.ok(!sentText.includes('jane@example.com'), sentText);
  assert.match(sentText, /\[EMAIL\]/);
  // A stream whose client wrote stream_options otherwise: aam's option replaces it.
  const s = await post('{"model":"same","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(s.status, 200, s.text);
  assert.deepEqual((JSON.parse(s.sent?.toString('utf8') ?? '{}') as { stream_options?: unknown }).stream_options, { include_usage: true });
  assert.doesNotMatch(s.text, /"usage"/);
  // A known field set to null is left out, as before.
  const nul = await post('{"model":"same","tools":null,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(nul.status, 200, nul.text);
  assert.ok(!('tools' in (JSON.parse(nul.sent?.toString('utf8') ?? '{}') as object)));
  // A byte that is not UTF-8: the upstream gets the U+FFFD aam read, not the byte.
  const bad = Buffer.concat([Buffer.from('{"model":"same","messages":[{"role":"user","content":"a'), Buffer.from([0xff]), Buffer.from('b"}]}')]);
  const b = await post(bad);
  assert.equal(b.status, 200, b.text);
  assert.ok(!b.sent?.includes(0xff));
  assert.equal((JSON.parse(b.sent?.toString('utf8') ?? '{}') as { messages: Array<{ content: string }> }).messages[0].content, 'a\ufffdb');
});

test('a repeated key is refused with 400 naming it, before anything reaches the upstream (both wires)', async () => {
  // JSON.parse would read "good" and an upstream keeping the first value "bad": never sent.
  const r = await post('{"model":"same","messages":[{"role":"user","content":"bad","content":"good"}]}');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.sent, undefined, 'the upstream saw nothing');
  const e = (JSON.parse(r.text) as { error: { code: string; param: string; message: string } }).error;
  assert.equal(e.code, 'invalid_json');
  assert.equal(e.param, 'messages[0].content');
  assert.match(e.message, /repeats the key "messages\[0\]\.content" \(again at byte \d+\); send each key once per object/);
  // The route name too: policy would read one model, an upstream another.
  const m = await post('{"model":"renamed","messages":[{"role":"user","content":"hi"}],"model":"same"}');
  assert.equal(m.status, 400, m.text);
  assert.equal(m.sent, undefined);
  const a = await post('{"model":"same","max_tokens":5,"max_tokens":6,"messages":[{"role":"user","content":"hi"}]}', '/v1/messages');
  assert.equal(a.status, 400, a.text);
  assert.match(a.text, /repeats the key \\"max_tokens\\"/);
  // Not JSON at all is still told so first.
  const j = await post('{"model":"same","model":');
  assert.equal(j.status, 400);
  assert.match(j.text, /not valid JSON/);
});

const MESSAGES = '/v1/messages';

test('Anthropic wire to an Anthropic upstream: the client\'s body goes as it wrote it, the route\'s model in place (stream and not)', async () => {
  // Odd spacing, key order, the string shorthand for content, a system string, fields aam only forwards (top_k, metadata).
  const body = '{ "max_tokens": 64.0, "system" : "be brief", "messages": [ {"content":"Say hi \\u00e9","role":"user"}, {"role":"assistant","content":[{"type":"text","text":"Hi"}]}, {"role":"user","content":[{"type":"text","text":"again"},{"type":"text","text":"and again"}]} ],\n "top_k": 5, "metadata": {"user_id": "u-1"}, "temperature": 0.50, "model":"claude-renamed" }';
  const r = await post(body, MESSAGES);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.sent?.toString('utf8'), body.replace('"claude-renamed"', '"claude-up-é"'));
  assert.equal((JSON.parse(r.text) as { content: Array<{ text: string }> }).content[0].text, 'ok');
  // The same model upstream: byte for byte.
  const same = '{"model":"claude","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"get_time","description":"now","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"auto"}}';
  const s = await post(same, MESSAGES);
  assert.equal(s.status, 200, s.text);
  assert.equal(s.sent?.toString('utf8'), same);
  assert.match(s.text, /event: message_stop/);
  assert.match(s.text, /"usage":\{"input_tokens":3,"output_tokens":2\}/);
});

test('Anthropic wire: what aam\'s translation changes, or a guardrail, is re-serialised', async () => {
  // A guardrail's redaction: the upstream never gets the address.
  const g = await post('{"model":"claude-guarded","max_tokens":10,"messages":[{"role":"user","content":"mail jane@example.com"}]}', MESSAGES);
  assert.equal(g.status, 200, g.text);
  const sent = g.sent?.toString('utf8') ?? '';
  assert.ok(!sent.includes('jane@example.com'), sent);
  assert.match(sent, /\[EMAIL\]/);
  // What aam's translation merges or drops: two user turns in a row, a null, system blocks joined into one string.
  for (const body of [
    '{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}',
    '{"model":"claude","max_tokens":10,"temperature":null,"messages":[{"role":"user","content":"a"}]}',
    '{"model":"claude","max_tokens":10,"system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"messages":[{"role":"user","content":"a"}]}',
  ]) {
    const r = await post(body, MESSAGES);
    assert.equal(r.status, 200, r.text);
    assert.notEqual(r.sent?.toString('utf8'), body);
    assert.deepEqual(r.sent?.toString('utf8'), JSON.stringify(anthropicAdapterBody(body)), body);
  }
  // A field aam adds: the default max_tokens, put into the client's bytes.
  const m = await post('{"model":"claude","messages":[{"role":"user","content":"a"}]}', MESSAGES);
  assert.equal(m.status, 200, m.text);
  assert.equal(m.sent?.toString('utf8'), '{"max_tokens":4096,"model":"claude","messages":[{"role":"user","content":"a"}]}');
});

test('Anthropic wire: a repeated key is refused before the Anthropic upstream sees anything', async () => {
  for (const body of [
    '{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"bad","content":"good"}]}',
    '{"model":"claude","system":"x","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"system":"y"}',
  ]) {
    const r = await post(body, MESSAGES);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.sent, undefined, 'the upstream saw nothing');
    const e = (JSON.parse(r.text) as { type: string; error: { type: string; message: string } });
    assert.equal(e.type, 'error');
    assert.match(e.error.message, /repeats the key/);
  }
});

test('rawChatRequest (Anthropic): a content string and one text block holding it are the same; cache_control, thinking and is_error are kept; anything the translation drops is not', () => {
  const target = { model: 'claude', stream: false, options: {} };
  const same = (body: Record<string, unknown>) => {
    const p = parseAnthropicRequest(body);
    assert.ok(p.ok);
    const r = anthropicAdapter.rawChatRequest?.(body, p.req, target);
    if (r !== undefined && r.add !== undefined) return r;
    refused(anthropicAdapter, body, p.req, target);
    return null;
  };
  assert.deepEqual(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), { head: { method: 'POST', path: '/messages', headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' } }, add: null });
  assert.notEqual(same({ model: 'x', max_tokens: 5, system: [{ type: 'text', text: 's' }], messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] }), null);
  assert.notEqual(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: [{ type: 'text', text: 'r' }] }] }] }), null);
  // Kept by the translation (issue 16): a tool_result's is_error, a thinking block, cache_control wherever the API takes it.
  assert.notEqual(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'r', is_error: true }] }] }), null);
  assert.notEqual(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [{ type: 'thinking', thinking: 't', signature: 's' }, { type: 'redacted_thinking', data: 'd' }, { type: 'text', text: 'a' }, { type: 'tool_use', id: 'u', name: 'f', input: {} }] }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'u', content: 'r' }] }] }), null);
  const cc = { type: 'ephemeral', ttl: '1h' };
  assert.notEqual(same({ model: 'x', max_tokens: 5, system: [{ type: 'text', text: 's' }, { type: 'text', text: 'big', cache_control: cc }], tools: [{ name: 'f', input_schema: { type: 'object' }, cache_control: cc }],
    messages: [{ role: 'user', content: [{ type: 'text', text: 'hi', cache_control: cc }] }, { role: 'assistant', content: [{ type: 'text', text: 'a', cache_control: cc }, { type: 'tool_use', id: 'u', name: 'f', input: {}, cache_control: cc }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'u', content: [{ type: 'text', text: 'r', cache_control: cc }], is_error: false, cache_control: cc }, { type: 'image', source: { type: 'url', url: 'https://x/y.png' }, cache_control: cc }] }] }), null);
  // Dropped by the translation: an empty text, a message's other field.
  assert.equal(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: '' }] }), null);
  assert.equal(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'hi', name: 'n' }] }), null);
  // The shorthand is a content's or the system's only: elsewhere a string is not a list.
  assert.equal(same({ model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], stop_sequences: ['a'] }) !== null, true);
  refused(anthropicAdapter, { model: 'x', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }], metadata: { note: [{ type: 'text', text: 'a' }] } }, { model: 'x', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, anthropicExtra: { metadata: { note: 'a' } } }, target);
});

test('a refused client body: the upstream body is the one rawChatRequest built to compare, not built again', () => {
  const client = JSON.parse('{"model":"route","messages":[{"role":"user","content":"hi"}],"max_tokens":5}') as Record<string, unknown>;
  const bytes = Buffer.from(JSON.stringify(client));
  const p = parseOpenAIChatRequest(client);
  assert.ok(p.ok);
  const target = { model: 'dep-1', stream: false, options: {} };
  const redacted = { ...p.req, messages: [{ role: 'user' as const, content: '[redacted]' }] };
  let built = 0;
  const counted: ProviderAdapter = { ...openaiAdapter, chatRequest: (req, t) => { built++; return openaiAdapter.chatRequest(req, t); } };
  const up = chatUpstream(counted, redacted, target, bytes.length, clientBody({ value: client, bytes } as JsonBody));
  assert.ok(!(up instanceof Promise));
  assert.deepEqual(up, openaiAdapter.chatRequest(redacted, target));
  assert.equal(built, 0, 'chatRequest would build the body a second time');
  // Without a client body (another wire), and for a long one (built across turns), chatRequest still builds it.
  assert.deepEqual(chatUpstream(counted, redacted, target, bytes.length, undefined), openaiAdapter.chatRequest(redacted, target));
  assert.equal(built, 1);
});

test('the real SDKs: the Anthropic SDK\'s body reaches the Anthropic upstream as it sent it; the OpenAI SDK\'s stream gets the usage option put in', async () => {
  const anthropic = new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });
  const params = { model: 'claude-renamed', max_tokens: 32, system: 'be brief', messages: [{ role: 'user' as const, content: 'hi from the sdk' }] };
  const n = got.length;
  const m = await anthropic.messages.create(params);
  assert.equal((m.content[0] as { text: string }).text, 'ok');
  assert.equal(got.length, n + 1);
  assert.equal(got[n].toString('utf8'), JSON.stringify({ ...params, model: 'claude-up-é' }));
  const st = await anthropic.messages.create({ ...params, stream: true });
  let text = '';
  for await (const ev of st) if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  assert.equal(text, 'ok');
  assert.equal(got[n + 1].toString('utf8'), JSON.stringify({ ...params, stream: true, model: 'claude-up-é' }));
  const openai = new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const oparams = { model: 'same', stream: true as const, messages: [{ role: 'user' as const, content: 'hi from the sdk' }] };
  const os = await openai.chat.completions.create(oparams);
  let otext = '';
  let usageSeen = false;
  for await (const c of os) { otext += c.choices[0]?.delta.content ?? ''; if (c.usage) usageSeen = true; }
  assert.equal(otext, 'ok');
  assert.equal(usageSeen, false, 'the client did not ask for usage');
  assert.equal(got[n + 2].toString('utf8'), `{"stream_options":{"include_usage":true},${JSON.stringify(oparams).slice(1)}`);
});

/** The body aam's adapter builds for an Anthropic client body to route "claude" (its own re-serialisation). */
function anthropicAdapterBody(text: string): unknown {
  const p = parseAnthropicRequest(JSON.parse(text));
  assert.ok(p.ok);
  return JSON.parse(anthropicAdapter.chatRequest(p.req, { model: 'claude', stream: p.req.stream === true, options: {} }).body);
}

test('sameEntries (the key-set rule both adapters compare with): same keys in any order, each pair equal by the given test', () => {
  const eq = (a: unknown, b: unknown) => a === b;
  assert.equal(sameEntries({ a: 1, b: 2 }, { b: 2, a: 1 }, eq), true);
  assert.equal(sameEntries({}, {}, eq), true);
  assert.equal(sameEntries({ a: 1 }, { a: 1, b: undefined }, eq), false, 'a key only the second has');
  assert.equal(sameEntries({ a: 1, b: undefined }, { a: 1 }, eq), false, 'a key only the first has');
  assert.equal(sameEntries({ a: 1 }, { a: 2 }, eq), false);
  const keys: string[] = [];
  assert.equal(sameEntries({ x: 'A', y: 'B' }, { y: 'b', x: 'a' }, (a, b, k) => { keys.push(k); return String(a).toLowerCase() === b; }), true);
  assert.deepEqual(keys, ['x', 'y']);
});
