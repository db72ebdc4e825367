// Console sessions: server-side rows keyed by the SHA-256 of a random id (the cookie holds the id,
// the table only its hash, so a copy of the database opens no session). Each row carries who the
// person is (never their role: that is looked up in the current config on every request), its
// CSRF token and an expiry no later than the ID token's.
import { createHash, randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { HumanClaims } from './roles.ts';

export interface Session extends HumanClaims {
  /** 'oidc' (a person from the IdP) or 'admin-token' (break-glass login). */
  kind: 'oidc' | 'admin-token';
  csrf: string;
  expiresAt: number;
}

export interface SessionStore {
  /** A new session; returns the cookie value (shown once, stored only as a hash). */
  create(s: Omit<Session, 'csrf'>): { id: string; session: Session };
  get(id: string): Session | undefined;
  delete(id: string): void;
}

/** Longest a session lives even when the ID token allows more. */
export const MAX_SESSION_MS = 12 * 3600_000;

const hashId = (id: string) => createHash('sha256').update(id).digest('hex');

interface Row { kind: string; sub: string; email: string | null; groups: string; csrf: string; expires_at: number }

export function createSessionStore(db: DatabaseSync, now: () => number = Date.now): SessionStore {
  db.exec(`CREATE TABLE IF NOT EXISTS console_sessions (
    id_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, sub TEXT NOT NULL, email TEXT, groups TEXT NOT NULL,
    csrf TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  const insert = db.prepare('INSERT INTO console_sessions (id_hash, kind, sub, email, groups, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const byId = db.prepare('SELECT kind, sub, email, groups, csrf, expires_at FROM console_sessions WHERE id_hash = ? AND expires_at > ?');
  const del = db.prepare('DELETE FROM console_sessions WHERE id_hash = ?');
  const purge = db.prepare('DELETE FROM console_sessions WHERE expires_at <= ?');
  return {
    create(s) {
      const t = now();
      purge.run(t);
      const id = randomBytes(32).toString('base64url');
      const session: Session = { ...s, expiresAt: Math.min(s.expiresAt, t + MAX_SESSION_MS), csrf: randomBytes(32).toString('base64url') };
      insert.run(hashId(id), session.kind, session.sub, session.email ?? null, JSON.stringify(session.groups), session.csrf, t, session.expiresAt);
      return { id, session };
    },
    get(id) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
      const r = byId.get(hashId(id), now()) as Row | undefined;
      if (!r) return undefined;
      return { kind: r.kind === 'admin-token' ? 'admin-token' : 'oidc', sub: r.sub, email: r.email ?? undefined, groups: JSON.parse(r.groups) as string[], csrf: r.csrf, expiresAt: r.expires_at };
    },
    delete(id) { del.run(hashId(id)); },
  };
}
