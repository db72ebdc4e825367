// Gateway CPU per request (utime + stime of the aam process over N requests), which a loaded,
// shared machine disturbs far less than wall-clock latency. Each source tree given is built to
// JavaScript (as `npm start` runs it) and served in its own process; rounds interleave the trees
// so that they see the same load. The mock upstream is bench/mock-upstream.js; the a2a kinds are an
// A2A hop (SendMessage, SendStreamingMessage) to bench/a2a-echo-agent.ts.
//   node bench/cpu-per-request.ts [--n 20000] [--rounds 3] [--conc 4] [--prof] [--kind nonstream,stream,stream-nousage,messages,messages-stream,responses,responses-stream,responses-stored,a2a,a2a-stream] [--bare] [--pin CPU] [--alloc] [--jit] [--fleet [--stores-cpu CPU]] TREE [TREE...]
// --bare: the bare pass-through proxy (bench/bare-proxy.ts) joins the rounds as a tree named 'bare'
// (chat kinds: in front of the mock; it forwards the request as it is), and as 'bare-a2a' in front of
// the echo agent (a2a kinds), the floor the gateway is compared with (--prof: bench/results/prof-bare*/).
// --fleet: every gateway is a fleet replica on one PostgreSQL server + one Redis (started as `npm run bench`
// starts them, bench/lib/fleet.ts), each tree on a database of its own there (CREATE DATABASE aam_tI,
// migrated by that tree's own `aam migrate`, so that trees with different migrations are each judged
// on their own schema) and so on Redis keys of its own (aam prefixes them with the database's name);
// each round also reports what a request cost the stores (Redis commands, EVALSHA and PostgreSQL
// transactions of that tree's database per request: the round trips).
// --stores-cpu CPU (--fleet only): PostgreSQL, Redis, this client and the mock run pinned to that core, as
// `npm run bench` pins them with its load generator (they inherit this process's taskset), so that a
// store woken by a request does not preempt the gateway on its core. Default: with --pin on a
// 2-core machine, the other core; else not pinned. `--stores-cpu none`: not pinned.
// TREE: a directory holding src/ and scripts/build.ts (a git worktree of aam); default: this one.
// TREE::FLAG[,FLAG] serves that tree with node flags added to npm start's (e.g. /work/main::--single-threaded-gc;
// env:NAME=value sets an environment variable instead, e.g. /work/main::env:AAM_HEAP_GROWING_PERCENT=0),
// so that one tree can run beside itself with and without a flag. With --fleet, TREE::embedded serves that
// tree on its embedded store instead (no AAM_DATABASE_URL/AAM_REDIS_URL), so that one run interleaves a
// replica with the embedded gateway it is judged against (e.g. `--fleet --conc 1 --pin 1 TREE::embedded TREE`:
// the wall-clock p50s of each round are issue 14's fleet c=1 gap, and its CPU per request).
// --alloc: every gateway (and with --bare the bare proxies) also runs with --trace-gc-nvp, and each round reports the bytes V8 allocated
// per request (the `allocated=` of the GCs logged during the round, per isolate: the main thread is
// the largest). The count starts at the round's first GC, so it is off by at most one young
// generation (16 MB) over --n requests. With it, per isolate: the bytes scavenges promoted to old space per
// request (what later needs a major GC), the GCs logged (mark-compacts among them), their pauses summed
// per request (wall time of that thread: a loaded core stretches them) and the wall time of their phases
// on V8's helper threads (the V8Worker threads' GC share).
// --jit: every gateway (and with --bare the bare proxies) also runs with --trace-opt --trace-deopt, and each round
// reports the optimizing compiles finished during it (Maglev and TurboFan, and the wall time of their
// phase on V8's helper threads per request: the V8Worker threads' JIT share), the deopts (eager ones and
// code invalidated by a changed dependency, e.g. an allocation site's tenuring), and the functions compiled
// or deoptimized most (a warm gateway that keeps compiling the same function has a deopt loop).
// Each round also reports the gateway's RSS when it started and ended: the start follows the gateway's idle
// time while the other trees ran, in which V8's memory reducer may have run full GCs (after one, a warm
// gateway re-optimizes ~150 functions: --jit shows the burst).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { bareProxyScript } from './lib/bare.ts';
import { A2A_BENCH_TOKEN, a2aBenchConfig, aamBenchConfig, aamMigrate, aamServeArgv, buildAam, createAamKey, type AamBuild } from './lib/aam.ts';
import { CLK_TCK, cpuTicks, rssKb, startProcess, sysTicks, stopProcess, threadSwitches, threadTicks, waitHttp } from './lib/procs.ts';
import { sendOnce, type RequestSpec } from './lib/http-once.ts';
import { freePort } from '../test/helpers/e2e.ts';
import { startBenchFleet, storeCost, pgDetail, type BenchFleet } from './lib/fleet.ts';

const NO_PIN = { cpu: null, nice: 0 };
const HERE = dirname(fileURLToPath(import.meta.url));
const NODE = process.execPath;
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { n: { type: 'string', default: '20000' }, rounds: { type: 'string', default: '3' }, conc: { type: 'string', default: '4' }, prof: { type: 'boolean', default: false }, bare: { type: 'boolean', default: false }, pin: { type: 'string' }, strace: { type: 'boolean', default: false }, alloc: { type: 'boolean', default: false }, jit: { type: 'boolean', default: false }, kind: { type: 'string' }, fleet: { type: 'boolean', default: false }, 'stores-cpu': { type: 'string' } },
});
const N = Number(opt.n);
// --pin CPU: every gateway (threads included) on that one core, as `npm run bench` runs them; the mock and this client are not pinned (--fleet: see --stores-cpu).
const GW_PIN = opt.pin === undefined ? NO_PIN : { cpu: Number(opt.pin), nice: 0 };
// --stores-cpu: see the head comment.
const STORES_CPU = !opt.fleet || opt['stores-cpu'] === 'none' ? null
  : opt['stores-cpu'] !== undefined ? Number(opt['stores-cpu'])
    : GW_PIN.cpu !== null && availableParallelism() === 2 ? 1 - GW_PIN.cpu : null;
if (STORES_CPU !== null && !(Number.isInteger(STORES_CPU) && STORES_CPU >= 0)) throw new Error('--stores-cpu: a CPU number or none');
const ROUNDS = Number(opt.rounds);
const CONC = Number(opt.conc);
const specs = (positionals.length ? positionals : [join(HERE, '..')]).map((p) => {
  const [dir, flags] = p.split('::');
  // A flag `env:NAME=value` is set in that gateway's environment instead (e.g. env:AAM_HEAP_GROWING_PERCENT=0).
  const all = flags ? flags.split(',') : [];
  const embedded = all.includes('embedded');
  const env = Object.fromEntries(all.filter((f) => f.startsWith('env:')).map((f) => { const [k, ...v] = f.slice(4).split('='); return [k, v.join('=')]; }));
  return { dir: resolve(dir), flags: all.filter((f) => !f.startsWith('env:') && f !== 'embedded'), env, embedded, name: flags ? `${resolve(dir)} ${flags}` : resolve(dir) };
});
const trees = specs.map((t) => t.dir);
for (const t of [...trees, join(HERE, '..')]) mkdirSync(join(t, 'bench', 'tmp'), { recursive: true });

const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
// The same request in the Responses API (translated to the mock's chat completions; not stored), as bench/run.ts sends it.
const resp = { model: 'gpt-4o-mini', instructions: 'You are a helpful assistant.', input: 'Say hello in one short sentence.', max_output_tokens: 64, temperature: 0.2, store: false };
const anthropicBase = { model: 'claude-bench', system: 'You are a helpful assistant.', messages: [{ role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
interface Kind { path: string; body: Buffer; stream: boolean; headers?: Record<string, string> }
const CHAT = '/v1/chat/completions';
const MESSAGES = '/v1/messages';
const A2A = '/a2a/echo';
const a2aBody = (stream: boolean) => Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: stream ? 'SendStreamingMessage' : 'SendMessage', params: { message: { messageId: 'b1', role: 'ROLE_USER', parts: [{ text: 'score account 42 for risk' }], metadata: { skill: 'echo' } } } }));
const ALL_KINDS: Record<string, Kind> = {
  nonstream: { path: CHAT, stream: false, body: Buffer.from(JSON.stringify(base)) },
  stream: { path: CHAT, stream: true, body: Buffer.from(JSON.stringify({ ...base, stream: true, stream_options: { include_usage: true } })) },
  // A stream that does not ask for usage (aam asks the upstream for it and hides it again).
  'stream-nousage': { path: CHAT, stream: true, body: Buffer.from(JSON.stringify({ ...base, stream: true })) },
  // The same request on the Anthropic wire to an Anthropic upstream (the mock's /v1/messages; route claude-bench).
  messages: { path: MESSAGES, stream: false, body: Buffer.from(JSON.stringify(anthropicBase)) },
  'messages-stream': { path: MESSAGES, stream: true, body: Buffer.from(JSON.stringify({ ...anthropicBase, stream: true })) },
  responses: { path: '/v1/responses', stream: false, body: Buffer.from(JSON.stringify(resp)) },
  'responses-stream': { path: '/v1/responses', stream: true, body: Buffer.from(JSON.stringify({ ...resp, stream: true })) },
  // store: true (the API's default): the answer is stored per agent (its write is behind the answer).
  'responses-stored': { path: '/v1/responses', stream: false, body: Buffer.from(JSON.stringify({ ...resp, store: true })) },
  a2a: { path: A2A, stream: false, body: a2aBody(false), headers: { 'a2a-version': '1.0' } },
  'a2a-stream': { path: A2A, stream: true, body: a2aBody(true), headers: { 'a2a-version': '1.0', accept: 'text/event-stream' } },
};
// --kind a,b: only those (default: chat non-stream and stream).
const wanted = (opt.kind ?? 'nonstream,stream').split(',');
const KINDS = Object.fromEntries(Object.entries(ALL_KINDS).filter(([k]) => wanted.includes(k)));
if (Object.keys(KINDS).length !== wanted.length) throw new Error(`--kind: use ${Object.keys(ALL_KINDS).join(', ')}`);

/** KB allocated per request, per isolate (largest first), from the --trace-gc-nvp lines written to `log` after byte `from`. */
function allocatedPerRequest(log: string, from: number, n: number): string {
  const text = readFileSync(log).subarray(from).toString('utf8');
  const byIsolate = new Map<string, { bytes: number; promoted: number; gcs: number; majors: number; pauseMs: number; backgroundMs: number }>();
  for (const m of text.matchAll(/^\[\d+:(0x[0-9a-f]+):\d+\].*?pause=([\d.]+) .*? gc=(\w+) .*? allocated=(\d+) promoted=(\d+) .*$/gm)) {
    const e = byIsolate.get(m[1]) ?? { bytes: 0, promoted: 0, gcs: 0, majors: 0, pauseMs: 0, backgroundMs: 0 };
    e.bytes += Number(m[4]);
    e.promoted += Number(m[5]);
    e.pauseMs += Number(m[2]);
    for (const b of m[0].matchAll(/ background\.[\w.]+=([\d.]+)/g)) e.backgroundMs += Number(b[1]);
    e.gcs++;
    if (m[3] === 'mc') e.majors++;
    byIsolate.set(m[1], e);
  }
  // pause: the GC pauses of that thread summed, per request (the time it stopped for GC); background: the
  // phases V8's helper threads (V8Worker) ran for it (parallel scavenging, concurrent marking and sweeping), summed.
  return [...byIsolate].sort((a, b) => b[1].bytes - a[1].bytes)
    .map(([iso, e]) => `${iso} ${(e.bytes / n / 1024).toFixed(1)} KB, promoted ${(e.promoted / n).toFixed(0)} B (${e.gcs} GCs, ${e.majors} mark-compact, pause ${(e.pauseMs * 1000 / n).toFixed(2)} us, background ${(e.backgroundMs * 1000 / n).toFixed(2)} us)`).join(', ') || 'no GC logged';
}

const JIT_FLAGS = ['--trace-opt', '--trace-deopt'];
/** The optimizing compiles and deopts that --trace-opt/--trace-deopt logged to `log` after byte `from`, over `n` requests. */
function jitPerRound(log: string, from: number, n: number): string {
  const text = readFileSync(log).subarray(from).toString('utf8');
  const count = (m: Map<string, number>, k: string): void => { m.set(k, (m.get(k) ?? 0) + 1); };
  const top = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, c]) => `${k} x${c}`).join(', ');
  const sum = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  const tiers = new Map<string, number>();
  const fns = new Map<string, number>();
  const deopts = new Map<string, number>();
  let backgroundMs = 0;
  // "took A, B, C ms": B is the phase that ran on a helper thread.
  for (const m of text.matchAll(/^\[completed compiling 0x[0-9a-f]+ <JSFunction ?([^ ]*) \(sfi[^>]*> \(target (\w+)\)( OSR)? - took [\d.]+, ([\d.]+), [\d.]+ ms\]/gm)) {
    count(tiers, m[2]);
    count(fns, `${m[1] || '(anonymous)'} ${m[2]}${m[3] ?? ''}`);
    backgroundMs += Number(m[4]);
  }
  for (const m of text.matchAll(/^\[bailout \(kind: [\w-]+, reason: ([^)]*)\): begin\. deoptimizing 0x[0-9a-f]+ <JSFunction ?([^ ]*) \(sfi/gm)) count(deopts, `${m[2] || '(anonymous)'}: ${m[1]}`);
  // Code thrown away without a bailout because something it assumed changed (a map, an allocation site's tenuring).
  for (const m of text.matchAll(/^\[marking dependent code 0x[0-9a-f]+ <Code \w+> \(0x[0-9a-f]+ <SharedFunctionInfo ?([^>]*)>\) .*? reason: ([^\]]*)\]/gm)) count(deopts, `${m[1] || '(anonymous)'}: ${m[2]}`);
  return `${[...tiers].map(([t, c]) => `${c} ${t}`).join(' + ') || 'no'} compiles (helper threads ${(backgroundMs * 1000 / n).toFixed(1)} us per request${fns.size ? `; most: ${top(fns)}` : ''}), ${sum(deopts)} deopts${deopts.size ? ` (${top(deopts)})` : ''}`;
}

interface Gateway { tree: string; child: ChildProcess; pool: Pool; key: string; log?: string; /** --fleet: its PostgreSQL database. */ database?: string }

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const quantile = (a: number[], q: number): number => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(a.length * q))];
const work = mkdtempSync(join(tmpdir(), 'aam-cpu-'));
const children: ChildProcess[] = [];
const outs: string[] = [];
let fleet: BenchFleet | undefined;
try {
  if (STORES_CPU !== null) {
    // This process and all its threads; what it starts from now on (stores, mock) inherits it.
    const r = spawnSync('taskset', ['-a', '-p', '-c', String(STORES_CPU), String(process.pid)], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`--stores-cpu ${STORES_CPU}: taskset failed`);
  }
  if (opt.fleet) {
    fleet = await startBenchFleet();
    console.log(`fleet stores: PostgreSQL and Redis on loopback, ${STORES_CPU === null ? 'not pinned' : `pinned with this client and the mock to CPU ${STORES_CPU}`}; gateways ${GW_PIN.cpu === null ? 'not pinned' : `on CPU ${GW_PIN.cpu}`}`);
  }
  const mockPort = await freePort();
  const mock = startProcess(NO_PIN, [NODE, join(HERE, 'mock-upstream.js')], { MOCK_PORT: String(mockPort) }, join(work, 'mock.log'));
  children.push(mock);
  if (!(await waitHttp(`http://127.0.0.1:${mockPort}/__mock/stats`, 20_000, 200, mock))) throw new Error('mock upstream did not start');
  // The A2A kinds' callee: the echo agent, published as agent `echo` beside the bench config.
  let config = aamBenchConfig(mockPort);
  let agentPort: number | undefined;
  if (Object.values(KINDS).some((k) => k.path === A2A)) {
    agentPort = await freePort();
    const agent = startProcess(NO_PIN, [NODE, join(HERE, 'a2a-echo-agent.ts')], { PORT: String(agentPort) }, join(work, 'agent.log'));
    children.push(agent);
    if (!(await waitHttp(`http://127.0.0.1:${agentPort}/`, 20_000, 200, agent))) throw new Error('the A2A echo agent did not start');
    config = a2aBenchConfig(mockPort, agentPort);
  }
  // The Anthropic kinds' route: the mock's Anthropic wire, allowed beside the bench model.
  if (Object.values(KINDS).some((k) => k.path === MESSAGES)) {
    const allow = 'allow: [gpt-4o-mini]';
    if (!config.includes(allow)) throw new Error(`the bench config no longer says "${allow}"`);
    config = `${config.replace(allow, 'allow: [gpt-4o-mini, claude-bench]')}---
apiVersion: access.envisionai.dev/v1
kind: Provider
metadata: { name: mock-anthropic }
spec: { type: anthropic, baseUrl: "http://127.0.0.1:${mockPort}/v1" }
---
apiVersion: access.envisionai.dev/v1
kind: Model
metadata: { name: claude-bench }
spec: { targets: [ { provider: mock-anthropic, model: claude-bench, pricing: { input_per_1m: 0.8, output_per_1m: 4 } } ] }
`;
  }
  const gws: Gateway[] = [];
  for (const [i, { dir: tree, flags, env: flagEnv, embedded, name }] of specs.entries()) {
    const dir = join(work, `t${i}`);
    mkdirSync(dir);
    // Built inside the tree (bench/tmp/, ignored by git) so that its node_modules resolve.
    const out = mkdtempSync(join(tree, 'bench', 'tmp', 'cpu-dist-'));
    outs.push(out);
    const built: AamBuild = buildAam(NODE, tree, out);
    const build: AamBuild = { ...built, flags: [...built.flags, ...flags, ...(opt.alloc ? ['--trace-gc-nvp'] : []), ...(opt.jit ? JIT_FLAGS : [])] };
    const configPath = join(dir, 'aam.yaml');
    writeFileSync(configPath, config);
    const dataDir = join(dir, 'data');
    let storeEnv: Record<string, string> = {};
    let database: string | undefined;
    if (fleet && !embedded) {
      const db = await fleet.database(`aam_t${i}`);
      storeEnv = db.env;
      database = db.name;
      aamMigrate(NODE, tree, build, { ...build.env, ...storeEnv });
      console.log(`${name}: PostgreSQL database ${db.name} (migrated by this tree's aam migrate), Redis keys ${db.redisPrefix}*`);
    }
    const key = createAamKey(NODE, tree, configPath, dataDir, build, { ...build.env, ...storeEnv });
    const port = await freePort();
    const argv = aamServeArgv(NODE, tree, configPath, port, dataDir, build);
    if (opt.prof) argv.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${join(tree, 'bench', 'results', 'prof')}`);
    const child = startProcess(GW_PIN, argv, { ...build.env, ...storeEnv, ...flagEnv, AAM_LOG_LEVEL: 'warn', A2A_BENCH_TOKEN }, join(dir, 'aam.log'), tree);
    children.push(child);
    if (!(await waitHttp(`http://127.0.0.1:${port}/healthz`, 60_000, 200, child))) throw new Error(`aam from ${tree} did not start (log: ${join(dir, 'aam.log')})`);
    gws.push({ tree: name, child, key, database, log: join(dir, 'aam.log'), pool: new Pool(`http://127.0.0.1:${port}`, { connections: CONC, pipelining: 1 }) });
  }
  // One bare proxy per upstream the kinds reach: 'bare' in front of the mock (chat kinds), 'bare-a2a'
  // in front of the echo agent (a2a kinds; it answers on any path, so /a2a/echo is forwarded as it is).
  const bares: Array<{ tree: string; upstream: number; path: string }> = [];
  if (opt.bare && Object.values(KINDS).some((k) => k.path === CHAT)) bares.push({ tree: 'bare', upstream: mockPort, path: CHAT });
  if (opt.bare && agentPort !== undefined) bares.push({ tree: 'bare-a2a', upstream: agentPort, path: A2A });
  const bareOf = new Map(bares.map((b) => [b.tree, b.path]));
  for (const b of bares) {
    const port = await freePort();
    // Written inside this repo (bench/tmp/) so that `undici` resolves.
    const out = mkdtempSync(join(HERE, 'tmp', 'cpu-bare-'));
    outs.push(out);
    const bareArgv = [NODE, bareProxyScript(out)];
    if (opt.prof) bareArgv.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${join(HERE, 'results', `prof-${b.tree}`)}`);
    // --alloc: the floor's allocation and GC pauses per request too (beside aam's).
    if (opt.alloc) bareArgv.splice(1, 0, '--trace-gc-nvp');
    if (opt.jit) bareArgv.splice(1, 0, ...JIT_FLAGS);
    const log = join(work, `${b.tree}.log`);
    const child = startProcess(GW_PIN, bareArgv, { UPSTREAM_URL: `http://127.0.0.1:${b.upstream}`, PORT: String(port) }, log);
    children.push(child);
    if (!(await waitHttp(`http://127.0.0.1:${port}${b.path === CHAT ? '/__mock/stats' : '/'}`, 20_000, 200, child))) throw new Error(`${b.tree} proxy did not start`);
    gws.push({ tree: b.tree, child, key: 'dummy', log, pool: new Pool(`http://127.0.0.1:${port}`, { connections: CONC, pipelining: 1 }) });
  }
  const skip = (g: Gateway, kind: Kind): boolean => bareOf.has(g.tree) && kind.path !== bareOf.get(g.tree);

  /** Per thread name, microseconds per request of the last run (threads alive at its end). */
  let byThread = '';
  /** Per thread name, context switches per request of the last run (voluntary/involuntary), and its wall-clock p50s. */
  let switches = '';
  let wall = '';
  let alloc = '';
  let jit = '';
  /** The gateway's RSS (MB) when the last run started (after its idle time since the one before) and when it ended. */
  let rss = '';
  /** Of the last run's CPU per request, the kernel's part (stime, all threads). */
  let sys = 0;
  /** `n` requests, `CONC` at a time; the gateway's CPU microseconds per request. */
  const run = async (g: Gateway, kind: Kind, n: number): Promise<number> => {
    const spec: RequestSpec = { path: kind.path, headers: { 'content-type': 'application/json', authorization: `Bearer ${g.key}`, ...kind.headers }, body: kind.body };
    const stream = kind.stream;
    let left = n;
    const t0 = cpuTicks(g.child.pid as number) as number;
    const s0 = sysTicks(g.child.pid as number) as number;
    const th0 = threadTicks(g.child.pid as number);
    const sw0 = threadSwitches(g.child.pid as number);
    const rss0 = rssKb(g.child.pid as number);
    const log0 = (opt.alloc || opt.jit) && g.log ? statSync(g.log).size : 0;
    const total: number[] = [];
    const content: number[] = [];
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (left-- > 0) {
        const t = await sendOnce(g.pool, spec, stream);
        if (t.status !== 200) throw new Error(`status ${t.status} from ${g.tree}: ${t.error ?? ''}`);
        total.push(t.totalMs);
        if (stream) content.push(t.firstContentMs);
      }
    }));
    switches = [...threadSwitches(g.child.pid as number)].map(([name, c]) => {
      const b = sw0.get(name) ?? { vol: 0, invol: 0, waitNs: 0 };
      return [name, (c.vol - b.vol) / n, (c.invol - b.invol) / n, (c.waitNs - b.waitNs) / n / 1000] as const;
    }).filter(([, v, i]) => v + i >= 0.01).sort((a, b) => b[1] + b[2] - a[1] - a[2]).map(([name, v, i, w]) => `${name} ${v.toFixed(2)}/${i.toFixed(2)} (run-queue wait ${w.toFixed(1)} us)`).join(', ');
    wall = `p50 ${(median(total) * 1000).toFixed(0)} us, p99 ${(quantile(total, 0.99) * 1000).toFixed(0)} us${stream ? `, first content p50 ${(median(content) * 1000).toFixed(0)} us` : ''}`;
    // Reset per run: a gateway without a GC log must not show the previous one's numbers.
    alloc = opt.alloc && g.log ? allocatedPerRequest(g.log, log0, n) : 'not measured';
    jit = opt.jit && g.log ? jitPerRound(g.log, log0, n) : 'not measured';
    const rss1 = rssKb(g.child.pid as number);
    rss = `${rss0 === null ? '?' : (rss0 / 1024).toFixed(0)} -> ${rss1 === null ? '?' : (rss1 / 1024).toFixed(0)} MB`;
    const perReq = (ticks: number): number => (ticks / CLK_TCK) * 1e6 / n;
    byThread = [...threadTicks(g.child.pid as number)].map(([name, t]) => [name, perReq(t - (th0.get(name) ?? 0))] as const)
      .filter(([, us]) => us >= 0.5).sort((a, b) => b[1] - a[1]).map(([name, us]) => `${name} ${us.toFixed(1)}`).join(', ');
    sys = perReq((sysTicks(g.child.pid as number) as number) - s0);
    return perReq((cpuTicks(g.child.pid as number) as number) - t0);
  };

  for (const g of gws) for (const kind of Object.values(KINDS)) if (!skip(g, kind)) await run(g, kind, Math.min(N, 5000)); // warm-up (JIT)
  const results = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    // Each round starts with the next tree: a load that drifts during a round favours none of them.
    for (const g of [...gws.slice(r % gws.length), ...gws.slice(0, r % gws.length)]) {
      for (const [k, kind] of Object.entries(KINDS)) {
        if (skip(g, kind)) continue;
        // --strace: system calls of the gateway (all threads) over this round, counted (slows it: CPU is then not comparable).
        const st = opt.strace ? spawn('strace', ['-c', '-f', '-p', String(g.child.pid), '-o', join(work, 'strace.txt')], { stdio: 'ignore' }) : undefined;
        if (st) await new Promise((r) => setTimeout(r, 1000));
        const stores0 = fleet && g.database ? await fleet.counters(g.database) : undefined;
        const us = await run(g, kind, N);
        const stores = stores0 && fleet ? storeCost(stores0, await fleet.counters(g.database), N) : undefined;
        if (st) { st.kill('SIGINT'); await new Promise((r) => st.once('exit', r)); console.log(readFileSync(join(work, 'strace.txt'), 'utf8').split('\n').slice(0, 16).join('\n')); }
        const key = `${g.tree} ${k}`;
        results.set(key, [...(results.get(key) ?? []), us]);
        console.log(`round ${r + 1} ${key}: ${us.toFixed(1)} us CPU/request (${sys.toFixed(1)} of it in the kernel; by thread: ${byThread}); ${wall}; RSS ${rss}; context switches/request voluntary/involuntary (and run-queue wait per request): ${switches}${opt.alloc ? `; allocated per request: ${alloc}` : ''}${opt.jit ? `; JIT: ${jit}` : ''}`);
        if (stores) console.log(`  stores per request: ${stores.redis_by_command.evalsha ?? 0} EVALSHA, ${stores.redis_commands_per_request} Redis commands in all, ${stores.pg_xacts_per_request} PostgreSQL transactions (database ${g.database}), store CPU ${stores.store_cpu_ms_per_request} ms (Redis ${stores.redis_cpu_ms_per_request}: ${stores.redis_reads_per_request} reads, ${stores.redis_writes_per_request} writes; usec by command ${Object.entries(stores.redis_usec_by_command).map(([c, us]) => `${c} ${us}`).join(', ')}); ${pgDetail(stores)}`);
      }
    }
  }
  console.log(`\nmedian of ${ROUNDS} rounds, ${N} requests each, c=${CONC}:`);
  for (const [k, v] of results) console.log(`  ${k}: ${median(v).toFixed(1)} us CPU/request  (${v.map((x) => x.toFixed(1)).join(', ')})`);
  for (const g of gws) await g.pool.close();
} finally {
  for (const c of children.reverse()) await stopProcess(c);
  await fleet?.stop();
  if (!process.env.CPU_KEEP_WORK) for (const d of [work, ...outs]) rmSync(d, { recursive: true, force: true });
}
