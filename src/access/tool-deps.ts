// The shared access steps handed to the tool plane (MCP gateway, HTTP tools): the same decision
// function, credential injection and evidence as the model plane, injected so src/tools stays
// independent of policy, credentials and audit implementations.
import { decide, toolVisible } from '../policy/decide.ts';
import type { Runtime } from '../runtime.ts';
import { ToolError, RPC, type ToolDeps } from '../tools/types.ts';
import { guardJson } from './guard.ts';

export function toolDeps(rt: Runtime): ToolDeps {
  return {
    authorize(identity, resource, action, args, context) {
      const d = decide({ kind: 'tool', agent: identity.agent, resource, action, args, context }, rt.compiled.policies);
      rt.metrics?.decision(d.effect, identity.agent.name);
      return d;
    },
    visible: (identity, resource, action) => toolVisible(identity.agent, resource, action, rt.compiled.policies),
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
    guard: (identity, direction, value, where, requestId, attached) => guardJson(rt, identity, direction, value, where, requestId, attached),
    db: rt.db,
  };
}
