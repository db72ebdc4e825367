// The audit log: record() only queues (the hot path does no I/O); a batch writer assigns seq and
// chains hashes at commit time, so chain order is commit order. recordDurable() resolves only
// once its event is committed with synchronous=FULL (tool intents before a side effect).
// Storage failures never drop silently: events stay queued (bounded), record() returns false
// when the bound is hit, onAlert is called, and in fail_closed mode recordDurable rejects.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GENESIS_HASH, eventHash, encodingFailureEvent, sealEvent } from './event.ts';
import type { AuditEventInput } from './event.ts';
import { checkpointSignatureValid, signCheckpoint } from './checkpoint.ts';
import type { Checkpoint, CheckpointType } from './checkpoint.ts';
import { loadOrCreateSigningKey, signingKeyPath } from './keys.ts';
import type { SigningKey } from './keys.ts';
import { insertCheckpoint, openAuditDb, readCheckpoints, retentionAnchor, setMeta, transaction } from './store.ts';

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
  /** How long record() waits for company before a batch is written (default 2 ms). */
  flushDelayMs?: number;
  /** buffer mode: recordDurable rejects if not committed within this time (default 10 000). */
  durableTimeoutMs?: number;
  /** SQLite busy timeout; node:sqlite is synchronous so keep it short (default 200 ms). */
  busyTimeoutMs?: number;
  /** Signing key file; default AAM_AUDIT_KEY_FILE or <dataDir>/keys/audit-signing.key. */
  keyFile?: string;
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
  lastCheckpointSeq: number;
  checkpoints: number;
  failing: boolean;
}

export interface AuditLog {
  readonly dataDir: string;
  /** The log's own connection, for queries and retention in this process. */
  readonly db: DatabaseSync;
  /** Hot path: queue only. false = queue full (refuse the request; an alert was raised). */
  record(event: AuditEventInput): boolean;
  /** Resolves after the event is committed to disk. */
  recordDurable(event: AuditEventInput): Promise<DurableReceipt>;
  /** Resolves when everything recorded so far is committed; rejects if a write fails meanwhile. */
  flush(): Promise<void>;
  /** Sign a checkpoint of the current head now (no-op if nothing new). */
  checkpoint(type?: CheckpointType): Checkpoint | undefined;
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
  input: AuditEventInput;
  /** Date.now() at record(): formatting the ISO time is left to the writer. */
  at: number;
  durable?: { resolve: (r: DurableReceipt) => void; reject: (e: Error) => void; timer?: NodeJS.Timeout };
}

export class AuditUnavailableError extends Error {
  code = 'audit_unavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditUnavailableError';
  }
}

export function openAuditLog(opts: AuditLogOptions): AuditLog {
  const cfg = {
    checkpointEvery: opts.checkpointEvery ?? 1000,
    checkpointIntervalMs: opts.checkpointIntervalMs ?? 10_000,
    failMode: opts.failMode ?? 'buffer',
    maxQueue: opts.maxQueue ?? 100_000,
    batchSize: opts.batchSize ?? 1000,
    flushDelayMs: opts.flushDelayMs ?? 2,
    durableTimeoutMs: opts.durableTimeoutMs ?? 10_000,
  };
  const key = loadOrCreateSigningKey(opts.keyFile ?? signingKeyPath(opts.dataDir));
  const db = openAuditDb(opts.dataDir, { busyTimeoutMs: opts.busyTimeoutMs });
  setMeta(db, `public_key:${key.keyId}`, key.publicKeyPem);
  const head = resumeHead(db, key);
  const insert: StatementSync = db.prepare(
    'INSERT INTO audit_events (seq, time, type, request_id, agent, decision, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');

  let lastSeq = head.seq;
  let lastHash = head.hash;
  let lastCheckpointSeq = head.checkpointSeq;
  let checkpoints = 0;
  // Queue as array + head index: O(1) dequeue without Array#shift.
  let items: Entry[] = [];
  let qHead = 0;
  let enqueued = 0;
  let committed = 0;
  let written = 0;
  let rejected = 0;
  let failures = 0;
  let failing = false;
  let queueFullAlerted = false;
  let backoff = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let flushTimer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let flushWaiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  const commitListeners = new Set<(seq: number) => void>();

  const alert = (a: Omit<AuditAlert, 'queued'>): void => {
    try { opts.onAlert?.({ ...a, queued: items.length - qHead }); } catch { /* an alert hook must not break the writer */ }
  };
  const queued = (): number => items.length - qHead;

  function schedule(now: boolean): void {
    if (closed || retryTimer) return;
    if (now) {
      if (flushTimer) { clearTimeout(flushTimer); flushTimer = undefined; }
      immediate ??= setImmediate(runBatch);
    } else if (!flushTimer && !immediate) {
      flushTimer = setTimeout(runBatch, cfg.flushDelayMs);
    }
  }

  function runBatch(): void {
    flushTimer = undefined;
    immediate = undefined;
    if (queued() === 0) return;
    if (writeBatch()) {
      backoff = 0;
      if (queued() > 0) schedule(true);
    } else {
      backoff = Math.min(5000, backoff ? backoff * 2 : 50);
      retryTimer = setTimeout(() => { retryTimer = undefined; runBatch(); }, backoff);
    }
  }

  /** An explicit request (durable record, flush) retries storage now instead of after backoff. */
  function retryNow(): void {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = undefined; }
  }

  /** Write up to batchSize queued events in one transaction. Returns false if the write failed. */
  function writeBatch(): boolean {
    const n = Math.min(cfg.batchSize, queued());
    let seq = lastSeq;
    let prev = lastHash;
    const receipts: DurableReceipt[] = [];
    try {
      transaction(db, () => {
        for (let i = 0; i < n; i++) {
          const entry = items[qHead + i];
          let input = entry.input;
          const time = typeof input.time === 'string' ? input.time : new Date(entry.at).toISOString();
          seq++;
          let sealed: { hash: string; body: string };
          try {
            sealed = sealEvent(input, seq, prev, time);
          } catch (e) {
            input = encodingFailureEvent(input, e);
            sealed = sealEvent(input, seq, prev, time);
          }
          const idx = indexColumns(input);
          insert.run(seq, time, idx.type, idx.requestId, idx.agent, idx.decision, sealed.body, sealed.hash);
          prev = sealed.hash;
          receipts.push({ seq, hash: sealed.hash });
        }
      });
    } catch (e) {
      failures++;
      const err = new AuditUnavailableError(`audit storage write failed (${errorMessage(e)}); ${queued()} events are queued and will be retried`, { cause: e });
      if (!failing) alert({ kind: 'write_failed', message: err.message, error: e });
      failing = true;
      settleFailure(err);
      return false;
    }
    lastSeq = seq;
    lastHash = prev;
    for (let i = 0; i < n; i++) {
      const entry = items[qHead + i];
      if (entry.durable) {
        if (entry.durable.timer) clearTimeout(entry.durable.timer);
        entry.durable.resolve(receipts[i]);
      }
    }
    qHead += n;
    if (qHead > 1024 && qHead * 2 > items.length) { items = items.slice(qHead); qHead = 0; }
    committed += n;
    written += n;
    if (failing) { failing = false; alert({ kind: 'recovered', message: `audit storage recovered; ${written} events written` }); }
    queueFullAlerted = false;
    flushWaiters = flushWaiters.filter((w) => (committed >= w.target ? (w.resolve(), false) : true));
    if (lastSeq - lastCheckpointSeq >= cfg.checkpointEvery) safeCheckpoint('periodic');
    for (const l of commitListeners) { try { l(lastSeq); } catch { /* listeners must not break the writer */ } }
    return true;
  }

  function settleFailure(err: AuditUnavailableError): void {
    // Waiting flushes learn about the failure; the events themselves stay queued.
    for (const w of flushWaiters) w.reject(err);
    flushWaiters = [];
    if (cfg.failMode !== 'fail_closed') return;
    for (let i = qHead; i < items.length; i++) {
      const d = items[i].durable;
      if (!d) continue;
      if (d.timer) clearTimeout(d.timer);
      d.reject(err);
      items[i].durable = undefined;
    }
  }

  function safeCheckpoint(type: CheckpointType): Checkpoint | undefined {
    try {
      return writeCheckpoint(type);
    } catch (e) {
      alert({ kind: 'checkpoint_failed', message: `audit checkpoint failed: ${errorMessage(e)}`, error: e });
      return undefined;
    }
  }

  function writeCheckpoint(type: CheckpointType): Checkpoint | undefined {
    if (lastSeq === 0 || lastSeq === lastCheckpointSeq) return undefined;
    const c = signCheckpoint(key, lastSeq, lastHash, type);
    insertCheckpoint(db, c);
    lastCheckpointSeq = lastSeq;
    checkpoints++;
    return c;
  }

  const interval = setInterval(() => safeCheckpoint('periodic'), cfg.checkpointIntervalMs);
  interval.unref();

  function enqueue(entry: Entry): boolean {
    if (closed) throw new AuditUnavailableError('audit log is closed');
    if (queued() >= cfg.maxQueue) {
      rejected++;
      if (!queueFullAlerted) {
        queueFullAlerted = true;
        alert({ kind: 'queue_full', message: `audit queue is full (${cfg.maxQueue} events); requests are refused until storage catches up` });
      }
      return false;
    }
    items.push(entry);
    enqueued++;
    return true;
  }

  return {
    dataDir: opts.dataDir,
    db,
    signingKey: key,
    record(event) {
      checkInput(event);
      if (!enqueue({ input: event, at: Date.now() })) return false;
      schedule(queued() >= cfg.batchSize);
      return true;
    },
    recordDurable(event) {
      return new Promise<DurableReceipt>((resolve, reject) => {
        checkInput(event);
        const entry: Entry = { input: event, at: Date.now(), durable: { resolve, reject } };
        if (!enqueue(entry)) {
          reject(new AuditUnavailableError(`audit queue is full (${cfg.maxQueue} events); the action was not recorded`));
          return;
        }
        if (cfg.failMode === 'buffer') {
          const d = entry.durable;
          if (d) {
            d.timer = setTimeout(() => {
              entry.durable = undefined;
              reject(new AuditUnavailableError(`audit event not committed within ${cfg.durableTimeoutMs} ms; it stays queued`));
            }, cfg.durableTimeoutMs);
          }
        }
        // A durable write is worth an attempt even while failing: fail_closed must answer now.
        if (failing) retryNow();
        schedule(true);
      });
    },
    flush() {
      if (committed >= enqueued) return Promise.resolve();
      const target = enqueued;
      const p = new Promise<void>((resolve, reject) => flushWaiters.push({ target, resolve, reject }));
      if (failing) retryNow();
      schedule(true);
      return p;
    },
    checkpoint(type = 'periodic') {
      return writeCheckpoint(type);
    },
    async close() {
      if (closed) return;
      clearInterval(interval);
      if (flushTimer) clearTimeout(flushTimer);
      if (immediate) clearImmediate(immediate);
      retryNow();
      closed = true;
      while (queued() > 0 && writeBatch()) { /* drain */ }
      let spill: string | undefined;
      if (queued() > 0) spill = spillQueue(opts.dataDir, items.slice(qHead));
      safeCheckpoint('close');
      db.close();
      if (spill) throw new AuditUnavailableError(`audit storage failed at shutdown; ${queued()} unwritten events were saved to ${spill}`);
    },
    stats() {
      return { queued: queued(), written, dropped: 0, rejected, failures, lastSeq, lastHash, lastCheckpointSeq, checkpoints, failing };
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

interface Head { seq: number; hash: string; checkpointSeq: number }

/** Resume the chain from the stored tail, refusing to extend a tail whose hash does not verify. */
function resumeHead(db: DatabaseSync, key: SigningKey): Head {
  const cps = readCheckpoints(db);
  const checkpointSeq = cps.reduce((m, c) => Math.max(m, c.tree_size), 0);
  const row = db.prepare('SELECT seq, body, hash FROM audit_events ORDER BY seq DESC LIMIT 1').get();
  if (row) {
    const seq = Number(row.seq);
    const body = JSON.parse(String(row.body)) as Record<string, unknown>;
    if (body.seq !== seq || body.hash !== row.hash || eventHash(body) !== row.hash) {
      throw new AuditUnavailableError(`audit chain tail (seq ${seq}) does not verify; the audit database was modified. Run \`aam audit verify\` and investigate before starting.`);
    }
    return { seq, hash: String(row.hash), checkpointSeq };
  }
  const anchor = retentionAnchor(cps);
  if (anchor) {
    if (!checkpointSignatureValid(anchor, key.publicKeyPem)) {
      throw new AuditUnavailableError('audit retention anchor checkpoint has a bad signature; run `aam audit verify`');
    }
    return { seq: anchor.tree_size, hash: anchor.head_hash, checkpointSeq };
  }
  return { seq: 0, hash: GENESIS_HASH, checkpointSeq };
}

/** Programming errors surface at the call site, not later in the writer. */
function checkInput(e: AuditEventInput): void {
  if (typeof e?.type !== 'string' || typeof e.request_id !== 'string') {
    throw new TypeError('audit event needs string fields `type` and `request_id`');
  }
}

function indexColumns(e: AuditEventInput): { type: string; requestId: string; agent: string | null; decision: string | null } {
  return {
    type: String(e.type),
    requestId: String(e.request_id),
    agent: typeof e.identity?.agent === 'string' ? e.identity.agent : null,
    decision: typeof e.policy?.decision === 'string' ? e.policy.decision : null,
  };
}

function spillQueue(dataDir: string, entries: Entry[]): string {
  const path = join(dataDir, `audit-unwritten-${Date.now()}.jsonl`);
  writeFileSync(path, entries.map((e) => JSON.stringify(e.input)).join('\n') + '\n', { mode: 0o600 });
  return path;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
