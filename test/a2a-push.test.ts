// A2A push notifications through aam, end to end with @a2a-js/sdk agents (the SDK's own push
// store and sender): the callee is given aam's URL and token, never the caller's; its
// notifications are verified, scrubbed and forwarded to the caller's webhook with the caller's
// token. Caller URLs follow the SSRF rule: private addresses are refused unless allowed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { request } from 'undici';
import { pinnedDispatcher, pushDestination, pushUrlRefusal } from '../src/a2a/push.ts';
import { PushArtifactText } from '../src/a2a/chunks.ts';
import { memoryPushHeld } from '../src/store/push-held.ts';
import { parseProm, sumOf, type Sample } from './helpers/prom.ts';
import { auditOf } from './helpers/e2e.ts';

const SECRET = 'push-worker-cred-7c3e9b4f21aa8d1f';
let gw: TestGateway;
let agents: TestAgents;
let hook: Server;
let hookUrl = '';
const hooked: Array<{ headers: Record<string, unknown>; body: string }> = [];
const keys: Record<string, string> = {};

before(async () => {
  process.env.A2A_PUSH_WORKER_TOKEN = SECRET;
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => { hooked.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }); res.writeHead(200).end(); });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  agents = await startTestAgents([{ name: 'worker', skills: ['work'], aamUrl: () => gw.url, key: () => keys.worker, secret: SECRET, push: true }]);
  gw = await startTestGateway(yaml(
    doc('Credential', 'worker-token', { env: 'A2A_PUSH_WORKER_TOKEN' }),
    doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${agents.base}/worker`, credential: 'worker-token' } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'worker' }] }),
    doc('AgentPolicy', 'other-calls', { identity: { agent: 'other' }, agents: [{ agent: 'worker' }] }),
  ), { AAM_A2A_PUSH_ALLOW: new URL(hookUrl).host });
  keys.caller = gw.key('caller');
  keys.other = gw.key('other');
  keys.worker = gw.key('worker');
});

after(async () => {
  await gw?.close();
  await agents?.close();
  hook?.closeAllConnections();
  await new Promise((r) => hook?.close(r));
  delete process.env.A2A_PUSH_WORKER_TOKEN;
});

async function rpc(as: string, method: string, params: unknown) {
  const r = await fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[as]}`, ...(method === 'SendStreamingMessage' ? { accept: 'text/event-stream' } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
  });
  const text = await r.text();
  return { status: r.status, text, body: (r.headers.get('content-type')?.includes('json') ? JSON.parse(text) : {}) as { result?: Record<string, unknown>; error?: { message: string; data?: { code: string } } } };
}

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const message = (text: string) => ({ messageId: `p-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }] });

test('the callee\'s notifications reach the caller\'s webhook through aam: caller token, scrubbed, never the caller\'s URL at the callee', async () => {
  const r = await rpc('caller', 'SendStreamingMessage', { message: message('stream the secret'), configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } } });
  assert.equal(r.status, 200, r.text);
  await until('notifications at the webhook', () => hooked.some((h) => h.body.includes('TASK_STATE_COMPLETED') || /"state":\s*"?(3|TASK_STATE_COMPLETED)/.test(h.body)));
  for (const h of hooked) {
    assert.equal(h.headers['x-a2a-notification-token'], 'caller-hook-token', 'the caller\'s own token');
    assert.ok(String(h.headers['x-aam-request-id']).startsWith('req_'), 'delivered by aam');
    assert.ok(!h.body.includes(SECRET), 'scrubbed');
  }
  assert.ok(hooked.some((h) => h.body.includes('alpha')));
  // The callee holds aam's URL, not the caller's: what it stored is shown to the caller as the caller's own.
  const taskId = /"id":"([^"]+)"/.exec(r.text)![1];
  const list = await rpc('caller', 'ListTaskPushNotificationConfigs', { taskId });
  assert.equal(list.status, 200, list.text);
  const cfgs = (list.body.result as { configs: Array<{ url: string; token?: string }> }).configs;
  assert.equal(cfgs.length, 1);
  assert.equal(cfgs[0].url, hookUrl);
  assert.equal(cfgs[0].token, 'caller-hook-token');
  assert.ok(!list.text.includes('/push/psh_'), 'aam\'s route is not shown');
  // Another caller cannot read them.
  assert.equal((await rpc('other', 'ListTaskPushNotificationConfigs', { taskId })).body.error?.message, `task "${taskId}" not found`);
});

test('a push notification that reports a task terminal ends the delegation its send left live (nobody polls it)', async () => {
  const r = await rpc('caller', 'SendMessage', { message: message('work:push'), configuration: { returnImmediately: true, taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } } });
  assert.equal(r.status, 200, r.text);
  const id = (r.body.result!.task as { id: string }).id;
  const work = agents.working.get(id)!;
  // worker's own A2A call with the delegation: past its check (then a cycle: 403), or refused by it (401).
  const use = async () => (await fetch(`${gw.url}/a2a/worker`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.worker}`, 'x-aam-delegation': work.delegation },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'SendMessage', params: { message: message('x') } }),
  })).text();
  assert.match(await use(), /would loop/, 'the task works on: honoured');
  const n = hooked.length;
  work.complete();
  await until('the completed notification', () => hooked.slice(n).some((h) => /COMPLETED|"state":\s*3/.test(h.body)));
  assert.match(await use(), /was issued for an A2A call that has ended/);
});

test('a push notification delivered while the audit trail cannot record it is refused 503 to the callee, and the trail says so beside its a2a_call', async () => {
  const r = await rpc('caller', 'SendMessage', { message: message('work:push'), configuration: { returnImmediately: true, taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } } });
  assert.equal(r.status, 200, r.text);
  const work = agents.working.get((r.body.result!.task as { id: string }).id)!;
  const scrape = async () => sumOf(parseProm(await (await fetch(`${gw.url}/metrics`)).text()), 'aam_a2a_push_notifications_total', { agent: 'caller', callee: 'worker', outcome: 'error' });
  const errors = await scrape();
  const n = hooked.length;
  const audit = gw.g.rt.audit as { journaledNow?: (now?: boolean) => Promise<void> | undefined };
  const real = audit.journaledNow;
  assert.ok(real, 'the embedded audit log has a journal wait');
  audit.journaledNow = () => Promise.reject(new Error('the disk is gone'));
  try {
    work.complete();
    // Delivered to the caller's webhook, then refused to the callee once its evidence fails (counted error).
    await until('the refused acknowledgement', () => hooked.length > n);
    for (let i = 0; i < 1500 && await scrape() === errors; i++) await new Promise((res) => setTimeout(res, 20));
  } finally { audit.journaledNow = real; }
  assert.ok(await scrape() > errors, 'the acknowledgement refused: counted error');
  const requestId = String(hooked[n].headers['x-aam-request-id']);
  const trail = await auditOf(gw, requestId);
  // The delivery (200 at the webhook), what the callee got (evidence_refused), the decision with the request's outcome.
  assert.deepEqual(trail.map((e) => [e.type, e.outcome?.status]), [['a2a_call', 200], ['evidence_refused', 503], ['decision', 503]], JSON.stringify(trail).slice(0, 600));
  assert.deepEqual([trail[1].amends, trail[1].answered, trail[1].identity?.agent], ['a2a_call', 'refused', 'caller']);
});

test('SSRF: private, loopback, link-local and non-http push URLs are refused before the callee sees them; an unknown push route is 401', async () => {
  const first = await rpc('caller', 'SendMessage', { message: message('hello') });
  assert.equal(first.status, 200);
  for (const url of ['http://10.0.0.7/hook', 'http://169.254.169.254/latest/meta-data', 'http://127.0.0.1:1/hook', 'http://[::1]/hook', 'file:///etc/passwd', 'http://user:pw@example.com/']) {
    const r = await rpc('caller', 'SendStreamingMessage', { message: message('stream'), configuration: { taskPushNotificationConfig: { url } } });
    assert.equal(r.status, 400, `${url}: ${r.text}`);
    assert.equal(r.body.error?.data?.code, 'push_url_refused', url);
  }
  assert.match(String(await pushUrlRefusal('http://192.168.1.2/x', [])), /private, loopback or link-local address \(192\.168\.1\.2\).*AAM_A2A_PUSH_ALLOW/);
  assert.equal(await pushUrlRefusal('http://192.168.1.2/x', ['192.168.1.2']), null, 'an operator may allow a host');
  assert.equal(await pushUrlRefusal('https://93.184.216.34/hook', []), null);
  // Private IPv4 inside IPv6 addresses that reach it (NAT64, 6to4, IPv4-compatible); a NAT64 address of a public host stays allowed.
  for (const url of ['http://[64:ff9b::a9fe:a9fe]/latest', 'http://[64:ff9b::10.1.2.3]/x', 'http://[2002:7f00:1::]/x', 'http://[2002:c0a8:102::1]/x', 'http://[::a00:7]/x']) {
    assert.match(String(await pushUrlRefusal(url, [])), /private, loopback or link-local/, url);
  }
  assert.equal(await pushUrlRefusal('http://[64:ff9b::5db8:d822]/hook', []), null);
  const forged = await fetch(`${gw.url}/a2a/worker/push/psh_0123`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': 'x' }, body: '{"task":{"id":"t"}}' });
  assert.equal(forged.status, 401);
});

test('DNS rebinding: a delivery connects to the address the SSRF check saw, not to what the name resolves to later', async () => {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => { seen.push(String(req.headers.host)); res.end('ok'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  try {
    // The name never resolves (.invalid): only a connection pinned to the checked address can reach the server.
    const dispatcher = pinnedDispatcher({ address: '127.0.0.1', family: 4 });
    const r = await request(`http://rebind.invalid:${port}/hook`, { method: 'POST', body: '{}', dispatcher });
    assert.equal(await r.body.text(), 'ok');
    assert.deepEqual(seen, [`rebind.invalid:${port}`], 'the Host header keeps the name; the connection went to the pinned address');
    await dispatcher.close();
    await assert.rejects(request(`http://rebind.invalid:${port}/hook`, { method: 'POST', body: '{}' }), 'without the pin the name does not resolve');
    // The check hands out the address it checked; a listed host is not pinned; a refused one says why.
    assert.deepEqual(await pushDestination('https://93.184.216.34/hook', []), { pin: { address: '93.184.216.34', family: 4 } });
    assert.deepEqual(await pushDestination(`http://127.0.0.1:${port}/hook`, [`127.0.0.1:${port}`]), { pin: null });
    assert.match(((await pushDestination('http://10.1.2.3/hook', [])) as { refused: string }).refused, /private, loopback or link-local address \(10\.1\.2\.3\)/);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

/**
 * The webhook's notifications for one task, in order, and the artifact a1 as the caller joins it
 * (A2A: an `append` chunk's parts are added to the artifact with the same id), with what came after it.
 */
function joinedPush(taskId: string): { text: string; kinds: string[] } {
  let parts: string[] = [];
  const kinds: string[] = [];
  for (const h of hooked) {
    const n = JSON.parse(h.body) as { artifactUpdate?: { taskId: string; append?: boolean; lastChunk?: boolean; artifact: { artifactId: string; parts: Array<{ text?: string }> } }; statusUpdate?: { taskId: string; status: { state: unknown } }; task?: { id: string } };
    const about = n.artifactUpdate?.taskId ?? n.statusUpdate?.taskId ?? n.task?.id;
    if (about !== taskId) continue;
    if (n.artifactUpdate) {
      kinds.push(n.artifactUpdate.lastChunk ? 'artifact-last' : 'artifact');
      const texts = n.artifactUpdate.artifact.parts.map((p) => p.text ?? '');
      parts = n.artifactUpdate.append ? [...parts, ...texts] : texts;
    } else kinds.push(n.statusUpdate ? `status:${String(n.statusUpdate.status.state)}` : 'task');
  }
  return { text: parts.join(''), kinds };
}

for (const last of [true, false]) {
  test(`a secret split across two push notifications the caller appends is redacted in the joined artifact (${last ? 'the second is lastChunk' : 'no lastChunk: the held text goes out before the final status'}); nothing lost or repeated`, async () => {
    hooked.length = 0;
    const r = await rpc('caller', 'SendStreamingMessage', { message: message(`stream split${last ? ' last' : ''}`), configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } } });
    assert.equal(r.status, 200, r.text);
    const taskId = /"id":"([^"]+)"/.exec(r.text)![1];
    await until('the final status at the webhook', () => joinedPush(taskId).kinds.some((k) => /^status:(3|TASK_STATE_COMPLETED)$/.test(k)));
    const got = joinedPush(taskId);
    assert.ok(!got.text.includes(SECRET), got.text);
    for (const h of hooked) assert.ok(!h.body.includes(SECRET.slice(0, Math.floor(SECRET.length / 2))), `no notification carries the secret's first half: ${h.body}`);
    assert.equal(got.text, `alpha key [REDACTED:worker-token] end ${SECRET.slice(0, 4)}`, JSON.stringify(got));
    // The caller's artifact is complete before the final status, which comes last.
    assert.match(got.kinds.at(-1)!, /^status:(3|TASK_STATE_COMPLETED)$/, got.kinds.join(','));
    if (!last) assert.equal(got.kinds.filter((k) => k === 'artifact-last').length, 1, `the held text as an appended last chunk of its own: ${got.kinds.join(',')}`);
  });
}

test('push artifact text is bounded: past the route bound (least recently notified first) or its time, what a route held is released on its own with its reason, nothing lost', async () => {
  const released: Array<{ route: string; text: string; lastChunk: unknown; reason: string }> = [];
  const store = memoryPushHeld();
  const p = new PushArtifactText<string>(gw.g.rt.egress, store, (route, rs, reason) => {
    for (const { result } of rs) {
      const au = result.artifactUpdate as { lastChunk?: unknown; artifact: { parts: Array<{ text: string }> } };
      released.push({ route, text: au.artifact.parts.map((x) => x.text).join(''), lastChunk: au.lastChunk, reason });
    }
  }, { max: 2, ttlMs: 150 });
  const au = (task: string, text: string) => ({ artifactUpdate: { taskId: task, contextId: 'c', artifact: { artifactId: 'a1', parts: [{ text }] }, append: true } });
  const start = SECRET.slice(0, 10);
  const first = await p.pass('r1', 'r1', au('t1', `x ${start}`)) as Array<{ artifactUpdate: { artifact: { parts: Array<{ text: string }> } } }>;
  assert.equal(first.length, 1);
  assert.equal(first[0].artifactUpdate.artifact.parts[0].text, 'x ', 'what could begin the secret is held back');
  assert.equal(p.size, 1);
  assert.ok(store.get('r1'), 'the route\'s state is in the store');
  await p.pass('r2', 'r2', au('t2', `y ${start}`));
  await p.pass('r3', 'r3', au('t3', `z ${start}`));
  await until('the first route let go', () => released.length === 1, 5000);
  assert.deepEqual(released, [{ route: 'r1', text: start, lastChunk: true, reason: 'cap' }], 'the third route holding text: the first lets go');
  assert.equal(p.size, 2);
  // What r1 let go of stays as its last characters: a chunk appended later has the rest of the secret cut.
  const late = await p.pass('r1', 'r1', au('t1', `${SECRET.slice(10)} more`)) as Array<{ artifactUpdate: { artifact: { parts: Array<{ text: string }> } } }>;
  assert.equal(late.length, 1);
  assert.ok(!late[0].artifactUpdate.artifact.parts[0].text.includes(SECRET.slice(10)), late[0].artifactUpdate.artifact.parts[0].text);
  assert.match(late[0].artifactUpdate.artifact.parts[0].text, /more$/);
  await until('the others\' time to pass', () => released.length === 3, 5000);
  // r1 holds again (its artifact's run is open): r2, now the least recently notified, lets go; r3 at its time.
  assert.deepEqual(released.slice(1).map((r) => `${r.route}:${r.reason}`).sort(), ['r2:cap', 'r3:expired']);
  await until('r1\'s time to pass (nothing more to post)', () => p.size === 0, 5000);
  assert.equal(released.length, 3);
  // A notification with no artifact, on a route holding nothing: passed as it is, nothing kept.
  const status = { statusUpdate: { taskId: 't4', status: { state: 'TASK_STATE_WORKING' } } };
  assert.deepEqual(await p.pass('r4', 'r4', status), [status]);
  assert.equal(p.size, 0);
  // State written by another process since (its later notification): this one's timer lets go of nothing.
  await p.pass('r5', 'r5', au('t5', `w ${start}`));
  const cur = await store.get('r5');
  const other = new PushArtifactText<string>(gw.g.rt.egress, store, () => { assert.fail('not this one\'s to release'); }, { ttlMs: 60_000 });
  const next = await other.pass('r5', 'r5', au('t5', `${SECRET.slice(10)} done`)) as Array<{ artifactUpdate: { artifact: { parts: Array<{ text: string }> } } }>;
  assert.equal(next[0].artifactUpdate.artifact.parts[0].text, '[REDACTED:worker-token] done', 'joined with what the first process held');
  assert.notEqual(cur, undefined);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(released.length, 3, 'r5\'s first holder let go of nothing: the state was no longer the one it wrote');
});

test('push notifications are on /metrics by the caller they are for, callee and outcome; an unverified route\'s names are never labels', async () => {
  const scrape = async () => parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  const before = await scrape();
  const count = (s: Sample[], labels: Record<string, string>) => sumOf(s, 'aam_a2a_push_notifications_total', labels);
  const r = await rpc('caller', 'SendStreamingMessage', { message: message('stream the secret'), configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } } });
  assert.equal(r.status, 200, r.text);
  let after = await scrape();
  for (let i = 0; i < 150 && count(after, { agent: 'caller', callee: 'worker', outcome: 'delivered' }) <= count(before, { agent: 'caller', callee: 'worker', outcome: 'delivered' }); i++) {
    await new Promise((res) => setTimeout(res, 20));
    after = await scrape();
  }
  assert.ok(count(after, { agent: 'caller', callee: 'worker', outcome: 'delivered' }) > count(before, { agent: 'caller', callee: 'worker', outcome: 'delivered' }), 'delivered, by caller and callee');
  const forged = await fetch(`${gw.url}/a2a/made-up-${Math.random()}/push/psh_0123`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': 'x' }, body: '{"task":{"id":"t"}}' });
  assert.equal(forged.status, 401);
  const last = await scrape();
  assert.equal(count(last, { agent: 'unknown', callee: 'unknown', outcome: 'refused' }) - count(before, { agent: 'unknown', callee: 'unknown', outcome: 'refused' }), 1, 'an unknown route: refused, its URL\'s name not a label');
  assert.ok(!last.some((s) => s.name === 'aam_a2a_push_notifications_total' && s.labels.callee.startsWith('made-up-')));
});
