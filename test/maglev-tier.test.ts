// `aam serve` turns off V8's Maglev tier with AAM_MAGLEV=0 (src/observability/memory.ts): its
// background compile jobs took 26-35 MB of malloc at once when the request path first got hot, and
// glibc kept the arena at that size for good; it is on by default, since without it a fresh
// gateway's requests cost more CPU (bench/RESULTS.md, "Memory"). Seen from outside with V8's
// --trace-opt, which names each function's target tier as it is compiled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { maglevTier } from '../src/observability/memory.ts';
import { CLI, NODE_BIN, ROOT, warmChild } from './helpers/e2e.ts';

test('AAM_MAGLEV: 1 or unset keeps V8\'s Maglev tier, 0 turns it off, anything else is refused naming the variable', () => {
  // Checked before the flag is set: this process keeps V8's tiers for the checks that pass.
  for (const bad of ['yes', 'on', 'true', '2', ' 1']) {
    assert.throws(() => maglevTier(bad), /AAM_MAGLEV must be 1 \(use V8's Maglev compiler tier, the default\) or 0 .*not " ?\S*"/, bad);
  }
  assert.equal(maglevTier('1'), true);
  assert.equal(maglevTier(undefined), true);
  assert.equal(maglevTier(''), true);
  assert.equal(maglevTier('0'), false); // last: it sets the process-wide flag
});

/** Serves the demo config with --trace-opt, sends `n` requests to /healthz once it listens, returns what V8 printed. */
async function traceOpt(env: Record<string, string>, n: number): Promise<{ stdout: string; stderr: string; served: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'aam-maglev-'));
  warmChild();
  const p = spawn(NODE_BIN, ['--trace-opt', CLI, 'serve', '--config', join(ROOT, 'aam.yaml'), '--data', join(dir, 'data'), '--port', '0', '--host', '127.0.0.1'], {
    cwd: ROOT, env: { ...process.env, AAM_LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
  p.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening" line in 60 s: ${stderr.slice(-800)}`)), 60_000);
      const look = (): void => {
        const m = /"event":"listening","port":(\d+)/.exec(stderr);
        if (m) { clearTimeout(timer); p.stderr.off('data', look); resolve(Number(m[1])); }
      };
      p.stderr.on('data', look);
      p.on('close', (code) => { clearTimeout(timer); reject(new Error(`aam serve exited ${code}: ${stderr.slice(-800)}`)); });
    });
    let served = 0;
    for (let i = 0; i < n; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      await res.arrayBuffer();
      if (res.status === 200) served++;
    }
    // Concurrent compile jobs finish off the main thread: give the last ones a moment to be traced.
    await new Promise((r) => setTimeout(r, 500));
    return { stdout, stderr, served };
  } finally {
    p.kill();
    await new Promise((r) => (p.exitCode === null && p.signalCode === null ? p.once('close', r) : r(undefined)));
    rmSync(dir, { recursive: true, force: true });
  }
}

// Node's HTTP server functions: none runs before the gateway listens, all run for every request.
// (Functions hot while the process starts, such as the module loader's and, from the sources, the
// type stripper's, may be compiled with Maglev before `aam serve` can set the flag.)
const REQUEST_PATH = ['parserOnHeadersComplete', 'parserOnIncoming', 'writeHead', '_storeHeader', 'resOnFinish', 'connectionListenerInternal'];
const maglevCompiled = (trace: string): string[] => [...trace.matchAll(/<JSFunction ([^ >]+)[^\]\n]*for optimization to MAGLEV/g)].map((m) => m[1]).filter((f) => REQUEST_PATH.includes(f));

test('aam serve with AAM_MAGLEV=0 runs without Maglev: its hot request path goes to TurboFan alone; by default Maglev compiles it', { timeout: 180_000 }, async () => {
  const off = await traceOpt({ AAM_MAGLEV: '0' }, 3000);
  assert.equal(off.served, 3000);
  assert.match(off.stdout, /target TURBOFAN/, 'the request path got hot enough to be optimized');
  assert.deepEqual(maglevCompiled(off.stdout), [], 'compiled with Maglev');
  // The same load by default: the tier is on, and the check above would see it.
  const on = await traceOpt({}, 3000);
  assert.equal(on.served, 3000);
  assert.notDeepEqual(maglevCompiled(on.stdout), []);
});

test('aam serve refuses a bad AAM_MAGLEV before it listens', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-maglev-'));
  try {
    warmChild();
    const p = spawn(NODE_BIN, [CLI, 'serve', '--config', join(ROOT, 'aam.yaml'), '--data', join(dir, 'data'), '--port', '0'], {
      cwd: ROOT, env: { ...process.env, AAM_MAGLEV: 'yes', AAM_LOG_LEVEL: 'error' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    const timer = setTimeout(() => p.kill(), 60_000);
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    clearTimeout(timer);
    assert.notEqual(code, 0, out);
    assert.match(out, /AAM_MAGLEV must be 1/);
    assert.doesNotMatch(out, /listening/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
