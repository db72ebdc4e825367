// Held tool calls in the fleet store (PostgreSQL): the same records and rules as the embedded
// store (approvals.ts), shared by every replica. A call held on replica B is released by a decision
// taken on replica A: B's retry reads the row A updated. The single use of an approved call is one
// conditional UPDATE, so two replicas retrying the same approved call at once let exactly one
// through. A query that fails is StoreUnavailable (the plane answers 503): never "approved" by mistake.
import type { Sql } from './postgres.ts';
import { StoreUnavailable } from './types.ts';
import { ApprovalError, approvalOf, newApprovalId, undecidable, type Approval, type ApprovalOptions, type ApprovalRow, type Approvals } from './approvals.ts';

export function fleetApprovals(sql: Sql, opts: ApprovalOptions = {}): Approvals {
  const windowMs = opts.windowMs ?? 15 * 60_000;
  const now = opts.now ?? Date.now;
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try { return await fn(); } catch (e) {
      if (e instanceof ApprovalError) throw e;
      throw new StoreUnavailable('postgres', `approvals: ${(e as Error).message}`);
    }
  };
  const expire = (t: number) => sql`UPDATE tool_approvals SET status = 'expired' WHERE status IN ('pending', 'approved') AND expires_at <= ${t}`;
  const get = async (id: string): Promise<Approval | undefined> => {
    const [r] = await sql<ApprovalRow[]>`SELECT * FROM tool_approvals WHERE id = ${id}`;
    return r ? approvalOf(r) : undefined;
  };
  const decide = (id: string, actor: string, status: 'approved' | 'rejected') => guard(async () => {
    const t = now();
    await expire(t);
    const [r] = await sql<ApprovalRow[]>`UPDATE tool_approvals SET status = ${status}, decided_by = ${actor}, decided_at = ${t},
      expires_at = ${status === 'approved' ? t + windowMs : t} WHERE id = ${id} AND status = 'pending' AND expires_at > ${t} RETURNING *`;
    if (!r) throw undecidable(id, await get(id), status);
    return approvalOf(r);
  });
  return {
    check: (c) => guard(async () => {
      const t = now();
      const [live] = await sql<ApprovalRow[]>`SELECT * FROM tool_approvals WHERE spiffe_id = ${c.spiffeId} AND plane = ${c.plane}
        AND target = ${c.target} AND args_digest = ${c.argsDigest} AND status IN ('pending', 'approved') AND expires_at > ${t}
        ORDER BY status = 'approved' DESC, created_at DESC LIMIT 1`;
      if (live?.status === 'approved') {
        // Row lock + re-check: of two replicas consuming at once, the second sees 'used' and matches nothing.
        const used = await sql`UPDATE tool_approvals SET status = 'used' WHERE id = ${live.id} AND status = 'approved' AND expires_at > ${t} RETURNING id`;
        if (used.length === 1) return { status: 'approved' as const, approval: { ...approvalOf(live), status: 'used' as const } };
      }
      if (live?.status === 'pending') return { status: 'pending' as const, approval: approvalOf(live) };
      const [made] = await sql<ApprovalRow[]>`INSERT INTO tool_approvals (id, status, spiffe_id, agent, plane, target, resource, action,
          args_digest, policy, rule, reason, created_at, expires_at, args_review)
        VALUES (${newApprovalId()}, 'pending', ${c.spiffeId}, ${c.agent}, ${c.plane}, ${c.target}, ${c.resource}, ${c.action},
          ${c.argsDigest}, ${c.policy}, ${c.rule}, ${c.reason}, ${t}, ${t + windowMs}, ${c.argsForReview ?? null}) RETURNING *`;
      const a = approvalOf(made);
      opts.onPending?.(a);
      return { status: 'pending' as const, approval: a };
    }),
    list: (filter) => guard(async () => {
      await expire(now());
      const rows = filter?.status
        ? await sql<ApprovalRow[]>`SELECT * FROM tool_approvals WHERE status = ${filter.status} ORDER BY created_at DESC LIMIT 1000`
        : await sql<ApprovalRow[]>`SELECT * FROM tool_approvals ORDER BY created_at DESC LIMIT 1000`;
      return rows.map(approvalOf);
    }),
    get: (id) => guard(async () => { await expire(now()); return get(id); }),
    approve: (id, actor) => decide(id, actor, 'approved'),
    reject: (id, actor) => decide(id, actor, 'rejected'),
  };
}
