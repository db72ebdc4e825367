// Fleet mode's settings from the environment: read by every command, with no driver loaded.
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
