// How soon a key change made by another process (the CLI) reaches a running server, and what the
// server's key store costs per request (src/identity/keys.ts). README: a revoked key is refused
// on the next request; the change signal (inotify on <data>/signals/) makes that so, and a 1 s
// backstop covers a lost signal. The clock is stopped here (Date mocked) so the backstop cannot
// stand in for the signal, and each path is checked on its own. Database reads are counted to
// hold the hot path to its promise: a Map lookup, no SQLite per request.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { openDatabase, transaction } from '../src/store/sqlite.ts';
import { KeyStore, hashKey, openKeyStore } from '../src/identity/keys.ts';
import { inotifyWatchCount } from './helpers/inotify.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-keys-propagation-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const newDataDir = () => join(dir, String(n++));

/** Statement executions by SQL text, through a database handle the key store cannot tell apart. */
interface Counted { db: DatabaseSync; reads: Map<string, number> }

function counted(db: DatabaseSync): Counted {
  const reads = new Map<string, number>();
  const wrapStatement = (st: StatementSync, sql: string): StatementSync => new Proxy(st, {
    get(target, p) {
      const v = Reflect.get(target, p, target) as unknown;
      if (typeof v !== 'function') return v;
      if (p === 'get' || p === 'all' || p === 'run' || p === 'iterate') {
        return (...args: unknown[]) => { reads.set(sql, (reads.get(sql) ?? 0) + 1); return (v as (...a: unknown[]) => unknown).apply(target, args); };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
  const proxy = new Proxy(db, {
    get(target, p) {
      const v = Reflect.get(target, p, target) as unknown;
      if (p === 'prepare') return (sql: string) => wrapStatement(target.prepare(sql), sql);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { db: proxy, reads };
}

const versionReads = (c: Counted) => c.reads.get('PRAGMA data_version') ?? 0;
const tableReads = (c: Counted) => [...c.reads].filter(([sql]) => /^SELECT .* FROM keys$/.test(sql)).reduce((s, [, k]) => s + k, 0);

/** The server's view (watching for signals, or not) and a CLI process's store on its own connection. */
/** `first` runs in the CLI before the server starts (so no change signal of it is still on its way). */
function open(watch: boolean, first: (cli: KeyStore) => void = () => {}): { data: string; server: KeyStore; cli: KeyStore; count: Counted } {
  const data = newDataDir();
  const cliDb = openDatabase(data);
  const cli = openKeyStore(cliDb, data);
  first(cli);
  const serverDb = new DatabaseSync(join(data, 'aam.db'));
  const count = counted(serverDb);
  const server = openKeyStore(count.db, data, watch);
  after(() => { server.close(); cli.close(); serverDb.close(); cliDb.close(); });
  return { data, server, cli, count };
}

/** Stop the clock (Date only: timers and fs events keep running). */
function stopClock(t: TestContext): number {
  const now = Date.parse('2030-01-01T00:00:00.000Z');
  t.mock.timers.enable({ apis: ['Date'], now });
  return now;
}

/** Wait (real time) until cond holds; Date is stopped, so the deadline uses performance.now(). */
async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a key revoked by another process is refused as soon as its change signal arrives, without the 1 s backstop', async (t) => {
  const { server, cli } = open(true);
  const { key, secret } = cli.create('alice');
  stopClock(t);
  assert.ok(server.authenticate(secret).ok);
  cli.revoke(key.id);
  // The clock does not move: only the signal can make the server look again.
  await until('the server refuses the revoked key', () => !server.authenticate(secret).ok);
  const r = server.authenticate(secret);
  assert.ok(!r.ok && /was revoked at/.test(r.reason));
});

test('a rotation by another process ends the old secret (grace 0) as soon as its signal arrives; tokens from it too', async (t) => {
  const { server, cli } = open(true);
  const { key, secret } = cli.create('alice');
  stopClock(t);
  const minted = server.authenticate(secret);
  assert.ok(minted.ok);
  cli.rotate(key.id, 0);
  await until('the server refuses the rotated-away secret', () => !server.authenticate(secret).ok);
  assert.match(server.generationProblem(key.id, minted.generation) ?? '', /grace period ended/);
});

test('the server looks again only for the key signal: other files and other signals in the data dir cost nothing', async (t) => {
  let secret = '';
  const { data, server, count } = open(true, (cli) => { secret = cli.create('alice').secret; });
  stopClock(t);
  assert.ok(server.authenticate(secret).ok);
  const before = versionReads(count);
  // Other writers of the data dir (the audit trail, SQLite) and other stores' signals do not make
  // the server look again. (Waiting for events that must not come: a slow machine can only make
  // this pass without proving much, never fail.)
  const other = new DatabaseSync(join(data, 'other.db'));
  other.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
  other.close();
  writeFileSync(join(data, 'signals', 'approvals.changed'), '1');
  await new Promise((r) => setTimeout(r, 300));
  for (let i = 0; i < 100; i++) assert.ok(server.authenticate(secret).ok);
  assert.equal(versionReads(count), before, 'no database read per request while nothing changed');
});

test('without change signals, another process\'s revocation is refused exactly when the 1 s backstop comes due', (t) => {
  const { server, cli } = open(false);
  const { key, secret } = cli.create('alice');
  const t0 = stopClock(t);
  assert.ok(server.authenticate(secret).ok); // the server looks now
  cli.revoke(key.id);
  t.mock.timers.setTime(t0 + 1000);
  const r = server.authenticate(secret);
  assert.ok(!r.ok && /was revoked at/.test(r.reason), 'refused 1 s after the last look');
});

test('authentication reads no database per request: valid keys within the backstop, and the tables only when they changed', (t) => {
  const { server, cli, count } = open(false);
  const { secret } = cli.create('alice');
  const t0 = stopClock(t);
  assert.ok(server.authenticate(secret).ok);
  const v0 = versionReads(count), t0Reads = tableReads(count);
  for (let i = 0; i < 1000; i++) assert.ok(server.authenticate(secret).ok);
  assert.equal(versionReads(count), v0, '1,000 requests within the backstop read nothing');
  // The backstop comes due: one cheap version check; nothing changed, so the tables are not re-read.
  t.mock.timers.setTime(t0 + 1000);
  for (let i = 0; i < 1000; i++) assert.ok(server.authenticate(secret).ok);
  assert.equal(versionReads(count), v0 + 1, 'one version check per backstop period');
  assert.equal(tableReads(count), t0Reads, 'unchanged tables are not re-read');
});

test('wrong keys re-read the tables at most once per 10 ms; a key another process made a moment ago still works on its first try', (t) => {
  const { server, cli, count } = open(false);
  const t0 = stopClock(t);
  const v0 = versionReads(count);
  // Over-long secrets are refused before any lookup.
  for (let i = 0; i < 100; i++) assert.ok(!server.authenticate(`aam_${'x'.repeat(300)}${i}`).ok);
  assert.equal(versionReads(count), v0 + 1, 'only the first request\'s backstop check');
  for (let i = 0; i < 1000; i++) assert.ok(!server.authenticate(`aam_wrong${i}`).ok);
  assert.equal(versionReads(count), v0 + 2, 'a thousand wrong keys within 10 ms: one look');
  const { secret } = cli.create('alice');
  t.mock.timers.setTime(t0 + 9);
  assert.ok(!server.authenticate(`aam_wrong_again`).ok);
  assert.equal(versionReads(count), v0 + 2, 'within 10 ms of the last look: none');
  t.mock.timers.setTime(t0 + 10);
  const r = server.authenticate(secret);
  assert.ok(r.ok && r.key.agent === 'alice', 'a new key works on its first try 10 ms after the last miss');
});

test('the presented-secret cache remembers valid secrets and never holds more than 10,000', (t) => {
  const data = newDataDir();
  const db = openDatabase(data);
  after(() => db.close());
  const setup = openKeyStore(db, data);
  setup.close();
  // 10,005 keys written at once, as a bulk import would (creating them one by one re-reads the table each time).
  const secrets = Array.from({ length: 10_005 }, (_, i) => `aam_bulk${String(i).padStart(28, '0')}`);
  transaction(db, () => {
    const k = db.prepare('INSERT INTO keys (id, agent, name, created_at) VALUES (?, ?, NULL, ?)');
    const s = db.prepare('INSERT INTO key_secrets (hash, key_id, created_at, expires_at) VALUES (?, ?, ?, NULL)');
    const now = new Date().toISOString();
    secrets.forEach((secret, i) => { k.run(`key_${i}`, 'alice', now); s.run(hashKey(secret), `key_${i}`, now); });
  });
  const keys = openKeyStore(db, data);
  after(() => keys.close());
  stopClock(t);
  for (let i = 0; i < 3; i++) assert.ok(keys.authenticate(secrets[i]).ok);
  assert.equal(keys.cachedSecrets, 3, 'each valid secret is remembered once');
  for (const secret of secrets.slice(0, 10_000)) assert.ok(keys.authenticate(secret).ok);
  assert.equal(keys.cachedSecrets, 10_000);
  // A hit on a full cache changes nothing: the hot keys stay remembered.
  assert.ok(keys.authenticate(secrets[0]).ok);
  assert.equal(keys.cachedSecrets, 10_000, 'a hit never evicts');
  let most = 0;
  for (const secret of secrets.slice(10_000)) {
    assert.ok(keys.authenticate(secret).ok);
    most = Math.max(most, keys.cachedSecrets);
  }
  assert.ok(most <= 10_000, `bounded at 10,000 entries, held ${most}`);
  for (const secret of secrets.slice(0, 10)) assert.ok(keys.authenticate(secret).ok, 'still authenticates after the cache was emptied');
});

test('a key\'s generation (named in tokens minted from it) is a 22-character base64url id, stable across restarts', () => {
  const data = newDataDir();
  const db = openDatabase(data);
  after(() => db.close());
  const a = openKeyStore(db, data);
  const { secret } = a.create('alice');
  const g = a.authenticate(secret);
  a.close();
  assert.ok(g.ok);
  assert.match(g.generation, /^[A-Za-z0-9_-]{22}$/);
  const b = openKeyStore(db, data);
  const again = b.authenticate(secret);
  b.close();
  assert.ok(again.ok && again.generation === g.generation);
});

test('a process that watches for key changes and never closes its store still exits by itself', () => {
  const data = newDataDir();
  const script = `import { openDatabase } from './src/store/sqlite.ts'; import { openKeyStore } from './src/identity/keys.ts';
    const keys = openKeyStore(openDatabase(${JSON.stringify(data)}), ${JSON.stringify(data)}, true); keys.create('alice'); console.log('ok');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '..'), encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `the process did not exit: ${r.error?.message}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'ok');
});

test('rows left half-deleted by hand (sqlite3 without foreign keys) are refused or listed, never a crash', () => {
  const data = newDataDir();
  const db = openDatabase(data);
  after(() => db.close());
  const keys = openKeyStore(db, data);
  after(() => keys.close());
  const orphan = keys.create('alice');
  const g = keys.authenticate(orphan.secret);
  assert.ok(g.ok);
  const bare = keys.create('bob');
  // What an operator's manual cleanup in the sqlite3 shell (foreign keys off there by default) can leave.
  const manual = new DatabaseSync(join(data, 'aam.db'));
  manual.exec('PRAGMA foreign_keys = OFF');
  manual.prepare('DELETE FROM keys WHERE id = ?').run(orphan.key.id);
  manual.prepare('DELETE FROM key_secrets WHERE key_id = ?').run(bare.key.id);
  manual.close();
  const listed = keys.list(); // re-reads the tables
  const r = keys.authenticate(orphan.secret);
  assert.ok(!r.ok && r.reason === 'unknown API key', JSON.stringify(r));
  assert.equal(keys.generationProblem(orphan.key.id, g.generation), 'unknown API key');
  assert.equal(keys.generationValidUntil(g.generation), null);
  assert.deepEqual(listed.map((k) => [k.id, k.secrets, k.lastRotatedAt]), [[bare.key.id, 0, null]]);
});

test('the change signal is <data>/signals/keys.changed, and a closed store stops watching it', { skip: process.platform !== 'linux' }, () => {
  const data = newDataDir();
  const db = openDatabase(data);
  after(() => db.close());
  const watches = () => inotifyWatchCount() ?? 0;
  const before = watches();
  const keys = openKeyStore(db, data, true);
  assert.equal(keys.signalFile, join(data, 'signals', 'keys.changed'));
  assert.equal(watches(), before + 1, 'one watch, on the signals directory');
  keys.close();
  assert.equal(watches(), before, 'closing the store releases its watch (a reopened store must not pile up inotify watches)');
});
