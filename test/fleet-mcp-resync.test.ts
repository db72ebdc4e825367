// Fleet mode, MCP notes lost on the fleet's pub/sub (real PostgreSQL, a Redis of this file's own,
// two replicas): replica B holds two sessions' resource subscriptions; while B's pub/sub connection
// is cut off (killed, and Redis refuses it back: maxclients), one session unsubscribes and the other
// ends (DELETE) through replica A. Nobody hears A's notes. Once B's pub/sub is back it re-reads the
// registry and drops both subscriptions, upstream too; a third session's subscription stands.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { fleetStore, privateRedis, startReplicas, type FleetTestStore, type PrivateRedis, type Replicas } from './helpers/fleet.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

let redis: PrivateRedis;
let store: FleetTestStore;
let upstream: RunningFixture;
let dir: string;
let fleet: Replicas;
let admin: Redis;

before(async () => {
  redis = await privateRedis();
  store = await fleetStore(redis.url);
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-mcp-resync-'));
  upstream = await startHttpFixture({ SUBS_FILE: join(dir, 'subs.jsonl') });
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('McpServer', 'crm', { transport: 'streamable-http', url: upstream.url, timeout_ms: 60_000 }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/a' }, tools: [{ resource: 'crm', actions: ['*'] }] }),
  ));
  fleet = await startReplicas({ store, configPath, dir, agents: ['a'] });
  admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
});

after(async () => {
  await admin?.config('SET', 'maxclients', '10000').catch(() => {});
  admin?.disconnect();
  await fleet?.close();
  await upstream?.close();
  await store?.drop();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };

async function rpc(url: string, method: string, params: Record<string, unknown>, session?: string): Promise<{ status: number; session: string | null; text: string }> {
  const r = await fetch(`${url}/mcp/crm`, {
    method: 'POST', headers: { ...HEADERS, authorization: `Bearer ${fleet.keys.a}`, ...(session ? { 'mcp-session-id': session } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params }),
  });
  return { status: r.status, session: r.headers.get('mcp-session-id'), text: await r.text() };
}
const okRpc = (r: { status: number; text: string }) => { assert.equal(r.status, 200, r.text); assert.doesNotMatch(r.text, /"isError":true|"error"/, r.text); };

async function session(url: string): Promise<string> {
  const init = await rpc(url, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
  assert.equal(init.status, 200, init.text);
  return init.session!;
}

/** The upstream's resources/subscribe and unsubscribe requests so far (from every replica's connection). */
const subs = (): Array<{ subscribe?: string; unsubscribe?: string }> => {
  const f = join(dir, 'subs.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { subscribe?: string; unsubscribe?: string }) : [];
};
const unsubscribed = (uri: string) => subs().some((x) => x.unsubscribe === uri);

test('an unsubscribe and a DELETE through replica A while replica B\'s pub/sub is cut off reach B once it is back: B drops both subscriptions upstream, a third stands', async () => {
  const [a, b] = fleet.urls;
  const [leaving, ending, staying] = [await session(a), await session(a), await session(a)];
  okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a1' }, leaving));
  okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a2' }, ending));
  okRpc(await rpc(b, 'resources/subscribe', { uri: 'account://a3' }, staying));
  for (const uri of ['account://a1', 'account://a2', 'account://a3']) assert.ok(subs().some((x) => x.subscribe === uri), `B subscribed ${uri} upstream`);

  // Cut every pub/sub connection off (A's too: A hears nothing of its own notes anyway) and keep them
  // out: Redis refuses new connections beyond the ones left; the replicas' command connections stay.
  const clients = String(await admin.client('LIST')).trim().split('\n');
  const pubsub = clients.filter((l) => / name=aam-sub /.test(l)).length;
  assert.equal(pubsub, 2, 'one pub/sub connection per replica');
  await admin.config('SET', 'maxclients', String(clients.length - pubsub));
  try {
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    okRpc(await rpc(a, 'resources/unsubscribe', { uri: 'account://a1' }, leaving));
    const del = await fetch(`${a}/mcp/crm`, { method: 'DELETE', headers: { ...HEADERS, authorization: `Bearer ${fleet.keys.a}`, 'mcp-session-id': ending } });
    assert.equal(del.status, 200, await del.text());
    assert.ok(!unsubscribed('account://a1') && !unsubscribed('account://a2'), 'B cannot have heard the notes yet');
  } finally {
    await admin.config('SET', 'maxclients', '10000');
  }
  await until(async () => unsubscribed('account://a1') && unsubscribed('account://a2'), 20_000, 'B to drop both subscriptions upstream once its pub/sub is back');
  assert.ok(!unsubscribed('account://a3'), 'the subscription nobody undid stands');
  okRpc(await rpc(a, 'resources/unsubscribe', { uri: 'account://a3' }, staying));
  await until(async () => unsubscribed('account://a3'), 20_000, 'B to drop the third once it is undone');
});
