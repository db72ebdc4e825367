// The audit log itself: canonical JSON, durability, resume, fail modes, queries, retention, OCSF.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalJson } from '../src/audit/canonical.ts';
import { openAuditLog, AuditUnavailableError, FLUSH_DELAY_MS, WRITER_THREAD } from '../src/audit/log.ts';
import type { AuditAlert } from '../src/audit/log.ts';
import { verifyDatabase } from '../src/audit/verify.ts';
import { queryEvents, showRequest, describeEvent } from '../src/audit/query.ts';
import { applyRetention, startRetention } from '../src/audit/retention.ts';
import { firstSeqAtOrAfter, openAuditDb, readCheckpoints, readEvents } from '../src/audit/store.ts';
import { toOcsf } from '../src/audit/ocsf.ts';
import { encodeEvent, isoClock, type AuditEventInput } from '../src/audit/event.ts';
import { rewriteTrail, sampleEvent, tempDir, writeSegmentFile } from './audit-helpers.ts';
import { processStartOf } from '../src/audit/segment.ts';
import { until } from './helpers/e2e.ts';

const segmentFiles = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('audit-segment-'));

test('canonical JSON sorts keys, drops undefined, has no whitespace and rejects what it cannot encode', () => {
  assert.equal(canonicalJson({ b: 1, a: [true, null, 'x"y'], c: undefined, d: { z: -0, y: 1.5e-7 } }), '{"a":[true,null,"x\\"y"],"b":1,"d":{"y":1.5e-7,"z":0}}');
  assert.equal(canonicalJson({ '\u00e9': 1, e: 2, E: 3 }), '{"E":3,"e":2,"\u00e9":1}');
  assert.throws(() => canonicalJson({ n: Number.NaN }), /non-finite/);
  assert.throws(() => canonicalJson({ d: new Date() }), /plain objects/);
  assert.throws(() => canonicalJson({ b: 1n }), /unsupported/);
});

test('recordDurable resolves only after the event is readable from another connection', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, flushDelayMs: 1000 });
  log.record(sampleEvent(1));
  const receipt = await log.recordDurable(sampleEvent(2, { type: 'tool_intent', tool: { server: 'sf', tool: 'update', resource: 'salesforce.accounts', action: 'update', args_digest: 'sha256:00' } }));
  const other = new DatabaseSync(join(dir, 'audit.db'), { readOnly: true });
  const [row] = [...readEvents(other, { fromSeq: receipt.seq, toSeq: receipt.seq })];
  other.close();
  assert.deepEqual([row.type, row.hash], ['tool_intent', receipt.hash]);
  // The queued event before it was committed in the same batch, in order.
  assert.equal(receipt.seq, 2);
  await log.close();
  assert.equal(statSync(join(dir, 'keys', 'audit-signing.key')).mode & 0o777, 0o600);
});

test('buffer mode: a durable write\'s deadline counts from when the writer thread is up; one not committed by then is refused and stays queued', async () => {
  const dir = tempDir();
  // 1 ms: no thread starts that fast (0.1 s quiet, 3-4 s on a loaded host, when a 2 s deadline
  // refused the first non-idempotent tool call after start). The thread's start is not the write's.
  const log = openAuditLog({ dataDir: dir, durableTimeoutMs: 1, busyTimeoutMs: 30_000 });
  const first = await log.recordDurable(sampleEvent(1, { type: 'tool_intent' }));
  assert.equal(first.seq, 1);
  await log.close();

  // The thread up and the database held by another writer: refused after its deadline, written once free.
  const held = openAuditLog({ dataDir: dir, durableTimeoutMs: 300, busyTimeoutMs: 30_000 });
  await held.recordDurable(sampleEvent(2));
  const other = new DatabaseSync(join(dir, 'audit.db'));
  other.exec('BEGIN EXCLUSIVE');
  const t0 = performance.now();
  await assert.rejects(held.recordDurable(sampleEvent(3, { type: 'tool_intent' })), (e: unknown) => e instanceof AuditUnavailableError && /^audit event not committed within 300 ms; it stays queued$/.test(e.message));
  assert.ok(performance.now() - t0 < 5_000, 'refused at its deadline, not after the busy timeout');
  other.exec('COMMIT');
  other.close();
  await held.flush();
  const db = new DatabaseSync(join(dir, 'audit.db'), { readOnly: true });
  assert.deepEqual([...readEvents(db, { fromSeq: 1 })].map((r) => r.type), ['tool_intent', sampleEvent(2).type, 'tool_intent']);
  db.close();
  await held.close();
});

test('events recorded within the default flush delay go to the writer as one batch (one block), without a flush', async () => {
  // A batch costs the writer a commit whatever its size: at a few hundred requests/s, 50 ms
  // batches of a few events cost it ~3x as much per event as FLUSH_DELAY_MS (250 ms) batches.
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  const t0 = performance.now();
  log.record(sampleEvent(1));
  // Past the old 50 ms: that timer (armed first) always fired before this one, so event 2 made a second batch.
  await new Promise((r) => setTimeout(r, 60));
  log.record(sampleEvent(2));
  const gap = performance.now() - t0;
  await until(() => log.stats().written === 2, 10_000, 'both events committed');
  const db = openAuditDb(dir);
  const blocks = Number(db.prepare('SELECT count(*) AS n FROM audit_blocks').get()?.n);
  db.close();
  await log.close();
  assert.ok(gap < FLUSH_DELAY_MS, `the second event came ${gap.toFixed(0)} ms after the first (machine too slow to tell)`);
  assert.equal(blocks, 1);
  assert.equal(verifyDatabase(dir).ok, true);
});

test('reopening resumes the chain; a tampered tail refuses to open', async () => {
  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir });
  for (let i = 0; i < 10; i++) log.record(sampleEvent(i));
  await log.close();
  log = openAuditLog({ dataDir: dir });
  assert.equal(log.stats().lastSeq, 10);
  log.record(sampleEvent(11));
  await log.close();
  assert.equal(verifyDatabase(dir).ok, true);
  rewriteTrail(dir, (events) => { events[10].line = events[10].line.replace('req-', 'REQ-'); });
  assert.throws(() => openAuditLog({ dataDir: dir }), /tail \(seq 11\) does not verify/);
});

function lockDb(dir: string): DatabaseSync {
  const blocker = new DatabaseSync(join(dir, 'audit.db'));
  blocker.exec('BEGIN IMMEDIATE');
  return blocker;
}

test('fail_closed: recordDurable rejects while storage fails; queued events are written after recovery', async () => {
  const dir = tempDir();
  const alerts: AuditAlert[] = [];
  const log = openAuditLog({ dataDir: dir, failMode: 'fail_closed', busyTimeoutMs: 5, onAlert: (a) => alerts.push(a) });
  await log.recordDurable(sampleEvent(0));
  const blocker = lockDb(dir);
  log.record(sampleEvent(1));
  await assert.rejects(log.recordDurable(sampleEvent(2, { type: 'tool_intent' })), (e: unknown) => e instanceof AuditUnavailableError && /write failed/.test(e.message));
  assert.ok(log.stats().failures >= 1);
  assert.equal(log.stats().queued, 2);
  assert.equal(alerts[0]?.kind, 'write_failed');
  blocker.exec('COMMIT');
  blocker.close();
  await log.flush();
  assert.equal(log.stats().written, 3);
  assert.equal(log.stats().dropped, 0);
  assert.ok(alerts.some((a) => a.kind === 'recovered'));
  await log.close();
  assert.equal(verifyDatabase(dir).ok, true);
});

test('buffer mode: bounded queue refuses (never drops) when full, durable waits for recovery', async () => {
  const dir = tempDir();
  const alerts: AuditAlert[] = [];
  const log = openAuditLog({ dataDir: dir, failMode: 'buffer', maxQueue: 5, busyTimeoutMs: 5, onAlert: (a) => alerts.push(a) });
  const blocker = lockDb(dir);
  for (let i = 0; i < 4; i++) assert.equal(log.record(sampleEvent(i)), true);
  const durable = log.recordDurable(sampleEvent(4, { type: 'tool_intent' }));
  assert.equal(log.record(sampleEvent(5)), false);
  await assert.rejects(log.recordDurable(sampleEvent(6)), /queue is full/);
  assert.deepEqual([log.stats().rejected, log.stats().dropped, log.stats().queued], [2, 0, 5]);
  assert.ok(alerts.some((a) => a.kind === 'queue_full'));
  // The writer has met the locked database (the durable event waits for storage, not for its turn).
  await until(() => log.stats().failing, 30_000, 'the audit writer to report the locked database');
  blocker.exec('COMMIT');
  blocker.close();
  const receipt = await durable;
  assert.equal(receipt.seq, 5);
  await log.close();
  const r = verifyDatabase(dir);
  assert.equal(r.ok, true);
  assert.equal(r.events, 5);
});

test('an event that cannot be encoded is recorded as an encoding failure, not dropped', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  const bad = sampleEvent(1, { detail: { n: 1n } as never });
  const r = await log.recordDurable(bad);
  const [e] = queryEvents(log.db, { requestId: bad.request_id });
  assert.equal(e.seq, r.seq);
  assert.equal(e.outcome?.error_class, 'audit_encoding');
  assert.throws(() => log.record({ type: 'decision' } as never), /request_id/);
  await log.close();
  assert.equal(verifyDatabase(dir).ok, true);
});

test('queries filter by agent, decision, type, time and request; show lists one request in order', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  for (let i = 0; i < 60; i++) log.record(sampleEvent(i));
  await log.flush();
  const denies = queryEvents(log.db, { decision: 'deny', limit: 1000 });
  assert.equal(denies.length, 12);
  assert.ok(denies.every((e) => e.policy?.decision === 'deny'));
  const fin = queryEvents(log.db, { agent: 'finance-analyst', type: 'decision', limit: 1000 });
  assert.equal(fin.length, 10);
  assert.equal(queryEvents(log.db, { limit: 5 }).length, 5);
  assert.equal(queryEvents(log.db, { since: new Date(Date.now() + 60_000) }).length, 0);
  const chain = showRequest(log.db, 'req-7');
  assert.deepEqual(chain.map((e) => e.type), ['decision', 'model_call']);
  assert.ok(chain[0].seq < chain[1].seq);
  assert.match(describeEvent(chain[1]), /model=reasoning-high->openai\/gpt-4o/);
  const denied = describeEvent({ ...chain[0], model: { route: 'frontier-max' } });
  assert.match(denied, /model=frontier-max(\s|$)/);
  assert.doesNotMatch(denied, /undefined/);
  assert.throws(() => queryEvents(log.db, { since: 'yesterday' }), /audit query: since "yesterday" is neither an ISO time/);
  // A duration ago, as the admin API and the CLI take it.
  assert.equal(queryEvents(log.db, { since: '1h' }).length, queryEvents(log.db, {}).length);
  assert.equal(queryEvents(log.db, { since: new Date(Date.now() + 3_600_000).toISOString() }).length, 0);
  await log.close();
});

test('audit show/query lines of the tool planes\' flat events name the agent, the decision, the tool and the credential', () => {
  const base = { seq: 7, prev_hash: '0', hash: '1', time: '2026-01-01T00:00:00.000Z', request_id: 'req_1', plane: 'mcp',
    spiffe_id: 'spiffe://prod/agent/a', agent: 'a', auth_method: 'virtual_key', key_id: 'key_1',
    server: 'accounts', tool: 'export_accounts', resource: 'salesforce.accounts', action: 'export', args_digest: 'sha256:ab', credential: { name: 'sf-token' } };
  const decided = describeEvent({ ...base, type: 'tool.decision', decision: { effect: 'deny', allowed: false, policy: 'ro', rule: 0, reason: 'ro tools[0] denies export' } } as never);
  assert.doesNotMatch(decided, /undefined/);
  assert.match(decided, /agent=a \(spiffe:\/\/prod\/agent\/a, virtual_key key_1\)/);
  assert.match(decided, /policy=ro#0 deny: ro tools\[0\] denies export/);
  assert.match(decided, /credential=sf-token/);
  assert.match(decided, /tool=accounts\.export_accounts salesforce\.accounts:export args=sha256:ab/);
  // An HTTP tool has no server; a leak names the credentials it redacted.
  const http = describeEvent({ ...base, server: undefined, tool: 'crm', action: 'read', type: 'tool.outcome', outcome: { status: 200 } } as never);
  assert.match(http, /tool=crm salesforce\.accounts:read .*outcome=200/);
  const leak = describeEvent({ seq: 8, prev_hash: '1', hash: '2', time: base.time, request_id: 'req_1', type: 'credential_leak', credential: { names: ['sf-token'] }, outcome: { status: 'redacted' } } as never);
  assert.match(leak, /credential=sf-token .*outcome=redacted/);
  assert.doesNotMatch(http + leak, /undefined/);
});

test('retention drops whole old segments behind a signed anchor; the rest verifies, queries and survives restarts', async () => {
  const dir = tempDir();
  // 50-event segments, checked before each write of 20 events: segment files of 60 events.
  const segments = { maxAgeMs: 86_400_000, maxEvents: 50 };
  let log = openAuditLog({ dataDir: dir, checkpointEvery: 50, batchSize: 20, segments });
  for (let i = 0; i < 200; i++) {
    log.record(sampleEvent(i, { time: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString() }));
    if (i % 20 === 19) await log.flush();
  }
  assert.deepEqual(segmentFiles(dir).length, 4);
  // Events 1..120 are older than the cut: the two segments holding them go, nothing else.
  const res = await applyRetention(log, new Date(Date.UTC(2026, 0, 1, 0, 130)));
  assert.deepEqual([res.cutSeq, res.deletedEvents, res.segments], [120, 120, 2]);
  assert.equal(segmentFiles(dir).length, 2, 'the files of dropped segments are deleted');
  assert.equal(queryEvents(log.db, { order: 'asc', limit: 1 })[0].seq, 121, 'queries see what is left');
  assert.equal(showRequest(log.db, 'req-10').length, 0, 'dropped events are gone');
  for (let i = 0; i < 5; i++) log.record(sampleEvent(i));
  await log.close();
  let r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.deepEqual([r.firstSeq, r.lastSeq, r.anchor], [121, 205, { tree_size: 120, type: 'retention' }]);
  // A cut in the future: every closed segment goes (the one being written holds nothing yet); the
  // chain carries on over a restart from the signed anchor.
  log = openAuditLog({ dataDir: dir, segments });
  const all = await applyRetention(log, new Date(Date.now() + 60_000));
  assert.deepEqual([all.cutSeq, all.segments], [205, 2]);
  await log.close();
  log = openAuditLog({ dataDir: dir, segments });
  log.record(sampleEvent(1));
  await log.close();
  r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.deepEqual([r.firstSeq, r.lastSeq, r.anchor], [206, 206, { tree_size: 205, type: 'retention' }]);
});

test('OCSF mapping is an API Activity with actor, api, resources and status', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  await log.recordDurable(sampleEvent(0, { type: 'tool_call', tool: { server: 'sf', tool: 'search_accounts', resource: 'salesforce.accounts', action: 'search', args_digest: 'sha256:ab' }, policy: { name: 'p', version: 'v', rule: 1, decision: 'deny', reason: 'denied' }, outcome: { status: 403, error_class: 'policy_denied' } }));
  const [e] = queryEvents(log.db);
  const o = toOcsf(e);
  assert.equal(o.class_uid, 6003);
  assert.equal(o.type_uid, 600302);
  assert.equal(o.status_id, 2);
  assert.equal(o.actor.user?.uid, 'spiffe://prod/agent/finance-analyst');
  assert.equal(o.resources?.[0].name, 'salesforce.accounts');
  assert.equal(o.metadata.uid, e.hash);
  assert.equal(o.metadata.sequence, e.seq);
  await log.close();
});

test('OCSF: the tool planes\' flat events map too (before: empty actor, operation "tool:undefined.undefined", a denied call status Unknown, and agent, key and decision dropped), and every event has the src_endpoint and actor OCSF 1.3.0 requires', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  await log.recordDurable({
    type: 'tool.decision', plane: 'http', request_id: 'req-flat', spiffe_id: 'spiffe://prod/agent/analyst', agent: 'analyst', owner: 'jane@example.com', team: 'finance',
    environment: 'prod', deployment: 'v1', auth_method: 'virtual_key', key_id: 'key_1', tool: 'crm', action: 'export', resource: 'crm.accounts', args_digest: 'sha256:ab',
    decision: { effect: 'deny', allowed: false, policy: 'analyst', rule: 0, reason: 'policy "analyst" tools[0] denies action "export" on crm.accounts', config_version: 'v1' },
  } as unknown as AuditEventInput); // as the HTTP tool plane writes it: `tool` is the tool's name
  await log.recordDurable({ type: 'admin', request_id: 'req-admin', admin: { action: 'gateway_started', target: 'v1', actor: 'system' }, outcome: { status: 200 } });
  await log.recordDurable({ type: 'budget_alert', request_id: 'req-alert', detail: { threshold: 80 } });
  const [flat, admin, alert] = queryEvents(log.db, { order: 'asc' }).map(toOcsf);
  assert.deepEqual(flat.actor.user, { name: 'analyst', uid: 'spiffe://prod/agent/analyst', email_addr: 'jane@example.com', groups: [{ name: 'finance' }] });
  assert.deepEqual(flat.src_endpoint, { uid: 'spiffe://prod/agent/analyst', name: 'analyst' });
  assert.equal(flat.api.operation, 'tool:crm:export');
  assert.deepEqual([flat.status_id, flat.severity_id], [2, 3], 'a denied tool call is a failure');
  assert.equal(flat.resources?.[0].name, 'crm.accounts');
  assert.match(flat.message, /^tool\.decision analyst tool:crm:export deny by analyst$/);
  const kept = flat.unmapped as { key_id?: string; decision?: { reason?: string }; environment?: string };
  assert.deepEqual([kept.key_id, kept.environment, kept.decision?.reason], ['key_1', 'prod', 'policy "analyst" tools[0] denies action "export" on crm.accounts']);
  assert.deepEqual(admin.src_endpoint, { name: 'system' });
  assert.deepEqual([alert.actor, alert.src_endpoint], [{ app_name: 'aam' }, { svc_name: 'aam' }], 'aam itself');
  await log.close();
});

test('event times: the per-log clock writes the same text as toISOString across seconds, years and odd values', () => {
  const iso = isoClock();
  const now = Date.now();
  const times = [now, now, now + 1, now + 999, now - 1, 0, 1, 9, 10, 99, 100, 999, 1000, 1001, -1, -999, -1000, -1001, -86_400_001,
    Date.UTC(1999, 11, 31, 23, 59, 59, 999), Date.UTC(2000, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), 8.64e15, -8.64e15,
    Date.UTC(-1, 0, 1), now + 0.5, now, 1.5, now];
  for (let i = 0; i < 2000; i++) times.push(now + Math.floor(i * 7.3));
  for (const t of times) assert.equal(iso(t), new Date(t).toISOString(), `time ${t}`);
  // The clock is what the event carries.
  assert.ok(encodeEvent(sampleEvent(1), Date.UTC(2026, 0, 2, 3, 4, 5, 67), iso).json.startsWith('{"time":"2026-01-02T03:04:05.067Z",'));
  assert.throws(() => iso(Number.NaN), RangeError);
});

test('canonical JSON escapes like JSON.stringify for quotes, control characters and non-ASCII', () => {
  for (const s of ['a"b', 'back\\slash', 'tab\there', '\u0001', 'é', '😀', '\ud800', 'line\nbreak', '']) {
    assert.equal(canonicalJson({ [s]: s }), `{${JSON.stringify(s)}:${JSON.stringify(s)}}`);
  }
});

test('checkpoints are also signed on a timer when events trickle in', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 1_000_000, checkpointIntervalMs: 30 });
  await log.recordDurable(sampleEvent(1));
  const periodic = (): number => {
    const db = new DatabaseSync(join(dir, 'audit.db'), { readOnly: true });
    try { return Number(db.prepare("SELECT COUNT(*) AS n FROM audit_checkpoints WHERE type = 'periodic' AND tree_size = 1").get()?.n); } finally { db.close(); }
  };
  await until(() => periodic() > 0, 30_000, 'a periodic checkpoint of the one event');
  assert.equal(periodic(), 1, 'one checkpoint per new head, not one per tick');
  await log.close();
});

test('two logs on one data dir (e.g. a CLI next to the server) still produce one valid chain', async () => {
  const dir = tempDir();
  const a = openAuditLog({ dataDir: dir, busyTimeoutMs: 2000 });
  const b = openAuditLog({ dataDir: dir, busyTimeoutMs: 2000 });
  for (let i = 0; i < 200; i++) (i % 2 ? a : b).record(sampleEvent(i));
  await Promise.all([a.flush(), b.flush()]);
  await a.close();
  await b.close();
  const r = verifyDatabase(dir);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.events, 200);
});

test('unknown top-level fields are kept in the chained event; assigned fields cannot be forged', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  const r = await log.recordDurable({ type: 'tool.outcome', request_id: 'r1', plane: 'http', bytes: 12, seq: 999, hash: 'x', prev_hash: 'y' } as never);
  const [e] = queryEvents(log.db, { requestId: 'r1' }) as unknown as Record<string, unknown>[];
  assert.deepEqual([e.plane, e.bytes, e.seq, e.hash], ['http', 12, r.seq, r.hash]);
  await log.close();
  assert.equal(verifyDatabase(dir).ok, true);
});

test('audit.record selection keeps identity and decision always, arguments only when asked', async () => {
  const { selectForRecord } = await import('../src/audit/select.ts');
  const e = sampleEvent(1, { credential: { name: 'sf-token' }, tool: { server: 'sf', tool: 'search', resource: 'salesforce.accounts', action: 'search', args_digest: 'sha256:1', args: { q: 'acme' } } });
  const seed = selectForRecord(e, ['identity', 'policy', 'action', 'outcome']);
  assert.equal(seed.identity?.agent, e.identity?.agent);
  assert.equal(seed.policy?.decision, e.policy?.decision);
  assert.equal(seed.credential, undefined);
  assert.equal(seed.tool?.args, undefined);
  assert.equal(seed.tool?.action, 'search');
  assert.deepEqual(seed.model, { route: 'reasoning-high', provider: 'openai', model: 'gpt-4o', cost_usd: 0.0001 });
  const minimal = selectForRecord(e, ['identity']);
  assert.ok(minimal.identity && minimal.policy);
  assert.deepEqual([minimal.outcome, minimal.model, minimal.tool?.resource], [undefined, undefined, undefined]);
  assert.deepEqual(selectForRecord(e, ['action', 'arguments']).tool?.args, { q: 'acme' });
  assert.equal(e.tool?.args !== undefined && e.credential !== undefined, true, 'input is not mutated');
});

test('after close, record refuses (false) and recordDurable rejects instead of throwing', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  log.record(sampleEvent(1));
  await log.close();
  assert.equal(log.record(sampleEvent(2)), false);
  await assert.rejects(log.recordDurable(sampleEvent(3)), /closed/);
  assert.equal(verifyDatabase(dir).events, 1);
});

test('a writer thread that dies is restarted and the queued events are written', async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'keys', 'audit-signing.key');
  const alerts: AuditAlert[] = [];
  const log = openAuditLog({ dataDir: dir, onAlert: (a) => alerts.push(a) });
  const died = (): boolean => alerts.some((a) => a.kind === 'write_failed' && /writer thread died/.test(a.message));
  let passed = false;
  try {
    // The worker re-reads the key and refuses a group/world-readable one: it dies (and each restart
    // dies again) until the mode is fixed. Its thread starts well after this synchronous chmod.
    chmodSync(keyFile, 0o644);
    for (let i = 0; i < 10; i++) log.record(sampleEvent(i));
    await until(died, 15_000, 'a "writer thread died" alert').catch((e: Error) => {
      throw new Error(`${e.message}; alerts: ${JSON.stringify(alerts)}; written: ${log.stats().written}`);
    });
    assert.equal(log.stats().written, 0);
    chmodSync(keyFile, 0o600);
    // The next restart (after its backoff) commits the queued events without being asked.
    await until(() => log.stats().written === 10, 15_000, 'the restarted writer to commit the 10 queued events').catch((e: Error) => {
      throw new Error(`${e.message}; stats: ${JSON.stringify(log.stats())}`);
    });
    passed = true;
  } finally {
    // Never leave a dying writer behind: it would keep the test process alive until the runner's
    // timeout. After a failure, close() reports the uncommitted events: the first error matters.
    chmodSync(keyFile, 0o600);
    await log.close().catch((e: unknown) => { if (passed) throw e; });
  }
  assert.equal(verifyDatabase(dir).ok, true);
});

test('close() while the writer thread is dead answers at once: the events stay in the segment file for the next start', async () => {
  const dir = tempDir();
  const keyFile = join(dir, 'keys', 'audit-signing.key');
  const alerts: AuditAlert[] = [];
  const log = openAuditLog({ dataDir: dir, onAlert: (a) => alerts.push(a) });
  chmodSync(keyFile, 0o644); // every writer thread dies at start (see above)
  for (let i = 0; i < 5; i++) log.record(sampleEvent(i));
  await until(() => alerts.some((a) => /writer thread died/.test(a.message)), 15_000, 'a "writer thread died" alert');
  // Before, close() sent its final request to the dead thread and waited for an answer forever.
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('close() did not return within 15 s after the writer thread died')), 15_000); });
  try {
    await assert.rejects(Promise.race([log.close(), hung]), /5 events stay in audit-segment-/);
  } finally { clearTimeout(timer); }
  chmodSync(keyFile, 0o600);
  const again = openAuditLog({ dataDir: dir });
  await again.close();
  const r = verifyDatabase(dir);
  assert.deepEqual([r.ok, r.events], [true, 5], r.firstError?.message);
});

test('a journal backlog of an older version, larger than the queue bound, is recovered and new events are still accepted', async () => {
  const dir = tempDir();
  // A crashed gateway's journal file (written by a version before segment files; its pid is gone) holding 30 events that never reached the database.
  const lines = [JSON.stringify({ gen: 'deadbeefdeadbeef', pid: process.pid })];
  // Older versions journaled [at, event]; current ones the event JSON with its time.
  for (let i = 0; i < 30; i++) lines.push(i % 2 ? JSON.stringify([Date.now(), sampleEvent(i)]) : JSON.stringify({ time: new Date().toISOString(), ...sampleEvent(i) }));
  // The process died mid-write: a torn last line without its newline was never acknowledged.
  writeFileSync(join(dir, 'audit-journal-deadbeefdeadbeef.log'), lines.join('\n') + '\n{"time":"2026-', { mode: 0o600 });
  const log = openAuditLog({ dataDir: dir, maxQueue: 10 });
  assert.equal(log.stats().queued, 30);
  const receipt = await log.recordDurable(sampleEvent(99, { type: 'tool_intent' }));
  assert.equal(receipt.seq, 31, 'the new event follows the recovered ones');
  // The bound still holds for new events.
  for (let i = 0; i < 10; i++) log.record(sampleEvent(i));
  await log.close();
  const r = verifyDatabase(dir, log.signingKey.publicKeyPem);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.lastSeq, 41);
});

test('scheduled retention (AAM_AUDIT_RETENTION) prunes old segments on its own and stops when told', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 10, segments: { maxAgeMs: 86_400_000, maxEvents: 10 } });
  const old = new Date(Date.now() - 10 * 86_400_000).toISOString();
  for (let i = 0; i < 30; i++) {
    log.record(sampleEvent(i, { time: i < 20 ? old : new Date().toISOString() }));
    if (i % 10 === 9) await log.flush();
  }
  const pruned: number[] = [];
  const errors: unknown[] = [];
  const stop = startRetention(log, 86_400_000, { onPruned: (r) => pruned.push(r.cutSeq), onError: (e) => errors.push(e) }, 50);
  await until(() => pruned.length > 0 || errors.length > 0, 30_000, 'scheduled retention to prune');
  stop();
  assert.deepEqual(errors, []);
  assert.deepEqual(pruned, [20], 'the two old segments went, the current one stayed');
  await log.close();
  const r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.firstSeq, 21);
});

test('time bounds are found per block, across segments and gaps', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, batchSize: 10, segments: { maxAgeMs: 86_400_000, maxEvents: 25 } });
  const t = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString();
  for (let i = 0; i < 100; i++) {
    log.record(sampleEvent(i, { time: t(i) }));
    if (i % 10 === 9) await log.flush();
  }
  assert.ok(segmentFiles(dir).length >= 3);
  log.db.exec('DELETE FROM audit_blocks WHERE first_seq = 41'); // events 41..50 (one batch)
  assert.equal(firstSeqAtOrAfter(log.db, t(0)), 1);
  assert.equal(firstSeqAtOrAfter(log.db, '2025-12-31T00:00:00.000Z'), 1);
  assert.equal(firstSeqAtOrAfter(log.db, t(99)), 100);
  assert.equal(firstSeqAtOrAfter(log.db, '2026-01-02T00:00:00.000Z'), null);
  assert.equal(firstSeqAtOrAfter(log.db, t(30)), 31, 'across a segment boundary');
  assert.equal(firstSeqAtOrAfter(log.db, t(41)), 51, 'the first event still there after a gap');
  const stored = Array.from({ length: 100 }, (_, i) => i).filter((i) => i < 40 || i > 49);
  for (const i of [0, 7, 26, 41, 50, 77, 99]) {
    const since = queryEvents(log.db, { since: t(i), order: 'asc', limit: 10_000 });
    assert.ok(since.every((e) => e.time >= t(i)));
    assert.equal(since.length, stored.filter((k) => k >= i).length);
    const until = queryEvents(log.db, { until: t(i), limit: 10_000 });
    assert.ok(until.every((e) => e.time < t(i)));
    assert.equal(until.length + since.length, 90);
  }
  await log.close();
});

/** Threads of this process named like the audit writer (Linux: /proc/<pid>/task/<tid>/comm, 15 characters). */
function writerThreads(): string[] {
  return readdirSync('/proc/self/task').filter((t) => {
    try { return readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === WRITER_THREAD.slice(0, 15); } catch { return false; }
  });
}

test('the writer thread runs only while there is work: it stops when idle, the next event starts one, and the chain stays whole', { skip: process.platform !== 'linux' }, async () => {
  // A terminated thread can linger a moment in /proc after its exit event.
  await until(() => writerThreads().length === 0, 15_000, 'writer threads of earlier tests to end');
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, writerIdleMs: 100 });
  assert.equal(writerThreads().length, 0, 'no thread before the first event');
  assert.equal((await log.recordDurable(sampleEvent(1))).seq, 1);
  assert.equal(writerThreads().length, 1, 'the first event started the writer');
  await until(() => writerThreads().length === 0, 15_000, 'the idle writer thread to stop');
  // Stopping signed what it had written: a checkpoint covers event 1 without waiting for the timer.
  const db = openAuditDb(dir);
  try { assert.deepEqual(readCheckpoints(db).map((c) => c.tree_size), [1]); } finally { db.close(); }
  // Events recorded while stopped are journaled at once and committed by a new thread.
  log.record(sampleEvent(2));
  await log.journaled(true);
  assert.equal((await log.recordDurable(sampleEvent(3))).seq, 3);
  await log.flush();
  assert.equal(log.stats().written, 3);
  await log.close();
  const r = verifyDatabase(dir);
  assert.deepEqual([r.ok, r.events], [true, 3], r.firstError?.message);
});

test('warm() (an agent\'s request arrived) starts a stopped writer thread without waiting for it; with no work after it, it stops again', { skip: process.platform !== 'linux' }, async () => {
  await until(() => writerThreads().length === 0, 15_000, 'writer threads of earlier tests to end');
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, writerIdleMs: 200 });
  try {
    await log.recordDurable(sampleEvent(1));
    await until(() => writerThreads().length === 0, 15_000, 'the idle writer thread to stop');
    log.warm(); // returns at once: the request goes on while the thread starts
    await until(() => writerThreads().length === 1, 15_000, 'warm() to start the writer thread');
    log.warm(); // already running: no second thread
    // The durable record that follows (a tool's intent) finds the thread started: still committed before it resolves.
    assert.equal((await log.recordDurable(sampleEvent(2))).seq, 2);
    assert.equal(writerThreads().length, 1);
    await until(() => writerThreads().length === 0, 15_000, 'the warmed thread to stop once idle again');
    log.warm();
    await until(() => writerThreads().length === 1, 15_000, 'warm() to start it again');
    await until(() => writerThreads().length === 0, 15_000, 'a warmed thread that got no work to stop');
  } finally {
    await log.close();
  }
  const r = verifyDatabase(dir);
  assert.deepEqual([r.ok, r.events], [true, 2], r.firstError?.message);
});

test('a log that records nothing never starts the writer thread (most CLI commands)', { skip: process.platform !== 'linux' }, async () => {
  const dir = tempDir();
  const first = openAuditLog({ dataDir: dir });
  await first.recordDurable(sampleEvent(1));
  assert.equal(writerThreads().length, 1, 'the writer thread is named (so this test can see it)');
  await first.close();
  await until(() => writerThreads().length === 0, 15_000, 'the closed log\'s writer thread to end');
  const started = new Set<string>();
  const timer = setInterval(() => { for (const t of writerThreads()) started.add(t); }, 1);
  try {
    const log = openAuditLog({ dataDir: dir });
    await log.close();
  } finally { clearInterval(timer); }
  for (const t of writerThreads()) started.add(t);
  assert.deepEqual([...started], [], 'no writer thread for a log that recorded nothing and had nothing to sign');
  assert.equal(verifyDatabase(dir).ok, true);
});

test('the writer thread runs at a lower priority than the request-serving thread (Linux)', { skip: process.platform !== 'linux' }, async (t) => {
  const niceOf = (): number[] => readdirSync('/proc/self/task').map((t) => Number(readFileSync(`/proc/self/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')[16]));
  const mainNice = (): number => Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[16]);
  // Relative to the runner's own niceness (the suite may run under `nice`): 5 lower, at most 19.
  const start = mainNice();
  const want = Math.min(19, start + 5);
  const before = niceOf().filter((n) => n === want).length;
  const log = openAuditLog({ dataDir: tempDir() });
  await log.recordDurable(sampleEvent(1));
  if (want > start) assert.equal(niceOf().filter((n) => n === want).length, before + 1, `one more thread at nice ${want}: the writer`);
  else t.diagnostic(`runner at nice ${start}: no lower priority left to check`);
  assert.ok(niceOf().every((n) => n >= start), 'no thread runs above the runner\'s priority');
  assert.equal(mainNice(), start, 'the main thread keeps its priority');
  await log.close();
});

test('writerNice sets how much lower the writer thread runs (AAM_AUDIT_WRITER_NICE); 0 keeps the gateway\'s priority (Linux)', { skip: process.platform !== 'linux' }, async (t) => {
  const niceOf = (): number[] => readdirSync('/proc/self/task').map((t) => Number(readFileSync(`/proc/self/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')[16]));
  const start = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[16]);
  if (start + 2 > 19) return t.diagnostic(`runner at nice ${start}: no lower priority left to check`);
  const at = (n: number): number => niceOf().filter((x) => x === n).length;
  const before = { two: at(start + 2), five: at(start + 5) };
  const log = openAuditLog({ dataDir: tempDir(), writerNice: 2 });
  await log.recordDurable(sampleEvent(1));
  assert.equal(at(start + 2), before.two + 1, `one more thread at nice ${start + 2}: the writer, 2 lower`);
  assert.equal(at(start + 5), before.five, 'not the default 5');
  await log.close();
  const same = openAuditLog({ dataDir: tempDir(), writerNice: 0 });
  await same.recordDurable(sampleEvent(1));
  assert.equal(at(start + 5), before.five, 'writerNice 0: no thread lowered to the default 5');
  await same.close();
});

test('segment files: a log that recorded nothing leaves none; a killed process\'s file is chained where it is', async () => {
  const dir = tempDir();
  let log = openAuditLog({ dataDir: dir });
  await log.close();
  assert.deepEqual(segmentFiles(dir), [], 'an empty log (a CLI command that recorded nothing) leaves no file');

  log = openAuditLog({ dataDir: dir });
  for (let i = 0; i < 5; i++) log.record(sampleEvent(i));
  await log.close();
  assert.equal(segmentFiles(dir).length, 1);

  // A process (pid gone) that wrote 3 lines and was killed before its writer committed them, the
  // last one torn mid-write (never acknowledged).
  writeSegmentFile(dir, '20260101-deaddeadbeef', [0, 1, 2].map((i) => sampleEvent(100 + i)), { tail: '{"time":"2026-' });
  log = openAuditLog({ dataDir: dir });
  assert.equal(log.stats().queued, 3, 'the complete lines are recovered');
  log.record(sampleEvent(200));
  await log.close();
  const r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.lastSeq, 9);
  const db = openAuditDb(dir);
  assert.deepEqual(queryEvents(db, { order: 'asc', limit: 10 }).map((e) => e.request_id).slice(5), ['req-50', 'req-50', 'req-51', 'req-100']);
  db.close();
  // Nothing is recovered twice.
  log = openAuditLog({ dataDir: dir });
  assert.equal(log.stats().queued, 0);
  await log.close();
  assert.equal(verifyDatabase(dir).lastSeq, 9);
});

test('the writer hashes stored bytes exactly as verification hashes the text (non-ASCII too)', async () => {
  const { chainHash, chainHashLines, encodeEvent } = await import('../src/audit/event.ts');
  const lines = [sampleEvent(1), sampleEvent(2, { request_id: 'réq-✓-日本' }), sampleEvent(3, { detail: { note: 'emoji 🙂 and "quotes"\n' } })]
    .map((e) => encodeEvent(e, Date.now()).json);
  // Seqs whose digit count changes within the batch too (the writer writes them digit by digit).
  for (const first of [41, 1, 8, 98, 999_999, 9_007_199_254_740_989]) {
    const hashes = chainHashLines(Buffer.from(lines.join('\n') + '\n'), first, 'ab'.repeat(32));
    let prev = 'ab'.repeat(32);
    const expected = lines.map((l, i) => (prev = chainHash(l, first + i, prev)));
    assert.deepEqual(hashes, expected, `from seq ${first}`);
  }
  // And through a real log: the stored non-ASCII event verifies and reads back intact.
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir });
  log.record(sampleEvent(2, { request_id: 'réq-✓-日本' }));
  await log.close();
  assert.equal(verifyDatabase(dir).ok, true);
  const db = openAuditDb(dir);
  assert.equal(showRequest(db, 'réq-✓-日本').length, 1);
  db.close();
});

test('a new segment file is started when the current one reaches its age; each old one is closed once committed', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, segments: { maxAgeMs: 100, maxEvents: 1_000_000 } });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 5; i++) log.record(sampleEvent(round * 5 + i));
    await log.flush();
    // The round's segment was opened by its first record, so before now: once 100 ms have passed
    // from here it is old enough (a clock condition, checked on a deadline rather than slept on).
    const flushed = Date.now();
    await until(() => Date.now() - flushed > 100, 30_000, 'the segment to pass its age');
  }
  await log.close();
  const files = segmentFiles(dir);
  const db = openAuditDb(dir);
  const closed = db.prepare("SELECT count(*) AS n FROM audit_meta WHERE key LIKE 'closed:%'").get() as { n: number };
  const blocks = db.prepare('SELECT DISTINCT segment FROM audit_blocks').all();
  db.close();
  // Each round went to a new file (a slow machine may also rotate the first, still empty, one).
  assert.ok(blocks.length === 3 && files.length >= 3, files.join(', '));
  assert.equal(closed.n, files.length, 'every file is marked closed (retention may delete it)');
  assert.equal(verifyDatabase(dir).events, 15);
});

test('a segment file of a live process is left alone; one whose pid was reused by another process is recovered', { skip: process.platform !== 'linux' }, async () => {
  const dir = tempDir();
  const start1 = processStartOf(1);
  assert.ok(start1 !== undefined);
  writeSegmentFile(dir, '20260101-aaaaaaaaaaaa', [sampleEvent(1)], { pid: 1, pidStart: start1 }); // pid 1, really running: someone else's live file
  writeSegmentFile(dir, '20260101-bbbbbbbbbbbb', [sampleEvent(1)], { pid: 1, pidStart: start1 + 12345 }); // pid 1 now, but not the process that wrote it
  const log = openAuditLog({ dataDir: dir });
  assert.equal(log.stats().queued, 1, 'only the file of the dead writer is recovered');
  await log.close();
  const db = openAuditDb(dir);
  const segs = db.prepare('SELECT DISTINCT segment FROM audit_blocks').all().map((r) => String(r.segment));
  db.close();
  assert.deepEqual(segs, ['20260101-bbbbbbbbbbbb']);
});

test('two logs opening at once on a dead process\'s segment file chain its lines once', async () => {
  const dir = tempDir();
  writeSegmentFile(dir, '20260101-cccccccccccc', Array.from({ length: 20 }, (_, i) => sampleEvent(i)));
  const a = openAuditLog({ dataDir: dir, busyTimeoutMs: 2000 });
  const b = openAuditLog({ dataDir: dir, busyTimeoutMs: 2000 });
  // Across processes the first claims the file (audit_meta claimed:<gen>); in one process both
  // queue it, and the writer chains bytes another writer already chained only once.
  assert.equal(a.stats().queued, 20);
  await Promise.all([a.close(), b.close()]);
  const r = verifyDatabase(dir);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.events, 20);
});

test('small closed segment files (one per CLI command) are merged into one; the trail still verifies and reads the same', async () => {
  const { mergeSmallSegments } = await import('../src/audit/store.ts');
  const dir = tempDir();
  for (let i = 0; i < 20; i++) { const log = openAuditLog({ dataDir: dir }); log.record(sampleEvent(i)); await log.close(); }
  assert.equal(segmentFiles(dir).length, 20);
  const log = openAuditLog({ dataDir: dir });
  log.record(sampleEvent(100)); // the running log's own file is not touched
  await log.flush();
  const before = queryEvents(log.db, { order: 'asc', limit: 100 }).map((e) => [e.seq, e.hash]);
  assert.equal(mergeSmallSegments(log.db, dir, { minFiles: 16 }), 20);
  assert.equal(segmentFiles(dir).length, 2, 'one merged file + the running one');
  assert.deepEqual(queryEvents(log.db, { order: 'asc', limit: 100 }).map((e) => [e.seq, e.hash]), before);
  assert.equal(mergeSmallSegments(log.db, dir, { minFiles: 16 }), 0, 'nothing left to merge');
  await log.close();
  const r = verifyDatabase(dir);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.events, 21);
  // A restart neither recovers the merged file as an orphan nor deletes it.
  const again = openAuditLog({ dataDir: dir });
  assert.equal(again.stats().queued, 0);
  await again.close();
  assert.equal(verifyDatabase(dir).events, 21);
});

test('a periodic checkpoint is signed with the batch that reaches it; one that cannot be stored fails no batch and is signed with the next', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 50, batchSize: 20, checkpointIntervalMs: 3_600_000 });
  for (let i = 0; i < 60; i++) log.record(sampleEvent(i));
  await log.flush();
  const db = openAuditDb(dir);
  try {
    // Stored with the block of events 41..60: its tree size is that batch's last event.
    assert.deepEqual(readCheckpoints(db).map((c) => c.tree_size), [60]);
    db.exec("CREATE TRIGGER no_checkpoints BEFORE INSERT ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'no room'); END");
    for (let i = 0; i < 60; i++) log.record(sampleEvent(100 + i));
    await log.flush();
    assert.equal(log.stats().written, 120, 'every batch committed');
    assert.equal(log.stats().failures, 0);
    assert.deepEqual(readCheckpoints(db).map((c) => c.tree_size), [60]);
    db.exec('DROP TRIGGER no_checkpoints');
    for (let i = 0; i < 20; i++) log.record(sampleEvent(200 + i));
    await log.flush();
    assert.deepEqual(readCheckpoints(db).map((c) => c.tree_size), [60, 140]);
  } finally { db.close(); }
  await log.close();
  const r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
});
