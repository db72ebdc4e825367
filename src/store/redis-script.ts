// Lua scripts on the admission's own Redis connection (fleet-limits.ts), in RESP written by aam
// (resp.ts): no ioredis Command, encoder or reply parser per call. This module loads no driver: an
// embedded gateway imports the fleet limiter with the runtime but never builds a runner
// (test/idle-modules.test.ts).
import { createHash } from 'node:crypto';
import type { RespConnection } from './resp.ts';

/** The first element of a script runner's arguments: the runner puts the script (its SHA) there. */
export const SCRIPT = '';

/**
 * A Lua script for the hot path: EVALSHA. `args` is [SCRIPT, numKeys, ...keys, ...argv]: the
 * caller leaves its first element for the runner, which puts the script's SHA there (the command
 * is encoded from that array, not a copy of it; the caller must not reuse it). A Redis that does
 * not know the script (restarted, flushed) gets it once by EVAL.
 */
export function scriptRunner<T>(conn: RespConnection, lua: string): (args: Array<string | number>, now?: boolean) => Promise<T> {
  const sha = createHash('sha1').update(lua).digest('hex');
  // Not async, no catch: one promise per call, the command's (NOSCRIPT is retried inside it).
  // Calls made in one turn of the event loop leave in one write (RespConnection writes at the
  // turn's check phase; `now`: at once).
  return (args, now) => {
    args[0] = sha;
    return conn.evalsha(lua, args, now) as Promise<T>;
  };
}
