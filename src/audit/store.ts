// The audit database <dataDir>/audit.db indexes the trail; the events' bytes live in segment
// files (segment.ts). One row per block of consecutive events (a writer batch): where its lines
// are (segment, byte range), its seq range, the hash of each event, the hash before it, and the
// query keys of each event (time, type, request_id, agent, decision: copies of fields in the
// line; the verifier checks they agree). Checkpoints, metadata and sink cursors live here too.
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AuditEvent } from './event.ts';
import { sealedText } from './event.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import { transaction } from '../store/sqlite.ts';
import { closedKey, createSegment, deleteSegment, listSegments, readBytes, readLines, writtenWhole } from './segment.ts';

export const AUDIT_DB_FILE = 'audit.db';
/** Query keys stored per event, in this order (see IndexCols in event.ts). */
export const KEYS = 5;

export function auditDbPath(dataDir: string): string {
  return join(dataDir, AUDIT_DB_FILE);
}

export function openAuditDb(dataDir: string, opts: { busyTimeoutMs?: number } = {}): DatabaseSync {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new DatabaseSync(auditDbPath(dataDir));
  // synchronous=FULL: a commit is on disk when it returns, which recordDurable promises.
  db.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 200))};`);
  db.exec(`
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
    CREATE TABLE IF NOT EXISTS audit_blocks (
      first_seq INTEGER PRIMARY KEY,
      last_seq INTEGER NOT NULL,
      prev_hash TEXT NOT NULL,
      last_hash TEXT NOT NULL,
      min_time TEXT NOT NULL,
      max_time TEXT NOT NULL,
      segment TEXT NOT NULL,
      byte_start INTEGER NOT NULL,
      byte_end INTEGER NOT NULL,
      sealed INTEGER NOT NULL DEFAULT 0,
      hashes TEXT NOT NULL,
      keys TEXT NOT NULL
    );
    -- One entry per block (not per event): time bounds of queries and retention's per-file ends.
    CREATE INDEX IF NOT EXISTS audit_blocks_max_time ON audit_blocks(max_time);
    CREATE INDEX IF NOT EXISTS audit_blocks_min_time ON audit_blocks(min_time);
    CREATE INDEX IF NOT EXISTS audit_blocks_segment ON audit_blocks(segment, last_seq);
    -- Which blocks hold a request id (kind 'r'), an agent ('a') or a trace id ('t'): one row per
    -- distinct key per block, written with the block; queries by them read only those blocks.
    CREATE TABLE IF NOT EXISTS audit_key_blocks (
      kind TEXT NOT NULL,
      value TEXT NOT NULL,
      first_seq INTEGER NOT NULL,
      PRIMARY KEY (kind, value, first_seq)
    ) WITHOUT ROWID;
  `);
  if (legacyTables(db).length) migrateLegacyTables(db, dataDir);
  return db;
}

/** The data dir a connection's database lives in (where its segment files are). */
export function dataDirOf(db: DatabaseSync): string {
  return dirname(db.location() ?? '.');
}

// Before segment files, events were rows in SQLite: one table audit_events, later segment tables
// audit_seg_NNNNNN behind a view of that name. They move, once, into one segment file whose lines
// are the stored texts as they were (sealed = 1: each line carries its own seq, prev_hash, hash).
function legacyTables(db: DatabaseSync): string[] {
  return db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND (name = 'audit_events' OR name GLOB 'audit_seg_[0-9]*') ORDER BY name = 'audit_events' DESC, name").all().map((r) => String(r.name));
}

function migrateLegacyTables(db: DatabaseSync, dataDir: string): void {
  const moved = transaction(db, () => {
    const tables = legacyTables(db); // re-read under the write lock: another process may have migrated
    if (tables.length === 0) return 0;
    // A migration that died before its commit left a file no block points to: remove it (under
    // the lock, so never the file of a migration still running in another process).
    removeUnreferencedWholeFiles(db, dataDir);
    const total = tables.reduce((n, t) => n + Number(db.prepare(`SELECT count(*) AS n FROM ${t}`).get()?.n ?? 0), 0);
    // One-off and possibly long (about 10 s per million events): say so.
    if (total > 10_000) process.stderr.write(`aam: moving ${total} audit events from audit.db into a segment file (one-off, for this version's storage)...\n`);
    const seg = createSegment(dataDir, { sealed: true });
    try {
      const insert = db.prepare('INSERT INTO audit_blocks (first_seq, last_seq, prev_hash, last_hash, min_time, max_time, segment, byte_start, byte_end, sealed, hashes, keys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)');
      let block: { rows: Record<string, unknown>[] } = { rows: [] };
      let start = seg.size();
      let prev = '';
      const flush = (): void => {
        const rows = block.rows;
        if (rows.length === 0) return;
        const ends = seg.appendMany(rows.map((r) => String(r.body)));
        const keys: (string | null)[] = [];
        let min = String(rows[0].time);
        let max = min;
        for (const r of rows) {
          keys.push(String(r.time), String(r.type), String(r.request_id), r.agent === null ? null : String(r.agent), r.decision === null ? null : String(r.decision));
          if (String(r.time) < min) min = String(r.time);
          if (String(r.time) > max) max = String(r.time);
        }
        insert.run(Number(rows[0].seq), Number(rows[rows.length - 1].seq), prev, String(rows[rows.length - 1].hash), min, max, seg.gen, start, ends[ends.length - 1], rows.map((r) => String(r.hash)).join(''), JSON.stringify(keys));
        prev = String(rows[rows.length - 1].hash);
        start = ends[ends.length - 1];
        block = { rows: [] };
      };
      for (const t of tables) {
        for (const r of db.prepare(`SELECT seq, time, type, request_id, agent, decision, body, hash FROM ${t} ORDER BY seq`).iterate()) {
          const last = block.rows[block.rows.length - 1];
          if (last && (Number(r.seq) !== Number(last.seq) + 1 || block.rows.length >= 1000)) flush();
          block.rows.push(r as Record<string, unknown>);
        }
      }
      flush();
      setMeta(db, closedKey(seg.gen), new Date().toISOString());
      if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = 'audit_events'").get()) db.exec('DROP VIEW audit_events');
      for (const t of legacyTables(db)) db.exec(`DROP TABLE ${t}`);
    } catch (e) {
      seg.close();
      deleteSegment(dataDir, seg.gen);
      throw e;
    }
    seg.close();
    return total;
  });
  // The old tables' pages are free now: give the space back to the file system.
  if (moved > 0) db.exec('VACUUM');
  if (moved > 10_000) process.stderr.write(`aam: moved ${moved} audit events; \`aam audit verify\` checks them as before\n`);
}

/** Migration or merge output that no block points to: a transaction that died before its commit. Under the write lock. */
function removeUnreferencedWholeFiles(db: DatabaseSync, dataDir: string): void {
  for (const s of listSegments(dataDir)) {
    if (writtenWhole(s) && !segmentReferenced(db, s.gen)) deleteSegment(dataDir, s.gen);
  }
}

/**
 * Merge small closed segment files (each short-lived CLI process that records an admin event
 * leaves one) into one file, when there are at least `minFiles` of them. The bytes are copied
 * unchanged and each block's byte range moved in the same transaction, so hashes, seqs and
 * verification are untouched; the old files go after the commit (a crash leaves them closed and
 * unreferenced, and the next start deletes them). Returns how many files were merged.
 */
export function mergeSmallSegments(db: DatabaseSync, dataDir: string, opts: { maxBytes?: number; minFiles?: number } = {}): number {
  const maxBytes = opts.maxBytes ?? 64 * 1024;
  const candidates = listSegments(dataDir).filter((s) => s.size <= maxBytes && getMeta(db, closedKey(s.gen)) !== undefined && segmentReferenced(db, s.gen));
  if (candidates.length < (opts.minFiles ?? 16)) return 0;
  const merged: string[] = transaction(db, () => {
    removeUnreferencedWholeFiles(db, dataDir);
    const out = createSegment(dataDir, { whole: true });
    const move = db.prepare('UPDATE audit_blocks SET segment = ?, byte_start = byte_start + ?, byte_end = byte_end + ? WHERE segment = ?');
    const done: string[] = [];
    try {
      for (const s of candidates) {
        if (getMeta(db, closedKey(s.gen)) === undefined) continue; // re-checked under the lock
        const body = readBytes(dataDir, s.gen, s.headerEnd, s.size);
        const base = out.size();
        out.appendRaw(body);
        move.run(out.gen, base - s.headerEnd, base - s.headerEnd, s.gen);
        done.push(s.gen);
      }
      out.sync(); // the copies are on disk before the rows point at them
      setMeta(db, closedKey(out.gen), new Date().toISOString());
    } finally {
      out.close();
    }
    return done;
  });
  for (const gen of merged) deleteSegment(dataDir, gen);
  return merged.length;
}

/** One stored block: consecutive events first_seq..last_seq. */
export interface Block {
  first_seq: number;
  last_seq: number;
  prev_hash: string;
  /** The hash of its last event (the chain head when it is the newest block). */
  last_hash: string;
  min_time: string;
  max_time: string;
  segment: string;
  byte_start: number;
  byte_end: number;
  /** 1: the lines are complete sealed texts (migrated); 0: lines as recorded, sealed on reading. */
  sealed: number;
  /** Concatenated 64-hex hashes, one per event. */
  hashes: string;
  /** JSON array of KEYS values per event. */
  keys: string;
}

export const BLOCK_COLUMNS = 'first_seq, last_seq, prev_hash, last_hash, min_time, max_time, segment, byte_start, byte_end, sealed, hashes, keys';

function toBlock(r: Record<string, unknown>): Block {
  return {
    first_seq: Number(r.first_seq), last_seq: Number(r.last_seq), prev_hash: String(r.prev_hash), last_hash: String(r.last_hash), min_time: String(r.min_time),
    max_time: String(r.max_time), segment: String(r.segment), byte_start: Number(r.byte_start), byte_end: Number(r.byte_end),
    sealed: Number(r.sealed), hashes: String(r.hashes), keys: String(r.keys),
  };
}

/** The query keys of one event. */
export interface EventKeys {
  seq: number;
  time: string;
  type: string;
  request_id: string;
  agent: string | null;
  decision: string | null;
}

/** An event as stored: its keys, sealed text (the bytes its hash covers, with the hash) and hash. */
export interface StoredEvent extends EventKeys {
  text: string;
  hash: string;
}

/** What the key index answers: blocks holding one request id, one agent or one trace id. */
export interface IndexedKey {
  kind: 'r' | 'a' | 't';
  value: string;
}

/**
 * audit_meta: blocks with first_seq at or above this have their trace ids in audit_key_blocks
 * (kind 't'). Trace ids are not among a block's stored keys, so they are indexed from the lines
 * as the writer commits them; blocks written before are searched by scan.
 */
export const TRACE_INDEX_FROM = 'trace_index_from';

const TRACE_MEMBER = Buffer.from('"trace_id":"');
const isHex32 = (b: Buffer, at: number): boolean => {
  if (at + 33 > b.length || b[at + 32] !== 0x22) return false;
  for (let i = at; i < at + 32; i++) { const c = b[i]; if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false; }
  return true;
};

/** The distinct trace ids named in a block's lines (every "trace_id":"<32 hex>" member, as the query matches them). */
export function traceIdsOf(lines: Buffer): Set<string> {
  const out = new Set<string>();
  for (let at = lines.indexOf(TRACE_MEMBER); at >= 0; at = lines.indexOf(TRACE_MEMBER, at + TRACE_MEMBER.length)) {
    const id = at + TRACE_MEMBER.length;
    if (isHex32(lines, id)) out.add(lines.toString('latin1', id, id + 32));
  }
  return out;
}

/** Inserts a block's trace-id rows (prepared once; inside the transaction that writes the block). */
export function traceIndexInserter(db: DatabaseSync): (firstSeq: number, lines: Buffer) => void {
  const insert = db.prepare("INSERT OR IGNORE INTO audit_key_blocks (kind, value, first_seq) VALUES ('t', ?, ?)");
  return (firstSeq, lines) => { for (const id of traceIdsOf(lines)) insert.run(id, firstSeq); };
}

/** audit_meta: blocks with first_seq at or above this are in audit_key_blocks (absent: none are). */
export const KEY_INDEX_FROM = 'key_index_from';

/** The distinct index keys of a block's keys JSON (request ids and agents). */
export function indexKeysOf(keysJson: string): IndexedKey[] {
  const keys = JSON.parse(keysJson) as (string | null)[];
  const seen = new Set<string>();
  const out: IndexedKey[] = [];
  const add = (kind: 'r' | 'a', value: string | null): void => {
    if (value === null || seen.has(kind + value)) return;
    seen.add(kind + value);
    out.push({ kind, value });
  };
  for (let k = 0; k < keys.length; k += KEYS) { add('r', keys[k + 2]); add('a', keys[k + 3]); }
  return out;
}

/** Inserts a block's index rows (prepared once; call inside the transaction that writes the block). */
export function keyIndexInserter(db: DatabaseSync): (firstSeq: number, keysJson: string) => void {
  const insert = db.prepare('INSERT OR IGNORE INTO audit_key_blocks (kind, value, first_seq) VALUES (?, ?, ?)');
  return (firstSeq, keysJson) => { for (const k of indexKeysOf(keysJson)) insert.run(k.kind, k.value, firstSeq); };
}

/**
 * Index blocks written before the index existed, newest first, at most `maxBlocks` per call (one
 * transaction each, so a long trail is indexed in slices between batches). Returns whether older
 * blocks remain. The first call starts the index at the current head: every block written after
 * it is indexed by the writer in its own transaction.
 */
export function backfillKeyIndex(db: DatabaseSync, maxBlocks: number): boolean {
  if (getMeta(db, KEY_INDEX_FROM) === '0') return false; // done: no write lock taken
  return transaction(db, () => {
    const meta = metaAccess(db);
    let from = meta.get(KEY_INDEX_FROM);
    if (from === undefined) {
      from = String(Number(db.prepare('SELECT MAX(last_seq) AS s FROM audit_blocks').get()?.s ?? 0) + 1);
      meta.set(KEY_INDEX_FROM, from);
    }
    const rows = db.prepare('SELECT first_seq, keys FROM audit_blocks WHERE first_seq < ? ORDER BY first_seq DESC LIMIT ?').all(Number(from), maxBlocks);
    const add = keyIndexInserter(db);
    for (const r of rows) add(Number(r.first_seq), String(r.keys));
    const oldest = rows.length ? Number(rows[rows.length - 1].first_seq) : 0;
    meta.set(KEY_INDEX_FROM, String(rows.length < maxBlocks ? 0 : oldest));
    return rows.length === maxBlocks;
  });
}

export interface EventFilter {
  fromSeq?: number;
  toSeq?: number;
  /** ISO bounds on the event time: since inclusive, until exclusive. */
  since?: string;
  until?: string;
  desc?: boolean;
  /** Decided on the keys alone; a block's lines are read only when one of its events matches. */
  match?: (k: EventKeys) => boolean;
  /** Only blocks holding this key can match (`match` must imply it): read them through the key index. */
  indexed?: IndexedKey;
}

/** Blocks overlapping the filter's seq and time range, in seq order (or reversed). */
export function* readBlocks(db: DatabaseSync, f: EventFilter = {}): Generator<Block> {
  let from = f.fromSeq ?? 0;
  let to = f.toSeq ?? Number.MAX_SAFE_INTEGER;
  // Time bounds become seq bounds through the per-block time indexes, so a recent window of a
  // long trail reads only its own blocks; the time terms stay as filters (+ keeps them off the
  // indexes, so rows come in seq order from the primary key).
  if (f.since !== undefined) from = Math.max(from, Number(db.prepare('SELECT MIN(first_seq) AS s FROM audit_blocks WHERE max_time >= ?').get(f.since)?.s ?? Number.MAX_SAFE_INTEGER));
  if (f.until !== undefined) to = Math.min(to, Number(db.prepare('SELECT MAX(last_seq) AS s FROM audit_blocks WHERE min_time < ?').get(f.until)?.s ?? -1));
  const where = ['last_seq >= ?', 'first_seq <= ?'];
  const args: (number | string)[] = [from, to];
  if (f.since !== undefined) { where.push('+max_time >= ?'); args.push(f.since); }
  if (f.until !== undefined) { where.push('+min_time < ?'); args.push(f.until); }
  const order = `ORDER BY first_seq ${f.desc ? 'DESC' : 'ASC'}`;
  const select = (extra: string, extraArgs: (number | string)[]): Generator<Block> => (function* () {
    const sql = `SELECT ${BLOCK_COLUMNS} FROM audit_blocks WHERE ${[...where, extra].join(' AND ')} ${order}`;
    for (const r of db.prepare(sql).iterate(...args, ...extraArgs)) yield toBlock(r as Record<string, unknown>);
  })();
  const indexFrom = f.indexed ? getMeta(db, f.indexed.kind === 't' ? TRACE_INDEX_FROM : KEY_INDEX_FROM) : undefined;
  if (!f.indexed || indexFrom === undefined) { yield* select('1', []); return; }
  // Blocks from indexFrom on come through the index; older ones (still being backfilled) by scan.
  const viaIndex = select('first_seq IN (SELECT first_seq FROM audit_key_blocks WHERE kind = ? AND value = ? AND first_seq >= ?)', [f.indexed.kind, f.indexed.value, Number(indexFrom)]);
  const scanned = select('first_seq < ?', [Number(indexFrom)]);
  if (f.desc) { yield* viaIndex; yield* scanned; } else { yield* scanned; yield* viaIndex; }
}

/** The stored events of one block, in seq order (reads its segment file unless given the lines). */
export function blockEvents(dataDir: string, b: Block, lines = readLines(dataDir, b.segment, b.byte_start, b.byte_end)): StoredEvent[] {
  const keys = blockKeys(b);
  const problem = blockShapeProblem(b, lines.length, keys.length);
  if (problem) throw new Error(`audit ${problem}: run \`aam audit verify\``);
  let prev = b.prev_hash;
  return keys.map((k, i) => {
    const hash = b.hashes.slice(i * 64, i * 64 + 64);
    const text = b.sealed ? lines[i] : sealedText(lines[i], k.seq, prev, hash);
    prev = hash;
    return { ...k, text, hash };
  });
}

/** Events matching the filter, in seq order (or reversed), read block by block. */
export function* readEvents(db: DatabaseSync, f: EventFilter = {}): Generator<StoredEvent> {
  const dataDir = dataDirOf(db);
  const from = f.fromSeq ?? 0;
  const to = f.toSeq ?? Number.MAX_SAFE_INTEGER;
  const wanted = (k: EventKeys): boolean => k.seq >= from && k.seq <= to
    && (f.since === undefined || k.time >= f.since) && (f.until === undefined || k.time < f.until)
    && (f.match === undefined || f.match(k));
  for (const b of readBlocks(db, f)) {
    const keys = blockKeys(b);
    const picked: number[] = [];
    for (let i = 0; i < keys.length; i++) if (wanted(keys[i])) picked.push(i);
    if (picked.length === 0) continue; // skip reading lines nobody asked for
    // A few matches in a big block (one request, a rare agent): decode and seal only their lines.
    const events = picked.length === keys.length ? blockEvents(dataDir, b) : pickedEvents(dataDir, b, keys, picked);
    if (f.desc) events.reverse();
    yield* events;
  }
}

/** The events at positions `picked` (ascending) of one block: only their lines are decoded. */
function pickedEvents(dataDir: string, b: Block, keys: EventKeys[], picked: number[]): StoredEvent[] {
  const bytes = readBytes(dataDir, b.segment, b.byte_start, b.byte_end);
  const starts: number[] = [];
  for (let pos = 0; pos < bytes.length; pos = bytes.indexOf(10, pos) + 1 || bytes.length) starts.push(pos);
  const problem = blockShapeProblem(b, starts.length, keys.length);
  if (problem || bytes[bytes.length - 1] !== 10) throw new Error(`audit ${problem ?? `block of events ${b.first_seq}..${b.last_seq} does not end a line`}: run \`aam audit verify\``);
  starts.push(bytes.length);
  return picked.map((i) => {
    const line = bytes.toString('utf8', starts[i], starts[i + 1] - 1);
    const hash = b.hashes.slice(i * 64, i * 64 + 64);
    const prev = i === 0 ? b.prev_hash : b.hashes.slice(i * 64 - 64, i * 64);
    return { ...keys[i], text: b.sealed ? line : sealedText(line, keys[i].seq, prev, hash), hash };
  });
}

/** A block's seq range must match its number of lines, keys and hashes; what is wrong, if anything. */
export function blockShapeProblem(b: Block, lines: number, keys: number): string | undefined {
  const n = b.last_seq - b.first_seq + 1;
  if (lines === n && keys === n && b.hashes.length === n * 64) return undefined;
  return `block of events ${b.first_seq}..${b.last_seq} holds ${lines} lines, ${keys} keys and ${Math.floor(b.hashes.length / 64)} hashes`;
}

/** The keys of a block's events without reading its segment file. */
export function blockKeys(b: Block): EventKeys[] {
  const keys = JSON.parse(b.keys) as (string | null)[];
  const out: EventKeys[] = [];
  for (let k = 0, seq = b.first_seq; k < keys.length; k += KEYS, seq++) {
    out.push({ seq, time: String(keys[k]), type: String(keys[k + 1]), request_id: String(keys[k + 2]), agent: keys[k + 3], decision: keys[k + 4] });
  }
  return out;
}

export function toEvent(e: StoredEvent): AuditEvent {
  return JSON.parse(e.text) as AuditEvent;
}

/** The newest block, or undefined when the trail is empty. */
export function lastBlock(db: DatabaseSync): Block | undefined {
  const r = db.prepare(`SELECT ${BLOCK_COLUMNS} FROM audit_blocks ORDER BY first_seq DESC LIMIT 1`).get();
  return r ? toBlock(r as Record<string, unknown>) : undefined;
}

/** The first seq whose event time is at or after `iso`, or null when every event is older. */
export function firstSeqAtOrAfter(db: DatabaseSync, iso: string): number | null {
  for (const e of readEvents(db, { since: iso })) return e.seq;
  return null;
}

const CHECKPOINT_COLUMNS = 'id, tree_size, head_hash, time, type, key_id, signature';

function toCheckpoint(r: Record<string, unknown>): Checkpoint {
  return {
    tree_size: Number(r.tree_size),
    head_hash: String(r.head_hash),
    time: String(r.time),
    type: String(r.type) as CheckpointType,
    key_id: String(r.key_id),
    signature: String(r.signature),
  };
}

export function readCheckpoints(db: DatabaseSync): Checkpoint[] {
  return db.prepare(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY tree_size, id`).all().map((r) => toCheckpoint(r as Record<string, unknown>));
}

/**
 * Checkpoints in the order they were stored, after row id `afterId` (export sinks' checkpoint
 * cursor); prepared once: sinks ask after every batch they deliver.
 */
export function checkpointsAfter(db: DatabaseSync): (afterId: number, limit: number) => { id: number; checkpoint: Checkpoint }[] {
  const select = db.prepare(`SELECT ${CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE id > ? ORDER BY id LIMIT ?`);
  return (afterId, limit) => select.all(afterId, limit).map((r) => ({ id: Number(r.id), checkpoint: toCheckpoint(r as Record<string, unknown>) }));
}

/** Row id of the newest stored checkpoint (0 when none). */
export function newestCheckpointId(db: DatabaseSync): number {
  return Number(db.prepare('SELECT MAX(id) AS id FROM audit_checkpoints').get()?.id ?? 0);
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

/** Read/write audit_meta with statements prepared once (hold on to it where it runs per batch). */
export function metaAccess(db: DatabaseSync): { get(key: string): string | undefined; set(key: string, value: string): void } {
  const read = db.prepare('SELECT value FROM audit_meta WHERE key = ?');
  const write = db.prepare('INSERT INTO audit_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value');
  return {
    get: (key) => { const row = read.get(key); return row ? String(row.value) : undefined; },
    set: (key, value) => { write.run(key, value); },
  };
}

export function getMeta(db: DatabaseSync, key: string): string | undefined {
  return metaAccess(db).get(key);
}

export function setMeta(db: DatabaseSync, key: string, value: string): void {
  metaAccess(db).set(key, value);
}

/** Whether any block still points into a segment file (else nothing needs its bytes). */
export function segmentReferenced(db: DatabaseSync, gen: string): boolean {
  return db.prepare('SELECT 1 FROM audit_blocks WHERE segment = ? LIMIT 1').get(gen) !== undefined;
}

/** One transaction helper for every store (BEGIN IMMEDIATE, rollback on error). */
export { transaction };
