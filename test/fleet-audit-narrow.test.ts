// Migration 18: audit_events rows no longer store copies of the hash and prev_hash their sealed
// body holds (130 of ~1,080 bytes a row); audit_trail reads them from the body. A fleet at schema
// 17 with a trail upgrades: every reader answers as before, new events (alone and in group
// commits) join the old chains' fleet, the view gives each new row the hash and prev_hash of its
// body, checkpoints name the right heads and the whole trail verifies. Real PostgreSQL (npm test starts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore } from './helpers/fleet.ts';
import { trailAnswers, trailTrace, writeAsBefore18 } from './helpers/fleet-trail.ts';
import { MIGRATIONS, migrate } from '../src/store/postgres.ts';
import { openFleetAuditLog, parseHeads, type FleetAuditLog } from '../src/audit/fleet-log.ts';
import { verifyFleet } from '../src/audit/fleet-verify.ts';

const NARROW = MIGRATIONS.find((m) => m.name.startsWith('audit events keep their hash and prev_hash in the body only'))!;
const identity = (agent: string) => ({ spiffe_id: `spiffe://t/agent/${agent}`, agent, method: 'virtual_key' });

/** 40 events of every kind the readers filter on; every ninth awaited alone, the rest in group commits. */
async function writeEvents(log: FleetAuditLog, from = 0): Promise<void> {
  for (let i = from; i < from + 40; i++) {
    const agent = ['ana', 'bob', 'cy'][i % 3];
    const policy = { name: 'p', version: 'v', rule: 0, decision: i % 5 === 0 ? 'deny' : 'allow', reason: 'r' };
    if (i % 4 === 3) log.record({ type: 'tool_call', request_id: `q-${i}`, trace_id: trailTrace(i), identity: identity(agent), policy, tool: { server: 's', tool: 't' } });
    else log.record({ type: i % 5 === 0 ? 'decision' : 'model_call', request_id: `q-${i}`, trace_id: trailTrace(i), identity: identity(agent), policy, model: { route: 'm' } });
    if (i % 9 === 0) await log.journaled(true);
  }
  await log.journaled();
}

test('a fleet at schema 17 upgrades to rows without hash copies: same answers, new rows read their hashes from the body, checkpoints and verify hold', async () => {
  const store = await fleetStore();
  const sql = postgres(store.databaseUrl, { max: 4, onnotice: () => {} });
  const open = (r: string) => openFleetAuditLog(sql, { replica: `${r}-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
  try {
    await sql`CREATE TABLE aam_schema (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
    for (const m of MIGRATIONS.filter((x) => x.version < NARROW.version)) {
      await sql.unsafe(m.sql);
      await sql`INSERT INTO aam_schema (version, name) VALUES (${m.version}, ${m.name})`;
    }
    await writeAsBefore18(sql, async () => { for (const r of ['a', 'b']) { const log = await open(r); await writeEvents(log); await log.close(); } });
    const before = await trailAnswers(sql);
    assert.deepEqual([0, 6, 8].map((i) => (before[i] as string[]).length), [80, 2, 12]);

    const r = await migrate(sql);
    assert.deepEqual(r.applied.map((m) => m.version), [NARROW.version]);
    assert.deepEqual(await trailAnswers(sql), before, 'every reader answers as at schema 17');

    const log = await open('c');
    await writeEvents(log, 100);
    assert.equal(await log.checkpoint(), true);
    const stored = await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_events WHERE replica = ${log.replica} AND (hash IS NOT NULL OR prev_hash IS NOT NULL)`;
    assert.equal(Number(stored[0].n), 0, 'new rows store no hash copies');
    const rows = await sql<Array<{ seq: string; prev_hash: string; hash: string; body: string }>>`SELECT seq, prev_hash, hash, body FROM audit_trail WHERE replica = ${log.replica} ORDER BY seq`;
    assert.equal(rows.length, 40);
    let prev = '0'.repeat(64);
    for (const row of rows) {
      const b = JSON.parse(row.body) as { prev_hash: string; hash: string };
      assert.deepEqual([row.prev_hash, row.hash], [b.prev_hash, b.hash], `seq ${row.seq}`);
      assert.equal(row.prev_hash, prev, `seq ${row.seq} follows the row before`);
      assert.match(row.hash, /^[0-9a-f]{64}$/);
      prev = row.hash;
    }
    const [ck] = await sql<Array<{ heads: string }>>`SELECT heads FROM audit_checkpoints ORDER BY id DESC LIMIT 1`;
    assert.deepEqual(parseHeads(ck.heads).find((h) => h.replica === log.replica), { replica: log.replica, seq: 40, hash: prev }, 'the checkpoint names the newest event and its hash');
    await log.close();
    const v = await verifyFleet(sql);
    assert.ok(v.ok && v.events === 120 && v.chains === 3 && v.unsignedTail === 0, JSON.stringify(v));
  } finally {
    await sql.end({ timeout: 2 });
    await store.drop();
  }
});
