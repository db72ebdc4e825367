// Held tool calls: a rule with `approval: required` turns a call into a pending approval; once a
// person approves it, the same call (same identity, tool and argument digest) goes through once
// within the window. The records live behind the store seam (store/approvals.ts: SQLite in the
// data dir, or PostgreSQL for a fleet), shared by every replica, the CLI and the console.
import { createHash } from 'node:crypto';
import type { Identity } from '../identity/types.ts';
import type { Decision } from '../policy/types.ts';
import type { Approvals, HeldCall } from '../store/approvals.ts';
import { StoreUnavailable } from '../store/types.ts';
import { canonicalJson } from './tool-integrity.ts';
import { storeRefused } from './util.ts';

export type { Approval, ApprovalStatus, Approvals, HeldCall } from '../store/approvals.ts';

export interface ApprovalTarget { plane: string; target: string; resource: string; action: string }

export function argsDigest(args: unknown): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(args ?? {})).digest('hex');
}

/** The call a decision held, as the approvals store keeps it. */
export function heldCall(identity: Identity, target: ApprovalTarget, digest: string, decision: Decision, argsForReview?: string): HeldCall {
  return {
    spiffeId: identity.agent.spiffeId, agent: identity.agent.name, ...target, argsDigest: digest,
    policy: decision.policy, rule: decision.rule, reason: decision.reason, argsForReview,
  };
}

/**
 * approvals.check for a held call; a store that cannot say whether it was approved refuses it as
 * the tool plane's 503 (store_unavailable, retry in 1 s; MCP: data.code), never an internal error.
 */
export async function checkHeld(approvals: Approvals, call: HeldCall): ReturnType<Approvals['check']> {
  try { return await approvals.check(call); } catch (e) {
    if (!(e instanceof StoreUnavailable)) throw e;
    throw storeRefused(e, `${e.storeName} (the fleet store for held tool calls) is unavailable, so aam cannot tell whether this call was approved: ${e.message}; retry shortly`);
  }
}
