// Virtual keys: `aam_<secret>` bound to one Agent. Only sha256(secret) is stored. A key has a
// stable id; rotation adds a new secret (a new generation) to the same id and lets the old one
// live for a grace period. The whole table is mirrored in memory (hash -> key) so authentication
// is a Map lookup.
// Another process (the CLI) that changes keys touches a signal file next to the database; the
// server watches it (inotify) and re-reads the tables before the next request. `PRAGMA
// data_version` (5 us, too slow per request) is only the once-a-second backstop.
import { mkdirSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { transaction } from '../store/sqlite.ts';
import { hashKey, newSecret, newKeyId as newId } from '../store/key-secrets.ts';
import { KeyMirror } from '../store/key-mirror.ts';
import type { KeyAuth, KeyBook, KeyListing, KeyRecord } from '../store/types.ts';

export type { KeyAuth, KeyListing, KeyRecord } from '../store/types.ts';
export { KEY_PREFIX, hashKey, generationOf } from '../store/key-secrets.ts';

const BACKSTOP_MS = 1000;
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
  readonly #mirror = new KeyMirror();

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
    const keys = this.#db.prepare('SELECT id, agent, name, created_at, revoked_at, expires_at FROM keys').all().map((r) => {
      const row = r as { id: string; agent: string; name: string | null; created_at: string; revoked_at: string | null; expires_at: string | null };
      return { id: row.id, agent: row.agent, name: row.name, createdAt: row.created_at, revokedAt: row.revoked_at, expiresAt: row.expires_at };
    });
    const secrets = this.#db.prepare('SELECT hash, key_id, expires_at FROM key_secrets').all() as Array<{ hash: string; key_id: string; expires_at: number | null }>;
    this.#mirror.replaceAll(keys, secrets);
  }

  /** Entries in the presented-secret cache (tests: misses must not be cached). */
  get cachedSecrets(): number { return this.#mirror.cachedSecrets; }

  /** Hot path: resolve a presented secret to its key and generation, or a reason it is not valid. */
  authenticate(secret: string, now = Date.now()): KeyAuth {
    this.#refresh();
    return this.#mirror.authenticate(secret, now, () => {
      if (Date.now() - this.#missRefreshAt < MISS_REFRESH_GAP_MS) return false;
      // Maybe created a moment ago by another process (its change signal not seen yet): look once more, now.
      this.#missRefreshAt = Date.now();
      this.#refresh(true);
      return true;
    });
  }

  /**
   * For a token minted from a key: why the secret (generation) it was minted from no longer
   * authenticates (revoked, expired, rotated past its grace period), or undefined while it does.
   */
  generationProblem(keyId: string, generation: string | undefined, now = Date.now()): string | undefined {
    this.#refresh();
    return this.#mirror.generationProblem(keyId, generation, now);
  }

  /** When a token minted from this generation must expire at the latest (ms), or null. */
  generationValidUntil(generation: string): number | null {
    return this.#mirror.generationValidUntil(generation);
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
    return { key: this.#mirror.get(id)!, secret };
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
    return { key: this.#mirror.get(id)!, secret };
  }

  revoke(id: string): KeyRecord {
    const key = this.get(id);
    if (!key) throw new Error(`no API key with id ${id} (see: aam keys list)`);
    if (!key.revokedAt) this.#db.prepare('UPDATE keys SET revoked_at = ? WHERE id = ?').run(new Date().toISOString(), id);
    this.#changed();
    return this.#mirror.get(id)!;
  }

  get(id: string): KeyRecord | undefined {
    this.#refresh();
    return this.#mirror.get(id);
  }

  list(): KeyListing[] {
    this.#refresh(true);
    const counts = new Map<string, { n: number; last: string | null }>();
    for (const r of this.#db.prepare('SELECT key_id, count(*) AS n, max(created_at) AS last FROM key_secrets GROUP BY key_id').all()) {
      const row = r as { key_id: string; n: number; last: string };
      counts.set(row.key_id, { n: row.n, last: row.last });
    }
    return [...this.#mirror.keys()].map((k) => {
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

/** The embedded store behind the KeyBook seam: the same KeyStore, its changes resolved at once. */
export function embeddedKeyBook(ks: KeyStore): KeyBook {
  return {
    authenticate: (secret, now) => ks.authenticate(secret, now),
    generationProblem: (keyId, generation, now) => ks.generationProblem(keyId, generation, now),
    generationValidUntil: (generation) => ks.generationValidUntil(generation),
    get: (id) => ks.get(id),
    list: async () => ks.list(),
    create: async (agent, opts) => ks.create(agent, opts),
    rotate: async (id, grace) => ks.rotate(id, grace),
    revoke: async (id) => ks.revoke(id),
    close: () => ks.close(),
  };
}
