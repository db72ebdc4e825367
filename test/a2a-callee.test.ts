// The call to a callee agent (src/a2a/callee.ts, undici's handler API): the answer arrives whole
// and in order, a caller that stops reading holds the callee back (the connection pauses, the
// callee's writes stop draining), reading on resumes it, and destroy() closes the connection.
// Each through undici's global dispatcher and through an H1Agent (lib/h1-agent.ts), which the A2A
// gateway uses for http(s) callees.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendToCallee, type CalleeAnswer, type CalleeRequest } from '../src/a2a/callee.ts';
import { H1Agent } from '../src/lib/h1-agent.ts';
import { until } from './helpers/e2e.ts';

const CHUNK = Buffer.alloc(64 * 1024, 'a');
// 48 MiB: more than the socket buffers of both ends can hold (Linux autotunes a receive buffer up to 32 MiB).
const TOTAL = 768;
let server: Server;
let url: URL;
const state = { written: 0, blocked: false, closed: false };

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"a":1}\n\n');
        setTimeout(() => res.end('data: {"a":2}\n\n'), 50);
        return;
      }
      if (req.url === '/cut') {
        // A head promising more body than comes before the connection goes.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"jsonrpc":');
        setTimeout(() => res.destroy(), 50);
        return;
      }
      state.written = 0; state.blocked = false; state.closed = false;
      // The connection itself (kept alive after a complete answer): closed only when the caller aborts.
      req.socket.once('close', () => { state.closed = true; });
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = (): void => {
        while (state.written < TOTAL) {
          state.written++;
          if (!res.write(CHUNK)) { state.blocked = true; res.once('drain', () => { state.blocked = false; pump(); }); return; }
        }
        res.end();
      };
      pump();
    });
  });
  // Idle connections stay open for the whole file: with node's 5 s default, a host slow enough to
  // fire the server's timer as undici reuses the socket reset a POST (ECONNRESET, not retried).
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/a2a`);
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const h1 = new H1Agent({ connectMs: 10_000, keepAliveTimeout: 4_000, connections: Infinity });
after(() => h1.destroy());

/** The answer as a promise (rejected when none came, or when the request cannot be made). */
const callWith = (u: URL, opts: CalleeRequest, dispatcher: H1Agent | undefined): Promise<CalleeAnswer> => new Promise((resolve, reject) => {
  try { sendToCallee(u, opts, { answered: resolve, unanswered: reject }, dispatcher); } catch (e) { reject(e as Error); }
});

for (const [label, dispatcher] of [['undici', undefined], ['H1Agent', h1]] as const) {
  const callCallee = (u: URL, opts: CalleeRequest): Promise<CalleeAnswer> => callWith(u, opts, dispatcher);

  test(`${label}: a slow caller holds the callee back; reading on gets every byte, in order`, async () => {
    const up = await callCallee(url, { headers: { 'content-type': 'application/json' }, body: '{}', timeoutMs: 30_000 });
    assert.equal(up.statusCode, 200);
    const it = up.body[Symbol.asyncIterator]();
    const first = await it.next();
    assert.ok(!first.done && first.value.length > 0);
    // Not reading: the callee's writes stop draining before it has written everything (the socket
    // buffers of both ends hold at most ~36 MiB; without the pause aam would take all 48 MiB in).
    await until(() => state.blocked, 10_000, 'the callee blocked on a full connection');
    await until(() => state.written === TOTAL, 2_000, 'all written').catch(() => undefined);
    assert.ok(state.written < TOTAL, `the callee wrote all ${TOTAL} chunks while the caller read one`);
    let bytes = first.value!.length;
    for (let r = await it.next(); !r.done; r = await it.next()) {
      assert.ok(r.value.every((b: number) => b === 0x61));
      bytes += r.value.length;
    }
    assert.equal(bytes, TOTAL * CHUNK.length);
  });

  test(`${label}: destroy() stops reading and closes the callee's connection`, async () => {
    const up = await callCallee(url, { headers: {}, body: '{}', timeoutMs: 30_000 });
    const it = up.body[Symbol.asyncIterator]();
    await it.next();
    up.body.destroy();
    await until(() => state.closed, 10_000, 'the callee saw its connection close');
  });

  test(`${label}: an unreachable callee rejects the call (no answer head)`, async () => {
    const dead = new URL('http://127.0.0.1:9/a2a');
    await assert.rejects(callCallee(dead, { headers: {}, body: '{}', timeoutMs: 5_000 }), /ECONNREFUSED|connect/);
  });

  test(`${label}: all() reads the whole answer in one promise, never pausing it (a JSON answer)`, async () => {
    const up = await callCallee(url, { headers: {}, body: '{}', timeoutMs: 30_000 });
    const whole = await up.body.all(TOTAL * CHUNK.length);
    assert.ok(whole !== null);
    assert.equal(whole.length, TOTAL * CHUNK.length);
    assert.ok(whole.every((b: number) => b === 0x61));
    assert.equal(state.written, TOTAL);
  });

  test(`${label}: wholeUpTo: an answer that is not an event stream resolves once, with its whole body`, async () => {
    const up = await callCallee(url, { headers: {}, body: '{}', timeoutMs: 30_000, wholeUpTo: TOTAL * CHUNK.length });
    assert.equal(state.written, TOTAL, 'resolved once the callee had written everything');
    const whole = up.whole;
    assert.ok(whole);
    assert.equal(whole.length, TOTAL * CHUNK.length);
    assert.ok(whole.every((b: number) => b === 0x61));
  });

  test(`${label}: wholeUpTo: an answer longer than that resolves cut off (whole null) and the callee's connection closed`, async () => {
    const up = await callCallee(url, { headers: {}, body: '{}', timeoutMs: 30_000, wholeUpTo: 1024 * 1024 });
    assert.equal(up.whole, null);
    await until(() => state.closed, 10_000, 'the callee saw its connection close');
    assert.ok(state.written < TOTAL);
  });

  test(`${label}: wholeUpTo: an event stream resolves at its head, read as it comes`, async () => {
    const up = await callCallee(new URL('/sse', url), { headers: {}, body: '{}', timeoutMs: 30_000, wholeUpTo: 1024 });
    assert.equal(up.whole, undefined);
    assert.equal(up.body.ended, false, 'resolved before the stream ended');
    let text = '';
    for (;;) {
      const t = up.body.readText();
      if (t !== null) { text += t; continue; }
      if (up.body.ended) break;
      await up.body.ready();
    }
    assert.equal(text, 'data: {"a":1}\n\ndata: {"a":2}\n\n');
  });

  test(`${label}: wholeUpTo: a body that fails after its head resolves without it, and all() rejects with the failure`, async () => {
    const up = await callCallee(new URL('/cut', url), { headers: {}, body: '{}', timeoutMs: 30_000, wholeUpTo: 1024 });
    assert.equal(up.statusCode, 200);
    assert.equal(up.whole, undefined);
    await assert.rejects(up.body.all(1024));
  });

  test(`${label}: all(max): an answer longer than max is cut off (null) and the callee's connection closed`, async () => {
    const up = await callCallee(url, { headers: {}, body: '{}', timeoutMs: 30_000 });
    assert.equal(await up.body.all(1024 * 1024), null);
    await until(() => state.closed, 10_000, 'the callee saw its connection close');
    assert.ok(state.written < TOTAL);
  });
}

// A callee's events, each its own HTTP chunk, written together (as bench/a2a-echo-agent.ts writes its three).
const events = ['data: {"a":1}\n\n', 'data: {"b":"\u00e9t\u00e9"}\n\n', 'data: {"c":3}\n\n'];
/** A callee answering every call with an event stream that `write` writes (after the request's body), at `url` once started. */
function sseCallee(write: (res: ServerResponse) => void): { url: URL } {
  const at = { url: new URL('http://127.0.0.1:9/') };
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => { res.writeHead(200, { 'content-type': 'text/event-stream' }); write(res); });
  });
  before(async () => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    at.url = new URL(`http://127.0.0.1:${(s.address() as AddressInfo).port}/a2a`);
  });
  after(async () => {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  });
  return at;
}

const burst = sseCallee((res) => {
  for (const e of events.slice(0, -1)) res.write(e);
  res.end(events[events.length - 1]);
});

for (const [label, dispatcher] of [['undici', undefined], ['H1Agent', h1]] as const) {
  test(`${label}: readText() takes every chunk that has arrived as one text (one decode, one parse per read)`, async () => {
    const up = await callWith(burst.url, { headers: {}, body: '{}', timeoutMs: 30_000 }, dispatcher);
    // Everything arrives (three chunks and the end) before the first read.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(up.body.readText(), events.join(''));
    assert.equal(up.body.bytesRead, Buffer.byteLength(events.join('')));
    assert.equal(up.body.readText(), null);
    assert.equal(up.body.ended, true);
  });
}

// A character cut by a read: its first byte waits (readText's carry) and is put before the next read's chunks.
const cut = sseCallee((res) => {
  res.write(Buffer.from([...Buffer.from('data: caf'), 0xc3]));
  setTimeout(() => { res.write(Buffer.from([0xa9, ...Buffer.from(' 1\n\n')])); res.write('data: na\u00efve 2\n\n'); res.end('data: 3\n\n'); }, 150);
});

for (const [label, dispatcher] of [['undici', undefined], ['H1Agent', h1]] as const) {
  test(`${label}: readText() holds a character's first bytes back to the next read, which puts them before its chunks`, async () => {
    const up = await callWith(cut.url, { headers: {}, body: '{}', timeoutMs: 30_000 }, dispatcher);
    await new Promise((r) => setTimeout(r, 75));
    assert.equal(up.body.readText(), 'data: caf', 'the cut character waits');
    const texts: string[] = [];
    while (!up.body.ended) {
      const t = up.body.readText();
      if (t === null) await up.body.ready(); else texts.push(t);
    }
    assert.equal(texts.join(''), 'é 1\n\ndata: na\u00efve 2\n\ndata: 3\n\n');
    assert.ok(texts[0].startsWith('é'));
  });
}
