// Console session lifetimes in the store, on a clock the test moves: the absolute maximum
// (AAM_CONSOLE_SESSION_MAX), the idle timeout (AAM_CONSOLE_IDLE_TIMEOUT, a use noted at most every
// minute), every person's session living to the maximum, renewed as its ID token runs out (with a
// refresh token, or re-authorized silently without one), a session stored before that ending with
// its ID token, a renewed session not
// brought back once signed out, and one renewal claim at a time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { createSqliteSessionStore, sessionLimitsFrom, MAX_SESSION_MS, IDLE_SESSION_MS, type NewSession } from '../src/console/sessions.ts';

const H = 3600_000;
const M = 60_000;

function store(limits = { maxMs: 12 * H, idleMs: H }) {
  let t = 1_000_000_000_000;
  const s = createSqliteSessionStore(new DatabaseSync(':memory:'), () => t, limits);
  return { s, at: (ms: number) => { t += ms; }, now: () => t };
}
const person = (o: Partial<NewSession>): NewSession => ({ kind: 'oidc', sub: 'olga', email: 'olga@example.com', groups: ['platform'], expiresAt: 0, ...o });

test('limits from the environment: defaults 12 h and 1 h, durations like 30m, and a bad value refused naming the variable', () => {
  assert.deepEqual(sessionLimitsFrom({}), { maxMs: MAX_SESSION_MS, idleMs: IDLE_SESSION_MS });
  assert.deepEqual([MAX_SESSION_MS, IDLE_SESSION_MS], [12 * H, H]);
  assert.deepEqual(sessionLimitsFrom({ AAM_CONSOLE_SESSION_MAX: '8h', AAM_CONSOLE_IDLE_TIMEOUT: '30m' }), { maxMs: 8 * H, idleMs: 30 * M });
  assert.throws(() => sessionLimitsFrom({ AAM_CONSOLE_IDLE_TIMEOUT: 'soon' }), /invalid AAM_CONSOLE_IDLE_TIMEOUT "soon": use e\.g\. 90s, 15m/);
});

test('a person\'s session lives to the maximum, renewed as the ID token runs out, with a refresh token or without one (silently re-authorized)', async () => {
  const { s, at, now } = store();
  const plain = await s.create(person({ expiresAt: now() + 5 * M, idToken: 'x.y.z' }));
  assert.equal(plain.session.expiresAt, now() + 12 * H);
  assert.deepEqual([plain.session.idExp, plain.session.renewAt], [now() + 5 * M, now() + 4 * M]);
  const renewable = await s.create(person({ expiresAt: now() + 5 * M, refreshToken: 'rt-secret-0123456789' }));
  assert.equal(renewable.session.expiresAt, now() + 12 * H);
  assert.equal(renewable.session.idExp, now() + 5 * M);
  assert.equal(renewable.session.renewAt, now() + 4 * M, 'a minute before the ID token runs out');
  const short = await s.create(person({ expiresAt: now() + 4000, refreshToken: 'rt' }));
  assert.equal(short.session.renewAt, now() + 3000, 'a quarter of a short token\'s life before');
  // A record stored before sessions without a refresh token were renewed: it ends with its ID token.
  const db = new DatabaseSync(':memory:');
  let t = now();
  const old = createSqliteSessionStore(db, () => t);
  const made = await old.create(person({ expiresAt: t + 5 * M, idToken: 'x.y.z' }));
  const { idExp: _e, renewAt: _r, ...before } = JSON.parse((db.prepare('SELECT record FROM console_session').get() as { record: string }).record) as Record<string, unknown>;
  db.prepare('UPDATE console_session SET record = ?').run(JSON.stringify({ ...before, expiresAt: t + 5 * M }));
  assert.equal((await old.get(made.id))?.renewAt, undefined, 'nothing renews it');
  at(5 * M);
  t = now();
  assert.equal(await old.get(made.id), undefined);
  assert.equal((await s.get(plain.id))?.idToken, 'x.y.z', 'still there, to be re-authorized');
  assert.equal((await s.get(renewable.id))?.refreshToken, 'rt-secret-0123456789', 'still there, to be renewed');
  const long = await s.create(person({ expiresAt: now() + 24 * H, idToken: 'x.y.z' }));
  assert.equal(long.session.expiresAt, now() + 12 * H, 'an ID token longer than the maximum does not lengthen it');
});

test('the idle timeout ends a session unused for an hour; each use (noted at most every minute) keeps it going, up to the maximum', async () => {
  const { s, at } = store({ maxMs: 3 * H, idleMs: H });
  const { id } = await s.create({ kind: 'admin-token', sub: 'admin-token', groups: [], expiresAt: Infinity, tokenTag: 't' });
  for (let i = 0; i < 3; i++) { at(50 * M); assert.ok(await s.get(id), `used after 50 min (${i})`); }
  at(50 * M);
  assert.equal(await s.get(id), undefined, 'the maximum (3 h) ends it however busy');
  const idle = await s.create({ kind: 'admin-token', sub: 'admin-token', groups: [], expiresAt: Infinity, tokenTag: 't' });
  at(H + 1);
  assert.equal(await s.get(idle.id), undefined, 'an hour unused');
  // A passive read (the live audit tail re-checking its reader) finds the session but is not a use.
  const tailed = await s.create({ kind: 'admin-token', sub: 'admin-token', groups: [], expiresAt: Infinity, tokenTag: 't' });
  at(50 * M);
  assert.ok(await s.get(tailed.id, true), 'still live at 50 min');
  at(11 * M);
  assert.equal(await s.get(tailed.id, true), undefined, 'an hour after its last real use, however often it was read passively');
});

test('a renewed session is stored in place, not brought back once signed out; one renewal claim at a time', async () => {
  const { s, at } = store();
  const { id, session } = await s.create(person({ expiresAt: Date.now() + 5 * M, refreshToken: 'rt-1' }));
  assert.equal(await s.replace(id, { ...session, refreshToken: 'rt-2', groups: ['everyone'] }), true);
  assert.deepEqual([(await s.get(id))?.refreshToken, (await s.get(id))?.groups], ['rt-2', ['everyone']]);
  assert.equal(await s.claim(id, 15_000), true);
  assert.equal(await s.claim(id, 15_000), false, 'held');
  await s.release(id);
  assert.equal(await s.claim(id, 15_000), true, 'released');
  at(16_000);
  assert.equal(await s.claim(id, 15_000), true, 'a claim expires by itself');
  await s.delete(id);
  assert.equal(await s.replace(id, { ...session, refreshToken: 'rt-3' }), false);
  assert.equal(await s.get(id), undefined);
});
