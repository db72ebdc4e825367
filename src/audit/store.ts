// The audit database: its own file <dataDir>/audit.db so audit I/O never contends with the
// main store. Indexed columns (time, type, request_id, agent, decision) are copies of fields in
// `body` for queries; the verifier checks that they agree with the hashed body. Events live in
// segment tables (see below); read them through the audit_events view.
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from './event.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import { transaction } from '../store/sqlite.ts';

export const AUDIT_DB_FILE = 'audit.db';

export function auditDbPath(dataDir: string): string {
  return join(dataDir, AUDIT_DB_FILE);
}

export function openAuditDb(dataDir: string, opts: { busyTimeoutMs?: number } = {}): DatabaseSync {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(auditDbPath(dataDir));
  // synchronous=FULL: a commit is on disk when it returns, which recordDurable promises.
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 200))};`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS audit_checkpoints (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      tree_size INTEGER NOT NULL,
      head_hash TEXT NOT NULL,
      time TEXT NOT NULL,
      type TEXT NOT NULL,
      key_id TEXT NOT NULL,
      signature TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS audit_sink_cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated TEXT NOT NULL);
  `);
  const legacy = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'").get();
  if (legacy || segmentTables(db).length === 0) {
    transaction(db, () => {
      // Re-checked inside the write lock: the writer thread and the main thread open at once.
      if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'").get()) {
        // A data dir from before segments: its one table becomes the first segment.
        db.exec(`ALTER TABLE audit_events RENAME TO ${segmentName(1)}`);
        rebuildEventsView(db);
      } else if (segmentTables(db).length === 0) {
        addSegment(db);
      }
    });
  }
  return db;
}

// Segments: the trail is stored in a series of tables (audit_seg_000001, ...), each holding a
// contiguous seq range; the writer starts a new one when the current one is old or large, and
// retention drops whole segments (DROP TABLE: no row-by-row deletes, no index churn). The view
// audit_events is their UNION ALL, which SQLite merges in seq order using each table's keys.
const SEGMENT_PREFIX = 'audit_seg_';
/** SQLite allows at most 500 terms in a compound SELECT; past this the last segment just grows. */
export const MAX_SEGMENTS = 400;

function segmentName(n: number): string {
  return SEGMENT_PREFIX + String(n).padStart(6, '0');
}

/** Segment tables, oldest first. */
export function segmentTables(db: DatabaseSync): string[] {
  return db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'audit_seg_[0-9]*' ORDER BY name").all().map((r) => String(r.name));
}

/** Recreate the audit_events view over the current segments (inside the caller's transaction). */
export function rebuildEventsView(db: DatabaseSync): void {
  const segs = segmentTables(db);
  db.exec('DROP VIEW IF EXISTS audit_events');
  db.exec('CREATE VIEW audit_events AS ' + segs.map((t) => `SELECT seq, time, type, request_id, agent, decision, body, hash FROM ${t}`).join(' UNION ALL '));
}

/** Start a new segment after the newest one and return its table name (inside the caller's transaction). */
export function addSegment(db: DatabaseSync): string {
  const segs = segmentTables(db);
  const name = segmentName(segs.length ? Number(segs[segs.length - 1].slice(SEGMENT_PREFIX.length)) + 1 : 1);
  db.exec(`
    CREATE TABLE ${name} (
      seq INTEGER PRIMARY KEY,
      time TEXT NOT NULL,
      type TEXT NOT NULL,
      request_id TEXT NOT NULL,
      agent TEXT,
      decision TEXT,
      body TEXT NOT NULL,
      hash TEXT NOT NULL
    );
    CREATE INDEX ${name}_request ON ${name}(request_id);
    CREATE INDEX ${name}_agent ON ${name}(agent, time);
  `);
  setMeta(db, segmentOpenedKey(name), new Date().toISOString());
  rebuildEventsView(db);
  return name;
}

/**
 * The first seq whose event time is at or after `iso`, or null when every event is older. Time
 * filters use this instead of an index on time (which cost the writer ~20 % per event): events
 * are stamped when recorded and sealed in that order, so the trail is in time order and a binary
 * search over seq finds the boundary in ~log2(n) primary-key lookups.
 */
export function firstSeqAtOrAfter(db: DatabaseSync, iso: string): number | null {
  const edge = (dir: 'ASC' | 'DESC') => db.prepare(`SELECT seq, time FROM audit_events ORDER BY seq ${dir} LIMIT 1`).get();
  const first = edge('ASC');
  const last = edge('DESC');
  if (!first || !last || String(last.time) < iso) return null;
  if (String(first.time) >= iso) return Number(first.seq);
  // Invariant: time(lo) < iso <= time(hi); probes stay in (lo, top), top <= hi (gaps shrink top).
  let lo = Number(first.seq);
  let hi = Number(last.seq);
  let top = hi;
  const at = db.prepare('SELECT seq, time FROM audit_events WHERE seq >= ? ORDER BY seq LIMIT 1');
  while (top - lo > 1) {
    const probe = Math.floor((lo + top) / 2);
    const r = at.get(probe);
    if (!r || Number(r.seq) >= hi) { top = probe; continue; } // nothing stored in [probe, hi)
    if (String(r.time) >= iso) { hi = Number(r.seq); top = hi; } else lo = Number(r.seq);
  }
  return hi;
}

/** audit_meta key holding when a segment was started (its age decides rotation, not event times). */
export const segmentOpenedKey = (name: string): string => `segment_opened:${name}`;

export interface EventRow {
  seq: number;
  time: string;
  type: string;
  request_id: string;
  agent: string | null;
  decision: string | null;
  body: string;
  hash: string;
}

export function rowToEvent(row: EventRow): AuditEvent {
  return JSON.parse(row.body) as AuditEvent;
}

export function readCheckpoints(db: DatabaseSync): Checkpoint[] {
  const rows = db.prepare('SELECT tree_size, head_hash, time, type, key_id, signature FROM audit_checkpoints ORDER BY tree_size, id').all();
  return rows.map((r) => ({
    tree_size: Number(r.tree_size),
    head_hash: String(r.head_hash),
    time: String(r.time),
    type: String(r.type) as CheckpointType,
    key_id: String(r.key_id),
    signature: String(r.signature),
  }));
}

export function insertCheckpoint(db: DatabaseSync, c: Checkpoint): void {
  db.prepare('INSERT INTO audit_checkpoints (tree_size, head_hash, time, type, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)')
    .run(c.tree_size, c.head_hash, c.time, c.type, c.key_id, c.signature);
}

/** The latest retention anchor: the signed checkpoint the remaining chain starts from. */
export function retentionAnchor(checkpoints: readonly Checkpoint[]): Checkpoint | undefined {
  let best: Checkpoint | undefined;
  for (const c of checkpoints) if (c.type === 'retention' && (!best || c.tree_size > best.tree_size)) best = c;
  return best;
}

export function getMeta(db: DatabaseSync, key: string): string | undefined {
  const row = db.prepare('SELECT value FROM audit_meta WHERE key = ?').get(key);
  return row ? String(row.value) : undefined;
}

export function setMeta(db: DatabaseSync, key: string, value: string): void {
  db.prepare('INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
}

/** One transaction helper for every store (BEGIN IMMEDIATE, rollback on error). */
export { transaction };
