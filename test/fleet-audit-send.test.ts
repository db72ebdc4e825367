// Fleet mode, evidence at c=1: a request alone in flight starts its audit INSERT as soon as its
// evidence is recorded (send()), so the commit's round trip overlaps the work left before its
// answer; journaled() is still what the answer waits for, and it covers every event recorded,
// before send() and after it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';
import { migrate } from '../src/store/postgres.ts';
import { PgWire, connectEvidence, type EventWriter } from '../src/store/pg-wire.ts';
import { Socket } from 'node:net';

let store: FleetTestStore;
const realWrite = Socket.prototype.write;
/** Counts every socket write from now until stop(). */
function countWrites(): { n: number; stop(): void } {
  const c = { n: 0, stop: () => { Socket.prototype.write = realWrite; } };
  Socket.prototype.write = function (this: Socket, ...a: unknown[]) { c.n++; return (realWrite as (...x: unknown[]) => boolean).apply(this, a); } as typeof realWrite;
  return c;
}

/** The request ids of the trail's events whose id is LIKE `pattern`, in chain order. */
async function requestIdsLike(sql: postgres.Sql, pattern: string): Promise<string[]> {
  const rows = await sql<Array<{ request_id: string }>>`SELECT request_id FROM audit_trail WHERE request_id LIKE ${pattern} ORDER BY seq`;
  return rows.map((r) => r.request_id);
}

before(async () => { store = await fleetStore(); });
after(async () => { await store?.drop(); });

test('send(): the INSERT leaves in the same turn instead of at its end; events recorded while it is in flight are committed by the next, and journaled() waits for both', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const conn = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  // The writer as the log calls it: each statement it starts (postgres.js encodes it later), in order.
  const sent: string[] = [];
  const writer = new Proxy(conn, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      return key === 'unsafe' ? (...args: Parameters<typeof conn.unsafe>) => { sent.push(args[0]); return conn.unsafe(...args); } : v;
    },
    apply(target, self, args: unknown[]) {
      if (Array.isArray(args[0]) && 'raw' in args[0]) sent.push((args[0] as string[]).join('?').trim());
      return Reflect.apply(target, self, args) as unknown;
    },
  });
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `send-${randomBytes(3).toString('hex')}`, writer, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    for (let i = 0; i < 3; i++) {
      sent.length = 0;
      log.record({ type: 'admin', request_id: `send-${i}-a` });
      assert.equal(sent.length, 0, 'recorded only: the INSERT waits for the end of the turn');
      log.send();
      assert.deepEqual(sent.map((q) => q.slice(0, 24)), ['INSERT INTO audit_events'], 'send(): the INSERT is on its way in this turn');
      log.send(); // one in flight: nothing more leaves
      assert.equal(sent.length, 1);
      // Recorded while the first INSERT is in flight (e.g. an event of the answer's own): the answer's wait covers it.
      log.record({ type: 'admin', request_id: `send-${i}-b` });
      await log.journaled(true);
      assert.deepEqual(await requestIdsLike(own, `send-${i}-%`), [`send-${i}-a`, `send-${i}-b`]);
      assert.equal(sent.filter((q) => q.startsWith('INSERT INTO audit_events')).length, 2, 'the second event in an INSERT of its own, after the first committed');
    }
    // Nothing recorded: send() sends nothing.
    sent.length = 0;
    log.send();
    assert.equal(sent.length, 0);
    await log.close();
  } finally { await Promise.all([own.end(), conn.end()]); }
});

test('send() answers a promise of the INSERT being on the socket: work done after it overlaps the commit (postgres.js writes only after the running microtasks and a nextTick)', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const writer = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `sock-${randomBytes(3).toString('hex')}`, writer, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'sock-warm' });
    await log.journaled(); // the connection open and the one-row INSERT prepared
    for (let i = 0; i < 3; i++) {
      const writes = countWrites();
      try {
        log.record({ type: 'admin', request_id: `sock-${i}` });
        const sent = log.send();
        assert.ok(sent instanceof Promise, 'an INSERT started: a promise of its write');
        assert.equal(writes.n, 0, 'postgres.js has not written it yet (the caller\'s work here would run before it left)');
        await sent;
        assert.ok(writes.n >= 1, 'once the promise resolves, the INSERT is written to the socket');
      } finally { writes.stop(); }
      await log.journaled(true);
    }
    // Nothing recorded: no write, no promise.
    assert.equal(log.send(), undefined);
    assert.deepEqual(await requestIdsLike(own, 'sock-%'), ['sock-warm', 'sock-0', 'sock-1', 'sock-2']);
    await log.close();
  } finally {
    Socket.prototype.write = realWrite;
    await Promise.all([own.end(), writer.end()]);
  }
});

test('with aam\'s own connection (PgWire) send() writes the INSERT before it returns: no promise, nothing to wait for; not yet connected, a promise as with postgres.js', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const writer = connectEvidence(store.databaseUrl, { queryTimeout: 5, name: 'aam-send-test' });
  assert.ok(writer instanceof PgWire);
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `wire-${randomBytes(3).toString('hex')}`, writer, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'wire-first' });
    assert.equal(writer.writesAtOnce, false, 'not connected before its first INSERT');
    const first = log.send();
    assert.ok(first instanceof Promise, 'the first INSERT waits for the connection: a promise');
    await log.journaled();
    for (let i = 0; i < 3; i++) {
      const writes = countWrites();
      try {
        log.record({ type: 'admin', request_id: `wire-${i}` });
        assert.equal(log.send(), undefined, 'connected: nothing to wait for');
        assert.equal(writes.n, 1, 'the INSERT is on the socket when send() returns');
      } finally { writes.stop(); }
      await log.journaled();
    }
    assert.deepEqual(await requestIdsLike(own, 'wire-%'), ['wire-first', 'wire-0', 'wire-1', 'wire-2']);
    await log.close();
  } finally {
    Socket.prototype.write = realWrite;
    await Promise.all([own.end(), writer.end()]);
  }
});

test('a group commit is one INSERT of all its rows (first attempt plain); after a lost reply the rows are sent again with ON CONFLICT DO NOTHING and each event is there once, in order', async () => {
  let lose = false;
  const sent: string[] = [];
  // The server's reply to an INSERT is dropped and the connection cut: the rows are committed, the client never hears so.
  const proxy = await pgProxy(store.databaseUrl, (send, _conn, toServer) => {
    if (lose && !toServer) { lose = false; proxy.stop(); proxy.start(); return; }
    send();
  });
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const writer = postgres(proxy.url, { max: 1, onnotice: () => {}, debug: (_conn: number, query: string) => { sent.push(query); } });
  try {
    await migrate(own);
    const replica = `many-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(own, { replica, writer, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    const turn = (tag: string, n: number) => { for (let i = 0; i < n; i++) log.record({ type: 'admin', request_id: `${tag}-${i}` }); return log.journaled(); };
    // The 4-row statement prepared on this connection first (so the lost reply below is the INSERT's own, not its Describe's).
    await turn('warm', 4);
    const inserts = () => sent.filter((q) => q.startsWith('INSERT INTO audit_events'));
    sent.length = 0;
    await turn('first', 5);
    assert.equal(inserts().length, 1, inserts().join(' | '));
    assert.equal(inserts()[0].split(`('${replica}',$`).length - 1, 5, 'five rows of placeholders, each after the replica as a literal');
    assert.doesNotMatch(inserts()[0], /ON CONFLICT/);
    sent.length = 0;
    lose = true;
    await assert.rejects(turn('lost', 4), /cannot write the audit trail/);
    await until(async () => { try { await log.journaled(); return true; } catch { return false; } }, 10_000, 'the rows sent again and committed');
    assert.doesNotMatch(inserts()[0], /ON CONFLICT/);
    assert.match(inserts().at(-1)!, /ON CONFLICT \(replica, seq\) DO NOTHING/);
    const rows = await own<Array<{ request_id: string; seq: string }>>`SELECT request_id, seq FROM audit_trail WHERE replica = ${replica} ORDER BY seq`;
    assert.deepEqual(rows.map((r) => r.request_id), [0, 1, 2, 3].map((i) => `warm-${i}`).concat([0, 1, 2, 3, 4].map((i) => `first-${i}`), [0, 1, 2, 3].map((i) => `lost-${i}`)));
    assert.deepEqual(rows.map((r) => Number(r.seq)), rows.map((_, i) => i + 1));
    await log.close();
  } finally {
    await Promise.all([own.end(), writer.end({ timeout: 1 })]);
    proxy.close();
  }
});

test('a request whose event is in the INSERT in flight is answered when that INSERT commits; the requests of events recorded after it share one wait for the next', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `wait-${randomBytes(3).toString('hex')}`, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'wait-a' });
    await log.send(); // INSERT 1 (wait-a) in flight
    const first = log.journaled();
    log.record({ type: 'admin', request_id: 'wait-b' });
    const second = log.journaled();
    log.record({ type: 'admin', request_id: 'wait-c' });
    const third = log.journaled();
    assert.equal(second, third, 'events recorded since the last INSERT left: their requests share one promise');
    assert.notEqual(first, second);
    await first;
    assert.equal(log.stats().written, 1, 'answered by the INSERT its event was in, not held for the events recorded after it');
    await third;
    assert.deepEqual([log.stats().written, log.stats().batches], [3, 2]);
    assert.deepEqual(await requestIdsLike(own, 'wait-%'), ['wait-a', 'wait-b', 'wait-c']);
    await log.close();
  } finally { await own.end(); }
});

test('under load the events recorded while an INSERT is in flight leave as its reply is read, not at the end of that loop turn (after every other socket the poll phase reads)', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const wire = connectEvidence(store.databaseUrl, { queryTimeout: 5, name: 'aam-next-test' });
  // aam's own connection, each INSERT it starts and commits noted; a commit also notes this turn's
  // check phase (where an INSERT put off with setImmediate would leave).
  const marks: string[] = [];
  const writer: EventWriter = {
    get writesAtOnce() { return wire.writesAtOnce; },
    end: (o) => wire.end(o),
    unsafe: (text, values, opts) => {
      marks.push('insert');
      return wire.unsafe(text, values, opts).then(() => { marks.push('committed'); setImmediate(() => marks.push('check phase')); });
    },
  };
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `next-${randomBytes(3).toString('hex')}`, writer, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    log.record({ type: 'admin', request_id: 'next-warm' });
    await log.journaled(); // connected
    await new Promise((r) => setImmediate(r)); // its commit's check phase noted
    for (let i = 0; i < 3; i++) {
      marks.length = 0;
      log.record({ type: 'admin', request_id: `next-${i}-a` });
      log.send(); // in flight
      log.record({ type: 'admin', request_id: `next-${i}-b` });
      log.record({ type: 'admin', request_id: `next-${i}-c` });
      await log.journaled();
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(marks.slice(0, 4), ['insert', 'committed', 'insert', 'check phase'], 'the next INSERT left before the check phase of the turn the first commit was read in');
      assert.deepEqual(marks.filter((m) => m === 'insert').length, 2, 'the two events recorded meanwhile in one INSERT');
    }
    assert.deepEqual(await requestIdsLike(own, 'next-%'), ['next-warm', ...[0, 1, 2].flatMap((i) => ['a', 'b', 'c'].map((x) => `next-${i}-${x}`))]);
    await log.close();
  } finally { await Promise.all([own.end(), wire.end()]); }
});
