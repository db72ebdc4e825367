// The verdict of `aam audit verify` on small exported trails, fast enough to run against every
// mutant of `npm run mutate -- verify`: what counts as signed, what a cut tail looks like with and
// without an outside checkpoint, which problem is named first, and the numbers the report shows.
// The large tamper matrix over the database is test/audit-tamper.test.ts and audit-anchor.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { verifyDatabase, verifyExport } from '../src/audit/verify.ts';
import { openAuditLog } from '../src/audit/log.ts';
import { insertCheckpoint, openAuditDb, readCheckpoints } from '../src/audit/store.ts';
import { checkpointLine, signCheckpoint, type Checkpoint } from '../src/audit/checkpoint.ts';
import { keyIdOf, loadOrCreateSigningKey, signingKeyPath } from '../src/audit/keys.ts';
import { GENESIS_HASH, chainHash, encodeEvent, exportLine, sealLine, sealedText } from '../src/audit/event.ts';
import { rewriteTrail, sampleEvent, tempDir, trailEvents, type TrailEvent } from './audit-helpers.ts';

interface Line { raw: string; kind: string; seq?: number; tree_size?: number }

/**
 * A trail of 25 events as the writer seals them, with a signed checkpoint every 10 events, as
 * an export (built in-process: the writer thread would make every mutant's run seconds slower).
 */
function makeExport(key = newKey(), from = 1, start = GENESIS_HASH, tag = ''): { pub: string; lines: Line[]; cps: Checkpoint[] } {
  const pub = key.publicKeyPem;
  const lines: Line[] = [];
  const cps: Checkpoint[] = [];
  let prev = start;
  for (let seq = from; seq <= 25; seq++) {
    const { hash, body } = sealLine(encodeEvent(sampleEvent(seq, { request_id: `req${tag}-${seq}` }), Date.UTC(2026, 0, 1, 0, 0, seq)).json, seq, prev);
    lines.push({ raw: exportLine(body), kind: 'event', seq });
    prev = hash;
    if (seq % 10 === 0) {
      const c = signCheckpoint(key, seq, hash, 'periodic');
      cps.push(c);
      lines.push({ raw: checkpointLine(c), kind: 'checkpoint', tree_size: seq });
    }
  }
  return { pub, lines, cps };
}

function newKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKeyPem, keyId: keyIdOf(publicKeyPem) };
}

const KEY = newKey();
const { pub, lines, cps } = makeExport(KEY);

/** The export with only the events up to `lastSeq` and the checkpoints up to `signedUpTo`. */
function cut(lastSeq: number, signedUpTo: number): string {
  return lines.filter((l) => (l.kind === 'event' ? l.seq! <= lastSeq : l.tree_size! <= signedUpTo)).map((l) => l.raw).join('\n');
}
const all = () => lines.map((l) => l.raw).join('\n');
const pick = (r: ReturnType<typeof verifyExport>) => [r.firstError?.seq, r.firstError?.kind];

test('an untouched export verifies: its numbers count events, checkpoints and the unsigned tail', () => {
  assert.deepEqual(cps.map((c) => c.tree_size), [10, 20], 'a checkpoint every 10 events (fixture)');
  const r = verifyExport(all(), pub);
  assert.equal(r.ok, true, r.firstError?.message);
  assert.equal(r.firstError, undefined);
  assert.deepEqual([r.events, r.firstSeq, r.lastSeq, r.checkpoints, r.unsignedTail], [25, 1, 25, 2, 5]);
  assert.equal(r.anchor, 'genesis');
  assert.equal(r.keySource, 'given');
  assert.equal(r.outside, undefined);
  // Signed up to the last event: no unsigned tail.
  const signedAll = verifyExport(cut(20, 20), pub);
  assert.equal(signedAll.ok, true);
  assert.deepEqual([signedAll.events, signedAll.lastSeq, signedAll.unsignedTail], [20, 20, 0]);
  // An empty export is an empty, valid trail.
  const empty = verifyExport('', pub);
  assert.deepEqual([empty.ok, empty.events, empty.firstSeq, empty.lastSeq, empty.unsignedTail], [true, 0, 0, 0, 0]);
});

test('a tail cut below a checkpoint the export still carries is truncated, naming the missing events', () => {
  const r = verifyExport(cut(15, 20), pub);
  assert.equal(r.ok, false);
  assert.deepEqual(pick(r), [16, 'truncated']);
  assert.equal(r.firstError?.message, 'a signed checkpoint covers 20 events but the chain ends at seq 15: events 16..20 were removed');
  assert.equal(r.lastSeq, 15);
  assert.equal(r.unsignedTail, 0);
});

test('a tail cut together with its checkpoints passes alone, and is caught by the outside checkpoint', () => {
  const alone = verifyExport(cut(15, 10), pub);
  assert.equal(alone.ok, true, 'without an outside checkpoint a clean cut cannot be seen');
  assert.deepEqual([alone.lastSeq, alone.unsignedTail], [15, 5]);
  const outside = cps[1];
  const r = verifyExport(cut(15, 10), pub, outside);
  assert.equal(r.ok, false);
  assert.deepEqual(pick(r), [16, 'truncated']);
  assert.match(r.firstError!.message, /^the outside checkpoint \(signed .*\) covers events up to seq 20 but the trail ends at seq 15: events 16\.\.20 are missing/);
  assert.deepEqual(r.outside, { tree_size: 20, time: outside.time, covered: true });
  // The whole trail holds it.
  const ok = verifyExport(all(), pub, outside);
  assert.equal(ok.ok, true, ok.firstError?.message);
  assert.deepEqual(ok.outside, { tree_size: 20, time: outside.time, covered: true });
});

test('an outside checkpoint that does not verify is named first, before any problem in the trail', () => {
  const forged = { ...cps[0], head_hash: 'f'.repeat(64) };
  const r = verifyExport(cut(15, 20), pub, forged);
  assert.equal(r.ok, false);
  assert.deepEqual(pick(r), [10, 'bad_checkpoint']);
  assert.match(r.firstError!.message, /the outside checkpoint \(tree size 10, key .*\) does not verify with the public key in use/);
  assert.equal(r.outside?.covered, false, 'a rejected outside checkpoint covers nothing');
  // Another trail's key signed it: rejected as well.
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const stranger = signCheckpoint({ privateKey, publicKeyPem: pem, keyId: keyIdOf(pem) }, 20, cps[1].head_hash, 'periodic');
  assert.deepEqual(pick(verifyExport(all(), pub, stranger)), [20, 'bad_checkpoint']);
});

test('problems are reported lowest seq first; a broken chain wins over a bad checkpoint at the same seq', () => {
  const bad = lines.map((l) => (l.kind === 'checkpoint' && l.tree_size === 20 ? l.raw.replace(/"head_hash":"[0-9a-f]{64}"/, `"head_hash":"${'e'.repeat(64)}"`) : l.raw));
  const r = verifyExport(bad.join('\n'), pub);
  assert.deepEqual(pick(r), [20, 'bad_checkpoint']);
  assert.equal(r.firstError?.message, 'checkpoint at tree size 20 has an invalid signature (forged or edited)');
  assert.equal(r.unsignedTail, 15, 'only valid checkpoints count as signed');
  // Also edit event 7: the chain error comes first, by seq.
  const both = bad.map((raw) => (raw.includes('"seq":7,') ? raw.replace('"status":200', '"status":201') : raw));
  const r2 = verifyExport(both.join('\n'), pub);
  assert.deepEqual(pick(r2), [7, 'altered']);
  assert.equal(r2.lastSeq, 0, 'a broken chain has no trustworthy last seq');
  // A chain error at the seq of a bad checkpoint: the chain error is named.
  const tie = bad.map((raw) => (raw.includes('"seq":20,') ? raw.replace('"status":200', '"status":201') : raw));
  assert.deepEqual(pick(verifyExport(tie.join('\n'), pub)), [20, 'altered']);
});

test('a checkpoint signed by another key is named as such, not as a forgery', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  const other = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const r = verifyExport(all(), other);
  assert.deepEqual(pick(r), [10, 'bad_checkpoint']);
  assert.equal(r.firstError?.message, 'checkpoint at tree size 10 has an invalid signature (forged or edited)');
  assert.equal(r.unsignedTail, 25);
});

test('a bad checkpoint above a cut tail does not hide the cut: the lowest seq is named first', () => {
  // A checkpoint line claiming tree size 25 that was not signed so (edited from the one at 20).
  const forged = checkpointLine({ ...cps[1], tree_size: 25 });
  const r = verifyExport([cut(15, 20), forged].join('\n'), pub);
  assert.deepEqual(pick(r), [16, 'truncated']);
  assert.equal(r.checkpoints, 3);
});

test('an export starting after a checkpoint must carry the hash the outside checkpoint signed there', () => {
  // Honest partial export: events 11..25 anchored at the signed checkpoint 10.
  const from11 = (l: Line) => (l.kind === 'event' ? l.seq! > 10 : true);
  const honest = lines.filter(from11).map((l) => l.raw).join('\n');
  const ok = verifyExport(honest, pub, cps[0]);
  assert.equal(ok.ok, true, ok.firstError?.message);
  assert.deepEqual(ok.anchor, { tree_size: 10, type: 'periodic' });
  assert.equal(ok.firstSeq, 11);
  assert.deepEqual(ok.outside, { tree_size: 10, time: cps[0].time, covered: true });
  // From 21: the anchor is the checkpoint at 20, not the first valid one (10).
  const from21 = verifyExport(lines.filter((l) => (l.kind === 'event' ? l.seq! > 20 : true)).map((l) => l.raw).join('\n'), pub);
  assert.deepEqual([from21.ok, from21.anchor, from21.firstSeq], [true, { tree_size: 20, type: 'periodic' }, 21], from21.firstError?.message);
  // A first event whose seq is the text "11" anchors nothing: the chain is checked from genesis.
  const textSeq = honest.replace('"seq":11,', '"seq":"11",');
  assert.notEqual(textSeq, honest);
  const t = verifyExport(textSeq, pub);
  assert.deepEqual([t.ok, t.anchor, t.firstError?.seq, t.firstError?.message], [false, 'genesis', 1, 'event after seq 0 is malformed (missing seq, hash or prev_hash)']);
  // An older outside checkpoint than the export's start: nothing it signed is left to compare.
  const older = signCheckpoint(KEY, 5, 'a'.repeat(64), 'periodic');
  assert.deepEqual(verifyExport(honest, pub, older).outside, { tree_size: 5, time: older.time, covered: false });
  // Whoever holds the signing key rewrites history before 11 and re-signs checkpoint 10 over it:
  // the export verifies on its own, but not against the checkpoint kept outside.
  const fake = 'b'.repeat(64);
  const anchor = signCheckpoint(KEY, 10, fake, 'periodic');
  const rewritten = [checkpointLine(anchor), ...makeExport(KEY, 11, fake, '-forged').lines.map((l) => l.raw)].join('\n');
  assert.equal(verifyExport(rewritten, pub).ok, true, 'on its own the forgery holds together');
  const r = verifyExport(rewritten, pub, cps[0]);
  assert.deepEqual(pick(r), [10, 'altered']);
  assert.match(r.firstError!.message, /^the retention checkpoint at seq 10 names another hash than the outside checkpoint/);
});

// The chain checker (verify.ts lines 1-148) through exports: each kind of tampering is named with
// its seq and the exact words `aam audit verify` prints, the trail reordered or edited here by hand.
const events = lines.filter((l) => l.kind === 'event');
const raw = (seq: number): string => events[seq - 1].raw;
/** The export with its event lines arranged as `order` says (checkpoint lines kept in place). */
const arranged = (order: Array<number | string>): string => {
  const body = order.map((o) => (typeof o === 'number' ? raw(o) : o));
  return [...body, ...lines.filter((l) => l.kind === 'checkpoint').map((l) => l.raw)].join('\n');
};
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const verdict = (r: ReturnType<typeof verifyExport>) => [r.ok, r.firstError?.seq, r.firstError?.kind, r.firstError?.message];
/** Event `seq` re-sealed over another prev_hash: its own hash is right, its link is not. */
const resealed = (seq: number, prev: string): string => exportLine(sealLine(encodeEvent(sampleEvent(seq, { request_id: `req-${seq}` }), Date.UTC(2026, 0, 1, 0, 0, seq)).json, seq, prev).body);

test('chain: removed, reordered and inserted events are told apart, each named at its seq', () => {
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), ...range(8, 25)]), pub)), [false, 7, 'removed', 'expected seq 7, found seq 8: event(s) 7..7 were removed']);
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), ...range(9, 25)]), pub)), [false, 7, 'removed', 'expected seq 7, found seq 9: event(s) 7..8 were removed']);
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), 8, 7, ...range(9, 25)]), pub)), [false, 7, 'reordered', 'seq 7 comes after seq 8: events were reordered']);
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 7), 5, ...range(8, 25)]), pub)), [false, 5, 'inserted', 'seq 5 appears again after seq 7: an event was inserted']);
  // A copy of a later event ahead of its place: inserted, even though 7 follows too.
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), 9, ...range(7, 25)]), pub)), [false, 9, 'inserted', 'seq 9 appears twice: an event was inserted before seq 7']);
  // Removed from the very start (no anchor): everything before the first event is missing.
  const late = verifyExport(range(11, 25).map(raw).join('\n'), pub);
  assert.deepEqual(verdict(late), [false, 1, 'removed', 'expected seq 1, found seq 11: event(s) 1..10 were removed']);
  assert.deepEqual([late.events, late.firstSeq, late.lastSeq, late.anchor], [0, 0, 0, 'genesis']);
});

test('chain: an edited event, an extra edited copy, a broken link and a malformed event, with the exact words', () => {
  const edited = raw(7).replace('"status":200', '"status":201');
  assert.notEqual(edited, raw(7));
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), edited, ...range(8, 25)]), pub)), [false, 7, 'altered', 'event 7: content does not match its hash (a field was edited)']);
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), edited, ...range(7, 25)]), pub)), [false, 7, 'inserted', 'two events claim seq 7: an event was inserted']);
  const relinked = resealed(7, 'c'.repeat(64));
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 6), relinked, ...range(8, 25)]), pub)), [false, 7, 'altered', 'event 7: prev_hash does not match the hash of event 6']);
  for (const drop of ['prev_hash', 'hash', 'seq']) {
    const o = JSON.parse(raw(5)) as Record<string, unknown>;
    delete o[drop];
    const r = verifyExport(arranged([...range(1, 4), JSON.stringify(o), ...range(6, 25)]), pub);
    assert.deepEqual(verdict(r), [false, 5, 'altered', 'event after seq 4 is malformed (missing seq, hash or prev_hash)'], drop);
    assert.deepEqual([r.events, r.lastSeq], [4, 0], `${drop}: nothing after a definite error is counted, and a broken chain has no last seq`);
  }
  // Seq 0 is below every seq the chain expects: another copy of an earlier event, not a malformed one.
  const zero = raw(5).replace('"seq":5,', '"seq":0,');
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 4), zero, ...range(6, 25)]), pub)), [false, 0, 'inserted', 'seq 0 appears again after seq 4: an event was inserted']);
  const fractional = raw(5).replace('"seq":5,', '"seq":5.5,');
  assert.notEqual(fractional, raw(5));
  assert.deepEqual(verdict(verifyExport(arranged([...range(1, 4), fractional, ...range(6, 25)]), pub)).slice(0, 3), [false, 5, 'altered']);
});

test('chain: a rewritten chain disagrees with the signed checkpoint; an outside checkpoint pins the event at its tree size', () => {
  // Every event re-sealed (other request ids) under the original checkpoints: caught at the first.
  const other = makeExport(KEY, 1, GENESIS_HASH, '-rewritten').lines.filter((l) => l.kind === 'event').map((l) => l.raw);
  const r = verifyExport([...other, ...lines.filter((l) => l.kind === 'checkpoint').map((l) => l.raw)].join('\n'), pub);
  assert.deepEqual(verdict(r), [false, 10, 'altered', 'event 10 differs from the signed checkpoint at tree size 10: the chain up to here was rewritten']);
  // A validly signed outside checkpoint for another event at 15.
  const pin = signCheckpoint(KEY, 15, 'd'.repeat(64), 'periodic');
  assert.deepEqual(verdict(verifyExport(all(), pub, pin)), [false, 15, 'altered', `event 15 is not the event the outside checkpoint (signed ${pin.time}) vouches for at tree size 15: the trail was rewritten up to here, or the checkpoint belongs to another trail`]);
  // The same pin at the right hash holds.
  const right = signCheckpoint(KEY, 15, (JSON.parse(raw(15)) as { hash: string }).hash, 'periodic');
  assert.equal(verifyExport(all(), pub, right).ok, true);
});

test('export lines: a broken JSON line is named by its line number at the seq after the last event; other kinds of line are ignored', () => {
  const text = all().split('\n');
  const at = text.findIndex((l) => l === raw(8));
  const broken = [...text.slice(0, at), '{"kind":"event", broken', ...text.slice(at)];
  assert.deepEqual(verdict(verifyExport(broken.join('\n'), pub)), [false, 8, 'altered', `line ${at + 1} is not valid JSON`]);
  assert.deepEqual(verdict(verifyExport(['not json', ...text].join('\n'), pub)), [false, 0, 'altered', 'line 1 is not valid JSON']);
  // Two broken lines: the first is named.
  assert.deepEqual(verdict(verifyExport([...broken.slice(0, at + 3), 'also broken', ...broken.slice(at + 3)].join('\n'), pub)), [false, 8, 'altered', `line ${at + 1} is not valid JSON`]);
  // A signed checkpoint at tree size 0 is no anchor: an export from seq 1 starts at genesis.
  const zero = verifyExport([checkpointLine(signCheckpoint(KEY, 0, 'b'.repeat(64), 'periodic')), ...text].join('\n'), pub);
  assert.deepEqual([zero.ok, zero.anchor, zero.checkpoints], [true, 'genesis', 3], zero.firstError?.message);
  const noted = verifyExport(['{"kind":"note","seq":3}', '', '   ', ...text].join('\n'), pub);
  assert.deepEqual([noted.ok, noted.events, noted.checkpoints], [true, 25, 2]);
  // A first event without a numeric seq starts the chain at genesis.
  const o = JSON.parse(raw(1)) as Record<string, unknown>;
  o.seq = '1';
  assert.deepEqual(verdict(verifyExport(arranged([JSON.stringify(o), ...range(2, 25)]), pub)).slice(0, 3), [false, 1, 'altered']);
});

// verifyDatabase (lines 204-363) on a small real trail: which key it trusts, what it reports
// while it runs, an outside checkpoint from another trail, and a block index that was edited.
async function smallTrail(): Promise<{ dir: string; pub: string }> {
  const dir = tempDir('aam-verify-mut-');
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 10, batchSize: 10, checkpointIntervalMs: 3_600_000 });
  for (let i = 1; i <= 30; i++) assert.equal(log.record(sampleEvent(i)), true);
  await log.flush();
  const pubPem = log.publicKeyPem();
  await log.close();
  return { dir, pub: pubPem };
}

let base: Promise<{ dir: string; pub: string }> | undefined;
/** A copy of one small trail (written once: the writer thread costs about a second under load). */
async function trailCopy(): Promise<{ dir: string; pub: string }> {
  base ??= smallTrail();
  const { dir, pub: trailPub } = await base;
  const copy = tempDir('aam-verify-mut-');
  cpSync(dir, copy, { recursive: true });
  return { dir: copy, pub: trailPub };
}

function trailCheckpoints(dir: string): Checkpoint[] {
  const db = openAuditDb(dir);
  try { return readCheckpoints(db); } finally { db.close(); }
}

test('database: the key given, else the signing key file beside it, else the keys stored with the trail; progress per block; a stranger\'s outside checkpoint is named', async () => {
  const { dir, pub: trailPub } = await trailCopy();
  const progress: Array<[number, number]> = [];
  const r = verifyDatabase(dir, undefined, (checked, total) => progress.push([checked, total]));
  assert.deepEqual([r.ok, r.events, r.firstSeq, r.lastSeq, r.keySource, r.anchor], [true, 30, 1, 30, 'key_file', 'genesis'], r.firstError?.message);
  assert.ok(progress.length >= 1 && progress.every(([, total]) => total === 30), JSON.stringify(progress));
  assert.deepEqual(progress.at(-1), [30, 30]);
  assert.ok(progress.every(([c], i) => i === 0 || c > progress[i - 1][0]), 'events checked so far, growing');
  const own = trailCheckpoints(dir).find((c) => c.tree_size === 20)!;
  assert.deepEqual(verifyDatabase(dir, undefined, undefined, own).outside, { tree_size: 20, time: own.time, covered: true });
  const stranger = newKey();
  const foreign = signCheckpoint(stranger, 20, own.head_hash, 'periodic');
  const unknown = `the outside checkpoint (tree size 20) was signed by key ${stranger.keyId}, which this trail does not know: it belongs to another trail, or pass the --public-key that signed it`;
  const named = verifyDatabase(dir, undefined, undefined, foreign);
  assert.deepEqual([named.ok, named.firstError?.seq, named.firstError?.kind, named.firstError?.message], [false, 20, 'bad_checkpoint', unknown]);
  assert.deepEqual(named.outside, { tree_size: 20, time: foreign.time, covered: false });
  // With the trail's key given, the same checkpoint does not verify with it.
  const given = verifyDatabase(dir, trailPub, undefined, foreign);
  assert.equal(given.keySource, 'given');
  assert.equal(given.firstError?.message, `the outside checkpoint (tree size 20, key ${stranger.keyId}) does not verify with the public key in use: it was forged or edited, or another key (another trail) signed it`);
  // Verified elsewhere, without the signing key file: the public keys stored with the trail.
  rmSync(signingKeyPath(dir));
  const stored = verifyDatabase(dir, undefined, undefined, own);
  assert.deepEqual([stored.ok, stored.keySource, stored.outside?.covered], [true, 'stored', true], stored.firstError?.message);
  assert.equal(verifyDatabase(dir, undefined, undefined, foreign).firstError?.message, unknown);
});

test('database: a block whose index names another last hash is reported at its first event', async () => {
  const { dir, pub: trailPub } = await trailCopy();
  const db = new DatabaseSync(join(dir, 'audit.db'));
  const blocks = db.prepare('SELECT first_seq, last_seq FROM audit_blocks ORDER BY first_seq').all() as Array<{ first_seq: number; last_seq: number }>;
  const b = blocks[1] ?? blocks[0];
  db.prepare('UPDATE audit_blocks SET last_hash = ? WHERE first_seq = ?').run('f'.repeat(64), b.first_seq);
  db.close();
  const r = verifyDatabase(dir, trailPub);
  assert.deepEqual([r.ok, r.firstError?.seq, r.firstError?.kind, r.firstError?.message], [false, b.first_seq, 'altered', `block of events ${b.first_seq}..${b.last_seq} names a last hash that is not its last event's: its segment bytes or index row were edited`]);
});

// The segment-file path of verifyDatabase (lines 204-363): a line's seq is its position, so a
// moved line is found by the seq it hashes at; each kind is named at its seq, with the exact words.
/** The small trail rewritten as `edit` says (one event per block by default, as moved blocks are). */
async function tampered(edit: (events: TrailEvent[]) => TrailEvent[] | void, blockSize = 1): Promise<ReturnType<typeof verifyDatabase>> {
  const { dir, pub: trailPub } = await trailCopy();
  rewriteTrail(dir, edit, blockSize);
  return verifyDatabase(dir, trailPub);
}
const dbVerdict = (r: ReturnType<typeof verifyDatabase>) => [r.ok, r.firstError?.seq, r.firstError?.kind, r.firstError?.message];
/** Positions 1..30 holding the events `order` names (1-based). */
const reorder = (order: number[]) => (events: TrailEvent[]): TrailEvent[] => order.map((seq) => events[seq - 1]);

test('database: a line moved, removed or inserted in the segment is named by the seq it hashes at', async () => {
  assert.deepEqual(dbVerdict(await tampered(reorder([...range(1, 6), ...range(8, 30)]))), [false, 7, 'removed', 'expected seq 7, found seq 8: event(s) 7..7 were removed']);
  assert.deepEqual(dbVerdict(await tampered(reorder([...range(1, 11), 13, 12, ...range(14, 30)]))), [false, 12, 'reordered', 'seq 12 comes after seq 13: events were reordered']);
  // Moved two places ahead of its own: found at seq 20 from position 18, the skipped ones later.
  assert.deepEqual(dbVerdict(await tampered(reorder([...range(1, 17), 20, 18, 19, ...range(21, 30)]))), [false, 18, 'reordered', 'seq 18 comes after seq 20: events were reordered']);
  // Moved back two places: a copy of event 5 after 7 hashes at seq 5.
  assert.deepEqual(dbVerdict(await tampered(reorder([...range(1, 7), 5, ...range(8, 30)]))), [false, 5, 'inserted', 'seq 5 appears again after seq 7: an event was inserted']);
  // A well-formed event chained in at 15 (the writer's own hash): the old 15 then hashes at 15 again.
  const forged = await tampered((events) => {
    const { json: line, cols } = encodeEvent(sampleEvent(15, { request_id: 'forged' }), Date.UTC(2026, 0, 2));
    events.splice(14, 0, { line, prev: events[13].hash, hash: chainHash(line, 15, events[13].hash), keys: [...cols], sealed: false });
  });
  assert.deepEqual(dbVerdict(forged), [false, 15, 'inserted', 'seq 15 appears again after seq 15: an event was inserted']);
  assert.deepEqual([forged.events, forged.lastSeq], [15, 0], 'the forged event chains; nothing after the problem counts');
  // A field edited in place (the line hashes nowhere near), and a line that is no longer JSON.
  const edit = (seq: number, fn: (l: string) => string) => (events: TrailEvent[]) => { events[seq - 1] = { ...events[seq - 1], line: fn(events[seq - 1].line) }; };
  assert.deepEqual(dbVerdict(await tampered(edit(9, (l) => l.replace('"status":200', '"status":500')), 10)), [false, 9, 'altered', 'event 9: content does not match its hash (a field was edited)']);
  assert.deepEqual(dbVerdict(await tampered(edit(12, () => 'not json'), 10)), [false, 12, 'altered', 'event 12: stored line is not valid JSON']);
  // The first problem stays named: a removal still being classified is not replaced by a later one.
  const both = (events: TrailEvent[]) => { edit(20, () => 'not json')(events); return events.filter((_, i) => i !== 6); };
  assert.deepEqual(dbVerdict(await tampered(both)), [false, 7, 'removed', 'expected seq 7, found seq 8: event(s) 7..7 were removed']);
});

test('database: every query key stored beside an event must agree with it, and a rewritten trail verifies', async () => {
  const same = await tampered(() => undefined, 7);
  assert.deepEqual([same.ok, same.events, same.lastSeq, same.unsignedTail], [true, 30, 30, 0], same.firstError?.message);
  const words = ['time/type/request_id', 'time/type/request_id', 'time/type/request_id', 'agent/decision', 'agent/decision'];
  for (const [k, value] of [[0, '2026-01-01T00:00:00.000Z'], [1, 'admin'], [2, 'req-x'], [3, 'someone-else'], [4, 'deny'], [3, null], [4, null]] as const) {
    const r = await tampered((events) => { events[8].keys[k] = value; }, 10);
    assert.deepEqual(dbVerdict(r), [false, 9, 'altered', `event 9: stored ${words[k]} keys differ from the event`], `key ${k} = ${value}`);
    assert.equal(r.events, 9, 'events after a definite problem are not counted');
  }
});

test('database: events without an agent or a decision keep null keys and verify', async () => {
  const dir = tempDir('aam-verify-mut-');
  const log = openAuditLog({ dataDir: dir, checkpointEvery: 10, batchSize: 10 });
  for (let i = 1; i <= 4; i++) assert.equal(log.record(sampleEvent(i, { identity: undefined, policy: undefined })), true);
  await log.flush();
  const trailPub = log.publicKeyPem();
  await log.close();
  assert.deepEqual(trailEvents(dir).map((e) => [e.keys[3], e.keys[4]]), Array(4).fill([null, null]), 'fixture: no agent, no decision');
  const r = verifyDatabase(dir, trailPub);
  assert.deepEqual([r.ok, r.events], [true, 4], r.firstError?.message);
  rewriteTrail(dir, (events) => { events[2].keys[3] = 'support-bot'; });
  assert.deepEqual(dbVerdict(verifyDatabase(dir, trailPub)), [false, 3, 'altered', 'event 3: stored agent/decision keys differ from the event']);
});

test('database: a block index that does not fit its lines, and a missing segment file, are named at the block\'s first event', async () => {
  for (const [keys, count] of [['[]', 0], ['not json', 0]] as const) {
    const { dir, pub: trailPub } = await trailCopy();
    rewriteTrail(dir, () => undefined, 10);
    const db = new DatabaseSync(join(dir, 'audit.db'));
    db.prepare('UPDATE audit_blocks SET keys = ? WHERE first_seq = 11').run(keys);
    db.close();
    assert.deepEqual(dbVerdict(verifyDatabase(dir, trailPub)), [false, 11, 'altered', `block of events 11..20 holds 10 lines, ${count} keys and 10 hashes: its segment bytes or index row were edited`]);
  }
  {
    // The last block claims more events than it holds lines.
    const { dir, pub: trailPub } = await trailCopy();
    rewriteTrail(dir, () => undefined, 10);
    const db = new DatabaseSync(join(dir, 'audit.db'));
    db.prepare('UPDATE audit_blocks SET last_seq = 35 WHERE first_seq = 21').run();
    db.close();
    assert.deepEqual(dbVerdict(verifyDatabase(dir, trailPub)), [false, 21, 'altered', 'block of events 21..35 holds 10 lines, 10 keys and 10 hashes: its segment bytes or index row were edited']);
  }
  const { dir, pub: trailPub } = await trailCopy();
  rewriteTrail(dir, () => undefined, 10);
  const seg = readdirSync(dir).filter((n) => n.startsWith('audit-segment-'));
  assert.equal(seg.length, 1, 'fixture: one segment file');
  rmSync(join(dir, seg[0]));
  const r = verifyDatabase(dir, trailPub);
  assert.deepEqual(dbVerdict(r), [false, 1, 'removed', `events 1..10: audit segment file ${seg[0]} cannot be read (ENOENT): the events it held are missing`]);
  assert.deepEqual([r.events, r.lastSeq], [0, 0]);
});

test('database: a key given that did not sign the checkpoints; a key file that vouches for its own outside checkpoint when the stored keys are gone', async () => {
  const { dir, pub: trailPub } = await trailCopy();
  const stranger = newKey();
  const r = verifyDatabase(dir, stranger.publicKeyPem);
  assert.deepEqual(dbVerdict(r), [false, 10, 'bad_checkpoint', 'checkpoint at tree size 10 has an invalid signature (forged or edited)']);
  assert.deepEqual([r.keySource, r.unsignedTail], ['given', 30]);
  const own = trailCheckpoints(dir).find((c) => c.tree_size === 20)!;
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.exec("DELETE FROM audit_meta WHERE key LIKE 'public_key:%'");
  db.close();
  const fileOnly = verifyDatabase(dir, undefined, undefined, own);
  assert.deepEqual([fileOnly.ok, fileOnly.keySource, fileOnly.outside?.covered], [true, 'key_file', true], fileOnly.firstError?.message);
  assert.equal(verifyDatabase(dir, trailPub, undefined, own).ok, true);
  // A validly signed outside checkpoint for another event at 15 pins the trail there.
  const pin = signCheckpoint(loadOrCreateSigningKey(signingKeyPath(dir)), 15, 'd'.repeat(64), 'periodic');
  assert.deepEqual(dbVerdict(verifyDatabase(dir, trailPub, undefined, pin)), [false, 15, 'altered', `event 15 is not the event the outside checkpoint (signed ${pin.time}) vouches for at tree size 15: the trail was rewritten up to here, or the checkpoint belongs to another trail`]);
});

test('database: after a retention cut the chain starts at the signed retention checkpoint; a forged one is no anchor', async () => {
  for (const forge of [false, true]) {
    const { dir, pub: trailPub } = await trailCopy();
    rewriteTrail(dir, () => undefined, 10);
    const head = trailEvents(dir)[9].hash;
    const key = loadOrCreateSigningKey(signingKeyPath(dir));
    const anchor = signCheckpoint(key, 10, head, 'retention');
    const db = openAuditDb(dir);
    db.prepare('DELETE FROM audit_blocks WHERE first_seq = 1').run();
    insertCheckpoint(db, forge ? { ...anchor, head_hash: 'a'.repeat(64) } : anchor);
    db.close();
    const r = verifyDatabase(dir, trailPub);
    if (!forge) {
      assert.deepEqual([r.ok, r.anchor, r.events, r.firstSeq, r.lastSeq, r.checkpoints], [true, { tree_size: 10, type: 'retention' }, 20, 11, 30, 4], r.firstError?.message);
      continue;
    }
    assert.deepEqual(dbVerdict(r), [false, 1, 'removed', 'expected seq 1, found seq 11: event(s) 1..10 were removed']);
    assert.equal(r.anchor, 'genesis');
  }
});

test('database: migrated blocks (lines stored sealed) verify and catch an edit; an unreadable segment is an error, not a verdict', async () => {
  const { dir, pub: trailPub } = await trailCopy();
  // The first 10 events as an older version stored them: each line its complete sealed text.
  const sealFirst = (events: TrailEvent[]) => events.map((e, i) => (i < 10 ? { ...e, line: sealedText(e.line, i + 1, e.prev, e.hash), sealed: true } : e));
  rewriteTrail(dir, sealFirst, 10);
  assert.equal(trailEvents(dir)[3].line.startsWith('{"seq":4,'), true, 'fixture: a sealed line');
  const ok = verifyDatabase(dir, trailPub);
  assert.deepEqual([ok.ok, ok.events, ok.lastSeq], [true, 30, 30], ok.firstError?.message);
  rewriteTrail(dir, (events) => { events[3] = { ...events[3], line: events[3].line.replace('"status":200', '"status":500') }; }, 10);
  assert.deepEqual(dbVerdict(verifyDatabase(dir, trailPub)), [false, 4, 'altered', 'event 4: content does not match its hash (a field was edited)']);
  // A segment that exists but cannot be read as a file is an I/O error for the operator, not tampering.
  const seg = readdirSync(dir).filter((n) => n.startsWith('audit-segment-'));
  assert.equal(seg.length, 1);
  rmSync(join(dir, seg[0]));
  mkdirSync(join(dir, seg[0]));
  assert.throws(() => verifyDatabase(dir, trailPub), /EISDIR/);
});

/** `n` events chained from genesis as the writer seals them, built here (no writer thread). */
function chainOf(n: number): TrailEvent[] {
  const out: TrailEvent[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const { json: line, cols } = encodeEvent(sampleEvent(seq), Date.UTC(2026, 0, 1, 0, 0, 0, seq));
    const hash = chainHash(line, seq, prev);
    out.push({ line, prev, hash, keys: [...cols], sealed: false });
    prev = hash;
  }
  return out;
}

/** A copy of the small trail holding `events` instead (one per block), without its checkpoints. */
async function trailOf(events: TrailEvent[]): Promise<ReturnType<typeof verifyDatabase>> {
  const { dir, pub: trailPub } = await trailCopy();
  const db = new DatabaseSync(join(dir, 'audit.db'));
  db.exec('DELETE FROM audit_checkpoints');
  db.close();
  rewriteTrail(dir, () => events, 1);
  return verifyDatabase(dir, trailPub);
}

test('database: a moved line is looked for up to 5000 places away, and after 20 edited lines no more (bounded work)', async () => {
  const chain = chainOf(5002);
  assert.equal((await trailOf(chain)).ok, true, 'fixture: the built chain verifies');
  // Event 1 moved exactly 5000 places down: found, so the trail is reordered, not missing event 1.
  const moved = [...chain.slice(1, 5001), chain[0], chain[5001]];
  assert.deepEqual(dbVerdict(await trailOf(moved)), [false, 1, 'reordered', 'seq 1 comes after seq 2: events were reordered']);
  // Event 5 edited, then 19 more edited lines: 20 searches in vain use the budget up, so the
  // untouched copy of event 5 that follows is taken at its position, not as a second seq 5.
  const small = chainOf(30);
  const edited = (e: TrailEvent): TrailEvent => ({ ...e, line: e.line.replace('"status":200', '"status":500') });
  const bounded = [...small.slice(0, 4), ...small.slice(4, 24).map(edited), small[4], ...small.slice(24)];
  assert.deepEqual(dbVerdict(await trailOf(bounded)), [false, 5, 'altered', 'event 5: content does not match its hash (a field was edited)']);
  // With one edited line fewer the copy is still looked for and found: two events claim seq 5.
  const within = [...small.slice(0, 4), ...small.slice(4, 23).map(edited), small[4], ...small.slice(23)];
  assert.deepEqual(dbVerdict(await trailOf(within)), [false, 5, 'inserted', 'two events claim seq 5: an event was inserted']);
});
