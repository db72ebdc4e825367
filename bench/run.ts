// `npm run bench`: mock upstream, bare pass-through proxy and aam measured in one run, with every
// gateway pinned alone to one core and the load generator + mock on another. Writes
// bench/RESULTS.md (its `npm-run-bench` section) and raw JSON to bench/results/. See bench/README.md.
import { execFileSync, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aamBenchConfig, aamMigrate, aamServeArgv, buildAam, createAamKey } from './lib/aam.ts';
import type { AamBuild } from './lib/aam.ts';
import { bareProxyScript } from './lib/bare.ts';
import { chooseLoadgen } from './lib/loadgen.ts';
import { measureTarget, preflight } from './lib/measure.ts';
import type { BenchSettings, Target, TargetResult } from './lib/measure.ts';
import { answers, setAutogroupNice, startProcess, stopProcess, waitHttp, waitQuiet } from './lib/procs.ts';
import type { PinOptions } from './lib/procs.ts';
import { renderRun, replaceSection } from './lib/report.ts';
import { startBenchFleet, storeCost, pgDetail, type BenchFleet } from './lib/fleet.ts';
import { runPaired, type PairedRun, type PairedTarget } from './lib/paired.ts';
import type { BenchRun, RunMeta } from './lib/report.ts';

const BENCH = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(BENCH);
/** The tree aam is built from and run in (BENCH_AAM_TREE, e.g. an older commit's worktree: its aam measured by this bench's harness); default this one. */
const AAM_TREE = process.env.BENCH_AAM_TREE ? resolve(process.env.BENCH_AAM_TREE) : REPO;
const env = process.env;
const num = (name: string, dflt: number): number => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt);

const durationS = num('BENCH_DURATION', 10);
const cfg = {
  durationS,
  warmupS: num('BENCH_WARMUP', 2),
  rssDurationS: num('BENCH_RSS_DURATION', 2 * durationS),
  // Three rounds by default: a median of three is robust to one disturbed round (of two, it is their mean).
  rounds: num('BENCH_ROUNDS', 3),
  targets: (env.BENCH_TARGETS ?? 'direct,bare,aam,aam-fleet,aam-responses').split(',').map((s) => s.trim()).filter(Boolean),
  mockPort: num('BENCH_MOCK_PORT', 18080),
  barePort: num('BENCH_BARE_PORT', 18081),
  aamPort: num('BENCH_AAM_PORT', 18082),
  pin: env.BENCH_PIN !== '0',
  sutCpu: num('BENCH_SUT_CPU', 1),
  clientCpu: num('BENCH_LOADGEN_CPU', 0),
  // on a shared machine, priority keeps other work from stealing the gateway's core mid-measurement
  nice: num('BENCH_NICE', process.getuid?.() === 0 ? -10 : 0),
  quietWaitS: num('BENCH_QUIET_WAIT', 60),
  quietPct: num('BENCH_QUIET_PCT', 15),
  chunks: num('MOCK_STREAM_CHUNKS', 20),
  cpuProf: env.BENCH_CPU_PROF === '1',
  aamWaitS: num('BENCH_AAM_READY_S', 30),
  // Paired slices after the rounds (bench/lib/paired.ts): what the targets are judged on. 0 skips them.
  pairs: num('BENCH_PAIRS', 8),
  pairSliceS: num('BENCH_PAIR_SLICE', 2),
  fleetPort: num('BENCH_AAM_FLEET_PORT', 18083),
};
const say = (s: string): void => { process.stdout.write(s + '\n'); };
const sh = (cmd: string, args: string[]): string => { try { return execFileSync(cmd, args, { encoding: 'utf8' }).trim(); } catch { return '?'; } };

const children = new Set<ChildProcess>();
async function stopAll(): Promise<void> { await Promise.all([...children].map((c) => stopProcess(c))); }
process.on('SIGINT', () => { void stopAll().then(() => process.exit(130)); });

function machineMeta(loadgen: string, notes: string[], aamFrom: string): RunMeta {
  const dirty = sh('git', ['-C', AAM_TREE, 'status', '--porcelain', '--', 'src']) !== '' ? ' + uncommitted changes in src/' : '';
  return {
    date: new Date().toISOString(), host: hostname(), nproc: cpus().length,
    cpu_model: /Model name:\s*(.*)/.exec(sh('lscpu', []))?.[1] ?? '?', kernel: sh('uname', ['-r']), node: process.version,
    loadgen: loadgen === 'wrk' ? `wrk ${sh('sh', ['-c', 'wrk -v 2>&1 | head -1 | cut -d" " -f2'])}` : 'node (undici Pool)',
    aam_commit: `git ${sh('git', ['-C', AAM_TREE, 'rev-parse', '--short', 'HEAD'])}${dirty}, run as ${aamFrom}`,
    settings: {
      duration_s: cfg.durationS, warmup_s: cfg.warmupS, rss_duration_s: cfg.rssDurationS, rounds: cfg.rounds,
      pinned: cfg.pin, gateway_cpu: cfg.sutCpu, loadgen_and_mock_cpu: cfg.clientCpu, nice: cfg.nice, mock_stream_chunks: cfg.chunks,
      paired_iterations: cfg.pairs, paired_slice_s: cfg.pairSliceS,
    },
    notes,
  };
}

interface BodyFiles { nonstream: string; stream: string; responses: { nonstream: string; stream: string } }

function requestBodies(dir: string): BodyFiles {
  // The shared harness's request shape: a small typical chat request; streaming asks for usage.
  const base = { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: 'Say hello in one short sentence.' }], max_tokens: 64, temperature: 0.2 };
  // The same request in the Responses API (aam translates it to the mock's chat completions; not stored).
  const resp = { model: 'gpt-4o-mini', instructions: 'You are a helpful assistant.', input: 'Say hello in one short sentence.', max_output_tokens: 64, temperature: 0.2, store: false };
  const files = {
    nonstream: join(dir, 'nonstream.json'), stream: join(dir, 'stream.json'),
    responses: { nonstream: join(dir, 'responses-nonstream.json'), stream: join(dir, 'responses-stream.json') },
  };
  writeFileSync(files.nonstream, JSON.stringify(base));
  writeFileSync(files.stream, JSON.stringify({ ...base, stream: true, stream_options: { include_usage: true } }));
  writeFileSync(files.responses.nonstream, JSON.stringify(resp));
  writeFileSync(files.responses.stream, JSON.stringify({ ...resp, stream: true }));
  return files;
}

interface Running { target: Target; child?: ChildProcess; startupMs?: number }

interface PreparedAam { configPath: string; dataDir: string; key: string; build: AamBuild; env: Record<string, string> }

/** Writes the aam config for this mock port and creates the bench key once per run (in the fleet's store for the fleet run). */
function prepareAam(work: string, build: AamBuild, fleet?: BenchFleet): PreparedAam {
  const configPath = join(work, 'aam-bench.yaml');
  writeFileSync(configPath, aamBenchConfig(cfg.mockPort));
  const dataDir = join(work, fleet ? 'aam-fleet-data' : 'aam-data');
  mkdirSync(dataDir, { recursive: true });
  const env = fleet?.env ?? {};
  if (fleet) aamMigrate(process.execPath, AAM_TREE, build, env);
  return { configPath, dataDir, key: createAamKey(process.execPath, AAM_TREE, configPath, dataDir, build, env), build, env };
}

async function startTarget(name: string, mock: Target, gwPin: PinOptions, logDir: string, work: string, embedded: PreparedAam | Error | undefined, fleet?: PreparedAam | Error, aamPort = cfg.aamPort): Promise<Running> {
  const aam = name === 'aam-fleet' ? fleet : embedded;
  const auth = { authorization: 'Bearer dummy' };
  if (name === 'direct') return { target: { ...mock, headers: auth } };
  const origin = `http://127.0.0.1:${name === 'bare' ? cfg.barePort : aamPort}`;
  if (await answers(origin + '/')) throw new Error(`something already answers at ${origin}; stop it or set BENCH_${name.toUpperCase()}_PORT`);
  let argv: string[];
  let ready: () => Promise<boolean>;
  let headers = auth;
  const t0 = performance.now();
  let child: ChildProcess;
  if (name === 'bare') {
    argv = [process.execPath, bareProxyScript(work)];
    child = startProcess(gwPin, argv, { UPSTREAM_URL: mock.origin, PORT: String(cfg.barePort) }, join(logDir, 'bare.log'));
    ready = () => waitHttp(origin + '/__mock/stats', 10_000, 200, child);
  } else if (name === 'aam' || name === 'aam-noaudit' || name === 'aam-responses' || name === 'aam-fleet') {
    if (!aam || aam instanceof Error) throw aam ?? new Error('aam not prepared');
    argv = aamServeArgv(process.execPath, AAM_TREE, aam.configPath, aamPort, aam.dataDir, aam.build);
    if (cfg.cpuProf) argv.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${join(BENCH, 'results', 'prof')}`);
    // aam-noaudit: the same gateway with AAM_AUDIT=off, only to show what the audit trail costs.
    // aam-fleet: the same gateway on PostgreSQL + Redis (aam.env carries their URLs).
    child = startProcess(gwPin, argv, { ...aam.build.env, ...aam.env, ...(name === 'aam-noaudit' ? { AAM_AUDIT: 'off' } : {}) }, join(logDir, `${name}.log`), AAM_TREE);
    ready = () => waitHttp(origin + '/readyz', cfg.aamWaitS * 1000, 200, child);
    headers = { authorization: `Bearer ${aam.key}` };
  } else {
    throw new Error(`unknown target ${name} (use direct, bare, aam, aam-fleet, aam-noaudit, aam-responses)`);
  }
  children.add(child);
  if (!(await ready())) {
    await stopProcess(child);
    children.delete(child);
    const log = readFileSync(join(logDir, `${name}.log`), 'utf8').trim().split('\n').slice(-8).join(' | ');
    throw new Error(`${name} did not become ready (${argv.slice(1).join(' ')}); last log lines: ${log}`);
  }
  const label = name === 'bare' ? 'bare proxy' : name === 'aam-noaudit' ? 'aam (audit off)' : name === 'aam-responses' ? 'aam (Responses API)' : name === 'aam-fleet' ? 'aam fleet (1 replica, PostgreSQL + Redis)' : 'aam';
  return { target: { name, label, origin, headers, pid: child.pid ?? 0 }, child, startupMs: Math.round(performance.now() - t0) };
}

async function main(): Promise<void> {
  const notes: string[] = [];
  if (cfg.pin) spawnSync('taskset', ['-a', '-p', '-c', String(cfg.clientCpu), String(process.pid)], { stdio: 'ignore' });
  const clientPin: PinOptions = { cpu: cfg.pin ? cfg.clientCpu : null, nice: cfg.nice };
  const gwPin: PinOptions = { cpu: cfg.pin ? cfg.sutCpu : null, nice: cfg.nice };
  const prevAutogroup = cfg.nice !== 0 ? setAutogroupNice(cfg.nice) : null;
  if (prevAutogroup !== null) {
    process.on('exit', () => setAutogroupNice(prevAutogroup));
    notes.push(`All benchmark processes ran at nice ${cfg.nice}, also for their session's autogroup, so that other work on the machine disturbs every target alike and less.`);
  }
  const loadgen = chooseLoadgen(env.BENCH_LOADGEN, say);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  const resultsDir = join(BENCH, 'results');
  const logDir = join(resultsDir, `logs-${stamp}`);
  mkdirSync(logDir, { recursive: true });
  // Work files live under bench/results/ (git-ignored): other processes may sweep /tmp while we run.
  const work = join(resultsDir, `work-${stamp}`);
  mkdirSync(work, { recursive: true });
  // aam as `npm start` runs it (built JavaScript, start flags), built once now: edits to src/
  // during the run do not change what is measured.
  const build = cfg.targets.some((t) => t.startsWith('aam')) ? buildAam(process.execPath, AAM_TREE, join(work, 'dist')) : undefined;
  // The build reads package.json beside its dist/ (the release it reports in fleet heartbeats), as in the repo.
  if (build) copyFileSync(join(AAM_TREE, 'package.json'), join(work, 'package.json'));
  // Taken at the start: the date and the aam commit measured (the tree may change during the run).
  const meta = machineMeta(loadgen, notes, build?.from ?? 'n/a');
  const bodyFiles = requestBodies(work);

  const mockOrigin = `http://127.0.0.1:${cfg.mockPort}`;
  if (await answers(mockOrigin + '/')) throw new Error(`port ${cfg.mockPort} is in use; stop that process or set BENCH_MOCK_PORT`);
  const mockChild = startProcess(clientPin, [process.execPath, join(BENCH, 'mock-upstream.js')],
    { MOCK_PORT: String(cfg.mockPort), MOCK_STREAM_CHUNKS: String(cfg.chunks) }, join(logDir, 'mock.log'));
  children.add(mockChild);
  if (!(await waitHttp(mockOrigin + '/__mock/stats', 10_000, 200, mockChild))) throw new Error('mock upstream did not start');
  const mock: Target = { name: 'direct', label: 'direct (mock)', origin: mockOrigin, headers: {}, pid: mockChild.pid ?? 0 };
  const settings: BenchSettings = {
    durationS: cfg.durationS, warmupS: cfg.warmupS, rssDurationS: cfg.rssDurationS, loadgen, clientPin,
    mockOrigin, mockPid: mock.pid, bodyFiles,
  };

  let aam: PreparedAam | Error | undefined;
  if (build) {
    try { aam = prepareAam(work, build); } catch (err) { aam = err instanceof Error ? err : new Error(String(err)); }
  }
  // The fleet run's PostgreSQL and Redis, started as `npm test` starts them, on the load generator's core (inherited pinning).
  let benchFleet: BenchFleet | undefined;
  let fleetAam: PreparedAam | Error | undefined;
  if (build && cfg.targets.includes('aam-fleet')) {
    try {
      benchFleet = await startBenchFleet(cfg.nice);
      fleetAam = prepareAam(work, build, benchFleet);
      notes.push('aam fleet: one replica with AAM_DATABASE_URL and AAM_REDIS_URL set, PostgreSQL and Redis on loopback started as `npm test` starts them (scripts/test.ts: PostgreSQL with fsync off) and pinned with the load generator, not on the gateway\'s core; their CPU counts as "foreign" in the tables and is reported per request in the fleet table.');
    } catch (err) { fleetAam = err instanceof Error ? err : new Error(String(err)); }
  }

  const results: TargetResult[] = [];
  const perTarget = 5 * (cfg.durationS + cfg.warmupS) + cfg.rssDurationS + 10;
  say(`bench: targets ${cfg.targets.join(', ')}, ${cfg.rounds} round(s), ~${Math.round((perTarget * cfg.targets.length * cfg.rounds) / 60)} min; loadgen ${loadgen}; logs in ${logDir}`);
  for (let round = 1; round <= cfg.rounds; round++) {
    for (const name of cfg.targets) {
      await waitQuiet(cfg.quietWaitS, cfg.quietPct, [mock.pid], say);
      let running: Running | undefined;
      try {
        running = await startTarget(name, mock, gwPin, logDir, work, aam, fleetAam);
        // aam-responses: the same gateway answering the same request in the Responses API.
        if (name === 'aam-responses') running.target.responses = bodyFiles.responses;
        say(`=== round ${round}: ${running.target.label} at ${running.target.origin} pid ${running.target.pid}`);
        const files = running.target.responses ?? bodyFiles;
        await preflight(running.target, settings, { nonstream: readFileSync(files.nonstream, 'utf8'), stream: readFileSync(files.stream, 'utf8') });
        const load0 = loadavg()[0];
        const stores0 = name === 'aam-fleet' && benchFleet ? { at: await benchFleet.counters(), mock: await mockTotal(mockOrigin) } : undefined;
        const r = await measureTarget(running.target, settings, round, say);
        r.startup_ms = running.startupMs;
        if (stores0 && benchFleet) {
          r.stores = storeCost(stores0.at, await benchFleet.counters(), (await mockTotal(mockOrigin)) - stores0.mock);
          say(`  ${running.target.label} per model request: ${r.stores.redis_commands_per_request} Redis commands (${Object.entries(r.stores.redis_by_command).map(([k, v]) => `${k} ${v}`).join(', ')}), ${r.stores.pg_xacts_per_request} PostgreSQL transactions, store CPU ${r.stores.store_cpu_ms_per_request} ms (Redis ${r.stores.redis_cpu_ms_per_request}: ${r.stores.redis_reads_per_request} reads; usec by command ${Object.entries(r.stores.redis_usec_by_command).map(([k, v]) => `${k} ${v}`).join(', ')}); ${pgDetail(r.stores)}`);
        }
        r.loadavg = [load0, loadavg()[0]];
        results.push(r);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        say(`=== round ${round}: ${name} FAILED: ${msg}`);
        results.push({ name, label: name === 'bare' ? 'bare proxy' : name === 'direct' ? 'direct (mock)' : name, round, error: msg });
      } finally {
        if (running?.child) { await stopProcess(running.child); children.delete(running.child); }
      }
    }
  }
  const paired = await pairedPhase(settings, mock, gwPin, logDir, work, aam, fleetAam, bodyFiles.responses);
  await stopAll();
  await benchFleet?.stop();
  rmSync(work, { recursive: true, force: true });

  const fail = results.filter((r) => r.error).length;
  if (loadgen === 'node') notes.push('wrk was unavailable; the Node load generator adds more client-side latency than wrk, so compare only within this run.');
  notes.push('Machine shared with other work: "foreign CPU %" is CPU used by processes outside the benchmark during a scenario (100 = one core); high values mean noisy numbers.');
  const run: BenchRun = { meta, results, ...(paired ? { paired } : {}) };
  const jsonPath = join(resultsDir, `bench-${stamp}.json`);
  writeFileSync(jsonPath, JSON.stringify(run, null, 1));
  // BENCH_SECTION: a partial run (e.g. BENCH_TARGETS=aam,aam-fleet) goes to its own section and leaves the full run's alone.
  replaceSection(join(BENCH, 'RESULTS.md'), env.BENCH_SECTION ?? 'npm-run-bench', renderRun(run), '# Benchmark results\n\nHow to run and what the numbers mean: [README.md](README.md).\n');
  say(`\n${renderRun(run)}\nraw JSON: ${jsonPath}\nwrote ${join(BENCH, 'RESULTS.md')}${fail ? ` (${fail} target run(s) failed)` : ''}`);
}

/**
 * The targets side by side for paired slices (bench/lib/paired.ts): bare proxy, aam (also answering
 * the Responses API) and, when measured, the fleet replica, each on its own port, all pinned to the
 * gateway's core and idle but the one measured.
 */
async function pairedPhase(settings: BenchSettings, mock: Target, gwPin: PinOptions, logDir: string, work: string, aam: PreparedAam | Error | undefined,
  fleetAam: PreparedAam | Error | undefined, responses: { nonstream: string; stream: string }): Promise<PairedRun | undefined> {
  if (cfg.pairs <= 0 || !cfg.targets.includes('bare') || !cfg.targets.includes('aam')) return undefined;
  const started: Running[] = [];
  try {
    say(`=== paired slices: ${cfg.pairs} iterations of ${cfg.pairSliceS} s slices`);
    await waitQuiet(cfg.quietWaitS, cfg.quietPct, [mock.pid], say);
    for (const name of ['bare', 'aam', ...(cfg.targets.includes('aam-fleet') ? ['aam-fleet'] : [])]) {
      const r = await startTarget(name, mock, gwPin, logDir, work, aam, fleetAam, name === 'aam-fleet' ? cfg.fleetPort : cfg.aamPort);
      started.push(r);
    }
    const [bare, embedded, fleet] = started.map((r) => r.target);
    const targets: PairedTarget[] = [{ target: bare, streams: true }, { target: embedded, streams: true }];
    if (cfg.targets.includes('aam-responses')) targets.push({ target: { ...embedded, name: 'aam-responses', label: 'aam (Responses API)', responses }, streams: true });
    if (fleet) targets.push({ target: fleet, streams: false });
    return await runPaired(settings, targets, cfg.pairs, cfg.pairSliceS, say);
  } catch (err) {
    say(`=== paired slices FAILED: ${err instanceof Error ? err.message : String(err)}`);
    return undefined;
  } finally {
    for (const r of started) if (r.child) { await stopProcess(r.child); children.delete(r.child); }
  }
}

async function mockTotal(origin: string): Promise<number> {
  return ((await (await fetch(`${origin}/__mock/stats`)).json()) as { total: number }).total;
}

/** Re-render RESULTS.md from a saved run (BENCH_RENDER=bench/results/bench-<time>.json). */
function renderOnly(jsonPath: string): void {
  const run = JSON.parse(readFileSync(jsonPath, 'utf8')) as BenchRun;
  replaceSection(join(BENCH, 'RESULTS.md'), env.BENCH_SECTION ?? 'npm-run-bench', renderRun(run), '# Benchmark results\n');
  say(renderRun(run));
}

if (env.BENCH_RENDER) renderOnly(env.BENCH_RENDER);
else main().catch(async (err: unknown) => {
  console.error(`bench failed: ${err instanceof Error ? err.message : String(err)}`);
  await stopAll();
  process.exit(1);
});
