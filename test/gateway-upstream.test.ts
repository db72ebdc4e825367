// The upstream client on its own (sendAttempt / sendStreamAttempt against a scripted node:http
// server): timeouts and their classification, client abort, error bodies, content-type check,
// streaming latency and backpressure, and that nothing (timer, abort listener) outlives an attempt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseConfigTexts } from '../src/config/load.ts';
import { compileProviders, compileRoutes, type Target } from '../src/gateway/routes.ts';
import { CallAbort, sendAttempt, sendStreamAttempt, type AttemptFailure } from '../src/gateway/upstream.ts';
import type { UpstreamRequest } from '../src/providers/types.ts';
import { doc, yaml } from './helpers/gateway.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MB = 1024 * 1024;

/** What the scripted server did for the last request. */
const seen = { requests: 0, aborted: false, written: 0, finished: false };
type Script = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
const scripts: Record<string, Script> = {
  '/json': (_q, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"hello":"wörld"}'); },
  '/json-chunked': async (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const s = Buffer.from('{"hello":"wörld"}');
    // Split inside the two-byte "ö": decoding must happen once, on the whole body.
    res.write(s.subarray(0, 12)); await sleep(20); res.end(s.subarray(12));
  },
  '/fail-429': (_q, res) => { res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '2' }); res.end('{"error":{"message":"slow down"}}'); },
  '/hang': () => { /* never answers */ },
  '/drip': async (_q, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 0; i < 40 && !res.destroyed; i++) { res.write(`data: {"i":${i}}\n\n`); await sleep(50); }
    res.end();
  },
  '/echo-head': (q, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ url: q.url, headers: q.headers })); },
  '/echo-head-2': (q, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ url: q.url, headers: q.headers })); },
  '/not-sse': (_q, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); },
  '/first-then-wait': async (_q, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: first\n\n');
    await sleep(600);
    if (!res.destroyed) res.end('data: second\n\n');
  },
  '/flood': async (_q, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const line = Buffer.from(`data: ${'x'.repeat(64 * 1024 - 8)}\n\n`);
    while (seen.written < 48 * MB && !res.destroyed) {
      seen.written += line.length;
      if (!res.write(line)) await new Promise<void>((r) => { const go = () => { res.off('drain', go); res.off('close', go); r(); }; res.on('drain', go); res.on('close', go); });
    }
    seen.finished = true;
    res.end();
  },
};

let server: Server;
let url = '';
before(async () => {
  server = createServer((req, res) => {
    seen.requests++;
    seen.aborted = false;
    res.on('close', () => { if (!res.writableFinished) seen.aborted = true; });
    req.resume();
    // The provider's baseUrl path (/base) prefixes every request path.
    const script = req.url?.startsWith('/base/') ? scripts[req.url.slice(5).split('?')[0]] : undefined;
    if (script) void script(req, res);
    else { res.writeHead(500); res.end(`no script for ${req.url}`); }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.closeAllConnections(); server.close(); });

function target(timeouts: Record<string, number> = {}): Target {
  const set = parseConfigTexts([{ file: 't.yaml', text: yaml(
    doc('Provider', 'p', { type: 'openai-compatible', baseUrl: `${url}/base`, timeouts }),
    doc('Model', 'm', { targets: [{ provider: 'p', model: 'x' }] }),
  ) }]);
  return compileRoutes(set, compileProviders(set, () => null)).get('m')!.targets[0];
}

const at = (path: string): UpstreamRequest => ({ method: 'GET', path, headers: {}, body: '' });
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('a complete answer is read whole and decoded once; nothing outlives the attempt', async () => {
  const ac = new CallAbort();
  const before = timers();
  for (const path of ['/json', '/json-chunked']) {
    const r = await sendAttempt(target(), at(path), { headers: {} }, ac);
    assert.ok(r.ok);
    assert.equal(r.text, '{"hello":"wörld"}');
    assert.equal(r.status, 200);
  }
  assert.equal(ac.inFlight, null, 'the finished attempt is no longer registered with the call');
  assert.equal(timers(), before, 'no timer left that keeps the process alive (the target\'s total-timeout clock is unref\'d and empty)');
});

test('a target reuses its last header merge only while every part is the same frozen object: each attempt sends its own headers, path and query', async () => {
  const t = target();
  const ac = new CallAbort();
  const NONE = Object.freeze({});
  const h1 = Object.freeze({ 'x-a': '1' });
  const send = async (headers: Readonly<Record<string, string>>, inj: { headers: Record<string, string>; query?: Record<string, string> }, path = '/echo-head', method: 'POST' | 'GET' = 'POST') => {
    const r = await sendAttempt(t, { method, path, headers, body: method === 'POST' ? '{}' : '' }, inj, ac);
    assert.ok(r.ok, JSON.stringify(r));
    return JSON.parse(r.text) as { url: string; headers: Record<string, string> };
  };
  let seenBy = await send(h1, { headers: NONE });
  assert.equal(seenBy.headers['x-a'], '1');
  assert.equal(seenBy.headers['content-type'], 'application/json', 'a POST without a content-type gets JSON\'s');
  assert.equal((await send(h1, { headers: NONE })).headers['x-a'], '1', 'the same parts: the same headers');
  // A credential's headers (not frozen: a rotation may change them) are merged each time.
  assert.equal((await send(h1, { headers: { authorization: 'Bearer one' } })).headers.authorization, 'Bearer one');
  assert.equal((await send(h1, { headers: { authorization: 'Bearer two' } })).headers.authorization, 'Bearer two');
  // The same object changed in place between attempts (it is not frozen): its new value goes.
  const rotating = { authorization: 'Bearer three' };
  assert.equal((await send(h1, { headers: rotating })).headers.authorization, 'Bearer three');
  rotating.authorization = 'Bearer four';
  assert.equal((await send(h1, { headers: rotating })).headers.authorization, 'Bearer four');
  seenBy = await send(h1, { headers: NONE });
  assert.equal(seenBy.headers.authorization, undefined, 'no credential header is left over from an attempt before');
  assert.equal((await send(Object.freeze({ 'x-a': '2' }), { headers: NONE })).headers['x-a'], '2', 'another frozen headers object');
  assert.equal((await send(h1, { headers: NONE }, '/echo-head-2')).url, '/base/echo-head-2', 'another path, the same headers');
  assert.equal((await send(h1, { headers: NONE, query: { k: 'v' } })).url, '/base/echo-head?k=v', 'an injected query');
  assert.equal((await send(h1, { headers: NONE })).url, '/base/echo-head');
  assert.equal((await send(h1, { headers: NONE }, '/echo-head', 'GET')).headers['content-type'], undefined, 'another method, the same parts: no JSON content-type on a GET');
});

test('attempts on one target share its total-timeout clock: each times out at its own deadline, an answered one never', async () => {
  const t = target({ total_ms: 1000 });
  const t0 = Date.now();
  const hang1 = sendAttempt(t, at('/hang'), { headers: {} }, new CallAbort());
  await sleep(200);
  // Between two hanging attempts on the clock: it answers and leaves the middle of the list.
  const answered = sendAttempt(t, at('/json-chunked'), { headers: {} }, new CallAbort());
  const hang2 = sendAttempt(t, at('/hang'), { headers: {} }, new CallAbort());
  const a = await answered;
  assert.ok(a.ok, JSON.stringify(a));
  const r1 = await hang1 as AttemptFailure;
  assert.equal(r1.code, 'upstream_timeout');
  assert.match(r1.message, /timed out \(TimeoutError\)$/, 'names the timeout, not DOMException\'s legacy code 23');
  assert.ok(Date.now() - t0 >= 990, 'not before its deadline');
  const r2 = await hang2 as AttemptFailure;
  assert.equal(r2.code, 'upstream_timeout');
  assert.ok(Date.now() - t0 >= 1190, 'the later attempt keeps its own, later deadline');
  // The clock emptied; a new attempt arms it again.
  const t1 = Date.now();
  const r3 = await sendAttempt(t, at('/hang'), { headers: {} }, new CallAbort()) as AttemptFailure;
  assert.equal(r3.code, 'upstream_timeout');
  assert.ok(Date.now() - t1 >= 990 && Date.now() - t1 < 10_000);
});

test('an error status is classified with the body message and retry-after', async () => {
  const r = await sendAttempt(target(), at('/fail-429'), { headers: {} }, new CallAbort());
  assert.ok(!r.ok);
  assert.equal(r.status, 429);
  assert.equal(r.next, 'retry');
  assert.equal(r.retryAfterMs, 2000);
  assert.match(r.message, /p\/x returned 429: slow down/);
});

test('first-byte and total timeouts are 504 upstream_timeout; a connection failure is 502', async () => {
  let r = await sendAttempt(target({ first_byte_ms: 150 }), at('/hang'), { headers: {} }, new CallAbort()) as AttemptFailure;
  assert.equal(r.ok, false);
  assert.equal(r.clientStatus, 504);
  assert.equal(r.code, 'upstream_timeout');
  // The stream keeps dripping (never idle for first_byte_ms) but takes longer than total_ms.
  const t0 = Date.now();
  const s = await sendStreamAttempt(target({ total_ms: 400 }), at('/drip'), { headers: {} }, new CallAbort());
  assert.ok(s.ok);
  await assert.rejects(async () => { for await (const _ of s.body) { /* read on */ } }, (e: Error) => e.name === 'TimeoutError');
  assert.ok(Date.now() - t0 < 1500, 'total timeout cuts a dripping stream');
  await sleep(50);
  assert.equal(seen.aborted, true, 'upstream request aborted at the total timeout');
  r = await sendAttempt(target({ total_ms: 100 }), at('/hang'), { headers: {} }, new CallAbort()) as AttemptFailure;
  assert.equal(r.clientStatus, 504);
  const closed = { ...target(), provider: { ...target().provider, origin: 'http://127.0.0.1:1', dispatcher: null } };
  r = await sendAttempt(closed, at('/json'), { headers: {} }, new CallAbort()) as AttemptFailure;
  assert.equal(r.clientStatus, 502);
  assert.match(r.message, /connection failed \(ECONNREFUSED\)/);
});

test('client abort: before the call it is not sent; during a stream it aborts the upstream and the reader', async () => {
  const pre = new CallAbort();
  pre.abort();
  const sent = seen.requests;
  const r = await sendAttempt(target(), at('/json'), { headers: {} }, pre);
  assert.equal(r.ok, false);
  assert.equal(seen.requests, sent, 'nothing was sent');
  const ac = new CallAbort();
  const s = await sendStreamAttempt(target(), at('/first-then-wait'), { headers: {} }, ac);
  assert.ok(s.ok);
  assert.equal(String((await s.body.next()).value), 'data: first\n\n');
  const pending = s.body.next();
  ac.abort();
  await assert.rejects(pending, (e: Error) => e.name === 'AbortError');
  await sleep(50);
  assert.equal(seen.aborted, true);
  assert.equal(ac.inFlight, null);
});

test('a streamed answer must be text/event-stream', async () => {
  const r = await sendStreamAttempt(target(), at('/not-sse'), { headers: {} }, new CallAbort());
  assert.ok(!r.ok);
  assert.match(r.message, /expected text\/event-stream, got application\/json/);
});

test('stream chunks are delivered as they arrive, not at the end', async () => {
  const t0 = Date.now();
  const s = await sendStreamAttempt(target(), at('/first-then-wait'), { headers: {} }, new CallAbort());
  assert.ok(s.ok);
  const first = await s.body.next();
  assert.equal(String(first.value), 'data: first\n\n');
  assert.ok(Date.now() - t0 < 400, `first chunk after ${Date.now() - t0} ms; the server waits 600 ms before the rest`);
  let rest = '';
  for await (const c of s.body) rest += Buffer.concat([c].flat()).toString();
  assert.equal(rest, 'data: second\n\n');
});

test('backpressure: an unread stream stops the upstream instead of buffering it; reading resumes it intact', async () => {
  seen.written = 0;
  seen.finished = false;
  const s = await sendStreamAttempt(target(), at('/flood'), { headers: {} }, new CallAbort());
  assert.ok(s.ok);
  await sleep(400);
  assert.equal(seen.finished, false, `the server could write all ${seen.written} bytes while nobody read`);
  assert.ok(seen.written < 32 * MB, `${seen.written} bytes written while nobody read`);
  let n = 0;
  // A read gives one chunk or the chunks that waited, unjoined.
  for await (const c of s.body) n += Buffer.isBuffer(c) ? c.length : c.reduce((sum, b) => sum + b.length, 0);
  assert.equal(n, 48 * MB);
  assert.equal(seen.finished, true);
});
