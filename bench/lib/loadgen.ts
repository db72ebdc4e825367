// Load generation: wrk when available (installed with apt-get when missing and running as root),
// otherwise the Node fallback (node-loadgen.ts, an undici Pool in a pinned child process).
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { hasCommand, pinnedArgv } from './procs.ts';
import type { PinOptions } from './procs.ts';
import type { LoadResult, LoadSpec } from './node-loadgen.ts';

export type { LoadResult, LoadSpec } from './node-loadgen.ts';

const POST_LUA = fileURLToPath(new URL('./post.lua', import.meta.url));
const NODE_LOADGEN = fileURLToPath(new URL('./node-loadgen.ts', import.meta.url));

/** Returns 'wrk' or 'node' (the fallback), installing wrk if allowed. */
export function chooseLoadgen(want: string | undefined, say: (s: string) => void): 'wrk' | 'node' {
  if (want === 'node') return 'node';
  if (hasCommand('wrk')) return 'wrk';
  if (process.getuid?.() === 0 && hasCommand('apt-get')) {
    say('wrk not found: installing it with apt-get (BENCH_LOADGEN=node skips this)');
    const opts = { stdio: 'inherit' as const, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
    if (spawnSync('apt-get', ['install', '-y', 'wrk'], opts).status !== 0) {
      spawnSync('apt-get', ['update'], opts);
      spawnSync('apt-get', ['install', '-y', 'wrk'], opts);
    }
    if (hasCommand('wrk')) return 'wrk';
  }
  say('wrk unavailable: using the Node load generator (undici Pool), which has more client overhead than wrk');
  return 'node';
}

function collect(argv: string[], env: Record<string, string>): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve({ out, err }) : reject(new Error(`${cmd} exited ${code ?? signal}: ${err.slice(0, 500)}`))));
  });
}

interface WrkJson {
  requests: number; duration_us: number; err_connect: number; err_read: number; err_write: number;
  err_status: number; err_timeout: number; lat_mean_us: number; lat_max_us: number;
  p50_us: number; p90_us: number; p99_us: number;
}

async function runWrk(pin: PinOptions, spec: LoadSpec): Promise<LoadResult> {
  const headerArgs = Object.entries(spec.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const argv = pinnedArgv(pin, ['wrk', '-t1', `-c${spec.conc}`, `-d${spec.durationS}s`, '--timeout', '10s',
    '-s', POST_LUA, ...headerArgs, spec.origin + spec.path]);
  const { out, err } = await collect(argv, { BODY_FILE: spec.bodyFile });
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (!line) throw new Error(`wrk printed no summary: ${out.slice(-600)} stderr: ${err.slice(-400)}`);
  const w = JSON.parse(line.slice(8)) as WrkJson;
  const durationS = w.duration_us / 1e6;
  return {
    tool: 'wrk', requests: w.requests, durationS, rps: w.requests / durationS,
    p50_ms: w.p50_us / 1000, p90_ms: w.p90_us / 1000, p99_ms: w.p99_us / 1000,
    mean_ms: w.lat_mean_us / 1000, max_ms: w.lat_max_us / 1000,
    errors: w.err_connect + w.err_read + w.err_write + w.err_timeout, non2xx: w.err_status,
  };
}

async function runNode(pin: PinOptions, spec: LoadSpec): Promise<LoadResult> {
  const { out } = await collect(pinnedArgv(pin, [process.execPath, NODE_LOADGEN]), { LOADGEN_SPEC: JSON.stringify(spec) });
  return JSON.parse(out.trim().split('\n').pop() ?? '') as LoadResult;
}

export function runLoad(tool: 'wrk' | 'node', pin: PinOptions, spec: LoadSpec): Promise<LoadResult> {
  return tool === 'wrk' ? runWrk(pin, spec) : runNode(pin, spec);
}
