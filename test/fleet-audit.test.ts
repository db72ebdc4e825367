// Fleet mode, evidence: two real `aam serve` replicas append their own hash chains to one real
// PostgreSQL; `aam audit verify` (any machine, AAM_DATABASE_URL) checks them as one trail with the
// signed fleet checkpoints; an edited row and rows deleted after a checkpoint are caught, naming
// the replica and seq; a replica killed with SIGKILL under load loses no acknowledged event.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, pgProxy, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, type ServeChild } from './helpers/serve-child.ts';
import { chat, runCli, sseContent, until } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { startTestAgents } from './helpers/a2a-agents.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { openFleetAuditLog, SIGNING_KEY_KEK_INFO } from '../src/audit/fleet-log.ts';
import { parseMasterKeyEnv } from '../src/credentials/master-key.ts';
import { migrate } from '../src/store/postgres.ts';
import { verifyFleet } from '../src/audit/fleet-verify.ts';

const ADMIN = randomBytes(24).toString('hex');
const MASTER = randomBytes(32).toString('hex');
const CONFIG = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one']));

let store: FleetTestStore;
let dir: string;
let config: string;
let sql: postgres.Sql;
let secret: string;
let replicas: ServeChild[] = [];

const fleetEnv = () => ({ ...process.env, ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_MASTER_KEY: MASTER, AAM_AUDIT_CHECKPOINT_INTERVAL_MS: '200' });
const cli = (...args: string[]) => runCli([...args, '--config', config, '--data', join(dir, 'cli-data')], { env: fleetEnv() });

async function replica(i: number): Promise<ServeChild> {
  const data = join(dir, `data-${i}`);
  mkdirSync(data);
  return startServeChild({ config, data, env: fleetEnv() });
}

/** The serving replicas' chain ids in start order (each CLI command has a chain of its own too). */
const chains = async () => (await sql<Array<{ replica: string }>>`SELECT replica FROM audit_chains WHERE replica NOT LIKE 'cli-%' ORDER BY started_at, replica`).map((r) => r.replica);

before(async () => {
  store = await fleetStore();
  dir = tempDir('aam-fleet-audit-');
  config = join(dir, 'aam.yaml');
  writeFileSync(config, CONFIG);
  replicas = await Promise.all([0, 1].map(replica));
  sql = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  const created = await cli('keys', 'create', '--agent', 'tester');
  assert.equal(created.code, 0, created.stderr);
  secret = created.stdout.trim().split('\n').at(-1)!;
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await sql?.end();
  await store.drop();
});

test('events from both replicas verify as one trail from the CLI; query and show answer fleet-wide', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await chat(replicas[i % 2].url, secret, 'one', `hello ${i}`);
    assert.equal(r.status, 200, r.text);
    ids.push(r.requestId);
  }
  // Acknowledged = committed: every request is in PostgreSQL the moment its answer arrived.
  const found = await sql<Array<{ request_id: string; replica: string }>>`SELECT DISTINCT request_id, replica FROM audit_trail WHERE request_id = ANY(${ids})`;
  assert.deepEqual(new Set(found.map((f) => f.request_id)), new Set(ids));
  assert.equal(new Set(found.map((f) => f.replica)).size, 2, 'both replicas wrote their own chain');
  await until(async () => (await sql`SELECT 1 FROM audit_checkpoints`).length > 0, 10_000, 'a signed fleet checkpoint');
  const v = await cli('audit', 'verify');
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /OK: fleet trail: \d+ events in 3 replica chains, \d+ signed checkpoints/);
  // The CLI's `keys create` is in the same trail, on its own chain.
  const [cliEvent] = await sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE replica LIKE 'cli-%' AND type = 'admin'`;
  assert.match(cliEvent.body, /"action":"key_created"/);
  const show = await cli('audit', 'show', ids[1], '--json');
  assert.equal(show.code, 0, show.stderr);
  const tree = JSON.parse(show.stdout) as { request_id: string; events: Array<{ request_id: string }>; children: unknown[] };
  assert.equal(tree.request_id, ids[1]);
  assert.ok(tree.events.length > 0 && tree.events.every((e) => e.request_id === ids[1]));
  // The admin API of either replica answers fleet-wide too.
  const viaB = await fetch(`${replicas[1].url}/admin/v1/audit/requests/${ids[0]}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(viaB.status, 200);
  const got = (await viaB.json()) as { data: Array<{ request_id: string; replica: string }> };
  assert.ok(got.data.length > 0 && got.data.every((e) => e.request_id === ids[0]), 'replica B shows a request replica A served');
  const listed = (await (await fetch(`${replicas[0].url}/admin/v1/audit?agent=tester&limit=1000`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: Array<{ request_id: string }> };
  for (const id of ids) assert.ok(listed.data.some((e) => e.request_id === id), `the admin API lists ${id}`);
  const q = await cli('audit', 'query', '--agent', 'tester', '--json');
  assert.equal(q.code, 0, q.stderr);
  const seen = new Set((JSON.parse(q.stdout) as Array<{ request_id: string }>).map((e) => e.request_id));
  for (const id of ids) assert.ok(seen.has(id), `query lists ${id}`);
  // --trace: the events of one trace, whichever replica served them.
  const trace = randomBytes(16).toString('hex');
  const traced = await Promise.all([0, 1].map((i) => chat(replicas[i].url, secret, 'one', 'traced', { headers: { traceparent: `00-${trace}-00f067aa0ba902b7-01` } })));
  const t = await cli('audit', 'query', '--trace', trace, '--json');
  assert.equal(t.code, 0, t.stderr);
  const tev = JSON.parse(t.stdout) as Array<{ request_id: string; trace_id: string; replica: string }>;
  assert.deepEqual(new Set(tev.map((e) => e.request_id)), new Set(traced.map((r) => r.requestId)));
  assert.ok(tev.every((e) => e.trace_id === trace));
  assert.equal(new Set(tev.map((e) => e.replica)).size, 2);
});

test('an edited row fails verify naming the replica and seq; restoring it verifies again', async () => {
  const [victim] = await chains();
  const [row] = await sql<Array<{ seq: string; body: string }>>`SELECT seq, body FROM audit_trail WHERE replica = ${victim} AND seq = 2`;
  const edit = async (body: string) => { await sql`UPDATE audit_events SET body = ${body} WHERE replica = ${victim} AND seq = 2`; };
  await edit(row.body.replace('"status":200', '"status":403'));
  const v = await cli('audit', 'verify');
  assert.equal(v.code, 1, v.stdout);
  assert.match(v.stdout, new RegExp(`TAMPERED: fleet trail: altered in replica ${victim} at seq 2`));
  await edit(row.body);
  assert.equal((await cli('audit', 'verify')).code, 0);
});

test('deleting the newest rows of a chain after a checkpoint (head moved back too) is caught by the checkpoint', async () => {
  const victim = (await chains())[1];
  const r = await chat(replicas[1].url, secret, 'one', 'one more');
  assert.equal(r.status, 200);
  // The head row follows the committed events off the request path (within HEAD_MS).
  await until(async () => (await sql`SELECT 1 FROM audit_chains WHERE replica = ${victim} AND head_seq = (SELECT max(seq) FROM audit_trail WHERE replica = ${victim})`).length > 0, 10_000, 'the head at the newest event');
  const [head] = await sql<Array<{ head_seq: string }>>`SELECT head_seq FROM audit_chains WHERE replica = ${victim}`;
  const signed = JSON.stringify([victim, Number(head.head_seq)]).slice(0, -1);
  await until(async () => (await sql`SELECT 1 FROM audit_checkpoints WHERE heads LIKE ${'%' + signed + '%'}`).length > 0, 10_000, 'a checkpoint naming the head');
  await replicas[1].stop(); // nothing may write to the chain while it is cut
  const cut = Number(head.head_seq) - 2;
  await sql`DELETE FROM audit_events WHERE replica = ${victim} AND seq > ${cut}`;
  // A careful attacker moves the chain's head back too, so later checkpoints sign the cut chain.
  await sql`UPDATE audit_chains SET head_seq = ${cut}, head_hash = (SELECT hash FROM audit_trail WHERE replica = ${victim} AND seq = ${cut}) WHERE replica = ${victim}`;
  const v = await cli('audit', 'verify');
  assert.equal(v.code, 1, v.stdout);
  assert.match(v.stdout, new RegExp(`TAMPERED: fleet trail: truncated in replica ${victim} at seq ${cut + 1}: .*signed checkpoint names seq ${head.head_seq}`));
  // Checkpoint rows deleted too: the database alone cannot tell; the replicas' copies can.
  await sql`DELETE FROM audit_checkpoints`;
  const alone = await cli('audit', 'verify');
  assert.equal(alone.code, 0, alone.stdout);
  assert.match(alone.stdout, /without an outside checkpoint/);
  const copy = join(dir, 'checkpoints-copy.jsonl');
  writeFileSync(copy, [0, 1].map((i) => { try { return readFileSync(join(dir, `data-${i}`, 'audit-checkpoints.jsonl'), 'utf8'); } catch { return ''; } }).join(''));
  const withCopy = await cli('audit', 'verify', '--checkpoint', copy);
  assert.equal(withCopy.code, 1, withCopy.stdout + withCopy.stderr);
  assert.match(withCopy.stdout, new RegExp(`TAMPERED: fleet trail: truncated in replica ${victim} at seq ${cut + 1}`));
});

test('kill -9 of a replica under load (c=16): every request id that got a 200 is in PostgreSQL', async () => {
  // Its PostgreSQL traffic is 30 ms late, so an event not awaited before the answer would still be
  // on its way when the process dies (and the kill drops it): the test then finds it missing.
  const slow = await pgProxy(store.databaseUrl, (send) => { setTimeout(send, 30); });
  after(() => slow.close());
  const data = join(dir, 'data-9');
  mkdirSync(data);
  const victim = await startServeChild({ config, data, env: { ...fleetEnv(), AAM_DATABASE_URL: slow.url } });
  replicas.push(victim);
  const acked: string[] = [];
  let stop = false;
  const worker = async () => {
    while (!stop) {
      try {
        const r = await chat(victim.url, secret, 'one', 'load');
        if (r.status === 200) acked.push(r.requestId);
      } catch { return; } // the replica is gone
    }
  };
  const workers = Array.from({ length: 16 }, worker);
  await until(() => acked.length >= 200, 60_000, '200 acknowledged requests');
  victim.proc.kill('SIGKILL');
  stop = true;
  await Promise.all(workers);
  await victim.exited;
  const rows = await sql<Array<{ request_id: string }>>`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${acked})`;
  const missing = acked.filter((id) => !rows.some((r) => r.request_id === id));
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged requests have no evidence`);
});

test('group commit: events recorded in one event-loop turn share one INSERT', async () => {
  const own = postgres(store.databaseUrl, { max: 4, onnotice: () => {} });
  try {
    await migrate(own);
    const log = await openFleetAuditLog(own, { replica: `bench-${randomBytes(3).toString('hex')}`, keyEncryptionKey: parseMasterKeyEnv(MASTER, dir).derive(SIGNING_KEY_KEK_INFO), checkpointIntervalMs: 60_000 });
    // c=1: one event, awaited (what a lone request pays).
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) { log.record({ type: 'admin', request_id: `one-${i}` }); await log.journaled(); }
    const single = (performance.now() - t0) / 50;
    // c=64: 64 events per turn, then await them all.
    const before = log.stats();
    for (let i = 0; i < 50; i++) {
      const waits = Array.from({ length: 64 }, (_, j) => { log.record({ type: 'admin', request_id: `many-${i}-${j}` }); return log.journaled(); });
      await Promise.all(waits);
    }
    const s = log.stats();
    const perInsert = (s.written - before.written) / (s.batches - before.batches);
    process.stderr.write(`fleet audit group commit: c=1 ${single.toFixed(2)} ms per awaited event; c=64 ${perInsert.toFixed(1)} events per INSERT, ${((s.commitMs - before.commitMs) / (s.batches - before.batches)).toFixed(2)} ms per INSERT\n`);
    assert.ok(perInsert >= 32, `events per INSERT at c=64: ${perInsert}`);
    await log.close();
  } finally { await own.end(); }
});

test('c=1: an awaited commit is one INSERT (no head update on the request path); the head follows, a lagging head verifies, a checkpoint moves every chain\'s head', async () => {
  const fresh = await fleetStore();
  const sent: string[] = [];
  const own = postgres(fresh.databaseUrl, { max: 4, onnotice: () => {}, debug: (_conn: number, query: string) => { sent.push(query); } });
  try {
    await migrate(own);
    const replica = `head-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(own, { replica, keyEncryptionKey: parseMasterKeyEnv(MASTER, dir).derive(SIGNING_KEY_KEK_INFO), checkpointIntervalMs: 60_000 });
    const head = async () => (await own<Array<{ head_seq: string; head_hash: string }>>`SELECT head_seq, head_hash FROM audit_chains WHERE replica = ${replica}`)[0];
    for (let i = 1; i <= 3; i++) {
      sent.length = 0;
      log.record({ type: 'admin', request_id: `c1-${i}` });
      await log.journaled();
      assert.equal(sent.length, 1, `one statement per awaited commit: ${sent.join(' | ')}`);
      assert.match(sent[0], /^INSERT INTO audit_events /);
    }
    await until(async () => Number((await head()).head_seq) === 3, 10_000, 'the head row at seq 3, off the request path');
    // A head left behind (its replica died before moving it) is a lower bound: the trail verifies...
    await own`UPDATE audit_chains SET head_seq = 1, head_hash = (SELECT hash FROM audit_trail WHERE replica = ${replica} AND seq = 1) WHERE replica = ${replica}`;
    const v = await verifyFleet(own);
    assert.ok(v.ok && v.events === 3, JSON.stringify(v.errors));
    // ...and the next checkpoint, by any replica, moves it to the newest event and signs that.
    assert.equal(await log.checkpoint(), true);
    const [last] = await own<Array<{ hash: string }>>`SELECT hash FROM audit_trail WHERE replica = ${replica} AND seq = 3`;
    assert.deepEqual(await head(), { head_seq: '3', head_hash: last.hash });
    const [ck] = await own<Array<{ heads: string }>>`SELECT heads FROM audit_checkpoints ORDER BY id DESC LIMIT 1`;
    assert.equal(ck.heads, JSON.stringify([[replica, 3, last.hash]]));
    await log.close();
  } finally {
    await own.end();
    await fresh.drop();
  }
});

test('the INSERTs on a connection of their own: a commit does not wait behind a slow query of the shared pool; a serving replica opens it (aam-evidence)', async () => {
  const shared = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const writer = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const log = await openFleetAuditLog(shared, { replica: `own-${randomBytes(3).toString('hex')}`, writer, keyEncryptionKey: parseMasterKeyEnv(MASTER, dir).derive(SIGNING_KEY_KEK_INFO), checkpointIntervalMs: 60_000 });
    const slow = shared`SELECT pg_sleep(2)`.then(() => performance.now());
    log.record({ type: 'admin', request_id: 'beside-a-slow-query' });
    await log.journaled();
    const committed = performance.now();
    assert.ok(committed < await slow, 'committed before the shared connection\'s slow query ended');
    await log.close();
  } finally { await Promise.all([shared.end(), writer.end()]); }
  // A serving replica's INSERTs are on their own connection, named in pg_stat_activity.
  assert.equal((await chat(replicas[0].url, secret, 'one', 'evidence connection')).status, 200);
  const own = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'aam-evidence'`;
  assert.ok(own[0].n >= 1, `aam-evidence connections: ${own[0].n}`);
});

test('an INSERT committed whose reply is lost: the first attempt is a plain INSERT, the retry finds the row (ON CONFLICT DO NOTHING) and the event is there once; verify names events of no chain', async () => {
  let lose = false;
  const sent: string[] = [];
  // The server's reply to the INSERT is dropped and the connection cut: the row is committed, the client never hears so.
  const proxy = await pgProxy(store.databaseUrl, (send, _conn, toServer) => {
    if (lose && !toServer) { lose = false; proxy.stop(); proxy.start(); return; }
    send();
  });
  const own = postgres(proxy.url, { max: 1, onnotice: () => {}, debug: (_conn: number, query: string) => { sent.push(query); } });
  try {
    const replicaId = `lost-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(own, { replica: replicaId, keyEncryptionKey: parseMasterKeyEnv(MASTER, dir).derive(SIGNING_KEY_KEK_INFO), checkpointIntervalMs: 60_000 });
    // Prepared on this connection first, so the lost reply is the INSERT's own (not its Describe's).
    log.record({ type: 'admin', request_id: 'warm' });
    await log.journaled();
    sent.length = 0;
    lose = true;
    log.record({ type: 'admin', request_id: 'lost-reply' });
    await assert.rejects(log.journaled(), /cannot write the audit trail/);
    await until(async () => { try { await log.journaled(); return true; } catch { return false; } }, 10_000, 'the retried INSERT committed');
    const inserts = sent.filter((q) => q.startsWith('INSERT INTO audit_events'));
    assert.equal(inserts.length, 2, inserts.join(' | '));
    assert.doesNotMatch(inserts[0], /ON CONFLICT/);
    assert.match(inserts[1], /ON CONFLICT \(replica, seq\) DO NOTHING/);
    const rows = await sql`SELECT seq FROM audit_trail WHERE replica = ${replicaId} AND request_id = 'lost-reply'`;
    assert.equal(rows.length, 1);
    // The next event is a first attempt again.
    sent.length = 0;
    log.record({ type: 'admin', request_id: 'after' });
    await log.journaled();
    assert.doesNotMatch(sent.find((q) => q.startsWith('INSERT INTO audit_events')) ?? '', /ON CONFLICT/);
    await log.close();
    // Every row in audit_events, each once.
    assert.deepEqual((await sql<Array<{ seq: string }>>`SELECT seq FROM audit_events WHERE replica = ${replicaId} ORDER BY seq`).map((r) => Number(r.seq)), [1, 2, 3]);
    // No foreign key to the chain row (migration 12): events of a replica with no chain are named by verify.
    const fks = await sql`SELECT 1 FROM pg_constraint WHERE conrelid = 'audit_events'::regclass AND contype = 'f'`;
    assert.equal(fks.length, 0);
    await sql`INSERT INTO audit_events (replica, seq, ts, type, request_id, prev_hash, hash, body) VALUES ('no-chain', 1, '2026-01-01T00:00:00Z', 'admin', 'x', 'p', 'h', '{}')`;
    try {
      const v = await verifyFleet(sql);
      assert.ok(v.errors.some((e) => e.replica === 'no-chain' && e.kind === 'inserted'), JSON.stringify(v.errors));
      assert.equal(v.ok, false);
    } finally { await sql`DELETE FROM audit_events WHERE replica = 'no-chain'`; }
  } finally {
    await own.end({ timeout: 1 });
    proxy.close();
  }
});

test('a PostgreSQL that stops answering: journaled() rejects within the commit timeout (no stalled request), the events stay queued and are committed when it answers', async () => {
  let hold = false;
  const held: Array<() => void> = [];
  const proxy = await pgProxy(store.databaseUrl, (send) => { if (hold) held.push(send); else send(); });
  const own = postgres(proxy.url, { max: 1, onnotice: () => {} });
  try {
    const replicaId = `hang-${randomBytes(3).toString('hex')}`;
    const log = await openFleetAuditLog(own, { replica: replicaId, keyEncryptionKey: parseMasterKeyEnv(MASTER, dir).derive(SIGNING_KEY_KEK_INFO), checkpointIntervalMs: 60_000, commitTimeoutMs: 300 });
    log.record({ type: 'admin', request_id: 'before-hang' });
    await log.journaled();
    hold = true;
    log.record({ type: 'admin', request_id: 'during-hang' });
    const t0 = performance.now();
    await assert.rejects(log.journaled(), /did not commit the audit trail within 300 ms/);
    assert.ok(performance.now() - t0 < 2000, 'refused promptly');
    assert.equal(log.stats().failing, true);
    hold = false;
    for (const f of held.splice(0)) f();
    await until(async () => (await sql`SELECT 1 FROM audit_trail WHERE replica = ${replicaId} AND request_id = 'during-hang'`).length === 1, 10_000, 'the queued event committed');
    await log.journaled();
    await log.close();
  } finally {
    await own.end({ timeout: 1 });
    proxy.close();
  }
});

// Each outage below has a replica and a PostgreSQL proxy of its own and checks only its own requests'
// evidence, and mostly waits (outage windows, commit and query deadlines): side by side they take
// the longest one's time instead of their sum (63 s of fleet-audit's 107 s, at load 13).
describe('PostgreSQL outages, one replica each, side by side', { concurrency: true }, () => {
  test('PostgreSQL down for 12 s: requests get 503 (never an unrecorded 200), /readyz names postgres; the replica retries at least every 5 s and serves again within 6 s of it coming back, the refused request\'s evidence committed', async (t) => {
    const proxy = await pgProxy(store.databaseUrl, (send) => send());
    const data = join(dir, 'data-pg-down');
    mkdirSync(data);
    const r = await startServeChild({ config, data, env: { ...fleetEnv(), AAM_DATABASE_URL: proxy.url } });
    try {
      await until(async () => (await chat(r.url, secret, 'one', 'up')).status === 200, 10_000, 'the key on the new replica');
      proxy.stop();
      const down = performance.now();
      const refused = await chat(r.url, secret, 'one', 'while PostgreSQL is down');
      assert.equal(refused.status, 503, refused.text);
      await until(async () => {
        const ready = await fetch(`${r.url}/readyz`);
        const body = (await ready.json()) as { down?: string[] };
        return ready.status === 503 && (body.down ?? []).includes('postgres');
      }, 10_000, '/readyz to name postgres');
      // Down long enough, with requests arriving, for postgres.js's own reconnect backoff (3^n/100 s
      // with jitter, capped at 20 s) to pass 10 s: a replica on it waited up to 20 s after PostgreSQL
      // was back (CI at dc1dff3: 19.4 s from the restart to its next attempt, at load 23).
      while (performance.now() - down < 12_000) {
        const c = await chat(r.url, secret, 'one', 'still down');
        assert.equal(c.status, 503, c.text);
        await new Promise((f) => setTimeout(f, 100));
      }
      const back = performance.now();
      proxy.start();
      let served = 0;
      await until(async () => { const ok = (await chat(r.url, secret, 'one', 'back')).status === 200; served = performance.now(); return ok; }, 20_000, 'requests served again, with no restart');
      // The reconnect attempts the proxy saw, from the outage to the first one after the restart.
      const seen = proxy.attempts.filter((t) => t >= down);
      const upTo = seen.findIndex((t) => t >= back);
      const tried = (upTo < 0 ? seen : seen.slice(0, upTo + 1)).map((t) => Math.round(t - down));
      const gaps = tried.slice(1).map((t, i) => t - tried[i]);
      const log = `attempts at ms after the outage began: ${tried.join(', ')}; back at ${Math.round(back - down)}, served at ${Math.round(served - down)}`;
      t.diagnostic(log);
      assert.ok(Math.max(...gaps) <= 5000, `a reconnect attempt at least every 5 s while PostgreSQL is down (${log})`);
      assert.ok(served - back <= 6000, `served within 6 s of PostgreSQL coming back (${log})`);
      await until(async () => (await fetch(`${r.url}/readyz`)).status === 200, 10_000, '/readyz ready again');
      // The refused request's events were kept and committed once PostgreSQL answered.
      await until(async () => (await sql`SELECT 1 FROM audit_trail WHERE request_id = ${refused.requestId}`).length > 0, 10_000, 'the refused request\'s evidence in PostgreSQL');
    } finally {
      await r.stop();
      proxy.close();
    }
  });

  test('a PostgreSQL that goes silent for 5 s (connections kept open, nothing answered, new ones not either) and then answers: requests get 503 meanwhile, the replica serves again within 3 s of it answering, every refused request\'s evidence committed', async (t) => {
    let hold = false;
    const held: Array<() => void> = [];
    const proxy = await pgProxy(store.databaseUrl, (send) => { if (hold) held.push(send); else send(); });
    const data = join(dir, 'data-pg-silent');
    mkdirSync(data);
    const r = await startServeChild({ config, data, env: { ...fleetEnv(), AAM_DATABASE_URL: proxy.url } });
    try {
      await until(async () => (await chat(r.url, secret, 'one', 'up')).status === 200, 10_000, 'the key on the new replica');
      hold = true;
      const silent = performance.now();
      const refused: string[] = [];
      const took: number[] = [];
      while (performance.now() - silent < 5000) { // longer than the commit timeout (2 s)
        const t1 = performance.now();
        const c = await chat(r.url, secret, 'one', 'while PostgreSQL is silent');
        took.push(Math.round(performance.now() - t1));
        assert.equal(c.status, 503, c.text);
        assert.match(c.text, /"code":"store_unavailable"/, 'a store is down: the contract\'s code');
        refused.push(c.requestId);
      }
      // A stream is acknowledged by its terminator: its evidence not committed, it ends with an error
      // event naming why, never with [DONE] (the content already sent is not acknowledged).
      const s = await chat(r.url, secret, 'one', 'a stream while PostgreSQL is silent', { stream: true });
      assert.equal(s.status, 200, s.text);
      const ended = sseContent(s.text);
      assert.ok(!ended.done, `no [DONE] without evidence: ${s.text.slice(-300)}`);
      assert.match(ended.error?.message ?? '', /audit trail could not record/, s.text.slice(-300));
      refused.push(s.requestId);
      hold = false;
      const back = performance.now();
      for (const f of held.splice(0)) f();
      let served = 0;
      let acked = '';
      await until(async () => {
        const c = await chat(r.url, secret, 'one', 'answering again');
        served = performance.now();
        if (c.status === 200) acked = c.requestId;
        return c.status === 200;
      }, 20_000, 'requests served again, with no restart');
      const log = `silent for ${Math.round(back - silent)} ms (requests refused in ${took.join(', ')} ms), served ${Math.round(served - back)} ms after PostgreSQL answered again`;
      t.diagnostic(log);
      // Refused, not stalled: after the commit timeout (2 s; checked every 0.5 s), and once only (the
      // refusal's own evidence is not awaited again: that made it ~4.3 s, 4.05-4.59 s in 7 runs).
      assert.ok(Math.max(...took) <= 3500, `every refusal within 3.5 s: ${log}`);
      assert.ok(served - back <= 3000, log);
      await until(async () => (await fetch(`${r.url}/readyz`)).status === 200, 10_000, '/readyz ready again');
      const ids = [...refused, acked];
      await until(async () => (await sql`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${ids})`).length === ids.length, 10_000, 'the evidence of every refused request and the acknowledged one');
    } finally {
      await r.stop();
      proxy.close();
    }
  });

  test('a PostgreSQL connection that never answers again (bytes swallowed both ways, never closed; new connections answered): the replica gives its connections up and serves again within 10 s (query deadline 5 s + silent cancel 2 s), a key revoked afterwards stops working within 3 s, no acknowledged event lost', async (t) => {
    /** Connections with an index up to this one swallow every byte, both ways, and stay open. */
    let dead = -1;
    const proxy = await pgProxy(store.databaseUrl, (send, conn) => { if (conn > dead) send(); });
    const created = await cli('keys', 'create', '--agent', 'tester');
    assert.equal(created.code, 0, created.stderr);
    const doomed = created.stdout.trim().split('\n').at(-1)!;
    const doomedId = /created key (key_\w+)/.exec(created.stderr)![1];
    const data = join(dir, 'data-pg-blackhole');
    mkdirSync(data);
    const r = await startServeChild({ config, data, env: { ...fleetEnv(), AAM_DATABASE_URL: proxy.url } });
    try {
      await until(async () => (await chat(r.url, doomed, 'one', 'up')).status === 200, 10_000, 'the key on the new replica');
      // Concurrent requests, so the pool holds several connections; each of them then goes dead.
      const warm = await Promise.all(Array.from({ length: 16 }, () => chat(r.url, secret, 'one', 'warm')));
      assert.ok(warm.every((w) => w.status === 200));
      dead = proxy.attempts.length - 1;
      const cut = performance.now();
      const acked: string[] = [];
      const refused: string[] = [];
      let served = 0;
      while (performance.now() - cut < 30_000) {
        const c = await chat(r.url, secret, 'one', 'across a dead connection');
        assert.ok(c.status === 200 || c.status === 503, `${c.status} ${c.text}`);
        if (c.status === 200) { acked.push(c.requestId); served = performance.now(); break; }
        refused.push(c.requestId);
      }
      const log = `${dead + 1} connections went dead; ${refused.length} requests refused; served ${served ? Math.round(served - cut) : 'never'} ms after (within 30 s); connections opened since: ${proxy.attempts.length - dead - 1}`;
      t.diagnostic(log);
      assert.ok(served > 0 && served - cut <= 10_000, `served again within 10 s of its connections going dead (${log})`);
      for (let i = 0; i < 5; i++) {
        const c = await chat(r.url, secret, 'one', 'after');
        assert.equal(c.status, 200, c.text);
        acked.push(c.requestId);
      }
      // The key follower reads PostgreSQL again: a revocation takes effect on this replica.
      const revoked = await cli('keys', 'revoke', doomedId);
      assert.equal(revoked.code, 0, revoked.stderr);
      const t0 = performance.now();
      await until(async () => (await chat(r.url, doomed, 'one', 'revoked?')).status === 401, 3000, 'the revoked key refused by the replica');
      t.diagnostic(`revocation seen in ${Math.round(performance.now() - t0)} ms`);
      const rows = await sql<Array<{ request_id: string }>>`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${acked})`;
      assert.equal(rows.length, acked.length, 'every acknowledged request\'s evidence is in PostgreSQL');
      await until(async () => (await sql`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${refused})`).length === refused.length, 10_000, 'the refused requests\' evidence committed');
      await until(async () => (await fetch(`${r.url}/readyz`)).status === 200, 10_000, '/readyz ready again');
    } finally {
      await r.stop();
      proxy.close();
    }
  });

  test('A2A through a replica whose PostgreSQL is silent: a SendMessage answer is refused (503, at once after the commit timeout), a stream ends with an error event; neither is acknowledged without its evidence', async () => {
    let hold = false;
    const held: Array<() => void> = [];
    const proxy = await pgProxy(store.databaseUrl, (send) => { if (hold) held.push(send); else send(); });
    let url = '';
    const agents = await startTestAgents([{ name: 'helper', skills: ['help'], aamUrl: () => url, key: () => '' }]);
    const cfg = join(dir, 'a2a.yaml');
    writeFileSync(cfg, yaml(
      doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', a2a: { url: `${agents.base}/helper` } }),
      doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
      doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'helper' }] }),
    ));
    const made = await runCli(['keys', 'create', '--agent', 'planner', '--config', cfg, '--data', join(dir, 'cli-data')], { env: fleetEnv() });
    assert.equal(made.code, 0, made.stderr);
    const key = made.stdout.trim().split('\n').at(-1)!;
    const data = join(dir, 'data-a2a-silent');
    mkdirSync(data);
    const r = await startServeChild({ config: cfg, data, env: { ...fleetEnv(), AAM_DATABASE_URL: proxy.url } });
    url = r.url;
    const send = async (method: 'SendMessage' | 'SendStreamingMessage') => {
      const res = await fetch(`${r.url}/a2a/helper`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'a2a-version': '1.0', authorization: `Bearer ${key}`, ...(method === 'SendStreamingMessage' ? { accept: 'text/event-stream' } : {}) },
        body: JSON.stringify({ jsonrpc: '2.0', id: 3, method, params: { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: method === 'SendMessage' ? 'hello' : 'stream please' }] } } }),
      });
      return { status: res.status, text: await res.text() };
    };
    try {
      await until(async () => (await send('SendMessage')).status === 200, 10_000, 'the key on the new replica');
      hold = true;
      const started = performance.now();
      const one = await send('SendMessage');
      const took = performance.now() - started;
      assert.equal(one.status, 503, one.text);
      assert.match(one.text, /audit trail could not record/);
      assert.ok(took <= 3500, `refused once, at the commit timeout (2 s), not after waiting again: ${Math.round(took)} ms`);
      const s = await send('SendStreamingMessage');
      assert.equal(s.status, 200, s.text);
      const last = JSON.parse(s.text.trim().split('\n').filter((l) => l.startsWith('data: ')).at(-1)!.slice(6)) as { error?: { message: string; data?: { code: string } } };
      assert.match(last.error?.message ?? '', /audit trail could not record/, `the stream's last event: ${s.text.slice(-400)}`);
    } finally {
      hold = false;
      for (const f of held.splice(0)) f();
      await r.stop();
      proxy.close();
      await agents.close();
    }
  });
});
