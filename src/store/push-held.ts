// Artifact text held back across A2A push notifications (a2a/chunks.ts PushArtifactText), per
// push route: in memory for one process, in Redis for a fleet, so the notifications of one task
// are joined whichever replica the load balancer sends each to. What a route holds may begin a
// secret, so Redis keeps it sealed under a subkey of the master key (AES-256-GCM, bound to the
// route's id: a value moved to another route's key does not open). Each write names the version
// it read (compare-and-set): two replicas passing notifications of one route at once cannot both
// build on the same held text; the one that loses reads again. Redis down: StoreUnavailable, and
// the notification is refused (503), never passed on unjoined.
import { randomBytes } from 'node:crypto';
import type { Redis } from './redis.ts';
import { sealParts, unsealParts } from './seal.ts';
import { StoreUnavailable } from './types.ts';

/** A route's held state (opaque text, a2a/chunks.ts) and the version to name when replacing it. */
export interface HeldTail { state: string; version: string }

export interface PushHeldStore {
  get(id: string): HeldTail | undefined | Promise<HeldTail | undefined>;
  /**
   * Replace route `id`'s held state if it is still at `version` (null: none held): `state` kept
   * for `ttlMs`, or none kept when `state` is null. Returns the new version ('' when none is
   * kept), or false when another writer changed it first.
   */
  put(id: string, state: string | null, version: string | null, ttlMs: number): string | false | Promise<string | false>;
}

/** One process: at most `max` routes (the caller bounds them lower), each until its expiry. */
export function memoryPushHeld(max = 20_000, now: () => number = Date.now): PushHeldStore {
  const m = new Map<string, HeldTail & { expires: number }>();
  let seq = 0;
  const live = (id: string) => {
    const e = m.get(id);
    if (e && e.expires < now()) { m.delete(id); return undefined; }
    return e;
  };
  return {
    get(id) {
      const e = live(id);
      return e && { state: e.state, version: e.version };
    },
    put(id, state, version, ttlMs) {
      if ((live(id)?.version ?? null) !== version) return false;
      if (state === null) { m.delete(id); return ''; }
      const v = String(++seq);
      m.delete(id);
      m.set(id, { state, version: v, expires: now() + ttlMs });
      if (m.size > max) m.delete(m.keys().next().value as string);
      return v;
    },
  };
}

// KEYS[1] the route's key; ARGV: the version read ('' = none), the new value ('' = delete), its TTL (ms).
const PUT = `
local cur = redis.call('GET', KEYS[1])
local v = ''
if cur then
  local at = string.find(cur, ':', 1, true)
  if at then v = string.sub(cur, 1, at - 1) end
end
if v ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1`;

type Scripted = Redis & { aamPushHeldPut(key: string, version: string, value: string, ttlMs: number): Promise<number> };

/**
 * A fleet: one Redis key per route holding text, `<version>:v1:<nonce>:<tag>:<ciphertext>`
 * (sealed with `key`, a 32-byte subkey of the master key, bound to the route id), expiring with it.
 */
export function redisPushHeld(redis: Redis, prefix: string, key: Buffer): PushHeldStore {
  redis.defineCommand('aamPushHeldPut', { numberOfKeys: 1, lua: PUT });
  const r = redis as Scripted;
  const k = (id: string) => `${prefix}a2a:held:${id}`;
  const down = (e: unknown) => new StoreUnavailable('redis', `A2A push held text: ${(e as Error).message}`);
  return {
    async get(id) {
      let raw: string | null;
      try { raw = await redis.get(k(id)); } catch (e) { throw down(e); }
      if (raw === null) return undefined;
      const [version, v, nonce, tag, ct] = raw.split(':');
      const state = v === 'v1' && nonce !== undefined && tag !== undefined && ct !== undefined
        ? unsealParts(key, { nonce: Buffer.from(nonce, 'base64'), tag: Buffer.from(tag, 'base64'), ciphertext: Buffer.from(ct, 'base64') }, Buffer.from(id))
        : null;
      // Not opened (another master key, or altered): refused like a store that cannot answer, never passed on unjoined.
      if (state === null) throw new StoreUnavailable('redis', `A2A push held text of route ${id} does not open with this replica's master key`);
      return { state, version };
    },
    async put(id, state, version, ttlMs) {
      let value = '';
      const next = state === null ? '' : randomBytes(8).toString('hex');
      if (state !== null) {
        const p = sealParts(key, state, Buffer.from(id));
        value = [next, 'v1', p.nonce.toString('base64'), p.tag.toString('base64'), p.ciphertext.toString('base64')].join(':');
      }
      let ok: number;
      try { ok = await r.aamPushHeldPut(k(id), version ?? '', value, Math.max(1, Math.round(ttlMs))); } catch (e) { throw down(e); }
      return ok === 1 ? next : false;
    },
  };
}
