// The CLI's side of the store seam: the same stores as the gateway, chosen the same way
// (AAM_DATABASE_URL + AAM_REDIS_URL: the fleet; otherwise the data dir's SQLite).
import { openDatabase } from '../store/sqlite.ts';
import { embeddedKeyBook, openKeyStore } from '../identity/keys.ts';
import { openFleetStores } from '../runtime.ts';
import { fleetDrivers, fleetEnv } from '../store/fleet-lazy.ts';
import type { KeyBook } from '../store/types.ts';
import { loadConfig } from '../config/load.ts';
import { openVault, type Vault } from '../credentials/vault.ts';

/** Run fn with the key store of this data dir or fleet, then close what was opened. */
export async function withKeyBook<T>(dataDir: string, fn: (keys: KeyBook) => Promise<T>): Promise<T> {
  const fleet = await openFleetStores(process.env, { follow: false });
  const keys = fleet ? fleet.keys : embeddedKeyBook(openKeyStore(openDatabase(dataDir), dataDir));
  try { return await fn(keys); } finally {
    keys.close();
    if (fleet) { await fleet.limiter.close(); await fleet.fleet.close(); }
  }
}

/** Run fn with a vault over this data dir's or the fleet's stored credentials (never strict: the CLI lists what is missing). */
export async function withVault<T>(g: { config: string; data: string }, fn: (vault: Vault) => Promise<T>): Promise<T> {
  const fleet = await openFleetStores(process.env, { follow: false });
  try {
    const vault = openVault({ dataDir: g.data, db: openDatabase(g.data), rows: fleet?.credentials, config: loadConfig(g.config), strict: false, refreshMs: 0 });
    try { return await fn(vault); } finally { vault.close(); }
  } finally {
    if (fleet) { fleet.keys.close(); fleet.pins.close(); await fleet.credentials.close(); await fleet.limiter.close(); await fleet.fleet.close(); }
  }
}

/** `aam migrate`: bring the fleet database to this version's schema (replicas also do it at start). */
export async function migrateFleet(env: NodeJS.ProcessEnv): Promise<string> {
  const urls = fleetEnv(env);
  if (!urls) throw new Error('aam migrate works on the fleet database: set AAM_DATABASE_URL (and AAM_REDIS_URL); the embedded store needs no migration');
  const { connectPostgres, migrate, SCHEMA_VERSION } = await fleetDrivers();
  const sql = connectPostgres(urls.databaseUrl, 1);
  try {
    const r = await migrate(sql);
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
