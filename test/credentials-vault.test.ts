import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, utimesSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import { parseConfigTexts } from '../src/config/load.ts';
import type { ConfigSet } from '../src/config/schema.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openVault } from '../src/credentials/vault.ts';
import { createInjector } from '../src/credentials/inject.ts';
import { readSecretFromStdin } from '../src/credentials/stdin.ts';
import { CredentialError } from '../src/credentials/errors.ts';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'aam-vault-')); dirs.push(d); return d; };

function cfg(docs: string[]): ConfigSet {
  const text = docs.map((d) => `apiVersion: access.envisionai.dev/v1\n${d}`).join('\n---\n');
  return parseConfigTexts([{ file: 'test.yaml', text }]);
}
const cred = (name: string, spec: string) => `kind: Credential\nmetadata: { name: ${name} }\nspec: ${spec}`;

test('env source: resolves, injects as bearer by default, reports version 1', async () => {
  const dir = tmp();
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('openai', '{ env: TEST_OPENAI }')]), env: { TEST_OPENAI: 'sk-env-value-123456' }, refreshMs: 0 });
  const inj = createInjector({ vault });
  const r = await inj.injectionFor('openai');
  assert.deepEqual(r.headers, { authorization: 'Bearer sk-env-value-123456' });
  assert.deepEqual(r.credential, { name: 'openai', version: 1, kind: 'api_key' });
  const x = await inj.injectionFor('openai', { defaultStyle: 'x-api-key' });
  assert.deepEqual(x.headers, { 'x-api-key': 'sk-env-value-123456' });
  const q = await inj.injectionFor('openai', { defaultStyle: 'query:key' });
  assert.deepEqual(q.query, { key: 'sk-env-value-123456' });
  vault.close();
});

test('missing env var: load error names the credential and the variable', () => {
  const dir = tmp();
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('anthropic', '{ env: NOPE_NOT_SET }')]), env: {}, refreshMs: 0 }), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    assert.equal(e.code, 'credential_config');
    assert.match(e.message, /Credential "anthropic": environment variable NOPE_NOT_SET is not set/);
    return true;
  });
});

test('aws.access_key_id_env that is not set: load error names the credential and the variable', () => {
  const dir = tmp();
  const config = cfg([cred('aws', '{ env: AWS_SECRET, aws: { access_key_id_env: AWS_KEY_ID } }')]);
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AWS_SECRET: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }, refreshMs: 0 }),
    /Credential "aws": environment variable AWS_KEY_ID \(aws.access_key_id_env\) is not set/);
  const ok = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AWS_SECRET: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', AWS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE' }, refreshMs: 0 });
  ok.close?.();
});

test('optional provider credential: missing env var is reported by tryResolve, not thrown', () => {
  const dir = tmp();
  const config = cfg([
    cred('oa', '{ env: NOPE_OA }'),
    'kind: Provider\nmetadata: { name: openai }\nspec: { type: openai, credential: oa, optional: true }',
  ]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0 });
  const r = vault.tryResolve('oa');
  assert.equal(r.ok, false);
  assert.ok(!r.ok && r.reason.includes('NOPE_OA'));
  assert.equal(vault.list()[0].status, 'missing');
  assert.equal(vault.tryResolve('unknown').ok, false);
  vault.close();
});

test('file source: read at load, re-read on change with a new version, missing file is a load error', async () => {
  const dir = tmp();
  const path = join(dir, 'token.txt');
  writeFileSync(path, 'file-secret-v1-abcdef\n');
  const rotations: unknown[] = [];
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('tok', `{ file: ${path}, inject: { header: X-Token, prefix: "Tok " } }`)]), env: {}, refreshMs: 0, onRotated: (...a) => rotations.push(a) });
  const inj = createInjector({ vault });
  const a = await inj.injectionFor('tok');
  assert.deepEqual(a.headers, { 'x-token': 'Tok file-secret-v1-abcdef' });
  assert.equal(a.credential.version, 1);
  writeFileSync(path, 'file-secret-v2-ghijkl\n');
  utimesSync(path, new Date(), new Date(Date.now() + 5000));
  vault.refresh();
  const b = await inj.injectionFor('tok');
  assert.deepEqual(b.headers, { 'x-token': 'Tok file-secret-v2-ghijkl' });
  assert.equal(b.credential.version, 2);
  assert.deepEqual(rotations, [['tok', 2, 'file']], 'the new version is reported (for the audit trail), never the value');
  // A vanished file keeps the last good value instead of breaking traffic.
  rmSync(path);
  vault.refresh();
  assert.equal((await inj.injectionFor('tok')).credential.version, 2);
  vault.close();
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('tok', `{ file: ${path} }`)]), env: {}, refreshMs: 0 }),
    /Credential "tok": file .*token\.txt cannot be read \(ENOENT\)/);
});

test('file source is picked up by the background poll', async () => {
  const dir = tmp();
  const path = join(dir, 'k');
  writeFileSync(path, 'poll-secret-one-1234');
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('k', `{ file: ${path} }`)]), env: {}, refreshMs: 20 });
  writeFileSync(path, 'poll-secret-two-56789');
  utimesSync(path, new Date(), new Date(Date.now() + 5000));
  await new Promise((r) => setTimeout(r, 80));
  const inj = createInjector({ vault });
  assert.equal((await inj.injectionFor('k')).headers.authorization, 'Bearer poll-secret-two-56789');
  vault.close();
});

test('stored source: encrypted at rest (no plaintext in any db file), rotation without restart', async () => {
  const dir = tmp();
  const config = cfg([cred('sf', '{ stored: true }')]);
  const db = openDatabase(dir);
  // Not set yet: a clear error with the command that fixes it.
  assert.throws(() => openVault({ dataDir: dir, db, config, env: {}, refreshMs: 0 }), /aam credentials set sf/);
  const admin = openVault({ dataDir: dir, db, config, env: {}, refreshMs: 0, strict: false });
  const SECRET1 = 'stored-plaintext-NEEDLE-one';
  const SECRET2 = 'stored-plaintext-NEEDLE-two';
  assert.equal((await admin.set('sf', SECRET1)).version, 1);
  admin.close();

  const rotations: unknown[] = [];
  const vault = openVault({ dataDir: dir, db, config, env: {}, refreshMs: 0, onRotated: (...a) => rotations.push(a) });
  const inj = createInjector({ vault });
  const first = await inj.injectionFor('sf');
  assert.equal(first.headers.authorization, `Bearer ${SECRET1}`);
  assert.equal(first.credential.version, 1);

  // Rotation from the same process: next injection uses v2; the in-flight result keeps v1.
  assert.equal((await vault.set('sf', SECRET2)).version, 2);
  const second = await inj.injectionFor('sf');
  assert.equal(second.headers.authorization, `Bearer ${SECRET2}`);
  assert.equal(second.credential.version, 2);
  assert.equal(first.headers.authorization, `Bearer ${SECRET1}`);

  // Rotation by another process (the CLI): picked up by refresh().
  const other = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0 });
  await other.set('sf', 'stored-plaintext-NEEDLE-three');
  other.close();
  vault.refresh();
  assert.equal((await inj.injectionFor('sf')).credential.version, 3);
  assert.deepEqual(rotations, [['sf', 2, 'stored'], ['sf', 3, 'stored']]);

  const listed = vault.list();
  assert.equal(listed[0].name, 'sf');
  assert.equal(listed[0].source, 'stored');
  assert.equal(listed[0].version, 3);
  assert.ok(listed[0].last_used);
  const printed = JSON.stringify(listed) + inspect(vault, { depth: 5 }) + JSON.stringify(vault);
  assert.ok(!printed.includes('NEEDLE'), 'list/inspect must not show values');
  vault.close();
  db.exec('PRAGMA wal_checkpoint(FULL)');
  for (const f of readdirSync(dir)) {
    const bytes = readFileSync(join(dir, f));
    assert.equal(bytes.indexOf('NEEDLE'), -1, `plaintext found in ${f}`);
  }
});

test('wrong master key: refuses to open with a clear error, before anything is served', async () => {
  const dir = tmp();
  const config = cfg([cred('sf', '{ stored: true }')]);
  const keyA = Buffer.alloc(32, 1).toString('base64');
  const keyB = Buffer.alloc(32, 2).toString('base64');
  const v = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AAM_MASTER_KEY: keyA }, refreshMs: 0, strict: false });
  await v.set('sf', 'some-stored-secret-value');
  v.close();
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AAM_MASTER_KEY: keyB }, refreshMs: 0 }), (e: unknown) => {
    assert.ok(e instanceof CredentialError);
    assert.equal(e.code, 'master_key');
    assert.match(e.message, /wrong master key/);
    assert.ok(!e.message.includes(keyA) && !e.message.includes(keyB));
    return true;
  });
  // Also refused when nothing is stored yet but the store was initialised with another key.
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([]), env: { AAM_MASTER_KEY: keyB }, refreshMs: 0 }), /wrong master key/);
  const ok = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AAM_MASTER_KEY: keyA }, refreshMs: 0 });
  assert.equal(ok.tryResolve('sf').ok, true);
  ok.close();
});

// The documented layout of a stored credential (README, "Stored credentials at rest"): a row of
// credential_versions in data/aam.db holds AES-256-GCM's 12-byte nonce, ciphertext and 16-byte tag,
// under HKDF-SHA256(master key, no salt, info "aam credentials aes-256-gcm v1"), with additional
// data "aam-credential\0<name>\0<version>".
const MASTER = Buffer.from(Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff));
const masterEnv = { AAM_MASTER_KEY: MASTER.toString('base64') };
interface Row { name: string; version: number; nonce: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array }

function storedRows(dir: string): Row[] {
  const db = new DatabaseSync(join(dir, 'aam.db'));
  try { return db.prepare('SELECT name, version, nonce, ciphertext, tag FROM credential_versions ORDER BY name, version').all() as unknown as Row[]; } finally { db.close(); }
}

function updateRow(dir: string, name: string, version: number, cols: Pick<Row, 'nonce' | 'ciphertext' | 'tag'>): void {
  const db = new DatabaseSync(join(dir, 'aam.db'));
  try { db.prepare('UPDATE credential_versions SET nonce = ?, ciphertext = ?, tag = ? WHERE name = ? AND version = ?').run(cols.nonce, cols.ciphertext, cols.tag, name, version); } finally { db.close(); }
}

/** Decrypt a row with node:crypto alone, from the documented layout. */
function decryptIndependently(r: Row): string {
  const key = Buffer.from(hkdfSync('sha256', MASTER, Buffer.alloc(0), 'aam credentials aes-256-gcm v1', 32));
  const d = createDecipheriv('aes-256-gcm', key, r.nonce);
  d.setAAD(Buffer.from(`aam-credential\0${r.name}\0${r.version}`, 'utf8'));
  d.setAuthTag(r.tag);
  return Buffer.concat([d.update(r.ciphertext), d.final()]).toString('utf8');
}

async function storeSecrets(values: Array<[string, string]>): Promise<string> {
  const dir = tmp();
  const names = [...new Set(values.map(([n]) => n))];
  const v = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(names.map((n) => cred(n, '{ stored: true }'))), env: masterEnv, refreshMs: 0, strict: false });
  for (const [n, s] of values) await v.set(n, s);
  v.close();
  return dir;
}

const openStored = (dir: string, names: string[]) =>
  openVault({ dataDir: dir, db: openDatabase(dir), config: cfg(names.map((n) => cred(n, '{ stored: true }'))), env: masterEnv, refreshMs: 0 });

/** Opening refuses (before serving anything) with an error that names the credential and version, never a value. */
function assertRefused(dir: string, names: string[], name: string, version: number): void {
  assert.throws(() => openStored(dir, names), (e: unknown) => {
    assert.ok(e instanceof CredentialError, String(e));
    assert.deepEqual([e.code, e.credential], ['master_key', name]);
    assert.match(e.message, new RegExp(`cannot decrypt stored credential "${name}" version ${version}: the master key is wrong or the row was altered`));
    assert.match(e.message, new RegExp(`aam credentials set ${name}`), 'says how to fix it');
    assert.doesNotMatch(e.message, /NEEDLE/);
    return true;
  });
}

test('stored rows are AES-256-GCM in the documented layout: decrypted here with node:crypto alone', async () => {
  const dir = await storeSecrets([['sf', 'stored-NEEDLE-first-value'], ['sf', 'stored-NEEDLE-second-value'], ['other', 'other-NEEDLE-value-123']]);
  const rows = storedRows(dir);
  assert.deepEqual(rows.map((r) => `${r.name}@${r.version}`), ['other@1', 'sf@1', 'sf@2']);
  for (const r of rows) {
    assert.equal(r.nonce.length, 12, 'a 96-bit nonce');
    assert.equal(r.tag.length, 16, 'a 128-bit tag');
    assert.equal(Buffer.from(r.ciphertext).indexOf('NEEDLE'), -1);
  }
  assert.equal(new Set(rows.map((r) => Buffer.from(r.nonce).toString('hex'))).size, rows.length, 'a fresh nonce per row');
  assert.deepEqual(rows.map(decryptIndependently), ['other-NEEDLE-value-123', 'stored-NEEDLE-first-value', 'stored-NEEDLE-second-value']);
  // And aam reads back what it wrote.
  const vault = openStored(dir, ['sf', 'other']);
  assert.equal((await createInjector({ vault }).injectionFor('sf')).headers.authorization, 'Bearer stored-NEEDLE-second-value');
  vault.close();
});

test('the key check row is HMAC-SHA256 of "check" under its own HKDF subkey, written on the first open: a data dir keeps opening across upgrades, and another key is refused before any credential is stored', () => {
  const dir = tmp();
  openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([]), env: masterEnv, refreshMs: 0 }).close();
  const db = new DatabaseSync(join(dir, 'aam.db'));
  const meta = Object.fromEntries((db.prepare('SELECT k, v FROM credential_meta').all() as Array<{ k: string; v: string }>).map((r) => [r.k, r.v]));
  db.close();
  const subkey = Buffer.from(hkdfSync('sha256', MASTER, Buffer.alloc(0), 'aam credentials key check v1', 32));
  const keyId = createHmac('sha256', MASTER).update('aam master key id v1').digest('hex').slice(0, 16);
  assert.deepEqual(meta, { key_check: createHmac('sha256', subkey).update('check').digest('hex'), key_id: keyId });
  const other = Buffer.alloc(32, 9);
  const otherId = createHmac('sha256', other).update('aam master key id v1').digest('hex').slice(0, 16);
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([]), env: { AAM_MASTER_KEY: other.toString('base64') }, refreshMs: 0 }), {
    code: 'master_key',
    message: `wrong master key: stored credentials were encrypted with key ${keyId}, but AAM_MASTER_KEY holds key ${otherId}. Set AAM_MASTER_KEY (or restore master.key) to the original key; aam refuses to start rather than run without its credentials.`,
  });
  // A passphrase in AAM_MASTER_KEY is named as that variable too, not as a key file.
  const phrase = 'a long enough passphrase for aam';
  assert.throws(() => openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([]), env: { AAM_MASTER_KEY: phrase }, refreshMs: 0 }), (e: unknown) => {
    assert.ok(e instanceof CredentialError, String(e));
    assert.match(e.message, new RegExp(`^wrong master key: stored credentials were encrypted with key ${keyId}, but AAM_MASTER_KEY holds key [0-9a-f]{16}\\. `));
    return true;
  });
  // The right key still opens it (the check row is not rewritten by a refused open).
  openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([]), env: masterEnv, refreshMs: 0 }).close();
});

test('a flipped byte in a stored nonce, ciphertext or tag fails closed with a clear error', async () => {
  const dir = await storeSecrets([['sf', 'stored-NEEDLE-tamper-me-1234']]);
  const [row] = storedRows(dir);
  for (const col of ['nonce', 'ciphertext', 'tag'] as const) {
    const flipped = Buffer.from(row[col]);
    flipped[flipped.length >> 1] ^= 0x01;
    updateRow(dir, 'sf', 1, { ...row, [col]: flipped });
    assertRefused(dir, ['sf'], 'sf', 1);
  }
  updateRow(dir, 'sf', 1, row);
  const vault = openStored(dir, ['sf']);
  assert.equal((await createInjector({ vault }).injectionFor('sf')).headers.authorization, 'Bearer stored-NEEDLE-tamper-me-1234', 'the untouched row still works');
  vault.close();
});

test('rows swapped between credentials, or between versions, refuse to decrypt (the AAD binds name and version)', async () => {
  const dir = await storeSecrets([['alpha', 'alpha-NEEDLE-secret-aaaa'], ['beta', 'beta-NEEDLE-secret-bbbb']]);
  const [a, b] = storedRows(dir);
  updateRow(dir, 'alpha', 1, b);
  updateRow(dir, 'beta', 1, a);
  assertRefused(dir, ['alpha'], 'alpha', 1);
  assertRefused(dir, ['beta'], 'beta', 1);
  // One credential's older version moved over its newest: refused too (no silent rollback).
  const dir2 = await storeSecrets([['sf', 'sf-NEEDLE-version-one'], ['sf', 'sf-NEEDLE-version-two']]);
  const [v1, v2] = storedRows(dir2);
  updateRow(dir2, 'sf', 2, v1);
  updateRow(dir2, 'sf', 1, v2);
  assertRefused(dir2, ['sf'], 'sf', 2);
});

test('set refuses non-stored credentials and empty secrets', async () => {
  const dir = tmp();
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('e', '{ env: X_E }')]), env: { X_E: 'env-value-12345678' }, refreshMs: 0 });
  await assert.rejects(vault.set('e', 'x'.repeat(20)), /only credentials with `stored: true` can be set/);
  await assert.rejects(vault.set('e', ''), /empty secret/);
  vault.close();
});

test('list: names, sources, kinds, versions, warnings for inline and short values; never values', () => {
  const dir = tmp();
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([
    cred('demo', '{ value: tiny }'),
    cred('basic', '{ env: B_PASS, kind: basic, username: alice }'),
  ]), env: { B_PASS: 'alice-password-99' }, refreshMs: 0 });
  const [demo, basic] = vault.list();
  assert.equal(demo.source, 'value');
  assert.ok(demo.warnings.some((w) => /inline value/.test(w)));
  assert.ok(demo.warnings.some((w) => /shorter than 8 characters: it is not scrubbed/.test(w)));
  assert.equal(basic.kind, 'basic');
  assert.equal(basic.ref, 'B_PASS');
  assert.ok(!JSON.stringify(vault.list()).includes('alice-password-99'));
  vault.close();
});

test('reload swaps atomically and keeps the old credentials on failure', async () => {
  const dir = tmp();
  const env: Record<string, string> = { K1: 'first-value-1234567' };
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('k', '{ env: K1 }')]), env, refreshMs: 0 });
  assert.throws(() => vault.reload(cfg([cred('k', '{ env: K2_MISSING }')])), /K2_MISSING/);
  const inj = createInjector({ vault });
  assert.equal((await inj.injectionFor('k')).headers.authorization, 'Bearer first-value-1234567');
  env.K2 = 'second-value-7654321';
  vault.reload(cfg([cred('k', '{ env: K2 }')]));
  const r = await inj.injectionFor('k');
  assert.equal(r.headers.authorization, 'Bearer second-value-7654321');
  assert.equal(r.credential.version, 2);
  vault.close();
});

test('scrubber covers every active value and is rebuilt after rotation', async () => {
  const dir = tmp();
  const config = cfg([cred('s', '{ stored: true }'), cred('b', '{ env: BP, kind: basic, username: bob }')]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { BP: 'bob-password-secret' }, refreshMs: 0, strict: false });
  await vault.set('s', 'rotating-secret-one');
  assert.equal(vault.scrubber().scrub('x rotating-secret-one').text, 'x [REDACTED:s]');
  await vault.set('s', 'rotating-secret-two');
  assert.equal(vault.scrubber().scrub('x rotating-secret-two').text, 'x [REDACTED:s]');
  const basic = Buffer.from('bob:bob-password-secret').toString('base64');
  assert.equal(vault.scrubber().scrub(`Authorization: Basic ${basic}`).text, 'Authorization: Basic [REDACTED:b]');
  vault.close();
});

test('readSecretFromStdin strips one trailing newline and refuses empty input', async () => {
  assert.equal(await readSecretFromStdin(Readable.from([Buffer.from('abc'), Buffer.from('def\n')])), 'abcdef');
  assert.equal(await readSecretFromStdin(Readable.from(['-----BEGIN-----\nx\n-----END-----\n'])), '-----BEGIN-----\nx\n-----END-----');
  await assert.rejects(readSecretFromStdin(Readable.from(['\n'])), /no secret on stdin/);
});
