// The fleet audit journal (migration 14): an event committed alone goes into audit_journal (no
// index, the c=1 request's awaited commit) and its replica moves it into audit_events off the
// request path; readers use audit_trail (both). Real PostgreSQL (npm test starts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { fleetStore } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { MIGRATIONS, migrate, SCHEMA_VERSION } from '../src/store/postgres.ts';
import { moveJournal, openFleetAuditLog, queryFleetEvents } from '../src/audit/fleet-log.ts';
import { verifyFleet } from '../src/audit/fleet-verify.ts';

const JOURNAL_VERSION = MIGRATIONS.find((m) => m.name.startsWith('audit journal'))!.version;
const FLEET_LOG = fileURLToPath(new URL('../src/audit/fleet-log.ts', import.meta.url));

async function withStore(fn: (sql: postgres.Sql, url: string) => Promise<void>): Promise<void> {
  const store = await fleetStore();
  const sql = postgres(store.databaseUrl, { max: 4, onnotice: () => {} });
  try {
    await migrate(sql);
    await fn(sql, store.databaseUrl);
  } finally {
    await sql.end({ timeout: 2 });
    await store.drop();
  }
}

const counts = async (sql: postgres.Sql, replica: string) => {
  const [r] = await sql<Array<{ events: string; journal: string; trail: string; distinct_seq: string; max_seq: string }>>`SELECT
    (SELECT count(*) FROM audit_events WHERE replica = ${replica}) AS events,
    (SELECT count(*) FROM audit_journal WHERE replica = ${replica}) AS journal,
    (SELECT count(*) FROM audit_trail WHERE replica = ${replica}) AS trail,
    (SELECT count(DISTINCT seq) FROM audit_trail WHERE replica = ${replica}) AS distinct_seq,
    (SELECT coalesce(max(seq), 0) FROM audit_trail WHERE replica = ${replica}) AS max_seq`;
  return { events: Number(r.events), journal: Number(r.journal), trail: Number(r.trail), distinctSeq: Number(r.distinct_seq), maxSeq: Number(r.max_seq) };
};

test('an event committed alone is in the journal and answers queries at once; its replica moves it into audit_events within ~200 ms; a group commit goes straight to audit_events', async () => {
  await withStore(async (sql) => {
    const replica = `j-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(sql, { replica, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'alone' });
    await log.journaled(true);
    assert.deepEqual(await counts(sql, replica), { events: 0, journal: 1, trail: 1, distinctSeq: 1, maxSeq: 1 }, 'acknowledged: in the journal');
    assert.deepEqual((await queryFleetEvents(sql, { requestId: 'alone' })).map((e) => e.request_id), ['alone'], 'fleet-wide queries see it before the move');
    await until(async () => (await counts(sql, replica)).events === 1, 5000, 'moved by its replica');
    assert.deepEqual(await counts(sql, replica), { events: 1, journal: 0, trail: 1, distinctSeq: 1, maxSeq: 1 });
    // Several in one turn: one INSERT into the indexed table, nothing to move.
    for (let i = 0; i < 5; i++) log.record({ type: 'admin', request_id: `group-${i}` });
    await log.journaled();
    assert.deepEqual(await counts(sql, replica), { events: 6, journal: 0, trail: 6, distinctSeq: 6, maxSeq: 6 });
    await log.close();
    const v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === 6, JSON.stringify(v.errors));
  });
});

test('kill -9 of a replica during a move, and a move canceled half-way: no event lost or doubled, the trail verifies, a checkpoint moves what the dead replica left', async () => {
  await withStore(async (sql, url) => {
    const replica = `k-${randomBytes(3).toString('hex')}`;
    const N = 30_000;
    const log = await openFleetAuditLog(sql, { replica, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000, commitTimeoutMs: 60_000 });
    const t0 = Date.now();
    for (let i = 0; i < N; i++) log.record({ type: 'model_call', request_id: `k-${i}`, trace_id: randomBytes(16).toString('hex') });
    await log.journaled();
    await log.flush();
    // The whole chain into the journal, as if every event had been committed alone and none moved yet.
    await sql`WITH m AS (DELETE FROM audit_events WHERE replica = ${replica} RETURNING *) INSERT INTO audit_journal SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM m`;
    assert.deepEqual(await counts(sql, replica), { events: 0, journal: N, trail: N, distinctSeq: N, maxSeq: N });
    const moving = () => sql`SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH m AS (DELETE FROM audit_journal%'`;

    // 1. A move canceled in the middle (the server ends it): undone whole.
    const canceled = moveJournal(sql, '9999');
    await until(async () => (await moving()).length > 0, 10_000, 'the move running');
    await sql`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH m AS (DELETE FROM audit_journal%'`;
    await assert.rejects(canceled, /cancel/i);
    assert.deepEqual(await counts(sql, replica), { events: 0, journal: N, trail: N, distinctSeq: N, maxSeq: N }, 'a canceled move leaves every row in the journal');

    // 2. The process running the move killed with SIGKILL while its statement runs.
    const child = spawn(process.execPath, ['--input-type=module', '-e', `
      import postgres from 'postgres';
      import { moveJournal } from ${JSON.stringify(FLEET_LOG)};
      const sql = postgres(${JSON.stringify(url)}, { max: 1, onnotice: () => {} });
      await sql\`SELECT 1\`;
      process.stdout.write('ready\\n');
      await moveJournal(sql, '9999');
      process.stdout.write('done\\n');`], { stdio: ['ignore', 'pipe', 'inherit'], cwd: fileURLToPath(new URL('..', import.meta.url)) });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise((r) => child.once('exit', r));
    await until(async () => (await moving()).length > 0 || out.includes('done'), 20_000, 'the child\'s move running');
    assert.ok(!out.includes('done'), 'killed before its move answered');
    child.kill('SIGKILL');
    await exited;
    // The server finishes or undoes the dead client's statement: wait for it to leave.
    await until(async () => (await moving()).length === 0, 20_000, 'the orphaned move over');
    const after = await counts(sql, replica);
    assert.equal(after.trail, N, JSON.stringify(after));
    assert.equal(after.distinctSeq, N);
    assert.equal(after.events + after.journal, N, `no row in both tables: ${JSON.stringify(after)}`);
    assert.ok((await verifyFleet(sql)).ok);

    // 3. What is left is moved by the next checkpoint (any replica: rows older than 5 s), and the trail still verifies.
    await until(() => Date.now() - t0 > 6000, 10_000, 'the rows older than a live replica\'s');
    const other = await openFleetAuditLog(sql, { replica: `o-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    assert.equal(await other.checkpoint(), true);
    assert.deepEqual(await counts(sql, replica), { events: N, journal: 0, trail: N, distinctSeq: N, maxSeq: N });
    await other.close();
    const v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === N, JSON.stringify(v.errors.slice(0, 3)));
    await log.close();
  });
});

test('the journal migration upgrades a fleet at the previous schema: its events, checkpoints and chains stay and verify; new events join them', async () => {
  await withStore(async (sql) => {
    // A trail written at the previous schema (its events in audit_events, a signed checkpoint).
    const old = `old-${randomBytes(3).toString('hex')}`;
    const before = await openFleetAuditLog(sql, { replica: old, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    for (let i = 0; i < 20; i++) { before.record({ type: 'admin', request_id: `old-${i}` }); if (i % 3 === 0) await before.journaled(); }
    await before.close();
    // Back to the schema before the journal, with that data.
    await sql`DROP VIEW audit_trail`;
    await sql`DROP TABLE audit_journal`;
    await sql`DELETE FROM aam_schema WHERE version >= ${JOURNAL_VERSION}`;
    assert.equal(JOURNAL_VERSION, SCHEMA_VERSION, 'the journal is the newest migration (else the rollback above is not the previous schema)');
    assert.equal((await sql`SELECT 1 FROM audit_events WHERE replica = ${old}`).length, 20);

    const r = await migrate(sql);
    assert.deepEqual(r.applied.map((m) => m.version), [JOURNAL_VERSION]);
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
