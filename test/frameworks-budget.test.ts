// What the Vercel AI SDK and LangChain JS do, as their default retries run, with a budget spent until
// the day ends (429 budget_exceeded, retry-after hours, x-should-retry: false; the OpenAI and Anthropic
// SDKs: test/sdk-retry.test.ts). LangChain stops at the first 429 (a retry-after over a minute) and,
// reading aam's "will reset at", raises it as a spent quota, not retryable. The AI SDK retries every
// 429 (its rule is the status alone: no header or body shape makes one final) with its own backoff,
// 2 s then 4 s, as a retry-after over a minute is ignored: three requests and 6 s, then aam's message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateText, streamText, RetryError, APICallError, type LanguageModel } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { createAnthropic } from '@ai-sdk/anthropic';
import { ChatOpenAI } from '@langchain/openai';
import { ChatAnthropic } from '@langchain/anthropic';
import { getRetryable } from '@langchain/core/errors';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

(globalThis as { AI_SDK_LOG_WARNINGS?: boolean }).AI_SDK_LOG_WARNINGS = false;

let fake: FakeUpstream;
let gw: TestGateway;
let key: string;
let rpmKey: string;
before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    // $1 a token; the 'tools' answer costs 59 tokens, more than its estimate (prompt + max_tokens 1):
    // one call admitted under the $30 budget spends it all.
    doc('Model', 'pricey', { targets: [{ provider: 'oai', model: 'tools' }], pricing: { input_per_1m: 1_000_000, output_per_1m: 1_000_000 } }),
    doc('Model', 'cheap', { targets: [{ provider: 'oai', model: 'ok' }] }),
    doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
    doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['pricey'], budget: { daily_usd: 30 } } }),
    doc('Agent', 'hasty', { workload: 'spiffe://test/agent/hasty', team: 'qa' }),
    doc('AgentPolicy', 'hasty', { identity: { agent: 'hasty' }, models: { allow: ['cheap'], rate: { rpm: 1 } } }),
  ));
  key = gw.key('spender');
  rpmKey = gw.key('hasty');
  const spend = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'pricey', max_tokens: 1, messages: [{ role: 'user', content: 'spend' }] }),
  });
  assert.equal(spend.status, 200, await spend.text());
});
after(async () => { await gw?.close(); await fake?.close(); });

/** A fetch that counts the requests a framework sends (its retries included). */
function counting(): { fetch: typeof fetch; sent: () => number } {
  let n = 0;
  return { fetch: (input, init) => { n++; return fetch(input, init); }, sent: () => n };
}

/** aam's refusal of a spent budget: says so, and when it resets (midnight UTC). */
const SPENT = /daily budget of \$30 for agent:spender is exhausted \(\$59\.0000 spent incl\. in-flight reservations\); it will reset at (\d{4}-\d\d-\d\dT00:00:00\.000Z)/;

function assertResetsTomorrow(message: string): void {
  const m = SPENT.exec(message);
  assert.ok(m, message);
  const inMs = Date.parse(m[1]!) - Date.now();
  assert.ok(inMs > 0 && inMs <= 86_400_000, m[1]);
}

const AI_SDK: Array<[string, (f: typeof fetch) => LanguageModel]> = [
  ['@ai-sdk/openai responses', (f) => createOpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, fetch: f }).responses('pricey')],
  ['@ai-sdk/openai chat', (f) => createOpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, fetch: f }).chat('pricey')],
  ['@ai-sdk/openai-compatible', (f) => createOpenAICompatible({ name: 'aam', apiKey: key, baseURL: `${gw.url}/v1`, fetch: f }).chatModel('pricey')],
  ['@ai-sdk/anthropic', (f) => createAnthropic({ apiKey: key, baseURL: `${gw.url}/v1`, fetch: f })('pricey')],
];

test('AI SDK, a spent budget: generateText sends 3 requests over 6 s (its backoff; a retry-after over 60 s is not waited), then throws aam\'s message', async () => {
  // Side by side: each sleeps the same 2 + 4 s.
  await Promise.all(AI_SDK.map(async ([label, model]) => {
    const c = counting();
    const t0 = performance.now();
    const e = await generateText({ model: model(c.fetch), prompt: 'more', maxOutputTokens: 100 }).then(() => null, (err: unknown) => err);
    const took = performance.now() - t0;
    assert.ok(RetryError.isInstance(e), `${label}: ${String(e)}`);
    assert.equal(e.reason, 'maxRetriesExceeded', label);
    assert.equal(c.sent(), 3, `${label}: default maxRetries 2, every 429 retryable`);
    assert.ok(took >= 5_900 && took < 30_000, `${label}: slept its backoff (2 s + 4 s), not the retry-after: ${took} ms`);
    assertResetsTomorrow(e.message);
    const last = e.lastError;
    assert.ok(APICallError.isInstance(last), label);
    assert.equal(last.statusCode, 429);
    assert.equal(last.isRetryable, true, `${label}: the status alone decides`);
    assert.ok(Number(last.responseHeaders?.['retry-after']) > 60, label);
    assert.equal(last.responseHeaders?.['x-should-retry'], 'false', label);
  }));
  assert.equal(fake.count('tools'), 1, 'only the call that spent the budget reached the upstream');
});

test('AI SDK, a spent budget with maxRetries: 0: one request; streamText reports aam\'s message through onError and the error part', async () => {
  const c = counting();
  const e = await generateText({ model: AI_SDK[1]![1](c.fetch), prompt: 'more', maxOutputTokens: 100, maxRetries: 0 }).then(() => null, (err: unknown) => err);
  assert.ok(APICallError.isInstance(e), String(e));
  assert.equal(c.sent(), 1);
  assertResetsTomorrow(e.message);

  const s = counting();
  let seen: unknown;
  const r = streamText({ model: AI_SDK[3]![1](s.fetch), prompt: 'more', maxOutputTokens: 100, maxRetries: 0, onError: ({ error }) => { seen = error; } });
  const errors: string[] = [];
  for await (const part of r.fullStream) if (part.type === 'error') errors.push((part.error as Error).message);
  assert.equal(errors.length, 1);
  assertResetsTomorrow(errors[0]!);
  assert.ok(APICallError.isInstance(seen));
  assert.equal(s.sent(), 1);
});

const LANGCHAIN: Array<[string, (f: typeof fetch) => { invoke(s: string): Promise<unknown> }]> = [
  ['ChatOpenAI', (f) => new ChatOpenAI({ model: 'pricey', apiKey: key, maxTokens: 100, configuration: { baseURL: `${gw.url}/v1`, fetch: f } })],
  ['ChatOpenAI (Responses API)', (f) => new ChatOpenAI({ model: 'pricey', apiKey: key, maxTokens: 100, useResponsesApi: true, configuration: { baseURL: `${gw.url}/v1`, fetch: f } })],
  ['ChatOpenAI streamed', (f) => new ChatOpenAI({ model: 'pricey', apiKey: key, maxTokens: 100, streaming: true, configuration: { baseURL: `${gw.url}/v1`, fetch: f } })],
  ['ChatAnthropic', (f) => new ChatAnthropic({ model: 'pricey', apiKey: key, maxTokens: 100, anthropicApiUrl: gw.url, clientOptions: { fetch: f } })],
];

type LcError = Error & { status?: number; rateLimitType?: string; retryAfterMs?: number };

for (const [label, chat] of LANGCHAIN) {
  test(`LangChain ${label}, a spent budget: one request (default maxRetries 6), raised as a spent quota, not retryable, with aam's message`, async () => {
    const c = counting();
    const e = await chat(c.fetch).invoke('more').then(() => null, (err: unknown) => err as LcError);
    assert.ok(e instanceof Error, String(e));
    assert.equal(c.sent(), 1, 'not retried');
    assert.equal(e.status, 429);
    // Before "will reset at": RateLimitCapacityError, rateLimitType capacity, marked retryable.
    assert.equal(e.name, 'RateLimitQuotaExhaustedError');
    assert.equal(e.rateLimitType, 'stop');
    assert.equal(getRetryable(e), false);
    assertResetsTomorrow(e.message);
  });
}

test('LangChain, a rate limit (retry-after within a minute) is still one it waits for and retries (rateLimitType wait), not a spent quota', async () => {
  const llm = new ChatOpenAI({ model: 'cheap', apiKey: rpmKey, maxTokens: 10, maxRetries: 0, configuration: { baseURL: `${gw.url}/v1` } });
  await llm.invoke('first');
  const e = await llm.invoke('second').then(() => null, (err: unknown) => err as LcError);
  assert.ok(e instanceof Error, String(e));
  assert.equal(e.status, 429);
  assert.match(e.message, /rate limit exceeded/);
  assert.equal(e.rateLimitType, 'wait');
  assert.ok(e.retryAfterMs! > 0 && e.retryAfterMs! <= 60_000, String(e.retryAfterMs));
  assert.notEqual(getRetryable(e), false);
});
