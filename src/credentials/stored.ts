// Stored credentials: AES-256-GCM (store/seal.ts), one row per version, in the store the runtime
// chose (store/credential-rows.ts: SQLite, or PostgreSQL for a fleet). The key is an HKDF subkey of
// the master key; the AAD binds each ciphertext to its name and version so rows cannot be swapped.
// A key-check row detects a wrong master key at open time, before anything else starts, even when
// no credential has been stored yet.
import { createHmac } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { sqliteCredentialRows, type CredentialRows } from '../store/credential-rows.ts';
import { sealParts, unsealParts } from '../store/seal.ts';
import { CredentialError } from './errors.ts';
import type { MasterKey } from './master-key.ts';
import { Secret } from './secret.ts';

export interface StoredVersion { secret: Secret; version: number; createdAt: string }
export interface StoredInfo { version: number; createdAt: string }

export class EncryptedStore {
  readonly #rows: CredentialRows;
  readonly #dek: Buffer;
  readonly #key: MasterKey;

  constructor(store: DatabaseSync | CredentialRows, key: MasterKey) {
    this.#rows = 'exec' in store ? sqliteCredentialRows(store) : store;
    this.#key = key;
    this.#dek = key.derive('aam credentials aes-256-gcm v1');
    this.#checkKey();
  }

  #checkKey(): void {
    const check = createHmac('sha256', this.#key.derive('aam credentials key check v1')).update('check').digest('hex');
    const stored = this.#rows.keyCheck(check, this.#key.keyId);
    if (stored.check === check) return;
    const where = this.#key.source.startsWith('env') ? 'AAM_MASTER_KEY' : `key file ${this.#key.path ?? 'master.key'}`;
    const created = this.#key.source === 'file-created' ? ' (that key file was just created because none existed: restore the original master.key into the data dir)' : '';
    throw new CredentialError('master_key',
      `wrong master key: stored credentials were encrypted with key ${stored.keyId}, but ${where} holds key ${this.#key.keyId}${created}. ` +
      'Set AAM_MASTER_KEY (or restore master.key) to the original key; aam refuses to start rather than run without its credentials.');
  }

  /** Encrypt and store a new version; resolves with it once durable. Older versions beyond the last 10 are pruned. */
  put(name: string, value: string): Promise<StoredInfo> {
    return this.#rows.put(name, this.#key.keyId, (version) => sealParts(this.#dek, value, aad(name, version)));
  }

  /** Decrypt the newest version, or undefined when none was stored. Throws on a wrong key or tampering. */
  latest(name: string): StoredVersion | undefined {
    const row = this.#rows.newest(name);
    if (!row) return undefined;
    const plain = unsealParts(this.#dek, row, aad(name, row.version));
    if (plain === null) {
      throw new CredentialError('master_key', `cannot decrypt stored credential "${name}" version ${row.version}: the master key is wrong or the row was altered. Restore the original master key, or store the secret again with \`aam credentials set ${name}\``, { credential: name });
    }
    return { secret: new Secret(plain), version: row.version, createdAt: row.createdAt };
  }

  /** name -> newest version: a cheap poll to pick up rotations made by another process. */
  latestVersions(): Map<string, StoredInfo> { return this.#rows.versions(); }

  lastUsed(): Map<string, string> { return this.#rows.lastUsed(); }

  recordUse(uses: ReadonlyMap<string, number>): void { this.#rows.recordUse(uses); }

  /** Another process stored a version: fn re-reads at once (fleet); the vault's poll covers the rest. */
  onChange(fn: () => void): void { this.#rows.onChange(fn); }
}

function aad(name: string, version: number): Buffer {
  return Buffer.from(`aam-credential\0${name}\0${version}`, 'utf8');
}
