// PostgreSQL's cost of the audit trail's group commits alone, per event, for trees side by side
// (issue 14: at c=64 the stores' core is the limit, and the evidence INSERTs are most of
// PostgreSQL's share). Each TREE's own openFleetAuditLog (imported from its src/) runs in this
// process on a database of its own, migrated by that tree, of one PostgreSQL + Redis started as
// `npm run bench` starts them (stores on CPU 0, this process on CPU 1). Each batch size B of --batch
// loops: record B bench model_call events (request ids as a replica makes them, a random trace id
// each), each followed by its journaled(), so every INSERT carries B rows: `npm run bench`'s fleet c=64 row commits
// 10-16 per INSERT, c=1 one. Per round, tree and B: the evidence connection's backend CPU per event
// (its /proc schedstat, ns), every PostgreSQL process's (10 ms ticks: walwriter, autovacuum...), WAL
// bytes per event and the bytes each relation of audit_events (heap, every index) grew per event,
// and this process's CPU per event (process.cpuUsage: the replica's side, record, hash, the INSERT's
// encoding, its reply and the waiters, plus making the test event).
// TREE::sql:STATEMENT[;STATEMENT] runs those statements on that side's database after its migration
// (e.g. `.::sql:DROP INDEX audit_events_trace` beside `.`: what that index costs).
//   node bench/fleet-audit-cost.ts [--n 20000] [--rounds 3] [--batch 1,16,64] TREE [TREE...]
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startBenchFleet, storeCost } from './lib/fleet.ts';
import { IdPool } from '../src/observability/otlp-context.ts';

const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: {
  n: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, batch: { type: 'string', default: '1,16,64' },
} });
const N = Number(opt.n);
const BATCHES = opt.batch.split(',').map(Number);
const specs = (positionals.length > 0 ? positionals : ['.']).map((p) => {
  const [dir, extra] = p.split('::sql:');
  return { name: p, tree: resolve(dir), sql: extra ? extra.split(';').map((s) => s.trim()).filter(Boolean) : [] };
});

const PREFIX = randomBytes(4).toString('hex');
let seq = 0;
// Trace ids as the gateway's tracer makes them (time first, from a pool): a random one each made
// the trace index's inserts land on random pages, and its randomBytes(16) cost this process ~5 us.
const ids = new IdPool();
// The bench request's event (as fleet-floor.ts records it); request ids as requestIdFor() makes them.
const event = (): Record<string, unknown> => ({
  type: 'model_call', request_id: `req_${PREFIX}${(++seq).toString(36).padStart(8, '0')}`, trace_id: ids.traceId(),
  identity: { spiffe_id: 'spiffe://aam.local/agent/bench', agent: 'bench', team: 'bench', environment: 'dev', method: 'virtual_key', key_id: 'key_bench' },
  policy: { name: 'bench-policy', version: 'sha256:bench', rule: 0, decision: 'allow', reason: 'model "gpt-4o-mini" is in models.allow' },
  model: { route: 'gpt-4o-mini', provider: 'mock', model: 'gpt-4o-mini', input_tokens: 20, output_tokens: 12, cached_tokens: 0, cost_usd: 0.0000102, latency_ms: 1, stream: false },
  outcome: { status: 200 },
});

const pinSelf = (cpu: number): void => { spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' }); };
pinSelf(0);
const stores = await startBenchFleet();
pinSelf(1);
const cpuNs = (pid: number): number => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

interface Audit { record(e: unknown): boolean; journaled(): Promise<void>; close(): Promise<void> }
interface Sql { unsafe<T>(text: string, values?: unknown[]): Promise<T> }
interface Row { backendUs: number; pgUs: number; walBytes: number; relBytes: Record<string, number>; selfUs: number; selfSysUs: number }
interface Side { name: string; db: string; sql: Sql; audit: Audit; pid: number; fleet: { close(): Promise<void> }; rows: Map<number, Row[]> }
const sides: Side[] = [];
try {
  for (const [i, s] of specs.entries()) {
    const db = await stores.database(`aam_c${i}`);
    const { openFleet } = await import(`${s.tree}/src/store/fleet.ts`);
    const { openFleetAuditLog } = await import(`${s.tree}/src/audit/fleet-log.ts`);
    const fleet = await openFleet({ databaseUrl: db.env.AAM_DATABASE_URL, redisUrl: db.env.AAM_REDIS_URL }, { follow: false, migrate: true, admission: true });
    for (const text of s.sql) await fleet.sql.unsafe(text);
    const audit: Audit = await openFleetAuditLog(fleet.sql, { replica: fleet.replicaId, writer: fleet.evidence, keyEncryptionKey: randomBytes(32), checkpointIntervalMs: 3_600_000 });
    audit.record(event());
    await audit.journaled();
    // The evidence connection's backend: the one whose last statement is the events' INSERT.
    const [b] = await fleet.sql.unsafe(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'INSERT INTO audit_events%'`);
    sides.push({ name: s.name, db: db.name, sql: fleet.sql, audit, pid: Number(b.pid), fleet, rows: new Map() });
  }
  // Each event's request awaits journaled(), as a replica's requests do (the last one's promise
  // settles after the others': one INSERT carries them all).
  const run = async (a: Audit, n: number, batch: number): Promise<void> => {
    for (let done = 0; done < n; done += batch) {
      let last: Promise<void> = Promise.resolve();
      for (let k = 0; k < batch; k++) { a.record(event()); last = a.journaled(); }
      await last;
    }
  };
  const sizes = async (s: Side): Promise<Record<string, number>> => {
    const rels = await s.sql.unsafe<Array<{ name: string; bytes: string }>>(`SELECT c.relname AS name, pg_relation_size(c.oid) AS bytes FROM pg_class c
      WHERE c.oid = 'audit_events'::regclass OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'audit_events'::regclass)`);
    const [wal] = await s.sql.unsafe<Array<{ lsn: string }>>(`SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS lsn`);
    return { ...Object.fromEntries(rels.map((r) => [r.name, Number(r.bytes)])), '(wal)': Number(wal.lsn) };
  };
  for (const s of sides) for (const b of BATCHES) await run(s.audit, 2000, b); // warm-up: JIT, statements prepared
  for (let r = 0; r < Number(opt.rounds); r++) {
    for (const b of BATCHES) {
      for (const s of (r % 2 ? [...sides].reverse() : sides)) {
        const c0 = await stores.counters(s.db);
        const z0 = await sizes(s);
        const ns0 = cpuNs(s.pid);
        const self0 = process.cpuUsage();
        await run(s.audit, N, b);
        const self = process.cpuUsage(self0);
        const ns = cpuNs(s.pid) - ns0;
        const z1 = await sizes(s);
        const cost = storeCost(c0, await stores.counters(s.db), N);
        const relBytes = Object.fromEntries(Object.keys(z1).filter((k) => k !== '(wal)').map((k) => [k, (z1[k] - (z0[k] ?? 0)) / N]));
        const row: Row = { backendUs: ns / 1000 / N, pgUs: Object.values(cost.pg_cpu_us_by_process).reduce((sum, x) => sum + x, 0), walBytes: (z1['(wal)'] - z0['(wal)']) / N, relBytes, selfUs: (self.user + self.system) / N, selfSysUs: self.system / N };
        s.rows.set(b, [...(s.rows.get(b) ?? []), row]);
        console.log(`round ${r + 1} ${s.name} B=${b}: evidence backend ${row.backendUs.toFixed(1)} us/event, all PostgreSQL ${row.pgUs.toFixed(1)} (${JSON.stringify(cost.pg_cpu_us_by_process)}), WAL ${Math.round(row.walBytes)} B/event, this process ${row.selfUs.toFixed(1)} us/event (${row.selfSysUs.toFixed(1)} of it in the kernel)`);
      }
    }
  }
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`\nmedians of ${opt.rounds} interleaved rounds of ${N} events (B events per INSERT):`);
  for (const s of sides) {
    for (const [b, rows] of s.rows) {
      const rel = Object.keys(rows[0].relBytes).map((k) => `${k} ${Math.round(med(rows.map((x) => x.relBytes[k])))}`).join(', ');
      console.log(`  ${s.name} B=${b}: evidence backend ${med(rows.map((x) => x.backendUs)).toFixed(1)} us/event (${rows.map((x) => x.backendUs.toFixed(1)).join(', ')}), all PostgreSQL ${med(rows.map((x) => x.pgUs)).toFixed(1)}, WAL ${Math.round(med(rows.map((x) => x.walBytes)))} B/event, this process ${med(rows.map((x) => x.selfUs)).toFixed(1)} us/event (${rows.map((x) => x.selfUs.toFixed(1)).join(', ')}; in the kernel ${med(rows.map((x) => x.selfSysUs)).toFixed(1)}); bytes/event by relation: ${rel}`);
    }
  }
  for (const s of sides) { await s.audit.close(); await s.fleet.close(); }
} finally {
  await stores.stop();
}
