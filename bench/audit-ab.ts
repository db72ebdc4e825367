// What the audit trail costs the gateway, measured so that a noisy shared machine affects both
// sides alike: aam and aam with AAM_AUDIT=off run at the same time (both pinned to the gateway
// core, only one under load at a time) and take turns in short wrk runs at c=64, in random order
// per pair. Reported: the median of the per-pair RPS ratios and the CPU time per request of each
// (from /proc, all threads: the audit writer thread shares the gateway's core). On a shared VM
// single runs of the same gateway differ by +-30 %; only the median over many pairs means much.
//   node_modules/.bin/node bench/audit-ab.ts [--pairs 12] [--seconds 3]
// Writes the "audit-ab" section of bench/AUDIT-RESULTS.md.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { aamBenchConfig, aamServeArgv, createAamKey, launcher } from './lib/aam.ts';
import { chooseLoadgen, runLoad } from './lib/loadgen.ts';
import { CLK_TCK, answers, cpuTicks, setAutogroupNice, startProcess, stopProcess, waitHttp } from './lib/procs.ts';
import type { PinOptions } from './lib/procs.ts';
import { replaceSection } from './lib/report.ts';
import { median, percentile } from './lib/stats.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
const arg = (name: string, dflt: number): number => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
const pairs = arg('pairs', 12);
const seconds = arg('seconds', 3);
const conc = arg('conc', 64);
const ports = { mock: 18090, on: 18091, off: 18092 };
const nice = process.getuid?.() === 0 ? -10 : 0;
const gwPin: PinOptions = { cpu: 1, nice };
const clientPin: PinOptions = { cpu: 0, nice };
const say = (s: string): void => { process.stdout.write(s + '\n'); };

const children: ChildProcess[] = [];
process.on('SIGINT', () => { void Promise.all(children.map((c) => stopProcess(c))).then(() => process.exit(130)); });

async function main(): Promise<void> {
  spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  if (nice) setAutogroupNice(nice);
  const loadgen = chooseLoadgen(process.env.BENCH_LOADGEN, say);
  const work = join(BENCH, 'results', `audit-ab-${Date.now()}`);
  mkdirSync(work, { recursive: true });
  try {
    for (const p of Object.values(ports)) if (await answers(`http://127.0.0.1:${p}/`)) throw new Error(`port ${p} is in use`);
    const mock = startProcess(clientPin, [process.execPath, join(BENCH, 'mock-upstream.js')], { MOCK_PORT: String(ports.mock), MOCK_STREAM_CHUNKS: '20' }, join(work, 'mock.log'));
    children.push(mock);
    if (!(await waitHttp(`http://127.0.0.1:${ports.mock}/__mock/stats`, 10_000, 200, mock))) throw new Error('mock did not start');
    const configPath = join(work, 'aam.yaml');
    writeFileSync(configPath, aamBenchConfig(ports.mock));
    const body = join(work, 'body.json');
    writeFileSync(body, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 }));
    const side = async (name: 'on' | 'off') => {
      const dataDir = join(work, `data-${name}`);
      mkdirSync(dataDir, { recursive: true });
      const key = createAamKey(process.execPath, REPO, configPath, dataDir);
      const child = startProcess(gwPin, aamServeArgv(process.execPath, REPO, configPath, ports[name], dataDir), { ...launcher(REPO).env, ...(name === 'off' ? { AAM_AUDIT: 'off' } : {}) }, join(work, `aam-${name}.log`), REPO);
      children.push(child);
      if (!(await waitHttp(`http://127.0.0.1:${ports[name]}/readyz`, 30_000, 200, child))) throw new Error(`aam (${name}) did not start`);
      return { name, child, headers: { authorization: `Bearer ${key}` }, origin: `http://127.0.0.1:${ports[name]}`, rps: [] as number[], p50: [] as number[], usPerReq: [] as number[] };
    };
    const on = await side('on');
    const off = await side('off');
    const run = async (s: typeof on, durationS: number) => {
      const t0 = cpuTicks(s.child.pid ?? 0) ?? 0;
      const r = await runLoad(loadgen, clientPin, { origin: s.origin, path: '/v1/chat/completions', headers: s.headers, bodyFile: body, conc, durationS });
      const ticks = (cpuTicks(s.child.pid ?? 0) ?? 0) - t0;
      if (r.non2xx || r.errors) throw new Error(`aam (${s.name}): ${r.non2xx} non-2xx, ${r.errors} errors`);
      return { rps: r.rps, p50: r.p50_ms, usPerReq: (ticks / CLK_TCK) * 1e6 / r.requests };
    };
    say(`audit A/B: ${pairs} pairs of ${seconds} s wrk runs at c=${conc}, aam with audit on vs off, both pinned to cpu 1`);
    for (const s of [on, off]) await run(s, 2); // warm up both
    const ratios: number[] = [];
    for (let i = 0; i < pairs; i++) {
      const order = Math.random() < 0.5 ? [on, off] : [off, on];
      const res = new Map<string, { rps: number; p50: number; usPerReq: number }>();
      // A pause before each run lets the other side's background work (the audit writer's last
      // batch, kernel writeback) finish, so it is not charged to the next run.
      for (const s of order) { await new Promise((r) => setTimeout(r, 700)); res.set(s.name, await run(s, seconds)); }
      for (const s of [on, off]) { s.rps.push(res.get(s.name)!.rps); s.p50.push(res.get(s.name)!.p50); s.usPerReq.push(res.get(s.name)!.usPerReq); }
      const ratio = res.get('on')!.rps / res.get('off')!.rps;
      ratios.push(ratio);
      say(`  pair ${i + 1}: on ${Math.round(res.get('on')!.rps)} rps p50 ${res.get('on')!.p50.toFixed(3)} ms (${res.get('on')!.usPerReq.toFixed(1)} us/req), off ${Math.round(res.get('off')!.rps)} rps p50 ${res.get('off')!.p50.toFixed(3)} ms (${res.get('off')!.usPerReq.toFixed(1)} us/req), ratio ${(ratio * 100).toFixed(1)} %`);
    }
    const sorted = [...ratios].sort((a, b) => a - b);
    const pct = (v: number): string => `${(v * 100).toFixed(1)} %`;
    const cpuOn = median(on.usPerReq);
    const cpuOff = median(off.usPerReq);
    const commit = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const body2 = [
      `Measured ${new Date().toISOString()} with \`node_modules/.bin/node bench/audit-ab.ts --pairs ${pairs} --seconds ${seconds}${conc !== 64 ? ` --conc ${conc}` : ''}\` on ${cpus().length} CPUs (${cpus()[0]?.model.trim()}), Node ${process.version}, aam at git ${commit}, load generator ${loadgen}.`,
      `Both gateways run at once, pinned to the same core (the audit writer thread shares it); wrk (c=${conc}, non-stream chat through the bench mock) loads one at a time, the order random per pair.`,
      '',
      '| measure | result |',
      '|---|---|',
      `| throughput with audit / without, median of ${pairs} pairs | ${pct(median(ratios))} (cost ${((1 - median(ratios)) * 100).toFixed(1)} %${conc === 64 ? '; target < 10 %' : ''}) |`,
      `| per-pair ratio, 25th-75th percentile (min-max) | ${pct(percentile(sorted, 25))}-${pct(percentile(sorted, 75))} (${pct(sorted[0])}-${pct(sorted[sorted.length - 1])}) |`,
      `| p50 latency with audit / without, medians | ${median(on.p50).toFixed(3)} / ${median(off.p50).toFixed(3)} ms (+${((median(on.p50) - median(off.p50)) * 1000).toFixed(0)} us) |`,
      `| RPS with audit / without, medians | ${Math.round(median(on.rps)).toLocaleString('en-US')} / ${Math.round(median(off.rps)).toLocaleString('en-US')} |`,
      `| CPU per request (all threads), medians | ${cpuOn.toFixed(1)} us with audit, ${cpuOff.toFixed(1)} us without: audit ${(cpuOn - cpuOff).toFixed(1)} us (${((cpuOn / cpuOff - 1) * 100).toFixed(1)} %) |`,
      '',
    ].join('\n');
    replaceSection(join(BENCH, 'AUDIT-RESULTS.md'), conc === 64 ? 'audit-ab' : `audit-ab-c${conc}`, body2, '# Audit benchmark results\n');
    say('\n' + body2);
  } finally {
    await Promise.all(children.map((c) => stopProcess(c)));
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
