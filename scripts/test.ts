// `npm test`: type-check, bring up a real PostgreSQL and Redis for the fleet tests (loopback,
// free ports, a temp dir), run the suite against them, and tear both down — on success, failure
// and Ctrl-C alike. Missing Debian packages are installed (as root) or named (otherwise): fleet
// tests never skip silently.
//   npm test                          whole suite (tsc beside test/**/*.test.ts, slowest first: run-tests.ts)
//   npm test -- test/fleet-*.test.ts  only these files, same services, no tsc
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, chownSync, existsSync, globSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { setPriority, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';

const ROOT = resolve(import.meta.dirname, '..');
const NODE = process.execPath;
const PACKAGES = { postgresql: () => pgBinDir() !== null, 'redis-server': () => onPath('redis-server'), chromium: () => onPath('chromium') };

function fail(message: string): never {
  process.stderr.write(`npm test: ${message}\n`);
  process.exit(1);
}

function onPath(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;
}

/** Debian keeps the server binaries per major version: /usr/lib/postgresql/<ver>/bin. Newest wins. */
export function pgBinDir(): string | null {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0], 'bin') : null;
}

function ensurePackages(): void {
  const missing = Object.entries(PACKAGES).filter(([, present]) => !present()).map(([name]) => name);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    fail(`the fleet tests need the Debian packages ${missing.join(', ')}, which are not installed, and installing them needs root.\n` +
      `  Install them once:  sudo apt-get install -y --no-install-recommends ${missing.join(' ')}\n  then run npm test again.`);
  }
  process.stderr.write(`npm test: installing ${missing.join(', ')} (apt-get)\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...missing]]) {
    const r = spawnSync('apt-get', args, { stdio: 'inherit', env });
    if (r.status !== 0) fail(`apt-get ${args.join(' ')} failed (exit ${r.status}); install ${missing.join(', ')} by hand and retry`);
  }
  const still = Object.entries(PACKAGES).filter(([, present]) => !present()).map(([name]) => name);
  if (still.length) fail(`${still.join(', ')} still missing after apt-get install`);
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolvePort(port));
    });
  });
}

/** PostgreSQL refuses to run as root: as root, its processes run as the `postgres` OS user. */
function pgUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) fail('running as root but there is no "postgres" OS user to run PostgreSQL as (the postgresql package creates it)');
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

function runAs(user: { uid: number; gid: number } | null, bin: string, args: string[], what: string): string {
  const opts: SpawnOptions = user ? { uid: user.uid, gid: user.gid } : {};
  const r = spawnSync(bin, args, { ...opts, encoding: 'utf8', cwd: '/' });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

export interface Services {
  env: Record<string, string>;
  stop(): void;
  /** Server processes (redis-server, the postmaster; PostgreSQL backends are its children), for CPU accounting; the run's watchdog. */
  pids: { redis: number; postmasterFile: string; watchdog: number };
}

/**
 * The run's watchdog (sh), so the servers do not outlive a run killed with SIGKILL (which no handler
 * of the run sees): it blocks reading a pipe whose other end only the run holds, which the kernel
 * closes when the run ends however it ends (no polling, no CPU meanwhile). At that end of file it
 * stops PostgreSQL (SIGQUIT: an immediate shutdown) and Redis (SIGTERM), SIGKILLs what is left
 * after 5 s (a zombie counts as gone: nothing may reap an orphan here), removes the dirs and exits.
 * It reads the servers' pids from their pid files then, so it also covers a start cut short. Its
 * own session, so a signal to the run's process group leaves it to clean up; stop() kills it with
 * the services. Arguments: the services dir, then other dirs to remove.
 */
const WATCHDOG = `
alive() { kill -0 "$1" 2>/dev/null || return 1; s=; { read -r s < "/proc/$1/stat"; } 2>/dev/null; s=\${s##*) }; [ "\${s%% *}" != Z ]; }
while read -r _; do :; done
dir=$1
pg=$(head -n 1 "$dir/pg/postmaster.pid" 2>/dev/null); rd=$(cat "$dir/redis/redis.pid" 2>/dev/null)
[ -n "$pg" ] && kill -QUIT "$pg" 2>/dev/null; [ -n "$rd" ] && kill -TERM "$rd" 2>/dev/null
i=0
while [ $i -lt 50 ] && { { [ -n "$pg" ] && alive "$pg"; } || { [ -n "$rd" ] && alive "$rd"; }; }; do sleep 0.1; i=$((i + 1)); done
for p in $pg $rd; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
rm -rf "$@"
`;

/**
 * A throwaway cluster: initdb without fsync, loopback only, password auth on TCP, a role `aam`
 * that owns database `aam` and may create databases (one per test file), no superuser.
 */
async function startPostgres(dir: string, user: { uid: number; gid: number } | null, stops: Array<() => void>): Promise<string> {
  const bin = pgBinDir()!;
  const data = join(dir, 'pg');
  const sock = join(dir, 'pgsock');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sock, { mode: 0o700 });
  if (user) { chownSync(data, user.uid, user.gid); chownSync(sock, user.uid, user.gid); }
  runAs(user, join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '-N', '-E', 'UTF8', '--locale=C'], 'initdb');
  const port = await freePort();
  const opts = `-k ${sock} -h 127.0.0.1 -p ${port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB`;
  runAs(user, join(bin, 'pg_ctl'), ['-D', data, '-l', join(data, 'server.log'), '-w', '-t', '30', '-o', opts, 'start'], 'pg_ctl start');
  stops.push(() => { spawnSync(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { ...(user ?? {}), stdio: 'ignore', cwd: '/' }); });
  const password = randomBytes(12).toString('hex');
  runAs(user, join(bin, 'psql'), ['-h', sock, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-q', '-c',
    `CREATE ROLE aam LOGIN CREATEDB PASSWORD '${password}'`, '-c', 'CREATE DATABASE aam OWNER aam'], 'creating the aam role and database');
  return `postgres://aam:${password}@127.0.0.1:${port}/aam`;
}

/** redis-server on loopback with a password and no persistence; resolves once it accepts commands. */
async function startRedis(dir: string, stops: Array<() => void>, started: (pid: number) => void = () => {}): Promise<string> {
  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  const rdir = join(dir, 'redis');
  mkdirSync(rdir);
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--requirepass', password, '--save', '', '--appendonly', 'no', '--dir', rdir, '--pidfile', join(rdir, 'redis.pid'), '--loglevel', 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] });
  stops.push(() => { if (proc.exitCode === null) proc.kill('SIGKILL'); });
  started(proc.pid ?? 0);
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => { out += c; });
  proc.stderr!.on('data', (c: Buffer) => { out += c; });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), '--no-auth-warning', '-a', password, 'PING'], { encoding: 'utf8' });
    if (r.stdout.trim() === 'PONG') break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start:\n${out}`);
    await new Promise((r2) => setTimeout(r2, 20));
  }
  return `redis://:${password}@127.0.0.1:${port}`;
}

/**
 * Also used by `npm run bench` (its fleet run), which starts the same services the same way.
 * `alsoRemove`: more dirs of the run that the watchdog removes if this process dies unstopped.
 */
export async function startServices(alsoRemove: readonly string[] = []): Promise<Services> {
  ensurePackages();
  const user = pgUser();
  const dir = mkdtempSync(join(tmpdir(), 'aam-test-services-'));
  // The postgres user must reach its data dir inside ours.
  chmodSync(dir, 0o711);
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'aam-test-watchdog', dir, ...alsoRemove], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  watchdog.unref();
  // Held open (never written) for as long as this process lives, without keeping it alive.
  (watchdog.stdin as Socket).on('error', () => {}).unref();
  const stops: Array<() => void> = [() => { try { process.kill(-watchdog.pid!, 'SIGKILL'); } catch { /* gone already */ } }];
  const stop = () => {
    for (const s of stops.splice(0).reverse()) { try { s(); } catch { /* keep tearing down */ } }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const t0 = performance.now();
    let redisPid = 0;
    const [pg, redis] = await Promise.all([startPostgres(dir, user, stops), startRedis(dir, stops, (pid) => { redisPid = pid; })]);
    process.stderr.write(`npm test: PostgreSQL and Redis up in ${Math.round(performance.now() - t0)} ms\n`);
    return {
      env: { AAM_TEST_DATABASE_URL: pg, AAM_TEST_REDIS_URL: redis },
      stop, pids: { redis: redisPid, postmasterFile: join(dir, 'pg', 'postmaster.pid'), watchdog: watchdog.pid ?? 0 },
    };
  } catch (e) { stop(); throw e; }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolveCode) => {
    const child = spawn(cmd, args, { stdio: 'inherit', env, cwd: ROOT });
    current = child;
    child.once('exit', (code, signal) => { current = null; resolveCode(code ?? (signal ? 1 : 0)); });
  });
}

let current: ChildProcess | null = null;

export interface RunScratch {
  /** The scratch dir itself. */
  root: string;
  /** The TMPDIR every test process (and every child it spawns) gets. */
  tmp: string;
  /** NODE_COMPILE_CACHE for the run. */
  compileCache: string;
  /** Removes the whole scratch dir; returns what the tests left in tmp (names, sorted). */
  finish(): string[];
}

/**
 * One scratch dir per run, removed when the run ends, so a run leaves no files behind even when a
 * test's own cleanup loses a race: a process's exit handler removes its temp dirs while work it
 * started (an audit writer, an `aam` child) may still be creating files in them. It also holds the
 * run's compile cache (V8 code and stripped TypeScript): only the first process to load a source
 * file compiles it; every other test file and every `aam` child loads it ready (a replica's start
 * at load ~20: 1.4 s of CPU cold against 0.7 s warm; fleet-keys starts three at once).
 */
export function runScratch(base = tmpdir()): RunScratch {
  const root = mkdtempSync(join(base, 'aam-run-'));
  // Traversable (not listable) by others: a test that starts its own PostgreSQL (startServices, e.g.
  // bench-fleet-databases) puts its data dir under TMPDIR, and the postgres user must reach it.
  chmodSync(root, 0o711);
  const tmp = join(root, 'tmp');
  const compileCache = join(root, 'compile-cache');
  mkdirSync(tmp);
  mkdirSync(compileCache);
  return {
    root, tmp, compileCache,
    finish: () => {
      let left: string[] = [];
      try { left = readdirSync(tmp).sort(); } catch { /* removed already */ }
      // Retried: a run stopped early (a type error) may still have a test's own services' watchdog
      // removing its dirs in here, and a dir emptied meanwhile fails the removal (ENOTEMPTY).
      rmSync(root, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
      return left;
    },
  };
}

/**
 * The test runner's arguments (scripts/run-tests.ts: the files in this order, two at a time).
 * Force exit ends a file whose tests are done though a handle is left open; blocking-stdio.ts makes
 * sure that exit drops none of the results (test-runner-reports).
 */
export function runnerArgs(files: readonly string[]): string[] {
  return ['--require', join(ROOT, 'scripts', 'blocking-stdio.ts'), join(ROOT, 'scripts', 'run-tests.ts'), ...(files.length ? files : suiteFiles())];
}

/** Wall times of the suite's files on a recorded run (`AAM_TEST_DURATIONS=scripts/test-durations.txt npm test`). */
const DURATIONS = join(ROOT, 'scripts', 'test-durations.txt');

/** `<seconds>\t<file>` lines: seconds by file. */
export function parseDurations(text: string): Map<string, number> {
  const took = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [s, file] = line.split('\t');
    if (file && Number.isFinite(Number(s))) took.set(file.trim(), Number(s));
  }
  return took;
}

/**
 * The slowest first, so the two at a time end together rather than one core running the last
 * long file alone; a file with no recorded time (new) first of all, as it may be long.
 */
export function slowestFirst(files: readonly string[], took: ReadonlyMap<string, number>): string[] {
  const t = (f: string) => took.get(f) ?? Infinity;
  return [...files].sort((a, b) => t(b) - t(a) || (a < b ? -1 : a > b ? 1 : 0));
}

/** Every test file of the suite (test/**\/*.test.ts, relative to the repo), slowest first. */
export function suiteFiles(): string[] {
  const files = globSync('test/**/*.test.ts', { cwd: ROOT });
  let text = '';
  try { text = readFileSync(DURATIONS, 'utf8'); } catch { /* none recorded: by name */ }
  return slowestFirst(files, parseDurations(text));
}

/** Exit code and output of a type-check started by typecheck(). */
export interface Typecheck { done: Promise<{ code: number; output: string }>; stop(): void }

const TSC = [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', '.'];

/**
 * `tsc --noEmit` beside the rest of the run rather than before it: it was 30-50 s of one core
 * ahead of everything (the Debian install, the services, the suite), while the suite, which mostly
 * waits on timers, sockets and child processes, leaves part of the two cores idle. Niced, so it
 * takes what the tests leave and their timing is not what pays for it; its output (only errors)
 * is held and printed once it ends.
 */
export function typecheck(args: readonly string[] = TSC): Typecheck {
  const child = spawn(NODE, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  try { setPriority(child.pid!, 10); } catch { /* not permitted: runs at normal priority */ }
  let output = '';
  child.stdout!.on('data', (c: Buffer) => { output += c; });
  child.stderr!.on('data', (c: Buffer) => { output += c; });
  const done = new Promise<{ code: number; output: string }>((resolveDone) => {
    child.once('close', (code, signal) => resolveDone({ code: code ?? (signal ? 1 : 0), output }));
  });
  return { done, stop: () => { if (child.exitCode === null) child.kill('SIGKILL'); } };
}

/**
 * The run's exit code: the type-check's when it failed, else the suite's. A type error stops the
 * suite at once (`stopSuite`), as it stopped the run before the suite began when tsc ran first.
 */
export async function withTypecheck(tsc: Typecheck, suite: Promise<number>, stopSuite: () => void, say: (line: string) => void = (line) => { process.stderr.write(line); }): Promise<number> {
  const t0 = performance.now();
  const checked = tsc.done.then((r) => {
    if (r.code === 0) say(`npm test: tsc --noEmit passed (${Math.round((performance.now() - t0) / 1000)} s, beside the suite)\n`);
    else { say(`${r.output}npm test: tsc --noEmit failed (exit ${r.code}); the suite is stopped\n`); stopSuite(); }
    return r.code;
  });
  const code = await suite;
  const tscCode = await checked;
  return tscCode !== 0 ? tscCode : code;
}

async function main(): Promise<number> {
  const files = process.argv.slice(2);
  if (files.length) return runSuite(files, () => false);
  const tsc = typecheck();
  process.once('exit', () => tsc.stop());
  let typeErrors = false;
  return withTypecheck(tsc, runSuite(files, () => typeErrors), () => { typeErrors = true; current?.kill('SIGTERM'); });
}

/** Packages, services, scratch dir and the test runner over `files` (all of test/ when none), unless `cancelled()` by then. */
async function runSuite(files: readonly string[], cancelled: () => boolean): Promise<number> {
  const scratch = runScratch();
  let services: Services;
  try { services = await startServices([scratch.root]); } catch (e) { scratch.finish(); throw e; }
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    services.stop();
    const left = scratch.finish();
    if (left.length) process.stderr.write(`npm test: the tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the run's TMPDIR (removed with it): ${left.slice(0, 10).join(', ')}${left.length > 10 ? ', ...' : ''}\n`);
  };
  // Ctrl-C / SIGTERM: let the test runner stop, then remove the services; exit covers the rest.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => { current?.kill(sig); setTimeout(() => { stop(); process.exit(130); }, 2_000).unref(); });
  }
  process.once('exit', stop);
  try {
    if (cancelled()) return 1;
    return await run(NODE, runnerArgs(files), { NODE_COMPILE_CACHE: scratch.compileCache, ...process.env, ...services.env, TMPDIR: scratch.tmp });
  } finally { stop(); }
}

if (import.meta.main) main().then((code) => process.exit(code), (e: unknown) => fail((e as Error).stack ?? String(e)));
