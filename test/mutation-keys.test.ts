// Virtual-key authentication at the key store (src/identity/keys.ts), fast enough to run against
// every mutant of `npm run mutate -- keys`: which secret authenticates, until when, and why not.
// The end-to-end lifecycle through the CLI and the gateway is test/identity-keys.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openDatabase } from '../src/store/sqlite.ts';
import { KeyStore, openKeyStore } from '../src/identity/keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-mutation-keys-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A fresh data dir with its database and key store (the server's view, watching for changes). */
function fresh(): { data: string; db: DatabaseSync; keys: KeyStore } {
  const data = join(dir, String(n++));
  const db = openDatabase(data);
  const keys = openKeyStore(db, data, true);
  after(() => { keys.close(); db.close(); });
  return { data, db, keys };
}

function refused(r: ReturnType<KeyStore['authenticate']>): string {
  assert.equal(r.ok, false, 'the secret must be refused');
  return r.ok ? '' : r.reason;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a new key authenticates as its agent; a wrong, altered, empty or over-long secret is an unknown key', () => {
  const { keys } = fresh();
  const { key, secret } = keys.create('alice', { name: 'ci' });
  assert.match(secret, /^aam_[A-Za-z0-9_-]{32}$/);
  assert.match(key.id, /^key_[0-9a-f]{16}$/);
  const r = keys.authenticate(secret);
  assert.ok(r.ok);
  assert.equal(r.key.agent, 'alice');
  assert.equal(r.key.id, key.id);
  assert.equal(r.key.name, 'ci');
  assert.equal(r.key.revokedAt, null);
  assert.equal(r.key.expiresAt, null);
  // Twice: the second time comes from the presented-secret cache and must say the same.
  assert.ok(keys.authenticate(secret).ok);
  for (const wrong of [secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'), secret.slice(4), '', 'aam_', secret + 'x'.repeat(300)]) {
    assert.equal(refused(keys.authenticate(wrong)), 'unknown API key');
  }
  const other = keys.create('bob');
  assert.notEqual(other.secret, secret);
  assert.notEqual(other.key.id, key.id);
  const b = keys.authenticate(other.secret);
  assert.ok(b.ok && b.key.agent === 'bob');
});

test('keys are stored hash-only: the rows hold sha256 of the secret, never the secret', () => {
  const { db, keys } = fresh();
  const { key, secret } = keys.create('alice');
  const rows = db.prepare('SELECT * FROM key_secrets').all();
  assert.equal(rows.length, 1);
  assert.equal(rows[0].hash, sha256(secret));
  assert.equal(rows[0].key_id, key.id);
  const all = JSON.stringify([...rows, ...db.prepare('SELECT * FROM keys').all()]);
  assert.ok(!all.includes(secret) && !all.includes(secret.slice(4)), 'no plaintext secret in any key row');
});

test('a key past its expiry is refused from that instant on, naming the expiry; before it, it works', () => {
  const { keys } = fresh();
  const at = '2031-05-01T00:00:00.000Z';
  const { key, secret } = keys.create('alice', { expiresAt: at });
  assert.equal(key.expiresAt, at);
  const t = Date.parse(at);
  assert.ok(keys.authenticate(secret, t - 1).ok);
  assert.equal(refused(keys.authenticate(secret, t)), `API key ${key.id} expired at ${at}`);
  assert.match(refused(keys.authenticate(secret, t + 86_400_000)), /expired at 2031-05-01/);
  assert.ok(keys.authenticate(secret).ok, 'not expired today');
});

test('rotation: the old secret works through its grace period and is refused from its end on; the new one works', () => {
  const { keys } = fresh();
  const { key, secret: old } = keys.create('alice');
  const before = Date.now();
  const { secret: fresh1 } = keys.rotate(key.id, 60);
  const after1 = Date.now();
  assert.notEqual(fresh1, old);
  assert.ok(keys.authenticate(old).ok, 'old secret still works inside the grace period');
  assert.ok(keys.authenticate(fresh1).ok);
  const a = keys.authenticate(fresh1);
  assert.ok(a.ok && a.key.id === key.id && a.key.agent === 'alice', 'same key id and agent after rotation');
  // The grace period ends 60 s after the rotation: still valid just before, refused at its end.
  assert.ok(keys.authenticate(old, before + 59_000).ok);
  const why = refused(keys.authenticate(old, after1 + 60_000));
  assert.equal(why, `this secret of API key ${key.id} was rotated and its grace period ended; use the new secret`);
  assert.ok(keys.authenticate(fresh1, after1 + 3_600_000).ok, 'the new secret has no end');
  // Rotating again keeps the first old secret's earlier end (a later rotation never extends it).
  keys.rotate(key.id, 3600);
  assert.match(refused(keys.authenticate(old, after1 + 61_000)), /grace period ended/);
  assert.ok(keys.authenticate(fresh1, after1 + 61_000).ok, 'the previous secret got the new grace period');
});

test('rotation with grace 0 refuses the old secret at once', () => {
  const { keys } = fresh();
  const { key, secret: old } = keys.create('alice');
  const { secret: next } = keys.rotate(key.id, 0);
  assert.match(refused(keys.authenticate(old)), /was rotated and its grace period ended/);
  assert.ok(keys.authenticate(next).ok);
});

test('revocation refuses every secret of the key, naming when; a revoked key cannot be rotated back to life', () => {
  const { keys } = fresh();
  const { key, secret } = keys.create('alice');
  const { secret: next } = keys.rotate(key.id, 3600);
  const r = keys.revoke(key.id);
  assert.ok(r.revokedAt);
  assert.equal(refused(keys.authenticate(secret)), `API key ${key.id} was revoked at ${r.revokedAt}`);
  assert.match(refused(keys.authenticate(next)), /was revoked at/);
  assert.equal(keys.revoke(key.id).revokedAt, r.revokedAt, 'revoking again keeps the first time');
  assert.throws(() => keys.rotate(key.id, 60), new RegExp(`API key ${key.id} is revoked; create a new key instead`));
  assert.throws(() => keys.rotate('key_0000000000000000', 60), /no API key with id key_0000000000000000 \(see: aam keys list\)/);
  assert.throws(() => keys.revoke('key_0000000000000000'), /no API key with id key_0000000000000000/);
  assert.equal(keys.get('key_0000000000000000'), undefined);
  assert.equal(keys.get(key.id)?.revokedAt, r.revokedAt);
});

test('tokens minted from a secret live exactly as long as that secret (generation)', () => {
  const { keys } = fresh();
  const at = '2031-05-01T00:00:00.000Z';
  const { key, secret: old } = keys.create('alice', { expiresAt: at });
  const first = keys.authenticate(old);
  assert.ok(first.ok);
  const g1 = first.generation;
  assert.ok(!g1.includes(sha256(old)) && !sha256(old).includes(g1), 'the generation does not reveal the lookup hash');
  assert.equal(keys.generationProblem(key.id, g1), undefined);
  assert.equal(keys.generationValidUntil(g1), Date.parse(at), 'a key expiry bounds its tokens');

  const rotatedAt = Date.now();
  const { secret: next } = keys.rotate(key.id, 60);
  const second = keys.authenticate(next);
  assert.ok(second.ok);
  const g2 = second.generation;
  assert.notEqual(g2, g1, 'each secret is its own generation');
  assert.equal(keys.generationValidUntil(g2), Date.parse(at));
  const end = keys.generationValidUntil(g1);
  assert.ok(end !== null && end >= rotatedAt + 60_000 && end <= Date.now() + 60_000, 'the old generation ends with its grace period');
  assert.equal(keys.generationProblem(key.id, g1), undefined, 'valid inside the grace period');
  assert.match(keys.generationProblem(key.id, g1, end)!, /was rotated and its grace period ended/);
  assert.equal(keys.generationProblem(key.id, g2, end), undefined);
  assert.match(keys.generationProblem(key.id, g2, Date.parse(at))!, /expired at/);

  assert.match(keys.generationProblem(key.id, undefined)!, new RegExp(`names API key ${key.id} but not which of its secrets`));
  assert.equal(keys.generationProblem(key.id, 'no-such-generation'), `the secret of API key ${key.id} this token was minted from no longer exists`);
  assert.equal(keys.generationValidUntil('no-such-generation'), null);
  const other = keys.create('bob');
  const og = keys.authenticate(other.secret);
  assert.ok(og.ok);
  assert.equal(keys.generationValidUntil(og.generation), null, 'no expiry and no rotation: no end');
  assert.match(keys.generationProblem(key.id, og.generation)!, /no longer exists/, "another key's generation does not vouch for this key");
  keys.revoke(other.key.id);
  assert.match(keys.generationProblem(other.key.id, og.generation)!, /was revoked/);
});

test('another process (the CLI) creating, rotating or revoking keys takes effect in the running server', async () => {
  const { data, keys } = fresh();
  const cliDb = new DatabaseSync(join(data, 'aam.db'));
  const cli = openKeyStore(cliDb, data);
  after(() => { cli.close(); cliDb.close(); });
  // A key created a moment ago elsewhere authenticates on the first try.
  const { key, secret } = cli.create('alice');
  const r = keys.authenticate(secret);
  assert.ok(r.ok && r.key.agent === 'alice');
  const { secret: next } = cli.rotate(key.id, 0);
  assert.ok(keys.authenticate(next).ok);
  await until('the server refuses the rotated secret', () => !keys.authenticate(secret).ok);
  cli.revoke(key.id);
  await until('the server refuses the revoked key', () => !keys.authenticate(next).ok);
  assert.match(refused(keys.authenticate(next)), /was revoked at/);
});

test('without change signals (no inotify), the server still sees a revocation by another process within its 1 s backstop', async () => {
  const { data, keys } = fresh();
  const serverDb = new DatabaseSync(join(data, 'aam.db'));
  const server = openKeyStore(serverDb, data, false);
  after(() => { server.close(); serverDb.close(); });
  const { key, secret } = keys.create('alice');
  assert.ok(server.authenticate(secret).ok);
  keys.revoke(key.id);
  await until('the server refuses the revoked key', () => !server.authenticate(secret).ok);
  assert.match(refused(server.authenticate(secret)), /was revoked at/);
});

test('a token minted from a key that another process revoked or rotated away is refused by the running server', async () => {
  const { data, keys: server } = fresh();
  const cliDb = new DatabaseSync(join(data, 'aam.db'));
  const cli = openKeyStore(cliDb, data);
  after(() => { cli.close(); cliDb.close(); });
  const { key, secret } = cli.create('alice');
  const minted = server.authenticate(secret);
  assert.ok(minted.ok);
  // Token checks (no key presented) must see the change on their own.
  const { secret: next } = cli.rotate(key.id, 0);
  await until('the rotated-away generation is refused', () => server.generationProblem(key.id, minted.generation) !== undefined);
  assert.match(server.generationProblem(key.id, minted.generation)!, /grace period ended/);
  const current = cli.authenticate(next);
  assert.ok(current.ok);
  cli.revoke(key.id);
  await until('the revoked key is seen', () => server.get(key.id)?.revokedAt != null);
  assert.match(server.generationProblem(key.id, current.generation)!, /was revoked at/);
});

test('aam keys list through the server shows a key another process created a moment ago', () => {
  const { data, keys: server } = fresh();
  const cliDb = new DatabaseSync(join(data, 'aam.db'));
  const cli = openKeyStore(cliDb, data);
  after(() => { cli.close(); cliDb.close(); });
  assert.equal(server.list().length, 0);
  const { key } = cli.create('alice');
  assert.deepEqual(server.list().map((k) => k.id), [key.id]);
});

test('wrong secrets are never remembered, so they cannot fill or evict the presented-key cache', () => {
  const { keys } = fresh();
  const { secret } = keys.create('alice');
  assert.ok(keys.authenticate(secret).ok);
  for (let i = 0; i < 2000; i++) keys.authenticate(`aam_wrong${i}`);
  assert.equal(keys.cachedSecrets, 1);
  assert.ok(keys.authenticate(secret).ok);
});

test('aam keys list counts secrets and names the last rotation', () => {
  const { keys } = fresh();
  const { key } = keys.create('alice', { name: 'ci' });
  const lone = keys.create('bob');
  let l = keys.list();
  assert.equal(l.length, 2);
  const a = l.find((k) => k.id === key.id)!;
  assert.equal(a.secrets, 1);
  assert.equal(a.lastRotatedAt, null);
  assert.equal(a.name, 'ci');
  keys.rotate(key.id, 60);
  l = keys.list();
  const r = l.find((k) => k.id === key.id)!;
  assert.equal(r.secrets, 2);
  assert.ok(r.lastRotatedAt && Date.parse(r.lastRotatedAt) >= Date.parse(r.createdAt));
  assert.equal(l.find((k) => k.id === lone.key.id)!.secrets, 1);
});
