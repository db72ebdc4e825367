// A fault in what a person gave a command (a flag's value, a file named, a name the config lacks),
// as opposed to a failure of the command itself: the CLI prints its message and exits 2, as for an
// unknown option or extra words. src/cli/main.ts is the one place that maps it to the exit code.
import { readFileSync } from 'node:fs';

export class UsageError extends Error {
  override name = 'UsageError';
}

const asUsage = (e: unknown): never => { throw e instanceof Error && !(e instanceof UsageError) ? new UsageError(e.message, { cause: e }) : e; };

/** The parse of input a command was given: whatever it throws is the input's fault (exit 2). */
export function given<T>(parse: () => T): T {
  try { return parse(); } catch (e) { return asUsage(e); }
}

/** given, for a parse that reads (a file named on the command line). */
export function givenAsync<T>(parse: Promise<T>): Promise<T> {
  return parse.catch(asUsage);
}

/** A file named on the command line, read; or a UsageError naming it, why and what to give instead. */
export function givenFile(path: string, what: string): string {
  try { return readFileSync(path, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a directory, not a file' : code === 'EACCES' ? 'not readable by this user' : (e as Error).message;
    throw new UsageError(`${path}: ${why}; give ${what}`, { cause: e });
  }
}
