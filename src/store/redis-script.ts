// Lua scripts written straight on a fleet Redis connection (fleet-limits.ts). ioredis is required
// when a runner is built (fleet mode, where it is loaded already), not imported: an embedded
// gateway imports the fleet limiter with the runtime but never builds one, and must not load
// ioredis (test/idle-modules.test.ts).
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as IORedis from 'ioredis';

type Redis = IORedis.Redis;

const UTF8 = { replyEncoding: 'utf8' as const };

/**
 * A Lua script for the hot path: EVALSHA written straight on the connection, without ioredis's
 * per-call wrappers (defineCommand's script command and auto-pipelining cost ~20 us of CPU per
 * call). `args` is [SCRIPT, numKeys, ...keys, ...argv]: the caller leaves its first element for the
 * runner, which puts the script's SHA there (the command is sent from that array, not a copy of it;
 * the caller must not reuse it). A Redis that does not know the script (restarted, flushed) gets it
 * once by EVAL.
 */
/** The first element of a script runner's arguments: the runner puts the script (its SHA) there. */
export const SCRIPT = '';

export function scriptRunner<T>(redis: Redis, lua: string): (args: Array<string | number>) => Promise<T> {
  const { Command } = createRequire(import.meta.url)('ioredis') as typeof IORedis;
  const sha = createHash('sha1').update(lua).digest('hex');
  // Calls made in one turn of the event loop leave in one write (one syscall), as ioredis's
  // auto-pipelining would batch them: the socket is corked until the turn's check phase. Even a
  // lone call (c=1) waits for it: writing it at once (b5b1861) measured no faster at load 1-4 and
  // gave the gateway more involuntary context switches (Redis woken while the turn still runs).
  let corked: Redis['stream'] | null = null;
  const uncork = () => { corked?.uncork(); corked = null; };
  // A Redis that lost the script (restarted, flushed) gets it once by EVAL.
  const again = (e: unknown, args: Array<string | number>): Promise<T> => {
    if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
    args[0] = lua;
    return redis.sendCommand(new Command('eval', args, UTF8)) as Promise<T>;
  };
  // Not async: one promise per call (the command's), not a wrapper around it.
  return (args) => {
    if (!corked && redis.status === 'ready') {
      corked = redis.stream;
      corked.cork();
      setImmediate(uncork);
    }
    args[0] = sha;
    return (redis.sendCommand(new Command('evalsha', args, UTF8)) as Promise<T>).catch((e: unknown) => again(e, args));
  };
}
