// The batch writer: seals (seq, prev_hash, hash) and commits events, signs checkpoints. It runs
// in a worker thread (writer-worker.ts) so hashing, encoding and SQLite I/O stay off the event
// loop that serves requests; this file is plain synchronous logic so it can be tested directly.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { GENESIS_HASH, sealLine } from './event.ts';
import { signCheckpoint } from './checkpoint.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import type { SigningKey } from './keys.ts';
import { MAX_SEGMENTS, addSegment, getMeta, insertCheckpoint, readCheckpoints, rebuildEventsView, retentionAnchor, segmentOpenedKey, segmentTables, setMeta, transaction } from './store.ts';

/** Events as sent to the writer: their JSON texts, and their index columns flattened (COLS per event, see IndexCols). */
export interface WireBatch { jsons: readonly string[]; cols: readonly (string | null)[] }
export const COLS = 5;

export interface WriteResult {
  firstSeq: number;
  lastSeq: number;
  lastHash: string;
  /** Hashes of the entries whose index was asked for (durable records). */
  hashes: Record<number, string>;
  checkpoint?: Checkpoint;
}

export interface BatchWriter {
  /** meta: [key, value] stored in the same transaction (the journal's committed offset). */
  write(batch: WireBatch, wantHashes: readonly number[], meta?: [string, string]): WriteResult;
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
  /** Start a new segment when the current one's first event is this old (retention granularity). */
  maxAgeMs: number;
  maxEvents: number;
}

export const DEFAULT_SEGMENTS: SegmentPolicy = { maxAgeMs: 86_400_000, maxEvents: 10_000_000 };

export function createBatchWriter(db: DatabaseSync, key: SigningKey, checkpointEvery: number, segments: SegmentPolicy = DEFAULT_SEGMENTS): BatchWriter {
  const newest = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'audit_seg_[0-9]*' ORDER BY name DESC LIMIT 1");
  let seg: { name: string; insert: StatementSync; opened: number; first: StatementSync } | undefined;
  /** The segment to append to: the newest one, or a new one when it is old or full. Inside the write transaction. */
  function currentSegment(headSeq: number): StatementSync {
    // Read each time: another process sharing the data dir may have started a segment.
    const name = String(newest.get()?.name);
    if (seg?.name !== name) seg = open(name);
    const first = seg.first.get();
    const full = first !== undefined && (headSeq - Number(first.seq) + 1 >= segments.maxEvents || Date.now() - seg.opened >= segments.maxAgeMs);
    if (full && segmentTables(db).length < MAX_SEGMENTS) seg = open(addSegment(db));
    return seg.insert;
  }
  function open(name: string) {
    const first = db.prepare(`SELECT seq, time FROM ${name} ORDER BY seq LIMIT 1`);
    // A segment from before this metadata existed is as old as its first event.
    const opened = Date.parse(getMeta(db, segmentOpenedKey(name)) ?? String(first.get()?.time ?? new Date().toISOString()));
    return {
      name, first, opened: Number.isNaN(opened) ? Date.now() : opened,
      insert: db.prepare(`INSERT INTO ${name} (seq, time, type, request_id, agent, decision, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    };
  }
  const tail = db.prepare('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
  let syncFull = true;
  let lastCheckpointSeq = readCheckpoints(db).reduce((m, c) => Math.max(m, c.tree_size), 0);

  /** The chain head as stored: read inside the write transaction, so even two processes sharing a data dir chain correctly. */
  function storedHead(): { seq: number; hash: string } {
    const row = tail.get();
    if (row) return { seq: Number(row.seq), hash: String(row.hash) };
    const anchor = retentionAnchor(readCheckpoints(db));
    return anchor ? { seq: anchor.tree_size, hash: anchor.head_hash } : { seq: 0, hash: GENESIS_HASH };
  }

  function checkpoint(type: CheckpointType): Checkpoint | undefined {
    const head = storedHead();
    if (head.seq === 0 || head.seq === lastCheckpointSeq) return undefined;
    const c = signCheckpoint(key, head.seq, head.hash, type);
    insertCheckpoint(db, c);
    lastCheckpointSeq = head.seq;
    return c;
  }

  return {
    head: storedHead,
    checkpoint,
    write({ jsons, cols }, wantHashes, meta) {
      const want = new Set(wantHashes);
      const hashes: Record<number, string> = {};
      // fsync only for batches someone waits on (recordDurable): the rest are already safe from
      // a process crash in the write-ahead journal, and an fsync per batch costs the hot path.
      const durable = wantHashes.length > 0;
      if (durable !== syncFull) { db.exec(`PRAGMA synchronous=${durable ? 'FULL' : 'NORMAL'}`); syncFull = durable; }
      const res = transaction(db, () => {
        const head = storedHead();
        const insert = currentSegment(head.seq);
        let seq = head.seq;
        let prev = head.hash;
        for (let i = 0; i < jsons.length; i++) {
          seq++;
          const sealed = sealLine(jsons[i], seq, prev);
          const c = i * COLS;
          insert.run(seq, cols[c], cols[c + 1], cols[c + 2], cols[c + 3], cols[c + 4], sealed.body, sealed.hash);
          prev = sealed.hash;
          if (want.has(i)) hashes[i] = sealed.hash;
        }
        if (meta) setMeta(db, meta[0], meta[1]);
        return { firstSeq: head.seq + 1, lastSeq: seq, lastHash: prev };
      });
      let cp: Checkpoint | undefined;
      if (res.lastSeq - lastCheckpointSeq >= checkpointEvery) {
        // A failed checkpoint must not fail the (already committed) batch; the next one retries.
        try { cp = checkpoint('periodic'); } catch { cp = undefined; }
      }
      return { ...res, hashes, checkpoint: cp };
    },
    prune(before, maxSeq = Number.MAX_SAFE_INTEGER) {
      return transaction(db, () => {
        const segs = segmentTables(db);
        // Whole segments only, oldest first, never the one being written: a segment goes when its
        // newest event is older than the cut (and delivered to every sink, when maxSeq says so).
        const drop: string[] = [];
        let cut: { seq: number; hash: string } | undefined;
        let deletedEvents = 0;
        for (const name of segs.slice(0, -1)) {
          const last = db.prepare(`SELECT seq, time, hash FROM ${name} ORDER BY seq DESC LIMIT 1`).get();
          if (last && (String(last.time) >= before || Number(last.seq) > maxSeq)) break;
          drop.push(name);
          if (last) cut = { seq: Number(last.seq), hash: String(last.hash) };
          deletedEvents += Number(db.prepare(`SELECT count(*) AS n FROM ${name}`).get()?.n ?? 0);
        }
        if (!cut) return { cutSeq: 0, deletedEvents: 0, segments: 0 };
        // The signed anchor the remaining chain starts from; older checkpoints are superseded by it.
        const anchor = signCheckpoint(key, cut.seq, cut.hash, 'retention');
        insertCheckpoint(db, anchor);
        db.prepare('DELETE FROM audit_checkpoints WHERE tree_size < ?').run(cut.seq);
        db.prepare("DELETE FROM audit_checkpoints WHERE tree_size = ? AND type <> 'retention'").run(cut.seq);
        for (const name of drop) { db.exec(`DROP TABLE ${name}`); db.prepare('DELETE FROM audit_meta WHERE key = ?').run(segmentOpenedKey(name)); }
        rebuildEventsView(db);
        if (lastCheckpointSeq < cut.seq) lastCheckpointSeq = cut.seq;
        return { cutSeq: cut.seq, deletedEvents, segments: drop.length, anchor };
      });
    },
  };
}
