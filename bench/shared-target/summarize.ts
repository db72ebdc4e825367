// Side-by-side table (direct, Portkey, aam) from one run of the shared harness (../shared/bench),
// written into the `shared-harness` section of bench/RESULTS.md.
//   node bench/shared-target/summarize.ts <harness>/results/<stamp> "<exact command used>"
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replaceSection } from '../lib/report.ts';

interface Row {
  label: string; node: string; mode: string; conc: number; round: number; failed?: string;
  rps: number; p50_ms: number; p99_ms: number; non2xx: number; errors: number;
  rss_max_kb: number | null; sut_cpu_pct: number | null; foreign_cpu_pct: number | null;
}
interface Mem { label: string; node: string; round: number; startup_ms: number | null; rss_idle_kb: number | null; rss_after_load_kb: number | null }
interface Meta { cpus?: number; cpu_model?: string; kernel?: string; wrk?: string; node20?: string; node24?: string; duration?: number; warmup?: number; rounds?: number; stamp?: string }

const readJsonl = <T>(f: string): T[] => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as T) : []);
const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const f2 = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
const int = (v: number): string => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
const signed = (v: number): string => (Number.isFinite(v) ? (v >= 0 ? '+' : '') + v.toFixed(2) : 'n/a');
const mb = (kb: number): string => (Number.isFinite(kb) ? (kb / 1024).toFixed(0) : 'n/a');

export function summarize(dir: string, command: string): string {
  const raw = readJsonl<Row>(join(dir, 'raw.jsonl'));
  const mem = readJsonl<Mem>(join(dir, 'mem.jsonl'));
  const meta = existsSync(join(dir, 'meta.json')) ? JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta : {};
  const ok = raw.filter((r) => !r.failed);
  const labels = [...new Set(raw.map((r) => r.label))];
  const pick = (label: string, mode: string, conc: number): Row[] => ok.filter((r) => r.label === label && r.mode === mode && r.conc === conc);
  const m = (label: string, mode: string, conc: number, f: (r: Row) => number): number => mean(pick(label, mode, conc).map(f));
  const dp50 = (label: string, mode: string, conc: number): number => m(label, mode, conc, (r) => r.p50_ms) - m('direct', mode, conc, (r) => r.p50_ms);

  const scenarios: [string, number][] = [['nonstream', 1], ['nonstream', 64], ['stream', 1], ['stream', 64]];
  const head = ['mode', 'conc', ...labels.flatMap((l) => (l === 'direct' ? ['direct RPS', 'direct p50'] : [`${l} RPS`, `${l} p50`, `${l} Δp50`, `${l} non-2xx`]))];
  const rows = scenarios.map(([mode, conc]) => [mode, String(conc), ...labels.flatMap((l) => {
    const rps = int(m(l, mode, conc, (r) => r.rps));
    const p50 = f2(m(l, mode, conc, (r) => r.p50_ms));
    if (l === 'direct') return [rps, p50];
    return [rps, p50, signed(dp50(l, mode, conc)), String(pick(l, mode, conc).reduce((s, r) => s + r.non2xx + r.errors, 0))];
  })]);
  const table = (h: string[], rs: string[][]): string => [h, h.map((_, i) => (i < 2 ? '---' : '---:')), ...rs].map((r) => `| ${r.join(' | ')} |`).join('\n');

  const memRows = labels.map((l) => {
    const ms = mem.filter((x) => x.label === l);
    const peak = Math.max(...ok.filter((r) => r.label === l && r.rss_max_kb !== null).map((r) => r.rss_max_kb ?? 0));
    return [l, ms[0]?.node ?? '', int(mean(ms.map((x) => x.startup_ms ?? NaN))), mb(mean(ms.map((x) => x.rss_idle_kb ?? NaN))), mb(peak), mb(mean(ms.map((x) => x.rss_after_load_kb ?? NaN)))];
  });

  const ratios: string[][] = [];
  const portkey = labels.find((l) => l.startsWith('portkey'));
  if (portkey && labels.includes('aam')) {
    const rpsRatio = m('aam', 'nonstream', 64, (r) => r.rps) / m(portkey, 'nonstream', 64, (r) => r.rps);
    const sRatio = m('aam', 'stream', 64, (r) => r.rps) / m(portkey, 'stream', 64, (r) => r.rps);
    ratios.push(
      ['aam RPS / Portkey RPS, non-stream c=64', `${f2(rpsRatio)}x`, '>= 6x', rpsRatio >= 6 ? 'yes' : '**no**'],
      ['aam Δp50 vs Portkey Δp50, non-stream c=1', `${signed(dp50('aam', 'nonstream', 1))} ms vs ${signed(dp50(portkey, 'nonstream', 1))} ms`, '', ''],
      ['aam Δp50 vs Portkey Δp50, stream c=1 (whole stream)', `${signed(dp50('aam', 'stream', 1))} ms vs ${signed(dp50(portkey, 'stream', 1))} ms`, '', ''],
      ['aam RPS / Portkey RPS, stream c=64', `${f2(sRatio)}x`, '', ''],
    );
  }
  const failures = raw.filter((r) => r.failed).map((r) => `- ${r.label} ${r.mode} round ${r.round}: ${r.failed}`);
  return [
    '## Shared harness (../shared/bench): direct, Portkey, aam side by side',
    '',
    `Command (in a copy of ../shared/bench, after \`./setup.sh\` and copying bench/shared-target/aam.sh to targets/aam.sh): \`${command}\``,
    '',
    `Run ${meta.stamp ?? basename(dir)}: ${meta.cpus ?? '?'} CPUs ${meta.cpu_model ?? ''}, kernel ${meta.kernel ?? '?'}, wrk ${meta.wrk ?? '?'}, Node ${meta.node24 ?? '?'} for the gateways (mock on ${meta.node20 ?? '?'}); ${meta.warmup ?? 3} s warm-up + ${meta.duration ?? 10} s per scenario, ${meta.rounds ?? '?'} rounds interleaved; means over rounds. Latency = wrk, request write to last byte (streams: to \`[DONE]\`). Δp50 = p50 minus direct p50 of the same scenario.`,
    '',
    ...(ratios.length ? [table(['metric', 'measured', 'target', 'met'], ratios), ''] : []),
    table(head, rows),
    '',
    table(['target', 'node', 'startup ms', 'idle RSS MB', 'peak RSS MB', 'RSS after load MB'], memRows),
    '',
    ...(failures.length ? ['Failed scenarios:', '', ...failures, ''] : []),
  ].join('\n');
}

if (import.meta.main) {
  const [dirArg, command] = process.argv.slice(2);
  if (!dirArg || !command) {
    console.error('usage: node bench/shared-target/summarize.ts <harness>/results/<stamp> "<command used>"');
    process.exit(2);
  }
  const dir = realpathSync(dirArg);
  const md = summarize(dir, command);
  const results = join(dirname(dirname(fileURLToPath(import.meta.url))), 'RESULTS.md');
  replaceSection(results, 'shared-harness', md, '# Benchmark results\n');
  process.stdout.write(md + '\n');
}
