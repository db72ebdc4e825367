// Verification of the hash chain and the signed checkpoints, for the live database and for an
// exported JSONL file (which needs nothing but the public key). Reports the first problem with
// the seq where it is and what kind of tampering it looks like.
import { readFileSync } from 'node:fs';
import { GENESIS_HASH, chainHash, indexColumns, recomputeHash, sealedText, storedText } from './event.ts';
import { checkpointSignatureValid } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import { keyIdOf, signingKeyPath } from './keys.ts';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { blockKeys, blockShapeProblem, dataDirOf, openAuditDb, readBlocks, readCheckpoints, retentionAnchor } from './store.ts';
import type { Block, EventKeys } from './store.ts';
import { SegmentMissingError, readLines } from './segment.ts';

export type TamperKind = 'altered' | 'removed' | 'inserted' | 'reordered' | 'bad_checkpoint' | 'truncated';

export interface VerifyError {
  seq: number;
  kind: TamperKind;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  events: number;
  checkpoints: number;
  /** First and last seq checked (0 when empty). */
  firstSeq: number;
  lastSeq: number;
  /** Events after the newest valid checkpoint: chained but not yet signed. */
  unsignedTail: number;
  /** Where the chain starts: genesis, or a signed checkpoint (retention cut or export start). */
  anchor: 'genesis' | { tree_size: number; type: string };
  /** 'given' when the caller supplied the public key; 'stored' when it came from the audit data itself. */
  keySource: 'given' | 'stored' | 'key_file';
  /**
   * The outside checkpoint the trail was held to (verify --checkpoint); covered: the trail was
   * compared with it (false: it is older than the retention cut, so nothing it signed is left).
   */
  outside?: { tree_size: number; time: string; covered: boolean };
  firstError?: VerifyError;
}

/** A checkpoint kept outside the data dir, and whether its signature verified with the key in use. */
interface Outside {
  c: Checkpoint;
  /** undefined: verified; else why not. */
  problem?: string;
}

function reviewOutside(c: Checkpoint | undefined, pem: string | undefined): Outside | undefined {
  if (!c) return undefined;
  if (!pem) return { c, problem: `the outside checkpoint (tree size ${c.tree_size}) was signed by key ${c.key_id}, which this trail does not know: it belongs to another trail, or pass the --public-key that signed it` };
  if (!checkpointSignatureValid(c, pem)) return { c, problem: `the outside checkpoint (tree size ${c.tree_size}, key ${c.key_id}) does not verify with the public key in use: it was forged or edited, or another key (another trail) signed it` };
  return { c };
}

type Parsed = Record<string, unknown>;

/**
 * Streaming chain checker. On the first problem it keeps only the seqs of the remaining events
 * so the problem can be classified (a later duplicate means an insertion, a later occurrence of
 * the missing seq means a reordering, none means a removal).
 */
class ChainChecker {
  expected: number;
  prev: string;
  count = 0;
  first = 0;
  private pending?: { seq: number; cause: 'gap' | 'mismatch' | 'duplicate'; found: number; message: string; tail: number[] };
  private error?: VerifyError;
  private readonly heads: Map<number, string>;
  /** A verified outside checkpoint: the event at its tree size must carry its head hash. */
  private readonly pin?: Checkpoint;

  constructor(startSeq: number, startPrev: string, heads: Map<number, string>, pin?: Checkpoint) {
    this.expected = startSeq;
    this.prev = startPrev;
    this.heads = heads;
    this.pin = pin;
  }

  get failed(): boolean {
    return this.pending !== undefined || this.error !== undefined;
  }

  /** Nothing more is checked (a definite error was found). */
  get stopped(): boolean {
    return this.error !== undefined;
  }

  /**
   * `text` is the event as stored (the bytes its hash covers), `e` the same parsed; hashChecked:
   * the caller already found that those bytes hash to e.hash. Returns true when the event
   * extends the chain correctly.
   */
  push(e: Parsed, text: string, hashChecked = false): boolean {
    const seq = typeof e.seq === 'number' && Number.isInteger(e.seq) ? e.seq : -1;
    if (this.pending) { this.pending.tail.push(seq); return false; }
    if (this.error) return false;
    if (seq < 0 || typeof e.hash !== 'string' || typeof e.prev_hash !== 'string') {
      this.fail(this.expected, 'altered', `event after seq ${this.expected - 1} is malformed (missing seq, hash or prev_hash)`);
      return false;
    }
    if (seq < this.expected) return this.suspect(seq, 'duplicate', `seq ${seq} appears again after seq ${this.expected - 1}`);
    if (seq > this.expected) return this.suspect(seq, 'gap', `expected seq ${this.expected}, found seq ${seq}`);
    if (!hashChecked && recomputeHash(text, e) !== e.hash) return this.suspect(seq, 'mismatch', `event ${seq}: content does not match its hash (a field was edited)`);
    if (e.prev_hash !== this.prev) return this.suspect(seq, 'mismatch', `event ${seq}: prev_hash does not match the hash of event ${seq - 1}`);
    const head = this.heads.get(seq);
    if (head !== undefined && head !== e.hash) {
      this.fail(seq, 'altered', `event ${seq} differs from the signed checkpoint at tree size ${seq}: the chain up to here was rewritten`);
      return false;
    }
    if (seq === this.pin?.tree_size && e.hash !== this.pin.head_hash) {
      this.fail(seq, 'altered', `event ${seq} is not the event the outside checkpoint (signed ${this.pin.time}) vouches for at tree size ${seq}: the trail was rewritten up to here, or the checkpoint belongs to another trail`);
      return false;
    }
    if (this.count === 0) this.first = seq;
    this.count++;
    this.prev = e.hash;
    this.expected++;
    return true;
  }

  fail(seq: number, kind: TamperKind, message: string): void {
    if (!this.failed) this.error = { seq, kind, message };
  }

  private suspect(seq: number, cause: 'gap' | 'mismatch' | 'duplicate', message: string): boolean {
    this.pending = { seq, cause, found: this.expected, message, tail: [] };
    return false;
  }

  finish(): VerifyError | undefined {
    if (this.error || !this.pending) return this.error;
    const { seq, cause, found, message, tail } = this.pending;
    if (cause === 'duplicate') return { seq, kind: 'inserted', message: `${message}: an event was inserted` };
    if (cause === 'mismatch') {
      return tail.includes(seq)
        ? { seq, kind: 'inserted', message: `two events claim seq ${seq}: an event was inserted` }
        : { seq, kind: 'altered', message };
    }
    // gap: seq `found` was expected but `seq` came first.
    if (tail.includes(seq)) return { seq, kind: 'inserted', message: `seq ${seq} appears twice: an event was inserted before seq ${found}` };
    if (tail.includes(found)) return { seq: found, kind: 'reordered', message: `seq ${found} comes after seq ${seq}: events were reordered` };
    return { seq: found, kind: 'removed', message: `${message}: event(s) ${found}..${seq - 1} were removed` };
  }
}

interface CheckpointReview {
  valid: Checkpoint[];
  errors: VerifyError[];
}

function reviewCheckpoints(cps: readonly Checkpoint[], keyFor: (c: Checkpoint) => string | undefined): CheckpointReview {
  const valid: Checkpoint[] = [];
  const errors: VerifyError[] = [];
  for (const c of cps) {
    const pem = keyFor(c);
    if (pem && checkpointSignatureValid(c, pem)) valid.push(c);
    else errors.push({ seq: c.tree_size, kind: 'bad_checkpoint', message: pem ? `checkpoint at tree size ${c.tree_size} has an invalid signature (forged or edited)` : `checkpoint at tree size ${c.tree_size} was signed by unknown key ${c.key_id}` });
  }
  return { valid, errors };
}

function headsOf(valid: readonly Checkpoint[]): Map<number, string> {
  const m = new Map<number, string>();
  for (const c of valid) m.set(c.tree_size, c.head_hash);
  return m;
}

/** Where the chain was checked from: genesis (0) or a signed anchor, with the hash it starts after. */
interface Start { seq: number; hash: string }

function conclude(checker: ChainChecker, review: CheckpointReview, start: Start, base: Omit<VerifyResult, 'ok' | 'events' | 'firstSeq' | 'lastSeq' | 'unsignedTail' | 'firstError' | 'outside'>, outside?: Outside): VerifyResult {
  const errors = [...review.errors];
  const chainError = checker.finish();
  const lastSeq = checker.expected - 1;
  const signed = review.valid.reduce((m, c) => Math.max(m, c.tree_size), 0);
  const pinned = outside && !outside.problem ? outside.c : undefined;
  const cut = pinned && !chainError && lastSeq < pinned.tree_size;
  if (chainError) errors.unshift(chainError);
  else if (cut) errors.push({ seq: lastSeq + 1, kind: 'truncated', message: `the outside checkpoint (signed ${pinned.time}) covers events up to seq ${pinned.tree_size} but the trail ends at seq ${lastSeq}: events ${lastSeq + 1}..${pinned.tree_size} are missing (the tail was cut, or the checkpoint belongs to another trail)` });
  else if (signed > lastSeq) errors.push({ seq: lastSeq + 1, kind: 'truncated', message: `a signed checkpoint covers ${signed} events but the chain ends at seq ${lastSeq}: events ${lastSeq + 1}..${signed} were removed` });
  // Retention cut exactly at the outside checkpoint: the anchor must carry the hash it signed.
  if (pinned && pinned.tree_size === start.seq && pinned.head_hash !== start.hash) {
    errors.push({ seq: start.seq, kind: 'altered', message: `the retention checkpoint at seq ${start.seq} names another hash than the outside checkpoint (signed ${pinned.time}): the trail was rewritten, or the checkpoint belongs to another trail` });
  }
  // Lowest seq first; the chain error wins a tie (stable sort, it was put first). A rejected
  // outside checkpoint is named first: it is what the caller asked to be checked against.
  errors.sort((a, b) => a.seq - b.seq);
  if (outside?.problem) errors.unshift({ seq: outside.c.tree_size, kind: 'bad_checkpoint', message: outside.problem });
  return {
    ok: errors.length === 0,
    events: checker.count,
    firstSeq: checker.count ? checker.first : 0,
    lastSeq: chainError ? 0 : lastSeq,
    unsignedTail: Math.max(0, lastSeq - signed),
    ...base,
    ...(outside ? { outside: { tree_size: outside.c.tree_size, time: outside.c.time, covered: !outside.problem && outside.c.tree_size >= start.seq } } : {}),
    firstError: errors[0],
  };
}

/** Query keys stored beside an event must agree with it (queries read them). */
function keysMismatch(k: EventKeys, e: Parsed): string | undefined {
  const { agent, decision } = indexColumns(e);
  if (k.time !== e.time || k.type !== e.type || k.request_id !== e.request_id) return 'stored time/type/request_id keys differ from the event';
  if ((k.agent ?? null) !== agent || (k.decision ?? null) !== decision) return 'stored agent/decision keys differ from the event';
  return undefined;
}

/** How far from its position a moved event is looked for (only after a mismatch), and how many such searches at most. */
const MOVE_WINDOW = 5000;
const MAX_SEARCHES = 20;

/**
 * Lines recorded in a segment carry no seq: an event's seq is its position in its block. The
 * seq, prev_hash and hash stored with a line travel with it, so when a line does not hash at its
 * position, the seq it does hash at (nearby) tells where it came from. That restores what the
 * ChainChecker needs to tell removed, inserted and reordered events from edited ones.
 */
function claimedSeq(line: string, pos: number, prev: string, hash: string, budget: { left: number }): number {
  if (budget.left <= 0) return pos;
  for (let d = 1; d <= MOVE_WINDOW; d++) {
    if (chainHash(line, pos + d, prev) === hash) return pos + d;
    if (pos - d > 0 && chainHash(line, pos - d, prev) === hash) return pos - d;
  }
  budget.left--; // an edited line: the whole window was hashed in vain
  return pos;
}

/**
 * Verify <dataDir>/audit.db and its segment files. Pass the public key you trust; without it the
 * key stored with the data is used. onProgress(events checked, last seq of the trail) after each block.
 * outside: a signed checkpoint kept out of the data dir; the trail must still hold every event up
 * to its tree size, with the hash it signed (without one, a cut tail goes unnoticed).
 */
export function verifyDatabase(dataDir: string, publicKeyPem?: string, onProgress?: (checked: number, total: number) => void, outside?: Checkpoint): VerifyResult {
  const db = openAuditDb(dataDir);
  try {
    const cps = readCheckpoints(db);
    const stored = new Map<string, string>();
    for (const r of db.prepare("SELECT key, value FROM audit_meta WHERE key LIKE 'public_key:%'").all()) {
      stored.set(String(r.key).slice('public_key:'.length), String(r.value));
    }
    let keySource: VerifyResult['keySource'] = 'given';
    let given = publicKeyPem;
    if (!given) {
      given = publicKeyFromKeyFile(dataDir);
      keySource = given ? 'key_file' : 'stored';
    }
    const review = reviewCheckpoints(cps, (c) => (given ?? stored.get(c.key_id)));
    // Without a trusted key, an outside checkpoint is checked with the trail's own key of that id
    // (the key file's, or one stored with the data): a stranger's key is named as such.
    const fileKey = keySource === 'key_file' ? given : undefined;
    const out = reviewOutside(outside, outside && (publicKeyPem ?? (fileKey && keyIdOf(fileKey) === outside.key_id ? fileKey : stored.get(outside.key_id))));
    const anchor = retentionAnchor(review.valid);
    // A retention checkpoint with a bad signature must not serve as the start of the chain.
    const start = anchor ? { seq: anchor.tree_size, hash: anchor.head_hash } : { seq: 0, hash: GENESIS_HASH };
    const checker = new ChainChecker(start.seq + 1, start.hash, headsOf(review.valid), out && !out.problem ? out.c : undefined);
    const budget = { left: MAX_SEARCHES };
    const total = onProgress ? Number(db.prepare('SELECT MAX(last_seq) AS s FROM audit_blocks').get()?.s ?? 0) : 0;
    let checked = 0;
    for (const b of readBlocks(db)) {
      checkBlock(dataDirOf(db), b, checker, budget);
      checked += b.last_seq - b.first_seq + 1;
      onProgress?.(checked, total);
    }
    return conclude(checker, review, start, {
      checkpoints: cps.length,
      anchor: anchor ? { tree_size: anchor.tree_size, type: anchor.type } : 'genesis',
      keySource,
    }, out);
  } finally {
    db.close();
  }
}

function checkBlock(dataDir: string, b: Block, checker: ChainChecker, budget: { left: number }): void {
  let lines: string[];
  try {
    lines = readLines(dataDir, b.segment, b.byte_start, b.byte_end);
  } catch (e) {
    if (!(e instanceof SegmentMissingError)) throw e;
    checker.fail(b.first_seq, 'removed', `events ${b.first_seq}..${b.last_seq}: ${e.message}`);
    return;
  }
  let keys: EventKeys[];
  try { keys = blockKeys(b); } catch { keys = []; }
  const problem = blockShapeProblem(b, lines.length, keys.length) ?? (b.last_hash !== b.hashes.slice(-64) ? `block of events ${b.first_seq}..${b.last_seq} names a last hash that is not its last event's` : undefined);
  if (problem) {
    checker.fail(b.first_seq, 'altered', `${problem}: its segment bytes or index row were edited`);
    return;
  }
  const n = b.last_seq - b.first_seq + 1;
  let prev = b.prev_hash;
  for (let i = 0; i < n; i++) {
    const pos = b.first_seq + i;
    const hash = b.hashes.slice(i * 64, i * 64 + 64);
    const line = lines[i];
    // The common case: the line hashes as the event at its position (checked once, here).
    const inPlace = !b.sealed && chainHash(line, pos, prev) === hash;
    const seq = inPlace || checker.stopped ? pos : claimedSeq(line, pos, prev, hash, budget);
    const text = b.sealed ? line : sealedText(line, seq, prev, hash);
    prev = hash;
    let e: Parsed;
    try {
      e = JSON.parse(text) as Parsed;
    } catch {
      checker.fail(pos, 'altered', `event ${pos}: stored line is not valid JSON`);
      continue;
    }
    if (checker.push(e, text, inPlace)) {
      const bad = keysMismatch(keys[i], e);
      if (bad) checker.fail(pos, 'altered', `event ${pos}: ${bad}`);
    }
  }
}

/** Verify an exported JSONL file with only the public key (and, optionally, an outside checkpoint as for verifyDatabase). */
export function verifyExport(jsonlText: string, publicKeyPem: string, outside?: Checkpoint): VerifyResult {
  const events: Array<{ e: Parsed; text: string }> = [];
  const cps: Checkpoint[] = [];
  let malformed: VerifyError | undefined;
  const lines = jsonlText.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let obj: Parsed;
    try {
      obj = JSON.parse(line) as Parsed;
    } catch {
      malformed ??= { seq: events.length ? Number(events[events.length - 1].e.seq) + 1 : 0, kind: 'altered', message: `line ${i + 1} is not valid JSON` };
      continue;
    }
    const { kind, ...rest } = obj;
    if (kind === 'event') events.push({ e: rest, text: storedText(line) });
    else if (kind === 'checkpoint') cps.push(rest as unknown as Checkpoint);
  }
  const review = reviewCheckpoints(cps, () => publicKeyPem);
  const firstSeq = events.length && typeof events[0].e.seq === 'number' ? events[0].e.seq : 1;
  // The export starts at genesis or right after a signed checkpoint that vouches for prev_hash.
  const anchor = firstSeq > 1 ? review.valid.find((c) => c.tree_size === firstSeq - 1) : undefined;
  const start = anchor ? { seq: anchor.tree_size, hash: anchor.head_hash } : { seq: 0, hash: GENESIS_HASH };
  const out = reviewOutside(outside, publicKeyPem);
  const checker = new ChainChecker(start.seq + 1, start.hash, headsOf(review.valid), out && !out.problem ? out.c : undefined);
  if (malformed) checker.fail(malformed.seq, malformed.kind, malformed.message);
  for (const { e, text } of events) checker.push(e, text);
  return conclude(checker, review, start, {
    checkpoints: cps.length,
    anchor: anchor ? { tree_size: anchor.tree_size, type: anchor.type } : 'genesis',
    keySource: 'given',
  }, out);
}

/** The verifier may read the public half of the signing key when it runs beside the server. */
function publicKeyFromKeyFile(dataDir: string): string | undefined {
  try {
    return createPublicKey(createPrivateKey(readFileSync(signingKeyPath(dataDir), 'utf8'))).export({ type: 'spki', format: 'pem' }).toString();
  } catch {
    return undefined;
  }
}
