// `npm run bench:memory`: how much memory aam holds, idle and under sustained load, next to the
// bare pass-through proxy measured in the same run.
//   1. Idle: what `npm start` runs (node + package.json's start flags + bin/aam.js serve, i.e. the
//      built JavaScript), with the repo's demo config (aam.yaml), and the same from the TypeScript
//      sources: RSS and process.memoryUsage() 5 s after it became ready and answered /healthz, and
//      again MEM_IDLE_S (35) s after, once the threads that stop when idle (audit writer, scan
//      thread: 30 s) have stopped.
//   2. Loaded: the bare proxy and aam (bench/aam-bench.yaml + one MCP server: identity, policy,
//      budget, usage, audit on) run at the same time, both pinned to the gateway core; wrk loads
//      them in turns, MEM_ROUND_S seconds at c=MEM_CONC, for MEM_ROUNDS rounds (order alternating).
//      After each run: RSS (and its peak during the run, sampled every 250 ms) and
//      process.memoryUsage() + V8 heap spaces, read through bench/lib/mem-report.js.
// Writes the "memory" section of bench/RESULTS.md and the raw JSON to bench/results/.
// See bench/README.md ("Memory").
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { aamBenchConfig, aamServeArgv, buildAam, createAamKey, startCommand } from './lib/aam.ts';
import type { AamBuild } from './lib/aam.ts';
import { chooseLoadgen, runLoad } from './lib/loadgen.ts';
import { CLK_TCK, answers, cpuTicks, rollupKb, rssKb, sampleRss, setAutogroupNice, startProcess, stopProcess, waitHttp } from './lib/procs.ts';
import type { PinOptions } from './lib/procs.ts';
import { replaceSection, table } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { bareProxyScript } from './lib/bare.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const REPORTER = join(BENCH, 'lib', 'mem-report.js');
const env = process.env;
const num = (name: string, dflt: number): number => (env[name] ? Number(env[name]) : dflt);
const cfg = {
  rounds: num('MEM_ROUNDS', 8),
  roundS: num('MEM_ROUND_S', 20),
  conc: num('MEM_CONC', 64),
  // mixed: c/2 non-stream and c/2 streaming at once, as `npm run bench`'s RSS phase runs them
  mode: env.MEM_MODE === 'stream' ? 'stream' as const : env.MEM_MODE === 'mixed' ? 'mixed' as const : 'nonstream' as const,
  // commas inside [flags] or {env} belong to the target
  targets: (env.MEM_TARGETS ?? 'bare,aam').split(/,(?![^[{]*[\]}])/).map((s) => s.trim()).filter(Boolean),
  idle: env.MEM_IDLE !== '0',
  idleS: num('MEM_IDLE_S', 35),
  snapshots: env.MEM_SNAPSHOT === '1',
  ports: { mock: num('MEM_MOCK_PORT', 18380), first: num('MEM_FIRST_PORT', 18381) },
};
const nice = process.getuid?.() === 0 ? -10 : 0;
const gwPin: PinOptions = { cpu: 1, nice };
const clientPin: PinOptions = { cpu: 0, nice };
const say = (s: string): void => { process.stdout.write(s + '\n'); };
const MB = 1024 * 1024;

/** process.memoryUsage() and V8 heap-space sizes as written by bench/lib/mem-report.js. */
interface MemUsage {
  rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number;
  spaces: Record<string, { size: number; used: number }>;
  /** worker threads' heaps (the audit writer) */
  workers?: { total: number; used: number; external: number; malloced: number }[];
}

interface Reading { rss_kb: number | null; anon_kb?: number; peak_kb?: number; usage?: MemUsage; rps?: number; p50_ms?: number; errors?: number; cpu_us_per_req?: number }

interface Gateway { name: string; label: string; child: ChildProcess; origin: string; headers: Record<string, string>; rounds: Reading[]; idle?: Reading }

const children = new Set<ChildProcess>();
async function stopAll(): Promise<void> { await Promise.all([...children].map((c) => stopProcess(c))); }
process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)); });

function spawnTracked(pin: PinOptions, argv: string[], extraEnv: Record<string, string>, log: string, cwd = REPO): ChildProcess {
  const child = startProcess(pin, argv, extraEnv, log, cwd);
  children.add(child);
  return child;
}

/** Anonymous (private) part of RSS; the rest is file-backed, mostly the node binary's own pages. */
function anonKb(pid: number): number | undefined {
  return rollupKb(pid, 'Anonymous') ?? undefined;
}

/** Asks the process (started with mem-report.js) for its memory; null if it does not answer. */
async function usageOf(pid: number, dir: string, snapshotFile?: string): Promise<MemUsage | null> {
  const file = join(dir, `${pid}.json`);
  rmSync(file, { force: true });
  if (snapshotFile) writeFileSync(join(dir, `${pid}.snapshot`), snapshotFile);
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + (snapshotFile ? 120_000 : 5_000);
  while (Date.now() < deadline) {
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as MemUsage;
    await sleep(50);
  }
  return null;
}

/** `npm start`'s process with the demo config, or the same from the sources: idle memory, 5 s and cfg.idleS s after /healthz. */
async function idleDemo(work: string, label: string, argv: string[], env: Record<string, string>, port: number): Promise<Array<{ label: string; argv: string; reading: Reading } | { label: string; error: string }>> {
  const dataDir = join(work, `idle-data-${port}`);
  const child = spawnTracked(gwPin, argv, { ...env, AAM_PORT: String(port), AAM_DATA_DIR: dataDir, MEM_REPORT_DIR: work }, join(work, `idle-${port}.log`));
  try {
    if (!(await waitHttp(`http://127.0.0.1:${port}/readyz`, 60_000, 200, child))) return [{ label, error: `did not become ready; log: ${readFileSync(join(work, `idle-${port}.log`), 'utf8').slice(-600)}` }];
    await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.arrayBuffer());
    const t0 = Date.now();
    const out = [];
    for (const s of [5, cfg.idleS]) {
      await sleep(Math.max(0, t0 + s * 1000 - Date.now()));
      // RSS first: the heap report allocates.
      const rss_kb = rssKb(child.pid ?? 0);
      const anon_kb = anonKb(child.pid ?? 0);
      const usage = await usageOf(child.pid ?? 0, work);
      out.push({ label: `${label}, ${s} s`, argv: argv.slice(1).map((a) => a.replace(REPO + '/', '')).join(' '), reading: { rss_kb, anon_kb, usage: usage ?? undefined } });
    }
    return out;
  } finally {
    await stopProcess(child);
    children.delete(child);
  }
}

/**
 * bench config + one stdio MCP server. aam spawns it, connects and lists its tools at start (before /readyz), with
 * its own stdio client: the readings include that client and Ajv (the tools' input schemas), not the MCP SDK (its
 * zod v4 and v3 schemas and zod-to-json-schema, about 9 MB of the loaded RSS in session 16), which loads with the
 * first MCP session a client opens.
 */
function loadedConfig(mockPort: number): string {
  const server = join(REPO, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
  return `${aamBenchConfig(mockPort)}---
apiVersion: access.envisionai.dev/v1
kind: McpServer
metadata: { name: everything }
spec: { transport: stdio, command: ${JSON.stringify(process.execPath)}, args: [${JSON.stringify(server)}] }
`;
}

/**
 * `aam[--flag,--flag2]` -> aam with extra node flags, `aam{NAME=value,...}` with extra environment
 * (e.g. AAM_AUDIT=off), `aam-src` -> the TypeScript sources.
 */
function parseTarget(spec: string): { kind: 'bare' | 'aam'; flags: string[]; env: Record<string, string>; src: boolean } {
  const m = /^(bare|aam(-src)?)(?:\[(.*?)\])?(?:\{(.*)\})?$/.exec(spec);
  if (!m) throw new Error(`unknown target "${spec}" (use bare, aam, aam-src, aam[--node-flag,...], aam{ENV=value,...})`);
  const env = Object.fromEntries((m[4] ? m[4].split(',') : []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { kind: m[1] === 'bare' ? 'bare' : 'aam', src: Boolean(m[2]), flags: m[3] ? m[3].split(',') : [], env };
}

async function startGateways(work: string, build: AamBuild, loadgenBody: string): Promise<Gateway[]> {
  const configPath = join(work, 'aam-memory.yaml');
  writeFileSync(configPath, loadedConfig(cfg.ports.mock));
  const out: Gateway[] = [];
  let port = cfg.ports.first + 10;
  for (const spec of cfg.targets) {
    const t = parseTarget(spec);
    port++;
    if (await answers(`http://127.0.0.1:${port}/`)) throw new Error(`port ${port} is in use (set MEM_FIRST_PORT)`);
    const log = join(work, `gw-${port}.log`);
    if (t.kind === 'bare') {
      const child = spawnTracked(gwPin, [process.execPath, `--import=${REPORTER}`, bareProxyScript(work)], { UPSTREAM_URL: `http://127.0.0.1:${cfg.ports.mock}`, PORT: String(port), MEM_REPORT_DIR: work }, log);
      if (!(await waitHttp(`http://127.0.0.1:${port}/__mock/stats`, 15_000, 200, child))) throw new Error('bare proxy did not start');
      out.push({ name: spec, label: 'bare proxy', child, origin: `http://127.0.0.1:${port}`, headers: { authorization: 'Bearer dummy' }, rounds: [] });
      continue;
    }
    const b: AamBuild = t.src ? { ...build, main: join(REPO, 'src/cli/main.ts'), from: 'src' } : build;
    const withFlags: AamBuild = { ...b, flags: [`--import=${REPORTER}`, ...b.flags, ...t.flags] };
    const dataDir = join(work, `data-${port}`);
    mkdirSync(dataDir, { recursive: true });
    const key = createAamKey(process.execPath, REPO, configPath, dataDir, b);
    const child = spawnTracked(gwPin, aamServeArgv(process.execPath, REPO, configPath, port, dataDir, withFlags), { ...b.env, MEM_REPORT_DIR: work, AAM_LOG_LEVEL: 'warn', ...t.env }, log);
    if (!(await waitHttp(`http://127.0.0.1:${port}/readyz`, 60_000, 200, child))) throw new Error(`${spec} did not start: ${readFileSync(log, 'utf8').slice(-600)}`);
    out.push({ name: spec, label: spec, child, origin: `http://127.0.0.1:${port}`, headers: { authorization: `Bearer ${key}` }, rounds: [] });
  }
  // Every gateway answers once, then idles a moment: the "after start" reading.
  for (const g of out) {
    const res = await fetch(g.origin + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', ...g.headers }, body: readFileSync(loadgenBody) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`${g.label} answered ${res.status} to the first request`);
  }
  await sleep(3000);
  for (const g of out) g.idle = { rss_kb: rssKb(g.child.pid ?? 0), anon_kb: anonKb(g.child.pid ?? 0), usage: (await usageOf(g.child.pid ?? 0, work)) ?? undefined };
  return out;
}

/** One load of cfg.roundS s; mixed: c/2 of each body at once (RPS and requests summed, p50 the larger). */
async function loadOf(g: Gateway, bodies: string[], loadgen: 'wrk' | 'node', durationS: number): Promise<{ rps: number; p50_ms: number; errors: number; non2xx: number; requests: number }> {
  const rs = await Promise.all(bodies.map((bodyFile) => runLoad(loadgen, clientPin, { origin: g.origin, path: '/v1/chat/completions', headers: g.headers, bodyFile, conc: Math.max(1, Math.round(cfg.conc / bodies.length)), durationS })));
  const sum = (f: (r: typeof rs[number]) => number): number => rs.reduce((a, r) => a + f(r), 0);
  return { rps: sum((r) => r.rps), p50_ms: Math.max(...rs.map((r) => r.p50_ms)), errors: sum((r) => r.errors), non2xx: sum((r) => r.non2xx), requests: sum((r) => r.requests) };
}

async function loadRound(g: Gateway, bodies: string[], loadgen: 'wrk' | 'node', work: string, snapshot?: string): Promise<Reading> {
  const pid = g.child.pid ?? 0;
  const sampler = sampleRss(pid, 250);
  const ticks0 = cpuTicks(pid) ?? 0;
  const r = await loadOf(g, bodies, loadgen, cfg.roundS);
  const cpuUs = (((cpuTicks(pid) ?? 0) - ticks0) / CLK_TCK) * 1e6;
  const samples = sampler.stop();
  const usage = await usageOf(pid, work, snapshot);
  return { rss_kb: rssKb(pid), anon_kb: anonKb(pid), peak_kb: Math.max(...samples.map((s) => s.kb)), usage: usage ?? undefined, rps: r.rps, p50_ms: r.p50_ms, errors: r.errors + r.non2xx, cpu_us_per_req: cpuUs / Math.max(1, r.requests) };
}

const mb = (bytes: number | undefined): string => (bytes === undefined || !Number.isFinite(bytes) ? 'n/a' : (bytes / MB).toFixed(1));
const kbMb = (kb: number | null | undefined): string => (typeof kb === 'number' ? (kb / 1024).toFixed(1) : 'n/a');

function usageCells(u: MemUsage | undefined): string[] {
  if (!u) return ['n/a', 'n/a', 'n/a', 'n/a', 'n/a'];
  const w = u.workers?.length ? u.workers.map((x) => `${mb(x.used)} / ${mb(x.total)}`).join(', ') : '-';
  return [`${mb(u.heapUsed)} / ${mb(u.heapTotal)}`, mb(u.spaces.new_space?.size), mb(u.external), mb(u.arrayBuffers), w];
}

function render(meta: Record<string, string>, idle: Awaited<ReturnType<typeof idleDemo>>, gws: Gateway[]): string {
  const lines: string[] = ['## Memory (`npm run bench:memory`, bench/memory.ts)', ''];
  lines.push(`Measured ${meta.date} on ${meta.machine}, aam at ${meta.commit}; ${meta.build}. \`npm start\` runs \`${meta.start}\`.`, '');
  if (idle.length) {
    lines.push(`### Idle, demo config (\`npm start\` with aam.yaml, 5 s and ${cfg.idleS} s after the first /healthz)`, '');
    lines.push('At 5 s the audit writer thread is still up (the startup event started it); it stops after 30 s without work.', '');
    lines.push(table(['what ran', 'RSS MB', 'of it anonymous MB', 'heap used / total MB', 'new space MB', 'external MB', 'array buffers MB', 'worker heap used / total MB'],
      idle.map((i) => ('error' in i ? [i.label, `failed: ${i.error.slice(0, 200)}`, '', '', '', '', '', ''] : [`${i.label}: \`${i.argv}\``, kbMb(i.reading.rss_kb), kbMb(i.reading.anon_kb), ...usageCells(i.reading.usage)]))));
    lines.push('');
  }
  if (gws.length) {
    lines.push(`### Sustained load: ${cfg.rounds} rounds of ${cfg.roundS} s, wrk c=${cfg.conc} ${cfg.mode}, gateways loaded in turns`, '');
    lines.push('RSS after each round (and its peak during the round); heap figures from `process.memoryUsage()` right after the round (not after a forced GC).', '');
    const head = ['round'];
    for (const g of gws) head.push(`${g.label} RSS MB (anonymous; peak)`, `${g.label} heap used / total MB`, `${g.label} new space / external / array buffers MB`, `${g.label} worker heap used / total MB`, `${g.label} RPS`);
    const row = (label: string, pick: (g: Gateway) => Reading | undefined): string[] => {
      const cells = [label];
      for (const g of gws) {
        const r = pick(g);
        const u = usageCells(r?.usage);
        cells.push(r ? `${kbMb(r.rss_kb)} (${kbMb(r.anon_kb)}${r.peak_kb ? `; ${kbMb(r.peak_kb)}` : ''})` : 'n/a', u[0], `${u[1]} / ${u[2]} / ${u[3]}`, u[4], r?.rps ? Math.round(r.rps).toLocaleString('en-US') : '');
      }
      return cells;
    };
    const rows = [row('after start + 1 request', (g) => g.idle), ...Array.from({ length: cfg.rounds }, (_, i) => row(String(i + 1), (g) => g.rounds[i]))];
    lines.push(table(head, rows), '');
    lines.push('| gateway | RSS after last round MB | max RSS MB | growth over the 2nd half of the rounds MB | requests served | median RPS | median p50 ms | median CPU per request (all threads) |', '|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const g of gws) {
      const last = g.rounds[g.rounds.length - 1];
      const mid = g.rounds[Math.floor((g.rounds.length - 1) / 2)];
      const peak = Math.max(...g.rounds.map((r) => r.peak_kb ?? 0));
      const served = g.rounds.reduce((s, r) => s + (r.rps ?? 0) * cfg.roundS, 0);
      lines.push(`| ${g.label} | ${kbMb(last?.rss_kb)} | ${kbMb(peak)} | ${last && mid ? (((last.rss_kb ?? 0) - (mid.rss_kb ?? 0)) / 1024).toFixed(1) : 'n/a'} | ${Math.round(served).toLocaleString('en-US')} | ${Math.round(median(g.rounds.map((r) => r.rps))).toLocaleString('en-US')} | ${median(g.rounds.map((r) => r.p50_ms)).toFixed(3)} | ${median(g.rounds.map((r) => r.cpu_us_per_req)).toFixed(0)} us |`);
    }
    lines.push('');
    const bare = gws.find((g) => g.name === 'bare');
    for (const g of gws.filter((x) => x !== bare && bare)) {
      const ratios = g.rounds.map((r, i) => (r.rps ?? NaN) / (bare!.rounds[i]?.rps ?? NaN));
      lines.push(`- ${g.label} / bare proxy throughput, median of the per-round ratios: ${(median(ratios) * 100).toFixed(1)} % (rounds: ${ratios.map((x) => `${(x * 100).toFixed(0)} %`).join(', ')}).`);
    }
    const errs = gws.flatMap((g) => g.rounds.map((r, i) => (r.errors ? `${g.label} round ${i + 1}: ${r.errors} failed requests` : ''))).filter(Boolean);
    if (errs.length) lines.push(`- Failed requests: ${errs.join('; ')}.`);
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  if (nice) setAutogroupNice(nice);
  const loadgen = chooseLoadgen(env.BENCH_LOADGEN, say);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const work = join(BENCH, 'results', `memory-${stamp}`);
  mkdirSync(work, { recursive: true });
  const sh = (cmd: string, args: string[]): string => { try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim(); } catch { return '?'; } };
  const dirty = sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'src']) !== '' ? ' + uncommitted changes in src/' : '';
  const build = buildAam(process.execPath, REPO, join(work, 'dist'));
  const meta = {
    date: new Date().toISOString(), machine: `${cpus().length} CPUs (${cpus()[0]?.model.trim()}), Node ${process.version}, load average ${sh('cat', ['/proc/loadavg']).split(' ').slice(0, 3).join(' ')}`,
    commit: `git ${sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'])}${dirty}`, build: `aam ran as ${build.from}`,
    start: startCommand(REPO).text,
  };
  const body = join(work, 'body.json');
  const streamBody = join(work, 'body-stream.json');
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
  writeFileSync(body, JSON.stringify(base));
  writeFileSync(streamBody, JSON.stringify({ ...base, stream: true, stream_options: { include_usage: true } }));
  const bodies = cfg.mode === 'stream' ? [streamBody] : cfg.mode === 'mixed' ? [body, streamBody] : [body];
  try {
    const idle: Awaited<ReturnType<typeof idleDemo>> = [];
    if (cfg.idle) {
      const demo = (main: string): string[] => [process.execPath, `--import=${REPORTER}`, ...build.flags, main, 'serve', '--config', join(REPO, 'aam.yaml')];
      idle.push(...(await idleDemo(work, 'built JavaScript', demo(build.main), build.env, cfg.ports.first)));
      idle.push(...(await idleDemo(work, 'TypeScript sources', demo(join(REPO, 'src/cli/main.ts')), build.env, cfg.ports.first + 1)));
      for (const i of idle) say('error' in i ? `idle ${i.label}: ${i.error}` : `idle ${i.label}: RSS ${kbMb(i.reading.rss_kb)} MB, heap ${usageCells(i.reading.usage).join(' | ')}`);
    }
    const gws: Gateway[] = [];
    if (cfg.rounds > 0 && cfg.targets.length) {
      if (await answers(`http://127.0.0.1:${cfg.ports.mock}/`)) throw new Error(`port ${cfg.ports.mock} is in use (set MEM_MOCK_PORT)`);
      const mock = spawnTracked(clientPin, [process.execPath, join(BENCH, 'mock-upstream.js')], { MOCK_PORT: String(cfg.ports.mock) }, join(work, 'mock.log'));
      if (!(await waitHttp(`http://127.0.0.1:${cfg.ports.mock}/__mock/stats`, 10_000, 200, mock))) throw new Error('mock did not start');
      gws.push(...(await startGateways(work, build, body)));
      for (const g of gws) await loadOf(g, bodies, loadgen, 2);
      for (let r = 0; r < cfg.rounds; r++) {
        const order = r % 2 === 0 ? gws : [...gws].reverse();
        for (const g of order) {
          await sleep(500);
          const snap = cfg.snapshots && g.name !== 'bare' && (r === 0 || r === cfg.rounds - 1) ? join(work, `${g.name.replace(/\W+/g, '_')}-round${r + 1}.heapsnapshot`) : undefined;
          const reading = await loadRound(g, bodies, loadgen, work, snap);
          g.rounds.push(reading);
          say(`round ${r + 1} ${g.label}: ${Math.round(reading.rps ?? 0)} rps, p50 ${reading.p50_ms?.toFixed(3)} ms, ${reading.cpu_us_per_req?.toFixed(0)} us CPU/request, RSS ${kbMb(reading.rss_kb)} MB (anon ${kbMb(reading.anon_kb)}, peak ${kbMb(reading.peak_kb)}), heap ${usageCells(reading.usage).join(' | ')}${reading.errors ? `, ${reading.errors} failed` : ''}${snap ? `, snapshot ${snap}` : ''}`);
        }
      }
    }
    const text = render(meta, idle, gws);
    writeFileSync(join(BENCH, 'results', `memory-${stamp}.json`), JSON.stringify({ meta, cfg, idle, gateways: gws.map(({ child: _c, ...g }) => g) }, null, 1));
    if (env.MEM_WRITE !== '0') replaceSection(join(BENCH, 'RESULTS.md'), 'memory', text, '# Benchmark results\n');
    say('\n' + text);
  } finally {
    await stopAll();
    if (!cfg.snapshots) rmSync(work, { recursive: true, force: true });
  }
}

await main();
