// The shared access steps handed to the tool plane (MCP gateway, HTTP tools): the same decision
// function, credential injection and evidence as the model plane, injected so src/tools stays
// independent of policy, credentials and audit implementations. Long-lived services go in once
// (toolDeps); each request's decisions, limits and guardrails come from its access context
// (toolAccess), whose policy set was resolved once when the caller was identified.
import { decideTool, toolVisibleIn } from '../policy/decide.ts';
import { decidingToolRule, type CompiledToolRule } from '../policy/compile.ts';
import type { Decision } from '../policy/types.ts';
import type { Runtime } from '../runtime.ts';
import { storeRefused } from '../tools/util.ts';
import { ToolError, RPC, UnacknowledgedToolError, evidenceLink, type ToolAccess, type ToolAdmission, type JsonBody, type ToolCallTrace, type ToolDeps, type TraceContextIn } from '../tools/types.ts';
import { parseTraceparent, traceHeaders } from '../observability/tracing.ts';
import { toolSpanAttributes, toolSpanName } from '../observability/otlp-genai.ts';
import { requestTraceId } from '../access/evidence.ts';
import { Access as AccessOf, currentCaller } from '../access/context.ts';
import type { Ctx } from './http.ts';
import { guardListing, guardrailsOf, guardValue, nextTurn, redactForReview, TURN_MS, type ItemKey } from '../access/guard.ts';
import { JsonTooComplex, MAX_KEY_NAMES, parseJsonInTurns } from '../access/json-turns.ts';
import type { IncomingMessage } from 'node:http';
import { scrubAcross } from '../access/egress.ts';
import { noteActivity, shadowed, storeUnavailableMessage, storeUnchecked } from '../access/decide.ts';
import { StoreUnavailable } from '../store/types.ts';
import { admitRuleCall, UNCOUNTED } from '../access/rule-limits.ts';
import { errMsg } from '../lib/error-message.ts';
import { AamError, EvidenceUnavailable } from '../access/errors.ts';
import { evidenceRefusedMembers } from '../audit/event.ts';

/** The tool plane's requests carry the whole runtime (the server's context). */
type Access = AccessOf<Ctx>;

export function toolDeps(rt: Runtime): ToolDeps {
  return {
    credentialHeaders: (name, identity) => {
      // The tool plane checked credentials.allow with the caller's access context; this is the
      // injection step's own last check (stdio servers and listings inject as the gateway).
      const refused = rt.credentialRefusal(name, identity);
      if (refused) throw new ToolError('policy_denied', refused, { code: RPC.denied, status: 403 });
      return rt.injectTool(name, identity);
    },
    audit: {
      record: (ev) => { rt.audit?.record(ev); noteActivity(rt, ev.agent, ev); },
      // A fleet trail that cannot commit is PostgreSQL down (StoreUnavailable: the plane's store_unavailable).
      recordDurable: async (ev) => {
        if (!rt.audit?.recordDurable) return undefined;
        try { return await rt.audit.recordDurable(ev); } catch (e) { throw rt.fleet ? new StoreUnavailable('postgres', `audit trail: ${errMsg(e)}`) : e; }
      },
      safe: (amends, amendsType = 'tool.outcome') => rt.evidenceSafeNow()?.catch((e: unknown) => { throw evidenceRefused(rt, e, amends, amendsType); }),
    },
    log: rt.log,
    scrub: (text) => rt.scrub(text),
    scrubAcross: (value) => scrubAcross(rt.egress, value),
    redactForReview: (args) => redactForReview(rt, args),
    sessions: rt.mcpSessions,
    keyProblem: (keyId, generation) => rt.keyBook.generationProblem(keyId, generation),
    db: rt.db,
    stateKey: rt.vault.subkey('aam mcp request state v1'),
    readJson: readJsonBody,
    streams: rt.streams,
  };
}

/** The tool plane's view of one request's access context. */
class ToolAccessOf implements ToolAccess {
  readonly #a: Access;
  constructor(a: Access) { this.#a = a; }

  get identity() { return this.#a.identity; }
  get clientRequestId() { return this.#a.ctx.clientRequestId; }

  authorize(resource: string, action: string, args: Record<string, unknown> | null, context: Record<string, unknown>): Decision {
    const a = this.#a;
    const d = decideTool(a.set, resource, action, args, context, a.ctx.cfg.policies);
    a.ctx.rt.metrics?.decision(d.effect, a.identity.agent.name);
    return shadowed(a.ctx, a.identity.agent, { kind: 'tool', agent: a.identity.agent, resource, action, args, context }, d);
  }

  visible(resource: string, action: string): boolean { return toolVisibleIn(this.#a.set, resource, action); }

  credentialRefusal(name: string): string | null { return this.#a.ctx.rt.credentialRefusal(name, this.#a.identity, this.#a.set); }

  admitCall(d: Decision): ToolAdmission | Promise<ToolAdmission> {
    const rule = decidingToolRule(this.#a.set, d);
    if (!rule || (!rule.rate && !rule.budget)) return UNCOUNTED;
    return admitToolCall(this.#a.ctx.rt, this.#a.identity, rule);
  }

  storeRefusal(e: StoreUnavailable, message: string): ToolError {
    return storeUnchecked(this.#a.ctx.rt, this.#a.identity, e, () => storeRefused(e, message)) as ToolError;
  }

  guardrails(attached?: readonly string[]) {
    const a = this.#a;
    return guardrailsOf(a.ctx.rt, a.identity, attached, a.set);
  }

  guard(direction: 'input' | 'output', value: unknown, where: string, requestId: string, attached?: readonly string[], key?: ItemKey) {
    const a = this.#a;
    return guardValue(a.ctx.rt, { requestId, traceId: requestTraceId(a.ctx) }, a.identity, guardrailsOf(a.ctx.rt, a.identity, attached, a.set), direction, value, where, 'json', key);
  }

  guardListing<T>(items: readonly T[], requestId: string, of: (item: T) => { where: string; attached?: readonly string[]; key: ItemKey }): Promise<T[]> {
    const a = this.#a;
    return guardListing(a.ctx.rt, { requestId, traceId: requestTraceId(a.ctx) }, a.identity, items, (item) => {
      const o = of(item);
      return { where: o.where, key: o.key, gs: guardrailsOf(a.ctx.rt, a.identity, o.attached, a.set) };
    });
  }

  current(): ToolAccess | { gone: string } {
    const a = this.#a;
    const now = currentCaller(a.ctx.rt, a.identity);
    if ('gone' in now) return now;
    const cfg = a.ctx.rt.compiled as Access['ctx']['cfg'];
    if (cfg === a.ctx.cfg && now.identity === a.identity) return this;
    return new ToolAccessOf(new AccessOf({ ...a.ctx, cfg }, now.identity));
  }

  traceId(carried?: TraceContextIn): string {
    return (carried?.traceparent !== undefined ? parseTraceparent(carried.traceparent)?.traceId : undefined) ?? requestTraceId(this.#a.ctx);
  }

  traceCall(call: Parameters<ToolAccess['traceCall']>[0]): ToolCallTrace {
    const { ctx, identity } = this.#a;
    const agent = identity.agent;
    const started = performance.now();
    const carried = call.carried?.traceparent !== undefined && parseTraceparent(call.carried.traceparent) ? call.carried : undefined;
    // A CLIENT span (GenAI execute_tool; MCP method for MCP calls) under the trace the message
    // carried, else under the request's server span.
    const span = ctx.span && ctx.rt.tracer
      ? ctx.rt.tracer.startSpan(toolSpanName({ method: call.method, tool: call.tool }), {
        kind: 'client', parent: carried ? carried.traceparent : ctx.span.context, traceState: carried?.tracestate, startTime: started,
        attributes: toolSpanAttributes({ ...call, jsonrpcRequestId: call.jsonrpcId, mcpSessionId: call.sessionId, agentId: agent.spiffeId, agentName: agent.name || undefined }),
      })
      : undefined;
    return {
      traceContext: span ? traceHeaders(span) as { traceparent: string; tracestate?: string } : carried ? carried as { traceparent: string; tracestate?: string } : untracedContext(ctx),
      end: (outcome, errorType) => {
        const ms = performance.now() - started;
        // The histogram is tool calls' (MCP tools/call, HTTP tools); reads have their spans only.
        if (call.method === undefined || call.method === 'tools/call') ctx.rt.metrics?.toolCall?.(agent.name, call.server, outcome, ms);
        if (!span) return;
        if (outcome !== 'ok') span.setAttribute('error.type', errorType ?? outcome).setStatus('error');
        span.end();
      },
    };
  }
}

/**
 * Without a span of its own, aam passes the caller's trace context on unchanged (a transparent hop),
 * or names the request's trace (its evidence's trace_id) with a fresh parent id, not sampled.
 */
function untracedContext(ctx: Access['ctx']): { traceparent: string; tracestate?: string } {
  const h = ctx.req.headers;
  if (parseTraceparent(h.traceparent) && typeof h.traceparent === 'string') {
    return typeof h.tracestate === 'string' ? { traceparent: h.traceparent.trim(), tracestate: h.tracestate } : { traceparent: h.traceparent.trim() };
  }
  return { traceparent: `00-${requestTraceId(ctx)}-${ctx.rt.ids.spanId()}-00` };
}

/** tools[].rate and tools[].budget (rule-limits.ts), refused as the tool plane's JSON-RPC error. */
function admitToolCall(rt: Runtime, identity: Access['identity'], rule: CompiledToolRule): ToolAdmission | Promise<ToolAdmission> {
  return admitRuleCall(rt, identity, rule, 'tool', (r) => new ToolError(r.code, r.message, { code: RPC.limited, status: 429, data: r.data }), toolStoreFailure);
}

/** A fleet store that cannot answer refuses the call (503, retry in 1 s): a limit is never skipped. */
function toolStoreFailure(e: unknown): unknown {
  if (!(e instanceof StoreUnavailable)) return e;
  return storeRefused(e, storeUnavailableMessage(e));
}

/**
 * Evidence not committed in time (EvidenceUnavailable): the tool plane's 503, aam's code in data as
 * on the MCP plane's other refusals. With the call's event (`amends`, its outcome written), the
 * trail says what the caller got beside it: an evidence_refused event under the same request.
 */
function evidenceRefused(rt: Runtime, e: unknown, amends: Record<string, unknown> | undefined, amendsType: string): unknown {
  if (!(e instanceof AamError)) return e;
  const retry = Number(e.headers['retry-after']);
  const opts = { code: RPC.upstream, status: e.status, data: { code: e.code, ...(retry > 0 ? { retry_after_seconds: retry } : {}) } };
  if (!amends || !(e instanceof EvidenceUnavailable)) return new ToolError(e.code, e.message, opts);
  const ev = { ...evidenceLink(amends), ...evidenceRefusedMembers(amendsType, 'refused', e.status, e.message) };
  rt.audit?.record(ev);
  return new UnacknowledgedToolError(e.code, e.message, opts);
}

/** The tool plane's view of a request's access context (one per request, like the context itself). */
export function toolAccess(a: Access): ToolAccess {
  return new ToolAccessOf(a);
}

/** A JSON-RPC body; a large one is parsed from its bytes across loop turns (src/access/json-turns.ts). */
async function readJsonBody(req: IncomingMessage, max: number): Promise<JsonBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  let since = performance.now();
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) return { ok: false, status: 413, code: -32600, message: `request body over ${max} bytes` };
    chunks.push(chunk as Buffer);
    // Buffered chunks arrive without a loop turn between them: let other requests run now and then.
    if (performance.now() - since >= TURN_MS) { await nextTurn(); since = performance.now(); }
  }
  try {
    const value = parseJsonInTurns(Buffer.concat(chunks), { maxKeyNames: MAX_KEY_NAMES });
    return { ok: true, value: value instanceof Promise ? await value : value };
  } catch (e) {
    if (e instanceof JsonTooComplex) return { ok: false, status: 400, code: -32600, message: e.message };
    return { ok: false, status: 400, code: -32700, message: `parse error: request body is not valid JSON (${errMsg(e)})` };
  }
}
