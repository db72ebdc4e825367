// Embedded store: one SQLite database per data dir (node:sqlite, WAL). Modules create their own
// tables with CREATE TABLE IF NOT EXISTS; nothing here knows their schemas.
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export function openDatabase(dataDir: string, file = 'aam.db'): DatabaseSync {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(join(dataDir, file));
  // WAL + NORMAL: durable across process crashes (kill -9); an fsync per checkpoint, not per commit.
  db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;');
  return db;
}

/** Run fn in one transaction (BEGIN IMMEDIATE so concurrent processes serialise on writes). */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const out = fn();
    db.exec('COMMIT');
    return out;
  } catch (e) {
    try { db.exec('ROLLBACK'); } catch { /* the failed BEGIN/COMMIT may have left no transaction */ }
    throw e;
  }
}
