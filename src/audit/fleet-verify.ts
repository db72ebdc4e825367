// `aam audit verify` in fleet mode: walk every replica's chain in PostgreSQL (seq contiguous from
// 1, each body hashing to its hash and naming the previous one) and check every signed fleet
// checkpoint: its signature under a stored public key, and that each chain still holds the head
// it signed, with that hash. Deleting a chain's newest rows, or a whole chain, after a checkpoint
// is caught by the checkpoint; an edited row by its hash.
import type { Sql } from '../store/postgres.ts';
import { GENESIS_HASH, recomputeHash } from './event.ts';
import { verifyBytes } from './keys.ts';
import { fleetCheckpointPayload, parseHeads, type FleetCheckpoint } from './fleet-log.ts';
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
}

interface EventRow { seq: string; prev_hash: string; hash: string; body: string }

/**
 * outside: checkpoints kept out of the database (a copy of the checkpoint file): they catch a trail
 * cut short together with its checkpoint rows.
 */
export async function verifyFleet(sql: Sql, outside: readonly FleetCheckpoint[] = []): Promise<FleetVerifyResult> {
  const errors: FleetVerifyError[] = [];
  const keys = new Map((await sql<Array<{ key_id: string; public_pem: string }>>`SELECT key_id, public_pem FROM audit_keys`).map((k) => [k.key_id, k.public_pem]));
  const stored = await sql<Array<{ id: string; time: string; heads: string; key_id: string; signature: string }>>`SELECT id, time, heads, key_id, signature FROM audit_checkpoints ORDER BY id`;
  const cps = [...stored, ...outside.map((c, i) => ({ ...c, id: `given #${i + 1}` }))];
  // What the signed checkpoints claim: replica -> seq -> hash.
  const claims = new Map<string, Map<number, string>>();
  for (const c of cps) {
    const pem = keys.get(c.key_id);
    if (!pem || !verifyBytes(pem, fleetCheckpointPayload(c.heads, c.time), c.signature)) {
      errors.push({ replica: '-', seq: 0, kind: 'bad_checkpoint', message: `checkpoint ${c.id} (${c.time}) has no valid signature under a stored key (${c.key_id})` });
      continue;
    }
    for (const h of parseHeads(c.heads)) {
      const m = claims.get(h.replica) ?? new Map<number, string>();
      m.set(h.seq, h.hash);
      claims.set(h.replica, m);
    }
  }
  const chains = await sql<Array<{ replica: string; head_seq: string }>>`SELECT replica, head_seq FROM audit_chains ORDER BY replica`;
  const known = new Set(chains.map((c) => c.replica));
  for (const [replica, m] of claims) {
    if (!known.has(replica)) errors.push({ replica, seq: Math.max(...m.keys()), kind: 'truncated', message: `chain ${replica} was signed by a checkpoint but is gone` });
  }
  let events = 0;
  let unsignedTail = 0;
  for (const chain of chains) {
    const claimed = claims.get(chain.replica) ?? new Map<number, string>();
    const signedUpTo = Math.max(0, ...claimed.keys());
    let expect = 1;
    let prev = GENESIS_HASH;
    let broken = false;
    const fail = (seq: number, kind: TamperKind, message: string) => { errors.push({ replica: chain.replica, seq, kind, message }); broken = true; };
    const cursor = sql<EventRow[]>`SELECT seq, prev_hash, hash, body FROM audit_events WHERE replica = ${chain.replica} ORDER BY seq`.cursor(2000);
    for await (const rows of cursor) {
      if (broken) continue; // drain the cursor; the first problem of a chain is what matters
      for (const r of rows) {
        const seq = Number(r.seq);
        events++;
        if (seq !== expect) { fail(expect, seq > expect ? 'removed' : 'inserted', `replica ${chain.replica}: expected seq ${expect}, found ${seq}`); break; }
        let parsed: Record<string, unknown>;
        try { parsed = JSON.parse(r.body) as Record<string, unknown>; } catch { fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: the body is not JSON`); break; }
        if (recomputeHash(r.body, parsed) !== r.hash || parsed.seq !== seq || parsed.prev_hash !== prev || r.prev_hash !== prev) {
          fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: the event does not hash to its stored hash or does not follow the previous one`);
          break;
        }
        const want = claimed.get(seq);
        if (want !== undefined && want !== r.hash) { fail(seq, 'altered', `replica ${chain.replica} seq ${seq}: differs from the head a signed checkpoint names`); break; }
        prev = r.hash;
        expect++;
      }
    }
    if (broken) continue;
    const last = expect - 1;
    if (last < signedUpTo) fail(last + 1, 'truncated', `replica ${chain.replica}: a signed checkpoint names seq ${signedUpTo}, the chain ends at ${last} (its newest events were removed)`);
    else if (last < Number(chain.head_seq)) fail(last + 1, 'truncated', `replica ${chain.replica}: the chain head says seq ${chain.head_seq}, the events end at ${last}`);
    else unsignedTail += last - signedUpTo;
  }
  return { ok: errors.length === 0, events, chains: chains.length, checkpoints: stored.length, unsignedTail, errors, outside: outside.length };
}
