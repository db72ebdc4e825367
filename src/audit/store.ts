// The audit database <dataDir>/audit.db indexes the trail; the events' bytes live in segment
// files (segment.ts). One row per block of consecutive events (a writer batch): where its lines
// are (segment, byte range), its seq range, the hash of each event, the hash before it, and the
// query keys of each event (time, type, request_id, agent, decision: copies of fields in the
// line; the verifier checks they agree). Checkpoints, metadata and sink cursors live here too.
import { DatabaseSync } from 'node:sqlite';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { AuditEvent } from './event.ts';
import { planeOf, sealedText } from './event.ts';
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
    -- Which blocks hold a request id (kind 'r'), an agent ('a'), a trace id ('t'), a decision
    -- ('d'), an event type ('y') or a plane ('p'): one row per distinct key per block (request
    -- and trace ids by their bucket, requestIdBucket/TRACE_BUCKET), written with the block;
    -- queries by them read only those blocks.
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

/** Kinds of rows in the key index (audit_key_blocks). */
export type IndexKind = 'r' | 'a' | 't' | 'd' | 'y' | 'p';

/** One row of the key index: a block holds an event with this request id (bucket), agent, trace id (bucket), decision, type or plane. */
export interface IndexedKey {
  kind: IndexKind;
  value: string;
}

/** A filter the key index answers: only blocks holding one of `values` (of `kind`) can match. */
export interface KeyCondition {
  kind: IndexKind;
  values: readonly string[];
}

/**
 * audit_meta: blocks with first_seq at or above this have their trace ids in audit_key_blocks
 * (kind 't'). Trace ids are not among a block's stored keys, so they are indexed from the lines
 * as the writer commits them; blocks written before are searched by scan.
 */
export const TRACE_INDEX_FROM = 'trace_index_from';

/**
 * Searched for without its first two bytes ('"t', checked after): Buffer#indexOf looks for a
 * needle's first byte first, and '"' starts ~100 other matches per event line; from 'r' the scan
 * of a block's lines took half the time (0.6 vs 1.2-2.1 us per chat event, load ~17).
 */
const TRACE_NEEDLE = Buffer.from('race_id":"');

/** Where the value of the next "trace_id":" member at or after byte `from` starts, or -1. */
function nextTraceMember(lines: Buffer, from: number): number {
  for (let at = lines.indexOf(TRACE_NEEDLE, from + 2); at >= 0; at = lines.indexOf(TRACE_NEEDLE, at + 1)) {
    if (lines[at - 1] === 0x74 && lines[at - 2] === 0x22) return at + TRACE_NEEDLE.length;
  }
  return -1;
}

/** Lower-case hex digit byte -> its value (isHex32 has checked the bytes). */
const HEX_VALUE = new Uint8Array(256);
for (let c = 0; c < 16; c++) HEX_VALUE[c.toString(16).charCodeAt(0)] = c;
const isHex32 = (b: Buffer, at: number): boolean => {
  if (at + 33 > b.length || b[at + 32] !== 0x22) return false;
  for (let i = at; i < at + 32; i++) { const c = b[i]; if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false; }
  return true;
};

/** The distinct trace ids named in a block's lines (every "trace_id":"<32 hex>" member, as the query matches them). */
export function traceIdsOf(lines: Buffer): Set<string> {
  const out = new Set<string>();
  for (let id = nextTraceMember(lines, 0); id >= 0; id = nextTraceMember(lines, id)) {
    if (isHex32(lines, id)) out.add(lines.toString('latin1', id, id + 32));
  }
  return out;
}

/**
 * Request ids and trace ids are indexed by a prefix (a bucket), not whole: ids made close in time
 * share it, so a block holds a few buckets instead of a row per event (these rows were most of the
 * writer's cost per event). aam's request ids end in a sequence number (req_<process><counter>):
 * without the last character, 36 consecutive requests share a row. aam's trace ids start with
 * the time in ms (timeHex): such an id, when its first 12 hex digits name a time near the block's
 * events (TRACE_BUCKET_WINDOW_MS), is indexed by its first 11, a 16 ms slot (a 1 ms bucket left ~3
 * requests per row at 3000 requests/s: 0.33 rows per event, most of the index rows left; a 16 ms
 * slot is still much shorter than the time a batch collects (FLUSH_DELAY_MS), so a trace query reads as few blocks).
 * Any other trace id (random, zero-padded 64-bit, X-Ray's seconds) is indexed whole, so no foreign
 * scheme piles into one bucket. A bucket names the blocks that may hold the id; the query decides
 * per event (the request id from the block's keys, the trace id from the event's text), so results
 * are exact. Rows written before hold whole ids or 12-digit (1 ms) trace buckets: a query looks up
 * all of them (indexLookupValues).
 */
export const TRACE_BUCKET = 11;
/** The hex digits of a trace id that are its time in ms (the bucket of the version before TRACE_BUCKET: its rows are still looked up). */
const TRACE_MS_DIGITS = 12;
/** How far before the block's first event (a long request) or after its last an id's time may be to share a bucket. */
export const TRACE_BUCKET_WINDOW_MS = 3_600_000;

export function requestIdBucket(id: string): string {
  return id.length > 8 ? id.slice(0, -1) : id;
}

/** The values a query by request id or trace id looks up in the key index: the whole id (rows written before buckets, foreign trace ids) and its bucket. */
export function indexLookupValues(kind: IndexKind, values: readonly string[]): string[] {
  if (kind !== 'r' && kind !== 't') return [...values];
  const out = new Set(values);
  for (const v of values) {
    if (kind === 'r') out.add(requestIdBucket(v));
    else { out.add(v.slice(0, TRACE_BUCKET)); out.add(v.slice(0, TRACE_MS_DIGITS)); }
  }
  return [...out];
}

/**
 * The trace-id index values of a block's lines (the members traceIdsOf finds): the bucket (first
 * TRACE_BUCKET hex digits) of an id whose first 12 are a time in ms from `fromMs` to `toMs`, else the whole id.
 */
export function traceIndexValues(lines: Buffer, fromMs: number, toMs: number): Set<string> {
  const out = new Set<string>();
  let slot = -1; // the last bucket added: consecutive events mostly share it (no string made for them)
  for (let id = nextTraceMember(lines, 0); id >= 0; id = nextTraceMember(lines, id)) {
    if (!isHex32(lines, id)) continue;
    let ms = 0;
    for (let i = id; i < id + TRACE_MS_DIGITS; i++) ms = ms * 16 + HEX_VALUE[lines[i]];
    if (ms < fromMs || ms > toMs) out.add(lines.toString('latin1', id, id + 32));
    else if (Math.floor(ms / 16) !== slot) { slot = Math.floor(ms / 16); out.add(lines.toString('latin1', id, id + TRACE_BUCKET)); }
  }
  return out;
}

/** Inserts a block's trace-id rows (prepared once; inside the transaction that writes the block). */
export function traceIndexInserter(db: DatabaseSync): (firstSeq: number, lines: Buffer, minTime: string, maxTime: string) => void {
  const insert = db.prepare("INSERT OR IGNORE INTO audit_key_blocks (kind, value, first_seq) VALUES ('t', ?, ?)");
  return (firstSeq, lines, minTime, maxTime) => {
    for (const v of traceIndexValues(lines, Date.parse(minTime) - TRACE_BUCKET_WINDOW_MS, Date.parse(maxTime) + TRACE_BUCKET_WINDOW_MS)) insert.run(v, firstSeq);
  };
}

/** audit_meta: blocks with first_seq at or above this have their request ids and agents in audit_key_blocks (absent: none have; '0': all). */
export const KEY_INDEX_FROM = 'key_index_from';
/** audit_meta: the same for decisions, event types and planes (kinds 'd', 'y', 'p'), indexed since this version. */
export const FACET_INDEX_FROM = 'facet_index_from';

/** The meta key saying from which block on a kind is indexed. */
function indexMarker(kind: IndexKind): string {
  return kind === 't' ? TRACE_INDEX_FROM : kind === 'r' || kind === 'a' ? KEY_INDEX_FROM : FACET_INDEX_FROM;
}

const DECISION_PLANES = ['model', 'a2a', 'tool'] as const;
const DECISION_PLANE_MEMBERS = DECISION_PLANES.map((p) => Buffer.from(`"${p}":`));

/** What kinds of keys a block's index rows are made for (backfill: those an older version did not index). */
export interface IndexKinds { keys: boolean; facets: boolean }
const ALL_KINDS: IndexKinds = { keys: true, facets: true };

/** A block's distinct index keys, bar the planes of its decisions (those need its lines: decisionPlanes). */
export interface BlockIndex { keys: IndexedKey[]; decisions: boolean }

/**
 * Collects the distinct index keys of a block event by event: request ids and agents ('r', 'a'),
 * decisions, types and planes ('d', 'y', 'p'). log.ts feeds it each batch's events as it sends
 * them (their keys are at hand there, so the writer thread does not parse the batch's keys JSON:
 * ~0.25 us and ~240 B of its garbage per event); indexKeysOf feeds it a stored block's keys.
 */
export function blockIndexer(kinds: IndexKinds = ALL_KINDS): { add(type: string, requestId: string | null, agent: string | null, decision: string | null): void; done(): BlockIndex } {
  const seen = new Set<string>();
  const keys: IndexedKey[] = [];
  // Most events of a block repeat the previous one's agent, type, decision and request-id bucket: no key string, no Set lookup for them.
  const last: Partial<Record<IndexKind, string>> = {};
  const put = (kind: IndexKind, value: string | null): void => {
    if (value === null || last[kind] === value) return;
    last[kind] = value;
    if (seen.has(kind + value)) return;
    seen.add(kind + value);
    keys.push({ kind, value });
  };
  let decisions = false;
  return {
    add(type, requestId, agent, decision) {
      if (kinds.keys) { put('r', requestId === null ? null : requestIdBucket(requestId)); put('a', agent); }
      if (!kinds.facets) return;
      put('y', type);
      put('d', decision);
      if (type === 'decision') decisions = true;
      else put('p', planeOf({ type }));
    },
    done: () => ({ keys, decisions }),
  };
}

/**
 * A block's index keys with the planes of its decisions: a decision event's plane is what it
 * decided on, which only its line says, so a block holding decisions gets every plane whose member
 * appears in its lines (a superset is safe, the query decides per event); without the lines, every plane.
 */
export function withDecisionPlanes(index: BlockIndex, lines?: () => Buffer | undefined): IndexedKey[] {
  if (!index.decisions) return index.keys;
  const out = [...index.keys];
  const bytes = lines?.();
  DECISION_PLANES.forEach((p, i) => {
    if ((bytes === undefined || bytes.includes(DECISION_PLANE_MEMBERS[i])) && !out.some((k) => k.kind === 'p' && k.value === p)) out.push({ kind: 'p', value: p });
  });
  return out;
}

/** The distinct index keys of a stored block, from its keys JSON (blockIndexer, withDecisionPlanes). */
export function indexKeysOf(keysJson: string, lines?: () => Buffer | undefined, kinds: IndexKinds = ALL_KINDS): IndexedKey[] {
  const keys = JSON.parse(keysJson) as (string | null)[];
  const ix = blockIndexer(kinds);
  for (let k = 0; k < keys.length; k += KEYS) ix.add(String(keys[k + 1]), keys[k + 2], keys[k + 3], keys[k + 4]);
  return withDecisionPlanes(ix.done(), lines);
}

/** Inserts a block's index rows (prepared once; call inside the transaction that writes the block). */
export function keyIndexInserter(db: DatabaseSync): (firstSeq: number, keys: string | BlockIndex, lines?: () => Buffer | undefined, kinds?: IndexKinds) => void {
  const insert = db.prepare('INSERT OR IGNORE INTO audit_key_blocks (kind, value, first_seq) VALUES (?, ?, ?)');
  // keys: the block's keys JSON, or its index as log.ts collected it.
  return (firstSeq, keys, lines, kinds) => {
    for (const k of typeof keys === 'string' ? indexKeysOf(keys, lines, kinds) : withDecisionPlanes(keys, lines)) insert.run(k.kind, k.value, firstSeq);
  };
}

/** A block's lines for indexing its decisions' planes, or undefined when unreadable (every plane is then assumed). */
function linesForIndex(db: DatabaseSync, b: { segment: string; byte_start: number; byte_end: number }): Buffer | undefined {
  try { return readBytes(dataDirOf(db), b.segment, b.byte_start, b.byte_end); } catch { return undefined; }
}

/**
 * Index blocks written before the index (or its newer kinds) existed, newest first, at most
 * `maxBlocks` per call (one transaction each, so a long trail is indexed in slices between
 * batches). Returns whether older blocks remain. The first call starts each marker at the current
 * head: every block written after it is indexed by the writer in its own transaction.
 */
export function backfillKeyIndex(db: DatabaseSync, maxBlocks: number): boolean {
  if (getMeta(db, KEY_INDEX_FROM) === '0' && getMeta(db, FACET_INDEX_FROM) === '0') return false; // done: no write lock taken
  return transaction(db, () => {
    const meta = metaAccess(db);
    const head = String(Number(db.prepare('SELECT MAX(last_seq) AS s FROM audit_blocks').get()?.s ?? 0) + 1);
    const markers = [KEY_INDEX_FROM, FACET_INDEX_FROM];
    for (const m of markers) if (meta.get(m) === undefined) meta.set(m, head);
    const [keyFrom, facetFrom] = markers.map((m) => Number(meta.get(m)));
    const rows = db.prepare('SELECT first_seq, keys, segment, byte_start, byte_end FROM audit_blocks WHERE first_seq < ? ORDER BY first_seq DESC LIMIT ?')
      .all(Math.max(keyFrom, facetFrom), maxBlocks);
    const add = keyIndexInserter(db);
    for (const r of rows) {
      const seq = Number(r.first_seq);
      const kinds = { keys: seq < keyFrom, facets: seq < facetFrom };
      const b = { segment: String(r.segment), byte_start: Number(r.byte_start), byte_end: Number(r.byte_end) };
      add(seq, String(r.keys), () => linesForIndex(db, b), kinds);
    }
    const oldest = rows.length ? Number(rows[rows.length - 1].first_seq) : 0;
    const more = rows.length === maxBlocks;
    for (const [i, m] of markers.entries()) {
      const from = [keyFrom, facetFrom][i];
      if (from !== 0) meta.set(m, String(more ? Math.min(from, oldest) : 0));
    }
    return more;
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
  /** Only blocks holding one of each condition's values can match (`match` must imply them): read them through the key index. */
  indexed?: readonly KeyCondition[];
}

/** One SELECT of blocks (readBlocks runs them in order; tests EXPLAIN them). */
export interface BlockSelect {
  sql: string;
  args: (number | string)[];
}

/**
 * The SELECTs readBlocks runs for a filter, in order. Time bounds become seq bounds through the
 * per-block time indexes (the bounds' own SELECTs are returned in `bounds`), so a recent window of
 * a long trail reads only its own blocks. Key conditions go through audit_key_blocks for the blocks
 * every used kind has indexed; older blocks (still being backfilled) are scanned.
 */
export function blockSelects(db: DatabaseSync, f: EventFilter = {}): { bounds: BlockSelect[]; selects: BlockSelect[] } {
  let from = f.fromSeq ?? 0;
  let to = f.toSeq ?? Number.MAX_SAFE_INTEGER;
  const bounds: BlockSelect[] = [];
  const bound = (sql: string, arg: string, none: number): number => {
    bounds.push({ sql, args: [arg] });
    return Number(db.prepare(sql).get(arg)?.s ?? none);
  };
  // Both walk only the time index's entries (the index holds first_seq): left to itself SQLite
  // answers MIN(first_seq) by walking the table from its oldest block, or fetches every row.
  // The newest block starting before `until` ends latest, as blocks are consecutive seq ranges.
  if (f.since !== undefined) from = Math.max(from, bound('SELECT MIN(first_seq) AS s FROM audit_blocks INDEXED BY audit_blocks_max_time WHERE max_time >= ?', f.since, Number.MAX_SAFE_INTEGER));
  if (f.until !== undefined) to = Math.min(to, bound('SELECT last_seq AS s FROM audit_blocks WHERE first_seq = (SELECT MAX(first_seq) FROM audit_blocks INDEXED BY audit_blocks_min_time WHERE min_time < ?)', f.until, -1));
  // The time terms stay as filters (+ keeps them off the indexes, so rows come in seq order from the primary key).
  const where = ['last_seq >= ?', 'first_seq <= ?'];
  const args: (number | string)[] = [from, to];
  if (f.since !== undefined) { where.push('+max_time >= ?'); args.push(f.since); }
  if (f.until !== undefined) { where.push('+min_time < ?'); args.push(f.until); }
  const order = `ORDER BY first_seq ${f.desc ? 'DESC' : 'ASC'}`;
  const select = (extra: string[], extraArgs: (number | string)[]): BlockSelect => ({
    sql: `SELECT ${BLOCK_COLUMNS} FROM audit_blocks WHERE ${[...where, ...extra].join(' AND ')} ${order}`, args: [...args, ...extraArgs],
  });
  // A kind not indexed at all (absent marker) cannot narrow: `match` alone decides for it.
  const usable = (f.indexed ?? []).map((c) => ({ c, marker: getMeta(db, indexMarker(c.kind)) })).filter((u) => u.marker !== undefined);
  if (usable.length === 0) return { bounds, selects: [select([], [])] };
  const indexFrom = Math.max(...usable.map((u) => Number(u.marker)));
  const terms: string[] = [];
  const termArgs: (number | string)[] = [];
  for (const { c } of usable) {
    const values = indexLookupValues(c.kind, c.values);
    terms.push(`first_seq IN (SELECT first_seq FROM audit_key_blocks WHERE kind = ? AND value IN (${values.map(() => '?').join(', ')}) AND first_seq >= ?)`);
    termArgs.push(c.kind, ...values, indexFrom);
  }
  const viaIndex = select(terms, termArgs);
  if (indexFrom <= 1) return { bounds, selects: [viaIndex] }; // seq 1 is the first a trail has
  const scanned = select(['first_seq < ?'], [indexFrom]);
  return { bounds, selects: f.desc ? [viaIndex, scanned] : [scanned, viaIndex] };
}

/** Blocks overlapping the filter's seq and time range, in seq order (or reversed). */
export function* readBlocks(db: DatabaseSync, f: EventFilter = {}): Generator<Block> {
  for (const s of blockSelects(db, f).selects) {
    for (const r of db.prepare(s.sql).iterate(...s.args)) yield toBlock(r as Record<string, unknown>);
  }
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
  const scratch = { buf: Buffer.alloc(0) }; // reused for every block this query reads
  for (const b of readBlocks(db, f)) {
    const raw = JSON.parse(b.keys) as (string | null)[];
    const n = raw.length / KEYS;
    // One probe object refilled per event (match is a predicate): a block of a thousand events
    // that holds one match builds one EventKeys, not a thousand.
    const probe: EventKeys = { seq: 0, time: '', type: '', request_id: '', agent: null, decision: null };
    const picked: number[] = [];
    for (let i = 0; i < n; i++) if (wanted(fillKeys(probe, raw, b.first_seq, i))) picked.push(i);
    if (picked.length === 0) continue; // skip reading lines nobody asked for
    // Only the matching lines are decoded and sealed, one at a time as the caller takes them
    // (a query with a limit stops inside the newest block): one request, a rare agent, a page.
    yield* pickedEvents(dataDir, b, raw, f.desc ? picked.reverse() : picked, scratch);
  }
}

/** Event i's keys from a block's parsed keys JSON, written into `k`. */
function fillKeys(k: EventKeys, raw: (string | null)[], firstSeq: number, i: number): EventKeys {
  const at = i * KEYS;
  k.seq = firstSeq + i; k.time = String(raw[at]); k.type = String(raw[at + 1]); k.request_id = String(raw[at + 2]); k.agent = raw[at + 3]; k.decision = raw[at + 4];
  return k;
}

/**
 * The events at positions `picked` of one block (`raw`: its parsed keys), in that order, each
 * decoded when taken. The block's bytes go into `scratch` (grown as needed), which is reused only
 * after this generator is done; each event's text is its own string.
 */
function* pickedEvents(dataDir: string, b: Block, raw: (string | null)[], picked: number[], scratch: { buf: Buffer }): Generator<StoredEvent> {
  const size = b.byte_end - b.byte_start;
  if (scratch.buf.length < size) scratch.buf = Buffer.allocUnsafe(Math.max(size, 2 * scratch.buf.length));
  const bytes = readBytes(dataDir, b.segment, b.byte_start, b.byte_end, false, scratch.buf);
  const starts: number[] = [];
  for (let pos = 0; pos < bytes.length; pos = bytes.indexOf(10, pos) + 1 || bytes.length) starts.push(pos);
  const problem = blockShapeProblem(b, starts.length, raw.length / KEYS);
  if (problem || bytes[bytes.length - 1] !== 10) throw new Error(`audit ${problem ?? `block of events ${b.first_seq}..${b.last_seq} does not end a line`}: run \`aam audit verify\``);
  starts.push(bytes.length);
  for (const i of picked) {
    const k = fillKeys({} as EventKeys, raw, b.first_seq, i);
    const line = bytes.toString('utf8', starts[i], starts[i + 1] - 1);
    const hash = b.hashes.slice(i * 64, i * 64 + 64);
    const prev = i === 0 ? b.prev_hash : b.hashes.slice(i * 64 - 64, i * 64);
    yield { ...k, text: b.sealed ? line : sealedText(line, k.seq, prev, hash), hash };
  }
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
  checkpointInserter(db)(c);
}

/** insertCheckpoint with its statement prepared once (the writer's, once per checkpointEvery events). */
export function checkpointInserter(db: DatabaseSync): (c: Checkpoint) => void {
  const insert = db.prepare('INSERT INTO audit_checkpoints (tree_size, head_hash, time, type, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)');
  return (c) => { insert.run(c.tree_size, c.head_hash, c.time, c.type, c.key_id, c.signature); };
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
