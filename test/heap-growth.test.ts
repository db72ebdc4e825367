// `aam serve` bounds how far V8 lets the old generation grow past its live size
// (AAM_HEAP_GROWING_PERCENT, default 30; src/observability/memory.ts): under sustained mixed load
// V8's own factor let the heap grow to ~70 MB around ~25 MB of live objects (bench/RESULTS.md, "Memory").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boundHeapGrowth, HEAP_GROWING_PERCENT } from '../src/observability/memory.ts';
import { CLI, NODE_BIN, ROOT, warmChild } from './helpers/e2e.ts';

test('the heap growth bound: 30 % unless told, 0 leaves V8\'s own growth, anything else is refused naming the variable', () => {
  assert.equal(HEAP_GROWING_PERCENT, 30);
  // The flag is process-wide: set it here only to the value V8 starts with (0: its own factor).
  assert.equal(boundHeapGrowth('0'), 0);
  for (const bad of ['lots', '-1', '12.5', '301', ' 30x']) {
    assert.throws(() => boundHeapGrowth(bad), /AAM_HEAP_GROWING_PERCENT must be a whole number from 0 to 300 .*not " ?\S*"/, bad);
  }
});

test('aam serve refuses a bad AAM_HEAP_GROWING_PERCENT before it listens', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-heap-growth-'));
  try {
    warmChild();
    const p = spawn(NODE_BIN, [CLI, 'serve', '--config', join(ROOT, 'aam.yaml'), '--data', join(dir, 'data'), '--port', '0'], {
      cwd: ROOT, env: { ...process.env, AAM_HEAP_GROWING_PERCENT: 'lots', AAM_LOG_LEVEL: 'error' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    p.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    // A gateway that ignored the variable would serve on: stop it after a while and fail.
    const timer = setTimeout(() => p.kill(), 60_000);
    const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
    clearTimeout(timer);
    assert.notEqual(code, 0, out);
    assert.match(out, /AAM_HEAP_GROWING_PERCENT must be a whole number from 0 to 300/);
    assert.doesNotMatch(out, /listening/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
