// The A2A stream relay writes the events of one read from the callee in one write: one chunk of
// the response's chunked framing (and one pass of the egress door's scrubber), not one per event.
// A secret split across the events of that read, and a secret inside one, are still scrubbed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

const SECRET = 'relay-cred-5b9e2d71c04a8f36ee';
let gw: TestGateway;
let callee: Server;
let key = '';

/** Three events in one write, as a callee that buffers its answer sends them. */
const events = (id: unknown, texts: string[]) => texts.map((t, i) => `data: ${JSON.stringify({ jsonrpc: '2.0', id, result: i === 0
  ? { task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } }
  : { artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [{ text: t }] } } } })}\n\n`).join('');

before(async () => {
  process.env.A2A_RELAY_TEST_TOKEN = SECRET;
  callee = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c; });
    req.on('end', () => {
      const rpc = JSON.parse(body) as { id: unknown; params: { message: { parts: Array<{ text: string }> } } };
      const text = rpc.params.message.parts[0].text;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const echo = text === 'secret' ? ['working', `key ${SECRET}`, 'done'] : ['working', 'alpha', 'beta'];
      res.end(events(rpc.id, echo));
    });
  });
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a`;
  gw = await startTestGateway(yaml(
    doc('Credential', 'relay-token', { env: 'A2A_RELAY_TEST_TOKEN' }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url, credential: 'relay-token' } }),
    doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: 'caller' }, agents: [{ agent: 'echo' }] }),
  ));
  key = gw.key('caller');
});

after(async () => {
  await gw?.close();
  await new Promise((r) => callee?.close(r));
  delete process.env.A2A_RELAY_TEST_TOKEN;
});

/** The raw HTTP/1.1 answer to a SendStreamingMessage: its chunked body's chunks, in order. */
async function streamChunks(text: string): Promise<string[]> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendStreamingMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text }] } } });
  const raw = await new Promise<string>((resolve, reject) => {
    const s = connect(gw.port, '127.0.0.1');
    let got = '';
    s.on('data', (c: Buffer) => { got += c.toString('utf8'); });
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.write(`POST /a2a/echo HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\naccept: text/event-stream\r\na2a-version: 1.0\r\nauthorization: Bearer ${key}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
  const at = raw.indexOf('\r\n\r\n');
  assert.match(raw.slice(0, at), /transfer-encoding: chunked/i);
  const chunks: string[] = [];
  for (let rest = raw.slice(at + 4); ;) {
    const eol = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) break;
    // Sizes count bytes; the test's texts are ASCII.
    chunks.push(rest.slice(eol + 2, eol + 2 + size));
    rest = rest.slice(eol + 2 + size + 2);
  }
  return chunks;
}

test('a2a stream relay: the events of one read from the callee leave in one chunk', async () => {
  const chunks = await streamChunks('hello');
  assert.equal(chunks.length, 1, `one write for one read, got ${chunks.length} chunks: ${JSON.stringify(chunks)}`);
  const frames = chunks[0].split('\n\n').filter(Boolean);
  assert.equal(frames.length, 3);
  assert.match(frames[1], /alpha/);
  assert.match(frames[2], /beta/);
});

test('a2a stream relay: a secret in one of the coalesced events is still scrubbed', async () => {
  const text = (await streamChunks('secret')).join('');
  assert.ok(!text.includes(SECRET), text);
  assert.match(text, /REDACTED/);
  assert.match(text, /done/);
});
