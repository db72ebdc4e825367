// Export sinks run off the hot path: each reads committed events from the audit database after
// its own persistent cursor, delivers a batch, and advances the cursor only on success. A sink
// that is down is retried with exponential backoff and, once back, gets every event after its
// cursor in order. Delivery is at-least-once across crashes (the cursor moves after delivery);
// every event carries its seq, which receivers use as the idempotency key.
// Signed checkpoints go to every sink that takes them as their own record type, right after the
// events they cover (a second cursor, on the checkpoint row id): a copy of the trail's anchor
// outside the data dir, which `aam audit verify --checkpoint` holds the trail to.
import type { DatabaseSync } from 'node:sqlite';
import type { AuditEvent } from './event.ts';
import type { Checkpoint } from './checkpoint.ts';
import { checkpointsAfter, lastBlock, metaAccess, newestCheckpointId, readEvents, toEvent } from './store.ts';
import type { StoredEvent } from './store.ts';
import { errMsg } from '../lib/error-message.ts';

export interface AuditSink {
  /** Stable name: the cursor is stored under it. */
  readonly name: string;
  /** `texts[i]` is events[i] exactly as stored (the bytes its hash covers), for sinks that must stay verifiable. */
  deliver(events: AuditEvent[], texts: string[]): Promise<void>;
  /** Signed checkpoints, oldest first, each after the events it covers were delivered. */
  deliverCheckpoints?(checkpoints: Checkpoint[]): Promise<void>;
  /** Fleet mode: signed fleet checkpoints as their JSON lines ({"kind":"fleet_checkpoint",...}), after the events they cover. */
  deliverFleetCheckpoints?(lines: string[]): Promise<void>;
  close?(): Promise<void>;
}

export interface SinkSource {
  readonly db: DatabaseSync;
  /** Optional wake-up after commits (AuditLog.onCommit); otherwise sinks poll. */
  onCommit?(listener: (lastSeq: number) => void): () => void;
}

export interface SinkRunnerOptions {
  batchSize?: number;
  /** Poll interval when idle (default 1000 ms; commits wake sinks earlier). */
  pollMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Where a sink without a stored cursor starts: the first stored event (default) or the current head. */
  startAt?: 'beginning' | 'now';
  onError?: (sink: string, error: unknown, attempt: number) => void;
}

export interface SinkStatus {
  name: string;
  cursor: number;
  delivered: number;
  /** Checkpoints delivered by this runner. */
  checkpoints: number;
  failures: number;
  lastError?: string;
}

export interface SinkRunner {
  status(): SinkStatus[];
  /** Resolves when every sink has delivered everything committed so far (rejects after timeoutMs). */
  drain(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function startSinks(source: SinkSource, sinks: readonly AuditSink[], opts: SinkRunnerOptions = {}): SinkRunner {
  const cfg = { batchSize: opts.batchSize ?? 500, pollMs: opts.pollMs ?? 1000, minBackoffMs: opts.minBackoffMs ?? 100, maxBackoffMs: opts.maxBackoffMs ?? 30_000 };
  const db = source.db;
  const readBatch = (after: number, n: number): StoredEvent[] => {
    const out: StoredEvent[] = [];
    for (const e of readEvents(db, { fromSeq: after + 1 })) { out.push(e); if (out.length >= n) break; }
    return out;
  };
  const saveCursor = db.prepare('INSERT INTO audit_sink_cursors (name, seq, updated) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, updated = excluded.updated');
  const loadCursor = db.prepare('SELECT seq FROM audit_sink_cursors WHERE name = ?');
  // The checkpoint cursor lives in audit_meta: audit_sink_cursors holds event seqs only (retention reads their minimum).
  const meta = metaAccess(db);
  const readCheckpoints = checkpointsAfter(db);
  const checkpointKey = (name: string): string => `sink_checkpoints:${name}`;
  const headSeq = (): number => lastBlock(db)?.last_seq ?? 0;
  let stopped = false;

  const states = sinks.map((sink) => {
    const stored = loadCursor.get(sink.name);
    const cursor = stored ? Number(stored.seq) : opts.startAt === 'now' ? headSeq() : 0;
    if (!stored) saveCursor.run(sink.name, cursor, new Date().toISOString());
    // A new sink from the beginning gets every checkpoint; one starting now, none before; one
    // from a version without checkpoint delivery, the newest (it anchors all before it).
    const storedCk = meta.get(checkpointKey(sink.name));
    const ckCursor = storedCk !== undefined ? Number(storedCk) : !stored && opts.startAt !== 'now' ? 0 : Math.max(0, newestCheckpointId(db) - (stored ? 1 : 0));
    return { sink, cursor, ckCursor, delivered: 0, checkpoints: 0, failures: 0, lastError: undefined as string | undefined, wake: undefined as (() => void) | undefined, done: Promise.resolve() };
  });
  type State = (typeof states)[number];

  const unsubscribe = source.onCommit?.(() => { for (const s of states) s.wake?.(); });

  const idle = (s: State, ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => { s.wake = undefined; resolve(); }, ms);
      s.wake = () => { clearTimeout(t); s.wake = undefined; resolve(); };
    });

  /** Checkpoints to send now: stored after the sink's checkpoint cursor and covering only events it already has. */
  function dueCheckpoints(s: State): { id: number; checkpoint: Checkpoint }[] {
    if (!s.sink.deliverCheckpoints) return [];
    const rows = readCheckpoints(s.ckCursor, cfg.batchSize);
    const waiting = rows.findIndex((r) => r.checkpoint.tree_size > s.cursor);
    return waiting < 0 ? rows : rows.slice(0, waiting);
  }

  /** A cursor not saved (busy database) is saved with the next delivery. */
  function persist(s: State, save: () => void): void {
    try { if (db.isOpen) save(); } catch (e) { s.lastError = `cursor not saved: ${String(e)}`; }
  }

  /** The next delivery for a sink (checkpoints due first, then events), or undefined when it has everything. */
  function nextDelivery(s: State): { send(): Promise<void>; sent(): void } | undefined {
    const cps = dueCheckpoints(s);
    if (cps.length) {
      return {
        send: () => (s.sink.deliverCheckpoints as NonNullable<AuditSink['deliverCheckpoints']>)(cps.map((r) => r.checkpoint)),
        sent: () => {
          s.ckCursor = cps[cps.length - 1].id;
          s.checkpoints += cps.length;
          persist(s, () => meta.set(checkpointKey(s.sink.name), String(s.ckCursor)));
        },
      };
    }
    const rows = readBatch(s.cursor, cfg.batchSize);
    if (rows.length === 0) return undefined;
    const events = rows.map(toEvent);
    return {
      send: () => s.sink.deliver(events, rows.map((r) => r.text)),
      sent: () => {
        s.cursor = events[events.length - 1].seq;
        s.delivered += events.length;
        persist(s, () => saveCursor.run(s.sink.name, s.cursor, new Date().toISOString()));
      },
    };
  }

  async function loop(s: State): Promise<void> {
    let attempt = 0;
    while (!stopped) {
      let next: ReturnType<typeof nextDelivery>;
      try {
        next = nextDelivery(s);
      } catch (e) {
        s.lastError = String(e);
        await idle(s, cfg.pollMs);
        continue;
      }
      if (!next) { await idle(s, cfg.pollMs); continue; }
      try {
        await next.send();
      } catch (e) {
        attempt++;
        s.failures++;
        s.lastError = errMsg(e);
        opts.onError?.(s.sink.name, e, attempt);
        const delay = Math.min(cfg.maxBackoffMs, cfg.minBackoffMs * 2 ** (attempt - 1));
        await sleepUnlessStopped(delay * (0.75 + Math.random() * 0.5));
        continue;
      }
      attempt = 0;
      s.lastError = undefined;
      next.sent();
    }
  }

  const sleepers = new Set<() => void>();
  function sleepUnlessStopped(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(t); sleepers.delete(done); resolve(); };
      const t = setTimeout(done, ms);
      sleepers.add(done);
    });
  }

  for (const s of states) s.done = loop(s);

  return {
    status: () => states.map((s) => ({ name: s.sink.name, cursor: s.cursor, delivered: s.delivered, checkpoints: s.checkpoints, failures: s.failures, lastError: s.lastError })),
    async drain(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const head = headSeq();
        const behind = states.filter((s) => s.cursor < head || dueCheckpoints(s).length > 0);
        if (behind.length === 0) return;
        if (Date.now() > deadline) throw new Error(`audit sinks not drained within ${timeoutMs} ms: ${behind.map((s) => `${s.sink.name} at ${s.cursor}/${head}${s.cursor >= head ? ' (checkpoints pending)' : ''}${s.lastError ? ' (' + s.lastError + ')' : ''}`).join(', ')}`);
        for (const s of states) s.wake?.();
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async stop() {
      stopped = true;
      unsubscribe?.();
      for (const s of states) s.wake?.();
      for (const wake of [...sleepers]) wake();
      await Promise.all(states.map((s) => s.done));
      await Promise.all(sinks.map((k) => k.close?.()));
    },
  };
}

/** What shutdown needs of the audit log: flush the queue, then sign a checkpoint of the head. */
export interface CheckpointSource {
  flush(): Promise<void>;
  checkpoint(type?: 'close'): Promise<number | null>;
}

/**
 * Graceful stop: sign the final checkpoint now and let the sinks deliver it (with the events it
 * covers) before they stop, waiting at most `waitMs`, so the last anchor is outside the data dir
 * when the process exits, not only at the next start. A sink that is down keeps its cursor: it
 * gets everything, that checkpoint included, once the gateway runs again. Resolves to what was
 * not delivered in time (null when everything was).
 */
export async function stopSinksWithCheckpoint(log: CheckpointSource, runner: SinkRunner, waitMs: number): Promise<string | null> {
  let problem: string | null = null;
  try {
    await log.flush();
    await log.checkpoint('close');
    await runner.drain(waitMs);
  } catch (e) {
    problem = errMsg(e);
  }
  await runner.stop();
  return problem;
}
