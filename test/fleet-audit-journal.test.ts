// The fleet audit journal's removal (migration 15): an event committed alone goes into audit_events
// like a group commit, and a fleet at schema 14 with rows still in audit_journal upgrades with every
// event once in audit_events. Real PostgreSQL (npm test starts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore } from './helpers/fleet.ts';
import { MIGRATIONS, migrate } from '../src/store/postgres.ts';
import { openFleetAuditLog, queryFleetEvents } from '../src/audit/fleet-log.ts';
import { verifyFleet } from '../src/audit/fleet-verify.ts';

const JOURNAL = MIGRATIONS.find((m) => m.name.startsWith('audit journal'))!;
const NO_JOURNAL = MIGRATIONS.find((m) => m.name.startsWith('no audit journal'))!;

async function withStore(fn: (sql: postgres.Sql) => Promise<void>): Promise<void> {
  const store = await fleetStore();
  const sql = postgres(store.databaseUrl, { max: 4, onnotice: () => {} });
  try {
    await migrate(sql);
    await fn(sql);
  } finally {
    await sql.end({ timeout: 2 });
    await store.drop();
  }
}

const journalExists = async (sql: postgres.Sql) => (await sql<Array<{ t: string | null }>>`SELECT to_regclass('audit_journal')::text AS t`)[0].t !== null;

test('an event committed alone is in audit_events when acknowledged; there is no journal', async () => {
  await withStore(async (sql) => {
    assert.equal(await journalExists(sql), false);
    const replica = `j-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(sql, { replica, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'alone' });
    await log.journaled(true);
    assert.equal((await sql`SELECT 1 FROM audit_events WHERE replica = ${replica} AND request_id = 'alone'`).length, 1, 'acknowledged: in audit_events');
    assert.deepEqual((await queryFleetEvents(sql, { requestId: 'alone' })).map((e) => e.request_id), ['alone']);
    await log.close();
    const v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === 1, JSON.stringify(v.errors));
  });
});

test('a fleet at schema 14 upgrades: journal rows (one with its twin already in audit_events) are moved once, the trail verifies, new events join it', async () => {
  await withStore(async (sql) => {
    const old = `old-${randomBytes(3).toString('hex')}`;
    const before = await openFleetAuditLog(sql, { replica: old, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    for (let i = 0; i < 20; i++) { before.record({ type: 'admin', request_id: `old-${i}` }); if (i % 3 === 0) await before.journaled(); }
    await before.close();
    // The rows as the writer of schema 14 left them (prev_hash and hash filled).
    await sql`UPDATE audit_events SET prev_hash = (body::jsonb)->>'prev_hash', hash = (body::jsonb)->>'hash'`;
    // Back to schema 14 (the later migrations run again below; each can), its last 8 events still in
    // the journal (not moved yet), seq 12 in both (a retry after a lost reply).
    await sql`DROP VIEW audit_trail`;
    await sql.unsafe(JOURNAL.sql);
    await sql`DELETE FROM aam_schema WHERE version > ${JOURNAL.version}`;
    await sql`WITH m AS (DELETE FROM audit_events WHERE replica = ${old} AND seq > 12 RETURNING *) INSERT INTO audit_journal SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM m`;
    await sql`INSERT INTO audit_journal SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM audit_events WHERE replica = ${old} AND seq = 12`;
    assert.equal((await sql`SELECT 1 FROM audit_journal`).length, 9);

    const r = await migrate(sql);
    assert.deepEqual(r.applied.map((m) => m.version), MIGRATIONS.filter((m) => m.version > JOURNAL.version).map((m) => m.version));
    assert.ok(r.applied.some((m) => m === NO_JOURNAL));
    assert.equal(await journalExists(sql), false);
    assert.deepEqual((await sql<Array<{ seq: string }>>`SELECT seq FROM audit_events WHERE replica = ${old} ORDER BY seq`).map((x) => Number(x.seq)), Array.from({ length: 20 }, (_, i) => i + 1));
    let v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === 20 && v.unsignedTail === 0, JSON.stringify(v));
    assert.equal((await queryFleetEvents(sql, { limit: 100 })).length, 20);
    const log = await openFleetAuditLog(sql, { replica: `new-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'new-1' });
    await log.journaled();
    assert.equal((await queryFleetEvents(sql, { limit: 100 })).length, 21);
    await log.close();
    v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === 21 && v.chains === 2, JSON.stringify(v));
  });
});
