// Held tool calls (approval: required) behind the store seam: the pending approval a held call
// creates, the person's decision, and the single use of an approved call. Embedded: SQLite in the
// data dir (here); fleet: PostgreSQL (fleet-approvals.ts), so a call held on one replica is released
// by a decision taken on any other (console, admin API, CLI) and every replica lists every held call.
// Nothing caches approvals: each check reads the store, so a decision counts at once everywhere.
import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';

export const APPROVAL_STATUSES = ['pending', 'approved', 'rejected', 'used', 'expired'] as const;
export type ApprovalStatus = typeof APPROVAL_STATUSES[number];

/** One call that a decision held: who, what, with which arguments (digest), and the rule that held it. */
export interface HeldCall {
  spiffeId: string;
  agent: string;
  /** 'mcp' or 'http' */
  plane: string;
  /** "<server>/<tool>" for MCP, "<httptool>/<action>" for HTTP tools. */
  target: string;
  resource: string;
  action: string;
  argsDigest: string;
  policy: string;
  rule: number;
  reason: string;
  /** The call's arguments as a reviewer may see them (credentials scrubbed, PII redacted; JSON text), when recorded. */
  argsForReview?: string;
}

/** A held call's record: the call, its state and who decided it when. */
export interface Approval extends HeldCall {
  id: string;
  status: ApprovalStatus;
  createdAt: string;
  expiresAt: string;
  decidedBy?: string;
  decidedAt?: string;
}

export interface Approvals {
  /**
   * A call a decision held. 'approved' (and the approval is used up) when a person approved this
   * exact call (same identity, target and argument digest) within the window; otherwise the
   * pending approval, created on first sight.
   */
  check(call: HeldCall): Promise<{ status: 'approved' | 'pending'; approval: Approval }>;
  list(filter?: { status?: ApprovalStatus }): Promise<Approval[]>;
  get(id: string): Promise<Approval | undefined>;
  approve(id: string, actor: string): Promise<Approval>;
  reject(id: string, actor: string): Promise<Approval>;
}

export interface ApprovalOptions {
  /** How long a person has to decide, and how long an approved call may then be retried (default 15 min). */
  windowMs?: number;
  now?: () => number;
  /** A new held call (not a retry of one already pending): tell people. */
  onPending?: (a: Approval) => void;
}

export class ApprovalError extends Error {
  readonly status: number;
  constructor(message: string, status: number) { super(message); this.name = 'ApprovalError'; this.status = status; }
}

/** Columns as both stores keep them (times in epoch ms). */
export interface ApprovalRow {
  id: string; status: string; spiffe_id: string; agent: string; plane: string; target: string; resource: string; action: string;
  args_digest: string; policy: string; rule: number; reason: string; created_at: number | string; expires_at: number | string;
  decided_by: string | null; decided_at: number | string | null; args_review: string | null;
}

const iso = (ms: number | string) => new Date(Number(ms)).toISOString();

export function approvalOf(r: ApprovalRow): Approval {
  return {
    id: r.id, status: r.status as ApprovalStatus, spiffeId: r.spiffe_id, agent: r.agent, plane: r.plane, target: r.target,
    resource: r.resource, action: r.action, argsDigest: r.args_digest, policy: r.policy, rule: Number(r.rule), reason: r.reason,
    createdAt: iso(r.created_at), expiresAt: iso(r.expires_at),
    decidedBy: r.decided_by ?? undefined, decidedAt: r.decided_at === null ? undefined : iso(r.decided_at),
    ...(r.args_review === null ? {} : { argsForReview: r.args_review }),
  };
}

export const newApprovalId = () => 'apr_' + randomBytes(12).toString('base64url');

/** Why a decision did not apply: the approval is unknown (404) or no longer pending (409). */
export function undecidable(id: string, current: Approval | undefined, status: 'approved' | 'rejected'): ApprovalError {
  if (!current) return new ApprovalError(`approval "${id}" does not exist`, 404);
  return new ApprovalError(`approval "${id}" is ${current.status}, only pending approvals can be ${status}`, 409);
}

export function createApprovals(db: DatabaseSync, opts: ApprovalOptions = {}): Approvals {
  const windowMs = opts.windowMs ?? 15 * 60_000;
  const now = opts.now ?? Date.now;
  db.exec(`CREATE TABLE IF NOT EXISTS tool_approvals (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, spiffe_id TEXT NOT NULL, agent TEXT NOT NULL, plane TEXT NOT NULL,
    target TEXT NOT NULL, resource TEXT NOT NULL, action TEXT NOT NULL, args_digest TEXT NOT NULL,
    policy TEXT NOT NULL, rule INTEGER NOT NULL, reason TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, decided_by TEXT, decided_at INTEGER);
    CREATE INDEX IF NOT EXISTS tool_approvals_key ON tool_approvals (spiffe_id, plane, target, args_digest, status)`);
  // Added for the console's approvals inbox; stores made before it get the column here.
  if (!(db.prepare('PRAGMA table_info(tool_approvals)').all() as Array<{ name: string }>).some((c) => c.name === 'args_review')) {
    db.exec('ALTER TABLE tool_approvals ADD COLUMN args_review TEXT');
  }
  const findLive = db.prepare(`SELECT * FROM tool_approvals WHERE spiffe_id = ? AND plane = ? AND target = ? AND args_digest = ?
    AND status IN ('pending', 'approved') AND expires_at > ? ORDER BY status = 'approved' DESC, created_at DESC LIMIT 1`);
  const consume = db.prepare(`UPDATE tool_approvals SET status = 'used' WHERE id = ? AND status = 'approved' AND expires_at > ?`);
  const insert = db.prepare(`INSERT INTO tool_approvals (id, status, spiffe_id, agent, plane, target, resource, action, args_digest, policy, rule, reason, created_at, expires_at, args_review)
    VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const byId = db.prepare('SELECT * FROM tool_approvals WHERE id = ?');
  const decide = db.prepare(`UPDATE tool_approvals SET status = ?, decided_by = ?, decided_at = ?, expires_at = ? WHERE id = ? AND status = 'pending' AND expires_at > ?`);
  const expire = db.prepare(`UPDATE tool_approvals SET status = 'expired' WHERE status IN ('pending', 'approved') AND expires_at <= ?`);
  const listAll = db.prepare('SELECT * FROM tool_approvals ORDER BY created_at DESC LIMIT 1000');
  const listBy = db.prepare('SELECT * FROM tool_approvals WHERE status = ? ORDER BY created_at DESC LIMIT 1000');

  const get = (id: string) => { const r = byId.get(id) as ApprovalRow | undefined; return r ? approvalOf(r) : undefined; };

  function decideOne(id: string, actor: string, status: 'approved' | 'rejected'): Approval {
    const t = now();
    expire.run(t);
    const res = decide.run(status, actor, t, status === 'approved' ? t + windowMs : t, id, t);
    if (Number(res.changes) !== 1) throw undecidable(id, get(id), status);
    return get(id) as Approval;
  }

  // Synchronous underneath (one thread, one SQLite): each answer is final when it resolves.
  const sync = <T>(fn: () => T): Promise<T> => { try { return Promise.resolve(fn()); } catch (e) { return Promise.reject(e as Error); } };
  return {
    check: (c) => sync(() => {
      const t = now();
      const live = findLive.get(c.spiffeId, c.plane, c.target, c.argsDigest, t) as ApprovalRow | undefined;
      if (live?.status === 'approved' && Number(consume.run(live.id, t).changes) === 1) {
        return { status: 'approved' as const, approval: { ...approvalOf(live), status: 'used' as const } };
      }
      if (live?.status === 'pending') return { status: 'pending' as const, approval: approvalOf(live) };
      const id = newApprovalId();
      insert.run(id, c.spiffeId, c.agent, c.plane, c.target, c.resource, c.action, c.argsDigest,
        c.policy, c.rule, c.reason, t, t + windowMs, c.argsForReview ?? null);
      const made = get(id) as Approval;
      opts.onPending?.(made);
      return { status: 'pending' as const, approval: made };
    }),
    list: (filter) => sync(() => {
      expire.run(now());
      const rows = (filter?.status ? listBy.all(filter.status) : listAll.all()) as unknown as ApprovalRow[];
      return rows.map(approvalOf);
    }),
    get: (id) => sync(() => { expire.run(now()); return get(id); }),
    approve: (id, actor) => sync(() => decideOne(id, actor, 'approved')),
    reject: (id, actor) => sync(() => decideOne(id, actor, 'rejected')),
  };
}
