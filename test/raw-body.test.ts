// The client's own chat body goes upstream as it is when nothing in it must change
// (src/gateway/raw-body.ts), and a body with a repeated key is refused (src/access/json-keys.ts):
// aam's policy and guardrails and the upstream must never read two different requests.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { keyCount, memberCount, scanJsonKeys } from '../src/access/json-keys.ts';
import { jsonTooDeep } from '../src/access/json-depth.ts';
import { startTestGateway, yaml, doc, type TestGateway } from './helpers/gateway.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
import { azureAdapter } from '../src/providers/azure.ts';
import { parseOpenAIChatRequest } from '../src/providers/openai-parse.ts';

const scan = (s: string | Buffer) => scanJsonKeys(typeof s === 'string' ? Buffer.from(s) : s);

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
  for (const depth of [127, 128, 129, 400]) {
    const deep = Buffer.from(`{"a":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`);
    assert.equal(scanJsonKeys(deep).tooDeep, jsonTooDeep(deep) !== null, `depth ${depth}`);
  }
});

test('rawChatRequest: the adapter\'s own method, path and headers when the client body says what its body would; null otherwise', () => {
  const client = JSON.parse('{"model":"route","messages":[{"role":"user","content":"hi"}],"x_vendor":[1],"max_tokens":5}') as Record<string, unknown>;
  const p = parseOpenAIChatRequest(client);
  assert.ok(p.ok);
  const target = { model: 'dep-1', stream: false, options: { apiVersion: '2024-10-21' } };
  for (const adapter of [openaiAdapter, azureAdapter]) {
    const { body, ...head } = adapter.chatRequest(p.req, target);
    assert.deepEqual(adapter.rawChatRequest?.(client, p.req, target), head);
    // The same JSON but for model (and key order): the client's bytes say it.
    assert.deepEqual({ ...(JSON.parse(body) as object), model: 'route' }, client);
    // A value aam changed (a redaction: a new messages array), a field it drops or adds: not the same.
    assert.equal(adapter.rawChatRequest?.(client, { ...p.req, messages: [...p.req.messages] }, target), null);
    assert.equal(adapter.rawChatRequest?.({ ...client, tools: null }, p.req, target), null);
    assert.equal(adapter.rawChatRequest?.(client, p.req, { ...target, stream: true }), null);
    assert.equal(adapter.rawChatRequest?.({ ...client, stream: true, stream_options: { include_usage: true } }, { ...p.req, stream: true, stream_options: { include_usage: true } }, { ...target, stream: true }) !== null, true);
  }
});

// A fake OpenAI upstream that keeps the exact bytes of every request.
let upstream: Server;
let upUrl = '';
const got: Buffer[] = [];
let gw: TestGateway;
let key = '';
const ANSWER = { id: 'c1', object: 'chat.completion', created: 1, model: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };

before(async () => {
  upstream = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      got.push(body);
      if ((JSON.parse(body.toString('utf8')) as { stream?: boolean }).stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ANSWER));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\ndata: [DONE]\n\n');
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
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'tester-policy', { identity: { workload: 'spiffe://test/agent/tester' }, models: { allow: ['same', 'renamed', 'guarded'] } }),
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

test('what aam must change is re-serialised: a redaction, a forced stream option, a dropped null, bad UTF-8', async () => {
  const redacted = await post('{"model":"guarded","messages":[{"role":"user","content":"mail jane@example.com"}]}');
  assert.equal(redacted.status, 200, redacted.text);
  const sentText = redacted.sent?.toString('utf8') ?? '';
  assert.ok(!sentText.includes('jane@example.com'), sentText);
  assert.match(sentText, /\[EMAIL\]/);
  // A stream without include_usage: aam asks the upstream for usage (and hides it from the client).
  const s = await post('{"model":"same","stream":true,"messages":[{"role":"user","content":"hi"}]}');
  assert.equal(s.status, 200, s.text);
  assert.deepEqual((JSON.parse(s.sent?.toString('utf8') ?? '{}') as { stream_options?: unknown }).stream_options, { include_usage: true });
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
