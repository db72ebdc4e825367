// The `model` field of every answer, with the real SDKs: the model that served it, as the upstream
// names it (a dated snapshot here), on every path: chat completions, Messages, Responses and
// embeddings; streamed and whole; relayed as written, translated, rebuilt by a guardrail, or
// replayed from the cache. Never the route name (the client's own word; x-aam-target names the target).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';

let up: LocalServer;
let gw: TestGateway;
let key: string;

/** What the upstream calls the model it was asked for, as OpenAI and Anthropic answer an alias. */
const snapshot = (model: string) => `${model}-2025-01-01`;

before(async () => {
  up = await localServer((req, res, raw) => {
    const body = JSON.parse(raw) as Record<string, unknown>;
    const model = snapshot(String(body.model));
    res.setHeader('content-type', body.stream === true ? 'text/event-stream' : 'application/json');
    if (req.url!.endsWith('/messages')) {
      if (body.stream === true) {
        const ev = (type: string, data: unknown) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data as object })}\n\n`;
        res.end(ev('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 3, output_tokens: 0 } } })
          + ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }) + ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'fine' } })
          + ev('content_block_stop', { index: 0 }) + ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 1 } }) + ev('message_stop', {}));
        return;
      }
      res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: 'fine' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 3, output_tokens: 1 } }));
      return;
    }
    if (req.url!.endsWith('/embeddings')) {
      res.end(JSON.stringify({ object: 'list', model, data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }], usage: { prompt_tokens: 2, total_tokens: 2 } }));
      return;
    }
    if (body.stream === true) {
      const chunk = (delta: unknown, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.end(chunk({ role: 'assistant', content: 'fine' }, null) + chunk({}, 'stop') + `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } })}\n\ndata: [DONE]\n\n`);
      return;
    }
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message: { role: 'assistant', content: 'fine, mail a@example.com' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }));
  });
  const free = { pricing: { free: true } };
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${up.url}/v1` }),
    doc('Guardrail', 'mask', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Model', 'gpt-route', { targets: [{ provider: 'oai', model: 'gpt' }], ...free }),
    doc('Model', 'claude-route', { targets: [{ provider: 'ant', model: 'claude' }], ...free }),
    doc('Model', 'masked-route', { targets: [{ provider: 'oai', model: 'gpt' }], guardrails: ['mask'], ...free }),
    doc('Model', 'cached-route', { targets: [{ provider: 'oai', model: 'gpt' }], cache: { mode: 'exact', ttl_seconds: 300, scope: 'agent' }, ...free }),
    doc('Model', 'emb-route', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'emb' }], ...free }),
    ...agentDocs(['gpt-route', 'claude-route', 'masked-route', 'cached-route', 'emb-route']),
  ));
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await up?.close(); });

const openai = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
const anthropic = () => new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
const hi = [{ role: 'user' as const, content: 'hi' }];

async function chatModels(route: string): Promise<string[]> {
  const whole = await openai().chat.completions.create({ model: route, messages: hi });
  const streamed = new Set<string>();
  for await (const c of await openai().chat.completions.create({ model: route, messages: hi, stream: true })) streamed.add(c.model);
  return [whole.model, ...streamed];
}

test('chat completions: the upstream\'s name for the model, relayed or translated, whole or streamed, rebuilt by a guardrail', async () => {
  assert.deepEqual(await chatModels('gpt-route'), [snapshot('gpt'), snapshot('gpt')], 'same wire (relayed as written)');
  assert.deepEqual(await chatModels('claude-route'), [snapshot('claude'), snapshot('claude')], 'from Anthropic (translated)');
  const masked = await openai().chat.completions.create({ model: 'masked-route', messages: hi });
  assert.match(masked.choices[0].message.content ?? '', /\[EMAIL\]/, 're-encoded by aam');
  assert.equal(masked.model, snapshot('gpt'));
});

test('Messages: the upstream\'s name, translated from an OpenAI upstream or relayed, whole or streamed', async () => {
  for (const [route, want] of [['gpt-route', snapshot('gpt')], ['claude-route', snapshot('claude')]]) {
    const m = await anthropic().messages.create({ model: route, max_tokens: 20, messages: hi });
    assert.equal(m.model, want, route);
    const s = anthropic().messages.stream({ model: route, max_tokens: 20, messages: hi });
    assert.equal((await s.finalMessage()).model, want, `${route} streamed`);
  }
});

test('Responses: the upstream\'s name in the Response, whole and in every streamed Response', async () => {
  for (const [route, want] of [['gpt-route', snapshot('gpt')], ['claude-route', snapshot('claude')]]) {
    assert.equal((await openai().responses.create({ model: route, input: 'hi' })).model, want, route);
    const models = new Set<string>();
    for await (const ev of await openai().responses.create({ model: route, input: 'hi', stream: true })) {
      if ('response' in ev) models.add(ev.response.model);
    }
    assert.deepEqual([...models], [want], `${route} streamed`);
  }
});

test('a cache hit names the model that made the answer, whole and streamed', async () => {
  const first = await openai().chat.completions.create({ model: 'cached-route', messages: [{ role: 'user', content: 'cache me' }] });
  const hit = await openai().chat.completions.create({ model: 'cached-route', messages: [{ role: 'user', content: 'cache me' }] }).withResponse();
  assert.equal(hit.response.headers.get('x-aam-cache'), 'hit');
  assert.deepEqual([first.model, hit.data.model], [snapshot('gpt'), snapshot('gpt')]);
  const streamed = new Set<string>();
  for await (const c of await openai().chat.completions.create({ model: 'cached-route', messages: [{ role: 'user', content: 'cache me' }], stream: true })) streamed.add(c.model);
  assert.deepEqual([...streamed], [snapshot('gpt')]);
});

test('embeddings: the upstream\'s name, as written (float) and encoded by aam (base64, the SDK\'s default)', async () => {
  const asked = await openai().embeddings.create({ model: 'emb-route', input: 'hi', encoding_format: 'float' });
  const encoded = await openai().embeddings.create({ model: 'emb-route', input: 'hi' });
  assert.deepEqual([asked.model, encoded.model], [snapshot('emb'), snapshot('emb')]);
});
