// The key index (audit_key_blocks): queries by request id, agent, team, decision, type, plane or
// trace id read only the blocks that hold them, and answer exactly what the block scan answers:
// after a restart, after retention, and for a data dir written before the index (or its newer
// kinds) existed (built in the background by the writer thread). Every filter the API, live tail,
// console and CLI offer is checked against SQLite's query plan.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openAuditLog } from '../src/audit/log.ts';
import type { AuditLog } from '../src/audit/log.ts';
import { keyConditions, queryEvents } from '../src/audit/query.ts';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AuditQuery } from '../src/audit/query.ts';
import { backfillKeyIndex, blockSelects, FACET_INDEX_FROM, getMeta, indexKeysOf, indexLookupValues, KEY_INDEX_FROM, openAuditDb, readEvents, setMeta, toEvent, TRACE_INDEX_FROM, traceIdsOf } from '../src/audit/store.ts';
import { adminEvent } from '../src/audit/event.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { verifyDatabase } from '../src/audit/verify.ts';
import type { DatabaseSync } from 'node:sqlite';
import { sampleEvent, tempDir } from './audit-helpers.ts';
import { readBytes } from '../src/audit/segment.ts';
import { until } from './helpers/e2e.ts';

const QUERIES: AuditQuery[] = [
  { requestId: 'req-3' }, { requestId: 'req-3', order: 'asc' }, { requestId: 'req-44' }, { requestId: 'nope' },
  { agent: 'finance-analyst' }, { agent: 'finance-analyst', order: 'asc', limit: 7 }, { agent: 'support-bot', decision: 'deny' },
  { agent: 'nobody' }, { agent: 'support-bot', requestId: 'req-10' },
  { decision: 'deny' }, { decision: 'deny', order: 'asc', limit: 3 }, { decision: 'escalate' }, { type: 'model_call', limit: 5 }, { type: 'admin' },
  { plane: 'model' }, { plane: 'tool' }, { plane: 'a2a' }, { plane: 'admin' }, { plane: 'model', decision: 'deny', agent: 'finance-analyst' },
  { agents: ['finance-analyst', 'nobody'] }, { agents: ['support-bot', 'finance-analyst'], decision: 'deny', plane: 'model', order: 'asc' },
  { agents: ['nobody', 'ghost'] }, { agent: 'support-bot', agents: ['finance-analyst'] },
];
const MARKERS = [KEY_INDEX_FROM, FACET_INDEX_FROM, TRACE_INDEX_FROM];

/** Every query through the index, then with the index switched off (the plain block scan): same events. */
function assertSameAsScan(db: DatabaseSync, label: string): void {
  const indexed = QUERIES.map((q) => queryEvents(db, q).map((e) => e.seq));
  const saved = MARKERS.map((m) => getMeta(db, m));
  for (const m of MARKERS) db.prepare('DELETE FROM audit_meta WHERE key = ?').run(m);
  try {
    const scanned = QUERIES.map((q) => queryEvents(db, q).map((e) => e.seq));
    assert.deepEqual(indexed, scanned, label);
  } finally {
    MARKERS.forEach((m, i) => { if (saved[i] !== undefined) setMeta(db, m, saved[i]); });
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
  db.prepare('DELETE FROM audit_meta WHERE key IN (?, ?)').run(KEY_INDEX_FROM, FACET_INDEX_FROM);
  // Slice by slice (as the writer does), queries mix index and scan and still match the scan.
  assertSameAsScan(db, 'no index yet');
  let slices = 0;
  while (backfillKeyIndex(db, 3)) { slices++; assertSameAsScan(db, `after ${slices} slices`); }
  assert.equal(getMeta(db, KEY_INDEX_FROM), '0');
  assert.equal(getMeta(db, FACET_INDEX_FROM), '0');
  // And the writer thread builds it on its own at start.
  db.exec('DELETE FROM audit_key_blocks');
  db.prepare('DELETE FROM audit_meta WHERE key IN (?, ?)').run(KEY_INDEX_FROM, FACET_INDEX_FROM);
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
  // Members only, wherever they are: not a longer name ending in trace_id, nor one starting with it.
  assert.deepEqual([...traceIdsOf(Buffer.from(`"trace_id":"${traceOf(1)}"{"grace_id":"${traceOf(2)}","xtrace_id":"${traceOf(3)}","a":{"trace_id":"${traceOf(4)}"},"trace_ids":"${traceOf(5)}"}\n`))], [traceOf(1), traceOf(4)]);
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
  for (const v of indexLookupValues('t', [traceOf(5)])) log.db.prepare("DELETE FROM audit_key_blocks WHERE kind = 't' AND value = ?").run(v);
  assert.deepEqual(queryEvents(log.db, { traceId: traceOf(5) }), [], 'read through the index, not a scan');
  // And with the trace index switched off entirely: the scan gives what the index gave.
  log.db.prepare('DELETE FROM audit_meta WHERE key = ?').run(TRACE_INDEX_FROM);
  assert.deepEqual(traces.map((t) => queryEvents(log.db, { traceId: t, order: 'asc' }).map((e) => e.seq)), indexed);
  await log.close();
});

test('request ids and trace ids as aam makes them are indexed by bucket: a few rows per block, not one per event; queries stay exact and find rows of whole ids', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 50 });
  // req_<process><counter> and <time in ms><random>, as the gateway makes them; 3 requests per ms.
  const t0 = Date.now();
  const reqOf = (i: number) => `req_9f3ac2e1${i.toString(36).padStart(8, '0')}`;
  const traceAt = (i: number) => Math.floor(t0 + i / 3).toString(16).padStart(12, '0') + (i * 7919).toString(16).padStart(20, '0');
  const n = 600;
  for (let i = 0; i < n; i++) {
    log.record(sampleEvent(i, { request_id: reqOf(i), trace_id: traceAt(i) }));
    if (i % 50 === 49) await log.flush();
  }
  // Trace ids of other schemes (a 64-bit id zero-padded, random) do not name a time near their events: indexed whole.
  const foreign = [`${'0'.repeat(16)}${'1'.repeat(15)}7`, `${'0'.repeat(16)}${'1'.repeat(15)}8`, 'f3a9c07b12d45e6f8091a2b3c4d5e6f7'];
  for (const [k, t] of foreign.entries()) log.record(sampleEvent(n + k, { request_id: `other-${k}`, trace_id: t }));
  await log.flush();
  assert.deepEqual(log.db.prepare("SELECT value FROM audit_key_blocks WHERE kind = 't' AND length(value) = 32 ORDER BY value").all().map((r) => r.value), foreign);
  for (const [k, t] of foreign.entries()) assert.deepEqual(queryEvents(log.db, { traceId: t }).map((e) => e.seq), [n + k + 1]);
  const rows = (kind: string) => Number(log.db.prepare('SELECT count(*) AS n FROM audit_key_blocks WHERE kind = ?').get(kind)?.n);
  // 12 blocks of 50 (~17 ms each): 36 consecutive request ids share a row, the 48 trace ids of a 16 ms slot share one.
  assert.ok(rows('r') <= 12 * 3 + 3, `request-id rows: ${rows('r')} for ${n} events`);
  assert.ok(rows('t') <= 12 * 3 + 3, `trace-id rows: ${rows('t')} for ${n} events`);
  const byScan = (q: AuditQuery) => {
    const saved = MARKERS.map((m) => getMeta(log.db, m));
    for (const m of MARKERS) log.db.prepare('DELETE FROM audit_meta WHERE key = ?').run(m);
    try { return queryEvents(log.db, q).map((e) => e.seq); } finally { MARKERS.forEach((m, i) => { if (saved[i] !== undefined) setMeta(log.db, m, saved[i]); }); }
  };
  for (const i of [0, 35, 36, 299, 599]) {
    assert.deepEqual(queryEvents(log.db, { requestId: reqOf(i) }).map((e) => e.seq), [i + 1], `request ${i}`);
    assert.deepEqual(queryEvents(log.db, { traceId: traceAt(i) }).map((e) => e.seq), [i + 1], `trace ${i}`);
    assert.deepEqual(byScan({ requestId: reqOf(i) }), [i + 1]);
  }
  assert.deepEqual(queryEvents(log.db, { requestId: reqOf(n) }), [], 'an id of a bucket no block holds');
  assert.deepEqual(queryEvents(log.db, { requestId: `${reqOf(1)}x` }), [], 'an id of a held bucket that no event has');
  assert.deepEqual(queryEvents(log.db, { traceId: traceAt(n + 3) }), []);
  // Only the blocks holding the bucket are read: the rest may be broken.
  log.db.prepare("UPDATE audit_blocks SET keys = 'not json' WHERE first_seq > 100").run();
  assert.deepEqual(queryEvents(log.db, { requestId: reqOf(42) }).map((e) => e.seq), [43]);
  log.db.prepare("UPDATE audit_blocks SET keys = ? WHERE first_seq > 100").run('[]');
  // Rows of whole ids (as an earlier version wrote them) are found too.
  log.db.exec("DELETE FROM audit_key_blocks WHERE kind IN ('r', 't') AND first_seq = 51");
  log.db.prepare("INSERT INTO audit_key_blocks (kind, value, first_seq) VALUES ('r', ?, 51), ('t', ?, 51)").run(reqOf(60), traceAt(60));
  assert.deepEqual(queryEvents(log.db, { requestId: reqOf(60) }).map((e) => e.seq), [61]);
  assert.deepEqual(queryEvents(log.db, { traceId: traceAt(60) }).map((e) => e.seq), [61]);
  // And rows of 1 ms trace buckets (the first 12 hex digits, as the version before wrote them).
  log.db.exec("DELETE FROM audit_key_blocks WHERE kind = 't' AND first_seq = 51");
  log.db.prepare("INSERT INTO audit_key_blocks (kind, value, first_seq) VALUES ('t', ?, 51)").run(traceAt(70).slice(0, 12));
  assert.deepEqual(queryEvents(log.db, { traceId: traceAt(70) }).map((e) => e.seq), [71]);
  await log.close();
});

/** Events of every plane: model (sampleEvent), tool and A2A decisions and calls, admin actions. */
function planeEvent(i: number): AuditEventInput {
  const who = { spiffe_id: 'spiffe://prod/agent/support-bot', agent: 'support-bot', method: 'virtual_key' } as AuditEventInput['identity'];
  const policy = (decision: string) => ({ name: 'p', version: 'v', rule: 0, decision, reason: 'r' });
  switch (i % 6) {
    case 0: return { type: 'decision', request_id: `t-${i}`, identity: who, policy: policy(i % 4 ? 'allow' : 'deny'), tool: { server: 'notes', tool: 'read', args_digest: 'sha256:1' } };
    case 1: return { type: 'tool_call', request_id: `t-${i - 1}`, identity: who, tool: { server: 'notes', tool: 'read', args_digest: 'sha256:1' }, outcome: { status: 200 } };
    case 2: return { type: 'decision', request_id: `a-${i}`, identity: who, policy: policy('deny'), a2a: { agent: 'helper', method: 'SendMessage' } };
    case 3: return adminEvent('key.create', 'support-bot', 'admin-token');
    default: return sampleEvent(i);
  }
}

test('decisions, types and planes are in the index: a filter that matches nothing reads no block, and a trail from before them is indexed in the background and still verifies', async () => {
  // A decision's plane comes from its line: the members present, or every plane when the line cannot be read.
  const keys = JSON.stringify(['t', 'decision', 'r', 'a', 'deny', 't', 'tool_call', 'r', 'a', null]);
  const planes = (lines?: () => Buffer | undefined) => indexKeysOf(keys, lines).filter((k) => k.kind === 'p').map((k) => k.value).sort();
  assert.deepEqual(planes(() => Buffer.from('{"type":"decision","tool":{"server":"s"}}\n{"type":"tool_call"}\n')), ['tool']);
  assert.deepEqual(planes(() => undefined), ['a2a', 'model', 'tool']);
  assert.deepEqual(indexKeysOf(keys).filter((k) => k.kind === 'd' || k.kind === 'y').map((k) => k.kind + k.value), ['ydecision', 'ddeny', 'ytool_call']);

  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await writeBatches(log, 0, 40); // model-plane events only
  await until(() => getMeta(log.db, FACET_INDEX_FROM) === '0', 30_000, 'the writer to start the facet index');
  // Values no block holds: no block's keys are read (they are broken here, which a read would throw on).
  const none: AuditQuery[] = [{ decision: 'escalate' }, { type: 'admin' }, { plane: 'tool' }, { plane: 'a2a' }, { plane: 'admin' }, { agents: ['nobody', 'ghost'] }, { agent: 'support-bot', plane: 'tool' }];
  log.db.exec("UPDATE audit_blocks SET keys = 'not json'");
  assert.throws(() => queryEvents(log.db, { plane: 'model' }), SyntaxError, 'a block that may match is read');
  for (const q of none) assert.deepEqual(queryEvents(log.db, q), [], JSON.stringify(q));
  await log.close();
  rmTrail(dir);

  log = openAuditLog({ dataDir: dir, batchSize: 10 });
  for (let i = 0; i < 60; i++) { log.record(planeEvent(i)); if (i % 10 === 9) await log.flush(); }
  await log.flush();
  await log.checkpoint();
  const pub = log.publicKeyPem();
  assertSameAsScan(log.db, 'every plane');
  assert.deepEqual(queryEvents(log.db, { plane: 'a2a', order: 'asc' }).map((e) => e.seq), [3, 9, 15, 21, 27, 33, 39, 45, 51, 57], 'the A2A decisions');
  assert.ok(queryEvents(log.db, { plane: 'tool' }).some((e) => e.type === 'tool_call'));
  const before = QUERIES.map((q) => queryEvents(log.db, q).map((e) => e.seq));
  // A trail indexed by the previous version: request ids and agents only, no facet marker.
  log.db.exec("DELETE FROM audit_key_blocks WHERE kind IN ('d', 'y', 'p')");
  log.db.prepare('DELETE FROM audit_meta WHERE key = ?').run(FACET_INDEX_FROM);
  await log.close();
  log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await until(() => getMeta(log.db, FACET_INDEX_FROM) === '0', 30_000, 'the writer to index decisions, types and planes of the old blocks');
  assert.ok(Number(log.db.prepare("SELECT count(*) AS n FROM audit_key_blocks WHERE kind = 'p' AND value = 'a2a'").get()?.n) > 0);
  assert.deepEqual(QUERIES.map((q) => queryEvents(log.db, q).map((e) => e.seq)), before, 'the same answers after the migration');
  await log.close();
  const v = verifyDatabase(dir, pub);
  assert.ok(v.ok && v.events === 60 && v.checkpoints > 0 && v.unsignedTail === 0, JSON.stringify(v));
});

/** Start a new trail in the same directory (the test reuses one temp dir for two trails). */
function rmTrail(dir: string): void {
  for (const f of readdirSync(dir)) rmSync(join(dir, f), { recursive: true, force: true });
}

test('query plans: every filter and combination the API, live tail, console and CLI offer reads audit_blocks by primary key and narrows through audit_key_blocks', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 10 });
  await writeBatches(log, 0, 30);
  await until(() => getMeta(log.db, KEY_INDEX_FROM) === '0' && getMeta(log.db, FACET_INDEX_FROM) === '0', 30_000, 'the index markers');
  const filters: Record<string, AuditQuery> = {
    agent: { agent: 'support-bot' }, team: { agents: ['support-bot', 'finance-analyst'] }, decision: { decision: 'deny' },
    plane: { plane: 'tool' }, type: { type: 'admin' }, requestId: { requestId: 'req-3' }, traceId: { traceId: traceOf(3) },
  };
  const names = Object.keys(filters);
  const combos: string[][] = [[], ...names.map((n) => [n]), ...names.flatMap((a, i) => names.slice(i + 1).map((b) => [a, b])), names];
  const now = Date.now();
  const times: AuditQuery[] = [{}, { since: new Date(now - 3_600_000) }, { since: new Date(now - 3_600_000), until: new Date(now + 60_000) }];
  const explain = (sql: string, args: (number | string)[]) => log.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args).map((r) => String(r.detail));
  let checked = 0;
  for (const combo of combos) {
    for (const time of times) {
      for (const order of ['desc', 'asc'] as const) {
        const q: AuditQuery = Object.assign({ order }, time, ...combo.map((n) => filters[n]));
        const conditions = keyConditions(q);
        assert.equal(conditions.length, combo.length, `every filter narrows through the index: ${JSON.stringify(q)}`);
        const iso = (d: string | Date | undefined) => (d === undefined ? undefined : new Date(d).toISOString());
        const { bounds, selects } = blockSelects(log.db, { since: iso(time.since), until: iso(time.until), desc: order === 'desc', indexed: conditions });
        const label = JSON.stringify(q);
        // Time bounds walk only the time index's own entries, never the table.
        for (const b of bounds) {
          const bp = explain(b.sql, b.args).join(' | ');
          assert.match(bp, /SEARCH audit_blocks USING COVERING INDEX audit_blocks_m(ax|in)_time/, `${label}: ${bp}`);
          assert.doesNotMatch(bp, /SCAN/, `${label}: ${bp}`);
        }
        assert.equal(bounds.length, time.until ? 2 : time.since ? 1 : 0);
        assert.equal(selects.length, 1, `a fully indexed trail is read in one SELECT: ${label}`);
        const plan = explain(selects[0].sql, selects[0].args);
        const text = plan.join(' | ');
        assert.match(plan[0], /^SEARCH audit_blocks USING INTEGER PRIMARY KEY/, `${label}: ${text}`);
        assert.doesNotMatch(text, /SCAN|TEMP B-TREE/, `${label}: ${text}`);
        assert.equal(plan.filter((l) => /^SEARCH audit_key_blocks USING PRIMARY KEY \(kind=\? AND value=\? AND first_seq>\?\)$/.test(l)).length, conditions.length, `${label}: ${text}`);
        checked++;
      }
    }
  }
  assert.equal(checked, combos.length * 6);
  await log.close();
});

test('the index rows the writer stores for a batch (collected as log.ts sends it) are those of the stored block (indexKeysOf, as the backfill finds them)', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 25 });
  // Every plane, request ids across buckets (t-9, t-10, ...), agents and none.
  for (let i = 0; i < 120; i++) { log.record(planeEvent(i)); if (i % 40 === 39) await log.flush(); }
  await log.flush();
  const blocks = log.db.prepare('SELECT first_seq, keys, segment, byte_start, byte_end FROM audit_blocks ORDER BY first_seq').all();
  assert.ok(blocks.length >= 4);
  const rows = log.db.prepare("SELECT kind, value FROM audit_key_blocks WHERE first_seq = ? AND kind <> 't' ORDER BY kind, value");
  for (const b of blocks) {
    const lines = (): Buffer => readBytes(dir, String(b.segment), Number(b.byte_start), Number(b.byte_end));
    const expected = indexKeysOf(String(b.keys), lines).map((k) => k.kind + ' ' + k.value).sort();
    const stored = rows.all(b.first_seq).map((r) => `${r.kind} ${r.value}`).sort();
    assert.deepEqual(stored, expected, `block ${b.first_seq}`);
    assert.ok(stored.some((k) => k.startsWith('p ')) && stored.some((k) => k.startsWith('r ')));
  }
  await log.close();
});
