// Reasoning through /v1/responses: an OpenAI target's reasoning items (include
// reasoning.encrypted_content) and a Claude target's thinking blocks reach the agent as Responses
// reasoning items whose summary text is model output like any other: the credential scrubber and
// the output guardrails read it (streamed and whole), the input guardrails read it when it comes
// back, and encrypted_content (OpenAI's, or the signature aam carries for Anthropic) stays opaque.
// Real OpenAI SDK against fake upstreams that answer what the test names in its prompt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';

const SECRET = 'sk-proj-Rz7QkV2mXb9LwT4nYc6PdF8sHj3GtA5uEq1';
const SSN = '078-05-1120';

let up: LocalServer;
let gw: TestGateway;
let key: string;
const seen: Array<{ url: string; body: Record<string, unknown> }> = [];

const ev = (o: Record<string, unknown>) => `event: ${String(o.type)}\ndata: ${JSON.stringify(o)}\n\n`;

/** The summary an OpenAI upstream reasons with, by the prompt: the credential it got (split in two deltas), or an SSN. */
function summaryPieces(prompt: string, credential: string): string[] {
  if (prompt.includes('ECHO-KEY')) {
    const cut = credential.length >> 1;
    return [`the key is ${credential.slice(0, cut)}`, `${credential.slice(cut)} (end)`];
  }
  if (prompt.includes('SSN')) return ['the number is 078-05-', '1120 (end)'];
  return ['nothing to hide'];
}

/** OpenAI's Responses API with include reasoning.encrypted_content: one reasoning item (its summary streamed in deltas), then "ok". */
function openaiResponses(body: Record<string, unknown>, credential: string): { sse?: string; json?: string } {
  const input = body.input as Array<{ role?: string; content?: unknown }>;
  const prompt = JSON.stringify(input.filter((i) => i.role === 'user').at(-1)?.content ?? '');
  const pieces = summaryPieces(prompt, credential);
  // RAW-COT: the pieces are the item's raw reasoning (a reasoning_text part of its content, as gpt-oss answers), with no summary.
  const raw = prompt.includes('RAW-COT');
  const done = raw
    ? { id: 'rs_up', type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text: pieces.join('') }], encrypted_content: 'gAAAAABoEncryptedByOpenAI==' }
    : { id: 'rs_up', type: 'reasoning', summary: [{ type: 'summary_text', text: pieces.join('') }], encrypted_content: 'gAAAAABoEncryptedByOpenAI==' };
  const message = { id: 'msg_up', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', annotations: [], logprobs: [], text: 'ok' }] };
  const usage = { input_tokens: 3, output_tokens: 2, total_tokens: 5 };
  const r = { id: 'resp_up', object: 'response', created_at: 1, status: 'in_progress', model: 'o', output: [] };
  if (body.stream !== true) return { json: JSON.stringify({ ...r, status: 'completed', output: [done, message], usage }) };
  const at = { item_id: 'rs_up', output_index: 0, summary_index: 0 };
  // DONE-ONLY: an upstream that streams no summary events, only the finished item.
  const rawAt = { item_id: 'rs_up', output_index: 0, content_index: 0 };
  const summaryEvents = prompt.includes('DONE-ONLY') ? ''
    : raw ? ev({ type: 'response.content_part.added', ...rawAt, part: { type: 'reasoning_text', text: '' } })
      + pieces.map((delta) => ev({ type: 'response.reasoning_text.delta', ...rawAt, delta })).join('')
      + ev({ type: 'response.reasoning_text.done', ...rawAt, text: pieces.join('') })
      + ev({ type: 'response.content_part.done', ...rawAt, part: { type: 'reasoning_text', text: pieces.join('') } })
    : ev({ type: 'response.reasoning_summary_part.added', ...at, part: { type: 'summary_text', text: '' } })
      + pieces.map((delta) => ev({ type: 'response.reasoning_summary_text.delta', ...at, delta })).join('')
      + ev({ type: 'response.reasoning_summary_text.done', ...at, text: pieces.join('') })
      + ev({ type: 'response.reasoning_summary_part.done', ...at, part: { type: 'summary_text', text: pieces.join('') } });
  return {
    sse: ev({ type: 'response.created', response: r })
      + ev({ type: 'response.output_item.added', output_index: 0, item: { id: 'rs_up', type: 'reasoning', summary: [] } })
      + summaryEvents
      + ev({ type: 'response.output_item.done', output_index: 0, item: done })
      + ev({ type: 'response.output_item.added', output_index: 1, item: { ...message, status: 'in_progress', content: [] } })
      + ev({ type: 'response.output_text.delta', item_id: 'msg_up', output_index: 1, content_index: 0, delta: 'ok', logprobs: [] })
      + ev({ type: 'response.output_item.done', output_index: 1, item: message })
      + ev({ type: 'response.completed', response: { ...r, status: 'completed', output: [done, message], usage } }),
  };
}

before(async () => {
  up = await localServer((req, res, raw) => {
    const body = JSON.parse(raw) as Record<string, unknown>;
    seen.push({ url: req.url!, body });
    const credential = String(req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (/generatecontent/i.test(req.url!)) {
      // Gemini: thought summaries only when asked (includeThoughts), as Gemini answers them (thought: true parts before the text).
      const asked = (body.generationConfig as { thinkingConfig?: { includeThoughts?: boolean } } | undefined)?.thinkingConfig?.includeThoughts === true;
      const thoughts = asked ? [{ text: 'the number is 078-05-', thought: true }, { text: '1120 (end)', thought: true }] : [];
      const chunk = (parts: unknown[], finish?: string) => ({ candidates: [{ content: { role: 'model', parts }, ...(finish ? { finishReason: finish } : {}), index: 0 }], usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1, thoughtsTokenCount: 4, totalTokenCount: 8 }, modelVersion: 'gemini-2.5-flash', responseId: 'g1' });
      if (req.url!.includes('streamGenerateContent')) {
        res.writeHead(200, { 'content-type': 'text/event-stream' }).end([...thoughts.map((t) => chunk([t])), chunk([{ text: 'ok' }], 'STOP')].map((c) => `data: ${JSON.stringify(c)}\n\n`).join(''));
      } else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(chunk([...thoughts, { text: 'ok' }], 'STOP')));
      return;
    }
    if (req.url!.endsWith('/responses')) {
      const a = openaiResponses(body, credential);
      res.writeHead(200, { 'content-type': a.sse ? 'text/event-stream' : 'application/json' }).end(a.sse ?? a.json);
      return;
    }
    res.writeHead(404).end();
  });
  const free = { pricing: { free: true } };
  gw = await startTestGateway(yaml(
    doc('Credential', 'oai-key', { env: 'AAM_TEST_REASONING_KEY' }),
    doc('Provider', 'real-oai', { type: 'openai', baseUrl: `${up.url}/v1`, credential: 'oai-key' }),
    doc('Guardrail', 'no-ssn', { on: ['output'], regex: ['\\d{3}-\\d{2}-\\d{4}'], action: 'block' }),
    doc('Guardrail', 'mask-ssn', { on: ['output'], detect: ['ssn'], action: 'redact' }),
    doc('Guardrail', 'no-ssn-in', { on: ['input'], regex: ['\\d{3}-\\d{2}-\\d{4}'], action: 'block' }),
    doc('Provider', 'gem', { type: 'gemini', baseUrl: `${up.url}/v1beta`, credential: 'oai-key' }),
    doc('Model', 'g', { targets: [{ provider: 'gem', model: 'gemini-2.5-flash' }], ...free }),
    doc('Model', 'g-mask', { targets: [{ provider: 'gem', model: 'gemini-2.5-flash' }], guardrails: ['mask-ssn'], ...free }),
    doc('Model', 'o', { targets: [{ provider: 'real-oai', model: 'o' }], ...free }),
    doc('Model', 'o-deny', { targets: [{ provider: 'real-oai', model: 'o' }], guardrails: ['no-ssn'], ...free }),
    doc('Model', 'o-mask', { targets: [{ provider: 'real-oai', model: 'o' }], guardrails: ['mask-ssn'], ...free }),
    doc('Model', 'o-in', { targets: [{ provider: 'real-oai', model: 'o' }], guardrails: ['no-ssn-in'], ...free }),
    ...agentDocs(['o', 'o-deny', 'o-mask', 'o-in', 'g', 'g-mask']),
  ), { AAM_TEST_REASONING_KEY: SECRET });
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await up?.close(); });

const openai = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });
const INCLUDE = ['reasoning.encrypted_content' as const];

/** Every SSE event of a raw streamed /v1/responses call, and the bytes as sent. */
async function rawStream(body: Record<string, unknown>): Promise<{ text: string; events: Array<Record<string, unknown>> }> {
  const r = await fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  const text = await r.text();
  const events = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => JSON.parse(l.slice(6)) as Record<string, unknown>);
  return { text, events };
}

const summaryDeltas = (events: Array<Record<string, unknown>>) => events.filter((e) => e.type === 'response.reasoning_summary_text.delta').map((e) => String(e.delta)).join('');

test('a credential split across two reasoning summary deltas is redacted in the stream (deltas, done events, the completed Response)', async () => {
  const { text, events } = await rawStream({ model: 'o', input: 'ECHO-KEY', store: false, include: INCLUDE });
  assert.ok(!text.includes(SECRET.slice(0, 12)) && !text.includes(SECRET.slice(-12)), 'no piece of the key on the wire');
  const joined = summaryDeltas(events);
  assert.ok(!joined.includes(SECRET), `the deltas joined hold no key: ${joined}`);
  assert.match(joined, /^the key is \[REDACTED:oai-key\] \(end\)$/);
  const done = events.find((e) => e.type === 'response.output_item.done' && (e.item as { type: string }).type === 'reasoning')!.item as { summary: Array<{ text: string }>; encrypted_content: string; id: string };
  assert.equal(done.summary[0].text, joined, 'the finished item says what the deltas said');
  assert.equal(done.encrypted_content, 'gAAAAABoEncryptedByOpenAI==', 'encrypted_content as OpenAI sent it');
  assert.equal(done.id, 'rs_up');
  const completed = events.find((e) => e.type === 'response.completed')!.response as { output: Array<{ type: string; summary?: Array<{ text: string }> }> };
  assert.deepEqual(completed.output.map((i) => i.type), ['reasoning', 'message']);
  assert.equal(completed.output[0].summary![0].text, joined);
});

test('an upstream that streams only the finished reasoning item: its summary is still scrubbed and reaches the client as summary events', async () => {
  const { text, events } = await rawStream({ model: 'o', input: 'ECHO-KEY DONE-ONLY', store: false, include: INCLUDE });
  assert.ok(!text.includes(SECRET.slice(0, 12)), 'no piece of the key on the wire');
  assert.match(summaryDeltas(events), /^the key is \[REDACTED:oai-key\] \(end\)$/);
});

test('an output guardrail reads reasoning summaries: a deny regex blocks the answer (stream and whole), a redact guardrail masks the summary', async () => {
  await assert.rejects(openai().responses.create({ model: 'o-deny', input: 'SSN', store: false, include: INCLUDE }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { code?: string }).code, 'guardrail_blocked');
    return true;
  });
  const { text, events } = await rawStream({ model: 'o-deny', input: 'SSN', store: false, include: INCLUDE });
  assert.ok(!text.includes('1120'), 'no part of the number after its first half');
  assert.ok(events.some((e) => e.type === 'error'), `the stream ends with an error: ${text.slice(-400)}`);
  assert.ok(!events.some((e) => e.type === 'response.completed'));
  // Redacted: whole and streamed.
  const whole = await openai().responses.create({ model: 'o-mask', input: 'SSN', store: false, include: INCLUDE });
  const item = whole.output[0] as OpenAI.Responses.ResponseReasoningItem;
  assert.equal(item.summary[0].text, 'the number is [SSN] (end)');
  assert.equal(item.encrypted_content, 'gAAAAABoEncryptedByOpenAI==');
  const streamed = await rawStream({ model: 'o-mask', input: 'SSN', store: false, include: INCLUDE });
  assert.equal(summaryDeltas(streamed.events), 'the number is [SSN] (end)');
  assert.ok(!streamed.text.includes(SSN));
});

test('an OpenAI reasoning item\'s raw reasoning (content reasoning_text parts, gpt-oss): the output guardrails read it, a deny regex blocks (stream and whole), a redact guardrail masks it; the credential scrub reads it across its deltas', async () => {
  const reasoningTexts = (events: Array<Record<string, unknown>>) => events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => String(e.delta)).join('');
  await assert.rejects(openai().responses.create({ model: 'o-deny', input: 'SSN RAW-COT', store: false, include: INCLUDE }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { code?: string }).code, 'guardrail_blocked');
    return true;
  });
  const denied = await rawStream({ model: 'o-deny', input: 'SSN RAW-COT', store: false, include: INCLUDE });
  assert.ok(!denied.text.includes('1120'), 'no part of the number after its first half');
  assert.ok(denied.events.some((e) => e.type === 'error') && !denied.events.some((e) => e.type === 'response.completed'), denied.text.slice(-400));
  const whole = await openai().responses.create({ model: 'o-mask', input: 'SSN RAW-COT', store: false, include: INCLUDE });
  const item = whole.output[0] as OpenAI.Responses.ResponseReasoningItem;
  assert.deepEqual(item.content, [{ type: 'reasoning_text', text: 'the number is [SSN] (end)' }]);
  assert.deepEqual(item.summary, []);
  assert.equal(item.encrypted_content, 'gAAAAABoEncryptedByOpenAI==');
  const streamed = await rawStream({ model: 'o-mask', input: 'SSN RAW-COT', store: false, include: INCLUDE });
  assert.ok(!streamed.text.includes(SSN));
  assert.equal(reasoningTexts(streamed.events), 'the number is [SSN] (end)');
  const types = streamed.events.map((e) => String(e.type)).filter((t, i, all) => t !== all[i - 1]);
  assert.deepEqual(types.slice(2, 8), ['response.output_item.added', 'response.content_part.added', 'response.reasoning_text.delta', 'response.reasoning_text.done', 'response.content_part.done', 'response.output_item.done'], 'streamed as OpenAI streams a reasoning_text part');
  const completed = streamed.events.find((e) => e.type === 'response.completed')!.response as { output: Array<{ content?: unknown }> };
  assert.deepEqual(completed.output[0].content, [{ type: 'reasoning_text', text: 'the number is [SSN] (end)' }]);
  // A credential cut across two reasoning_text deltas: redacted, whole and streamed.
  const key = await rawStream({ model: 'o', input: 'ECHO-KEY RAW-COT', store: false, include: INCLUDE });
  assert.ok(!key.text.includes(SECRET.slice(0, 12)) && !key.text.includes(SECRET.slice(-12)), 'no piece of the key on the wire');
  assert.match(reasoningTexts(key.events), /^the key is \[REDACTED:oai-key\] \(end\)$/);
  const keyWhole = await openai().responses.create({ model: 'o', input: 'ECHO-KEY RAW-COT', store: false, include: INCLUDE });
  assert.match((keyWhole.output[0] as OpenAI.Responses.ResponseReasoningItem).content?.[0]?.text ?? '', /^the key is \[REDACTED:oai-key\] \(end\)$/);
});

test('a reasoning item sent back in input: the input guardrails read its summary text', async () => {
  const input = [
    { role: 'user' as const, content: 'hi' },
    { id: 'rs_up', type: 'reasoning' as const, summary: [{ type: 'summary_text' as const, text: `the number is ${SSN}` }], encrypted_content: 'gAAAAABoEncryptedByOpenAI==' },
    { role: 'user' as const, content: 'and then?' },
  ];
  seen.length = 0;
  await assert.rejects(openai().responses.create({ model: 'o-in', input, store: false, include: INCLUDE }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.BadRequestError, String(e));
    assert.equal((e.error as { code?: string }).code, 'guardrail_blocked');
    return true;
  });
  assert.equal(seen.length, 0, 'nothing reached the upstream');
});

test('cache: a streamed OpenAI reasoning item (two summary parts) is recorded as one reasoning block and replayed as the same events', async () => {
  const { eventsToResult, resultToEvents } = await import('../src/cache/replay.ts');
  const item = { id: 'rs_1', type: 'reasoning', summary: [], encrypted_content: 'gAAAAABo==' };
  const events = [
    { type: 'start' as const, id: 'r', model: 'o' },
    { type: 'thinking_start' as const, id: 'rs_1' }, { type: 'thinking' as const, text: 'first ' }, { type: 'thinking' as const, text: 'part' },
    { type: 'thinking_start' as const, id: 'rs_1' }, { type: 'thinking' as const, text: 'second part' },
    { type: 'reasoning_item' as const, item },
    { type: 'text' as const, text: 'ok' },
    { type: 'finish' as const, reason: 'stop' as const },
  ];
  const r = eventsToResult(events, 0)!;
  assert.deepEqual(r.thinking, [{ type: 'reasoning', summary: ['first part', 'second part'], item }]);
  assert.equal(r.text, 'ok');
  const again = resultToEvents(r);
  assert.deepEqual(eventsToResult(again, 0), r, 'replayed, it records the same answer');
  assert.deepEqual(again.filter((e) => e.type === 'thinking_start'), [{ type: 'thinking_start', id: 'rs_1' }, { type: 'thinking_start', id: 'rs_1' }]);
});

test('cache: an OpenAI reasoning item with a reasoning_text part is recorded with its raw reasoning and replayed as the same events', async () => {
  const { eventsToResult, resultToEvents } = await import('../src/cache/replay.ts');
  const item = { id: 'rs_2', type: 'reasoning', summary: [], content: [], encrypted_content: 'gAAAAABo==' };
  const events = [
    { type: 'start' as const, id: 'r', model: 'o' },
    { type: 'thinking_start' as const, id: 'rs_2' }, { type: 'thinking' as const, text: 'short' },
    { type: 'thinking_start' as const, id: 'rs_2', content: true as const }, { type: 'thinking' as const, text: 'the raw ' }, { type: 'thinking' as const, text: 'chain' },
    { type: 'reasoning_item' as const, item },
    { type: 'text' as const, text: 'ok' },
    { type: 'finish' as const, reason: 'stop' as const },
  ];
  const r = eventsToResult(events, 0)!;
  assert.deepEqual(r.thinking, [{ type: 'reasoning', summary: ['short'], content: ['the raw chain'], item }]);
  assert.deepEqual(eventsToResult(resultToEvents(r), 0), r, 'replayed, it records the same answer');
});

test('Gemini: asked for reasoning (include reasoning.encrypted_content), aam requests thought summaries (includeThoughts) and relays them as reasoning items through the same output guardrails, streamed and whole; not asked, none are requested', async () => {
  seen.length = 0;
  const plain = await openai().responses.create({ model: 'g', input: 'SSN', store: false });
  assert.deepEqual(plain.output.map((i) => i.type), ['message']);
  assert.equal((seen[0].body.generationConfig as { thinkingConfig?: unknown } | undefined)?.thinkingConfig, undefined, 'no thoughts asked when no reasoning is');
  const whole = await openai().responses.create({ model: 'g-mask', input: 'SSN', store: false, include: INCLUDE });
  assert.deepEqual(whole.output.map((i) => i.type), ['reasoning', 'message']);
  assert.equal((whole.output[0] as OpenAI.Responses.ResponseReasoningItem).summary[0].text, 'the number is [SSN] (end)', 'the thought passed the redact guardrail');
  assert.deepEqual(seen.at(-1)!.body.generationConfig, { thinkingConfig: { includeThoughts: true } });
  const streamed = await rawStream({ model: 'g-mask', input: 'SSN', store: false, include: INCLUDE });
  assert.ok(!streamed.text.includes(SSN));
  assert.equal(summaryDeltas(streamed.events), 'the number is [SSN] (end)', streamed.text);
  const completed = streamed.events.find((e) => e.type === 'response.completed')!.response as { output: Array<{ type: string }> };
  assert.deepEqual(completed.output.map((i) => i.type), ['reasoning', 'message']);
});
