// `npm test` hands the runner its files the longest first (scripts/test.ts suiteFiles): the order
// changes, the set does not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { globSync } from 'node:fs';
import { ROOT } from './helpers/e2e.ts';
import { runnerArgs, suiteFiles } from '../scripts/test.ts';

test('the whole suite: every test/**/*.test.ts once, the longest first, the rest by name', () => {
  const files = suiteFiles();
  const glob = globSync('test/**/*.test.ts', { cwd: ROOT }).sort();
  assert.deepEqual([...files].sort(), glob, 'the same files as the glob');
  assert.equal(new Set(files).size, files.length, 'none twice');
  assert.deepEqual(files.slice(0, 3), ['test/fleet-audit.test.ts', 'test/tools-mcp-guard.test.ts', 'test/leak-hunt.test.ts']);
  const rest = files.slice(files.indexOf('test/a2a-call-failure.test.ts'));
  assert.deepEqual(rest, [...rest].sort(), 'after the long ones, by name');
  assert.deepEqual(runnerArgs([]).slice(-files.length), files, 'npm test runs them in that order');
  assert.deepEqual(runnerArgs(['test/x.test.ts']).slice(-1), ['test/x.test.ts'], 'named files as given');
});
