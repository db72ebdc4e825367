// Exact-match response cache: a bounded in-memory LRU (entries and bytes) in front of a SQLite
// table, so answers survive restarts while memory stays bounded. A memory hit costs a Map lookup;
// a memory miss costs one primary-key read (the table is bounded too, swept of expired rows on an
// unref'd timer and after every `sweepEvery` writes).
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { ChatResult, EmbeddingsResult } from '../providers/types.ts';
import type { CacheKind } from './key.ts';

export interface CachedEntry {
  kind: CacheKind;
  result: ChatResult | EmbeddingsResult;
  /** ms since epoch when the answer was produced. */
  createdAt: number;
  route: string;
  scopeKey: string;
  /** Route version the answer was produced under (see routeVersion()); used by pruneRoutes(). */
  routeVersion?: string;
}

export interface ResponseCacheOptions {
  /** In-memory entries (default 10,000). */
  maxEntries?: number;
  /** In-memory serialized bytes (default 64 MiB). */
  maxBytes?: number;
  /** Answers larger than this are not cached at all (default 1 MiB). */
  maxEntryBytes?: number;
  /** Rows kept in SQLite; the oldest-expiring go first (default 100,000). */
  maxDiskEntries?: number;
  /** Period of the expired-row sweep in ms (default 60 s; 0 = no timer). */
  sweepIntervalMs?: number;
}

export interface CacheStats {
  hits: number; misses: number;
  /** In memory. */
  entries: number; bytes: number;
  /** In SQLite (counted on demand). */
  diskEntries: number;
  evictions: number; expired: number;
  /** Answers not cached because they exceeded maxEntryBytes. */
  skipped: number;
}

interface Item { entry: CachedEntry; expiresAt: number; bytes: number }

const SCHEMA = `CREATE TABLE IF NOT EXISTS cache_entries (
  key TEXT PRIMARY KEY, kind TEXT NOT NULL, route TEXT NOT NULL, route_version TEXT, scope_key TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries(expires_at);
CREATE INDEX IF NOT EXISTS cache_entries_route ON cache_entries(route);`;

export class ResponseCache {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly maxEntryBytes: number;
  readonly maxDiskEntries: number;
  private readonly mem = new Map<string, Item>();
  private memBytes = 0;
  private readonly counters = { hits: 0, misses: 0, evictions: 0, expired: 0, skipped: 0 };
  private readonly db: DatabaseSync | null;
  private readonly q: Record<'get' | 'put' | 'del' | 'sweep' | 'count' | 'trim', StatementSync> | null;
  private readonly timer: NodeJS.Timeout | null;
  private writesSinceSweep = 0;
  private readonly sweepEvery: number;

  /** `db` null keeps the cache in memory only (tests, or a deployment that wants no persistence). */
  constructor(db: DatabaseSync | null, opts: ResponseCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.maxBytes = opts.maxBytes ?? 64 * 1024 * 1024;
    this.maxEntryBytes = Math.min(opts.maxEntryBytes ?? 1024 * 1024, this.maxBytes);
    this.maxDiskEntries = opts.maxDiskEntries ?? 100_000;
    this.sweepEvery = Math.max(100, Math.floor(this.maxDiskEntries / 10));
    this.db = db;
    if (db) {
      db.exec(SCHEMA);
      this.q = {
        get: db.prepare('SELECT body, expires_at FROM cache_entries WHERE key = ? AND expires_at > ?'),
        put: db.prepare(`INSERT OR REPLACE INTO cache_entries (key, kind, route, route_version, scope_key, created_at, expires_at, bytes, body)
          VALUES (?,?,?,?,?,?,?,?,?)`),
        del: db.prepare('DELETE FROM cache_entries WHERE key = ?'),
        sweep: db.prepare('DELETE FROM cache_entries WHERE expires_at <= ?'),
        count: db.prepare('SELECT count(*) AS n FROM cache_entries'),
        trim: db.prepare('DELETE FROM cache_entries WHERE key IN (SELECT key FROM cache_entries ORDER BY expires_at LIMIT ?)'),
      };
    } else this.q = null;
    const every = opts.sweepIntervalMs ?? 60_000;
    this.timer = every > 0 ? setInterval(() => this.sweep(), every) : null;
    this.timer?.unref();
  }

  /**
   * The live entry for `key`, or null. `maxAgeSeconds` (from a client's `max-age=N`) rejects
   * older entries without deleting them. Returned entries are frozen: do not mutate.
   */
  get(key: string, now = Date.now(), maxAgeSeconds?: number): CachedEntry | null {
    let item = this.mem.get(key);
    if (item) {
      this.mem.delete(key);
      if (item.expiresAt <= now) { this.memBytes -= item.bytes; this.counters.expired++; item = undefined; }
      else this.mem.set(key, item); // most recently used goes last
    } else if (this.q) {
      const row = this.q.get.get(key, now) as { body: string; expires_at: number } | undefined;
      if (row) {
        item = { entry: deepFreeze(JSON.parse(row.body) as CachedEntry), expiresAt: row.expires_at, bytes: Buffer.byteLength(row.body) };
        this.remember(key, item);
      }
    }
    if (!item || (maxAgeSeconds !== undefined && now - item.entry.createdAt > maxAgeSeconds * 1000)) {
      this.counters.misses++;
      return null;
    }
    this.counters.hits++;
    return item.entry;
  }

  /** Store an answer for ttlSeconds. Returns false when it is too large to cache. */
  set(key: string, entry: CachedEntry, ttlSeconds: number, now = Date.now()): boolean {
    const body = JSON.stringify(entry);
    const bytes = Buffer.byteLength(body);
    if (bytes > this.maxEntryBytes || !(ttlSeconds > 0)) { this.counters.skipped++; return false; }
    const expiresAt = now + Math.round(ttlSeconds * 1000);
    this.drop(key);
    this.remember(key, { entry: deepFreeze(JSON.parse(body) as CachedEntry), expiresAt, bytes });
    if (this.q) {
      this.q.put.run(key, entry.kind, entry.route, entry.routeVersion ?? null, entry.scopeKey, entry.createdAt, expiresAt, bytes, body);
      if (++this.writesSinceSweep >= this.sweepEvery) this.sweep(now);
    }
    return true;
  }

  delete(key: string): void {
    this.drop(key);
    this.q?.del.run(key);
  }

  /** Remove every entry, or those of one route. */
  clear(route?: string): void {
    for (const [k, it] of this.mem) if (route === undefined || it.entry.route === route) this.drop(k);
    if (!this.db) return;
    if (route === undefined) this.db.exec('DELETE FROM cache_entries');
    else this.db.prepare('DELETE FROM cache_entries WHERE route = ?').run(route);
  }

  /**
   * After a config reload: drop entries of routes that no longer exist or whose version changed.
   * (Keys already include the version, so stale entries could never hit; this frees the space.)
   */
  pruneRoutes(current: ReadonlyMap<string, string>): number {
    let n = 0;
    const stale = (route: string, v: string | null | undefined) => current.get(route) !== (v ?? undefined);
    for (const [k, it] of this.mem) if (stale(it.entry.route, it.entry.routeVersion)) { this.drop(k); n++; }
    if (!this.db) return n;
    const groups = this.db.prepare('SELECT route, route_version AS v FROM cache_entries GROUP BY route, route_version').all() as Array<{ route: string; v: string | null }>;
    const del = this.db.prepare('DELETE FROM cache_entries WHERE route = ? AND route_version IS ?');
    for (const g of groups) if (stale(g.route, g.v)) n += Number(del.run(g.route, g.v).changes);
    return n;
  }

  /** Delete expired rows and trim the table to maxDiskEntries. Also runs on the timer. */
  sweep(now = Date.now()): number {
    this.writesSinceSweep = 0;
    let n = 0;
    for (const [k, it] of this.mem) if (it.expiresAt <= now) { this.drop(k); this.counters.expired++; }
    if (!this.q) return n;
    n += Number(this.q.sweep.run(now).changes);
    const rows = (this.q.count.get() as { n: number }).n;
    if (rows > this.maxDiskEntries) n += Number(this.q.trim.run(rows - this.maxDiskEntries).changes);
    return n;
  }

  stats(): CacheStats {
    const diskEntries = this.q ? (this.q.count.get() as { n: number }).n : this.mem.size;
    return { ...this.counters, entries: this.mem.size, bytes: this.memBytes, diskEntries };
  }

  /** Stop the sweep timer. The database belongs to the caller and stays open. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private remember(key: string, item: Item): void {
    this.mem.set(key, item);
    this.memBytes += item.bytes;
    // Evict least recently used (first in Map order) until both bounds hold.
    for (const [k] of this.mem) {
      if (this.mem.size <= this.maxEntries && this.memBytes <= this.maxBytes) break;
      if (k === key) continue;
      this.drop(k);
      this.counters.evictions++;
    }
  }

  private drop(key: string): void {
    const it = this.mem.get(key);
    if (!it) return;
    this.mem.delete(key);
    this.memBytes -= it.bytes;
  }
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    if (Array.isArray(v)) { if (v.length && typeof v[0] === 'object') for (const x of v) deepFreeze(x); }
    else for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}
