// End-to-end: POST /v1/responses through the real gateway (same access path as chat) with the
// official OpenAI SDK, translated to chat-completions, Anthropic and Gemini upstreams (the fake
// upstream); stored responses per agent (previous_response_id, item_reference, GET/DELETE),
// and the negative paths: denied model, guardrail block, a secret echoed upstream, bad input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openResponseStore, type ResponseStore, type StoredResponse } from '../src/store/responses.ts';
import { conversationOf, resolveReferences, MAX_CHAIN } from '../src/gateway/responses.ts';
import { queryEvents } from '../src/audit/query.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let key: string;
let otherKey: string;
const SECRET = 'sk-upstream-secret-value-responses-0123456789';

const route = (name: string, provider: string, model: string) => doc('Model', name, { targets: [{ provider, model }], retries: { attempts: 1, backoff_ms: 0 } });
const MODELS = ['gpt', 'claude', 'gemini', 'loop-oai', 'loop-ant', 'loop-gem', 'cut', 'pause', 'cached', 'native', 'loop-native', 'masked', 'masked-in'];

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'TEST_UPSTREAM_KEY' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'gem', { type: 'gemini', baseUrl: `${fake.url}/v1beta`, credential: 'up-key' }),
    route('gpt', 'oai', 'ok'), route('claude', 'ant', 'ok'), route('gemini', 'gem', 'ok'),
    route('loop-oai', 'oai', 'tool-loop'), route('loop-ant', 'ant', 'tool-loop'), route('loop-gem', 'gem', 'tool-loop'),
    // type openai: OpenAI itself, called on its own Responses API by Responses clients.
    doc('Provider', 'openai', { type: 'openai', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    route('native', 'openai', 'ok'), route('loop-native', 'openai', 'tool-loop'),
    route('denied', 'oai', 'ok'), route('cut', 'oai', 'cut-stream'), route('pause', 'oai', 'pause-5000'),
    doc('Model', 'cached', { targets: [{ provider: 'oai', model: 'ok' }], cache: { mode: 'exact', ttl_seconds: 300, scope: 'agent' } }),
    doc('Guardrail', 'no-falcon', { on: ['input'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Model', 'masked', { targets: [{ provider: 'oai', model: 'ok' }], guardrails: ['mask-email-out'] }),
    doc('Guardrail', 'mask-email-in', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('Model', 'masked-in', { targets: [{ provider: 'oai', model: 'ok' }], guardrails: ['mask-email-in'] }),
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', owner: 'qa@example.com', team: 'qa', environment: 'dev' }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other', owner: 'qa@example.com', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'tester-policy', { identity: { workload: 'spiffe://test/agent/tester' }, models: { allow: MODELS }, guardrails: ['no-falcon'] }),
    doc('AgentPolicy', 'other-policy', { identity: { workload: 'spiffe://test/agent/other' }, models: { allow: MODELS } }),
  ), { TEST_UPSTREAM_KEY: SECRET });
  key = gw.key('tester');
  otherKey = gw.key('other');
});
after(async () => { await gw?.close(); await fake?.close(); });

const client = (k = key) => new OpenAI({ apiKey: k, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const WEATHER = { type: 'function' as const, name: 'get_weather', description: 'Weather for a city', strict: false, parameters: { type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } };
type Up = { messages?: Array<{ role: string; content: unknown; tool_calls?: unknown[]; tool_call_id?: string }>; system?: unknown };

test('OpenAI SDK responses.create, not streamed: translated to chat completions, instructions as system, usage', async () => {
  fake.reset();
  const r = await client().responses.create({ model: 'gpt', instructions: 'Be nice.', input: 'hello there' });
  assert.match(r.id, /^resp_/);
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, 'echo: hello there');
  assert.equal(r.model, 'ok', 'the model that answered, as the upstream names it (not the route)');
  assert.ok(r.usage && r.usage.input_tokens > 0 && r.usage.total_tokens === r.usage.input_tokens + r.usage.output_tokens);
  const up = fake.requests[0];
  assert.equal(up.path, '/v1/chat/completions');
  assert.deepEqual((up.body as Up).messages, [{ role: 'system', content: 'Be nice.' }, { role: 'user', content: 'hello there' }]);
  assert.equal(up.headers.authorization, `Bearer ${SECRET}`);
});

test('OpenAI SDK responses.create, streamed: the full event sequence and response.completed with usage', async () => {
  for (const model of ['gpt', 'claude', 'gemini']) {
    const stream = await client().responses.create({ model, input: 'one two three', stream: true });
    const types: string[] = [];
    let text = '';
    let completed: OpenAI.Responses.Response | undefined;
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
      if (ev.type === 'response.completed') completed = ev.response;
    }
    assert.equal(text, 'echo: one two three', model);
    assert.deepEqual([...new Set(types)], ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added',
      'response.output_text.delta', 'response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed'], model);
    assert.ok(completed?.usage && completed.usage.output_tokens > 0 && completed.usage.total_tokens > 0, model);
  }
});

test('function tools and their results over every upstream wire; stream and not; previous_response_id carries the conversation', async () => {
  for (const model of ['loop-oai', 'loop-ant', 'loop-gem']) {
    for (const stream of [false, true]) {
      fake.reset();
      const first = stream
        ? await client().responses.stream({ model, input: 'Weather in Paris?', tools: [WEATHER] }).finalResponse()
        : await client().responses.create({ model, input: 'Weather in Paris?', tools: [WEATHER] });
      const call = first.output.find((o) => o.type === 'function_call');
      assert.ok(call && call.type === 'function_call', `${model} stream=${stream}: a function_call item`);
      assert.equal(call.name, 'get_weather');
      assert.deepEqual(JSON.parse(call.arguments), { location: 'Paris' });
      const second = await client().responses.create({
        model, previous_response_id: first.id, tools: [WEATHER], stream: false,
        input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21C' }],
      });
      assert.equal(second.output_text, 'final: the tool said sunny, 21C', `${model} stream=${stream}`);
      assert.equal(second.previous_response_id, first.id);
      assert.equal(fake.requests.length, 2);
      if (model === 'loop-oai') {
        const msgs = (fake.requests[1].body as Up).messages ?? [];
        assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool']);
        assert.equal(msgs[2].tool_call_id, call.call_id);
      }
    }
  }
});

test('an OpenAI provider is called on its own Responses API: whole conversation, store: false, aam\'s ids; chat clients still get chat completions', async () => {
  for (const stream of [false, true]) {
    fake.reset();
    const first = stream
      ? await client().responses.stream({ model: 'loop-native', instructions: 'Use tools.', input: 'Weather in Paris?', tools: [WEATHER] }).finalResponse()
      : await client().responses.create({ model: 'loop-native', instructions: 'Use tools.', input: 'Weather in Paris?', tools: [WEATHER] });
    assert.match(first.id, /^resp_(?!fake)/, 'the id is aam\'s, not the provider\'s');
    const call = first.output.find((o) => o.type === 'function_call');
    assert.ok(call && call.type === 'function_call');
    assert.match(call.id ?? '', /^fc_(?!fake)/);
    const second = await client().responses.create({ model: 'loop-native', previous_response_id: first.id, tools: [WEATHER], input: [{ type: 'function_call_output', call_id: call.call_id, output: 'hail' }] });
    assert.equal(second.output_text, 'final: the tool said hail');
    assert.deepEqual(fake.requests.map((r) => r.path), ['/v1/responses', '/v1/responses']);
    const body = fake.requests[1].body as { store: boolean; previous_response_id?: string; input: Array<{ type: string; role?: string }> };
    assert.equal(body.store, false);
    assert.equal(body.previous_response_id, undefined, 'never forwarded: aam resolved it');
    assert.deepEqual((fake.requests[0].body as typeof body).input.map((i) => i.role ?? i.type), ['system', 'user']);
    // instructions are not carried over by previous_response_id (as at OpenAI)
    assert.deepEqual(body.input.map((i) => i.role ?? i.type), ['user', 'function_call', 'function_call_output']);
    assert.equal(fake.requests[1].headers.authorization, `Bearer ${SECRET}`);
  }
  fake.reset();
  const chat = await client().chat.completions.create({ model: 'native', messages: [{ role: 'user', content: 'plain chat' }] });
  assert.equal(chat.choices[0].message.content, 'echo: plain chat');
  assert.equal(fake.requests[0].path, '/v1/chat/completions');
});

test('item_reference inputs are resolved by aam from the agent\'s stored responses', async () => {
  fake.reset();
  const first = await client().responses.create({ model: 'loop-oai', input: 'Weather in Paris?', tools: [WEATHER] });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call && call.type === 'function_call' && call.id);
  const r = await client().responses.create({
    model: 'loop-oai', tools: [WEATHER],
    input: [{ role: 'user', content: 'Weather in Paris?' }, { type: 'item_reference', id: call.id }, { type: 'function_call_output', call_id: call.call_id, output: 'rain' }],
  });
  assert.equal(r.output_text, 'final: the tool said rain');
  const msgs = (fake.requests[1].body as Up).messages ?? [];
  assert.deepEqual(msgs.map((m) => m.role), ['user', 'assistant', 'tool'], 'the reference became the assistant tool call');
  await assert.rejects(client(otherKey).responses.create({ model: 'gpt', input: [{ type: 'item_reference', id: call.id }] }),
    (e: unknown) => e instanceof OpenAI.NotFoundError && /not an item of a stored response of this agent/.test(e.message));
});

test('input_file and input_audio reach each upstream in its own form (Anthropic document, Gemini inline data), or are a 400 naming the part: never dropped', async () => {
  const PDF = 'JVBERi0xLjQK';
  const ask = (model: string, part: Record<string, unknown>) => client().responses.create({ model, input: [{ role: 'user', content: [part, { type: 'input_text', text: 'summarise' }] }] as unknown as OpenAI.Responses.ResponseInput });
  const sent = async (model: string, part: Record<string, unknown>): Promise<unknown> => {
    fake.reset();
    await ask(model, part);
    const b = fake.requests[0].body as { messages?: Array<{ content: unknown[] }>; contents?: Array<{ parts: unknown[] }> };
    return (b.messages?.[0].content ?? b.contents?.[0].parts ?? [])[0];
  };
  const pdf = { type: 'input_file', filename: 'a.pdf', file_data: `data:application/pdf;base64,${PDF}` };
  assert.deepEqual(await sent('claude', pdf), { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: PDF }, title: 'a.pdf' });
  assert.deepEqual(await sent('claude', { type: 'input_file', filename: 'notes.txt', file_data: Buffer.from('the notes').toString('base64') }),
    { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'the notes' }, title: 'notes.txt' });
  assert.deepEqual(await sent('claude', { type: 'input_file', file_url: 'https://example.com/a.pdf' }), { type: 'document', source: { type: 'url', url: 'https://example.com/a.pdf' } });
  assert.deepEqual(await sent('gemini', pdf), { inlineData: { mimeType: 'application/pdf', data: PDF } });
  assert.deepEqual(await sent('gemini', { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } }), { inlineData: { mimeType: 'audio/wav', data: 'UklGRg==' } });
  assert.deepEqual(await sent('gpt', pdf), { type: 'file', file: { file_data: `data:application/pdf;base64,${PDF}`, filename: 'a.pdf' } });
  // No form on the wire: a 400 naming the part, and nothing reaches the upstream (not the text without it).
  fake.reset();
  for (const [model, part] of [['claude', { type: 'input_file', file_id: 'file-abc123' }], ['gemini', { type: 'input_file', file_id: 'file-abc123' }], ['claude', { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } }]] as const) {
    await assert.rejects(ask(model, part), (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'messages[0].content[0]' && /no target that takes it/.test(e.message), `${model} ${part.type}`);
  }
  // A chat-completions client's file part to an Anthropic route, the same way.
  await client().chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'file', file: { filename: 'a.pdf', file_data: `data:application/pdf;base64,${PDF}` } }] }] });
  assert.equal(((fake.requests[0].body as { messages: Array<{ content: Array<{ type: string }> }> }).messages[0].content[0]).type, 'document');
  assert.equal(fake.requests.length, 1);
});

test('GET /v1/responses/{id} returns the stored response to its agent only; another agent gets 404 like an unknown id', async () => {
  const r = await client().responses.create({ model: 'gpt', input: 'remember me' });
  const got = await client().responses.retrieve(r.id);
  assert.equal(got.id, r.id);
  assert.equal(got.output_text, 'echo: remember me');
  // Its input items, with ids aam gave them; paged like OpenAI's lists; item_reference can name them.
  const multi = await client().responses.create({ model: 'gpt', input: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }, { role: 'user', content: 'c' }] });
  const page = await client().responses.inputItems.list(multi.id, { order: 'asc', limit: 2 });
  assert.deepEqual(page.data.map((i) => i.type === 'message' && i.content), ['a', 'b']);
  assert.equal(page.has_more, true);
  const all: string[] = [];
  for await (const it of client().responses.inputItems.list(multi.id, { limit: 1 })) all.push(it.id);
  assert.equal(all.length, 3, 'the SDK pages through with after');
  assert.match(all[0], /_in2$/, 'newest first by default');
  const ref = await client().responses.create({ model: 'gpt', input: [{ type: 'item_reference', id: all[1] }] });
  assert.equal(ref.output_text, 'echo: b');
  await assert.rejects(client(otherKey).responses.inputItems.list(multi.id), OpenAI.NotFoundError);
  for (const id of [r.id, 'resp_doesnotexist']) {
    await assert.rejects(client(otherKey).responses.retrieve(id), (e: unknown) => e instanceof OpenAI.NotFoundError && /was not found/.test(e.message));
    await assert.rejects(client(otherKey).responses.create({ model: 'gpt', previous_response_id: id, input: 'and?' }),
      (e: unknown) => e instanceof OpenAI.NotFoundError && (e.error as { param?: string }).param === 'previous_response_id');
  }
  // The other agent cannot delete it either; its owner can, after which it is gone.
  const del = await fetch(`${gw.url}/v1/responses/${r.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${otherKey}` } });
  assert.equal(del.status, 404);
  await client().responses.delete(r.id);
  await assert.rejects(client().responses.retrieve(r.id), OpenAI.NotFoundError);
  const anon = await fetch(`${gw.url}/v1/responses/${r.id}`);
  assert.equal(anon.status, 401);
});

test('the answer is acknowledged once stored: with a slow (fleet-like) store, chaining right after the answer finds it', async () => {
  const rt = gw.g.rt as { responses: ResponseStore };
  const real = rt.responses;
  // Writes land 400 ms after put is called, as over a network.
  rt.responses = { ...real, put: (r, ids) => new Promise((resolve, reject) => { setTimeout(() => { real.put(r, ids).then(resolve, reject); }, 400); }) };
  try {
    const whole = await client().responses.create({ model: 'gpt', input: 'slow store' });
    assert.equal((await client().responses.retrieve(whole.id)).id, whole.id, 'non-stream: stored before the answer was sent');
    let id = '';
    for await (const ev of await client().responses.create({ model: 'gpt', input: 'slow store, streamed', stream: true })) if (ev.type === 'response.completed') id = ev.response.id;
    assert.equal((await client().responses.retrieve(id)).id, id, 'stream: stored before response.completed was sent');
  } finally {
    rt.responses = real;
  }
});

test('store: false is not stored (retrieve and previous_response_id are 404)', async () => {
  const r = await client().responses.create({ model: 'gpt', input: 'forget me', store: false });
  assert.equal((r as { store?: boolean }).store, false);
  await assert.rejects(client().responses.retrieve(r.id), OpenAI.NotFoundError);
  await assert.rejects(client().responses.create({ model: 'gpt', previous_response_id: r.id, input: 'x' }), OpenAI.NotFoundError);
});

test('a model the policy does not allow is 403 policy_denied, before any stored state is looked at', async () => {
  fake.reset();
  await assert.rejects(client().responses.create({ model: 'denied', input: 'hi', previous_response_id: 'resp_unknown' }),
    (e: unknown) => e instanceof OpenAI.PermissionDeniedError && (e.error as { code?: string }).code === 'policy_denied' && /tester-policy|policy/.test(e.message));
  assert.equal(fake.requests.length, 0);
});

test('input guardrails see the Responses input (and the stored conversation): blocked with guardrail_blocked', async () => {
  fake.reset();
  await assert.rejects(client().responses.create({ model: 'gpt', input: 'tell me about Project Falcon' }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { code?: string }).code === 'guardrail_blocked');
  // The same words as a tool result inside a stored conversation are seen too.
  const first = await client().responses.create({ model: 'loop-oai', input: 'Weather?', tools: [WEATHER] });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call && call.type === 'function_call');
  await assert.rejects(client().responses.create({ model: 'loop-oai', previous_response_id: first.id, tools: [WEATHER], input: [{ type: 'function_call_output', call_id: call.call_id, output: 'project falcon data' }] }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { code?: string }).code === 'guardrail_blocked');
  assert.equal(fake.requests.length, 1, 'blocked requests never reach the upstream');
});

test('output guardrails redact the Responses answer, streamed and not, and what is stored', async () => {
  const whole = await client().responses.create({ model: 'masked', input: 'write to jane.doe@example.com please' });
  assert.equal(whole.output_text, 'echo: write to [EMAIL] please');
  let text = '';
  let id = '';
  for await (const ev of await client().responses.create({ model: 'masked', input: 'mail jane.doe@example.com now', stream: true })) {
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') id = ev.response.id;
  }
  assert.equal(text, 'echo: mail [EMAIL] now');
  for (const rid of [whole.id, id]) {
    const stored = await gw.g.rt.responses.get('spiffe://test/agent/tester', rid);
    assert.ok(stored && stored.response.includes('[EMAIL]') && !stored.response.includes('jane.doe@example.com'), 'the stored answer is the redacted one');
  }
});

test('input guardrails redact what is sent upstream and what is stored; the next turn carries the redacted text', async () => {
  const first = await client().responses.create({ model: 'masked-in', input: [{ role: 'user', content: [{ type: 'input_text', text: 'reach me at jane.doe@example.com' }] }] });
  assert.equal(first.output_text, 'echo: reach me at [EMAIL]', 'the upstream saw the redacted text');
  const stored = await gw.g.rt.responses.get('spiffe://test/agent/tester', first.id);
  assert.ok(stored, 'stored');
  assert.ok(stored.input.includes('[EMAIL]') && !stored.input.includes('jane.doe@example.com'), `the stored input is the redacted one: ${stored.input}`);
  const items = await client().responses.inputItems.list(first.id);
  assert.ok(!JSON.stringify(items.data).includes('jane.doe@example.com'), 'input_items shows the redacted input');
  // A clean input is stored as sent (nothing to rewrite).
  const clean = await client().responses.create({ model: 'masked-in', input: 'plain words' });
  const cleanStored = await gw.g.rt.responses.get('spiffe://test/agent/tester', clean.id);
  assert.ok(cleanStored?.input.includes('plain words'));
});

test('a credential echoed by the upstream is scrubbed from the Responses stream, the answer and the stored response', async () => {
  const stream = await client().responses.create({ model: 'gpt', input: `my key is ${SECRET} ok`, stream: true });
  let raw = '';
  let id = '';
  for await (const ev of stream) {
    raw += JSON.stringify(ev);
    if (ev.type === 'response.completed') id = ev.response.id;
  }
  assert.ok(!raw.includes(SECRET), 'no secret in any stream event');
  assert.match(raw, /my key is \[/);
  const stored = await fetch(`${gw.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${key}` } });
  const body = await stored.text();
  assert.ok(!body.includes(SECRET));
  const whole = await client().responses.create({ model: 'gpt', input: `again ${SECRET}` });
  assert.ok(!JSON.stringify(whole).includes(SECRET));
  assert.ok(!(await gw.g.rt.responses.get('spiffe://test/agent/tester', whole.id))?.response.includes(SECRET), 'not at rest either');
});

test('bad input is a 400 in the OpenAI error shape naming the field', async () => {
  const post = (body: unknown) => fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  for (const [body, param] of [
    [{ model: 'gpt' }, 'input'],
    [{ model: 'gpt', input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    [{ model: 'gpt', input: [{ type: 'function_call_output', output: 'x' }] }, 'input[0].call_id'],
    [{ model: 'gpt', input: [] }, 'input'],
  ] as Array<[unknown, string]>) {
    const r = await post(body);
    assert.equal(r.status, 400, JSON.stringify(body));
    const e = (await r.json()) as { error: { message: string; type: string; param: string; code: string } };
    assert.equal(e.error.type, 'invalid_request_error');
    assert.equal(e.error.param, param);
    assert.ok(e.error.message.startsWith(param), e.error.message);
  }
  const unknownModel = await post({ model: 'nope', input: 'x' });
  assert.equal(unknownModel.status, 404);
});

test('one access path: a Responses call is model-call evidence with the route, tokens and the caller; a cached answer is served to it too', async () => {
  const r = await client().responses.create({ model: 'gpt', input: 'evidence please' }).withResponse();
  await gw.g.rt.auditLog!.flush();
  const [ev] = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.response.headers.get('x-request-id')! });
  assert.equal(ev.type, 'model_call');
  assert.equal((ev.identity as { agent: string }).agent, 'tester');
  assert.equal((ev.model as { route: string }).route, 'gpt');
  assert.ok(((ev.model as { input_tokens?: number }).input_tokens ?? 0) > 0);
  fake.reset();
  const a = await client().responses.create({ model: 'cached', input: 'same question' }).withResponse();
  const b = await client().responses.create({ model: 'cached', input: 'same question', stream: true }).withResponse();
  assert.equal(a.response.headers.get('x-aam-cache'), 'miss');
  assert.equal(b.response.headers.get('x-aam-cache'), 'hit');
  let text = '';
  for await (const ev of b.data) if (ev.type === 'response.output_text.delta') text += ev.delta;
  assert.equal(text, 'echo: same question');
  assert.equal(fake.requests.length, 1, 'the hit never reached the upstream');
});

test('an upstream that breaks mid-stream ends the Responses stream with an error event (the SDK throws)', async () => {
  const stream = await client().responses.create({ model: 'cut', input: 'a b c d e f', stream: true });
  const seen: string[] = [];
  await assert.rejects((async () => { for await (const ev of stream) seen.push(ev.type); })(), (e: unknown) => e instanceof OpenAI.APIError && /stream|upstream/i.test(e.message));
  assert.ok(seen.includes('response.output_text.delta'), 'content had been committed before the break');
  assert.ok(!seen.includes('response.completed'));
});

test('a broken stream is still stored (store: true), as OpenAI keeps it: failed with the error and the partial output; an aborted one incomplete; both chain', async () => {
  const cut = await client().responses.create({ model: 'cut', input: 'a b c d e f', stream: true });
  let id = '';
  let text = '';
  await assert.rejects((async () => {
    for await (const ev of cut) {
      if (ev.type === 'response.created') id = ev.response.id;
      if (ev.type === 'response.output_text.delta') text += ev.delta;
    }
  })());
  assert.match(id, /^resp_/);
  const failed = await client().responses.retrieve(id);
  assert.equal(failed.status, 'failed');
  assert.equal(failed.error?.code, 'server_error');
  assert.match(failed.error?.message ?? '', /upstream stream from oai\/cut-stream/);
  assert.equal(failed.output_text, text, 'the partial output, as streamed');
  assert.equal((failed.output[0] as { status: string }).status, 'incomplete');
  assert.equal(failed.completed_at ?? null, null);

  // The client goes away after the first delta: the upstream call is cut, the Response kept as it stands.
  const paused = await client().responses.create({ model: 'pause', input: 'slow words here', stream: true });
  let pid = '';
  let ptext = '';
  for await (const ev of paused) {
    if (ev.type === 'response.created') pid = ev.response.id;
    if (ev.type === 'response.output_text.delta') { ptext += ev.delta; paused.controller.abort(); break; }
  }
  let aborted: OpenAI.Responses.Response | undefined;
  for (let i = 0; i < 100 && aborted === undefined; i++) {
    aborted = await client().responses.retrieve(pid).catch((e: unknown) => { if (e instanceof OpenAI.NotFoundError) return undefined; throw e; });
    if (aborted === undefined) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(aborted?.status, 'incomplete');
  assert.equal(aborted?.error, null);
  assert.equal(aborted?.output_text, ptext);

  // Either can be chained: its input and what it answered are the conversation.
  fake.reset();
  const next = await client().responses.create({ model: 'gpt', previous_response_id: id, input: 'go on' });
  assert.equal(next.status, 'completed');
  const sent = (fake.requests[0].body as Up).messages!;
  assert.deepEqual(sent.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(sent[1].content, text);
});

test('response store: per agent, expiring, items indexed (unit, with a clock)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-resp-'));
  try {
    const db = openDatabase(dir);
    let t = 1_000_000;
    const failures: string[][] = [];
    const s = openResponseStore(db, () => t, (_e, ids) => failures.push(ids));
    await s.put({ id: 'resp_a', agent: 'A', previousId: null, input: '[]', response: '{"output":[]}', expiresAt: t + 1000 }, ['msg_a_0']);
    s.flush!(); // read back from SQLite (reads of puts still held in memory: responses-store.test.ts)
    assert.equal((await s.get('A', 'resp_a'))?.id, 'resp_a');
    assert.equal(await s.get('B', 'resp_a'), null);
    assert.equal(await s.itemOwner('A', 'msg_a_0'), 'resp_a');
    assert.equal(await s.itemOwner('B', 'msg_a_0'), null);
    assert.equal(await s.delete('B', 'resp_a'), false);
    t += 1000;
    assert.equal(await s.get('A', 'resp_a'), null, 'expired');
    assert.equal(await s.itemOwner('A', 'msg_a_0'), null);
    t += 120_000;
    await s.put({ id: 'resp_b', agent: 'A', previousId: null, input: '[]', response: '{"output":[]}', expiresAt: t + 1000 }, []);
    s.flush!();
    const rows = db.prepare('SELECT count(*) AS n FROM responses').get() as { n: number };
    assert.equal(rows.n, 1, 'expired rows are purged');
    db.close();
    // A failed write is reported (the runtime logs it), never a throw inside the answer being encoded.
    await s.put({ id: 'resp_c', agent: 'A', previousId: null, input: '[]', response: '{}', expiresAt: t + 1000 }, []);
    s.flush!();
    assert.deepEqual(failures, [['resp_c']]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The store interface with a Map behind it (what a fleet store implements), for bounds tests. */
function memoryStore(): ResponseStore & { recs: Map<string, StoredResponse> } {
  const recs = new Map<string, StoredResponse>();
  const items = new Map<string, string>();
  return {
    recs,
    put: async (r, ids) => { recs.set(r.id, r); for (const i of ids) items.set(`${r.agent} ${i}`, r.id); },
    get: async (agent, id) => { const r = recs.get(id); return r && r.agent === agent ? r : null; },
    itemOwner: async (agent, id) => items.get(`${agent} ${id}`) ?? null,
    delete: async (agent, id) => recs.get(id)?.agent === agent && recs.delete(id),
  };
}

test('stored state a request pulls in is bounded: a chain or item references over 1000 responses is a 400, not a stall', async () => {
  const s = memoryStore();
  const out = (i: number) => JSON.stringify({ output: [{ id: `msg_${i}`, type: 'message', role: 'assistant', content: [{ type: 'output_text', text: `t${i}` }] }] });
  for (let i = 0; i <= MAX_CHAIN; i++) {
    await s.put({ id: `resp_${i}`, agent: 'A', previousId: i === 0 ? null : `resp_${i - 1}`, input: '[]', response: out(i), expiresAt: Infinity }, [`msg_${i}`]);
  }
  const ok = await conversationOf(s, 'A', `resp_${MAX_CHAIN - 1}`);
  assert.equal(ok.items.length, MAX_CHAIN, 'a chain of the maximum length is resolved, oldest first');
  assert.equal(ok.items[0].id, 'msg_0');
  await assert.rejects(conversationOf(s, 'A', `resp_${MAX_CHAIN}`), /longer than 1000 responses/);
  await assert.rejects(conversationOf(s, 'B', 'resp_5'), /was not found/);
  const refs = Array.from({ length: MAX_CHAIN + 1 }, (_, i) => ({ type: 'item_reference', id: `msg_${i}` }));
  await assert.rejects(resolveReferences(s, 'A', refs), /reach more than 1000 stored responses/);
  const some = await resolveReferences(s, 'A', refs.slice(0, 3));
  assert.deepEqual(some.map((x) => x.id), ['msg_0', 'msg_1', 'msg_2']);
  // An earlier response of the chain gone (expired): said so, naming it.
  s.recs.delete('resp_2');
  await assert.rejects(conversationOf(s, 'A', 'resp_4'), /\("resp_2"\) has expired/);
});
