// Anchored evidence: signed checkpoints leave the data dir (audit-checkpoints.jsonl, sinks), and
// `aam audit verify --checkpoint` holds the trail to one kept elsewhere. Without it, whoever can
// write the data dir can cut the tail (index rows, checkpoints and segment bytes) unnoticed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { copyFileSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { openAuditLog } from '../src/audit/log.ts';
import type { AuditLogOptions } from '../src/audit/log.ts';
import { verifyDatabase } from '../src/audit/verify.ts';
import { checkpointLine, checkpointSignatureValid, signCheckpoint } from '../src/audit/checkpoint.ts';
import type { Checkpoint } from '../src/audit/checkpoint.ts';
import { CHECKPOINT_FILE, checkpointFilePath, newestCheckpoint, parseCheckpoints } from '../src/audit/anchor.ts';
import { keyIdOf } from '../src/audit/keys.ts';
import { segmentFileName } from '../src/audit/segment.ts';
import { chainHash } from '../src/audit/event.ts';
import { rewriteTrail, runAudit, sampleEvent, tempDir } from './audit-helpers.ts';
import { localServer, until } from './helpers/e2e.ts';
import { agentDocs, doc, startTestGateway, yaml } from './helpers/gateway.ts';

interface Trail { dir: string; pub: string; pubFile: string; log: AuditLogOptions }

/** A closed trail of n events with a checkpoint every `every`; the public key is kept elsewhere. */
async function makeTrail(n = 2500, every = 500, extra: Partial<AuditLogOptions> = {}): Promise<Trail> {
  const dir = tempDir();
  const opts: AuditLogOptions = { dataDir: dir, checkpointEvery: every, batchSize: 500, ...extra };
  const log = openAuditLog(opts);
  for (let i = 0; i < n; i++) assert.equal(log.record(sampleEvent(i)), true);
  await log.close();
  const pubFile = join(tempDir('aam-elsewhere-'), 'audit.pub.pem');
  writeFileSync(pubFile, log.publicKeyPem());
  return { dir, pub: log.publicKeyPem(), pubFile, log: opts };
}

/** What an operator does: copy the checkpoint file out of the data dir. */
function copyOut(dir: string): string {
  const to = join(tempDir('aam-elsewhere-'), CHECKPOINT_FILE);
  copyFileSync(join(dir, CHECKPOINT_FILE), to);
  return to;
}

const newestIn = (file: string): Checkpoint => newestCheckpoint(parseCheckpoints(readFileSync(file, 'utf8')));

/**
 * The finding: an attacker with write access to the data dir deletes the newest index rows and
 * checkpoints, cuts the segment file where the remaining rows end, and drops the cut checkpoints
 * from the data dir's own checkpoint file. Returns the last seq left.
 */
function cutTail(dir: string): number {
  const db = new DatabaseSync(join(dir, 'audit.db'));
  try {
    const blocks = db.prepare('SELECT first_seq, last_seq, segment, byte_end FROM audit_blocks ORDER BY first_seq DESC LIMIT 2').all();
    assert.equal(blocks.length, 2, 'the trail has at least two blocks');
    const [, keep] = blocks;
    const keepSeq = Number(keep.last_seq);
    assert.equal(String(blocks[0].segment), String(keep.segment), 'one segment file');
    db.prepare('DELETE FROM audit_blocks WHERE first_seq > ?').run(keepSeq);
    db.prepare('DELETE FROM audit_checkpoints WHERE tree_size > ?').run(keepSeq);
    db.prepare('UPDATE audit_meta SET value = ? WHERE key = ?').run(String(keep.byte_end), `indexed:${String(keep.segment)}`);
    truncateSync(join(dir, segmentFileName(String(keep.segment))), Number(keep.byte_end));
    const own = join(dir, CHECKPOINT_FILE);
    writeFileSync(own, readFileSync(own, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as Checkpoint).tree_size <= keepSeq).map((l) => l + '\n').join(''));
    return keepSeq;
  } finally { db.close(); }
}

test('finding: a cut tail passes plain verify (it cannot see it) but not verify --checkpoint with the copied checkpoint file', async () => {
  const t = await makeTrail();
  const copy = copyOut(t.dir);
  const keep = cutTail(t.dir);
  assert.equal(keep, 2000);

  // What is left is a consistent trail with valid signed checkpoints: plain verify says OK, even
  // with the trusted public key. This is the documented limit (README "What verify proves").
  const plain = verifyDatabase(t.dir, t.pub);
  assert.deepEqual([plain.ok, plain.lastSeq, plain.unsignedTail], [true, 2000, 0], plain.firstError?.message);
  const plainCli = await runAudit('verify', t.dir, { 'public-key': t.pubFile });
  assert.equal(plainCli.code, 0, plainCli.out);
  assert.match(plainCli.out, /without an outside checkpoint a cut tail.* goes unnoticed: add --checkpoint/);
  // The data dir's own checkpoint file was cut too: it cannot help either.
  assert.equal(verifyDatabase(t.dir, t.pub, undefined, newestIn(join(t.dir, CHECKPOINT_FILE))).ok, true);

  // The copy kept elsewhere says there were 2500 events.
  const r = verifyDatabase(t.dir, t.pub, undefined, newestIn(copy));
  assert.deepEqual([r.ok, r.firstError?.kind, r.firstError?.seq], [false, 'truncated', 2001]);
  assert.match(r.firstError?.message ?? '', /covers events up to seq 2500 but the trail ends at seq 2000: events 2001\.\.2500 are missing \(the tail was cut/);
  const cli = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: copy });
  assert.equal(cli.code, 1, cli.out);
  assert.match(cli.out, /^TAMPERED: .*truncated at seq 2001: .*events 2001\.\.2500 are missing/m);

  // A gateway started on the cut trail chains new events at the cut seqs: they are not the
  // events the outside checkpoint signed.
  const log = openAuditLog(t.log);
  for (let i = 0; i < 600; i++) log.record(sampleEvent(i, { request_id: `after-cut-${i}` }));
  await log.close();
  assert.equal(verifyDatabase(t.dir, t.pub).ok, true);
  const again = verifyDatabase(t.dir, t.pub, undefined, newestIn(copy));
  assert.deepEqual([again.firstError?.kind, again.firstError?.seq], ['altered', 2500]);
  assert.match(again.firstError?.message ?? '', /not the event the outside checkpoint .* vouches for at tree size 2500/);
});

test('a trail rewritten and re-signed with the stolen signing key passes plain verify but not verify --checkpoint', async () => {
  const t = await makeTrail(1500, 500);
  const copy = copyOut(t.dir);
  // Rewrite event 900 and re-chain everything after it, then re-sign every checkpoint with the key
  // from the data dir (an attacker who can write the data dir can usually read it too).
  rewriteTrail(t.dir, (events) => {
    let prev = events[898].hash;
    for (let seq = 900; seq <= events.length; seq++) {
      const e = events[seq - 1];
      const line = seq === 900 ? e.line.replace('"status":200', '"status":201') : e.line;
      events[seq - 1] = { ...e, line, prev, hash: chainHash(line, seq, prev) };
      prev = events[seq - 1].hash;
    }
  });
  const log = openAuditLog(t.log); // only to hold the key: nothing is recorded
  const key = log.signingKey;
  await log.close();
  const db = new DatabaseSync(join(t.dir, 'audit.db'));
  const heads = new Map<number, string>();
  for (const b of db.prepare('SELECT last_seq, last_hash FROM audit_blocks').all()) heads.set(Number(b.last_seq), String(b.last_hash));
  db.exec('DELETE FROM audit_checkpoints');
  for (const size of [500, 1000, 1500]) {
    const c = signCheckpoint(key, size, heads.get(size) as string, 'periodic');
    db.prepare('INSERT INTO audit_checkpoints (tree_size, head_hash, time, type, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)').run(c.tree_size, c.head_hash, c.time, c.type, c.key_id, c.signature);
  }
  db.close();
  assert.equal(verifyDatabase(t.dir, t.pub).ok, true, 'indistinguishable without an outside checkpoint');
  const r = verifyDatabase(t.dir, t.pub, undefined, newestIn(copy));
  assert.deepEqual([r.ok, r.firstError?.kind, r.firstError?.seq], [false, 'altered', 1500]);
});

test('an outside checkpoint with a bad signature, or signed by another key, is rejected (exit 1)', async () => {
  const t = await makeTrail(600, 200);
  const good = newestIn(copyOut(t.dir));
  const elsewhere = tempDir('aam-elsewhere-');

  // Edited: the signature no longer covers what it says.
  const edited = join(elsewhere, 'edited.jsonl');
  writeFileSync(edited, checkpointLine({ ...good, tree_size: good.tree_size + 50 }) + '\n');
  const r = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: edited });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^TAMPERED: .*bad_checkpoint at seq 650: the outside checkpoint .* does not verify with the public key in use/m);

  // Forged for the cut trail with the attacker's own key: does not verify with the trusted key,
  // and without --public-key its key is one this trail does not know.
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const forged = signCheckpoint({ privateKey, publicKeyPem: pem, keyId: keyIdOf(pem) }, good.tree_size, good.head_hash, 'periodic');
  const withKey = verifyDatabase(t.dir, t.pub, undefined, forged);
  assert.deepEqual([withKey.ok, withKey.firstError?.kind], [false, 'bad_checkpoint']);
  const line = checkpointLine(forged);
  const noKey = await runAudit('verify', t.dir, { checkpoint: line });
  assert.equal(noKey.code, 1, noKey.out);
  assert.match(noKey.out, /signed by key [0-9a-f]{16}, which this trail does not know/);

  // Not a checkpoint at all: a usage error (exit 2) that says what is expected.
  const junk = join(elsewhere, 'junk.jsonl');
  writeFileSync(junk, '{"kind":"event","seq":1}\n');
  const bad = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: junk });
  assert.equal(bad.code, 2);
  assert.match(bad.err, /holds no checkpoint .*audit-checkpoints\.jsonl/);
  const missing = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: join(elsewhere, 'nope.jsonl') });
  assert.equal(missing.code, 2);
  assert.match(missing.err, /ENOENT/);
});

test('a checkpoint from a different trail is rejected: another key, or the same key and other events', async () => {
  const t = await makeTrail(600, 200);
  const other = await makeTrail(300, 100);
  const r = verifyDatabase(t.dir, t.pub, undefined, newestIn(copyOut(other.dir)));
  assert.deepEqual([r.ok, r.firstError?.kind, r.firstError?.seq], [false, 'bad_checkpoint', 300]);

  // Two trails signed by one key (a shared AAM_AUDIT_KEY_FILE): the signature holds, the events do not.
  const keyFile = join(t.dir, 'keys', 'audit-signing.key');
  const sibling = await makeTrail(300, 100, { keyFile });
  const shorter = verifyDatabase(t.dir, t.pub, undefined, newestIn(copyOut(sibling.dir)));
  assert.deepEqual([shorter.ok, shorter.firstError?.kind, shorter.firstError?.seq], [false, 'altered', 300]);
  assert.match(shorter.firstError?.message ?? '', /or the checkpoint belongs to another trail/);
  // A longer one cannot be told from a cut tail (its events are not here to compare): both are named.
  const longer = await makeTrail(900, 300, { keyFile });
  const cut = verifyDatabase(t.dir, t.pub, undefined, newestIn(copyOut(longer.dir)));
  assert.deepEqual([cut.ok, cut.firstError?.kind, cut.firstError?.seq], [false, 'truncated', 601]);
  assert.match(cut.firstError?.message ?? '', /the tail was cut, or the checkpoint belongs to another trail/);
});

test('happy path: the untouched trail holds every event up to the outside checkpoint (file, JSON line, URL, webhook body, export)', async () => {
  const t = await makeTrail();
  const copy = copyOut(t.dir);
  const lines = readFileSync(copy, 'utf8').trim().split('\n');
  assert.deepEqual(lines.map((l) => (JSON.parse(l) as Checkpoint).tree_size), [500, 1000, 1500, 2000, 2500], 'one line per signed checkpoint');
  for (const l of lines) assert.ok(checkpointSignatureValid(JSON.parse(l) as Checkpoint, t.pub));

  const file = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: copy });
  assert.equal(file.code, 0, file.out);
  assert.match(file.out, /OK: the trail holds every event up to the outside checkpoint at seq 2500/);
  assert.doesNotMatch(file.out, /warning/);

  const one = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: lines[2] });
  assert.equal(one.code, 0, one.out);
  assert.match(one.out, /outside checkpoint at seq 1500/);

  const served = await localServer((req, res) => {
    if (req.url === '/latest') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sent_at: 'x', checkpoints: lines.map((l) => JSON.parse(l) as unknown) }));
    else res.writeHead(404).end();
  });
  try {
    const url = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: `${served.url}/latest` });
    assert.equal(url.code, 0, url.out);
    assert.match(url.out, /outside checkpoint at seq 2500/);
    const gone = await runAudit('verify', t.dir, { 'public-key': t.pubFile, checkpoint: `${served.url}/nope` });
    assert.equal(gone.code, 2);
    assert.match(gone.err, /answered 404/);
  } finally { await served.close(); }

  // Without --public-key the data dir's key is used, with a warning that this proves little.
  const own = await runAudit('verify', t.dir, { checkpoint: copy });
  assert.equal(own.code, 0, own.out);
  assert.match(own.out, /warning: so the outside checkpoint proves little/);

  // An export checked against the outside checkpoint too.
  const exported = join(tempDir('aam-elsewhere-'), 'export.jsonl');
  assert.equal((await runAudit('export', t.dir, { out: exported })).code, 0);
  assert.equal((await runAudit('verify', t.dir, { 'public-key': t.pubFile, file: exported, checkpoint: copy })).code, 0);
  writeFileSync(exported, readFileSync(exported, 'utf8').split('\n').filter((l) => !l.includes('"seq":2500,') && !l.includes('"tree_size":2500')).join('\n'));
  const cutExport = await runAudit('verify', t.dir, { 'public-key': t.pubFile, file: exported, checkpoint: copy });
  assert.equal(cutExport.code, 1);
  assert.match(cutExport.out, /truncated at seq 2500/);

  // A trail that grew after the checkpoint still passes.
  const log = openAuditLog(t.log);
  for (let i = 0; i < 10; i++) log.record(sampleEvent(i));
  await log.close();
  assert.equal(verifyDatabase(t.dir, t.pub, undefined, newestIn(copy)).ok, true);
});

test('the checkpoint file: AAM_AUDIT_CHECKPOINT_FILE puts it elsewhere; retention anchors are appended; older checkpoints than the cut are noted, not failed', async () => {
  const outside = join(tempDir('aam-elsewhere-'), 'volume', 'checkpoints.jsonl');
  assert.equal(checkpointFilePath('/data', { AAM_AUDIT_CHECKPOINT_FILE: outside }), outside);
  assert.equal(checkpointFilePath('/data', {}), join('/data', CHECKPOINT_FILE));
  const dir = tempDir();
  // Two segments (1..60, 61..120): prune has a whole old segment to drop.
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 50, batchSize: 25, checkpointFile: outside, segments: { maxAgeMs: 86_400_000, maxEvents: 60 } });
  for (let i = 0; i < 120; i++) {
    log.record(sampleEvent(i));
    if (i === 59) await log.flush();
  }
  await log.flush();
  const pub = log.publicKeyPem();
  const pruned = await log.prune(new Date(Date.now() + 86_400_000).toISOString());
  await log.close();
  assert.equal(pruned.cutSeq, 60);
  const cps = parseCheckpoints(readFileSync(outside, 'utf8'));
  assert.ok(cps.some((c) => c.type === 'retention' && c.tree_size === 60), JSON.stringify(cps));
  for (const c of cps) assert.ok(checkpointSignatureValid(c, pub));

  const before = cps.find((c) => c.tree_size < 60);
  assert.ok(before, JSON.stringify(cps));
  const older = verifyDatabase(dir, pub, undefined, before);
  assert.equal(older.ok, true, older.firstError?.message);
  assert.deepEqual(older.outside, { tree_size: before.tree_size, time: before.time, covered: false });
  const cli = await runAudit('verify', dir, { checkpoint: checkpointLine(before) });
  assert.match(cli.out, /older than the retention cut/);
  const anchor = cps.find((c) => c.type === 'retention') as Checkpoint;
  const atCut = verifyDatabase(dir, pub, undefined, anchor);
  assert.deepEqual([atCut.ok, atCut.outside?.covered], [true, true], atCut.firstError?.message);
  // A retention cut exactly at the outside checkpoint must carry the hash it signed.
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.prepare("DELETE FROM audit_checkpoints WHERE type = 'retention'").run();
  db.close();
  const log2 = openAuditLog({ dataDir: dir, checkpointFile: outside });
  const forgedAnchor = signCheckpoint(log2.signingKey, 60, 'e'.repeat(64), 'retention');
  await log2.close();
  const db2 = new DatabaseSync(join(dir, 'audit.db'));
  db2.prepare('INSERT INTO audit_checkpoints (tree_size, head_hash, time, type, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)').run(60, forgedAnchor.head_hash, forgedAnchor.time, 'retention', forgedAnchor.key_id, forgedAnchor.signature);
  db2.close();
  const swapped = verifyDatabase(dir, pub, undefined, anchor);
  assert.equal(swapped.ok, false);
  assert.match(swapped.firstError?.message ?? '', /names another hash than the outside checkpoint|prev_hash/);
});

test('a real gateway appends its checkpoints to AAM_AUDIT_CHECKPOINT_FILE and to its file sink; both serve verify --checkpoint', async () => {
  const elsewhere = tempDir('aam-elsewhere-');
  const cpFile = join(elsewhere, 'volume', 'checkpoints.jsonl');
  const sinkFile = join(elsewhere, 'audit.jsonl');
  const gw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'AAM_ANCHOR_TEST_KEY' }),
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:9/v1', credential: 'up-key' }),
    doc('Model', 'm', { targets: [{ provider: 'up', model: 'x' }], pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    ...agentDocs(['m']),
  ), { AAM_ANCHOR_TEST_KEY: 'sk-anchor', AAM_AUDIT_CHECKPOINT_FILE: cpFile, AAM_AUDIT_FILE: sinkFile });
  try {
    const key = gw.key('tester');
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
      await r.text();
    }
    const log = gw.g.rt.auditLog;
    assert.ok(log);
    await log.flush();
    const size = await log.checkpoint();
    assert.ok(size !== null && size >= 4, `checkpoint at ${size}`);
    // The sink delivers it on its next poll (about a second), after the events it covers.
    await until(() => existsSync(sinkFile) && readFileSync(sinkFile, 'utf8').includes(`"kind":"checkpoint","tree_size":${size},`), 15_000, `checkpoint ${size} in the file sink`);
    const pubFile = join(elsewhere, 'audit.pub.pem');
    writeFileSync(pubFile, log.publicKeyPem());
    await gw.g.close();
    assert.equal(existsSync(join(gw.dataDir, CHECKPOINT_FILE)), false, 'the checkpoint file went where AAM_AUDIT_CHECKPOINT_FILE says');
    assert.ok(newestIn(cpFile).tree_size >= size);
    for (const source of [cpFile, sinkFile]) {
      const v = await runAudit('verify', gw.dataDir, { 'public-key': pubFile, checkpoint: source });
      assert.equal(v.code, 0, v.out);
      assert.match(v.out, /OK: the trail holds every event up to the outside checkpoint/);
    }
  } finally { await gw.close(); }
});
