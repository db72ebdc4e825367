// Fleet mode, A2A push notifications: two replicas on one real PostgreSQL + Redis. A caller
// registers a push config through replica A; the callee's notifications arrive at replica B (the
// URL aam gave it is B's, as a load balancer may route it) and still reach the caller's webhook,
// because the push route is in Redis. A forged route id is refused on both replicas.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';

const SECRET = 'fleet-push-cred-5d1e7a9c03bb42f6';
let store: FleetTestStore;
let agents: TestAgents;
let dir: string;
let hook: Server;
let hookUrl = '';
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
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-a2a-push-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Credential', 'worker-token', { env: 'A2A_FLEET_PUSH_TOKEN' }),
    doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${agents.base}/worker`, credential: 'worker-token' } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'worker' }] }),
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
