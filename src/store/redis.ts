// Fleet store, hot half: Redis through ioredis. Commands fail fast while Redis is away (no offline
// queue, a command timeout): a request must get a clear 503 at once, not hang or run unchecked;
// ioredis keeps reconnecting in the background, so the fleet recovers by itself.
import { createHash } from 'node:crypto';
import { Command, Redis } from 'ioredis';

export type { Redis } from 'ioredis';

export function connectRedis(url: string, name: string, opts: { subscriber?: boolean } = {}): Redis {
  return new Redis(url, {
    connectionName: name,
    lazyConnect: true,
    // Requests: fail at once when disconnected. The subscriber keeps its queue so it re-subscribes.
    enableOfflineQueue: opts.subscriber === true,
    maxRetriesPerRequest: opts.subscriber ? null : 0,
    commandTimeout: opts.subscriber ? undefined : 1000,
    connectTimeout: 2000,
    // Commands issued in the same tick share one write (and one round trip of latency).
    enableAutoPipelining: !opts.subscriber,
    retryStrategy: (times) => Math.min(50 * times, 500),
  });
}

/** Every key and channel of one fleet starts with this; {…} keeps a fleet's keys in one cluster slot (multi-key scripts). */
export function fleetPrefix(database: string): string {
  return `aam:{${database}}:`;
}

const UTF8 = { replyEncoding: 'utf8' as const };

/**
 * A Lua script for the hot path: EVALSHA written straight on the connection, without ioredis's
 * per-call wrappers (defineCommand's script command and auto-pipelining cost ~20 us of CPU per
 * call). `args` is [numKeys, ...keys, ...argv]; a Redis that does not know the script (restarted,
 * flushed) gets it once by EVAL.
 */
export function scriptRunner<T>(redis: Redis, lua: string): (args: Array<string | number>) => Promise<T> {
  const sha = createHash('sha1').update(lua).digest('hex');
  // Calls made in one turn of the event loop leave in one write (one syscall), as ioredis's
  // auto-pipelining would batch them: the socket is corked until the turn's check phase.
  let corked: Redis['stream'] | null = null;
  const uncork = () => { corked?.uncork(); corked = null; };
  return async (args) => {
    if (!corked && redis.status === 'ready') {
      corked = redis.stream;
      corked.cork();
      setImmediate(uncork);
    }
    try {
      return await (redis.sendCommand(new Command('evalsha', [sha, ...args], UTF8)) as Promise<T>);
    } catch (e) {
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return redis.sendCommand(new Command('eval', [lua, ...args], UTF8)) as Promise<T>;
    }
  };
}
