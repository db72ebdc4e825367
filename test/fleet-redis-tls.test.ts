// Fleet mode over TLS to Redis (rediss://, the CA in AAM_REDIS_CA_FILE) against a redis-server of
// this file's own with a TLS port only, and a throwaway CA made here with the openssl CLI: a budgeted
// request is admitted and the budget refuses as over plain TCP (the admission's own connection,
// resp.ts, and ioredis's both over TLS); a server whose certificate that CA did not sign is refused
// (at start the replica refuses to start; a running replica reconnecting to one answers 503
// store_unavailable; nothing reaches it); a wrong password over TLS never gets ready; a server
// that requires client certificates (tls-auth-clients yes) takes AAM_REDIS_CERT_FILE / _KEY_FILE's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fleetStore, fleetUrls } from './helpers/fleet.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';
import { connectAdmission, connectRedis } from '../src/store/redis.ts';
import { fleetEnv } from '../src/store/fleet-lazy.ts';
import { redisTls } from '../src/store/fleet-tls.ts';
import { testCa, signedBy, type Signed } from './helpers/test-ca.ts';

const PASSWORD = 'tls-test-password';
const dir = tempDir('aam-redis-tls-');
const procs: ChildProcess[] = [];
let upstream: LocalServer;

/** A CA (name.ca.pem), a server certificate it signs for 127.0.0.1 (name.crt, name.key) and a client certificate (name-client.crt, .key). */
function certs(name: string): { ca: string; cert: string; key: string; client: Signed } {
  const authority = testCa(dir, name);
  const server = signedBy(authority, name, '127.0.0.1', 'IP:127.0.0.1,DNS:localhost');
  return { ca: authority.ca, ...server, client: signedBy(authority, `${name}-client`, 'aam') };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

/** A TCP relay to a local port, which switchTo() changes (connections open then are cut, as a failover would). */
async function tcpRelay(port: number): Promise<{ port: number; switchTo(p: number): void; close(): void }> {
  let target = port;
  const open = new Set<Socket>();
  const relay = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) { open.add(s); s.once('close', () => open.delete(s)); s.on('error', () => { client.destroy(); upstream.destroy(); }); }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    port: (relay.address() as AddressInfo).port,
    switchTo: (p) => { target = p; for (const s of open) s.destroy(); },
    close: () => { relay.close(); for (const s of open) s.destroy(); },
  };
}

interface TlsRedis { port: number; url: string; cli(...args: string[]): string }

/** redis-server with a TLS port only (no plaintext listener), a password, on loopback; `clients`: it also requires a client certificate its CA signed. */
/**
 * `clients`: the server asks for a client certificate, over TLS 1.2: there a missing one fails the
 * handshake itself. Over TLS 1.3 the server refuses it after the client's handshake is done, and
 * its close may reach the client as a reset before the alert is read (then it looks unreachable).
 */
async function tlsRedis(c: ReturnType<typeof certs>, clients = false, protocols = 'TLSv1.2'): Promise<TlsRedis> {
  const port = await freePort();
  const rdir = tempDir('aam-redis-tls-data-');
  const proc = spawn('redis-server', ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', c.cert, '--tls-key-file', c.key,
    '--tls-ca-cert-file', c.ca, '--tls-auth-clients', clients ? 'yes' : 'no', ...(clients ? ['--tls-protocols', protocols] : []), '--requirepass', PASSWORD, '--save', '', '--appendonly', 'no', '--dir', rdir, '--loglevel', 'warning'], { stdio: 'ignore' });
  procs.push(proc);
  const cli = (...args: string[]) => spawnSync('redis-cli', ['--tls', '--cacert', c.ca, ...(clients ? ['--cert', c.client.cert, '--key', c.client.key] : []), '-h', '127.0.0.1', '-p', String(port), '-a', PASSWORD, '--no-auth-warning', ...args], { encoding: 'utf8' }).stdout.trim();
  const deadline = Date.now() + 10_000;
  while (cli('PING') !== 'PONG') {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`TLS redis-server on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { port, url: `rediss://:${PASSWORD}@127.0.0.1:${port}`, cli };
}

let good: ReturnType<typeof certs>;
let rogue: ReturnType<typeof certs>;
let server: TlsRedis;
let rogueServer: TlsRedis;
let mtlsServer: TlsRedis;
let mtls13Server: TlsRedis;

before(async () => {
  fleetUrls(); // npm test: PostgreSQL for the fleet's database, and redis-server installed
  good = certs('good');
  rogue = certs('rogue');
  [server, rogueServer, mtlsServer, mtls13Server] = await Promise.all([tlsRedis(good), tlsRedis(rogue), tlsRedis(good, true), tlsRedis(good, true, 'TLSv1.3')]);
  upstream = await localServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 100, total_tokens: 105 } }));
  });
});

after(async () => {
  await upstream?.close();
  for (const p of procs) {
    if (p.exitCode !== null) continue;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }
});

// 100 output tokens at $1000 per 1M = $0.10 a call, and max_tokens 100 reserves exactly that.
const config = (budgetUsd: number) => yaml(
  doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upstream.url}/v1` }),
  doc('Model', 'priced', { targets: [{ provider: 'up', model: 'm' }], pricing: { input_per_1m: 0, output_per_1m: 1000 } }),
  doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
  doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['priced'], budget: { daily_usd: budgetUsd } } }),
);

async function call(url: string, key: string): Promise<{ status: number; code?: string }> {
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'priced', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await r.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: r.status, code: body.error?.code };
}

async function gateway(redisUrl: string, ca: string, budgetUsd: number) {
  const store = await fleetStore(redisUrl);
  const d = tempDir('aam-fleet-tls-');
  writeFileSync(join(d, 'aam.yaml'), config(budgetUsd));
  const gw = await startGateway({ configPath: join(d, 'aam.yaml'), dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_REDIS_CA_FILE: ca, AAM_LOG_LEVEL: 'error' } })
    .catch(async (e: unknown) => { await store.drop(); throw e; });
  return { gw, url: `http://127.0.0.1:${gw.port}`, close: async () => { await gw.close(); await store.drop(); } };
}

test('over rediss:// with AAM_REDIS_CA_FILE: a budgeted request is admitted and the budget refuses, as over plain TCP; both connections are TLS', async () => {
  const g = await gateway(server.url, good.ca, 0.2);
  try {
    const key = (await g.gw.rt.keyBook.create('spender')).secret;
    assert.deepEqual(await call(g.url, key), { status: 200, code: undefined });
    assert.deepEqual(await call(g.url, key), { status: 200, code: undefined });
    assert.deepEqual(await call(g.url, key), { status: 429, code: 'budget_exceeded' });
    assert.equal((await fetch(`${g.url}/readyz`)).status, 200);
    // The admission script ran on this (TLS-only) Redis, on the connection of its own.
    const clients = server.cli('CLIENT', 'LIST');
    assert.match(clients, /name=aam-admit /);
    assert.match(clients, /name=aam /);
    assert.ok(Number(server.cli('INFO', 'stats').match(/total_connections_received:(\d+)/)?.[1]) > 0);
  } finally { await g.close(); }
});

test('a Redis whose certificate the CA did not sign: a replica refuses to start, naming it; nothing reaches that server', async () => {
  await assert.rejects(gateway(rogueServer.url, good.ca, 1), /cannot use Redis \(AAM_REDIS_URL\): .*certificate.*SELF_SIGNED_CERT_IN_CHAIN/);
  // Not one command (not even AUTH) reached the server: no client ever got past the handshake.
  assert.equal(rogueServer.cli('DBSIZE'), '0');
  assert.doesNotMatch(rogueServer.cli('CLIENT', 'LIST'), /name=aam/);
});

test('a running replica that reconnects to a Redis whose certificate the CA did not sign: 503 store_unavailable, never an unchecked 200, nothing reaches it', async () => {
  // The replica reaches Redis through a TCP relay (TLS end to end), which is then pointed at the rogue server.
  const relay = await tcpRelay(server.port);
  const g = await gateway(`rediss://:${PASSWORD}@127.0.0.1:${relay.port}`, good.ca, 1);
  try {
    const key = (await g.gw.rt.keyBook.create('spender')).secret;
    assert.equal((await call(g.url, key)).status, 200);
    relay.switchTo(rogueServer.port);
    // /readyz names redis, and (once a reconnect has met the certificate) why.
    const readyz = async () => {
      const r = await fetch(`${g.url}/readyz`);
      return { status: r.status, body: (await r.json()) as { down?: string[]; store: { stores: { redis: { error?: string } } } } };
    };
    await until(async () => /certificate/.test((await readyz()).body.store.stores.redis.error ?? ''), 10_000, 'readyz to name the certificate');
    const ready = await readyz();
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body.down, ['redis']);
    assert.deepEqual(await call(g.url, key), { status: 503, code: 'store_unavailable' });
    assert.equal(rogueServer.cli('DBSIZE'), '0');
    assert.doesNotMatch(rogueServer.cli('CLIENT', 'LIST'), /name=aam/);
  } finally { await g.close(); relay.close(); }
});

test('a Redis that asks for a client certificate aam does not present: a replica refuses to start, naming AAM_REDIS_URL', async () => {
  await assert.rejects(gateway(mtlsServer.url, good.ca, 1), /cannot use Redis \(AAM_REDIS_URL\): .*client certificate it asks for/s);
});

test('TLS 1.3 to a Redis that asks for a client certificate aam lacks (its close may arrive as a reset): refused at start every time, naming the certificate files', async () => {
  for (let i = 0; i < 3; i++) {
    await assert.rejects(gateway(mtls13Server.url, good.ca, 1), /cannot use Redis \(AAM_REDIS_URL\): .*(right after the TLS handshake.*AAM_REDIS_CERT_FILE|client certificate it asks for)/s);
  }
});

test('rediss:// to a Redis without TLS (it would time out, and be waited for): refused at start, saying it answers plain Redis', async () => {
  const plain = fleetUrls().redisUrl.replace(/^redis:/, 'rediss:');
  const t = performance.now();
  await assert.rejects(gateway(plain, good.ca, 1), /cannot use Redis \(AAM_REDIS_URL\): AAM_REDIS_URL is rediss:\/\/ \(TLS\), but 127\.0\.0\.1:\d+ answers plain Redis without TLS: use redis:\/\//);
  assert.ok(performance.now() - t < 15_000);
});

test('the admission connection by itself says why a rogue certificate is refused', async () => {
  const conn = connectAdmission(rogueServer.url, 'aam-admit-rogue', { tls: { ca: readFileSync(good.ca, 'utf8') } });
  const errors: string[] = [];
  conn.on('error', (e: Error) => errors.push(e.message));
  try {
    await conn.connect().catch(() => {});
    await assert.rejects(conn.send('PING', []));
    await until(async () => errors.length > 0, 5000, 'a TLS error');
    assert.match(errors[0], /certificate/i);
    assert.notEqual(conn.status, 'ready');
  } finally { conn.disconnect(); }
});

test('over TLS: the right password gets ready (admission and ioredis connections); a wrong one never does', async () => {
  const ca = readFileSync(good.ca, 'utf8');
  const ok = connectAdmission(server.url, 'aam-admit-ok', { tls: { ca } });
  const io = connectRedis(server.url, 'aam-io-ok', { tls: { ca } });
  ok.on('error', () => {});
  io.on('error', () => {});
  const wrong = connectAdmission(`rediss://:not-the-password@127.0.0.1:${server.port}`, 'aam-admit-wrong', { tls: { ca } });
  const errors: string[] = [];
  wrong.on('error', (e: Error) => errors.push(e.message));
  try {
    await ok.connect();
    await io.connect();
    assert.equal(await ok.send('PING', []), 'PONG');
    assert.equal(await io.ping(), 'PONG');
    await wrong.connect().catch(() => {});
    await assert.rejects(wrong.send('PING', []));
    await until(async () => errors.some((m) => /WRONGPASS|invalid password/i.test(m)), 5000, 'the AUTH refusal');
    const t0 = Date.now();
    while (Date.now() - t0 < 1500) {
      assert.notEqual(wrong.status, 'ready', 'a wrong password got ready');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.doesNotMatch(server.cli('CLIENT', 'LIST'), /name=aam-admit-wrong/);
  } finally { ok.disconnect(); io.disconnect(); wrong.disconnect(); }
});

test('client certificates (tls-auth-clients yes): accepted with one the server\'s CA signed, on the admission connection and on ioredis; refused without one or with another CA\'s', async () => {
  const files = (client?: Signed) => redisTls({ AAM_REDIS_CA_FILE: good.ca, ...(client ? { AAM_REDIS_CERT_FILE: client.cert, AAM_REDIS_KEY_FILE: client.key } : {}) }, mtlsServer.url);
  const conns = [
    { name: 'right', tls: files(good.client) },
    { name: 'none', tls: files() },
    { name: 'other', tls: files(rogue.client) },
  ].map((c) => {
    const admit = connectAdmission(mtlsServer.url, `aam-admit-${c.name}`, { tls: c.tls });
    const io = connectRedis(mtlsServer.url, `aam-io-${c.name}`, { tls: c.tls });
    const errors: string[] = [];
    admit.on('error', (e: Error) => errors.push(e.message));
    io.on('error', (e: Error) => errors.push(e.message));
    return { ...c, admit, io, errors };
  });
  const [right, ...refused] = conns;
  try {
    await Promise.all(conns.flatMap((c) => [c.admit.connect().catch(() => {}), c.io.connect().catch(() => {})]));
    assert.equal(await right.admit.send('PING', []), 'PONG');
    assert.equal(await right.io.ping(), 'PONG');
    for (const c of refused) {
      await assert.rejects(c.admit.send('PING', []), `${c.name}: the admission connection is refused`);
      await assert.rejects(c.io.ping(), `${c.name}: ioredis is refused`);
      await until(async () => c.errors.length > 0, 5000, `${c.name}: a TLS error`);
      assert.notEqual(c.admit.status, 'ready');
      assert.notEqual(c.io.status, 'ready');
    }
    const clients = mtlsServer.cli('CLIENT', 'LIST');
    assert.match(clients, /name=aam-admit-right /);
    assert.match(clients, /name=aam-io-right /);
    assert.doesNotMatch(clients, /name=aam-(admit|io)-(none|other) /);
  } finally { for (const c of conns) { c.admit.disconnect(); c.io.disconnect(); } }
});

test('AAM_REDIS_CA_FILE needs rediss:// and a readable PEM; a client certificate needs its key', () => {
  const base = { AAM_DATABASE_URL: 'postgres://a@h/db', AAM_REDIS_CA_FILE: good.ca };
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'redis://h:6379' }), /AAM_REDIS_CA_FILE is set but AAM_REDIS_URL is not rediss:\/\//);
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379', AAM_REDIS_CA_FILE: join(dir, 'missing.pem') }), /cannot read AAM_REDIS_CA_FILE/);
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379', AAM_REDIS_CA_FILE: good.key }), /holds no PEM certificate/);
  assert.deepEqual(fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379' })?.redisTls, { ca: readFileSync(good.ca, 'utf8') });
  const client = { AAM_REDIS_CERT_FILE: good.client.cert, AAM_REDIS_KEY_FILE: good.client.key };
  assert.throws(() => fleetEnv({ ...base, ...client, AAM_REDIS_URL: 'redis://h:6379' }), /AAM_REDIS_CA_FILE, AAM_REDIS_CERT_FILE, AAM_REDIS_KEY_FILE are set but AAM_REDIS_URL is not rediss:\/\//);
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379', AAM_REDIS_CERT_FILE: good.client.cert }), /AAM_REDIS_CERT_FILE is set without AAM_REDIS_KEY_FILE/);
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379', AAM_REDIS_KEY_FILE: join(dir, 'missing.key'), AAM_REDIS_CERT_FILE: good.client.cert }), /cannot read AAM_REDIS_KEY_FILE/);
  assert.throws(() => fleetEnv({ ...base, AAM_REDIS_URL: 'rediss://h:6379', ...client, AAM_REDIS_KEY_FILE: rogue.client.key }), /AAM_REDIS_KEY_FILE is not the private key of the certificate in AAM_REDIS_CERT_FILE/);
  assert.deepEqual(fleetEnv({ ...base, ...client, AAM_REDIS_URL: 'rediss://h:6379' })?.redisTls,
    { ca: readFileSync(good.ca, 'utf8'), cert: readFileSync(good.client.cert, 'utf8'), key: readFileSync(good.client.key, 'utf8') });
});
