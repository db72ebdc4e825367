// The floor under fleet mode's latency over embedded (issue 14: target +0.3 ms p50 at c=1): the
// two round trips to other processes a fleet replica awaits per model request, timed alone from a
// Node client placed where the gateway runs. PostgreSQL and Redis are started as `npm run bench`
// starts them (bench/lib/fleet.ts) and pinned as it pins them, with its load generator (this
// process is pinned to --stores-cpu while it starts them; they inherit it), then this process moves
// to the gateway's core (--pin) and measures, at c=1, each of:
//   redis PING           ioredis PING on a connection made by aam's connectRedis (the bare Redis RTT)
//   admission EVALSHA    aam's own FleetLimiter.admit (its Lua by scriptRunner, on the replica's own
//                        admission connection) for bench/aam-bench.yaml's policy (its daily budget,
//                        compiled by aam), the previous request's settle riding on it, as a replica does
//   postgres SELECT 1    on a connection made by aam's connectPostgres
//   audit commit         aam's own openFleetAuditLog: record(a model_call event) + journaled(true), on
//                        the replica's evidence connection, in a database migrated by aam's migrate()
//   ... after upstream   the same, each right after an untimed call to the mock upstream
//                        (bench/mock-upstream.js on the stores' core, as `npm run bench` places it):
//                        the order a replica's request runs them in. The store then starts on a core
//                        the mock just ran on (its caches cold, the mock's post-response work still
//                        there), where the rows above time it warm and alone.
// Rounds interleave the four (each round: N of each, in turn); printed: the median of the rounds'
// medians (and p90), the two round trips' sum (admission + audit commit) beside the +0.3 ms target
// and the gap `npm run bench` last measured (read from bench/RESULTS.md). Only meaningful at load < 2: the load is printed.
//   node bench/fleet-floor.ts [--n 2000] [--rounds 5] [--pin 1] [--stores-cpu 0]
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort } from '../test/helpers/e2e.ts';
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startBenchFleet } from './lib/fleet.ts';
import { aamBenchConfig, AAM_AGENT } from './lib/aam.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent, setFor } from '../src/policy/compile.ts';
import { openFleet } from '../src/store/fleet.ts';
import { connectRedis } from '../src/store/redis.ts';
import { connectPostgres } from '../src/store/postgres.ts';
import { FleetLimiter } from '../src/store/fleet-limits.ts';
import { openFleetAuditLog } from '../src/audit/fleet-log.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { IdPool } from '../src/observability/otlp-context.ts';

const { values: opt } = parseArgs({ options: { n: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '5' }, pin: { type: 'string', default: '1' }, 'stores-cpu': { type: 'string' } } });
const N = Number(opt.n);
const ROUNDS = Number(opt.rounds);
const GW_CPU = Number(opt.pin);
const STORES_CPU = opt['stores-cpu'] !== undefined ? Number(opt['stores-cpu']) : availableParallelism() === 2 ? 1 - GW_CPU : 0;
/** Issue 14's target for the fleet c=1 p50 over embedded. */
const TARGET_MS = 0.3;

/** The fleet c=1 gap `npm run bench` last wrote to bench/RESULTS.md (its paired-slices row), in ms; null if there is none. */
function lastMeasuredMs(): number | null {
  let text = '';
  try { text = readFileSync(fileURLToPath(new URL('./RESULTS.md', import.meta.url)), 'utf8'); } catch { return null; }
  const section = text.slice(text.indexOf('<!-- BEGIN npm-run-bench -->'), text.indexOf('<!-- END npm-run-bench -->'));
  const m = /fleet added p50 over embedded aam, non-stream c=1[^|]*\| \+?(-?[\d.]+) ms/.exec(section);
  return m ? Number(m[1]) : null;
}

function pinSelf(cpu: number): void {
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`taskset to CPU ${cpu} failed`);
}

const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
const median = (a: number[]): number => pct([...a].sort((x, y) => x - y), 0.5);

// The request's admission as src/access/decide.ts admit() builds it for the bench agent: the
// policy's rate entries (none in the bench policy) and budgets, compiled by aam from the bench config.
const compiled = compilePolicies(parseConfigTexts([{ file: 'aam-bench.yaml', text: aamBenchConfig(18080) }]));
const agent = findAgent(compiled, AAM_AGENT);
if (!agent) throw new Error(`the bench config has no agent ${AAM_AGENT}`);
const limits = setFor(agent, compiled).limits;
if (limits.budgets.length === 0) throw new Error('the bench policy has no budget: the admission would not reach Redis');
if (limits.rate) throw new Error('the bench policy has rate limits: build their entries as decide.ts does (rateEntriesOf)');
const budgets = limits.budgets.map((b) => ({ key: b.key, limits: b }));
// The bench request's estimate: a short prompt plus max_tokens 64, priced as gpt-4o-mini (reserved, then settled).
const TOKENS = 20 + 64;
const AMOUNT = (20 * 0.15 + 64 * 0.6) / 1e6;

let i = 0;
// Trace ids as the gateway's tracer makes them (IdPool): a randomBytes(16) per event was ~5 us of
// the timed commit, and random ids put the trace index's insert on a random page.
const ids = new IdPool();
const event = (): AuditEventInput => ({
  type: 'model_call', request_id: `req-floor-${++i}`, trace_id: ids.traceId(),
  identity: { spiffe_id: agent.spiffeId, agent: agent.name, team: 'bench', environment: 'dev', method: 'virtual_key', key_id: 'key_bench' },
  policy: { name: 'bench-policy', version: 'sha256:bench', rule: 0, decision: 'allow', reason: 'model "gpt-4o-mini" is in models.allow' },
  model: { route: 'gpt-4o-mini', provider: 'mock', model: 'gpt-4o-mini', input_tokens: 20, output_tokens: 12, cached_tokens: 0, cost_usd: 0.0000102, latency_ms: 1, stream: false },
  outcome: { status: 200 },
});

pinSelf(STORES_CPU);
const stores = await startBenchFleet();
// The mock upstream, started from the stores' core (it inherits the pinning, as the bench's does).
const mockPort = await freePort();
const mock = spawn(process.execPath, [join(fileURLToPath(new URL('.', import.meta.url)), 'mock-upstream.js')], { env: { ...process.env, MOCK_PORT: String(mockPort) }, stdio: 'ignore' });
try {
  const env = { databaseUrl: stores.env.AAM_DATABASE_URL, redisUrl: stores.env.AAM_REDIS_URL };
  // The stores and their first connections are up on the stores' core: the client goes to the gateway's.
  pinSelf(GW_CPU);
  // A serving replica's connections (admission: its own Redis connection for the script and its own
  // PostgreSQL connection for the audit INSERTs), in a database migrated by aam.
  const fleet = await openFleet(env, { follow: false, migrate: true, admission: true });
  const limiter = new FleetLimiter(fleet, {});
  const audit = await openFleetAuditLog(fleet.sql, { replica: fleet.replicaId, writer: fleet.evidence, keyEncryptionKey: randomBytes(32) });
  const redis = connectRedis(env.redisUrl, 'aam-floor');
  await redis.connect();
  const pg = connectPostgres(env.databaseUrl, 1);
  await pg`SELECT 1`;
  let ticket: Parameters<FleetLimiter['settle']>[0] | null = null;
  const upstream = new Pool(`http://127.0.0.1:${mockPort}`, { connections: 1, pipelining: 1 });
  const upBody = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64 });
  const upstreamCall = async (): Promise<void> => {
    const r = await upstream.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: upBody });
    await r.body.text();
  };
  for (let k = 0; ; k++) {
    try { await upstreamCall(); break; } catch (e) { if (k > 100) throw e; await new Promise((r) => setTimeout(r, 100)); }
  }
  /** Names of the ops timed right after an untimed upstream call. */
  const AFTER = ' after upstream';
  const ops: Record<string, () => Promise<unknown>> = {
    'redis PING': () => redis.ping(),
    'admission EVALSHA': async () => {
      // The previous request's settlement is queued and rides on this admission's script call.
      if (ticket) limiter.settle(ticket, 0.0000102, 32);
      const r = await limiter.admit({ rates: [], tokens: TOKENS, budgets, amountUsd: AMOUNT });
      if (!r.ok) throw new Error(`admission refused: ${r.code}`);
      ticket = r.ticket;
    },
    'postgres SELECT 1': () => pg`SELECT 1`,
    'audit commit': () => { audit.record(event()); return audit.journaled(true); },
  };
  for (const name of ['postgres SELECT 1', 'audit commit']) ops[name + AFTER] = ops[name];
  const byOp = new Map<string, Array<{ p50: number; p90: number }>>();
  const once = async (fn: () => Promise<unknown>, n: number, after = false): Promise<{ p50: number; p90: number }> => {
    const t: number[] = [];
    for (let k = 0; k < n; k++) {
      if (after) await upstreamCall();
      const t0 = performance.now();
      await fn();
      t.push(performance.now() - t0);
    }
    t.sort((a, b) => a - b);
    return { p50: pct(t, 0.5), p90: pct(t, 0.9) };
  };
  for (const fn of Object.values(ops)) await once(fn, Math.min(N, 500)); // warm-up (JIT, prepared statements, script loaded)
  const load0 = loadavg()[0];
  for (let r = 0; r < ROUNDS; r++) {
    // Each round starts with the next measure: a load that drifts during a round favours none.
    const names = Object.keys(ops);
    for (const name of [...names.slice(r % names.length), ...names.slice(0, r % names.length)]) {
      const m = await once(ops[name], N, name.endsWith(AFTER));
      byOp.set(name, [...(byOp.get(name) ?? []), m]);
      console.log(`round ${r + 1} ${name}: p50 ${(m.p50 * 1000).toFixed(0)} us, p90 ${(m.p90 * 1000).toFixed(0)} us`);
    }
  }
  const load1 = loadavg()[0];
  const p50 = (name: string): number => median(byOp.get(name)!.map((m) => m.p50));
  console.log(`\nc=1, median of ${ROUNDS} interleaved rounds of ${N}; stores on CPU ${STORES_CPU}, this client on CPU ${GW_CPU}; load ${load0.toFixed(2)} -> ${load1.toFixed(2)} (1-min; meaningful below 2):`);
  for (const name of Object.keys(ops)) console.log(`  ${name.padEnd(33)} p50 ${(p50(name) * 1000).toFixed(0).padStart(4)} us  (p90 ${(median(byOp.get(name)!.map((m) => m.p90)) * 1000).toFixed(0)} us; rounds ${byOp.get(name)!.map((m) => (m.p50 * 1000).toFixed(0)).join(', ')})`);
  const trips = p50('admission EVALSHA') + p50('audit commit');
  const bare = p50('redis PING') + p50('postgres SELECT 1');
  console.log(`  the two round trips a request awaits (admission EVALSHA + audit commit): ${(trips * 1000).toFixed(0)} us; their bare floor (PING + SELECT 1): ${(bare * 1000).toFixed(0)} us`);
  console.log(`  the commit as a replica's request meets it (right after the upstream's answer): ${(p50('audit commit' + AFTER) * 1000).toFixed(0)} us, +${((p50('audit commit' + AFTER) - p50('audit commit')) * 1000).toFixed(0)} us over alone (SELECT 1: +${((p50('postgres SELECT 1' + AFTER) - p50('postgres SELECT 1')) * 1000).toFixed(0)} us)`);
  const measured = lastMeasuredMs();
  console.log(`  issue 14: fleet c=1 p50 is ${measured === null ? 'not in bench/RESULTS.md yet (npm run bench)' : `+${Math.round(measured * 1000)} us over embedded (bench/RESULTS.md, last npm run bench)`}, target +${TARGET_MS * 1000} us. The embedded gateway also awaits its own audit write (a local file), so fleet's extra is about this sum less that write, plus the replica's own work around the two calls; a sum above +${TARGET_MS * 1000} us means the target is below the round trips' floor on this machine.`);
  redis.disconnect();
  await upstream.close();
  await pg.end({ timeout: 2 });
  await audit.close();
  await limiter.close();
  await fleet.close();
} finally {
  mock.kill();
  await stores.stop();
}
