// Usage rollups: calls merge per minute and dimension set, unknown cost stays unknown, `since`
// works at minute granularity, an old per-request usage table is folded in once, and a gateway
// shutdown flushes what the timer had not written yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import OpenAI from 'openai';
import { openDatabase } from '../src/store/sqlite.ts';
import { UsageRecorder, minuteOf, type UsageRecord } from '../src/gateway/usage.ts';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';

const T0 = Date.UTC(2026, 0, 15, 10, 30, 0); // a minute boundary
const call = (o: Partial<UsageRecord> = {}): UsageRecord => ({
  time: T0 + 5_000, agent: 'analyst', team: 'finance', keyId: 'key_1', route: 'gpt', provider: 'oai', model: 'gpt-4o',
  inputTokens: 100, outputTokens: 20, cachedTokens: 0, costUsd: 0.01, latencyMs: 10, status: 200, stream: false, cache: null, ...o,
});

function freshDb(t: { after(fn: () => void): void }): DatabaseSync {
  const dir = mkdtempSync(join(tmpdir(), 'aam-usage-'));
  const db = openDatabase(dir);
  t.after(() => { db.close(); rmSync(dir, { recursive: true, force: true }); });
  return db;
}

const rows = (db: DatabaseSync) => db.prepare('SELECT * FROM usage_rollup ORDER BY agent, minute, status').all() as Array<Record<string, unknown>>;

test('two calls in the same minute merge into one row; another agent, minute or status is a row of its own', (t) => {
  const db = freshDb(t);
  const u = new UsageRecorder(db);
  u.record(call());
  u.record(call({ time: T0 + 59_999, inputTokens: 50, outputTokens: 5, cachedTokens: 10, costUsd: 0.02, latencyMs: 30 }));
  u.record(call({ agent: 'writer', team: null, keyId: null }));
  u.record(call({ time: T0 + 60_000 }));
  u.record(call({ status: 502, inputTokens: null, outputTokens: null, cachedTokens: null, costUsd: null, provider: null, model: null }));
  assert.equal(rows(db).length, 0, 'nothing written before the flush');
  u.flush();
  const r = rows(db);
  assert.equal(r.length, 4);
  assert.deepEqual({ ...r[0] }, {
    minute: T0, agent: 'analyst', team: 'finance', key_id: 'key_1', route: 'gpt', provider: 'oai', model: 'gpt-4o', status: 200, stream: 0, cache: '',
    requests: 2, input_tokens: 150, output_tokens: 25, cached_tokens: 10, cache_write_tokens: null, cost_usd: 0.03, unknown_cost_requests: 0, latency_ms_sum: 40, latency_ms_max: 30,
  });
  assert.equal(r[1].status, 502);
  assert.equal(r[1].cost_usd, null, 'an unknown cost is not $0');
  assert.equal(r[1].input_tokens, null, 'unreported tokens are not 0');
  assert.equal(r[1].unknown_cost_requests, 1);
  assert.equal(r[2].minute, T0 + 60_000);
  assert.equal(r[3].agent, 'writer');
  assert.equal(r[3].requests, 1);
});

test('flushes add to rows already stored (upsert), including unknown costs and cache hits', (t) => {
  const db = freshDb(t);
  const u = new UsageRecorder(db);
  u.record(call());
  u.record(call({ costUsd: null }));
  u.flush();
  u.record(call({ costUsd: 0.5, latencyMs: 99 }));
  u.record(call({ costUsd: null }));
  u.record(call({ costUsd: 0, cache: 'hit', provider: null, model: null }));
  u.flush();
  const r = rows(db).filter((x) => x.cache === '');
  assert.equal(r.length, 1);
  assert.equal(r[0].requests, 4);
  assert.equal(r[0].unknown_cost_requests, 2);
  assert.equal(r[0].cost_usd, 0.51);
  assert.equal(r[0].latency_ms_max, 99);
  const [s] = u.summary('agent', T0);
  assert.deepEqual({ ...s }, { agent: 'analyst', requests: 5, input_tokens: 500, output_tokens: 100, cache_read_tokens: 0, cache_write_tokens: 0, cost_usd: 0.51, unknown_cost_requests: 2, cache_hits: 1 });
  assert.deepEqual(u.spendSince('agent', 'analyst', T0), { usd: 0.51, unknown: 2 });
  assert.deepEqual(u.spendSince('team', 'finance', T0), { usd: 0.51, unknown: 2 });
  assert.deepEqual(u.spendSince('agent', 'nobody', T0), { usd: 0, unknown: 0 });
});

test('summary and spendSince count from the start of the minute that holds `since`', (t) => {
  const db = freshDb(t);
  const u = new UsageRecorder(db);
  u.record(call({ time: T0 + 1_000, costUsd: 1 }));
  u.record(call({ time: T0 + 61_000, costUsd: 2 }));
  u.record(call({ time: T0 + 61_000, agent: 'writer', team: null, costUsd: null, model: null }));
  u.flush();
  assert.equal(minuteOf(T0 + 59_999), T0);
  assert.equal(u.spendSince('agent', 'analyst', T0 + 59_999).usd, 3, 'the whole first minute counts');
  assert.equal(u.spendSince('agent', 'analyst', T0 + 60_000).usd, 2);
  assert.equal(u.spendSince('agent', 'analyst', T0 + 120_000).usd, 0);
  const byTeam = u.summary('team', T0 + 60_000);
  assert.deepEqual(byTeam.map((r) => [r.team, r.requests, r.cost_usd]), [['finance', 1, 2], [null, 1, null]], 'no team is null, and an unknown cost sorts last');
  const byModel = u.summary('model', T0);
  assert.deepEqual(byModel.map((r) => [r.model, r.requests, r.unknown_cost_requests]), [['gpt-4o', 2, 0], [null, 1, 1]]);
});

test('prompt-cache reads and writes are summed per row and shown by summary and daily (0 where none were reported)', (t) => {
  const db = freshDb(t);
  const u = new UsageRecorder(db);
  u.record(call({ cachedTokens: 0, cacheWriteTokens: 1200, inputTokens: 1212 }));
  u.record(call({ cachedTokens: 1200, cacheWriteTokens: null, inputTokens: 1212 }));
  u.record(call({ agent: 'writer', cachedTokens: null }));
  u.flush();
  assert.deepEqual(rows(db).map((r) => [r.agent, r.cached_tokens, r.cache_write_tokens]), [['analyst', 1200, 1200], ['writer', null, null]]);
  const sum = u.summary('agent', T0);
  assert.deepEqual(sum.map((r) => [r.agent, r.input_tokens, r.cache_read_tokens, r.cache_write_tokens]), [['analyst', 2424, 1200, 1200], ['writer', 100, 0, 0]]);
  const days = u.daily('agent', T0);
  assert.deepEqual(days.map((d) => [d.key, d.cache_read_tokens, d.cache_write_tokens]), [['analyst', 1200, 1200], ['writer', 0, 0]]);
});

test('a rollup table from before cache writes were counted gets the column; its rows read as 0 and take new writes', (t) => {
  const db = freshDb(t);
  db.exec(`CREATE TABLE usage_rollup (
    minute INTEGER NOT NULL, agent TEXT NOT NULL, team TEXT NOT NULL, key_id TEXT NOT NULL, route TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, stream INTEGER NOT NULL, cache TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER,
    cost_usd REAL, unknown_cost_requests INTEGER NOT NULL, latency_ms_sum REAL NOT NULL, latency_ms_max REAL NOT NULL,
    PRIMARY KEY (minute, agent, team, key_id, route, provider, model, status, stream, cache)) WITHOUT ROWID;
    INSERT INTO usage_rollup VALUES (${T0}, 'analyst', 'finance', 'key_1', 'gpt', 'oai', 'gpt-4o', 200, 0, '', 3, 300, 60, 30, 0.05, 0, 30, 10);`);
  const u = new UsageRecorder(db);
  assert.deepEqual(u.summary('agent', T0).map((r) => [r.requests, r.cache_read_tokens, r.cache_write_tokens]), [[3, 30, 0]], 'the old row: no writes counted, read as 0');
  u.record(call({ cacheWriteTokens: 500 }));
  u.flush();
  assert.deepEqual(u.summary('agent', T0).map((r) => [r.requests, r.cache_read_tokens, r.cache_write_tokens]), [[4, 30, 500]], 'the same row takes the new write');
  new UsageRecorder(db); // opening again: the column is there, nothing to do
});

const LEGACY_USAGE = `CREATE TABLE usage (
      id INTEGER PRIMARY KEY, time INTEGER NOT NULL, request_id TEXT NOT NULL, agent TEXT NOT NULL, team TEXT, key_id TEXT,
      route TEXT NOT NULL, provider TEXT, model TEXT, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER,
      cost_usd REAL, latency_ms REAL NOT NULL, status INTEGER NOT NULL, stream INTEGER NOT NULL, cache TEXT)`;

test('an old per-request usage table is folded into the rollup once and kept as usage_v1', (t) => {
  const db = freshDb(t);
  db.exec(LEGACY_USAGE);
  const ins = db.prepare(`INSERT INTO usage (time, request_id, agent, team, key_id, route, provider, model, input_tokens, output_tokens,
    cached_tokens, cost_usd, latency_ms, status, stream, cache) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`);
  ins.run(T0 + 1, 'r1', 'analyst', 'finance', 'key_1', 'gpt', 'oai', 'gpt-4o', 100, 20, 0, 0.01, 10, 200, 0, null);
  ins.run(T0 + 2, 'r2', 'analyst', 'finance', 'key_1', 'gpt', 'oai', 'gpt-4o', 100, 20, 0, null, 20, 200, 0, null);
  ins.run(T0 + 3, 'r3', 'analyst', 'finance', 'key_1', 'gpt', null, null, null, null, null, null, 5, 502, 1, null);
  const u = new UsageRecorder(db);
  u.record(call({ time: T0 + 4 })); // same row as r1 and r2
  u.flush();
  assert.deepEqual(u.spendSince("agent", "analyst", T0), { usd: 0.02, unknown: 2 });
  const [s] = u.summary('agent', T0);
  assert.equal(s.requests, 4);
  assert.equal(s.input_tokens, 300);
  assert.ok(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'usage_v1'").get(), 'the old rows are kept');
  new UsageRecorder(db); // a second start must not fold again
  assert.equal(new UsageRecorder(db).summary('agent', T0)[0].requests, 4);
  // An older version started on this data dir again (downgrade, then upgrade): its new rows are
  // folded too and appended to usage_v1 instead of failing the start.
  db.exec(LEGACY_USAGE); // its ids start at 1 again
  ins.run(T0 + 5, 'r5', 'analyst', 'finance', 'key_1', 'gpt', 'oai', 'gpt-4o', 1, 1, 0, 0.5, 1, 200, 0, null);
  assert.equal(new UsageRecorder(db).summary('agent', T0)[0].requests, 5);
  assert.equal((db.prepare('SELECT count(*) AS n FROM usage_v1').get() as { n: number }).n, 4);
  assert.equal(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'usage'").get(), undefined);
});

test('gateway shutdown flushes usage the timer had not written yet', async () => {
  const gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'free', { targets: [{ provider: 'demo', model: 'd' }] }),
    ...agentDocs(['free']),
  ));
  let closed = false;
  try {
    const client = new OpenAI({ apiKey: gw.key('tester'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
    for (let i = 0; i < 5; i++) await client.chat.completions.create({ model: 'free', messages: [{ role: 'user', content: `hello ${i}` }] });
    await gw.g.close();
    closed = true;
    const db = openDatabase(gw.dataDir);
    try {
      const [s] = new UsageRecorder(db).summary('agent', Date.now() - 3_600_000);
      assert.equal(s.agent, 'tester');
      assert.equal(s.requests, 5);
      assert.equal(s.cost_usd, 0, 'the demo provider is free: a known $0');
      assert.equal(s.unknown_cost_requests, 0);
      assert.ok(Number(s.output_tokens) > 0);
    } finally { db.close(); }
  } finally { if (!closed) await gw.g.close(); await gw.close().catch(() => {}); }
});

test('close() flushes, then a late record (a request outliving the shutdown) never flushes into the closed database', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-usage-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const db = openDatabase(dir);
  const u = new UsageRecorder(db, { intervalMs: 5 });
  u.record(call());
  u.close();
  assert.equal(rows(db).length, 1, 'what was recorded before close is written');
  db.close();
  const thrown: unknown[] = [];
  const onUncaught = (e: unknown) => { thrown.push(e); };
  process.on('uncaughtException', onUncaught);
  try {
    u.record(call({ agent: 'late' }));
    u.flush();
    await new Promise((r) => setTimeout(r, 40));
  } finally { process.off('uncaughtException', onUncaught); }
  assert.deepEqual(thrown, [], 'no flush reached the closed database');
});
