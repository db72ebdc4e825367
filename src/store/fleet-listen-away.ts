// Dropped 2026-07-28 listen streams on the fleet store (Redis), so a caller whose stream dropped on
// one replica is sent what it missed by whichever replica it listens on next (ListenAwayStore).
// One hash per caller + endpoint (field = the dropped stream's id, value = its record as JSON with
// when it was kept and when it expires, by Redis's clock); the hash expires a minute after the last
// record's grace. Every call is one script (one round trip) on the one key: claim is atomic, so two
// replicas that the caller listens on at once never both get the same catch-up.
import type { Redis } from './redis.ts';
import type { Fleet } from './fleet.ts';
import { StoreUnavailable, type ListenAwayRecord, type ListenAwayStore } from './types.ts';

/** The fleet bus's kind for "this dropped stream was taken over" (its holder releases it). */
const RELEASED = 'mcp-listen-taken';

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS[1] hash. ARGV: id, record JSON, ttlMs.
const PUT = `${NOW}
local r = cjson.decode(ARGV[2])
local ttl = tonumber(ARGV[3])
r.at = now
r.exp = now + ttl
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
if redis.call('PTTL', KEYS[1]) < ttl + 60000 then redis.call('PEXPIRE', KEYS[1], ttl + 60000) end
return 1
`;

// KEYS[1] hash. ARGV: id, 'lists' | 'uris', value, max URIs.
const MISSED = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
local r = cjson.decode(v)
if r.unknown then return 1 end
local t = r[ARGV[2]]
if type(t) ~= 'table' then t = {} end
for _, x in ipairs(t) do if x == ARGV[3] then return 1 end end
t[#t + 1] = ARGV[3]
r[ARGV[2]] = t
if ARGV[2] == 'uris' and #t > tonumber(ARGV[4]) then r.unknown = true; r.uris = {} end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
return 1
`;

// KEYS[1] hash. ARGV: sig. Reply: { id, record JSON as it was } or {}. Expired records are dropped.
const CLAIM = `${NOW}
local h = redis.call('HGETALL', KEYS[1])
local same, latest
for i = 1, #h, 2 do
  local r = cjson.decode(h[i + 1])
  if r.exp <= now then redis.call('HDEL', KEYS[1], h[i])
  elseif not r.claimed then
    local c = { id = h[i], raw = h[i + 1], r = r }
    if r.sig == ARGV[1] and (not same or r.at < same.r.at) then same = c end
    if not latest or r.at >= latest.r.at then latest = c end
  end
end
local c = same or latest
if not c then return {} end
c.r.claimed = true
c.r.lists = {}
c.r.uris = {}
c.r.unknown = false
redis.call('HSET', KEYS[1], c.id, cjson.encode(c.r))
return { c.id, c.raw }
`;

// KEYS[1] hash. ARGV: id. Reply: the record JSON, or false.
const TAKE = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
`;

type Scripted = {
  aamAwayPut(...a: Array<string | number>): Promise<number>;
  aamAwayMissed(...a: Array<string | number>): Promise<number>;
  aamAwayClaim(...a: Array<string | number>): Promise<string[]>;
  aamAwayTake(...a: Array<string | number>): Promise<string | null>;
};

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
function record(json: string): ListenAwayRecord {
  const r = JSON.parse(json) as Record<string, unknown>;
  return { holder: String(r.holder), sig: String(r.sig), want: strings(r.want), subs: strings(r.subs), lists: strings(r.lists), uris: strings(r.uris), unknown: r.unknown === true };
}

export class FleetListenAway implements ListenAwayStore {
  readonly #r: Scripted;
  readonly #prefix: string;
  readonly #bus: Pick<Fleet, 'announce' | 'follow'> | undefined;
  readonly #local: Array<(id: string) => void> = [];

  constructor(redis: Redis, prefix: string, bus?: Pick<Fleet, 'announce' | 'follow'>) {
    redis.defineCommand('aamAwayPut', { numberOfKeys: 1, lua: PUT });
    redis.defineCommand('aamAwayMissed', { numberOfKeys: 1, lua: MISSED });
    redis.defineCommand('aamAwayClaim', { numberOfKeys: 1, lua: CLAIM });
    redis.defineCommand('aamAwayTake', { numberOfKeys: 1, lua: TAKE });
    this.#r = redis as unknown as Scripted;
    this.#prefix = prefix;
    this.#bus = bus;
  }

  /** One hash per caller and endpoint ('' = /mcp; a server name is never empty). */
  #key(who: string, scope: string | null): string { return `${this.#prefix}mcp:away:${encodeURIComponent(scope ?? '')}:${who}`; }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try { return await fn(); } catch (e) { throw new StoreUnavailable('redis', `MCP listen catch-up: ${(e as Error).message}`); }
  }

  async put(who: string, scope: string | null, id: string, rec: ListenAwayRecord, ttlMs: number): Promise<void> {
    await this.#run(() => this.#r.aamAwayPut(this.#key(who, scope), id, JSON.stringify(rec), Math.max(1, Math.round(ttlMs))));
  }

  async missed(who: string, scope: string | null, id: string, kind: 'list' | 'uri', value: string, max: number): Promise<void> {
    await this.#run(() => this.#r.aamAwayMissed(this.#key(who, scope), id, kind === 'list' ? 'lists' : 'uris', value, max));
  }

  async claim(who: string, scope: string | null, sig: string): Promise<{ id: string; rec: ListenAwayRecord } | null> {
    const reply = await this.#run(() => this.#r.aamAwayClaim(this.#key(who, scope), sig));
    return reply.length === 2 ? { id: reply[0], rec: record(reply[1]) } : null;
  }

  async take(who: string, scope: string | null, id: string): Promise<ListenAwayRecord | null> {
    const v = await this.#run(() => this.#r.aamAwayTake(this.#key(who, scope), id));
    return typeof v === 'string' ? record(v) : null;
  }

  async release(id: string): Promise<void> {
    if (!this.#bus) { for (const fn of this.#local) fn(id); return; }
    await this.#run(() => this.#bus!.announce(RELEASED, id));
  }

  onReleased(fn: (id: string) => void): void {
    if (!this.#bus) { this.#local.push(fn); return; }
    // Without a payload: the bus reconnected; a release missed meanwhile ends with the grace.
    this.#bus.follow(RELEASED, (payload) => { if (payload !== undefined) fn(payload); });
  }
}
