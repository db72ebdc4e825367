// The audit writer's own PostgreSQL connection (src/store/pg-wire.ts) against the real cluster npm
// test starts (SCRAM-SHA-256 on TCP): a batch committed prepared and unprepared with its values as
// sent, an error in a batch failing that batch only, a wrong password failing with PostgreSQL's
// message, the server going away mid-batch (and a query it does not answer) failing the batch and
// the next one connecting again; which URLs it speaks for (the rest keep postgres.js). TLS is
// fleet-postgres-tls's: its replicas write their evidence through this connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore } from './helpers/fleet.ts';
import { PgWire, PgWireError, connectEvidence, wireTarget } from '../src/store/pg-wire.ts';

let store: FleetTestStore;
let sql: postgres.Sql;
const INSERT = (n: number) => `INSERT INTO t (id, v, w) VALUES ${Array.from({ length: n }, (_, i) => `($${3 * i + 1}::bigint, $${3 * i + 2}, $${3 * i + 3})`).join(',')}`;
const wire = (url: string, queryTimeoutMs = 5000): PgWire => {
  const w = connectEvidence(url, { queryTimeout: queryTimeoutMs / 1000, name: 'aam-wire-test' });
  assert.ok(w instanceof PgWire, 'a password URL without TLS files is spoken by PgWire');
  return w;
};

before(async () => {
  store = await fleetStore();
  sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  await sql`CREATE TABLE t (id bigint PRIMARY KEY, v text NOT NULL, w text)`;
});
after(async () => { await sql?.end(); await store?.drop(); });

test('batches commit prepared (Parse once) and unprepared, values as sent (UTF-8, NULL, long text)', async () => {
  const w = wire(store.databaseUrl);
  try {
    const long = 'x'.repeat(70_000);
    await w.unsafe(INSERT(2), [1, 'ünïcødé ✓', null, 2, long, 'b'], { prepare: true });
    await w.unsafe(INSERT(2), [3, 'c', 'd', 4, '', 'e'], { prepare: true });
    await w.unsafe(INSERT(1), [5, '"quoted", \\ and \'', 'f'], { prepare: false });
    const rows = await sql<Array<{ id: string; v: string; w: string | null }>>`SELECT id, v, w FROM t WHERE id <= 5 ORDER BY id`;
    assert.deepEqual(rows.map((r) => [Number(r.id), r.v, r.w]), [[1, 'ünïcødé ✓', null], [2, long, 'b'], [3, 'c', 'd'], [4, '', 'e'], [5, '"quoted", \\ and \'', 'f']]);
    const [named] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'aam-wire-test'`;
    assert.equal(named.n, 1, 'one connection, named as postgres.js names it');
  } finally { await w.end(); }
});

test('an error in a batch fails that batch with PostgreSQL\'s code; the connection and its statements go on', async () => {
  const w = wire(store.databaseUrl);
  try {
    await w.unsafe(INSERT(1), [10, 'a', null], { prepare: true });
    await assert.rejects(w.unsafe(INSERT(1), [10, 'again', null], { prepare: true }), (e: unknown) => e instanceof PgWireError && e.code === '23505' && /duplicate key/.test(e.message));
    // A statement whose Parse failed is not kept: the same text with a fixed table prepares again.
    await assert.rejects(w.unsafe('INSERT INTO nope (id) VALUES ($1::bigint)', [1], { prepare: true }), (e: unknown) => e instanceof PgWireError && e.code === '42P01');
    await sql`CREATE TABLE nope (id bigint)`;
    await w.unsafe('INSERT INTO nope (id) VALUES ($1::bigint)', [1], { prepare: true });
    await w.unsafe(INSERT(1), [11, 'b', null], { prepare: true });
    // Pipelined: both sent before either is answered, answered in order, the failing one alone fails.
    const [a, b, c] = await Promise.allSettled([
      w.unsafe(INSERT(1), [12, 'c', null], { prepare: true }),
      w.unsafe(INSERT(1), [12, 'dup', null], { prepare: true }),
      w.unsafe(INSERT(1), [13, 'd', null], { prepare: true }),
    ]);
    assert.deepEqual([a.status, b.status, c.status], ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual((await sql<Array<{ id: string }>>`SELECT id FROM t WHERE id BETWEEN 10 AND 13 ORDER BY id`).map((r) => Number(r.id)), [10, 11, 12, 13]);
  } finally { await w.end(); }
});

test('a wrong password fails with PostgreSQL\'s message (28P01), every time, and does not connect', async () => {
  const bad = new URL(store.databaseUrl);
  bad.password = 'not-the-password';
  const w = wire(bad.toString());
  try {
    for (let i = 0; i < 2; i++) {
      await assert.rejects(w.unsafe(INSERT(1), [20, 'a', null], { prepare: true }), (e: unknown) => e instanceof PgWireError && e.code === '28P01' && /password authentication failed for user "aam"/.test(e.message));
    }
    assert.equal((await sql`SELECT 1 FROM t WHERE id = 20`).length, 0);
  } finally { await w.end(); }
});

test('the server going away mid-batch fails the batch (nothing committed); the next batch connects again and commits', async () => {
  let hold = false;
  const held: Array<() => void> = [];
  const proxy = await pgProxy(store.databaseUrl, (send, _conn, toServer) => { if (hold && toServer) held.push(send); else send(); });
  const w = wire(proxy.url);
  try {
    await w.unsafe(INSERT(1), [30, 'a', null], { prepare: true });
    hold = true;
    const cut = w.unsafe(INSERT(2), [31, 'b', null, 32, 'c', null], { prepare: true });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(held.length, 1, 'the batch left in one write');
    proxy.stop();
    await assert.rejects(cut, /closed|ECONNRESET/);
    assert.equal((await sql`SELECT 1 FROM t WHERE id IN (31, 32)`).length, 0);
    // Down: the next batch fails too (a refused connection), at once.
    await assert.rejects(w.unsafe(INSERT(1), [33, 'd', null], { prepare: true }));
    hold = false;
    proxy.start();
    // Back: the first attempt may still be inside the reconnect backoff (at most 1 s) but succeeds.
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      ok = await w.unsafe(INSERT(2), [31, 'b', null, 32, 'c', null], { prepare: true }).then(() => true, () => false);
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(ok, 'committed after the server came back');
    assert.equal((await sql`SELECT 1 FROM t WHERE id IN (31, 32)`).length, 2);
  } finally { await w.end(); proxy.close(); }
});

test('a batch PostgreSQL does not answer within the deadline fails, and the connection is closed (the next batch connects again)', { timeout: 20_000 }, async () => {
  const w = wire(store.databaseUrl, 300);
  const lock = await sql.reserve();
  try {
    await w.unsafe(INSERT(1), [40, 'a', null], { prepare: true });
    await lock`BEGIN`;
    await lock`LOCK TABLE t IN ACCESS EXCLUSIVE MODE`;
    const t0 = performance.now();
    await assert.rejects(w.unsafe(INSERT(1), [41, 'b', null], { prepare: true }), /did not answer within 300 ms/);
    assert.ok(performance.now() - t0 < 2000);
    await lock`ROLLBACK`;
    await w.unsafe(INSERT(1), [42, 'c', null], { prepare: true });
    assert.equal((await lock`SELECT 1 FROM t WHERE id = 42`).length, 1);
  } finally { lock.release(); await w.end(); }
});

test('which URLs the connection speaks for, and the TLS it uses: as postgres.js reads the URL', () => {
  const opts = (url: string) => (postgres(url) as postgres.Sql & { options: Parameters<typeof wireTarget>[0] }).options;
  const at = (url: string) => wireTarget(opts(url));
  const base = 'postgres://aam:pw@db.example:5433/aam';
  const plain = at(base);
  assert.ok(typeof plain !== 'string');
  assert.deepEqual([plain.host, plain.port, plain.database, plain.user, plain.pass, plain.tls], ['db.example', 5433, 'aam', 'aam', 'pw', false]);
  for (const [mode, tls, optional] of [['require', { rejectUnauthorized: false }, false], ['prefer', { rejectUnauthorized: false }, true], ['verify-full', {}, false], ['verify-ca', {}, false], ['disable', false, false]] as const) {
    const t = at(`${base}?sslmode=${mode}`);
    assert.ok(typeof t !== 'string');
    assert.deepEqual([t.tls, t.tlsOptional], [tls, optional], mode);
  }
  const files = { ca: 'PEM', checkServerIdentity: () => undefined };
  const withFiles = wireTarget({ ...opts(base), ssl: files });
  assert.ok(typeof withFiles !== 'string' && withFiles.tls === files, 'AAM_DATABASE_*_FILE options are used as given');
  assert.ok(typeof at(`${base}?channel_binding=disable`) !== 'string' && !(at(`${base}?channel_binding=disable`) as { binding: boolean }).binding);
  for (const [url, why] of [['postgres://aam:pw@a:1,b:2/aam', 'several hosts'], [`${base}?target_session_attrs=read-write`, 'target_session_attrs'],
    [`${base}?channel_binding=require`, 'channel_binding=require'], [`${base}?sslmode=require&sslnegotiation=direct`, 'sslnegotiation=direct'],
    ['postgres://aam@db/aam', 'no password in the URL (a password file)']] as const) {
    assert.equal(at(url), why, url);
  }
});

test('a server that does not prove it knows the password is refused: a wrong SCRAM signature, or "authenticated" before SCRAM ends', async () => {
  const { createServer } = await import('node:net');
  const msg = (type: string, body: Buffer) => { const h = Buffer.alloc(5); h.write(type, 0, 'latin1'); h.writeInt32BE(body.length + 4, 1); return Buffer.concat([h, body]); };
  const auth = (kind: number, text = '') => { const b = Buffer.alloc(4); b.writeInt32BE(kind); return msg('R', Buffer.concat([b, Buffer.from(text)])); };
  const ready = Buffer.concat([auth(0), msg('Z', Buffer.from('I'))]);
  for (const [mode, expected] of [['wrong signature', /did not prove it knows the password/], ['skip', /ready before it proved/]] as const) {
    const server = createServer((s) => {
      let step = 0;
      s.on('data', (d) => {
        step++;
        if (step === 1) return void s.write(auth(10, 'SCRAM-SHA-256\0\0')); // startup -> SASL
        if (step === 2) {
          if (mode === 'skip') return void s.write(ready);
          const nonce = /r=([^,\0]+)/.exec(d.toString('latin1'))![1];
          return void s.write(auth(11, `r=${nonce}srv,s=${Buffer.from('salt').toString('base64')},i=4096`));
        }
        if (step === 3) s.write(Buffer.concat([auth(12, `v=${Buffer.alloc(32).toString('base64')}`), ready]));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const w = wire(`postgres://aam:pw@127.0.0.1:${(server.address() as { port: number }).port}/aam`);
    try {
      await assert.rejects(w.unsafe(INSERT(1), [1, 'a', null], { prepare: true }), expected, mode);
    } finally { await w.end(); server.close(); }
  }
});
