// src/cache is a service: it may use foundations (providers' canonical types, config schema types,
// store, lib's helpers, which import nothing of aam) but never the planes (gateway, tools, server)
// or policy/identity, so it stays a library the model plane calls, and the test embedder never
// reaches production code paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const DIR = join(import.meta.dirname, '..', 'src', 'cache');
const ALLOWED = [/^\.\/[a-z-]+\.ts$/, /^\.\.\/providers\/types\.ts$/, /^\.\.\/config\/schema\.ts$/, /^\.\.\/store\/(sqlite|types)\.ts$/, /^\.\.\/lib\/[a-z-]+\.ts$/, /^node:/];

test('src/cache imports only foundations', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 6);
  for (const f of files) {
    const src = readFileSync(join(DIR, f), 'utf8');
    for (const m of src.matchAll(/^(?:import|export)[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
      assert.ok(ALLOWED.some((re) => re.test(m[1])), `${f} imports ${m[1]}`);
    }
  }
});

test('no production file uses the test embedder', () => {
  for (const f of readdirSync(DIR).filter((x) => x.endsWith('.ts') && x !== 'test-embedder.ts')) {
    assert.doesNotMatch(readFileSync(join(DIR, f), 'utf8'), /test-embedder/, f);
  }
});
