// npm start's glibc malloc settings reach the gateway's allocator: a malloc block of 32 KB or more
// is a mapping of its own (MALLOC_MMAP_THRESHOLD_=32768), so the 32 KB segments of V8's compile
// jobs go back to the kernel when a job ends instead of staying in the arena for good
// (loaded peak RSS -10 to -12 MB: bench/RESULTS.md, "Memory", session 16).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE_BIN, ROOT } from './helpers/e2e.ts';

/** The NAME=value words in front of package.json's start script. */
function startEnv(): Record<string, string> {
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  const env: Record<string, string> = {};
  for (const w of start.trim().split(/\s+/)) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(w);
    if (!m) break;
    env[m[1]] = m[2];
  }
  return env;
}

// 256 live 40 KB backing stores (malloc'd by Node's ArrayBuffer allocator): how far the main
// arena's brk heap grew for them.
const PROBE = `const heap = () => { const l = require('node:fs').readFileSync('/proc/self/maps', 'utf8').split('\\n').find((x) => x.endsWith('[heap]'));
  if (!l) return 0; const [a, b] = l.split(' ')[0].split('-').map((x) => parseInt(x, 16)); return b - a; };
const before = heap(); const keep = []; for (let i = 0; i < 256; i++) keep.push(Buffer.allocUnsafeSlow(40 * 1024).fill(1));
process.stdout.write(JSON.stringify({ grew: heap() - before, n: keep.length }));`;

const glibc = process.platform === 'linux' && Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime);

test('npm start maps malloc blocks of 32 KB and more on their own: 10 MB of 40 KB buffers do not grow the arena', { skip: !glibc && 'glibc only' }, () => {
  const env = startEnv();
  assert.equal(env.MALLOC_MMAP_THRESHOLD_, '32768');
  const run = (extra: Record<string, string>): number => {
    const out = execFileSync(NODE_BIN, ['-e', PROBE], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...extra }, timeout: 60_000 });
    return (JSON.parse(out) as { grew: number }).grew;
  };
  const MB = 1024 * 1024;
  const withStart = run(env);
  assert.ok(withStart < 2 * MB, `with npm start's environment the brk heap grew ${(withStart / MB).toFixed(1)} MB for 10 MB of 40 KB buffers`);
  // The probe does see the arena: with the old threshold the same buffers are carved from it.
  const before = run({ ...env, MALLOC_MMAP_THRESHOLD_: '131072' });
  assert.ok(before >= 8 * MB, `with a 128 KB threshold the brk heap grew ${(before / MB).toFixed(1)} MB`);
});

/** Starts `node [flags] bin/aam.js serve` (demo config, port 0) and reads its environment and command line once it listens. */
async function serveProcess(flags: string[], extraEnv: Record<string, string>): Promise<{ env: Record<string, string>; argv: string[] }> {
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'aam-malloc-env-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'NODE_OPTIONS')) as Record<string, string>;
  const child = spawn(NODE_BIN, [...flags, join(ROOT, 'bin/aam.js'), 'serve', '--config', join(ROOT, 'aam.yaml'), '--port', '0', '--data', join(dir, 'data')],
    { cwd: ROOT, env: { ...env, AAM_LOG_LEVEL: 'info', ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`no "listening" in 60 s: ${out.slice(-2000)}`)), 60_000);
      const on = (b: Buffer): void => { out += b.toString(); if (out.includes('"event":"listening"')) { clearTimeout(t); resolve(); } };
      child.stdout.on('data', on);
      child.stderr.on('data', on);
      child.once('exit', (code) => { clearTimeout(t); reject(new Error(`exited ${code}: ${out.slice(-2000)}`)); });
    });
    const read = (f: string): string[] => readFileSync(`/proc/${child.pid}/${f}`, 'utf8').split('\0').filter(Boolean);
    const pe = Object.fromEntries(read('environ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    return { env: pe, argv: read('cmdline') };
  } finally {
    child.removeAllListeners('exit');
    child.kill('SIGTERM');
    await new Promise((r) => { if (child.exitCode !== null) r(null); else child.once('exit', r); });
    rmSync(dir, { recursive: true, force: true });
  }
}

test('aam serve started without npm start (the Docker image: node bin/aam.js serve) runs with npm start\'s malloc settings and node flags; the caller\'s own are kept', { skip: process.platform !== 'linux' && '/proc only' }, async () => {
  const start = startEnv();
  let p = await serveProcess([], {});
  for (const [k, v] of Object.entries(start)) assert.equal(p.env[k], v, `${k} in the gateway's environment`);
  assert.ok(p.argv.includes('--max-semi-space-size=8'), `node flags: ${p.argv.join(' ')}`);
  assert.deepEqual(p.argv.slice(-8), [join(ROOT, 'bin/aam.js'), 'serve', '--config', join(ROOT, 'aam.yaml'), '--port', '0', '--data', p.argv.at(-1)!], 'the arguments are kept');

  // The caller's own setting and flag win, and none is added twice.
  p = await serveProcess(['--max-semi-space-size=4'], { MALLOC_ARENA_MAX: '4' });
  assert.equal(p.env.MALLOC_ARENA_MAX, '4');
  assert.equal(p.env.MALLOC_MMAP_THRESHOLD_, start.MALLOC_MMAP_THRESHOLD_);
  assert.deepEqual(p.argv.filter((a) => a.startsWith('--max-semi-space-size')), ['--max-semi-space-size=4']);
});
