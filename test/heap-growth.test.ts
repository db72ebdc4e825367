// `aam serve` bounds how far V8 lets the old generation grow past its live size
// (AAM_HEAP_GROWING_PERCENT, default 30; src/observability/memory.ts): under sustained mixed load
// V8's own factor let the heap grow to ~70 MB around ~25 MB of live objects (bench/RESULTS.md, "Memory").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boundHeapGrowth, HEAP_GROWING_PERCENT } from '../src/observability/memory.ts';
import { ROOT } from './helpers/e2e.ts';
import { serveRefusal } from './helpers/serve-child.ts';

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
    // A gateway that ignored the variable would listen: serveRefusal says so (and stops it).
    const outcome = await serveRefusal({ config: join(ROOT, 'aam.yaml'), data: join(dir, 'data'), env: { AAM_HEAP_GROWING_PERCENT: 'lots' } });
    assert.match(outcome, /^aam serve exited \(1\) before listening:\n[\s\S]*AAM_HEAP_GROWING_PERCENT must be a whole number from 0 to 300/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
