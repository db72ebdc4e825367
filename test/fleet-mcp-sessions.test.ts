// Fleet mode, MCP sessions: two replicas on one real PostgreSQL + Redis. A real MCP SDK client
// whose requests a round-robin proxy alternates between the replicas keeps one session (opened on
// one, continued on the other, on /mcp and /mcp/<server>); 2026-07-28 requests (no session) land
// anywhere. Negative: another identity is refused on every replica, a revoked key's session dies
// on every replica (its open stream too), DELETE ends it everywhere, and the caps (per identity,
// per trust domain) count sessions over the whole fleet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, exportJWK, SignJWT } from 'jose';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient, textOf } from './helpers/mcp.ts';
import { until } from './helpers/e2e.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';
import type { FleetMcpSessions } from '../src/store/fleet-mcp-sessions.ts';
import { LOG_LEVEL_HOLD } from '../src/store/types.ts';

let store: FleetTestStore;
let upstream: RunningFixture;
let dir: string;
const replicas: Running[] = [];
const urls: string[] = [];
let sign: (sub: string) => Promise<string>;

before(async () => {
  store = await fleetStore();
  upstream = await startHttpFixture();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-mcp-'));
  const kp = await generateKeyPair('ES256', { extractable: true });
  const jwks = join(dir, 'partner.json');
  writeFileSync(jwks, JSON.stringify({ keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'p-1', alg: 'ES256', use: 'sig' }] }));
  sign = (sub) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ sub, aud: 'aam', iat: now, exp: now + 600 }).setProtectedHeader({ alg: 'ES256', kid: 'p-1', typ: 'JWT' }).sign(kp.privateKey);
  };
  const configPath = join(dir, 'aam.yaml');
  const tools = [{ resource: 'salesforce.accounts', actions: ['read', 'resources/read'] }];
  writeFileSync(configPath, yaml(
    doc('TrustDomain', 'partner.example', { jwks_file: jwks }),
    doc('McpServer', 'crm', { transport: 'streamable-http', url: upstream.url, resource: 'salesforce.accounts', timeout_ms: 60_000, tools: { read_account: { action: 'read' } } }),
    // A second server, so /mcp must know which one serves a resource URI listed on the other replica.
    doc('McpServer', 'crm2', { transport: 'streamable-http', url: upstream.url, resource: 'salesforce.accounts', timeout_ms: 60_000, tools: { read_account: { action: 'read' } } }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/a' }, tools }),
    doc('AgentPolicy', 'q', { identity: { workload: 'spiffe://test/agent/b' }, tools }),
  ));
  for (const i of [0, 1]) {
    const r = await startGateway({ configPath, dataDir: join(dir, `data-${i}`), port: 0, host: '127.0.0.1', env: {
      ...process.env, ...store.env, AAM_LOG_LEVEL: 'error', AAM_MCP_SESSIONS_PER_IDENTITY: '3', AAM_MCP_SESSIONS_PER_TRUST_DOMAIN: '2',
    } });
    replicas.push(r);
    urls.push(`http://127.0.0.1:${r.port}`);
  }
});

after(async () => {
  for (const r of replicas) await r.close();
  await upstream?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A key created on replica 0, once replica 1 accepts it too. */
async function newKey(agent: string): Promise<{ id: string; secret: string }> {
  const { key, secret } = await replicas[0].rt.keyBook.create(agent);
  await until(async () => (await fetch(`${urls[1]}/v1/models`, { headers: { authorization: `Bearer ${secret}` } })).status !== 401, 10_000, 'the key on replica 1');
  return { id: key.id, secret };
}

/** A proxy that sends each request to the next replica in turn, noting which served what. */
async function roundRobin(): Promise<{ url: string; served: Array<{ replica: number; method: string; rpc: string }>; close(): Promise<void> }> {
  let n = 0;
  const served: Array<{ replica: number; method: string; rpc: string }> = [];
  const server: Server = createServer((req, res) => {
    const replica = n++ % 2;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      let rpc = '';
      try { rpc = String((JSON.parse(body.toString()) as { method?: string }).method ?? 'response'); } catch { /* GET, DELETE */ }
      served.push({ replica, method: req.method ?? '', rpc });
      const target = new URL(urls[replica]);
      const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
      res.on('close', () => up.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, served,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** initialize on one replica: the session id, or the refusal. */
async function open(url: string, secret: string, path = '/mcp'): Promise<{ status: number; session?: string; error?: { code: number; message: string } }> {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${secret}` }, body: JSON.stringify(INIT) });
  const text = await r.text();
  if (r.ok) return { status: r.status, session: r.headers.get('mcp-session-id') ?? undefined };
  return { status: r.status, error: (JSON.parse(text) as { error: { code: number; message: string } }).error };
}

/** tools/call read_account in a session on one replica: HTTP status and the JSON-RPC reply. */
async function call(url: string, secret: string, session: string, path = '/mcp', name = 'crm__read_account'): Promise<{ status: number; text: string }> {
  const r = await fetch(`${url}${path}`, {
    method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${secret}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name, arguments: { id: 'a1' } } }),
  });
  return { status: r.status, text: await r.text() };
}

async function del(url: string, secret: string, session: string): Promise<number> {
  const r = await fetch(`${url}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${secret}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } });
  await r.arrayBuffer();
  return r.status;
}

test('an MCP SDK client whose requests alternate between two replicas keeps one session (/mcp and /mcp/<server>), and DELETE ends it everywhere', async () => {
  const { secret } = await newKey('a');
  const proxy = await roundRobin();
  try {
    for (const path of ['/mcp', '/mcp/crm']) {
      const tool = path === '/mcp' ? 'crm__read_account' : 'read_account';
      const { client, transport } = await connectClient({ url: proxy.url } as TestGateway, secret, path);
      try {
        const sid = transport.sessionId!;
        assert.ok(sid);
        for (let i = 0; i < 4; i++) {
          const r = await client.callTool({ name: tool, arguments: { id: 'a1' } });
          assert.ok(!r.isError, textOf(r));
          assert.match(textOf(r), /Acme Corp/);
        }
        assert.ok((await client.listTools()).tools.some((t) => t.name === tool));
        if (path === '/mcp') {
          // Listed through one replica, read through both (the other one learns who serves it).
          assert.ok((await client.listResources()).resources.some((r) => r.uri === 'account://a1'));
          for (let i = 0; i < 3; i++) assert.match(JSON.stringify((await client.readResource({ uri: 'account://a1' })).contents), /Acme Corp/);
          const reads = proxy.served.filter((x) => x.rpc === 'resources/read');
          assert.deepEqual([...new Set(reads.map((c) => c.replica))].sort(), [0, 1], 'resources/read served by both replicas');
        }
        const calls = proxy.served.filter((s) => s.rpc === 'tools/call');
        assert.deepEqual([...new Set(calls.map((c) => c.replica))].sort(), [0, 1], 'tools/call served by both replicas');
        const init = proxy.served.find((s) => s.rpc === 'initialize')!;
        assert.ok(calls.some((c) => c.replica !== init.replica), 'the session continued on the replica that did not open it');
        // Same session id straight to each replica, too.
        for (const url of urls) assert.equal((await call(url, secret, sid, path, tool)).status, 200);
        await transport.terminateSession(); // DELETE, through the proxy: one replica
        for (const url of urls) {
          const r = await call(url, secret, sid, path, tool);
          assert.equal(r.status, 404, `after DELETE on one replica, ${url} refuses the session: ${r.text}`);
          assert.match(r.text, /unknown or expired MCP session/);
        }
      } finally { await client.close(); }
      proxy.served.length = 0;
    }
  } finally { await proxy.close(); }
});

test('MCP 2026-07-28 requests (stateless) are served by either replica', async () => {
  const { secret } = await newKey('a');
  const v = '2026-07-28';
  for (const url of [...urls, ...urls]) {
    const r = await fetch(`${url}/mcp`, {
      method: 'POST',
      headers: { ...MCP_HEADERS, authorization: `Bearer ${secret}`, 'mcp-protocol-version': v, 'mcp-method': 'tools/call', 'mcp-name': 'crm__read_account' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'crm__read_account', arguments: { id: 'a1' }, _meta: { 'io.modelcontextprotocol/protocolVersion': v, 'io.modelcontextprotocol/clientCapabilities': {} } } }),
    });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    assert.match(text, /Acme Corp/);
  }
});

test('a session is refused to another identity on every replica, and to the other endpoint', async () => {
  const a = await newKey('a');
  const b = await newKey('b');
  const opened = await open(urls[0], a.secret);
  assert.equal(opened.status, 200);
  for (const url of urls) {
    const r = await call(url, b.secret, opened.session!);
    assert.equal(r.status, 403, r.text);
    assert.match(r.text, /belongs to another identity/);
    const scoped = await call(url, a.secret, opened.session!, '/mcp/crm', 'read_account');
    assert.equal(scoped.status, 400, scoped.text);
    assert.match(scoped.text, /was opened on \/mcp; use that endpoint/);
  }
  // Still the owner's, on both.
  for (const url of urls) assert.equal((await call(url, a.secret, opened.session!)).status, 200);
  assert.equal(await del(urls[1], a.secret, opened.session!), 200);
});

test('a session whose key is revoked dies on every replica: its open stream closes, another key of the agent gets 404', async () => {
  const k1 = await newKey('a');
  const k2 = await newKey('a');
  const opened = await open(urls[0], k1.secret);
  assert.equal(opened.status, 200);
  const sid = opened.session!;
  // The agent's other key may use it (same identity) on either replica, and holds a GET stream on replica 0.
  assert.equal((await call(urls[1], k2.secret, sid)).status, 200);
  const stream = await fetch(`${urls[0]}/mcp`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${k2.secret}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' } });
  assert.equal(stream.status, 200);
  const reader = stream.body!.getReader();
  const ended = (async () => { for (;;) if ((await reader.read()).done) return true; })();
  await replicas[1].rt.keyBook.revoke(k1.id); // revoked through replica 1
  const done = await Promise.race([ended, new Promise<false>((r) => setTimeout(() => r(false), 10_000).unref())]);
  assert.equal(done, true, 'the stream on replica 0 closed after the key was revoked on replica 1');
  for (const url of urls) {
    const r = await call(url, k2.secret, sid);
    assert.equal(r.status, 404, r.text);
    assert.match(r.text, /unknown or expired MCP session|has ended: the API key it was opened with no longer authenticates/);
    assert.equal((await call(url, k1.secret, sid)).status, 401, 'the revoked key itself is refused');
  }
});

test('session caps count over the fleet: per identity (3) and per trust domain (2), with the slot back after DELETE', async () => {
  const c = await newKey('b');
  const s1 = await open(urls[0], c.secret);
  const s2 = await open(urls[1], c.secret);
  const s3 = await open(urls[0], c.secret);
  assert.deepEqual([s1.status, s2.status, s3.status], [200, 200, 200]);
  for (const url of urls) {
    const refused = await open(url, c.secret);
    assert.equal(refused.status, 429);
    assert.match(refused.error!.message, /too many open MCP sessions for spiffe:\/\/test\/agent\/b \(limit 3 per identity\)/);
  }
  assert.equal(await del(urls[1], c.secret, s1.session!), 200); // opened on 0, closed through 1
  assert.equal((await open(urls[1], c.secret)).status, 200, 'the slot is free again fleet-wide');
  // Unregistered identities of one trust domain: 2 sessions in all, whichever replica and SPIFFE ID.
  const p1 = await open(urls[0], await sign('spiffe://partner.example/one'));
  const p2 = await open(urls[1], await sign('spiffe://partner.example/two'));
  assert.deepEqual([p1.status, p2.status], [200, 200]);
  const p3 = await open(urls[0], await sign('spiffe://partner.example/three'));
  assert.equal(p3.status, 429);
  assert.match(p3.error!.message, /trust domain partner\.example .* \(limit 2 per trust domain\)/);
});

test('a session\'s logging/setLevel is kept with it: another replica reads it with the session\'s own touch (no extra round trip)', async () => {
  const { secret } = await newKey('a');
  const opened = await open(urls[0], secret);
  const [r0, r1] = replicas.map((r) => r.rt.mcpSessions as FleetMcpSessions);
  assert.equal((await r1.touch(opened.session!, 60_000))?.logLevel, undefined, 'none before it sets one');
  await r0.hold(opened.session!, LOG_LEVEL_HOLD, 'warning');
  assert.equal((await r1.touch(opened.session!, 60_000))?.logLevel, 'warning');
  assert.equal(await del(urls[1], secret, opened.session!), 200);
});

test('one Redis round trip per request of a session (the registry touch)', async () => {
  const { secret } = await newKey('a');
  const opened = await open(urls[0], secret);
  const reg = replicas[1].rt.mcpSessions as FleetMcpSessions;
  const before = reg.calls;
  for (let i = 0; i < 5; i++) assert.equal((await call(urls[1], secret, opened.session!)).status, 200);
  assert.equal(reg.calls - before, 5);
});
