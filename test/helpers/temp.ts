// Scratch directories for tests: created under the OS temp dir and removed when the test process
// exits (each test file is its own process under node --test), so a run leaves nothing behind
// even when a test fails half-way.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

export function tempDir(prefix = 'aam-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (made.length === 0) process.once('exit', () => { for (const d of made) rmSync(d, { recursive: true, force: true }); });
  made.push(dir);
  return dir;
}
