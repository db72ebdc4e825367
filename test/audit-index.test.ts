// The key index (audit_key_blocks): queries by request id or agent read only the blocks that hold
// them, and answer exactly what the block scan answers: after a restart, after retention, and for
// a data dir written before the index existed (built in the background by the writer thread).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openAuditLog } from '../src/audit/log.ts';
import type { AuditLog } from '../src/audit/log.ts';
import { queryEvents } from '../src/audit/query.ts';
import type { AuditQuery } from '../src/audit/query.ts';
import { backfillKeyIndex, getMeta, KEY_INDEX_FROM, openAuditDb, readEvents, setMeta, toEvent, TRACE_INDEX_FROM, traceIdsOf } from '../src/audit/store.ts';
import type { DatabaseSync } from 'node:sqlite';
import { sampleEvent, tempDir } from './audit-helpers.ts';
import { until } from './helpers/e2e.ts';

const QUERIES: AuditQuery[] = [
  { requestId: 'req-3' }, { requestId: 'req-3', order: 'asc' }, { requestId: 'req-44' }, { requestId: 'nope' },
  { agent: 'finance-analyst' }, { agent: 'finance-analyst', order: 'asc', limit: 7 }, { agent: 'support-bot', decision: 'deny' },
  { agent: 'nobody' }, { agent: 'support-bot', requestId: 'req-10' },
];

/** Every query through the index, then with the index switched off (the plain block scan): same events. */
function assertSameAsScan(db: DatabaseSync, label: string): void {
  const indexed = QUERIES.map((q) => queryEvents(db, q).map((e) => e.seq));
  const from = getMeta(db, KEY_INDEX_FROM);
  db.prepare('DELETE FROM audit_meta WHERE key = ?').run(KEY_INDEX_FROM);
  try {
    const scanned = QUERIES.map((q) => queryEvents(db, q).map((e) => e.seq));
    assert.deepEqual(indexed, scanned, label);
  } finally {
    if (from !== undefined) setMeta(db, KEY_INDEX_FROM, from);
  }
}

async function writeBatches(log: AuditLog, from: number, to: number, time?: (i: number) => string): Promise<void> {
  for (let i = from; i < to; i++) {
    log.record(sampleEvent(i, time ? { time: time(i) } : {}));
    if (i % 10 === 9) await log.flush();
  }
  await log.flush();
}

test('queries by request id and agent use the key index and match the block scan, across a restart', async () => {
  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await writeBatches(log, 0, 60);
  await until(() => getMeta(log.db, KEY_INDEX_FROM) === '0', 30_000, 'the writer to start the key index');
  assertSameAsScan(log.db, 'first run');
  assert.deepEqual(queryEvents(log.db, { requestId: 'req-3', order: 'asc' }).map((e) => e.seq), [7, 8]);
  await log.close();

  log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await writeBatches(log, 60, 100);
  assertSameAsScan(log.db, 'after a restart');
  assert.deepEqual(queryEvents(log.db, { requestId: 'req-44' }).map((e) => e.seq), [90, 89]);
  // Events picked out of a block (only their lines decoded) are the texts a whole-block read gives.
  const whole = [...readEvents(log.db)].filter((e) => e.agent === 'finance-analyst');
  assert.deepEqual([...readEvents(log.db, { match: (k) => k.agent === 'finance-analyst' })], whole);
  assert.deepEqual(queryEvents(log.db, { agent: 'finance-analyst', order: 'asc', limit: 1000 }), whole.map(toEvent));
  // Only the blocks that hold the key are read: break the keys of one that does not (events 1..10),
  // which the scan would have to parse, and the indexed queries still answer.
  log.db.prepare("UPDATE audit_blocks SET keys = 'not json' WHERE first_seq = 1").run();
  assert.deepEqual(queryEvents(log.db, { requestId: 'req-44' }).map((e) => e.seq), [90, 89]);
  assert.equal(queryEvents(log.db, { agent: 'nobody' }).length, 0);
  await log.close();
});

test('retention removes the index rows of the blocks it drops; queries still match the scan', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 10, segments: { maxAgeMs: 86_400_000, maxEvents: 10 } });
  const old = new Date(Date.now() - 10 * 86_400_000).toISOString();
  await writeBatches(log, 0, 50, (i) => (i < 20 ? old : new Date().toISOString()));
  const r = await log.prune(new Date(Date.now() - 86_400_000).toISOString());
  assert.equal(r.cutSeq, 20);
  assert.equal(Number(log.db.prepare('SELECT count(*) AS n FROM audit_key_blocks WHERE first_seq <= 20').get()?.n), 0);
  assertSameAsScan(log.db, 'after retention');
  assert.deepEqual(queryEvents(log.db, { requestId: 'req-3' }), [], 'pruned events are gone from indexed queries too');
  await log.close();
});

test('a data dir written before the index is indexed in the background, and answers correctly meanwhile', async () => {
  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await writeBatches(log, 0, 80);
  await log.close();
  // The old format: no index table rows and no index marker.
  const db = openAuditDb(dir);
  db.exec('DELETE FROM audit_key_blocks');
  db.prepare('DELETE FROM audit_meta WHERE key = ?').run(KEY_INDEX_FROM);
  // Slice by slice (as the writer does), queries mix index and scan and still match the scan.
  assertSameAsScan(db, 'no index yet');
  let slices = 0;
  while (backfillKeyIndex(db, 3)) { slices++; assertSameAsScan(db, `after ${slices} slices`); }
  assert.equal(getMeta(db, KEY_INDEX_FROM), '0');
  // And the writer thread builds it on its own at start.
  db.exec('DELETE FROM audit_key_blocks');
  db.prepare('DELETE FROM audit_meta WHERE key = ?').run(KEY_INDEX_FROM);
  db.close();
  log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await until(() => getMeta(log.db, KEY_INDEX_FROM) === '0', 30_000, 'the writer to index the old blocks');
  assert.ok(Number(log.db.prepare('SELECT count(*) AS n FROM audit_key_blocks').get()?.n) > 0);
  await writeBatches(log, 80, 90);
  assertSameAsScan(log.db, 'after the background build');
  await log.close();
});

const traceOf = (r: number) => r.toString(16).padStart(32, '0');

test('queries by trace id use the trace index, match the scan, and still find events of blocks written before it', async () => {
  assert.deepEqual([...traceIdsOf(Buffer.from(`{"trace_id":"${traceOf(7)}","tool":{"args":{"trace_id":"${'A'.repeat(32)}"}}}\n{"trace_id":"${traceOf(7)}"}\n{"trace_id":"short"}\n`))], [traceOf(7)], 'distinct lower-case 32-hex ids only');
  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir, batchSize: 10 });
  // One trace per 5 requests (10 events); the first 20 events are written as by a version without the trace index.
  const write = async (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      log.record(sampleEvent(i, { trace_id: traceOf(Math.floor(i / 10)) }));
      if (i % 10 === 9) await log.flush();
    }
    await log.flush();
  };
  await write(0, 20);
  log.db.prepare("DELETE FROM audit_key_blocks WHERE kind = 't'").run();
  log.db.prepare('DELETE FROM audit_meta WHERE key = ?').run(TRACE_INDEX_FROM);
  await log.close();
  log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await write(20, 100);
  const from = Number(getMeta(log.db, TRACE_INDEX_FROM));
  assert.ok(from > 20 && from <= 21, `the trace index starts with the first batch written by this version (${from})`);
  const traces = [0, 1, 5, 9].map(traceOf);
  const indexed = traces.map((t) => queryEvents(log.db, { traceId: t, order: 'asc' }).map((e) => e.seq));
  assert.deepEqual(indexed[0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'an older block, found by scan');
  assert.deepEqual(indexed[2], [51, 52, 53, 54, 55, 56, 57, 58, 59, 60]);
  assert.deepEqual(queryEvents(log.db, { traceId: traceOf(99) }), []);
  // The index alone decides which newer blocks are read: with its rows gone, a newer trace is not found.
  log.db.prepare("DELETE FROM audit_key_blocks WHERE kind = 't' AND value = ?").run(traceOf(5));
  assert.deepEqual(queryEvents(log.db, { traceId: traceOf(5) }), [], 'read through the index, not a scan');
  // And with the trace index switched off entirely: the scan gives what the index gave.
  log.db.prepare('DELETE FROM audit_meta WHERE key = ?').run(TRACE_INDEX_FROM);
  assert.deepEqual(traces.map((t) => queryEvents(log.db, { traceId: t, order: 'asc' }).map((e) => e.seq)), indexed);
  await log.close();
});
