// Renders a benchmark run as Markdown tables (medians over rounds) with the ratios the project
// targets, and replaces one marked section of bench/RESULTS.md so other sections survive.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { median } from './stats.ts';
import type { TargetResult } from './measure.ts';
import { pairedStat, type PairedRun, type PairMetric } from './paired.ts';

export interface RunMeta {
  date: string;
  host: string;
  nproc: number;
  cpu_model: string;
  kernel: string;
  node: string;
  loadgen: string;
  aam_commit: string;
  settings: Record<string, string | number | boolean>;
  notes: string[];
}

export interface BenchRun {
  meta: RunMeta;
  results: TargetResult[];
  /** Paired slices after the rounds (bench/lib/paired.ts): the targets are judged on these when present. */
  paired?: PairedRun;
}

type Pick = (r: TargetResult) => number | null | undefined;

const fmt = (v: number, digits = 3): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
const fmtInt = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const mb = (kb: number): string => (Number.isFinite(kb) ? (kb / 1024).toFixed(1) : 'n/a');
const signed = (v: number, digits = 3): string => (Number.isFinite(v) ? (v >= 0 ? '+' : '') + v.toFixed(digits) : 'n/a');

/** Median of one metric over the rounds of one target. */
function med(run: BenchRun, name: string, pick: Pick): number {
  return median(run.results.filter((r) => r.name === name && !r.error).map(pick));
}

function names(run: BenchRun): { name: string; label: string }[] {
  const seen = new Map<string, string>();
  for (const r of run.results) if (!seen.has(r.name)) seen.set(r.name, r.label);
  return [...seen].map(([name, label]) => ({ name, label }));
}

export function table(head: string[], rows: string[][]): string {
  const align = head.map((_, i) => (i === 0 ? '---' : '---:'));
  return [head, align, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

function latencyTable(run: BenchRun): string {
  const rows = names(run).map(({ name, label }) => {
    const m = (p: Pick): number => med(run, name, p);
    return [label,
      fmt(m((r) => r.nonstream_c1?.p50_ms)), fmt(m((r) => r.nonstream_c1?.p99_ms)), fmtInt(m((r) => r.nonstream_c1?.rps)),
      fmt(m((r) => r.nonstream_c64?.p50_ms), 2), fmt(m((r) => r.nonstream_c64?.p99_ms), 2), fmtInt(m((r) => r.nonstream_c64?.rps)),
      fmt(m((r) => r.nonstream_c64?.sut_cpu_pct), 0), fmt(m((r) => Math.max(r.nonstream_c1?.foreign_cpu_pct ?? 0, r.nonstream_c64?.foreign_cpu_pct ?? 0)), 0)];
  });
  return table(['target', 'p50 ms c=1', 'p99 ms c=1', 'RPS c=1', 'p50 ms c=64', 'p99 ms c=64', 'RPS c=64', 'target CPU % c=64', 'foreign CPU % (max)'], rows);
}

function streamTable(run: BenchRun): string {
  const rows = names(run).map(({ name, label }) => {
    const m = (p: Pick): number => med(run, name, p);
    return [label,
      fmt(m((r) => r.ttfb?.first_chunk_ms.p50)), fmt(m((r) => r.ttfb?.first_chunk_ms.p99)),
      fmt(m((r) => r.ttfb?.first_content_ms.p50)), fmt(m((r) => r.ttfb?.total_ms.p50)), fmtInt(m((r) => r.ttfb?.requests)),
      fmt(m((r) => r.stream_c64?.p50_ms), 2), fmtInt(m((r) => r.stream_c64?.rps))];
  });
  return table(['target', 'first chunk p50 ms', 'first chunk p99 ms', 'first content p50 ms', 'whole stream p50 ms', 'streams probed', 'stream p50 ms c=64', 'stream RPS c=64'], rows);
}

function rssTable(run: BenchRun): string {
  const rows = names(run).map(({ name, label }) => {
    const m = (p: Pick): number => med(run, name, p);
    const mid = m((r) => r.rss?.mid_sustained_kb);
    const end = m((r) => r.rss?.end_sustained_kb);
    return [label, mb(m((r) => r.rss?.start_kb)), mb(m((r) => r.rss?.peak_kb)), mb(mid), mb(end), mb(m((r) => r.rss?.end_kb)),
      signed((end - mid) / 1024, 1),
      fmtInt(m((r) => (r.sustained ? r.sustained.nonstream_c32.rps + r.sustained.stream_c32.rps : NaN)))];
  });
  return table(['target', 'start MB', 'peak MB', 'mid-sustained MB', 'end-sustained MB', 'end (+3 s idle) MB', 'growth 2nd half MB', 'sustained RPS'], rows);
}

const diff = (x: number, y: number): number => x - y;
const ratio = (x: number, y: number): number => x / y;

/**
 * One target's rows: judged on the paired slices' median when the run has them (with their range),
 * the rounds' medians then shown as context; judged on the rounds' medians otherwise.
 */
function judged(run: BenchRun, label: string, rounds: number, pair: [string, string, PairMetric, 'diff' | 'ratio'] | null,
  show: (v: number) => string, target: string, met: (v: number) => boolean): string[][] {
  const ok = (b: boolean): string => (b ? 'yes' : '**no**');
  const p = run.paired && pair ? pairedStat(run.paired, pair[0], pair[1], pair[2], pair[3] === 'diff' ? diff : ratio) : undefined;
  if (!p || p.n === 0) return [[label, show(rounds), target, ok(met(rounds))]];
  return [
    [`${label} (paired slices)`, `${show(p.median)} (median of ${p.n}; range ${show(p.min)} to ${show(p.max)})`, target, ok(met(p.median))],
    [`(the same from the rounds' medians)`, show(rounds), 'context', ''],
  ];
}

/** The project's targets: aam against the bare proxy measured in the same run. */
export function ratioRows(run: BenchRun): string[][] {
  const m = (name: string, p: Pick): number => med(run, name, p);
  const has = (n: string): boolean => run.results.some((r) => r.name === n && !r.error);
  if (!has('aam') || !has('bare')) return [];
  const addP50 = m('aam', (r) => r.nonstream_c1?.p50_ms) - m('bare', (r) => r.nonstream_c1?.p50_ms);
  const bareAdd = m('bare', (r) => r.nonstream_c1?.p50_ms) - m('direct', (r) => r.nonstream_c1?.p50_ms);
  const frac = m('aam', (r) => r.nonstream_c64?.rps) / m('bare', (r) => r.nonstream_c64?.rps);
  const ttfb = m('aam', (r) => r.ttfb?.first_chunk_ms.p50) - m('bare', (r) => r.ttfb?.first_chunk_ms.p50);
  const ttfc = m('aam', (r) => r.ttfb?.first_content_ms.p50) - m('bare', (r) => r.ttfb?.first_content_ms.p50);
  const growth = (m('aam', (r) => r.rss?.end_sustained_kb) - m('aam', (r) => r.rss?.mid_sustained_kb)) / 1024;
  const peak = m('aam', (r) => r.rss?.peak_kb) / 1024;
  const ok = (b: boolean): string => (b ? 'yes' : '**no**');
  const audit = has('aam-noaudit') ? [
    ['(audit cost: aam minus aam with AAM_AUDIT=off, p50 c=1)', `${signed(m('aam', (r) => r.nonstream_c1?.p50_ms) - m('aam-noaudit', (r) => r.nonstream_c1?.p50_ms))} ms`, 'context', ''],
    ['(audit cost: aam RPS / aam-noaudit RPS, c=64)', `${fmt((m('aam', (r) => r.nonstream_c64?.rps) / m('aam-noaudit', (r) => r.nonstream_c64?.rps)) * 100, 1)} %`, 'context', ''],
  ] : [];
  // The Responses API, translated to the mock's chat completions, against the bare proxy's chat (issue 16's targets).
  const rp = (p: Pick): number => m('aam-responses', p) - m('bare', p);
  const ms = (v: number): string => `${signed(v)} ms`;
  const pct = (v: number): string => `${fmt(v * 100, 1)} %`;
  const responses = has('aam-responses') ? [
    ...judged(run, 'aam Responses API added p50 over bare proxy (chat), non-stream c=1', rp((r) => r.nonstream_c1?.p50_ms), ['aam-responses', 'bare', 'p50_c1', 'diff'], ms, '<= +0.10 ms', (v) => v <= 0.1),
    ...judged(run, 'aam Responses API RPS / bare proxy RPS, non-stream c=64', m('aam-responses', (r) => r.nonstream_c64?.rps) / m('bare', (r) => r.nonstream_c64?.rps), ['aam-responses', 'bare', 'rps_c64', 'ratio'], pct, '>= 60 %', (v) => v >= 0.6),
    ...judged(run, 'aam Responses API first-content p50 minus bare proxy, stream c=1', rp((r) => r.ttfb?.first_content_ms.p50), ['aam-responses', 'bare', 'first_content', 'diff'], ms, '<= +0.10 ms', (v) => v <= 0.1),
  ] : [];
  // Each round runs bare and aam back to back (bench/run.ts): the pair of one round saw the same machine.
  const rounds = [...new Set(run.results.map((r) => r.round))].sort((a, b) => a - b);
  const of = (name: string, round: number): TargetResult | undefined => run.results.find((r) => r.name === name && r.round === round && !r.error);
  const perRound = rounds.map((k) => {
    const a = of('aam', k);
    const b = of('bare', k);
    const rps = (a?.nonstream_c64?.rps ?? NaN) / (b?.nonstream_c64?.rps ?? NaN);
    const p50 = (a?.nonstream_c1?.p50_ms ?? NaN) - (b?.nonstream_c1?.p50_ms ?? NaN);
    return `r${k}: ${fmt(rps * 100, 1)} % / ${signed(p50)} ms`;
  }).join('; ');
  // CPU per request at c=64 (its CPU share over its throughput): steadier than RPS on a shared machine.
  const cpuUs = (name: string): number => m(name, (r) => (r.nonstream_c64 ? (r.nonstream_c64.sut_cpu_pct / 100) * 1e6 / r.nonstream_c64.rps : NaN));
  return [
    ...judged(run, 'aam added p50 over bare proxy, non-stream c=1', addP50, ['aam', 'bare', 'p50_c1', 'diff'], ms, '<= +0.05 ms', (v) => v <= 0.05),
    [`(each round: aam / bare RPS c=64; aam - bare p50 c=1)`, perRound, 'context', ''],
    ['(gateway CPU per request c=64: aam / bare proxy)', `${fmt(cpuUs('aam'), 0)} / ${fmt(cpuUs('bare'), 0)} us`, 'context', ''],
    ['(bare proxy added p50 over direct, c=1)', `${signed(bareAdd)} ms`, 'context', ''],
    ...judged(run, 'aam RPS / bare proxy RPS, non-stream c=64', frac, ['aam', 'bare', 'rps_c64', 'ratio'], pct, '>= 80 %', (v) => v >= 0.8),
    ...(run.paired ? [['(gateway CPU per request c=64 in the paired slices, median: aam / bare proxy)',
      `${fmt(pairedStat(run.paired, 'aam', 'aam', 'cpu_us_c64', (x) => x).median, 0)} / ${fmt(pairedStat(run.paired, 'bare', 'bare', 'cpu_us_c64', (x) => x).median, 0)} us`, 'context', '']] : []),
    ...judged(run, 'aam first-content p50 minus bare proxy, stream c=1', ttfc, ['aam', 'bare', 'first_content', 'diff'], ms, '<= +0.05 ms', (v) => v <= 0.05),
    ['(aam first-chunk p50 minus bare proxy: first bytes, maybe without content)', `${signed(ttfb)} ms`, 'context', ''],
    ['aam peak RSS over the whole run (sustained: 64 requests in flight)', `${fmt(peak, 1)} MB`, '<= 150 MB', ok(peak <= 150)],
    ['aam RSS growth over 2nd half of sustained run', `${signed(growth, 1)} MB`, 'flat (< 5 MB)', ok(growth < 5)],
    ...audit,
    ...responses,
  ];
}

/** Fleet mode (issue 14): one replica on PostgreSQL + Redis against embedded aam, same run. */
export function fleetRows(run: BenchRun): string[][] {
  const m = (name: string, p: Pick): number => med(run, name, p);
  const has = (n: string): boolean => run.results.some((r) => r.name === n && !r.error);
  if (!has('aam') || !has('aam-fleet')) return [];
  const ok = (b: boolean): string => (b ? 'yes' : '**no**');
  const added = m('aam-fleet', (r) => r.nonstream_c1?.p50_ms) - m('aam', (r) => r.nonstream_c1?.p50_ms);
  const frac = m('aam-fleet', (r) => r.nonstream_c64?.rps) / m('aam', (r) => r.nonstream_c64?.rps);
  // Gateway CPU per request at c=64: its CPU share over its throughput.
  const cpuMs = (name: string): number => m(name, (r) => (r.nonstream_c64 ? (r.nonstream_c64.sut_cpu_pct / 100) * 1000 / r.nonstream_c64.rps : NaN));
  const st = run.results.find((r) => r.name === 'aam-fleet' && r.stores)?.stores;
  const load = (name: string): string => run.results.filter((r) => r.name === name && r.loadavg).map((r) => `${fmt(r.loadavg![0], 1)} -> ${fmt(r.loadavg![1], 1)}`).join(', ') || 'n/a';
  return [
    ...judged(run, 'fleet added p50 over embedded aam, non-stream c=1', added, ['aam-fleet', 'aam', 'p50_c1', 'diff'], (v) => `${signed(v)} ms`, '<= +0.3 ms', (v) => v <= 0.3),
    ...judged(run, 'fleet RPS / embedded RPS, non-stream c=64', frac, ['aam-fleet', 'aam', 'rps_c64', 'ratio'], (v) => `${fmt(v * 100, 1)} %`, '>= 80 %', (v) => v >= 0.8),
    ['gateway CPU per request, c=64: embedded / fleet', `${fmt(cpuMs('aam'), 3)} / ${fmt(cpuMs('aam-fleet'), 3)} ms`, 'context', ''],
    // The stores share the load generator's core: near 100 % there, they (not the gateway) cap the fleet's c=64.
    ['busy % of the gateway\'s / the load generator\'s core, c=64: embedded; fleet', `${fmt(m('aam', (r) => r.nonstream_c64?.sut_cpu_pct), 0)} / ${fmt(m('aam', (r) => r.nonstream_c64?.loadgen_core_pct), 0)}; ${fmt(m('aam-fleet', (r) => r.nonstream_c64?.sut_cpu_pct), 0)} / ${fmt(m('aam-fleet', (r) => r.nonstream_c64?.loadgen_core_pct), 0)}`, 'context', ''],
    ...(st ? [
      // Each EVALSHA is one round trip; INFO commandstats also counts the commands the scripts run inside.
      ['Redis round trips (EVALSHA) per model request', fmt(st.redis_by_command.evalsha ?? 0, 2), '1', ok((st.redis_by_command.evalsha ?? 0) <= 1.05)],
      ['Redis commands per model request, scripts\' inner commands included', `${fmt(st.redis_commands_per_request, 2)} (${Object.entries(st.redis_by_command).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')})`, 'context', ''],
      ['PostgreSQL transactions per model request', fmt(st.pg_xacts_per_request, 3), 'context (group commit)', ''],
      ['PostgreSQL + Redis CPU per model request', `${fmt(st.store_cpu_ms_per_request, 3)} ms`, 'context', ''],
      ['model requests counted', fmtInt(st.model_requests), 'context', ''],
    ] : []),
    ['machine load (1-min average) before -> after: embedded; fleet', `${load('aam')}; ${load('aam-fleet')}`, 'context', ''],
  ];
}

export function renderRun(run: BenchRun): string {
  const { meta } = run;
  const errors = run.results.filter((r) => r.error).map((r) => `- ${r.label} (round ${r.round}) could not be measured: ${r.error}`);
  const warnings = run.results.flatMap((r) => (r.warnings ?? []).map((w) => `- round ${r.round}: ${w}`));
  const ratios = ratioRows(run);
  const settings = Object.entries(meta.settings).map(([k, v]) => `${k}=${v}`).join(', ');
  return [
    `## \`npm run bench\` (bench/run.ts)`,
    '',
    `Measured ${meta.date} on ${meta.host}: ${meta.nproc} CPUs (${meta.cpu_model}), Linux ${meta.kernel}, Node ${meta.node}, load generator ${meta.loadgen}, aam at ${meta.aam_commit}.`,
    `Settings: ${settings}. Values are medians over rounds; latencies in ms as seen by the load generator.${run.paired ? ` Targets marked "paired slices" are judged on ${run.paired.iterations} iterations of ${run.paired.slice_s} s slices alternating between the targets compared, run side by side after the rounds (bench/lib/paired.ts): the median of the per-iteration differences or ratios.` : ''}`,
    '',
    ...(ratios.length ? ['### aam vs the bare proxy (the targets)', '', table(['metric', 'measured', 'target', 'met'], ratios), ''] : []),
    ...(fleetRows(run).length ? ['### Fleet mode vs embedded (one replica on PostgreSQL + Redis)', '', table(['metric', 'measured', 'target', 'met'], fleetRows(run)), ''] : []),
    '### Non-stream chat completions',
    '',
    latencyTable(run),
    '',
    '### Streaming (stream: true, include_usage, 20 chunks)',
    '',
    'First chunk / first content / whole stream: sequential requests (c=1) timed by bench/lib/ttfb-probe.ts. Stream c=64: wrk, time to the end of each stream.',
    '',
    streamTable(run),
    '',
    '### Memory (RSS of the process under test; for "direct" that is the mock)',
    '',
    `Sustained run: ${meta.settings.rss_duration_s} s of non-stream c=32 plus stream c=32 at the same time, after the scenarios above.`,
    '',
    rssTable(run),
    '',
    ...(errors.length ? ['### Not measured', '', ...errors, ''] : []),
    ...(warnings.length ? ['### Failed requests during measurement', '', ...warnings, ''] : []),
    ...(meta.notes.length ? ['### Notes', '', ...meta.notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
}

/** Replaces (or appends) the block between `<!-- BEGIN id -->` and `<!-- END id -->`. */
export function replaceSection(file: string, id: string, body: string, header: string): void {
  const begin = `<!-- BEGIN ${id} -->`;
  const end = `<!-- END ${id} -->`;
  const block = `${begin}\n${body.trim()}\n${end}`;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : header;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}
