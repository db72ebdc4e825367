// The audit log: record() only queues (the hot path does no I/O); a batch writer in a worker
// thread (writer.ts) assigns seq and chains hashes at commit time, so chain order is commit
// order. recordDurable() resolves only once its event is committed with synchronous=FULL
// (tool intents before a side effect).
// Storage failures never drop silently: events stay queued (bounded), record() returns false
// when the bound is hit, onAlert is called, and in fail_closed mode recordDurable rejects.
import type { DatabaseSync } from 'node:sqlite';
import { readdirSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { GENESIS_HASH, encodeEvent, indexColumns, recomputeHash } from './event.ts';
import type { IndexCols } from './event.ts';
import { COLS } from './writer.ts';
import type { PruneResult, SegmentPolicy } from './writer.ts';
import type { AuditEventInput } from './event.ts';
import { checkpointSignatureValid } from './checkpoint.ts';
import type { CheckpointType } from './checkpoint.ts';
import { loadOrCreateSigningKey, signingKeyPath } from './keys.ts';
import type { SigningKey } from './keys.ts';
import { getMeta, openAuditDb, readCheckpoints, retentionAnchor, setMeta } from './store.ts';
import { journalMetaKey, openJournal, orphanedLines } from './journal.ts';
import type { WriterInit, WriterReply, WriterRequest } from './writer-worker.ts';

export type AuditFailMode = 'buffer' | 'fail_closed';

export interface AuditAlert {
  kind: 'write_failed' | 'queue_full' | 'recovered' | 'checkpoint_failed';
  message: string;
  queued: number;
  error?: unknown;
}

export interface AuditLogOptions {
  dataDir: string;
  /** Sign a checkpoint every N events (default 1000) ... */
  checkpointEvery?: number;
  /** ... or every T ms when events were written (default 10 000), and at close. */
  checkpointIntervalMs?: number;
  /** buffer (default): keep events queued while storage fails; fail_closed: recordDurable rejects. */
  failMode?: AuditFailMode;
  /** Bound of the in-memory queue; record() returns false beyond it (default 100 000). */
  maxQueue?: number;
  onAlert?: (alert: AuditAlert) => void;
  /** Events per transaction (default 1000). */
  batchSize?: number;
  /** How long record() waits for company before a batch is written (default 50 ms; the journal already makes each event crash-safe, and bigger batches cost the writer less per event). */
  flushDelayMs?: number;
  /** buffer mode: recordDurable rejects if not committed within this time (default 10 000). */
  durableTimeoutMs?: number;
  /** SQLite busy timeout of the writer thread (default 5000 ms; it blocks that thread only). */
  busyTimeoutMs?: number;
  /** Signing key file; default AAM_AUDIT_KEY_FILE or <dataDir>/keys/audit-signing.key. */
  keyFile?: string;
  /** When the writer starts a new segment (the unit retention drops); default a day or 10M events. */
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
   * Resolves once every event recorded so far is in the write-ahead journal (one write(2) per
   * event-loop turn for all of them): await it before acknowledging a request, and the event
   * survives a kill -9. Rejects if the journal cannot be written. now: write at once (no other
   * request would share the write).
   */
  journaled(now?: boolean): Promise<void>;
  /** Resolves after the event is committed to disk. */
  recordDurable(event: AuditEventInput): Promise<DurableReceipt>;
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

interface Entry {
  /** The event's JSON text (encodeEvent): written to the journal and sent to the writer as is. */
  json: string;
  cols: IndexCols;
  /** Journal generation and byte offset after this entry's line. */
  gen: string;
  jend: number;
  durable?: { resolve: (r: DurableReceipt) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
}

export class AuditUnavailableError extends Error {
  code = 'audit_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditUnavailableError';
  }
}

const JOURNAL_ROTATE_BYTES = 8 * 1024 * 1024;

export function openAuditLog(opts: AuditLogOptions): AuditLog {
  const cfg = {
    checkpointEvery: opts.checkpointEvery ?? 1000,
    checkpointIntervalMs: opts.checkpointIntervalMs ?? 10_000,
    failMode: opts.failMode ?? 'buffer',
    maxQueue: opts.maxQueue ?? 100_000,
    batchSize: opts.batchSize ?? 1000,
    flushDelayMs: opts.flushDelayMs ?? 50,
    durableTimeoutMs: opts.durableTimeoutMs ?? 10_000,
  };
  const keyFile = opts.keyFile ?? signingKeyPath(opts.dataDir);
  // Everything that can refuse to start (key permissions, a tampered tail) is checked here,
  // synchronously, before the writer thread exists.
  const key = loadOrCreateSigningKey(keyFile);
  // This connection serves queries, sink cursors and retention on the event loop: never block it long.
  const db = openAuditDb(opts.dataDir, { busyTimeoutMs: Math.min(opts.busyTimeoutMs ?? 200, 200) });
  setMeta(db, `public_key:${key.keyId}`, key.publicKeyPem);
  const head = resumeHead(db, key);
  // Events a killed process journaled but never committed are written first, in their order.
  const orphans = orphanedLines(opts.dataDir, (gen) => { const v = getMeta(db, journalMetaKey(gen)); return v === undefined ? undefined : Number(v); });
  const journal = openJournal(opts.dataDir);
  const init: WriterInit = { dataDir: opts.dataDir, keyFile, busyTimeoutMs: opts.busyTimeoutMs ?? 5000, checkpointEvery: cfg.checkpointEvery, checkpointIntervalMs: cfg.checkpointIntervalMs, segments: opts.segments };

  let lastSeq = head.seq;
  let lastHash = head.hash;
  let checkpoints = 0;
  // Queue as array + head index: O(1) dequeue without Array#shift. Entries stay queued until
  // their batch is committed, so a failed batch is simply sent again.
  let items: Entry[] = [];
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
  let alive = false;
  let worker = startWorker();
  for (const line of orphans.lines) {
    const { json, cols } = decodeJournalLine(line);
    items.push({ json, cols, gen: journal.gen, jend: journal.append(json) });
    enqueued++;
  }
  orphans.done();
  const orphanCount = orphans.lines.length;
  if (orphans.lines.length) queueMicrotask(() => schedule(true));

  const queued = (): number => items.length - qHead;
  const alert = (a: Omit<AuditAlert, 'queued'>): void => {
    try { opts.onAlert?.({ ...a, queued: queued() }); } catch { /* an alert hook must not break the writer */ }
  };

  function startWorker(): Worker {
    alive = true;
    const w = new Worker(new URL('./writer-worker.ts', import.meta.url), { workerData: init });
    w.unref();
    w.on('message', (r: WriterReply) => {
      if (r.op === 'alert') { alert({ kind: 'checkpoint_failed', message: r.message }); return; }
      const cb = calls.get(r.id);
      calls.delete(r.id);
      if (calls.size === 0) w.unref();
      cb?.(r);
    });
    let dead = false;
    const died = (why: string): void => {
      // The writer thread died: fail what it had in hand and start a new one after a pause;
      // the entries stay queued and are sent again.
      if (dead || closed) return;
      dead = true;
      alive = false;
      const pending = [...calls.values()];
      calls.clear();
      for (const cb of pending) cb({ op: 'failed', id: 0, error: `audit writer thread died: ${why}` });
      if (pending.length === 0) onFailed(`audit writer thread died: ${why}`);
      setTimeout(() => { if (!closed) { worker = startWorker(); schedule(true); } }, Math.max(backoff, 50)).unref();
    };
    w.on('error', (e) => died(e.message));
    w.on('exit', (code) => died(`exit code ${code}`));
    return w;
  }

  function call(req: WriterRequest, cb: (r: WriterReply) => void): void {
    calls.set(req.id, cb);
    // Keep the process alive while the writer holds work for us.
    worker.ref();
    worker.postMessage(req);
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

  /** Send the next batch to the writer; at most one batch is in flight, so commits stay in order. */
  function dispatch(): Promise<boolean> {
    flushTimer = undefined;
    // Every entry sent to the writer has its journal offset (the database records it).
    if (journalPending.length) flushJournal();
    const n = Math.min(cfg.batchSize, queued());
    if (n === 0 || inFlight) return Promise.resolve(true);
    if (!alive) return Promise.resolve(false);
    urgent = false;
    const batch = items.slice(qHead, qHead + n);
    const want: number[] = [];
    for (let i = 0; i < n; i++) if (batch[i].durable) want.push(i);
    const id = nextId++;
    inFlight = { id, n };
    return new Promise((resolve) => {
      const last = batch[n - 1];
      const jsons = new Array<string>(n);
      const cols = new Array<string | null>(n * COLS);
      for (let i = 0; i < n; i++) {
        jsons[i] = batch[i].json;
        for (let k = 0; k < COLS; k++) cols[i * COLS + k] = batch[i].cols[k];
      }
      call({ op: 'write', id, batch: { jsons, cols }, want, journal: { key: journalMetaKey(last.gen), end: last.jend } }, (r) => {
        inFlight = undefined;
        if (r.op === 'written') { onWritten(n, r); resolve(true); }
        else { onFailed(r.op === 'failed' ? r.error : `unexpected reply ${r.op}`); resolve(false); }
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
    // Everything committed: start a fresh journal file once this one has grown.
    if (queued() === 0 && journal.size() > JOURNAL_ROTATE_BYTES) journal.rotate();
    // Under load, batch: another round trip to the writer only when a batch is full or someone
    // waits for durability; otherwise collect for flushDelayMs (postMessage per event is costly).
    if (queued() > 0) schedule(urgent || queued() >= cfg.batchSize);
  }

  function onFailed(message: string): void {
    failures++;
    const err = new AuditUnavailableError(`audit storage write failed (${message}); ${queued()} events are queued and will be retried`);
    if (!failing) alert({ kind: 'write_failed', message: err.message, error: err });
    failing = true;
    // Waiting flushes learn about the failure; the events themselves stay queued.
    for (const w of flushWaiters) w.reject(err);
    flushWaiters = [];
    if (cfg.failMode === 'fail_closed') {
      for (let i = qHead; i < items.length; i++) {
        const d = items[i].durable;
        if (!d) continue;
        if (d.timer) clearTimeout(d.timer);
        d.reject(err);
        items[i].durable = undefined;
      }
    }
    if (closed) return;
    backoff = Math.min(5000, backoff ? backoff * 2 : 50);
    retryTimer = setTimeout(() => { retryTimer = undefined; schedule(true); }, backoff);
  }

  /** An explicit request (durable record, flush) retries storage now instead of after backoff. */
  function retryNow(): void {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = undefined; }
  }

  // Write-ahead journal, batched: lines recorded during one event-loop turn share one write(2).
  let journalPending: Entry[] = [];
  let journalTimer: NodeJS.Immediate | undefined;
  let journalWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  function flushJournal(): void {
    if (journalTimer) { clearImmediate(journalTimer); journalTimer = undefined; }
    const batch = journalPending;
    const waiters = journalWaiters;
    journalPending = [];
    journalWaiters = [];
    if (batch.length === 0) { for (const w of waiters) w.resolve(); return; }
    try {
      const gen = journal.gen;
      const ends = journal.appendMany(batch.map((e) => e.json));
      for (let i = 0; i < batch.length; i++) { batch[i].gen = gen; batch[i].jend = ends[i]; }
      for (const w of waiters) w.resolve();
    } catch (e) {
      const err = new AuditUnavailableError(`audit journal write failed (${String(e)}); the action is not acknowledged`, { cause: e });
      alert({ kind: 'write_failed', message: err.message, error: e });
      for (const w of waiters) w.reject(err);
    }
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
    journalPending.push(entry);
    journalTimer ??= setImmediate(flushJournal);
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

  return {
    dataDir: opts.dataDir,
    db,
    signingKey: key,
    journaled(now = false) {
      if (journalPending.length === 0) return Promise.resolve();
      const p = new Promise<void>((resolve, reject) => journalWaiters.push({ resolve, reject }));
      // Alone (nothing else in flight): write now rather than wait a loop turn for company.
      if (now) flushJournal();
      return p;
    },
    record(event) {
      checkInput(event);
      const at = Date.now();
      const { json, cols } = encodeEvent(event, at);
      if (!enqueue({ json, cols, gen: '', jend: 0 })) return false;
      schedule(queued() >= cfg.batchSize);
      return true;
    },
    recordDurable(event) {
      return new Promise<DurableReceipt>((resolve, reject) => {
        checkInput(event);
        const at = Date.now();
        const { json, cols } = encodeEvent(event, at);
        const entry: Entry = { json, cols, gen: '', jend: 0, durable: { resolve, reject } };
        if (!enqueue(entry)) {
          reject(new AuditUnavailableError(closed ? 'audit log is closed (shutting down); the action was not recorded' : `audit queue is full (${cfg.maxQueue} events); the action was not recorded`));
          return;
        }
        if (cfg.failMode === 'buffer' && entry.durable) {
          entry.durable.timer = setTimeout(() => {
            entry.durable = undefined;
            reject(new AuditUnavailableError(`audit event not committed within ${cfg.durableTimeoutMs} ms; it stays queued`));
          }, cfg.durableTimeoutMs);
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
      flushJournal();
      if (flushTimer) clearTimeout(flushTimer);
      retryNow();
      // Drain: wait for the batch in flight, then send the rest until empty or storage fails.
      while (inFlight) await new Promise((r) => setImmediate(r));
      while (queued() > 0 && (await dispatch())) { /* drain */ }
      let spill: string | undefined;
      if (queued() > 0) {
        spill = spillQueue(opts.dataDir, items.slice(qHead));
        for (let i = qHead; i < items.length; i++) {
          const d = items[i].durable;
          if (d) { if (d.timer) clearTimeout(d.timer); d.reject(new AuditUnavailableError(`audit storage failed at shutdown; event saved to ${spill}`)); }
        }
      }
      try {
        await request({ op: 'close', id: nextId++ }, 'closed');
      } catch (e) {
        alert({ kind: 'checkpoint_failed', message: `audit close checkpoint failed: ${String(e)}` });
      }
      await worker.terminate();
      journal.close(queued() === 0);
      db.close();
      if (spill) throw new AuditUnavailableError(`audit storage failed at shutdown; ${queued()} unwritten events were saved to ${spill}`);
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

/** A journal line back to an entry: the event JSON, or [at, event] as older versions wrote it. */
function decodeJournalLine(line: string): { json: string; cols: IndexCols } {
  if (line.startsWith('[')) {
    const [at, input] = JSON.parse(line) as [number, AuditEventInput];
    return encodeEvent(input, at);
  }
  const e = JSON.parse(line) as Record<string, unknown>;
  const { agent, decision } = indexColumns(e);
  return { json: line, cols: [String(e.time), String(e.type), String(e.request_id), agent, decision] };
}

interface Head { seq: number; hash: string }

/** Resume the chain from the stored tail, refusing to extend a tail whose hash does not verify. */
function resumeHead(db: DatabaseSync, key: SigningKey): Head {
  const cps = readCheckpoints(db);
  const row = db.prepare('SELECT seq, body, hash FROM audit_events ORDER BY seq DESC LIMIT 1').get();
  if (row) {
    const seq = Number(row.seq);
    const body = JSON.parse(String(row.body)) as Record<string, unknown>;
    if (body.seq !== seq || body.hash !== row.hash || recomputeHash(String(row.body), body) !== row.hash) {
      throw new AuditUnavailableError(`audit chain tail (seq ${seq}) does not verify; the audit database was modified. Run \`aam audit verify\` and investigate before starting.`);
    }
    return { seq, hash: String(row.hash) };
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

/** Programming errors surface at the call site, not later in the writer. */
function checkInput(e: AuditEventInput): void {
  if (typeof e?.type !== 'string' || typeof e.request_id !== 'string') {
    throw new TypeError('audit event needs string fields `type` and `request_id`');
  }
}

function spillQueue(dataDir: string, entries: Entry[]): string {
  const path = join(dataDir, `audit-unwritten-${Date.now()}.jsonl`);
  writeFileSync(path, entries.map((e) => e.json).join('\n') + '\n', { mode: 0o600 });
  return path;
}

/**
 * Write the events of journals left by a killed process into the trail (what the next gateway
 * start does anyway), so `aam audit verify|query|export|show` see every acknowledged event.
 * Returns how many events were recovered.
 */
export async function recoverJournals(dataDir: string): Promise<number> {
  const probe = orphanedLines(dataDir, () => undefined);
  if (probe.lines.length === 0 && !hasJournalFiles(dataDir)) return 0;
  const log = openAuditLog({ dataDir });
  const n = log.stats().queued;
  await log.close();
  return n;
}

function hasJournalFiles(dataDir: string): boolean {
  try { return readdirSync(dataDir).some((n) => n.startsWith('audit-journal-')); } catch { return false; }
}
