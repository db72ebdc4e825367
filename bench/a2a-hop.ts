// Added latency (c=1) and throughput (c=64) of an A2A hop through aam, beside the bare pass-through
// proxy and the echo agent called directly, for SendMessage and SendStreamingMessage.
// Run: node_modules/.bin/node bench/a2a-hop.ts [requests=2000] [rounds=5]
// Pinned as `npm run bench` pins (A2A_HOP_PIN=0 turns it off): the bare proxy and aam each alone
// on CPU 1 when measured, the echo agent and this load generator on CPU 0. Rounds interleave the
// targets in a rotated order, and the targets are judged on the median over rounds of each round's
// aam - bare p50 and aam / bare RPS: one pass per target, unpinned, let aam's extra threads use the
// second core (154 % of the bare proxy's RPS in one such run) and the machine's swing between passes
// decide the rest.
// The echo agent, the bare proxy and aam are child processes alike, so none of them shares its
// process with the load generator. aam and the bare proxy run as cpu-per-request runs them: aam
// built to JavaScript at the start of the run (scripts/build.ts, with `npm start`'s flags), the
// bare proxy stripped to JavaScript, aam serving a2aBenchConfig (virtual key, agents rule, budget
// admission, guardrail step, credential injection, delegation, scrubbing door, audit trail). The
// CPU column is the target's process CPU (all threads) over the c=64 run, so aam's is what
// `cpu-per-request --kind a2a,a2a-stream --conc 64` reports for the same request.
// It measures warm gateways, as the issue's targets are about what a hop costs a running gateway.
// A fresh aam tiers up over its first ~10,000 sends (cpu-per-request --jit, c=64: ~850 optimizing
// compiles over 22,000 A2A sends against the bare proxy's ~150; here, SendMessage compiles per 1,000
// sends: aam 420-435 in the first 1,000, 23-52 in the next three, then 11-37; the bare proxy 330-344,
// then 5-29), so each target first gets A2A_HOP_WARM sends of each kind at c=64 (default 10,000, 12-20 s
// in all). Rounds interleave the targets, so each one idles while the others run; after a long enough
// idle an aam's memory reducer drops optimized code and the next load re-compiles (~300 functions after
// cpu-per-request's ~8 s idles). So before each measured pass the target gets A2A_HOP_REWARM sends
// (default 2,000) of the kind measured, at c=64. In A2A_HOP_JIT=1 side runs, aam's compiles per 250
// re-warm sends: with 2,000-request passes (short idles) 0-5, no burst; with 10,000-request passes
// round 2 re-compiled 28 18 25 58 8 6 4 5 (send) and 21 13 9 7 0 2 1 4 (stream): the burst is over
// after ~1,250 sends, then the warm rate. The measured passes then still had 6-16 compiles per 6,600
// sends (2,000-request passes) and 20-99 per ~30,000 (10,000), the bare proxy 0-9.
// A2A_HOP_JIT=1 (a side run: --trace-opt slows the gateways, so its table is not a measurement) runs
// the gateways with --trace-opt and prints their compiles per warm-up step and per pass.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort } from '../test/helpers/e2e.ts';
import { A2A_BENCH_TOKEN, a2aBenchConfig, aamServeArgv, buildAam, createAamKey } from './lib/aam.ts';
import { bareProxyScript } from './lib/bare.ts';
import { sendOnce, type RequestSpec } from './lib/http-once.ts';
import { CLK_TCK, cpuTicks, pinnedArgv, waitHttp } from './lib/procs.ts';
import { median } from './lib/stats.ts';

const N = Number(process.argv[2] ?? 2000);
const ROUNDS = Number(process.argv[3] ?? 5);
const PIN = process.env.A2A_HOP_PIN !== '0';
const GATEWAY = { cpu: PIN ? 1 : null, nice: 0 };
if (PIN) spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
const WARMUP = 300;
const count = (name: string, dflt: number): number => {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}=${process.env[name]}: want a whole number of sends (0 or more)`);
  return v;
};
/** Sends at c=64 of each kind that bring every target to steady state before round 1 (see the head comment). */
const WARM = count('A2A_HOP_WARM', 10_000);
/** Sends at c=64 of the kind about to be measured, before each measured pass: the re-optimization after idling. */
const REWARM = count('A2A_HOP_REWARM', 2_000);
/** A side run, not a measurement: the gateways log --trace-opt and each warm-up and pass reports their optimizing compiles. */
const JIT = process.env.A2A_HOP_JIT === '1';
const JIT_FLAGS = JIT ? ['--trace-opt'] : [];
const NODE = process.execPath;
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

/** Optimizing compiles each gateway's --trace-opt has logged so far, by pid (A2A_HOP_JIT=1 only). */
const compiles = new Map<number, number>();
/** Counts the "[completed compiling" lines --trace-opt writes to `proc`'s stdout. */
function countCompiles(proc: ChildProcess): void {
  let tail = '';
  compiles.set(proc.pid!, 0);
  proc.stdout!.on('data', (b: Buffer) => {
    const lines = (tail + b.toString('latin1')).split('\n');
    tail = lines.pop()!;
    compiles.set(proc.pid!, compiles.get(proc.pid!)! + lines.filter((l) => l.startsWith('[completed compiling')).length);
  });
}

async function child(script: string, env: Record<string, string>, gateway = false): Promise<{ port: number; proc: ChildProcess }> {
  const [cmd, ...args] = pinnedArgv(gateway ? GATEWAY : { cpu: null, nice: 0 }, [NODE, ...(gateway ? JIT_FLAGS : []), script]);
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => { const m = /(?:listening|on) (\d+)/.exec(b.toString()); if (m) resolve(Number(m[1])); });
    proc.once('exit', (c) => reject(new Error(`${script} exited ${c}`)));
  });
  if (gateway && JIT) countCompiles(proc);
  return { port, proc };
}

const body = (stream: boolean) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: stream ? 'SendStreamingMessage' : 'SendMessage', params: { message: { messageId: 'b1', role: 'ROLE_USER', parts: [{ text: 'score account 42 for risk' }], metadata: { skill: 'echo' } } } });

interface Target { name: string; origin: string; path: string; headers: Record<string, string> }

const specOf = (t: Target, stream: boolean): RequestSpec => ({
  path: t.path, body: Buffer.from(body(stream)),
  headers: { 'content-type': 'application/json', 'a2a-version': '1.0', ...(stream ? { accept: 'text/event-stream' } : {}), ...t.headers },
});

/** One request through the same low-level client cpu-per-request uses (undici's handler API: the client adds little to the machine's load). */
async function once(pool: Pool, t: Target, spec: RequestSpec): Promise<number> {
  const r = await sendOnce(pool, spec, false);
  if (r.status !== 200) throw new Error(`${t.name}: HTTP ${r.status}`);
  return r.totalMs;
}

/** The answer is the echo, checked once per target and request (the timed requests only check the status). */
async function check(t: Target, stream: boolean): Promise<void> {
  const pool = new Pool(t.origin, { connections: 1 });
  const spec = specOf(t, stream);
  const r = await pool.request({ path: spec.path, method: 'POST', headers: spec.headers, body: spec.body });
  const text = await r.body.text();
  await pool.close();
  if (r.statusCode !== 200 || !text.includes('score account 42')) throw new Error(`${t.name}: HTTP ${r.statusCode} ${text.slice(0, 200)}`);
}

const pct = (s: number[], p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];

async function latency(t: Target, stream: boolean): Promise<number[]> {
  const pool = new Pool(t.origin, { connections: 1 });
  const spec = specOf(t, stream);
  for (let i = 0; i < WARMUP; i++) await once(pool, t, spec);
  const out: number[] = [];
  for (let i = 0; i < N; i++) out.push(await once(pool, t, spec));
  await pool.close();
  return out.sort((a, b) => a - b);
}

/** `n` sends at c=64 that are not measured (warm-up). */
async function load(t: Target, stream: boolean, n: number, c = 64): Promise<void> {
  const pool = new Pool(t.origin, { connections: c });
  const spec = specOf(t, stream);
  let left = n;
  const run = async (): Promise<void> => { while (left-- > 0) await once(pool, t, spec); };
  await Promise.all(Array.from({ length: c }, run));
  await pool.close();
}

async function throughput(t: Target, stream: boolean, c = 64): Promise<number> {
  const pool = new Pool(t.origin, { connections: c });
  const spec = specOf(t, stream);
  let left = WARMUP;
  const run = async (): Promise<void> => { while (left-- > 0) await once(pool, t, spec); };
  await Promise.all(Array.from({ length: c }, run));
  left = N * 2;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: c }, run));
  const rps = (N * 2) / ((performance.now() - t0) / 1000);
  await pool.close();
  return rps;
}

process.env.AAM_LOG_LEVEL ??= 'error';
process.env.A2A_BENCH_TOKEN = A2A_BENCH_TOKEN;
const REPO = fileURLToPath(new URL('..', import.meta.url));
mkdirSync(join(REPO, 'bench', 'tmp'), { recursive: true });
// Built inside the repo (bench/tmp/, ignored by git) so that node_modules resolve.
const out = mkdtempSync(join(REPO, 'bench', 'tmp', 'a2a-hop-'));
const built = buildAam(NODE, REPO, out);
const build = { ...built, flags: [...built.flags, ...JIT_FLAGS] };
const agent = await child(here('./a2a-echo-agent.ts'), { PORT: '0' });
const bare = await child(bareProxyScript(out), { UPSTREAM_URL: `http://127.0.0.1:${agent.port}`, PORT: String(await freePort()) }, true);
const work = mkdtempSync(join(tmpdir(), 'aam-a2a-bench-'));
const configPath = join(work, 'aam.yaml');
// No model is called: the bench config's mock provider points at a port nothing listens on.
writeFileSync(configPath, a2aBenchConfig(await freePort(), agent.port));
const key = createAamKey(NODE, REPO, configPath, work, build, build.env);
const aamPort = await freePort();
const [aamNode, ...aamArgs] = pinnedArgv(GATEWAY, aamServeArgv(NODE, REPO, configPath, aamPort, work, build));
const aam = spawn(aamNode, aamArgs, { cwd: REPO, env: { ...process.env, ...build.env }, stdio: ['ignore', JIT ? 'pipe' : 'ignore', 'inherit'] });
if (JIT) countCompiles(aam);
if (!(await waitHttp(`http://127.0.0.1:${aamPort}/readyz`, 60_000, 200, aam))) throw new Error('aam serve did not start');
const targets: Target[] = [
  { name: 'direct', origin: `http://127.0.0.1:${agent.port}`, path: '/a2a', headers: {} },
  { name: 'bare proxy', origin: `http://127.0.0.1:${bare.port}`, path: '/a2a', headers: {} },
  { name: 'aam', origin: `http://127.0.0.1:${aamPort}`, path: '/a2a/echo', headers: { authorization: `Bearer ${key}` } },
];

const fmt = (ms: number) => `${ms.toFixed(3)} ms`;
const kinds = [false, true];
const pidOf = (t: Target) => (t.name === 'direct' ? agent.proc.pid : t.name === 'bare proxy' ? bare.proc.pid : aam.pid)!;
for (const stream of kinds) for (const t of targets) await check(t, stream);
const jitOf = (t: Target): number => compiles.get(pidOf(t)) ?? 0;
const kindName = (stream: boolean) => (stream ? 'stream' : 'send');
/** `n` warm-up sends in steps of `step`; the gateway's compiles in each step (all 0 unless A2A_HOP_JIT=1). */
async function warm(t: Target, stream: boolean, n: number, step: number): Promise<number[]> {
  const steps: number[] = [];
  for (let done = 0; done < n; done += step) {
    const c0 = jitOf(t);
    await load(t, stream, Math.min(step, n - done));
    steps.push(jitOf(t) - c0);
  }
  return steps;
}
// Steady state before round 1, in steps of 1,000 so that A2A_HOP_JIT=1 can show where compiling stops.
const warm0 = performance.now();
for (const t of targets) for (const stream of kinds) {
  const steps = await warm(t, stream, WARM, 1000);
  if (JIT && t.name !== 'direct') console.error(`jit warm-up ${t.name} ${kindName(stream)}: compiles per 1,000 sends ${steps.join(' ')}`);
}
console.error(`warm-up: ${WARM} sends of each kind at c=64 per target, ${((performance.now() - warm0) / 1000).toFixed(1)} s`);
/** Per round, per `stream:target`: p50 c=1, RPS c=64, CPU ms per request c=64. */
const rounds: Array<Record<string, { p50: number; rps: number; cpu: number }>> = [];
for (let r = 0; r < ROUNDS; r++) {
  const row: Record<string, { p50: number; rps: number; cpu: number }> = {};
  for (const stream of kinds) {
    // Rotated each round, so no target is always measured first.
    for (const t of targets.map((_, k) => targets[(k + r) % targets.length])) {
      const rewarm = await warm(t, stream, REWARM, 250);
      const c1 = jitOf(t);
      const l = await latency(t, stream);
      // CPU of the process under test (all its threads), over the c=64 run: the cost per request without scheduling noise.
      const before = cpuTicks(pidOf(t));
      const rps = await throughput(t, stream);
      const cpu = before === null ? NaN : (((cpuTicks(pidOf(t)) ?? before) - before) * 1000 / CLK_TCK) / (N * 2);
      row[`${stream}:${t.name}`] = { p50: pct(l, 50), rps, cpu };
      if (JIT && t.name !== 'direct') console.error(`jit round ${r + 1} ${t.name} ${kindName(stream)}: compiles per 250 re-warm sends ${rewarm.join(' ')}, then ${jitOf(t) - c1} in the measured pass`);
    }
  }
  rounds.push(row);
  console.error(`round ${r + 1}/${ROUNDS}: ${kinds.map((st) => `${st ? 'stream' : 'send'} aam-bare ${fmt(row[`${st}:aam`].p50 - row[`${st}:bare proxy`].p50)}, ${(100 * row[`${st}:aam`].rps / row[`${st}:bare proxy`].rps).toFixed(0)} %`).join('; ')}`);
}
const med = (k: string, f: (v: { p50: number; rps: number; cpu: number }) => number) => median(rounds.map((row) => f(row[k])));
console.log(`A2A hop, ${ROUNDS} rounds (targets interleaved, rotated), after ${WARM} warm-up sends of each kind per target (c=64); each: ${REWARM} re-warm sends (c=64), ${N} sequential requests after ${WARMUP} warm-up (c=1) and ${N * 2} requests at c=64; ${PIN ? 'gateways pinned to CPU 1, echo agent and load generator to CPU 0' : 'unpinned'}; Node ${process.version}; aam: ${build.from}\n`);
console.log('| request | target | p50 c=1 | RPS c=64 | CPU per request c=64 |');
console.log('|---|---|---|---|---|');
for (const stream of kinds) for (const t of targets) {
  const k = `${stream}:${t.name}`;
  console.log(`| ${stream ? 'SendStreamingMessage' : 'SendMessage'} | ${t.name} | ${fmt(med(k, (v) => v.p50))} | ${med(k, (v) => v.rps).toFixed(0)} | ${fmt(med(k, (v) => v.cpu))} |`);
}
console.log('\nMedians over rounds of each round\'s aam - bare proxy p50 and aam / bare proxy RPS (range in brackets):\n');
console.log('| request | aam added p50 over bare proxy (c=1) | aam RPS / bare proxy RPS (c=64) |');
console.log('|---|---|---|');
for (const stream of kinds) {
  const d = rounds.map((row) => row[`${stream}:aam`].p50 - row[`${stream}:bare proxy`].p50);
  const q = rounds.map((row) => row[`${stream}:aam`].rps / row[`${stream}:bare proxy`].rps);
  console.log(`| ${stream ? 'SendStreamingMessage' : 'SendMessage'} | ${fmt(median(d))} (${fmt(Math.min(...d))} to ${fmt(Math.max(...d))}) | ${(100 * median(q)).toFixed(0)} % (${(100 * Math.min(...q)).toFixed(0)} to ${(100 * Math.max(...q)).toFixed(0)} %) |`);
}

agent.proc.kill();
bare.proc.kill();
// The data dir goes only once aam has exited (its audit writer still holds the segment file).
await new Promise((resolve) => { aam.once('exit', resolve); aam.kill(); });
for (const d of [work, out]) rmSync(d, { recursive: true, force: true });
