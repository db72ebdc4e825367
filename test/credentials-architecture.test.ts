// Secret values leave the vault only through REVEAL, which only src/credentials may use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

test('nothing outside src/credentials imports secret.ts or uses REVEAL', () => {
  const root = new URL('..', import.meta.url).pathname;
  const offenders = files(join(root, 'src'))
    .filter((f) => !relative(root, f).startsWith('src/credentials/'))
    .filter((f) => /credentials\/secret\.ts|\bREVEAL\b/.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders, []);
});

test('src/credentials imports only foundations (config, store, lib), never planes or other services', () => {
  const root = new URL('..', import.meta.url).pathname;
  for (const f of files(join(root, 'src/credentials'))) {
    for (const m of readFileSync(f, 'utf8').matchAll(/from '(\.\.\/[^']+)'/g)) {
      assert.match(m[1], /^\.\.\/(config|store|lib)\//, `${relative(root, f)} imports ${m[1]}`);
    }
  }
});
