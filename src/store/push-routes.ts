// A2A push routes (see PushRouteStore): a bounded expiring map for one process (kept across
// restarts in the data dir's SQLite when given a table: sqlite-expiring.ts), Redis for a fleet.
import type { Redis } from './redis.ts';
import type { ExpiringTable } from './sqlite-expiring.ts';
import { StoreUnavailable, type PushRouteStore } from './types.ts';

/** One process: at most `max` routes (oldest out first), each until its expiry; loaded from and written to `table` when given. */
export function memoryPushRoutes(max = 50_000, now: () => number = Date.now, table?: ExpiringTable): PushRouteStore {
  const m = new Map<string, { json: string; expires: number }>();
  if (table) for (const r of table.load(now(), max)) m.set(r.key, { json: r.value, expires: r.expires });
  return {
    put(id, json, ttlMs) {
      const expires = now() + ttlMs;
      m.set(id, { json, expires });
      if (m.size > max) m.delete(m.keys().next().value as string);
      table?.put(id, json, expires);
    },
    get(id) {
      const r = m.get(id);
      if (r && r.expires < now()) { m.delete(id); return undefined; }
      return r?.json;
    },
    flush: () => table?.flush(),
  };
}

/** A fleet: one Redis key per route, expiring with it. Redis down: StoreUnavailable (503, never "unknown route"). */
export function redisPushRoutes(redis: Redis, prefix: string): PushRouteStore {
  const key = (id: string) => `${prefix}a2a:push:${id}`;
  const down = (e: unknown) => new StoreUnavailable('redis', `A2A push routes: ${(e as Error).message}`);
  return {
    async put(id, json, ttlMs) {
      try { await redis.set(key(id), json, 'PX', ttlMs); } catch (e) { throw down(e); }
    },
    async get(id) {
      try { return (await redis.get(key(id))) ?? undefined; } catch (e) { throw down(e); }
    },
  };
}
