// Redis's cost of the admission script alone, per request, for trees side by side (issue 14: at c=64
// the stores' core is the limit, and the script is most of Redis's time). Each TREE's own
// FleetLimiter (imported from its src/) runs in this process on a database of its own (so on Redis
// keys of its own) of one PostgreSQL + Redis started as `npm run bench` starts them, with the bench
// policy's shape (bench/aam-bench.yaml: one daily budget, no rate limits; the bench request's
// estimate). C workers each loop: admit, one event-loop turn standing in for the upstream call,
// settle (the settle rides on a later admission, as on a replica): c=12 gives the ~6 admissions
// per script call of `npm run bench`'s fleet c=64 row, c=64 ~28. Rounds interleave the trees; per
// round and tree: admissions per EVALSHA, Redis's usec per request inside EVALSHA (INFO
// commandstats: wall time, a loaded host stretches it) and redis-server's CPU per request (its main
// thread's, /proc schedstat; the 100 ms after the round included), and this process's own CPU per
// request (process.cpuUsage: the replica's side of admission, its limiter, RESP encoding and
// parsing and promises, plus this loop's). Stores on CPU 0, this on CPU 1.
//   node bench/fleet-admit-cost.ts [--n 5000] [--rounds 8] [--conc 12] TREE [TREE...]
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBenchFleet } from './lib/fleet.ts';
import { aamBenchConfig, AAM_AGENT } from './lib/aam.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent, setFor } from '../src/policy/compile.ts';

const { values: opt, positionals } = parseArgs({ allowPositionals: true, options: {
  n: { type: 'string', default: '5000' }, rounds: { type: 'string', default: '8' }, conc: { type: 'string', default: '12' },
} });
const N = Number(opt.n);
const C = Number(opt.conc);

const trees = (positionals.length > 0 ? positionals : ['.']).map((t) => resolve(t));

const compiled = compilePolicies(parseConfigTexts([{ file: 'aam-bench.yaml', text: aamBenchConfig(18080) }]));
const agent = findAgent(compiled, AAM_AGENT);
if (!agent) throw new Error(`the bench config has no agent ${AAM_AGENT}`);
// Frozen, as decide.ts passes a compiled policy set's budgets (the limiter keeps its plan per array).
const budgets = Object.freeze(setFor(agent, compiled).limits.budgets.map((b) => ({ key: b.key, limits: b })));
const TOKENS = 20 + 64;
const AMOUNT = (20 * 0.15 + 64 * 0.6) / 1e6;

// The stores on CPU 0 (they inherit this process's pinning while they start), this client (the
// gateway's place) on CPU 1, as `npm run bench` places them.
const pinSelf = (cpu: number): void => { spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' }); };
pinSelf(0);
const stores = await startBenchFleet();
pinSelf(1);
// redis-server's main thread's CPU time in ns (/proc schedstat: not 10 ms ticks).
const redisPort = new URL(stores.env.AAM_REDIS_URL).port;
const redisPid = Number(/pid=(\d+)/.exec(spawnSync('ss', ['-ltnpH', `sport = :${redisPort}`], { encoding: 'utf8' }).stdout)?.[1]);
const redisNs = (): number => Number(readFileSync(`/proc/${redisPid}/schedstat`, 'utf8').split(' ')[0]);
interface Limiter { admit(r: unknown): Promise<{ ok: boolean; ticket?: unknown; code?: string }>; settle(t: unknown, c: number, tk: number): void; close(): Promise<void>; admitCalls: number; settleCalls: number }
const sides: Array<{ tree: string; db: string; limiter: Limiter; fleet: { close(): Promise<void> }; rows: Array<{ perCall: number; usec: number; cpuUs: number; selfUs: number }> }> = [];
try {
  for (const [i, tree] of trees.entries()) {
    const db = await stores.database(`aam_a${i}`);
    const { openFleet } = await import(`${tree}/src/store/fleet.ts`);
    const { FleetLimiter } = await import(`${tree}/src/store/fleet-limits.ts`);
    const fleet = await openFleet({ databaseUrl: db.env.AAM_DATABASE_URL, redisUrl: db.env.AAM_REDIS_URL }, { follow: false, migrate: true, admission: true });
    sides.push({ tree, db: db.name, limiter: new FleetLimiter(fleet, {}), fleet, rows: [] });
  }
  const run = async (l: Limiter, n: number): Promise<void> => {
    let left = n;
    const worker = async (): Promise<void> => {
      while (left-- > 0) {
        const r = await l.admit({ rates: [], tokens: TOKENS, budgets, amountUsd: AMOUNT });
        if (!r.ok) throw new Error(`admission refused: ${r.code}`);
        await new Promise((r) => setImmediate(r));
        l.settle(r.ticket, 0.0000102, 32);
      }
    };
    await Promise.all(Array.from({ length: C }, worker));
  };
  for (const s of sides) await run(s.limiter, 2000); // warm-up: JIT, script loaded, budget seeded
  for (let r = 0; r < Number(opt.rounds); r++) {
    for (const s of (r % 2 ? [...sides].reverse() : sides)) {
      const before = await stores.counters();
      const calls0 = s.limiter.admitCalls + s.limiter.settleCalls;
      const ns0 = redisNs();
      const self0 = process.cpuUsage();
      await run(s.limiter, N);
      const self = process.cpuUsage(self0);
      await sleep(100); // the last settlements go alone
      const ns = redisNs() - ns0;
      const after = await stores.counters();
      const calls = s.limiter.admitCalls + s.limiter.settleCalls - calls0;
      const row = { perCall: N / calls, usec: ((after.redisUsec.evalsha ?? 0) - (before.redisUsec.evalsha ?? 0)) / N, cpuUs: ns / 1000 / N, selfUs: (self.user + self.system) / N };
      s.rows.push(row);
      console.log(`round ${r + 1} ${s.tree}: ${row.perCall.toFixed(1)} admissions per call, EVALSHA ${row.usec.toFixed(2)} us per request, redis-server CPU ${row.cpuUs.toFixed(1)} us per request, this process ${row.selfUs.toFixed(1)} us per request`);
    }
  }
  const med = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  console.log(`\nmedians of ${opt.rounds} interleaved rounds of ${N} at c=${C}:`);
  for (const s of sides) console.log(`  ${s.tree}: EVALSHA ${med(s.rows.map((x) => x.usec)).toFixed(2)} us/request (${s.rows.map((x) => x.usec.toFixed(2)).join(', ')}), redis CPU ${med(s.rows.map((x) => x.cpuUs)).toFixed(1)} us/request (${s.rows.map((x) => x.cpuUs.toFixed(1)).join(', ')}), this process ${med(s.rows.map((x) => x.selfUs)).toFixed(1)} us/request (${s.rows.map((x) => x.selfUs.toFixed(1)).join(', ')}), ${med(s.rows.map((x) => x.perCall)).toFixed(1)} per call`);
  for (const s of sides) { await s.limiter.close(); await s.fleet.close(); }
} finally {
  await stores.stop();
}
