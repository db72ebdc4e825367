// Where aam's peak RSS comes from in `npm run bench`'s order of phases, for several trees or
// settings interleaved in one run (an RSS figure is only comparable within one run):
//   node bench/mem-phases.ts TARGET [TARGET...]
// TARGET: a tree (a directory with src/, built with scripts/build.ts at the start), optionally
// followed by {NAME=value,...} (extra environment) and [--node-flag,...] (extra node flags), e.g.
// `/work/main /work/main{AAM_HEAP_GROWING_PERCENT=0}`. Each round starts every target afresh (in
// turns, the order alternating) with `npm start`'s flags and environment and bench/aam-bench.yaml,
// and runs: non-stream c=1, non-stream c=64, stream c=64, stream c=1 (PHASE_S s each), then
// non-stream c=32 + stream c=32 at once (MIXED_S s), RSS sampled every 250 ms. After the mixed
// phase (still under load: RSS is not given back) it reads process.memoryUsage(), V8's spaces and
// the worker threads' heaps (bench/lib/mem-report.js) and /proc/<pid>/smaps by kind of mapping.
// Settings: ROUNDS (3), PHASE_S (8), MIXED_S (20), MOCK_PORT (28480), FIRST_PORT (28481).
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { aamBenchConfig, aamServeArgv, buildAam, createAamKey } from './lib/aam.ts';
import type { AamBuild } from './lib/aam.ts';
import { chooseLoadgen, runLoad } from './lib/loadgen.ts';
import { CLK_TCK, cpuTicks, rssKb, sampleRss, setAutogroupNice, startProcess, stopProcess, waitHttp } from './lib/procs.ts';
import type { PinOptions } from './lib/procs.ts';
import { median } from './lib/stats.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const num = (name: string, dflt: number): number => (env[name] ? Number(env[name]) : dflt);
const cfg = { rounds: num('ROUNDS', 3), phaseS: num('PHASE_S', 8), mixedS: num('MIXED_S', 20), mock: num('MOCK_PORT', 28480), first: num('FIRST_PORT', 28481) };
const nice = process.getuid?.() === 0 ? -10 : 0;
const gwPin: PinOptions = { cpu: 1, nice };
const clientPin: PinOptions = { cpu: 0, nice };
const say = (s: string): void => { process.stdout.write(s + '\n'); };
const MB = 1024 * 1024;
const mb = (b: number | undefined): string => (b === undefined ? 'n/a' : (b / MB).toFixed(1));
const kbMb = (kb: number | null | undefined): string => (typeof kb === 'number' ? (kb / 1024).toFixed(1) : 'n/a');

interface Target { spec: string; tree: string; env: Record<string, string>; flags: string[]; build?: AamBuild }
function parse(spec: string): Target {
  const m = /^([^{[]+)(?:\{(.*?)\})?(?:\[(.*?)\])?$/.exec(spec);
  if (!m) throw new Error(`bad target ${spec}`);
  const e = Object.fromEntries((m[2] ? m[2].split(',') : []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return { spec, tree: resolve(m[1]), env: e, flags: m[3] ? m[3].split(',') : [] };
}

/** RSS by kind of mapping: the node binary, other files, [heap] (malloc's main arena), anonymous by size class. */
function smapsBreakdown(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let text = '';
  try { text = readFileSync(`/proc/${pid}/smaps`, 'utf8'); } catch { return out; }
  let name = '';
  let sizeKb = 0;
  let perms = '';
  const add = (k: string, v: number): void => { out[k] = (out[k] ?? 0) + v; };
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) { name = head[4]; perms = head[3]; sizeKb = (parseInt(head[2], 16) - parseInt(head[1], 16)) / 1024; continue; }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (!rss) continue;
    const kb = Number(rss[1]);
    if (name.endsWith('/node') || name.endsWith('/bin/node')) { add('file: node binary', kb); add(`  of it ${perms}`, kb); }
    else if (name.startsWith('/')) add('file: other', kb);
    else if (name === '[heap]') add('anon: [heap] (brk arena)', kb);
    else if (name.startsWith('[stack')) add('anon: stacks', kb);
    else if (name) add(`other ${name}`, kb);
    else if (sizeKb === 8192 || sizeKb === 8196) add('anon: 8 MB maps (thread stacks)', kb);
    else if (perms.includes('x')) add('anon: executable (code space)', kb);
    else if (sizeKb >= 65536 - 4 && sizeKb <= 65536) add('anon: 64 MB maps (malloc thread arenas)', kb);
    else if (sizeKb % 256 === 0) add('anon: 256 KB-multiple maps (V8 pages)', kb);
    else add('anon: other', kb);
  }
  return out;
}

async function usageOf(pid: number, dir: string): Promise<Record<string, unknown> | null> {
  const file = join(dir, `${pid}.json`);
  rmSync(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    await sleep(50);
  }
  return null;
}

interface Result { spec: string; round: number; peaks: Record<string, number>; end_kb: number | null; usage: Record<string, unknown> | null; smaps: Record<string, number>; cpu_us: number; requests: number; errors: number }

async function main(): Promise<void> {
  const targets = process.argv.slice(2).map(parse);
  if (!targets.length) throw new Error('usage: node bench/mem-phases.ts TREE[{ENV=..}][[--flag]] ...');
  if (nice) setAutogroupNice(nice);
  const loadgen = chooseLoadgen(env.BENCH_LOADGEN, say);
  const work = join(BENCH, 'results', `mem-phases-${Date.now()}`);
  mkdirSync(work, { recursive: true });
  const builds = new Map<string, AamBuild>();
  for (const t of targets) {
    if (!builds.has(t.tree)) builds.set(t.tree, buildAam(process.execPath, t.tree, join(work, `dist-${builds.size}`)));
    t.build = builds.get(t.tree);
  }
  const body = join(work, 'body.json');
  const streamBody = join(work, 'body-stream.json');
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
  writeFileSync(body, JSON.stringify(base));
  writeFileSync(streamBody, JSON.stringify({ ...base, stream: true, stream_options: { include_usage: true } }));
  const configPath = join(work, 'aam.yaml');
  writeFileSync(configPath, aamBenchConfig(cfg.mock));
  const children = new Set<ChildProcess>();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => { void Promise.all([...children].map((c) => stopProcess(c))).then(() => process.exit(130)); });
  const mock = startProcess(clientPin, [process.execPath, join(BENCH, 'mock-upstream.js')], { MOCK_PORT: String(cfg.mock) }, join(work, 'mock.log'));
  children.add(mock);
  const results: Result[] = [];
  try {
    if (!(await waitHttp(`http://127.0.0.1:${cfg.mock}/__mock/stats`, 10_000, 200, mock))) throw new Error('mock did not start');
    for (let r = 0; r < cfg.rounds; r++) {
      const order = r % 2 === 0 ? targets : [...targets].reverse();
      for (const [i, t] of order.entries()) {
        const port = cfg.first + i;
        const dataDir = join(work, `data-${r}-${i}`);
        mkdirSync(dataDir, { recursive: true });
        const b = t.build as AamBuild;
        const key = createAamKey(process.execPath, t.tree, configPath, dataDir, b);
        const withFlags: AamBuild = { ...b, flags: [`--import=${join(BENCH, 'lib', 'mem-report.js')}`, ...b.flags, ...t.flags] };
        const child = startProcess(gwPin, aamServeArgv(process.execPath, t.tree, configPath, port, dataDir, withFlags), { ...b.env, MEM_REPORT_DIR: work, AAM_LOG_LEVEL: 'warn', ...t.env }, join(work, `gw-${r}-${i}.log`));
        children.add(child);
        try {
          if (!(await waitHttp(`http://127.0.0.1:${port}/readyz`, 60_000, 200, child))) throw new Error(`${t.spec} did not start`);
          const pid = child.pid ?? 0;
          await sleep(1000);
          const spec = (bodyFile: string, conc: number, durationS: number) => ({ origin: `http://127.0.0.1:${port}`, path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}` }, bodyFile, conc, durationS });
          const peaks: Record<string, number> = { start: rssKb(pid) ?? 0 };
          let requests = 0;
          let errors = 0;
          const t0 = cpuTicks(pid) ?? 0;
          const phase = async (name: string, loads: Array<ReturnType<typeof spec>>): Promise<void> => {
            const s = sampleRss(pid, 250);
            const rs = await Promise.all(loads.map((l) => runLoad(loadgen, clientPin, l)));
            peaks[name] = Math.max(...s.stop().map((x) => x.kb));
            for (const x of rs) { requests += x.requests; errors += x.errors + x.non2xx; }
          };
          await phase('ns1', [spec(body, 1, cfg.phaseS)]);
          await phase('ns64', [spec(body, 64, cfg.phaseS)]);
          await phase('st64', [spec(streamBody, 64, cfg.phaseS)]);
          await phase('st1', [spec(streamBody, 1, cfg.phaseS)]);
          await phase('mixed', [spec(body, 32, cfg.mixedS), spec(streamBody, 32, cfg.mixedS)]);
          const cpu_us = (((cpuTicks(pid) ?? 0) - t0) / CLK_TCK) * 1e6 / Math.max(1, requests);
          const end_kb = rssKb(pid);
          const smaps = smapsBreakdown(pid);
          const usage = await usageOf(pid, work);
          const res: Result = { spec: t.spec, round: r + 1, peaks, end_kb, usage, smaps, cpu_us, requests, errors };
          results.push(res);
          const u = usage as { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number; spaces: Record<string, { size: number; used: number }>; code: number; workers: { total: number; used: number; malloced: number }[] } | null;
          say(`round ${r + 1} ${t.spec}: peak MB ${Object.entries(peaks).map(([k, v]) => `${k} ${kbMb(v)}`).join(', ')}; end ${kbMb(end_kb)}; ${cpu_us.toFixed(0)} us CPU/req, ${requests} req, ${errors} errors`);
          if (u) say(`  heap ${mb(u.heapUsed)} / ${mb(u.heapTotal)} (spaces ${Object.entries(u.spaces).map(([k, v]) => `${k.replace('_space', '')} ${mb(v.used)}/${mb(v.size)}`).join(' ')}), external ${mb(u.external)}, arrayBuffers ${mb(u.arrayBuffers)}, workers ${u.workers.map((w) => `${mb(w.used)}/${mb(w.total)} malloced ${mb(w.malloced)}`).join('; ')}`);
          say(`  smaps MB: ${Object.entries(smaps).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${kbMb(v)}`).join(', ')}`);
        } finally {
          await stopProcess(child);
          children.delete(child);
        }
        await sleep(500);
      }
    }
  } finally {
    await Promise.all([...children].map((c) => stopProcess(c)));
    writeFileSync(join(BENCH, 'results', `mem-phases-${Date.now()}.json`), JSON.stringify({ cfg, results }, null, 1));
    rmSync(work, { recursive: true, force: true });
  }
  say('\nsummary (medians over rounds; peak over all phases):');
  for (const t of targets) {
    const rs = results.filter((x) => x.spec === t.spec);
    const peak = rs.map((x) => Math.max(...Object.values(x.peaks)));
    say(`${t.spec}: peak ${peak.map((p) => kbMb(p)).join(' / ')} MB (median ${kbMb(median(peak))}); mixed ${rs.map((x) => kbMb(x.peaks.mixed)).join(' / ')}; st64 ${rs.map((x) => kbMb(x.peaks.st64)).join(' / ')}; CPU/req ${rs.map((x) => x.cpu_us.toFixed(0)).join(' / ')} us`);
  }
}

await main();
