// One-time join tokens: an admin creates one for an Agent; the agent exchanges it exactly once for
// a JWT-SVID. Only a SHA-256 of the token is stored; redemption is one atomic UPDATE, so two
// concurrent exchanges of the same token cannot both succeed: in the data dir's SQLite, or in a
// fleet's PostgreSQL (join_tokens), where one winner holds across every replica.
import { randomBytes, randomUUID } from 'node:crypto';
import { sha256Hex } from '../lib/hash.ts';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { Sql } from '../store/postgres.ts';
import type { Issuer } from './issuer.ts';
import type { AgentRegistry } from './registry.ts';
import { issueAgentSvid, type IssuedSvid } from './issue.ts';

export const JOIN_TOKEN_PREFIX = 'aamjoin_';
export const DEFAULT_JOIN_TTL_SECONDS = 3600;
export const MAX_JOIN_TTL_SECONDS = 7 * 86400;

export interface JoinTokenInfo { id: string; agent: string; createdAt: number; expiresAt: number; usedAt?: number; revokedAt?: number; createdBy?: string }
export type RedeemResult =
  | { ok: true; id: string; agent: string }
  | { ok: false; reason: 'invalid' | 'expired' | 'used' | 'revoked'; message: string };

type Maybe<T> = T | Promise<T>;
type Created = { id: string; token: string; expiresAt: number };

/** Embedded (SQLite, synchronous) or fleet (PostgreSQL): callers await every answer. */
export interface JoinTokenStore {
  /** The plaintext token is returned once and never stored. Times are seconds since epoch. */
  create(o: { agent: string; ttlSeconds?: number; createdBy?: string }): Maybe<Created>;
  redeem(token: string): Maybe<RedeemResult>;
  revoke(id: string): Maybe<boolean>;
  list(): Maybe<JoinTokenInfo[]>;
}

/** The embedded store answers at once. */
export interface EmbeddedJoinTokenStore extends JoinTokenStore {
  create(o: { agent: string; ttlSeconds?: number; createdBy?: string }): Created;
  redeem(token: string): RedeemResult;
  revoke(id: string): boolean;
  list(): JoinTokenInfo[];
}


/** A new token (id, plaintext, hash) after checking its ttl. */
function newToken(ttl: number): { id: string; token: string; hash: string } {
  if (!Number.isInteger(ttl) || ttl <= 0 || ttl > MAX_JOIN_TTL_SECONDS) {
    throw new Error(`join token ttl must be 1..${MAX_JOIN_TTL_SECONDS} seconds (7d), got ${ttl}`);
  }
  const token = JOIN_TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { id: randomUUID(), token, hash: sha256Hex(token) };
}

/** Why a token that did not redeem was refused (st: its row, if any). */
function refusal(st: { used_at: unknown; revoked_at: unknown } | undefined): RedeemResult {
  if (!st) return { ok: false, reason: 'invalid', message: 'unknown join token' };
  if (st.revoked_at !== null) return { ok: false, reason: 'revoked', message: 'join token was revoked' };
  if (st.used_at !== null) return { ok: false, reason: 'used', message: 'join token was already used; ask an admin for a new one' };
  return { ok: false, reason: 'expired', message: 'join token has expired; ask an admin for a new one' };
}

const notAToken = (token: unknown): RedeemResult | null =>
  typeof token !== 'string' || !token.startsWith(JOIN_TOKEN_PREFIX) ? { ok: false, reason: 'invalid', message: 'not a join token' } : null;

const infoOf = (r: Record<string, string | number | null>): JoinTokenInfo => ({
  id: String(r.id), agent: String(r.agent), createdAt: Number(r.created_at), expiresAt: Number(r.expires_at),
  ...(r.used_at !== null ? { usedAt: Number(r.used_at) } : {}),
  ...(r.revoked_at !== null ? { revokedAt: Number(r.revoked_at) } : {}),
  ...(r.created_by !== null ? { createdBy: String(r.created_by) } : {}),
});

export function createJoinTokenStore(db: DatabaseSync, opts: { now?: () => number } = {}): EmbeddedJoinTokenStore {
  const now = () => Math.floor((opts.now ?? Date.now)() / 1000);
  db.exec(`CREATE TABLE IF NOT EXISTS identity_join_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    agent TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    revoked_at INTEGER,
    created_by TEXT
  )`);
  const insert = db.prepare('INSERT INTO identity_join_tokens (id, hash, agent, created_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?)');
  const consume: StatementSync = db.prepare(`UPDATE identity_join_tokens SET used_at = ?
    WHERE hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ? RETURNING id, agent`);
  const byHash = db.prepare('SELECT expires_at, used_at, revoked_at FROM identity_join_tokens WHERE hash = ?');
  const revokeStmt = db.prepare('UPDATE identity_join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL AND used_at IS NULL');
  const listStmt = db.prepare('SELECT id, agent, created_at, expires_at, used_at, revoked_at, created_by FROM identity_join_tokens ORDER BY created_at, id');

  return {
    create(o) {
      const ttl = o.ttlSeconds ?? DEFAULT_JOIN_TTL_SECONDS;
      const n = newToken(ttl);
      const t = now();
      insert.run(n.id, n.hash, o.agent, t, t + ttl, o.createdBy ?? null);
      return { id: n.id, token: n.token, expiresAt: t + ttl };
    },
    redeem(token) {
      const bad = notAToken(token);
      if (bad) return bad;
      const h = sha256Hex(token);
      const t = now();
      const row = consume.get(t, h, t) as { id: string; agent: string } | undefined;
      if (row) return { ok: true, id: row.id, agent: row.agent };
      return refusal(byHash.get(h) as { used_at: number | null; revoked_at: number | null } | undefined);
    },
    revoke: (id) => Number(revokeStmt.run(now(), id).changes) > 0,
    list: () => (listStmt.all() as Array<Record<string, string | number | null>>).map(infoOf),
  };
}

/** The fleet's join tokens (PostgreSQL join_tokens): redeemed once across every replica. */
export function fleetJoinTokenStore(sql: Sql, opts: { now?: () => number } = {}): JoinTokenStore {
  const now = () => Math.floor((opts.now ?? Date.now)() / 1000);
  return {
    async create(o) {
      const ttl = o.ttlSeconds ?? DEFAULT_JOIN_TTL_SECONDS;
      const n = newToken(ttl);
      const t = now();
      await sql`INSERT INTO join_tokens (id, hash, agent, created_at, expires_at, created_by)
        VALUES (${n.id}, ${n.hash}, ${o.agent}, ${t}, ${t + ttl}, ${o.createdBy ?? null})`;
      return { id: n.id, token: n.token, expiresAt: t + ttl };
    },
    async redeem(token) {
      const bad = notAToken(token);
      if (bad) return bad;
      const h = sha256Hex(token);
      const t = now();
      // One conditional UPDATE: of concurrent redemptions on any replicas, exactly one gets the row.
      const [row] = await sql<Array<{ id: string; agent: string }>>`UPDATE join_tokens SET used_at = ${t}
        WHERE hash = ${h} AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ${t} RETURNING id, agent`;
      if (row) return { ok: true, id: row.id, agent: row.agent };
      const [st] = await sql<Array<{ used_at: string | null; revoked_at: string | null }>>`SELECT used_at, revoked_at FROM join_tokens WHERE hash = ${h}`;
      return refusal(st);
    },
    async revoke(id) {
      const r = await sql`UPDATE join_tokens SET revoked_at = ${now()} WHERE id = ${id} AND revoked_at IS NULL AND used_at IS NULL`;
      return r.count > 0;
    },
    async list() {
      const rows = await sql<Array<Record<string, string | number | null>>>`SELECT id, agent, created_at, expires_at, used_at, revoked_at, created_by
        FROM join_tokens ORDER BY created_at, id`;
      return rows.map(infoOf);
    },
  };
}

/** Token endpoint helper: redeem a join token and mint a JWT-SVID for its (still registered) agent. */
export async function exchangeJoinToken(
  store: JoinTokenStore,
  issuer: Pick<Issuer, 'mint'>,
  registry: Pick<AgentRegistry, 'byName' | 'all'>,
  token: string,
  o: { ttlSeconds?: number; audience?: string | string[] } = {},
): Promise<{ ok: true; svid: IssuedSvid } | { ok: false; reason: string; message: string }> {
  const r = await store.redeem(token);
  if (!r.ok) return r;
  if (!registry.byName(r.agent)) return { ok: false, reason: 'unknown_agent', message: `Agent "${r.agent}" no longer exists in the config` };
  return { ok: true, svid: await issueAgentSvid(issuer, registry, { agent: r.agent, ...o }) };
}
