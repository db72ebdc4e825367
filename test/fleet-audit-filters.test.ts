// Fleet audit queries on indexed columns (the "audit query keys" migration): trace id, decision and plane are copied into
// columns when an event is written (and filled from the bodies of older rows by the migration), so
// the audit page's filters never parse bodies. Real PostgreSQL (npm test starts it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { MIGRATIONS, migrate } from '../src/store/postgres.ts';
import { openFleetAuditLog, queryFleetEvents } from '../src/audit/fleet-log.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runAudit, tempDir } from './audit-helpers.ts';

let store: FleetTestStore;
let sql: postgres.Sql;
before(async () => {
  store = await fleetStore();
  sql = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await store?.drop();
});

const TRACE = 'ab'.repeat(16);
const identity = (agent: string) => ({ spiffe_id: `spiffe://t/agent/${agent}`, agent, method: 'virtual_key' });

/** The migration that adds the audit query columns. */
const KEYS_VERSION = MIGRATIONS.find((m) => m.name.startsWith('audit query keys'))!.version;

test('the audit query keys migration fills trace id, decision and plane of the rows written before it, by the rules the writer uses', async () => {
  // A fleet at the schema before it (what the previous aam left), with events in it.
  await sql`CREATE TABLE aam_schema (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
  for (const m of MIGRATIONS.filter((x) => x.version < KEYS_VERSION)) {
    await sql.unsafe(m.sql);
    await sql`INSERT INTO aam_schema (version, name) VALUES (${m.version}, ${m.name})`;
  }
  await sql`INSERT INTO audit_chains (replica, head_hash) VALUES ('old', ${'0'.repeat(64)})`;
  const bodies = [
    { type: 'decision', request_id: 'r1', trace_id: TRACE, identity: identity('ana'), policy: { decision: 'deny' }, model: { route: 'm' } },
    { type: 'decision', request_id: 'r2', identity: identity('ana'), policy: { decision: 'deny' }, a2a: { agent: 'helper' } },
    { type: 'tool.decision', request_id: 'r3', agent: 'bob', decision: { effect: 'allow' } },
    { type: 'admin', request_id: 'r4', admin: { action: 'reload', actor: 'system' } },
    { type: 'guardrail', request_id: 'r5', identity: identity('ana') },
  ];
  for (const [i, b] of bodies.entries()) {
    await sql`INSERT INTO audit_events (replica, seq, ts, type, request_id, agent, prev_hash, hash, body)
      VALUES ('old', ${i + 1}, ${new Date(Date.now() + i).toISOString()}, ${b.type}, ${b.request_id}, ${b.identity?.agent ?? b.agent ?? null}, 'p', 'h', ${JSON.stringify(b)})`;
  }
  const r = await migrate(sql);
  assert.deepEqual(r.applied.map((m) => m.version), MIGRATIONS.filter((m) => m.version >= KEYS_VERSION).map((m) => m.version));
  const rows = await sql<Array<{ request_id: string; trace_id: string | null; decision: string | null; plane: string | null }>>`
    SELECT request_id, trace_id, decision, plane FROM audit_events WHERE replica = 'old' ORDER BY seq`;
  assert.deepEqual(rows.map((x) => [x.request_id, x.trace_id, x.decision, x.plane]), [
    ['r1', TRACE, 'deny', 'model'], ['r2', null, 'deny', 'a2a'], ['r3', null, 'allow', 'tool'], ['r4', null, null, 'admin'], ['r5', null, null, null],
  ]);
  // The old rows answer the new filters like new ones.
  assert.deepEqual((await queryFleetEvents(sql, { traceId: TRACE.toUpperCase() })).map((e) => e.request_id), ['r1']);
  assert.deepEqual((await queryFleetEvents(sql, { plane: 'a2a', decision: 'deny' })).map((e) => e.request_id), ['r2']);
});

test('the writer fills the columns; trace, decision, plane and team (agents) filters answer from them', async () => {
  const log = await openFleetAuditLog(sql, { replica: `r-${randomBytes(4).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
  const trace = 'cd'.repeat(16);
  log.record({ type: 'decision', request_id: 'n1', trace_id: trace, identity: identity('carl'), policy: { name: 'p', version: 'v', rule: 0, decision: 'deny', reason: 'no' }, model: { route: 'm' } });
  log.record({ type: 'model_call', request_id: 'n2', trace_id: trace, identity: identity('dana'), policy: { name: 'p', version: 'v', rule: 0, decision: 'allow', reason: 'ok' }, model: { route: 'm' } });
  log.record({ type: 'tool.outcome', request_id: 'n3', agent: 'carl', plane: 'http', outcome: { status: 200 } });
  log.record({ type: 'a2a_call', request_id: 'n4', identity: identity('dana'), a2a: { agent: 'helper' }, outcome: { status: 200 } });
  await log.close();
  const ids = async (q: Parameters<typeof queryFleetEvents>[1]) => (await queryFleetEvents(sql, { ...q, since: new Date(Date.now() - 60_000).toISOString() }))
    .map((e) => String(e.request_id)).filter((id) => id.startsWith('n')).sort();
  assert.deepEqual(await ids({ traceId: trace }), ['n1', 'n2']);
  assert.deepEqual(await ids({ decision: 'deny' }), ['n1']);
  assert.deepEqual(await ids({ plane: 'tool' }), ['n3']);
  assert.deepEqual(await ids({ plane: 'a2a' }), ['n4']);
  assert.deepEqual(await ids({ plane: 'model' }), ['n1', 'n2']);
  assert.deepEqual(await ids({ agents: ['carl'] }), ['n1', 'n3']);
  assert.deepEqual(await ids({ agents: ['carl', 'dana'], plane: 'model', decision: 'allow' }), ['n2']);
  assert.deepEqual(await ids({ agents: [] }), [], 'a team with no agents');
  // aam audit query --team in fleet mode (AAM_DATABASE_URL): the team's agents from the config.
  const dir = tempDir();
  const agent = (name: string, team: string) => `apiVersion: access.envisionai.dev/v1\nkind: Agent\nmetadata: { name: ${name} }\nspec: { workload: "spiffe://t/agent/${name}", team: ${team} }\n`;
  writeFileSync(join(dir, 'aam.yaml'), [agent('carl', 'red'), agent('dana', 'blue')].join('---\n'));
  process.env.AAM_DATABASE_URL = store.databaseUrl;
  try {
    const cli = async (values: Record<string, string | boolean>) => {
      const r = await runAudit('audit query', dir, { json: true, since: new Date(Date.now() - 60_000).toISOString(), ...values }, [], join(dir, 'aam.yaml'));
      assert.equal(r.code, 0, r.err);
      return (JSON.parse(r.out) as Array<{ request_id: string }>).map((e) => String(e.request_id)).filter((id) => id.startsWith('n')).sort();
    };
    assert.deepEqual(await cli({ team: 'red' }), ['n1', 'n3']);
    assert.deepEqual(await cli({ team: 'blue', plane: 'a2a' }), ['n4']);
    assert.equal((await runAudit('audit query', dir, { team: 'green' }, [], join(dir, 'aam.yaml'))).code, 2);
  } finally { delete process.env.AAM_DATABASE_URL; }
  await assert.rejects(queryFleetEvents(sql, { plane: 'email' }), /plane "email" is not one of model, tool, a2a, admin/);
  await assert.rejects(queryFleetEvents(sql, { traceId: 'nope' }), /not 32 hex digits/);
  // A trace query is an index lookup, not a scan of the bodies (20,000 other traces beside it).
  await sql`INSERT INTO audit_events (replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane)
    SELECT 'old', 100 + i, to_char(now() - make_interval(secs => i), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'model_call', 'f' || i, 'filler', 'p', 'h', '{}', lpad(to_hex(i), 32, '0'), 'allow', 'model'
    FROM generate_series(1, 20000) AS i`;
  await sql`ANALYZE audit_events`;
  // Through the view the readers use, as queryFleetEvents asks.
  const plan = (await sql.unsafe(`EXPLAIN SELECT replica, body FROM audit_trail WHERE true AND trace_id = '${trace}' ORDER BY ts DESC, replica, seq DESC LIMIT 100`)).map((r) => String(r['QUERY PLAN'])).join('\n');
  assert.match(plan, /Index Scan using audit_events_trace on audit_events/, plan);
  // Decision and plane are indexed for their rare values only (migration 16). A rare value's query
  // uses its index even as a generic plan (a prepared statement reused), since the query states
  // the index's predicate; the common value's walks audit_events_ts, never the whole table.
  const texts: Array<{ query: string; params: unknown[] }> = [];
  const seen = postgres(store.databaseUrl, { max: 1, onnotice: () => {}, debug: (_c: number, query: string, params: unknown[]) => { texts.push({ query, params }); } });
  try {
    const genericPlan = async (q: Parameters<typeof queryFleetEvents>[1]) => {
      texts.length = 0;
      await queryFleetEvents(seen, q);
      const { query, params } = texts.find((t) => t.query.includes('FROM audit_trail'))!;
      await sql.begin(async (tx) => {
        await tx`SET LOCAL plan_cache_mode = force_generic_plan`;
        await tx.unsafe(`PREPARE generic AS ${query}`);
        const literals = params.map((v) => `'${String(v).replaceAll("'", "''")}'`).join(',');
        texts.push({ query: (await tx.unsafe(`EXPLAIN EXECUTE generic(${literals})`)).map((r) => String(r['QUERY PLAN'])).join('\n'), params: [] });
        await tx`DEALLOCATE generic`;
      });
      return texts.at(-1)!.query;
    };
    for (const [q, index] of [[{ decision: 'deny' }, 'audit_events_decision'], [{ plane: 'a2a' }, 'audit_events_plane'], [{ decision: 'allow' }, 'audit_events_ts'], [{ plane: 'model' }, 'audit_events_ts']] as const) {
      const p = await genericPlan(q);
      assert.match(p, new RegExp(`Index Scan (Backward )?using ${index} on audit_events|Bitmap Index Scan on ${index}`), `${JSON.stringify(q)}: ${p}`);
    }
  } finally { await seen.end(); }
});
