// The test runner `npm test` starts (scripts/test.ts runnerArgs): node:test's run() over the files
// in the order given, as `node --test --test-force-exit --test-concurrency=2 --test-timeout=120000`
// runs them, with its spec report on stdout and exit code 1 when a test failed. Not the CLI:
// `node --test` sorts its files by name, and the suite starts its slowest files first (so neither
// core is left with one long file at the end). AAM_TEST_DURATIONS=<file>: each file's wall time
// is written there once the run ends, as scripts/test-durations.txt lists them.
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { writeFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';

const files = process.argv.slice(2).map((f) => resolve(f));
const took = new Map<string, number>();
const stream = run({ files, concurrency: 2, forceExit: true, timeout: 120_000 });
stream.on('test:fail', (d: { todo?: unknown }) => { if (!d.todo) process.exitCode = 1; });
// A file's own test (named by its path) completes with the file's whole run: process start to exit.
stream.on('test:complete', (d: { nesting: number; file?: string; name: string; details: { duration_ms: number } }) => {
  if (d.nesting === 0 && d.file === d.name) took.set(relative(process.cwd(), d.file), d.details.duration_ms / 1000);
});
stream.once('end', () => {
  const out = process.env.AAM_TEST_DURATIONS;
  if (out) writeFileSync(out, [...took].sort((a, b) => b[1] - a[1]).map(([f, s]) => `${s.toFixed(1)}\t${f}\n`).join(''));
});
stream.compose(spec).pipe(process.stdout);
