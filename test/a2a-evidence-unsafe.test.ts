// An A2A call whose evidence cannot be made crash-safe is not acknowledged: a SendMessage's answer
// is refused (503 with the refusal, as a JSON-RPC error), and a stream's events out end with an
// error event saying so, never with a clean end. When the evidence is safe, the answer goes out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startEchoGateway, type TestGateway } from './helpers/gateway.ts';
import { auditOf } from './helpers/e2e.ts';
import { parseProm } from './helpers/prom.ts';

let gw: TestGateway;
let callee: http.Server;
let key = '';
let close: (() => Promise<void>) | undefined;

before(async () => {
  // The callee answers at once: a message, or three SSE events.
  callee = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string };
      const id = JSON.stringify(rpc.id);
      if (rpc.method === 'SendStreamingMessage') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: {"jsonrpc":"2.0","id":${id},"result":{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}}\n\n`);
        res.end(`data: {"jsonrpc":"2.0","id":${id},"result":{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}}\n\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"m1","role":"ROLE_AGENT","parts":[{"text":"done"}]}}}`);
    });
  });
  ({ gw, key, close } = await startEchoGateway(callee));
});

after(() => close?.());

const call = (method: string, id: number) => fetch(`${gw.url}/a2a/echo`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { message: { messageId: `m${id}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }),
});

/** The audit log's journal wait, replaced for the length of `f` by one that fails (the trail's storage is gone). */
async function withJournalFailing<T>(f: () => Promise<T>): Promise<T> {
  const audit = gw.g.rt.audit as { journaledNow?: (now?: boolean) => Promise<void> | undefined };
  const real = audit.journaledNow;
  assert.ok(real, 'the embedded audit log has a journal wait');
  audit.journaledNow = () => Promise.reject(new Error('the disk is gone'));
  try { return await f(); } finally { audit.journaledNow = real; }
}

/** aam_a2a_requests_total for the echo callee, by outcome. */
async function a2aRequests(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of parseProm(await (await fetch(`${gw.url}/metrics`)).text())) {
    if (s.name === 'aam_a2a_requests_total' && s.labels.callee === 'echo') out[s.labels.outcome] = (out[s.labels.outcome] ?? 0) + s.value;
  }
  return out;
}

/** What the metrics counted between two reads (outcomes that moved). */
const moved = (a: Record<string, number>, b: Record<string, number>) =>
  Object.fromEntries(Object.keys(b).filter((k) => b[k] !== (a[k] ?? 0)).map((k) => [k, b[k] - (a[k] ?? 0)]));

test('a SendMessage whose evidence cannot be recorded is refused 503, not answered', async () => {
  const before = await a2aRequests();
  const r = await withJournalFailing(() => call('SendMessage', 7));
  const body = await r.json() as { id: number; result?: unknown; error: { message: string; data: { code: string; http_status: number } } };
  assert.equal(r.status, 503, JSON.stringify(body));
  assert.equal(body.id, 7);
  assert.equal(body.result, undefined, 'the callee\'s answer is not passed on');
  assert.equal(body.error.message, 'the audit trail could not record this request, so it is not acknowledged: the disk is gone');
  assert.equal(body.error.data.http_status, 503);
  // The trail says what the caller got beside the a2a_call (what the callee answered): one evidence_refused, no second a2a_call.
  const trail = await auditOf(gw, r.headers.get('x-request-id')!);
  assert.deepEqual(trail.map((e) => [e.type, e.outcome?.status]), [['a2a_call', 200], ['evidence_refused', 503]]);
  assert.deepEqual([trail[1].amends, trail[1].answered, trail[1].identity?.agent], ['a2a_call', 'refused', 'planner']);
  // The metrics agree with what the caller got: aam's error, not an ok call.
  assert.deepEqual(moved(before, await a2aRequests()), { error: 1 });
  // Recorded again: the next call is answered.
  const ok = await call('SendMessage', 8);
  const answer = await ok.json() as { id: number; result: { message: { parts: Array<{ text: string }> } } };
  assert.equal(ok.status, 200);
  assert.deepEqual([answer.id, answer.result.message.parts[0].text], [8, 'done']);
});

test('a stream whose evidence cannot be recorded ends with an error event after its events', async () => {
  const before = await a2aRequests();
  const r = await withJournalFailing(async () => {
    const res = await call('SendStreamingMessage', 9);
    return { status: res.status, text: await res.text(), id: res.headers.get('x-request-id')! };
  });
  assert.equal(r.status, 200);
  const events = r.text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => JSON.parse(f.slice(6)) as { id: number; result?: Record<string, unknown>; error?: { code: number; message: string } });
  assert.deepEqual(events.map((e) => (e.result ? Object.keys(e.result)[0] : 'error')), ['task', 'statusUpdate', 'error']);
  assert.equal(events[2].id, 9);
  assert.equal(events[2].error!.message, 'the audit trail could not record this request, so it is not acknowledged: the disk is gone');
  const trail = await auditOf(gw, r.id);
  assert.deepEqual(trail.map((e) => [e.type, e.outcome?.status, e.answered]), [['a2a_call', 200, undefined], ['evidence_refused', 503, 'stream_cut']]);
  assert.deepEqual(moved(before, await a2aRequests()), { error: 1 });
});
