// `aam audit verify` in fleet mode: walk every replica's chain (seq contiguous, each body hashing
// to its hash and naming the previous one) and check every signed fleet checkpoint: its signature
// under a stored public key, and that each chain still holds the head it signed, with that hash.
// Deleting a chain's newest rows, or a whole chain, after a checkpoint is caught by the
// checkpoint; an edited row by its hash. A pruned chain starts at the signed retention cut
// (`aam audit prune`), never at whatever row happens to be oldest. The same walk checks the
// trail in PostgreSQL and an exported or sink file of it (`--file`).
import type { Sql } from '../store/postgres.ts';
import { GENESIS_HASH, recomputeHash } from './event.ts';
import { verifyBytes } from './keys.ts';
import { fleetCheckpointPayload, parseHeads, type ChainHead, type FleetCheckpoint } from './fleet-log.ts';
import { fleetRetentionPayload, type FleetRetention } from './fleet-retention.ts';
import { fleetStoredText } from './fleet-export.ts';
import type { TamperKind } from './verify.ts';

export interface FleetVerifyError { replica: string; seq: number; kind: TamperKind; message: string }

export interface FleetVerifyResult {
  ok: boolean;
  events: number;
  chains: number;
  checkpoints: number;
  /** Events after the newest checkpoint's heads (chained, not yet signed). */
  unsignedTail: number;
  errors: FleetVerifyError[];
  /** Checkpoints given from outside the database (--checkpoint) that were checked too. */
  outside: number;
  /** Chains that start at a signed retention cut (pruned) rather than at seq 1. */
  pruned: number;
  /** A file only: chains that start right after a signed head (an export --since), not at seq 1. */
  partial: number;
}

interface EventRow { seq: number | string; prev_hash?: string; hash?: string; body: string }

/** One chain as a source gives it: its rows after a seq, in seq order, in batches. */
interface ChainSource {
  replica: string;
  headSeq?: number;
  /** A file's fleet_chain line: the chain starts after this seq, which a signed head must vouch for. */
  after?: number;
  rows(after: number): AsyncIterable<EventRow[]>;
}

/** Everything a verification reads; from PostgreSQL or from a file. */
interface Trail {
  keys: Map<string, string>;
  checkpoints: Array<FleetCheckpoint & { id: string }>;
  retention: Array<FleetRetention & { id: string }>;
  chains: ChainSource[];
  /** The trail is a file (keys given by the caller), not the database. */
  file: boolean;
}

/**
 * outside: checkpoints kept out of the database (a copy of the checkpoint file): they catch a trail
 * cut short together with its checkpoint rows.
 */
export async function verifyFleet(sql: Sql, outside: readonly FleetCheckpoint[] = []): Promise<FleetVerifyResult> {
  const keys = new Map((await sql<Array<{ key_id: string; public_pem: string }>>`SELECT key_id, public_pem FROM audit_keys`).map((k) => [k.key_id, k.public_pem]));
  const stored = await sql<Array<FleetCheckpoint & { id: string }>>`SELECT id, time, heads, key_id, signature FROM audit_checkpoints ORDER BY id`;
  const retention = await sql<Array<FleetRetention & { id: string }>>`SELECT id, time, cuts, key_id, signature FROM audit_retention ORDER BY id`;
  const chains = await sql<Array<{ replica: string; head_seq: string }>>`SELECT replica, head_seq FROM audit_chains ORDER BY replica`;
  const r = await verifyTrail({
    keys, retention: retention.map((x) => ({ ...x, id: `retention ${x.id}` })), file: false,
    checkpoints: [...stored.map((c) => ({ ...c, id: String(c.id) })), ...outside.map((c, i) => ({ ...c, id: `given #${i + 1}` }))],
    chains: chains.map((c) => ({
      replica: c.replica, headSeq: Number(c.head_seq),
      rows: (after) => sql<EventRow[]>`SELECT seq, prev_hash, hash, body FROM audit_trail WHERE replica = ${c.replica} AND seq > ${after} ORDER BY seq`.cursor(2000),
    })),
  });
  // Events of a replica with no chain row are walked by no chain: named (no foreign key keeps them out since migration 12).
  const orphans = await sql<Array<{ replica: string; seq: string }>>`SELECT replica, min(seq) AS seq FROM audit_trail e
    WHERE NOT EXISTS (SELECT 1 FROM audit_chains c WHERE c.replica = e.replica) GROUP BY replica ORDER BY replica`;
  const errors = [...orphans.map((o): FleetVerifyError => ({ replica: o.replica, seq: Number(o.seq), kind: 'inserted', message: `replica ${o.replica}: events of a chain that does not exist (no audit_chains row)` })), ...r.errors];
  return { ...r, ok: errors.length === 0, errors, checkpoints: stored.length, outside: outside.length };
}

/**
 * An export (`aam audit export` in fleet mode) or a fleet sink's JSONL file, checked with the public
 * keys the caller trusts (PEM blocks; `aam audit public-key` prints the fleet's).
 */
export async function verifyFleetFile(text: string, publicKeysPem: readonly string[], keyIdOf: (pem: string) => string): Promise<FleetVerifyResult> {
  const checkpoints: Array<FleetCheckpoint & { id: string }> = [];
  const retention: Array<FleetRetention & { id: string }> = [];
  const byChain = new Map<string, EventRow[]>();
  const starts = new Map<string, number>();
  const malformed: FleetVerifyError[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    const ev = fleetStoredText(line);
    if (ev) {
      const seq = /"seq":(\d+)/.exec(ev.text)?.[1];
      const rows = byChain.get(ev.replica) ?? byChain.set(ev.replica, []).get(ev.replica)!;
      rows.push({ seq: Number(seq ?? 0), body: ev.text });
      continue;
    }
    let o: Record<string, unknown>;
    try { o = JSON.parse(line) as Record<string, unknown>; } catch {
      malformed.push({ replica: '-', seq: 0, kind: 'altered', message: `line ${i + 1} is not valid JSON` });
      continue;
    }
    if (o.kind === 'fleet_chain' && typeof o.replica === 'string') { starts.set(o.replica, Number(o.after) || 0); byChain.get(o.replica) ?? byChain.set(o.replica, []); } else if (o.kind === 'fleet_checkpoint') checkpoints.push({ ...(o as unknown as FleetCheckpoint), id: `line ${i + 1}` });
    else if (o.kind === 'fleet_retention') retention.push({ ...(o as unknown as FleetRetention), id: `line ${i + 1}` });
    else if (o.kind === 'event') malformed.push({ replica: '-', seq: Number(o.seq ?? 0), kind: 'altered', message: `line ${i + 1} is an event of no replica chain (an embedded trail's line? verify it without AAM_DATABASE_URL)` });
  }
  const keys = new Map(publicKeysPem.map((pem) => [keyIdOf(pem), pem]));
  const r = await verifyTrail({
    keys, checkpoints, retention, file: true,
    chains: [...byChain].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([replica, rows]) => ({
      replica, after: starts.get(replica),
      rows: async function* (after) { yield rows.filter((x) => Number(x.seq) > after).sort((a, b) => Number(a.seq) - Number(b.seq)); },
    })),
  });
  const errors = [...malformed, ...r.errors];
  return { ...r, ok: errors.length === 0, errors, checkpoints: checkpoints.length, outside: 0 };
}

/** Signed heads, per replica: seq -> hash (checkpoints), and where each pruned chain now starts (retention). */
function signedPoints(t: Trail, errors: FleetVerifyError[]): { claims: Map<string, Map<number, string>>; bases: Map<string, ChainHead> } {
  const claims = new Map<string, Map<number, string>>();
  for (const c of t.checkpoints) {
    const pem = t.keys.get(c.key_id);
    if (!pem || !verifyBytes(pem, fleetCheckpointPayload(c.heads, c.time), c.signature)) {
      errors.push({ replica: '-', seq: 0, kind: 'bad_checkpoint', message: `checkpoint ${c.id} (${c.time}) has no valid signature under a ${t.file ? 'given' : 'stored'} key (${c.key_id})` });
      continue;
    }
    for (const h of parseHeads(c.heads)) (claims.get(h.replica) ?? claims.set(h.replica, new Map()).get(h.replica)!).set(h.seq, h.hash);
  }
  const bases = new Map<string, ChainHead>();
  for (const r of t.retention) {
    const pem = t.keys.get(r.key_id);
    if (!pem || !verifyBytes(pem, fleetRetentionPayload(r.cuts, r.time), r.signature)) {
      errors.push({ replica: '-', seq: 0, kind: 'bad_checkpoint', message: `${r.id} (${r.time}) has no valid signature under a ${t.file ? 'given' : 'stored'} key (${r.key_id})` });
      continue;
    }
    for (const h of parseHeads(r.cuts)) if ((bases.get(h.replica)?.seq ?? 0) < h.seq) bases.set(h.replica, h);
  }
  return { claims, bases };
}

async function verifyTrail(t: Trail): Promise<Omit<FleetVerifyResult, 'checkpoints' | 'outside'>> {
  const errors: FleetVerifyError[] = [];
  const { claims, bases } = signedPoints(t, errors);
  const known = new Set(t.chains.map((c) => c.replica));
  for (const [replica, m] of claims) {
    const top = Math.max(...m.keys());
    if (!known.has(replica) && top > (bases.get(replica)?.seq ?? 0)) errors.push({ replica, seq: top, kind: 'truncated', message: `chain ${replica} was signed by a checkpoint but is gone` });
  }
  let events = 0, unsignedTail = 0, pruned = 0, partial = 0;
  for (const chain of t.chains) {
    const claimed = claims.get(chain.replica) ?? new Map<number, string>();
    const signedUpTo = Math.max(0, ...claimed.keys());
    const base = bases.get(chain.replica);
    let start: ChainHead = base ?? { replica: chain.replica, seq: 0, hash: GENESIS_HASH };
    let broken = false;
    const fail = (seq: number, kind: TamperKind, message: string) => { errors.push({ replica: chain.replica, seq, kind, message }); broken = true; };
    if (base) {
      pruned++;
      const want = claimed.get(base.seq);
      if (want !== undefined && want !== base.hash) fail(base.seq, 'altered', `replica ${chain.replica}: the retention cut at seq ${base.seq} differs from the head a signed checkpoint names`);
    }
    // A file may begin a chain after a signed head (export --since): that head vouches for prev_hash.
    if (chain.after !== undefined && chain.after > start.seq) {
      const hash = claimed.get(chain.after);
      if (hash === undefined) fail(chain.after + 1, 'removed', `replica ${chain.replica}: the file starts this chain after seq ${chain.after}, which no signed checkpoint names`);
      else { start = { replica: chain.replica, seq: chain.after, hash }; partial++; }
    }
    let expect = start.seq + 1;
    let prev = start.hash;
    for await (const rows of chain.rows(start.seq)) {
      if (broken) continue; // drain the source; the first problem of a chain is what matters
      for (const r of rows) {
        const seq = Number(r.seq);
        let parsed: Record<string, unknown>;
        try { parsed = JSON.parse(r.body) as Record<string, unknown>; } catch { fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: the body is not JSON`); break; }
        events++;
        if (seq !== expect) { fail(expect, seq > expect ? 'removed' : 'inserted', `replica ${chain.replica}: expected seq ${expect}, found ${seq}`); break; }
        const hash = recomputeHash(r.body, parsed);
        if (hash === undefined || (r.hash !== undefined && hash !== r.hash) || parsed.seq !== seq || parsed.prev_hash !== prev || (r.prev_hash !== undefined && r.prev_hash !== prev)) {
          fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: the event does not hash to its stored hash or does not follow the previous one`);
          break;
        }
        const want = claimed.get(seq);
        if (want !== undefined && want !== hash) { fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: differs from the head a signed checkpoint names`); break; }
        prev = hash;
        expect++;
      }
    }
    if (broken) continue;
    const last = expect - 1;
    if (last < signedUpTo) fail(last + 1, 'truncated', `replica ${chain.replica}: a signed checkpoint names seq ${signedUpTo}, the chain ends at ${last} (its newest events were removed)`);
    else if (chain.headSeq !== undefined && last < chain.headSeq) fail(last + 1, 'truncated', `replica ${chain.replica}: the chain head says seq ${chain.headSeq}, the events end at ${last}`);
    else unsignedTail += last - Math.max(signedUpTo, start.seq);
  }
  return { ok: errors.length === 0, events, chains: t.chains.length, unsignedTail, errors, pruned, partial };
}
