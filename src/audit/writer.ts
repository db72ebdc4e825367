// The batch writer: seals (seq, prev_hash, hash) and commits events, signs checkpoints. It runs
// in a worker thread (writer-worker.ts) so hashing, encoding and SQLite I/O stay off the event
// loop that serves requests; this file is plain synchronous logic so it can be tested directly.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { GENESIS_HASH, sealLine } from './event.ts';
import { signCheckpoint } from './checkpoint.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import type { SigningKey } from './keys.ts';
import { insertCheckpoint, readCheckpoints, retentionAnchor, setMeta, transaction } from './store.ts';

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
}

export function createBatchWriter(db: DatabaseSync, key: SigningKey, checkpointEvery: number): BatchWriter {
  const insert: StatementSync = db.prepare(
    'INSERT INTO audit_events (seq, time, type, request_id, agent, decision, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
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
  };
}
