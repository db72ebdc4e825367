// Stored credentials: AES-256-GCM rows in aam's SQLite store, one row per version.
// The key is an HKDF subkey of the master key; the AAD binds each ciphertext to its name and
// version so rows cannot be swapped. A key-check row detects a wrong master key at open time,
// before anything else starts, even when no credential has been stored yet.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { transaction } from '../store/sqlite.ts';
import { CredentialError } from './errors.ts';
import type { MasterKey } from './master-key.ts';
import { Secret } from './secret.ts';

const KEEP_VERSIONS = 10;

export interface StoredVersion { secret: Secret; version: number; createdAt: string }
export interface StoredInfo { version: number; createdAt: string }

export class EncryptedStore {
  readonly #db: DatabaseSync;
  readonly #dek: Buffer;
  readonly #key: MasterKey;

  constructor(db: DatabaseSync, key: MasterKey) {
    this.#db = db;
    this.#key = key;
    this.#dek = key.derive('aam credentials aes-256-gcm v1');
    db.exec(`
      CREATE TABLE IF NOT EXISTS credential_versions (
        name TEXT NOT NULL, version INTEGER NOT NULL, nonce BLOB NOT NULL, ciphertext BLOB NOT NULL,
        tag BLOB NOT NULL, key_id TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (name, version));
      CREATE TABLE IF NOT EXISTS credential_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS credential_usage (name TEXT PRIMARY KEY, last_used TEXT NOT NULL);`);
    this.#checkKey();
  }

  #checkKey(): void {
    const check = createHmac('sha256', this.#key.derive('aam credentials key check v1')).update('check').digest('hex');
    const row = this.#db.prepare('SELECT v FROM credential_meta WHERE k = ?').get('key_check') as { v: string } | undefined;
    if (!row) {
      this.#db.prepare('INSERT OR IGNORE INTO credential_meta (k, v) VALUES (?, ?), (?, ?)').run('key_check', check, 'key_id', this.#key.keyId);
      return;
    }
    if (row.v === check) return;
    const stored = (this.#db.prepare('SELECT v FROM credential_meta WHERE k = ?').get('key_id') as { v: string } | undefined)?.v ?? 'unknown';
    const where = this.#key.source.startsWith('env') ? 'AAM_MASTER_KEY' : `key file ${this.#key.path ?? 'master.key'}`;
    const created = this.#key.source === 'file-created' ? ' (that key file was just created because none existed: restore the original master.key into the data dir)' : '';
    throw new CredentialError('master_key',
      `wrong master key: stored credentials were encrypted with key ${stored}, but ${where} holds key ${this.#key.keyId}${created}. ` +
      'Set AAM_MASTER_KEY (or restore master.key) to the original key; aam refuses to start rather than run without its credentials.');
  }

  /** Encrypt and store a new version; returns it. Older versions beyond the last 10 are pruned. */
  put(name: string, value: string): StoredInfo {
    return transaction(this.#db, () => {
      const row = this.#db.prepare('SELECT MAX(version) AS v FROM credential_versions WHERE name = ?').get(name) as { v: number | null };
      const version = (row.v ?? 0) + 1;
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.#dek, nonce);
      cipher.setAAD(aad(name, version));
      const ciphertext = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
      const createdAt = new Date().toISOString();
      this.#db.prepare('INSERT INTO credential_versions (name, version, nonce, ciphertext, tag, key_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(name, version, nonce, ciphertext, cipher.getAuthTag(), this.#key.keyId, createdAt);
      this.#db.prepare('DELETE FROM credential_versions WHERE name = ? AND version <= ?').run(name, version - KEEP_VERSIONS);
      return { version, createdAt };
    });
  }

  /** Decrypt the newest version, or undefined when none was stored. Throws on a wrong key or tampering. */
  latest(name: string): StoredVersion | undefined {
    const row = this.#db.prepare('SELECT version, nonce, ciphertext, tag, created_at FROM credential_versions WHERE name = ? ORDER BY version DESC LIMIT 1').get(name) as
      { version: number; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array; created_at: string } | undefined;
    if (!row) return undefined;
    try {
      const d = createDecipheriv('aes-256-gcm', this.#dek, row.nonce);
      d.setAAD(aad(name, row.version));
      d.setAuthTag(row.tag);
      const plain = Buffer.concat([d.update(row.ciphertext), d.final()]).toString('utf8');
      return { secret: new Secret(plain), version: row.version, createdAt: row.created_at };
    } catch {
      throw new CredentialError('master_key', `cannot decrypt stored credential "${name}" version ${row.version}: the master key is wrong or the row was altered. Restore the original master key, or store the secret again with \`aam credentials set ${name}\``, { credential: name });
    }
  }

  /** name -> newest version: a cheap poll to pick up rotations made by another process. */
  latestVersions(): Map<string, StoredInfo> {
    const rows = this.#db.prepare('SELECT name, MAX(version) AS version, created_at FROM credential_versions GROUP BY name').all() as Array<{ name: string; version: number; created_at: string }>;
    return new Map(rows.map((r) => [r.name, { version: r.version, createdAt: r.created_at }]));
  }

  lastUsed(): Map<string, string> {
    const rows = this.#db.prepare('SELECT name, last_used FROM credential_usage').all() as Array<{ name: string; last_used: string }>;
    return new Map(rows.map((r) => [r.name, r.last_used]));
  }

  recordUse(uses: ReadonlyMap<string, number>): void {
    if (uses.size === 0) return;
    const st = this.#db.prepare('INSERT INTO credential_usage (name, last_used) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_used = excluded.last_used WHERE excluded.last_used > last_used');
    transaction(this.#db, () => { for (const [name, t] of uses) st.run(name, new Date(t).toISOString()); });
  }
}

function aad(name: string, version: number): Buffer {
  return Buffer.from(`aam-credential\0${name}\0${version}`, 'utf8');
}
