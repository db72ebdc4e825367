// The batch writer: chains (seq, prev_hash, hash) the lines a batch names in a segment file and
// commits one block row for them, signs checkpoints, applies retention. It runs in a worker
// thread (writer-worker.ts) so hashing and SQLite I/O stay off the event loop that serves
// requests; this file is plain synchronous logic so it can be tested directly.
import type { DatabaseSync } from 'node:sqlite';
import { GENESIS_HASH, chainHashLines } from './event.ts';
import { signCheckpoint } from './checkpoint.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import type { SigningKey } from './keys.ts';
import type { BlockIndex } from './store.ts';
import { checkpointInserter, getMeta, insertCheckpoint, keyIndexInserter, metaAccess, readCheckpoints, retentionAnchor, TRACE_INDEX_FROM, traceIndexInserter, transaction } from './store.ts';
import { closedKey, deleteSegment, indexedKey, readBytes } from './segment.ts';
import { appendCheckpoints } from './anchor.ts';
import { errMsg } from '../lib/error-message.ts';

/**
 * A batch as sent to the writer: the `count` lines in bytes [start, end) of segment `segment`,
 * their query keys (JSON of KEYS values per line, stored as is) and time range, and the segments
 * no process will append to any more (all their lines are in this batch or earlier ones).
 */
export interface WireBatch {
  segment: string;
  start: number;
  end: number;
  count: number;
  keys: string;
  minTime: string;
  maxTime: string;
  close: readonly string[];
  /** The lines' index keys, as log.ts collected them while sending (blockIndexer); absent: found from `keys` here. */
  index?: BlockIndex;
}

export interface WriteResult {
  firstSeq: number;
  lastSeq: number;
  lastHash: string;
  /** Hashes of the entries whose index was asked for (durable records). */
  hashes: Record<number, string>;
  checkpoint?: Checkpoint;
}

export interface BatchWriter {
  write(batch: WireBatch, wantHashes: readonly number[]): WriteResult;
  checkpoint(type: CheckpointType): Checkpoint | undefined;
  head(): { seq: number; hash: string };
  /** Retention: drop the whole segments older than `before` (and at or below `maxSeq`), anchored by a signed checkpoint. */
  prune(before: string, maxSeq?: number): PruneResult;
}

export interface PruneResult {
  /** Last seq removed (the anchor's tree size); 0 when no whole segment was old enough. */
  cutSeq: number;
  deletedEvents: number;
  segments: number;
  anchor?: Checkpoint;
}

export interface SegmentPolicy {
  /** Start a new segment file when the current one is this old (retention granularity)... */
  maxAgeMs: number;
  /** ... or holds this many events. */
  maxEvents: number;
}

export const DEFAULT_SEGMENTS: SegmentPolicy = { maxAgeMs: 86_400_000, maxEvents: 10_000_000 };

export interface CheckpointCopy {
  /** File each signed checkpoint is appended to (anchor.ts), outside the database that holds the trail. */
  path: string;
  /** A failed append: the checkpoints stay pending and go with the next one. */
  onError(message: string): void;
}

/** The largest batch read into the writer's reused buffer. */
const SCRATCH_MAX = 4 * 1024 * 1024;

/** Checkpoints not yet in the copy file are kept up to this many (the newest matter). */
const MAX_UNCOPIED = 1000;

export function createBatchWriter(db: DatabaseSync, dataDir: string, key: SigningKey, checkpointEvery: number, copy?: CheckpointCopy): BatchWriter {
  const tail = db.prepare('SELECT last_seq, last_hash FROM audit_blocks ORDER BY first_seq DESC LIMIT 1');
  const meta = metaAccess(db); // per batch: prepared once
  const insert = db.prepare('INSERT INTO audit_blocks (first_seq, last_seq, prev_hash, last_hash, min_time, max_time, segment, byte_start, byte_end, sealed, hashes, keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)');
  const indexKeys = keyIndexInserter(db);
  const indexTraces = traceIndexInserter(db);
  const addCheckpoint = checkpointInserter(db);
  let syncFull = true;
  // One read buffer for the batches (grown up to SCRATCH_MAX; a rare larger batch gets its own): a
  // fresh buffer per batch is external memory that only a GC frees, and they piled up in a busy
  // writer (12-13 MB held at c=64).
  let scratch = Buffer.allocUnsafe(64 * 1024);
  let lastCheckpointSeq = readCheckpoints(db).reduce((m, c) => Math.max(m, c.tree_size), 0);

  /** The chain head as stored: read inside the write transaction, so even two processes sharing a data dir chain correctly. */
  function storedHead(): { seq: number; hash: string } {
    const b = tail.get();
    if (b) return { seq: Number(b.last_seq), hash: String(b.last_hash) };
    const anchor = retentionAnchor(readCheckpoints(db));
    return anchor ? { seq: anchor.tree_size, hash: anchor.head_hash } : { seq: 0, hash: GENESIS_HASH };
  }

  let uncopied: Checkpoint[] = [];
  /** After the commit: a copy must never vouch for a state the database rolled back. */
  function copyOut(c: Checkpoint): void {
    if (!copy) return;
    uncopied.push(c);
    if (uncopied.length > MAX_UNCOPIED) uncopied = uncopied.slice(-MAX_UNCOPIED);
    try {
      appendCheckpoints(copy.path, uncopied);
      uncopied = [];
    } catch (e) {
      copy.onError(`audit checkpoint not appended to ${copy.path} (${uncopied.length} pending, retried with the next checkpoint): ${errMsg(e)}`);
    }
  }

  function checkpoint(type: CheckpointType): Checkpoint | undefined {
    const head = storedHead();
    if (head.seq === 0 || head.seq === lastCheckpointSeq) return undefined;
    const c = signCheckpoint(key, head.seq, head.hash, type);
    addCheckpoint(c);
    checkpointed(c);
    return c;
  }

  /** After the commit that stored c. */
  function checkpointed(c: Checkpoint): void {
    lastCheckpointSeq = c.tree_size;
    copyOut(c);
  }

  return {
    head: storedHead,
    checkpoint,
    write({ segment, start, end, count, keys, minTime, maxTime, close, index }, wantHashes) {
      // fsync only for batches someone waits on (recordDurable): the rest are already safe from
      // a process crash in the segment file, and an fsync per batch costs the hot path.
      const durable = wantHashes.length > 0;
      if (durable !== syncFull) { db.exec(`PRAGMA synchronous=${durable ? 'FULL' : 'NORMAL'}`); syncFull = durable; }
      if (scratch.length < end - start && end - start <= SCRATCH_MAX) scratch = Buffer.allocUnsafe(Math.min(SCRATCH_MAX, Math.max(end - start, scratch.length * 2)));
      // Often a view of scratch: used only until write() returns.
      const bytes = count ? readBytes(dataDir, segment, start, end, durable, scratch) : Buffer.alloc(0);
      if (count && bytes[bytes.length - 1] !== 10) throw new Error(`audit segment ${segment}: bytes ${start}..${end} do not end a line`);
      const hashes: Record<number, string> = {};
      const res = transaction(db, () => {
        const head = storedHead();
        let seq = head.seq;
        let prev = head.hash;
        // Bytes another process already chained (it recovered the same dead file) are not chained twice.
        const done = count ? Number(meta.get(indexedKey(segment)) ?? 0) : 0;
        if (count && start >= done) {
          const all = chainHashLines(bytes, head.seq + 1, head.hash);
          if (all.length !== count) throw new Error(`audit segment ${segment} bytes ${start}..${end} hold ${all.length} lines, the batch names ${count}`);
          seq += count;
          prev = all[count - 1];
          for (const i of wantHashes) hashes[i] = all[i];
          insert.run(head.seq + 1, seq, head.hash, prev, minTime, maxTime, segment, start, end, all.join(''), keys);
          indexKeys(head.seq + 1, index ?? keys, () => bytes);
          // Trace ids from here on: the first batch of a trail that had none indexed marks where they start.
          if (meta.get(TRACE_INDEX_FROM) === undefined) meta.set(TRACE_INDEX_FROM, String(head.seq + 1));
          indexTraces(head.seq + 1, bytes, minTime, maxTime);
          meta.set(indexedKey(segment), String(end));
        }
        for (const gen of close) meta.set(closedKey(gen), new Date().toISOString());
        // Signed in the batch's own transaction: a commit of its own cost as much as a small batch's.
        // A failed checkpoint must not fail the batch; the next one retries.
        let cp: Checkpoint | undefined;
        if (seq > lastCheckpointSeq && seq - lastCheckpointSeq >= checkpointEvery) {
          try { cp = signCheckpoint(key, seq, prev, 'periodic'); addCheckpoint(cp); } catch { cp = undefined; }
        }
        return { firstSeq: head.seq + 1, lastSeq: seq, lastHash: prev, checkpoint: cp };
      });
      if (res.checkpoint) checkpointed(res.checkpoint);
      return { ...res, hashes };
    },
    prune(before, maxSeq = Number.MAX_SAFE_INTEGER) {
      const dropped: string[] = [];
      const result = transaction(db, (): PruneResult => {
        // Whole segment files only, and only a seq prefix of the chain: walk the blocks oldest
        // first while they are old enough, delivered (maxSeq) and in files no process appends to;
        // a cut is possible after a block once every file seen so far ends at or before it.
        // Only the old blocks are walked (iterated, never all loaded); a file's end comes from the
        // per-segment index.
        const endOf = db.prepare('SELECT MAX(last_seq) AS s FROM audit_blocks WHERE segment = ?');
        const fileEnd = new Map<string, number>();
        const closed = (gen: string): boolean => getMeta(db, closedKey(gen)) !== undefined;
        let cut = 0;
        let need = 0;
        let first = 0;
        for (const b of db.prepare('SELECT first_seq, last_seq, max_time, segment FROM audit_blocks ORDER BY first_seq').iterate()) {
          const gen = String(b.segment);
          if (String(b.max_time) >= before || Number(b.last_seq) > maxSeq || !closed(gen)) break;
          first ||= Number(b.first_seq);
          if (!fileEnd.has(gen)) fileEnd.set(gen, Number(endOf.get(gen)?.s ?? 0));
          need = Math.max(need, fileEnd.get(gen) ?? 0);
          if (Number(b.last_seq) >= need) cut = Number(b.last_seq);
        }
        if (cut === 0) return { cutSeq: 0, deletedEvents: 0, segments: 0 };
        const cutHash = String(db.prepare('SELECT last_hash FROM audit_blocks WHERE last_seq = ?').get(cut)?.last_hash);
        // The signed anchor the remaining chain starts from; older checkpoints are superseded by it.
        const anchor = signCheckpoint(key, cut, cutHash, 'retention');
        insertCheckpoint(db, anchor);
        db.prepare('DELETE FROM audit_checkpoints WHERE tree_size < ?').run(cut);
        db.prepare("DELETE FROM audit_checkpoints WHERE tree_size = ? AND type <> 'retention'").run(cut);
        db.prepare('DELETE FROM audit_blocks WHERE first_seq <= ?').run(cut);
        db.prepare('DELETE FROM audit_key_blocks WHERE first_seq <= ?').run(cut);
        for (const [gen, end] of fileEnd) if (end <= cut) dropped.push(gen);
        if (lastCheckpointSeq < cut) lastCheckpointSeq = cut;
        return { cutSeq: cut, deletedEvents: cut - first + 1, segments: dropped.length, anchor };
      });
      // Files go after the commit; one left by a crash here is closed and unreferenced, and the
      // next start deletes it (closed:<gen> stays in audit_meta for that).
      for (const gen of dropped) deleteSegment(dataDir, gen);
      if (result.anchor) copyOut(result.anchor);
      return result;
    },
  };
}
