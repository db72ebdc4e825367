// Migration 17: audit_events' query columns get a small statistics target (autoanalyze samples 3,000
// rows, not 30,000) and bodies and hashes none. A fleet at schema 16 with a trail upgrades: every
// reader gives the same answers, and on a larger trail each filter still plans as an index scan.
// Real PostgreSQL (npm test starts it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore } from './helpers/fleet.ts';
import { MIGRATIONS, migrate } from '../src/store/postgres.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';
import { trailAnswers as answers, trailTrace as trace, writeAsBefore18 } from './helpers/fleet-trail.ts';

const STATS = MIGRATIONS.find((m) => m.name.startsWith('audit trail statistics'))!;
const identity = (agent: string) => ({ spiffe_id: `spiffe://t/agent/${agent}`, agent, method: 'virtual_key' });

const planOf = async (sql: postgres.Sql, where: string) =>
  (await sql.unsafe(`EXPLAIN SELECT replica, body FROM audit_trail WHERE ${where} ORDER BY ts DESC, replica, seq DESC LIMIT 100`)).map((r) => String(r['QUERY PLAN'])).join('\n');

test('a fleet at schema 16 with a trail upgrades to small statistics of audit_events: same answers, every filter an index scan', async () => {
  const store = await fleetStore();
  const sql = postgres(store.databaseUrl, { max: 4, onnotice: () => {} });
  try {
    await sql`CREATE TABLE aam_schema (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
    for (const m of MIGRATIONS.filter((x) => x.version < STATS.version)) {
      await sql.unsafe(m.sql);
      await sql`INSERT INTO aam_schema (version, name) VALUES (${m.version}, ${m.name})`;
    }
    // Two replicas' chains written by the writer at schema 16: agents, decisions, planes, traces shared by several requests.
    await writeAsBefore18(sql, async () => { for (const r of ['a', 'b']) {
      const log = await openFleetAuditLog(sql, { replica: `${r}-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
      for (let i = 0; i < 40; i++) {
        const agent = ['ana', 'bob', 'cy'][i % 3];
        const policy = { name: 'p', version: 'v', rule: 0, decision: i % 5 === 0 ? 'deny' : 'allow', reason: 'r' };
        if (i % 4 === 3) log.record({ type: 'tool_call', request_id: `q-${i}`, trace_id: trace(i), identity: identity(agent), policy, tool: { server: 's', tool: 't' } });
        else log.record({ type: i % 5 === 0 ? 'decision' : 'model_call', request_id: `q-${i}`, trace_id: trace(i), identity: identity(agent), policy, model: { route: 'm' } });
        if (i % 9 === 0) await log.journaled();
      }
      await log.close();
    } });
    const before = await answers(sql);
    // Not empty answers: all 80 events, one request's, one trace's (the trace of i % 7 = 3: 12 events).
    assert.deepEqual([0, 6, 8, 9].map((i) => (before[i] as string[]).length), [80, 2, 12, 12]);

    const r = await migrate(sql);
    assert.deepEqual(r.applied.map((m) => m.version), MIGRATIONS.filter((m) => m.version >= STATS.version).map((m) => m.version));
    const targets = await sql<Array<{ attname: string; target: number }>>`SELECT attname, attstattarget AS target FROM pg_attribute
      WHERE attrelid = 'audit_events'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum`;
    assert.deepEqual(Object.fromEntries(targets.map((t) => [t.attname, t.target])), { replica: 10, seq: 10, ts: 10, type: 10, request_id: 10, agent: 10,
      prev_hash: 0, hash: 0, body: 0, trace_id: 10, decision: 10, plane: 10 });
    assert.deepEqual(await answers(sql), before, 'every reader answers as at schema 16');

    // A trail of 20,000 more events (one agent in 2,000, deny in 100, tool in 50), analyzed with
    // the small sample: each filter is still an index scan, never a scan of the trail.
    await sql`INSERT INTO audit_events (replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane)
      SELECT 'filler', i, to_char(now() - make_interval(secs => i), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'model_call', 'f' || i,
        CASE WHEN i % 2000 = 0 THEN 'rare' ELSE 'filler' || (i % 5) END, 'p', 'h', '{}', lpad(to_hex(i), 32, '0'),
        CASE WHEN i % 100 = 0 THEN 'deny' ELSE 'allow' END, CASE WHEN i % 50 = 0 THEN 'tool' ELSE 'model' END
      FROM generate_series(1, 20000) AS i`;
    await sql`ANALYZE audit_events`;
    for (const [where, index] of [['true', 'audit_events_ts'], [`request_id = 'f77'`, 'audit_events_request'], [`trace_id = '${trace(3)}'`, 'audit_events_trace'],
      [`agent = 'rare'`, 'audit_events_agent'], [`decision = 'deny' AND decision <> 'allow'`, 'audit_events_decision'], [`plane = 'tool' AND plane <> 'model'`, 'audit_events_plane'],
      [`ts >= '${new Date(Date.now() - 60_000).toISOString()}'`, 'audit_events_ts']] as const) {
      const plan = await planOf(sql, where);
      assert.match(plan, new RegExp(`Index Scan (Backward )?using ${index} on audit_events|Bitmap Index Scan on ${index}`), `${where}: ${plan}`);
      assert.doesNotMatch(plan, /Seq Scan on audit_events/, `${where}: ${plan}`);
    }
  } finally {
    await sql.end({ timeout: 2 });
    await store.drop();
  }
});
