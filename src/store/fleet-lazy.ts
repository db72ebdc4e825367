// Fleet mode's drivers (postgres and ioredis: ~14 MB RSS in an idle gateway) load only when fleet
// mode is on (AAM_DATABASE_URL + AAM_REDIS_URL) or a fleet command runs: code that an embedded
// gateway also runs reaches them only through fleetDrivers(). test/idle-modules.test.ts fails if
// an embedded gateway loads them again.

import { databaseTls, redisTls, type PostgresTls, type TlsFiles } from './fleet-tls.ts';

export interface FleetEnv {
  databaseUrl: string;
  redisUrl: string;
  /** TLS to PostgreSQL from AAM_DATABASE_CA_FILE / _CERT_FILE / _KEY_FILE (fleet-tls.ts); absent: the URL's sslmode decides. */
  databaseTls?: PostgresTls;
  /** PEMs from AAM_REDIS_CA_FILE (trusted instead of Node's bundled CAs) and AAM_REDIS_CERT_FILE / _KEY_FILE (client certificate); rediss:// only. */
  redisTls?: TlsFiles;
}

/** The fleet URLs and TLS files from the environment; null for embedded mode. Only one of the two URLs is an error. */
export function fleetEnv(env: NodeJS.ProcessEnv): FleetEnv | null {
  const databaseUrl = env.AAM_DATABASE_URL;
  const redisUrl = env.AAM_REDIS_URL;
  if (!databaseUrl && !redisUrl) return null;
  if (!databaseUrl || !redisUrl) {
    throw new Error(`fleet mode needs both AAM_DATABASE_URL (PostgreSQL: keys, settled spend) and AAM_REDIS_URL (Redis: budgets, rate limits, invalidations); only ${databaseUrl ? 'AAM_DATABASE_URL' : 'AAM_REDIS_URL'} is set`);
  }
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) throw new Error('AAM_DATABASE_URL must be a postgres:// URL, like postgres://aam:PASSWORD@db:5432/aam');
  if (!/^rediss?:\/\//.test(redisUrl)) throw new Error('AAM_REDIS_URL must be a redis:// or rediss:// URL, like redis://:PASSWORD@redis:6379');
  return { databaseUrl, redisUrl, databaseTls: databaseTls(env, databaseUrl), redisTls: redisTls(env, redisUrl) };
}

/** The modules that open connections to the fleet store, imported on first use. */
export async function fleetDrivers() {
  const [fleet, status, pg] = await Promise.all([import('./fleet.ts'), import('./fleet-status.ts'), import('./postgres.ts')]);
  return {
    openFleet: fleet.openFleet, startHeartbeat: status.startHeartbeat, readFleetStatus: status.readFleetStatus, formatFleetStatus: status.formatFleetStatus,
    connectPostgres: pg.connectPostgres, migrate: pg.migrate, requireSchema: pg.requireSchema, SCHEMA_VERSION: pg.SCHEMA_VERSION,
  };
}
