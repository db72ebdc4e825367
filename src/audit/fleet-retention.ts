// `aam audit prune` in fleet mode: delete each replica chain's events older than a time, keeping
// the rest verifiable. In one transaction, a signed retention record names, per chain, the seq and
// hash of the last event removed; the verifier starts that chain there (as the embedded trail starts
// at its signed retention checkpoint). Without the record, a chain missing its oldest rows is
// reported as tampered. Events a sink has not delivered yet are kept (the cut stops before them).
import type { Sql } from '../store/postgres.ts';
import type { SigningKey } from './keys.ts';
import { signBytes } from './keys.ts';
import { canonicalJson } from './canonical.ts';
import { headsText, type ChainHead } from './fleet-log.ts';

/** A signed retention record as stored and as exported (cuts: headsText() of the chains cut). */
export interface FleetRetention { time: string; cuts: string; key_id: string; signature: string }

export function fleetRetentionPayload(cuts: string, time: string): string {
  return canonicalJson({ cuts, time, type: 'fleet_retention' });
}

export interface FleetPruneResult { chains: number; deletedEvents: number; cuts: ChainHead[]; record: FleetRetention | null }

/** pg_advisory_xact_lock key for pruning ('aam-prune'): two prunes at once would race on the cuts. */
const PRUNE_LOCK = 0x61616d2d7072;

export async function pruneFleet(sql: Sql, key: SigningKey, before: Date): Promise<FleetPruneResult> {
  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${PRUNE_LOCK})`;
    // Per chain: the newest event older than the cut, but never past what a sink still has to deliver.
    const cuts = await tx<Array<{ replica: string; seq: string; hash: string }>>`
      SELECT c.replica, e.seq, e.hash FROM audit_chains c
      CROSS JOIN LATERAL (
        SELECT seq, hash FROM audit_trail
        WHERE replica = c.replica AND ts < ${before.toISOString()}
          AND seq <= coalesce((SELECT min(coalesce(sc.seq, 0)) FROM audit_sinks s
            LEFT JOIN audit_sink_chains sc ON sc.sink = s.name AND sc.replica = c.replica), c.head_seq)
        ORDER BY seq DESC LIMIT 1) e
      WHERE e.seq > c.base_seq
      ORDER BY c.replica`;
    if (cuts.length === 0) return { chains: 0, deletedEvents: 0, cuts: [], record: null };
    const heads = cuts.map((c) => ({ replica: c.replica, seq: Number(c.seq), hash: c.hash }));
    const time = new Date().toISOString();
    const text = headsText(heads);
    const record: FleetRetention = { time, cuts: text, key_id: key.keyId, signature: signBytes(key.privateKey, fleetRetentionPayload(text, time)) };
    await tx`INSERT INTO audit_retention (time, cuts, key_id, signature) VALUES (${time}, ${text}, ${record.key_id}, ${record.signature})`;
    let deleted = 0;
    for (const h of heads) {
      await tx`UPDATE audit_chains SET base_seq = ${h.seq}, base_hash = ${h.hash} WHERE replica = ${h.replica}`;
      deleted += (await tx`DELETE FROM audit_events WHERE replica = ${h.replica} AND seq <= ${h.seq}`).count;
    }
    return { chains: heads.length, deletedEvents: deleted, cuts: heads, record };
  });
}
