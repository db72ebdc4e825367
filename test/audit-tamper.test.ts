// Tampering of every kind is detected with the right seq and kind, in the database and in exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { PassThrough } from 'node:stream';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { openAuditLog } from '../src/audit/log.ts';
import { verifyDatabase, verifyExport } from '../src/audit/verify.ts';
import { exportJsonl } from '../src/audit/export.ts';
import { signCheckpoint } from '../src/audit/checkpoint.ts';
import { keyIdOf } from '../src/audit/keys.ts';
import { chainHash, encodeEvent, sealedText } from '../src/audit/event.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { rewriteTrail, sampleEvent, tempDir, trailEvents } from './audit-helpers.ts';
import type { TrailEvent } from './audit-helpers.ts';
import { readdirSync, truncateSync, rmSync, statSync } from 'node:fs';

async function makeLog(n = 3000, checkpointEvery = 1000): Promise<{ dir: string; pub: string }> {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, checkpointEvery, batchSize: 500 });
  for (let i = 0; i < n; i++) assert.equal(log.record(sampleEvent(i)), true);
  await log.flush();
  const pub = log.publicKeyPem();
  await log.close();
  return { dir, pub };
}

function sql(dir: string, statement: string, ...args: (string | number)[]): void {
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.prepare(statement).run(...args);
  db.close();
}

async function exportText(dir: string, since?: string): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await exportJsonl(dir, { out, since });
  out.end();
  return Buffer.concat(chunks).toString('utf8');
}

test('an untouched log of 3000 events verifies, with checkpoints and no unsigned tail', async () => {
  const { dir, pub } = await makeLog();
  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.events, 3000);
  assert.equal(r.lastSeq, 3000);
  assert.ok(r.checkpoints >= 3);
  assert.equal(r.unsignedTail, 0);
  assert.equal(r.keySource, 'given');
});

/** Edit the stored line of event `seq` (1-based) in place. */
function editLine(dir: string, seq: number, fn: (line: string) => string): void {
  rewriteTrail(dir, (events) => { events[seq - 1] = { ...events[seq - 1], line: fn(events[seq - 1].line) }; });
}

test('editing a field in a stored line is reported as altered at that seq', async () => {
  const { dir, pub } = await makeLog();
  editLine(dir, 1234, (l) => l.replace('"status":200', '"status":500'));
  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, false);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1234, 'altered']);
});

test('editing a stored query key (what queries read) is reported as altered', async () => {
  const { dir, pub } = await makeLog();
  rewriteTrail(dir, (events) => { events[76].keys[3] = 'someone-else'; });
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [77, 'altered']);
});

test('an edit whose hash was recomputed is still caught by the next link', async () => {
  const { dir, pub } = await makeLog();
  // Re-seal event 500 with a different line but the correct hash: event 501 no longer chains to it.
  rewriteTrail(dir, (events) => { events[499] = reseal(events[499], 500, 'forged'); });
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [501, 'altered']);
});

// The writer stores blocks of consecutive events (one per batch); the tests below move whole
// blocks (here one event each), the unit an attacker deletes, inserts or swaps in the index.
test('deleting an event is reported as removed at that seq', async () => {
  const { dir, pub } = await makeLog();
  rewriteTrail(dir, (events) => events.filter((_, i) => i !== 1499), 1);
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1500, 'removed']);
});

test('deleting the first events without a retention anchor is reported as removed at seq 1', async () => {
  const { dir, pub } = await makeLog(200, 50);
  rewriteTrail(dir, (events) => events.slice(10), 1);
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1, 'removed']);
});

test('inserting a well-formed event (later rows renumbered) is reported as inserted', async () => {
  const { dir, pub } = await makeLog(300, 100);
  // A well-formed forged event at 150, chained to 149; the original 150.. move up by one.
  rewriteTrail(dir, (events) => {
    const { json: line, cols } = encodeEvent(sampleEvent(1, { request_id: 'forged' }), Date.now());
    const prev = events[148].hash;
    events.splice(149, 0, { line, prev, hash: chainHash(line, 150, prev), keys: [...cols], sealed: false });
  }, 1);
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [150, 'inserted']);
});

test('swapping two events is reported as reordered', async () => {
  const { dir, pub } = await makeLog();
  rewriteTrail(dir, (events) => { [events[1999], events[2000]] = [events[2000], events[1999]]; }, 1);
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [2000, 'reordered']);
});

test('truncating the tail after a checkpoint is reported as truncated', async () => {
  const { dir, pub } = await makeLog(2500, 1000);
  rewriteTrail(dir, (events) => events.slice(0, 1990));
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1991, 'truncated']);
});

test('a forged or edited checkpoint is reported as bad_checkpoint', async () => {
  const { dir, pub } = await makeLog(2500, 1000);
  sql(dir, "UPDATE audit_checkpoints SET head_hash = ? WHERE tree_size = 1000", 'f'.repeat(64));
  let r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1000, 'bad_checkpoint']);

  // A checkpoint signed by an attacker's own key does not pass with the real public key.
  const other = await makeLog(10, 5);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const forged = signCheckpoint({ privateKey, publicKeyPem: pem, keyId: keyIdOf(pem) }, 10, 'a'.repeat(64), 'periodic');
  sql(other.dir, 'INSERT INTO audit_checkpoints (tree_size, head_hash, time, type, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)',
    forged.tree_size, forged.head_hash, forged.time, forged.type, forged.key_id, forged.signature);
  r = verifyDatabase(other.dir, other.pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [10, 'bad_checkpoint']);
});

test('a rewritten chain (every hash recomputed) still disagrees with the signed checkpoint', async () => {
  const { dir, pub } = await makeLog(1500, 1000);
  rewriteTrail(dir, (events) => {
    let prev = events[898].hash;
    for (let seq = 900; seq <= 1500; seq++) {
      const e = seq === 900 ? reseal(events[seq - 1], seq, 'rewritten', prev) : events[seq - 1];
      events[seq - 1] = { ...e, prev, hash: chainHash(e.line, seq, prev) };
      prev = events[seq - 1].hash;
    }
  });
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1000, 'altered']);
});

test('an export verifies with only the public key; a tampered export does not', async () => {
  const { dir, pub } = await makeLog(2500, 1000);
  const text = await exportText(dir);
  const ok = verifyExport(text, pub);
  assert.equal(ok.ok, true, ok.firstError?.message);
  assert.equal(ok.events, 2500);
  assert.ok(ok.checkpoints >= 2);

  const lines = text.trimEnd().split('\n');
  const idx = lines.findIndex((l) => l.includes('"seq":42,'));
  const edited = [...lines];
  edited[idx] = edited[idx].replace('"status":200', '"status":500');
  assert.notEqual(edited[idx], lines[idx]);
  assert.deepEqual(pick(verifyExport(edited.join('\n'), pub)), [42, 'altered']);

  const removed = lines.filter((_, i) => i !== idx);
  assert.deepEqual(pick(verifyExport(removed.join('\n'), pub)), [42, 'removed']);

  const swapped = [...lines];
  [swapped[idx], swapped[idx + 1]] = [swapped[idx + 1], swapped[idx]];
  assert.deepEqual(pick(verifyExport(swapped.join('\n'), pub)), [42, 'reordered']);

  const duplicated = [...lines.slice(0, idx + 1), lines[idx - 5], ...lines.slice(idx + 1)];
  assert.deepEqual(pick(verifyExport(duplicated.join('\n'), pub)), [37, 'inserted']);

  const lastCp = lines.findLastIndex((l) => l.startsWith('{"kind":"checkpoint"'));
  const truncated = lines.slice(0, lastCp - 3).concat(lines[lastCp]);
  assert.equal(verifyExport(truncated.join('\n'), pub).firstError?.kind, 'truncated');

  const { publicKey } = generateKeyPairSync('ed25519');
  const wrongKey = verifyExport(text, publicKey.export({ type: 'spki', format: 'pem' }).toString());
  assert.equal(wrongKey.firstError?.kind, 'bad_checkpoint');
});

test('an export since a time starts at a signed checkpoint and verifies on its own', async () => {
  const dir = tempDir();
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 100, batchSize: 50 });
  for (let i = 0; i < 250; i++) log.record(sampleEvent(i, { time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString() }));
  await log.close();
  const text = await exportText(dir, new Date(Date.UTC(2026, 0, 1, 0, 0, 150)).toISOString());
  const r = verifyExport(text, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.firstSeq, 101);
  assert.deepEqual(r.anchor, { tree_size: 100, type: 'periodic' });
  // Dropping the anchor checkpoint makes the partial export unverifiable from its start.
  const noAnchor = text.split('\n').slice(1).join('\n');
  assert.equal(verifyExport(noAnchor, log.publicKeyPem()).firstError?.kind, 'removed');
});

function pick(r: { firstError?: { seq: number; kind: string } }): [number | undefined, string | undefined] {
  return [r.firstError?.seq, r.firstError?.kind];
}

/** What an attacker with write access to the data dir can do: give an event another request id, with a correct hash. */
function reseal(e: TrailEvent, seq: number, requestId: string, prev = e.prev): TrailEvent {
  const input = { ...(JSON.parse(e.line) as AuditEventInput), request_id: requestId };
  const line = encodeEvent(input, Date.now()).json;
  const keys = [...e.keys];
  keys[2] = requestId;
  return { line, prev, hash: chainHash(line, seq, prev), keys, sealed: false };
}

test('the stored bytes are the evidence: a reformatted but equal event is reported as altered', async () => {
  const { dir, pub } = await makeLog(300, 100);
  editLine(dir, 42, (l) => l.replace('"type":', '"type": '));
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [42, 'altered']);
});

test('a trail from an older version (one table, canonical-JSON hashes) is migrated, verifies, resumes and catches edits', async () => {
  const { eventHash } = await import('../src/audit/event.ts');
  const { canonicalJson } = await import('../src/audit/canonical.ts');
  const dir = tempDir();
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.exec(`CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, type TEXT NOT NULL, request_id TEXT NOT NULL,
    agent TEXT, decision TEXT, body TEXT NOT NULL, hash TEXT NOT NULL); CREATE INDEX audit_events_request ON audit_events(request_id);`);
  let prev = '0'.repeat(64);
  for (let seq = 1; seq <= 20; seq++) {
    const unsealed: Record<string, unknown> = { ...sampleEvent(seq), seq, time: new Date(1_790_000_000_000 + seq).toISOString(), prev_hash: prev };
    const hash = eventHash(unsealed);
    const e = { ...unsealed, hash } as unknown as Record<string, unknown> & { identity: { agent: string }; policy: { decision: string } };
    db.prepare('INSERT INTO audit_events (seq, time, type, request_id, agent, decision, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(seq, String(e.time), String(e.type), String(e.request_id), e.identity.agent, e.policy.decision, canonicalJson(e), hash);
    prev = hash;
  }
  db.close();
  const log = openAuditLog({ dataDir: dir });
  await log.recordDurable(sampleEvent(21));
  await log.close();
  const pub = log.publicKeyPem();
  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.lastSeq, 21);
  assert.equal(trailEvents(dir)[6].sealed, true, 'migrated events keep their stored text');
  editLine(dir, 7, (l) => l.replace('"status":200', '"status":500'));
  const bad = verifyDatabase(dir, pub);
  assert.deepEqual([bad.firstError?.seq, bad.firstError?.kind], [7, 'altered']);
});

test('a line deleted inside a block (index rewritten to match) is reported at that seq', async () => {
  const { dir, pub } = await makeLog(300, 100);
  rewriteTrail(dir, (events) => events.filter((_, i) => i !== 41));
  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, false);
  assert.equal(r.firstError?.seq, 42);
});

test('a deleted or truncated segment file is reported as removed events', async () => {
  const { dir, pub } = await makeLog(300, 100);
  const seg = readdirSync(dir).find((n) => n.startsWith('audit-segment-'));
  assert.ok(seg);
  truncateSync(join(dir, seg), statSync(join(dir, seg)).size - 10);
  let r = verifyDatabase(dir, pub);
  assert.equal(r.ok, false);
  assert.ok(r.firstError && r.firstError.seq <= 300, r.firstError?.message);
  rmSync(join(dir, seg));
  r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1, 'removed']);
  assert.match(r.firstError?.message ?? '', /audit-segment-.*missing/);
});

test('a trail in the previous layout (segment tables behind a view) is moved into a segment file and still verifies', async () => {
  const dir = tempDir();
  const db = new DatabaseSync(join(dir, 'audit.db'));
  let prev = '0'.repeat(64);
  for (const [table, from, to] of [['audit_seg_000001', 1, 30], ['audit_seg_000002', 31, 45]] as const) {
    db.exec(`CREATE TABLE ${table} (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, type TEXT NOT NULL, request_id TEXT NOT NULL,
      agent TEXT, decision TEXT, body TEXT NOT NULL, hash TEXT NOT NULL); CREATE INDEX ${table}_request ON ${table}(request_id);`);
    for (let seq = from; seq <= to; seq++) {
      const { json, cols } = encodeEvent(sampleEvent(seq), 1_790_000_000_000 + seq);
      const hash = chainHash(json, seq, prev);
      db.prepare(`INSERT INTO ${table} (seq, time, type, request_id, agent, decision, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(seq, cols[0], cols[1], cols[2], cols[3], cols[4], sealedText(json, seq, prev, hash), hash);
      prev = hash;
    }
  }
  db.exec('CREATE VIEW audit_events AS SELECT * FROM audit_seg_000001 UNION ALL SELECT * FROM audit_seg_000002');
  db.close();
  const log = openAuditLog({ dataDir: dir });
  assert.equal(log.stats().lastSeq, 45, 'the chain resumes after the migrated events');
  log.record(sampleEvent(46));
  await log.close();
  const r = verifyDatabase(dir, log.publicKeyPem());
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.lastSeq, 46);
  const after = new DatabaseSync(join(dir, 'audit.db'));
  const left = after.prepare("SELECT name FROM sqlite_master WHERE name GLOB 'audit_seg_*' OR name = 'audit_events'").all();
  after.close();
  assert.deepEqual(left, [], 'the old tables and view are gone');
  const text = await exportText(dir);
  assert.equal(verifyExport(text, log.publicKeyPem()).ok, true);
  assert.ok(text.includes('"seq":30,'), 'migrated events export as they were stored');
});
