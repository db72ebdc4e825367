// Model plane from outside, with the real SDKs against an upstream of the test's own: the edges an
// OpenAI-compatible server or a failing upstream shows that the fake-upstream suites do not.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';

let up: LocalServer;
let gw: TestGateway;
let key: string;
const seen: Array<Record<string, unknown>> = [];

before(async () => {
  up = await localServer((req, res, raw) => {
    const body = JSON.parse(raw) as Record<string, unknown>;
    seen.push(body);
    const model = String(body.model);
    if (req.url!.endsWith('/messages')) {
      // Anthropic wire: JSON text, as a structured-output answer is.
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: '{"name":"Ada","age":36}' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 3, output_tokens: 4 } }));
      return;
    }
    if (req.url!.endsWith('/embeddings')) {
      // Like many OpenAI-compatible servers: numbers, whatever encoding_format asked.
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', model, data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25, -2] }], usage: { prompt_tokens: 2, total_tokens: 2 } }));
      return;
    }
    if (model === 'busy') {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
      res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_error' } }));
      return;
    }
    if (model === 'down') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'boom', type: 'server_error' } }));
      return;
    }
    // Every choice it was asked for; the second one says what an output guardrail must stop.
    if (body.stream === true) {
      const chunk = (delta: unknown, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end(chunk({ role: 'assistant', content: 'fine' }, null) + chunk({}, 'stop') + 'data: [DONE]\n\n');
      return;
    }
    const n = typeof body.n === 'number' ? body.n : 1;
    const choices = Array.from({ length: n }, (_, i) => ({ index: i, message: { role: 'assistant', content: i === 0 ? 'fine' : 'project falcon ships' }, finish_reason: 'stop' }));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model, choices, usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } }));
  });
  const target = (model: string) => ({ provider: 'up', model });
  gw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'TEST_UPSTREAM_KEY' }),
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, credential: 'up-key', models: '*' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${up.url}/v1`, credential: 'up-key' }),
    doc('Model', 'claude', { targets: [{ provider: 'ant', model: 'claude-x' }], pricing: { free: true } }),
    doc('Guardrail', 'falcon', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    doc('Model', 'chat', { targets: [target('ok')], pricing: { free: true }, guardrails: ['falcon'] }),
    doc('Model', 'emb', { kind: 'embeddings', targets: [target('emb')], pricing: { free: true } }),
    doc('Model', 'all-busy', { targets: [target('down'), target('busy')], retries: { attempts: 0 }, pricing: { free: true } }),
    doc('Model', 'priced', { targets: [target('ok')], pricing: { input_per_1m: 1, output_per_1m: 2 } }),
    ...agentDocs(['chat', 'emb', 'all-busy', 'priced', 'claude', 'up/gpt-4o-mini'], { budget: { daily_usd: 0.001 } }),
  ), { TEST_UPSTREAM_KEY: 'sk-edges-upstream-secret-0123456789' });
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await up?.close(); });

const openai = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });

test('n > 1 is a 400 naming n (the SDK raises BadRequestError), streamed or not: a second choice would pass the output guardrails unscanned', async () => {
  seen.length = 0;
  for (const stream of [false, true]) {
    await assert.rejects(openai().chat.completions.create({ model: 'chat', n: 2, stream, messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal((e.error as { param?: string }).param, 'n');
      assert.match(e.message, /n: must be 1/);
      return true;
    });
  }
  assert.equal(seen.length, 0, 'the upstream never saw the request');
  const one = await openai().chat.completions.create({ model: 'chat', n: 1, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(one.choices[0].message.content, 'fine');
});

test('embeddings: the OpenAI SDK (base64 by default) gets the vectors from an upstream that answers numbers anyway', async () => {
  const r = await openai().embeddings.create({ model: 'emb', input: 'ab' });
  assert.deepEqual(r.data[0].embedding, [0.5, 0.25, -2]);
  assert.equal(seen.at(-1)!.encoding_format, 'base64');
  const f = await openai().embeddings.create({ model: 'emb', input: 'ab', encoding_format: 'float' });
  assert.deepEqual(f.data[0].embedding, [0.5, 0.25, -2]);
});

test("every target failed, the last with 429: the upstream's retry-after reaches the client (OpenAI and Anthropic SDKs)", async () => {
  await assert.rejects(openai().chat.completions.create({ model: 'all-busy', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal(e.headers?.get('retry-after'), '7');
    return true;
  });
  const anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
  await assert.rejects(anthropic.messages.create({ model: 'all-busy', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
    assert.ok(e instanceof Anthropic.RateLimitError, String(e));
    assert.equal(e.headers?.get('retry-after'), '7');
    return true;
  });
});

test('a budget nothing was spent from, short of the worst case of a request without max_tokens: the 429 says so, and what to lower', async () => {
  await assert.rejects(openai().chat.completions.create({ model: 'priced', messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.RateLimitError, String(e));
    assert.equal((e.error as { code?: string }).code, 'budget_exceeded');
    assert.match(e.message, /daily budget of \$0\.001 for \S+ has \$0\.0010 left \(incl\. in-flight reservations\), less than this request may cost \(\$0\.0082: .*max_tokens.*\); lower that limit/);
    assert.doesNotMatch(e.message, /exhausted/);
    return true;
  });
  const ok = await openai().chat.completions.create({ model: 'priced', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(ok.choices[0].message.content, 'fine');
});

test("structured output across wires: OpenAI's json_schema reaches Anthropic as output_config.format, Anthropic's reaches an OpenAI upstream as json_schema", async () => {
  const Person = z.object({ name: z.string(), age: z.number() });
  seen.length = 0;
  const r = await openai().chat.completions.parse({ model: 'claude', messages: [{ role: 'user', content: 'who' }], response_format: zodResponseFormat(Person, 'person') });
  assert.deepEqual(r.choices[0].message.parsed, { name: 'Ada', age: 36 });
  const sent = seen[0].output_config as { format?: { type?: string; schema?: { properties?: Record<string, unknown> } } } | undefined;
  assert.equal(sent?.format?.type, 'json_schema', JSON.stringify(seen[0]));
  assert.deepEqual(Object.keys(sent.format.schema?.properties ?? {}), ['name', 'age']);
  assert.equal(seen[0].response_format, undefined);
  // Bounds Anthropic refuses and open objects are rewritten as Anthropic's SDKs do (objects closed,
  // bounds moved into the description for the client's own check); a map has no form: 400, nothing sent.
  seen.length = 0;
  const Bounded = z.object({ name: z.string().max(5), age: z.number().int().min(0) });
  const b = await openai().chat.completions.parse({ model: 'claude', messages: [{ role: 'user', content: 'who' }], response_format: zodResponseFormat(Bounded, 'person') });
  assert.equal(b.choices[0].message.parsed?.name, 'Ada');
  const props = (seen[0].output_config as { format: { schema: { properties: Record<string, Record<string, unknown>>; additionalProperties: unknown } } }).format.schema;
  assert.equal(props.additionalProperties, false);
  assert.equal(props.properties.name.maxLength, undefined);
  assert.match(String(props.properties.name.description), /maxLength: 5/);
  assert.match(String(props.properties.age.description), /minimum: 0/);
  seen.length = 0;
  const open = await openai().chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'who' }], response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object', properties: { name: { type: 'string', enum: ['Ada'] } } } } } });
  assert.equal(open.choices[0].message.role, 'assistant');
  assert.deepEqual((seen[0].output_config as { format: { schema: unknown } }).format.schema, { type: 'object', properties: { name: { type: 'string', enum: ['Ada'] } }, additionalProperties: false });
  seen.length = 0;
  await assert.rejects(openai().chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'who' }], response_format: { type: 'json_schema', json_schema: { name: 'p', schema: { type: 'object', additionalProperties: { type: 'string' } } } } }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { param?: string }).param, 'response_format');
    assert.match(e.message, /Anthropic has no form for this json_schema .*model route "claude"/);
    return true;
  });
  assert.equal(seen.length, 0);

  seen.length = 0;
  const schema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false };
  const anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
  await anthropic.messages.create({ model: 'chat', max_tokens: 50, messages: [{ role: 'user', content: 'who' }], output_config: { format: { type: 'json_schema', schema } } });
  assert.deepEqual(seen[0].response_format, { type: 'json_schema', json_schema: { name: 'output', schema } });
  assert.equal(seen[0].output_config, undefined, 'an OpenAI upstream is not sent the Anthropic field');
});

test('models.retrieve (GET /v1/models/{id}): a model the caller may use, a catalog name with its slash; else NotFoundError as for an unknown one', async () => {
  const m = await openai().models.retrieve('claude');
  assert.deepEqual([m.id, m.object, m.owned_by], ['claude', 'model', 'aam']);
  const c = await openai().models.retrieve('up/gpt-4o-mini');
  assert.equal(c.id, 'up/gpt-4o-mini');
  for (const id of ['nope', 'up/gpt-4o', 'other/x', 'up/any-model']) {
    await assert.rejects(openai().models.retrieve(id), (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError, `${id}: ${String(e)}`);
      assert.equal((e.error as { code?: string }).code, 'model_not_found');
      return true;
    });
  }
});

test("the Anthropic SDK reads aam's request id (request-id: _request_id, an error's requestID), streamed or not; the OpenAI SDK's x-request-id", async () => {
  const anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
  const m = await anthropic.messages.create({ model: 'claude', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });
  assert.match(m._request_id ?? '', /^req_/);
  const s = anthropic.messages.stream({ model: 'chat', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] });
  await s.finalMessage();
  assert.match(s.request_id ?? '', /^req_/);
  await assert.rejects(anthropic.messages.create({ model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
    assert.ok(e instanceof Anthropic.NotFoundError, String(e));
    assert.match(e.requestID ?? '', /^req_/);
    return true;
  });
  const o = await openai().chat.completions.create({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
  assert.match(o._request_id ?? '', /^req_/);
});
