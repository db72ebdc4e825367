// The master key (src/credentials/master-key.ts) as an operator meets it, written for the mutants
// `npm run mutate -- credentials -- --mutate src/credentials/master-key.ts` left alive: expected
// keys and fingerprints computed here independently (HMAC, HKDF, scrypt with aam's parameters),
// which text counts as a hex or base64 key, the salt and key files and their modes, and every
// refusal's message. No gateway: a mutant it kills costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, hkdfSync, scryptSync } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { loadMasterKey, parseMasterKeyEnv, keyFileProblem, MasterKey } from '../src/credentials/master-key.ts';
import { tempDir } from './helpers/temp.ts';

const RAW = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1));
const idOf = (key: Buffer): string => createHmac('sha256', key).update('aam master key id v1').digest('hex').slice(0, 16);

test('the fingerprint is HMAC-SHA256 of a fixed label, subkeys are HKDF-SHA256 per purpose, and neither shows the key', () => {
  const k = new MasterKey(RAW, 'env');
  assert.equal(k.keyId, idOf(RAW));
  assert.deepEqual(k.derive('vault v1'), Buffer.from(hkdfSync('sha256', RAW, Buffer.alloc(0), 'vault v1', 32)));
  assert.notDeepEqual(k.derive('vault v1'), k.derive('issuer v1'));
  assert.deepEqual(JSON.parse(JSON.stringify({ k })), { k: { source: 'env', keyId: idOf(RAW) } });
  assert.equal(inspect(k), `MasterKey(env, ${idOf(RAW)})`);
  // The key is copied: changing the caller's buffer later changes nothing.
  const mine = Buffer.from(RAW);
  const copy = new MasterKey(mine, 'env');
  mine.fill(0);
  assert.equal(copy.keyId, idOf(RAW));
  for (const n of [31, 33]) assert.throws(() => new MasterKey(Buffer.alloc(n), 'env'), { code: 'master_key', message: `master key must be 32 bytes, got ${n}` });
});

test('AAM_MASTER_KEY: exactly 64 hex digits or 32 bytes of base64 (spaces trimmed) are the key; anything else of 16+ characters is a passphrase', () => {
  const dir = tempDir('aam-mk-mut-');
  const hex = RAW.toString('hex');
  for (const v of [hex, ` ${hex}\n`, hex.toUpperCase(), RAW.toString('base64'), RAW.toString('base64url'), RAW.toString('base64').replace(/=+$/, '')]) {
    const k = parseMasterKeyEnv(v, dir);
    assert.deepEqual([k.source, k.keyId], ['env', idOf(RAW)], JSON.stringify(v));
  }
  // Text around a key, or base64 of another length, is a passphrase, stretched with scrypt.
  const salt = (): Buffer => Buffer.from(readFileSync(join(dir, 'master.salt'), 'utf8').trim(), 'base64');
  const stretched = (v: string): string => idOf(scryptSync(v, salt(), 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }));
  for (const v of [`x${hex}`, `${hex}x`, `x${RAW.toString('base64')}`, `#${RAW.toString('base64')}`, `${RAW.toString('base64')}x`, Buffer.alloc(31, 1).toString('base64'), `${RAW.toString('base64').replace(/=+$/, '')}===`]) {
    const k = parseMasterKeyEnv(v, dir);
    assert.deepEqual([k.source, k.keyId], ['env-passphrase', stretched(v)], v);
  }
  assert.equal(statSync(join(dir, 'master.salt')).mode & 0o777, 0o600);
  assert.equal(salt().length, 16);
  // Exactly 16 characters is long enough; 15 is not, and the error says how to make a key.
  assert.equal(parseMasterKeyEnv('a'.repeat(16), dir).source, 'env-passphrase');
  assert.throws(() => parseMasterKeyEnv('a'.repeat(15), dir), {
    code: 'master_key', message: 'AAM_MASTER_KEY is neither 32 bytes (hex or base64) nor a passphrase of at least 16 characters; generate one with `openssl rand -base64 32`',
  });
  // An empty AAM_MASTER_KEY is unset: the data dir's key file is used.
  const fileDir = tempDir('aam-mk-mut-');
  assert.equal(loadMasterKey({ dataDir: fileDir, env: { AAM_MASTER_KEY: '' } }).source, 'file-created');
});

test('key files: created 0600 with base64 of 32 bytes, read as hex or base64; every refusal says what is wrong and where', () => {
  const dir = tempDir('aam-mk-mut-');
  const path = join(dir, 'keys', 'master.key');
  assert.throws(() => loadMasterKey({ dataDir: join(dir, 'keys'), env: {}, create: false }), {
    code: 'master_key', message: `no master key: set AAM_MASTER_KEY or start the server once to create ${path}`,
  });
  const made = loadMasterKey({ dataDir: join(dir, 'keys'), env: {} });
  assert.deepEqual([made.source, made.path], ['file-created', path]);
  const text = readFileSync(path, 'utf8');
  assert.match(text, /^[A-Za-z0-9+/]{43}=\n$/);
  assert.equal(made.keyId, idOf(Buffer.from(text, 'base64')));
  assert.equal(statSync(join(dir, 'keys')).mode & 0o777, 0o700);
  const read = loadMasterKey({ dataDir: join(dir, 'keys'), env: {}, create: false });
  assert.deepEqual([read.source, read.path, read.keyId], ['file', path, made.keyId]);
  writeFileSync(path, `${RAW.toString('hex')}\n`);
  assert.equal(loadMasterKey({ dataDir: join(dir, 'keys'), env: {} }).keyId, idOf(RAW));
  writeFileSync(path, 'c2hvcnQ=\n');
  assert.throws(() => loadMasterKey({ dataDir: join(dir, 'keys'), env: {} }), {
    code: 'master_key', message: `master key file ${path} does not hold 32 bytes (hex or base64); restore the original file, or remove it only if no credentials were stored with it`,
  });
  // A directory where the key file should be, and a data dir that is a file.
  const odd = join(dir, 'odd');
  mkdirSync(join(odd, 'master.key'), { recursive: true, mode: 0o700 });
  assert.throws(() => loadMasterKey({ dataDir: odd, env: {} }), { code: 'master_key', message: `master key path ${join(odd, 'master.key')} is not a regular file` });
  const file = join(dir, 'plain');
  writeFileSync(file, 'x');
  assert.throws(() => loadMasterKey({ dataDir: file, env: {} }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'master_key');
    assert.match(e.message, new RegExp(`^cannot read master key file ${join(file, 'master.key')}: ENOTDIR`));
    return true;
  });
  assert.throws(() => loadMasterKey({ dataDir: file, env: {}, create: true }), { code: 'master_key' });
  assert.equal(keyFileProblem(path, 0o100600), undefined);
  assert.equal(keyFileProblem(path, 0o100640), `master key file ${path} is readable by group or others (mode 0640); anyone who can read it can decrypt every stored credential. Fix: chmod 600 ${path}`);
});
