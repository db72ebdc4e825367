// Fleet mode, A2A task ownership: two replicas on one real PostgreSQL + Redis. A task created by
// one caller through replica 0 is got and cancelled by that caller through replica 1, and is
// "not found" (GetTask, CancelTask, SubscribeToTask, a message continuing it or its context) for
// every other caller on both replicas, without reaching the callee.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { doc, yaml } from './helpers/gateway.ts';
import type { FleetTaskOwners } from '../src/store/task-owners.ts';
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } from '@a2a-js/sdk/client';

let store: FleetTestStore;
let agents: TestAgents;
let dir: string;
let replicaSet: Replicas;
let replicas: Replicas['replicas'];
let urls: string[] = [];
let keys: Record<string, string> = {};
/** A streamed task whose text says "hold" waits for this after its working status. */
let release: () => void = () => {};
const held = new Promise<void>((r) => { release = r; });

before(async () => {
  store = await fleetStore();
  agents = await startTestAgents([{ name: 'helper', skills: ['help'], aamUrl: () => urls[0], key: () => keys.helper, hold: () => held, slowMs: 1500 }]);
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-a2a-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', a2a: { url: `${agents.base}/helper` } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('Agent', 'scorer', { workload: 'spiffe://test/agent/scorer' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'helper' }] }),
    doc('AgentPolicy', 'scorer-calls', { identity: { agent: 'scorer' }, agents: [{ agent: 'helper' }] }),
  ));
  replicaSet = await startReplicas({ store, configPath, dir, agents: ['planner', 'scorer', 'helper'] });
  ({ replicas, urls, keys } = replicaSet);
});

after(async () => {
  release();
  await replicaSet?.close();
  await agents?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Reply = { status: number; body: { result?: Record<string, unknown>; error?: { code: number; message: string } } };

async function rpc(url: string, as: string, method: string, params: unknown): Promise<Reply> {
  const r = await fetch(`${url}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys[as]}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params }),
  });
  const text = await r.text();
  // A streamed answer: its first event stands for it.
  const first = text.startsWith('{') ? text : /^data: (.*)$/m.exec(text)?.[1] ?? '{}';
  return { status: r.status, body: JSON.parse(first) as Reply['body'] };
}

/** A streamed task created by `as` through replica 0: its task and context ids. */
async function newTask(as: string): Promise<{ taskId: string; contextId: string }> {
  const r = await fetch(`${urls[0]}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'a2a-version': '1.0', authorization: `Bearer ${keys[as]}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'stream please' }] } } }),
  });
  assert.equal(r.status, 200);
  const text = await r.text();
  const task = (JSON.parse(/^data: (.*)$/m.exec(text)![1]) as { result?: { task?: { id: string; contextId: string } } }).result?.task;
  assert.ok(task, `the first event is the task: ${text}`);
  assert.ok(task.id && task.contextId, text);
  return { taskId: task.id, contextId: task.contextId };
}

test('a task created through replica 0 is got and cancelled by its caller through replica 1', async () => {
  const { taskId } = await newTask('planner');
  const got = await rpc(urls[1], 'planner', 'GetTask', { id: taskId });
  assert.equal(got.status, 200, JSON.stringify(got.body));
  assert.equal(got.body.result?.id, taskId);
  // The callee decides this one (the task has completed); aam relays it: it is not "not found".
  const cancel = await rpc(urls[1], 'planner', 'CancelTask', { id: taskId });
  assert.notEqual(cancel.body.error?.code, -32001, JSON.stringify(cancel.body));
});

test('another caller gets "not found" for the task and its context on every replica; the callee never sees the call', async () => {
  const { taskId, contextId } = await newTask('planner');
  for (const url of urls) {
    for (const method of ['GetTask', 'CancelTask', 'SubscribeToTask']) {
      agents.received.delete('helper');
      const r = await rpc(url, 'scorer', method, { id: taskId });
      assert.equal(r.body.error?.code, -32001, `${method} on ${url}: ${JSON.stringify(r.body)}`);
      assert.match(r.body.error!.message, new RegExp(`task "${taskId}" not found`));
      assert.equal(agents.received.get('helper'), undefined, 'nothing forwarded');
    }
    const cont = await rpc(url, 'scorer', 'SendMessage', { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', contextId, parts: [{ text: 'hi' }] } });
    assert.equal(cont.body.error?.code, -32001);
    assert.match(cont.body.error!.message, /context .* not found/);
    const task = await rpc(url, 'scorer', 'SendMessage', { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', taskId, parts: [{ text: 'hi' }] } });
    assert.equal(task.body.error?.code, -32001);
  }
  // The owner still has it on both.
  for (const url of urls) assert.equal((await rpc(url, 'planner', 'GetTask', { id: taskId })).body.result?.id, taskId);
});

test('Redis round trips: a replica asks Redis about ids it has not seen, then answers from its copy', async () => {
  const { taskId } = await newTask('planner');
  const owners = replicas[1].rt.a2aTasks as FleetTaskOwners;
  const before = owners.calls;
  assert.equal((await rpc(urls[1], 'planner', 'GetTask', { id: taskId })).body.result?.id, taskId);
  assert.equal(owners.calls - before, 2, 'first time here: read the task\'s owner, bind the context id the answer names');
  const seen = owners.calls;
  for (let i = 0; i < 3; i++) assert.equal((await rpc(urls[1], 'planner', 'GetTask', { id: taskId })).body.result?.id, taskId);
  assert.equal(owners.calls, seen, 'then none');
});

/** helper's own A2A call through replica `url` with delegation `header`: past the delegation check (then its policy, which allows it no agent: 403), or refused by it (401). */
const useDelegation = (url: string, header: string) => fetch(`${url}/a2a/helper`, {
  method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.helper}`, 'x-aam-delegation': header },
  body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendMessage', params: { message: { messageId: 'x', role: 'ROLE_USER', parts: [{ text: 'x' }] } } }),
}).then(async (r) => ({ status: r.status, text: await r.text() }));

test('a delegation is honoured on every replica while its call runs (Redis), and refused on every replica once it has ended', async () => {
  agents.received.delete('helper');
  const call = rpc(urls[0], 'planner', 'SendMessage', { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'slow answer' }] } });
  while (!agents.received.has('helper')) await new Promise((r) => setTimeout(r, 10));
  const header = String(agents.received.get('helper')!['x-aam-delegation']);
  const use = (url: string) => useDelegation(url, header);
  const during = await use(urls[1]);
  assert.equal(during.status, 403, `replica 1 honours it while the call runs on replica 0: ${during.text}`);
  assert.equal((await call).status, 200);
  for (const url of urls) {
    const after = await use(url);
    assert.equal(after.status, 401, after.text);
    assert.match(after.text, /was issued for an A2A call that has ended/);
  }
});

test('a delegation held by a task its call left working is honoured on every replica, and refused on every replica once another replica saw the task completed', async () => {
  const r = await rpc(urls[0], 'planner', 'SendMessage', { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'work:later' }] }, configuration: { returnImmediately: true } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const id = (r.body.result!.task as { id: string }).id;
  const work = agents.working.get(id)!;
  for (const url of urls) {
    const during = await useDelegation(url, work.delegation);
    assert.equal(during.status, 403, `the call has answered on replica 0, its task works on: honoured (${url}): ${during.text}`);
  }
  work.complete();
  while (!/COMPLETED/.test(JSON.stringify((await rpc(urls[1], 'planner', 'GetTask', { id })).body))) await new Promise((res) => setTimeout(res, 10));
  for (const url of urls) {
    const after = await useDelegation(url, work.delegation);
    assert.equal(after.status, 401, after.text);
    assert.match(after.text, /was issued for an A2A call that has ended/);
  }
});

/** The official SDK client through replica `url`, as `as`. */
function sdkClient(url: string, as: string) {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${keys[as]}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, { transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: undefined }));
  return factory.createFromAgentCard({
    name: 'helper', description: 'helps', version: '1.0.0', supportedInterfaces: [{ url: `${url}/a2a/helper`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
    capabilities: { streaming: true, pushNotifications: false, extensions: [] }, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'], skills: [],
  } as never);
}

type Ev = { payload?: { $case: string; value: { id?: string; status?: { state?: number } } } };
function read(events: AsyncIterable<unknown>) {
  const got: Ev[] = [];
  const ended = (async () => { try { for await (const ev of events) got.push(ev as Ev); return null; } catch (e) { return e as Error; } })();
  return { got, ended };
}
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) { if (Date.now() > end) throw new Error(`timed out waiting for ${what}`); await new Promise((r) => setTimeout(r, 20)); }
}

// Last: it closes replica 0.
test('replica 0 drains with a caller\'s stream open: the SDK client is told to resubscribe, and does so through replica 1, hearing the rest of the task', async () => {
  const first = read((await sdkClient(urls[0], 'planner')).sendMessageStream({
    message: { messageId: `u-${Math.random()}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: 'stream hold' }, metadata: undefined, filename: '', mediaType: '' }], metadata: undefined, extensions: [], referenceTaskIds: [] },
    configuration: undefined, metadata: undefined, tenant: '',
  } as never));
  await until(() => first.got.length >= 2, 15_000, 'the task and its working status');
  const taskId = first.got[0].payload!.value.id!;
  const t0 = performance.now();
  await replicas[0].close();
  const ms = performance.now() - t0;
  const e = await first.ended;
  assert.ok(e, 'the SDK raised the drain\'s error event');
  assert.match(e.message, new RegExp(`shutting down.*resubscribe to it .*"${taskId}"`));
  assert.ok(ms < 8000, `replica 0 closed in ${Math.round(ms)} ms (the drain bound is 10 s)`);
  // Through replica 1: the task is the caller's there too (its owner is in Redis), and the stream goes on.
  const again = read((await sdkClient(urls[1], 'planner')).resubscribeTask({ id: taskId, tenant: '' } as never));
  await until(() => again.got.length >= 1, 15_000, 'the resubscription\'s task snapshot');
  release();
  assert.equal(await again.ended, null, 'the resubscription ends cleanly, with the task');
  const kinds = again.got.map((x) => x.payload!.$case);
  assert.equal(kinds.filter((k) => k === 'artifactUpdate').length, 3, kinds.join(','));
  assert.equal(again.got.at(-1)!.payload!.value.status?.state, 3, 'completed');
});
