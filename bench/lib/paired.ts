// Paired slices: the targets a ratio compares run side by side (all started; all idle but the one
// measured), and short slices of each measurement alternate between them in a rotating order. A
// ratio is taken within one iteration, from slices seconds apart on the same machine state, and the
// median over iterations is what the targets are judged on. On a shared VM the rounds' medians
// cannot do that: a target's round runs minutes after the other's, and the host's other tenants
// moved the bare proxy's own c=64 throughput by 33 % between two runs of one tree.
import { runLoad } from './loadgen.ts';
import { runProbe, type BenchSettings, type Target } from './measure.ts';
import { CLK_TCK, cpuTicks } from './procs.ts';
import { median } from './stats.ts';

export type PairMetric = 'p50_c1' | 'rps_c64' | 'cpu_us_c64' | 'first_content';

export interface PairedRun {
  iterations: number;
  slice_s: number;
  /** target name -> metric -> one value per iteration (NaN where a slice failed) */
  series: Record<string, Partial<Record<PairMetric, number[]>>>;
}

/** What is measured of each target: fleet is only compared on c=1 latency and c=64 throughput. */
export interface PairedTarget { target: Target; streams: boolean }

export async function runPaired(s: BenchSettings, targets: PairedTarget[], iterations: number, sliceS: number, say: (m: string) => void): Promise<PairedRun> {
  const run: PairedRun = { iterations, slice_s: sliceS, series: {} };
  const push = (t: Target, m: PairMetric, v: number): void => { ((run.series[t.name] ??= {})[m] ??= []).push(v); };
  const spec = (t: Target, mode: 'nonstream' | 'stream', conc: number) => ({
    origin: t.origin, path: t.responses ? '/v1/responses' : '/v1/chat/completions', headers: t.headers,
    bodyFile: (t.responses ?? s.bodyFiles)[mode], conc, durationS: sliceS,
  });
  // One untimed slice each first: the processes started fresh for this phase.
  for (const { target } of targets) await runLoad(s.loadgen, s.clientPin, spec(target, 'nonstream', 64));
  for (let i = 0; i < iterations; i++) {
    // Rotated each iteration, so no target is always measured first (or right after the same one).
    const order = targets.map((_, k) => targets[(k + i) % targets.length]);
    for (const { target: t } of order) {
      const c64 = await slice(() => runLoad(s.loadgen, s.clientPin, spec(t, 'nonstream', 64)), t.pid);
      push(t, 'rps_c64', c64 && c64.r.non2xx + c64.r.errors === 0 ? c64.r.rps : NaN);
      push(t, 'cpu_us_c64', c64 && c64.r.requests > 0 ? (c64.ticks / CLK_TCK) * 1e6 / c64.r.requests : NaN);
    }
    for (const { target: t } of order) {
      const c1 = await slice(() => runLoad(s.loadgen, s.clientPin, spec(t, 'nonstream', 1)), t.pid);
      push(t, 'p50_c1', c1 && c1.r.non2xx + c1.r.errors === 0 ? c1.r.p50_ms : NaN);
    }
    for (const { target: t, streams } of order) {
      if (!streams) continue;
      const p = await slice(() => runProbe(s, { ...spec(t, 'stream', 1), warmupN: 20, maxN: 100_000 }), t.pid);
      push(t, 'first_content', p && p.r.non2xx + p.r.errors === 0 ? p.r.first_content_ms.p50 : NaN);
    }
    const show = (name: string, m: PairMetric, d = 3): string => (run.series[name]?.[m]?.at(-1) ?? NaN).toFixed(d);
    say(`  paired ${i + 1}/${iterations}: ${targets.map(({ target: t }) => `${t.name} ${show(t.name, 'rps_c64', 0)} rps, p50 ${show(t.name, 'p50_c1')} ms`).join('; ')}`);
  }
  return run;
}

/** One slice and the target's CPU over it; null when the load generator failed (counted as a missing value). */
async function slice<T>(fn: () => Promise<T>, pid: number): Promise<{ r: T; ticks: number } | null> {
  const t0 = cpuTicks(pid) ?? 0;
  try {
    const r = await fn();
    return { r, ticks: (cpuTicks(pid) ?? 0) - t0 };
  } catch { return null; }
}

/** Per iteration a (op) b, then their median and range: how a ratio or difference is judged. */
export function pairedStat(run: PairedRun, a: string, b: string, m: PairMetric, op: (x: number, y: number) => number): { median: number; min: number; max: number; n: number } {
  const xs = run.series[a]?.[m] ?? [];
  const ys = run.series[b]?.[m] ?? [];
  const v = xs.map((x, i) => op(x, ys[i])).filter(Number.isFinite);
  return { median: v.length ? median(v) : NaN, min: Math.min(...v), max: Math.max(...v), n: v.length };
}
