// Routing strategies latency and cost, and policy regions, driven through the real gateway
// against fake upstreams whose latency and price a test changes; plus the latency tracker's
// decay and stale-probe rules on their own (injected clock).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { chat, localServer } from './helpers/e2e.ts';
import { targetOrder } from '../src/gateway/strategy.ts';
import { LatencyStats, LATENCY_STALE_MS } from '../src/gateway/latency.ts';
import type { Route, Target } from '../src/gateway/routes.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent } from '../src/policy/compile.ts';
import { explain } from '../src/policy/test-runner.ts';

const agent = (models: Record<string, unknown>) => [
  doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
  doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models }),
];

function answer(res: ServerResponse, model: string): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message: { role: 'assistant', content: `from ${model}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A streamed answer: the first content after `delay` ms, the rest `tail` ms later. */
async function streamAnswer(res: ServerResponse, model: string, delay: number, tail: number): Promise<void> {
  const chunk = (delta: object, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  await wait(delay);
  res.write(chunk({ role: 'assistant', content: `from ${model}` }, null));
  await wait(tail);
  res.end(chunk({}, 'stop') + 'data: [DONE]\n\n');
}

/** An OpenAI-wire upstream whose delay (ms) to first content, tail and failure a test sets per upstream model name. */
async function tunableUpstream() {
  const delay: Record<string, number> = {};
  const tail: Record<string, number> = {};
  const failing = new Set<string>();
  const hits: string[] = [];
  const s = await localServer(async (_req, res, body) => {
    const req = JSON.parse(body) as { model: string; stream?: boolean };
    const model = req.model;
    hits.push(model);
    if (req.stream && !failing.has(model)) return streamAnswer(res, model, delay[model] ?? 0, tail[model] ?? 0);
    await wait((delay[model] ?? 0) + (tail[model] ?? 0));
    if (failing.has(model)) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"message":"down"}}');
    else answer(res, model);
  });
  return { ...s, delay, tail, failing, hits };
}

const served = async (url: string, key: string, model: string, content = 'x', body: Record<string, unknown> = {}) => {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...body }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return r.headers.get('x-aam-target');
};

test('latency: the lowest recent time to first token wins, and the choice moves when a target slows down', async () => {
  const up = await tunableUpstream();
  up.delay.a = 0;
  up.delay.b = 300;
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'fast', { strategy: 'latency', targets: [{ provider: 'up', model: 'b' }, { provider: 'up', model: 'a' }] }),
    doc('Model', 'warm', { targets: [{ provider: 'up', model: 'w' }] }),
    ...agent({ allow: ['fast', 'warm'] }),
  ));
  try {
    const key = gw.key('bot');
    // Warm the gateway and its connections first, so a cold start is not measured as b's latency.
    for (let i = 0; i < 3; i++) await served(gw.url, key, 'warm');
    // Both unmeasured: each is probed once (config order), then the faster one serves.
    await served(gw.url, key, 'fast');
    await served(gw.url, key, 'fast');
    assert.deepEqual(up.hits.slice(3, 5).sort(), ['a', 'b']);
    for (let i = 0; i < 3; i++) assert.equal(await served(gw.url, key, 'fast'), 'up/a');
    // a turns slow (1500 ms > b's 300 ms): its decaying average crosses b's within a few requests.
    up.delay.a = 1500;
    const picks: string[] = [];
    for (let i = 0; i < 7; i++) picks.push((await served(gw.url, key, 'fast'))!);
    assert.equal(picks.at(-1), 'up/b', `picks after a slowed down: ${picks.join(', ')}`);
    assert.ok(picks.indexOf('up/b') <= 4, `switched within 5 requests: ${picks.join(', ')}`);
    const route = gw.g.rt.compiled.routes.get('fast')!;
    const ms = Object.fromEntries(route.targets.map((t) => [t.model, t.latency.ms!]));
    assert.ok(ms.a > ms.b, `EWMA a ${ms.a} > b ${ms.b}`);
  } finally { await gw.close(); await up.close(); }
});

test('latency of a stream is its time to first token, not its length', async () => {
  const up = await tunableUpstream();
  // a: first token at once, then a long answer (600 ms); b: first token after 250 ms, then done.
  up.delay.a = 0;
  up.tail.a = 600;
  up.delay.b = 250;
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'ttft', { strategy: 'latency', targets: [{ provider: 'up', model: 'b' }, { provider: 'up', model: 'a' }] }),
    doc('Model', 'warm', { targets: [{ provider: 'up', model: 'w' }] }),
    ...agent({ allow: ['ttft', 'warm'] }),
  ));
  try {
    const key = gw.key('bot');
    for (let i = 0; i < 3; i++) await served(gw.url, key, 'warm');
    const streamed = async () => {
      const r = await chat(gw.url, key, 'ttft', 'x', { stream: true });
      assert.equal(r.status, 200, r.text);
      assert.match(r.text, /from (a|b)/);
      return r.headers.get('x-aam-target');
    };
    await streamed();
    await streamed();
    for (let i = 0; i < 3; i++) assert.equal(await streamed(), 'up/a', 'a answers first, though it answers longer');
    const ms = Object.fromEntries(gw.g.rt.compiled.routes.get('ttft')!.targets.map((t) => [t.model, t.latency.ms!]));
    // a's 600 ms tail is not in its measurement (a whole-answer measure would rank it behind b).
    assert.ok(ms.a < ms.b && ms.a < 600 && ms.b >= 250, `measured to first token: a ${ms.a} ms, b ${ms.b} ms`);
  } finally { await gw.close(); await up.close(); }
});

test('latency tracker: decaying average, and one probe per stale period for a target not measured lately', () => {
  const s = new LatencyStats();
  assert.equal(s.ms, null);
  assert.equal(s.claimProbe(1_000), true, 'never measured: probe it');
  assert.equal(s.claimProbe(1_001), false, 'one probe at a time');
  s.observe(100, 1_000);
  s.observe(200, 1_010);
  assert.equal(Math.round(s.ms!), 130, '0.3 * 200 + 0.7 * 100');
  assert.equal(s.claimProbe(1_010 + LATENCY_STALE_MS - 1), false);
  assert.equal(s.claimProbe(1_010 + LATENCY_STALE_MS), true, 'stale: probed once more');
  // In a route: the stale slow target is tried first once, then the fast one leads again.
  const t = (model: string, ms: number, at: number): Target => {
    const latency = new LatencyStats();
    latency.observe(ms, at);
    return { model, label: model, latency, provider: { enabled: true } } as unknown as Target;
  };
  const now = 100_000;
  const route = { strategy: 'latency', targets: [t('slow', 900, now - LATENCY_STALE_MS - 1), t('fast', 10, now)] } as unknown as Route;
  assert.deepEqual(targetOrder(route, undefined, Math.random, now).map((x) => x.model), ['slow', 'fast']);
  assert.deepEqual(targetOrder(route, undefined, Math.random, now + 1).map((x) => x.model), ['fast', 'slow']);
});

test('cost: the cheapest target for this request\'s tokens wins; the choice moves with the request and with prices', async () => {
  const up = await tunableUpstream();
  // a: cheap input, dear output. b: dear input, cheap output.
  const config = (aOut: number) => yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'thrifty', { strategy: 'cost', breaker: { failures: 1, cooldown_ms: 60_000 }, retries: { attempts: 0 }, targets: [
      { provider: 'up', model: 'a', pricing: { input_per_1m: 1, output_per_1m: aOut } },
      { provider: 'up', model: 'b', pricing: { input_per_1m: 5, output_per_1m: 2 } },
    ] }),
    ...agent({ allow: ['thrifty'] }),
  );
  const gw = await startTestGateway(config(10));
  try {
    const key = gw.key('bot');
    // Short prompt, long answer allowed: b (output $2) is cheaper.
    assert.equal(await served(gw.url, key, 'thrifty', 'hi', { max_tokens: 2000 }), 'up/b');
    // Long prompt (~40 KB), short answer: a (input $1) is cheaper.
    assert.equal(await served(gw.url, key, 'thrifty', 'y'.repeat(40_000), { max_tokens: 5 }), 'up/a');
    // Prices change (reload): a's output is now cheap too, so a wins the short-prompt request.
    writeFileSync(gw.configPath, config(1));
    assert.equal(gw.g.rt.reload(), null);
    assert.equal(await served(gw.url, key, 'thrifty', 'hi', { max_tokens: 2000 }), 'up/a');
    // The cheapest turns unhealthy (circuit open after one failure): the next cheapest serves.
    up.failing.add('a');
    assert.equal(await served(gw.url, key, 'thrifty', 'hi', { max_tokens: 2000 }), 'up/b', 'falls back to b on the failure');
    const before = up.hits.length;
    assert.equal(await served(gw.url, key, 'thrifty', 'hi', { max_tokens: 2000 }), 'up/b');
    assert.deepEqual(up.hits.slice(before), ['b'], 'a is skipped while its circuit is open');
  } finally { await gw.close(); await up.close(); }
});

test('regions: targets outside the policy\'s regions are never used; none left is 403 naming models.regions', async () => {
  const up = await tunableUpstream();
  const text = yaml(
    doc('Provider', 'us', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, region: 'us' }),
    doc('Provider', 'eu', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, region: 'eu', models: '*' }),
    doc('Model', 'chat', { targets: [{ provider: 'us', model: 'us-model' }, { provider: 'us', model: 'eu-model', region: 'eu' }] }),
    doc('Model', 'us-only', { targets: [{ provider: 'us', model: 'us-model' }] }),
    ...agent({ allow: ['chat', 'us-only', 'eu/*'], regions: ['eu'] }),
  );
  const gw = await startTestGateway(text);
  try {
    const key = gw.key('bot');
    // Fallback order puts the us target first; the policy keeps only the eu one.
    for (let i = 0; i < 3; i++) assert.equal(await served(gw.url, key, 'chat'), 'us/eu-model');
    assert.equal(await served(gw.url, key, 'eu/anything'), 'eu/anything', 'catalog models take the provider\'s region');
    // The eu target fails: no fallback to us (502), the us upstream never sees the call.
    up.failing.add('eu-model');
    up.hits.length = 0;
    const failed = await chat(gw.url, key, 'chat', 'x');
    assert.equal(failed.status, 502, failed.text);
    assert.ok(!up.hits.includes('us-model'), `us target used: ${up.hits.join(', ')}`);
    const denied = await chat(gw.url, key, 'us-only', 'x');
    assert.equal(denied.status, 403);
    const err = (denied.json as { error: { code: string; message: string } }).error;
    assert.equal(err.code, 'policy_denied');
    assert.match(err.message, /policy "p" models\.regions allows only regions eu .*no target of model "us-only" runs there \(us\/us-model: us\)/);
    // GET /v1/models leaves out the route no allowed region can serve.
    const list = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    const ids = ((await list.json()) as { data: Array<{ id: string }> }).data.map((m) => m.id);
    assert.ok(ids.includes('chat') && !ids.includes('us-only'), ids.join(', '));
    // aam policy explain shows the regions and which targets may serve.
    const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text }]));
    const lines = explain({ kind: 'model', agent: findAgent(c, 'bot')!, model: 'chat' }, c).join('\n');
    assert.match(lines, /regions: eu \(models\.regions of p\)/);
    assert.match(lines, /target us\/us-model \(us\): never used/);
    assert.match(lines, /target us\/eu-model \(eu\): may serve/);
    assert.match(lines, /decision: ALLOW .*\nreason: .*leave targets us\/eu-model/);
  } finally { await gw.close(); await up.close(); }
});

test('regions of several policies intersect', () => {
  const text = yaml(
    doc('Provider', 'p1', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1' }),
    doc('Model', 'm', { targets: [{ provider: 'p1', model: 'x', region: 'eu' }, { provider: 'p1', model: 'y', region: 'us' }] }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('AgentPolicy', 'a', { identity: { agent: 'bot' }, models: { allow: ['m'], regions: ['eu', 'us'] } }),
    doc('AgentPolicy', 'b', { identity: { agent: 'bot' }, models: { regions: ['us', 'ap'] } }),
  );
  const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text }]));
  const set = c.sets.get('bot')!;
  assert.deepEqual([...set.regions!.allow], ['us']);
  assert.deepEqual(set.regions!.policies, ['a', 'b']);
});
