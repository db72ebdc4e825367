// `npm test`'s PostgreSQL and Redis (scripts/test.ts startServices) do not outlive the run: a run
// killed with SIGKILL (no handler of its own runs) leaves its watchdog, which stops both servers
// and removes the run's dirs within seconds; a run that stops them itself leaves no watchdog.
// The stores are started by the same code, in a child process that the test then kills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const SCRIPT = pathToFileURL(resolve(import.meta.dirname, '..', 'scripts', 'test.ts')).href;
// Under npm test TMPDIR is the run's private <tmp>/aam-run-X/tmp; the services go in <tmp>, as npm test's own do.
const SERVICES_TMP = /\/aam-run-[^/]+\/tmp\/?$/.test(tmpdir()) ? dirname(dirname(tmpdir())) : tmpdir();

/** A live process: kill -0 answers and it is not a zombie (nothing here may reap an orphan). */
function alive(pid: number): boolean {
  try { process.kill(pid, 0); } catch { return false; }
  try { return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z'; } catch { return true; }
}

interface Started { child: ChildProcess; postmaster: number; redis: number; watchdog: number; dir: string; extra: string }

/** A child that starts the services with startServices() (plus one more dir for its watchdog), then `then`s. */
async function startChild(then: 'wait' | 'stop', children: ChildProcess[]): Promise<Started> {
  const extra = mkdtempSync(join(tmpdir(), 'aam-watchdog-extra-'));
  const code = `const { startServices } = await import(${JSON.stringify(SCRIPT)});
const { readFileSync } = await import('node:fs');
const s = await startServices([${JSON.stringify(extra)}]);
// The postmaster's pid is read here, before a 'stop' child removes its file.
const postmaster = Number(readFileSync(s.pids.postmasterFile, 'utf8').split('\\n')[0]);
process.stdout.write(JSON.stringify({ ...s.pids, postmaster }) + '\\n');
${then === 'stop' ? 's.stop();' : 'setInterval(() => {}, 1 << 30);'}`;
  // PostgreSQL (its own OS user, when run as root) cannot reach into the run's private scratch dir.
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TMPDIR: SERVICES_TMP } });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => { err += c; });
  const line = await new Promise<string>((res, rej) => {
    child.stdout!.on('data', (c: Buffer) => { out += c; if (out.includes('\n')) res(out.split('\n')[0]); });
    // 'close', not 'exit': the line may still be in the pipe when the process has exited.
    child.once('close', (c) => rej(new Error(`the child exited (${c}) before the services were up:\n${err}`)));
  });
  const pids = JSON.parse(line) as { redis: number; postmasterFile: string; postmaster: number; watchdog: number };
  return { child, postmaster: pids.postmaster, redis: pids.redis, watchdog: pids.watchdog, dir: dirname(dirname(pids.postmasterFile)), extra };
}

async function gone(pids: number[], dirs: string[], ms: number): Promise<number> {
  const t0 = performance.now();
  while (pids.some(alive) || dirs.some((d) => existsSync(d))) {
    if (performance.now() - t0 > ms) {
      assert.fail(`still there after ${ms} ms: ${pids.filter(alive).map((p) => `pid ${p}`).concat(dirs.filter((d) => existsSync(d))).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return Math.round(performance.now() - t0);
}

test('a run killed with SIGKILL: its watchdog stops PostgreSQL and Redis and removes the run\'s dirs within 5 s; a run that stops them itself leaves no watchdog', async (t) => {
  const children: ChildProcess[] = [];
  const started = await Promise.allSettled([startChild('wait', children), startChild('stop', children)]);
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) { for (const c of children) c.kill('SIGKILL'); throw failed.reason; }
  const [killed, stopping] = started.map((r) => (r as PromiseFulfilledResult<Started>).value);
  try {
    for (const p of [killed.postmaster, killed.redis, killed.watchdog]) assert.ok(alive(p), `pid ${p} runs while its run does`);
    const exited = new Promise((r) => killed.child.once('exit', r));
    killed.child.kill('SIGKILL');
    await exited;
    const ms = await gone([killed.postmaster, killed.redis, killed.watchdog], [killed.dir, killed.extra], 5000);
    t.diagnostic(`PostgreSQL, Redis, the watchdog and the dirs gone ${ms} ms after the SIGKILL`);
    // The other child stopped its services and exited normally: nothing of it is left either.
    await new Promise((r) => (stopping.child.exitCode === null ? stopping.child.once('exit', r) : r(null)));
    await gone([stopping.postmaster, stopping.redis, stopping.watchdog], [stopping.dir], 1000);
  } finally {
    for (const s of [killed, stopping]) {
      s.child.kill('SIGKILL');
      for (const p of [s.postmaster, s.redis, s.watchdog]) { try { if (alive(p)) process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
      for (const d of [s.dir, s.extra]) rmSync(d, { recursive: true, force: true });
    }
  }
});
