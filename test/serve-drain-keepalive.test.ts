// A drain and keep-alive clients (every SDK keeps its connections open): after close() began, an
// answer still being made says `connection: close` and its connection ends, so the client's next
// request opens a new connection (another replica behind a load balancer) instead of being served
// here. Before, Node served new requests on the kept-alive connections and promised keep-alive:
// a busy client held the replica until its drain was cut, and a request sent as the idle sweep
// closed its connection was reset (measured: 3 ECONNRESET in 16 clients' SIGTERM run).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, createServer, request } from 'node:http';
import { connect } from 'node:net';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';
import { listenLoopback } from './helpers/e2e.ts';

/** An OpenAI-shaped model that answers after 400 ms (streamed: its first chunk at once, the rest then). */
const upstream = createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => { body += c; });
  req.on('end', () => (JSON.parse(body) as { stream?: boolean }).stream ? stream(res) : setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'slow', choices: [{ index: 0, message: { role: 'assistant', content: 'done' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
  }, 400));
});
after(() => { upstream.closeAllConnections(); upstream.close(); });

function stream(res: import('node:http').ServerResponse): void {
  const chunk = (delta: Record<string, unknown>, finish: string | null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'slow', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(chunk({ role: 'assistant', content: 'do' }, null));
  setTimeout(() => res.end(`${chunk({ content: 'ne' }, 'stop')}data: [DONE]\n\n`), 400);
}

let base: Promise<string> | undefined;
async function slowGateway() {
  base ??= listenLoopback(upstream);
  return startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${await base}/v1` }),
    doc('Model', 'slow', { targets: [{ provider: 'up', model: 'slow' }] }),
    ...agentDocs(['slow']),
  ));
}

type Answer = { status: number | string; connection?: string; reused?: boolean };

function chat(url: string, key: string, agent: Agent): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` } }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, reused: req.reusedSocket }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ status: e.code ?? e.message }));
    req.end(JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'hi' }] }));
  });
}

test('drain: the answer in flight closes its keep-alive connection; the next request is not served by the draining gateway', async () => {
  const gw = await slowGateway();
  const key = gw.key('tester');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let closing: Promise<void> | undefined;
  try {
    const warm = await chat(gw.url, key, agent);
    assert.deepEqual([warm.status, warm.connection], [200, 'keep-alive'], 'before the drain, connections are kept alive');
    const inFlight = chat(gw.url, key, agent); // on the kept-alive connection
    await new Promise((r) => setTimeout(r, 150));
    closing = gw.g.close();
    const a = await inFlight;
    assert.equal(a.status, 200, 'the request in flight is answered');
    assert.equal(a.reused, true);
    assert.equal(a.connection, 'close', 'its answer tells the client not to send more on this connection');
    // Node's agent now opens a new connection, which the draining gateway does not accept.
    const next = await chat(gw.url, key, agent);
    assert.equal(next.status, 'ECONNREFUSED', `the next request went elsewhere, not served here: ${JSON.stringify(next)}`);
    const t0 = performance.now();
    await closing;
    assert.ok(performance.now() - t0 < 5000, 'the drain was not held open');
  } finally {
    agent.destroy();
    await (closing ?? Promise.resolve());
    await gw.close();
  }
});

test('drain: a request sent on an open connection after the drain began (a stream whose headers were out had just ended on it) is answered with connection: close', async () => {
  const gw = await slowGateway();
  const key = gw.key('tester');
  let closing: Promise<void> | undefined;
  const socket = connect(gw.port, '127.0.0.1');
  try {
    let text = '';
    let sent = false;
    socket.setEncoding('utf8');
    const ended = new Promise<void>((r) => { socket.on('close', () => r()); });
    socket.on('data', (c: string) => {
      text += c;
      // As a keep-alive client does: the next request goes out as soon as the stream has ended.
      if (!sent && text.includes('[DONE]')) { sent = true; socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n'); }
    });
    const body = JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer ${key}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    const t0 = performance.now();
    while (!text.includes('"content":"do"') && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.match(text, /^HTTP\/1\.1 200 [^]*connection: keep-alive/i, 'the stream began (headers out, keep-alive)');
    closing = gw.g.close();
    await ended;
    const answers = text.split(/(?=HTTP\/1\.1 )/);
    assert.match(answers[0], /\[DONE\]/, 'the stream finished');
    assert.equal(answers.length, 2, `the request sent after the stream was answered: ${text}`);
    assert.match(answers[1], /^HTTP\/1\.1 200 [^]*connection: close/i, `and told to close: ${answers[1]}`);
  } finally {
    socket.destroy();
    await (closing ?? Promise.resolve());
    await gw.close();
  }
});

test('drain: a request already at the gateway on an idle kept-alive connection when the drain begins (not yet read) is answered with connection: close, not reset', async () => {
  const gw = await slowGateway();
  const socket = connect(gw.port, '127.0.0.1');
  let closing: Promise<void> | undefined;
  try {
    let text = '';
    const errors: string[] = [];
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => { text += c; });
    socket.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    const ended = new Promise<void>((r) => { socket.on('close', () => r()); });
    // /readyz answers after a turn (a store probe): a synchronous answer to a GET closes its connection (its request not yet complete).
    socket.write('GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n');
    const t0 = performance.now();
    while (!text.includes('"ready"') && performance.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 5));
    assert.match(text, /^HTTP\/1\.1 200 [^]*connection: keep-alive/i, 'answered and kept alive: the connection is now idle');
    // On loopback the write is in the gateway's socket buffer at once; close() runs before the gateway reads it.
    socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    closing = gw.g.close();
    await ended;
    const answers = text.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 2, `the request already sent was answered: ${text} ${errors}`);
    assert.match(answers[1], /^HTTP\/1\.1 200 [^]*connection: close/i, answers[1]);
    assert.deepEqual(errors, [], 'not reset');
  } finally {
    socket.destroy();
    await (closing ?? Promise.resolve());
    await gw.close();
  }
});

test('drain: a connection on which the client has sent nothing (a pool\'s spare, a balancer\'s pre-connect) is closed within a sweep or two, not held to the drain bound; one whose request was sent as the drain began (part of it) is left to finish it', async () => {
  const gw = await slowGateway();
  const spare = connect(gw.port, '127.0.0.1');
  const partial = connect(gw.port, '127.0.0.1');
  let closing: Promise<void> | undefined;
  try {
    const errors: string[] = [];
    spare.on('error', (e: NodeJS.ErrnoException) => errors.push(`spare ${e.code}`));
    partial.on('error', (e: NodeJS.ErrnoException) => errors.push(`partial ${e.code}`));
    await Promise.all([spare, partial].map((s) => new Promise((r) => s.once('connect', r))));
    // Both accepted by the gateway (one still in the listen backlog is reset when the listener closes).
    while (await new Promise<number>((r) => gw.g.server.getConnections((_e, c) => r(c ?? 0))) < 2) await new Promise((r) => setTimeout(r, 10));
    let answer = '';
    partial.setEncoding('utf8');
    partial.on('data', (c: string) => { answer += c; });
    // Written as the drain begins: not yet read by the gateway when close() first sweeps.
    partial.write('GET /healthz HTTP/1.1\r\nhost: x\r\n');
    const spareClosed = new Promise<void>((r) => spare.once('close', () => r()));
    const partialClosed = new Promise<void>((r) => partial.once('close', () => r()));
    // The drain bound is AAM_DRAIN_TIMEOUT_MS's default, 10 s: before, close() waited it out for the spare.
    const t0 = performance.now();
    closing = gw.g.close();
    await spareClosed;
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!partial.destroyed && answer === '', `the connection with a request under way is not cut: ${errors} ${answer}`);
    partial.write('\r\n'); // the request completes: answered, and told to close
    await partialClosed;
    assert.match(answer, /^HTTP\/1\.1 200 [^]*connection: close/i, answer);
    await closing;
    const took = performance.now() - t0;
    assert.ok(took < 5_000, `close() took ${Math.round(took)} ms: held by a connection that sent nothing`);
    assert.deepEqual(errors.filter((e) => e.startsWith('partial')), [], 'the request under way was not reset');
  } finally {
    spare.destroy();
    partial.destroy();
    await (closing ?? Promise.resolve());
    await gw.close();
  }
});
