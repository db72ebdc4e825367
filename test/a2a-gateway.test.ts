// A2A v1 through aam, end to end: the official @a2a-js/sdk client calls real @a2a-js/sdk agents
// behind aam (card, send, stream, tasks), with identity, policy per skill, credential injection,
// delegation chains (cycles, depth), scrubbing and linked evidence.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ClientFactory, ClientFactoryOptions, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';

const SCORER_SECRET = 'scorer-cred-8d1f0a7c3e9b4f21aa';
let gw: TestGateway;
let agents: TestAgents;
const keys: Record<string, string> = {};

before(async () => {
  process.env.A2A_TEST_SCORER_TOKEN = SCORER_SECRET;
  const aamUrl = () => gw.url;
  agents = await startTestAgents([
    { name: 'planner', skills: ['plan'], aamUrl, key: () => keys.planner },
    { name: 'risk-scorer', skills: ['score', 'export'], aamUrl, key: () => keys['risk-scorer'], secret: SCORER_SECRET },
    { name: 'helper', skills: ['help'], aamUrl, key: () => keys.helper },
    { name: 'archivist', skills: ['archive'], aamUrl, key: () => keys.archivist },
  ]);
  const agent = (name: string, a2a: Record<string, unknown>) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev', a2a });
  gw = await startTestGateway(yaml(
    doc('Credential', 'scorer-token', { env: 'A2A_TEST_SCORER_TOKEN' }),
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'small', { targets: [{ provider: 'demo', model: 'd' }] }),
    agent('planner', { url: `${agents.base}/planner` }),
    agent('risk-scorer', { url: `${agents.base}/risk-scorer`, credential: 'scorer-token' }),
    doc('Credential', 'helper-obo', { kind: 'on_behalf_of', obo: { audience: 'a2a://helper', ttl_seconds: 60 } }),
    agent('helper', { url: `${agents.base}/helper`, credential: 'helper-obo' }),
    agent('archivist', { url: `${agents.base}/archivist` }),
    doc('Agent', 'outsider', { workload: 'spiffe://test/agent/outsider' }),
    doc('Agent', 'burst', { workload: 'spiffe://test/agent/burst' }),
    doc('AgentPolicy', 'burst-calls', { identity: { agent: 'burst' }, agents: [{ agent: 'helper' }], models: { rate: { rpm: 2 } } }),
    doc('Guardrail', 'no-falcon', { on: ['input', 'output'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'pii-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    // A tool-argument schema: A2A messages are content in the protocol's shape, never checked against it.
    doc('Guardrail', 'tool-args-schema', { on: ['input', 'output'], json_schema: { type: 'object', required: ['limit'] }, action: 'block' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', skills: ['score'] }, { agent: 'helper' }], guardrails: ['no-falcon', 'pii-out', 'tool-args-schema'] }),
    doc('AgentPolicy', 'scorer-calls', { identity: { agent: 'risk-scorer' }, models: { allow: ['small'] }, agents: [{ agent: 'helper' }, { agent: 'planner' }] }),
    doc('AgentPolicy', 'helper-calls', { identity: { agent: 'helper' }, agents: [{ agent: 'archivist' }], max_delegation_depth: 2 }),
    doc('AgentPolicy', 'outsider-none', { identity: { agent: 'outsider' }, agents: [{ agent: 'risk-scorer', deny: ['*'] }] }),
  ));
  for (const n of ['planner', 'risk-scorer', 'helper', 'archivist', 'outsider', 'burst']) keys[n] = gw.key(n);
});

after(async () => {
  await gw?.close();
  await agents?.close();
  delete process.env.A2A_TEST_SCORER_TOKEN;
});

/** The official SDK client, reaching the agent only through aam, authenticated as `as`. */
async function sdkClient(agent: string, as: string) {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${keys[as]}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl })],
    cardResolver: undefined,
  }));
  const card = await (await fetchImpl(`${gw.url}/a2a/${agent}/.well-known/agent-card.json`)).json();
  return factory.createFromAgentCard(card as never);
}

const userMessage = (text: string, skill?: string, extra: Record<string, unknown> = {}) => ({
  message: { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' }], metadata: skill ? { skill } : undefined, extensions: [], referenceTaskIds: [], ...extra },
  configuration: undefined, metadata: undefined, tenant: '',
}) as never;

const replyText = (r: unknown): string => {
  const m = r as { parts?: Array<{ content?: { value?: unknown } }> };
  return (m.parts ?? []).map((p) => String(p.content?.value ?? '')).join('');
};

async function rpc(agent: string, as: string | null, method: string, params: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(as ? { authorization: `Bearer ${keys[as]}` } : {}), ...headers },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params }),
  });
  return { status: r.status, requestId: r.headers.get('x-request-id'), body: await r.json() as { result?: Record<string, unknown>; error?: { code: number; message: string; data?: Record<string, unknown> } } };
}

const send = (text: string, skill?: string) => ({ message: { messageId: `r-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }], ...(skill ? { metadata: { skill } } : {}) } });

test('the card is served through aam: endpoint, auth scheme and skills rewritten for the caller', async () => {
  const r = await fetch(`${gw.url}/a2a/risk-scorer/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${keys.planner}` } });
  assert.equal(r.status, 200);
  const card = await r.json() as Record<string, unknown>;
  assert.deepEqual((card.supportedInterfaces as Array<{ url: string; protocolBinding: string }>).map((i) => [i.url, i.protocolBinding]), [[`${gw.url}/a2a/risk-scorer`, 'JSONRPC'], [`${gw.url}/a2a/risk-scorer`, 'HTTP+JSON']]);
  assert.ok(!JSON.stringify(card).includes(agents.base), 'no URL of the callee itself');
  assert.deepEqual(Object.keys(card.securitySchemes as object), ['aam']);
  assert.deepEqual((card.skills as Array<{ id: string }>).map((s) => s.id), ['score'], 'only the skills the planner may call');
  assert.equal((await fetch(`${gw.url}/a2a/risk-scorer/.well-known/agent-card.json`)).status, 401, 'the card needs an identity');
  const denied = await fetch(`${gw.url}/a2a/risk-scorer/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${keys.outsider}` } });
  assert.equal(denied.status, 403);
  // The rule that hides the card is named (outsider's policy denies the agent outright), as on a call.
  assert.match(((await denied.json()) as { error: { message: string } }).error.message, /^policy "outsider-none" agents\[0\] denies agent "risk-scorer"/);
  const noRule = await fetch(`${gw.url}/a2a/archivist/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${keys.outsider}` } });
  assert.equal(noRule.status, 403);
  assert.match(((await noRule.json()) as { error: { message: string } }).error.message, /no policy has an agents rule allowing .*outsider.* add `agents: \[\{ agent: archivist \}\]`/);
});

test('SDK client -> aam -> SDK agent: the allowed skill is answered; the callee gets aam\'s credential, never the caller\'s key', async () => {
  const client = await sdkClient('risk-scorer', 'planner');
  const reply = await client.sendMessage(userMessage('hello scorer', 'score'));
  assert.match(replyText(reply), /risk-scorer says: hello scorer/);
  const h = agents.received.get('risk-scorer')!;
  assert.equal(h.authorization, `Bearer ${SCORER_SECRET}`, 'aam injected the callee credential');
  assert.ok(!JSON.stringify(h).includes(keys.planner), 'the caller key never reaches the callee');
  assert.match(String(h.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  assert.match(String(h['x-aam-delegation']), /^v1\./);
  assert.equal(h['a2a-version'], '1.0');
  assert.equal(h['x-aam-caller'], 'spiffe://test/agent/planner');
});

test('streaming: SendStreamingMessage is relayed event by event; the task belongs to its caller only', async () => {
  const client = await sdkClient('helper', 'planner');
  const events: unknown[] = [];
  // The store's binds during the stream (the real store, counted): each id once per stream, not once per event.
  const store = gw.g.rt.a2aTasks;
  const bindOf = store.bind;
  const binds: string[] = [];
  store.bind = (callee, ids, caller, skill) => { binds.push(...ids.tasks.map((t) => `task ${t}`), ...ids.contexts.map((c) => `context ${c}`)); return bindOf.call(store, callee, ids, caller, skill); };
  try {
    for await (const ev of client.sendMessageStream(userMessage('stream please'))) events.push(ev);
  } finally {
    store.bind = bindOf;
  }
  assert.deepEqual([...new Set(binds)].sort(), [...binds].sort(), `each task and context id is bound once per stream (binds: ${binds.join(', ')})`);
  assert.ok(binds.some((b) => b.startsWith('task ')) && binds.some((b) => b.startsWith('context ')));
  assert.ok(events.length >= 5, `task, working, 3 artifact chunks, completed (got ${events.length})`);
  const text = JSON.stringify(events);
  assert.match(text, /alpha/);
  assert.match(text, /gamma/);
  const first = events[0] as { id?: string; payload?: { $case: string; value: { id: string } } };
  const taskId = first.id ?? first.payload?.value.id;
  assert.ok(taskId);
  const mine = await rpc('helper', 'planner', 'GetTask', { id: taskId });
  assert.equal(mine.body.result?.id, taskId);
  const theirs = await rpc('helper', 'risk-scorer', 'GetTask', { id: taskId });
  assert.equal(theirs.body.error?.code, -32001, 'another caller cannot see the task');
  // Nor refer to it: referenceTaskIds asks the callee (which sees every caller as aam) for that task as context.
  agents.received.delete('helper');
  const ref = (ids: unknown[]) => ({ message: { messageId: `r-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'summarise the referenced task' }], referenceTaskIds: ids } });
  const stolen = await rpc('helper', 'risk-scorer', 'SendMessage', ref([taskId]));
  assert.equal(stolen.body.error?.code, -32001, JSON.stringify(stolen.body));
  assert.match(stolen.body.error!.message, new RegExp(`task "${taskId}" not found`));
  const unknown = await rpc('helper', 'planner', 'SendMessage', ref([taskId, 'never-seen']));
  assert.equal(unknown.body.error?.code, -32001, 'a task aam never bound is not the caller\'s either');
  const bad = await rpc('helper', 'planner', 'SendMessage', ref([7]));
  assert.equal(bad.body.error?.code, -32602);
  assert.equal(agents.received.get('helper'), undefined, 'the callee saw none of them');
  const own = await rpc('helper', 'planner', 'SendMessage', ref([taskId]));
  assert.match(replyText({ parts: (own.body.result?.message as { parts: Array<{ text: string }> }).parts.map((p) => ({ content: { value: p.text } })) }), /helper says: summarise/, 'the caller may refer to its own task');
  // Resubscribing to the finished task: the callee refuses once its stream has begun; the caller gets that refusal as the last event.
  const sub = await fetch(`${gw.url}/a2a/helper`, { method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', accept: 'text/event-stream', authorization: `Bearer ${keys.planner}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'SubscribeToTask', params: { id: taskId } }) });
  const subText = await sub.text();
  assert.match(subText, /"error":\{"code":-?\d+,"message":"[^"]*(terminal|final|completed)/i, subText);
  assert.equal((await rpc('helper', 'planner', 'GetTask', { id: taskId })).body.result?.id, taskId, 'the callee is still up');
});

test('proto JSON\'s snake_case names of the fields aam isolates by (task_id, context_id, reference_task_ids, task_push_notification_config), which the SDK\'s server reads too, are refused: another caller\'s task and a push target aam did not check never reach the callee', async () => {
  // The planner's task (its stream's first event names it).
  const s = await fetch(`${gw.url}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.planner}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: send('stream for the planner') }),
  });
  const taskId = (JSON.parse((await s.text()).split('\n')[0].slice(6)) as { result: { task: { id: string; contextId: string } } }).result.task;
  const cases: Array<[string, Record<string, unknown>, Record<string, unknown>?]> = [
    ['message.task_id', { task_id: taskId.id }],
    ['message.context_id', { context_id: taskId.contextId }],
    ['message.reference_task_ids', { reference_task_ids: [taskId.id] }],
    ['configuration.task_push_notification_config', {}, { task_push_notification_config: { url: 'http://127.0.0.1:9/hook', token: 't' } }],
  ];
  for (const [field, extra, configuration] of cases) {
    agents.received.delete('helper');
    const params = { message: { messageId: `r-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], ...extra }, ...(configuration ? { configuration } : {}) };
    const r = await rpc('helper', 'risk-scorer', 'SendMessage', params);
    assert.equal(r.body.error?.code, -32602, `${field}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error!.message, new RegExp(`${field.replace('.', '\\.')} is proto JSON's other name`), field);
    assert.equal(agents.received.get('helper'), undefined, `${field}: the callee never saw it`);
  }
});

test('a denied skill is 403 naming the policy; the callee never sees it', async () => {
  agents.received.delete('risk-scorer');
  const r = await rpc('risk-scorer', 'planner', 'SendMessage', send('give me everything', 'export'));
  assert.equal(r.status, 403);
  assert.match(r.body.error!.message, /planner-calls.*agents\[0\].*only skills score/);
  assert.equal(r.body.error!.data?.code, 'policy_denied');
  assert.equal(agents.received.get('risk-scorer'), undefined);
  const noSkill = await rpc('risk-scorer', 'planner', 'SendMessage', send('hi'));
  assert.equal(noSkill.status, 403);
  const outsider = await rpc('risk-scorer', 'outsider', 'SendMessage', send('hi', 'score'));
  assert.equal(outsider.status, 403);
  assert.match(outsider.body.error!.message, /outsider-none/);
});

test('unknown agent is 404; no identity is 401; an unknown method is refused without forwarding', async () => {
  const r = await rpc('nobody', 'planner', 'SendMessage', send('x', 'score'));
  assert.equal(r.status, 404);
  assert.match(r.body.error!.message, /no A2A agent "nobody"/);
  const anon = await rpc('risk-scorer', null, 'SendMessage', send('x', 'score'));
  assert.equal(anon.status, 401);
  const odd = await rpc('risk-scorer', 'planner', 'DoSomethingElse', {});
  assert.equal(odd.body.error?.code, -32601);
  // A name every object has (Object.prototype's) is no task method either.
  for (const m of ['constructor', 'toString', '__proto__']) assert.equal((await rpc('risk-scorer', 'planner', m, {})).body.error?.code, -32601, m);
  const list = await rpc('risk-scorer', 'planner', 'ListTasks', {});
  assert.equal(list.body.error?.code, -32004);
});

test('every refusal of an identified caller before a decision is an a2a_call event with its status and reason; an unidentified caller (401) leaves none', async () => {
  // The planner's task, which risk-scorer then asks for.
  const s = await fetch(`${gw.url}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.planner}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: send('stream a task for the planner') }),
  });
  const first = (await s.text()).split('\n')[0];
  const taskId = (JSON.parse(first.slice(6)) as { result: { task?: { id: string } } }).result.task?.id;
  assert.ok(taskId, first);
  const raw = async (body: string, as: string | null = 'risk-scorer') => {
    const r = await fetch(`${gw.url}/a2a/helper`, { method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(as ? { authorization: `Bearer ${keys[as]}` } : {}) }, body });
    await r.arrayBuffer();
    return { status: r.status, requestId: r.headers.get('x-request-id')! };
  };
  const rest = async (path: string) => {
    const r = await fetch(`${gw.url}/a2a/helper${path}`, { headers: { 'a2a-version': '1.0', authorization: `Bearer ${keys['risk-scorer']}` } });
    await r.arrayBuffer();
    return { status: r.status, requestId: r.headers.get('x-request-id')! };
  };
  agents.received.delete('helper');
  // [what, the request, the evidence's status, its a2a member, its reason]
  const cases: Array<[string, Promise<{ status: number; requestId: string | null }>, number, Record<string, unknown>, RegExp]> = [
    ['another caller\'s task', rpc('helper', 'risk-scorer', 'GetTask', { id: taskId }), 404, { agent: 'helper', method: 'GetTask' }, new RegExp(`task "${taskId}" not found`)],
    ['bad params', rpc('helper', 'risk-scorer', 'GetTask', {}), 400, { agent: 'helper', method: 'GetTask' }, /GetTask needs params\.id/],
    ['an unknown method (not named in the trail)', rpc('helper', 'risk-scorer', 'DoSomethingElse', {}), 404, { agent: 'helper' }, /is not an A2A v1 method aam relays/],
    ['no JSON-RPC request', raw('{"jsonrpc":"1.0","id":3}'), 400, { agent: 'helper' }, /needs jsonrpc: "2.0" and a method/],
    ['no JSON', raw('{not json'), 400, { agent: 'helper' }, /JSON/],
    ['HTTP+JSON, another caller\'s task', rest(`/tasks/${encodeURIComponent(taskId)}`), 404, { agent: 'helper', method: 'GetTask' }, /not found/],
  ];
  const { queryEvents } = await import('../src/audit/query.ts');
  for (const [what, req, status, a2a, reason] of cases) {
    const r = await req;
    await gw.g.rt.auditLog!.flush();
    const evs = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.requestId!, limit: 10 });
    assert.equal(evs.length, 1, `${what}: one event (${JSON.stringify(evs)})`);
    const [ev] = evs;
    assert.equal(ev.type, 'a2a_call', what);
    assert.equal((ev.identity as { agent: string }).agent, 'risk-scorer', what);
    assert.deepEqual(ev.a2a, a2a, what);
    assert.equal(ev.outcome?.status, status, what);
    assert.equal(ev.outcome?.error_class, 'client', what);
    assert.match(ev.outcome!.error!, reason, what);
  }
  assert.equal(agents.received.get('helper'), undefined, 'the callee saw none of them');
  const anon = await raw('{not json', null);
  assert.equal(anon.status, 401);
  await gw.g.rt.auditLog!.flush();
  assert.deepEqual(queryEvents(gw.g.rt.auditLog!.db, { requestId: anon.requestId, limit: 10 }), [], 'no identity, no evidence');
});

test('caller-chosen text a refusal quotes (a task id, a method, a skill, a path) is cut to 64 characters and "…", in the answer and in the evidence alike', async () => {
  // 100 KB in a body; 12 KB in a path (node:http's 16 KB bound on a request's head holds the rest).
  const big = 'T'.repeat(100 * 1024);
  const pathBig = 'T'.repeat(12 * 1024);
  const rest = async (agent: string, path: string) => {
    const r = await fetch(`${gw.url}/a2a/${agent}${path}`, { headers: { 'a2a-version': '1.0', authorization: `Bearer ${keys['risk-scorer']}` } });
    return { status: r.status, requestId: r.headers.get('x-request-id'), body: await r.json() as { error?: { message: string } } };
  };
  const put = async (path: string) => {
    const r = await fetch(`${gw.url}/a2a/${path}`, { method: 'PUT', headers: { authorization: `Bearer ${keys['risk-scorer']}` } });
    return { status: r.status, requestId: r.headers.get('x-request-id'), body: await r.json() as { error?: { message: string } } };
  };
  const { queryEvents } = await import('../src/audit/query.ts');
  const cases: Array<[string, Promise<{ status: number; requestId: string | null; body: { error?: { message: string } } }>, number]> = [
    ['GetTask\'s id', rpc('helper', 'risk-scorer', 'GetTask', { id: big }), 200],
    ['a message\'s taskId', rpc('helper', 'risk-scorer', 'SendMessage', { message: { messageId: 'm', role: 'ROLE_USER', parts: [{ text: 'x' }], taskId: big } }), 200],
    ['a method', rpc('helper', 'risk-scorer', big, {}), 200],
    ['a denied skill', rpc('archivist', 'outsider', 'SendMessage', send('x', big)), 403],
    ['HTTP+JSON, a task id in the path', rest('helper', `/tasks/${pathBig}`), 404],
    ['HTTP+JSON, a route', rest('helper', `/${pathBig}/tasks/x/y/z`), 404],
    ['a verb on a card', put(`${pathBig}/.well-known/agent-card.json`), 405],
    ['a verb on an agent', put(pathBig), 405],
  ];
  for (const [what, req, status] of cases) {
    const r = await req;
    assert.equal(r.status, status, what);
    const message = r.body.error!.message;
    assert.match(message, /T{32,64}…/, `${what}: the text's head, then "…" (${message.slice(0, 300)})`);
    assert.ok(!message.includes('T'.repeat(65)), what);
    assert.ok(message.length < 600, `${what}: ${message.length} characters`);
    await gw.g.rt.auditLog!.flush();
    const evidence = JSON.stringify(queryEvents(gw.g.rt.auditLog!.db, { requestId: r.requestId!, limit: 10 }));
    assert.ok(!evidence.includes('T'.repeat(65)), `${what}: the evidence quotes 64 characters at most (${evidence.length} characters)`);
  }
});

test('an allowed call naming a 100 KB skill: the metrics label and the a2a_call event quote 64 characters of it; a malformed percent-encoding quotes 200', async () => {
  const big = `S${'s'.repeat(100 * 1024)}`;
  const r = await rpc('helper', 'planner', 'SendMessage', send('long skill', big));
  assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`skill="S${'s'.repeat(63)}…"`), 'the label is the skill clipped');
  assert.ok(!metrics.includes('s'.repeat(65)), 'no label holds more of it');
  await gw.g.rt.auditLog!.flush();
  const { queryEvents } = await import('../src/audit/query.ts');
  const evidence = JSON.stringify(queryEvents(gw.g.rt.auditLog!.db, { requestId: r.requestId!, limit: 10 }));
  assert.match(evidence, /"type":"a2a_call"/);
  assert.ok(!evidence.includes('s'.repeat(65)), `the evidence quotes 64 characters at most (${evidence.length} characters)`);
  const bad = await fetch(`${gw.url}/a2a/h%${'x'.repeat(10 * 1024)}`, { method: 'POST', headers: { authorization: `Bearer ${keys.planner}` } });
  const message = (await bad.json() as { error: { message: string } }).error.message;
  assert.equal(bad.status, 400);
  assert.match(message, /malformed percent-encoding in the .* "h%x{198}…"/);
});

test('an identified caller refused for an unknown callee (404) or a card it may not see (403) is an a2a_call event like its other refusals; a bad key naming any callee leaves none', async () => {
  const long = `n${'x'.repeat(12 * 1024)}`;
  const req = async (path: string, as: string | null, init: RequestInit = {}) => {
    const r = await fetch(`${gw.url}/a2a/${path}`, { ...init, headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${as === null ? 'aam_not_a_key_0000000000000000' : keys[as]}` } });
    return { status: r.status, requestId: r.headers.get('x-request-id')!, text: await r.text() };
  };
  const post = (agent: string, as: string | null) => req(agent, as, { method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendMessage', params: send('x') }) });
  const card = (agent: string, as: string | null) => req(`${agent}/.well-known/agent-card.json`, as);
  // [what, the request, its status, the event's a2a member, its reason]
  const cases: Array<[string, Promise<{ status: number; requestId: string; text: string }>, number, Record<string, unknown>, RegExp]> = [
    ['JSON-RPC, an unknown callee', post('nobody', 'risk-scorer'), 404, { agent: 'nobody' }, /^no A2A agent "nobody"/],
    ['HTTP+JSON, an unknown callee', req('nobody/tasks/t1', 'risk-scorer'), 404, { agent: 'nobody' }, /^no A2A agent "nobody"/],
    ['the card of an unknown callee', card('nobody', 'risk-scorer'), 404, { agent: 'nobody', card: true }, /^no A2A agent "nobody"/],
    ['a card its policy hides', card('risk-scorer', 'outsider'), 403, { agent: 'risk-scorer', card: true }, /^policy "outsider-none" agents\[0\] denies agent "risk-scorer"/],
    ['a card no rule lets it see', card('archivist', 'outsider'), 403, { agent: 'archivist', card: true }, /^no policy has an agents rule allowing/],
    ['a 12 KB callee name (clipped)', post(long, 'risk-scorer'), 404, { agent: `${long.slice(0, 64)}…` }, /^no A2A agent "nx{63}…"/],
  ];
  const { queryEvents } = await import('../src/audit/query.ts');
  for (const [what, pending, status, a2a, reason] of cases) {
    const r = await pending;
    assert.equal(r.status, status, `${what}: ${r.text.slice(0, 300)}`);
    assert.ok(r.text.length < 1000, `${what}: the answer quotes the name clipped (${r.text.length} characters)`);
    await gw.g.rt.auditLog!.flush();
    const evs = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.requestId, limit: 10 });
    assert.equal(evs.length, 1, `${what}: one event (${JSON.stringify(evs).slice(0, 500)})`);
    const [ev] = evs;
    assert.equal(ev.type, 'a2a_call', what);
    assert.equal((ev.identity as { agent: string }).agent, status === 403 ? 'outsider' : 'risk-scorer', what);
    assert.deepEqual(ev.a2a, a2a, what);
    assert.equal(ev.outcome?.status, status, what);
    assert.equal(ev.outcome?.error_class, 'client', what);
    assert.match(ev.outcome!.error!, reason, what);
  }
  // A callee's name from the URL is never a label: an unknown one is counted as "unknown".
  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  assert.match(metrics, /aam_a2a_refusals_total\{agent="risk-scorer",callee="unknown",code="unknown_agent"\} 4/);
  assert.ok(!metrics.includes('callee="nobody"') && !metrics.includes('nxxxx'), 'no label from a URL');
  // A bad key naming any callee, on either binding or the card: 401, in no event.
  for (const [what, pending] of [['JSON-RPC', post(long, null)], ['HTTP+JSON', req(`${long}/tasks/t1`, null)], ['card', card(long, null)], ['a known callee', post('helper', null)]] as const) {
    const r = await pending;
    assert.equal(r.status, 401, what);
    await gw.g.rt.auditLog!.flush();
    assert.deepEqual(queryEvents(gw.g.rt.auditLog!.db, { requestId: r.requestId, limit: 10 }), [], `${what}: no identity, no evidence`);
  }
});

test('clip: short text as it is; longer text its first 64 characters and "…", never half of a surrogate pair', async () => {
  const { clip } = await import('../src/lib/error-message.ts');
  assert.equal(clip('task-1'), 'task-1');
  assert.equal(clip('x'.repeat(64)), 'x'.repeat(64));
  assert.equal(clip('x'.repeat(65)), `${'x'.repeat(64)}…`);
  // An emoji (two UTF-16 units) across the cut is left out whole.
  assert.equal(clip(`${'x'.repeat(63)}😀tail`), `${'x'.repeat(63)}…`);
  assert.equal(clip(`${'x'.repeat(62)}😀tail`), `${'x'.repeat(62)}😀…`);
});

test('a cycle is refused: planner -> risk-scorer -> planner', async () => {
  const client = await sdkClient('risk-scorer', 'planner');
  const reply = replyText(await client.sendMessage(userMessage('call:planner:back to you', 'score')));
  assert.match(reply, /refused\(403\).*would loop.*planner -> risk-scorer -> planner/);
  // aam audit show prints why the hop was refused (the refusal names no policy: the reason is the outcome's).
  const r = await rpc('risk-scorer', 'planner', 'SendMessage', send('call:planner:again', 'score'));
  await gw.g.rt.auditLog!.flush();
  const { runAudit } = await import('./audit-helpers.ts');
  const show = await runAudit('audit show', gw.dataDir, {}, [r.requestId!]);
  assert.equal(show.code, 0, show.err);
  assert.match(show.out, /a2a_call .*a2a=planner .*outcome=403 client: calling agent "planner" would loop: it is already in this delegation chain \(planner -> risk-scorer -> planner\)/, show.out);
});

test('depth is bounded: planner -> risk-scorer -> helper -> archivist is hop 3, over helper\'s max_delegation_depth 2', async () => {
  const client = await sdkClient('risk-scorer', 'planner');
  const ok = replyText(await client.sendMessage(userMessage('call:helper:plain', 'score')));
  assert.match(ok, /relayed: helper says: plain/, 'hop 2 is allowed');
  const deep = replyText(await client.sendMessage(userMessage('call:helper:call:archivist:deep', 'score')));
  assert.match(deep, /refused\(403\).*hop 3.*max_delegation_depth 2/);
  // The refusal is evidence (it shows in the caller's tree).
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const refused = queryEvents(gw.g.rt.auditLog!.db, { type: 'a2a_call', agent: 'helper', limit: 50 }).find((e) => (e.a2a as { agent: string }).agent === 'archivist');
  assert.ok(refused, 'the refused hop is recorded');
  assert.equal(refused.outcome?.status, 403);
  assert.equal((refused.a2a as { delegation: { hop: number } }).delegation.hop, 2);
  // One trace for the whole chain: the callee forwarded the traceparent aam gave it.
  const link = queryEvents(gw.g.rt.auditLog!.db, { type: 'delegation', agent: 'helper', limit: 50 }).find((e) => (e.delegation as { hop: number }).hop === 2)!;
  const root = queryEvents(gw.g.rt.auditLog!.db, { type: 'a2a_call', agent: 'planner', limit: 50 }).find((e) => (e.delegation === undefined) && (e.a2a as { delegation?: { id: string } }).delegation?.id === (link.delegation as { id: string }).id);
  assert.ok(root?.trace_id);
  assert.equal(link.trace_id, root.trace_id);
});

test('a forged, borrowed or replayed delegation header is refused', async () => {
  const forged = await rpc('helper', 'risk-scorer', 'SendMessage', send('x'), { 'x-aam-delegation': 'v1.e30.AAAA' });
  assert.equal(forged.status, 401);
  assert.match(forged.body.error!.message, /bad signature/);
  // A real header given to risk-scorer, presented by another agent.
  const client = await sdkClient('risk-scorer', 'planner');
  await client.sendMessage(userMessage('hello', 'score'));
  const real = String(agents.received.get('risk-scorer')!['x-aam-delegation']);
  const borrowed = await rpc('archivist', 'helper', 'SendMessage', send('x'), { 'x-aam-delegation': real });
  assert.equal(borrowed.status, 403);
  assert.match(borrowed.body.error!.message, /issued to agent "risk-scorer"/);
  // Replayed by the callee it was issued to, once the call that issued it has ended: it links nothing.
  const replay = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys['risk-scorer']}`, 'x-aam-delegation': real },
    body: JSON.stringify({ model: 'small', messages: [{ role: 'user', content: 'unrelated' }] }),
  });
  assert.equal(replay.status, 401);
  assert.match(((await replay.json()) as { error: { message: string } }).error.message, /was issued for an A2A call that has ended/);
  const again = await rpc('helper', 'risk-scorer', 'SendMessage', send('x'), { 'x-aam-delegation': real });
  assert.equal(again.status, 401, 'nor may it extend the chain (claim its depth) with it');
});

test('a task the callee answered as working holds its delegation: its model calls after the answer are linked, until aam sees the task completed or canceled', async () => {
  const working = async () => {
    const r = await rpc('risk-scorer', 'planner', 'SendMessage', { ...send('work:score', 'score'), configuration: { returnImmediately: true } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const task = r.body.result!.task as { id: string; status: { state: string } };
    assert.match(task.status.state, /WORKING/);
    return { id: task.id, work: agents.working.get(task.id)! };
  };
  const state = async (id: string) => ((await rpc('risk-scorer', 'planner', 'GetTask', { id })).body.result as { status: { state: string } }).status.state;
  const done = await working();
  assert.equal(await done.work.model(), 200, 'the call has answered, its task works on: honoured');
  assert.match(await state(done.id), /WORKING/);
  assert.equal(await done.work.model(), 200, 'a poll that sees it working changes nothing');
  done.work.complete();
  while (!/COMPLETED/.test(await state(done.id))) await new Promise((r) => setTimeout(r, 10));
  assert.equal(await done.work.model(), 401, 'aam saw it completed: refused');
  const canceled = await working();
  assert.equal(await canceled.work.model(), 200);
  const c = await rpc('risk-scorer', 'planner', 'CancelTask', { id: canceled.id });
  assert.match(JSON.stringify(c.body.result), /CANCELED/);
  assert.equal(await canceled.work.model(), 401, 'aam saw it canceled: refused');
  // Seen completed in a resubscribed stream (SubscribeToTask) through aam.
  const streamed = await working();
  assert.equal(await streamed.work.model(), 200);
  const sub = await fetch(`${gw.url}/a2a/risk-scorer`, {
    method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', 'a2a-version': '1.0', authorization: `Bearer ${keys.planner}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'SubscribeToTask', params: { id: streamed.id } }),
  });
  assert.equal(sub.status, 200);
  streamed.work.complete();
  assert.match(await sub.text(), /COMPLETED/);
  assert.equal(await streamed.work.model(), 401, 'aam saw it completed in the stream: refused');
});

test('a secret the callee echoes is scrubbed, in answers and in streams', async () => {
  const r = await rpc('risk-scorer', 'planner', 'SendMessage', send('echo-secret', 'score'));
  assert.equal(r.status, 200);
  const text = JSON.stringify(r.body);
  assert.ok(!text.includes(SCORER_SECRET), text);
  assert.match(text, /the key is/);
  const s = await fetch(`${gw.url}/a2a/risk-scorer`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.planner}`, accept: 'text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'SendStreamingMessage', params: send('stream the secret', 'score') }),
  });
  assert.equal(s.headers.get('content-type'), 'text/event-stream');
  const streamed = await s.text();
  assert.match(streamed, /alpha/);
  assert.ok(!streamed.includes(SCORER_SECRET));
});

test('evidence: the A2A call and the callee\'s own calls are linked by the delegation', async () => {
  // The callee makes a model call while serving, then calls helper, both with the header it was given.
  const r = await rpc('risk-scorer', 'planner', 'SendMessage', send('model:call:helper:linked', 'score'));
  assert.equal(r.status, 200);
  assert.match(JSON.stringify(r.body), /model 200; relayed: helper says: linked/);
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const db = gw.g.rt.auditLog!.db;
  const [call] = queryEvents(db, { requestId: r.requestId!, type: 'a2a_call' });
  assert.ok(call, 'the A2A call is recorded');
  const a2a = call.a2a as { agent: string; skill: string; delegation: { id: string; hop: number } };
  assert.equal(a2a.agent, 'risk-scorer');
  assert.equal(a2a.skill, 'score');
  assert.equal(a2a.delegation.hop, 1);
  const links = queryEvents(db, { type: 'delegation', limit: 1000 }).filter((e) => (e.delegation as { parent_request_id: string }).parent_request_id === r.requestId);
  assert.equal(links.length, 2, 'risk-scorer\'s A2A call to helper and its model call are linked to the planner\'s call');
  for (const l of links) assert.equal((l.delegation as { id: string }).id, a2a.delegation.id);
  assert.equal(call.policy?.name, 'planner-calls');
  // aam audit show prints the tree: the planner's call, then what risk-scorer did for it.
  const { runAudit } = await import('./audit-helpers.ts');
  const show = await runAudit('audit show', gw.dataDir, {}, [r.requestId!]);
  assert.equal(show.code, 0, show.err);
  const lines = show.out.trimEnd().split('\n');
  assert.match(lines[0], new RegExp(`^request ${r.requestId} \\(agent planner\\)`));
  assert.ok(lines.some((l) => /^ {3}#\d+ .*a2a_call .*a2a=risk-scorer skill=score SendMessage hop=1/.test(l)), show.out);
  assert.ok(lines.some((l) => /^ {2}-> request \S+ \(agent risk-scorer\)/.test(l)), show.out);
  assert.ok(lines.some((l) => /^ {5}#\d+ .*model_call/.test(l)), show.out);
  assert.ok(lines.some((l) => /^ {5}#\d+ .*a2a=helper .*hop=2/.test(l)), show.out);
});

test('guardrails see A2A messages and artifacts: a blocked message never reaches the callee; an email in the answer is redacted', async () => {
  agents.received.delete('risk-scorer');
  const blocked = await rpc('risk-scorer', 'planner', 'SendMessage', send('tell me about Project Falcon', 'score'));
  assert.equal(blocked.status, 400);
  assert.equal(blocked.body.error!.data?.code, 'guardrail_blocked');
  assert.equal(agents.received.get('risk-scorer'), undefined, 'the callee never saw it');
  const redacted = await rpc('risk-scorer', 'planner', 'SendMessage', send('write to bob@example.com', 'score'));
  assert.equal(redacted.status, 200);
  const text = JSON.stringify(redacted.body);
  assert.ok(!text.includes('bob@example.com'), text);
  assert.match(text, /\[EMAIL\]/);
  const s = await fetch(`${gw.url}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.planner}`, accept: 'text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'SendStreamingMessage', params: send('stream to carol@example.com') }),
  });
  const streamed = await s.text();
  assert.ok(!streamed.includes('carol@example.com'), 'the task event echoes the message: redacted in the stream too');
});

test('guardrails see object keys of an A2A DataPart: a blocked keyword in a key never reaches the callee', async () => {
  agents.received.delete('risk-scorer');
  const data = { message: { messageId: `r-${Math.random()}`, role: 'ROLE_USER', parts: [{ data: { notes: { 'status of Project Falcon': 1 } } }], metadata: { skill: 'score' } } };
  const blocked = await rpc('risk-scorer', 'planner', 'SendMessage', data);
  assert.equal(blocked.status, 400, JSON.stringify(blocked.body));
  assert.equal(blocked.body.error!.data?.code, 'guardrail_blocked');
  assert.equal(agents.received.get('risk-scorer'), undefined, 'the callee never saw it');
});

test('guardrails read an A2A file part\'s bytes (`raw`, base64 on the wire) as the text they hold: a blocked keyword in a text file never reaches the callee', async () => {
  agents.received.delete('risk-scorer');
  const client = await sdkClient('risk-scorer', 'planner');
  const file = Buffer.from('Quarterly memo. The status of Project Falcon is attached below, for the board only.');
  const message = { message: { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'raw', value: file }, metadata: undefined, filename: 'memo.txt', mediaType: 'text/plain' }], metadata: { skill: 'score' }, extensions: [], referenceTaskIds: [] }, configuration: undefined, metadata: undefined, tenant: '' } as never;
  await assert.rejects(client.sendMessage(message), /guardrail "no-falcon"/);
  assert.equal(agents.received.get('risk-scorer'), undefined, 'the callee never saw it');
});

test('rate limits apply to A2A calls: the third call in a minute with rpm 2 is 429 with retry-after', async () => {
  assert.equal((await rpc('helper', 'burst', 'SendMessage', send('one'))).status, 200);
  assert.equal((await rpc('helper', 'burst', 'SendMessage', send('two'))).status, 200);
  const r = await fetch(`${gw.url}/a2a/helper`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${keys.burst}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendMessage', params: send('three') }),
  });
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  const body = await r.json() as { error: { code: number; data: { code: string } } };
  assert.equal(body.error.code, -32029);
  assert.equal(body.error.data.code, 'rate_limited');
});

test('an on-behalf-of credential gives the callee a short-lived assertion naming the caller, not a static key', async () => {
  const r = await rpc('helper', 'planner', 'SendMessage', send('who am I'));
  assert.equal(r.status, 200);
  const auth = String(agents.received.get('helper')!.authorization);
  const m = /^Bearer ([\w-]+)\.([\w-]+)\.[\w-]+$/.exec(auth);
  assert.ok(m, auth);
  const claims = JSON.parse(Buffer.from(m[2], 'base64url').toString('utf8')) as { sub: string; aud: string | string[]; exp: number };
  assert.equal(claims.sub, 'spiffe://test/agent/planner');
  assert.deepEqual([claims.aud].flat(), ['a2a://helper']);
  assert.ok(claims.exp - Date.now() / 1000 <= 61);
  assert.ok(!auth.includes(keys.planner));
});

test('a JWT-SVID caller is identified and decided like a key holder; the token never reaches the callee', async () => {
  const tr = await fetch(`${gw.url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${keys.planner}`, 'content-type': 'application/json' }, body: JSON.stringify({ ttl: '5m' }) });
  assert.equal(tr.status, 200);
  const { access_token } = await tr.json() as { access_token: string };
  const call = (skill: string) => fetch(`${gw.url}/a2a/risk-scorer`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${access_token}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'SendMessage', params: send('via svid', skill) }),
  });
  const ok = await call('score');
  assert.equal(ok.status, 200);
  assert.match(await ok.text(), /risk-scorer says: via svid/);
  const h = agents.received.get('risk-scorer')!;
  assert.ok(!JSON.stringify(h).includes(access_token));
  assert.equal(h['x-aam-caller'], 'spiffe://test/agent/planner');
  assert.equal((await call('export')).status, 403);
});
