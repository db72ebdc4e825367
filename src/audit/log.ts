// The audit log: record() encodes and queues; the event's line is appended to this process's
// segment file once per event-loop turn (journaled(), before the request is acknowledged), and a
// batch writer in a worker thread (writer.ts) chains those lines in place (seq, prev_hash, hash
// at commit time, so chain order is commit order). recordDurable() resolves only once its event
// is fsynced and committed (tool intents before a side effect). The thread runs only while there
// is work (started by the first batch, stopped when idle): no acknowledgement waits for it except
// recordDurable's, which waits for the commit anyway.
// Storage failures never drop silently: events stay queued (bounded), record() returns false
// when the bound is hit, onAlert is called, and in fail_closed mode recordDurable rejects.
import type { DatabaseSync } from 'node:sqlite';
import { existsSync, readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { GENESIS_HASH, encodeEvent, indexColumns, isoClock, recomputeHash } from './event.ts';
import type { IndexCols } from './event.ts';
import { DEFAULT_SEGMENTS } from './writer.ts';
import type { PruneResult, SegmentPolicy } from './writer.ts';
import type { AuditEventInput } from './event.ts';
import { checkpointSignatureValid } from './checkpoint.ts';
import type { CheckpointType } from './checkpoint.ts';
import { loadOrCreateSigningKey, signingKeyPath } from './keys.ts';
import { checkpointFilePath } from './anchor.ts';
import type { SigningKey } from './keys.ts';
import { KEYS, KEY_INDEX_FROM, blockIndexer, FACET_INDEX_FROM, auditDbPath, blockEvents, getMeta, lastBlock, openAuditDb, readCheckpoints, retentionAnchor, segmentReferenced, setMeta, transaction } from './store.ts';
import { claimedKey, closedKey, createSegment, writtenWhole, deleteSegment, indexedKey, legacyJournalKey, legacyJournalLines, linesFrom, listSegments, openInThisProcess, processAlive, processStartOf, segmentFileName } from './segment.ts';
import type { SegmentFile } from './segment.ts';
import type { WriterInit, WriterReply, WriterRequest } from './writer-worker.ts';

export type AuditFailMode = 'buffer' | 'fail_closed';

/**
 * How long events collect before they go to the writer as one batch, by default. A batch costs the
 * writer ~350 us whatever its size (the commit's WAL frames, the block row, its index leaves) on
 * top of ~4 us per event (bench/audit-writer.ts, load ~13: 7.7 us/event in batches of 100, 6.9 of
 * 200, 5.1 of 400, 4.5 of 800), so 250 ms (~750 events at 3000 requests/s, ~500 at c=1) instead
 * of 50 cuts the writer's CPU per request by a third; the price is that an event is committed
 * (visible to queries and sinks) up to a quarter of a second after its request was answered.
 */
export const FLUSH_DELAY_MS = 250;

/** The writer thread's name (Linux shows its first 15 characters in /proc/<pid>/task/<tid>/comm, `top -H`). */
export const WRITER_THREAD = 'aam-audit-writer';

export interface AuditAlert {
  kind: 'write_failed' | 'queue_full' | 'recovered' | 'checkpoint_failed';
  message: string;
  queued: number;
  error?: unknown;
}

export interface AuditLogOptions {
  dataDir: string;
  /**
   * The egress door for evidence: every event's JSON passes this before it is written (the
   * gateway passes its credential scrubber, so upstream text quoting a secret never reaches disk).
   */
  scrub?: (json: string) => string;
  /** Sign a checkpoint every N events (default 1000) ... */
  checkpointEvery?: number;
  /** ... or every T ms when events were written (default 10 000), and at close. */
  checkpointIntervalMs?: number;
  /** How much lower than the gateway's priority the writer thread runs (nice increment, default 5; 0: the same). */
  writerNice?: number;
  /** buffer (default): keep events queued while storage fails; fail_closed: recordDurable rejects. */
  failMode?: AuditFailMode;
  /** Bound of the in-memory queue; record() returns false beyond it (default 100 000). */
  maxQueue?: number;
  onAlert?: (alert: AuditAlert) => void;
  /** Events per transaction (default 1000). */
  batchSize?: number;
  /**
   * How long record() waits for company before a batch is written (default FLUSH_DELAY_MS). The
   * segment file already makes each event crash-safe; this only delays when an event is committed
   * (visible to queries and sinks). A durable record or a flush() does not wait for it.
   */
  flushDelayMs?: number;
  /**
   * buffer mode: recordDurable rejects if not committed within this time (default 10 000), counted
   * from when the writer thread is up: a thread started for this write (the first request, or the
   * first after writerIdleMs) may take up to WRITER_START_MS more to load and open the database.
   */
  durableTimeoutMs?: number;
  /** Stop the writer thread after this long without a request (default 30 000 ms); the next one starts a new thread. */
  writerIdleMs?: number;
  /** SQLite busy timeout of the writer thread (default 5000 ms; it blocks that thread only). */
  busyTimeoutMs?: number;
  /** Signing key file; default AAM_AUDIT_KEY_FILE or <dataDir>/keys/audit-signing.key. */
  keyFile?: string;
  /** Each signed checkpoint is appended here too; default AAM_AUDIT_CHECKPOINT_FILE or <dataDir>/audit-checkpoints.jsonl. */
  checkpointFile?: string;
  /** When a new segment file is started (the unit retention drops); default a day or 10M events. */
  segments?: SegmentPolicy;
}

export interface DurableReceipt {
  seq: number;
  hash: string;
}

export interface AuditStats {
  queued: number;
  written: number;
  /** Always 0: events are never dropped; refused ones are counted in `rejected`. */
  dropped: 0;
  /** record()/recordDurable() calls refused because the queue was full. */
  rejected: number;
  failures: number;
  lastSeq: number;
  lastHash: string;
  /** Checkpoints signed by this process that it knows of (periodic ones from the timer are not counted). */
  checkpoints: number;
  failing: boolean;
}

export interface AuditLog {
  readonly dataDir: string;
  /** The log's own connection, for queries and retention in this process. */
  readonly db: DatabaseSync;
  /** Hot path: queue only. false = queue full or log closed: refuse the request (an alert was raised). */
  record(event: AuditEventInput): boolean;
  /**
   * Resolves once every event recorded so far is in the segment file (one write(2) per
   * event-loop turn for all of them): await it before acknowledging a request, and the event
   * survives a kill -9. Rejects if the file cannot be written. now: write at once (no other
   * request would share the write).
   */
  journaled(now?: boolean): Promise<void>;
  /**
   * journaled() without a promise when none is needed: undefined once every event recorded so far
   * is in the segment file (nothing was pending, or `now` wrote it at once: the usual case of a
   * request alone in flight), so a request's path pays no promise and no extra microtask turn.
   */
  journaledNow(now?: boolean): Promise<void> | undefined;
  /** Resolves after the event is committed to disk. */
  recordDurable(event: AuditEventInput): Promise<DurableReceipt>;
  /**
   * Activity resumed (an agent's request arrived): start the writer thread now if it stopped for
   * idleness, without waiting for it. The request's evidence follows in a moment, and a durable
   * one (a tool's intent) then waits for what is left of the thread's start-up, not all of it.
   */
  warm(): void;
  /** Resolves when everything recorded so far is committed; rejects if a write fails meanwhile. */
  flush(): Promise<void>;
  /** Sign a checkpoint of the current head now; resolves to its tree size (null if nothing new). */
  checkpoint(type?: CheckpointType): Promise<number | null>;
  /** Retention: drop whole segments older than `before` (ISO) and at or below maxSeq, between writer batches. */
  prune(before: string, maxSeq?: number): Promise<PruneResult>;
  /** Drain, sign a final checkpoint, close the database. */
  close(): Promise<void>;
  stats(): AuditStats;
  publicKeyPem(): string;
  /** Called after each commit with the last committed seq (wakes export sinks). */
  onCommit(listener: (lastSeq: number) => void): () => void;
  /** For retention (same process): the signing key and a way to run work between batches. */
  readonly signingKey: SigningKey;
}

/**
 * A queued event, kept until its batch is committed (~250 ms: long enough to be promoted to old
 * space at c=64, where what it holds is major GCs' work): its query keys as its own fields, not
 * an IndexCols array beside it (an array and its store less per event).
 */
interface Entry {
  /** The event's JSON line (encodeEvent), until it is in the segment file (then dropped: the writer reads the file). */
  json: string | undefined;
  /** Query keys (IndexCols, in its order): time, type, request_id, agent, decision. */
  time: string;
  type: string;
  requestId: string;
  agent: string | null;
  decision: string | null;
  /** Segment file and byte range of this entry's line; jend 0 = not written yet. */
  gen: string;
  jstart: number;
  jend: number;
  durable: { resolve: (r: DurableReceipt) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout } | undefined;
}

/** An entry, every one made here (one shape). */
function entry(json: string | undefined, cols: IndexCols, gen: string, jstart: number, jend: number, durable?: Entry['durable']): Entry {
  return { json, time: cols[0], type: cols[1], requestId: cols[2], agent: cols[3], decision: cols[4], gen, jstart, jend, durable };
}

export class AuditUnavailableError extends Error {
  code = 'audit_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditUnavailableError';
  }
}

/**
 * How long a writer thread may take to start (load its modules, open the database, read the key)
 * before a durable write's own deadline begins: measured 0.1 s on a quiet host and 3-4 s with the
 * 2 cores at load 25, when a 2 s deadline refused the first non-idempotent tool call after start.
 */
const WRITER_START_MS = 15_000;

export function openAuditLog(opts: AuditLogOptions): AuditLog {
  const cfg = {
    checkpointEvery: opts.checkpointEvery ?? 1000,
    checkpointIntervalMs: opts.checkpointIntervalMs ?? 10_000,
    failMode: opts.failMode ?? 'buffer',
    maxQueue: opts.maxQueue ?? 100_000,
    batchSize: opts.batchSize ?? 1000,
    flushDelayMs: opts.flushDelayMs ?? FLUSH_DELAY_MS,
    durableTimeoutMs: opts.durableTimeoutMs ?? 10_000,
    writerIdleMs: opts.writerIdleMs ?? 30_000,
    segments: opts.segments ?? DEFAULT_SEGMENTS,
  };
  const keyFile = opts.keyFile ?? signingKeyPath(opts.dataDir);
  // Everything that can refuse to start (key permissions, a tampered tail) is checked here,
  // synchronously, before the writer thread exists.
  const key = loadOrCreateSigningKey(keyFile);
  // This connection serves queries, sink cursors and retention on the event loop: never block it long.
  const db = openAuditDb(opts.dataDir, { busyTimeoutMs: Math.min(opts.busyTimeoutMs ?? 200, 200) });
  setMeta(db, `public_key:${key.keyId}`, key.publicKeyPem);
  const head = resumeHead(db, key, opts.dataDir);
  const init: WriterInit = { dataDir: opts.dataDir, keyFile, busyTimeoutMs: opts.busyTimeoutMs ?? 5000, checkpointEvery: cfg.checkpointEvery, checkpointIntervalMs: cfg.checkpointIntervalMs, checkpointFile: opts.checkpointFile ?? checkpointFilePath(opts.dataDir), writerNice: opts.writerNice ?? 5 };

  let lastSeq = head.seq;
  let lastHash = head.hash;
  let checkpoints = 0;
  // Queue as array + head index: O(1) dequeue without Array#shift. Entries stay queued until
  // their batch is committed, so a failed batch is simply sent again.
  let items: Entry[] = [];
  /** Segment files no process appends to any more, oldest first; marked closed once all their lines are committed. */
  let pendingClose: string[] = [];
  let qHead = 0;
  let enqueued = 0;
  let committed = 0;
  let rejected = 0;
  let failures = 0;
  let failing = false;
  let queueFullAlerted = false;
  let backoff = 0;
  let closed = false;
  let inFlight: { id: number; n: number } | undefined;
  let flushTimer: NodeJS.Timeout | undefined;
  /** A durable write or flush is waiting: send the next batch without collecting first. */
  let urgent = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let flushWaiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  const commitListeners = new Set<(seq: number) => void>();
  const calls = new Map<number, (r: WriterReply) => void>();
  let nextId = 1;
  // The writer thread costs ~15 MB RSS (bench/RESULTS.md), so it runs only while there is work:
  // started by the first request, stopped after writerIdleMs without one.
  let worker: Worker | undefined;
  /** The current thread has answered once (it is up): durable deadlines count from then. */
  let workerUp = false;
  /** Durable writes made while no thread was up: their deadline starts when one is. */
  const awaitingWriter = new Set<Entry>();
  /** false from a thread's death until its restart backoff has passed. */
  let alive = true;
  /** A thread stopping for idleness: requests made meanwhile go to the next thread. */
  let stopping: Promise<void> | undefined;
  let idleTimer: NodeJS.Timeout | undefined;
  const retired = new WeakSet<Worker>();
  let segment: SegmentFile = createSegment(opts.dataDir);
  // Events a killed process wrote to its segment file but never committed are chained first, in
  // their order, where they are; lines of an older version's journal file are copied into ours.
  const legacy = legacyJournalLines(opts.dataDir, (gen) => { const v = getMeta(db, legacyJournalKey(gen)); return v === undefined ? undefined : Number(v); });
  if (legacy.lines.length) {
    const decoded = legacy.lines.map(entryOf);
    const before = segment.size();
    const ends = segment.appendMany(decoded.map((d) => d.json));
    decoded.forEach((d, i) => items.push(entry(undefined, d.cols, segment.gen, i ? ends[i - 1] : before, ends[i])));
  }
  legacy.done();
  for (const s of listSegments(opts.dataDir)) {
    if (writtenWhole(s) || s.gen === segment.gen || openInThisProcess(s.gen)) continue;
    if (getMeta(db, closedKey(s.gen)) !== undefined) {
      // Closed and no block points to it: its events were dropped by retention (the unlink was cut short).
      if (!segmentReferenced(db, s.gen)) deleteSegment(opts.dataDir, s.gen);
      continue;
    }
    if (processAlive(s.pid, s.pid_start)) continue; // another running process appends to it
    if (!claimOrphan(db, s.gen)) continue; // another process starting now recovers it
    const from = Number(getMeta(db, indexedKey(s.gen)) ?? s.headerEnd);
    const { lines, ends } = linesFrom(opts.dataDir, s.gen, from);
    lines.forEach((l, i) => items.push(entry(undefined, entryOf(l).cols, s.gen, i ? ends[i - 1] : from, ends[i])));
    pendingClose.push(s.gen);
  }
  enqueued = items.length;
  const orphanCount = items.length;
  if (orphanCount || pendingClose.length) queueMicrotask(() => schedule(true));
  // A trail from before the key index: the thread indexes it in slices from its start (writer-worker.ts).
  else if ((getMeta(db, KEY_INDEX_FROM) !== '0' || getMeta(db, FACET_INDEX_FROM) !== '0') && lastBlock(db)) worker = startWorker();

  const queued = (): number => items.length - qHead;
  const alert = (a: Omit<AuditAlert, 'queued'>): void => {
    try { opts.onAlert?.({ ...a, queued: queued() }); } catch { /* an alert hook must not break the writer */ }
  };

  function startWorker(): Worker {
    // A bounded young generation: V8 sizes it from the machine's memory (up to 64 MB per
    // semi-space), and the writer's garbage is small batches (measured: -12 MB RSS under load).
    const w = new Worker(new URL('./writer-worker.ts', import.meta.url), { name: WRITER_THREAD, workerData: init, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    w.unref();
    workerUp = false;
    w.on('message', (r: WriterReply) => {
      if (!workerUp && worker === w) writerUp();
      if (r.op === 'alert') { alert({ kind: 'checkpoint_failed', message: r.message }); return; }
      const cb = calls.get(r.id);
      calls.delete(r.id);
      if (calls.size === 0) { w.unref(); armIdle(); }
      cb?.(r);
    });
    let dead = false;
    const died = (why: string): void => {
      // The writer thread died: fail what it had in hand (also while closing: close() waits on
      // it) and, unless closing, allow a new one after a pause; the entries stay queued and are sent again.
      if (dead || retired.has(w)) return;
      dead = true;
      alive = false;
      if (worker === w) { worker = undefined; workerUp = false; }
      const pending = [...calls.values()];
      calls.clear();
      for (const cb of pending) cb({ op: 'failed', id: 0, error: `audit writer thread died: ${why}` });
      if (closed) return;
      if (pending.length === 0) onFailed(`audit writer thread died: ${why}`);
      setTimeout(() => { alive = true; if (!closed) schedule(true); }, Math.max(backoff, 50)).unref();
    };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`exit code ${code}`));
    return w;
  }

  function writerUp(): void {
    workerUp = true;
    for (const e of awaitingWriter) if (e.durable) armDurable(e, cfg.durableTimeoutMs);
    awaitingWriter.clear();
  }

  /** buffer mode: a durable write not committed within ms is refused (the event stays queued). */
  function armDurable(e: Entry, ms: number): void {
    const d = e.durable;
    if (!d) return;
    if (d.timer) clearTimeout(d.timer);
    d.timer = setTimeout(() => {
      if (e.durable !== d) return;
      e.durable = undefined;
      awaitingWriter.delete(e);
      d.reject(new AuditUnavailableError(`audit event not committed within ${cfg.durableTimeoutMs} ms${ms > cfg.durableTimeoutMs ? ` (the audit writer thread did not start within ${WRITER_START_MS} ms)` : ''}; it stays queued`));
    }, ms);
  }

  function call(req: WriterRequest, cb: (r: WriterReply) => void): void {
    if (stopping) { void stopping.then(() => call(req, cb)); return; }
    // A dead thread never answers: fail now rather than wait forever (close() after a death).
    if (!alive) { cb({ op: 'failed', id: req.id, error: 'audit writer thread is not running' }); return; }
    worker ??= startWorker();
    if (idleTimer) { clearTimeout(idleTimer); idleTimer = undefined; }
    send(worker, req, cb);
  }

  function send(w: Worker, req: WriterRequest, cb: (r: WriterReply) => void): void {
    calls.set(req.id, cb);
    // Keep the process alive while the writer holds work for us.
    w.ref();
    w.postMessage(req);
  }

  function warm(): void {
    if (worker || closed || !alive) return;
    if (stopping) { void stopping.then(warm); return; }
    worker = startWorker();
    armIdle(); // stops it again if no work follows
  }

  function armIdle(): void {
    if (closed || !worker || idleTimer) return;
    idleTimer = setTimeout(stopIdle, cfg.writerIdleMs);
    idleTimer.unref();
  }

  /** The thread signs what it has not yet, closes its database and exits; the next request starts a new one. */
  function stopIdle(): void {
    idleTimer = undefined;
    const w = worker;
    // Work came in meanwhile: the reply to it arms the timer again.
    if (!w || closed || stopping || calls.size || inFlight || flushTimer || retryTimer || queued() || unwritten.length || pendingClose.length) return;
    stopping = new Promise<void>((resolve) => {
      send(w, { op: 'stop', id: nextId++ }, (r) => {
        // busy (indexing an old trail) or failed: the thread stays, the reply armed the timer again.
        if (r.op !== 'closed') { resolve(); return; }
        if (idleTimer) { clearTimeout(idleTimer); idleTimer = undefined; }
        retired.add(w);
        worker = undefined;
        workerUp = false;
        void w.terminate().then(() => resolve(), () => resolve());
      });
    }).finally(() => { stopping = undefined; });
  }

  /** Whether the chain has events past the last signed checkpoint (what the writer's close checkpoint would sign). */
  function checkpointDue(): boolean {
    try {
      const b = lastBlock(db);
      return b !== undefined && b.last_seq !== readCheckpoints(db).reduce((m, c) => Math.max(m, c.tree_size), 0);
    } catch { return true; } // busy: ask the writer, as before
  }

  function schedule(now: boolean): void {
    if (closed || retryTimer || inFlight || !alive) return;
    if (now) {
      if (flushTimer) { clearTimeout(flushTimer); flushTimer = undefined; }
      dispatch();
    } else {
      flushTimer ??= setTimeout(dispatch, cfg.flushDelayMs);
    }
  }

  /**
   * Send the next batch to the writer: a run of written entries of one segment file (the writer
   * reads their bytes from it), plus the finished files to mark closed. At most one batch is in
   * flight, so commits stay in order.
   */
  function dispatch(): Promise<boolean> {
    flushTimer = undefined;
    if (unwritten.length) writeLines();
    if (inFlight) return Promise.resolve(true);
    if (!alive) return Promise.resolve(false);
    const first = items[qHead];
    let n = 0;
    if (first?.jend) {
      n = 1;
      while (n < cfg.batchSize && qHead + n < items.length && items[qHead + n].gen === first.gen && items[qHead + n].jend) n++;
    }
    // Files are in queue order: every pending one before the next entry's file is finished.
    const next = items[qHead + n]?.gen;
    const at = next === undefined ? -1 : pendingClose.indexOf(next);
    const close = at < 0 ? pendingClose.slice() : pendingClose.slice(0, at);
    if (n === 0 && close.length === 0) return Promise.resolve(true);
    urgent = false;
    const want: number[] = [];
    const keys = new Array<string | null>(n * KEYS);
    const index = blockIndexer();
    let minTime = n ? first.time : '';
    let maxTime = minTime;
    for (let i = 0; i < n; i++) {
      const e = items[qHead + i];
      if (e.durable) want.push(i);
      const k = i * KEYS;
      keys[k] = e.time;
      keys[k + 1] = e.type;
      keys[k + 2] = e.requestId;
      keys[k + 3] = e.agent;
      keys[k + 4] = e.decision;
      index.add(e.type, e.requestId, e.agent, e.decision);
      if (e.time < minTime) minTime = e.time; else if (e.time > maxTime) maxTime = e.time;
    }
    const id = nextId++;
    inFlight = { id, n };
    // Keys go as one JSON text (what the block row stores): one string to copy, not 5 per event.
    const batch = { segment: first?.gen ?? '', start: n ? first.jstart : 0, end: n ? items[qHead + n - 1].jend : 0, count: n, keys: JSON.stringify(keys), minTime, maxTime, close, index: index.done() };
    return new Promise((resolve) => {
      call({ op: 'write', id, batch, want }, (r) => {
        inFlight = undefined;
        if (r.op === 'written') {
          pendingClose = pendingClose.filter((g) => !close.includes(g));
          onWritten(n, r);
          resolve(true);
        } else { onFailed(r.op === 'failed' ? r.error : `unexpected reply ${r.op}`); resolve(false); }
      });
    });
  }

  function onWritten(n: number, r: Extract<WriterReply, { op: 'written' }>): void {
    lastSeq = r.lastSeq;
    lastHash = r.lastHash;
    if (r.checkpointed) checkpoints++;
    for (let i = 0; i < n; i++) {
      const d = items[qHead + i].durable;
      if (!d) continue;
      if (d.timer) clearTimeout(d.timer);
      d.resolve({ seq: r.firstSeq + i, hash: r.hashes[i] });
    }
    qHead += n;
    if (qHead > 1024 && qHead * 2 > items.length) { items = items.slice(qHead); qHead = 0; }
    committed += n;
    backoff = 0;
    if (failing) { failing = false; alert({ kind: 'recovered', message: `audit storage recovered; ${committed} events written` }); }
    queueFullAlerted = false;
    flushWaiters = flushWaiters.filter((w) => (committed >= w.target ? (w.resolve(), false) : true));
    for (const l of commitListeners) { try { l(lastSeq); } catch { /* listeners must not break the writer */ } }
    // Under load, batch: another round trip to the writer only when a batch is full or someone
    // waits for durability; otherwise collect for flushDelayMs (postMessage per event is costly).
    if (queued() > 0 || pendingClose.length) schedule(urgent || queued() >= cfg.batchSize);
  }

  function onFailed(message: string): void {
    failures++;
    const err = new AuditUnavailableError(`audit storage write failed (${message}); ${queued()} events are queued and will be retried`);
    if (!failing) alert({ kind: 'write_failed', message: err.message, error: err });
    failing = true;
    // Waiting flushes learn about the failure; the events themselves stay queued.
    for (const w of flushWaiters) w.reject(err);
    flushWaiters = [];
    rejectDurableIfFailClosed(items.slice(qHead), err);
    if (closed) return;
    backoff = Math.min(5000, backoff ? backoff * 2 : 50);
    retryTimer = setTimeout(() => { retryTimer = undefined; schedule(true); }, backoff);
  }

  /** fail_closed: whoever waits for one of these events to be durable learns of the failure now (the events stay queued). */
  function rejectDurableIfFailClosed(entries: readonly Entry[], err: Error): void {
    if (cfg.failMode !== 'fail_closed') return;
    for (const e of entries) {
      const d = e.durable;
      if (!d) continue;
      if (d.timer) clearTimeout(d.timer);
      d.reject(err);
      e.durable = undefined;
    }
  }

  /** An explicit request (durable record, flush) retries storage now instead of after backoff. */
  function retryNow(): void {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = undefined; }
  }

  // Lines recorded during one event-loop turn share one write(2) to the segment file.
  let unwritten: Entry[] = [];
  let writeTimer: NodeJS.Immediate | undefined;
  let writeWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  let writeRetry: NodeJS.Timeout | undefined;
  /** Returns the error when the lines could not be written (they stay pending and are retried). */
  function writeLines(): Error | undefined {
    if (writeTimer) { clearImmediate(writeTimer); writeTimer = undefined; }
    const batch = unwritten;
    const waiters = writeWaiters;
    writeWaiters = [];
    if (batch.length === 0) { for (const w of waiters) w.resolve(); return undefined; }
    try {
      rotateIfDue();
      const before = segment.size();
      const lines = new Array<string>(batch.length);
      for (let i = 0; i < batch.length; i++) lines[i] = batch[i].json as string;
      const ends = segment.appendMany(lines);
      for (let i = 0; i < batch.length; i++) {
        const e = batch[i];
        e.gen = segment.gen;
        e.jstart = i ? ends[i - 1] : before;
        e.jend = ends[i];
        e.json = undefined;
      }
      unwritten = [];
      for (const w of waiters) w.resolve();
      return undefined;
    } catch (e) {
      // The lines stay pending (and queued) and are written again, at the same offset, shortly.
      const err = new AuditUnavailableError(`audit segment write failed (${String(e)}); the action is not acknowledged`, { cause: e });
      alert({ kind: 'write_failed', message: err.message, error: e });
      for (const w of waiters) w.reject(err);
      rejectDurableIfFailClosed(batch, err);
      if (!closed && !writeRetry) {
        writeRetry = setTimeout(() => { writeRetry = undefined; writeLines(); schedule(false); }, 200);
        writeRetry.unref();
      }
      return err;
    }
  }

  /** A new segment file each segments.maxAgeMs (the unit retention deletes) or maxEvents. */
  function rotateIfDue(): void {
    if (Date.now() - segment.openedAt < cfg.segments.maxAgeMs && segment.lines < cfg.segments.maxEvents) return;
    const old = segment;
    segment = createSegment(opts.dataDir);
    old.close();
    pendingClose.push(old.gen);
    schedule(false);
  }

  const iso = isoClock();
  function encode(event: AuditEventInput, at: number): { json: string; cols: IndexCols } {
    const e = encodeEvent(event, at, iso);
    return opts.scrub ? { json: opts.scrub(e.json), cols: e.cols } : e;
  }

  function enqueue(entry: Entry): boolean {
    // After close() (shutdown) callers get the same answer as with a full queue: refuse the request.
    if (closed) { rejected++; return false; }
    // Recovered orphans were bounded by the crashed process; only new events count against the bound.
    if (queued() - Math.max(0, orphanCount - committed) >= cfg.maxQueue) {
      rejected++;
      if (!queueFullAlerted) {
        queueFullAlerted = true;
        alert({ kind: 'queue_full', message: `audit queue is full (${cfg.maxQueue} events); requests are refused until storage catches up` });
      }
      return false;
    }
    unwritten.push(entry);
    writeTimer ??= setImmediate(writeLines);
    items.push(entry);
    enqueued++;
    return true;
  }

  function request<T extends WriterReply['op']>(req: WriterRequest, op: T): Promise<Extract<WriterReply, { op: T }>> {
    return new Promise((resolve, reject) => call(req, (r) => {
      if (r.op === op) resolve(r as Extract<WriterReply, { op: T }>);
      else reject(new AuditUnavailableError(r.op === 'failed' ? r.error : `unexpected reply ${r.op}`));
    }));
  }

  function journaledNow(now = false): Promise<void> | undefined {
    if (unwritten.length === 0) return undefined;
    if (!now) return new Promise<void>((resolve, reject) => writeWaiters.push({ resolve, reject }));
    // Alone (nothing else in flight): write now rather than wait a loop turn for company.
    const err = writeLines();
    return err ? Promise.reject(err) : undefined;
  }

  return {
    dataDir: opts.dataDir,
    db,
    signingKey: key,
    journaled(now = false) {
      return journaledNow(now) ?? Promise.resolve();
    },
    journaledNow,
    record(event) {
      checkInput(event);
      const at = Date.now();
      const { json, cols } = encode(event, at);
      if (!enqueue(entry(json, cols, '', 0, 0))) return false;
      schedule(queued() >= cfg.batchSize);
      return true;
    },
    warm,
    recordDurable(event) {
      return new Promise<DurableReceipt>((resolve, reject) => {
        checkInput(event);
        const at = Date.now();
        const { json, cols } = encode(event, at);
        const queuedEntry = entry(json, cols, '', 0, 0, { resolve, reject });
        if (!enqueue(queuedEntry)) {
          reject(new AuditUnavailableError(closed ? 'audit log is closed (shutting down); the action was not recorded' : `audit queue is full (${cfg.maxQueue} events); the action was not recorded`));
          return;
        }
        if (cfg.failMode === 'buffer') {
          if (workerUp) armDurable(queuedEntry, cfg.durableTimeoutMs);
          else { awaitingWriter.add(queuedEntry); armDurable(queuedEntry, cfg.durableTimeoutMs + WRITER_START_MS); }
        }
        // A durable write is worth an attempt even while failing: fail_closed must answer now.
        if (failing) retryNow();
        urgent = true;
        schedule(true);
      });
    },
    flush() {
      if (committed >= enqueued) return Promise.resolve();
      const target = enqueued;
      const p = new Promise<void>((resolve, reject) => flushWaiters.push({ target, resolve, reject }));
      if (failing) retryNow();
      urgent = true;
      schedule(true);
      return p;
    },
    async prune(before, maxSeq) {
      return (await request({ op: 'prune', id: nextId++, before, maxSeq }, 'pruned')).result;
    },
    async checkpoint(type = 'periodic') {
      const r = await request({ op: 'checkpoint', id: nextId++, type }, 'checkpointed');
      if (r.treeSize !== null) checkpoints++;
      return r.treeSize;
    },
    async close() {
      if (closed) return;
      closed = true;
      writeLines();
      if (flushTimer) clearTimeout(flushTimer);
      retryNow();
      // Drain: wait for the batch in flight, then send the rest until empty or storage fails;
      // then mark our file closed. What cannot be written stays in the file for the next start.
      while (inFlight) await new Promise((r) => setImmediate(r));
      while (queued() > 0 && (await dispatch())) { /* drain */ }
      if (queued() === 0) {
        // An empty file is deleted below: no need to wake a writer thread to mark it closed.
        if (segment.lines > 0) pendingClose.push(segment.gen);
        while (pendingClose.length && (await dispatch())) { /* mark closed */ }
      }
      const left = queued();
      const notWritten = unwritten.length;
      if (left > 0) {
        for (let i = qHead; i < items.length; i++) {
          const d = items[i].durable;
          if (d) { if (d.timer) clearTimeout(d.timer); d.reject(new AuditUnavailableError('audit storage failed at shutdown; the event was not committed')); }
        }
      }
      // No thread to wake for a close checkpoint that would sign nothing (most CLI commands).
      if (stopping) await stopping;
      if (worker || checkpointDue()) {
        try {
          await request({ op: 'close', id: nextId++ }, 'closed');
        } catch (e) {
          alert({ kind: 'checkpoint_failed', message: `audit close checkpoint failed: ${String(e)}` });
        }
      }
      if (idleTimer) clearTimeout(idleTimer);
      await worker?.terminate();
      segment.close();
      // A process that recorded nothing (most CLI commands) leaves no file behind.
      if (segment.lines === 0 && pendingClose.length === 0 && left === 0) deleteSegment(opts.dataDir, segment.gen);
      db.close();
      if (left > 0) {
        throw new AuditUnavailableError(`audit storage failed at shutdown; ${left - notWritten} events stay in ${segmentFileName(segment.gen)} and are committed at the next start${notWritten ? `; ${notWritten} could not be written at all` : ''}`);
      }
    },
    stats() {
      return { queued: queued(), written: committed, dropped: 0, rejected, failures, lastSeq, lastHash, checkpoints, failing };
    },
    publicKeyPem() {
      return key.publicKeyPem;
    },
    onCommit(listener) {
      commitListeners.add(listener);
      return () => commitListeners.delete(listener);
    },
  };
}

/**
 * A stored line back to its JSON and query keys: the event JSON, or [at, event] as journals of
 * older versions held it. A line that is not JSON is still chained as found (verify reports it).
 */
function entryOf(line: string): { json: string; cols: IndexCols } {
  let e: Record<string, unknown>;
  try {
    if (line.startsWith('[')) {
      const [at, input] = JSON.parse(line) as [number, AuditEventInput];
      return encodeEvent(input, at);
    }
    e = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { json: line, cols: [new Date().toISOString(), 'unknown', 'unknown', null, null] };
  }
  const { agent, decision } = indexColumns(e);
  return { json: line, cols: [String(e.time), String(e.type), String(e.request_id), agent, decision] };
}

interface Head { seq: number; hash: string }

/** Resume the chain from the stored tail, refusing to extend a tail whose hash does not verify. */
function resumeHead(db: DatabaseSync, key: SigningKey, dataDir: string): Head {
  const cps = readCheckpoints(db);
  const b = lastBlock(db);
  if (b) {
    let ok = false;
    try {
      const events = blockEvents(dataDir, b);
      const last = events[events.length - 1];
      const parsed = JSON.parse(last.text) as Record<string, unknown>;
      ok = parsed.seq === last.seq && recomputeHash(last.text, parsed) === last.hash && last.hash === b.last_hash;
    } catch { ok = false; }
    if (!ok) {
      throw new AuditUnavailableError(`audit chain tail (seq ${b.last_seq}) does not verify; the audit data was modified. Run \`aam audit verify\` and investigate before starting.`);
    }
    return { seq: b.last_seq, hash: b.last_hash };
  }
  const anchor = retentionAnchor(cps);
  if (anchor) {
    if (!checkpointSignatureValid(anchor, key.publicKeyPem)) {
      throw new AuditUnavailableError('audit retention anchor checkpoint has a bad signature; run `aam audit verify`');
    }
    return { seq: anchor.tree_size, hash: anchor.head_hash };
  }
  return { seq: 0, hash: GENESIS_HASH };
}

/**
 * Take a dead process's segment file for recovery, under the database write lock, unless another
 * live process took it first (two gateways starting at once must not chain its lines twice).
 */
function claimOrphan(db: DatabaseSync, gen: string): boolean {
  try {
    return transaction(db, () => {
      const prev = getMeta(db, claimedKey(gen));
      if (prev) {
        const [pid, start] = prev.split(':').map(Number);
        if (pid !== process.pid && processAlive(pid, Number.isFinite(start) ? start : undefined)) return false;
      }
      setMeta(db, claimedKey(gen), `${process.pid}:${processStartOf(process.pid) ?? ''}`);
      return true;
    });
  } catch {
    return false; // the database is busy for long (another process migrating): the next start recovers it
  }
}

/** Programming errors surface at the call site, not later in the writer. */
function checkInput(e: AuditEventInput): void {
  if (typeof e?.type !== 'string' || typeof e.request_id !== 'string') {
    throw new TypeError('audit event needs string fields `type` and `request_id`');
  }
}

/**
 * Commit the events a killed process left uncommitted in its segment file (what the next gateway
 * start does anyway), so `aam audit verify|query|export|show` see every acknowledged event.
 * Returns how many events were recovered.
 */
export async function recoverUncommitted(dataDir: string): Promise<number> {
  const legacy = (() => { try { return readdirSync(dataDir).some((n) => n.startsWith('audit-journal-')); } catch { return false; } })();
  if (!legacy) {
    if (!existsSync(auditDbPath(dataDir))) return 0;
    const db = openAuditDb(dataDir);
    let orphans: boolean;
    try {
      orphans = listSegments(dataDir).some((s) => !writtenWhole(s) && !openInThisProcess(s.gen) && !processAlive(s.pid, s.pid_start) && getMeta(db, closedKey(s.gen)) === undefined);
    } finally { db.close(); }
    if (!orphans) return 0;
  }
  const log = openAuditLog({ dataDir });
  const n = log.stats().queued;
  await log.close();
  return n;
}
