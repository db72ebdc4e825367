// Fleet mode, MCP notifications across replicas (real PostgreSQL + Redis, two replicas): a
// 2025-11-25 session's notification stream (GET) is held by replica A while its resources/subscribe
// lands on replica B, so the upstream's update reaches B; B hands it to A over the fleet's pub/sub,
// keyed by session, and A sends it on the client's stream. Negative: another session on A that did
// not subscribe hears nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fleetStore, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

let store: FleetTestStore;
let upstream: RunningFixture;
let dir: string;
let fleet: Replicas;

before(async () => {
  store = await fleetStore();
  upstream = await startHttpFixture();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-mcp-notify-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('McpServer', 'crm', { transport: 'streamable-http', url: upstream.url, timeout_ms: 60_000 }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/a' }, tools: [{ resource: 'crm', actions: ['*'] }] }),
  ));
  fleet = await startReplicas({ store, configPath, dir, agents: ['a'] });
});

after(async () => {
  await fleet?.close();
  await upstream?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };

/** One JSON-RPC request of a session (or initialize without one) on one replica. */
async function rpc(url: string, method: string, params: Record<string, unknown>, session?: string): Promise<{ status: number; session: string | null; text: string }> {
  const r = await fetch(`${url}/mcp/crm`, {
    method: 'POST', headers: { ...HEADERS, authorization: `Bearer ${fleet.keys.a}`, ...(session ? { 'mcp-session-id': session } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id: Math.floor(Math.random() * 1e9), method, params }),
  });
  return { status: r.status, session: r.headers.get('mcp-session-id'), text: await r.text() };
}

/** A session opened on `url`, with its notification stream (GET) held there: the messages it receives. */
async function sessionWithStream(url: string): Promise<{ id: string; messages: Array<Record<string, any>>; close(): void }> {
  const init = await rpc(url, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } });
  assert.equal(init.status, 200, init.text);
  const id = init.session!;
  const ac = new AbortController();
  const r = await fetch(`${url}/mcp/crm`, { signal: ac.signal, headers: { ...HEADERS, accept: 'text/event-stream', authorization: `Bearer ${fleet.keys.a}`, 'mcp-session-id': id } });
  assert.equal(r.status, 200);
  const messages: Array<Record<string, any>> = [];
  void (async () => {
    let buf = '';
    try {
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString('utf8');
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const data = buf.slice(0, end).split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
          buf = buf.slice(end + 2);
          if (data) messages.push(JSON.parse(data) as Record<string, any>);
        }
      }
    } catch { /* aborted */ }
  })();
  return { id, messages, close: () => ac.abort() };
}

test('a session\'s resource update reaches its stream on replica A when its resources/subscribe landed on replica B; a session that did not subscribe hears nothing', async () => {
  const [a, b] = fleet.urls;
  const subscriber = await sessionWithStream(a);
  const bystander = await sessionWithStream(a);
  try {
    // The subscription is made on B (B's upstream connection subscribes), and the upstream changes through B.
    const sub = await rpc(b, 'resources/subscribe', { uri: 'account://a1' }, subscriber.id);
    assert.equal(sub.status, 200, sub.text);
    assert.doesNotMatch(sub.text, /"error"/, sub.text);
    const m = await rpc(b, 'tools/call', { name: 'mutate', arguments: { variant: 'fleet-v2' } }, subscriber.id);
    assert.equal(m.status, 200, m.text);
    assert.doesNotMatch(m.text, /"isError":true|"error"/, m.text);
    const updated = () => subscriber.messages.filter((x) => x.method === 'notifications/resources/updated');
    await until(async () => updated().length > 0, 20_000, 'the update on the stream held by replica A');
    assert.deepEqual(updated()[0].params, { uri: 'account://a1' });
    assert.ok(!bystander.messages.some((x) => x.method === 'notifications/resources/updated'), 'nothing for a session that did not subscribe');
  } finally { subscriber.close(); bystander.close(); }
});
