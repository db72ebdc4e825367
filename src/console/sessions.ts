// Console sessions and logins in progress. A session is a server-side record keyed by the SHA-256
// of a random id (the cookie holds the id, the store only its hash, so a copy of the store opens no
// session). It carries who the person is (never their role: that is looked up in the current
// config on every request), its CSRF token and an expiry no later than the ID token's. The ID token
// (kept for sign-out at the IdP, as id_token_hint) is sealed under a key derived from the session id,
// so the store alone cannot give it back either.
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

export interface Session extends HumanClaims {
  /** 'oidc' (a person from the IdP) or 'admin-token' (break-glass login). */
  kind: 'oidc' | 'admin-token';
  csrf: string;
  expiresAt: number;
  /** The ID token the session was opened with (sign-out at the IdP); OIDC sessions only. */
  idToken?: string;
  /** Break-glass sessions: a digest of the AAM_ADMIN_TOKEN they were opened with (the session ends when it changes). */
  tokenTag?: string;
}

export interface SessionStore {
  /** A new session; returns the cookie value (given out once, stored only as a hash). */
  create(s: Omit<Session, 'csrf'>): Promise<{ id: string; session: Session }>;
  get(id: string): Promise<Session | undefined>;
  delete(id: string): Promise<void>;
}

/** Logins between /console/login and /console/callback (one use each). */
export interface LoginStore {
  put(id: string, tx: LoginTransaction): Promise<void>;
  /** The transaction, removed: a callback can be redeemed once. */
  take(id: string): Promise<LoginTransaction | undefined>;
}

/** Longest a session lives even when the ID token allows more. */
export const MAX_SESSION_MS = 12 * 3600_000;
export const LOGIN_TTL_MS = 10 * 60_000;
/** Logins in progress held in memory are bounded: a flood of /console/login drops the oldest. */
const MAX_PENDING_LOGINS = 10_000;

const ID_SHAPE = /^[A-Za-z0-9_-]{43}$/;

function newSession(s: Omit<Session, 'csrf'>, now: number): { id: string; session: Session } {
  const id = randomBytes(32).toString('base64url');
  return { id, session: { ...s, expiresAt: Math.min(s.expiresAt, now + MAX_SESSION_MS), csrf: randomBytes(32).toString('base64url') } };
}

const idTokenKey = (id: string) => createHash('sha256').update('aam console id_token v1\0').update(id).digest();

/** The record as stored: the ID token sealed under the session id (which the store never holds). */
function storedSession(id: string, s: Session): string {
  const { idToken, ...rest } = s;
  return JSON.stringify(idToken ? { ...rest, idTokenSealed: seal(idTokenKey(id), idToken) } : rest);
}

function parseSession(id: string, text: string): Session {
  const r = JSON.parse(text) as Session & { idTokenSealed?: string };
  const idToken = typeof r.idTokenSealed === 'string' ? unseal(idTokenKey(id), r.idTokenSealed) ?? undefined : undefined;
  return { kind: r.kind === 'admin-token' ? 'admin-token' : 'oidc', sub: r.sub, email: r.email ?? undefined, groups: r.groups, csrf: r.csrf, expiresAt: r.expiresAt, ...(idToken ? { idToken } : {}), ...(typeof r.tokenTag === 'string' ? { tokenTag: r.tokenTag } : {}) };
}

export function createSqliteSessionStore(db: DatabaseSync, now: () => number = Date.now): SessionStore {
  db.exec(`CREATE TABLE IF NOT EXISTS console_session (
    id_hash TEXT PRIMARY KEY, record TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  const insert = db.prepare('INSERT INTO console_session (id_hash, record, created_at, expires_at) VALUES (?, ?, ?, ?)');
  const byId = db.prepare('SELECT record FROM console_session WHERE id_hash = ? AND expires_at > ?');
  const del = db.prepare('DELETE FROM console_session WHERE id_hash = ?');
  const purge = db.prepare('DELETE FROM console_session WHERE expires_at <= ?');
  return {
    async create(s) {
      const t = now();
      purge.run(t);
      const made = newSession(s, t);
      insert.run(sha256Hex(made.id), storedSession(made.id, made.session), t, made.session.expiresAt);
      return made;
    },
    async get(id) {
      if (!ID_SHAPE.test(id)) return undefined;
      const r = byId.get(sha256Hex(id), now()) as { record: string } | undefined;
      return r ? parseSession(id, r.record) : undefined;
    },
    async delete(id) { del.run(sha256Hex(id)); },
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
export function createRedisConsoleStores(redis: Redis, prefix: string, now: () => number = Date.now): { sessions: SessionStore; logins: LoginStore } {
  const sessionKey = (id: string) => `${prefix}console:session:${sha256Hex(id)}`;
  const loginKey = (id: string) => `${prefix}console:login:${sha256Hex(id)}`;
  return {
    sessions: {
      async create(s) {
        const made = newSession(s, now());
        await redis.set(sessionKey(made.id), storedSession(made.id, made.session), 'PX', Math.max(1, made.session.expiresAt - now()));
        return made;
      },
      async get(id) {
        if (!ID_SHAPE.test(id)) return undefined;
        const text = await redis.get(sessionKey(id));
        const s = text ? parseSession(id, text) : undefined;
        return s && s.expiresAt > now() ? s : undefined;
      },
      async delete(id) { await redis.del(sessionKey(id)); },
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
export function consoleStores(rt: ConsoleRuntime): { sessions: SessionStore; logins: LoginStore } {
  const f = rt.fleet?.fleet;
  return f ? createRedisConsoleStores(f.redis, f.prefix) : { sessions: createSqliteSessionStore(rt.db), logins: createMemoryLoginStore() };
}
