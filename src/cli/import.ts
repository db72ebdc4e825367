// `aam import litellm FILE` and `aam import portkey FILE`: another gateway's config as aam
// documents on stdout (or --out), what could not be mapped on stderr (one line each, with its
// path), and the result validated with the same loader as `aam validate` (exit 1 if it fails).
import { writeFileSync } from 'node:fs';
import { givenFile, UsageError } from '../lib/usage-error.ts';
import { basename, extname } from 'node:path';
import type { Command } from './command.ts';
import type { ImportResult } from '../config/import-common.ts';

const err = (line: string) => process.stderr.write(line + '\n');

// The importers and the loader (yaml, zod) load when an import runs: `aam serve` never needs them.
async function emit(file: string, from: string, r: ImportResult, outPath: string | undefined): Promise<number> {
  const [{ renderDocs }, { ConfigError, parseConfigTexts }] = await Promise.all([import('../config/import-common.ts'), import('../config/load.ts')]);
  const text = renderDocs(r.docs, `Imported from ${from} ${basename(file)} by \`aam import\`; review before use.`);
  for (const u of r.unmapped) err(`not mapped: ${u}`);
  if (r.docs.length === 0) { err(`nothing could be imported from ${file}`); return 1; }
  try {
    parseConfigTexts([{ file: outPath ?? 'imported.yaml', text }]);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    err(`the imported config does not validate (written anyway, fix these):\n${e.message}`);
    if (outPath) writeFileSync(outPath, text); else process.stdout.write(text);
    return 1;
  }
  if (outPath) writeFileSync(outPath, text); else process.stdout.write(text);
  err(`imported ${r.docs.length} document(s) from ${file}${outPath ? ` into ${outPath}` : ''}: valid (${r.unmapped.length} item(s) not mapped, listed above)`);
  return 0;
}

/** The file named on the command line, parsed; or why it cannot be (a usage error, exit 2, as for policy test and audit verify). */
function read(file: string, what: string, parse: (s: string) => unknown): unknown {
  const text = givenFile(file, `the ${what} to import`);
  try { return parse(text); } catch (e) { throw new UsageError(`${file} is not a readable ${what}: ${(e as Error).message}`); }
}

export const importCommands: Record<string, Command> = {
  'import litellm': {
    summary: 'convert a LiteLLM proxy config.yaml into aam documents (stdout), list what does not map (stderr), validate',
    usage: 'aam import litellm CONFIG.yaml [--out aam.yaml]',
    args: ['CONFIG.yaml'],
    options: { out: { type: 'string', short: 'o' } },
    run: async ({ positionals, values }) => {
      if (!positionals[0]) { err('missing CONFIG.yaml'); return 2; }
      const [{ parse: parseYaml }, { importLitellm }] = await Promise.all([import('yaml'), import('../config/import-litellm.ts')]);
      const cfg = read(positionals[0], 'YAML file', parseYaml);
      return emit(positionals[0], 'LiteLLM', importLitellm(cfg), values.out as string | undefined);
    },
  },
  'import portkey': {
    summary: 'convert a Portkey gateway config (JSON) into aam documents: one Model route (stdout), list what does not map (stderr), validate',
    usage: 'aam import portkey CONFIG.json [--name ROUTE] [--out aam.yaml]   (route name defaults to the file name)',
    args: ['CONFIG.json'],
    options: { out: { type: 'string', short: 'o' }, name: { type: 'string' } },
    run: async ({ positionals, values }) => {
      if (!positionals[0]) { err('missing CONFIG.json'); return 2; }
      const { importPortkey } = await import('../config/import-portkey.ts');
      const cfg = read(positionals[0], 'JSON file', JSON.parse);
      const route = (values.name as string | undefined) ?? basename(positionals[0], extname(positionals[0]));
      return emit(positionals[0], 'Portkey', importPortkey(cfg, route), values.out as string | undefined);
    },
  },
};
