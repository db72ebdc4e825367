// The process of isolated.ts: reads the config texts (JSON) on stdin, validates them (or gives
// issues found after loading their lines in those texts), writes one answer (v8-serialized
// LoadReply) on stdout and exits. The loader is imported inside the try so that even a failure to
// load it is an answer.
import { readFileSync, writeSync } from 'node:fs';
import { serialize } from 'node:v8';
import type { ConfigSource } from './sources.ts';
import type { LoadReply } from './isolated.ts';
import type { ConfigIssue } from './errors.ts';

function answer(reply: LoadReply): void {
  let bytes: Buffer;
  try { bytes = serialize(reply); } catch (e) { bytes = serialize({ error: `config validation: ${(e as Error).message}` }); }
  // writeSync until all is written: stdout is a pipe, and a large config may exceed its buffer.
  try {
    for (let off = 0; off < bytes.length;) off += writeSync(1, bytes, off);
  } catch (e) {
    // The parent is gone (a start refused for another reason, e.g. a bad AAM_* value): nobody to answer, and no stack trace to print under its error.
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

try {
  const asked = JSON.parse(readFileSync(0, 'utf8')) as ConfigSource[] | { sources: ConfigSource[]; lines: ConfigIssue[] };
  const { parseConfigTexts, withLines, ConfigError } = await import('./load.ts');
  // Issues found after loading (policy compilation), to be given their lines in the texts compiled.
  if (!Array.isArray(asked)) {
    const texts = new Map(asked.sources.map((s) => [s.file, s.text]));
    answer({ issues: withLines(asked.lines, (f) => texts.get(f) ?? '') });
  } else {
    try { answer({ set: parseConfigTexts(asked) }); } catch (e) {
      answer(e instanceof ConfigError ? { issues: e.issues } : { error: (e as Error).message ?? String(e) });
    }
  }
} catch (e) {
  answer({ error: `config validation: cannot load the loader: ${(e as Error).message}` });
}
