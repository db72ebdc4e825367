// Fleet mode's drivers (postgres and ioredis: ~14 MB RSS in an idle gateway) load only when fleet
// mode is on (AAM_DATABASE_URL + AAM_REDIS_URL) or a fleet command runs: code that an embedded
// gateway also runs reaches them only through fleetDrivers(). test/idle-modules.test.ts fails if
// an embedded gateway loads them again.

import { readFileSync } from 'node:fs';

export interface FleetEnv {
  databaseUrl: string;
  redisUrl: string;
  /** PEM of the CA(s) that sign the Redis server's certificate (AAM_REDIS_CA_FILE), trusted instead of Node's bundled CAs; rediss:// only. */
  redisCa?: string;
}

/** The fleet URLs from the environment; null for embedded mode. Only one of the two is an error. */
export function fleetEnv(env: NodeJS.ProcessEnv): FleetEnv | null {
  const databaseUrl = env.AAM_DATABASE_URL;
  const redisUrl = env.AAM_REDIS_URL;
  if (!databaseUrl && !redisUrl) return null;
  if (!databaseUrl || !redisUrl) {
    throw new Error(`fleet mode needs both AAM_DATABASE_URL (PostgreSQL: keys, settled spend) and AAM_REDIS_URL (Redis: budgets, rate limits, invalidations); only ${databaseUrl ? 'AAM_DATABASE_URL' : 'AAM_REDIS_URL'} is set`);
  }
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) throw new Error('AAM_DATABASE_URL must be a postgres:// URL, like postgres://aam:PASSWORD@db:5432/aam');
  if (!/^rediss?:\/\//.test(redisUrl)) throw new Error('AAM_REDIS_URL must be a redis:// or rediss:// URL, like redis://:PASSWORD@redis:6379');
  const caFile = env.AAM_REDIS_CA_FILE;
  if (!caFile) return { databaseUrl, redisUrl };
  // A CA with a plain redis:// URL would be ignored, and the password sent in the clear: refuse.
  if (!/^rediss:\/\//.test(redisUrl)) throw new Error('AAM_REDIS_CA_FILE is set but AAM_REDIS_URL is not rediss://: a CA is for TLS, use rediss://HOST:PORT');
  let redisCa: string;
  try { redisCa = readFileSync(caFile, 'utf8'); } catch (e) {
    throw new Error(`cannot read AAM_REDIS_CA_FILE (${caFile}): ${(e as Error).message}`, { cause: e });
  }
  if (!redisCa.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`AAM_REDIS_CA_FILE (${caFile}) holds no PEM certificate`);
  return { databaseUrl, redisUrl, redisCa };
}

/** The modules that open connections to the fleet store, imported on first use. */
export async function fleetDrivers() {
  const [fleet, status, pg] = await Promise.all([import('./fleet.ts'), import('./fleet-status.ts'), import('./postgres.ts')]);
  return {
    openFleet: fleet.openFleet, startHeartbeat: status.startHeartbeat, readFleetStatus: status.readFleetStatus, formatFleetStatus: status.formatFleetStatus,
    connectPostgres: pg.connectPostgres, migrate: pg.migrate, SCHEMA_VERSION: pg.SCHEMA_VERSION,
  };
}
