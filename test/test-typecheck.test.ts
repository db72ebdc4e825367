// `npm test` type-checks beside the suite rather than before it (scripts/test.ts typecheck and
// withTypecheck): a type error must still fail the run, and stop a suite already running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { typecheck, withTypecheck } from '../scripts/test.ts';

const TYPE_ERROR = ['-e', 'process.stdout.write("src/x.ts(1,7): error TS2322: Type \'string\' is not assignable to type \'number\'.\\n"); process.exit(2)'];

test('a type error fails the run with tsc\'s code and output, and stops the suite still running', async () => {
  let stopped = 0;
  let endSuite: (code: number) => void = () => {};
  const suite = new Promise<number>((r) => { endSuite = r; });
  const said: string[] = [];
  const code = await withTypecheck(typecheck(TYPE_ERROR), suite, () => { stopped++; endSuite(143); }, (l) => said.push(l));
  assert.equal(code, 2);
  assert.equal(stopped, 1);
  assert.match(said.join(''), /error TS2322[\s\S]*tsc --noEmit failed \(exit 2\)/);
});

test('a type error after a suite that passed still fails the run', async () => {
  const code = await withTypecheck(typecheck(['-e', 'setTimeout(() => process.exit(2), 200)']), Promise.resolve(0), () => {}, () => {});
  assert.equal(code, 2);
});

test('a clean type-check leaves the suite\'s code (failing or passing) and the suite running', async () => {
  for (const suiteCode of [0, 1]) {
    let stopped = 0;
    const said: string[] = [];
    const code = await withTypecheck(typecheck(['-e', '']), new Promise((r) => setTimeout(() => r(suiteCode), 100)), () => { stopped++; }, (l) => said.push(l));
    assert.equal(code, suiteCode);
    assert.equal(stopped, 0);
    assert.match(said.join(''), /tsc --noEmit passed/);
  }
});

test('the type-check runs niced (nice 10), so the suite\'s timing does not pay for it', async () => {
  const { code, output } = await typecheck(['-e', 'process.stdout.write(String(require("node:os").getPriority()))']).done;
  assert.equal(code, 0);
  assert.equal(output, '10');
});
