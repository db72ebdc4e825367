// npm test shares one compile cache (NODE_COMPILE_CACHE: V8 code and stripped TypeScript) between
// every test process and the `aam` children they spawn, and a child starts from what its parent
// compiled (warmChild): a replica's start at load ~20 cost 2.3 s of CPU cold and 1.2 s warm, and
// fleet-keys starts three at once against a 60 s limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { getCompileCacheDir } from 'node:module';
import { pathToFileURL } from 'node:url';
import { basename, dirname, join } from 'node:path';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { runScratch } from '../scripts/test.ts';
import { NODE_BIN, ROOT, warmChild } from './helpers/e2e.ts';
import '../src/cli/serve.ts';

test('npm test gives every test process a compile cache', () => {
  assert.ok(process.env.NODE_COMPILE_CACHE, 'NODE_COMPILE_CACHE is not set: run the suite through npm test (scripts/test.ts)');
  assert.ok(getCompileCacheDir()?.startsWith(process.env.NODE_COMPILE_CACHE));
});

test('an aam child loads the sources its parent compiled from the cache, not compiling them again', () => {
  warmChild();
  const serve = pathToFileURL(join(ROOT, 'src/cli/serve.ts')).href;
  const r = spawnSync(NODE_BIN, ['--input-type=module', '-e', `await import(${JSON.stringify(serve)})`], {
    cwd: ROOT, env: { ...process.env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' }, encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.ok(r.stderr.includes(`retrieving transpile cache for StrippedTypeScript ${serve}...success`), r.stderr.split('\n').filter((l) => l.includes(serve)).join('\n'));
});

test('npm test gives every test process its run\'s own TMPDIR, beside the compile cache', () => {
  const tmp = tmpdir();
  assert.equal(basename(tmp), 'tmp', `TMPDIR is ${tmp}: run the suite through npm test (scripts/test.ts)`);
  assert.match(basename(dirname(tmp)), /^aam-run-/);
  assert.equal(process.env.NODE_COMPILE_CACHE, join(dirname(tmp), 'compile-cache'));
});

test('the run\'s scratch dir goes when the run ends, with whatever the tests left in it, and the leftovers are named', () => {
  const base = mkdtempSync(join(tmpdir(), 'scratch-base-'));
  try {
    const s = runScratch(base);
    assert.ok(s.tmp.startsWith(base) && s.compileCache.startsWith(base));
    mkdirSync(join(s.tmp, 'aam-test-late', 'data', 'keys'), { recursive: true });
    writeFileSync(join(s.tmp, 'aam-test-late', 'data', 'audit.db'), 'x');
    writeFileSync(join(s.tmp, 'a-file'), 'x');
    writeFileSync(join(s.compileCache, 'code'), 'x');
    assert.deepEqual(s.finish(), ['a-file', 'aam-test-late']);
    assert.ok(!existsSync(s.tmp) && !existsSync(s.compileCache) && !existsSync(dirname(s.tmp)));
    assert.deepEqual(s.finish(), [], 'a second finish finds nothing and does not throw');
  } finally { rmSync(base, { recursive: true, force: true }); }
});
