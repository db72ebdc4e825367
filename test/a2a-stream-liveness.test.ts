// A streamed send's delegation lives while its task does: a stream that ends on a terminal status
// update (no task snapshot after it) ends it with the call; one that ends with its task still
// working leaves it live for the callee's later calls. Both wire shapes of a status update: v1's
// `{statusUpdate: {taskId, status}}` and v0.3's unwrapped `{kind: 'status-update', taskId, status,
// final}` (what @a2a-js/sdk's v0.3 compat server writes), whose state aam once never read: its
// terminal update left the delegation honoured until the cap.
// Each on both bindings: JSON-RPC and HTTP+JSON (`/message:stream`, whose frames are the results
// alone), by fetch and through the @a2a-js/sdk client's HTTP+JSON transport.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCalleeGateway, type TestGateway } from './helpers/gateway.ts';
import { rpcCallee } from './helpers/rpc-callee.ts';
import { statesIn } from '../src/a2a/tasks.ts';
import { sdkClientThroughAam } from './helpers/a2a-client.ts';

let gw: TestGateway;
let key = '';
let workerKey = '';
let close: (() => Promise<void>) | undefined;
/** The delegation header each stream's callee was given, by the stream's text. */
const delegations = new Map<string, string>();

const sse = (id: unknown, result: unknown) => `data: ${JSON.stringify({ jsonrpc: '2.0', id, result })}\n\n`;

/** The stream's events after its first, by the text the caller sent: `task` is the task's id. */
const STREAMS: Record<string, (task: string) => unknown[]> = {
  'v1-completed': (t) => [{ statusUpdate: { taskId: t, contextId: 'c1', status: { state: 'TASK_STATE_COMPLETED' } } }],
  'v1-working': (t) => [{ statusUpdate: { taskId: t, contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } }],
  'v03-completed': (t) => [{ kind: 'status-update', taskId: t, contextId: 'c1', status: { state: 'completed' }, final: true }],
  'v03-failed': (t) => [{ kind: 'status-update', taskId: t, contextId: 'c1', status: { state: 'failed' }, final: true }],
  'v03-working': (t) => [{ kind: 'status-update', taskId: t, contextId: 'c1', status: { state: 'working' }, final: false }],
  // No task snapshot at all: the task is named by its status updates only.
  'v03-bare-working': (t) => [{ kind: 'status-update', taskId: t, contextId: 'c1', status: { state: 'working' }, final: false }],
};

before(async () => {
  let n = 0;
  const callee = rpcCallee((call, res, req) => {
    // `<shape> rest`: the same stream, asked for by a caller on the HTTP+JSON binding.
    const text = call!.text.split(' ')[0];
    delegations.set(call!.text, String(req.headers['x-aam-delegation']));
    const task = `t${++n}`;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // v0.3 callees send their task unwrapped (`kind: 'task'`); v1 callees wrap it in `{task}`.
    const first = text.startsWith('v03') ? { kind: 'task', id: task, contextId: 'c1', status: { state: 'submitted' } } : { task: { id: task, contextId: 'c1', status: { state: 'TASK_STATE_SUBMITTED' } } };
    if (!text.includes('bare')) res.write(sse(call!.id, first));
    for (const ev of STREAMS[text](task)) res.write(sse(call!.id, ev));
    res.end();
  });
  ({ gw, key, close } = await startCalleeGateway(callee, { agent: 'worker', caller: 'caller' }));
  workerKey = gw.key('worker');
});

after(() => close?.());

/** Streams `text` to worker through aam, read to its end: JSON-RPC, or HTTP+JSON (`/message:stream`) for a text ending " rest". */
async function stream(text: string): Promise<string> {
  const message = { messageId: `m-${text}`, role: 'ROLE_USER', parts: [{ text }] };
  const rest = text.endsWith(' rest');
  const r = await fetch(`${gw.url}/a2a/worker${rest ? '/message:stream' : ''}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(rest ? { message } : { jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: { message } }),
  });
  assert.equal(r.status, 200);
  assert.match(String(r.headers.get('content-type')), /^text\/event-stream/);
  return r.text();
}

/** worker's own A2A call with the delegation it was given: past its check (then a cycle: 403), or refused by it (401). */
async function use(delegation: string): Promise<string> {
  const r = await fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${workerKey}`, 'x-aam-delegation': delegation },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'SendMessage', params: { message: { messageId: 'x', role: 'ROLE_USER', parts: [{ text: 'x' }] } } }),
  });
  return r.text();
}

for (const text of ['v1-completed', 'v03-completed', 'v03-failed', 'v1-completed rest', 'v03-completed rest', 'v03-failed rest']) {
  test(`a stream that ends on a terminal status update (${text}), with no task after it, ends its delegation with the call`, async () => {
    const body = await stream(text);
    assert.match(body, /status-update|statusUpdate/, body);
    assert.match(await use(delegations.get(text)!), /was issued for an A2A call that has ended/);
  });
}

for (const text of ['v1-working', 'v03-working', 'v03-bare-working', 'v1-working rest', 'v03-working rest', 'v03-bare-working rest']) {
  test(`a stream that ends with its task still working (${text}) leaves its delegation live for the callee's later calls`, async () => {
    await stream(text);
    assert.match(await use(delegations.get(text)!), /would loop/, 'honoured: the task works on');
  });
}

test('statesIn reads a task state from each shape that reports one, and none from those that do not', () => {
  const seen = (result: unknown) => { const got: string[] = []; statesIn(result, { taskState: (t, end) => got.push(`${t}:${end}`) }); return got; };
  // v1 (wrapped), as a stream event or an answer.
  assert.deepEqual(seen({ statusUpdate: { taskId: 'a', contextId: 'c', status: { state: 'TASK_STATE_CANCELED' } } }), ['a:true']);
  assert.deepEqual(seen({ task: { id: 'b', contextId: 'c', status: { state: 'TASK_STATE_WORKING' } } }), ['b:false']);
  assert.deepEqual(seen({ id: 'c', contextId: 'c', status: { state: 'TASK_STATE_COMPLETED' } }), ['c:true'], 'a GetTask/CancelTask result: the Task itself');
  // v0.3 (unwrapped, with `kind`).
  assert.deepEqual(seen({ kind: 'status-update', taskId: 'd', contextId: 'c', status: { state: 'rejected' }, final: true }), ['d:true']);
  assert.deepEqual(seen({ kind: 'status-update', taskId: 'e', contextId: 'c', status: { state: 'input-required' }, final: true }), ['e:false'], 'final ends the stream, not the task');
  assert.deepEqual(seen({ kind: 'task', id: 'f', contextId: 'c', status: { state: 'canceled' } }), ['f:true']);
  // No state: a message (it names its task, with no status), an artifact update, a status with no task.
  assert.deepEqual(seen({ kind: 'message', messageId: 'm', taskId: 'g', role: 'agent', parts: [] }), []);
  assert.deepEqual(seen({ message: { messageId: 'm', taskId: 'g', role: 'ROLE_AGENT', parts: [] } }), []);
  assert.deepEqual(seen({ kind: 'artifact-update', taskId: 'h', artifact: { artifactId: 'x', parts: [] } }), []);
  assert.deepEqual(seen({ artifactUpdate: { taskId: 'h', artifact: { artifactId: 'x', parts: [] } } }), []);
  assert.deepEqual(seen({ kind: 'status-update', status: { state: 'completed' } }), []);
});

test('through the @a2a-js/sdk client on HTTP+JSON: a stream that ends completed ends its delegation with the call; one left working keeps it live', async () => {
  const client = await sdkClientThroughAam(gw.url, 'worker', key, true);
  const message = (text: string) => ({
    message: { messageId: `u-${text}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' }], metadata: undefined, extensions: [], referenceTaskIds: [] },
    configuration: undefined, metadata: undefined, tenant: '',
  }) as never;
  for (const [text, then] of [['v1-completed sdk', /was issued for an A2A call that has ended/], ['v1-working sdk', /would loop/]] as const) {
    const events: unknown[] = [];
    for await (const ev of client.sendMessageStream(message(text))) events.push(ev);
    assert.equal(events.length, 2, `${text}: the task, then its status update (${JSON.stringify(events)})`);
    assert.match(await use(delegations.get(text)!), then, text);
  }
});
