// A2A push: text a route held back (what could begin a secret at the end of an artifact chunk)
// and let go of without a closing notification is evidence. At shutdown close() posts it to the
// caller's webhook and waits for that post (bounded); an `a2a_push_held` event records it under
// the request that registered the push config (`aam audit show` of that request lists it): route,
// task, artifact, reason, the byte count, what scrubbing found; never the text. Before: the post
// was fired and not waited for, and only logged (no request context then).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { runAudit } from './audit-helpers.ts';
import { openAuditDb } from '../src/audit/store.ts';
import { queryEvents } from '../src/audit/query.ts';

const SECRET = 'push-held-cred-4b8e2f7a19c3d605';
let hook: LocalServer;
let callee: LocalServer;
const hooked: Array<{ body: string; at: number }> = [];
/** The push config aam gave the callee (its URL and token), per SendMessage. */
const given: Array<{ url: string; token: string }> = [];

before(async () => {
  process.env.A2A_PUSH_HELD_TOKEN = SECRET;
  hook = await localServer(async (_req, res, body) => {
    // A webhook that takes a moment: close() must wait for the post, not fire and forget it.
    await new Promise((r) => setTimeout(r, 1200));
    hooked.push({ body, at: performance.now() });
    res.writeHead(200).end();
  });
  callee = await localServer((_req, res, body) => {
    const rpc = JSON.parse(body) as { id: number; params: { configuration?: { taskPushNotificationConfig?: { url: string; token: string } } } };
    const cfg = rpc.params.configuration?.taskPushNotificationConfig;
    if (cfg) given.push({ url: cfg.url, token: cfg.token });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { task: { id: 'task-held', contextId: 'ctx-held', status: { state: 'TASK_STATE_WORKING' } } } }));
  });
});

after(async () => {
  await hook?.close();
  await callee?.close();
  delete process.env.A2A_PUSH_HELD_TOKEN;
});

test('close() posts what a push route held and waits for it; the release is an a2a_push_held event under the registering request, shown by `aam audit show`', async () => {
  const gw: TestGateway = await startTestGateway(yaml(
    doc('Credential', 'relay-token', { env: 'A2A_PUSH_HELD_TOKEN' }),
    doc('Agent', 'relay', { workload: 'spiffe://test/agent/relay', a2a: { url: `${callee.url}/a2a`, credential: 'relay-token' } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'relay' }] }),
  ), { AAM_A2A_PUSH_ALLOW: new URL(hook.url).host });
  try {
    const reg = await fetch(`${gw.url}/a2a/relay`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.key('caller')}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
        message: { messageId: 'held-1', role: 'ROLE_USER', parts: [{ text: 'work' }] },
        configuration: { taskPushNotificationConfig: { url: `${hook.url}/hook`, token: 'caller-hook-token' } },
      } }),
    });
    assert.equal(reg.status, 200, await reg.text());
    const registering = reg.headers.get('x-request-id')!;
    assert.ok(registering.startsWith('req_'), registering);
    const route = given.at(-1)!;
    // One chunk ending with what could begin the secret; no lastChunk, no final status follows.
    const n = await fetch(route.url, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': route.token },
      body: JSON.stringify({ artifactUpdate: { taskId: 'task-held', contextId: 'ctx-held', artifact: { artifactId: 'art-1', parts: [{ text: `report: ${SECRET.slice(0, 12)}` }] } } }),
    });
    assert.equal(n.status, 200, await n.text());
    assert.equal(hooked.length, 1);
    assert.ok(!hooked[0].body.includes(SECRET.slice(0, 12)), 'held back');
    await gw.g.close();
    const closedAt = performance.now();
    assert.equal(hooked.length, 2, 'close() waited for the held text\'s post');
    assert.ok(hooked[1].at <= closedAt);
    const last = JSON.parse(hooked[1].body) as { artifactUpdate: { append: boolean; lastChunk: boolean; artifact: { artifactId: string; parts: Array<{ text: string }> } } };
    assert.deepEqual(last.artifactUpdate.artifact.parts, [{ text: SECRET.slice(0, 12) }]);
    assert.equal(last.artifactUpdate.lastChunk, true);
    // The evidence: under the request that registered the push config.
    const db = openAuditDb(gw.dataDir);
    let events: Array<Record<string, any>>;
    try { events = queryEvents(db, { requestId: registering, order: 'asc', limit: 100 }) as unknown as Array<Record<string, any>>; } finally { db.close(); }
    const held = events.filter((e) => e.type === 'a2a_push_held');
    assert.equal(held.length, 1, JSON.stringify(events.map((e) => e.type)));
    const e = held[0];
    assert.equal(e.a2a.agent, 'relay');
    assert.ok(String(e.a2a.route).startsWith('psh_') && route.url.endsWith(`/push/${e.a2a.route}`), JSON.stringify(e.a2a));
    assert.equal(e.a2a.task_id, 'task-held');
    assert.equal(e.a2a.artifact_id, 'art-1');
    assert.deepEqual(e.detail, { reason: 'shutdown', bytes: 12, findings: [] });
    assert.equal(e.outcome.status, 200);
    assert.equal(e.identity.agent, 'caller');
    assert.ok(!JSON.stringify(e).includes(SECRET.slice(0, 12)), 'never the text');
    const show = await runAudit('audit show', gw.dataDir, { json: true }, [registering], gw.configPath);
    assert.equal(show.code, 0, show.err);
    assert.match(show.out, /"type":\s*"a2a_push_held"/);
    assert.match(show.out, /"reason":\s*"shutdown"/);
  } finally {
    await gw.close();
  }
});
