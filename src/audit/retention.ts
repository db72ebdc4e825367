// Retention: cut the trail at a point in time without breaking verification. Whole segments
// whose events are all older than the cut are dropped (DROP TABLE, see store.ts), and a signed
// 'retention' checkpoint at the last dropped event becomes the anchor the verifier starts from.
// The work runs in the writer thread, between batches, so it never races a commit.
import type { AuditLog } from './log.ts';
import type { PruneResult } from './writer.ts';

export type RetentionResult = PruneResult;

/**
 * Drop the segments older than `olderThan`. The segment being written is never dropped, so what
 * remains can be up to one segment length (a day by default) older than the cut.
 * keepUndelivered: never drop an event an export sink has not delivered yet.
 */
export async function applyRetention(log: AuditLog, olderThan: Date | string, opts: { keepUndelivered?: boolean } = {}): Promise<RetentionResult> {
  const d = new Date(olderThan);
  if (Number.isNaN(d.getTime())) throw new Error(`retention cut "${String(olderThan)}" is not a date`);
  let maxSeq: number | undefined;
  if (opts.keepUndelivered) {
    const c = log.db.prepare('SELECT MIN(seq) AS s FROM audit_sink_cursors').get();
    if (c && c.s !== null) maxSeq = Number(c.s);
  }
  return log.prune(d.toISOString(), maxSeq);
}

/** Segment length for a retention period: a day, or shorter for short periods so cuts stay close. */
export function segmentAgeFor(periodMs: number): number {
  return Math.min(86_400_000, Math.max(60_000, Math.floor(periodMs / 4)));
}

/**
 * Apply retention now and then every `everyMs` (default hourly) until the returned stop() is
 * called. Undelivered events are kept for the export sinks. Results and failures go to the hooks.
 */
export function startRetention(log: AuditLog, periodMs: number, hooks: { onPruned(r: RetentionResult): void; onError(e: unknown): void }, everyMs = 3_600_000): () => void {
  const run = (): void => {
    applyRetention(log, new Date(Date.now() - periodMs), { keepUndelivered: true })
      .then((r) => { if (r.cutSeq) hooks.onPruned(r); }, hooks.onError);
  };
  const first = setTimeout(run, Math.min(1000, everyMs));
  const timer = setInterval(run, everyMs);
  first.unref();
  timer.unref();
  return () => { clearTimeout(first); clearInterval(timer); };
}
