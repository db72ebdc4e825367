// Where nothing in it must change, a callee's JSON-RPC answer and each of its stream events reach
// the caller as the callee wrote them, and the caller's JSON-RPC body reaches the callee as the
// caller wrote it (a2a/raw.ts). What must change still does: a secret spelled with JSON escapes
// the egress door does not know, a secret split across text parts, and a key written twice (read
// one way by aam, maybe another by the caller) are re-serialised, as before, event by event, while
// their neighbours in the same stream go through raw.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

const SECRET = 'rawpath-cred-7c1e94b0d25f38aa61';
const HALF = SECRET.length >> 1;
/** The secret with its first character as a JSON \u escape: no spelling the door scrubs, the secret once parsed. */
const ESCAPED = `\\u00${SECRET.charCodeAt(0).toString(16)}${SECRET.slice(1)}`;

let gw: TestGateway;
let callee: Server;
let key = '';
/** The bodies the callee received, in order. */
const received: string[] = [];

const task = '{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}';
const artifact = (parts: string) => `{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":${parts}}}}`;
/** Events as a callee's serializer writes them: spaces and key order JSON.stringify would not produce. */
const event = (result: string) => `{ "result" : ${result}, "jsonrpc" : "2.0", "id" : 9 }`;

/** What the callee answers, by the text of the caller's message. */
const SCRIPTS: Record<string, { stream: boolean; events: string[] }> = {
  plain: { stream: false, events: [event(task)] },
  escaped: { stream: false, events: [event(artifact(`[{"text":"key ${ESCAPED} here"}]`))] },
  // A task id written twice: aam binds the last (t1) to this caller; a caller's parser may read the first.
  twice: { stream: false, events: [event('{"task":{"id":"t-other","id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}')] },
  twiceStream: {
    stream: true,
    events: [event(task), event('{"statusUpdate":{"taskId":"t-other","taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}')],
  },
  stream: {
    stream: true,
    events: [
      event(task),
      event(artifact('[{"text":"alpha"}]')),
      // The secret in a JSON escape the door does not know.
      event(artifact(`[{"text":"key ${ESCAPED} here"}]`)),
      event(artifact('[{"text":"beta"}]')),
      // The secret split across two text parts.
      event(artifact(`[{"text":"key ${SECRET.slice(0, HALF)}"},{"text":"${SECRET.slice(HALF)} here"}]`)),
      // The second half hidden under a key written twice: aam (JSON.parse) reads the last, a caller may read the first.
      event(artifact(`[{"text":"key ${SECRET.slice(0, HALF)}"},{"text":"${SECRET.slice(HALF)} here","text":"harmless"}]`)),
      event(artifact('[{"text":"gamma"}]')),
    ],
  },
  // Events no artifact joins (a2a/chunks.ts sees none of them): only the scrub across one event's
  // text parts and the raw check's reading of escaped strings stand between the secret and the caller.
  statusStream: {
    stream: true,
    events: [
      event(task),
      // A status message whose two text parts split the secret.
      event(`{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING","message":{"messageId":"s1","role":"ROLE_AGENT","parts":[{"text":"key ${SECRET.slice(0, HALF)}"},{"text":"${SECRET.slice(HALF)} here"}]}}}}`),
      event('{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}'),
      // A status message with the secret in a JSON escape the door does not know, in its one text part.
      event(`{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING","message":{"messageId":"s2","role":"ROLE_AGENT","parts":[{"text":"key ${ESCAPED} here"}]}}}}`),
      // The same escape in a string that is no text part (the message's metadata).
      event(`{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING","message":{"messageId":"s3","role":"ROLE_AGENT","parts":[],"metadata":{"note":"${ESCAPED}"}}}}}`),
      // The final task: its history's two messages split the secret between them.
      event(`{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"},"history":[{"messageId":"h1","role":"ROLE_AGENT","parts":[{"text":"key ${SECRET.slice(0, HALF)}"}]},{"messageId":"h2","role":"ROLE_AGENT","parts":[{"text":"${SECRET.slice(HALF)} here"}]}]}}`),
    ],
  },
};

before(async () => {
  process.env.A2A_RAW_TEST_TOKEN = SECRET;
  callee = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c; });
    req.on('end', () => {
      received.push(body);
      const rpc = JSON.parse(body) as { params: { message: { parts: Array<{ text: string }> } } };
      const script = SCRIPTS[rpc.params.message.parts[0].text] ?? SCRIPTS.plain;
      if (!script.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(script.events[0]);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of script.events) res.write(`data: ${e}\n\n`);
      res.end();
    });
  });
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  gw = await startTestGateway(yaml(
    doc('Credential', 'raw-token', { env: 'A2A_RAW_TEST_TOKEN' }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url: `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a`, credential: 'raw-token' } }),
    doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: 'caller' }, agents: [{ agent: 'echo' }] }),
  ));
  key = gw.key('caller');
});

after(async () => {
  await gw?.close();
  await new Promise((r) => callee?.close(r));
  delete process.env.A2A_RAW_TEST_TOKEN;
});

/** A caller's body written as its own serializer writes it (key order, spaces). */
const callerBody = (text: string, method = 'SendMessage', extra = '') =>
  `{ "method" : "${method}", "params" : { "message" : { "role" : "ROLE_USER", "parts" : [ { "text" : "${text}" } ], "messageId" : "m1" } }, "id" : 9, "jsonrpc" : "2.0"${extra} }`;

async function post(body: string, stream = false): Promise<{ status: number; text: string }> {
  const r = await fetch(`${gw.url}/a2a/echo`, {
    method: 'POST', body,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0', ...(stream ? { accept: 'text/event-stream' } : {}) },
  });
  return { status: r.status, text: await r.text() };
}

/** Every text part's text in an answer or event, decoded (what the caller's JSON.parse reads). */
function texts(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) texts(x, out);
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { if (k === 'text' && typeof x === 'string') out.push(x); else texts(x, out); }
  return out;
}

test('a2a raw: a callee\'s answer that nothing changes reaches the caller as the callee wrote it', async () => {
  const r = await post(callerBody('plain'));
  assert.equal(r.status, 200);
  assert.equal(r.text, SCRIPTS.plain.events[0]);
});

test('a2a raw: the caller\'s body reaches the callee as the caller wrote it; a body that is more than the call, or repeats a key, is re-serialised', async () => {
  received.length = 0;
  const exact = callerBody('plain');
  await post(exact);
  assert.equal(received[0], exact);
  // A member beside jsonrpc, method, id and params: the callee gets the call aam read (as before).
  await post(callerBody('plain', 'SendMessage', ', "extra" : 1'));
  assert.equal(received[1], JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendMessage', params: JSON.parse(exact).params }));
  // A repeated key: aam decided on the last skill; the callee must not get the first one to read.
  const twice = exact.replace('"messageId" : "m1"', '"messageId" : "m1", "metadata" : { "skill" : "other", "skill" : "echo" }');
  await post(twice);
  assert.ok(!received[2].includes('"other"'), received[2]);
  assert.deepEqual(JSON.parse(received[2]), JSON.parse(twice));
});

test('a2a raw: a secret in a JSON escape the egress door does not know is redacted in an answer', async () => {
  const r = await post(callerBody('escaped'));
  const decoded = texts(JSON.parse(r.text)).join(' ');
  assert.ok(!decoded.includes(SECRET), decoded);
  assert.match(decoded, /REDACTED/);
});

test('a2a raw: stream events that carry a secret are redacted while their neighbours go through raw', async () => {
  const r = await post(callerBody('stream', 'SendStreamingMessage'), true);
  assert.equal(r.status, 200);
  const frames = r.text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice('data: '.length));
  const sent = SCRIPTS.stream.events;
  assert.equal(frames.length, sent.length, r.text);
  // The events nothing changes: byte for byte the callee's.
  for (const i of [0, 1, 3, 6]) assert.equal(frames[i], sent[i], `event ${i}`);
  // Those carrying a secret: not the callee's bytes, and the secret is gone however the caller reads them.
  for (const i of [2, 4, 5]) assert.notEqual(frames[i], sent[i], `event ${i} went through raw`);
  const decoded = frames.map((f) => texts(JSON.parse(f)).join(''));
  assert.ok(!decoded[2].includes(SECRET) && decoded[2].includes('REDACTED'), decoded[2]);
  assert.ok(!decoded[4].includes(SECRET) && decoded[4].includes('REDACTED'), decoded[4]);
  // The key written twice: the caller gets the value aam read, not the half it never checked.
  assert.ok(!frames[5].includes(SECRET.slice(HALF)), frames[5]);
  // (The half it did check, which could begin the secret, moved on to the artifact's next text part: a2a/chunks.ts.)
  assert.equal(texts(JSON.parse(frames[5])).join(''), `key ${SECRET.slice(0, HALF)}harmless`);
  assert.ok(!r.text.includes(SECRET), r.text);
});

test('a2a raw: stream events no artifact joins (status messages, a final task\'s history) have the secret redacted, split across their text parts or in a JSON escape; their neighbours go through raw', async () => {
  const r = await post(callerBody('statusStream', 'SendStreamingMessage'), true);
  assert.equal(r.status, 200);
  const frames = r.text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice('data: '.length));
  const sent = SCRIPTS.statusStream.events;
  assert.equal(frames.length, sent.length, r.text);
  for (const i of [0, 2]) assert.equal(frames[i], sent[i], `event ${i}`);
  for (const i of [1, 3, 4, 5]) {
    assert.notEqual(frames[i], sent[i], `event ${i} went through raw`);
    const read = JSON.stringify(JSON.parse(frames[i]));
    assert.ok(!read.includes(SECRET) && read.includes('REDACTED'), `event ${i}: ${read}`);
  }
  assert.ok(!texts(JSON.parse(frames[1])).join('').includes(SECRET));
  assert.ok(!texts(JSON.parse(frames[5])).join('').includes(SECRET));
});

test('a2a raw: an answer or a stream event (no artifact in it) that writes a key twice is re-serialised: the caller never reads the value aam did not bind', async () => {
  const r = await post(callerBody('twice'));
  assert.equal(r.status, 200);
  assert.ok(!r.text.includes('t-other'), r.text);
  assert.equal((JSON.parse(r.text) as { result: { task: { id: string } } }).result.task.id, 't1');
  const s = await post(callerBody('twiceStream', 'SendStreamingMessage'), true);
  const frames = s.text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice('data: '.length));
  assert.equal(frames.length, 2, s.text);
  assert.equal(frames[0], SCRIPTS.twiceStream.events[0]);
  assert.ok(!frames[1].includes('t-other'), frames[1]);
  assert.equal((JSON.parse(frames[1]) as { result: { statusUpdate: { taskId: string } } }).result.statusUpdate.taskId, 't1');
});
