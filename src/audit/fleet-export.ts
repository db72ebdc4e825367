// The fleet trail as JSONL (`aam audit export` with AAM_DATABASE_URL, and what fleet sinks write):
// each event line is its stored text with its chain's replica spliced in first,
// {"kind":"event","replica":"<id>",...} (never re-serialised: the hash covers those bytes), then
// the signed retention records and fleet checkpoints; a {"kind":"fleet_chain"} line before each chain
// says after which seq it starts. verifyFleetFile() checks such a file alone.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Sql } from '../store/postgres.ts';
import { exportLine } from './event.ts';

/** The stored text with the replica spliced in first; exportLine() then adds the kind. */
export function fleetText(replica: string, body: string): string {
  return `{"replica":${JSON.stringify(replica)},${body.slice(1)}`;
}

/** The export line of one fleet event. */
export function fleetExportLine(replica: string, body: string): string {
  return exportLine(fleetText(replica, body));
}

const PREFIX = /^\{"kind":"event","replica":("(?:[^"\\]|\\.)*"),/;

/** The replica and stored text (the bytes its hash covers) of a fleet event line, or null for another line. */
export function fleetStoredText(line: string): { replica: string; text: string } | null {
  const m = PREFIX.exec(line);
  return m ? { replica: JSON.parse(m[1]) as string, text: '{' + line.slice(m[0].length) } : null;
}

export interface FleetExportSummary { events: number; chains: number; checkpoints: number; retention: number }

/**
 * Every chain's events (each from its retention cut, or from the first event at or after `since`),
 * then the retention records and checkpoints that vouch for where each chain starts and ends.
 * With `since`, a chain starts right after the newest signed head before it, so the file verifies.
 */
export async function exportFleetJsonl(sql: Sql, opts: { since?: string; out: Writable; onProgress?: (n: number) => void }): Promise<FleetExportSummary> {
  const write = async (line: string): Promise<void> => { if (!opts.out.write(line + '\n')) await once(opts.out, 'drain'); };
  const checkpoints = await sql<Array<{ time: string; heads: string; key_id: string; signature: string }>>`SELECT time, heads, key_id, signature FROM audit_checkpoints ORDER BY id`;
  const retention = await sql<Array<{ time: string; cuts: string; key_id: string; signature: string }>>`SELECT time, cuts, key_id, signature FROM audit_retention ORDER BY id`;
  const chains = await sql<Array<{ replica: string; base_seq: string }>>`SELECT replica, base_seq FROM audit_chains ORDER BY started_at, replica`;
  const signed = new Map<string, number[]>();
  for (const c of checkpoints) for (const [replica, seq] of JSON.parse(c.heads) as Array<[string, number, string]>) (signed.get(replica) ?? signed.set(replica, []).get(replica)!).push(seq);
  let events = 0;
  for (const chain of chains) {
    let after = Number(chain.base_seq);
    if (opts.since) {
      const [first] = await sql<Array<{ seq: string }>>`SELECT seq FROM audit_trail WHERE replica = ${chain.replica} AND ts >= ${new Date(opts.since).toISOString()} ORDER BY seq LIMIT 1`;
      const wanted = first ? Number(first.seq) : Number.MAX_SAFE_INTEGER;
      // The newest signed head before the first wanted event vouches for where the chain starts.
      for (const s of signed.get(chain.replica) ?? []) if (s < wanted && s > after) after = s;
    }
    // Where this chain starts in the file (0: genesis); the verifier wants a signed head there.
    await write(JSON.stringify({ kind: 'fleet_chain', replica: chain.replica, after }));
    for await (const rows of sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE replica = ${chain.replica} AND seq > ${after} ORDER BY seq`.cursor(2000)) {
      for (const r of rows) { await write(fleetExportLine(chain.replica, r.body)); opts.onProgress?.(++events); }
    }
  }
  for (const r of retention) await write(JSON.stringify({ kind: 'fleet_retention', ...r }));
  for (const c of checkpoints) await write(JSON.stringify({ kind: 'fleet_checkpoint', ...c }));
  return { events, chains: chains.length, checkpoints: checkpoints.length, retention: retention.length };
}
