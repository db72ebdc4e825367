// Fleet store, hot half: Redis through ioredis. Commands fail fast while Redis is away (no offline
// queue, a command timeout): a request must get a clear 503 at once, not hang or run unchecked;
// ioredis keeps reconnecting in the background, so the fleet recovers by itself.
import { Redis } from 'ioredis';

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
