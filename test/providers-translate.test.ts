import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  adapterFor, codecFor, parseAnthropicRequest, parseEmbeddingsRequest, parseOpenAIChatRequest, anthropicErrorBody, UpstreamShapeError,
} from '../src/providers/index.ts';
import type { ChatRequest, StreamEvent, TargetInfo } from '../src/providers/types.ts';
import { embeddingAs } from '../src/providers/openai.ts';

const T = (model: string, stream = false, options: Record<string, string> = {}): TargetInfo => ({ model, stream, options });

function okReq(body: unknown): ChatRequest {
  const r = parseOpenAIChatRequest(body);
  if (!r.ok) assert.fail(r.message);
  return r.req;
}

test('parseOpenAIChatRequest names the bad field', () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  const cases: Array<[unknown, string]> = [
    [null, 'body'],
    [{ messages: msgs }, 'model'],
    [{ model: '', messages: msgs }, 'model'],
    [{ model: 'm' }, 'messages'],
    [{ model: 'm', messages: [] }, 'messages'],
    [{ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ model: 'm', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ model: 'm', messages: [{ role: 'user', content: null }] }, 'messages[0].content'],
    [{ model: 'm', messages: [{ role: 'user', content: [{ text: 'no type' }] }] }, 'messages[0].content[0]'],
    [{ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content[0].image_url.url'],
    [{ model: 'm', messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].tool_call_id'],
    [{ model: 'm', messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: {} } }] }] }, 'messages[0].tool_calls[0].function.arguments'],
    [{ model: 'm', messages: msgs, stream: 'yes' }, 'stream'],
    [{ model: 'm', messages: msgs, temperature: '0.1' }, 'temperature'],
    [{ model: 'm', messages: msgs, max_tokens: Number.NaN }, 'max_tokens'],
    [{ model: 'm', messages: msgs, stop: [1] }, 'stop'],
    [{ model: 'm', messages: msgs, tools: [{ type: 'function', function: {} }] }, 'tools[0].function.name'],
    [{ model: 'm', messages: msgs, tools: {} }, 'tools'],
    [{ model: 'm', messages: msgs, tool_choice: 'sometimes' }, 'tool_choice'],
    [{ model: 'm', messages: msgs, stream_options: { include_usage: 1 } }, 'stream_options.include_usage'],
  ];
  for (const [body, field] of cases) {
    const r = parseOpenAIChatRequest(body);
    assert.equal(r.ok, false, JSON.stringify(body));
    if (!r.ok) {
      assert.equal(r.field, field, JSON.stringify(body));
      assert.ok(r.message.length > 0 && !r.message.startsWith(field), r.message);
    }
  }
});

test('parseOpenAIChatRequest keeps messages and parts untouched and collects extra fields', () => {
  const audio = { type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } };
  const messages = [{ role: 'user', content: [{ type: 'text', text: 'hi' }, audio] }, { role: 'assistant', content: null, refusal: null }];
  const req = okReq({ model: 'm', messages, seed: 1, logit_bias: { 1: 2 }, stream: true, stream_options: null });
  assert.equal(req.messages, messages, 'no copy of messages');
  assert.equal((req.messages[0].content as unknown[])[1], audio);
  assert.deepEqual(req.extra, { seed: 1, logit_bias: { 1: 2 } });
  assert.equal(req.stream, true);
  assert.equal(req.stream_options, undefined);
});

test('parseEmbeddingsRequest validates input and options', () => {
  assert.ok(parseEmbeddingsRequest({ model: 'e', input: 'x' }).ok);
  assert.ok(parseEmbeddingsRequest({ model: 'e', input: [[1, 2], [3]] }).ok);
  const bad: Array<[unknown, string]> = [
    [{ input: 'x' }, 'model'], [{ model: 'e', input: [] }, 'input'], [{ model: 'e', input: ['a', 1] }, 'input'],
    [{ model: 'e', input: 'x', dimensions: 0 }, 'dimensions'], [{ model: 'e', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
  ];
  for (const [b, f] of bad) {
    const r = parseEmbeddingsRequest(b);
    assert.equal(r.ok ? '' : r.field, f);
  }
});

test('openai upstream: stream always asks for usage, non-stream drops stream options, extra cannot override', () => {
  const req = okReq({ model: 'route', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: false }, seed: 3 });
  req.extra = { ...req.extra, model: 'evil', messages: [] };
  const s = JSON.parse(adapterFor('openai').chatRequest(req, T('gpt-4o', true)).body);
  assert.equal(s.model, 'gpt-4o');
  assert.equal(s.messages.length, 1);
  assert.deepEqual(s.stream_options, { include_usage: true });
  assert.equal(s.seed, 3);
  const n = JSON.parse(adapterFor('openai-compatible').chatRequest(req, T('llama3', false)).body);
  assert.equal(n.stream, undefined);
  assert.equal(n.stream_options, undefined);
});

test('azure: deployment path with api-version, defaults to the model name', () => {
  const req = okReq({ model: 'r', messages: [{ role: 'user', content: 'hi' }] });
  const a = adapterFor('azure-openai');
  assert.equal(a.chatRequest(req, T('gpt-4o', false, { apiVersion: '2025-01-01-preview', deployment: 'my dep' })).path,
    '/openai/deployments/my%20dep/chat/completions?api-version=2025-01-01-preview');
  assert.equal(a.chatRequest(req, T('gpt-4o')).path, '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21');
  assert.equal(a.embeddingsRequest?.({ model: 'e', input: 'x' }, T('emb', false, { apiVersion: 'v' })).path, '/openai/deployments/emb/embeddings?api-version=v');
});

test('providers never add credentials', () => {
  const req = okReq({ model: 'r', messages: [{ role: 'user', content: 'hi' }] });
  for (const type of ['openai', 'anthropic', 'gemini', 'azure-openai'] as const) {
    const up = adapterFor(type).chatRequest(req, T('m'));
    for (const h of Object.keys(up.headers)) assert.ok(!/authorization|api-key|goog/i.test(h), `${type} added ${h}`);
    assert.ok(!/[?&]key=/.test(up.path), `${type} added a key query`);
  }
});

const anthropicToolRequest = {
  model: 'claude-route',
  system: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Use tools.' }],
  max_tokens: 300,
  stop_sequences: ['###'],
  top_k: 5,
  metadata: { user_id: 'u-1' },
  tool_choice: { type: 'any', disable_parallel_tool_use: true },
  tools: [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
  messages: [
    { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
    { role: 'assistant', content: [{ type: 'text', text: 'Checking.' }, { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }, { type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { city: 'Rome' } }] },
    { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_1', content: '18C' },
      { type: 'tool_result', tool_use_id: 'toolu_2', content: [{ type: 'text', text: '25C' }] },
      { type: 'text', text: 'And tomorrow?' },
    ] },
  ],
};

test('anthropic request -> canonical: tool_use/tool_result, images, system blocks', () => {
  const r = parseAnthropicRequest(anthropicToolRequest);
  if (!r.ok) assert.fail(r.message);
  const m = r.req.messages;
  assert.deepEqual(m.map((x) => x.role), ['system', 'user', 'assistant', 'tool', 'tool', 'user']);
  assert.equal(m[0].content, 'Be brief.\nUse tools.');
  assert.deepEqual(m[1].content, [{ type: 'text', text: 'Weather?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }]);
  assert.equal(m[2].content, 'Checking.');
  assert.deepEqual(m[2].tool_calls?.map((t) => [t.id, t.function.name, JSON.parse(t.function.arguments)]), [['toolu_1', 'get_weather', { city: 'Paris' }], ['toolu_2', 'get_weather', { city: 'Rome' }]]);
  assert.deepEqual([m[3].tool_call_id, m[3].content, m[4].content], ['toolu_1', '18C', '25C']);
  assert.equal(r.req.tool_choice, 'required');
  assert.equal(r.req.parallel_tool_calls, false);
  assert.deepEqual(r.req.stop, ['###']);
  assert.equal(r.req.user, 'u-1');
  assert.deepEqual(r.req.anthropicExtra, { top_k: 5, metadata: { user_id: 'u-1' } });
});

test('round trip: anthropic request -> canonical -> anthropic upstream preserves tool use and results', () => {
  const r = parseAnthropicRequest(anthropicToolRequest);
  if (!r.ok) assert.fail(r.message);
  const up = adapterFor('anthropic').chatRequest(r.req, T('claude-sonnet-4-5'));
  assert.equal(up.path, '/messages');
  assert.equal(up.headers['anthropic-version'], '2023-06-01');
  const b = JSON.parse(up.body);
  assert.equal(b.system, 'Be brief.\nUse tools.');
  assert.equal(b.max_tokens, 300);
  assert.equal(b.top_k, 5);
  assert.deepEqual(b.stop_sequences, ['###']);
  assert.deepEqual(b.tool_choice, { type: 'any', disable_parallel_tool_use: true });
  assert.deepEqual(b.tools, anthropicToolRequest.tools);
  assert.deepEqual(b.messages, [
    { role: 'user', content: [{ type: 'text', text: 'Weather?' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] },
    anthropicToolRequest.messages[1],
    { role: 'user', content: [
      { type: 'tool_result', tool_use_id: 'toolu_1', content: '18C' },
      { type: 'tool_result', tool_use_id: 'toolu_2', content: '25C' },
      { type: 'text', text: 'And tomorrow?' },
    ] },
  ]);
});

test('anthropic request -> openai upstream: tool messages follow the assistant tool_calls', () => {
  const r = parseAnthropicRequest(anthropicToolRequest);
  if (!r.ok) assert.fail(r.message);
  const b = JSON.parse(adapterFor('openai').chatRequest(r.req, T('gpt-4o')).body);
  assert.deepEqual(b.messages.map((m: { role: string }) => m.role), ['system', 'user', 'assistant', 'tool', 'tool', 'user']);
  assert.equal(b.top_k, undefined, 'anthropic-only fields do not reach OpenAI');
  assert.equal(b.tool_choice, 'required');
});

test('parseAnthropicRequest names bad fields', () => {
  const cases: Array<[unknown, string]> = [
    [{ messages: [{ role: 'user', content: 'x' }] }, 'model'],
    [{ model: 'm', messages: [{ role: 'system', content: 'x' }] }, 'messages[0].role'],
    [{ model: 'm', messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'file' } }] }] }, 'messages[0].content[0].source'],
    [{ model: 'm', messages: [{ role: 'assistant', content: [{ type: 'tool_result', tool_use_id: 'x' }] }] }, 'messages[0].content[0]'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools[0].type'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], tools: [{ name: 't' }] }, 'tools[0].input_schema'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 'many' }, 'max_tokens'],
    [{ model: 'm', messages: [{ role: 'user', content: 'x' }], system: 5 }, 'system'],
  ];
  for (const [body, field] of cases) {
    const r = parseAnthropicRequest(body);
    assert.equal(r.ok ? '' : r.field, field, JSON.stringify(body));
  }
});

test('non-stream responses: openai, anthropic, gemini -> canonical -> both client formats', () => {
  const oa = adapterFor('openai').chatResponse({
    id: 'chatcmpl-1', object: 'chat.completion', created: 1700000000, model: 'gpt-4o',
    choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] }, finish_reason: 'tool_calls' }],
    usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, prompt_tokens_details: { cached_tokens: 4 } },
  });
  assert.deepEqual(oa.usage, { inputTokens: 10, outputTokens: 5, cachedTokens: 4 });
  assert.equal(oa.finishReason, 'tool_calls');
  const an = adapterFor('anthropic').chatResponse({
    id: 'msg_1', type: 'message', role: 'assistant', model: 'claude', stop_reason: 'tool_use',
    content: [{ type: 'text', text: 'Sure.' }, { type: 'tool_use', id: 'toolu_1', name: 'f', input: { a: 1 } }],
    usage: { input_tokens: 3, output_tokens: 7, cache_read_input_tokens: 100, cache_creation_input_tokens: 0 },
  });
  assert.equal(an.text, 'Sure.');
  assert.deepEqual(an.toolCalls, [{ id: 'toolu_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }]);
  assert.deepEqual(an.usage, { inputTokens: 103, outputTokens: 7, cachedTokens: 100 });
  const ge = adapterFor('gemini').chatResponse({
    candidates: [{ content: { role: 'model', parts: [{ text: 'thinking', thought: true }, { text: 'Hi' }, { functionCall: { name: 'f', args: { a: 1 } } }] }, finishReason: 'STOP' }],
    usageMetadata: { promptTokenCount: 8, candidatesTokenCount: 2, thoughtsTokenCount: 3, cachedContentTokenCount: 4 },
    modelVersion: 'gemini-2.5-flash', responseId: 'r1',
  });
  assert.equal(ge.text, 'Hi');
  assert.equal(ge.finishReason, 'tool_calls');
  assert.deepEqual(ge.usage, { inputTokens: 8, outputTokens: 5, cachedTokens: 4 });

  const o = codecFor('openai').encodeResult(an, 'route') as { model: string; choices: Array<{ message: { tool_calls: unknown[] }; finish_reason: string }>; usage: unknown };
  assert.equal(o.model, 'route');
  assert.equal(o.choices[0].finish_reason, 'tool_calls');
  assert.equal(o.choices[0].message.tool_calls.length, 1);
  assert.deepEqual(o.usage, { prompt_tokens: 103, completion_tokens: 7, total_tokens: 110, prompt_tokens_details: { cached_tokens: 100 } });
  const a = codecFor('anthropic').encodeResult(oa, 'route') as { content: unknown[]; stop_reason: string; usage: unknown; model: string };
  assert.equal(a.model, 'route');
  assert.equal(a.stop_reason, 'tool_use');
  assert.deepEqual(a.content, [{ type: 'tool_use', id: 'call_1', name: 'f', input: { a: 1 } }]);
  assert.deepEqual(a.usage, { input_tokens: 6, output_tokens: 5, cache_read_input_tokens: 4 });
});

test('garbage upstream bodies throw UpstreamShapeError with a readable message', () => {
  for (const type of ['openai', 'anthropic', 'gemini'] as const) {
    assert.throws(() => adapterFor(type).chatResponse('<html>502</html>'), UpstreamShapeError);
    assert.throws(() => adapterFor(type).chatResponse({}), UpstreamShapeError);
  }
});

test('error messages from each wire', () => {
  assert.deepEqual(adapterFor('openai').errorMessage(429, { error: { message: 'slow down', type: 'rate_limit_exceeded' } }), { message: 'slow down', type: 'rate_limit_exceeded' });
  assert.deepEqual(adapterFor('anthropic').errorMessage(529, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }), { message: 'Overloaded', type: 'overloaded_error' });
  assert.deepEqual(adapterFor('gemini').errorMessage(400, { error: { code: 400, message: 'bad', status: 'INVALID_ARGUMENT' } }), { message: 'bad', type: 'INVALID_ARGUMENT' });
  assert.deepEqual(adapterFor('openai').errorMessage(502, 'Bad Gateway'), { message: 'Bad Gateway', type: 'api_error' });
  assert.deepEqual(adapterFor('openai').errorMessage(500, undefined), { message: 'upstream returned HTTP 500', type: 'api_error' });
  assert.deepEqual(anthropicErrorBody('invalid_request_error', 'x'), { type: 'error', error: { type: 'invalid_request_error', message: 'x' } });
});

function run(type: 'openai' | 'anthropic' | 'gemini', records: Array<{ data: string; event?: string }>): StreamEvent[] {
  const p = adapterFor(type).streamParser();
  const out: StreamEvent[] = [];
  for (const r of records) out.push(...p.push(r.data, r.event));
  return out.concat(p.end());
}

test('openai stream parser: tool deltas without index, repeated ids, usage with finish, error chunk, garbage', () => {
  const ev = run('openai', [
    { data: '{"id":"c1","model":"m","choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}},{"id":"b","function":{"name":"g","arguments":""}}]}}]}' },
    { data: '{"id":"c1","choices":[{"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"[1]"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}' },
  ]);
  assert.deepEqual(ev.map((e) => e.type), ['start', 'tool_start', 'tool_args', 'tool_start', 'tool_args', 'usage', 'finish']);
  const err = run('openai', [{ data: '{"error":{"message":"overloaded","type":"server_error"}}' }]);
  assert.deepEqual(err[0], { type: 'error', message: 'overloaded', errorType: 'server_error' });
  assert.equal(run('openai', [{ data: 'not json' }])[0].type, 'error');
});

test('anthropic stream parser: error event and missing message_stop', () => {
  const ev = run('anthropic', [
    { event: 'message_start', data: '{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":5,"output_tokens":1}}}' },
    { event: 'error', data: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' },
  ]);
  assert.deepEqual(ev[1], { type: 'error', message: 'Overloaded', errorType: 'overloaded_error' });
  assert.equal(ev[ev.length - 1].type, 'error');
});

function encodeAll(wire: 'openai' | 'anthropic', events: StreamEvent[], includeUsage = true): string {
  const enc = codecFor(wire).streamEncoder({ includeUsage, model: 'r' });
  return events.map(enc).join('');
}

test('anthropic encoder: interleaved tool calls become sequential complete blocks', () => {
  const s = encodeAll('anthropic', [
    { type: 'start', id: 'x', model: 'm' },
    { type: 'text', text: 'ok' },
    { type: 'tool_start', index: 0, id: 'a', name: 'f' },
    { type: 'tool_start', index: 1, id: 'b', name: 'g' },
    { type: 'tool_args', index: 1, delta: '{"y"' },
    { type: 'tool_args', index: 0, delta: '{"x":1}' },
    { type: 'tool_args', index: 1, delta: ':2}' },
    { type: 'text', text: ' done' },
    { type: 'usage', usage: { inputTokens: 1, outputTokens: 2 } },
    { type: 'finish', reason: 'tool_calls' },
  ]);
  const datas = s.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as { type: string; index?: number });
  // Every block is started, fed and stopped before the next one starts.
  let open = -1;
  for (const d of datas) {
    if (d.type === 'content_block_start') { assert.equal(open, -1); open = d.index ?? -2; }
    if (d.type === 'content_block_delta') assert.equal(d.index, open);
    if (d.type === 'content_block_stop') { assert.equal(d.index, open); open = -1; }
  }
  assert.ok(s.includes('"partial_json":"{\\"y\\":2}"'), 'buffered args of the second tool are written whole');
  assert.ok(s.includes('"text":" done"'));
  assert.ok(s.endsWith('event: message_stop\ndata: {"type":"message_stop"}\n\n'));
});

test('encoders: error after commit ends the stream in the client format', () => {
  const o = encodeAll('openai', [{ type: 'start', id: 'x', model: 'm' }, { type: 'text', text: 'a' }, { type: 'error', message: 'cut', errorType: 'upstream_incomplete' }]);
  assert.ok(o.endsWith('data: {"error":{"message":"cut","type":"upstream_incomplete","code":"upstream_incomplete"}}\n\n'));
  const a = encodeAll('anthropic', [{ type: 'text', text: 'a' }, { type: 'error', message: 'cut', errorType: 'api_error' }]);
  assert.ok(a.startsWith('event: message_start'), 'message_start is synthesized when start is missing');
  assert.ok(a.endsWith('event: error\ndata: {"type":"error","error":{"type":"api_error","message":"cut"}}\n\n'));
});

test('gemini: tool results are matched to the function name by tool_call_id; signatures round-trip', () => {
  const p = adapterFor('gemini').streamParser();
  const ev = p.push('{"candidates":[{"content":{"parts":[{"functionCall":{"name":"lookup","args":{"q":"x"}},"thoughtSignature":"ab+/cd=="}]},"finishReason":"STOP"}]}');
  const start = ev.find((e) => e.type === 'tool_start');
  assert.ok(start !== undefined && start.type === 'tool_start');
  assert.match(start.id, /^[A-Za-z0-9_-]+$/, 'id stays valid for Anthropic clients');
  const req = okReq({ model: 'g', messages: [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: null, tool_calls: [{ id: start.id, type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }] },
    { role: 'tool', tool_call_id: start.id, content: '[1,2]' },
  ] });
  const b = JSON.parse(adapterFor('gemini').chatRequest(req, T('gemini-3-pro')).body);
  assert.equal(b.contents[1].parts[0].thoughtSignature, 'ab+/cd==');
  assert.deepEqual(b.contents[2].parts[0], { functionResponse: { name: 'lookup', response: { result: [1, 2] } } });
});

test('gemini embeddings via batchEmbedContents', () => {
  const a = adapterFor('gemini');
  const up = a.embeddingsRequest?.({ model: 'e', input: ['a', 'b'], dimensions: 8 }, T('text-embedding-004'));
  assert.equal(up?.path, '/models/text-embedding-004:batchEmbedContents');
  assert.equal(JSON.parse(up?.body ?? '{}').requests.length, 2);
  assert.deepEqual(a.embeddingsResponse?.({ embeddings: [{ values: [1, 2] }, { values: [3] }] }).data, [{ index: 0, embedding: [1, 2] }, { index: 1, embedding: [3] }]);
  assert.throws(() => a.embeddingsRequest?.({ model: 'e', input: [1, 2] }, T('x')), UpstreamShapeError);
});

test('vertex embeddings via :predict (one instance per text), token counts from statistics; errors name what is missing', () => {
  const a = adapterFor('vertex');
  const up = a.embeddingsRequest?.({ model: 'e', input: ['a', 'b'], dimensions: 8 }, T('text-embedding-005'));
  assert.equal(up?.path, '/models/text-embedding-005:predict');
  assert.deepEqual(JSON.parse(up?.body ?? '{}'), { instances: [{ content: 'a' }, { content: 'b' }], parameters: { outputDimensionality: 8 } });
  assert.deepEqual(JSON.parse(a.embeddingsRequest?.({ model: 'e', input: 'x' }, T('m')).body ?? '{}'), { instances: [{ content: 'x' }] });
  const r = a.embeddingsResponse?.({ predictions: [{ embeddings: { values: [1, 2], statistics: { token_count: 3 } } }, { embeddings: { values: [3], statistics: { token_count: 4 } } }] });
  assert.deepEqual(r?.data, [{ index: 0, embedding: [1, 2] }, { index: 1, embedding: [3] }]);
  assert.deepEqual(r?.usage, { inputTokens: 7, outputTokens: 0 });
  assert.throws(() => a.embeddingsResponse?.({ embeddings: [] }), /no predictions array/);
  assert.throws(() => a.embeddingsResponse?.({ predictions: [{ embeddings: {} }] }), /prediction 0 has no embeddings.values/);
  assert.throws(() => a.embeddingsRequest?.({ model: 'e', input: [1, 2] }, T('x')), UpstreamShapeError);
});

test('embeddings in the encoding the client asked for: base64 is little-endian float32 (what the OpenAI SDK decodes)', () => {
  const floats = [0.25, -0.5, 1, 3.5];
  const b64 = embeddingAs(floats, 'base64') as string;
  const bytes = Buffer.from(b64, 'base64');
  assert.equal(bytes.length, 16);
  assert.deepEqual([0, 4, 8, 12].map((o) => bytes.readFloatLE(o)), floats);
  assert.deepEqual(embeddingAs(b64, 'float'), floats);
  assert.deepEqual(embeddingAs(b64, undefined), floats, 'OpenAI\'s default is float');
  assert.equal(embeddingAs(b64, 'base64'), b64);
  assert.equal(embeddingAs(floats, 'float'), floats);
});

test('architecture: providers import only each other, node:crypto and the pure lib helpers time-hex and json (no I/O, no policy)', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const dir = new URL('../src/providers/', import.meta.url);
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
    const src = readFileSync(new URL(f, dir), 'utf8');
    for (const m of src.matchAll(/^(?:import|export)[^'"]*from\s+'([^']+)'/gm)) {
      assert.ok(m[1].startsWith('./') || m[1] === 'node:crypto' || m[1] === '../lib/time-hex.ts' || m[1] === '../lib/json.ts', `${f} imports ${m[1]}`);
    }
    assert.ok(!/\bany\b(?=[;,)>\]])/.test(src.replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '')), `${f} uses any`);
  }
});

test('local ids: the prefix, 12 hex digits of the time in ms, 20 random hex digits; distinct, and later ids sort after earlier ones (a store keyed by them appends)', async () => {
  const { localId } = await import('../src/providers/util.ts');
  const before = Date.now();
  // More ids than one draw of random bytes holds (256): the draws that follow give new bytes.
  const ids = Array.from({ length: 600 }, () => localId('resp_'));
  assert.equal(new Set(ids).size, 600);
  for (const id of ids) assert.match(id, /^resp_[0-9a-f]{32}$/);
  const t = parseInt(ids[0].slice(5, 17), 16);
  assert.ok(t >= before && t <= Date.now(), `time prefix ${t}`);
  const randoms = new Set(ids.map((id) => id.slice(17)));
  assert.equal(randoms.size, 600, 'the random part differs even within one ms');
  await new Promise((r) => setTimeout(r, 5));
  const later = localId('resp_');
  assert.ok(ids.every((id) => id < later), 'an id made later sorts after');
});
