// Real PostgreSQL and Redis for fleet tests. `npm test` (scripts/test.ts) starts both and passes
// their URLs in AAM_TEST_DATABASE_URL / AAM_TEST_REDIS_URL; without them a fleet test fails
// loudly instead of skipping. Each test file gets a database of its own (and so a Redis key
// prefix of its own: the fleet store derives it from the database name), so files run in parallel.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';
import { tempDir } from './temp.ts';
import type { Running } from '../../src/cli/serve.ts';

export interface FleetTestStore {
  databaseUrl: string;
  redisUrl: string;
  /** AAM_DATABASE_URL, AAM_REDIS_URL and AAM_MASTER_KEY for a replica or CLI of this fleet. */
  env: Record<string, string>;
  /** Drop the database (call in after()). */
  drop(): Promise<void>;
}

export function fleetUrls(): { databaseUrl: string; redisUrl: string } {
  const databaseUrl = process.env.AAM_TEST_DATABASE_URL;
  const redisUrl = process.env.AAM_TEST_REDIS_URL;
  if (!databaseUrl || !redisUrl) {
    throw new Error('fleet tests need a real PostgreSQL and Redis: AAM_TEST_DATABASE_URL / AAM_TEST_REDIS_URL are not set. ' +
      'Run them through npm test (e.g. npm test -- test/fleet-keys.test.ts), which starts both.');
  }
  return { databaseUrl, redisUrl };
}

/** A fresh database owned by the test role, for one test file. */
export async function fleetStore(redisUrl?: string): Promise<FleetTestStore> {
  const urls = fleetUrls();
  const name = `aam_t_${randomBytes(6).toString('hex')}`;
  const admin = postgres(urls.databaseUrl, { max: 1, onnotice: () => {} });
  try { await admin.unsafe(`CREATE DATABASE ${name}`); } finally { await admin.end(); }
  const u = new URL(urls.databaseUrl);
  u.pathname = `/${name}`;
  const databaseUrl = u.toString();
  const r = redisUrl ?? urls.redisUrl;
  return {
    // One master key per fleet, as the README asks: replicas with keys of their own refuse to start
    // (the stored-credential key check lives in the shared database).
    databaseUrl, redisUrl: r, env: { AAM_DATABASE_URL: databaseUrl, AAM_REDIS_URL: r, AAM_MASTER_KEY: randomBytes(32).toString('hex') },
    drop: async () => {
      const sql = postgres(urls.databaseUrl, { max: 1, onnotice: () => {} });
      try {
        // FORCE cannot end a backend of another role (an autovacuum worker on the fresh database,
        // 42501): such a backend finishes by itself, so try again for a few seconds.
        for (let i = 0; ; i++) {
          try { await sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`); break; } catch (e) {
            if ((e as { code?: string }).code !== '42501' || i >= 25) throw e;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      } finally { await sql.end(); }
    },
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

export interface PgProxy { url: string; close(): void; stop(): void; start(): void; attempts: number[] }

/**
 * A TCP proxy to a test's PostgreSQL (`databaseUrl`, e.g. its fleetStore()'s); a replica given the
 * returned url reaches PostgreSQL only through it. `relay` decides when each chunk (either
 * direction) is passed on, or whether it is dropped (never calling send), knowing which connection
 * it is on (its index in `attempts`) and the direction (toServer). Chunks not yet passed on when
 * either side closes are dropped, as a crash drops them. stop() is PostgreSQL going away (every
 * connection cut, new ones refused) until start().
 */
export async function pgProxy(databaseUrl: string, relay: (send: () => void, conn: number, toServer: boolean) => void): Promise<PgProxy> {
  const target = new URL(databaseUrl);
  let stopped = false;
  const sockets = new Set<Socket>();
  /** When each connection was opened to the proxy (performance.now()): the client's (re)connect attempts. */
  const attempts: number[] = [];
  const server = createServer((client) => {
    const conn = attempts.push(performance.now()) - 1;
    if (stopped) { client.destroy(); return; }
    const upstream = connect(Number(target.port || 5432), target.hostname);
    for (const s of [client, upstream]) { sockets.add(s); s.once('close', () => sockets.delete(s)); }
    let open = true;
    const pipe = (from: Socket, to: Socket) => from.on('data', (c) => relay(() => { if (open) to.write(c); }, conn, to === upstream));
    pipe(client, upstream);
    pipe(upstream, client);
    const end = () => { open = false; client.destroy(); upstream.destroy(); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const via = new URL(databaseUrl);
  via.hostname = '127.0.0.1';
  via.port = String((server.address() as AddressInfo).port);
  return {
    url: via.toString(), close: () => server.close(), attempts,
    stop: () => { stopped = true; for (const s of sockets) s.destroy(); },
    start: () => { stopped = false; },
  };
}

export interface PrivateRedis {
  url: string;
  /** Stop the server (SIGKILL: like a crash) and wait until it is gone. */
  stop(): Promise<void>;
  /** Start it again on the same port, empty. */
  start(): Promise<void>;
  /** Freeze it (SIGSTOP: connections stay open, nothing is answered) and thaw it (SIGCONT). */
  pause(): void;
  resume(): void;
}

/** A redis-server of the test's own (fault tests stop it; the shared one stays up for other files). */
export async function privateRedis(): Promise<PrivateRedis> {
  fleetUrls(); // same precondition: npm test made sure redis-server is installed
  const port = await freePort();
  const dir = tempDir('aam-redis-');
  let proc: ChildProcess | null = null;
  const start = async () => {
    proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (spawnSync('redis-cli', ['-p', String(port), 'PING'], { encoding: 'utf8' }).stdout.trim() !== 'PONG') {
      if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const stop = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  };
  process.once('exit', () => { (proc as ChildProcess | null)?.kill('SIGKILL'); });
  await start();
  const signal = (sig: NodeJS.Signals) => { (proc as ChildProcess | null)?.kill(sig); };
  return { url: `redis://127.0.0.1:${port}`, start, stop, pause: () => signal('SIGSTOP'), resume: () => signal('SIGCONT') };
}

/**
 * A virtual key created through one replica's admin API, returned once every replica accepts
 * it: the contract is "within 1 s" (push, then a poll backstop), not at once, so a test that
 * uses a fresh key on another replica must wait for it rather than race the announcement.
 */
export async function keyOnEveryReplica(urls: readonly string[], agent: string, adminToken: string, ms = 5000): Promise<string> {
  const r = await fetch(`${urls[0]}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent }) });
  if (r.status !== 201) throw new Error(`creating a key for ${agent}: HTTP ${r.status} ${await r.text()}`);
  const key = ((await r.json()) as { key: string }).key;
  await untilAccepted(urls, [key], ms);
  return key;
}

export interface Replicas {
  replicas: Running[];
  urls: string[];
  /** A virtual key per agent asked for, created on replica 0 and accepted by every replica. */
  keys: Record<string, string>;
  /** Close every replica (call in after(), before dropping the store). */
  close(): Promise<void>;
}

/**
 * `count` replicas (`aam serve` in this process) of one fleet: the same config and store, each
 * with a data dir of its own under `dir`, and a key for each of `agents`.
 */
export async function startReplicas(o: { store: FleetTestStore; configPath: string; dir: string; agents?: readonly string[]; count?: number; env?: Record<string, string> }): Promise<Replicas> {
  // Loaded here, not at the top: files that use only the stores need not load the gateway.
  const { startGateway } = await import('../../src/cli/serve.ts');
  const { parseConfigTexts } = await import('../../src/config/load.ts');
  const replicas: Running[] = [];
  const close = async () => { for (const r of replicas.splice(0)) await r.close(); };
  try {
    for (let i = 0; i < (o.count ?? 2); i++) {
      replicas.push(await startGateway({
        configPath: o.configPath, dataDir: join(o.dir, `data-${i}`), port: 0, host: '127.0.0.1',
        env: { ...process.env, ...o.store.env, AAM_LOG_LEVEL: 'error', ...o.env },
        parseConfig: parseConfigTexts, // validated in this thread: no config thread per replica start
      }));
    }
    const urls = replicas.map((r) => `http://127.0.0.1:${r.port}`);
    const keys: Record<string, string> = {};
    for (const a of o.agents ?? []) keys[a] = (await replicas[0].rt.keyBook.create(a)).secret;
    await untilAccepted(urls.slice(1), Object.values(keys));
    return { replicas: [...replicas], urls, keys, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Every key accepted by every replica: keys reach the others within 1 s (push, then a poll backstop). */
async function untilAccepted(urls: readonly string[], keys: readonly string[], ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (const url of urls) {
    for (const key of keys) {
      for (;;) {
        const r = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
        await r.arrayBuffer();
        if (r.status !== 401) break;
        if (Date.now() > deadline) throw new Error(`a key was not accepted by ${url} within ${ms} ms`);
        await new Promise((res) => setTimeout(res, 20));
      }
    }
  }
}
