import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { loadMasterKey, parseMasterKeyEnv } from '../src/credentials/master-key.ts';
import { CredentialError } from '../src/credentials/errors.ts';
import { tempDir } from './helpers/temp.ts';

const tmp = () => tempDir('aam-mk-');

test('first start creates master.key with mode 0600, second start reads the same key', () => {
  const dir = tmp();
  const a = loadMasterKey({ dataDir: dir, env: {} });
  assert.equal(a.source, 'file-created');
  assert.equal(statSync(join(dir, 'master.key')).mode & 0o777, 0o600);
  const b = loadMasterKey({ dataDir: dir, env: {} });
  assert.equal(b.source, 'file');
  assert.equal(b.keyId, a.keyId);
});

test('a key file readable by group or others is refused with a chmod hint', () => {
  const dir = tmp();
  loadMasterKey({ dataDir: dir, env: {} });
  const path = join(dir, 'master.key');
  for (const mode of [0o644, 0o640, 0o604]) {
    chmodSync(path, mode);
    assert.throws(() => loadMasterKey({ dataDir: dir, env: {} }), (e: unknown) => {
      assert.ok(e instanceof CredentialError);
      assert.equal(e.code, 'master_key');
      assert.match(e.message, /readable by group or others/);
      assert.ok(e.message.includes(`chmod 600 ${path}`));
      return true;
    });
  }
  chmodSync(path, 0o400);
  assert.doesNotThrow(() => loadMasterKey({ dataDir: dir, env: {} }));
});

test('AAM_MASTER_KEY as hex, base64 and passphrase; nothing written for hex/base64', () => {
  const dir = tmp();
  const raw = Buffer.alloc(32, 7);
  const hex = parseMasterKeyEnv(raw.toString('hex'), dir);
  const b64 = loadMasterKey({ dataDir: dir, env: { AAM_MASTER_KEY: raw.toString('base64') } });
  assert.equal(hex.keyId, b64.keyId);
  assert.throws(() => statSync(join(dir, 'master.key')));
  const p1 = loadMasterKey({ dataDir: dir, env: { AAM_MASTER_KEY: 'correct horse battery staple' } });
  const p2 = loadMasterKey({ dataDir: dir, env: { AAM_MASTER_KEY: 'correct horse battery staple' } });
  const p3 = loadMasterKey({ dataDir: dir, env: { AAM_MASTER_KEY: 'correct horse battery stapler' } });
  assert.equal(p1.source, 'env-passphrase');
  assert.equal(p1.keyId, p2.keyId);
  assert.notEqual(p1.keyId, p3.keyId);
  assert.throws(() => loadMasterKey({ dataDir: dir, env: { AAM_MASTER_KEY: 'short' } }), /at least 16 characters/);
});

test('the key never shows up when the object is printed or serialised', () => {
  const dir = tmp();
  const k = loadMasterKey({ dataDir: dir, env: {} });
  const fileText = readFileSync(join(dir, 'master.key'), 'utf8').trim();
  assert.ok(!inspect(k).includes(fileText));
  assert.ok(!JSON.stringify(k).includes(fileText));
});

test('a corrupt key file is refused', () => {
  const dir = tmp();
  writeFileSync(join(dir, 'master.key'), 'not a key\n', { mode: 0o600 });
  assert.throws(() => loadMasterKey({ dataDir: dir, env: {} }), /does not hold 32 bytes/);
});
