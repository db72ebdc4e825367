// `npm test` reports every test it ran: under --test-force-exit a file's process exits as soon as
// its tests are done, and results still queued on its pipe to the runner used to be dropped (the
// last three tests of a file were missing from a full run, with nothing failed). Two files that
// flood their output and hold a handle open are run the way scripts/test.ts runs the suite.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDurations, runnerArgs, slowestFirst } from '../scripts/test.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-runner-reports-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The suite's runner over `files`, as npm test starts it: its output and exit code. */
function runner(files: string[], extraEnv: Record<string, string> = {}): Promise<{ out: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    // Not as a child of this runner (which would make it report in its binary form).
    const env = { ...process.env, ...extraEnv };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, runnerArgs(files), { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const got: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => got.push(c));
    child.stderr.on('data', (c: Buffer) => got.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ out: Buffer.concat(got).toString('utf8'), code }));
  });
}

test('a file that exits by force with megabytes of output still queued has every result reported', async () => {
  const files = ['one', 'two'].map((name) => {
    const file = join(dir, `${name}.test.mjs`);
    writeFileSync(file, [
      "import { test } from 'node:test';",
      'setInterval(() => {}, 60_000); // a handle left open: only force exit ends this process',
      `test('${name} floods its output', () => { console.log('x'.repeat(16 << 20)); });`,
      `for (let i = 1; i <= 3; i++) test(\`${name} after the flood \${i}\`, () => {});`,
    ].join('\n'));
    return file;
  });
  const { out } = await runner(files);
  for (const name of ['one', 'two']) {
    for (let i = 1; i <= 3; i++) assert.ok(out.includes(`✔ ${name} after the flood ${i}`), `${name} after the flood ${i} was reported`);
  }
  assert.match(out, /ℹ tests 8\nℹ suites 0\nℹ pass 8\nℹ fail 0/);
});

test('the runner starts the files in the order given (the slowest first), two at a time; a failed test fails the run; AAM_TEST_DURATIONS records each file\'s time', async () => {
  const started = join(dir, 'started.log');
  // By name the runner of `node --test` would start "a" first; given last, it starts once a file before it ended.
  const files = ['c', 'b', 'a'].map((name) => {
    const file = join(dir, `order-${name}.test.mjs`);
    writeFileSync(file, [
      "import { test } from 'node:test';",
      "import { appendFileSync } from 'node:fs';",
      `appendFileSync(${JSON.stringify(started)}, '${name}\\n');`,
      `test('${name} runs', async () => { await new Promise((r) => setTimeout(r, ${name === 'c' ? 1500 : 100})); ${name === 'b' ? "throw new Error('b fails');" : ''} });`,
    ].join('\n'));
    return file;
  });
  const durations = join(dir, 'durations.txt');
  const { out, code } = await runner(files, { AAM_TEST_DURATIONS: durations });
  assert.deepEqual(readFileSync(started, 'utf8').trim().split('\n').slice(-1), ['a'], out);
  assert.equal(code, 1, 'b failed');
  const took = parseDurations(readFileSync(durations, 'utf8'));
  assert.deepEqual([...took.keys()].sort(), ['order-a.test.mjs', 'order-b.test.mjs', 'order-c.test.mjs']);
  assert.ok(took.get('order-c.test.mjs')! >= 1.5, `c took its 1.5 s at least: ${[...took].join(' ')}`);
});

test('slowestFirst: by recorded time, longest first; files with no recorded time before all, by name', () => {
  const took = parseDurations('12.5\ttest/b.test.ts\n40.0\ttest/c.test.ts\n\nnot a line\n3\ttest/a.test.ts\n');
  assert.deepEqual([...took], [['test/b.test.ts', 12.5], ['test/c.test.ts', 40], ['test/a.test.ts', 3]]);
  assert.deepEqual(slowestFirst(['test/a.test.ts', 'test/b.test.ts', 'test/c.test.ts', 'test/new2.test.ts', 'test/new1.test.ts'], took),
    ['test/new1.test.ts', 'test/new2.test.ts', 'test/c.test.ts', 'test/b.test.ts', 'test/a.test.ts']);
});
