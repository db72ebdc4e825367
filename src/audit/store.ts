// The audit database: its own file <dataDir>/audit.db so audit I/O never contends with the
// main store. Indexed columns (time, type, request_id, agent, decision) are copies of fields in
// `body` for queries; the verifier checks that they agree with the hashed body.
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditEvent } from './event.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';

export const AUDIT_DB_FILE = 'audit.db';

export function auditDbPath(dataDir: string): string {
  return join(dataDir, AUDIT_DB_FILE);
}

export function openAuditDb(dataDir: string, opts: { busyTimeoutMs?: number; readOnly?: boolean } = {}): DatabaseSync {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(auditDbPath(dataDir));
  // synchronous=FULL: a commit is on disk when it returns, which recordDurable promises.
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 200))};`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS audit_events (
      seq INTEGER PRIMARY KEY,
      time TEXT NOT NULL,
      type TEXT NOT NULL,
      request_id TEXT NOT NULL,
      agent TEXT,
      decision TEXT,
      body TEXT NOT NULL,
      hash TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events(time);
    CREATE INDEX IF NOT EXISTS audit_events_request ON audit_events(request_id);
    CREATE INDEX IF NOT EXISTS audit_events_agent ON audit_events(agent, time);
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
  return db;
}

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
export { transaction } from '../store/sqlite.ts';
