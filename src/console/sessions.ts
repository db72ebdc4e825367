// Console sessions and logins in progress. A session is a server-side record keyed by the SHA-256
// of a random id (the cookie holds the id, the store only its hash, so a copy of the store opens no
// session). It carries who the person is (never their role: that is looked up in the current
// config on every request), its CSRF token, when it was last used (the idle timeout) and when it
// ends. The ID token (kept for sign-out at the IdP, as id_token_hint) and the refresh token (to
// renew the session when the ID token runs out: renew.ts) are sealed under keys derived from the
// session id, so the store alone cannot give them back either.
// Embedded: SQLite in the data dir and an in-memory login map. Fleet: Redis with expiries, so a
// person may land on any replica (login started on one, callback on another, pages on a third).
import { createHash, randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { Redis } from '../store/redis.ts';
import type { HumanClaims } from './roles.ts';
import type { LoginTransaction } from './oidc.ts';
import type { ConsoleRuntime } from './plane.ts';
import { seal, unseal } from '../store/seal.ts';
import { sha256Hex } from '../lib/hash.ts';
import { parseDurationSeconds } from '../config/duration.ts';

export interface Session extends HumanClaims {
  /** 'oidc' (a person from the IdP) or 'admin-token' (break-glass login). */
  kind: 'oidc' | 'admin-token';
  csrf: string;
  /** When the session ends for good (epoch ms): the absolute maximum (a person's session is renewed until then, renew.ts). */
  expiresAt: number;
  /** Last request (epoch ms, written at most every TOUCH_MS): past the idle timeout the session ends. */
  seenAt: number;
  /** The ID token the session was opened (or last renewed) with (sign-out at the IdP); OIDC sessions only. */
  idToken?: string;
  /** The IdP's refresh token, when it gave one: the session is renewed with it (renew.ts); without one, by silent re-authorization. */
  refreshToken?: string;
  /** OIDC sessions: the current ID token's expiry (epoch ms); past it the session opens nothing until renewed. */
  idExp?: number;
  /** OIDC sessions: from when a request renews it (a little before idExp). */
  renewAt?: number;
  /** Break-glass sessions: a digest of the AAM_ADMIN_TOKEN they were opened with (the session ends when it changes). */
  tokenTag?: string;
}

/** What sign-in knows of a new session: expiresAt is the ID token's expiry (or the break-glass maximum). */
export type NewSession = Omit<Session, 'csrf' | 'seenAt' | 'idExp' | 'renewAt'>;

export interface SessionStore {
  /** A new session; returns the cookie value (given out once, stored only as a hash). */
  create(s: NewSession): Promise<{ id: string; session: Session }>;
  /**
   * The live session (not past its end nor idle too long), or undefined. Its last use is noted unless
   * `passive` (a live audit tail re-checking its reader: only a person's own requests keep a session from idling out).
   */
  get(id: string, passive?: boolean): Promise<Session | undefined>;
  /** Store a renewed session in place; false when it is gone meanwhile (signed out: it stays gone). */
  replace(id: string, s: Session): Promise<boolean>;
  delete(id: string): Promise<void>;
  /** One renewal of a session at a time (fleet-wide in Redis): true when this caller may renew it now. */
  claim(id: string, ttlMs: number): Promise<boolean>;
  release(id: string): Promise<void>;
}

/** Logins between /console/login and /console/callback (one use each). */
export interface LoginStore {
  put(id: string, tx: LoginTransaction): Promise<void>;
  /** The transaction, removed: a callback can be redeemed once. */
  take(id: string): Promise<LoginTransaction | undefined>;
}

/** How long sessions may live: at most `maxMs` from sign-in, and `idleMs` without a request. */
export interface SessionLimits { maxMs: number; idleMs: number }

/** Longest a session lives even when the ID token (or its renewals) allow more (AAM_CONSOLE_SESSION_MAX). */
export const MAX_SESSION_MS = 12 * 3600_000;
/** A session unused this long ends (AAM_CONSOLE_IDLE_TIMEOUT). */
export const IDLE_SESSION_MS = 3600_000;
export const DEFAULT_LIMITS: SessionLimits = { maxMs: MAX_SESSION_MS, idleMs: IDLE_SESSION_MS };
export const LOGIN_TTL_MS = 10 * 60_000;
/** Logins in progress held in memory are bounded: a flood of /console/login drops the oldest. */
const MAX_PENDING_LOGINS = 10_000;
/** A session's last use is written at most this often (a request a second must not mean a write a second). */
const TOUCH_MS = 60_000;
/** Renewal starts this long before the ID token runs out at most (a quarter of its life when that is shorter). */
const RENEW_AHEAD_MS = 60_000;

/** AAM_CONSOLE_SESSION_MAX and AAM_CONSOLE_IDLE_TIMEOUT (durations like 12h, 30m), else the defaults. */
export function sessionLimitsFrom(env: NodeJS.ProcessEnv): SessionLimits {
  const ms = (name: string, fallback: number) => (env[name] ? parseDurationSeconds(env[name]!, name) * 1000 : fallback);
  return { maxMs: ms('AAM_CONSOLE_SESSION_MAX', MAX_SESSION_MS), idleMs: ms('AAM_CONSOLE_IDLE_TIMEOUT', IDLE_SESSION_MS) };
}

const ID_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** When a renewable session's ID token expires at `idExp`, from when to renew it. */
export const renewFrom = (idExp: number, now: number): number => idExp - Math.min(RENEW_AHEAD_MS, Math.max(0, idExp - now) / 4);

/**
 * A session as sign-in opens it. A person's lives until the maximum, renewed as its ID token runs
 * out (with the refresh token, or by silent re-authorization at the IdP without one: renew.ts); a
 * break-glass one until the maximum it was given.
 */
function newSession(s: NewSession, now: number, limits: SessionLimits): { id: string; session: Session } {
  const id = randomBytes(32).toString('base64url');
  const end = now + limits.maxMs;
  const renewable = s.kind === 'oidc';
  const timing = renewable ? { expiresAt: end, idExp: s.expiresAt, renewAt: renewFrom(s.expiresAt, now) } : { expiresAt: Math.min(s.expiresAt, end) };
  return { id, session: { ...s, ...timing, seenAt: now, csrf: randomBytes(32).toString('base64url') } };
}

/** Until when the store keeps a session: its end, or sooner when it goes unused. */
const keptUntil = (s: Session, limits: SessionLimits): number => Math.min(s.expiresAt, s.seenAt + limits.idleMs);

const idTokenKey = (id: string) => createHash('sha256').update('aam console id_token v1\0').update(id).digest();
const refreshTokenKey = (id: string) => createHash('sha256').update('aam console refresh_token v1\0').update(id).digest();

/** The record as stored: the ID and refresh tokens sealed under the session id (which the store never holds). */
function storedSession(id: string, s: Session): string {
  const { idToken, refreshToken, ...rest } = s;
  return JSON.stringify({ ...rest, ...(idToken ? { idTokenSealed: seal(idTokenKey(id), idToken) } : {}), ...(refreshToken ? { refreshTokenSealed: seal(refreshTokenKey(id), refreshToken) } : {}) });
}

function parseSession(id: string, text: string): Session {
  const r = JSON.parse(text) as Session & { idTokenSealed?: string; refreshTokenSealed?: string };
  const idToken = typeof r.idTokenSealed === 'string' ? unseal(idTokenKey(id), r.idTokenSealed) ?? undefined : undefined;
  const refreshToken = typeof r.refreshTokenSealed === 'string' ? unseal(refreshTokenKey(id), r.refreshTokenSealed) ?? undefined : undefined;
  const num = (k: 'idExp' | 'renewAt') => (typeof r[k] === 'number' ? { [k]: r[k] } : {});
  return {
    kind: r.kind === 'admin-token' ? 'admin-token' : 'oidc', sub: r.sub, email: r.email ?? undefined, groups: r.groups, csrf: r.csrf, expiresAt: r.expiresAt,
    // Records written before idle timeouts existed count as used now.
    seenAt: typeof r.seenAt === 'number' ? r.seenAt : Date.now(),
    ...(idToken ? { idToken } : {}), ...(refreshToken ? { refreshToken } : {}), ...num('idExp'), ...num('renewAt'), ...(typeof r.tokenTag === 'string' ? { tokenTag: r.tokenTag } : {}),
  };
}

/** Is the session live at `now`, and is its last use old enough to note again? */
function liveness(s: Session, now: number, limits: SessionLimits): 'ended' | 'touch' | 'live' {
  if (s.expiresAt <= now || now - s.seenAt > limits.idleMs) return 'ended';
  return now - s.seenAt >= Math.min(TOUCH_MS, limits.idleMs / 4) ? 'touch' : 'live';
}

/** Renewals in progress in this process (an embedded gateway is one process per data dir). */
function localClaims(now: () => number): Pick<SessionStore, 'claim' | 'release'> {
  const held = new Map<string, number>();
  return {
    async claim(id, ttlMs) {
      const k = sha256Hex(id);
      const until = held.get(k);
      if (until !== undefined && until > now()) return false;
      held.set(k, now() + ttlMs);
      return true;
    },
    async release(id) { held.delete(sha256Hex(id)); },
  };
}

export function createSqliteSessionStore(db: DatabaseSync, now: () => number = Date.now, limits: SessionLimits = DEFAULT_LIMITS): SessionStore {
  db.exec(`CREATE TABLE IF NOT EXISTS console_session (
    id_hash TEXT PRIMARY KEY, record TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  const insert = db.prepare('INSERT INTO console_session (id_hash, record, created_at, expires_at) VALUES (?, ?, ?, ?)');
  const byId = db.prepare('SELECT record FROM console_session WHERE id_hash = ? AND expires_at > ?');
  const update = db.prepare('UPDATE console_session SET record = ?, expires_at = ? WHERE id_hash = ?');
  const del = db.prepare('DELETE FROM console_session WHERE id_hash = ?');
  const purge = db.prepare('DELETE FROM console_session WHERE expires_at <= ?');
  const put = (id: string, s: Session) => update.run(storedSession(id, s), keptUntil(s, limits), sha256Hex(id)).changes > 0;
  return {
    async create(s) {
      const t = now();
      purge.run(t);
      const made = newSession(s, t, limits);
      insert.run(sha256Hex(made.id), storedSession(made.id, made.session), t, keptUntil(made.session, limits));
      return made;
    },
    async get(id, passive = false) {
      if (!ID_SHAPE.test(id)) return undefined;
      const r = byId.get(sha256Hex(id), now()) as { record: string } | undefined;
      if (!r) return undefined;
      const s = parseSession(id, r.record);
      const state = liveness(s, now(), limits);
      if (state === 'ended') return undefined;
      if (state === 'touch' && !passive) { s.seenAt = now(); put(id, s); }
      return s;
    },
    async replace(id, s) { return put(id, s); },
    async delete(id) { del.run(sha256Hex(id)); },
    ...localClaims(now),
  };
}

export function createMemoryLoginStore(now: () => number = Date.now): LoginStore {
  const pending = new Map<string, LoginTransaction>();
  return {
    async put(id, tx) {
      for (const [k, t] of pending) if (pending.size >= MAX_PENDING_LOGINS || now() - t.createdAt > LOGIN_TTL_MS) pending.delete(k); else break;
      pending.set(id, tx);
    },
    async take(id) {
      const tx = pending.get(id);
      pending.delete(id);
      return tx && now() - tx.createdAt <= LOGIN_TTL_MS ? tx : undefined;
    },
  };
}

/** Fleet: sessions and logins in Redis, expiring with the session (PX), shared by every replica. */
export function createRedisConsoleStores(redis: Redis, prefix: string, now: () => number = Date.now, limits: SessionLimits = DEFAULT_LIMITS): { sessions: SessionStore; logins: LoginStore } {
  const sessionKey = (id: string) => `${prefix}console:session:${sha256Hex(id)}`;
  const renewKey = (id: string) => `${prefix}console:renewing:${sha256Hex(id)}`;
  const loginKey = (id: string) => `${prefix}console:login:${sha256Hex(id)}`;
  const ttl = (s: Session) => Math.max(1, keptUntil(s, limits) - now());
  // XX: only a session still there is written again (one signed out meanwhile stays gone).
  const put = async (id: string, s: Session) => (await redis.set(sessionKey(id), storedSession(id, s), 'PX', ttl(s), 'XX')) === 'OK';
  return {
    sessions: {
      async create(s) {
        const made = newSession(s, now(), limits);
        await redis.set(sessionKey(made.id), storedSession(made.id, made.session), 'PX', ttl(made.session));
        return made;
      },
      async get(id, passive = false) {
        if (!ID_SHAPE.test(id)) return undefined;
        const text = await redis.get(sessionKey(id));
        if (!text) return undefined;
        const s = parseSession(id, text);
        const state = liveness(s, now(), limits);
        if (state === 'ended') return undefined;
        if (state === 'touch' && !passive) { s.seenAt = now(); await put(id, s); }
        return s;
      },
      replace: put,
      async delete(id) { await redis.del(sessionKey(id)); },
      async claim(id, ttlMs) { return (await redis.set(renewKey(id), '1', 'PX', ttlMs, 'NX')) === 'OK'; },
      async release(id) { await redis.del(renewKey(id)); },
    },
    logins: {
      async put(id, tx) { await redis.set(loginKey(id), JSON.stringify(tx), 'PX', LOGIN_TTL_MS); },
      async take(id) {
        const text = await redis.getdel(loginKey(id));
        return text ? JSON.parse(text) as LoginTransaction : undefined;
      },
    },
  };
}

/** Where sessions and logins in progress live: the fleet's Redis (any replica), else the data dir and memory. */
export function consoleStores(rt: ConsoleRuntime, limits: SessionLimits = DEFAULT_LIMITS): { sessions: SessionStore; logins: LoginStore } {
  const f = rt.fleet?.fleet;
  return f ? createRedisConsoleStores(f.redis, f.prefix, Date.now, limits) : { sessions: createSqliteSessionStore(rt.db, Date.now, limits), logins: createMemoryLoginStore() };
}
