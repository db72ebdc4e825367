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
import { encodeEvent, sealLine } from '../src/audit/event.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { sampleEvent, tempDir } from './audit-helpers.ts';

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

test('editing a field in the body is reported as altered at that seq', async () => {
  const { dir, pub } = await makeLog();
  sql(dir, "UPDATE audit_seg_000001 SET body = json_set(body, '$.outcome.status', 500) WHERE seq = 1234");
  const r = verifyDatabase(dir, pub);
  assert.equal(r.ok, false);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1234, 'altered']);
});

test('editing an indexed column (what queries read) is reported as altered', async () => {
  const { dir, pub } = await makeLog();
  sql(dir, "UPDATE audit_seg_000001 SET agent = 'someone-else' WHERE seq = 77");
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [77, 'altered']);
});

test('an edit whose hash was recomputed is still caught by the next link', async () => {
  const { dir, pub } = await makeLog();
  // Re-seal event 500 with a different body but the correct hash: event 501's prev_hash no longer matches.
  const db = new DatabaseSync(join(dir, 'audit.db'));
  const row = db.prepare('SELECT body FROM audit_events WHERE seq = 500').get();
  const body = JSON.parse(String(row?.body)) as Record<string, unknown>;
  body.request_id = 'forged';
  const s = reseal(body, 500, String(body.prev_hash));
  db.prepare('UPDATE audit_seg_000001 SET body = ?, hash = ?, request_id = ? WHERE seq = 500').run(s.body, s.hash, 'forged');
  db.close();
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [501, 'altered']);
});

test('deleting an event is reported as removed at that seq', async () => {
  const { dir, pub } = await makeLog();
  sql(dir, 'DELETE FROM audit_seg_000001 WHERE seq = 1500');
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1500, 'removed']);
});

test('deleting the first events without a retention anchor is reported as removed at seq 1', async () => {
  const { dir, pub } = await makeLog(200, 50);
  sql(dir, 'DELETE FROM audit_seg_000001 WHERE seq <= 10');
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [1, 'removed']);
});

test('inserting a well-formed event (later rows renumbered) is reported as inserted', async () => {
  const { dir, pub } = await makeLog(300, 100);
  const db = new DatabaseSync(join(dir, 'audit.db'));
  // Shift rows 150.. up by one (high to low so the primary key never collides), then forge row 150.
  db.exec('UPDATE audit_seg_000001 SET seq = -seq WHERE seq >= 150; UPDATE audit_seg_000001 SET seq = 1 - seq WHERE seq < 0;');
  const prev = String(db.prepare('SELECT hash FROM audit_events WHERE seq = 149').get()?.hash);
  const forged = reseal(sampleEvent(1, { request_id: 'forged' }), 150, prev);
  db.prepare('INSERT INTO audit_seg_000001 (seq, time, type, request_id, agent, decision, body, hash) VALUES (150, ?, ?, ?, ?, ?, ?, ?)')
    .run(String(JSON.parse(forged.body).time), 'model_call', 'forged', 'support-bot', 'allow', forged.body, forged.hash);
  db.close();
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [150, 'inserted']);
});

test('swapping two rows\' content is reported as reordered', async () => {
  const { dir, pub } = await makeLog();
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.exec(`
    CREATE TEMP TABLE t AS SELECT * FROM audit_events WHERE seq IN (2000, 2001);
    UPDATE audit_seg_000001 SET time = (SELECT time FROM t WHERE seq = 2001), type = (SELECT type FROM t WHERE seq = 2001), request_id = (SELECT request_id FROM t WHERE seq = 2001), agent = (SELECT agent FROM t WHERE seq = 2001), decision = (SELECT decision FROM t WHERE seq = 2001), body = (SELECT body FROM t WHERE seq = 2001), hash = (SELECT hash FROM t WHERE seq = 2001) WHERE seq = 2000;
    UPDATE audit_seg_000001 SET time = (SELECT time FROM t WHERE seq = 2000), type = (SELECT type FROM t WHERE seq = 2000), request_id = (SELECT request_id FROM t WHERE seq = 2000), agent = (SELECT agent FROM t WHERE seq = 2000), decision = (SELECT decision FROM t WHERE seq = 2000), body = (SELECT body FROM t WHERE seq = 2000), hash = (SELECT hash FROM t WHERE seq = 2000) WHERE seq = 2001;
  `);
  db.close();
  const r = verifyDatabase(dir, pub);
  assert.deepEqual([r.firstError?.seq, r.firstError?.kind], [2000, 'reordered']);
});

test('truncating the tail after a checkpoint is reported as truncated', async () => {
  const { dir, pub } = await makeLog(2500, 1000);
  sql(dir, 'DELETE FROM audit_seg_000001 WHERE seq > 1990');
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
  const db = new DatabaseSync(join(dir, 'audit.db'));
  let prev = String(db.prepare('SELECT hash FROM audit_events WHERE seq = 899').get()?.hash);
  db.exec('BEGIN');
  for (let seq = 900; seq <= 1500; seq++) {
    const e = JSON.parse(String(db.prepare('SELECT body FROM audit_events WHERE seq = ?').get(seq)?.body)) as ReturnType<typeof sampleEvent> & { time: string };
    if (seq === 900) e.request_id = 'rewritten';
    const s = reseal(e, seq, prev);
    db.prepare('UPDATE audit_seg_000001 SET body = ?, hash = ?, request_id = ? WHERE seq = ?').run(s.body, s.hash, e.request_id, seq);
    prev = s.hash;
  }
  db.exec('COMMIT');
  db.close();
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

/** What an attacker with write access to the database can do: re-seal an edited event with a correct hash. */
function reseal(e: Record<string, unknown>, seq: number, prev: string): { hash: string; body: string } {
  const { seq: _s, prev_hash: _p, hash: _h, ...rest } = e;
  return sealLine(encodeEvent(rest as AuditEventInput, Date.now()).json, seq, prev);
}

test('the stored bytes are the evidence: a reformatted but equal event is reported as altered', async () => {
  const { dir, pub } = await makeLog(300, 100);
  const db = new DatabaseSync(join(dir, 'audit.db'));
  const body = String(db.prepare('SELECT body FROM audit_events WHERE seq = 42').get()?.body);
  db.prepare('UPDATE audit_seg_000001 SET body = ? WHERE seq = 42').run(body.replace('"type":', '"type": '));
  db.close();
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
  sql(dir, "UPDATE audit_seg_000001 SET body = replace(body, '\"status\":200', '\"status\":500') WHERE seq = 7");
  const bad = verifyDatabase(dir, pub);
  assert.deepEqual([bad.firstError?.seq, bad.firstError?.kind], [7, 'altered']);
});
