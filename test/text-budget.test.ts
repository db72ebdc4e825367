// Issue 12 (linear time, bounded work): a chat body whose message text alone is over a blocking
// guardrail's scan budget is refused while it is read, before it is decoded and parsed (that work,
// not the detectors, is what held the event loop for a 10 MB body). The count is a lower bound of
// what the walker scans, so it never refuses a body the walker would have let through.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createTextCounter, type TextShape } from '../src/guardrails/text-budget.ts';
import { leafTexts } from '../src/guardrails/structured.ts';
import { parseOpenAIChatRequest } from '../src/providers/openai-parse.ts';
import { parseAnthropicRequest } from '../src/providers/anthropic-parse.ts';
import { itemsToMessages, parseResponsesRequest } from '../src/providers/responses-parse.ts';
import { queryEvents } from '../src/audit/query.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

/** What the walker scans of a parsed request (guardChatInput walks all of it but the model). */
function walkerChars(shape: TextShape, body: unknown): number {
  if (shape === 'openai-responses') {
    const r = parseResponsesRequest(body);
    assert.ok(r.ok, JSON.stringify(r));
    return leafTexts({ messages: itemsToMessages(r.req.instructions, r.req.input) }).reduce((n, t) => n + t.length, 0);
  }
  const p = shape === 'openai-chat' ? parseOpenAIChatRequest(body) : parseAnthropicRequest(body);
  assert.ok(p.ok, JSON.stringify(p));
  const { model: _m, ...rest } = p.req;
  return leafTexts(rest).reduce((n, t) => n + t.length, 0);
}

function count(shape: TextShape, raw: Buffer, rnd: () => number): number {
  const c = createTextCounter(shape);
  let n = 0;
  for (let i = 0; i < raw.length;) {
    const step = 1 + Math.floor(rnd() * 40);
    n = c.feed(raw.subarray(i, i + step));
    i += step;
  }
  return n;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

const PIECES = ['plain words ', 'café ', '日本語 ', '😀 ', 'quote " and \\ slash ', 'tab\t nl\n ', 'data:', 'a.b@c.de ', '\u0000\u001f '];
function text(r: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)];
  return s;
}

const png = Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37) % 256)).toString('base64');

function openaiBody(r: () => number): unknown {
  const t = () => text(r, 1 + Math.floor(r() * 8));
  return {
    model: 'gpt', metadata: { note: t() }, user: t(),
    messages: [
      { role: 'system', content: t() },
      { role: 'user', name: 'bob', content: [{ type: 'text', text: t() }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
        { type: 'file', file: { filename: 'a.txt', file_data: `data:text/plain;base64,${Buffer.from(t()).toString('base64')}` } }, { type: 'text', text: `data:${t()}` }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: JSON.stringify({ q: t(), n: 3 }) } }] },
      { role: 'tool', tool_call_id: 'c1', content: t(), extra_field: { deep: [t(), { x: t() }], data: [png], type: ['tool_result'] } },
      { role: 'assistant', content: t(), reasoning: { signature: 'x'.repeat(200), encrypted_content: 'y'.repeat(100) } },
    ],
    tools: [{ type: 'function', function: { name: 'f', description: t(), parameters: { type: 'object' } } }],
  };
}

function responsesBody(r: () => number): unknown {
  const t = () => text(r, 1 + Math.floor(r() * 8));
  return r() < 0.3 ? { model: 'gpt', instructions: t(), input: t() } : {
    model: 'gpt', instructions: t(),
    input: [
      { type: 'message', role: 'user', content: t() },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: t() }, { type: 'input_image', image_url: `data:image/png;base64,${png}` }] },
      { type: 'reasoning', id: 'rs_1', summary: [{ type: 'summary_text', text: t() }], content: [{ type: 'reasoning_text', text: t() }] },
      { type: 'function_call', call_id: 'c1', name: 'f', arguments: JSON.stringify({ q: t() }) },
      { type: 'function_call_output', call_id: 'c1', output: t() },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: t() }] },
    ],
    tools: [{ type: 'function', name: 'f', description: t(), parameters: { type: 'object' } }],
  };
}

/** A2A SendMessage params (JSON-RPC's params; an HTTP+JSON message:send body is the same object). */
function a2aParams(r: () => number): Record<string, unknown> {
  const t = () => text(r, 1 + Math.floor(r() * 8));
  return {
    message: {
      role: 'ROLE_USER', messageId: t(), contextId: t(), metadata: { skill: 'score', note: t(), data: [png], role: ['agent'] },
      parts: [{ text: t() }, { kind: 'text', text: `data:${t()}` }, { file: { name: 'a.png', mimeType: 'image/png', bytes: png } },
        { data: { q: t(), list: [t(), { x: t() }], data: png } }, { kind: 'file', file: { uri: `data:image/png;base64,${png}` } }],
      extensions: [t()], referenceTaskIds: [t()],
    },
    configuration: { acceptedOutputModes: ['text/plain'], blocking: true }, metadata: { note: t() },
  };
}

function anthropicBody(r: () => number): unknown {
  const t = () => text(r, 1 + Math.floor(r() * 8));
  return {
    model: 'claude', max_tokens: 10, system: t(),
    messages: [
      { role: 'user', content: t() },
      { role: 'assistant', content: [{ type: 'thinking', thinking: t(), signature: 'sig'.repeat(50) }, { type: 'text', text: t() }, { type: 'tool_use', id: 't1', name: 'f', input: { q: t() } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: t() }] }, { type: 'tool_result', tool_use_id: 't2', content: t() },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: png } }, { type: 'text', text: t() }] },
    ],
  };
}

test('the counted characters are never more than the walker scans, in any chunking (so a refusal is one the walker would make)', () => {
  let countedAll = 0;
  let walkedAll = 0;
  for (let seed = 1; seed <= 300; seed++) {
    const r = rng(seed);
    for (const [shape, body] of [['openai-chat', openaiBody(r)], ['anthropic-messages', anthropicBody(r)], ['openai-responses', responsesBody(r)]] as Array<[TextShape, unknown]>) {
      const raw = Buffer.from(JSON.stringify(body));
      const counted = count(shape, raw, r);
      // Chunking never changes the count (plain runs are skipped to the next quote or backslash, not read byte by byte).
      assert.equal(createTextCounter(shape).feed(raw), counted, `seed ${seed} ${shape}: one chunk`);
      const walked = walkerChars(shape, body);
      assert.ok(counted <= walked, `seed ${seed} ${shape}: counted ${counted} > walked ${walked}`);
      countedAll += counted;
      walkedAll += walked;
    }
    // A2A: the gateway guards a JSON-RPC call's params as sent, an HTTP+JSON body as the params it becomes.
    const params = a2aParams(r);
    const walked = leafTexts(params).reduce((n, x) => n + x.length, 0);
    for (const [shape, raw] of [['a2a-jsonrpc', { jsonrpc: '2.0', id: seed, method: 'SendMessage', params }], ['a2a-rest', params]] as Array<[TextShape, unknown]>) {
      const counted = count(shape, Buffer.from(JSON.stringify(raw)), r);
      assert.ok(counted <= walked, `seed ${seed} ${shape}: counted ${counted} > walked ${walked}`);
      assert.ok(counted > 0, `seed ${seed} ${shape}: message text counted`);
    }
  }
  // A useful bound, too: most of what the walker scans here is message text.
  assert.ok(countedAll > walkedAll * 0.3, `counted ${countedAll} of ${walkedAll}`);
});

test('plain message text is counted exactly; data: URLs, base64, signatures, arguments, role/type and keys are not', () => {
  const s = 'héllo "wörld" 😀\n';
  const body = { model: 'm', messages: [{ role: 'user', content: s }, { role: 'user', content: [{ type: 'text', text: s }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } }] }] };
  const n = count('openai-chat', Buffer.from(JSON.stringify(body)), rng(7));
  // each character (😀 is one code point: counted once, two UTF-16 units for the walker)
  assert.equal(n, 2 * [...s].length);
  assert.equal(count('openai-chat', Buffer.from(JSON.stringify({ model: 'm', input: 'x'.repeat(5000), messages: [] })), rng(1)), 0, 'only messages count');
  assert.equal(count('openai-chat', Buffer.from('{"messages":[{"sign\\u0061ture":"' + 'x'.repeat(100) + '"}]}'), rng(1)), 0, 'an escaped key may spell a skipped one');
  assert.equal(count('openai-chat', Buffer.from('{"messages":[{"content":"d\\u0061ta:' + 'x'.repeat(100) + '"}]}'), rng(1)), 0, 'an escape in the first characters may spell data:');
  assert.equal(count('openai-chat', Buffer.from('{"messages":[{"content":"abcdef\\u0041\\n"}]}'), rng(1)), 8, 'escapes count one character each');
});

let fake: FakeUpstream;
let gw: TestGateway;
const BUDGET = 4096;

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 }, pricing: { free: true } }),
    doc('Model', 'claude', { targets: [{ provider: 'ant', model: 'ok' }], retries: { attempts: 0 }, pricing: { free: true } }),
    doc('Guardrail', 'small-budget', { on: ['input'], detect: ['ssn'], action: 'block', max_scan_chars: BUDGET }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'a-policy', { identity: { workload: 'spiffe://test/agent/a' }, models: { allow: ['gpt', 'claude'] }, agents: [{ agent: 'callee' }], guardrails: ['small-budget'] }),
    // Never reached: its calls here are refused while their body is read.
    doc('Agent', 'callee', { workload: 'spiffe://test/agent/callee', a2a: { url: 'http://127.0.0.1:9/callee' } }),
    doc('Agent', 'free', { workload: 'spiffe://test/agent/free', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'free-policy', { identity: { workload: 'spiffe://test/agent/free' }, models: { allow: ['gpt'] } }),
  ));
});
after(async () => { await gw?.close(); await fake?.close(); });

/**
 * Send `head`, then message text in 16 KB chunks without ever ending the body, until an answer
 * arrives (or `maxBytes` were sent): the answer must not wait for a body that is never finished.
 */
function endless(path: string, agent: string, head: string): Promise<{ status: number; body: string; sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = false;
    const u = new URL(`${gw.url}${path}`);
    const req = request({ host: u.hostname, port: u.port, path, method: 'POST', headers: { authorization: `Bearer ${gw.key(agent)}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c; });
      res.on('end', () => { done = true; req.destroy(); resolve({ status: res.statusCode ?? 0, body, sent }); });
    });
    req.on('error', (e) => { if (!done) reject(e); });
    const chunk = 'lorem ipsum '.repeat(1365);
    req.write(head);
    const pump = (): void => {
      if (done) return;
      if (sent > 8 * 1024 * 1024) { done = true; req.destroy(); reject(new Error(`no answer after ${sent} bytes of an unfinished body`)); return; }
      sent += chunk.length;
      if (req.write(chunk)) setImmediate(pump); else req.once('drain', pump);
    };
    pump();
  });
}

test('a body whose message text is over the scan budget is refused while it is still being sent (chat, messages and responses)', async () => {
  const calls = fake.requests.length;
  for (const [path, head] of [
    ['/v1/chat/completions', '{"model":"gpt","messages":[{"role":"user","content":"'],
    ['/v1/messages', '{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"'],
    ['/v1/responses', '{"model":"gpt","input":"'],
  ]) {
    const r = await endless(path, 'a', head);
    assert.equal(r.status, 400, r.body);
    const err = (JSON.parse(r.body) as { error: { type?: string; code?: string; message: string } }).error;
    assert.match(err.message, /small-budget/);
    assert.match(err.message, /max_scan_chars/);
    assert.ok(r.sent < 4 * 1024 * 1024, `refused after ${r.sent} bytes`);
  }
  assert.equal(fake.requests.length, calls, 'the upstream never saw them');
});

test('an A2A message whose text is over the scan budget is refused while it is still being sent (JSON-RPC and HTTP+JSON)', async () => {
  const message = '{"message":{"role":"ROLE_USER","messageId":"m1","parts":[{"text":"';
  for (const [path, head] of [
    ['/a2a/callee', `{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":${message}`],
    ['/a2a/callee/message:send', message],
  ]) {
    const r = await endless(path, 'a', head);
    assert.match(r.body, /small-budget/, `${path}: ${r.body}`);
    assert.match(r.body, /max_scan_chars/, path);
    assert.ok(r.sent < 4 * 1024 * 1024, `${path}: refused after ${r.sent} bytes`);
  }
  await gw.g.rt.auditLog!.flush();
  const refusals = queryEvents(gw.g.rt.auditLog!.db, { type: 'guardrail', limit: 50 }).filter((e) => (e.guardrail as { where?: string } | undefined)?.where === 'a2a callee');
  assert.equal(refusals.length, 2, 'each refusal is evidence, filed under the A2A call');
});

test('a large body whose text is within the budget is not refused early (images and base64 payloads are not text)', async () => {
  const img = Buffer.alloc(BUDGET * 8, 7).toString('base64');
  const body = { model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'describe' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${img}` } }] }] };
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('a')}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.text());
  const small = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('a')}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'x'.repeat(BUDGET - 100) }] }) });
  assert.equal(small.status, 200, await small.text());
});

test('without a blocking guardrail nothing is watched: a long body is read whole and answered', async () => {
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('free')}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'y'.repeat(BUDGET * 4) }] }) });
  assert.equal(r.status, 200, await r.text());
});
