// Fleet mode, A2A push notifications: two replicas on one real PostgreSQL + Redis. A caller
// registers a push config through replica A; the callee's notifications arrive at replica B (the
// URL aam gave it is B's, as a load balancer may route it) and still reach the caller's webhook,
// because the push route is in Redis. A forged route id is refused on both replicas. A replica
// whose PostgreSQL goes silent answers a notification 503: delivered, but not acknowledged to the
// callee without its evidence. An artifact whose chunks come in notifications the load balancer
// sends to different replicas is joined as one text (the held tail is in Redis, sealed): a secret
// split across a notification to A and one to B never reaches the caller's webhook in clear.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { Redis } from 'ioredis';
import { fleetStore, pgProxy, type FleetTestStore } from './helpers/fleet.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { localServer, until } from './helpers/e2e.ts';
import { startServeChild } from './helpers/serve-child.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';

const SECRET = 'fleet-push-cred-5d1e7a9c03bb42f6';
let store: FleetTestStore;
let agents: TestAgents;
let dir: string;
let hook: Server;
let hookUrl = '';
/** A plain HTTP callee that keeps the push config aam gave it (the test notifies as it wants). */
let relay: Awaited<ReturnType<typeof localServer>>;
const relayGiven: Array<{ url: string; token: string }> = [];
const hooked: Array<{ headers: Record<string, unknown>; body: string }> = [];
const replicas: Running[] = [];
const urls: string[] = [];
const keys: Record<string, string> = {};

before(async () => {
  store = await fleetStore();
  hook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => { hooked.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }); res.writeHead(200).end(); });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  agents = await startTestAgents([{ name: 'worker', skills: ['work'], aamUrl: () => urls[0], key: () => keys.worker, secret: SECRET, push: true }]);
  relay = await localServer((_req, res, body) => {
    const rpc = JSON.parse(body) as { id: number; params: { configuration?: { taskPushNotificationConfig?: { url: string; token: string } } } };
    const cfg = rpc.params.configuration?.taskPushNotificationConfig;
    if (cfg) relayGiven.push({ url: cfg.url, token: cfg.token });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { task: { id: 'task-split', contextId: 'ctx-split', status: { state: 'TASK_STATE_WORKING' } } } }));
  });
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-a2a-push-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Credential', 'worker-token', { env: 'A2A_FLEET_PUSH_TOKEN' }),
    doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${agents.base}/worker`, credential: 'worker-token' } }),
    doc('Agent', 'splitter', { workload: 'spiffe://test/agent/splitter', a2a: { url: `${relay.url}/a2a` } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'worker' }, { agent: 'splitter' }] }),
  ));
  const env = { ...process.env, ...store.env, A2A_FLEET_PUSH_TOKEN: SECRET, AAM_A2A_PUSH_ALLOW: new URL(hookUrl).host, AAM_LOG_LEVEL: 'error' };
  // B first: A's public URL (what the callee is told to notify) is B's, so every notification lands on B.
  const b = await startGateway({ configPath, dataDir: join(dir, 'data-b'), port: 0, host: '127.0.0.1', env });
  const bUrl = `http://127.0.0.1:${b.port}`;
  const a = await startGateway({ configPath, dataDir: join(dir, 'data-a'), port: 0, host: '127.0.0.1', env: { ...env, AAM_PUBLIC_URL: bUrl } });
  replicas.push(a, b);
  urls.push(`http://127.0.0.1:${a.port}`, bUrl);
  for (const name of ['caller', 'worker']) keys[name] = (await a.rt.keyBook.create(name)).secret;
  await until(async () => (await fetch(`${bUrl}/v1/models`, { headers: { authorization: `Bearer ${keys.caller}` } })).status !== 401, 10_000, 'keys on replica B');
});

after(async () => {
  for (const r of replicas) await r.close();
  await agents?.close();
  await relay?.close();
  hook?.closeAllConnections();
  await new Promise((r) => hook?.close(r));
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a push config registered through replica A delivers when the callee\'s notification arrives at replica B', async () => {
  const r = await fetch(`${urls[0]}/a2a/worker`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.caller}`, accept: 'text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: {
      message: { messageId: 'fp-1', role: 'ROLE_USER', parts: [{ text: 'stream the secret' }] },
      configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } },
    } }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  await until(() => hooked.some((h) => h.body.includes('TASK_STATE_COMPLETED') || /"state":\s*"?(3|TASK_STATE_COMPLETED)/.test(h.body)), 30_000, 'notifications at the caller\'s webhook');
  for (const h of hooked) {
    assert.equal(h.headers['x-a2a-notification-token'], 'caller-hook-token', 'the caller\'s own token');
    assert.ok(!h.body.includes(SECRET), 'scrubbed');
  }
  // A route id that was never registered is refused by both replicas.
  for (const url of urls) {
    const forged = await fetch(`${url}/a2a/worker/push/psh_${'0'.repeat(32)}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': 'x' }, body: '{"task":{"id":"t"}}' });
    assert.equal(forged.status, 401);
  }
});

test('a secret split across two push notifications of one artifact, the first reaching replica A and the second replica B, never reaches the caller\'s webhook in clear: the held tail is in Redis, sealed', async () => {
  const reg = await fetch(`${urls[0]}/a2a/splitter`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.caller}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
      message: { messageId: 'split-1', role: 'ROLE_USER', parts: [{ text: 'work' }] },
      configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } },
    } }),
  });
  assert.equal(reg.status, 200, await reg.text());
  const route = relayGiven.at(-1)!;
  const path = new URL(route.url).pathname;
  assert.match(path, /^\/a2a\/splitter\/push\/psh_/);
  const cut = 13;
  const notify = async (replica: number, body: unknown) => {
    const r = await fetch(`${urls[replica]}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': route.token }, body: JSON.stringify(body) });
    assert.equal(r.status, 200, await r.text());
  };
  const from = hooked.length;
  // The load balancer sends the first chunk to A, the second (the artifact's last) to B.
  await notify(0, { artifactUpdate: { taskId: 'task-split', contextId: 'ctx-split', artifact: { artifactId: 'a1', parts: [{ text: `alpha key ${SECRET.slice(0, cut)}` }] } } });
  // In Redis between the two, the held text is sealed: not there in clear, nor its start.
  const redis = new Redis(store.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let held: string[], value: string | null = null, ttl = 0;
  try {
    await redis.connect();
    held = await redis.keys(`*a2a:held:${path.slice(path.lastIndexOf('/') + 1)}`);
    if (held.length) [value, ttl] = [await redis.get(held[0]), await redis.pttl(held[0])];
  } finally { redis.disconnect(); }
  await notify(1, { artifactUpdate: { taskId: 'task-split', contextId: 'ctx-split', artifact: { artifactId: 'a1', parts: [{ text: `${SECRET.slice(cut)} end` }] }, append: true, lastChunk: true } });
  await notify(0, { statusUpdate: { taskId: 'task-split', contextId: 'ctx-split', status: { state: 'TASK_STATE_COMPLETED' } } });
  const got = hooked.slice(from).map((h) => JSON.parse(h.body) as { artifactUpdate?: { append?: boolean; artifact: { parts: Array<{ text: string }> } } });
  let joined: string[] = [];
  for (const n of got) if (n.artifactUpdate) joined = n.artifactUpdate.append ? [...joined, ...n.artifactUpdate.artifact.parts.map((p) => p.text)] : n.artifactUpdate.artifact.parts.map((p) => p.text);
  assert.equal(joined.join(''), 'alpha key [REDACTED:worker-token] end', JSON.stringify(got));
  for (const h of hooked.slice(from)) assert.ok(!h.body.includes(SECRET.slice(0, cut)), `no notification carries the secret's first part: ${h.body}`);
  assert.equal(got.length, 3);
  assert.equal(held.length, 1, JSON.stringify(held));
  assert.ok(value && !value.includes(SECRET.slice(0, cut)) && !value.includes(Buffer.from(SECRET.slice(0, cut)).toString('base64')), value ?? '');
  assert.ok(ttl > 10 * 60_000, 'kept past the 10 min bound (a minute more): the holder lets go of it first');
});

test('a push notification through a replica whose PostgreSQL is silent is answered 503 (delivered, not acknowledged without its evidence); every notification it answered 200 is committed, and the refused ones are once PostgreSQL answers', async (t) => {
  let hold = false;
  const held: Array<() => void> = [];
  const proxy = await pgProxy(store.databaseUrl, (send) => { if (hold) held.push(send); else send(); });
  // A plain HTTP callee that keeps the push config aam gave it, so the test notifies exactly when it wants.
  const given: Array<{ url: string; token: string }> = [];
  const callee = await localServer((_req, res, body) => {
    const rpc = JSON.parse(body) as { id: number; params: { configuration?: { taskPushNotificationConfig?: { url: string; token: string } } } };
    const cfg = rpc.params.configuration?.taskPushNotificationConfig;
    if (cfg) given.push({ url: cfg.url, token: cfg.token });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { task: { id: 'task-silent', contextId: 'ctx-silent', status: { state: 'TASK_STATE_WORKING' } } } }));
  });
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const cfg = join(dir, 'silent.yaml');
  writeFileSync(cfg, yaml(
    doc('Agent', 'relay', { workload: 'spiffe://test/agent/relay', a2a: { url: `${callee.url}/a2a` } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'relay' }] }),
  ));
  const data = join(dir, 'data-pg-silent');
  mkdirSync(data);
  const r = await startServeChild({ config: cfg, data, env: { ...store.env, AAM_DATABASE_URL: proxy.url, AAM_A2A_PUSH_ALLOW: new URL(hookUrl).host } });
  const committed = async (ids: readonly string[]) => (await sql<Array<{ request_id: string }>>`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${ids as string[]})`).length;
  const notify = async (route: { url: string; token: string }, state: string) => {
    const t0 = performance.now();
    const res = await fetch(route.url, {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': route.token },
      body: JSON.stringify({ task: { id: 'task-silent', contextId: 'ctx-silent', status: { state } } }),
    });
    return { status: res.status, text: await res.text(), requestId: res.headers.get('x-request-id') ?? '', ms: Math.round(performance.now() - t0) };
  };
  try {
    await until(async () => (await fetch(`${r.url}/v1/models`, { headers: { authorization: `Bearer ${keys.caller}` } })).status !== 401, 10_000, 'the caller\'s key on the new replica');
    const reg = await fetch(`${r.url}/a2a/relay`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.caller}`, 'a2a-version': '1.0' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
        message: { messageId: 'silent-1', role: 'ROLE_USER', parts: [{ text: 'work' }] },
        configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } },
      } }),
    });
    assert.equal(reg.status, 200, await reg.text());
    const route = given.at(-1)!;
    assert.ok(route.url.startsWith(`${r.url}/a2a/relay/push/psh_`), route.url);
    // PostgreSQL answering: acknowledged (200) once its evidence is committed.
    const acked: string[] = [];
    const ok = await notify(route, 'TASK_STATE_WORKING');
    assert.equal(ok.status, 200, ok.text);
    acked.push(ok.requestId);
    assert.equal(await committed(acked), 1, 'a 200 only with its evidence in PostgreSQL');
    hold = true;
    const refused: string[] = [];
    for (const state of ['TASK_STATE_WORKING', 'TASK_STATE_COMPLETED']) {
      const before = hooked.length;
      const n = await notify(route, state);
      assert.equal(n.status, 503, `not acknowledged while its evidence cannot be committed: ${n.status} ${n.text}`);
      assert.match(n.text, /audit trail could not record/);
      assert.ok(n.ms <= 3500, `refused at the commit timeout (2 s), not later: ${n.ms} ms`);
      assert.equal(hooked.length, before + 1, 'delivered to the caller (503: delivered, not recorded yet)');
      assert.ok(n.requestId.startsWith('req_'), n.requestId);
      refused.push(n.requestId);
    }
    hold = false;
    for (const f of held.splice(0)) f();
    const back = performance.now();
    await until(async () => {
      const n = await notify(route, 'TASK_STATE_COMPLETED');
      if (n.status === 200) acked.push(n.requestId);
      return n.status === 200;
    }, 20_000, 'notifications acknowledged again once PostgreSQL answers');
    t.diagnostic(`acknowledged again ${Math.round(performance.now() - back)} ms after PostgreSQL answered`);
    assert.equal(await committed(acked), acked.length, 'every notification answered 200 has its evidence in PostgreSQL');
    await until(async () => await committed(refused) === refused.length, 10_000, 'the refused notifications\' evidence, committed once PostgreSQL answers');
  } finally {
    hold = false;
    for (const f of held.splice(0)) f();
    await r.stop();
    proxy.close();
    await sql.end();
    await callee.close();
  }
});

test('replica A shuts down holding the start of a secret: it posts it and records an a2a_push_held event (fleet trail, under the registering request); the rest, through replica B, is cut: the caller never joins the secret', async () => {
  const reg = await fetch(`${urls[0]}/a2a/splitter`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.caller}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {
      message: { messageId: 'split-2', role: 'ROLE_USER', parts: [{ text: 'work' }] },
      configuration: { taskPushNotificationConfig: { url: hookUrl, token: 'caller-hook-token' } },
    } }),
  });
  assert.equal(reg.status, 200, await reg.text());
  const registering = reg.headers.get('x-request-id')!;
  const route = relayGiven.at(-1)!;
  const path = new URL(route.url).pathname;
  const notify = async (replica: number, body: unknown) => {
    const r = await fetch(`${urls[replica]}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': route.token }, body: JSON.stringify(body) });
    assert.equal(r.status, 200, await r.text());
  };
  const from = hooked.length;
  await notify(0, { artifactUpdate: { taskId: 'task-split', contextId: 'ctx-split', artifact: { artifactId: 'a2', parts: [{ text: `beta key ${SECRET.slice(0, 13)}` }] } } });
  await replicas[0].close();
  assert.equal(hooked.length, from + 2, 'A\'s close() posted the held text before it resolved');
  await notify(1, { artifactUpdate: { taskId: 'task-split', contextId: 'ctx-split', artifact: { artifactId: 'a2', parts: [{ text: `${SECRET.slice(13)} end` }] }, append: true, lastChunk: true } });
  let joined = '';
  for (const h of hooked.slice(from)) {
    const n = JSON.parse(h.body) as { artifactUpdate?: { artifact: { artifactId: string; parts: Array<{ text: string }> } } };
    if (n.artifactUpdate?.artifact.artifactId === 'a2') joined += n.artifactUpdate.artifact.parts.map((p) => p.text).join('');
  }
  assert.ok(!joined.includes(SECRET), joined);
  assert.match(joined, /^beta key .* end$/);
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE request_id = ${registering} AND type = 'a2a_push_held'`;
    assert.equal(rows.length, 1);
    const e = JSON.parse(rows[0].body) as { a2a: { task_id: string; artifact_id: string; route: string }; detail: { reason: string; bytes: number }; outcome: { status: number } };
    assert.equal(e.a2a.task_id, 'task-split');
    assert.equal(e.a2a.artifact_id, 'a2');
    assert.ok(path.endsWith(e.a2a.route));
    assert.deepEqual([e.detail.reason, e.detail.bytes, e.outcome.status], ['shutdown', 13, 200]);
    assert.ok(!rows[0].body.includes(SECRET.slice(0, 13)), 'never the text');
  } finally { await sql.end(); }
});
