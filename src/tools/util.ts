// Small tool-plane helpers with no MCP SDK behind them: the HTTP tool proxy and the gateway's
// lazy front (mcp-lazy.ts) use them without loading the SDK (~13 MB RSS) when no MCP server is configured.
import type { Decision } from '../policy/types.ts';
import { StoreUnavailable } from '../store/types.ts';
import { errMsg } from '../lib/error-message.ts';
import { RPC, ToolError } from './types.ts';

/** Separator of <server>__<tool> names on /mcp (all servers). */
export const NAME_SEP = '__';

/** The explanation a caller sees for a non-allow decision: policy, rule and reason. */
export function denialMessage(d: Decision, what: string): string {
  if (!d.policy) return `${what} denied: no policy allows it (default deny): ${d.reason}`;
  return `${what} denied by policy "${d.policy}" rule tools[${d.rule}]: ${d.reason}`;
}

export function decisionFields(d: Decision): Record<string, unknown> {
  const f: Record<string, unknown> = { effect: d.effect, allowed: d.allowed, policy: d.policy, rule: d.rule, reason: d.reason, config_version: d.configVersion };
  if (d.wouldDeny) f.would_deny = { policy: d.wouldDeny.policy, rule: d.wouldDeny.rulePath ?? d.wouldDeny.rule, reason: d.wouldDeny.reason };
  return f;
}

/** A fleet store that cannot answer, as the tool plane's refusal: 503 (JSON-RPC -32603), store_unavailable, retry in 1 s. */
export function storeRefused(e: StoreUnavailable, message: string): ToolError {
  return new ToolError('store_unavailable', message, { code: RPC.upstream, status: 503, data: { code: 'store_unavailable', retry_after_seconds: 1, store: e.store } });
}

/**
 * A call whose intent could not be recorded durably: not forwarded, 503. The fleet's PostgreSQL
 * being down says so (store_unavailable, retry in 1 s, as on every plane); else audit_unavailable.
 */
export function intentUnrecorded(what: string, e: unknown): ToolError {
  const message = `${what} not forwarded: its intent could not be recorded durably (${errMsg(e)})`;
  if (e instanceof StoreUnavailable) return storeRefused(e, message);
  return new ToolError('audit_unavailable', message, { code: RPC.upstream, status: 503, data: { code: 'audit_unavailable' } });
}
