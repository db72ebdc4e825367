// The config's files, their text and its digest: all a reload needs to tell whether anything
// changed, without the loader (yaml + zod) that validates it.
import { readFileSync, statSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { ConfigError } from './errors.ts';

export interface ConfigSource { file: string; text: string }

/** Expand a config path: a file, or a directory of *.yaml / *.yml files (sorted). */
export function configFiles(path: string): string[] {
  let st;
  try { st = statSync(path); } catch {
    throw new ConfigError([{ file: path, document: -1, path: '', message: 'config file not found (set --config or AAM_CONFIG)' }]);
  }
  if (!st.isDirectory()) return [path];
  const files = readdirSync(path).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(path, f));
  // A mistyped directory would otherwise load as an empty config: every request refused, nothing said.
  if (files.length === 0) throw new ConfigError([{ file: path, document: -1, path: '', message: 'a directory with no *.yaml or *.yml file: nothing to load (give the config file, or the directory that holds its files)' }]);
  return files;
}

/** The text of every file of the config at `path`. */
export function readConfigSources(path: string): ConfigSource[] {
  return configFiles(path).map((file) => {
    try { return { file, text: readFileSync(file, 'utf8') }; } catch (e) {
      throw new ConfigError([{ file, document: -1, path: '', message: `cannot read: ${(e as Error).message}` }]);
    }
  });
}

/**
 * The digest names the config, not where it lies: the same files at another path are the same
 * config (no drift in `aam fleet status`); a directory's file names still count (their order is the merge order).
 */
export function configDigest(sources: readonly ConfigSource[]): string {
  const hash = createHash('sha256');
  for (const { file, text } of sources) hash.update(sources.length > 1 ? basename(file) : '').update('\0').update(text).update('\0');
  return hash.digest('hex');
}
