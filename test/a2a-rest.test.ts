// A2A v1 HTTP+JSON binding through aam, end to end: the official @a2a-js/sdk REST client calls
// real @a2a-js/sdk agents behind aam. Same policy, delegation, guardrails, scrubbing, limits and
// evidence as the JSON-RPC binding (one path in gateway.ts); only the framing differs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ClientFactory, ClientFactoryOptions, RestTransportFactory } from '@a2a-js/sdk/client';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';

const SCORER_SECRET = 'scorer-rest-cred-5b2e9c1d7a3f4e60';
let gw: TestGateway;
let agents: TestAgents;
const keys: Record<string, string> = {};
let release: () => void = () => undefined;
let held: Promise<void> = Promise.resolve();
const arm = () => { held = new Promise<void>((r) => { release = r; }); };

before(async () => {
  process.env.A2A_REST_SCORER_TOKEN = SCORER_SECRET;
  const aamUrl = () => gw.url;
  agents = await startTestAgents([
    { name: 'planner', skills: ['plan'], aamUrl, key: () => keys.planner },
    { name: 'risk-scorer', skills: ['score', 'export'], aamUrl, key: () => keys['risk-scorer'], secret: SCORER_SECRET, hold: () => held },
    { name: 'helper', skills: ['help'], aamUrl, key: () => keys.helper },
  ]);
  const agent = (name: string, a2a: Record<string, unknown>) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev', a2a });
  gw = await startTestGateway(yaml(
    doc('Credential', 'scorer-token', { env: 'A2A_REST_SCORER_TOKEN' }),
    agent('planner', { url: `${agents.base}/planner` }),
    agent('risk-scorer', { url: `${agents.base}/risk-scorer`, credential: 'scorer-token' }),
    agent('helper', { url: `${agents.base}/helper` }),
    doc('Agent', 'outsider', { workload: 'spiffe://test/agent/outsider' }),
    doc('Agent', 'burst', { workload: 'spiffe://test/agent/burst' }),
    doc('AgentPolicy', 'burst-calls', { identity: { agent: 'burst' }, agents: [{ agent: 'helper' }], models: { rate: { rpm: 1 } } }),
    doc('Guardrail', 'no-falcon', { on: ['input', 'output'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'pii-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'risk-scorer', skills: ['score'] }, { agent: 'helper' }], guardrails: ['no-falcon', 'pii-out'] }),
    doc('AgentPolicy', 'scorer-calls', { identity: { agent: 'risk-scorer' }, agents: [{ agent: 'helper' }] }),
    doc('AgentPolicy', 'helper-calls', { identity: { agent: 'helper' }, agents: [{ agent: 'risk-scorer', skills: ['score'] }] }),
    doc('AgentPolicy', 'outsider-none', { identity: { agent: 'outsider' }, agents: [{ agent: 'risk-scorer', deny: ['*'] }] }),
  ));
  for (const n of ['planner', 'risk-scorer', 'helper', 'outsider', 'burst']) keys[n] = gw.key(n);
});

after(async () => {
  release();
  await gw?.close();
  await agents?.close();
  delete process.env.A2A_REST_SCORER_TOKEN;
});

/** The official SDK client on its HTTP+JSON transport, reaching the agent only through aam. */
async function restClient(agent: string, as: string) {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${keys[as]}`);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new RestTransportFactory({ fetchImpl })],
    preferredTransports: ['HTTP+JSON'],
    cardResolver: undefined,
  }));
  const card = await (await fetchImpl(`${gw.url}/a2a/${agent}/.well-known/agent-card.json`)).json();
  return factory.createFromAgentCard(card as never);
}

const userMessage = (text: string, skill?: string) => ({
  message: { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' }], metadata: skill ? { skill } : undefined, extensions: [], referenceTaskIds: [] },
  configuration: undefined, metadata: undefined, tenant: '',
}) as never;

const replyText = (r: unknown): string => {
  const m = r as { parts?: Array<{ content?: { value?: unknown } }> };
  return (m.parts ?? []).map((p) => String(p.content?.value ?? '')).join('');
};

/** A raw HTTP+JSON request through aam. */
async function rest(path: string, as: string | null, init: { method?: string; body?: unknown; accept?: string } = {}) {
  const r = await fetch(`${gw.url}${path}`, {
    method: init.method ?? 'POST',
    headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(init.accept ? { accept: init.accept } : {}), ...(as ? { authorization: `Bearer ${keys[as]}` } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  });
  const text = await r.text();
  const isJson = /json/.test(r.headers.get('content-type') ?? '');
  return { status: r.status, headers: r.headers, text, json: (isJson ? JSON.parse(text) : {}) as Record<string, unknown> & { error?: { code: number; status: string; message: string; details: Array<{ reason: string; domain: string }> } } };
}

const send = (text: string, skill?: string) => ({ message: { messageId: `r-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }], ...(skill ? { metadata: { skill } } : {}) } });

async function expectA2aError(p: Promise<unknown>, status: number): Promise<Error & { statusCode?: number }> {
  try { await p; } catch (e) {
    assert.equal((e as { statusCode?: number }).statusCode, status, String(e));
    return e as Error;
  }
  assert.fail(`expected an error with HTTP ${status}`);
}

test('the card offers HTTP+JSON beside JSON-RPC, both at aam', async () => {
  const r = await fetch(`${gw.url}/a2a/risk-scorer/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${keys.planner}` } });
  const card = await r.json() as { supportedInterfaces: unknown[] };
  assert.deepEqual(card.supportedInterfaces, [
    { url: `${gw.url}/a2a/risk-scorer`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' },
    { url: `${gw.url}/a2a/risk-scorer`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' },
  ]);
});

test('SDK REST client -> aam -> SDK agent: send is answered; the callee gets aam\'s credential and the delegation, never the caller\'s key', async () => {
  const client = await restClient('risk-scorer', 'planner');
  const reply = await client.sendMessage(userMessage('hello over rest', 'score'));
  assert.match(replyText(reply), /risk-scorer says: hello over rest/);
  const h = agents.received.get('risk-scorer')!;
  assert.equal(h.authorization, `Bearer ${SCORER_SECRET}`);
  assert.ok(!JSON.stringify(h).includes(keys.planner));
  assert.match(String(h['x-aam-delegation']), /^v1\./);
  assert.equal(h['x-aam-caller'], 'spiffe://test/agent/planner');
});

test('REST stream is relayed chunk by chunk: the first events arrive while the callee still holds the rest', async () => {
  arm();
  const client = await restClient('risk-scorer', 'planner');
  const it = client.sendMessageStream(userMessage('stream and hold', 'score'))[Symbol.asyncIterator]();
  const first = await it.next();
  const second = await it.next();
  assert.ok(!first.done && !second.done, 'task and working arrive before the callee goes on');
  release();
  const later: unknown[] = [];
  for (let n = await it.next(); !n.done; n = await it.next()) later.push(n.value);
  const text = JSON.stringify(later);
  assert.match(text, /alpha/);
  assert.match(text, /gamma/);
  const task = first.value as { id?: string; payload?: { value: { id: string } } };
  const taskId = task.id ?? task.payload?.value.id;
  assert.ok(taskId);
  // Task calls over REST: the owner sees its task, another caller gets 404 (task not found), the callee is not asked.
  const mine = await client.getTask({ id: taskId, tenant: '' } as never) as { id: string };
  assert.equal(mine.id, taskId);
  const other = await restClient('risk-scorer', 'helper');
  const gone = await expectA2aError(other.getTask({ id: taskId, tenant: '' } as never), 404);
  assert.equal(gone.name, 'TaskNotFoundError');
  await expectA2aError(other.cancelTask({ id: taskId, tenant: '' } as never), 404);
  const raw = await rest(`/a2a/risk-scorer/tasks/${encodeURIComponent(taskId)}`, 'helper', { method: 'GET' });
  assert.equal(raw.status, 404);
  assert.equal(raw.json.error?.details[0].reason, 'TASK_NOT_FOUND');
  // Cancel of a finished task: the callee's A2A error, in REST form.
  const cancel = await rest(`/a2a/risk-scorer/tasks/${encodeURIComponent(taskId)}:cancel`, 'planner');
  assert.equal(cancel.status, 409, cancel.text);
  assert.equal(cancel.json.error?.details[0].reason, 'TASK_NOT_CANCELABLE');
  // Subscribe and push config are routed and owned the same way.
  assert.equal((await rest(`/a2a/risk-scorer/tasks/${encodeURIComponent(taskId)}:subscribe`, 'helper', { method: 'GET', accept: 'text/event-stream' })).status, 404);
  const push = await rest(`/a2a/risk-scorer/tasks/${encodeURIComponent(taskId)}/pushNotificationConfigs`, 'planner', { body: { url: 'https://93.184.216.34/hook' } });
  assert.equal(push.status, 400, push.text);
  assert.equal(push.json.error?.details[0].reason, 'PUSH_NOTIFICATION_NOT_SUPPORTED', 'the callee\'s own refusal (it has no push support)');
  assert.equal((await rest(`/a2a/risk-scorer/tasks/${encodeURIComponent(taskId)}/pushNotificationConfigs`, 'helper', { body: { url: 'https://93.184.216.34/hook' } })).status, 404);
});

test('REST refusals: a denied skill is 403 naming the policy and never reaches the callee; no identity 401; unknown route 404; wrong verb 405; ListTasks refused', async () => {
  agents.received.delete('risk-scorer');
  const denied = await rest('/a2a/risk-scorer/message:send', 'planner', { body: send('all of it', 'export') });
  assert.equal(denied.status, 403);
  assert.equal(denied.json.error?.status, 'PERMISSION_DENIED');
  assert.match(denied.json.error!.message, /planner-calls.*agents\[0\].*only skills score/);
  assert.deepEqual(denied.json.error?.details.map((d) => [d.reason, d.domain]), [['POLICY_DENIED', 'aam']]);
  assert.equal(agents.received.get('risk-scorer'), undefined);
  const client = await restClient('risk-scorer', 'outsider').catch(() => null);
  assert.equal(client, null, 'the outsider may not even read the card');
  assert.equal((await rest('/a2a/risk-scorer/message:send', 'outsider', { body: send('x', 'score') })).status, 403);
  assert.equal((await rest('/a2a/risk-scorer/message:send', null, { body: send('x', 'score') })).status, 401);
  const nowhere = await rest('/a2a/risk-scorer/messages:send', 'planner', { body: send('x', 'score') });
  assert.equal(nowhere.status, 404);
  assert.match(nowhere.json.error!.message, /no A2A HTTP\+JSON route/);
  const verb = await rest('/a2a/risk-scorer/message:send', 'planner', { method: 'GET' });
  assert.equal(verb.status, 405);
  assert.equal(verb.headers.get('allow'), 'POST');
  const list = await rest('/a2a/risk-scorer/tasks', 'planner', { method: 'GET' });
  assert.equal(list.status, 400);
  assert.equal(list.json.error?.details[0].reason, 'UNSUPPORTED_OPERATION');
  assert.equal(agents.received.get('risk-scorer'), undefined, 'none of them reached the callee');
});

test('REST: guardrails and scrubbing apply as on JSON-RPC (answers and streams)', async () => {
  const echoed = await rest('/a2a/risk-scorer/message:send', 'planner', { body: send('echo-secret', 'score') });
  assert.equal(echoed.status, 200);
  assert.ok(!echoed.text.includes(SCORER_SECRET), echoed.text);
  assert.match(echoed.text, /the key is/);
  const streamed = await rest('/a2a/risk-scorer/message:stream', 'planner', { body: send('stream the secret', 'score'), accept: 'text/event-stream' });
  assert.equal(streamed.headers.get('content-type'), 'text/event-stream');
  assert.match(streamed.text, /alpha/);
  assert.ok(!streamed.text.includes(SCORER_SECRET));
  assert.ok(!streamed.text.includes('jsonrpc'), 'REST stream events are StreamResponse objects, not JSON-RPC envelopes');
  agents.received.delete('risk-scorer');
  const blocked = await rest('/a2a/risk-scorer/message:send', 'planner', { body: send('about Project Falcon', 'score') });
  assert.equal(blocked.status, 400);
  assert.equal(blocked.json.error?.details[0].reason, 'GUARDRAIL_BLOCKED');
  assert.equal(agents.received.get('risk-scorer'), undefined);
  const redacted = await rest('/a2a/helper/message:stream', 'planner', { body: send('stream to carol@example.com'), accept: 'text/event-stream' });
  assert.ok(!redacted.text.includes('carol@example.com'));
  assert.match(redacted.text, /\[EMAIL\]/);
});

test('REST: rate limits are the caller\'s, whatever the binding (429, RESOURCE_EXHAUSTED, retry-after)', async () => {
  assert.equal((await rest('/a2a/helper/message:send', 'burst', { body: send('one') })).status, 200);
  const r = await rest('/a2a/helper/message:send', 'burst', { body: send('two') });
  assert.equal(r.status, 429);
  assert.equal(r.json.error?.status, 'RESOURCE_EXHAUSTED');
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
});

test('REST evidence: the call is recorded like a JSON-RPC one (skill, method, delegation hop)', async () => {
  const r = await rest('/a2a/risk-scorer/message:send', 'planner', { body: send('call:helper:over rest', 'score') });
  assert.equal(r.status, 200);
  assert.match(r.text, /relayed: helper says: over rest/);
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const [call] = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.headers.get('x-request-id')!, type: 'a2a_call' });
  const a2a = call.a2a as { agent: string; skill: string; method: string; delegation: { hop: number; id: string } };
  assert.deepEqual([a2a.agent, a2a.skill, a2a.method, a2a.delegation.hop], ['risk-scorer', 'score', 'SendMessage', 1]);
  const links = queryEvents(gw.g.rt.auditLog!.db, { type: 'delegation', limit: 1000 }).filter((e) => (e.delegation as { id: string }).id === a2a.delegation.id);
  assert.equal(links.length, 1, 'risk-scorer\'s call to helper is linked to the planner\'s REST call');
});
