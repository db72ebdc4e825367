// Fleet mode, the audit rows as the log INSERTs them: the replica id goes into the statement text as
// a literal (one parameter less per event), the body is sent as its sealed head and PostgreSQL
// appends the hash member, and the pending events are kept flat, W values per event, sent as they are. Every column of every row, whatever the batch (one event, a group commit, a
// backlog cut into several INSERTs, a retry after a failed write), is what the event and the chain say.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';
import { verifyFleet } from '../src/audit/fleet-verify.ts';
import { GENESIS_HASH, chainHash, encodeEvent, planeOf, sealHead, sealLine, sealTail, sealedText, type AuditEventInput } from '../src/audit/event.ts';
import { migrate } from '../src/store/postgres.ts';

let store: FleetTestStore;

before(async () => { store = await fleetStore(); });
after(async () => { await store?.drop(); });

interface Row {
  replica: string; seq: string; ts: string; type: string; request_id: string; agent: string | null; prev_hash: string; hash: string; body: string;
  trace_id: string | null; decision: string | null; plane: string | null;
}

const event = (i: number): AuditEventInput => i % 3 === 0
  ? { type: 'admin', request_id: `rows-${i}`, time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(), admin: { action: 'key.create', target: `k${i}`, actor: 'admin' }, outcome: { status: 200 } }
  : {
    type: i % 3 === 1 ? 'model_call' : 'tool_call', request_id: `rows-${i}`, time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)).toISOString(),
    ...(i % 2 ? { trace_id: randomBytes(16).toString('hex') } : {}),
    identity: { agent: `agent-${i % 4}`, team: 't', environment: 'dev', method: 'virtual_key', key_id: 'k', spiffe_id: 'spiffe://x/agent/a' },
    policy: { name: 'p', version: 'v', rule: 0, decision: i % 5 ? 'allow' : 'deny', reason: 'r ü 😀' },
    outcome: { status: 200 },
  };

test('every row\'s columns are its event\'s: one event, a group commit, a backlog over batchSize, a retry after a failed write; the chain verifies', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const writer = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const replica = `rows-${randomBytes(3).toString('hex')}`;
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica, writer, batchSize: 4, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    const events: AuditEventInput[] = [];
    const rec = (n: number) => { for (let k = 0; k < n; k++) { const e = event(events.length + 1); events.push(e); assert.equal(log.record(e), true); } };
    rec(1); await log.journaled(true); // one event
    rec(3); await log.journaled(); // a group commit
    rec(10); await log.journaled(); // a backlog: INSERTs of 4, 4, 2
    // A failed write (the writer's connection is cut with the INSERT in flight): its rows are sent again, with ON CONFLICT.
    const [{ pid }] = await writer<Array<{ pid: number }>>`SELECT pg_backend_pid() AS pid`;
    rec(5);
    log.send();
    await own`SELECT pg_terminate_backend(${pid})`;
    await log.journaled().catch(() => {});
    rec(2);
    for (let t = 0; ; t++) {
      try { await log.journaled(); break; } catch (e) { if (t > 50) throw e; await new Promise((r) => setTimeout(r, 100)); }
    }
    const st = log.stats();
    assert.equal(st.written, events.length);
    assert.equal(st.queued, 0);
    assert.ok(st.failures >= 1, 'a write failed and was sent again');
    await log.close();

    const rows = await own<Row[]>`SELECT * FROM audit_trail WHERE replica = ${replica} ORDER BY seq`;
    assert.equal(rows.length, events.length);
    let prev = GENESIS_HASH;
    for (const [k, r] of rows.entries()) {
      const e = events[k];
      const seq = k + 1;
      const { json, cols } = encodeEvent(e, 0);
      const hash = chainHash(json, seq, prev);
      assert.deepEqual(
        [r.replica, Number(r.seq), r.ts, r.type, r.request_id, r.agent, r.prev_hash, r.hash, r.body, r.trace_id, r.decision, r.plane],
        [replica, seq, cols[0], cols[1], cols[2], cols[3], prev, hash, sealedText(json, seq, prev, hash), e.trace_id ?? null, cols[4], planeOf(e)],
        `row ${seq}`,
      );
      prev = hash;
    }
    const v = await verifyFleet(own);
    assert.deepEqual(v.errors, []);
    assert.equal(v.ok, true);
  } finally { await Promise.all([own.end(), writer.end()]); }
});

test('a replica id that is not [A-Za-z0-9_.:-] (it goes into the INSERT\'s text) is refused at open, before its chain exists', async () => {
  const own = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  try {
    await migrate(own);
    for (const replica of [`q'${randomBytes(3).toString('hex')}`, `sp ${randomBytes(3).toString('hex')}`, '']) {
      await assert.rejects(openFleetAuditLog(own, { replica, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 }), /replica id/);
      assert.equal((await own`SELECT 1 FROM audit_chains WHERE replica = ${replica}`).length, 0);
    }
  } finally { await own.end(); }
});

test('sealLine and sealHead: the sealed text (head + sealTail) is sealedText\'s bytes and the hash chainHash\'s, non-ASCII included', () => {
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= 20; seq++) {
    const { json } = encodeEvent(event(seq), 0);
    const s = sealLine(json, seq, prev);
    const hash = chainHash(json, seq, prev);
    assert.equal(s.hash, hash);
    assert.equal(s.body, sealedText(json, seq, prev, hash));
    const h = sealHead(json, seq, prev);
    assert.equal(h.hash, hash);
    assert.equal(h.head + sealTail(h.hash), s.body);
    prev = hash;
  }
});
