// Child processes for the benchmark: start pinned to a CPU, wait for readiness, stop, and read
// their memory and CPU use from /proc (Linux only, like taskset).
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PinOptions {
  /** CPU to pin to with taskset, or null for no pinning */
  cpu: number | null;
  /** nice value (negative needs root); 0 leaves priority alone */
  nice: number;
}

export const hasCommand = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;

/**
 * With the kernel's autogroup scheduling (the default on desktop/VM kernels) a process's nice value
 * only ranks it against its own session; other sessions get an equal share regardless. Setting the
 * session's autogroup nice gives the benchmark's processes priority over other sessions' work.
 * Returns the previous value (to restore), or null when autogroups are off or not writable.
 */
export function setAutogroupNice(nice: number): number | null {
  try {
    const prev = /nice (-?\d+)/.exec(readFileSync('/proc/self/autogroup', 'utf8'));
    writeFileSync('/proc/self/autogroup', String(nice));
    return prev ? Number(prev[1]) : 0;
  } catch {
    return null;
  }
}

/** Command line that runs argv pinned (taskset execs, so the child pid is the real process). */
export function pinnedArgv(pin: PinOptions, argv: string[]): string[] {
  let out = argv;
  if (pin.nice !== 0) out = ['nice', '-n', String(pin.nice), ...out];
  if (pin.cpu !== null) out = ['taskset', '-c', String(pin.cpu), ...out];
  return out;
}

export function startProcess(pin: PinOptions, argv: string[], env: Record<string, string>, logFile: string, cwd?: string): ChildProcess {
  const [cmd, ...args] = pinnedArgv(pin, argv);
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(logFile, { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return child;
}

/** Poll url until it answers with `status` or timeoutMs passes. */
export async function waitHttp(url: string, timeoutMs: number, status = 200, child?: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) return false;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === status) return true;
    } catch { /* not up yet */ }
    await sleep(100);
  }
  return false;
}

export async function answers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the process is gone. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

export function rssKb(pid: number): number | null {
  return rollupKb(pid, 'Rss') ?? statusKb(pid, 'VmRSS');
}

/**
 * A field of /proc/<pid>/smaps_rollup (Rss, Anonymous...), which counts pages exactly. The
 * counters of /proc/<pid>/status are per-CPU approximations: for one idle gateway after its
 * audit writer thread exited they read 94.7 MB where smaps_rollup counted 88.4 MB.
 */
export function rollupKb(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function statusKb(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** utime+stime of a process in clock ticks. */
/** stime of a live process (all threads), clock ticks: the kernel's part of cpuTicks. */
export function sysTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[12]);
  } catch {
    return null;
  }
}

export function cpuTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return null;
  }
}

/** utime+stime per thread name of a live process (/proc/<pid>/task/<tid>: comm, stat), summed over threads of one name. */
export function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // The main thread's comm is the program's (node); name it for what it does.
      const name = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
    } catch { /* the thread exited meanwhile */ }
  }
  return out;
}

/**
 * Context switches per thread name (voluntary: the thread slept, e.g. a wake-up it waited for;
 * involuntary: it was preempted), from /proc/PID/task/TID/status: counts a loaded machine does
 * not blur, unlike wall-clock latency; and the time it was runnable but waited for a CPU.
 */
export function threadSwitches(pid: number): Map<string, { vol: number; invol: number; waitNs: number }> {
  const out = new Map<string, { vol: number; invol: number; waitNs: number }>();
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const field = (k: string): number => Number(new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(status)?.[1] ?? 0);
      const name = tid === String(pid) ? 'main' : (/^Name:\s*(.*)$/m.exec(status)?.[1] ?? tid);
      const o = out.get(name) ?? { vol: 0, invol: 0, waitNs: 0 };
      o.vol += field('voluntary_ctxt_switches');
      o.invol += field('nonvoluntary_ctxt_switches');
      // schedstat: ns on CPU, ns runnable but waiting for a CPU (the run queue), timeslices.
      o.waitNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
      out.set(name, o);
    } catch { /* the thread exited meanwhile */ }
  }
  return out;
}

/** Busy ticks (user+nice+system+irq+softirq) per CPU, from /proc/stat. */
export function coreBusyTicks(): number[] {
  const out: number[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const f = m[2].trim().split(/\s+/).map(Number);
    out[Number(m[1])] = f[0] + f[1] + f[2] + f[5] + f[6];
  }
  return out;
}

/**
 * CPU ticks of this process plus its already-reaped children (cutime+cstime): over a scenario
 * the delta is the orchestrator's own work plus the load generator that finished in it.
 */
export function selfAndChildrenTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export interface RssSample { tMs: number; kb: number }

/** Samples a process's RSS every intervalMs until stop() is called. */
export function sampleRss(pid: number, intervalMs: number): { stop: () => RssSample[] } {
  const t0 = Date.now();
  const samples: RssSample[] = [];
  const take = (): void => { const kb = rssKb(pid); if (kb !== null) samples.push({ tMs: Date.now() - t0, kb }); };
  take();
  const timer = setInterval(take, intervalMs);
  return { stop: () => { clearInterval(timer); take(); return samples; } };
}

/**
 * Waits (up to maxWaitS) until processes other than ours use less than maxPct % of one core,
 * so that a run on a shared machine is not disturbed by foreign work. Returns the last reading.
 */
export async function waitQuiet(maxWaitS: number, maxPct: number, ownPids: number[], say: (s: string) => void): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const a = coreBusyTicks().reduce((x, y) => x + y, 0);
    const own0 = ownPids.reduce((s, p) => s + (cpuTicks(p) ?? 0), 0);
    await sleep(2000);
    const b = coreBusyTicks().reduce((x, y) => x + y, 0);
    const own1 = ownPids.reduce((s, p) => s + (cpuTicks(p) ?? 0), 0);
    const pct = ((b - a - (own1 - own0)) / CLK_TCK / 2) * 100;
    if (pct < maxPct) return pct;
    if ((Date.now() - t0) / 1000 >= maxWaitS) { say(`  machine still busy (${pct.toFixed(0)}% of a core used by other processes) - measuring anyway`); return pct; }
    say(`  machine busy (${pct.toFixed(0)}% of a core used by other processes), waiting...`);
    await sleep(3000);
  }
}
