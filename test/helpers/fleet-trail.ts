// A fleet trail as older aam versions left it, and what every reader of a trail answers: for the
// tests that upgrade a fleet's schema and check that its trail still reads the same.
import { PassThrough } from 'node:stream';
import type postgres from 'postgres';
import { fleetEventsSince, queryFleetEvents, type FleetQuery } from '../../src/audit/fleet-log.ts';
import { verifyFleet } from '../../src/audit/fleet-verify.ts';
import { exportFleetJsonl } from '../../src/audit/fleet-export.ts';

/** The trace id of test event i (traces shared by several requests: i % 7). */
export const trailTrace = (i: number) => (i % 7).toString(16).padStart(2, '0').repeat(16);

/**
 * Runs `write` (today's writer) in a database below schema 18, where audit_events' prev_hash and
 * hash are NOT NULL, and leaves the rows as the writer before 18 did: both columns filled with
 * the values the sealed body holds.
 */
export async function writeAsBefore18(sql: postgres.Sql, write: () => Promise<void>): Promise<void> {
  await sql`ALTER TABLE audit_events ALTER COLUMN prev_hash DROP NOT NULL, ALTER COLUMN hash DROP NOT NULL`;
  await write();
  await sql`UPDATE audit_events SET prev_hash = (body::jsonb)->>'prev_hash', hash = (body::jsonb)->>'hash' WHERE hash IS NULL`;
  await sql`ALTER TABLE audit_events ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL`;
}

/** What every reader of the trail answers: the admin API / CLI filters, policy diff's reader, verify and export. */
export async function trailAnswers(sql: postgres.Sql): Promise<unknown[]> {
  const since = '2000-01-01T00:00:00.000Z';
  const queries: FleetQuery[] = [{}, { order: 'asc' }, { agent: 'ana' }, { agents: ['bob', 'cy'] }, { since }, { type: 'decision' },
    { requestId: 'q-5' }, { requestId: 'q-none' }, { traceId: trailTrace(3) }, { traceId: trailTrace(3).toUpperCase() }, { decision: 'deny' },
    { decision: 'allow' }, { plane: 'tool' }, { plane: 'model' }, { agent: 'ana', decision: 'deny' }, { limit: 5 }];
  const out: unknown[] = [];
  for (const q of queries) out.push((await queryFleetEvents(sql, { limit: 1000, ...q })).map((e) => `${e.replica}/${String(e.request_id)}`));
  out.push((await fleetEventsSince(sql, since, ['decision', 'model_call'])).map((e) => String(e.request_id)));
  const v = await verifyFleet(sql);
  out.push({ ok: v.ok, events: v.events, chains: v.chains });
  const file = new PassThrough();
  let text = '';
  file.on('data', (c: Buffer) => { text += c; });
  await exportFleetJsonl(sql, { out: file });
  out.push(text);
  return out;
}
