// The A2A stream relay writes the events of one read from the callee in one write: one chunk of
// the response's chunked framing (and one pass of the egress door's scrubber), not one per event.
// A secret split across the events of that read, and a secret inside one, are still scrubbed.
// The head waits for the first write: a callee that answers at once (head, events, end: one read,
// its events in one HTTP chunk or each in its own) is answered with one body and its length, as an
// answer is (no chunked framing); a callee whose events come in several reads gets them chunk by
// chunk, the head with the first.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { idsIn, SeenIds } from '../src/a2a/tasks.ts';

const SECRET = 'relay-cred-5b9e2d71c04a8f36ee';
let gw: TestGateway;
let callee: Server;
let burst: NetServer;
let key = '';
let guardedKey = '';

/**
 * The whole HTTP answer of a callee that had it ready: each piece of `body` an HTTP chunk of its
 * own (so a chunk of the callee's answer to aam each), all of it in one socket write.
 */
const burstAnswer = (pieces: Buffer[]) => Buffer.concat([
  Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n'),
  ...pieces.flatMap((p) => [Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]),
  Buffer.from('0\r\n\r\n'),
]);

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
      // 'reads:<a>|<b>': that event stream in two reads (b once the caller could have read a).
      if (text.startsWith('reads:')) { const [a, b] = text.slice(6).split('|'); res.write(a); setTimeout(() => res.end(b), 50); return; }
      // 'quiet': nothing for a while (the relay's keep-alive comes first), then the events.
      if (text === 'quiet') { res.flushHeaders(); setTimeout(() => res.end(events(rpc.id, echo)), 250); return; }
      // 'slow': the first event now, the others once the caller could have read it.
      if (text !== 'slow') return res.end(events(rpc.id, echo));
      const [first, ...rest] = events(rpc.id, echo).split(/(?<=\n\n)/);
      res.write(first);
      setTimeout(() => res.end(rest.join('')), 50);
    });
  });
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a`;
  // The burst callee: reads the request (head and content-length body), answers in one write.
  burst = createNetServer((sock) => {
    let got = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const at = got.indexOf('\r\n\r\n');
      if (at < 0) return;
      const length = Number(/content-length: *(\d+)/i.exec(got.subarray(0, at).toString('latin1'))?.[1] ?? 0);
      if (got.length < at + 4 + length) return;
      const rpc = JSON.parse(got.subarray(at + 4, at + 4 + length).toString('utf8')) as { id: unknown; params: { message: { parts: Array<{ text: string }> } } };
      // 'raw:<sse>': that event stream as it is, in one chunk.
      if (rpc.params.message.parts[0].text.startsWith('raw:')) { sock.end(burstAnswer([Buffer.from(rpc.params.message.parts[0].text.slice(4))])); return; }
      const [first, ...rest] = events(rpc.id, ['working', ...rpc.params.message.parts[0].text.split('|')]).split(/(?<=\n\n)/);
      const pieces = [Buffer.from(first)];
      // Each later event in two chunks, cut in its middle byte (inside a character or a secret, as the text has it).
      for (const e of rest) { const b = Buffer.from(e); const mid = b.indexOf(0xc3) > 0 ? b.indexOf(0xc3) + 1 : b.indexOf(SECRET.slice(0, 10)) > 0 ? b.indexOf(SECRET.slice(0, 10)) + 10 : b.length >> 1; pieces.push(b.subarray(0, mid), b.subarray(mid)); }
      sock.end(burstAnswer(pieces));
    });
  });
  await new Promise<void>((r) => burst.listen(0, '127.0.0.1', r));
  gw = await startTestGateway(yaml(
    doc('Credential', 'relay-token', { env: 'A2A_RELAY_TEST_TOKEN' }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url, credential: 'relay-token' } }),
    doc('Agent', 'burst', { workload: 'spiffe://test/agent/burst', a2a: { url: `http://127.0.0.1:${(burst.address() as AddressInfo).port}/a2a`, credential: 'relay-token' } }),
    doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: 'caller' }, agents: [{ agent: 'echo' }, { agent: 'burst' }] }),
    // A caller whose answers wait for an output guardrail: its relay's events each wait (a promise).
    doc('Agent', 'guarded', { workload: 'spiffe://test/agent/guarded' }),
    doc('Guardrail', 'pii-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('AgentPolicy', 'guarded-calls', { identity: { agent: 'guarded' }, agents: [{ agent: 'burst' }], guardrails: ['pii-out'] }),
  ), { AAM_SSE_KEEPALIVE_MS: '100' });
  key = gw.key('caller');
  guardedKey = gw.key('guarded');
});

after(async () => {
  await gw?.close();
  await new Promise((r) => callee?.close(r));
  await new Promise((r) => burst?.close(r));
  delete process.env.A2A_RELAY_TEST_TOKEN;
});

/**
 * The raw HTTP/1.1 answer to a SendStreamingMessage: its chunked body's chunks, in order, or its
 * body as one piece when it has a content-length (`chunked` says which).
 */
async function streamBody(text: string, agent = 'echo', as = key): Promise<{ head: string; chunked: boolean; pieces: string[] }> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendStreamingMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text }] } } });
  const raw = await new Promise<string>((resolve, reject) => {
    const s = connect(gw.port, '127.0.0.1');
    let got = '';
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => { parts.push(c); });
    s.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
    s.on('error', reject);
    s.write(`POST /a2a/${agent} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\naccept: text/event-stream\r\na2a-version: 1.0\r\nauthorization: Bearer ${as}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
  const at = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, at);
  const length = /\r\ncontent-length: *(\d+)/i.exec(head);
  if (length !== null) {
    assert.doesNotMatch(head, /transfer-encoding/i);
    assert.equal(raw.length - at - 4, Number(length[1]), 'the body is as long as its head says');
    return { head, chunked: false, pieces: [Buffer.from(raw.slice(at + 4), 'latin1').toString('utf8')] };
  }
  assert.match(head, /transfer-encoding: chunked/i);
  const chunks: string[] = [];
  for (let rest = raw.slice(at + 4); ;) {
    const eol = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) break;
    // Sizes count bytes: the answer was read as latin1 (a char per byte), each chunk is decoded as UTF-8.
    chunks.push(Buffer.from(rest.slice(eol + 2, eol + 2 + size), 'latin1').toString('utf8'));
    rest = rest.slice(eol + 2 + size + 2);
  }
  return { head, chunked: true, pieces: chunks };
}

/** The body's text, however it was framed. */
const streamText = async (text: string, agent = 'echo'): Promise<string> => (await streamBody(text, agent)).pieces.join('');

test('a2a stream relay: a callee\'s answer that came in one read leaves as one body with its length, not chunk by chunk', async () => {
  const { chunked, pieces } = await streamBody('hello');
  assert.equal(chunked, false, `one body, got chunks: ${JSON.stringify(pieces)}`);
  const frames = pieces[0].split('\n\n').filter(Boolean);
  assert.equal(frames.length, 3);
  assert.match(frames[1], /alpha/);
  assert.match(frames[2], /beta/);
});

test('a2a stream relay: events that come in several reads are relayed as they come, the head with the first', async () => {
  const { chunked, pieces } = await streamBody('slow');
  assert.equal(chunked, true);
  assert.ok(pieces.length >= 2, `the first event alone, then the rest: ${JSON.stringify(pieces)}`);
  assert.equal(pieces[0].split('\n\n').filter(Boolean).length, 1, pieces[0]);
  assert.match(pieces[0], /TASK_STATE_WORKING/);
  assert.deepEqual(pieces.join('').split('\n\n').filter(Boolean).map((f) => /alpha|beta|WORKING/.exec(f)?.[0]), ['WORKING', 'alpha', 'beta']);
});

test('a2a stream relay: a callee that stays quiet: the head goes out with the first keep-alive, the events after it', async () => {
  const { head, chunked, pieces } = await streamBody('quiet');
  assert.match(head, /^HTTP\/1\.1 200 /);
  assert.match(head, /content-type: text\/event-stream/i);
  assert.equal(chunked, true);
  assert.equal(pieces[0], ': keep-alive\n\n');
  assert.deepEqual(pieces.join('').split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => /alpha|beta|WORKING/.exec(f)?.[0]), ['WORKING', 'alpha', 'beta']);
});

test('a2a stream relay: only a relay that waits joins the open streams (a drain\'s) and the keep-alive clock', async () => {
  const streams = gw.g.rt.streams;
  const add = streams.add;
  let added = 0;
  streams.add = (end) => { added++; return add.call(streams, end); };
  try {
    await streamBody('hello');
    await streamBody('alpha|beta', 'burst');
    assert.equal(added, 0, 'an answer in one read: the relay never waits');
    await streamBody('slow');
    assert.equal(added, 1, 'a relay that waits for the callee is listed once');
    assert.equal(streams.size, 0, 'and unlisted at its end');
  } finally {
    streams.add = add;
  }
});

test('a2a stream relay: an answer that came in one read whose events wait (an output guardrail) is relayed whole, in order, each event guarded', async () => {
  // The relay's one pass stops at the first event that waits and goes on from it once it is guarded.
  const { pieces } = await streamBody('to ann@example.com|and bob@example.com', 'burst', guardedKey);
  const frames = pieces.join('').split('\n\n').filter(Boolean);
  assert.equal(frames.length, 3, pieces.join(''));
  assert.match(frames[0], /TASK_STATE_WORKING/);
  assert.match(frames[1], /to \[EMAIL\]/);
  assert.match(frames[2], /and \[EMAIL\]/);
  assert.ok(!pieces.join('').includes('@example.com'), pieces.join(''));
});

test('a2a stream relay: a secret in one of the coalesced events is still scrubbed', async () => {
  const text = await streamText('secret');
  assert.ok(!text.includes(SECRET), text);
  assert.match(text, /REDACTED/);
  assert.match(text, /done/);
});

test('a2a stream relay: a callee\'s answer that came in one read (its events in chunks of their own) leaves as one body, with the end', async () => {
  const { chunked, pieces } = await streamBody('alpha|beta|gamma', 'burst');
  // Chunk by chunk, this was one write (an HTTP chunk) per event: four.
  assert.equal(chunked, false, `one body, got chunks: ${JSON.stringify(pieces)}`);
  const frames = pieces[0].split('\n\n').filter(Boolean);
  assert.deepEqual(frames.map((f) => (JSON.parse(f.slice('data: '.length)) as { result: { artifactUpdate?: { artifact: { parts: Array<{ text: string }> } } } }).result.artifactUpdate?.artifact.parts[0].text), [undefined, 'alpha', 'beta', 'gamma']);
});

test('a2a stream relay: events passed on as the callee wrote them are the same bytes as their frames, whatever the callee\'s framing', async () => {
  // Each event's frame as the relay makes it (`data: ` + its data + a blank line), or the event
  // re-serialised (a repeated key may not pass raw): where the callee's text is exactly those
  // frames the relay passes that text on, and nowhere else.
  const ev = (n: number, extra = '') => `{"jsonrpc":"2.0","id":9${extra},"result":{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING","n":${n}}}}}`;
  const frame = (data: string, event?: string) => `${event !== undefined ? `event: ${event}\n` : ''}data: ${data.split('\n').join('\ndata: ')}\n\n`;
  const cases: Array<[string, string]> = [
    [`data: ${ev(1)}\n\ndata: ${ev(2)}\n\ndata: ${ev(3)}\n\n`, frame(ev(1)) + frame(ev(2)) + frame(ev(3))],
    [`data:${ev(1)}\n\ndata: ${ev(2)}\n\n`, frame(ev(1)) + frame(ev(2))],
    [`data: ${ev(1)}\r\n\r\ndata: ${ev(2)}\n\n`, frame(ev(1)) + frame(ev(2))],
    [`data: ${ev(1)}\n\nevent: progress\ndata: ${ev(2)}\n\ndata: ${ev(3)}\n\n`, frame(ev(1)) + frame(ev(2), 'progress') + frame(ev(3))],
    [`data: ${ev(1)}\n\n: a comment\nid: 7\ndata: ${ev(2)}\n\ndata: ${ev(3)}\n\n`, frame(ev(1)) + frame(ev(2)) + frame(ev(3))],
    [`data: ${ev(1)}\n\ndata: ${ev(2, ',"id":9')}\n\ndata: ${ev(3)}\n\n`, frame(ev(1)) + frame(ev(2)) + frame(ev(3))],
    [`data: ${ev(1).slice(0, 17)}\ndata: ${ev(1).slice(17)}\n\ndata: ${ev(2)}\n\n`, frame(`${ev(1).slice(0, 17)}\n${ev(1).slice(17)}`) + frame(ev(2))],
    [`data: ${ev(1)}\n\ndata: ${ev(2)}`, frame(ev(1)) + frame(ev(2))],
  ];
  for (const [sse, want] of cases) {
    const { chunked, pieces } = await streamBody(`raw:${sse}`, 'burst');
    assert.equal(chunked, false);
    assert.equal(pieces[0], want, JSON.stringify(sse));
  }
  // An event begun in an earlier read (its event field there, its data line in this one) is framed whole.
  // The callee's second read comes 50 ms later; on a loaded host the relay's keep-alive (100 ms here)
  // may fall between the two, which is right: only the events are compared.
  const { pieces } = await streamBody(`reads:data: ${ev(1)}\n\nevent: progress\n|data: ${ev(2)}\n\ndata: ${ev(3)}\n\n`);
  assert.equal(pieces.filter((p) => p !== ': keep-alive\n\n').join(''), frame(ev(1)) + frame(ev(2), 'progress') + frame(ev(3)));
});

test('a2a stream relay: a character split across the callee\'s chunks arrives whole', async () => {
  const text = await streamText('café crème|naïve', 'burst');
  assert.match(text, /café crème/);
  assert.match(text, /naïve/);
  assert.doesNotMatch(text, /\ufffd/);
});

test('a2a stream relay: an artifact carrying the credential, split across the callee\'s chunks, is scrubbed when written with the end', async () => {
  const text = await streamText(`ok|key ${SECRET} here|done`, 'burst');
  assert.ok(!text.includes(SECRET), text);
  assert.ok(!text.includes(SECRET.slice(10)), text);
  assert.match(text, /REDACTED/);
  assert.match(text, /done/);
});

test('idsIn: a stream\'s ids are each returned once (then marked seen); nothing new is one shared empty answer, no arrays made', () => {
  const seen = new SeenIds();
  const task = { task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } };
  assert.deepEqual(idsIn(task, seen), { tasks: ['t1'], contexts: ['c1'] });
  const artifact = { artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [] } } };
  const none = idsIn(artifact, seen);
  assert.deepEqual(none, { tasks: [], contexts: [] });
  // A new id in a later event (another task of the same context) is returned alone.
  assert.deepEqual(idsIn({ statusUpdate: { taskId: 't2', contextId: 'c1', status: {} } }, seen), { tasks: ['t2'], contexts: [] });
  assert.deepEqual([seen.task, ...seen.moreTasks ?? []], ['t1', 't2']);
  assert.equal(seen.context, 'c1');
  assert.equal(seen.moreContexts, null, 'one context: no Set made');
  // One id named twice in one event is returned once.
  const fresh = new SeenIds();
  assert.deepEqual(idsIn({ id: 't3', status: {}, contextId: 'c3', task: { id: 't3', status: {}, contextId: 'c3' } }, fresh), { tasks: ['t3'], contexts: ['c3'] });
  // Without `seen` (an answer, a push notification) every id is returned; a plain message has none.
  assert.deepEqual(idsIn(task), { tasks: ['t1'], contexts: ['c1'] });
  const message = idsIn({ message: { messageId: 'm1', role: 'ROLE_AGENT', parts: [] } });
  assert.equal(message, none, 'the same shared object: nothing was allocated');
  assert.equal(idsIn(artifact, seen), none);
  assert.ok(Object.isFrozen(none) && Object.isFrozen(none.tasks) && Object.isFrozen(none.contexts));
  // The usual stream (one task, one context, named by every event) keeps them as two strings: no Set at all.
  const usual = new SeenIds();
  for (let i = 0; i < 3; i++) idsIn(i === 0 ? task : artifact, usual);
  assert.deepEqual([usual.task, usual.context, usual.moreTasks, usual.moreContexts], ['t1', 'c1', null, null]);
  // Several ids: each still bound once.
  const many = new SeenIds();
  for (let i = 0; i < 2; i++) for (const t of ['t1', 't2', 't3']) idsIn({ statusUpdate: { taskId: t, contextId: `c${t}`, status: {} } }, many);
  assert.deepEqual([many.task, ...many.moreTasks ?? []], ['t1', 't2', 't3']);
  assert.deepEqual([many.context, ...many.moreContexts ?? []], ['ct1', 'ct2', 'ct3']);
});
