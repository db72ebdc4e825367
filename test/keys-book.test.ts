// The embedded KeyBook (src/identity/keys.ts embeddedKeyBook): the seam the gateway and every CLI
// command use for virtual keys when no fleet store is configured. The whole lifecycle through it,
// so the seam cannot drop or mix up a call (the fleet KeyBook has its own tests).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { embeddedKeyBook, openKeyStore } from '../src/identity/keys.ts';
import { inotifyWatchCount } from './helpers/inotify.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-keys-book-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('create, authenticate, list, rotate, revoke and token generations through the embedded KeyBook', async () => {
  const db = openDatabase(dir);
  after(() => db.close());
  const book = embeddedKeyBook(openKeyStore(db, dir, true));
  const at = '2031-05-01T00:00:00.000Z';
  const { key, secret } = await book.create('alice', { name: 'ci', expiresAt: at });
  assert.equal(key.agent, 'alice');
  assert.equal(key.name, 'ci');
  const a = book.authenticate(secret);
  assert.ok(a.ok && a.key.id === key.id);
  const expired = book.authenticate(secret, Date.parse(at));
  assert.ok(!expired.ok && /expired at/.test(expired.reason), 'the time passed in is the one checked');
  assert.equal(book.get(key.id)?.id, key.id);
  assert.equal(book.get('key_0000000000000000'), undefined);
  assert.equal(book.generationValidUntil(a.ok ? a.generation : ''), Date.parse(at));
  assert.equal(book.generationProblem(key.id, a.ok ? a.generation : undefined), undefined);
  assert.match(book.generationProblem(key.id, a.ok ? a.generation : undefined, Date.parse(at)) ?? '', /expired at/);
  const rotated = await book.rotate(key.id, 0);
  assert.equal(rotated.key.id, key.id);
  assert.ok(book.authenticate(rotated.secret).ok);
  assert.ok(!book.authenticate(secret).ok, 'grace 0: the old secret is refused at once');
  const listed = await book.list();
  assert.deepEqual(listed.map((k) => [k.id, k.secrets]), [[key.id, 2]]);
  const revoked = await book.revoke(key.id);
  assert.ok(revoked.revokedAt);
  const r = book.authenticate(rotated.secret);
  assert.ok(!r.ok && /was revoked at/.test(r.reason));
  const watches = inotifyWatchCount();
  book.close();
  if (watches !== null) assert.equal(inotifyWatchCount(), watches - 1, 'closing the book closes the store (its watch)');
});
