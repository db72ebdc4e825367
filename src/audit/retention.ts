// Retention: cut the trail at a point in time without breaking verification. A signed
// 'retention' checkpoint at the cut becomes the anchor the verifier starts from; everything at
// or below it is deleted as one range (the seq primary key makes it a contiguous b-tree range).
import type { AuditLog } from './log.ts';
import { signCheckpoint } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import { insertCheckpoint, transaction } from './store.ts';

export interface RetentionResult {
  /** Last seq removed (the anchor's tree size); 0 when nothing was old enough. */
  cutSeq: number;
  deletedEvents: number;
  anchor?: Checkpoint;
}

/**
 * Delete events older than `olderThan`. Runs on the log's own connection between writer batches
 * (node:sqlite is synchronous, so it cannot interleave with a batch), so the chain head is never
 * touched. Export sinks that have not delivered past the cut are not waited for: pass
 * `keepUndelivered: true` to never cut above the slowest sink cursor.
 */
export function applyRetention(log: AuditLog, olderThan: Date | string, opts: { keepUndelivered?: boolean } = {}): RetentionResult {
  const db = log.db;
  const cutoff = new Date(olderThan).toISOString();
  const row = db.prepare('SELECT seq, hash FROM audit_events WHERE time < ? ORDER BY seq DESC LIMIT 1').get(cutoff);
  if (!row) return { cutSeq: 0, deletedEvents: 0 };
  let cutSeq = Number(row.seq);
  if (opts.keepUndelivered) {
    const c = db.prepare('SELECT MIN(seq) AS s FROM audit_sink_cursors').get();
    if (c && c.s !== null) cutSeq = Math.min(cutSeq, Number(c.s));
  }
  const head = db.prepare('SELECT hash FROM audit_events WHERE seq = ?').get(cutSeq);
  if (!head) return { cutSeq: 0, deletedEvents: 0 };
  const anchor = signCheckpoint(log.signingKey, cutSeq, String(head.hash), 'retention');
  const deleted = transaction(db, () => {
    insertCheckpoint(db, anchor);
    const r = db.prepare('DELETE FROM audit_events WHERE seq <= ?').run(cutSeq);
    // Older checkpoints can no longer be compared with events; the anchor supersedes them.
    db.prepare('DELETE FROM audit_checkpoints WHERE tree_size < ?').run(cutSeq);
    db.prepare("DELETE FROM audit_checkpoints WHERE tree_size = ? AND type <> 'retention'").run(cutSeq);
    return Number(r.changes);
  });
  return { cutSeq, deletedEvents: deleted, anchor };
}
