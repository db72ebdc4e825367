// Imports point one way (DESIGN.md "Layout"): cli -> server -> planes (gateway, tools, a2a, console)
// -> access -> services -> foundations. A module (a folder of src/, or src/runtime.ts) may import its
// own layer or lower ones, never a higher one, and no import chain may come back to where it started:
// not between modules, not between files (type-only imports count: they tie the code together as
// much as values do). A lazy `import('./x.ts')` is an edge too: it defers loading, not the dependency,
// so a lazy front and what it loads share their types through a third module (store/fleet-env.ts,
// tools/mcp-shared.ts) instead of importing each other.
// No exceptions: below the server, the runtime is seen through views (access/runtime-view.ts and
// each plane's plane.ts), and src/runtime.ts, the composition root, is named by nothing below it.
// Check by hand: `grep -rn "from '\.\./\(server/\|runtime\.ts\)" src/access src/gateway` prints nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

/** Higher number = higher layer. src/runtime.ts is the composition root: it builds every plane for the server. */
const LAYERS: Record<string, number> = {
  cli: 6,
  server: 5, runtime: 5,
  gateway: 4, tools: 4, a2a: 4, console: 4,
  access: 3,
  identity: 2, policy: 2, credentials: 2, audit: 2, guardrails: 2, cache: 2,
  config: 1, providers: 1, store: 1, observability: 1,
  lib: 0, // small helpers and lazy loaders of third-party modules, importing nothing of aam
};

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** src/access/x.ts -> access; src/runtime.ts -> runtime. */
const moduleOf = (file: string): string => relative(SRC, file).split('/')[0].replace(/\.ts$/, '');

interface Edge { from: string; to: string; typeOnly: boolean }

/** Static imports and re-exports between files of src (relative specifiers only). */
export function edgesOf(file: string, text: string): Edge[] {
  const out: Edge[] = [];
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  for (const m of code.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*'(\.[^']+)'|^\s*import\s+'(\.[^']+)'/gm)) {
    const spec = m[4] ?? m[5];
    const names = m[3] ?? '';
    const braces = /^\{([\s\S]*)\}$/.exec(names.trim());
    const allTypes = braces !== null && braces[1].split(',').map((s) => s.trim()).filter(Boolean).every((s) => s.startsWith('type '));
    out.push({ from: file, to: resolve(dirname(file), spec), typeOnly: Boolean(m[2]) || allTypes });
  }
  for (const m of code.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)) out.push({ from: file, to: resolve(dirname(file), m[1]), typeOnly: false });
  return out;
}

function graph(): Edge[] {
  return files(SRC).flatMap((f) => edgesOf(f, readFileSync(f, 'utf8')));
}

/** Every cycle's members (strongly connected components larger than one node). */
function cycles(nodes: Iterable<string>, next: (n: string) => Iterable<string>): string[][] {
  let index = 0;
  const idx = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], on = new Set<string>(), out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++; stack.push(v); on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = [];
      let w: string;
      do { w = stack.pop()!; on.delete(w); c.push(w); } while (w !== v);
      if (c.length > 1) out.push(c.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return out;
}

const rel = (f: string) => relative(ROOT, f);

test('every module of src/ has a layer', () => {
  const unknown = [...new Set(files(SRC).map(moduleOf))].filter((m) => !(m in LAYERS));
  assert.deepEqual(unknown, [], 'a new folder of src/ needs its place in LAYERS (and DESIGN.md "Layout")');
});

test('no import points to a higher layer', () => {
  const up = graph().filter((e) => LAYERS[moduleOf(e.to)] > LAYERS[moduleOf(e.from)])
    .map((e) => `${rel(e.from)} imports ${rel(e.to)} (${moduleOf(e.from)} is below ${moduleOf(e.to)})`);
  assert.deepEqual(up, [], 'move what the lower layer needs down (types to a types module, helpers to access/ or a foundation)');
});

test('no cycle between modules', () => {
  const next = new Map<string, Set<string>>();
  for (const e of graph()) {
    const a = moduleOf(e.from), b = moduleOf(e.to);
    if (a !== b) (next.get(a) ?? next.set(a, new Set()).get(a)!).add(b);
  }
  assert.deepEqual(cycles(Object.keys(LAYERS), (m) => next.get(m) ?? []), []);
});

test('no cycle between files, type-only imports included', () => {
  const next = new Map<string, string[]>();
  for (const e of graph()) (next.get(e.from) ?? next.set(e.from, []).get(e.from)!).push(e.to);
  assert.deepEqual(cycles(files(SRC), (f) => next.get(f) ?? []).map((c) => c.map(rel)), []);
});

test('the checks see what they must: an upward import, a type-only one and a cycle are all caught', () => {
  const f = join(SRC, 'access/x.ts');
  const [value, typeOnly, inline, reexport] = edgesOf(f, [
    "import { AamError } from '../server/errors.ts';",
    "import type { Ctx } from '../server/context.ts';",
    "import { type A, type B } from './y.ts';",
    "export { z } from '../runtime.ts';",
  ].join('\n'));
  assert.equal(moduleOf(value.to), 'server');
  assert.ok(LAYERS[moduleOf(value.to)] > LAYERS[moduleOf(f)]);
  assert.deepEqual([value.typeOnly, typeOnly.typeOnly, inline.typeOnly], [false, true, true]);
  assert.equal(moduleOf(reexport.to), 'runtime');
  const runtimeType = edgesOf(f, "import type { Runtime, Compiled } from '../runtime.ts';")[0];
  assert.ok(runtimeType.typeOnly && LAYERS[moduleOf(runtimeType.to)] > LAYERS[moduleOf(f)], 'the runtime\'s type is an upward edge like any other');
  assert.deepEqual(edgesOf(f, "// import { a } from '../cli/main.ts';\n// await import('./z.ts');"), []);
  assert.deepEqual(edgesOf(f, "const m = await import('./lazy.ts');").map((e) => rel(e.to)), ['src/access/lazy.ts'], 'a lazy import is an edge');
  assert.deepEqual(cycles(['a', 'b', 'c'], (n) => ({ a: ['b'], b: ['a'], c: ['a'] })[n] ?? []), [['a', 'b']]);
});
