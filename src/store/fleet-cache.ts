// The response cache on the fleet store (Redis), so an answer cached through one replica is a hit
// on every other. Exact entries: one string per key (the key is already per scope, route, route
// version and request), expiring with the route's TTL, bounded in count and bytes by an index
// (sorted set by expiry, member "bytes|key"): storing evicts expired entries, then the soonest to
// expire, until the new one fits. Semantic entries: appended to one capped stream that every
// replica tails into its in-memory index (the cosine scan stays local); a starting replica reads
// the live ones back. Redis is never asked to evict (maxmemory) for this: budgets share it.
import type { Fleet } from './fleet.ts';
import type { Redis } from './redis.ts';
import { StoreUnavailable, type SharedCache, type SharedSemanticEntry } from './types.ts';

export interface FleetCacheOptions {
  /** Exact entries in Redis, fleet-wide (default 10,000). */
  maxEntries?: number;
  /** Their bytes (default 256 MiB). */
  maxBytes?: number;
  /** Semantic entries kept in the stream (default 20,000, the per-replica index bound). */
  maxSemantic?: number;
  onError?: (what: string, e: unknown) => void;
}

// KEYS: entry key, index zset, bytes counter. ARGV: key prefix, member ("bytes|hash"), hash, body, expiresAt, maxEntries, maxBytes, bytes.
const PUT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p, member, body, exp = ARGV[1], ARGV[2], ARGV[4], tonumber(ARGV[5])
local maxN, maxB, bytes = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if exp <= now then return 0 end
local function drop(list, del)
  local sum = 0
  for _, m in ipairs(list) do
    local b, h = string.match(m, '^(%d+)|(.*)$')
    sum = sum + tonumber(b)
    if del then redis.call('DEL', p .. h) end
  end
  if sum > 0 then redis.call('DECRBY', KEYS[3], sum) end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now), false)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
while redis.call('ZCARD', KEYS[2]) >= maxN or total + bytes > maxB do
  local out = redis.call('ZPOPMIN', KEYS[2], 1)
  if #out == 0 then break end
  drop({ out[1] }, true)
  total = tonumber(redis.call('GET', KEYS[3]) or '0')
end
redis.call('SET', KEYS[1], body, 'PXAT', exp)
redis.call('ZADD', KEYS[2], exp, member)
redis.call('INCRBY', KEYS[3], bytes)
return 1
`;

type Scripted = { aamCachePut(...a: Array<string | number>): Promise<number> };

/** The Redis key of an exact entry (the admission script reads it too: one round trip on cached routes). */
export const exactCacheKey = (fleetPrefix: string, key: string): string => `${fleetPrefix}cache:x:${key}`;

/** An exact entry as stored: "expiresAt\nentry". */
export function parseCacheValue(v: string): { entry: string; expiresAt: number } {
  const cut = v.indexOf('\n');
  return { expiresAt: Number(v.slice(0, cut)), entry: v.slice(cut + 1) };
}

export class FleetCache implements SharedCache {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #replica: string;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #maxSemantic: number;
  readonly #onError: (what: string, e: unknown) => void;
  readonly #followers: Array<(e: SharedSemanticEntry) => void> = [];
  #reader: Redis | null = null;
  #closed = false;
  /** Redis round trips on the request path (lookups), for the benchmark notes and tests. */
  calls = 0;

  constructor(fleet: Fleet, opts: FleetCacheOptions = {}) {
    this.#redis = fleet.redis;
    this.#prefix = `${fleet.prefix}cache:`;
    this.#replica = fleet.replicaId;
    this.#maxEntries = opts.maxEntries ?? 10_000;
    this.#maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
    this.#maxSemantic = opts.maxSemantic ?? 20_000;
    this.#onError = opts.onError ?? (() => {});
    fleet.redis.defineCommand('aamCachePut', { numberOfKeys: 3, lua: PUT });
  }

  async get(key: string): Promise<{ entry: string; expiresAt: number } | null> {
    this.calls++;
    let v: string | null;
    try { v = await this.#redis.get(`${this.#prefix}x:${key}`); } catch (e) { throw new StoreUnavailable('redis', `response cache: ${(e as Error).message}`); }
    return v === null ? null : parseCacheValue(v);
  }

  set(key: string, entry: string, expiresAt: number): void {
    const body = `${expiresAt}\n${entry}`;
    const bytes = Buffer.byteLength(body);
    (this.#redis as unknown as Scripted).aamCachePut(`${this.#prefix}x:${key}`, `${this.#prefix}xi`, `${this.#prefix}xb`,
      `${this.#prefix}x:`, `${bytes}|${key}`, key, body, expiresAt, this.#maxEntries, this.#maxBytes, bytes)
      .catch((e: unknown) => this.#onError('cache store', e));
  }

  publishSemantic(e: SharedSemanticEntry): void {
    const vec = Buffer.from(e.embedding.buffer, e.embedding.byteOffset, e.embedding.byteLength).toString('base64');
    this.#redis.xadd(`${this.#prefix}sem`, 'MAXLEN', '~', String(this.#maxSemantic), '*',
      'r', this.#replica, 's', e.scopeKey, 'o', e.route, 'v', e.routeVersion, 'c', e.context, 'e', vec, 'b', e.entry, 'x', String(e.expiresAt))
      .catch((err: unknown) => this.#onError('semantic cache store', err));
  }

  onSemantic(fn: (e: SharedSemanticEntry) => void): void {
    this.#followers.push(fn);
    if (!this.#reader) void this.#tail();
  }

  /** Read the stream from its start (live entries only), then block for new ones; retry while Redis is away. */
  async #tail(): Promise<void> {
    const reader = this.#redis.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined });
    reader.on('error', () => {});
    this.#reader = reader;
    let last = '0';
    while (!this.#closed) {
      try {
        const got = await reader.xread('COUNT', 500, 'BLOCK', 5000, 'STREAMS', `${this.#prefix}sem`, last);
        for (const [, entries] of got ?? []) {
          for (const [id, fields] of entries) {
            last = id;
            this.#deliver(fields);
          }
        }
      } catch (e) {
        if (this.#closed) return;
        this.#onError('semantic cache follow', e);
        await new Promise((r) => setTimeout(r, 500).unref());
      }
    }
  }

  #deliver(fields: string[]): void {
    const f: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]] = fields[i + 1];
    const expiresAt = Number(f.x);
    if (f.r === this.#replica || !(expiresAt > Date.now())) return; // our own (already indexed), or dead
    const b = Buffer.from(f.e, 'base64');
    const embedding = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    const e: SharedSemanticEntry = { scopeKey: f.s, route: f.o, routeVersion: f.v, context: f.c, embedding, entry: f.b, expiresAt };
    for (const fn of this.#followers) fn(e);
  }

  close(): void {
    this.#closed = true;
    this.#reader?.disconnect();
  }
}
