// The audit trail's live tail for people (GET /admin/v1/audit/stream): server-sent events of the
// events committed after the stream opened, with the audit query's filters. It polls the trail once
// a second (a query over the newest events, not a scan), so a tail costs the same whether the
// trail holds a thousand events or a million; streams per process are bounded. In fleet mode it
// polls PostgreSQL, so a tail opened on any replica shows the events of every replica.
// A tail lives only as long as the right to read the trail: each poll first asks `allowed` again
// (the session still there, the token still valid, a role still bound), and the stream ends with
// an `ended` event saying why when it is not, so signing out or losing the role stops it at once.
import type { ServerResponse } from 'node:http';
import type { AuditLog } from '../audit/log.ts';
import { queryEvents, type AuditQuery } from '../audit/query.ts';
import type { Sql } from '../store/postgres.ts';

export const MAX_TAILS = 32;
const POLL_MS = 1000;
const KEEPALIVE_MS = 15_000;
const LOOKBACK_MS = 5000;

export interface TailCounter { open: number }
/** Why the reader may no longer read the trail (401: signed out, token expired, or code renewal_due; 403: role removed), or null while they may. */
export type StillAllowed = () => Promise<{ status: number; message: string; code?: string } | null>;
type Filter = Pick<AuditQuery, 'agent' | 'agents' | 'decision' | 'type' | 'plane'>;
interface Fresh { id: string; event: Record<string, unknown> }

/** Stream events matching `filter` (agent or agents, decision, type, plane) until the client goes away. */
export async function tailAudit(res: ServerResponse, log: AuditLog, filter: Filter, count: TailCounter, headers: Record<string, string>, allowed: StillAllowed): Promise<void> {
  await log.flush();
  // Start after the newest event already committed: the page shows history with a query.
  const newest = queryEvents(log.db, { limit: 1 })[0];
  let lastSeq = newest?.seq ?? -1;
  let lastTime = newest ? new Date(newest.time) : new Date();
  return stream(res, count, headers, allowed, async () => {
    await log.flush();
    // Events at the same millisecond as the last one sent may still be new: filter by seq.
    // Commit order (seq) and creation time differ by a little: look back a few seconds, keep only new seqs.
    const fresh = queryEvents(log.db, { ...filter, since: new Date(lastTime.getTime() - LOOKBACK_MS), order: 'asc', limit: 500 }).filter((e) => e.seq > lastSeq);
    for (const e of fresh) { lastSeq = e.seq; lastTime = new Date(e.time); }
    return fresh.map((e) => ({ id: String(e.seq), event: e as unknown as Record<string, unknown> }));
  });
}

/**
 * The fleet's tail: every replica's events from PostgreSQL. Replicas commit in their own order, so
 * each poll looks back a few seconds (commit delay plus clock skew) and sends what it has not sent
 * yet, named by chain and seq (the SSE id is replica:seq).
 */
export async function tailFleetAudit(res: ServerResponse, sql: Sql, flush: () => Promise<void>, filter: Filter, count: TailCounter, headers: Record<string, string>, allowed: StillAllowed): Promise<void> {
  await flush().catch(() => {});
  const { queryFleetEvents } = await import('../audit/fleet-log.ts'); // fleet mode only
  const seen = new Map<string, number>();
  const key = (e: Record<string, unknown>) => `${String(e.replica)}:${String(e.seq)}`;
  const recent = async (): Promise<Array<Record<string, unknown>>> =>
    queryFleetEvents(sql, { ...filter, since: new Date(Date.now() - LOOKBACK_MS).toISOString(), order: 'asc', limit: 2000 });
  // What is there already is history (the page queried it): only later events are sent.
  for (const e of await recent()) seen.set(key(e), Date.parse(String(e.time)));
  return stream(res, count, headers, allowed, async () => {
    await flush().catch(() => {});
    const fresh = (await recent()).filter((e) => !seen.has(key(e)));
    const now = Date.now();
    for (const e of fresh) seen.set(key(e), Date.parse(String(e.time)));
    for (const [k, t] of seen) if (t < now - 2 * LOOKBACK_MS) seen.delete(k);
    return fresh.map((e) => ({ id: key(e), event: e }));
  });
}

/** The SSE framing and pacing both tails share: check the reader, poll, send what is new, keep the stream alive. */
function stream(res: ServerResponse, count: TailCounter, headers: Record<string, string>, allowed: StillAllowed, poll: () => Promise<Fresh[]>): void {
  count.open++;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', ...headers });
  res.write(': aam audit tail\n\n');
  let idle = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const refused = await allowed();
      if (refused !== null) {
        clearInterval(timer);
        res.end(`event: ended\ndata: ${JSON.stringify(refused)}\n\n`);
        return;
      }
      const fresh = await poll();
      for (const e of fresh) res.write(`id: ${e.id}\nevent: audit\ndata: ${JSON.stringify(e.event)}\n\n`);
      idle = fresh.length ? 0 : idle + POLL_MS;
      if (idle >= KEEPALIVE_MS) { res.write(': keep-alive\n\n'); idle = 0; }
    } catch (e) {
      res.write(`event: error\ndata: ${JSON.stringify({ message: (e as Error).message })}\n\n`);
    } finally { busy = false; }
  }, POLL_MS);
  res.once('close', () => { clearInterval(timer); count.open--; });
}
