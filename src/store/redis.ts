// Fleet store, hot half: Redis through ioredis. Commands fail fast while Redis is away (no offline
// queue, a stall watchdog): a request must get a clear 503 at once, not hang or run unchecked;
// ioredis keeps reconnecting in the background, so the fleet recovers by itself.
import { Redis } from 'ioredis';
import type { ConnectionOptions } from 'node:tls';
import { RespConnection } from './resp.ts';
import type { TlsFiles } from './fleet-tls.ts';
import { errMsg } from '../lib/error-message.ts';

export type { Redis } from 'ioredis';

/** A command unanswered this long (ms) means the connection is stalled: everything in flight on it fails. */
export const COMMAND_TIMEOUT_MS = 1000;

export function connectRedis(url: string, name: string, opts: { subscriber?: boolean; tls?: TlsFiles } = {}): Redis {
  const redis = new Redis(url, {
    ...tlsOptions(url, opts.tls),
    connectionName: name,
    lazyConnect: true,
    // Requests: fail at once when disconnected. The subscriber keeps its queue so it re-subscribes.
    enableOfflineQueue: opts.subscriber === true,
    maxRetriesPerRequest: opts.subscriber ? null : 0,
    connectTimeout: 2000,
    // Commands issued in the same tick share one write (and one round trip of latency).
    enableAutoPipelining: !opts.subscriber,
    retryStrategy: (times) => Math.min(50 * times, 500),
  });
  if (!opts.subscriber) watchStalls(redis, COMMAND_TIMEOUT_MS);
  return redis;
}

/**
 * The admission script's own connection (resp.ts: RESP written and parsed by aam, not ioredis), to
 * where ioredis would connect for this URL (host or socket path, TLS, user and password, db), with
 * the same stall watchdog, connect timeout and reconnect delays as connectRedis. `lazy`: connected
 * by its first command (the CLI, which may never admit anything), not by connect().
 */
export function connectAdmission(url: string, name: string, opts: { lazy?: boolean; tls?: TlsFiles } = {}): RespConnection {
  const o = new Redis(url, { lazyConnect: true, ...tlsOptions(url, opts.tls) }).options;
  return new RespConnection(
    { host: o.host, port: o.port, path: o.path, family: o.family, username: o.username, password: o.password, db: o.db, tls: o.tls as ConnectionOptions | undefined },
    { name, commandTimeoutMs: COMMAND_TIMEOUT_MS, connectTimeoutMs: 2000, retry: (times) => Math.min(50 * times, 500), lazy: opts.lazy },
  );
}

/**
 * `tls` (fleet-tls.ts redisTls): `ca` (AAM_REDIS_CA_FILE's PEM), the only CAs trusted for a
 * rediss:// URL's server certificate; `cert` and `key`, the client certificate aam presents (a
 * server with tls-auth-clients yes). Never given with redis:// (fleetEnv refuses it), which would
 * otherwise turn TLS on silently.
 */
function tlsOptions(url: string, tls: TlsFiles | undefined): { tls?: ConnectionOptions } {
  if (tls === undefined) return {};
  if (!/^rediss:\/\//i.test(url)) throw new Error('Redis TLS files are for TLS: the URL must be rediss://');
  return { tls: { ...tls } };
}

/** What the watchdog reads of ioredis: its queue of commands written and not yet answered, oldest first. */
interface InFlight { commandQueue: { length: number; peekFront(): unknown; toArray(): Array<{ command: { reject(e: Error): void } }> } }

/**
 * One watchdog per connection instead of ioredis's commandTimeout, which arms a setTimeout (and
 * clears it) per command on the main thread. Replies come in order, so only the oldest command in
 * flight is watched: when it has waited `ms` (detected within ms / 4 more), the socket is
 * destroyed, which fails every command in flight at once (no retries: the requests get 503
 * store_unavailable) and reconnects; commands sent meanwhile fail at once (no offline queue).
 */
function watchStalls(redis: Redis, ms: number): void {
  const every = ms / 4;
  let oldest: unknown;
  let since = 0;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    // A late tick means this process's own loop was blocked (GC, a long task, a starved CPU): the
    // reply may be sitting unread in the socket, and timers run before I/O is read. Only time the
    // loop was free to read counts towards a stall, so a busy replica does not reset a healthy
    // connection and fail every request on it.
    const late = now - last - every;
    last = now;
    if (late > every) since += late;
    const q = (redis as unknown as InFlight).commandQueue;
    const head = q.length > 0 ? q.peekFront() : undefined;
    if (head !== oldest) { oldest = head; since = now; return; }
    if (head === undefined || now - since < ms) return;
    oldest = undefined;
    const stream = redis.stream;
    if (!stream) return;
    const error = new Error(`Redis did not answer within ${ms} ms (command timed out); the connection is reset`);
    // Failed as the socket closes, before ioredis's own close handler (which would say "max retries"),
    // so that whoever sees the error also sees the connection down.
    stream.prependOnceListener('close', () => { for (const c of q.toArray()) c.command.reject(error); });
    // Not disconnect(): it ends the socket gracefully, and a stalled server never closes its side.
    stream.destroy();
  }, ms / 4);
  tick.unref();
  redis.once('end', () => clearInterval(tick));
}

/** Every key and channel of one fleet starts with this; {…} keeps a fleet's keys in one cluster slot (multi-key scripts). */
export function fleetPrefix(database: string): string {
  return `aam:{${database}}:`;
}

/** What a Redis connection emits (ioredis, resp.ts) that lastError reads. */
interface Emitting { on(event: 'error', fn: (e: unknown) => void): unknown; on(event: 'ready', fn: () => void): unknown }

/** The connection's last error since it was last ready (null while it is), read by the returned function. */
export function lastError(conn: Emitting): () => unknown {
  let last: unknown = null;
  conn.on('error', (e) => { last = e; });
  conn.on('ready', () => { last = null; });
  return () => last;
}

/**
 * Why Redis refused aam, when waiting will not help: a wrong or missing password (AUTH/HELLO
 * answered WRONGPASS or NOAUTH), or TLS that does not check out (the server's certificate, or the
 * server refusing aam's). null for anything else (refused, reset, timed out: Redis may come back).
 */
export function redisRefusal(e: unknown): string | null {
  if (e === null || e === undefined) return null;
  const message = errMsg(e);
  const code = (e as { code?: unknown }).code;
  if (/^(WRONGPASS|NOAUTH)\b/.test(message)) return `${message} (check the password in AAM_REDIS_URL: redis://:PASSWORD@host:port)`;
  if (typeof code === 'string' && TLS_REFUSAL.test(code)) return `${message} (${code}: TLS to Redis does not check out: its server certificate against AAM_REDIS_CA_FILE, or a client certificate it asks for, AAM_REDIS_CERT_FILE and AAM_REDIS_KEY_FILE)`;
  return null;
}

/** Node's codes for a certificate that does not verify, and OpenSSL's for a handshake the other side refused. */
const TLS_REFUSAL = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|^ERR_SSL_|^ERR_TLS_/;
