// A2A push notifications are guarded with the caller as it is now, not as it was when it
// registered the push route: once the caller's key is revoked, or its policy no longer lets it call
// the agent, the callee's notifications are refused (403) and nothing reaches the caller's webhook.
// The callee here is a plain HTTP server that keeps the push config aam gave it, so the test can
// notify exactly when it wants (the SDK agents of a2a-push.test.ts notify on their own schedule).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';

const ADMIN = 'a2a-push-identity-admin-token-0123456789';
let gw: TestGateway;
let callee: LocalServer;
let hook: LocalServer;
const hooked: string[] = [];
/** The push configs aam handed the callee (its URL and token, never the caller's). */
const given: Array<{ url: string; token: string }> = [];
let taskNo = 0;

const config = (policyLetsCall: boolean) => yaml(
  doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${callee.url}/a2a` } }),
  doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
  doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: policyLetsCall ? [{ agent: 'worker' }] : [] }),
);

before(async () => {
  hook = await localServer((_req, res, body) => { hooked.push(body); res.writeHead(200).end(); });
  callee = await localServer((_req, res, body) => {
    const rpc = JSON.parse(body) as { id: number; params: { configuration?: { taskPushNotificationConfig?: { url: string; token: string } } } };
    const cfg = rpc.params.configuration?.taskPushNotificationConfig;
    if (cfg) given.push({ url: cfg.url, token: cfg.token });
    const id = `task-${++taskNo}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { task: { id, contextId: `ctx-${id}`, status: { state: 'TASK_STATE_WORKING' } } } }));
  });
  gw = await startTestGateway(config(true), { AAM_A2A_PUSH_ALLOW: new URL(hook.url).host, AAM_ADMIN_TOKEN: ADMIN });
});
after(async () => { await gw?.close(); await callee?.close(); await hook?.close(); });

/** The caller registers a push route with its message; returns the task and what the callee was given. */
async function register(key: string): Promise<{ task: string; url: string; token: string }> {
  const r = await fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
      message: { messageId: `m-${taskNo}`, role: 'ROLE_USER', parts: [{ text: 'work' }] },
      configuration: { taskPushNotificationConfig: { url: `${hook.url}/hook`, token: 'caller-hook-token' } },
    } }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  const task = /"id":"(task-\d+)"/.exec(text)![1];
  return { task, ...given.at(-1)! };
}

/** The callee notifies aam about `task` through the route it was given. */
const notify = (route: { task: string; url: string; token: string }) => fetch(route.url, {
  method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': route.token },
  body: JSON.stringify({ task: { id: route.task, contextId: `ctx-${route.task}`, status: { state: 'TASK_STATE_COMPLETED' } } }),
});

test('a push route stops delivering once the caller\'s key is revoked (the key as it is now, not at registration)', async () => {
  const { key, secret } = gw.g.rt.keys.create('caller');
  const route = await register(secret);
  assert.ok(route.url.includes('/a2a/worker/push/psh_'), 'the callee got aam\'s URL');
  const before = hooked.length;
  const ok = await notify(route);
  assert.equal(ok.status, 200, await ok.text());
  assert.equal(hooked.length, before + 1, 'delivered while the key is valid');
  gw.g.rt.keys.revoke(key.id);
  const refused = await notify(route);
  assert.equal(refused.status, 403);
  assert.match(await refused.text(), /key that registered this push route is no longer valid/);
  assert.equal(hooked.length, before + 1, 'nothing reached the webhook after the revocation');
});

test('a push route stops delivering once the caller\'s policy no longer lets it call the agent; the refusal is a recorded deny', async () => {
  const route = await register(gw.key('caller'));
  assert.equal((await notify(route)).status, 200);
  const delivered = hooked.length;
  writeFileSync(gw.configPath, config(false));
  assert.equal(gw.g.rt.reload(), null);
  try {
    const refused = await notify(route);
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /policy_denied/);
    assert.equal(hooked.length, delivered, 'nothing reached the webhook under the new policy');
    const rid = refused.headers.get('x-request-id');
    const events = ((await (await fetch(`${gw.url}/admin/v1/audit?request_id=${rid}`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: Array<{ policy?: { decision: string } }> }).data;
    assert.ok(events.some((e) => e.policy?.decision === 'deny'), JSON.stringify(events));
  } finally {
    writeFileSync(gw.configPath, config(true));
    gw.g.rt.reload();
  }
});
