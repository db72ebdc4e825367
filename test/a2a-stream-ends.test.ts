// A stream that ends before its task does, from either side, as the official @a2a-js/sdk client
// sees it. A callee that cuts its stream: the caller's SDK raises aam's error (its JSON-RPC event
// carries the caller's request id; with id null the SDK saw only "JSON-RPC response ID mismatch").
// A caller that goes away mid-stream: aam closes the callee's stream at once (its task goes on
// there, to be resubscribed to), rather than reading it on for nobody until the callee ends, and
// records the call as the chat plane records a client that left (499, client disconnected). A
// stream that ends with aam's error is recorded with it (502, as chat records a broken stream), not 200.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCalleeGateway, type TestGateway } from './helpers/gateway.ts';
import { rpcCallee } from './helpers/rpc-callee.ts';
import { queryEvents } from '../src/audit/query.ts';
import { sdkClientThroughAam } from './helpers/a2a-client.ts';

let gw: TestGateway;
let key = '';
let close: (() => Promise<void>) | undefined;
/** Streams the callee saw closed before it ended them ('hold'). */
let closedByAam = 0;

const sse = (id: unknown, result: unknown) => `data: ${JSON.stringify({ jsonrpc: '2.0', id, result })}\n\n`;

before(async () => {
  const callee = rpcCallee((call, res) => {
    // 'slow': a SendMessage answered after 400 ms (its caller has gone by then).
    if (call!.text === 'slow') {
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: call!.id, result: { message: { messageId: 'a', role: 'ROLE_AGENT', parts: [{ text: 'late' }] } } })), 400);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(sse(call!.id, { task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } }));
    res.write(sse(call!.id, { artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [{ text: 'alpha' }] }, append: true } }));
    // 'cut': the callee's connection drops mid-stream; 'hold': the stream stays open (a long task).
    if (call!.text === 'cut') setTimeout(() => res.destroy(), 50);
    else if (call!.text === 'garbage') res.end('data: {not json\n\n');
    else res.on('close', () => { if (!res.writableEnded) closedByAam++; });
  });
  ({ gw, key, close } = await startCalleeGateway(callee, { agent: 'worker', caller: 'caller' }));
});

after(() => close?.());

const sdkClient = (rest: boolean) => sdkClientThroughAam(gw.url, 'worker', key, rest);

const message = (text: string) => ({
  message: { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' }], metadata: undefined, extensions: [], referenceTaskIds: [] },
  configuration: undefined, metadata: undefined, tenant: '',
}) as never;

for (const rest of [false, true]) {
  test(`a callee that cuts its stream: the SDK client (${rest ? 'HTTP+JSON' : 'JSON-RPC'}) gets the events, then raises aam's error`, async () => {
    const client = await sdkClient(rest);
    const got: unknown[] = [];
    await assert.rejects(async () => { for await (const ev of client.sendMessageStream(message('cut'))) got.push(ev); }, (e: Error) => {
      assert.doesNotMatch(e.message, /mismatch/, 'the error event carries the caller\'s request id');
      assert.match(`${e.message} ${String((e.cause as Error | undefined)?.message ?? '')}`, /agent "worker" stream failed/);
      // The SDK raises A2A's InvalidAgentResponseError (JSON-RPC: as the cause of its stream error, -32006;
      // HTTP+JSON: itself, from the error event's INVALID_AGENT_RESPONSE).
      const typed = (rest ? e : e.cause) as { name?: string; envelopeCode?: number } | undefined;
      assert.equal(typed?.name, 'InvalidAgentResponseError', `${e.name}: ${e.message}`);
      if (!rest) assert.equal(typed?.envelopeCode, -32006);
      return true;
    });
    assert.equal(got.length, 2, 'the task and the artifact came first');
  });
}

test('a caller that goes away mid-stream: the callee\'s stream is closed at once; the call is recorded 499 client disconnected', async () => {
  const ac = new AbortController();
  const r = await fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', signal: ac.signal, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'hold' }] } } }),
  });
  const requestId = r.headers.get('x-request-id')!;
  const reader = r.body!.getReader();
  assert.match(new TextDecoder().decode((await reader.read()).value), /TASK_STATE_WORKING/);
  ac.abort();
  for (let i = 0; i < 100 && closedByAam === 0; i++) await new Promise((res) => setTimeout(res, 20));
  assert.equal(closedByAam, 1, 'aam closed the callee\'s stream when its caller left');
  const log = gw.g.rt.auditLog!;
  let events: Array<{ type: string; outcome?: { status: number; error?: string } }> = [];
  for (let i = 0; i < 50 && !events.length; i++) {
    await log.flush();
    events = queryEvents(log.db, { requestId, limit: 10 }) as never;
    if (!events.length) await new Promise((res) => setTimeout(res, 20));
  }
  assert.deepEqual(events.map((e) => e.type), ['a2a_call']);
  assert.equal(events[0].outcome?.status, 499);
  assert.equal(events[0].outcome?.error, 'client disconnected');
});

for (const [text, why] of [['cut', /^agent "worker" stream failed: /], ['garbage', /^agent "worker" sent a stream event that is not JSON$/]] as const) {
  test(`a stream the callee breaks (${text}) is recorded 502 with aam's error, not 200`, async () => {
    const r = await fetch(`${gw.url}/a2a/worker`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text }] } } }),
    });
    assert.equal(r.status, 200, 'the stream had begun');
    // A2A's InvalidAgentResponseError: the callee's answer is at fault, not aam (-32603).
    assert.match(await r.text(), /"error":\{"code":-32006/);
    const log = gw.g.rt.auditLog!;
    await log.flush();
    const events = queryEvents(log.db, { requestId: r.headers.get('x-request-id')!, limit: 10 }) as unknown as Array<{ type: string; outcome: { status: number; error?: string } }>;
    assert.deepEqual(events.map((e) => e.type), ['a2a_call']);
    assert.equal(events[0].outcome.status, 502);
    assert.match(String(events[0].outcome.error), why);
  });
}

test('a caller that goes away before its SendMessage is answered: the call is recorded 499 client disconnected, not 200', async () => {
  const ac = new AbortController();
  const sent = fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', signal: ac.signal, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'slow' }] } } }),
  });
  const log = gw.g.rt.auditLog!;
  await log.flush();
  const before = queryEvents(log.db, { type: 'a2a_call', limit: 1000 }).length;
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(sent);
  let events: Array<{ outcome: { status: number; error?: string } }> = [];
  for (let i = 0; i < 100 && events.length <= before; i++) {
    await new Promise((res) => setTimeout(res, 20));
    await log.flush();
    events = queryEvents(log.db, { type: 'a2a_call', limit: 1000, order: 'asc' }) as never;
  }
  const call = events[events.length - 1];
  assert.equal(call.outcome.status, 499);
  assert.equal(call.outcome.error, 'client disconnected');
});
