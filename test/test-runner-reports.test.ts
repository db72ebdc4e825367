// `npm test` reports every test it ran: under --test-force-exit a file's process exits as soon as
// its tests are done, and results still queued on its pipe to the runner used to be dropped (the
// last three tests of a file were missing from a full run, with nothing failed). Two files that
// flood their output and hold a handle open are run the way scripts/test.ts runs the suite.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runnerArgs } from '../scripts/test.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-runner-reports-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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
  const out = await new Promise<string>((resolve, reject) => {
    // As npm test starts it: not as a child of this runner (which would make it report in its binary form).
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, runnerArgs(files), { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const got: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => got.push(c));
    child.stderr.on('data', (c: Buffer) => got.push(c));
    child.on('error', reject);
    child.on('close', () => resolve(Buffer.concat(got).toString('utf8')));
  });
  for (const name of ['one', 'two']) {
    for (let i = 1; i <= 3; i++) assert.ok(out.includes(`✔ ${name} after the flood ${i}`), `${name} after the flood ${i} was reported`);
  }
  assert.match(out, /ℹ tests 8\nℹ suites 0\nℹ pass 8\nℹ fail 0/);
});
