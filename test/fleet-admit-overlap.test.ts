// Fleet mode, c=1: while the admission's Redis round trip is in flight, the first target's upstream
// request is built (gateway/chat.ts firstRequest), but nothing reaches an upstream before the
// admission allowed it: a refused request answers exactly as one process answers it and reaches
// no upstream, a stalled admission holds the call, and a fallback target gets its own request.
// Alone in flight, the admission's bytes leave before the build (resp.ts writes a command on an
// idle connection at once), so the build overlaps the round trip.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fleetStore, privateRedis, type FleetTestStore, type PrivateRedis } from './helpers/fleet.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, startTestGateway } from './helpers/gateway.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { Socket } from 'node:net';
import { openaiAdapter } from '../src/providers/openai.ts';

// 100 output tokens at $1000 per 1M = $0.10 a call; max_tokens 100 reserves exactly that.
const PRICE = { input_per_1m: 0, output_per_1m: 1000 };

function config(upstream: string): string {
  return yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upstream}/v1` }),
    doc('Model', 'priced', { targets: [{ provider: 'up', model: 'm-priced' }], pricing: PRICE }),
    // The first target answers 404 (this provider will not serve it): the call falls back to the second.
    doc('Model', 'fallback', { targets: [{ provider: 'up', model: 'gone' }, { provider: 'up', model: 'm-second' }] }),
    doc('Model', 'streamed', { targets: [{ provider: 'up', model: 'm-stream' }] }),
    doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
    doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['priced'], budget: { daily_usd: 0.1 } } }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other', team: 'qa' }),
    doc('AgentPolicy', 'other', { identity: { agent: 'other' }, models: { allow: ['fallback', 'streamed'], rate: { rpm: 10000 } } }),
  );
}

const ANSWER = JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 100, total_tokens: 105 } });
const STREAM = [
  { id: 's', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: null }] },
  { id: 's', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } },
].map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';

/** Every request body the upstream received, in order (model and stream read back). */
let received: Array<{ model: string; stream: boolean }> = [];
let upstream: LocalServer;
let redis: PrivateRedis;
let store: FleetTestStore;
let gw: Running;
let url: string;

async function call(key: string, model: string, extra: Record<string, unknown> = {}): Promise<{ status: number; body: string }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...extra }),
  });
  return { status: r.status, body: await r.text() };
}

/** An error answer without what differs per request (its id). */
const refusal = (body: string) => JSON.stringify(JSON.parse(body), (k, v: unknown) => (k === 'request_id' ? undefined : v));

before(async () => {
  upstream = await localServer((_req, res, body) => {
    const b = JSON.parse(body) as { model: string; stream?: boolean };
    received.push({ model: b.model, stream: b.stream === true });
    if (b.model === 'gone') { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":{"message":"no such model"}}'); return; }
    if (b.stream) { res.writeHead(200, { 'content-type': 'text/event-stream' }); res.end(STREAM); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(ANSWER);
  });
  redis = await privateRedis();
  store = await fleetStore(redis.url);
  const dir = tempDir('aam-fleet-overlap-');
  writeFileSync(join(dir, 'aam.yaml'), config(upstream.url));
  gw = await startGateway({ configPath: join(dir, 'aam.yaml'), dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_LOG_LEVEL: 'error' } });
  url = `http://127.0.0.1:${gw.port}`;
});

after(async () => {
  redis?.resume();
  await gw?.close();
  await upstream?.close();
  await store?.drop();
  await redis?.stop();
});

test('a request the admission refuses reaches no upstream and is answered as one process answers it', async () => {
  const key = (await gw.rt.keyBook.create('spender')).secret;
  received = [];
  assert.equal((await call(key, 'priced')).status, 200);
  assert.deepEqual(received, [{ model: 'm-priced', stream: false }]);
  const refused = await call(key, 'priced');
  const refusedStream = await call(key, 'priced', { stream: true });
  assert.equal(refused.status, 429);
  assert.equal(refusedStream.status, 429);
  assert.equal(received.length, 1, 'the refused calls (whole and streamed) were built ahead but never sent');

  const one = await startTestGateway(config(upstream.url));
  try {
    const k = one.key('spender');
    const post = (extra: Record<string, unknown> = {}) => fetch(`${one.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'priced', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });
    assert.equal((await post()).status, 200);
    const embedded = await post();
    const embeddedStream = await post({ stream: true });
    assert.equal(embedded.status, 429);
    assert.equal(refusal(refused.body), refusal(await embedded.text()));
    assert.equal(refusal(refusedStream.body), refusal(await embeddedStream.text()));
  } finally { await one.close(); }
});

test('a stalled admission holds the call: nothing is sent upstream until Redis answers', async () => {
  const key = (await gw.rt.keyBook.create('other')).secret;
  assert.equal((await call(key, 'streamed', { stream: true })).status, 200); // the script is loaded, the connection warm
  received = [];
  redis.pause();
  const seen: { answered?: { status: number; body: string } } = {};
  let answer: Promise<unknown>;
  try {
    answer = call(key, 'streamed', { stream: true }).then((r) => { seen.answered = r; });
    // Well inside the connection's 1 s command timeout: the admission is in flight, stalled.
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(received, [], 'no upstream request while the admission is unanswered');
    assert.equal(seen.answered, undefined);
  } finally { redis.resume(); }
  await answer;
  const done = seen.answered as { status: number; body: string } | undefined;
  assert.equal(done?.status, 200, done?.body);
  assert.match(done?.body ?? '', /data: \[DONE\]/);
  assert.deepEqual(received, [{ model: 'm-stream', stream: true }]);
});

test('the request built ahead is the first target\'s: a fallback target gets its own', async () => {
  const key = (await gw.rt.keyBook.create('other')).secret;
  received = [];
  const r = await call(key, 'fallback');
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(received, [{ model: 'gone', stream: false }, { model: 'm-second', stream: false }]);
  received = [];
  const s = await call(key, 'fallback', { stream: true });
  assert.equal(s.status, 200, s.body);
  assert.deepEqual(received, [{ model: 'gone', stream: true }, { model: 'm-second', stream: true }]);
});

test('alone in flight, the admission script leaves before the upstream request is built ahead', async () => {
  const key = (await gw.rt.keyBook.create('other')).secret;
  assert.equal((await call(key, 'fallback')).status, 200); // the script is loaded, the connection warm
  const redisPort = Number(new URL(redis.url).port);
  const order: string[] = [];
  const write = Socket.prototype.write;
  const raw = openaiAdapter.rawChatRequest!;
  Socket.prototype.write = function (this: Socket, ...args: unknown[]) {
    if (this.remotePort === redisPort) order.push('admission written');
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof write;
  openaiAdapter.rawChatRequest = (...args) => { order.push('upstream request built'); return raw(...args); };
  try {
    const r = await call(key, 'fallback');
    assert.equal(r.status, 200, r.body);
  } finally {
    Socket.prototype.write = write;
    openaiAdapter.rawChatRequest = raw;
  }
  assert.deepEqual(order.slice(0, 2), ['admission written', 'upstream request built'], order.join(', '));
});
