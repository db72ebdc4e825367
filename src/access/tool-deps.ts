// The shared access steps handed to the tool plane (MCP gateway, HTTP tools): the same decision
// function, credential injection and evidence as the model plane, injected so src/tools stays
// independent of policy, credentials and audit implementations.
import { decide, toolVisible } from '../policy/decide.ts';
import { decidingToolRule, setFor } from '../policy/compile.ts';
import type { Runtime } from '../runtime.ts';
import { ToolError, RPC, type ToolDeps } from '../tools/types.ts';
import { guardJson } from './guard.ts';
import { scrubAcross } from './egress.ts';
import { checkRates } from './decide.ts';

export function toolDeps(rt: Runtime): ToolDeps {
  return {
    authorize(identity, resource, action, args, context) {
      const d = decide({ kind: 'tool', agent: identity.agent, resource, action, args, context }, rt.compiled.policies);
      rt.metrics?.decision(d.effect, identity.agent.name);
      return d;
    },
    visible: (identity, resource, action) => toolVisible(identity.agent, resource, action, rt.compiled.policies),
    credentialRefusal: (name, identity) => rt.credentialRefusal(name, identity),
    admitCall(identity, d) {
      const rule = decidingToolRule(setFor(identity.agent, rt.compiled.policies), d);
      if (!rule?.rate) return;
      // Counters per rule: every call a rule allows shares its bucket, whatever resource or action.
      const r = checkRates(rt, identity, `tool:${rule.policy}/${rule.path}:`, rule.rate, `${rule.policy} ${rule.path}`, 0);
      if (!r.ok) throw new ToolError('rate_limited', r.message, { code: RPC.limited, status: 429, data: { retry_after_seconds: r.retryAfterSeconds, policy: rule.policy, rule: rule.index } });
    },
    credentialHeaders: (name, identity) => {
      const refused = rt.credentialRefusal(name, identity);
      if (refused) throw new ToolError('policy_denied', refused, { code: RPC.denied, status: 403 });
      return rt.injectTool(name, identity);
    },
    audit: {
      record: (ev) => rt.audit?.record(ev),
      recordDurable: async (ev) => (rt.audit?.recordDurable ? rt.audit.recordDurable(ev) : undefined),
    },
    log: rt.log,
    scrub: (text) => rt.scrub(text),
    scrubAcross: (value) => scrubAcross(rt.egress, value),
    guard: (identity, direction, value, where, requestId, attached) => guardJson(rt, identity, direction, value, where, requestId, attached),
    db: rt.db,
  };
}
