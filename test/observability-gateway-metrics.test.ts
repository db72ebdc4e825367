// What an operator watches on a gateway, end to end through a real gateway and the openai SDK:
// a target that fails and is fallen back from is named in the call's evidence (the prompt went
// there too) and counted per target and status; streamed calls report time to first chunk; cache
// lookups count hits and misses; guardrail verdicts count per guardrail, direction and verdict;
// prom-client's process metrics are named aam_process_* / aam_nodejs_* (not aam_process_process_*).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { auditOf } from './helpers/e2e.ts';
import { parseProm, sumOf } from './helpers/prom.ts';
import { describeEvent } from '../src/audit/query.ts';

let fake: FakeUpstream;
let gw: TestGateway;

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'fail-500' }, { provider: 'oai', model: 'ok' }], retries: { attempts: 0 }, pricing: { input_per_1m: 1, output_per_1m: 2 } }),
    doc('Model', 'cached', { targets: [{ provider: 'oai', model: 'ok' }], cache: { mode: 'exact', ttl_seconds: 60 }, pricing: { input_per_1m: 1, output_per_1m: 2 } }),
    // A semantic cache whose embedding route and answering route both fall back: two calls per
    // request, each with a failed attempt of its own.
    doc('Model', 'emb', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'fail-500' }, { provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Model', 'sem', { targets: [{ provider: 'oai', model: 'fail-500' }, { provider: 'oai', model: 'ok' }], retries: { attempts: 0 }, cache: { mode: 'semantic', threshold: 0.99, embedding_model: 'emb', ttl_seconds: 60 } }),
    // An embeddings route all of whose targets fail: the failed request still names what it tried.
    doc('Model', 'emb-down', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'fail-500' }, { provider: 'oai', model: 'fail-429' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'falcon', { on: ['input'], keywords: ['project falcon'], action: 'block' }),
    doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
    doc('AgentPolicy', 'analyst-models', { identity: { workload: 'spiffe://prod/agent/analyst' }, models: { allow: ['gpt', 'cached', 'sem', 'emb-down'] }, guardrails: ['falcon'] }),
  ));
});
after(async () => {
  await gw?.g.close();
  if (gw) rmSync(join(gw.dataDir, '..'), { recursive: true, force: true });
  await fake?.close();
});

test('fallbacks are evidence and metrics; time to first chunk, cache lookups and guardrail verdicts are counted; process metrics are aam_process_*', async () => {
  const { secret } = gw.g.rt.keys.create('analyst');
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: secret, maxRetries: 0 });

  const whole = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  assert.equal(whole.response.headers.get('x-aam-target'), 'oai/ok', 'the second target served');
  const [ev] = await auditOf(gw, whole.response.headers.get('x-request-id')!);
  assert.equal(ev.model?.provider, 'oai');
  const attempts = ev.model?.attempts ?? [];
  assert.deepEqual(attempts.map((a) => [a.target, a.status]), [['oai/fail-500', 500]]);
  assert.match(attempts[0].error, /fake upstream: fail-500/);
  assert.match(describeEvent(ev), /model=gpt->oai\/ok .* failed_first=oai\/fail-500:500/, '`aam audit show` names it');

  const stream = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'stream me' }], stream: true });
  for await (const chunk of stream) void chunk;

  // A call whose first target answered names no attempts.
  await client.chat.completions.create({ model: 'cached', messages: [{ role: 'user', content: 'same' }] });
  const hit = await client.chat.completions.create({ model: 'cached', messages: [{ role: 'user', content: 'same' }] }).withResponse();
  assert.equal(hit.response.headers.get('x-aam-cache'), 'hit');
  const [missEv] = (await auditOf(gw, hit.response.headers.get('x-request-id')!));
  assert.equal(missEv.model?.attempts, undefined);

  await assert.rejects(client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'about project falcon' }] }), (e: { status?: number }) => e.status === 400);

  const samples = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const sum = (name: string, match: Record<string, string>) => sumOf(samples, name, match);
  assert.equal(sum('aam_upstream_attempt_failures_total', { route: 'gpt', target: 'oai/fail-500', status: '500' }), 2, 'one failed attempt per gpt call (whole and streamed)');
  assert.equal(sum('aam_model_requests_total', { route: 'gpt', status: '200' }), 2, 'both answered after the fallback');
  assert.equal(sum('aam_model_time_to_first_chunk_seconds_count', { route: 'gpt', provider: 'oai' }), 1, 'the streamed call only');
  assert.ok(sum('aam_model_time_to_first_chunk_seconds_sum', { route: 'gpt', provider: 'oai' }) > 0);
  assert.equal(sum('aam_cache_lookups_total', { route: 'cached', result: 'miss' }), 1);
  assert.equal(sum('aam_cache_lookups_total', { route: 'cached', result: 'hit' }), 1);
  assert.equal(sum('aam_cache_lookups_total', { route: 'gpt' }), 0, 'a route without a cache is not counted');
  assert.equal(sum('aam_guardrail_verdicts_total', { guardrail: 'falcon', direction: 'input', verdict: 'block' }), 1);
  const names = new Set(samples.map((s) => s.name));
  assert.ok(names.has('aam_process_cpu_user_seconds_total') && names.has('aam_nodejs_eventloop_lag_seconds'), 'prom-client metrics behind aam_');
  assert.ok(![...names].some((n) => n.startsWith('aam_process_process_')), 'no doubled prefix');
});

test("a side call's failed attempts are its own: the semantic cache's embedding and the answer each name theirs, counted once", async () => {
  const { secret } = gw.g.rt.keys.create('analyst');
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: secret, maxRetries: 0 });
  const before = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const whole = await client.chat.completions.create({ model: 'sem', messages: [{ role: 'user', content: 'first question about tides' }] }).withResponse();
  const streamed = await client.chat.completions.create({ model: 'sem', messages: [{ role: 'user', content: 'another one on volcanoes' }], stream: true }).withResponse();
  for await (const chunk of streamed.data) void chunk;
  for (const r of [whole.response, streamed.response]) {
    assert.equal(r.headers.get('x-aam-cache'), 'miss');
    const calls = await auditOf(gw, r.headers.get('x-request-id')!, 'model_call');
    assert.deepEqual(calls.map((e) => [e.model?.route, e.model?.attempts?.map((a) => `${a.target} ${a.status}`)]),
      [['emb', ['oai/fail-500 500']], ['sem', ['oai/fail-500 500']]], 'each model_call names exactly its own failed attempt');
  }
  const after = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const delta = (route: string) => sumOf(after, 'aam_upstream_attempt_failures_total', { route, target: 'oai/fail-500', status: '500' }) - sumOf(before, 'aam_upstream_attempt_failures_total', { route, target: 'oai/fail-500', status: '500' });
  assert.deepEqual([delta('emb'), delta('sem')], [2, 2], 'one failed attempt per call, each counted once under its own route');
});

test('an embeddings request whose every target failed is a model_call naming each attempt, counted like a chat call', async () => {
  const { secret } = gw.g.rt.keys.create('analyst');
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: secret, maxRetries: 0 });
  const before = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const err = await client.embeddings.create({ model: 'emb-down', input: 'tides' }).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof OpenAI.APIError, 'the SDK sees the upstream failure');
  const requestId = err.headers?.get('x-request-id');
  assert.ok(requestId);
  const calls = await auditOf(gw, requestId, 'model_call');
  assert.deepEqual(calls.map((e) => [e.model?.route, Number(e.outcome?.status) >= 400, e.model?.attempts?.map((a) => `${a.target} ${a.status}`)]),
    [['emb-down', true, ['oai/fail-500 500', 'oai/fail-429 429']]]);
  const after = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const delta = (target: string, status: string) => sumOf(after, 'aam_upstream_attempt_failures_total', { route: 'emb-down', target, status }) - sumOf(before, 'aam_upstream_attempt_failures_total', { route: 'emb-down', target, status });
  assert.deepEqual([delta('oai/fail-500', '500'), delta('oai/fail-429', '429')], [1, 1]);
});
