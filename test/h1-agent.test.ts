// src/lib/h1-agent.ts, the model plane's HTTP/1.1 client, over real sockets: node:http and node:https
// (a private CA made with openssl) servers, and raw node:net servers for split, malformed and
// racy answers. Framing (content-length, chunked with trailers, 1xx, HEAD/204, until close) at
// every byte boundary; keep-alive reuse, the server's hint, connection: close, the stale-socket
// retry and its limit; the connect, headers and body timeouts with undici's codes (so networkFailure
// says 504 timed out); abort, pause/resume; the bounds (head size, chunk size, status line); the
// connection cap and its FIFO; close()/destroy() with requests in flight and the agent's own clock.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createNet, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createHttp, type Server as HttpServer, type IncomingHttpHeaders } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { readFileSync } from 'node:fs';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { H1Agent, MAX_HEAD, TICK_MS } from '../src/lib/h1-agent.ts';
import { networkFailure } from '../src/gateway/upstream.ts';
import { tempDir } from './helpers/temp.ts';
import { testCa, signedBy } from './helpers/test-ca.ts';

const closers: Array<() => unknown> = [];
after(async () => { for (const c of closers.reverse()) await c(); });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function agent(o: Partial<ConstructorParameters<typeof H1Agent>[0]> = {}): H1Agent {
  const a = new H1Agent({ connectMs: 2000, keepAliveTimeout: 30_000, connections: 256, ...o });
  closers.push(() => a.destroy());
  return a;
}

interface Result {
  status: number; headers: IncomingHttpHeaders; body: Buffer; trailers: Record<string, string | string[]>; chunks: number;
  error: (Error & { code?: string }) | null; interim: number[];
}

type Opts = Partial<Dispatcher.DispatchOptions> & { origin: string };

/** One request; `on` sees each event (and the controller) as it happens. */
function send(a: H1Agent, opts: Opts, on: { data?(c: Dispatcher.DispatchController, chunk: Buffer, n: number): void; start?(c: Dispatcher.DispatchController): void } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const res: Result = { status: 0, headers: {}, body: Buffer.alloc(0), trailers: {}, chunks: 0, error: null, interim: [] };
    const parts: Buffer[] = [];
    let settled = false;
    const done = (): void => { if (settled) throw new Error('settled twice'); settled = true; res.body = Buffer.concat(parts); resolve(res); };
    a.dispatch({ path: '/', method: 'GET', ...opts } as Dispatcher.DispatchOptions, {
      onRequestStart(c) { on.start?.(c); },
      onResponseStart(_c, status, headers) { if (status < 200) res.interim.push(status); else { res.status = status; res.headers = headers; } },
      onResponseData(c, chunk) { parts.push(Buffer.from(chunk)); res.chunks++; on.data?.(c, chunk, res.chunks); },
      onResponseEnd(_c, trailers) { res.trailers = trailers as Record<string, string | string[]>; done(); },
      onResponseError(_c, err) { res.error = err; done(); },
    });
  });
}

async function listen(s: NetServer | HttpServer): Promise<string> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => { (s as HttpServer).closeAllConnections?.(); s.close(() => r(undefined)); }));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/**
 * A raw server: `answer(socket, request head, n)` is called for each request head it reads on a
 * connection (n counts the requests on that connection, from 1). Sockets are tracked for the test.
 */
async function raw(answer: (s: Socket, head: string, n: number) => void): Promise<{ origin: string; conns: Socket[]; heads: string[] }> {
  const conns: Socket[] = [];
  const heads: string[] = [];
  const server = createNet((s) => {
    conns.push(s);
    // Nagle off: a part written while the one before is unacknowledged waited for the client's
    // delayed ACK (~40 ms on loopback): 8.5 s of each split-at-every-byte test's ~200 requests.
    s.setNoDelay(true);
    s.on('error', () => undefined);
    let buf = '';
    let n = 0;
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, i);
        const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < i + 4 + len) return;
        buf = buf.slice(i + 4 + len);
        heads.push(head);
        answer(s, head, ++n);
      }
    });
  });
  const origin = await listen(server);
  // After listen's closer, so it runs first (closers run in reverse): server.close() waits for every
  // connection, and one from an agent made before this server stayed idle ~27 s (its keep-alive).
  closers.push(() => { for (const c of conns) c.destroy(); });
  return { origin, conns, heads };
}

/**
 * Writes `parts` with a pause between them, so that the client reads them apart (8 ms: at load 17
 * none of 366 splits reached the client in one read; 4 ms: 1 to 3 of 183 did).
 */
async function writeApart(s: Socket, parts: Array<string | Buffer>, gap = 8): Promise<void> {
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) await sleep(gap);
    if (!s.destroyed) s.write(parts[i]);
  }
}

const target = { label: 'p/m' } as unknown as Parameters<typeof networkFailure>[0];

// ---- framing --------------------------------------------------------------------------------

test('content-length: the body split at every byte boundary, on one kept-alive socket', async () => {
  const body = '{"id":"x","choices":[{"message":{"content":"héllo"}}]}';
  const whole = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nx-Mixed-Case:  spaced \r\n\r\n${body}`;
  const bytes = Buffer.from(whole);
  const srv = await raw((s, _h, n) => { void writeApart(s, [bytes.subarray(0, n), bytes.subarray(n)]); });
  const a = agent();
  for (let i = 1; i < bytes.length; i++) {
    const r = await send(a, { origin: srv.origin, method: 'POST', body: '{}' });
    assert.equal(r.error, null, `split at ${i}: ${r.error?.message}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), body, `split at ${i}`);
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['x-mixed-case'], 'spaced');
  }
  assert.equal(srv.conns.length, 1, 'every request on the same socket');
});

test('header names in any case: a known name (node sends Date, Connection, Keep-Alive in capitals) and its near misses are what a slice lower-cased gives', async () => {
  const lines = ['Date: d', 'CONTENT-TYPE: text/plain', 'Cache-Control: no-cache', 'X-Request-Id: r1', 'Vary: a', 'vary: b', 'Set-Cookie: c=1',
    // Near misses of known names (same length, one character off, '_' for '-', a Latin-1 letter): their own names.
    'Content_Type: u', 'Content\rType: r', 'Content-Typf: f', 'Dat\u00c9: e', 'Server1: s', 'Etag0: x', 'X-Request-Ie: i', 'Keep-Alive: max=3, Timeout=1', 'Connection: keep-alive'];
  const srv = await raw((s) => { s.write(Buffer.from(`HTTP/1.1 200 OK\r\n${lines.join('\r\n')}\r\ncontent-length: 2\r\n\r\nok`, 'latin1')); });
  const a = agent();
  const r = await send(a, { origin: srv.origin });
  assert.equal(r.error, null);
  const want: Record<string, string | string[]> = {};
  for (const l of [...lines, 'content-length: 2']) {
    const c = l.indexOf(':');
    const name = l.slice(0, c).toLowerCase();
    const v = l.slice(c + 2);
    const old = want[name];
    want[name] = old === undefined ? v : Array.isArray(old) ? [...old, v] : [old, v];
  }
  assert.deepEqual(r.headers, want);
  await sleep(50);
  assert.equal(a.sockets, 0, 'Keep-Alive\'s Timeout=1, in any case, leaves no time to reuse the socket: closed');
});

test('chunked with extensions and trailers, split at every byte boundary', async () => {
  const whole = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n'
    + '5;ext=1\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\nA \t\u00a0;e\r\n0123456789\r\n3\r\n!?.\r\n0\r\nx-trailer: t1\r\nx-other: t2\r\n\r\n';
  const bytes = Buffer.from(whole, 'latin1'); // the NBSP (whitespace before an extension) as one byte
  const srv = await raw((s, _h, n) => { void writeApart(s, [bytes.subarray(0, n), bytes.subarray(n)]); });
  const a = agent();
  for (let i = 1; i < bytes.length; i++) {
    const r = await send(a, { origin: srv.origin });
    assert.equal(r.error, null, `split at ${i}: ${r.error?.message}`);
    assert.equal(r.body.toString(), 'hello abcdefghijklmnopqrstuvwxy0123456789!?.', `split at ${i}`);
    assert.deepEqual(r.trailers, { 'x-trailer': 't1', 'x-other': 't2' }, `split at ${i}`);
  }
  assert.equal(srv.conns.length, 1, 'every request on the same socket');
});

test('1xx answers are skipped (split anywhere), the final answer is the one given', async () => {
  const whole = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok';
  const bytes = Buffer.from(whole);
  const srv = await raw((s, _h, n) => { void writeApart(s, [bytes.subarray(0, n), bytes.subarray(n)]); });
  const a = agent();
  for (let i = 1; i < bytes.length; i++) {
    const r = await send(a, { origin: srv.origin });
    assert.equal(r.error, null, `split at ${i}: ${r.error?.message}`);
    assert.equal(r.status, 201);
    assert.equal(r.body.toString(), 'ok');
    assert.equal(r.headers.link, undefined, 'headers of the final answer only');
  }
  assert.equal(srv.conns.length, 1);
});

test('HEAD, 204 and 304 have no body; a body without length runs until close', async () => {
  const srv = await raw((s, head) => {
    if (head.startsWith('HEAD')) s.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n');
    else if (head.includes('/204')) s.write('HTTP/1.1 204 No Content\r\n\r\n');
    else if (head.includes('/304')) s.write('HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n');
    else s.end('HTTP/1.1 200 OK\r\n\r\nuntil close');
  });
  const a = agent();
  assert.equal((await send(a, { origin: srv.origin, method: 'HEAD' })).body.length, 0);
  assert.equal((await send(a, { origin: srv.origin, path: '/204' })).status, 204);
  assert.equal((await send(a, { origin: srv.origin, path: '/304' })).status, 304);
  assert.equal(srv.conns.length, 1, 'bodiless answers leave the socket reusable');
  const r = await send(a, { origin: srv.origin, path: '/close' });
  assert.equal(r.error, null);
  assert.equal(r.body.toString(), 'until close');
});

test('the request: one head with host and content-length, a string or Buffer body, framing headers of our own', async () => {
  const got: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const server = createHttp((req, res) => {
    let b = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { b += c; });
    req.on('end', () => { got.push({ headers: req.headers, body: b }); res.end('ok'); });
  });
  const origin = await listen(server);
  const a = agent();
  await send(a, { origin, method: 'POST', path: '/v1/x?y=1', headers: Object.freeze({ 'x-a': '1', 'Content-Length': '999', connection: 'close' }), body: 'héllo' });
  await send(a, { origin, method: 'POST', headers: { 'x-b': ['1', '2'] }, body: Buffer.from('bytes') });
  assert.equal(got[0].body, 'héllo');
  assert.equal(got[0].headers['content-length'], String(Buffer.byteLength('héllo')));
  assert.equal(got[0].headers.host, new URL(origin).host);
  assert.equal(got[0].headers['x-a'], '1');
  assert.equal(got[1].body, 'bytes');
  assert.equal(got[1].headers['x-b'], '1, 2');
  assert.throws(() => a.dispatch({ origin, path: '/', method: 'GET', headers: { 'x-bad': 'a\r\nb' } }, {}), { code: 'UND_ERR_INVALID_ARG' });
  assert.throws(() => a.dispatch({ origin, path: 'no-slash', method: 'GET' }, {}), { code: 'UND_ERR_INVALID_ARG' });
});

test('the request\'s bytes are pinned: header order and values, framing names of any case dropped, arrays, a given host, Latin-1 values, a frozen head reused', async () => {
  let bytes = '';
  const server = createNet((s) => {
    s.on('error', () => undefined);
    s.on('data', (d) => {
      bytes += d.toString('latin1');
      // Each request here is answered once its whole body is in.
      for (;;) {
        const i = bytes.indexOf('\r\n\r\n', answered);
        if (i < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(bytes.slice(answered, i))?.[1] ?? 0);
        if (bytes.length < i + 4 + len) return;
        answered = i + 4 + len;
        s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
    });
  });
  let answered = 0;
  const origin = await listen(server);
  const host = new URL(origin).host;
  const a = agent();
  const frozen = Object.freeze({ 'content-type': 'application/json', 'x-n': 7 as unknown as string });
  const sent: string[] = [];
  const one = async (opts: Omit<Opts, 'origin'>, want: string): Promise<void> => {
    const from = bytes.length;
    const r = await send(a, { origin, headersTimeout: 5000, ...opts }); // bytes short of the content-length: an error, not a hang
    assert.equal(r.status, 200, String(r.error));
    sent.push(bytes.slice(from));
    assert.equal(bytes.slice(from), want);
  };
  // A2A's shape: aam's headers, a credential's, a Buffer body (head and body, one request).
  await one({ method: 'POST', path: '/a2a', headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'a2a-version': '1.0', traceparent: '00-aa-bb-01', 'x-aam-delegation': 'v1.p.s', 'x-aam-request-id': 'req_1', 'x-aam-caller': 'spiffe://t/a', authorization: 'Bearer k' }, body: Buffer.from('{"jsonrpc":"2.0"}') },
    `POST /a2a HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\naccept: text/event-stream\r\na2a-version: 1.0\r\ntraceparent: 00-aa-bb-01\r\nx-aam-delegation: v1.p.s\r\nx-aam-request-id: req_1\r\nx-aam-caller: spiffe://t/a\r\nauthorization: Bearer k\r\ncontent-length: 17\r\n\r\n{"jsonrpc":"2.0"}`);
  // Framing names in any case are ours and dropped; names as long as one are kept; null and undefined skipped; arrays repeat the name; a number is its text.
  await one({ method: 'POST', path: '/v1/x?y=1', headers: { 'Content-Length': '999', 'TRANSFER-ENCODING': 'chunked', Connection: 'close', 'keep-Alive': '5', UPGRADE: 'h2c', 'x-forwarded-by': 'p', 'x-connect1': 'q', 'x-trace': 'r', 'X-Mixed': 'M', 'x-null': null as unknown as string, 'x-undef': undefined as unknown as string, 'x-arr': ['1', '2'], 'x-num': 3 as unknown as string }, body: 'héllo' },
    `POST /v1/x?y=1 HTTP/1.1\r\nhost: ${host}\r\nx-forwarded-by: p\r\nx-connect1: q\r\nx-trace: r\r\nX-Mixed: M\r\nx-arr: 1\r\nx-arr: 2\r\nx-num: 3\r\ncontent-length: 6\r\n\r\nh\u00c3\u00a9llo`);
  // A host given is sent as given, with no host line of ours; no body on a GET: no content-length; an empty POST: 0.
  await one({ method: 'GET', path: '/', headers: { Host: 'example.test', 'x-a': '' } }, 'GET / HTTP/1.1\r\nHost: example.test\r\nx-a: \r\n\r\n');
  await one({ method: 'POST', path: '/', headers: undefined }, `POST / HTTP/1.1\r\nhost: ${host}\r\ncontent-length: 0\r\n\r\n`);
  // A Latin-1 header value goes as Latin-1 bytes; the body (string or Buffer) as UTF-8 after it.
  await one({ method: 'POST', path: '/', headers: { 'x-l': 'caf\u00e9' }, body: 'é' }, `POST / HTTP/1.1\r\nhost: ${host}\r\nx-l: caf\u00e9\r\ncontent-length: 2\r\n\r\n\u00c3\u00a9`);
  await one({ method: 'POST', path: '/', headers: { 'x-l': 'caf\u00e9' }, body: Buffer.from('é') }, `POST / HTTP/1.1\r\nhost: ${host}\r\nx-l: caf\u00e9\r\ncontent-length: 2\r\n\r\n\u00c3\u00a9`);
  // A frozen header object: the same head twice (serialized once).
  for (let i = 0; i < 2; i++) await one({ method: 'POST', path: '/f', headers: frozen, body: '{}' }, `POST /f HTTP/1.1\r\nhost: ${host}\r\ncontent-type: application/json\r\nx-n: 7\r\ncontent-length: 2\r\n\r\n{}`);
  // A large Buffer body (past what is copied behind the head) after a Latin-1 head.
  const big = Buffer.alloc(40_000, 'é');
  await one({ method: 'PUT', path: '/big', headers: { 'x-l': '\u00ff' }, body: big }, `PUT /big HTTP/1.1\r\nhost: ${host}\r\nx-l: \u00ff\r\ncontent-length: 40000\r\n\r\n${big.toString('latin1')}`);
  // A head alone goes as UTF-8, as its one string did (a Latin-1 value is two bytes); a frozen head is encoded per encoding.
  const latin = Object.freeze({ 'x-l': 'caf\u00e9' });
  await one({ method: 'GET', path: '/u', headers: latin }, 'GET /u HTTP/1.1\r\nhost: ' + host + '\r\nx-l: caf\u00c3\u00a9\r\n\r\n');
  await one({ method: 'POST', path: '/u', headers: latin, body: 'x' }, 'POST /u HTTP/1.1\r\nhost: ' + host + '\r\nx-l: caf\u00e9\r\ncontent-length: 1\r\n\r\nx');
  await one({ method: 'GET', path: '/u', headers: latin }, 'GET /u HTTP/1.1\r\nhost: ' + host + '\r\nx-l: caf\u00c3\u00a9\r\n\r\n');
  // A head longer than the writer's first buffer (4 KiB), then a short one after it.
  const long = 'v'.repeat(70_000);
  await one({ method: 'POST', path: '/long', headers: { 'x-long': long }, body: 'b' }, `POST /long HTTP/1.1\r\nhost: ${host}\r\nx-long: ${long}\r\ncontent-length: 1\r\n\r\nb`);
  await one({ method: 'POST', path: '/s', headers: { 'x-s': 's' }, body: 'b' }, `POST /s HTTP/1.1\r\nhost: ${host}\r\nx-s: s\r\ncontent-length: 1\r\n\r\nb`);
  // The content-length's digits (written as bytes) at every count of them, the last digit 0 and 9.
  for (const n of [9, 10, 99, 100, 909, 1000, 9999, 10_000, 99_990, 123_456]) {
    const b = Buffer.alloc(n, 'x');
    await one({ method: 'POST', path: '/n', headers: { 'x-n': String(n) }, body: b }, `POST /n HTTP/1.1\r\nhost: ${host}\r\nx-n: ${n}\r\ncontent-length: ${n}\r\n\r\n${b.toString('latin1')}`);
  }
  // A path with Latin-1 characters: Latin-1 bytes before a body, UTF-8 in a head alone (as it was written when it was one string).
  await one({ method: 'POST', path: '/caf\u00e9', headers: { 'x-p': 'p' }, body: 'b' }, `POST /caf\u00e9 HTTP/1.1\r\nhost: ${host}\r\nx-p: p\r\ncontent-length: 1\r\n\r\nb`);
  await one({ method: 'GET', path: '/caf\u00e9', headers: { 'x-p': 'p' } }, `GET /caf\u00c3\u00a9 HTTP/1.1\r\nhost: ${host}\r\nx-p: p\r\n\r\n`);
  assert.equal(sent.length, 26);
  // A value with a line break or NUL, or a name that is not a token, is refused before anything is sent (also in an array).
  for (const headers of [{ 'x-bad': 'a\nb' }, { 'x-bad': ['ok', 'a\0b'] }, { 'bad name': 'v' }, { 'x-bad': 'a\rb' }]) {
    assert.throws(() => a.dispatch({ origin, path: '/', method: 'GET', headers } as Dispatcher.DispatchOptions, {}), { code: 'UND_ERR_INVALID_ARG' });
  }
  // With a body (the head as Latin-1: a short value is checked as its bytes are stored, a long one
  // by the RegExp), at either end of a value, on both sides of the length where that changes.
  for (const len of [1, 2, 63, 64, 65, 300]) {
    for (const bad of ['\r', '\n', '\0']) {
      for (const value of [bad + 'v'.repeat(len - 1), 'v'.repeat(len - 1) + bad]) {
        assert.throws(() => a.dispatch({ origin, path: '/', method: 'POST', headers: { 'x-ok': 'fine', 'x-bad': value }, body: 'b' }, {}), { code: 'UND_ERR_INVALID_ARG', message: 'invalid x-bad header value' }, JSON.stringify(value));
      }
    }
  }
  // Nothing of a refused request was sent, and the next one's head is whole.
  await one({ method: 'POST', path: '/after', headers: { 'x-v': 'v'.repeat(64), 'x-w': 'w'.repeat(65) }, body: 'b' }, `POST /after HTTP/1.1\r\nhost: ${host}\r\nx-v: ${'v'.repeat(64)}\r\nx-w: ${'w'.repeat(65)}\r\ncontent-length: 1\r\n\r\nb`);
});

test('a request\'s head is written as bytes: dispatching an A2A call (eight headers, a Buffer body) makes well under 1 KB of garbage', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  // No connection ever opens (connections: 0): each request is built and queued, nothing else.
  const a = agent({ connections: 0 });
  const body = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"SendStreamingMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hello"}]}}}');
  const headers = (i: number) => ({ 'content-type': 'application/json', accept: 'text/event-stream', 'a2a-version': '1.0', traceparent: `00-0af7651916cd43dd8448eb211c8031${10 + (i % 90)}-b7ad6b7169203331-01`,
    'x-aam-delegation': `v1.eyJpZCI6ImRsZ18wMTIzNDU2Nzg5YWJjZGVmMDEyMyIsImhvcCI6MSwiY2hhaW4iOlsiY2FsbGVyIiwiZWNobyJdLCJwYXJlbnQiOiJyZXEiLCJjYWxsZWUiOiJlY2hvIn0.sig${i % 10}`,
    'x-aam-request-id': `req_0123456789abcdef${i % 10}`, 'x-aam-caller': 'spiffe://bench/agent/caller', authorization: 'Bearer echo-secret-token-0123456789' });
  const hs = Array.from({ length: 64 }, (_, i) => headers(i));
  const handler = {};
  const N = 2000;
  for (let i = 0; i < 5000; i++) a.dispatch({ origin: 'http://127.0.0.1:9', path: '/a2a', method: 'POST', headers: hs[i & 63], body }, handler); // warm
  const per: number[] = [];
  for (let round = 0; round < 3; round++) {
    gc();
    const before = getHeapStatistics().used_heap_size;
    for (let i = 0; i < N; i++) a.dispatch({ origin: 'http://127.0.0.1:9', path: '/a2a', method: 'POST', headers: hs[i & 63], body }, handler);
    per.push((getHeapStatistics().used_heap_size - before) / N);
  }
  void a.destroy();
  // About 0.4-0.5 KB (the options, the request, its head's Buffer, its queue slot); with the head
  // built as strings (a line each, then joined) about 1.2-1.3 KB, before the write flattened it.
  const least = Math.min(...per);
  assert.ok(least < 800, `${least.toFixed(0)} bytes per request (rounds: ${per.map((p) => p.toFixed(0)).join(', ')})`);
});

// ---- connections ----------------------------------------------------------------------------

test('keep-alive: sequential requests reuse one socket (node:http server)', async () => {
  const ports: number[] = [];
  const server = createHttp((req, res) => { ports.push(req.socket.remotePort!); res.end('x'.repeat(100)); });
  const origin = await listen(server);
  const a = agent();
  for (let i = 0; i < 5; i++) assert.equal((await send(a, { origin })).body.length, 100);
  assert.equal(new Set(ports).size, 1, 'one client socket');
  assert.equal(a.sockets, 1);
});

test('https with a private CA: SNI, reuse, and the CA is required', async () => {
  const dir = tempDir('aam-h1-');
  const ca = testCa(dir, 'h1');
  const cert = signedBy(ca, 'localhost', 'localhost', 'DNS:localhost');
  const ports: number[] = [];
  let sni = '';
  const server = createHttps({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => {
    ports.push(req.socket.remotePort!);
    sni = (req.socket as unknown as { servername: string }).servername;
    res.end('secure');
  });
  const port = new URL(await listen(server)).port;
  const origin = `https://localhost:${port}`;
  const a = agent({ tls: { ca: readFileSync(ca.ca) } });
  for (let i = 0; i < 3; i++) {
    const r = await send(a, { origin });
    assert.equal(r.error, null, r.error?.message);
    assert.equal(r.body.toString(), 'secure');
  }
  assert.equal(sni, 'localhost');
  assert.equal(new Set(ports).size, 1);
  const untrusting = agent();
  const r = await send(untrusting, { origin });
  assert.ok(r.error, 'a certificate the system CAs do not sign is refused');
  assert.equal(networkFailure(target, r.error).status, 502);
});

test('the server\'s keep-alive hint: its idle socket is closed 1 s before the hint; timeout=1 is not reused', async () => {
  const srv = await raw((s, head) => {
    const hint = /x-hint: (\d+)/.exec(head)?.[1];
    s.write(`HTTP/1.1 200 OK\r\ncontent-length: 1\r\n${hint ? `keep-alive: timeout=${hint}\r\n` : ''}\r\nx`);
  });
  const a = agent();
  await send(a, { origin: srv.origin, headers: { 'x-hint': '1' } });
  await sleep(50);
  assert.equal(a.sockets, 0, 'timeout=1 leaves no time to reuse it: closed');
  await send(a, { origin: srv.origin, headers: { 'x-hint': '2' } });
  assert.equal(a.sockets, 1);
  await sleep(1000 + 3 * TICK_MS);
  assert.equal(a.sockets, 0, 'closed 1 s before the server\'s 2 s');
  await send(a, { origin: srv.origin });
  await sleep(1000 + 3 * TICK_MS);
  assert.equal(a.sockets, 1, 'without a hint: kept for keepAliveTimeout (30 s)');
  const short = agent({ keepAliveTimeout: 300 });
  await send(short, { origin: srv.origin });
  await sleep(300 + 3 * TICK_MS);
  assert.equal(short.sockets, 0, 'keepAliveTimeout');
});

test('connection: close (and HTTP/1.0) answers are not reused', async () => {
  const srv = await raw((s, head) => {
    if (head.includes('/10')) s.write('HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx');
    else s.write('HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx');
  });
  const a = agent();
  await send(a, { origin: srv.origin });
  await send(a, { origin: srv.origin });
  await send(a, { origin: srv.origin, path: '/10' });
  await send(a, { origin: srv.origin, path: '/10' });
  assert.equal(srv.conns.length, 4);
  await sleep(20);
  assert.equal(a.sockets, 0);
});

test('stale socket: a server that closed an idle socket, or closes it on the next request before answering: that request succeeds on a new one', async () => {
  const srv = await raw((s, _h, n) => {
    if (n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    else s.destroy(); // the keep-alive race: the request arrived as the server gave up the socket
  });
  const a = agent();
  assert.equal((await send(a, { origin: srv.origin })).error, null);
  const r = await send(a, { origin: srv.origin });
  assert.equal(r.error, null, r.error?.message);
  assert.equal(r.body.toString(), 'ok');
  assert.equal(srv.conns.length, 2);
  assert.equal(srv.heads.length, 3, 'sent twice: once on the stale socket, once on a fresh one');
  // The server closes the idle socket itself: the next request goes on a new one.
  srv.conns[1].destroy();
  await sleep(50);
  assert.equal((await send(a, { origin: srv.origin })).error, null);
  assert.equal(srv.conns.length, 3);
});

test('stale socket: a request whose answer had started is not retried; a fresh socket\'s failure is not retried', async () => {
  const srv = await raw((s, head, n) => {
    if (head.includes('/fresh')) { s.destroy(); return; }
    if (n === 1) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    else { s.write('HTTP/1.1 200 OK\r\ncontent-le'); setTimeout(() => s.destroy(), 20); }
  });
  const a = agent();
  await send(a, { origin: srv.origin });
  const r = await send(a, { origin: srv.origin });
  assert.equal(r.error?.code, 'UND_ERR_SOCKET');
  assert.equal(srv.heads.length, 2, 'not sent again');
  assert.equal(networkFailure(target, r.error).message, 'p/m connection failed (UND_ERR_SOCKET)');
  const before = srv.heads.length;
  const f = await send(agent(), { origin: srv.origin, path: '/fresh' });
  assert.equal(f.error?.code, 'UND_ERR_SOCKET');
  assert.equal(srv.heads.length - before, 1, 'a first-use socket closing is an answer, not a race');
});

test('the connection cap: at most `connections` sockets; the others wait in FIFO order', async () => {
  const order: string[] = [];
  const held: Array<() => void> = [];
  const server = createHttp((req, res) => { order.push(req.url!); held.push(() => res.end(req.url)); });
  const origin = await listen(server);
  const a = agent({ connections: 2 });
  const all = [1, 2, 3, 4, 5, 6].map((i) => send(a, { origin, path: `/${i}` }));
  while (held.length < 2) await sleep(5);
  await sleep(50);
  assert.equal(held.length, 2, 'two in flight');
  assert.equal(a.sockets, 2);
  while (order.length < 6) { held.shift()!(); await sleep(10); }
  held.splice(0).forEach((f) => f());
  const rs = await Promise.all(all);
  assert.deepEqual(order, ['/1', '/2', '/3', '/4', '/5', '/6']);
  assert.deepEqual(rs.map((r) => r.body.toString()), ['/1', '/2', '/3', '/4', '/5', '/6']);
  assert.equal(a.sockets, 2, 'the queued requests went on the same two sockets');
});

test('a queued request aborted before its turn is skipped', async () => {
  const held: Array<() => void> = [];
  const server = createHttp((req, res) => { held.push(() => res.end(req.url)); });
  const origin = await listen(server);
  const a = agent({ connections: 1 });
  const first = send(a, { origin, path: '/1' });
  const second = send(a, { origin, path: '/2' }, { start: (c) => setTimeout(() => c.abort(new Error('gone')), 20) });
  const third = send(a, { origin, path: '/3' });
  await sleep(60);
  held.shift()!();
  assert.equal((await second).error?.message, 'gone');
  while (held.length === 0) await sleep(5);
  held.shift()!();
  assert.equal((await first).body.toString(), '/1');
  assert.equal((await third).body.toString(), '/3');
});

// ---- timeouts -------------------------------------------------------------------------------

test('connect timeout (TCP accepted, TLS never answered): UND_ERR_CONNECT_TIMEOUT, 504 timed out', async () => {
  const srv = await raw(() => undefined);
  const a = agent({ connectMs: 300 });
  const t0 = performance.now();
  const r = await send(a, { origin: srv.origin.replace('http:', 'https:') });
  const took = performance.now() - t0;
  assert.equal(r.error?.code, 'UND_ERR_CONNECT_TIMEOUT');
  assert.ok(took >= 290 && took < 300 + 5 * TICK_MS + 500, `took ${took} ms`);
  const f = networkFailure(target, r.error);
  assert.equal(f.status, 504);
  assert.match(f.message, /timed out \(UND_ERR_CONNECT_TIMEOUT\)/);
  assert.equal(a.sockets, 0);
});

test('headers timeout: no answer within headersTimeout', async () => {
  const srv = await raw(() => undefined);
  const a = agent();
  const r = await send(a, { origin: srv.origin, headersTimeout: 300 });
  assert.equal(r.error?.code, 'UND_ERR_HEADERS_TIMEOUT');
  assert.equal(networkFailure(target, r.error).status, 504);
  assert.equal(srv.heads.length, 1, 'a timeout is not retried');
});

test('body timeout: between chunks, not in total; a paused reader does not time out', async () => {
  const srv = await raw((s, head) => {
    s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n');
    if (head.includes('/stall')) return;
    // A chunk every 250 ms for 1 s: slower in total than bodyTimeout, never between two.
    let i = 0;
    const t = setInterval(() => { if (++i === 4) { clearInterval(t); s.write('0\r\n\r\n'); } else s.write('1\r\nb\r\n'); }, 250);
  });
  const a = agent();
  const stalled = await send(a, { origin: srv.origin, path: '/stall', bodyTimeout: 300 });
  assert.equal(stalled.error?.code, 'UND_ERR_BODY_TIMEOUT');
  assert.equal(networkFailure(target, stalled.error).status, 504);
  const trickle = await send(a, { origin: srv.origin, bodyTimeout: 450 });
  assert.equal(trickle.error, null, trickle.error?.message);
  assert.equal(trickle.body.toString(), 'abbb');
  let resumed = false;
  const paused = await send(a, { origin: srv.origin, path: '/slow', bodyTimeout: 200 }, {
    data: (c, _chunk, n) => {
      if (n !== 1) return;
      c.pause();
      // Resumed late, in the check phase of a busy loop: the clock's tick due meanwhile runs in the
      // next timers phase, before the poll phase reads what came while paused; it must not count the pause.
      setTimeout(() => setImmediate(() => {
        const until = performance.now() + 300;
        while (performance.now() < until);
        resumed = true;
        c.resume();
      }), 700);
    },
  });
  assert.ok(resumed);
  assert.equal(paused.error, null, 'paused 700 ms with a 200 ms body timeout');
});

// ---- abort, pause ---------------------------------------------------------------------------

test('abort mid-body destroys the socket (never reused); the next request goes on a new one', async () => {
  const srv = await raw((s, head) => {
    if (head.includes('/ok')) { s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'); return; }
    s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart');
  });
  const a = agent();
  const reason = new Error('client went away');
  let serverSawClose = false;
  const r = await send(a, { origin: srv.origin }, { data: (c) => c.abort(reason) });
  assert.equal(r.error, reason, 'the handler is told with the abort\'s reason');
  srv.conns[0].once('close', () => { serverSawClose = true; });
  await sleep(50);
  assert.ok(serverSawClose || srv.conns[0].destroyed);
  assert.equal(a.sockets, 0);
  assert.equal((await send(a, { origin: srv.origin, path: '/ok' })).body.toString(), 'ok');
  assert.equal(srv.conns.length, 2);
  // Aborted in onRequestStart: nothing is sent.
  const before = srv.heads.length;
  const early = await send(a, { origin: srv.origin, path: '/ok' }, { start: (c) => c.abort(reason) });
  assert.equal(early.error, reason);
  await sleep(30);
  assert.equal(srv.heads.length, before);
});

test('an answer not read to its end (server sends more than content-length) is not reused', async () => {
  const srv = await raw((s) => { s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA'); });
  const a = agent();
  assert.equal((await send(a, { origin: srv.origin })).body.toString(), 'ok');
  await send(a, { origin: srv.origin });
  assert.equal(srv.conns.length, 2);
});

test('pause stops reading from the socket; resume reads on', async () => {
  let sent = 0;
  const server = createHttp((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const t = setInterval(() => {
      if (++sent === 20) { clearInterval(t); res.end('data: end\n\n'); } else res.write(`data: ${sent}\n\n`);
    }, 15);
  });
  const origin = await listen(server);
  const a = agent();
  let seen = 0;
  let whilePaused = -1;
  const r = await send(a, { origin }, {
    data: (c, _chunk, n) => {
      seen = n;
      if (n === 1) {
        c.pause();
        assert.equal(c.paused, true);
        setTimeout(() => { whilePaused = seen; c.resume(); }, 500);
      }
    },
  });
  assert.equal(r.error, null);
  assert.equal(r.body.toString().split('\n\n').filter(Boolean).length, 20);
  assert.equal(whilePaused, 1, 'nothing delivered while paused (the server wrote on)');
});

// ---- bounds ---------------------------------------------------------------------------------

test('a response head over 64 KB is an error (whole, or in pieces), not a hang', async () => {
  const big = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(MAX_HEAD + 10)}\r\ncontent-length: 0\r\n\r\n`;
  const srv = await raw((s, head) => {
    if (head.includes('/pieces')) void writeApart(s, [big.slice(0, 30_000), big.slice(30_000, 60_000), big.slice(60_000)], 20);
    else s.write(big);
  });
  const a = agent();
  assert.equal((await send(a, { origin: srv.origin })).error?.code, 'UND_ERR_HEADERS_OVERFLOW');
  assert.equal((await send(a, { origin: srv.origin, path: '/pieces' })).error?.code, 'UND_ERR_HEADERS_OVERFLOW');
  const ok = `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(MAX_HEAD - 100)}\r\ncontent-length: 0\r\n\r\n`;
  const srv2 = await raw((s) => { s.write(ok); });
  assert.equal((await send(a, { origin: srv2.origin })).status, 200, 'just under the limit');
});

test('a bad chunk size, a bad chunk end, a bad content-length and a malformed status line are errors', async () => {
  const answers: Record<string, string> = {
    '/size': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    '/tail': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5z\r\nhello\r\n0\r\n\r\n',
    '/neg': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n',
    '/huge': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n',
    '/end': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhelloX\r\n0\r\n\r\n',
    '/space': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n',
    '/empty': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n',
    '/lead': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n',
    '/cl': 'HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n',
    '/status': 'HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n',
    '/proto': 'HTTX/1.1 200 OK\r\ncontent-length: 0\r\n\r\n',
    '/short': 'HTTP/1.1 20\r\n\r\n',
  };
  const srv = await raw((s, head) => { s.write(answers[head.split(' ')[1]]); });
  const a = agent();
  const codes: Record<string, string | undefined> = {};
  for (const path of Object.keys(answers)) {
    const r = await send(a, { origin: srv.origin, path });
    codes[path] = r.error?.code;
    assert.equal(networkFailure(target, r.error).status, 502);
  }
  assert.deepEqual(codes, {
    '/size': 'HPE_INVALID_CHUNK_SIZE', '/tail': 'HPE_INVALID_CHUNK_SIZE', '/neg': 'HPE_INVALID_CHUNK_SIZE', '/huge': 'HPE_INVALID_CHUNK_SIZE', '/end': 'HPE_STRICT',
    '/space': 'HPE_INVALID_CHUNK_SIZE', '/empty': 'HPE_INVALID_CHUNK_SIZE', '/lead': 'HPE_INVALID_CHUNK_SIZE',
    '/cl': 'HPE_INVALID_CONTENT_LENGTH', '/status': 'HPE_INVALID_STATUS', '/proto': 'HPE_INVALID_STATUS', '/short': 'HPE_INVALID_STATUS',
  });
  assert.equal(srv.conns.length, Object.keys(answers).length, 'each error closed its socket');
});

// ---- close, destroy, the clock --------------------------------------------------------------

test('close(): requests in flight and queued complete, then every socket closes and the clock stops; new requests are refused', async () => {
  const held: Array<() => void> = [];
  const server = createHttp((req, res) => { held.push(() => res.end(req.url)); });
  const origin = await listen(server);
  const a = agent({ connections: 1 });
  const one = send(a, { origin, path: '/1' });
  const two = send(a, { origin, path: '/2' });
  while (held.length < 1) await sleep(5);
  assert.equal(a.ticking, true);
  let closed = false;
  const closing = a.close().then(() => { closed = true; });
  assert.throws(() => a.dispatch({ origin, path: '/', method: 'GET' }, {}), { code: 'UND_ERR_CLOSED' });
  held.shift()!();
  while (held.length < 1) await sleep(5);
  assert.equal(closed, false, 'not closed while a request is in flight');
  held.shift()!();
  await closing;
  assert.equal((await one).body.toString(), '/1');
  assert.equal((await two).body.toString(), '/2');
  assert.equal(a.sockets, 0);
  assert.equal(a.ticking, false, 'close() stopped the agent\'s clock');
});

test('destroy(): requests in flight and queued fail at once, the clock stops', async () => {
  const server = createHttp(() => undefined);
  const origin = await listen(server);
  const a = agent({ connections: 1 });
  const one = send(a, { origin, path: '/1' });
  const two = send(a, { origin, path: '/2' });
  await sleep(50);
  await a.destroy();
  assert.equal((await one).error?.code, 'UND_ERR_DESTROYED');
  assert.equal((await two).error?.code, 'UND_ERR_DESTROYED');
  assert.equal(a.sockets, 0);
  assert.equal(a.ticking, false);
});

test('each agent has its own clock: it runs while the agent has a socket, and an idle socket keeps no process alive', async () => {
  const server = createHttp((_req, res) => res.end('x'));
  server.keepAliveTimeout = 60_000; // the server does not close the child's idle socket either
  const origin = await listen(server);
  const a = agent({ keepAliveTimeout: 200 });
  const b = agent();
  assert.equal(a.ticking, false, 'no socket, no timer');
  await send(a, { origin });
  assert.equal(a.ticking, true);
  assert.equal(b.ticking, false, 'another agent\'s clock is its own');
  await sleep(200 + 3 * TICK_MS);
  assert.equal(a.sockets, 0);
  assert.equal(a.ticking, false, 'stopped with its last socket');
  // An idle kept-alive socket is unref'd: a child process that made a request exits on its own.
  const { execFile } = await import('node:child_process');
  const code = `import { H1Agent } from ${JSON.stringify(new URL('../src/lib/h1-agent.ts', import.meta.url).href)};
    const a = new H1Agent({ connectMs: 1000, keepAliveTimeout: 30000, connections: 4 });
    a.dispatch({ origin: ${JSON.stringify(origin)}, path: '/', method: 'GET' }, { onResponseEnd() { console.log('done'); }, onResponseError(_c, e) { console.log(e.message); } });`;
  const t0 = Date.now();
  // (Not spawnSync: the server answering it is in this process.)
  const child = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 10_000 }, (_e, stdout, stderr) => resolve({ stdout, stderr }));
  });
  assert.equal(child.stdout.trim(), 'done', child.stderr);
  assert.ok(Date.now() - t0 < 9000, 'exited without waiting for the keep-alive timeout');
});
