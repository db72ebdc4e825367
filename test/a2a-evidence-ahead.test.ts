// An A2A call alone in flight encodes its a2a_call event's members up to its credential and outcome
// (EVENT_HEAD, as chat's model_call) once its request to the callee is sent, so that once the answer
// is in only those are left to encode; with other calls in flight it does not. The bytes are the
// same either way, for an answer, a stream and a failed call.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { EVENT_HEAD, encodeEvent, type AuditEventInput } from '../src/audit/event.ts';
import { startEchoGateway, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway;
let callee: http.Server;
let key = '';
let close: (() => Promise<void>) | undefined;
const steps: string[] = [];
let held: Array<() => void> = [];
let want = 1;

before(async () => {
  // The callee answers a while after it has `want` requests: the gateway is idle meanwhile.
  callee = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string; params: { message: { messageId: string } } };
      const id = JSON.stringify(rpc.id);
      held.push(() => {
        if (rpc.params.message.messageId === 'broken') { res.writeHead(200, { 'content-type': 'application/json' }).end('not json'); return; }
        if (rpc.method === 'SendStreamingMessage') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(`data: {"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"r1","role":"ROLE_AGENT","parts":[{"text":"done"}]}}}\n\n`);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"r1","role":"ROLE_AGENT","parts":[{"text":"done"}]}}}`);
      });
      if (held.length < want) return;
      setTimeout(() => { steps.push('callee answers'); const h = held; held = []; for (const f of h) f(); }, 30);
    });
  });
  ({ gw, key, close } = await startEchoGateway(callee));
});

after(() => close?.());

const call = (method: string, id: number, messageId = `m${id}`) => fetch(`${gw.url}/a2a/echo`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { message: { messageId, role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }),
}).then((r) => r.text());

/** The a2a_call events recorded while `f` runs, and each one's head when it was recorded ('callee answers' ordered against it). */
async function recorded(f: () => Promise<unknown>): Promise<AuditEventInput[]> {
  const audit = gw.g.rt.audit!;
  const record = audit.record.bind(audit);
  const events: AuditEventInput[] = [];
  audit.record = (ev: AuditEventInput) => { if (ev.type === 'a2a_call') { events.push(ev); steps.push('recorded'); } return record(ev); };
  try { await f(); } finally { audit.record = record; }
  return events;
}

const headOf = (ev: AuditEventInput) => (ev as { [EVENT_HEAD]?: { keys: string[] } })[EVENT_HEAD];

function sameBytes(ev: AuditEventInput): void {
  const { [EVENT_HEAD]: _h, ...plain } = ev as AuditEventInput & { [EVENT_HEAD]?: unknown };
  assert.equal(encodeEvent(ev, 1).json, encodeEvent(plain as AuditEventInput, 1).json);
}

test('alone in flight, a SendMessage, a stream and a failed call carry their event\'s head (made once the request is sent); same bytes', async () => {
  for (const [method, messageId, status] of [['SendMessage', 'm1', 200], ['SendStreamingMessage', 'm2', 200], ['SendMessage', 'broken', 502]] as const) {
    steps.length = 0;
    const events = await recorded(() => call(method, 1, messageId));
    assert.equal(events.length, 1, method);
    assert.deepEqual(headOf(events[0])?.keys, ['type', 'request_id', 'trace_id', 'identity', 'policy', 'a2a'], method);
    assert.deepEqual(steps, ['callee answers', 'recorded']);
    assert.equal((events[0].outcome as { status: number }).status, status);
    sameBytes(events[0]);
    // The members after the head are the ones filled in at the end.
    assert.match(encodeEvent(events[0], 1).json, /"a2a":\{[^]*\},"outcome":\{"status":/);
  }
});

test('with another call in flight, one of the two encodes its event whole after its answer', async () => {
  want = 2;
  try {
    const events = await recorded(() => Promise.all([call('SendMessage', 1), call('SendMessage', 2)]));
    assert.equal(events.length, 2);
    assert.deepEqual(events.map((ev) => headOf(ev) !== undefined).sort(), [false, true]);
    for (const ev of events) sameBytes(ev);
  } finally { want = 1; }
});
