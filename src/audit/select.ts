// AgentPolicy `audit.record` selects what the trail keeps for an identity. Identity and the
// decision are always kept; tool arguments only when 'arguments' is selected (after guardrail
// redaction by the caller). Apply before record(): the log chains whatever it is given.
import type { AuditEventInput } from './event.ts';

export type RecordPart = 'identity' | 'policy' | 'credential' | 'action' | 'outcome' | 'model' | 'arguments';

/** Default when a policy says nothing: everything except raw arguments. */
export const DEFAULT_RECORD: readonly RecordPart[] = ['identity', 'policy', 'credential', 'action', 'outcome', 'model'];

export function selectForRecord(e: AuditEventInput, record: readonly string[] = DEFAULT_RECORD): AuditEventInput {
  const keep = new Set(record);
  const out: AuditEventInput = { ...e };
  if (!keep.has('credential')) delete out.credential;
  if (!keep.has('outcome')) delete out.outcome;
  if (out.model && !keep.has('model')) {
    // The route is the action; usage details are the 'model' part.
    out.model = keep.has('action') ? { route: out.model.route, provider: out.model.provider, model: out.model.model, cost_usd: out.model.cost_usd } : undefined;
  }
  if (out.tool && typeof out.tool === 'object') {
    if (!keep.has('action')) out.tool = { server: out.tool.server, tool: out.tool.tool, args_digest: out.tool.args_digest };
    if (!keep.has('arguments') && out.tool.args !== undefined) {
      const { args: _dropped, ...rest } = out.tool;
      out.tool = rest;
    }
  }
  return out;
}
