// Stored credentials' rows behind the store seam: AES-256-GCM parts per (name, version), a key
// check that tells a wrong master key at open, and last-use times. Encryption happens above this
// (credentials/stored.ts): a store keeps bytes it cannot read. Reads are synchronous (the vault
// resolves at start and on its poll); embedded: SQLite (here); fleet: PostgreSQL mirrored in memory
// (fleet-credentials.ts), so a version stored on one replica or by the CLI is used by all.
import type { DatabaseSync } from 'node:sqlite';
import { transaction } from './sqlite.ts';

export interface SealedRow { version: number; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array; keyId: string; createdAt: string }
export type SealFn = (version: number) => { nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array };

/** Versions kept per name: older ones are pruned when a new one is stored. */
export const KEEP_VERSIONS = 10;

export interface CredentialRows {
  /** The stored key check (written with this one when there is none yet). */
  keyCheck(check: string, keyId: string): { check: string; keyId: string };
  newest(name: string): SealedRow | undefined;
  /** name -> newest version (a cheap poll). */
  versions(): Map<string, { version: number; createdAt: string }>;
  /** Store the next version of name, sealed by seal(version); durable (fleet: on every replica within 1 s) once it resolves. */
  put(name: string, keyId: string, seal: SealFn): Promise<{ version: number; createdAt: string }>;
  lastUsed(): Map<string, string>;
  recordUse(uses: ReadonlyMap<string, number>): void;
  /** Called when another process stored a version (re-read now instead of at the next poll). */
  onChange(fn: () => void): void;
}

export function sqliteCredentialRows(db: DatabaseSync): CredentialRows {
  db.exec(`
    CREATE TABLE IF NOT EXISTS credential_versions (
      name TEXT NOT NULL, version INTEGER NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
      tag BLOB NOT NULL, key_id TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE IF NOT EXISTS credential_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS credential_usage (name TEXT PRIMARY KEY, last_used TEXT NOT NULL);`);
  const meta = db.prepare('SELECT v FROM credential_meta WHERE k = ?');
  return {
    keyCheck(check, keyId) {
      db.prepare('INSERT OR IGNORE INTO credential_meta (k, v) VALUES (?, ?), (?, ?)').run('key_check', check, 'key_id', keyId);
      return { check: (meta.get('key_check') as { v: string }).v, keyId: (meta.get('key_id') as { v: string } | undefined)?.v ?? 'unknown' };
    },
    newest(name) {
      const r = db.prepare('SELECT version, nonce, ciphertext, tag, key_id, created_at FROM credential_versions WHERE name = ? ORDER BY version DESC LIMIT 1').get(name) as
        { version: number; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array; key_id: string; created_at: string } | undefined;
      return r ? { version: r.version, nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag, keyId: r.key_id, createdAt: r.created_at } : undefined;
    },
    versions() {
      const rows = db.prepare('SELECT name, MAX(version) AS version, created_at FROM credential_versions GROUP BY name').all() as Array<{ name: string; version: number; created_at: string }>;
      return new Map(rows.map((r) => [r.name, { version: r.version, createdAt: r.created_at }]));
    },
    put(name, keyId, sealFn) {
      try {
        return Promise.resolve(transaction(db, () => {
          const row = db.prepare('SELECT MAX(version) AS v FROM credential_versions WHERE name = ?').get(name) as { v: number | null };
          const version = (row.v ?? 0) + 1;
          const s = sealFn(version);
          const createdAt = new Date().toISOString();
          db.prepare('INSERT INTO credential_versions (name, version, nonce, ciphertext, tag, key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
            .run(name, version, s.nonce, s.ciphertext, s.tag, keyId, createdAt);
          db.prepare('DELETE FROM credential_versions WHERE name = ? AND version <= ?').run(name, version - KEEP_VERSIONS);
          return { version, createdAt };
        }));
      } catch (e) { return Promise.reject(e as Error); }
    },
    lastUsed() {
      const rows = db.prepare('SELECT name, last_used FROM credential_usage').all() as Array<{ name: string; last_used: string }>;
      return new Map(rows.map((r) => [r.name, r.last_used]));
    },
    recordUse(uses) {
      if (uses.size === 0) return;
      const st = db.prepare('INSERT INTO credential_usage (name, last_used) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_used = excluded.last_used WHERE excluded.last_used > last_used');
      transaction(db, () => { for (const [name, t] of uses) st.run(name, new Date(t).toISOString()); });
    },
    onChange() { /* the vault's poll reads SQLite itself */ },
  };
}
