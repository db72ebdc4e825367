// Virtual keys: `aam_<secret>` bound to one Agent. Only sha256(secret) is stored. A key has a
// stable id; rotation adds a new secret (a new generation) to the same id and lets the old one
// live for a grace period. The whole table is mirrored in memory (hash -> key) so authentication
// is a Map lookup.
// Another process (the CLI) that changes keys touches a signal file next to the database; the
// server watches it (inotify) and re-reads the tables before the next request. `PRAGMA
// data_version` (5 us, too slow per request) is only the once-a-second backstop.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { transaction } from '../store/sqlite.ts';

export interface KeyRecord {
  id: string;
  agent: string;
  name: string | null;
  createdAt: string;
  revokedAt: string | null;
  expiresAt: string | null;
}

export interface KeyListing extends KeyRecord { secrets: number; lastRotatedAt: string | null }

interface SecretRow { hash: string; key_id: string; expires_at: number | null; generation: string }

export type KeyAuth =
  | { ok: true; key: KeyRecord; generation: string }
  | { ok: false; reason: string };

export const KEY_PREFIX = 'aam_';

export function hashKey(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/**
 * Public name of one secret of a key (its generation), for tokens minted from it: derived from the
 * stored hash so it needs no column, and one-way so a token never carries the lookup hash itself.
 */
export function generationOf(hash: string): string {
  return createHash('sha256').update(`aam-key-generation:${hash}`).digest('base64url').slice(0, 22);
}

function newSecret(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

function newId(): string {
  return 'key_' + randomBytes(8).toString('hex');
}

const BACKSTOP_MS = 1000;
const HASH_CACHE_MAX = 10_000;
/** aam secrets are 36 characters; a much longer one is not a key and is not worth hashing. */
const MAX_SECRET_LENGTH = 256;
/** A miss re-reads the tables (a key made by the CLI a moment ago) at most this often: wrong keys cannot make every request query SQLite. */
const MISS_REFRESH_GAP_MS = 10;

export class KeyStore {
  readonly #db: DatabaseSync;
  readonly #version: StatementSync;
  readonly #signal: string | null;
  #watcher: FSWatcher | null = null;
  #dirty = false;
  #checkedAt = 0;
  #seenVersion = -1;
  #missRefreshAt = -Infinity;
  /**
   * secret -> sha256 of secrets that exist: hashing costs ~1 us, a Map hit ~50 ns. Misses are never
   * remembered, so a flood of wrong keys can neither grow this nor evict the real ones.
   */
  readonly #hashes = new Map<string, string>();
  /** hash -> secret row (expires_at for secrets in their rotation grace period). */
  #byHash = new Map<string, SecretRow>();
  /** generation -> secret row, for tokens minted from one secret. */
  #byGeneration = new Map<string, SecretRow>();
  #keys = new Map<string, KeyRecord>();

  /** signalFile: path touched on every change (e.g. <dataDir>/signals/keys.changed); watch: follow other processes' changes. */
  constructor(db: DatabaseSync, opts: { signalFile?: string; watch?: boolean } = {}) {
    this.#db = db;
    this.#signal = opts.signalFile ?? null;
    if (this.#signal) {
      try { mkdirSync(dirname(this.#signal), { recursive: true }); } catch { /* then no signal: the backstop check still applies */ }
    }
    if (this.#signal && opts.watch) {
      const name = basename(this.#signal);
      try {
        this.#watcher = watch(dirname(this.#signal), (_ev, file) => { if (file === name) this.#dirty = true; });
        this.#watcher.unref();
      } catch { /* no inotify: the backstop check still applies */ }
    }
    db.exec(`CREATE TABLE IF NOT EXISTS keys (
      id TEXT PRIMARY KEY, agent TEXT NOT NULL, name TEXT, created_at TEXT NOT NULL,
      revoked_at TEXT, expires_at TEXT);
    CREATE TABLE IF NOT EXISTS key_secrets (
      hash TEXT PRIMARY KEY, key_id TEXT NOT NULL REFERENCES keys(id), created_at TEXT NOT NULL, expires_at INTEGER);`);
    this.#version = db.prepare('PRAGMA data_version');
    this.#reload();
  }

  /** Re-read the tables if another connection committed since we last looked. */
  #refresh(force = false): void {
    const now = Date.now();
    if (!force && !this.#dirty && now - this.#checkedAt < BACKSTOP_MS) return;
    this.#dirty = false;
    this.#checkedAt = now;
    const v = (this.#version.get() as { data_version: number }).data_version;
    if (v !== this.#seenVersion) this.#reload();
  }

  #changed(): void {
    this.#reload();
    if (this.#signal) {
      try { writeFileSync(this.#signal, String(Date.now())); } catch { /* best effort; the backstop covers it */ }
    }
  }

  close(): void { this.#watcher?.close(); }

  /** The file other processes touch on a change (its directory is watched), or null. */
  get signalFile(): string | null { return this.#signal; }

  #reload(): void {
    this.#seenVersion = (this.#version.get() as { data_version: number }).data_version;
    const keys = new Map<string, KeyRecord>();
    for (const r of this.#db.prepare('SELECT id, agent, name, created_at, revoked_at, expires_at FROM keys').all()) {
      const row = r as { id: string; agent: string; name: string | null; created_at: string; revoked_at: string | null; expires_at: string | null };
      keys.set(row.id, { id: row.id, agent: row.agent, name: row.name, createdAt: row.created_at, revokedAt: row.revoked_at, expiresAt: row.expires_at });
    }
    const byHash = new Map<string, SecretRow>();
    const byGeneration = new Map<string, SecretRow>();
    for (const r of this.#db.prepare('SELECT hash, key_id, expires_at FROM key_secrets').all()) {
      const row = r as { hash: string; key_id: string; expires_at: number | null };
      const secret: SecretRow = { hash: row.hash, key_id: row.key_id, expires_at: row.expires_at, generation: generationOf(row.hash) };
      byHash.set(row.hash, secret);
      byGeneration.set(secret.generation, secret);
    }
    this.#keys = keys;
    this.#byHash = byHash;
    this.#byGeneration = byGeneration;
  }

  /** Entries in the presented-secret cache (tests: misses must not be cached). */
  get cachedSecrets(): number { return this.#hashes.size; }

  /** Why this secret row cannot authenticate now (revoked, expired, rotated past grace), or undefined. */
  #problem(row: SecretRow, now: number): string | undefined {
    const key = this.#keys.get(row.key_id);
    if (!key) return 'unknown API key';
    if (key.revokedAt) return `API key ${key.id} was revoked at ${key.revokedAt}`;
    if (key.expiresAt && Date.parse(key.expiresAt) <= now) return `API key ${key.id} expired at ${key.expiresAt}`;
    if (row.expires_at !== null && row.expires_at <= now) return `this secret of API key ${key.id} was rotated and its grace period ended; use the new secret`;
    return undefined;
  }

  /** When this secret stops authenticating by itself (key expiry or end of rotation grace), ms; null = never. */
  #validUntil(row: SecretRow): number | null {
    const keyExpiry = this.#keys.get(row.key_id)?.expiresAt;
    const ends = [keyExpiry ? Date.parse(keyExpiry) : null, row.expires_at].filter((t): t is number => t !== null);
    return ends.length ? Math.min(...ends) : null;
  }

  /** Hot path: resolve a presented secret to its key and generation, or a reason it is not valid. */
  authenticate(secret: string, now = Date.now()): KeyAuth {
    this.#refresh();
    if (secret.length > MAX_SECRET_LENGTH) return { ok: false, reason: 'unknown API key' };
    const cached = this.#hashes.get(secret);
    const hash = cached ?? hashKey(secret);
    let row = this.#byHash.get(hash);
    if (!row && Date.now() - this.#missRefreshAt >= MISS_REFRESH_GAP_MS) {
      // Maybe created a moment ago by another process (its change signal not seen yet): look once more, now.
      this.#missRefreshAt = Date.now();
      this.#refresh(true);
      row = this.#byHash.get(hash);
    }
    if (!row) return { ok: false, reason: 'unknown API key' };
    if (cached === undefined) {
      if (this.#hashes.size >= HASH_CACHE_MAX) this.#hashes.clear();
      this.#hashes.set(secret, hash);
    }
    const problem = this.#problem(row, now);
    if (problem) return { ok: false, reason: problem };
    return { ok: true, key: this.#keys.get(row.key_id)!, generation: row.generation };
  }

  /**
   * For a token minted from a key: why the secret (generation) it was minted from no longer
   * authenticates (revoked, expired, rotated past its grace period), or undefined while it does.
   */
  generationProblem(keyId: string, generation: string | undefined, now = Date.now()): string | undefined {
    this.#refresh();
    if (generation === undefined) return `the token names API key ${keyId} but not which of its secrets it was minted from; exchange the key for a new token`;
    const row = this.#byGeneration.get(generation);
    if (!row || row.key_id !== keyId) return `the secret of API key ${keyId} this token was minted from no longer exists`;
    return this.#problem(row, now);
  }

  /** When a token minted from this generation must expire at the latest (ms), or null. */
  generationValidUntil(generation: string): number | null {
    const row = this.#byGeneration.get(generation);
    return row ? this.#validUntil(row) : null;
  }

  create(agent: string, opts: { name?: string; expiresAt?: string } = {}): { key: KeyRecord; secret: string } {
    const id = newId();
    const secret = newSecret();
    const now = new Date().toISOString();
    transaction(this.#db, () => {
      this.#db.prepare('INSERT INTO keys (id, agent, name, created_at, expires_at) VALUES (?, ?, ?, ?, ?)').run(id, agent, opts.name ?? null, now, opts.expiresAt ?? null);
      this.#db.prepare('INSERT INTO key_secrets (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, NULL)').run(hashKey(secret), id, now);
    });
    this.#changed();
    return { key: this.#keys.get(id)!, secret };
  }

  /** New secret for the same key id; the current secrets stay valid for graceSeconds. */
  rotate(id: string, graceSeconds: number): { key: KeyRecord; secret: string } {
    const key = this.get(id);
    if (!key) throw new Error(`no API key with id ${id} (see: aam keys list)`);
    if (key.revokedAt) throw new Error(`API key ${id} is revoked; create a new key instead`);
    const secret = newSecret();
    const now = Date.now();
    transaction(this.#db, () => {
      this.#db.prepare('UPDATE key_secrets SET expires_at = ? WHERE key_id = ? AND (expires_at IS NULL OR expires_at > ?)').run(now + graceSeconds * 1000, id, now + graceSeconds * 1000);
      this.#db.prepare('INSERT INTO key_secrets (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, NULL)').run(hashKey(secret), id, new Date(now).toISOString());
    });
    this.#changed();
    return { key: this.#keys.get(id)!, secret };
  }

  revoke(id: string): KeyRecord {
    const key = this.get(id);
    if (!key) throw new Error(`no API key with id ${id} (see: aam keys list)`);
    if (!key.revokedAt) this.#db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ?').run(new Date().toISOString(), id);
    this.#changed();
    return this.#keys.get(id)!;
  }

  get(id: string): KeyRecord | undefined {
    this.#refresh();
    return this.#keys.get(id);
  }

  list(): KeyListing[] {
    this.#refresh(true);
    const counts = new Map<string, { n: number; last: string | null }>();
    for (const r of this.#db.prepare('SELECT key_id, count(*) AS n, max(created_at) AS last FROM key_secrets GROUP BY key_id').all()) {
      const row = r as { key_id: string; n: number; last: string };
      counts.set(row.key_id, { n: row.n, last: row.last });
    }
    return [...this.#keys.values()].map((k) => {
      const c = counts.get(k.id);
      return { ...k, secrets: c?.n ?? 0, lastRotatedAt: c && c.n > 1 ? c.last : null };
    });
  }
}

/**
 * The key store of a data dir; the server watches for changes other processes make. The signal has
 * a directory of its own: a watch on the data dir woke the gateway for every audit and SQLite write
 * there (two inotify reads and a callback per request).
 */
export function openKeyStore(db: DatabaseSync, dataDir: string, watchChanges = false): KeyStore {
  return new KeyStore(db, { signalFile: join(dataDir, 'signals', 'keys.changed'), watch: watchChanges });
}
