// `npm run build` (also npm's `prepare`, so `npm install` / `npm ci` run it): src/**/*.ts ->
// dist/**/*.js. Running the TypeScript directly costs every isolate (gateway and audit writer) the
// type stripper: ~18 MB RSS each (bench/RESULTS.md). Emitted with Node's own stripper, so dist/
// runs exactly the code that `node src/...ts` runs, on the same line and column numbers (stack
// traces point at the right source lines). Only relative `.ts` specifiers become `.js`.
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripTypeScriptTypes } from 'node:module';
import { STAMP_FILE, sourceStamp } from '../bin/build-state.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// Relative module specifiers in import/export `from`, bare `import '...'`, `import('...')` and
// `new URL('...', import.meta.url)` (worker entry points).
const SPECIFIER = /(\bfrom\s*|\bimport\s*\(?\s*|\bnew URL\(\s*)(['"])(\.\.?\/[^'"\n]*?)\.ts\2/g;

/** Stripped JavaScript of one module and the relative specifiers it now points at. */
export function emitModule(source: string): { code: string; targets: string[] } {
  const targets: string[] = [];
  const code = stripTypeScriptTypes(source, { mode: 'strip' }).replace(SPECIFIER, (_m, head: string, q: string, path: string) => {
    targets.push(`${path}.js`);
    return `${head}${q}${path}.js${q}`;
  });
  return { code, targets };
}

function build(srcDir: string, outDir: string): number {
  const stamp = sourceStamp(srcDir);
  const tmp = `${outDir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const missing: string[] = [];
  let count = 0;
  for (const e of readdirSync(srcDir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const from = join(e.parentPath, e.name);
    const rel = relative(srcDir, from);
    const to = join(tmp, rel.endsWith('.ts') ? `${rel.slice(0, -3)}.js` : rel);
    mkdirSync(dirname(to), { recursive: true });
    if (!rel.endsWith('.ts')) { writeFileSync(to, readFileSync(from)); continue; }
    const { code, targets } = emitModule(readFileSync(from, 'utf8'));
    for (const t of targets) if (!existsSync(join(dirname(from), t.replace(/\.js$/, '.ts')))) missing.push(`${rel}: ${t}`);
    writeFileSync(to, code);
    count++;
  }
  if (missing.length) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`imports of files that do not exist:\n  ${missing.join('\n  ')}`);
  }
  writeFileSync(join(tmp, STAMP_FILE), JSON.stringify({ source: stamp, built: new Date().toISOString(), node: process.version }) + '\n');
  // Swap in whole: a gateway starting meanwhile sees the old tree or the new one, never half of each.
  const old = `${outDir}.old-${process.pid}`;
  if (existsSync(outDir)) renameSync(outDir, old);
  renameSync(tmp, outDir);
  rmSync(old, { recursive: true, force: true });
  return count;
}

// `--out DIR` builds elsewhere (the benchmarks build a private copy that edits made meanwhile
// cannot change); modules resolve packages from the repo's node_modules, so DIR must be inside it.
if (import.meta.main) {
  const i = process.argv.indexOf('--out');
  const out = i > 0 ? resolve(process.argv[i + 1]) : join(ROOT, 'dist');
  const t0 = performance.now();
  const n = build(join(ROOT, 'src'), out);
  process.stdout.write(`built ${n} modules into ${relative(process.cwd(), out) || '.'}/ in ${Math.round(performance.now() - t0)} ms\n`);
}
