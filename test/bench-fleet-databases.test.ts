// bench/lib/fleet.ts: cpu-per-request --fleet gives each tree a PostgreSQL database of its own on
// the one server (each migrated by its own tree, so trees with different migrations are each judged
// on their own schema) and counts each tree's transactions in its own database only.
// It starts its own PostgreSQL and Redis, as `npm run bench` does (node --test runs it alone).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startBenchFleet, storeCost } from '../bench/lib/fleet.ts';
import { CLK_TCK } from '../bench/lib/procs.ts';
import { connectPostgres, migrate } from '../src/store/postgres.ts';

test('each tree gets its own database (own schema, own Redis prefix), and its transactions are counted there', { timeout: 120_000 }, async () => {
  const fleet = await startBenchFleet();
  const conns: Array<ReturnType<typeof connectPostgres>> = [];
  try {
    const a = await fleet.database('aam_t0');
    const b = await fleet.database('aam_t1');
    assert.notEqual(a.env.AAM_DATABASE_URL, b.env.AAM_DATABASE_URL);
    assert.equal(new URL(a.env.AAM_DATABASE_URL).pathname, '/aam_t0');
    assert.equal(a.env.AAM_REDIS_URL, fleet.env.AAM_REDIS_URL);
    assert.equal(a.redisPrefix, 'aam:{aam_t0}:');
    assert.notEqual(a.redisPrefix, b.redisPrefix);
    // Transactions in aam_t0 are what aam_t0's counters count: 100 on a database nothing else has
    // used (no tables, so no autovacuum either), and the connection's own start (postgres.js reads
    // the array types once). A backend reports its statistics at most once a
    // second when idle and up to 10 s late; at its exit at once: wait until they are in.
    const a0 = await fleet.counters('aam_t0');
    const sa = connectPostgres(a.env.AAM_DATABASE_URL, 1);
    for (let i = 0; i < 100; i++) await sa`SELECT 1`;
    await sa.end({ timeout: 1 });
    let cost = storeCost(a0, await fleet.counters('aam_t0'), 100);
    for (const until = Date.now() + 20_000; cost.pg_xacts_per_request < 1 && Date.now() < until;) cost = storeCost(a0, await fleet.counters('aam_t0'), 100);
    assert.ok(cost.pg_xacts_per_request >= 1 && cost.pg_xacts_per_request <= 1.02, `${cost.pg_xacts_per_request} transactions per SELECT`);
    // Migrating one tree's database leaves the other's schema alone.
    const sb = connectPostgres(b.env.AAM_DATABASE_URL, 1);
    const sa2 = connectPostgres(a.env.AAM_DATABASE_URL, 1);
    conns.push(sb, sa2);
    await migrate(sb);
    const tables = async (sql: typeof sb) => Number((await sql<Array<{ n: string }>>`SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'`)[0].n);
    assert.ok(await tables(sb) > 0);
    assert.equal(await tables(sa2), 0);
  } finally {
    for (const c of conns) await c.end({ timeout: 1 });
    await fleet.stop();
  }
});

test('storeCost: rows inserted per transaction and PostgreSQL CPU per request by process kind', () => {
  const at = (xacts: number, rows: number, pg: Record<string, number>) => ({
    redis: {}, redisUsec: {}, redisReads: 0, redisWrites: 0, pgXacts: xacts, pgSelf: 1, pgRows: rows, pgTicks: pg, storeTicks: 0, redisTicks: 0,
  });
  // 100 transactions (the second reading's own one apart) carrying 700 rows; 1000 requests.
  // Backend 9 exited between the readings with 130 ticks (100 before); autovacuum worker 12 came and went with 20.
  const cost = storeCost(at(50, 10, { postmaster: 1, exited: 0, '7 backend': 100, '9 backend': 100, '3 walwriter': 5 }),
    at(151, 710, { postmaster: 1, exited: 130 + 20, '7 backend': 300, '3 walwriter': 6, '11 autovacuum_worker': 2 }), 1000);
  assert.equal(cost.pg_rows_per_xact, 7);
  assert.equal(cost.pg_xacts_per_request, 0.1);
  // Ticks are 1/CLK_TCK s: per 1000 requests, 200 ticks are 2000 us each at 100 Hz; a kind that did not move is left out.
  const us = (ticks: number) => Math.round((ticks / CLK_TCK / 1000) * 1e7) / 10;
  assert.deepEqual(cost.pg_cpu_us_by_process, { backend: us(200), walwriter: us(1), autovacuum_worker: us(2), exited: us(50) });
});
