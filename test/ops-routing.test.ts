// Routing behaviour measured from outside a real gateway: load-balancing weights, the circuit
// breaker's half-open trial, and waiting on an upstream's retry-after.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, localServer, until } from './helpers/e2e.ts';

const agent = (routes: string[]) => [
  doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester' }),
  doc('AgentPolicy', 'tester', { identity: { agent: 'tester' }, models: { allow: routes } }),
];

/** A chat completion body in the OpenAI wire format. */
function answer(res: ServerResponse, text = 'ok'): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
}

test('loadbalance with weights 3:1 sends about three quarters of the requests to the heavier target', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'lb', { strategy: 'loadbalance', targets: [{ provider: 'oai', model: 'heavy', weight: 3 }, { provider: 'oai', model: 'light', weight: 1 }] }),
    ...agent(['lb']),
  ));
  try {
    const key = gw.key('tester');
    const N = 320;
    for (let i = 0; i < N; i += 8) {
      const batch = await Promise.all(Array.from({ length: 8 }, () => chat(gw.url, key, 'lb', 'x')));
      for (const r of batch) assert.equal(r.status, 200, r.text);
    }
    const heavy = fake.count('heavy');
    assert.equal(heavy + fake.count('light'), N, 'every request reached exactly one target (no fallbacks)');
    // Binomial(320, 0.75): sd 7.7 requests (0.024); +-0.085 is 3.5 sd (a 50:50 split is 10 sd away).
    const share = heavy / N;
    assert.ok(Math.abs(share - 0.75) < 0.085, `heavy target got ${heavy}/${N} = ${share.toFixed(3)}, expected 0.75 +- 0.085`);
  } finally { await gw.close(); await fake.close(); }
});

/** An upstream whose next answers a test chooses: fail (500), succeed, or hold until told. */
async function switchableUpstream() {
  let mode: 'fail' | 'ok' | 'hold' = 'fail';
  const held: ServerResponse[] = [];
  const s = await localServer((_req, res) => {
    up.hits++;
    if (mode === 'hold') held.push(res);
    else if (mode === 'fail') res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"message":"upstream down"}}');
    else answer(res);
  });
  const up = {
    ...s, hits: 0, held,
    set(m: 'fail' | 'ok' | 'hold') { mode = m; },
    /** Answer the held requests with 500 (fail) or 200 (ok). */
    releaseHeld(as: 'fail' | 'ok') { for (const r of held.splice(0)) { if (as === 'fail') r.writeHead(500).end('{"error":{"message":"still down"}}'); else answer(r); } },
  };
  return up;
}

const breakerState = (gw: TestGateway) => gw.g.rt.compiled.routes.get('guarded')!.targets[0].breaker.state;

test('circuit breaker: after the cooldown exactly one trial request reaches the upstream; failure re-opens, success closes', async () => {
  const up = await switchableUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'guarded', { targets: [{ provider: 'up', model: 'm' }], retries: { attempts: 0 }, breaker: { failures: 2, cooldown_ms: 300 } }),
    ...agent(['guarded']),
  ));
  try {
    const key = gw.key('tester');
    const call = () => chat(gw.url, key, 'guarded', 'x');
    // Two failures open the circuit; the next request is refused without touching the upstream.
    assert.equal((await call()).status, 502);
    assert.equal((await call()).status, 502);
    assert.equal(up.hits, 2);
    const open = await call();
    assert.equal(open.status, 503);
    assert.match(open.text, /circuit open/);
    assert.equal(up.hits, 2);
    // Half-open: of five concurrent requests exactly one is the trial; the others are refused at once.
    await until(() => breakerState(gw) === 'half_open', 10_000, 'the cooldown to end');
    up.set('hold');
    const burst = Array.from({ length: 5 }, () => call());
    const refused: number[] = [];
    for (const p of burst) void p.then((r) => { refused.push(r.status); });
    await until(() => up.hits === 3, 10_000, 'the trial request to reach the upstream');
    await until(() => refused.length === 4, 10_000, 'the four other requests to be refused while the trial is in flight');
    assert.deepEqual(refused, [503, 503, 503, 503]);
    assert.equal(up.hits, 3, 'exactly one trial reached the upstream');
    // The trial fails: the circuit re-opens (next request refused without an upstream call).
    up.set('fail'); // a request that should have been refused must not hang on a held upstream
    up.releaseHeld('fail');
    assert.equal((await Promise.all(burst)).filter((r) => r.status === 502).length, 1);
    assert.equal((await call()).status, 503);
    assert.equal(up.hits, 3);
    // Next cooldown: the trial succeeds and the circuit closes (concurrent requests all pass).
    await until(() => breakerState(gw) === 'half_open', 10_000, 'the second cooldown to end');
    up.set('ok');
    assert.equal((await call()).status, 200);
    assert.equal(breakerState(gw), 'closed');
    const after = await Promise.all(Array.from({ length: 3 }, () => call()));
    assert.deepEqual(after.map((r) => r.status), [200, 200, 200]);
    assert.equal(up.hits, 7);
  } finally { up.releaseHeld('fail'); await gw.close(); await up.close(); }
});

test('circuit breaker: a trial that ends without a verdict (the upstream rejects the request itself) does not leave the target shut', async () => {
  let status = 500;
  let hits = 0;
  const up = await localServer((_req, res) => { hits++; if (status === 200) answer(res); else res.writeHead(status, { 'content-type': 'application/json' }).end('{"error":{"message":"no"}}'); });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'guarded', { targets: [{ provider: 'up', model: 'm' }], retries: { attempts: 0 }, breaker: { failures: 1, cooldown_ms: 200 } }),
    ...agent(['guarded']),
  ));
  try {
    const key = gw.key('tester');
    assert.equal((await chat(gw.url, key, 'guarded', 'x')).status, 502);
    await until(() => breakerState(gw) === 'half_open', 10_000, 'the cooldown to end');
    status = 400; // the trial is answered "bad request": the upstream is up, the request was wrong
    assert.equal((await chat(gw.url, key, 'guarded', 'x')).status, 400);
    status = 200;
    await until(async () => (await chat(gw.url, key, 'guarded', 'x')).status === 200, 10_000, 'a later trial to be let through');
    assert.equal(hits, 3);
  } finally { await gw.close(); await up.close(); }
});

test('retry-after: an upstream 429 with retry-after: 1 is retried on the same target after about one second', async () => {
  const arrivals: number[] = [];
  const up = await localServer((_req, res) => {
    arrivals.push(performance.now());
    if (arrivals.length === 1) res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":{"message":"slow down"}}');
    else answer(res, 'after waiting');
  });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    // backoff_ms is tiny: a wait of about a second can only come from retry-after.
    doc('Model', 'patient', { targets: [{ provider: 'up', model: 'm' }], retries: { attempts: 1, backoff_ms: 10 } }),
    ...agent(['patient']),
  ));
  try {
    const key = gw.key('tester');
    const r = await chat(gw.url, key, 'patient', 'x');
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /after waiting/);
    assert.equal(arrivals.length, 2, 'retried on the same target');
    const gap = arrivals[1] - arrivals[0];
    assert.ok(gap >= 950, `waited ${gap.toFixed(0)} ms between the 429 and the retry (retry-after: 1)`);
    assert.ok(gap < 10_000, `waited ${gap.toFixed(0)} ms`);
  } finally { await gw.close(); await up.close(); }
});
