// The audit trail's live tail for people (GET /admin/v1/audit/stream): server-sent events of the
// events committed after the stream opened, with the audit query's filters. It polls the trail once
// a second (a query over the newest block, not a scan), so a tail costs the same whether the
// trail holds a thousand events or a million; streams per process are bounded.
import type { ServerResponse } from 'node:http';
import type { AuditLog } from '../audit/log.ts';
import { queryEvents, type AuditQuery } from '../audit/query.ts';

export const MAX_TAILS = 32;
const POLL_MS = 1000;
const KEEPALIVE_MS = 15_000;
const LOOKBACK_MS = 5000;

export interface TailCounter { open: number }

/** Stream events matching `filter` (agent, decision, type) until the client goes away. */
export async function tailAudit(res: ServerResponse, log: AuditLog, filter: Pick<AuditQuery, 'agent' | 'decision' | 'type'>, count: TailCounter, headers: Record<string, string>): Promise<void> {
  await log.flush();
  // Start after the newest event already committed: the page shows history with a query.
  const newest = queryEvents(log.db, { limit: 1 })[0];
  let lastSeq = newest?.seq ?? -1;
  let lastTime = newest ? new Date(newest.time) : new Date();
  count.open++;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', ...headers });
  res.write(': aam audit tail\n\n');
  let idle = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await log.flush();
      // Events at the same millisecond as the last one sent may still be new: filter by seq.
      // Commit order (seq) and creation time differ by a little: look back a few seconds, keep only new seqs.
      const fresh = queryEvents(log.db, { ...filter, since: new Date(lastTime.getTime() - LOOKBACK_MS), order: 'asc', limit: 500 }).filter((e) => e.seq > lastSeq);
      for (const e of fresh) {
        res.write(`id: ${e.seq}\nevent: audit\ndata: ${JSON.stringify(e)}\n\n`);
        lastSeq = e.seq;
        lastTime = new Date(e.time);
      }
      idle = fresh.length ? 0 : idle + POLL_MS;
      if (idle >= KEEPALIVE_MS) { res.write(': keep-alive\n\n'); idle = 0; }
    } catch (e) {
      res.write(`event: error\ndata: ${JSON.stringify({ message: (e as Error).message })}\n\n`);
    } finally { busy = false; }
  }, POLL_MS);
  res.once('close', () => { clearInterval(timer); count.open--; });
}
