// The install-time build (scripts/build.ts -> dist/) and the launcher that chooses between dist/
// and the TypeScript sources (bin/aam.js). Real processes and files, in scratch copies of the
// repo whose node_modules is a link to the real one (so packages resolve as they do in the repo).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { emitModule } from '../scripts/build.ts';
import { distState } from '../bin/build-state.js';
import { tempDir } from './helpers/temp.ts';
import { mkdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ownVersion } from '../src/store/fleet-status.ts';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));

/** A scratch project: package.json, node_modules (a link) and copies of the given repo folders. */
function scratchRepo(dirs: string[]): string {
  const root = tempDir('aam-build-');
  writeFileSync(join(root, 'package.json'), '{"type":"module"}');
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
  for (const d of dirs) cpSync(join(REPO, d), join(root, d), { recursive: true });
  return root;
}

/** Runs root's copy of scripts/build.ts (it builds root/src). */
const build = (root: string, out = join(root, 'dist')): void => {
  execFileSync(process.execPath, ['--disable-warning=ExperimentalWarning', join(root, 'scripts/build.ts'), '--out', out], { cwd: root, stdio: 'pipe' });
};

test('emitModule: types stripped in place (same lines), relative .ts specifiers of imports, exports, import() and worker URLs become .js, nothing else', () => {
  const src = [
    "import { a, type B } from './a.ts';",
    "import type { C } from '../c.ts';",
    "export { d } from \"./d/e.ts\";",
    "import './side.ts';",
    "const m = await import('./lazy.ts');",
    "const w = new URL('./worker.ts', import.meta.url);",
    "import { z } from 'zod';",
    "const msg: string = 'run src/cli/main.ts or ./x.ts';",
    'export const n: number = 1;',
  ].join('\n');
  const { code, targets } = emitModule(src);
  assert.equal(code.split('\n').length, src.split('\n').length, 'line numbers are kept');
  assert.match(code, /from '\.\/a\.js'/);
  assert.doesNotMatch(code, /\.\.\/c\.ts|type B|: string|: number/);
  assert.match(code, /from "\.\/d\/e\.js"/);
  assert.match(code, /import '\.\/side\.js'/);
  assert.match(code, /import\('\.\/lazy\.js'\)/);
  assert.match(code, /new URL\('\.\/worker\.js', import\.meta\.url\)/);
  assert.match(code, /from 'zod'/);
  assert.match(code, /'run src\/cli\/main\.ts or \.\/x\.ts'/, 'string contents are left alone');
  assert.deepEqual(targets, ['./a.js', './d/e.js', './side.js', './lazy.js', './worker.js']);
});

test('build: every module of src/ is emitted, the stamp matches the sources, and the built CLI runs (worker thread included)', () => {
  const root = scratchRepo(['src', 'scripts', 'bin']);
  const out = join(root, 'dist');
  build(root);
  const ts = execFileSync('git', ['-C', REPO, 'ls-files', 'src/*.ts', 'src/**/*.ts'], { encoding: 'utf8' }).trim().split('\n');
  assert.ok(ts.length > 100);
  for (const f of ts) assert.ok(existsSync(join(out, f.slice(4, -3) + '.js')), `${f} was built`);
  assert.equal(distState(root), 'fresh');
  assert.equal(JSON.parse(readFileSync(join(out, 'BUILD.json'), 'utf8')).source.length, 64);
  // validate loads config, policy and CEL; keys create opens the stores and records the change.
  const r = spawnSync(process.execPath, [join(out, 'cli/main.js'), 'validate', join(REPO, 'aam.yaml')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /OK/);
  const data = join(root, 'data');
  const k = spawnSync(process.execPath, [join(out, 'cli/main.js'), 'keys', 'create', '--agent', 'finance-analyst', '--config', join(REPO, 'aam.yaml'), '--data', data], { encoding: 'utf8' });
  assert.equal(k.status, 0, k.stderr);
  assert.match(k.stdout.trim().split('\n').pop() ?? '', /^aam_/);
});

test('a build at another depth (a benchmark\'s private build) still knows its version; none found is "unknown", never a crash', () => {
  const root = tempDir('aam-version-');
  writeFileSync(join(root, 'package.json'), JSON.stringify({ name: 'aam', version: '9.9.9' }));
  const deep = join(root, 'node_modules', '.bench', 'dist', 'store');
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(root, 'node_modules', 'package.json'), JSON.stringify({ name: 'other', version: '1.0.0' }));
  assert.equal(ownVersion(pathToFileURL(`${deep}/`)), '9.9.9', 'walks up past other packages to aam\'s');
  assert.equal(ownVersion(pathToFileURL(`${join(REPO, 'src', 'store')}/`)), JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
  const lone = tempDir('aam-version-none-');
  assert.equal(ownVersion(pathToFileURL(`${lone}/`)), 'unknown');
});

test('build: an import of a file that does not exist fails the build and leaves the previous dist/ in place', () => {
  const root = scratchRepo(['scripts', 'bin']);
  // A module of its own (a copy of one of src/ would break the day that one imports another).
  mkdirSync(join(root, 'src'));
  writeFileSync(join(root, 'src/duration.ts'), 'export const seconds: number = 60;\n');
  build(root);
  const before = readFileSync(join(root, 'dist/BUILD.json'), 'utf8');
  writeFileSync(join(root, 'src/main.ts'), "import { x } from './gone.ts';\nexport const y = x;\n");
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', join(root, 'scripts/build.ts')], { cwd: root, encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /imports of files that do not exist:\s+main\.ts: \.\/gone\.js/);
  assert.equal(readFileSync(join(root, 'dist/BUILD.json'), 'utf8'), before, 'the old build stays whole');
});

test('launcher: runs dist/ when it was built from the current sources, else the sources (serve says so, and how to fix it)', () => {
  // A copy of the launcher and the sources, so the test can age and delete its own dist/.
  const root = scratchRepo(['src', 'scripts', 'bin']);
  build(root);
  assert.equal(distState(root), 'fresh');
  // Mark the built CLI so the test can see which copy ran (the stamp covers src/, not dist/).
  const main = join(root, 'dist/cli/main.js');
  writeFileSync(main, `process.stderr.write('FROM-DIST\\n');\n${readFileSync(main, 'utf8')}`);
  const aam = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin/aam.js'), ...args], { encoding: 'utf8', env: { ...process.env, AAM_LOG_LEVEL: 'error' } });

  let r = aam('serve', '--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /FROM-DIST/);
  assert.doesNotMatch(r.stderr, /running the TypeScript sources/);

  // An edited source makes dist/ stale: the sources run, and serve tells how to fix it.
  const edited = join(root, 'src/config/duration.ts');
  const later = new Date(Date.now() + 5_000);
  utimesSync(edited, later, later);
  assert.equal(distState(root), 'stale');
  r = aam('serve', '--help');
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /FROM-DIST/);
  assert.match(r.stderr, /dist\/ is older than src\/; running the TypeScript sources .* Run `npm run build`/);
  r = aam('validate', join(REPO, 'aam.yaml'));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'other commands run the sources silently');

  rmSync(join(root, 'dist'), { recursive: true });
  assert.equal(distState(root), 'missing');
  r = aam('serve', '--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /dist\/ is missing; running the TypeScript sources/);
});
