// Held tool calls: a rule with `approval: required` turns a call into a pending approval; once an
// admin approves it, the same call (same identity, tool and argument digest) goes through once
// within the window. Stored in SQLite so approvals survive restarts and are shared by CLI and server.
import { createHash, randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { Identity } from '../identity/types.ts';
import type { Decision } from '../policy/types.ts';
import { canonicalJson } from './tool-integrity.ts';

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'used' | 'expired';

export interface Approval {
  id: string;
  status: ApprovalStatus;
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
  createdAt: string;
  expiresAt: string;
  decidedBy?: string;
  decidedAt?: string;
  /** The call's arguments as a reviewer may see them (credentials scrubbed, PII redacted; JSON text), when recorded. */
  argsForReview?: string;
}

export interface ApprovalTarget { plane: string; target: string; resource: string; action: string }

export interface Approvals {
  /**
   * Called when a decision says approval_required. Returns 'approved' (and consumes the approval)
   * when an admin approved this exact call within the window; otherwise the pending approval's id.
   */
  check(identity: Identity, target: ApprovalTarget, argsDigest: string, decision: Decision, argsForReview?: string): { status: 'approved' | 'pending'; approval: Approval };
  list(filter?: { status?: ApprovalStatus }): Approval[];
  get(id: string): Approval | undefined;
  approve(id: string, actor: string): Approval;
  reject(id: string, actor: string): Approval;
}

export function argsDigest(args: unknown): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(args ?? {})).digest('hex');
}

interface Row {
  id: string; status: string; spiffe_id: string; agent: string; plane: string; target: string; resource: string; action: string;
  args_digest: string; policy: string; rule: number; reason: string; created_at: number; expires_at: number; decided_by: string | null; decided_at: number | null;
  args_review: string | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class ApprovalError extends Error {
  readonly status: number;
  constructor(message: string, status: number) { super(message); this.name = 'ApprovalError'; this.status = status; }
}

export function createApprovals(db: DatabaseSync, opts: { windowMs?: number; now?: () => number; onPending?: (a: Approval) => void } = {}): Approvals {
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

  const toApproval = (r: Row): Approval => ({
    id: r.id, status: r.status as ApprovalStatus, spiffeId: r.spiffe_id, agent: r.agent, plane: r.plane, target: r.target,
    resource: r.resource, action: r.action, argsDigest: r.args_digest, policy: r.policy, rule: r.rule, reason: r.reason,
    createdAt: iso(r.created_at), expiresAt: iso(r.expires_at),
    decidedBy: r.decided_by ?? undefined, decidedAt: r.decided_at === null ? undefined : iso(r.decided_at),
    ...(r.args_review === null ? {} : { argsForReview: r.args_review }),
  });
  const get = (id: string) => { const r = byId.get(id) as Row | undefined; return r ? toApproval(r) : undefined; };

  function decideOne(id: string, actor: string, status: 'approved' | 'rejected'): Approval {
    const t = now();
    expire.run(t);
    const res = decide.run(status, actor, t, status === 'approved' ? t + windowMs : t, id, t);
    if (Number(res.changes) !== 1) {
      const cur = get(id);
      if (!cur) throw new ApprovalError(`approval "${id}" does not exist`, 404);
      throw new ApprovalError(`approval "${id}" is ${cur.status}, only pending approvals can be ${status}`, 409);
    }
    return get(id) as Approval;
  }

  return {
    check(identity, target, digest, decision, argsForReview) {
      const t = now();
      const live = findLive.get(identity.agent.spiffeId, target.plane, target.target, digest, t) as Row | undefined;
      if (live?.status === 'approved' && Number(consume.run(live.id, t).changes) === 1) {
        return { status: 'approved', approval: { ...toApproval(live), status: 'used' } };
      }
      if (live?.status === 'pending') return { status: 'pending', approval: toApproval(live) };
      const id = 'apr_' + randomBytes(12).toString('base64url');
      insert.run(id, identity.agent.spiffeId, identity.agent.name, target.plane, target.target, target.resource, target.action, digest,
        decision.policy, decision.rule, decision.reason, t, t + windowMs, argsForReview ?? null);
      const made = get(id) as Approval;
      opts.onPending?.(made); // a new held call (not a retry of one already pending): tell people
      return { status: 'pending', approval: made };
    },
    list(filter) {
      expire.run(now());
      const rows = (filter?.status ? listBy.all(filter.status) : listAll.all()) as unknown as Row[];
      return rows.map(toApproval);
    },
    get(id) { expire.run(now()); return get(id); },
    approve: (id, actor) => decideOne(id, actor, 'approved'),
    reject: (id, actor) => decideOne(id, actor, 'rejected'),
  };
}
