// MCP session registry on the fleet store (Redis): a session opened on one replica continues on
// any other, bound to the identity that opened it. One hash per session (expiring when idle, its
// expiry restarted by every use) and one sorted set per cap (all, per identity, per trust domain;
// member = session id, score = when it goes idle), so the caps count fleet-wide and a session that
// just went idle stops counting without anyone closing it. Every call is one script: one round trip.
// The per-cap set names are built in the scripts from the record; they share the fleet's {…} hash
// tag, so they live in the session key's cluster slot.
import type { Redis } from './redis.ts';
import type { Fleet } from './fleet.ts';
import { FleetListenAway } from './fleet-listen-away.ts';
import { LOG_LEVEL_HOLD, StoreUnavailable, type McpSessionCaps, type McpSessionNote, type McpSessionOpened, type McpSessionRecord, type McpSessionRegistry } from './types.ts';

/** The fleet bus's kind for session notifications (McpSessionRegistry.notify). */
const NOTE = 'mcp-note';

// Shared by the scripts: the time, and the cap sets of a record (owner, domain; '' = none).
const SETS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local p = ARGV[1]
local function sets(owner, domain)
  local s = { p .. 'mcp:all', p .. 'mcp:who:' .. owner }
  if domain ~= '' then s[3] = p .. 'mcp:dom:' .. domain end
  return s
end
`;

// KEYS[1] session hash. ARGV: prefix, id, idleMs, total, perIdentity, perDomain, owner, scope, domain, key, generation.
const OPEN = `${SETS}
local id, idle = ARGV[2], tonumber(ARGV[3])
local caps = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]) }
local s = sets(ARGV[7], ARGV[9])
local names = { 'total', 'identity', 'domain' }
local counts = {}
for i, k in ipairs(s) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  counts[i] = redis.call('ZCARD', k)
end
for _, i in ipairs({ 2, 3, 1 }) do
  if counts[i] and counts[i] >= caps[i] then return { names[i], counts[i] } end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[7], 'scope', ARGV[8], 'domain', ARGV[9], 'key', ARGV[10], 'gen', ARGV[11], 'idle', idle)
redis.call('PEXPIRE', KEYS[1], idle)
for _, k in ipairs(s) do
  redis.call('ZADD', k, now + idle, id)
  redis.call('PEXPIRE', k, idle + 60000)
end
return { 'ok' }
`;

// KEYS[1] session hash. ARGV: prefix, id, idleMs. Reply: the hash's fields, or {} when gone.
const TOUCH = `${SETS}
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return h end
local idle = tonumber(ARGV[3])
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
redis.call('PEXPIRE', KEYS[1], idle)
for _, k in ipairs(sets(f.owner, f.domain)) do
  redis.call('ZADD', k, 'XX', now + idle, ARGV[2])
  if redis.call('PTTL', k) < idle + 60000 then redis.call('PEXPIRE', k, idle + 60000) end
end
return h
`;

// KEYS[1] session hash. ARGV: prefix, id.
const CLOSE = `${SETS}
local f = redis.call('HMGET', KEYS[1], 'owner', 'domain')
if not f[1] then return 0 end
for _, k in ipairs(sets(f[1], f[2] or '')) do redis.call('ZREM', k, ARGV[2]) end
return redis.call('DEL', KEYS[1])
`;

// KEYS[1] session hash. ARGV: field ('sub:' .. uri), holder ('' = none). Nothing for a session that is gone.
const HOLD = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
`;

/** The session hash's field naming the replica that holds its subscription to a URI. */
const heldField = (uri: string): string => `sub:${uri}`;

type Scripted = {
  aamMcpOpen(...a: Array<string | number>): Promise<unknown[]>;
  aamMcpTouch(...a: Array<string | number>): Promise<string[]>;
  aamMcpClose(...a: Array<string | number>): Promise<number>;
  aamMcpHold(...a: Array<string | number>): Promise<number>;
  hmget(key: string, ...fields: string[]): Promise<Array<string | null>>;
};

export class FleetMcpSessions implements McpSessionRegistry {
  readonly #r: Scripted;
  readonly #prefix: string;
  /** Redis round trips (for the benchmark notes and tests). */
  calls = 0;

  readonly #bus: Pick<Fleet, 'announce' | 'follow'> | undefined;
  readonly #local: Array<(id: string, message: McpSessionNote) => void> = [];
  /** Dropped 2026-07-28 listen streams, claimed by the replica their caller listens on next. */
  readonly listenAway: FleetListenAway;

  /** `bus`: the fleet's pub/sub (notify reaches every replica); without it, this process only. */
  constructor(redis: Redis, prefix: string, bus?: Pick<Fleet, 'announce' | 'follow'>) {
    this.#bus = bus;
    redis.defineCommand('aamMcpOpen', { numberOfKeys: 1, lua: OPEN });
    redis.defineCommand('aamMcpTouch', { numberOfKeys: 1, lua: TOUCH });
    redis.defineCommand('aamMcpClose', { numberOfKeys: 1, lua: CLOSE });
    redis.defineCommand('aamMcpHold', { numberOfKeys: 1, lua: HOLD });
    this.#r = redis as unknown as Scripted;
    this.#prefix = prefix;
    this.listenAway = new FleetListenAway(redis, prefix, bus);
  }

  #key(id: string): string { return `${this.#prefix}mcp:s:${id}`; }

  notify(id: string, message: McpSessionNote): Promise<void> | void {
    if (this.#bus) return this.#bus.announce(NOTE, JSON.stringify({ id, message }));
    for (const fn of this.#local) fn(id, message);
  }

  onNotify(fn: (id: string, message: McpSessionNote) => void): void {
    if (!this.#bus) { this.#local.push(fn); return; }
    this.#bus.follow(NOTE, (payload) => {
      if (payload === undefined) return; // a reconnect: onResync's listeners re-read
      let note: { id?: unknown; message?: McpSessionNote };
      try { note = JSON.parse(payload) as typeof note; } catch { return; }
      if (typeof note.id === 'string' && typeof note.message?.method === 'string') fn(note.id, note.message);
    });
  }

  onResync(fn: () => void): void {
    // The bus calls its followers without a payload after it reconnected: notes may have been lost meanwhile.
    this.#bus?.follow(NOTE, (payload) => { if (payload === undefined) fn(); });
  }

  async hold(id: string, uri: string, holder: string | null): Promise<void> {
    await this.#run(() => this.#r.aamMcpHold(this.#key(id), heldField(uri), holder ?? ''));
  }

  async holders(id: string, uris: readonly string[]): Promise<Array<string | null> | null> {
    const [owner, ...held] = await this.#run(() => this.#r.hmget(this.#key(id), 'owner', ...uris.map(heldField)));
    return owner === null ? null : held;
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    this.calls++;
    try { return await fn(); } catch (e) { throw new StoreUnavailable('redis', `MCP session registry: ${(e as Error).message}`); }
  }

  async open(rec: McpSessionRecord, caps: McpSessionCaps): Promise<McpSessionOpened> {
    const reply = await this.#run(() => this.#r.aamMcpOpen(this.#key(rec.id), this.#prefix, rec.id, caps.idleMs, caps.total, caps.perIdentity, caps.perDomain,
      rec.owner, rec.scope ?? '', rec.domain ?? '', rec.keyId ?? '', rec.keyGeneration ?? ''));
    if (reply[0] === 'ok') return { ok: true };
    return { ok: false, limit: reply[0] as 'identity' | 'domain' | 'total', open: Number(reply[1]) };
  }

  async touch(id: string, idleMs: number): Promise<McpSessionRecord | null> {
    const h = await this.#run(() => this.#r.aamMcpTouch(this.#key(id), this.#prefix, id, idleMs));
    if (h.length === 0) return null;
    const f: Record<string, string> = {};
    for (let i = 0; i < h.length; i += 2) f[h[i]] = h[i + 1];
    return {
      id, owner: f.owner, scope: f.scope ? f.scope : null, domain: f.domain ? f.domain : null,
      ...(f.key ? { keyId: f.key } : {}), ...(f.gen ? { keyGeneration: f.gen } : {}),
      ...(f[heldField(LOG_LEVEL_HOLD)] ? { logLevel: f[heldField(LOG_LEVEL_HOLD)] } : {}),
    };
  }

  async close(id: string): Promise<void> {
    await this.#run(() => this.#r.aamMcpClose(this.#key(id), this.#prefix, id));
  }
}
