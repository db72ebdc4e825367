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
const NODE = process.execPath;
const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));

async function child(script: string, env: Record<string, string>, gateway = false): Promise<{ port: number; proc: ChildProcess }> {
  const [cmd, ...args] = pinnedArgv(gateway ? GATEWAY : { cpu: null, nice: 0 }, [NODE, script]);
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => { const m = /(?:listening|on) (\d+)/.exec(b.toString()); if (m) resolve(Number(m[1])); });
    proc.once('exit', (c) => reject(new Error(`${script} exited ${c}`)));
  });
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
const build = buildAam(NODE, REPO, out);
const agent = await child(here('./a2a-echo-agent.ts'), { PORT: '0' });
const bare = await child(bareProxyScript(out), { UPSTREAM_URL: `http://127.0.0.1:${agent.port}`, PORT: String(await freePort()) }, true);
const work = mkdtempSync(join(tmpdir(), 'aam-a2a-bench-'));
const configPath = join(work, 'aam.yaml');
// No model is called: the bench config's mock provider points at a port nothing listens on.
writeFileSync(configPath, a2aBenchConfig(await freePort(), agent.port));
const key = createAamKey(NODE, REPO, configPath, work, build, build.env);
const aamPort = await freePort();
const [aamNode, ...aamArgs] = pinnedArgv(GATEWAY, aamServeArgv(NODE, REPO, configPath, aamPort, work, build));
const aam = spawn(aamNode, aamArgs, { cwd: REPO, env: { ...process.env, ...build.env }, stdio: ['ignore', 'ignore', 'inherit'] });
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
/** Per round, per `stream:target`: p50 c=1, RPS c=64, CPU ms per request c=64. */
const rounds: Array<Record<string, { p50: number; rps: number; cpu: number }>> = [];
for (let r = 0; r < ROUNDS; r++) {
  const row: Record<string, { p50: number; rps: number; cpu: number }> = {};
  for (const stream of kinds) {
    // Rotated each round, so no target is always measured first.
    for (const t of targets.map((_, k) => targets[(k + r) % targets.length])) {
      const l = await latency(t, stream);
      // CPU of the process under test (all its threads), over the c=64 run: the cost per request without scheduling noise.
      const before = cpuTicks(pidOf(t));
      const rps = await throughput(t, stream);
      const cpu = before === null ? NaN : (((cpuTicks(pidOf(t)) ?? before) - before) * 1000 / CLK_TCK) / (N * 2);
      row[`${stream}:${t.name}`] = { p50: pct(l, 50), rps, cpu };
    }
  }
  rounds.push(row);
  console.error(`round ${r + 1}/${ROUNDS}: ${kinds.map((st) => `${st ? 'stream' : 'send'} aam-bare ${fmt(row[`${st}:aam`].p50 - row[`${st}:bare proxy`].p50)}, ${(100 * row[`${st}:aam`].rps / row[`${st}:bare proxy`].rps).toFixed(0)} %`).join('; ')}`);
}
const med = (k: string, f: (v: { p50: number; rps: number; cpu: number }) => number) => median(rounds.map((row) => f(row[k])));
console.log(`A2A hop, ${ROUNDS} rounds (targets interleaved, rotated), each: ${N} sequential requests after ${WARMUP} warm-up (c=1) and ${N * 2} requests at c=64; ${PIN ? 'gateways pinned to CPU 1, echo agent and load generator to CPU 0' : 'unpinned'}; Node ${process.version}; aam: ${build.from}\n`);
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
