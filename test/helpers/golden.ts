// Golden files: compare with the stored expectation; UPDATE_GOLDEN=1 rewrites it, a missing one
// is written and fails the test so it gets reviewed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const GOLDEN_DIR = join(import.meta.dirname, '..', 'golden');
export const UPDATE_GOLDEN = process.env.UPDATE_GOLDEN === '1';

export function golden(path: string, actual: string): void {
  if (UPDATE_GOLDEN || !existsSync(path)) {
    writeFileSync(path, actual);
    if (!UPDATE_GOLDEN) assert.fail(`golden file ${path} was missing and has been written; review it and re-run`);
    return;
  }
  assert.equal(actual, readFileSync(path, 'utf8'), `mismatch with ${path} (UPDATE_GOLDEN=1 to accept)`);
}
