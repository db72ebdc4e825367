// jose (JWT signing and verification: ~3 MB RSS with its modules, bench/RESULTS.md "Memory") is
// required on the first JWT a process signs or verifies, not at start: many configs use none.
// Node 24 requires ES modules synchronously, so callers stay synchronous where they were.
// A foundation (beside fleet-lazy.ts) because identity, credentials and the console all sign or
// verify JWTs, and services do not import each other.
import { createRequire } from 'node:module';
import type * as Jose from 'jose';

const load = createRequire(import.meta.url);
let loaded: typeof Jose | undefined;

/** The jose module, loaded on first call (later calls: one field read, no require). */
export function jose(): typeof Jose {
  return (loaded ??= load('jose') as typeof Jose);
}
