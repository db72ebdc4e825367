// A2A task ownership (see TaskOwnerStore): in memory for one process (kept across restarts in the
// data dir's SQLite when given a table: sqlite-expiring.ts), in Redis for a fleet.
// A callee sees every caller as aam, so aam binds each task and context id a callee returns to
// the caller (and skill) of the call that created it. Ownership never changes while it lives, so
// the fleet store keeps what it has read or written in a bounded local map as well: a replica asks
// Redis once per id (until the local copy ages out), and a bind it already made costs nothing.
import type { Redis } from './redis.ts';
import type { ExpiringTable } from './sqlite-expiring.ts';
import { StoreUnavailable, type TaskIds, type TaskOwner, type TaskOwnerStore } from './types.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

interface Held extends TaskOwner {
  expires: number;
  /** The expiry the backing table holds for it (one process with a table). */
  saved?: number;
  /** Bound again (refresh) since it was put last in the map's order. */
  again?: boolean;
}

/**
 * Bounded map of live owners, oldest first out. An owner bound again as it is (a stream's task,
 * named by every call that continues it) is refreshed in place: no new object, no delete and set
 * to move it last. When it comes first in line to go, it goes last instead, once (a second
 * chance, as a clock cache gives): about the least recently bound goes first, and an owner bound
 * again since it last went to the back never does.
 */
class OwnerMap {
  readonly #m = new Map<string, Held>();
  readonly #max: number;
  constructor(max: number) { this.#max = max; }
  get(k: string, now: number): Held | undefined {
    const o = this.#m.get(k);
    if (o && o.expires < now) { this.#m.delete(k); return undefined; }
    return o;
  }
  set(k: string, o: Held): void {
    this.#m.delete(k);
    this.#m.set(k, o);
    while (this.#m.size > this.#max) {
      const [first, held] = this.#m.entries().next().value as [string, Held];
      this.#m.delete(first);
      if (held.again !== true) break;
      // Bound again since it went last: it goes last again (each at most once per trip through the line).
      held.again = false;
      this.#m.set(first, held);
    }
  }
  /** `o` (held here) bound again, until `expires`. */
  refresh(o: Held, expires: number): void {
    o.expires = expires;
    o.again = true;
  }
}

const keyOf = (callee: string, kind: 'task' | 'context', id: string): string => `${callee}\0${kind}\0${id}`;
const each = (ids: TaskIds): Array<['task' | 'context', string]> => [...ids.tasks.map((id) => ['task', id] as ['task', string]), ...ids.contexts.map((id) => ['context', id] as ['context', string])];

/**
 * One process: owners in memory, 50,000 at most, each for a day after its last bind. With a
 * table, the owners are loaded from it at start and every new owner is written to it; a refresh
 * is written once the table's expiry is half a ttl behind (so after a restart an owner lives at
 * least half a day past its last bind, and a task named by every call costs no write per call).
 */
export function memoryTaskOwners(max = 50_000, ttlMs = DAY_MS, now: () => number = Date.now, table?: ExpiringTable): TaskOwnerStore {
  const m = new OwnerMap(max);
  if (table) {
    for (const r of table.load(now(), max)) {
      const cut = r.value.indexOf('\n');
      m.set(r.key, { caller: r.value.slice(0, cut), skill: r.value.slice(cut + 1), expires: r.expires, saved: r.expires });
    }
  }
  /** `k` bound to caller and skill until `expires`, unless another caller owns it (at `t`). */
  const put = (k: string, caller: string, skill: string, t: number, expires: number): void => {
    const cur = m.get(k, t);
    if (cur && cur.caller !== caller) return;
    if (cur && cur.skill === skill) {
      m.refresh(cur, expires);
      if (table && expires - (cur.saved ?? 0) > ttlMs / 2) { cur.saved = expires; table.put(k, `${caller}\n${skill}`, expires); }
      return;
    }
    if (!table) { m.set(k, { caller, skill, expires }); return; }
    m.set(k, { caller, skill, expires, saved: expires });
    table.put(k, `${caller}\n${skill}`, expires);
  };
  return {
    get: (callee, kind, id) => m.get(keyOf(callee, kind, id), now()),
    bind(callee, ids, caller, skill) {
      const expires = now() + ttlMs;
      // Tasks then contexts, as each() orders them (no tuple per id, no closure or iterator per bind).
      for (let i = 0; i < ids.tasks.length; i++) put(keyOf(callee, 'task', ids.tasks[i]), caller, skill, expires - ttlMs, expires);
      for (let i = 0; i < ids.contexts.length; i++) put(keyOf(callee, 'context', ids.contexts[i]), caller, skill, expires - ttlMs, expires);
    },
    flush: () => table?.flush(),
  };
}

// KEYS: one per id. ARGV: value ("caller\nskill"), ttl ms. Sets each key not owned by another
// caller (refreshing its expiry); replies with the owner each key has afterwards.
const BIND = `
local out = {}
for i, k in ipairs(KEYS) do
  local cur = redis.call('GET', k)
  if cur and string.sub(cur, 1, #ARGV[3]) ~= ARGV[3] then
    out[i] = cur
  else
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = ARGV[1]
  end
end
return out
`;

type Scripted = { aamTaskBind(...a: Array<string | number>): Promise<string[]> };

/** The fleet: owners in Redis (a day after the last bind, like one process), copied locally once known. */
export class FleetTaskOwners implements TaskOwnerStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlMs: number;
  readonly #local: OwnerMap;
  /** Redis round trips, for the tests and benchmark notes. */
  calls = 0;

  constructor(redis: Redis, prefix: string, opts: { ttlMs?: number; maxLocal?: number } = {}) {
    this.#redis = redis;
    this.#prefix = `${prefix}a2a:`;
    this.#ttlMs = opts.ttlMs ?? DAY_MS;
    // The local copy lives shorter than the Redis key, so it never outlives the owner it mirrors.
    this.#local = new OwnerMap(opts.maxLocal ?? 50_000);
    redis.defineCommand('aamTaskBind', { lua: BIND });
  }

  #key(callee: string, kind: 'task' | 'context', id: string): string {
    return `${this.#prefix}${kind}:${encodeURIComponent(callee)}:${id}`;
  }

  #remember(k: string, value: string): TaskOwner {
    const cut = value.indexOf('\n');
    const o = { caller: value.slice(0, cut), skill: value.slice(cut + 1) };
    this.#local.set(k, { ...o, expires: Date.now() + Math.min(this.#ttlMs, 60 * 60 * 1000) });
    return o;
  }

  async get(callee: string, kind: 'task' | 'context', id: string): Promise<TaskOwner | undefined> {
    const k = keyOf(callee, kind, id);
    const held = this.#local.get(k, Date.now());
    if (held) return held;
    this.calls++;
    let v: string | null;
    try { v = await this.#redis.get(this.#key(callee, kind, id)); } catch (e) {
      throw new StoreUnavailable('redis', `A2A task owners: ${(e as Error).message}`);
    }
    return v === null ? undefined : this.#remember(k, v);
  }

  async bind(callee: string, ids: TaskIds, caller: string, skill: string): Promise<void> {
    const now = Date.now();
    const todo = each(ids).filter(([kind, id]) => this.#local.get(keyOf(callee, kind, id), now)?.caller !== caller);
    if (todo.length === 0) return;
    this.calls++;
    let owners: string[];
    try {
      owners = await (this.#redis as unknown as Scripted).aamTaskBind(todo.length, ...todo.map(([kind, id]) => this.#key(callee, kind, id)), `${caller}\n${skill}`, this.#ttlMs, `${caller}\n`);
    } catch (e) {
      throw new StoreUnavailable('redis', `A2A task owners: ${(e as Error).message}`);
    }
    todo.forEach(([kind, id], i) => this.#remember(keyOf(callee, kind, id), owners[i]));
  }
}
