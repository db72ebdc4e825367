// The request helpers every handler uses (src/access/request.ts) as a client sees them, over a real
// HTTP server whose responses are the egress door, with no gateway: request ids, JSON and error
// answers in both wire formats, reading a body under a size cap and a watch, the JSON checks at the
// door, and the keep-alive comments of an idle event stream. A mutant it kills costs about a second.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { PassThrough } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { keepSseAlive, readBody, readJson, requestIdFor, sendError, sendJson, sendText, type BodyWatch, type Ctx } from '../src/access/request.ts';
import { AamError } from '../src/access/errors.ts';
import { EgressResponse } from '../src/access/egress.ts';
import type { AccessRuntime } from '../src/access/runtime-view.ts';
import { Scrubber } from '../src/credentials/scrub.ts';
import { until } from './helpers/e2e.ts';

const MAX = 4096;

interface Rt { options: { maxBodyBytes: number }; requestSeq: number; logged: Array<{ obj: Record<string, unknown>; msg: string }>; log: { error(obj: Record<string, unknown>, msg: string): void } }

function runtime(): Rt {
  const logged: Rt['logged'] = [];
  return { options: { maxBodyBytes: MAX }, requestSeq: 0, logged, log: { error: (obj, msg) => { logged.push({ obj, msg }); } } };
}

type Handler = (ctx: Ctx) => void | Promise<void>;
let server: Server;
let port: number;
let current: { handler: Handler; rt: Rt; wire: 'openai' | 'anthropic'; ctx?: Ctx };

before(async () => {
  server = createServer({ ServerResponse: EgressResponse }, (req, res) => {
    const door = res as EgressResponse;
    door.open({ scrubber: () => new Scrubber([]), leaked: () => {} });
    const c = current;
    const ctx = { req, res: door, rt: c.rt as unknown as AccessRuntime, requestId: 'req_test', wire: c.wire } as unknown as Ctx;
    c.ctx = ctx;
    Promise.resolve().then(() => c.handler(ctx)).catch((e: unknown) => sendError(ctx, e));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(async () => { server.closeAllConnections(); await new Promise((r) => server.close(r)); });

interface Answer { status: number; headers: IncomingMessage['headers']; text: string; json: any } // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * One request: `body` as chunks (each its own write; no content-length when `chunked`). `declare`
 * sends that content-length instead, and `hold` keeps the body unfinished until the answer came.
 */
function call(handler: Handler, opts: { body?: Array<string | Buffer>; headers?: Record<string, string>; chunked?: boolean; declare?: number; hold?: boolean; wire?: 'openai' | 'anthropic'; rt?: Rt } = {}): Promise<Answer> {
  current = { handler, rt: opts.rt ?? runtime(), wire: opts.wire ?? 'openai' };
  const chunks = (opts.body ?? []).map((c) => Buffer.from(c));
  const length = opts.declare ?? chunks.reduce((n, c) => n + c.length, 0);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { ...(opts.chunked ? {} : { 'content-length': String(length) }), ...opts.headers } }, (res) => {
      if (opts.hold) res.on('end', () => req.destroy());
      const got: Buffer[] = [];
      res.on('data', (c: Buffer) => got.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(got).toString('utf8');
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    // A refusal may close the connection before the whole body is written: that is fine here.
    req.on('error', (e) => { if (!/ECONNRESET|EPIPE/.test(String(e))) reject(e); });
    req.setTimeout(15_000, () => req.destroy(new Error('no answer in 15 s')));
    req.flushHeaders();
    for (const c of chunks) req.write(c);
    if (!opts.hold) req.end();
  });
}

const echo = (limit?: number, watch?: BodyWatch): Handler => async (ctx) => {
  const buf = await readBody(ctx, limit, watch);
  sendJson(ctx, 200, { length: buf.length, read: ctx.bodyBytes, text: buf.toString('utf8') });
};

test('aam owns the request id; a sane x-request-id from the caller is kept beside it, any other is dropped', () => {
  const rt = { requestSeq: 0 } as AccessRuntime;
  const idOf = (h: Record<string, unknown>) => requestIdFor({ headers: h } as unknown as IncomingMessage, rt);
  const a = idOf({});
  assert.match(a.requestId, /^req_[0-9a-f]{8}0{7}1$/);
  assert.deepEqual(Object.keys(a), ['requestId']);
  const b = idOf({ 'x-request-id': 'trace.Abc_9:x-1' });
  assert.equal(b.requestId, `${a.requestId.slice(0, -1)}2`);
  assert.equal(b.clientRequestId, 'trace.Abc_9:x-1');
  assert.equal(rt.requestSeq, 2);
  for (let i = 0; i < 34; i++) idOf({});
  assert.match(idOf({}).requestId, /^req_[0-9a-f]{8}0{6}11$/, 'base 36: the 37th id');
  assert.equal(idOf({ 'x-request-id': 'x'.repeat(128) }).clientRequestId, 'x'.repeat(128));
  for (const bad of ['x'.repeat(129), '', 'a b', 'a\nb', 'a/b', 'é', ['a', 'b']]) {
    assert.equal(idOf({ 'x-request-id': bad }).clientRequestId, undefined, JSON.stringify(bad));
  }
});

test('JSON and text answers carry the request id and extra headers; errors come in the caller\'s wire format', async () => {
  let r = await call((ctx) => sendJson(ctx, 201, { ok: true }, { 'x-extra': 'yes' }));
  assert.deepEqual([r.status, r.headers['content-type'], r.headers['x-request-id'], r.headers['x-extra'], r.text], [201, 'application/json', 'req_test', 'yes', '{"ok":true}']);
  r = await call((ctx) => sendJson(ctx, 200, '{"already":"json"}'));
  assert.equal(r.text, '{"already":"json"}', 'a string body is sent as it is');
  r = await call((ctx) => sendText(ctx, 202, 'plain words', 'text/plain'));
  assert.deepEqual([r.status, r.headers['content-type'], r.headers['x-request-id'], r.text], [202, 'text/plain', 'req_test', 'plain words']);
  const limited = new AamError(429, 'rate_limited', 'slow down', { headers: { 'retry-after': '7' } });
  r = await call((ctx) => sendError(ctx, limited));
  assert.deepEqual([r.status, r.headers['retry-after'], r.headers['content-type'], r.headers['x-request-id']], [429, '7', 'application/json', 'req_test']);
  assert.deepEqual(r.json, { error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limited' } });
  r = await call((ctx) => sendError(ctx, limited), { wire: 'anthropic' });
  assert.deepEqual(r.json, { type: 'error', error: { type: 'rate_limit_error', message: 'slow down', code: 'rate_limited' } });
  // An unexpected error: a 500 that says where to look, and the log has the real one with the request id.
  const rt = runtime();
  const boom = new Error('db password is hunter2');
  r = await call(() => { throw boom; }, { rt });
  assert.equal(r.status, 500);
  assert.deepEqual(r.json.error, { message: 'internal error; see the gateway log for details', type: 'api_error', param: null, code: 'internal_error' });
  assert.deepEqual(rt.logged, [{ obj: { requestId: 'req_test', err: boom }, msg: 'unhandled error' }]);
  // A coded error, even a 5xx one, is the caller's answer, not a bug to log.
  for (const e of [new AamError(503, 'unavailable', 'draining'), new AamError(400, 'invalid_request', 'no'), new AamError(500, 'upstream_error', 'bad gateway')]) {
    const quiet = runtime();
    r = await call((ctx) => sendError(ctx, e), { rt: quiet });
    assert.equal(r.status, e.status);
    assert.deepEqual(quiet.logged, [], e.code);
  }
});

test('an error after the answer began cuts the connection instead of writing a second answer', async () => {
  await assert.rejects(call((ctx) => {
    ctx.res.writeHead(200, { 'content-type': 'text/event-stream' });
    ctx.res.write('data: one\n\n');
    sendError(ctx, new AamError(502, 'upstream_error', 'upstream went away'));
  }), /aborted|ECONNRESET|socket hang up/);
});

test('a body is read whole up to the cap; above it the answer is 413 naming which limit, read or not', async () => {
  let r = await call(echo(), { body: ['ab', 'cd', 'é'] });
  assert.deepEqual(r.json, { length: 6, read: 6, text: 'abcdé' });
  r = await call(echo(), { body: ['x'.repeat(MAX)] });
  assert.deepEqual([r.status, r.json.length, r.json.read], [200, MAX, MAX], 'exactly the cap is fine');
  r = await call(echo(), { body: ['x'.repeat(MAX - 10), 'y'.repeat(10)], chunked: true });
  assert.deepEqual([r.status, r.json.length], [200, MAX]);
  // Declared too large: refused before reading; streamed too large (no content-length): refused on the way.
  for (const chunked of [false, true]) {
    r = await call(echo(), { body: ['x'.repeat(MAX), 'y'], chunked });
    assert.equal(r.status, 413, `chunked ${chunked}`);
    assert.deepEqual(r.json.error, { message: `request body exceeds the ${MAX} byte limit (AAM_MAX_BODY_BYTES)`, type: 'invalid_request_error', param: null, code: 'body_too_large' });
    r = await call(echo(100), { body: ['x'.repeat(60), 'y'.repeat(41)], chunked });
    assert.equal(r.status, 413);
    assert.deepEqual([r.json.error.code, r.json.error.message], ['body_too_large', 'request body exceeds the 100 byte limit of this endpoint']);
  }
  r = await call(echo(100), { body: ['x'.repeat(100)] });
  assert.equal(r.status, 200);
});

test('a watch sees every byte of a body that may exceed its threshold, once and in order, and its refusal is the answer', async () => {
  const watch = (from: number, stopAt = Infinity) => {
    const fed: Buffer[] = [];
    const w: BodyWatch = { from, feed: (c) => { fed.push(c); return Buffer.concat(fed).length > stopAt ? new AamError(400, 'invalid_request', 'too much text') : undefined; } };
    return { w, fed: () => Buffer.concat(fed).toString('utf8') };
  };
  // Small declared bodies are never watched.
  let a = watch(10);
  let r = await call(echo(undefined, a.w), { body: ['0123456789'] });
  assert.equal(r.status, 200);
  assert.equal(a.fed(), '');
  // Declared over the threshold: watched from the first chunk.
  a = watch(10);
  r = await call(echo(undefined, a.w), { body: ['01234', '56789', 'X'] });
  assert.equal(a.fed(), '0123456789X');
  // Undeclared (chunked): watched from the chunk that crosses the threshold, earlier ones first.
  const parts = ['aaaa', 'bbbb', 'cccc', 'dddd', 'eeee'];
  a = watch(10);
  const paced: Handler = async (ctx) => {
    const buf = await readBody(ctx, undefined, a.w);
    sendJson(ctx, 200, { text: buf.toString('utf8') });
  };
  r = await call(paced, { body: parts, chunked: true });
  assert.equal(r.json.text, parts.join(''));
  assert.equal(a.fed(), parts.join(''), 'each byte fed once, in order');
  a = watch(4);
  r = await call(echo(undefined, a.w), { body: ['abc'], chunked: true });
  assert.equal(a.fed(), '', 'a chunked body that stays under the threshold is not watched');
  a = watch(8);
  r = await call(echo(undefined, a.w), { body: ['abcd', 'efgh'], chunked: true });
  assert.equal(a.fed(), '', 'a chunked body exactly at the threshold is not watched');
  // A chunk read before the threshold was crossed is refused as if it had been watched all along.
  const picky: BodyWatch = { from: 8, feed: (c) => (c.includes('X') ? new AamError(400, 'invalid_request', 'no X') : undefined) };
  r = await call(echo(undefined, picky), { body: ['aXa', 'bbbb', 'cccccc'], chunked: true });
  assert.deepEqual([r.status, r.json.error.message], [400, 'no X']);
  // The watch refuses: that error is the answer.
  for (const chunked of [false, true]) {
    a = watch(10, 20);
    r = await call(echo(undefined, a.w), { body: ['x'.repeat(15), 'y'.repeat(15), 'z'.repeat(15)], chunked });
    assert.deepEqual([r.status, r.json.error.message], [400, 'too much text'], `chunked ${chunked}`);
  }
  // A large body (paced while read) comes through whole.
  const big = Buffer.alloc(300 * 1024, 'q');
  const large = runtime();
  large.options.maxBodyBytes = 1024 * 1024;
  a = watch(1024);
  r = await call(echo(undefined, a.w), { body: Array.from({ length: 30 }, (_, i) => big.subarray(i * 10240, (i + 1) * 10240)), rt: large });
  assert.deepEqual([r.status, r.json.length, r.json.read], [200, big.length, big.length]);
  assert.equal(a.fed().length, big.length);
});

test('a JSON body must say it is JSON, not be empty, not nest deeper than 128 levels, and parse', async () => {
  const parse: Handler = async (ctx) => sendJson(ctx, 200, { got: await readJson(ctx) });
  let r = await call(parse, { body: ['{"a":1}'] });
  assert.deepEqual(r.json, { got: { a: 1 } });
  for (const ct of ['application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/vnd.api+json']) {
    r = await call(parse, { body: ['[1]'], headers: { 'content-type': ct } });
    assert.deepEqual(r.json, { got: [1] }, ct);
  }
  r = await call(parse, { body: ['{"a":1}'], headers: { 'content-type': 'text/plain' } });
  assert.deepEqual([r.status, r.json.error.code, r.json.error.message], [415, 'unsupported_media_type', 'content-type must be application/json (got text/plain)']);
  r = await call(parse, { body: [] });
  assert.deepEqual([r.status, r.json.error.code, r.json.error.message], [400, 'invalid_json', 'request body is empty; send a JSON object']);
  const deep = `{"model":"m","response_format":${'['.repeat(200)}${']'.repeat(200)}}`;
  r = await call(parse, { body: [deep] });
  assert.deepEqual([r.status, r.json.error.code, r.json.error.param], [400, 'invalid_json', 'response_format']);
  assert.equal(r.json.error.message, `field "response_format" nests JSON deeper than 128 levels (at byte ${deep.indexOf('[') + 127}); flatten it`);
  r = await call(parse, { body: ['['.repeat(129)] });
  assert.deepEqual([r.status, r.json.error.param, r.json.error.message], [400, null, 'request body nests JSON deeper than 128 levels (at byte 128); flatten it']);
  r = await call(parse, { body: ['{"a":'] });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /^request body is not valid JSON: .+/);
  // A large body (long strings decoded across loop turns) parses to the same value, and its errors too.
  const large = runtime();
  large.options.maxBodyBytes = 1024 * 1024;
  const text = 'é'.repeat(100_000);
  r = await call(parse, { body: [JSON.stringify({ messages: [{ content: text }] })], rt: large });
  assert.equal(r.json.got.messages[0].content, text);
  r = await call(parse, { body: [`{"messages":[{"content":"${'x'.repeat(100_000)}\\q"}]}`], rt: large });
  assert.deepEqual([r.status, r.json.error.code], [400, 'invalid_json']);
  assert.match(r.json.error.message, /^request body is not valid JSON: /);
});

test('an idle event stream gets keep-alive comments; a JSON answer never does, nor an ended stream', async (t) => {
  const started = t.mock.method(globalThis, 'setInterval');
  const KEEPALIVE = ': keep-alive\n\n';
  const opened: Array<() => void> = [];
  /** Reads a response as it streams; resolves when `until` holds for what arrived (15 s deadline). */
  const stream = (handler: Handler) => {
    let text = '';
    const waiters: Array<{ until: (t: string) => boolean; done: () => void }> = [];
    const check = () => { for (const w of [...waiters]) if (w.until(text)) { waiters.splice(waiters.indexOf(w), 1); w.done(); } };
    current = { handler, rt: runtime(), wire: 'openai' };
    const req = request({ host: '127.0.0.1', port, method: 'GET', path: '/' }, (res) => {
      res.on('data', (c: Buffer) => { text += c.toString(); check(); });
      res.on('error', () => {});
    });
    req.on('error', () => {});
    req.end();
    return {
      text: () => text,
      when: (until: (t: string) => boolean) => new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`waited 15 s; got ${JSON.stringify(text)}`)), 15_000);
        waiters.push({ until, done: () => { clearTimeout(timer); resolve(); } });
        check();
      }),
      close: () => req.destroy(),
    };
  };
  const count = (t: string) => t.split(KEEPALIVE).length - 1;
  const held = (start: (ctx: Ctx) => void, ms = 20): Handler => (ctx) => { start(ctx); keepSseAlive(ctx.res, ms); opened.push(() => ctx.res.end()); };
  // Headers set either way, any letter case.
  const sse = stream(held((ctx) => { ctx.res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8' }); ctx.res.write('data: first\n\n'); }));
  await sse.when((t) => t.startsWith('data: first\n\n') && count(t) >= 2);
  const sse2 = stream(held((ctx) => { ctx.res.setHeader('content-type', 'TEXT/EVENT-STREAM'); ctx.res.write('data: a\n\n'); }));
  await sse2.when((t) => count(t) >= 1);
  // Every other answer, while the two streams above keep getting comments: none.
  const json = stream(held((ctx) => { ctx.res.writeHead(200, { 'content-type': 'application/json' }); ctx.res.write('{"partial":'); }));
  await json.when((t) => t.length > 0); // one request at a time: the server answers with the last handler given
  const off = stream(held((ctx) => { ctx.res.writeHead(200, { 'content-type': 'text/event-stream' }); ctx.res.write('data: off\n\n'); }, 0));
  await off.when((t) => t.length > 0);
  const before = count(sse.text());
  await sse.when((t) => count(t) >= before + 3);
  assert.equal(json.text(), '{"partial":');
  assert.equal(off.text(), 'data: off\n\n', 'an interval of 0: no comments');
  for (const end of opened.splice(0)) end();
  for (const s of [sse, sse2, json, off]) s.close();
  // Its timers never keep a process alive by themselves (a draining server, a CLI): the streams do.
  assert.ok(started.mock.callCount() >= 3);
  for (const c of started.mock.calls) assert.equal((c.result as unknown as { hasRef(): boolean }).hasRef(), false);
});

test('a refusal does not wait for the rest of the body: a declared-too-large one before any byte, a watched one at its first bad chunk', async () => {
  // The client sends only the head (or one chunk) and holds the rest: the answer must come anyway.
  let r = await call(echo(), { declare: MAX + 1, hold: true });
  assert.deepEqual([r.status, r.json.error.code], [413, 'body_too_large']);
  const fed: string[] = [];
  const picky: BodyWatch = { from: 100, feed: (c) => { fed.push(c.toString()); return c.includes('X') ? new AamError(400, 'invalid_request', 'no X') : undefined; } };
  r = await call(echo(undefined, picky), { body: ['aXa'], declare: 1000, hold: true });
  assert.deepEqual([r.status, r.json.error.message, fed], [400, 'no X', ['aXa']]);
});

test('a body the client cuts off ends the read with an error, so its handler does not wait for ever', async () => {
  let failed: unknown;
  let started = false;
  current = { handler: async (ctx) => { started = true; try { await readBody(ctx); } catch (e) { failed = e; } }, rt: runtime(), wire: 'openai' };
  const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-length': '1000' } });
  req.on('error', () => {});
  req.write('part of it');
  await until(() => started, 15_000, 'the handler to start');
  req.destroy();
  await until(() => failed !== undefined, 15_000, 'readBody to fail');
  assert.match(String((failed as Error).message), /aborted/);
});

/** A request body as a stream the test fills ahead of reading (what a socket read can hand over in one loop turn). */
function bodyStream(chunks: readonly Buffer[]): { req: PassThrough; ctx: Ctx } {
  const req = new PassThrough({ highWaterMark: 1 });
  const length = chunks.reduce((n, c) => n + c.length, 0);
  Object.assign(req, { headers: { 'content-length': String(length) } });
  for (const c of chunks) req.write(c);
  req.end();
  const rt = runtime();
  rt.options.maxBodyBytes = 64 * 1024 * 1024;
  return { req, ctx: { req, rt } as unknown as Ctx };
}

/** Spins for `ms` of CPU: a slow watch (a guardrail scanning a long text). */
function spin(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
}

test('a large body watched slowly gives other work a loop turn between its chunks (pacing)', async () => {
  const chunks = Array.from({ length: 24 }, (_, i) => Buffer.alloc(64 * 1024, 97 + (i % 26)));
  const { ctx } = bodyStream(chunks);
  let fed = 0;
  const slow: BodyWatch = { from: 0, feed: () => { fed++; spin(2); return undefined; } };
  // Count event loop turns (check phases) while the body is read.
  let turns = 0;
  let reading = true;
  const tick = (): void => { if (reading) { turns++; setImmediate(tick); } };
  setImmediate(tick);
  const timer = setTimeout(() => { throw new Error('the paced body was never read to its end'); }, 15_000);
  const buf = await readBody(ctx, undefined, slow);
  clearTimeout(timer);
  reading = false;
  assert.equal(buf.length, 24 * 64 * 1024);
  assert.ok(buf.equals(Buffer.concat(chunks)), 'the same bytes, in order');
  assert.equal(fed, 24);
  // Each chunk above 64 KiB took 2 ms to watch (over the 1 ms per turn): other work ran after each.
  assert.ok(turns >= 20, `${turns} loop turns while 24 slow chunks were read`);
});

test('a body watched cheaply is read without giving turns away: pacing costs nothing when nothing is slow', async () => {
  for (const size of [1024, 16 * 1024]) {
    const chunks = Array.from({ length: 48 }, () => Buffer.alloc(size, 'c'));
    const { ctx } = bodyStream(chunks);
    let fed = 0;
    const cheap: BodyWatch = { from: 0, feed: () => { fed++; return undefined; } };
    let turns = 0;
    let reading = true;
    const tick = (): void => { if (reading) { turns++; setImmediate(tick); } };
    setImmediate(tick);
    const buf = await readBody(ctx, undefined, cheap);
    reading = false;
    assert.deepEqual([buf.length, fed], [48 * size, 48]);
    assert.ok(turns <= 8, `${turns} loop turns for 48 cheap chunks of ${size} bytes`);
  }
});

test('the rest of a refused body is not read: reading stops at the refusal', async () => {
  const chunks = Array.from({ length: 8 }, (_, i) => Buffer.from(i === 2 ? 'bad' : 'good'));
  const { req, ctx } = bodyStream(chunks);
  const fed: string[] = [];
  const watch: BodyWatch = { from: 0, feed: (c) => { fed.push(c.toString()); return c.toString() === 'bad' ? new AamError(400, 'invalid_request', 'refused') : undefined; } };
  await assert.rejects(readBody(ctx, undefined, watch), /refused/);
  // Give a reader that goes on every chance to: several loop turns.
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(fed, ['good', 'good', 'bad']);
  assert.equal(req.readableEnded, false, 'the body was not read to its end');
  assert.ok(req.readableLength > 0 || req.writableLength > 0, 'the rest waits unread');
  req.destroy();
});

test('keep-alive comments: one per idle interval, none in an interval that carried data, none once the stream ended', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const cleared = t.mock.method(globalThis, 'clearInterval');
  let ctx: Ctx | undefined;
  let text = '';
  let ended = false;
  current = { handler: (c) => { ctx = c; c.res.writeHead(200, { 'content-type': 'text/event-stream' }); c.res.write('data: first\n\n'); keepSseAlive(c.res, 20); }, rt: runtime(), wire: 'openai' };
  const req = request({ host: '127.0.0.1', port, method: 'GET', path: '/' }, (res) => {
    res.on('data', (c: Buffer) => { text += c.toString(); });
    res.on('end', () => { ended = true; });
  });
  req.on('error', () => {});
  req.end();
  const KA = ': keep-alive\n\n';
  const seen = (want: string) => until(() => text === want, 15_000, JSON.stringify(want));
  await seen('data: first\n\n');
  t.mock.timers.tick(20); // the first tick only notes what was written
  t.mock.timers.tick(20);
  await seen(`data: first\n\n${KA}`);
  t.mock.timers.tick(20);
  await seen(`data: first\n\n${KA}${KA}`);
  ctx!.res.write('data: two\n\n');
  t.mock.timers.tick(20); // this interval carried data: no comment
  t.mock.timers.tick(20);
  await seen(`data: first\n\n${KA}${KA}data: two\n\n${KA}`);
  const calls = cleared.mock.callCount();
  ctx!.res.end();
  await until(() => ended, 15_000, 'the stream to end');
  assert.ok(cleared.mock.callCount() > calls, 'the timer is stopped when the stream ends');
  t.mock.timers.tick(100);
  assert.equal(text, `data: first\n\n${KA}${KA}data: two\n\n${KA}`);
});
