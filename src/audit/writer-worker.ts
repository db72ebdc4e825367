// Worker thread hosting the batch writer (see writer.ts). Messages in: write, checkpoint, prune,
// stop (idle: log.ts starts a new thread on the next request), close. Every message gets one reply
// with the same id, in order.
import { parentPort, workerData } from 'node:worker_threads';
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { createBatchWriter } from './writer.ts';
import type { PruneResult, WireBatch } from './writer.ts';
import { loadOrCreateSigningKey } from './keys.ts';
import { backfillKeyIndex, openAuditDb } from './store.ts';
import type { CheckpointType } from './checkpoint.ts';
import { errMsg } from '../lib/error-message.ts';

export interface WriterInit {
  dataDir: string;
  keyFile: string;
  busyTimeoutMs?: number;
  checkpointEvery: number;
  checkpointIntervalMs: number;
  /** Signed checkpoints are also appended here (anchor.ts). */
  checkpointFile?: string;
  /** How much this thread lowers its priority after its first batch (AuditLogOptions.writerNice). */
  writerNice: number;
}

export type WriterRequest =
  | { op: 'write'; id: number; batch: WireBatch; want: number[] }
  | { op: 'checkpoint'; id: number; type: CheckpointType }
  | { op: 'prune'; id: number; before: string; maxSeq?: number }
  | { op: 'stop'; id: number }
  | { op: 'close'; id: number };

export type WriterReply =
  | { op: 'written'; id: number; firstSeq: number; lastSeq: number; lastHash: string; hashes: Record<number, string>; checkpointed: boolean }
  | { op: 'checkpointed'; id: number; treeSize: number | null }
  | { op: 'pruned'; id: number; result: PruneResult }
  | { op: 'closed'; id: number }
  /** stop refused: the key-index backfill still has work (the thread keeps running). */
  | { op: 'busy'; id: number }
  | { op: 'failed'; id: number; error: string }
  | { op: 'alert'; message: string };

const port = parentPort;
if (!port) throw new Error('writer-worker.ts must run in a worker thread');
const init = workerData as WriterInit;

/**
 * Batches are background work (the segment file already made each event crash-safe): on a busy core
 * the writer should fill idle gaps rather than preempt a request mid-flight. Not before its first
 * batch is written, though: a request may be waiting on that commit (a tool call's intent), and a
 * thread starting at the lower priority on a loaded machine took over 2 s to open its database and
 * commit, refusing that request (load ~20 on 2 cores). Linux lets one
 * thread be reniced through its thread id; elsewhere, or without permission, nothing changes.
 * `by` is relative to the gateway's own niceness: under `nice -n 10` the writer runs at 15, not at
 * an absolute 5 (which would raise it above the gateway, and is refused to an unprivileged user).
 */
function lowerPriority(by: number): void {
  if (!by) return;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (tid > 0) setPriority(tid, Math.min(19, getPriority(tid) + by));
  } catch { /* not Linux, or not allowed: keep the default priority */ }
}
const key = loadOrCreateSigningKey(init.keyFile);
const db = openAuditDb(init.dataDir, { busyTimeoutMs: init.busyTimeoutMs });
const reply = (r: WriterReply): void => port.postMessage(r);
const copy = init.checkpointFile ? { path: init.checkpointFile, onError: (message: string) => reply({ op: 'alert', message }) } : undefined;
const writer = createBatchWriter(db, init.dataDir, key, init.checkpointEvery, copy);

const timer = setInterval(() => {
  try { writer.checkpoint('periodic'); } catch (e) { reply({ op: 'alert', message: `audit checkpoint failed: ${String(e)}` }); }
}, init.checkpointIntervalMs);
timer.unref();

// Blocks written before the key index existed are indexed in small slices between batches
// (each its own transaction), so a long old trail never holds up the writer; a failed slice
// (say, another process holds the lock) is retried later.
// The first slice runs before any message is handled, so it never races the first batch.
let backfill: NodeJS.Timeout | undefined;
function backfillSlice(): void {
  let more = true;
  try { more = backfillKeyIndex(db, 20); } catch { /* retried below */ }
  backfill = more ? setTimeout(backfillSlice, 20).unref() : undefined;
}
backfillSlice();
let lowered = false;

port.on('message', (m: WriterRequest) => {
  try {
    if (m.op === 'write') {
      const r = writer.write(m.batch, m.want);
      // Lowered before the reply, so whoever sees the first batch committed sees the thread's final priority.
      if (!lowered) { lowered = true; lowerPriority(init.writerNice); }
      reply({ op: 'written', id: m.id, firstSeq: r.firstSeq, lastSeq: r.lastSeq, lastHash: r.lastHash, hashes: r.hashes, checkpointed: r.checkpoint !== undefined });
    } else if (m.op === 'prune') {
      reply({ op: 'pruned', id: m.id, result: writer.prune(m.before, m.maxSeq) });
    } else if (m.op === 'checkpoint') {
      reply({ op: 'checkpointed', id: m.id, treeSize: writer.checkpoint(m.type)?.tree_size ?? null });
    } else if (m.op === 'stop' && backfill) {
      reply({ op: 'busy', id: m.id });
    } else {
      // stop (idle) signs what the periodic timer has not yet; close (shutdown) a close checkpoint.
      clearInterval(timer);
      clearTimeout(backfill);
      try { writer.checkpoint(m.op === 'stop' ? 'periodic' : 'close'); } finally { db.close(); }
      reply({ op: 'closed', id: m.id });
      port.close();
    }
  } catch (e) {
    reply({ op: 'failed', id: m.id, error: errMsg(e) });
  }
});
