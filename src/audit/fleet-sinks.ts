// Export sinks in fleet mode: the configured sinks (file, webhook, OTLP) receive every replica's
// events and the signed fleet checkpoints from PostgreSQL, each event once per sink across the
// fleet. Every replica runs the same sinks; for each sink, the replica that holds its row lock
// (SELECT ... FOR UPDATE SKIP LOCKED, for the length of one delivery) is the one delivering, the
// others skip it, and a replica that dies releases the lock with its connection. Cursors are per
// chain (replica, seq), moved in the transaction that delivered, so delivery is at-least-once: a
// batch is sent again only when the replica dies between the receiver's acknowledgement and the
// commit of the cursor. Receivers dedupe on (replica, seq) (the webhook's idempotency key).
// A checkpoint is delivered once every event it covers was.
import type { Sql } from '../store/postgres.ts';
import type { AuditEvent } from './event.ts';
import type { AuditSink, SinkRunner, SinkRunnerOptions, SinkStatus } from './sinks.ts';
import { parseHeads } from './fleet-log.ts';
import { fleetText } from './fleet-export.ts';
import { errMsg } from '../lib/error-message.ts';

type Outcome = 'busy' | 'idle' | 'sent';

export function startFleetSinks(sql: Sql, sinks: readonly AuditSink[], opts: SinkRunnerOptions = {}): SinkRunner {
  const cfg = { batchSize: opts.batchSize ?? 500, pollMs: opts.pollMs ?? 1000, minBackoffMs: opts.minBackoffMs ?? 100, maxBackoffMs: opts.maxBackoffMs ?? 30_000 };
  let stopped = false;
  const states = sinks.map((sink) => ({ sink, registered: false, delivered: 0, checkpoints: 0, failures: 0, cursor: 0, lastError: undefined as string | undefined, wake: undefined as (() => void) | undefined, done: Promise.resolve() }));
  type State = (typeof states)[number];

  const pause = (s: State, ms: number): Promise<void> => new Promise((resolve) => {
    const t = setTimeout(() => { s.wake = undefined; resolve(); }, ms);
    s.wake = () => { clearTimeout(t); s.wake = undefined; resolve(); };
  });

  /** A new sink starts at the beginning of every chain, or (startAt: 'now') after what is there now. */
  async function register(name: string): Promise<void> {
    const added = await sql`INSERT INTO audit_sinks (name) VALUES (${name}) ON CONFLICT DO NOTHING RETURNING name`;
    if (added.length === 0 || opts.startAt !== 'now') return;
    await sql`INSERT INTO audit_sink_chains (sink, replica, seq) SELECT ${name}, replica, head_seq FROM audit_chains ON CONFLICT DO NOTHING`;
    await sql`UPDATE audit_sinks SET checkpoint_id = (SELECT coalesce(max(id), 0) FROM audit_checkpoints) WHERE name = ${name}`;
  }

  /** One delivery for one sink, holding its row lock until the cursor moved with it. */
  const deliverOnce = (s: State): Promise<Outcome> => sql.begin(async (tx): Promise<Outcome> => {
    const name = s.sink.name;
    const [row] = await tx<Array<{ checkpoint_id: string }>>`SELECT checkpoint_id FROM audit_sinks WHERE name = ${name} FOR UPDATE SKIP LOCKED`;
    if (!row) return 'busy'; // another replica is delivering for this sink
    const cursors = new Map((await tx<Array<{ replica: string; seq: string }>>`SELECT replica, seq FROM audit_sink_chains WHERE sink = ${name}`).map((c) => [c.replica, Number(c.seq)]));
    s.cursor = [...cursors.values()].reduce((a, b) => a + b, 0);
    if (s.sink.deliverFleetCheckpoints) {
      const cps = await tx<Array<{ id: string; time: string; heads: string; key_id: string; signature: string }>>`
        SELECT id, time, heads, key_id, signature FROM audit_checkpoints WHERE id > ${row.checkpoint_id} ORDER BY id LIMIT ${cfg.batchSize}`;
      const waiting = cps.findIndex((c) => parseHeads(c.heads).some((h) => h.seq > (cursors.get(h.replica) ?? 0)));
      const due = waiting < 0 ? cps : cps.slice(0, waiting);
      if (due.length) {
        await s.sink.deliverFleetCheckpoints(due.map(({ id: _id, ...c }) => JSON.stringify({ kind: 'fleet_checkpoint', ...c })));
        await tx`UPDATE audit_sinks SET checkpoint_id = ${due[due.length - 1].id}, updated = now() WHERE name = ${name}`;
        s.checkpoints += due.length;
        return 'sent';
      }
    }
    // The chain whose next undelivered event is oldest, so a sink sees the fleet roughly in time order.
    const [next] = await tx<Array<{ replica: string; cursor: string }>>`
      SELECT c.replica, coalesce(sc.seq, 0) AS cursor FROM audit_chains c
      LEFT JOIN audit_sink_chains sc ON sc.sink = ${name} AND sc.replica = c.replica
      CROSS JOIN LATERAL (SELECT ts FROM audit_trail WHERE replica = c.replica AND seq > coalesce(sc.seq, 0) ORDER BY seq LIMIT 1) n
      WHERE c.head_seq > coalesce(sc.seq, 0) ORDER BY n.ts LIMIT 1`;
    if (!next) return 'idle';
    const rows = await tx<Array<{ seq: string; body: string }>>`SELECT seq, body FROM audit_trail WHERE replica = ${next.replica} AND seq > ${next.cursor} ORDER BY seq LIMIT ${cfg.batchSize}`;
    if (rows.length === 0) return 'idle';
    const events = rows.map((r) => ({ ...(JSON.parse(r.body) as AuditEvent), replica: next.replica }));
    await s.sink.deliver(events, rows.map((r) => fleetText(next.replica, r.body)));
    const last = Number(rows[rows.length - 1].seq);
    await tx`INSERT INTO audit_sink_chains (sink, replica, seq) VALUES (${name}, ${next.replica}, ${last})
      ON CONFLICT (sink, replica) DO UPDATE SET seq = excluded.seq`;
    await tx`UPDATE audit_sinks SET updated = now() WHERE name = ${name}`;
    s.delivered += rows.length;
    s.cursor += last - Number(next.cursor);
    return 'sent';
  });

  async function loop(s: State): Promise<void> {
    let attempt = 0;
    while (!stopped) {
      try {
        if (!s.registered) { await register(s.sink.name); s.registered = true; }
        const r = await deliverOnce(s);
        attempt = 0;
        s.lastError = undefined;
        if (r !== 'sent') await pause(s, cfg.pollMs);
      } catch (e) {
        attempt++;
        s.failures++;
        s.lastError = errMsg(e);
        opts.onError?.(s.sink.name, e, attempt);
        if (!stopped) await pause(s, Math.min(cfg.maxBackoffMs, cfg.minBackoffMs * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5));
      }
    }
  }

  for (const s of states) s.done = loop(s);

  /** What is committed now: every chain's head and the newest checkpoint (a drain waits for these, not for what comes after). */
  async function snapshot(): Promise<{ heads: Map<string, number>; checkpoint: number }> {
    const heads = await sql<Array<{ replica: string; head_seq: string }>>`SELECT replica, head_seq FROM audit_chains`;
    const [ck] = await sql<Array<{ id: string }>>`SELECT coalesce(max(id), 0) AS id FROM audit_checkpoints`;
    return { heads: new Map(heads.map((h) => [h.replica, Number(h.head_seq)])), checkpoint: Number(ck.id) };
  }

  /** Sinks that have not yet delivered everything in `upTo` (fleet-wide: whichever replica delivers). */
  async function behind(upTo: { heads: Map<string, number>; checkpoint: number }): Promise<string[]> {
    const late: string[] = [];
    for (const s of states) {
      const name = s.sink.name;
      const cursors = new Map((await sql<Array<{ replica: string; seq: string }>>`SELECT replica, seq FROM audit_sink_chains WHERE sink = ${name}`).map((c) => [c.replica, Number(c.seq)]));
      const [row] = await sql<Array<{ checkpoint_id: string }>>`SELECT checkpoint_id FROM audit_sinks WHERE name = ${name}`;
      const eventsLeft = [...upTo.heads].some(([replica, head]) => head > (cursors.get(replica) ?? 0));
      const checkpointsLeft = s.sink.deliverFleetCheckpoints !== undefined && upTo.checkpoint > Number(row?.checkpoint_id ?? 0);
      if (eventsLeft || checkpointsLeft) late.push(name);
    }
    return late;
  }

  return {
    status: (): SinkStatus[] => states.map((s) => ({ name: s.sink.name, cursor: s.cursor, delivered: s.delivered, checkpoints: s.checkpoints, failures: s.failures, lastError: s.lastError })),
    async drain(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const upTo = await snapshot();
      for (;;) {
        const late = await behind(upTo);
        if (late.length === 0) return;
        if (Date.now() > deadline) {
          throw new Error(`audit sinks not drained within ${timeoutMs} ms: ${late.map((n) => { const s = states.find((x) => x.sink.name === n); return `${n}${s?.lastError ? ` (${s.lastError})` : ''}`; }).join(', ')}`);
        }
        for (const s of states) s.wake?.();
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      stopped = true;
      for (const s of states) s.wake?.();
      await Promise.all(states.map((s) => s.done));
      await Promise.all(sinks.map((k) => k.close?.()));
    },
  };
}
