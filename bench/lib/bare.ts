// The bare pass-through proxy (bench/bare-proxy.ts) as JavaScript, stripped like dist/, so that
// neither side of a comparison carries Node's type stripper (~18 MB RSS) and aam is measured as
// `npm start` runs it.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { emitModule } from '../../scripts/build.ts';

const SOURCE = join(dirname(fileURLToPath(import.meta.url)), '..', 'bare-proxy.ts');

/** Writes <workDir>/bare-proxy.js (workDir inside the repo, so `undici` resolves) and returns its path. */
export function bareProxyScript(workDir: string): string {
  const file = join(workDir, 'bare-proxy.js');
  writeFileSync(file, emitModule(readFileSync(SOURCE, 'utf8')).code);
  return file;
}
