// Is dist/ (the JavaScript that `npm run build` emits from src/) current? Plain JavaScript on
// purpose: the launcher must decide without loading Node's TypeScript stripper, whose cost
// (~18 MB RSS per isolate) is the reason dist/ exists. Used by bin/aam.js and scripts/build.ts.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export const STAMP_FILE = 'BUILD.json';

/**
 * Fingerprint of a source tree: every file's path, size and mtime. Any edit, new or deleted file
 * changes it; a checkout that touches files only makes dist/ look stale (safe: the sources run).
 */
export function sourceStamp(srcDir) {
  const h = createHash('sha256');
  const files = readdirSync(srcDir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name))
    .sort();
  for (const f of files) {
    const s = statSync(f);
    h.update(`${relative(srcDir, f)}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex');
}

/** 'fresh' when dist/ was built from src/ as it is now, else 'missing' or 'stale'. */
export function distState(root) {
  let built;
  try {
    built = JSON.parse(readFileSync(join(root, 'dist', STAMP_FILE), 'utf8')).source;
  } catch {
    return 'missing';
  }
  try {
    return built === sourceStamp(join(root, 'src')) ? 'fresh' : 'stale';
  } catch {
    return 'fresh'; // an install without src/ runs what it ships
  }
}
