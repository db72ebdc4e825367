// Measures one running target: preflight (correct answers, exactly one upstream request each),
// then non-stream load at c=1 and c=64, stream load at c=64, the time-to-first-chunk probe, and a
// sustained mixed run while the target's RSS is sampled.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { runLoad } from './loadgen.ts';
import type { LoadResult, LoadSpec } from './loadgen.ts';
import type { ProbeResult, ProbeSpec } from './ttfb-probe.ts';
import { CLK_TCK, coreBusyTicks, cpuTicks, pinnedArgv, rssKb, sampleRss, selfAndChildrenTicks } from './procs.ts';
import type { PinOptions, RssSample } from './procs.ts';
import type { StoreCost } from './fleet.ts';

const PROBE = fileURLToPath(new URL('./ttfb-probe.ts', import.meta.url));
export const CHAT_PATH = '/v1/chat/completions';
export const RESPONSES_PATH = '/v1/responses';

export interface BenchSettings {
  durationS: number;
  warmupS: number;
  rssDurationS: number;
  loadgen: 'wrk' | 'node';
  /** pinning of load generator and probe (the mock's CPU) */
  clientPin: PinOptions;
  mockOrigin: string;
  mockPid: number;
  bodyFiles: { nonstream: string; stream: string };
}

export interface Target {
  name: string;
  label: string;
  origin: string;
  headers: Record<string, string>;
  /** process under test (the mock itself for "direct") */
  pid: number;
  /** The Responses API instead of chat completions (its own path and request bodies; the mock still answers chat). */
  responses?: { nonstream: string; stream: string };
}

const pathOf = (t: Target): string => (t.responses ? RESPONSES_PATH : CHAT_PATH);
const bodiesOf = (t: Target, s: BenchSettings): { nonstream: string; stream: string } => t.responses ?? s.bodyFiles;

/** CPU accounting of one scenario, to show whether the gateway was saturated or disturbed. */
export interface CpuUse {
  sut_cpu_pct: number;
  /** CPU used by processes that are not part of the benchmark (other work on a shared machine) */
  foreign_cpu_pct: number;
  /**
   * How busy the load generator's core was (pinned runs): at ~100 % the load generator, the mock and
   * (fleet run) PostgreSQL and Redis on it cap the throughput, not the gateway.
   */
  loadgen_core_pct?: number;
}

export type LoadRun = LoadResult & CpuUse;
export type ProbeRun = ProbeResult & CpuUse;

export interface RssReport {
  start_kb: number | null;
  peak_kb: number;
  /** at the middle and at the end of the sustained run: growth between them is the leak signal */
  mid_sustained_kb: number;
  end_sustained_kb: number;
  /** 3 s after the last request */
  end_kb: number | null;
  samples: RssSample[];
}

export interface TargetResult {
  name: string;
  label: string;
  round: number;
  error?: string;
  startup_ms?: number;
  nonstream_c1?: LoadRun;
  nonstream_c64?: LoadRun;
  stream_c64?: LoadRun;
  ttfb?: ProbeRun;
  sustained?: { durationS: number; nonstream_c32: LoadResult; stream_c32: LoadResult } & CpuUse;
  rss?: RssReport;
  /** failed requests during measurement and similar doubts about the numbers */
  warnings?: string[];
  /** Fleet run: what the model requests of the whole measurement cost PostgreSQL and Redis. */
  stores?: StoreCost;
  /** The machine's 1-minute load average before and after this target's measurement. */
  loadavg?: [number, number];
}

async function withCpu<T extends object>(t: Target, s: BenchSettings, fn: () => Promise<T>): Promise<T & CpuUse> {
  const wall0 = performance.now();
  const cores0 = coreBusyTicks();
  const busy0 = cores0.reduce((a, b) => a + b, 0);
  const sut0 = cpuTicks(t.pid) ?? 0;
  const mock0 = t.pid === s.mockPid ? 0 : cpuTicks(s.mockPid) ?? 0;
  const own0 = selfAndChildrenTicks();
  const r = await fn();
  const wallS = (performance.now() - wall0) / 1000;
  const cores = coreBusyTicks();
  const busy = cores.reduce((a, b) => a + b, 0) - busy0;
  const lg = s.clientPin.cpu;
  const sut = (cpuTicks(t.pid) ?? 0) - sut0;
  const mock = t.pid === s.mockPid ? 0 : (cpuTicks(s.mockPid) ?? 0) - mock0;
  const own = selfAndChildrenTicks() - own0;
  const pct = (ticks: number): number => Math.round((ticks / CLK_TCK / wallS) * 1000) / 10;
  return { ...r, sut_cpu_pct: pct(sut), foreign_cpu_pct: pct(Math.max(0, busy - sut - mock - own)), ...(lg === null ? {} : { loadgen_core_pct: pct(cores[lg] - cores0[lg]) }) };
}

function loadSpec(t: Target, s: BenchSettings, mode: 'nonstream' | 'stream', conc: number, durationS: number): LoadSpec {
  return { origin: t.origin, path: pathOf(t), headers: t.headers, bodyFile: bodiesOf(t, s)[mode], conc, durationS };
}

async function loadScenario(t: Target, s: BenchSettings, mode: 'nonstream' | 'stream', conc: number, result: TargetResult, say: (m: string) => void): Promise<LoadRun> {
  if (s.warmupS > 0) {
    await runLoad(s.loadgen, s.clientPin, loadSpec(t, s, mode, conc, s.warmupS));
    await settle(t, s, `${mode} c=${conc} warm-up`, result, say);
  }
  await sleep(300);
  const r = await withCpu(t, s, () => runLoad(s.loadgen, s.clientPin, loadSpec(t, s, mode, conc, s.durationS)));
  if (r.non2xx > 0) r.firstError ??= await sample(t, s, mode);
  await settle(t, s, `${mode} c=${conc}`, result, say);
  return r;
}

/**
 * A load generator ends a timed run by closing its connections, requests in flight included (so do
 * real clients that give up). If the target answers errors afterwards, wait (up to 45 s) until it
 * serves again, so one scenario's aftermath does not count against the next, and record it.
 */
async function settle(t: Target, s: BenchSettings, after: string, result: TargetResult, say: (m: string) => void): Promise<void> {
  const t0 = Date.now();
  let first = '';
  while (Date.now() - t0 < 45_000) {
    const status = await fetch(t.origin + pathOf(t), { method: 'POST', headers: { 'content-type': 'application/json', ...t.headers },
      body: readFileSync(bodiesOf(t, s).nonstream), signal: AbortSignal.timeout(10_000) })
      .then(async (res) => { const text = await res.text(); if (res.status !== 200 && !first) first = `HTTP ${res.status}: ${text.slice(0, 300)}`; return res.status; })
      .catch((err: unknown) => { if (!first) first = String(err); return 0; });
    if (status === 200) break;
    await sleep(500);
  }
  if (!first) return;
  const waited = ((Date.now() - t0) / 1000).toFixed(1);
  const msg = `${t.label} failed requests right after the load generator closed its connections (${after}); served again after ${waited} s; first failure: ${first}`;
  (result.warnings ??= []).push(msg);
  say(`  ${msg}`);
}

/** One request made after a run with failures, to show what the failures were. */
async function sample(t: Target, s: BenchSettings, mode: 'nonstream' | 'stream'): Promise<string> {
  try {
    const res = await fetch(t.origin + pathOf(t), { method: 'POST', headers: { 'content-type': 'application/json', ...t.headers },
      body: readFileSync(bodiesOf(t, s)[mode]), signal: AbortSignal.timeout(10_000) });
    return `a request after the run got HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`;
  } catch (err) {
    return `a request after the run failed: ${err instanceof Error ? err.message : String(err)}`;
  }
}

export function runProbe(s: BenchSettings, spec: ProbeSpec): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = pinnedArgv(s.clientPin, [process.execPath, PROBE]);
    const child = spawn(cmd, args, { env: { ...process.env, PROBE_SPEC: JSON.stringify(spec) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`ttfb probe exited ${code}: ${err.slice(0, 500)}`));
      resolve(JSON.parse(out.trim().split('\n').pop() ?? '') as ProbeResult);
    });
  });
}

async function mockTotal(s: BenchSettings): Promise<number> {
  const res = await fetch(`${s.mockOrigin}/__mock/stats`);
  return ((await res.json()) as { total: number }).total;
}

/** One request of each kind must succeed and reach the mock exactly once; throws saying what is wrong. */
export async function preflight(t: Target, s: BenchSettings, bodies: { nonstream: string; stream: string }): Promise<void> {
  for (const mode of ['nonstream', 'stream'] as const) {
    const before = await mockTotal(s);
    const res = await fetch(t.origin + pathOf(t), {
      method: 'POST', headers: { 'content-type': 'application/json', ...t.headers }, body: bodies[mode], signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${mode} preflight: HTTP ${res.status}: ${text.slice(0, 400)}`);
    if (t.responses) {
      if (mode === 'nonstream' && !/"output_text"/.test(text)) throw new Error(`nonstream preflight: no output_text in ${text.slice(0, 400)}`);
      if (mode === 'stream' && !(/"delta":"[^"]/.test(text) && text.includes('event: response.completed') && text.includes('"usage":{'))) {
        throw new Error(`stream preflight: expected text deltas and response.completed with usage, got ${text.slice(0, 400)}`);
      }
    } else {
      if (mode === 'nonstream' && !/"choices"/.test(text)) throw new Error(`nonstream preflight: no choices in ${text.slice(0, 400)}`);
      if (mode === 'stream' && !(text.includes('data: [DONE]') && /"content":"[^"]/.test(text) && text.includes('"usage":{'))) {
        throw new Error(`stream preflight: expected content chunks, a usage chunk and [DONE], got ${text.slice(0, 400)}`);
      }
    }
    const seen = (await mockTotal(s)) - before;
    if (seen !== 1) throw new Error(`${mode} preflight: the mock saw ${seen} requests for one client request (expected 1)`);
  }
}

function rssReport(startKb: number | null, samples: RssSample[], sustainedFrom: number, sustainedTo: number, endKb: number | null): RssReport {
  const during = samples.filter((x) => x.tMs >= sustainedFrom && x.tMs <= sustainedTo);
  const at = (frac: number): number => during[Math.min(during.length - 1, Math.floor(frac * (during.length - 1)))]?.kb ?? NaN;
  return {
    start_kb: startKb,
    peak_kb: Math.max(...samples.map((x) => x.kb)),
    mid_sustained_kb: at(0.5),
    end_sustained_kb: at(1),
    end_kb: endKb,
    samples,
  };
}

export async function measureTarget(t: Target, s: BenchSettings, round: number, say: (m: string) => void): Promise<TargetResult> {
  const result: TargetResult = { name: t.name, label: t.label, round };
  await sleep(1000);
  const startKb = rssKb(t.pid);
  const sampler = sampleRss(t.pid, 250);
  try {
    await runScenarios(t, s, result, say, sampler, startKb);
  } finally {
    sampler.stop();
  }
  return result;
}

function checkErrors(result: TargetResult, what: string, r: { requests: number; errors: number; non2xx: number; firstError?: string }): void {
  const bad = r.errors + r.non2xx;
  if (bad > 0) (result.warnings ??= []).push(`${result.label} ${what}: ${bad} failed requests (${r.errors} errors, ${r.non2xx} non-2xx) of ${r.requests + r.errors}${r.firstError ? `; ${r.firstError}` : ''}`);
}

async function runScenarios(t: Target, s: BenchSettings, result: TargetResult, say: (m: string) => void,
  sampler: { stop: () => RssSample[] }, startKb: number | null): Promise<void> {
  const t0 = Date.now();
  const step = async <K extends keyof TargetResult>(key: K, fn: () => Promise<TargetResult[K]>, show: (v: TargetResult[K]) => string): Promise<void> => {
    result[key] = await fn();
    say(`  ${t.label} ${String(key)}: ${show(result[key])}`);
  };
  const f = (v: number | null | undefined, d = 3): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const showLoad = (r: LoadRun | undefined): string => r
    ? `${f(r.rps, 0)} rps  p50 ${f(r.p50_ms)} ms  p99 ${f(r.p99_ms)} ms  non2xx ${r.non2xx} err ${r.errors}  cpu ${r.sut_cpu_pct}%  foreign ${r.foreign_cpu_pct}%${r.loadgen_core_pct === undefined ? '' : `  loadgen core ${r.loadgen_core_pct}%`}`
    : '-';
  await step('nonstream_c1', () => loadScenario(t, s, 'nonstream', 1, result, say), showLoad);
  await step('nonstream_c64', () => loadScenario(t, s, 'nonstream', 64, result, say), showLoad);
  await step('stream_c64', () => loadScenario(t, s, 'stream', 64, result, say), showLoad);
  await step('ttfb', () => withCpu(t, s, async () => {
    const p = await runProbe(s, { origin: t.origin, path: pathOf(t), headers: t.headers, bodyFile: bodiesOf(t, s).stream, warmupN: 300, durationS: s.durationS, maxN: 200_000 });
    if (p.non2xx > 0) p.firstError ??= await sample(t, s, 'stream');
    return p;
  }), (p) => p ? `${p.requests} streams  first chunk p50 ${f(p.first_chunk_ms.p50)} ms  first content p50 ${f(p.first_content_ms.p50)} ms  whole stream p50 ${f(p.total_ms.p50)} ms  non2xx ${p.non2xx} err ${p.errors}` : '-');
  const from = Date.now() - t0;
  await step('sustained', () => withCpu(t, s, async () => {
    const [nonstream_c32, stream_c32] = await Promise.all([
      runLoad(s.loadgen, s.clientPin, loadSpec(t, s, 'nonstream', 32, s.rssDurationS)),
      runLoad(s.loadgen, s.clientPin, loadSpec(t, s, 'stream', 32, s.rssDurationS)),
    ]);
    return { durationS: s.rssDurationS, nonstream_c32, stream_c32 };
  }), (v) => v ? `non-stream ${f(v.nonstream_c32.rps, 0)} rps + stream ${f(v.stream_c32.rps, 0)} rps  non2xx ${v.nonstream_c32.non2xx + v.stream_c32.non2xx}  cpu ${v.sut_cpu_pct}%` : '-');
  const to = Date.now() - t0;
  await sleep(3000);
  result.rss = rssReport(startKb, sampler.stop(), from, to, rssKb(t.pid));
  const mb = (kb: number | null): string => (kb === null ? '?' : (kb / 1024).toFixed(1));
  say(`  ${t.label} rss MB: start ${mb(result.rss.start_kb)}  peak ${mb(result.rss.peak_kb)}  mid-sustained ${mb(result.rss.mid_sustained_kb)}  end-sustained ${mb(result.rss.end_sustained_kb)}  end ${mb(result.rss.end_kb)}`);
  for (const key of ['nonstream_c1', 'nonstream_c64', 'stream_c64'] as const) { const r = result[key]; if (r) checkErrors(result, key, r); }
  if (result.ttfb) checkErrors(result, 'ttfb', result.ttfb);
  if (result.sustained) {
    checkErrors(result, 'sustained non-stream', result.sustained.nonstream_c32);
    checkErrors(result, 'sustained stream', result.sustained.stream_c32);
  }
}
