// Worst-case cost of every built-in guardrail detector (and of keyword lists and a user regex on
// V8's linear engine) on 1 MB adversarial and 1 MB random inputs, then /healthz latency on a real
// gateway while one client streams hostile 10 MB chat bodies at a guardrail-enabled policy.
// A benchmark, not a test: it reports numbers and never fails on them.
// Run: npm run bench:detectors   (BENCH_KB=1024 input size, BENCH_GATEWAY=0 skips the gateway part,
// BENCH_SCANNERS=0 the per-detector part; writes bench/DETECTORS.md)
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DETECTORS, DETECTOR_NAMES, detect } from '../src/guardrails/detectors.ts';
import { compileKeywords, findKeywords } from '../src/guardrails/keywords.ts';
import { compileGuardrail } from '../src/guardrails/engine-core.ts';
import { createStreamGuard } from '../src/guardrails/stream.ts';
import { scan, finding } from '../src/guardrails/scan.ts';
import type { Finding } from '../src/guardrails/types.ts';
import { adversarialInputs, randomInputs, run } from '../test/helpers/hostile-text.ts';
import { healthzUnderHostileLoad, type HealthzResult } from './lib/healthz-under-load.ts';

const KB = Number(process.env.BENCH_KB ?? 1024);
const LOAD_BEFORE = loadavg()[0].toFixed(1);
const SIZE = KB * 1024;
const TARGET_US_PER_KB = 50;

type Scanner = (text: string, out: Finding[]) => void;

const keywordRe = compileKeywords(['project falcon', 'confidential roadmap', 'acme secret', 'internal only'])!;
const userRegex = compileGuardrail('bench', { on: ['input'], action: 'block', regex: ['ACME-\\d{6}'] }).regexes[0];

/** Every scanner a guardrail can run, by the name used in the tables. */
const SCANNERS: ReadonlyArray<readonly [string, Scanner]> = [
  ...Object.entries(DETECTORS),
  ['keywords (4 phrases)', (text, out) => { for (const f of findKeywords(keywordRe, text)) out.push(f); }],
  ['regex `ACME-\\d{6}` (linear engine)', (text, out) => scan(userRegex, text, out, (m) => finding('regex', m.index, m.index + m[0].length))],
  ['all 7 detectors + overlap resolution', (text, out) => { for (const f of detect(text, DETECTOR_NAMES)) out.push(f); }],
];

/**
 * CPU microseconds per KB for one scanner on one text: the least of a few runs (at least 3, ~300 ms).
 * CPU time (process.threadCpuUsage would leave out GC helper threads, but counts in ~4 ms ticks) and
 * the least run, because on a shared machine wall time mostly measures the neighbours.
 */
function usPerKb(fn: Scanner, text: string): number {
  let best = Infinity;
  const t0 = performance.now();
  for (let n = 0; n < 3 || (n < 15 && performance.now() - t0 < 300); n++) {
    const out: Finding[] = [];
    const t = process.cpuUsage();
    fn(text, out);
    const d = process.cpuUsage(t);
    best = Math.min(best, d.user + d.system);
  }
  return best / (text.length / 1024);
}

interface Row { scanner: string; worstAdv: number; worstAdvInput: string; worstRandom: number; worstRandomInput: string }

function measureScanners(): Row[] {
  const adv = adversarialInputs(SIZE), rnd = randomInputs(SIZE);
  const rows: Row[] = [];
  for (const [name, fn] of SCANNERS) {
    const row: Row = { scanner: name, worstAdv: 0, worstAdvInput: '', worstRandom: 0, worstRandomInput: '' };
    for (const [label, text] of adv) {
      const us = usPerKb(fn, text);
      if (us > row.worstAdv) { row.worstAdv = us; row.worstAdvInput = label; }
    }
    for (const [label, text] of rnd) {
      const us = usPerKb(fn, text);
      if (us > row.worstRandom) { row.worstRandom = us; row.worstRandomInput = label; }
    }
    process.stderr.write(`${name}: adversarial ${row.worstAdv.toFixed(1)} us/KB (${row.worstAdvInput}), random ${row.worstRandom.toFixed(1)} us/KB\n`);
    rows.push(row);
  }
  return rows;
}

/** Stream guard (all detectors, redact) CPU us per KB of streamed text, in 4-character deltas. */
function measureStream(): Array<[string, number]> {
  const g = compileGuardrail('all', { on: ['output'], action: 'redact', detect: DETECTOR_NAMES });
  const texts: Array<[string, string]> = [
    ['prose', randomInputs(256 * 1024)[3][1]],
    ['one 256 KB base64 run (held back)', run('', 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo', 256 * 1024)],
  ];
  return texts.map(([label, text]) => [label, usPerKb((t) => {
    const sg = createStreamGuard([g]);
    for (let i = 0; i < t.length; i += 4) sg.push(t.slice(i, i + 4));
    sg.end();
  }, text)]);
}

/** The hand-written `<!-- notes -->` section of the previous file (before/after, analysis), kept across runs. */
function keptNotes(path: string): string {
  let old = '';
  try { old = readFileSync(path, 'utf8'); } catch { return ''; }
  const a = old.indexOf('<!-- notes -->'), b = old.indexOf('<!-- /notes -->');
  return a >= 0 && b > a ? `\n${old.slice(a, b + '<!-- /notes -->'.length)}\n` : '';
}

const HEALTHZ_TITLE = '## /healthz while one client streams hostile bodies';

function healthzSection(hz: HealthzResult): string[] {
  return [
    HEALTHZ_TITLE,
    '',
    `A real gateway (its own process, \`aam serve\`) with a policy that attaches one guardrail running all ${Object.keys(DETECTORS).length} detectors `
      + '(action block, default scan budget `max_scan_chars` 1 MiB) in front of the mock upstream. One client (another process) posts the '
      + 'same hostile chat body back to back; its message text is every adversarial input above, one after another (in one message, or cut '
      + 'into 2,000). Large values are scanned off the event loop (src/guardrails/offload.ts) and large bodies read in paced turns. The prober '
      + 'sends one `/healthz` at a time, every 2 ms, over a kept-alive connection.',
    '',
    '| hostile body | bytes | hostile requests (answers) | hostile request ms (median) | /healthz samples | p50 ms | p99 ms | max ms |',
    '|---|---:|---|---:|---:|---:|---:|---:|',
    ...hz.scenarios.map((s) => `| ${s.label} | ${s.bodyBytes} | ${s.hostileRequests} (${s.statuses}) | ${s.hostileMedianMs.toFixed(0)} | ${s.samples} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.max.toFixed(1)} |`),
    '',
    `Target: p99 under 5 ms. Without the hostile client: p50 ${hz.idleP50.toFixed(2)} ms, p99 ${hz.idleP99.toFixed(2)} ms. `
      + `Measured ${new Date().toISOString().slice(0, 16)}Z, load average ${LOAD_BEFORE} at the start and ${loadavg()[0].toFixed(1)} at the end (2 CPUs, shared).`,
    '',
  ];
}

function report(rows: Row[], stream: Array<[string, number]>, hz: HealthzResult | null): string {
  const fmt = (x: number) => x.toFixed(1);
  const adv = adversarialInputs(64);
  const lines = [
    '# Guardrail detectors: worst-case cost',
    '',
    `Generated by \`npm run bench:detectors\` (\`bench/detectors.ts\`) on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, `
      + `${KB} KB inputs, ${cpus().length} CPUs (load average ${LOAD_BEFORE} at the start, ${loadavg()[0].toFixed(1)} at the end: other work `
      + `shares this machine). Target: every detector at most ${TARGET_US_PER_KB} us per KB on any input. Times are CPU time, the least of `
      + '3-15 runs, so waiting for a busy core is not counted.',
    '',
    '## Per detector',
    '',
    `Each scanner runs alone over ${adv.length} adversarial inputs (long runs of the separators and prefixes the detectors key on) `
      + `and ${randomInputs(64).length} random ones; the table shows the worst input of each kind.`,
    '',
    '| detector | worst adversarial us/KB | on input | worst random us/KB | on input | within target |',
    '|---|---:|---|---:|---|---|',
    ...rows.map((r) => `| ${r.scanner} | ${fmt(r.worstAdv)} | ${r.worstAdvInput} | ${fmt(r.worstRandom)} | ${r.worstRandomInput} | ${Math.max(r.worstAdv, r.worstRandom) <= TARGET_US_PER_KB ? 'yes' : '**no**'} |`),
    '',
    'Adversarial inputs: ' + adv.map(([label]) => label).join('; ') + '.',
    '',
    '## Stream guard',
    '',
    'All 7 detectors on a streamed answer pushed 4 characters at a time (each push rescans the held-back window; see src/guardrails/stream.ts):',
    '',
    '| streamed text | us per KB |',
    '|---|---:|',
    ...stream.map(([label, us]) => `| ${label} | ${fmt(us)} |`),
    '',
  ];
  if (hz !== null) lines.push(...healthzSection(hz));
  return lines.join('\n');
}

const OUT = fileURLToPath(new URL('./DETECTORS.md', import.meta.url));
let md: string;
if (process.env.BENCH_SCANNERS === '0') {
  // Only the gateway part: its section of the file is replaced, the detector tables are kept.
  const old = readFileSync(OUT, 'utf8');
  const a = old.indexOf(HEALTHZ_TITLE), b = old.indexOf('<!-- notes -->');
  const section = healthzSection(await healthzUnderHostileLoad()).join('\n');
  md = a >= 0 ? old.slice(0, a) + section + '\n' + (b > a ? old.slice(b) : '') : `${old}\n${section}\n`;
} else {
  const rows = measureScanners();
  const stream = measureStream();
  const hz = process.env.BENCH_GATEWAY === '0' ? null : await healthzUnderHostileLoad();
  md = report(rows, stream, hz) + keptNotes(OUT);
}
console.log(md);
writeFileSync(OUT, md);
