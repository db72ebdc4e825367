// Responses API translation, as data: a /v1/responses body -> the canonical chat request -> every
// upstream wire (golden files under test/golden/responses), and canonical stream events (the
// provider stream goldens) -> the Responses SSE event sequence. UPDATE_GOLDEN=1 rewrites them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { adapterFor, SseParser } from '../src/providers/index.ts';
import type { AdapterType } from '../src/providers/index.ts';
import { itemsToMessages, parseResponsesRequest } from '../src/providers/responses-parse.ts';
import { finished, outputItems, responseJson, responsesCodec, type FinishedResponse, type ResponseMeta } from '../src/providers/responses-codec.ts';
import { responsesUpstreamAdapter } from '../src/providers/responses-upstream.ts';
import type { ChatResult, StreamEvent } from '../src/providers/types.ts';
import { golden, GOLDEN_DIR, UPDATE_GOLDEN } from './helpers/golden.ts';

const DIR = GOLDEN_DIR;

const TARGETS: Record<string, { type: AdapterType; model: string; options: Record<string, string> }> = {
  openai: { type: 'openai', model: 'gpt-4o', options: {} },
  anthropic: { type: 'anthropic', model: 'claude-sonnet-4-5', options: {} },
  gemini: { type: 'gemini', model: 'gemini-2.5-flash', options: {} },
};

const meta = (over: Partial<ResponseMeta> = {}): ResponseMeta => ({
  id: 'resp_0123456789abcdef01234567', createdAt: 1764081600, instructions: null, previousResponseId: null, store: true, echo: {}, now: () => 1764081601, ...over,
});

const reqDir = join(DIR, 'responses');
const cases = readdirSync(reqDir).filter((f) => /^[^.]+\.json$/.test(f)).map((f) => f.slice(0, -5));

for (const c of cases) {
  test(`responses request golden: ${c}`, () => {
    const parsed = parseResponsesRequest(JSON.parse(readFileSync(join(reqDir, `${c}.json`), 'utf8')));
    assert.ok(parsed.ok, parsed.ok ? '' : `${parsed.field}: ${parsed.message}`);
    const p = parsed.req;
    const chat = { ...p.chat, messages: itemsToMessages(p.instructions, p.input) };
    golden(join(reqDir, `${c}.chat.json`), JSON.stringify({ chat, store: p.store, previousResponseId: p.previousResponseId, echo: p.echo }, null, 2) + '\n');
    for (const [name, t] of Object.entries(TARGETS)) {
      const up = adapterFor(t.type).chatRequest(chat, { model: t.model, options: t.options, stream: chat.stream === true });
      golden(join(reqDir, `${c}.${name}.json`), JSON.stringify({ path: up.path, body: JSON.parse(up.body) as unknown }, null, 2) + '\n');
    }
    // OpenAI providers are called on their own Responses API: the whole conversation, store: false.
    const native = responsesUpstreamAdapter.chatRequest(chat, { model: 'gpt-5', options: {}, stream: chat.stream === true });
    const body = JSON.parse(native.body) as { store: boolean; previous_response_id?: string };
    assert.equal(body.store, false, 'OpenAI keeps no state: aam does');
    assert.equal(body.previous_response_id, undefined);
    golden(join(reqDir, `${c}.openai-responses.json`), JSON.stringify({ path: native.path, body }, null, 2) + '\n');
  });
}

test('parseResponsesRequest names the bad field, in the OpenAI error sense', () => {
  const cases: Array<[unknown, string]> = [
    [null, 'body'],
    [{ input: 'hi' }, 'model'],
    [{ model: 'm' }, 'input'],
    [{ model: 'm', input: 5 }, 'input'],
    [{ model: 'm', input: [{ role: 'wizard', content: 'x' }] }, 'input[0].role'],
    [{ model: 'm', input: [{ role: 'user', content: [{ type: 'output_text', text: 'x' }] }] }, 'input[0].content[0].type'],
    [{ model: 'm', input: [{ role: 'user', content: [{ type: 'input_text' }] }] }, 'input[0].content[0].text'],
    [{ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', file_id: 'file-1' }] }] }, 'input[0].content[0].image_url'],
    [{ model: 'm', input: [{ type: 'function_call', call_id: 'c', name: 'f', arguments: {} }] }, 'input[0].arguments'],
    [{ model: 'm', input: [{ type: 'function_call_output', output: 'x' }] }, 'input[0].call_id'],
    [{ model: 'm', input: [{ type: 'item_reference' }] }, 'input[0].id'],
    [{ model: 'm', input: [{ type: 'web_search_call', id: 'ws' }] }, 'input[0].type'],
    [{ model: 'm', input: 'x', tools: [{ type: 'web_search' }] }, 'tools[0].type'],
    [{ model: 'm', input: 'x', tools: [{ type: 'function' }] }, 'tools[0].name'],
    [{ model: 'm', input: 'x', tool_choice: { type: 'file_search' } }, 'tool_choice'],
    [{ model: 'm', input: 'x', temperature: '1' }, 'temperature'],
    [{ model: 'm', input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
    [{ model: 'm', input: 'x', stream: 'yes' }, 'stream'],
    [{ model: 'm', input: 'x', store: 1 }, 'store'],
    [{ model: 'm', input: 'x', background: true }, 'background'],
    [{ model: 'm', input: 'x', conversation: 'conv_1' }, 'conversation'],
    [{ model: 'm', input: 'x', previous_response_id: 7 }, 'previous_response_id'],
    [{ model: 'm', input: 'x', text: { format: { type: 'yaml' } } }, 'text.format.type'],
    [{ model: 'm', input: 'x', metadata: { n: 1 } }, 'metadata'],
  ];
  for (const [body, field] of cases) {
    const r = parseResponsesRequest(body);
    assert.equal(r.ok, false, JSON.stringify(body));
    if (!r.ok) {
      assert.equal(r.field, field, JSON.stringify(body));
      assert.ok(r.message.length > 10, r.message);
    }
  }
  // previous_response_id alone is a valid request (the stored conversation is the input).
  const ok = parseResponsesRequest({ model: 'm', previous_response_id: 'resp_1' });
  assert.ok(ok.ok && ok.req.input.length === 0 && ok.req.previousResponseId === 'resp_1');
  const noStore = parseResponsesRequest({ model: 'm', input: 'x', store: false });
  assert.ok(noStore.ok && noStore.req.store === false);
});

test('itemsToMessages: an assistant message and the calls after it are one turn; outputs become tool messages', () => {
  const msgs = itemsToMessages(null, [
    { type: 'message', role: 'user', content: 'q' },
    { type: 'function_call', call_id: 'a', name: 'f', arguments: '{}' },
    { type: 'function_call', call_id: 'b', name: 'g', arguments: '{"x":1}' },
    { type: 'function_call_output', call_id: 'a', output: 'A' },
    { type: 'function_call_output', call_id: 'b', output: 'B' },
    { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'done' }] },
  ]);
  assert.deepEqual(msgs, [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: null, tool_calls: [
      { id: 'a', type: 'function', function: { name: 'f', arguments: '{}' } },
      { id: 'b', type: 'function', function: { name: 'g', arguments: '{"x":1}' } }] },
    { role: 'tool', tool_call_id: 'a', content: 'A' },
    { role: 'tool', tool_call_id: 'b', content: 'B' },
    { role: 'assistant', content: 'done' },
  ]);
});

test('non-streamed result -> Response object: message then function_call items, usage, incomplete on length', () => {
  const r: ChatResult = {
    id: 'chatcmpl-1', model: 'gpt-4o', created: 1, text: 'Let me check.', finishReason: 'tool_calls',
    toolCalls: [{ id: 'call_w', type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }],
    usage: { inputTokens: 42, outputTokens: 17, cachedTokens: 2 },
  };
  let stored: FinishedResponse | undefined;
  const text = responsesCodec(meta({ instructions: 'Be brief.', echo: { tools: [{ type: 'function', name: 'get_weather' }], temperature: 0.5 } }), (x) => { stored = x; }).encodeResultText(r, 'my-route');
  assert.equal(stored?.json, text, 'the stored Response is the answered one, the same text');
  assert.deepEqual(stored?.outputIds, ['msg_0123456789abcdef01234567_0', 'fc_0123456789abcdef01234567_1']);
  const body = JSON.parse(text) as Record<string, unknown>;
  assert.equal(body.object, 'response');
  assert.equal(body.status, 'completed');
  assert.equal(body.model, 'my-route');
  assert.equal(body.instructions, 'Be brief.');
  assert.equal(body.temperature, 0.5);
  assert.deepEqual(body.output, [
    { id: 'msg_0123456789abcdef01234567_0', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [], text: 'Let me check.' }] },
    { id: 'fc_0123456789abcdef01234567_1', type: 'function_call', status: 'completed', arguments: '{"location":"Paris"}', call_id: 'call_w', name: 'get_weather' },
  ]);
  assert.deepEqual(body.usage, { input_tokens: 42, input_tokens_details: { cached_tokens: 2 }, output_tokens: 17, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 59 });
  assert.deepEqual(Object.keys(body), ['id', 'object', 'created_at', 'status', 'background', 'error', 'incomplete_details', 'instructions',
    'max_output_tokens', 'model', 'output', 'parallel_tool_calls', 'previous_response_id', 'reasoning', 'store', 'temperature', 'text',
    'tool_choice', 'tools', 'top_p', 'truncation', 'usage', 'user', 'metadata', 'completed_at'], 'the Response\'s fields in OpenAI\'s order');
  assert.equal(body.completed_at, 1764081601);
  assert.deepEqual(body.reasoning, { effort: null, summary: null });
  const cut = responsesCodec(meta()).encodeResult({ ...r, toolCalls: [], finishReason: 'length' }, 'x') as Record<string, unknown>;
  assert.equal(cut.status, 'incomplete');
  assert.deepEqual(cut.incomplete_details, { reason: 'max_output_tokens' });
});

test('the Response is written as a template: the same text, byte for byte, as JSON.stringify of its object', () => {
  const echoes: Record<string, unknown>[] = [
    {},
    { max_output_tokens: 64, temperature: 0.2 },
    { parallel_tool_calls: false, temperature: 0, top_p: 0.5e-7, max_output_tokens: 1, user: 'u"ser\u2028\n', metadata: { a: 'b', 'k"\\': '\ud83d\ude00' },
      reasoning: { effort: 'high' }, text: { format: { type: 'json_schema', name: 'x', schema: { type: 'object', properties: {} } } },
      tool_choice: { type: 'function', name: 'f' }, tools: [{ type: 'function', name: 'f', parameters: { type: 'object' } }] },
    { tool_choice: 'required', tools: [], metadata: {}, reasoning: { effort: null, summary: 'auto' }, text: { format: { type: 'text' } } },
  ];
  const metas: ResponseMeta[] = [];
  for (const echo of echoes) {
    metas.push(meta({ echo }));
    metas.push(meta({ echo, instructions: 'Be "brief".\n\u0000\u001f</script>', previousResponseId: 'resp_prev"\\', store: false, createdAt: 1e21, now: () => Number.NaN }));
    metas.push(meta({ echo, id: 'weird "id"\n', instructions: '', now: undefined }));
  }
  const call = (i: number, args: string) => ({ id: `call_${i}"`, type: 'function' as const, function: { name: `fn${i}\t`, arguments: args } });
  const results: ChatResult[] = [
    { id: 'c', model: 'm', created: 1, text: 'Hello! "quoted" \\ \n\u2028 \ud83d\ude00 lone \ud800', finishReason: 'stop', toolCalls: [], usage: { inputTokens: 20, outputTokens: 7 } },
    { id: 'c', model: 'm', created: 1, text: null, finishReason: 'tool_calls', toolCalls: [call(0, '{"a":1}'), call(1, '')], usage: { inputTokens: 1, outputTokens: 2, cachedTokens: 1 } },
    { id: 'c', model: 'm', created: 1, text: 'Let me check.', finishReason: 'tool_calls', toolCalls: [call(0, '{"x":"\\u0000"}')] },
    { id: 'c', model: 'm', created: 1, text: '', finishReason: 'length', toolCalls: [], usage: { inputTokens: 0, outputTokens: 0, cachedTokens: 0 } },
    { id: 'c', model: 'm', created: 1, text: 'cut', finishReason: 'content_filter', toolCalls: [], usage: { inputTokens: Number.NaN, outputTokens: 3 } },
  ];
  let n = 0;
  for (const m of metas) {
    for (const model of ['gpt-4o-mini', 'route "x"\u007f']) {
      // The opening Response of a stream (response.created / response.in_progress).
      const opening: string[] = [];
      const enc = responsesCodec(m).streamEncoder({ includeUsage: true, model: model });
      for (const line of enc({ type: 'start', id: 'x', model }).split('\n')) if (line.startsWith('data: ')) opening.push(line.slice(6));
      for (const d of opening) assert.equal(JSON.stringify((JSON.parse(d) as { response: unknown }).response), JSON.stringify(responseJson(m, model, 'in_progress')));
      assert.equal(opening.length, 2);
      for (const r of results) {
        let stored: FinishedResponse | undefined;
        const text = responsesCodec(m, (x) => { stored = x; }).encodeResultText(r, model);
        const completedAt = m.now ? m.now() : (JSON.parse(text) as { completed_at: number }).completed_at;
        const expected = JSON.stringify(finished(m, model, outputItems(m, r), r.finishReason, r.usage, completedAt));
        assert.equal(text, expected, `whole answer ${n}`);
        assert.deepEqual(stored?.outputIds, outputItems(m, r).map((it) => it.id));
        // The same answer streamed: its final Response (response.completed / .incomplete, and what is stored).
        let streamed: FinishedResponse | undefined;
        const codec = responsesCodec(m, (x) => { streamed = x; });
        const se = codec.streamEncoder({ includeUsage: true, model: model });
        se({ type: 'start', id: 'x', model });
        if (r.text) se({ type: 'text', text: r.text });
        r.toolCalls.forEach((tc, i) => { se({ type: 'tool_start', index: i, id: tc.id, name: tc.function.name }); se({ type: 'tool_args', index: i, delta: tc.function.arguments }); });
        if (r.usage) se({ type: 'usage', usage: r.usage });
        se({ type: 'finish', reason: r.finishReason });
        const sAt = m.now ? m.now() : (JSON.parse(streamed!.json) as { completed_at: number }).completed_at;
        assert.equal(streamed?.json, JSON.stringify(finished(m, model, outputItems(m, r), r.finishReason, r.usage, sAt)), `streamed answer ${n}`);
        assert.deepEqual(streamed?.outputIds, outputItems(m, r).map((it) => it.id));
        assert.ok(codec.streamDone.includes(`"response":${streamed!.json}}`));
        n++;
      }
    }
  }
  assert.equal(n, metas.length * 2 * results.length);
});

// ---- streams ----

interface Ev { event: string; data: Record<string, unknown> }

function readSse(s: string): Ev[] {
  const sse = new SseParser();
  return [...sse.push(s), ...sse.end()].map((r) => ({ event: r.event ?? '', data: JSON.parse(r.data) as Record<string, unknown> }));
}

/** What a Responses client assembles from the events, checked against the event-sequence rules on the way. */
function assembleResponses(events: Ev[]): { text: string; calls: Array<{ call_id: string; name: string; arguments: string }>; completed: Record<string, unknown> } {
  assert.deepEqual(events.slice(0, 2).map((e) => e.event), ['response.created', 'response.in_progress']);
  const open = new Map<string, string>();
  let added = 0;
  let text = '';
  const args = new Map<string, string>();
  events.forEach((e, i) => {
    assert.equal(e.data.type, e.event, 'type names the event');
    assert.equal(e.data.sequence_number, i, 'sequence numbers count from 0 without gaps');
    if (e.event === 'response.output_item.added') {
      // As OpenAI streams them: one item at a time, each done before the next is added, output_index counting up.
      assert.equal(open.size, 0, `output_item.added (output_index ${String(e.data.output_index)}) while another item is open`);
      assert.equal(e.data.output_index, added++, 'output_index counts up from 0');
      open.set((e.data.item as { id: string }).id, (e.data.item as { type: string }).type);
    }
    if (e.event === 'response.output_text.delta') { assert.ok(open.has(e.data.item_id as string)); text += e.data.delta as string; }
    if (e.event === 'response.function_call_arguments.delta') args.set(e.data.item_id as string, (args.get(e.data.item_id as string) ?? '') + (e.data.delta as string));
    if (e.event === 'response.function_call_arguments.done') assert.equal(e.data.arguments, args.get(e.data.item_id as string) ?? '');
    if (e.event === 'response.output_item.done') { assert.ok(open.delete((e.data.item as { id: string }).id), 'done follows added'); }
  });
  assert.equal(open.size, 0, 'every item added is done');
  const last = events[events.length - 1];
  assert.match(last.event, /^response\.(completed|incomplete)$/);
  const completed = last.data.response as Record<string, unknown>;
  const output = completed.output as Array<Record<string, unknown>>;
  const finalText = output.filter((o) => o.type === 'message').map((o) => (o.content as Array<{ text: string }>)[0].text).join('');
  assert.equal(finalText, text, 'completed output holds the streamed text');
  const calls = output.filter((o) => o.type === 'function_call').map((o) => ({ call_id: o.call_id as string, name: o.name as string, arguments: o.arguments as string }));
  return { text, calls, completed };
}

/** What a client assembles from canonical events (text, calls, usage, finish), independent of chunking. */
function canonicalView(events: StreamEvent[]): unknown {
  let text = '';
  const calls: Array<{ id: string; name: string; args: string }> = [];
  let usage: unknown;
  let finish: string | undefined;
  for (const ev of events) {
    if (ev.type === 'text') text += ev.text;
    else if (ev.type === 'tool_start') calls.push({ id: ev.id, name: ev.name, args: '' });
    else if (ev.type === 'tool_args') calls[ev.index].args += ev.delta;
    else if (ev.type === 'usage') usage = { input: ev.usage.inputTokens, output: ev.usage.outputTokens };
    else if (ev.type === 'finish') finish = ev.reason;
    else if (ev.type === 'error') assert.fail(ev.message);
  }
  return { text, calls, usage, finish };
}

const streamDir = join(DIR, 'streams');
const eventFiles = readdirSync(streamDir).filter((f) => f.endsWith('.events.json')).map((f) => f.slice(0, -'.events.json'.length));

for (const name of eventFiles) {
  test(`responses stream golden: ${name} -> Responses events`, () => {
    const events = JSON.parse(readFileSync(join(streamDir, `${name}.events.json`), 'utf8')) as StreamEvent[];
    let stored: Record<string, unknown> | undefined;
    let storedIds: readonly string[] = [];
    const codec = responsesCodec(meta(), (r) => { stored = JSON.parse(r.json) as Record<string, unknown>; storedIds = r.outputIds; });
    const enc = codec.streamEncoder({ includeUsage: true, model: 'my-route' });
    let out = '';
    for (const ev of events) out += enc(ev);
    assert.ok(!out.includes('response.completed'), 'the terminator waits for streamDone (written once the answer is stored)');
    out += codec.streamDone;
    // A provider transcript added later is checked by the rules below; its golden is written with UPDATE_GOLDEN=1.
    const file = join(streamDir, `${name}.to-responses.sse`);
    if (UPDATE_GOLDEN || existsSync(file)) golden(file, out);
    const got = assembleResponses(readSse(out));
    let text = '';
    const tools: Array<{ call_id: string; name: string; arguments: string }> = [];
    for (const ev of events) {
      if (ev.type === 'text') text += ev.text;
      if (ev.type === 'tool_start') tools[ev.index] = { call_id: ev.id, name: ev.name, arguments: '' };
      if (ev.type === 'tool_args') tools[ev.index].arguments += ev.delta;
    }
    assert.equal(got.text, text);
    assert.deepEqual(got.calls, tools.filter(Boolean));
    assert.deepEqual(stored, got.completed, 'the stored Response is the completed one');
    assert.deepEqual(storedIds, (got.completed.output as Array<{ id: string }>).map((o) => o.id), 'the stored item ids are the output\'s');
    const usage = events.find((e) => e.type === 'usage');
    if (usage?.type === 'usage') assert.equal((got.completed.usage as { total_tokens: number }).total_tokens, usage.usage.inputTokens + usage.usage.outputTokens);
    // Read back by the Responses upstream parser (OpenAI's Responses API as an upstream): the same answer.
    const parser = responsesUpstreamAdapter.streamParser();
    const sse = new SseParser();
    const back: StreamEvent[] = [];
    for (const r of [...sse.push(out), ...sse.end()]) back.push(...parser.push(r.data, r.event));
    back.push(...parser.end());
    assert.deepEqual(canonicalView(back), canonicalView(events));
    assert.deepEqual(responsesUpstreamAdapter.chatResponse(got.completed).toolCalls.map((t) => t.function.arguments), tools.filter(Boolean).map((t) => t.arguments));
  });
}

test('responses stream: opening events prepared while the upstream works are the same bytes; an error before them starts at 0', () => {
  const named = JSON.parse(readFileSync(join(streamDir, `${eventFiles[0]}.events.json`), 'utf8')) as StreamEvent[];
  // An upstream that names no model (Bedrock): the stream carries the encoder's.
  const events = named.map((e) => (e.type === 'start' ? { ...e, model: '' } : e));
  const run = (prepare: boolean, model = 'my-route'): string => {
    const codec = responsesCodec(meta());
    if (prepare) codec.prepareStream?.('my-route');
    const enc = codec.streamEncoder({ includeUsage: true, model: model });
    return events.map((e) => enc(e)).join('') + codec.streamDone;
  };
  assert.equal(run(true), run(false));
  // Prepared for another name than the stream's (never in chat.ts): built again, numbered from 0.
  assert.equal(run(true, 'other'), run(false, 'other'));
  assert.ok(run(false, 'other').includes('"model":"other"'));
  // A start event naming the model wins over the name prepared for (built again, numbered from 0).
  const codec = responsesCodec(meta());
  codec.prepareStream?.('my-route');
  const enc0 = codec.streamEncoder({ includeUsage: true, model: 'my-route' });
  const byName = readSse(named.map((e) => enc0(e)).join(''));
  const upstreamModel = (named[0] as { model: string }).model;
  assert.ok(upstreamModel !== '' && byName[0].data.sequence_number === 0);
  assert.equal((byName[0].data.response as { model: string }).model, upstreamModel);
  // The upstream failed after the opening events were prepared: the error event is the first one sent.
  const failed = responsesCodec(meta());
  failed.prepareStream?.('my-route');
  const evs = readSse(failed.streamError('all targets failed', 'api_error'));
  assert.deepEqual(evs.map((e) => [e.event, e.data.sequence_number]), [['error', 0]]);
  const failedLater = responsesCodec(meta());
  failedLater.prepareStream?.('my-route');
  const enc = failedLater.streamEncoder({ includeUsage: true, model: 'my-route' });
  const first = enc({ type: 'error', message: 'upstream broke', errorType: 'api_error' });
  assert.deepEqual(readSse(first).map((e) => [e.event, e.data.sequence_number]), [['error', 0]]);
});

test('responses stream: an empty answer is one empty message; an error is an error event carrying both shapes', () => {
  const codec = responsesCodec(meta());
  const enc = codec.streamEncoder({ includeUsage: true, model: 'r' });
  const out = [{ type: 'start', id: 'x', model: 'm' }, { type: 'finish', reason: 'stop' }].map((e) => enc(e as StreamEvent)).join('') + codec.streamDone;
  const got = assembleResponses(readSse(out));
  assert.equal(got.text, '');
  assert.equal((got.completed.output as unknown[]).length, 1);
  const c2 = responsesCodec(meta());
  const enc2 = c2.streamEncoder({ includeUsage: true, model: 'r' });
  const text = enc2({ type: 'text', text: 'partial' }) + c2.streamError('upstream broke', 'api_error');
  const evs = readSse(text);
  const err = evs[evs.length - 1];
  assert.equal(err.event, 'error');
  assert.equal(err.data.message, 'upstream broke');
  assert.deepEqual(err.data.error, { type: 'api_error', code: 'api_error', message: 'upstream broke', param: null });
  assert.equal(err.data.sequence_number, evs.length - 1);
});
