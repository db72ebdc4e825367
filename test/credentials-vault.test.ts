import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, utimesSync } from 'node:fs';
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

const tmp = () => mkdtempSync(join(tmpdir(), 'aam-vault-'));

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
  assert.equal(admin.set('sf', SECRET1).version, 1);
  admin.close();

  const rotations: unknown[] = [];
  const vault = openVault({ dataDir: dir, db, config, env: {}, refreshMs: 0, onRotated: (...a) => rotations.push(a) });
  const inj = createInjector({ vault });
  const first = await inj.injectionFor('sf');
  assert.equal(first.headers.authorization, `Bearer ${SECRET1}`);
  assert.equal(first.credential.version, 1);

  // Rotation from the same process: next injection uses v2; the in-flight result keeps v1.
  assert.equal(vault.set('sf', SECRET2).version, 2);
  const second = await inj.injectionFor('sf');
  assert.equal(second.headers.authorization, `Bearer ${SECRET2}`);
  assert.equal(second.credential.version, 2);
  assert.equal(first.headers.authorization, `Bearer ${SECRET1}`);

  // Rotation by another process (the CLI): picked up by refresh().
  const other = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0 });
  other.set('sf', 'stored-plaintext-NEEDLE-three');
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

test('wrong master key: refuses to open with a clear error, before anything is served', () => {
  const dir = tmp();
  const config = cfg([cred('sf', '{ stored: true }')]);
  const keyA = Buffer.alloc(32, 1).toString('base64');
  const keyB = Buffer.alloc(32, 2).toString('base64');
  const v = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { AAM_MASTER_KEY: keyA }, refreshMs: 0, strict: false });
  v.set('sf', 'some-stored-secret-value');
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

test('set refuses non-stored credentials and empty secrets', () => {
  const dir = tmp();
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config: cfg([cred('e', '{ env: X_E }')]), env: { X_E: 'env-value-12345678' }, refreshMs: 0 });
  assert.throws(() => vault.set('e', 'x'.repeat(20)), /only credentials with `stored: true` can be set/);
  assert.throws(() => vault.set('e', ''), /empty secret/);
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

test('scrubber covers every active value and is rebuilt after rotation', () => {
  const dir = tmp();
  const config = cfg([cred('s', '{ stored: true }'), cred('b', '{ env: BP, kind: basic, username: bob }')]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: { BP: 'bob-password-secret' }, refreshMs: 0, strict: false });
  vault.set('s', 'rotating-secret-one');
  assert.equal(vault.scrubber().scrub('x rotating-secret-one').text, 'x [REDACTED:s]');
  vault.set('s', 'rotating-secret-two');
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
