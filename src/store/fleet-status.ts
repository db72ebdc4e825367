// `aam fleet status`: which replicas are alive (each serving replica heartbeats into Redis), which
// config each one runs (drift: more than one), and whether PostgreSQL and Redis answer. Heartbeats
// carry a TTL of three beats, so a replica killed without a goodbye drops out by itself.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Fleet, FleetEnv } from './fleet.ts';
import { connectionError, connectPostgres, databaseName, schemaVersion, SCHEMA_VERSION } from './postgres.ts';
import { connectRedis, fleetPrefix, lastError, redisRefusal, type Redis } from './redis.ts';
import { errMsg } from '../lib/error-message.ts';

/**
 * This aam's release (its package.json), reported by each replica so mixed versions show. Found by
 * walking up from this module, since a build can live at another depth (dist/, a benchmark's private
 * build); never fatal: a module that cannot tell its version still runs.
 */
export const AAM_VERSION: string = ownVersion(new URL('.', import.meta.url));

export function ownVersion(from: URL): string {
  for (let dir = from, i = 0; i < 8; i++, dir = new URL('..', dir)) {
    try {
      const p = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (p.name === 'aam' && typeof p.version === 'string') return p.version;
    } catch { /* not here: one level up */ }
  }
  return 'unknown';
}

export interface ReplicaBeat {
  id: string;
  host: string;
  pid: number;
  started_at: string;
  version: string;
  /** Short digest of the config the replica runs now (the version stamped on its evidence). */
  config: string;
  /** When this beat was written (ISO). */
  seen_at: string;
}

const beatKey = (prefix: string, id: string): string => `${prefix}replica:${id}`;

/** Beat every `everyMs` (default 5 s) until stopped; a failed beat is retried at the next one. */
export function startHeartbeat(fleet: Fleet, config: () => string, everyMs = 5000): { stop(): Promise<void> } {
  const base = { id: fleet.replicaId, host: hostname(), pid: process.pid, started_at: new Date().toISOString(), version: AAM_VERSION };
  const key = beatKey(fleet.prefix, fleet.replicaId);
  const beat = () => fleet.redis.set(key, JSON.stringify({ ...base, config: config(), seen_at: new Date().toISOString() }), 'PX', everyMs * 3).catch(() => {});
  void beat();
  const timer = setInterval(beat, everyMs);
  timer.unref();
  return {
    // A replica that stops cleanly leaves the list at once.
    async stop() { clearInterval(timer); await fleet.redis.del(key).catch(() => {}); },
  };
}

export interface FleetStatus {
  ok: boolean;
  replicas: ReplicaBeat[];
  /** Config digest -> replica ids running it; more than one entry is drift. */
  configs: Record<string, string[]>;
  drift: boolean;
  stores: {
    postgres: { ok: boolean; schema?: number; known: number; error?: string };
    redis: { ok: boolean; error?: string };
  };
}


/** Read the fleet's state from its stores (the CLI; no replica needs to answer). */
export async function readFleetStatus(env: FleetEnv): Promise<FleetStatus> {
  const sql = connectPostgres(env.databaseUrl, 1, { tls: env.databaseTls });
  const redis = connectRedis(env.redisUrl, 'aam-status', { tls: env.redisTls });
  // What Redis answered (WRONGPASS, a certificate error), not connect()'s "Connection is closed.".
  const why = lastError(redis);
  const prefix = fleetPrefix(databaseName(env.databaseUrl));
  try {
    const [pg, rd] = await Promise.all([
      schemaVersion(sql).then((schema) => ({ ok: true, schema, known: SCHEMA_VERSION }), (e: unknown) => ({ ok: false, known: SCHEMA_VERSION, error: errMsg(connectionError(e)) })),
      replicasIn(redis, prefix).then((replicas) => ({ ok: true as const, replicas }), (e: unknown) => ({ ok: false as const, error: redisRefusal(why()) ?? errMsg(why() ?? e) })),
    ]);
    const replicas = rd.ok ? rd.replicas : [];
    const configs: Record<string, string[]> = {};
    for (const r of replicas) (configs[r.config] ??= []).push(r.id);
    const drift = Object.keys(configs).length > 1;
    const schemaOk = pg.ok && (pg as { schema: number }).schema === SCHEMA_VERSION;
    return {
      ok: schemaOk && rd.ok && !drift, replicas, configs, drift,
      stores: { postgres: pg, redis: rd.ok ? { ok: true } : { ok: false, error: rd.error } },
    };
  } finally {
    redis.disconnect();
    await sql.end({ timeout: 1 });
  }
}

async function replicasIn(redis: Redis, prefix: string): Promise<ReplicaBeat[]> {
  await redis.connect();
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', beatKey(prefix, '*'), 'COUNT', 500);
    cursor = next;
    keys.push(...batch);
  } while (cursor !== '0');
  const values = keys.length ? await redis.mget(keys) : [];
  return values.flatMap((v) => (v ? [JSON.parse(v) as ReplicaBeat] : [])).sort((a, b) => a.started_at.localeCompare(b.started_at) || a.id.localeCompare(b.id));
}

/** The human table: one line per replica, then drift and store health. */
export function formatFleetStatus(s: FleetStatus, now = Date.now()): string[] {
  const lines: string[] = [];
  if (s.replicas.length === 0) lines.push(s.stores.redis.ok ? 'no replicas seen (serving replicas heartbeat into Redis every 5 s)' : 'replicas unknown: Redis does not answer');
  else {
    lines.push(['REPLICA'.padEnd(14), 'HOST'.padEnd(20), 'PID'.padEnd(8), 'VERSION'.padEnd(9), 'CONFIG'.padEnd(14), 'STARTED'.padEnd(25), 'SEEN'].join(' '));
    for (const r of s.replicas) {
      const ago = Math.max(0, Math.round((now - Date.parse(r.seen_at)) / 1000));
      lines.push([r.id.padEnd(14), r.host.slice(0, 20).padEnd(20), String(r.pid).padEnd(8), r.version.padEnd(9), (r.config + (s.drift ? '*' : '')).padEnd(14), r.started_at.padEnd(25), `${ago}s ago`].join(' '));
    }
  }
  const configs = Object.entries(s.configs);
  if (s.drift) lines.push(`config DRIFT: ${configs.length} different configs (${configs.map(([c, ids]) => `${c} on ${ids.length}`).join(', ')}); give every replica the same aam.yaml`);
  else if (configs.length === 1) lines.push(`config: all ${s.replicas.length} replicas run ${configs[0][0]}`);
  const pg = s.stores.postgres;
  lines.push(pg.ok
    ? `postgres: ok, schema ${pg.schema}${pg.schema === pg.known ? '' : pg.schema === 0 ? ` (not migrated yet: run aam migrate, or start a replica, which migrates)` : ` (this aam knows ${pg.known}: run aam migrate with the fleet's aam version)`}`
    : `postgres: DOWN (${pg.error})`);
  lines.push(s.stores.redis.ok ? 'redis: ok' : `redis: DOWN (${s.stores.redis.error})`);
  return lines;
}
