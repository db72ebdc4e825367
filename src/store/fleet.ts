// The fleet store's connections: PostgreSQL (durable state) and Redis (hot counters and the
// invalidation bus), opened once at start when AAM_DATABASE_URL / AAM_REDIS_URL are set.
// Invalidations: a change is committed in PostgreSQL first, then announced on one pub/sub channel
// per fleet; a replica that was disconnected (and may have missed messages) re-reads on reconnect,
// and each kind also polls on a short timer, so a lost message delays a change by at most that.
import { randomBytes } from 'node:crypto';
import { connectPostgres, databaseError, databaseName, migrate, requireSchema, QUERY_TIMEOUT_S, type Sql } from './postgres.ts';
import { connectAdmission, connectRedis, fleetPrefix, lastError, redisRefusal, COMMAND_TIMEOUT_MS, type Redis } from './redis.ts';
import { redisTlsMisfit } from './redis-probe.ts';
import type { RespConnection } from './resp.ts';
import { connectEvidence, type EventWriter } from './pg-wire.ts';
import type { StoreHealth } from './types.ts';
import type { FleetEnv } from './fleet-env.ts';
import { errMsg } from '../lib/error-message.ts';

export { fleetEnv, type FleetEnv } from './fleet-env.ts';

export interface Fleet {
  readonly sql: Sql;
  readonly redis: Redis;
  /**
   * The admission script's own connection (budgets and rate limits: the one Redis round trip a
   * request awaits before its upstream call), so that it never waits in line behind other commands
   * (cache entries, session registry, heartbeats) on `redis`. Its commands are written and parsed
   * by aam (resp.ts), not ioredis. A serving replica connects it at start (`admission: true`);
   * elsewhere it connects at its first command (the CLI rarely admits anything).
   */
  readonly admission: RespConnection;
  /**
   * The audit trail's INSERTs (the one PostgreSQL write a request awaits before its answer) on a
   * connection of their own, so a commit never waits in line behind the pool's other queries (key
   * polls, usage rollups, heartbeats, sinks, checkpoints). A serving replica opens it
   * (`admission: true`), written by aam itself (pg-wire.ts) where it can speak for the URL; elsewhere it is `sql` itself.
   */
  readonly evidence: EventWriter;
  /** Prefix of every Redis key and channel of this fleet. */
  readonly prefix: string;
  /** Random per process: names this replica's reservations and its heartbeat. */
  readonly replicaId: string;
  /** Announce a change of one kind ('keys', ...) to every replica, with an optional payload; never throws (the poll covers a lost message). */
  announce(kind: string, payload?: string): Promise<void>;
  /** Run fn on announcements of a kind (with their payload), and without one after the bus reconnects (messages may have been lost). */
  follow(kind: string, fn: (payload?: string) => void): void;
  /** Remember whether PostgreSQL answered (the key poll doubles as its health check). */
  notePostgres(error: unknown): void;
  health(): StoreHealth;
  /**
   * health() after asking each store now (PING on both Redis connections, `select 1`): an idle
   * replica learns of a frozen or lost store only when something uses it. At most `ms` (then: down).
   */
  probe(ms?: number): Promise<StoreHealth>;
  close(): Promise<void>;
}



/**
 * Connect, and (replicas, `aam migrate`) bring the schema up to date under the advisory lock.
 * `follow`: subscribe to invalidations (a serving replica); the CLI only announces.
 */
export async function openFleet(env: FleetEnv, opts: { follow: boolean; migrate: boolean; poolMax?: number; admission?: boolean }): Promise<Fleet> {
  // A serving replica gives up a query PostgreSQL does not answer (and a silent connection with it);
  // the CLI's commands (audit verify, prune) may run long queries and are run by someone watching.
  const sql = connectPostgres(env.databaseUrl, opts.poolMax, { queryTimeout: opts.follow ? QUERY_TIMEOUT_S : 0, tls: env.databaseTls });
  const prefix = fleetPrefix(databaseName(env.databaseUrl));
  const redis = connectRedis(env.redisUrl, 'aam', { tls: env.redisTls });
  const admission = connectAdmission(env.redisUrl, 'aam-admit', { lazy: !opts.admission, tls: env.redisTls });
  const evidence: EventWriter = opts.admission ? connectEvidence(env.databaseUrl, { queryTimeout: opts.follow ? QUERY_TIMEOUT_S : 0, name: 'aam-evidence', tls: env.databaseTls }) : sql;
  // State is read from each connection's status (errors reach the callers of commands); the last
  // error since it was ready says why it is down (/readyz, and a refusal at start).
  const redisWhy = lastError(redis);
  const admissionWhy = lastError(admission);
  let pgError: string | null = null;
  let sub: Redis | null = null;
  try {
    try {
      // Migrations on a connection of their own, with no query deadline (one may rewrite a big table).
      if (opts.migrate) {
        const once = connectPostgres(env.databaseUrl, 1, { tls: env.databaseTls });
        try { await migrate(once); } finally { await once.end({ timeout: 1 }); }
        await sql`SELECT 1`;
      } else await requireSchema(sql);
    } catch (e) {
      throw databaseError(e);
    }
    // Redis may be down at start: requests then get 503 store_unavailable until it answers. One
    // that refuses aam (password, certificate) will not change its mind: the start stops, saying so.
    await Promise.all([redis.connect().catch(() => {}), opts.admission ? admission.connect().catch(() => {}) : null]);
    const refusal = redisRefusal(redisWhy()) ?? redisRefusal(admissionWhy())
      ?? (redis.status === 'ready' ? null : await redisTlsMisfit(env.redisUrl, env.redisTls));
    if (refusal !== null) throw new Error(`cannot use Redis (AAM_REDIS_URL): ${refusal}`);
  } catch (e) {
    redis.disconnect();
    admission.disconnect();
    await Promise.all([sql.end({ timeout: 1 }), evidence !== sql ? evidence.end({ timeout: 1 }) : null]);
    throw e;
  }
  const followers = new Map<string, Array<(payload?: string) => void>>();
  const channel = `${prefix}changes`;
  if (opts.follow) {
    sub = connectRedis(env.redisUrl, 'aam-sub', { subscriber: true, tls: env.redisTls });
    sub.on('error', () => {});
    // A message is the kind, then (after a newline) its payload, if any.
    sub.on('message', (_ch: string, msg: string) => {
      const nl = msg.indexOf('\n');
      const kind = nl < 0 ? msg : msg.slice(0, nl);
      for (const fn of followers.get(kind) ?? []) fn(nl < 0 ? undefined : msg.slice(nl + 1));
    });
    // (Re)subscribed after a reconnect: anything announced meanwhile was missed, so re-read all.
    let first = true;
    sub.on('ready', () => {
      if (first) { first = false; return; }
      for (const fns of followers.values()) for (const fn of fns) fn();
    });
    // Not awaited: with Redis down at start the replica still starts (requests get 503 until it is back).
    sub.connect().catch(() => {});
    sub.subscribe(channel).catch(() => {});
  }
  const replicaId = randomBytes(6).toString('hex');
  const health = (): StoreHealth => {
    // Admissions fail while their connection is down, so it counts as much as the other.
    const down = redis.status !== 'ready' ? redis : opts.admission && admission.status !== 'ready' ? admission : null;
    const redisOk = down === null;
    const stores = {
      postgres: pgError === null ? { ok: true } : { ok: false, error: pgError },
      redis: redisOk ? { ok: true } : { ok: false, error: `${down === admission ? 'admission connection' : 'connection'} ${down.status}${because(down === admission ? admissionWhy() : redisWhy())}` },
    };
    return { kind: 'fleet', ok: stores.postgres.ok && redisOk, stores };
  };
  return {
    sql, redis, admission, evidence, prefix, replicaId,
    async announce(kind, payload) {
      try { await redis.publish(channel, payload === undefined ? kind : `${kind}\n${payload}`); } catch { /* replicas poll; the change is committed already */ }
    },
    follow(kind, fn) {
      const list = followers.get(kind);
      if (list) list.push(fn); else followers.set(kind, [fn]);
    },
    notePostgres(error) { pgError = error === null || error === undefined ? null : errMsg(error); },
    health,
    async probe(ms = PROBE_MS) {
      const [pg, r, a] = await Promise.all([answers(sql`select 1`, ms), answers(redis.ping(), ms), opts.admission ? answers(admission.send('PING', []), ms) : null]);
      const h = health();
      const stores = { ...h.stores };
      if (pg !== null) stores.postgres = { ok: false, error: pg };
      const redisDown = r !== null ? `connection: ${r}` : a !== null ? `admission connection: ${a}` : null;
      if (redisDown !== null && stores.redis.ok) stores.redis = { ok: false, error: redisDown };
      return { kind: 'fleet', ok: stores.postgres.ok && stores.redis.ok, stores };
    },
    async close() {
      sub?.disconnect();
      redis.disconnect();
      admission.disconnect();
      await Promise.all([sql.end({ timeout: 2 }), evidence !== sql ? evidence.end({ timeout: 2 }) : null]);
    },
  };
}

const because = (e: unknown): string => (e === null ? '' : `: ${errMsg(e)}`);

/** How long /readyz waits for a store's answer before naming it down (a Redis command's own stall limit). */
const PROBE_MS = COMMAND_TIMEOUT_MS;

/** null when `p` settles within `ms`; else why not. */
function answers(p: PromiseLike<unknown>, ms: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => { timer = setTimeout(() => resolve(`no answer within ${ms} ms`), ms); });
  return Promise.race([Promise.resolve(p).then(() => null, (e: unknown) => errMsg(e)), late]).finally(() => clearTimeout(timer));
}
