// Fleet mode, evidence at c=1: a request alone in flight starts its audit INSERT as soon as its
// evidence is recorded (send()), so the commit's round trip overlaps the work left before its
// answer; journaled() is still what the answer waits for, and it covers every event recorded,
// before send() and after it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';
import { migrate } from '../src/store/postgres.ts';

let store: FleetTestStore;

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
      const rows = await own<Array<{ request_id: string }>>`SELECT request_id FROM audit_events WHERE request_id LIKE ${`send-${i}-%`} ORDER BY seq`;
      assert.deepEqual(rows.map((r) => r.request_id), [`send-${i}-a`, `send-${i}-b`]);
      assert.equal(sent.filter((q) => q.startsWith('INSERT INTO audit_events')).length, 2, 'the second event in an INSERT of its own, after the first committed');
    }
    // Nothing recorded: send() sends nothing.
    sent.length = 0;
    log.send();
    assert.equal(sent.length, 0);
    await log.close();
  } finally { await Promise.all([own.end(), conn.end()]); }
});
