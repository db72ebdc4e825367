// The audit trail in fleet mode, on PostgreSQL: each process start appends its own hash chain
// (replica id random per start, so no fleet-wide lock on the hot path), in one INSERT per
// event-loop turn (group commit). The chain's head row follows off the request path (at most every
// HEAD_MS, in flush() and, for every chain, in each checkpoint): readers take it as a lower bound
// (verify: "the events reach at least here"), so a head that lags is never wrong. journaled() resolves once
// everything recorded so far is committed, so an acknowledged event survives the loss of the
// replica, disk included. One replica at a time (advisory lock) signs checkpoints naming every
// chain's head with an Ed25519 key kept in PostgreSQL, encrypted under the master key.
// The events' bytes are the same sealed text as the embedded trail's (event.ts), so one verifier
// rule covers both.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { seal, unseal } from '../store/seal.ts';
import type { Sql } from '../store/postgres.ts';
import type { EventWriter } from '../store/pg-wire.ts';
import { GENESIS_HASH, encodeEvent, isoClock, planeOf, sealHead } from './event.ts';
import type { AuditEventInput } from './event.ts';
import { canonicalJson } from './canonical.ts';
import { keyIdOf, signBytes } from './keys.ts';
import type { SigningKey } from './keys.ts';
import type { AuditAlert, DurableReceipt } from './log.ts';
import { AuditUnavailableError } from './log.ts';
import { isoTime, planeArg, traceIdArg } from './query.ts';

export interface FleetAuditOptions {
  /** Names this chain; random per process start. */
  replica: string;
  /** 32-byte key (derived from the master key) that encrypts the signing key at rest. */
  keyEncryptionKey: Buffer;
  scrub?: (json: string) => string;
  onAlert?: (alert: AuditAlert) => void;
  /** Try to sign a fleet checkpoint this often (default 10 000 ms); one replica wins each round. */
  checkpointIntervalMs?: number;
  /** record() refuses beyond this many uncommitted events (default 100 000). */
  maxQueue?: number;
  /** Rows per INSERT at most (default 1000). */
  batchSize?: number;
  /** Each checkpoint this process signs, as one JSON line (kind fleet_checkpoint): copy it out of the database's trust domain. */
  onCheckpoint?: (line: string) => void;
  /** The connection the events' INSERTs go on (default: sql, which also carries the head updates and checkpoints). */
  writer?: EventWriter;
  /** journaled()/recordDurable() reject when their events are not committed within this time (default 2000 ms): a PostgreSQL that hangs refuses requests instead of stalling them. */
  commitTimeoutMs?: number;
}

export interface FleetAuditStats {
  queued: number;
  written: number;
  lastSeq: number;
  failures: number;
  failing: boolean;
  /** INSERTs so far and the events they carried (events per group commit = written / batches). */
  batches: number;
  /** Sum of the INSERTs' round-trip times in ms (mean group-commit latency = commitMs / batches). */
  commitMs: number;
}

export interface FleetAuditLog {
  readonly replica: string;
  record(event: AuditEventInput): boolean;
  /** Resolves once every event recorded so far is committed in PostgreSQL; rejects while it cannot be. */
  journaled(now?: boolean): Promise<void>;
  /**
   * Send the events recorded so far now (the INSERT leaves in this turn, if none is in flight), not
   * at the turn's end; journaled() still says when they are committed. A promise when an INSERT
   * started whose bytes are not on the socket yet: it resolves once they are.
   */
  send(): Promise<void> | undefined;
  recordDurable(event: AuditEventInput): Promise<DurableReceipt>;
  flush(): Promise<void>;
  /** Sign a fleet checkpoint now if no other replica is signing one; true if this call signed. */
  checkpoint(): Promise<boolean>;
  stats(): FleetAuditStats;
  close(): Promise<void>;
}

/**
 * What the requests of one group commit wait for: one promise for all of them (not a promise, an
 * executor and a record per request), settled once `committed` reaches `target`. `since`: when its
 * last request joined (the commit deadline counts from there); `first`: when it was made.
 */
interface Waiter { target: number; since: number; first: number; promise: Promise<void>; resolve: () => void; reject: (e: Error) => void }

/**
 * A request joins the open waiter (events recorded since the last INSERT left) only this long (ms)
 * after it was made: the waiter's deadline is its last joiner's, so an earlier one is refused at
 * most this much later than its own deadline, also while an INSERT hangs and none leaves.
 */
const JOIN_MS = 20;

/** pg_try_advisory_xact_lock key for signing checkpoints ('aam-ckpt'). */
const CHECKPOINT_LOCK = 0x61616d2d636b;
/** HKDF info under which the master key yields the key that encrypts the fleet's signing key. */
export const SIGNING_KEY_KEK_INFO = 'aam audit signing key v1';
/**
 * The values recorded per event, in this order: the replica is not one of them (it is the same
 * for the whole chain, so it goes into the statement text as a literal, replicaLiteral()), and
 * body is sent as its head (sealHead): PostgreSQL appends the hash member (sealTail), so the main
 * thread neither builds the sealed text nor copies it flat to write it (~1 KB per event). The hash
 * is sent for that tail only: the row stores neither it nor prev_hash, which the sealed body holds
 * (migration 18; audit_trail reads them from it).
 */
const VALUES = ['seq', 'ts', 'type', 'request_id', 'agent', 'hash', 'body', 'trace_id', 'decision', 'plane'] as const;
/** Values per event in the pending array, and where seq, hash and body are among them. */
const W = VALUES.length;
const SEQ = 0;
const HASH = 5;
const BODY = 6;
/** The columns an INSERT fills: the values but the hash (which only ends the body). */
const COLUMNS = VALUES.filter((c) => c !== 'hash');
/** Values a row after the first of an INSERT sends: not its seq (the first row's + its place). */
const V = W - 1;
/**
 * The replica id as an SQL string literal. It is aam's own (random hex per start, or a name a test
 * or the CLI makes), but it is checked anyway: a text outside this set is refused at open.
 */
const REPLICA_ID = /^[A-Za-z0-9_.:-]{1,200}$/;
const replicaLiteral = (replica: string): string => {
  if (!REPLICA_ID.test(replica)) throw new Error(`fleet audit: replica id ${JSON.stringify(replica)} is not [A-Za-z0-9_.:-]{1,200}`);
  return `'${replica}'`;
};
/**
 * n rows (a group commit; n = 1 at c=1) into audit_events. The statement holds the replica as a literal, the first row's 10 values and the next rows' 9 (batchValues): a
 * row's seq follows from the row before. One event (c=1) is sent the pending array
 * itself. Up to PREPARED_ROWS rows (what group commit gathers under load) its text is made once per n (and per first attempt / retry) and
 * prepared, so a connection holds at most 2 x PREPARED_ROWS of them; a larger batch (a backlog) is
 * sent unprepared. A first attempt is a plain INSERT (ON CONFLICT cost ~5 us of the backend's CPU
 * per event, measured beside it); rows sent again after a failed write, which may have committed
 * with only its reply lost, go with ON CONFLICT DO NOTHING: found, nothing changes.
 * postgres.js's dynamic helper (sql(rows, ...columns) in a tagged template), used before, rebuilt
 * the text and walked every value through its fragment builder on each INSERT. Each parameter costs
 * the main thread its build (value + infer), serialization and bind, hence the literal replica.
 */
const PREPARED_ROWS = 128;
function insertTexts(replica: string): (n: number, again: boolean) => string {
  const lit = replicaLiteral(replica);
  const texts = new Map<number, string>();
  return (n, again) => {
    const key = again ? -n : n;
    let text = texts.get(key);
    if (text === undefined) {
      let rows = '';
      // As short as it can be: postgres.js makes a key of each INSERT's whole text to find its statement.
      for (let r = 0; r < n; r++) {
        // Row r's placeholder for value c (batchValues' order; c > SEQ for a later row).
        const at = (c: number): string => `$${r === 0 ? c + 1 : W + (r - 1) * V + c}`;
        const value = (c: number): string => c === BODY ? `${at(BODY)}::text||',"hash":"'||${at(HASH)}||'"}'` // sealedText's bytes: the head + sealTail(hash)
          : c === SEQ ? (r > 0 ? `$1::bigint+${r}` : '$1::bigint') : at(c);
        rows += `${r ? ',' : ''}(${lit},${VALUES.map((_, c) => c).filter((c) => c !== HASH).map(value).join(',')})`;
      }
      text = `INSERT INTO audit_events (replica, ${COLUMNS.join(', ')}) VALUES ${rows}${again ? ' ON CONFLICT (replica, seq) DO NOTHING' : ''}`;
      if (n <= PREPARED_ROWS) texts.set(key, text);
    }
    return text;
  };
}
/** What an INSERT of the events in `batch` (W values each) sends: the first's W values, then V per event (insertTexts). */
function batchValues(batch: ReadonlyArray<string | number | null>): Array<string | number | null> {
  const n = batch.length / W;
  if (n === 1) return batch as Array<string | number | null>;
  const out = new Array<string | number | null>(W + (n - 1) * V);
  let o = 0;
  for (let c = 0; c < W; c++) out[o++] = batch[c];
  for (let at = W; at < batch.length; at += W) {
    for (let c = 0; c < W; c++) if (c !== SEQ) out[o++] = batch[at + c];
  }
  return out;
}
/**
 * A failed write is retried after at most this long (ms), so requests are acknowledged again within
 * about a second of PostgreSQL answering (the pool reconnects as often: reconnectBackoff). It was
 * 5 s, and counted every failure since start, so after one outage every later one waited 5 s.
 */
const RETRY_MAX_MS = 1000;
/** The chain's head row is moved at most this often (ms) by a committing replica. */
const HEAD_MS = 200;
/** Every chain's head moved up to its newest event (each checkpoint; also heals the head of a replica that died before moving it). */
const HEADS_FROM_EVENTS = `UPDATE audit_chains c SET head_seq = e.seq, head_hash = e.hash FROM audit_chains c2
  CROSS JOIN LATERAL (SELECT seq, hash FROM audit_trail WHERE replica = c2.replica ORDER BY seq DESC LIMIT 1) e
  WHERE c.replica = c2.replica AND e.seq > c.head_seq`;

export async function openFleetAuditLog(sql: Sql, opts: FleetAuditOptions): Promise<FleetAuditLog> {
  const replica = opts.replica;
  const insertText = insertTexts(replica);
  const key = await fleetSigningKey(sql, opts.keyEncryptionKey);
  await sql`INSERT INTO audit_chains (replica, head_hash) VALUES (${replica}, ${GENESIS_HASH})`;
  const maxQueue = opts.maxQueue ?? 100_000;
  const batchSize = opts.batchSize ?? 1000;
  const writer: EventWriter = opts.writer ?? sql;
  let seq = 0;
  let prev = GENESIS_HASH;
  let committed = 0;
  let committedHash = GENESIS_HASH;
  let headStored = 0;
  let headWrites: Promise<void> = Promise.resolve();
  let headTimer: NodeJS.Timeout | undefined;
  /** The recorded events not yet committed, flat: W values per event in COLUMNS order (no object per event; one event is sent as it is, several through batchValues). */
  let pending: Array<string | number | null> = [];
  let inFlight = false;
  let scheduled = false;
  let closed = false;
  let failing = false;
  let failures = 0;
  /** Failed writes since the last one that committed: the retry waits 200 ms doubling, at most RETRY_MAX_MS. */
  let streak = 0;
  /** The highest seq a failed write carried: rows up to it are sent again with ON CONFLICT DO NOTHING. */
  let sentBefore = 0;
  let batches = 0;
  let commitMs = 0;
  let retryTimer: NodeJS.Timeout | undefined;
  let waiters: Waiter[] = [];
  /** The newest waiter while no INSERT has left since it was made: later events go in the same INSERT, so their requests join it. */
  let open: Waiter | null = null;
  /** The last seq an INSERT carried (a waiter for no more than this waits for one in flight: none joins it). */
  let sent = 0;
  const alert = (a: Omit<AuditAlert, 'queued'>) => opts.onAlert?.({ ...a, queued: pending.length / W });

  const settle = (error?: Error) => {
    const still: Waiter[] = [];
    for (const w of waiters) {
      if (w.target <= committed) w.resolve();
      else if (error) w.reject(error);
      else still.push(w);
    }
    waiters = still;
    if (error) open = null;
  };

  const schedule = () => {
    if (scheduled || inFlight || retryTimer || pending.length === 0) return;
    scheduled = true;
    setImmediate(write);
  };

  // The chain's head row up to what is committed (not awaited by requests; flush() and close() wait for it).
  const storeHead = (): Promise<void> => headWrites = headWrites.catch(() => {}).then(async () => {
    const seq = committed;
    const hash = committedHash;
    if (seq <= headStored) return;
    await sql`UPDATE audit_chains SET head_seq = ${seq}, head_hash = ${hash} WHERE replica = ${replica} AND head_seq < ${seq}`;
    headStored = Math.max(headStored, seq);
  });
  const headLater = () => {
    if (headTimer || closed) return;
    headTimer = setTimeout(() => { headTimer = undefined; storeHead().catch(() => { /* the next commit or checkpoint moves it */ }); }, HEAD_MS);
    headTimer.unref();
  };

  function write(): void {
    scheduled = false;
    if (inFlight || pending.length === 0) return;
    inFlight = true;
    open = null;
    const batch = pending.length <= batchSize * W ? pending : pending.slice(0, batchSize * W);
    pending = batch === pending ? [] : pending.slice(batchSize * W);
    const n = batch.length / W;
    const lastSeq = batch[batch.length - W + SEQ] as number;
    const lastHash = batch[batch.length - W + HASH] as string;
    sent = lastSeq;
    const t0 = performance.now();
    const again = (batch[SEQ] as number) <= sentBefore;
    writer.unsafe(insertText(n, again), batchValues(batch), { prepare: n <= PREPARED_ROWS })
      .then(() => {
        commitMs += performance.now() - t0;
        batches++;
        committed = lastSeq;
        committedHash = lastHash;
        inFlight = false;
        streak = 0;
        headLater();
        if (failing) { failing = false; alert({ kind: 'recovered', message: 'audit trail writes to PostgreSQL again' }); }
        // The events recorded while this INSERT was in flight leave now, not at this turn's check
        // phase: under load the reply is read amid a poll phase that goes on with many requests'
        // sockets, and one INSERT in flight at a time made each group commit wait for all of them.
        if (pending.length > 0 && !retryTimer) write();
        settle();
      }, (e: unknown) => {
        inFlight = false;
        failures++;
        streak++;
        pending = batch.concat(pending);
        sentBefore = Math.max(sentBefore, lastSeq);
        const error = new AuditUnavailableError(`cannot write the audit trail to PostgreSQL: ${(e as Error).message}`, { cause: e });
        if (!failing) { failing = true; alert({ kind: 'write_failed', message: error.message, error: e }); }
        settle(error);
        // Kept and retried: evidence is never dropped, the requests waiting for it were refused.
        retryTimer = setTimeout(() => { retryTimer = undefined; schedule(); }, Math.min(RETRY_MAX_MS, 100 * 2 ** Math.min(streak, 4)));
        retryTimer.unref();
      });
  }

  const iso = isoClock();
  const record = (event: AuditEventInput): boolean => {
    if (closed || pending.length >= maxQueue * W) {
      if (!closed) alert({ kind: 'queue_full', message: `audit queue full (${maxQueue} events waiting for PostgreSQL): refusing new actions` });
      return false;
    }
    const enc = encodeEvent(event, Date.now(), iso);
    const json = opts.scrub ? opts.scrub(enc.json) : enc.json;
    seq++;
    const sealed = sealHead(json, seq, prev);
    const cols = enc.cols;
    // VALUES order: seq, ts, type, request_id, agent, hash, body, trace_id, decision, plane.
    pending.push(seq, cols[0], cols[1], cols[2], cols[3], sealed.hash, sealed.head, typeof event.trace_id === 'string' ? event.trace_id : null, cols[4], planeOf(event));
    prev = sealed.hash;
    schedule();
    return true;
  };

  const upTo = (target: number): Promise<void> => {
    if (target <= committed) return Promise.resolve();
    const now = performance.now();
    if (open !== null && now - open.first < JOIN_MS) {
      open.target = target;
      open.since = now;
      return open.promise;
    }
    let resolve!: () => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
    const w: Waiter = { target, since: now, first: now, promise, resolve, reject };
    waiters.push(w);
    open = target > sent ? w : null;
    schedule();
    return promise;
  };

  // One watchdog instead of a timer per request: waiters are in arrival order.
  const commitTimeoutMs = opts.commitTimeoutMs ?? 2000;
  const watchdog = setInterval(() => {
    const cut = performance.now() - commitTimeoutMs;
    let n = 0;
    while (n < waiters.length && waiters[n].since < cut) n++;
    if (n === 0) return;
    const late = waiters.splice(0, n);
    if (open !== null && late.includes(open)) open = null;
    const error = new AuditUnavailableError(`PostgreSQL did not commit the audit trail within ${commitTimeoutMs} ms; the events stay queued and are written when it answers`);
    if (!failing) { failing = true; alert({ kind: 'write_failed', message: error.message }); }
    for (const w of late) w.reject(error);
  }, Math.max(50, Math.min(500, commitTimeoutMs / 4)));
  watchdog.unref();

  const checkpoint = async (): Promise<boolean> => sql.begin(async (tx): Promise<FleetCheckpoint | false> => {
    const [lock] = await tx<Array<{ ok: boolean }>>`SELECT pg_try_advisory_xact_lock(${CHECKPOINT_LOCK}) AS ok`;
    if (!lock.ok) return false;
    await tx.unsafe(HEADS_FROM_EVENTS);
    const heads = await tx<Array<{ replica: string; head_seq: string; head_hash: string }>>`
      SELECT replica, head_seq, head_hash FROM audit_chains WHERE head_seq > 0 ORDER BY replica`;
    const text = headsText(heads.map((h) => ({ replica: h.replica, seq: Number(h.head_seq), hash: h.head_hash })));
    const [last] = await tx<Array<{ heads: string }>>`SELECT heads FROM audit_checkpoints ORDER BY id DESC LIMIT 1`;
    if (heads.length === 0 || last?.heads === text) return false;
    const time = new Date().toISOString();
    const signature = signBytes(key.privateKey, fleetCheckpointPayload(text, time));
    await tx`INSERT INTO audit_checkpoints (time, heads, key_id, signature) VALUES (${time}, ${text}, ${key.keyId}, ${signature})`;
    return { time, heads: text, key_id: key.keyId, signature };
  }).then((c) => {
    if (!c) return false;
    try { opts.onCheckpoint?.(JSON.stringify({ kind: 'fleet_checkpoint', ...c })); } catch (e) {
      alert({ kind: 'checkpoint_failed', message: `fleet checkpoint signed but not copied out: ${(e as Error).message}`, error: e });
    }
    return true;
  });

  const timer = setInterval(() => {
    checkpoint().catch((e: unknown) => alert({ kind: 'checkpoint_failed', message: `fleet checkpoint not signed: ${(e as Error).message}`, error: e }));
  }, opts.checkpointIntervalMs ?? 10_000);
  timer.unref();

  return {
    replica,
    record,
    // now: nothing else in flight (c=1), so the INSERT goes out at once instead of after this loop turn.
    journaled: (now = false) => {
      const p = upTo(seq);
      if (now && scheduled) write();
      return p;
    },
    // A request alone in flight whose evidence is all recorded: the commit's round trip overlaps
    // what it does after awaiting this and before awaiting journaled() (the answer's checks and
    // encoding). postgres.js writes a query only after the running microtasks (its run()) and a
    // nextTick (its flush()): a caller going on at once would do all that work before the INSERT
    // left, so it waits for the check phase, which comes after both. A connected PgWire has
    // written the batch when write() returns: nothing to wait for.
    send: () => {
      if (!scheduled) return undefined;
      const atOnce = writer.writesAtOnce === true;
      write();
      return inFlight && !atOnce ? new Promise<void>((resolve) => setImmediate(resolve)) : undefined;
    },
    async recordDurable(event) {
      if (!record(event)) throw new AuditUnavailableError('the audit queue is full: the action is refused rather than left unrecorded');
      const mine = seq;
      const hash = prev;
      await upTo(mine);
      return { seq: mine, hash };
    },
    flush: async () => { await upTo(seq); await storeHead(); },
    checkpoint,
    stats: () => ({ queued: pending.length / W, written: committed, lastSeq: seq, failures, failing, batches, commitMs }),
    async close() {
      clearInterval(timer);
      try { await upTo(seq); await storeHead(); await checkpoint(); } finally {
        clearInterval(watchdog);
        closed = true;
        if (retryTimer) clearTimeout(retryTimer);
        if (headTimer) clearTimeout(headTimer);
      }
    },
  };
}

export interface ChainHead { replica: string; seq: number; hash: string }

/** A signed fleet checkpoint as stored and as copied out (heads: headsText()). */
export interface FleetCheckpoint { time: string; heads: string; key_id: string; signature: string }

/** Fleet checkpoints from the lines of a copied-out file (other lines, e.g. embedded checkpoints, are skipped). */
export function parseFleetCheckpoints(text: string): FleetCheckpoint[] {
  const out: FleetCheckpoint[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"fleet_checkpoint"')) continue;
    const o = JSON.parse(line) as Record<string, unknown>;
    if (typeof o.time !== 'string' || typeof o.heads !== 'string' || typeof o.key_id !== 'string' || typeof o.signature !== 'string') throw new Error('a fleet_checkpoint line lacks time, heads, key_id or signature');
    out.push({ time: o.time, heads: o.heads, key_id: o.key_id, signature: o.signature });
  }
  return out;
}

/** The signed text naming every chain's head (replica order, so any signer writes the same bytes). */
export function headsText(heads: readonly ChainHead[]): string {
  return JSON.stringify([...heads].sort((a, b) => (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : 0)).map((h) => [h.replica, h.seq, h.hash]));
}

export function parseHeads(text: string): ChainHead[] {
  return (JSON.parse(text) as Array<[string, number, string]>).map(([replica, seq, hash]) => ({ replica, seq, hash }));
}

export function fleetCheckpointPayload(heads: string, time: string): string {
  return canonicalJson({ heads, time, type: 'fleet' });
}

// ---- The signing key, shared by the fleet, encrypted under the master key -------------------

/** The newest signing key this master key opens, created when there is none. */
export async function fleetSigningKey(sql: Sql, kek: Buffer): Promise<SigningKey> {
  const rows = await sql<Array<{ key_id: string; private_enc: string }>>`SELECT key_id, private_enc FROM audit_keys ORDER BY created_at DESC`;
  for (const r of rows) {
    const pem = unseal(kek, r.private_enc);
    if (pem) return signingKeyOf(pem);
  }
  // None opens (first start, or a replica with another master key): add a key of its own. Its
  // public half is stored like the others', so verifiers accept its checkpoints too.
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = signingKeyOf(pem);
  await sql`INSERT INTO audit_keys (key_id, public_pem, private_enc) VALUES (${key.keyId}, ${key.publicKeyPem}, ${seal(kek, pem)}) ON CONFLICT DO NOTHING`;
  return key;
}

function signingKeyOf(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKeyPem, keyId: keyIdOf(publicKeyPem) };
}

// ---- Fleet-wide reads (aam audit query/show) ------------------------------------------------

export interface FleetQuery {
  agent?: string; since?: string; type?: string; requestId?: string; traceId?: string; limit?: number;
  /** Any of these agents (a team's members, resolved from the config by the caller). */
  agents?: readonly string[];
  /** The policy decision (allow, deny, ...), as indexColumns() reads it from the event. */
  decision?: string;
  /** model, tool, a2a or admin, as planeOf() reads it from the event. */
  plane?: string;
  /** Oldest first (the live tail) instead of newest first. */
  order?: 'asc' | 'desc';
  /** Newest first only: the events after this one in that order (the next page; ts, replica, seq of the last one shown). */
  after?: FleetCursor;
}

/** Where a newest-first page of the fleet's trail ended: its last event's time, replica and seq. */
export interface FleetCursor { ts: string; replica: string; seq: number }

/** Events of every replica, newest first (by time, then replica and seq), parsed from their sealed text. */
export async function queryFleetEvents(sql: Sql, q: FleetQuery): Promise<Array<Record<string, unknown> & { replica: string }>> {
  const asc = q.order === 'asc';
  // Checked as the embedded trail's query checks them (a bad time was a bare RangeError here).
  const since = q.since ? isoTime(q.since, 'since') : undefined;
  if (q.agents?.length === 0) return [];
  // Every filter is a column with an index (the audit query keys migration): no body is parsed to decide.
  // Decision and plane are indexed for their rare values only (migration 16): a query for another
  // value states the index's predicate, so a generic plan of the prepared statement may use it too.
  const rows = await sql<Array<{ replica: string; body: string }>>`SELECT replica, body FROM audit_trail WHERE true
    ${q.agent ? sql`AND agent = ${q.agent}` : sql``} ${since ? sql`AND ts >= ${since}` : sql``}
    ${q.agents ? sql`AND agent = ANY(${q.agents as string[]})` : sql``}
    ${q.type ? sql`AND type = ${q.type}` : sql``} ${q.requestId ? sql`AND request_id = ${q.requestId}` : sql``}
    ${q.traceId ? sql`AND trace_id = ${traceIdArg(q.traceId)}` : sql``}
    ${q.decision ? sql`AND decision = ${q.decision} ${q.decision === 'allow' ? sql`` : sql`AND decision <> 'allow'`}` : sql``}
    ${q.plane ? sql`AND plane = ${planeArg(q.plane)} ${q.plane === 'model' ? sql`` : sql`AND plane <> 'model'`}` : sql``}
    ${q.after && !asc ? sql`AND (ts < ${q.after.ts} OR (ts = ${q.after.ts} AND (replica > ${q.after.replica} OR (replica = ${q.after.replica} AND seq < ${q.after.seq}))))` : sql``}
    ORDER BY ${asc ? sql`ts, replica, seq` : sql`ts DESC, replica, seq DESC`} LIMIT ${q.limit ?? 100}`;
  return rows.map((r) => ({ ...(JSON.parse(r.body) as Record<string, unknown>), replica: r.replica }));
}

/** Every replica's events of `types` at or after `since`, oldest first (aam policy diff --against-trail in fleet mode). */
export async function fleetEventsSince(sql: Sql, since: string, types: readonly string[]): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  // A cursor: a week of a busy fleet's decisions is read in slices, not as one result set.
  const cursor = sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE ts >= ${since} AND type = ANY(${types as string[]})
    ORDER BY ts, replica, seq`.cursor(1000);
  for await (const rows of cursor) for (const r of rows) out.push(JSON.parse(r.body) as Record<string, unknown>);
  return out;
}
