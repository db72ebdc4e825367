// A body refused while read (over AAM_MAX_BODY_BYTES, declared or chunked) is answered and the
// connection closed: the gateway stops reading. Reading on and discarding let one agent keep the
// gateway busy with gigabytes it had already refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Agent, request } from 'node:http';
import { LINGER_BYTES } from '../src/access/linger.ts';
import { startTestGateway, yaml, agentDocs, doc, type TestGateway } from './helpers/gateway.ts';

const LIMIT = 256 * 1024;
/** What the client offers; far over what loopback socket buffers can hold once the gateway stops reading. */
const OFFERED = 256 * 1024 * 1024;
/** Kernel send and receive buffers on loopback hold a few MB; a gateway that reads on takes all of OFFERED. */
const STOPPED_BELOW = 48 * 1024 * 1024;

let gw: TestGateway;
let key: string;

before(async () => {
  gw = await startTestGateway(yaml(
    doc('Provider', 'none', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1' }),
    doc('Model', 'm', { targets: [{ provider: 'none', model: 'm' }] }),
    ...agentDocs(['m']),
  ), { AAM_MAX_BODY_BYTES: String(LIMIT) });
  key = gw.key('tester');
});
after(async () => { await gw?.close(); });

interface Outcome { head: string; written: number; closed: boolean }

/** POST `OFFERED` bytes as fast as the socket takes them; stops when the gateway closes the connection. */
function flood(path: string, framing: 'chunked' | 'declared', bearer = key): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const s = connect(gw.port, '127.0.0.1');
    const block = Buffer.alloc(64 * 1024, 0x61);
    const framed = framing === 'chunked' ? Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from('\r\n')]) : block;
    let written = 0, head = '', done = false;
    const finish = (closed: boolean) => { if (!done) { done = true; s.destroy(); resolve({ head, written, closed }); } };
    s.on('data', (d) => { head += d.toString('latin1'); });
    s.on('error', () => finish(true)); // EPIPE / ECONNRESET: the gateway closed while we wrote
    s.on('close', () => finish(true));
    s.on('connect', () => {
      s.write(`POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${bearer}\r\ncontent-type: application/json\r\n`
        + (framing === 'chunked' ? 'transfer-encoding: chunked\r\n\r\n' : `content-length: ${OFFERED}\r\n\r\n`));
      const start = '{"model":"m","messages":[{"role":"user","content":"';
      s.write(framing === 'chunked' ? `${start.length.toString(16)}\r\n${start}\r\n` : start);
      const pump = () => {
        while (!done && written < OFFERED) {
          written += block.length;
          if (!s.write(framed)) { s.once('drain', pump); return; }
        }
        if (!done) finish(false);
      };
      pump();
    });
    setTimeout(() => { if (!done) reject(new Error(`no close after ${written} bytes; got ${JSON.stringify(head.slice(0, 200))}`)); s.destroy(); }, 60_000).unref();
  });
}

for (const framing of ['chunked', 'declared'] as const) {
  test(`a body over the limit (${framing}) is answered 413 with connection: close, and the gateway stops reading it`, async () => {
    const o = await flood('/v1/chat/completions', framing);
    assert.ok(o.closed, `the gateway read all ${o.written} bytes offered`);
    assert.ok(o.written < STOPPED_BELOW, `the gateway read on after refusing: ${o.written} bytes taken`);
    assert.match(o.head, /^HTTP\/1\.1 413 /);
    assert.match(o.head, /\r\nconnection: close\r\n/i);
    assert.match(o.head, /AAM_MAX_BODY_BYTES/);
  });
}

test('an MCP body over the limit is answered 413 with connection: close, and the gateway stops reading it', async () => {
  const o = await flood('/mcp', 'chunked');
  assert.ok(o.closed, `the gateway read all ${o.written} bytes offered`);
  assert.ok(o.written < STOPPED_BELOW, `the gateway read on after refusing: ${o.written} bytes taken`);
  assert.match(o.head, /^HTTP\/1\.1 413 /);
  assert.match(o.head, /\r\nconnection: close\r\n/i);
});

test('a large body sent without credentials is answered 401 with connection: close, and not read', async () => {
  const o = await flood('/v1/chat/completions', 'chunked', 'aam_not-a-real-key');
  assert.ok(o.closed && o.written < STOPPED_BELOW, `the gateway read ${o.written} bytes of an unauthenticated body`);
  assert.match(o.head, /^HTTP\/1\.1 401 /);
  assert.match(o.head, /\r\nconnection: close\r\n/i);
});

test('a client still sending a body over the limit reads the 413, not a reset (the gateway lingers a bounded while)', async () => {
  const { Pool } = await import('undici');
  const pool = new Pool(gw.url, { connections: 1 });
  try {
    for (const size of [LIMIT + 1, 2 * LIMIT, LIMIT + LINGER_BYTES / 2]) {
      const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', body: Buffer.alloc(size, 0x61), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
      assert.equal(r.statusCode, 413, `${size} bytes`);
      assert.equal(r.headers.connection, 'close');
      assert.match(await r.body.text(), /AAM_MAX_BODY_BYTES/);
    }
  } finally { await pool.close(); }
});

test('after refusing a body the gateway answers new connections as usual', async () => {
  const r = await fetch(`${gw.url}/healthz`);
  assert.equal(r.status, 200);
});

test('a request without a body answered at once (/healthz, a 401 to a GET) keeps its connection: nothing is left to read', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path: string, headers: Record<string, string> = {}) => new Promise<{ status: number; connection?: string; reused: boolean }>((resolve, reject) => {
    const req = request(`${gw.url}${path}`, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
  try {
    const answers = [await get('/healthz'), await get('/healthz'), await get('/v1/models'), await get('/v1/models', { authorization: `Bearer ${key}` })];
    assert.deepEqual(answers.map((a) => [a.status, a.connection, a.reused]), [[200, 'keep-alive', false], [200, 'keep-alive', true], [401, 'keep-alive', true], [200, 'keep-alive', true]]);
  } finally {
    agent.destroy();
  }
});
