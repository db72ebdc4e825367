// Small expiring state of one process that must outlive a restart (embedded mode): A2A task owners
// and push routes. A gateway restarted (a deploy, a crash) while a callee still works on a task
// must still know whose task it is, or the caller who created it is told "task not found".
// Reads never touch SQLite: the store in front keeps everything in memory, loaded once at start;
// writes are grouped behind the answers (as stored Responses are: a few milliseconds, one
// transaction), so the hot path pays a Map entry. What a hard kill loses is those milliseconds.
import type { DatabaseSync } from 'node:sqlite';
import { transaction } from './sqlite.ts';
import { seal, unseal } from './seal.ts';

export interface ExpiringRow { key: string; value: string; expires: number }

/** One space (a kind of state) of the table: rows to load at start, rows to keep. */
export interface ExpiringTable {
  /** Live rows, soonest to expire first, at most `max` (the latest to expire). */
  load(now: number, max: number): ExpiringRow[];
  /** Keep (or replace) a row; written with the others of the next few milliseconds. */
  put(key: string, value: string, expires: number): void;
  /** Write what is held now (shutdown). */
  flush(): void;
}

const GROUP_MS = 5;
/** Expired rows are removed at most this often (nothing reads them: load skips them). */
const PURGE_EVERY_MS = 10 * 60_000;

/** `space` of the `expiring_state` table in `db`; `onError` hears of a write that failed (the answers have left). */
export function openExpiringTable(db: DatabaseSync, space: string, onError: (e: unknown) => void = () => {}, now: () => number = Date.now): ExpiringTable {
  db.exec(`CREATE TABLE IF NOT EXISTS expiring_state (
    space TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires INTEGER NOT NULL, PRIMARY KEY (space, key)) WITHOUT ROWID`);
  const upsert = db.prepare('INSERT OR REPLACE INTO expiring_state (space, key, value, expires) VALUES (?, ?, ?, ?)');
  const purge = db.prepare('DELETE FROM expiring_state WHERE space = ? AND expires <= ?');
  const select = db.prepare('SELECT key, value, expires FROM (SELECT key, value, expires FROM expiring_state WHERE space = ? AND expires > ? ORDER BY expires DESC LIMIT ?) ORDER BY expires');
  const pending = new Map<string, ExpiringRow>();
  let timer: NodeJS.Timeout | undefined;
  let lastPurge = 0;

  function flush(): void {
    if (timer) { clearTimeout(timer); timer = undefined; }
    if (pending.size === 0) return;
    const rows = [...pending.values()];
    pending.clear();
    const t = now();
    try {
      transaction(db, () => {
        if (t - lastPurge > PURGE_EVERY_MS) { lastPurge = t; purge.run(space, t); }
        for (const r of rows) upsert.run(space, r.key, r.value, r.expires);
      });
    } catch (e) { onError(e); }
  }

  return {
    load: (t, max) => (select.all(space, t, max) as unknown as ExpiringRow[]).map((r) => ({ key: r.key, value: r.value, expires: Number(r.expires) })),
    put(key, value, expires) {
      pending.set(key, { key, value, expires });
      timer ??= setTimeout(flush, GROUP_MS);
    },
    flush,
  };
}

/**
 * `table` with its values sealed at rest under `key` (AES-256-GCM, a subkey of the master key):
 * for state holding a secret (a push route's tokens). A row that does not open is not loaded.
 */
export function sealedTable(table: ExpiringTable, key: Buffer): ExpiringTable {
  return {
    load: (now, max) => table.load(now, max).flatMap((r) => {
      const value = unseal(key, r.value);
      return value === null ? [] : [{ ...r, value }];
    }),
    put: (k, value, expires) => table.put(k, seal(key, value), expires),
    flush: () => table.flush(),
  };
}
