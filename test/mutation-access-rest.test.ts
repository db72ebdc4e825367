// The access path's last small files as a caller and the audit trail see them, with no gateway, so
// a mutant they kill costs about a second: the coded errors' wire bodies (src/access/errors.ts),
// who and which trace an audit event names (evidence.ts), and how a connection whose body was
// answered early is read on and closed (linger.ts, over a real HTTP server and a raw socket).
// The same behaviour through a gateway: mutation-request, access-e2e, body-refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { AamError, anthropicErrorBody, badRequest, openaiErrorBody, toAamError, type ErrorCode } from '../src/access/errors.ts';
import { identityEvidence, requestTraceId } from '../src/access/evidence.ts';
import { closeAfterAnswer, LINGER_BYTES, LINGER_MS } from '../src/access/linger.ts';
import type { Ctx } from '../src/access/request.ts';
import { IdPool } from '../src/observability/otlp-context.ts';
import type { Identity } from '../src/identity/types.ts';

// ---- coded errors ----

/**
 * Written here from the two providers' documentation, not from errors.ts: OpenAI's error `type`
 * per status, and Anthropic's (its 413 is `request_too_large`, its 529 `overloaded_error`).
 */
const OPENAI_TYPE: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error', 405: 'invalid_request_error',
  408: 'timeout_error', 413: 'invalid_request_error', 415: 'invalid_request_error', 429: 'rate_limit_error', 500: 'api_error',
  502: 'api_error', 503: 'api_error', 504: 'timeout_error', 409: 'api_error', 422: 'api_error', 529: 'api_error', 501: 'api_error',
};
const ANTHROPIC_TYPE: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error', 405: 'invalid_request_error',
  408: 'invalid_request_error', 409: 'invalid_request_error', 413: 'request_too_large', 415: 'invalid_request_error', 422: 'invalid_request_error',
  429: 'rate_limit_error', 499: 'invalid_request_error', 500: 'api_error', 501: 'api_error', 502: 'api_error', 503: 'api_error', 504: 'api_error', 529: 'overloaded_error',
};

test('every status gets the OpenAI and Anthropic error type a client of that API expects, with its message and code', () => {
  for (const [status, type] of Object.entries(OPENAI_TYPE)) {
    const e = new AamError(Number(status), 'upstream_error', `m${status}`);
    assert.equal(e.type, type, `OpenAI type of ${status}`);
    assert.deepEqual(JSON.parse(openaiErrorBody(e)), { error: { message: `m${status}`, type, param: null, code: 'upstream_error' } }, `OpenAI body of ${status}`);
  }
  for (const [status, type] of Object.entries(ANTHROPIC_TYPE)) {
    const e = new AamError(Number(status), 'rate_limited', `m${status}`);
    assert.deepEqual(JSON.parse(anthropicErrorBody(e)), { type: 'error', error: { type, message: `m${status}`, code: 'rate_limited' } }, `Anthropic body of ${status}`);
  }
});

test('an AamError carries its status, code, param and headers; anything else becomes a 500 that leaks nothing', () => {
  const e = new AamError(429, 'rate_limited', 'slow down', { param: 'model', headers: { 'retry-after': '3' } });
  assert.equal(e.name, 'AamError');
  assert.equal(e.message, 'slow down');
  assert.deepEqual([e.status, e.code, e.param, e.headers], [429, 'rate_limited', 'model', { 'retry-after': '3' }]);
  assert.ok(e instanceof Error);
  const bare = new AamError(404, 'not_found', 'no such route');
  assert.deepEqual([bare.param, bare.headers], [null, {}]);
  assert.notEqual(new AamError(404, 'not_found', 'x').headers, bare.headers, 'each error has headers of its own');
  const bad = badRequest('messages must be a list', 'messages');
  assert.deepEqual([bad.status, bad.code, bad.param, bad.message, bad.type], [400, 'invalid_request' as ErrorCode, 'messages', 'messages must be a list', 'invalid_request_error']);
  assert.equal(badRequest('x').param, null);
  assert.equal(toAamError(e), e, 'an AamError is answered as it is');
  for (const thrown of [new Error('db password is hunter2'), 'a string', null, { status: 401, code: 'invalid_api_key' }]) {
    const out = toAamError(thrown);
    assert.deepEqual([out.status, out.code, out.type, out.message, out.param], [500, 'internal_error', 'api_error', 'internal error; see the gateway log for details', null]);
  }
});

// ---- evidence ----

test('an identity appears in evidence as its whole Agent record, method and key or token id, never more', () => {
  const id: Identity = {
    agent: { name: 'analyst', spiffeId: 'spiffe://prod/agent/analyst', trustDomain: 'prod', owner: 'ana', team: 'finance', environment: 'staging', deployment: 'eu-1', labels: { tier: 'gold' } },
    method: 'virtual_key', keyId: 'k-1', keyGeneration: 'g-secret-generation', tokenId: 't-9',
  };
  assert.deepEqual(identityEvidence(id), {
    spiffe_id: 'spiffe://prod/agent/analyst', agent: 'analyst', owner: 'ana', team: 'finance', environment: 'staging', deployment: 'eu-1',
    method: 'virtual_key', key_id: 'k-1', token_id: 't-9',
  });
  const bare = identityEvidence({ agent: { name: 'b', spiffeId: 'spiffe://prod/agent/b', trustDomain: 'prod', labels: {} }, method: 'jwt_svid' });
  assert.equal(bare.method, 'jwt_svid');
  assert.equal(bare.key_id, undefined);
});

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
function ctxWith(opts: { span?: string; traceparent?: string; traceId?: string }): { ctx: Ctx; minted: string[] } {
  const pool = new IdPool();
  const minted: string[] = [];
  const ids = { traceId: () => { const t = pool.traceId(); minted.push(t); return t; } };
  const ctx = {
    req: { headers: opts.traceparent === undefined ? {} : { traceparent: opts.traceparent } },
    rt: { ids },
    ...(opts.span === undefined ? {} : { span: { context: { traceId: opts.span } } }),
    ...(opts.traceId === undefined ? {} : { traceId: opts.traceId }),
  } as unknown as Ctx;
  return { ctx, minted };
}

test("a request's trace is its span's, else the caller's traceparent, else one new trace made once", () => {
  const span = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
  let { ctx, minted } = ctxWith({ span, traceparent: `00-${TRACE}-00f067aa0ba902b7-01`, traceId: 'b'.repeat(32) });
  assert.equal(requestTraceId(ctx), span, 'the span wins');
  assert.equal(ctx.traceId, 'b'.repeat(32), 'and is not stored in its place');
  ({ ctx, minted } = ctxWith({ traceparent: `00-${TRACE}-00f067aa0ba902b7-01` }));
  assert.equal(requestTraceId(ctx), TRACE);
  assert.equal(ctx.traceId, TRACE);
  (ctx.req.headers as Record<string, string>).traceparent = `00-${'c'.repeat(32)}-00f067aa0ba902b7-01`;
  assert.equal(requestTraceId(ctx), TRACE, 'asked again: the same trace');
  assert.deepEqual(minted, []);
  for (const traceparent of [undefined, 'garbage', `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`]) {
    ({ ctx, minted } = ctxWith({ traceparent }));
    const t = requestTraceId(ctx);
    assert.deepEqual(minted, [t], `a new trace for ${traceparent}`);
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.equal(requestTraceId(ctx), t, 'made once');
    assert.equal(requestTraceId(ctx), t);
    assert.equal(minted.length, 1);
  }
});

// ---- lingering close ----

/** Body bytes read after the call, counted per chunk, and whether the socket was destroyed by then. */
interface Seen { socket: Socket; keptBytes: number; afterCall: number; chunks: Array<{ upTo: number; destroyed: boolean }>; req: IncomingMessage }

/**
 * A server whose handler calls closeAfterAnswer before answering, then counts the body bytes read
 * after the call (its own listener runs after the linger's, so it sees what that one did to the
 * socket); it answers `connection: close` once `answerAfter` bytes were read.
 */
async function lingerServer(opts: { answerAfter: number; pauseFirst?: boolean }): Promise<{ server: Server; port: number; seen: Promise<Seen>; answered: Promise<number> }> {
  let resolveSeen!: (s: Seen) => void, resolveAnswered!: (t: number) => void;
  const seen = new Promise<Seen>((r) => { resolveSeen = r; });
  const answered = new Promise<number>((r) => { resolveAnswered = r; });
  const server = createServer((req, res) => {
    const s: Seen = { socket: req.socket, keptBytes: 0, afterCall: 0, chunks: [], req };
    req.on('data', (c: Buffer) => { s.keptBytes += c.length; }); // a body reader that was already listening
    if (opts.pauseFirst) req.pause();
    closeAfterAnswer(req);
    let done = false;
    req.on('data', (c: Buffer) => {
      s.afterCall += c.length;
      s.chunks.push({ upTo: s.afterCall, destroyed: req.socket.destroyed });
      if (!done && s.afterCall >= opts.answerAfter) {
        done = true;
        res.writeHead(413, { 'content-type': 'text/plain', 'content-length': '9', connection: 'close' });
        res.end('too large');
        res.on('finish', () => resolveAnswered(performance.now()));
      }
    });
    resolveSeen(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen, answered };
}

const clients = new Set<Socket>();

/** Stops the server with every connection to it, both ends. */
function stop(server: Server): void {
  server.closeAllConnections();
  server.close();
  for (const c of clients) c.destroy();
  clients.clear();
}

/**
 * A raw client that declares `declared` body bytes and sends `send` of them, then keeps its side
 * open (allowHalfOpen: the server's end of the answer does not end it), as a client still sending would.
 */
function rawClient(port: number, declared: number, send: number): { socket: Socket; answer: Promise<string>; ended: Promise<number> } {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  clients.add(socket);
  socket.on('error', () => { /* a reset is what some cases expect */ });
  let text = '';
  socket.on('data', (c: Buffer) => { text += c.toString('latin1'); });
  const ended = new Promise<number>((r) => socket.once('end', () => r(performance.now())));
  const answer = new Promise<string>((r) => { socket.once('end', () => r(text)); socket.once('close', () => r(text)); });
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${declared}\r\n\r\n`);
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  for (let left = send; left > 0; left -= chunk.length) socket.write(left >= chunk.length ? chunk : chunk.subarray(0, left));
  return { socket, answer, ended };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(what)), ms); });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const closedSocket = (s: Socket): Promise<number> => new Promise((r) => { if (s.destroyed) r(performance.now()); else s.once('close', () => r(performance.now())); });

test('after an early answer the body is read on, up to exactly LINGER_BYTES; one byte more closes the connection', async () => {
  for (const extra of [0, 1]) {
    const { server, port, seen } = await lingerServer({ answerAfter: LINGER_BYTES + extra });
    try {
      const client = rawClient(port, 4 * LINGER_BYTES, LINGER_BYTES + extra);
      const s = await seen;
      await within(closedSocket(s.socket), 20_000, 'the connection was never closed');
      assert.equal(s.keptBytes, 0, 'a listener from before the call is removed: the rest of the body is never kept');
      assert.ok(s.afterCall >= LINGER_BYTES + extra);
      for (const c of s.chunks) assert.equal(c.destroyed, c.upTo > LINGER_BYTES, `destroyed after ${c.upTo} bytes read`);
      client.socket.destroy();
    } finally {
      stop(server);
    }
  }
});

test('a request body that was paused before the answer is still read on (so the client is not reset)', async () => {
  const { server, port, seen } = await lingerServer({ answerAfter: 64 * 1024, pauseFirst: true });
  try {
    const client = rawClient(port, 4 * LINGER_BYTES, 64 * 1024);
    const answer = await within(client.answer, 20_000, 'no answer: the paused body was never read on');
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /too large$/);
    assert.ok((await seen).afterCall >= 64 * 1024);
    client.socket.destroy();
  } finally {
    stop(server);
  }
});

test('the client still sending reads the whole answer and a clean end; the server closes LINGER_MS later', async () => {
  const { server, port, seen, answered } = await lingerServer({ answerAfter: 1 });
  try {
    const client = rawClient(port, 4 * LINGER_BYTES, 16 * 1024);
    const s = await seen;
    const answerAt = await answered;
    const endAt = await within(client.ended, 20_000, 'the answer never ended');
    const answer = await client.answer;
    assert.match(answer, /^HTTP\/1\.1 413 /);
    assert.match(answer, /connection: close/i);
    assert.match(answer, /too large$/, 'the whole answer, then the end of the stream');
    // The writing side ended with the answer, the socket itself lives on to read the rest.
    assert.equal(s.socket.writableEnded, true);
    const closedAt = await within(closedSocket(s.socket), 20_000, 'the connection was never closed');
    assert.ok(endAt < closedAt, 'the client saw the end of the answer before the connection closed');
    // Timers never fire early: a lower bound holds on any machine (a 20 ms allowance for clock rounding).
    assert.ok(closedAt - answerAt >= LINGER_MS - 20, `closed ${(closedAt - answerAt).toFixed(0)} ms after the answer, LINGER_MS is ${LINGER_MS}`);
    client.socket.destroy();
  } finally {
    stop(server);
  }
});

test('the allowance is 1 MiB and 1 s', () => {
  assert.equal(LINGER_BYTES, 1_048_576);
  assert.equal(LINGER_MS, 1000);
});
