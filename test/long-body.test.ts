// The upstream body of a request with long message text is built across loop turns
// (src/gateway/long-body.ts): its bytes must be exactly the adapter's own, for every adapter and
// any text (escapes, non-ASCII, surrogate pairs cut at slice edges, lone surrogates), and the
// build must leave the loop between slices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chatRequestInTurns } from '../src/gateway/long-body.ts';
import { openaiAdapter } from '../src/providers/openai.ts';
import { anthropicAdapter } from '../src/providers/anthropic.ts';
import { geminiAdapter } from '../src/providers/gemini.ts';
import { bedrockAdapter } from '../src/providers/bedrock.ts';
import { azureAdapter } from '../src/providers/azure.ts';
import { responsesUpstreamAdapter } from '../src/providers/responses-upstream.ts';
import type { ChatRequest, ProviderAdapter } from '../src/providers/types.ts';
import { prng } from './helpers/hostile-text.ts';
import { localServer } from './helpers/e2e.ts';
import { startTestGateway, yaml, doc, agentDocs } from './helpers/gateway.ts';

const ADAPTERS: Array<[string, ProviderAdapter]> = [
  ['openai', openaiAdapter], ['anthropic', anthropicAdapter], ['gemini', geminiAdapter],
  ['bedrock', bedrockAdapter], ['azure', azureAdapter], ['responses', responsesUpstreamAdapter],
];
const UNITS = ['a', 'b', ' ', '"', '\\', '\n', '\t', '\u0001', 'é', '€', '\u2028', '😀', '\ud83d', '\ude00', '<', '&'];

function text(r: () => number, n: number): string {
  let s = '';
  while (s.length < n) s += UNITS[Math.floor(r() * UNITS.length)].repeat(1 + Math.floor(r() * 40));
  return s.slice(0, n);
}

const bytesOf = (b: string | Buffer): Buffer => (typeof b === 'string' ? Buffer.from(b) : b);

test('a long request body built in turns is byte for byte the adapter\'s own, for every adapter', async () => {
  const r = prng(12);
  for (let i = 0; i < 12; i++) {
    const long = text(r, 70_000 + Math.floor(r() * 120_000));
    const req: ChatRequest = {
      model: 'm',
      messages: [
        { role: 'system', content: text(r, 100) },
        { role: 'user', content: long },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: [{ type: 'text', text: text(r, 66_000) }, { type: 'image_url', image_url: { url: `data:image/png;base64,${'QUJD'.repeat(20_000)}` } }] },
      ],
      max_tokens: 10,
    } as ChatRequest;
    const size = Buffer.byteLength(JSON.stringify(req));
    for (const [name, adapter] of ADAPTERS) {
      for (const stream of [false, true]) {
        const target = { model: 'x', stream, options: {} };
        const direct = adapter.chatRequest({ ...req, stream }, target);
        const built = await chatRequestInTurns(adapter, { ...req, stream }, target, size);
        assert.ok(Buffer.isBuffer(built.body), `${name}: the long body was built in turns`);
        assert.ok(bytesOf(built.body).equals(bytesOf(direct.body)), `${name} stream=${stream} case ${i}: bytes differ`);
        assert.deepEqual({ ...built, body: null }, { ...direct, body: null });
      }
    }
  }
});

test('a short body, or one whose long strings are not message text, is the adapter\'s call as before', async () => {
  const small: ChatRequest = { model: 'm', messages: [{ role: 'user', content: 'hi' }] } as ChatRequest;
  const up = await chatRequestInTurns(openaiAdapter, small, { model: 'x', stream: false, options: {} }, 40);
  assert.equal(typeof up.body, 'string');
  const tool = { model: 'm', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', description: 'd'.repeat(100_000) } }] } as ChatRequest;
  const t = await chatRequestInTurns(openaiAdapter, tool, { model: 'x', stream: false, options: {} }, 100_100);
  assert.equal(t.body, openaiAdapter.chatRequest(tool, { model: 'x', stream: false, options: {} }).body);
});

test('a 2 MB prompt is encoded across loop turns, not in one', async () => {
  const req = { model: 'm', messages: [{ role: 'user', content: text(prng(3), 2_000_000) }] } as ChatRequest;
  let turns = 0, running = true;
  const tick = () => { turns++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const at = turns;
  const up = await chatRequestInTurns(openaiAdapter, req, { model: 'x', stream: false, options: {} }, 3_000_000);
  running = false;
  assert.ok(Buffer.isBuffer(up.body));
  assert.ok(turns - at >= 2, `built in ${turns - at} loop turns`);
});

test('through a real gateway, the upstream receives a long prompt exactly (stream and not)', async () => {
  const got: string[] = [];
  const up = await localServer((req, res, body) => {
    got.push(body);
    const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
    if (!stream) { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'x', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } })); return; }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":null}]}\n\ndata: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"x","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
  });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'm', { targets: [{ provider: 'up', model: 'x' }] }),
    ...agentDocs(['m']),
  ));
  try {
    const key = gw.key('tester');
    const long = text(prng(8), 300_000);
    for (const stream of [false, true]) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: long }] }) });
      assert.equal(r.status, 200, await r.clone().text());
      await r.text();
      const sent = JSON.parse(got[got.length - 1]) as { messages: Array<{ content: string }>; stream?: boolean };
      assert.equal(sent.messages[0].content, long);
      // What the adapter's body says (the stream goes as the client's own bytes, its usage option put in: raw-body.ts).
      assert.deepEqual(JSON.parse(got[got.length - 1]), JSON.parse(openaiAdapter.chatRequest({ model: 'm', messages: [{ role: 'user', content: long }], stream } as ChatRequest, { model: 'x', stream, options: {} }).body));
    }
  } finally { await gw.close(); await up.close(); }
});
