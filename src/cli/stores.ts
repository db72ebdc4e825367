// The CLI's side of the store seam: the same stores as the gateway, chosen the same way
// (AAM_DATABASE_URL + AAM_REDIS_URL: the fleet; otherwise the data dir's SQLite).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from '../store/sqlite.ts';
import { embeddedKeyBook, openKeyStore } from '../identity/keys.ts';
import type { FleetStores } from '../runtime.ts';
import { openIssuer, type Issuer, type IssuerOptions } from '../identity/issuer.ts';
import { createJoinTokenStore, fleetJoinTokenStore, type JoinTokenStore } from '../identity/join-tokens.ts';
import { fleetDrivers, fleetEnv } from '../store/fleet-lazy.ts';
import type { KeyBook } from '../store/types.ts';
import { loadConfigHere as loadConfig } from '../config/isolated.ts';
import { openVault, type Vault } from '../credentials/vault.ts';
import { loadMasterKey } from '../credentials/master-key.ts';
import { UsageRecorder } from '../gateway/usage.ts';
import type { UsageGrouping } from '../store/types.ts';

/**
 * The fleet's stores when AAM_DATABASE_URL and AAM_REDIS_URL are set, else null. runtime.ts (the
 * whole gateway) loads only then, so an embedded `aam keys ...` starts without it.
 */
async function openFleetStores(env: NodeJS.ProcessEnv): Promise<FleetStores | null> {
  return fleetEnv(env) ? (await import('../runtime.ts')).openFleetStores(env, { follow: false }) : null;
}

/**
 * A command that reads what a gateway wrote (keys list/revoke/rotate, usage) needs that gateway's data
 * dir: a mistyped --data would otherwise be created empty and answer "no keys".
 */
function writtenDataDir(dataDir: string): string {
  if (!existsSync(join(dataDir, 'aam.db'))) throw new Error(`no aam data in ${dataDir} (no aam.db): give the gateway's data dir (--data or AAM_DATA_DIR), or a fleet's AAM_DATABASE_URL and AAM_REDIS_URL`);
  return dataDir;
}

/** Run fn with the key store of this data dir or fleet, then close what was opened; `existing`: the data dir must be there already. */
export async function withKeyBook<T>(dataDir: string, fn: (keys: KeyBook) => Promise<T>, opts: { existing?: boolean } = {}): Promise<T> {
  const fleet = await openFleetStores(process.env);
  const keys = fleet ? fleet.keys : embeddedKeyBook(openKeyStore(openDatabase(opts.existing ? writtenDataDir(dataDir) : dataDir), dataDir));
  try { return await fn(keys); } finally {
    keys.close();
    if (fleet) { await fleet.limiter.close(); await fleet.fleet.close(); }
  }
}

/** Run fn with a vault over this data dir's or the fleet's stored credentials (never strict: the CLI lists what is missing). */
export async function withVault<T>(g: { config: string; data: string }, fn: (vault: Vault) => Promise<T>): Promise<T> {
  return withFleet(async (fleet) => {
    const vault = openVault({ dataDir: g.data, db: openDatabase(g.data), rows: fleet?.credentials, config: loadConfig(g.config), strict: false, refreshMs: 0 });
    try { return await fn(vault); } finally { vault.close(); }
  });
}

async function closeFleet(fleet: FleetStores): Promise<void> {
  fleet.keys.close(); fleet.pins.close(); await fleet.credentials.close(); fleet.issuerKeys.close(); await fleet.limiter.close(); await fleet.fleet.close();
}

/** Run fn with the fleet's stores (AAM_DATABASE_URL + AAM_REDIS_URL) or null (embedded), then close them. */
async function withFleet<T>(fn: (fleet: FleetStores | null) => Promise<T>): Promise<T> {
  const fleet = await openFleetStores(process.env);
  try { return await fn(fleet); } finally { if (fleet) await closeFleet(fleet); }
}

/** Run fn with aam's issuer: the fleet's key rings (sealed under the master key) or the data dir's files. */
export function withIssuer<T>(dataDir: string, opts: IssuerOptions, fn: (issuer: Issuer) => Promise<T>): Promise<T> {
  return withFleet(async (fleet) => {
    const master = fleet ? loadMasterKey({ dataDir, env: process.env }) : null;
    return fn(await openIssuer(dataDir, { ...opts, rings: master ? fleet?.issuerKeys.rings((info) => master.derive(info)) : undefined }));
  });
}

/** Run fn with the join tokens of the fleet (one-time across replicas) or of the data dir. */
export function withJoinTokens<T>(dataDir: string, fn: (tokens: JoinTokenStore) => Promise<T>): Promise<T> {
  return withFleet((fleet) => fn(fleet ? fleetJoinTokenStore(fleet.fleet.sql) : createJoinTokenStore(openDatabase(dataDir))));
}

/** Run fn with the usage rollups of the fleet (every replica's) or of the data dir. */
export function withUsage<T>(dataDir: string, fn: (usage: { summary(by: UsageGrouping, since: number): Array<Record<string, unknown>> | Promise<Array<Record<string, unknown>>> }) => Promise<T> | T): Promise<T> {
  return withFleet(async (fleet) => fn(fleet ? fleet.usage : new UsageRecorder(openDatabase(writtenDataDir(dataDir)))));
}

/** `aam migrate`: bring the fleet database to this version's schema (replicas also do it at start). */
export async function migrateFleet(env: NodeJS.ProcessEnv): Promise<string> {
  const urls = fleetEnv(env);
  if (!urls) throw new Error('aam migrate works on the fleet database: set AAM_DATABASE_URL (and AAM_REDIS_URL); the embedded store needs no migration');
  const { connectPostgres, connectionError, migrate, SCHEMA_VERSION } = await fleetDrivers();
  const sql = connectPostgres(urls.databaseUrl, 1, { tls: urls.databaseTls });
  try {
    const r = await migrate(sql).catch((e: unknown) => { throw connectionError(e); });
    return r.applied.length
      ? `migrated the fleet database from schema ${r.from} to ${r.to} (${r.applied.map((m) => `${m.version} ${m.name}`).join('; ')})`
      : `the fleet database is at schema ${r.from}, current for this aam (${SCHEMA_VERSION}); nothing to do`;
  } finally { await sql.end({ timeout: 2 }); }
}

/** `aam fleet status`: the lines to print (a table, or JSON) and the exit code (1: drift or a store down). */
export async function fleetStatus(env: NodeJS.ProcessEnv, json: boolean): Promise<{ lines: string[]; code: number }> {
  const urls = fleetEnv(env);
  if (!urls) throw new Error('aam fleet status reads the fleet store: set AAM_DATABASE_URL and AAM_REDIS_URL (as the replicas have them)');
  const { readFleetStatus, formatFleetStatus } = await fleetDrivers();
  const s = await readFleetStatus(urls);
  return { lines: json ? [JSON.stringify(s, null, 2)] : formatFleetStatus(s), code: s.ok ? 0 : 1 };
}
