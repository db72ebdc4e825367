// The MCP request path, one named phase per step:
// resolve -> decide (policy, credentials.allow, rate) -> integrity -> validate -> approval -> intent -> call -> limit -> record.
// Resources and prompts go through the same decide step (resource = server's resource,
// action = 'resources/read' | 'prompts/get'; listing is filtered with visible()).
import { randomUUID } from 'node:crypto';
import type { CallToolResult, CompleteRequest, CompleteResult, GetPromptResult, LoggingLevel, Progress, Prompt, ReadResourceResult, Resource, ResourceTemplate } from '@modelcontextprotocol/sdk/types.js';
import type { Identity } from '../identity/types.ts';
import type { Decision } from '../policy/types.ts';
import { argsDigest, checkHeld, heldCall, type Approvals } from './approvals.ts';
import { declaresTasks, inputCapabilities, isInputRequired, isTask, openState, relayTask, sealState, TASKS_EXT, type MrtrIn, type StateBinding } from './mcp-mrtr.ts';
import type { Catalog, CompiledTool, ServerEntry } from './catalog.ts';
import type { CallOptions, ListKind, Listing, LogParams } from './upstream.ts';
import type { Gathered, PageStore } from './mcp-pages.ts';
import { decisionFields, denialMessage, intentUnrecorded, NAME_SEP } from './util.ts';
import { identityFields, RPC, ToolError, UnacknowledgedToolError, type ToolAccess, type ToolAdmission, type ToolDeps, type TraceContextIn } from './types.ts';
import { isObj } from '../lib/json.ts';
import { errMsg } from '../lib/error-message.ts';

export const DEFAULT_MAX_RESULT_BYTES = 1024 * 1024;
export const RESOURCE_READ = 'resources/read';
export const PROMPT_GET = 'prompts/get';
export const COMPLETE = 'completion/complete';

export interface Runtime {
  catalog: Catalog; deps: ToolDeps; approvals: Approvals; maxResultBytes: number;
  /** Gathered lists kept for the later pages of a client's listing. */
  pages: PageStore;
}

/**
 * One client session: who it belongs to and which servers it sees. Each request sees a copy
 * whose `access` (and its `identity`) is the one opened for that HTTP request (current
 * attributes and config); the maps and lists below are shared by those copies, so update them in place.
 */
export interface SessionCtx {
  identity: Identity;
  access: ToolAccess;
  scope: string | null;
  sessionId: () => string | undefined;
  /** Aggregated endpoint: which server listed a resource URI (for resources/read). */
  resourceOwner: Map<string, string>;
  /** Aggregated endpoint: URI templates listed per server, for reads of URIs built from them (and completions of their arguments). */
  templateOwners: Array<{ server: string; template: string; match: RegExp }>;
  /** resources/subscribe of this session: URI -> server. */
  subscriptions: Map<string, string>;
  /** A 2025-11-25 session's logging/setLevel: its requests get upstream log messages at this level and above (none before it is set). */
  logLevel?: LoggingLevel;
}

export interface Extra {
  signal?: AbortSignal; onprogress?: (p: Progress) => void; jsonrpcId?: string | number; requestId?: string;
  /** Trace context the message carried in params._meta, if any. */
  carried?: TraceContextIn;
  /** Set for 2026-07-28 clients (which can be asked for input): their retry fields and capabilities. */
  mrtr?: MrtrIn;
  /**
   * The client asked for log messages at `level` and above (a session's logging/setLevel, a
   * 2026-07-28 request's _meta): `send` puts one on this request's own response stream.
   */
  log?: { level: LoggingLevel; send: (p: LogParams) => void };
}

/** The upstream log messages of one request on their way to its client, and a wait for those still on their way. */
interface LogRelay { log?: CallOptions['log']; flush(): Promise<void> }

/**
 * An upstream's log messages for this request pass the egress door like its result: output
 * guardrails (a blocked message is dropped) and the credential scrub, in the order they came;
 * the answer waits for them (flush), so none arrives after it.
 */
function logRelay(rt: Runtime, s: SessionCtx, extra: Extra, where: string, requestId: string, attached: readonly string[] | undefined): LogRelay {
  const want = extra.log;
  if (!want) return { flush: async () => {} };
  let chain: Promise<void> = Promise.resolve();
  const onlog = (p: LogParams) => {
    chain = chain.then(async () => {
      const go = await s.access.guard('output', p, `${where} log message`, requestId, attached);
      if (go.ok) want.send(rt.deps.scrubAcross(go.value as LogParams));
    }).catch((e: unknown) => rt.deps.log.warn({ err: errMsg(e), where }, 'upstream log message not relayed'));
  };
  return { log: { level: want.level, onlog }, flush: () => chain };
}

export function context(rt: Runtime, s: SessionCtx, requestId: string, extra: Record<string, unknown>): Record<string, unknown> {
  return { time: new Date().toISOString(), request_id: requestId, environment: s.identity.agent.environment, plane: 'mcp', session_id: s.sessionId(), ...extra };
}

export function enforceLimit(rt: Runtime, entry: ServerEntry, what: string, result: unknown): number {
  const max = entry.spec.max_result_bytes ?? rt.maxResultBytes;
  const size = Buffer.byteLength(JSON.stringify(result));
  if (size > max) {
    throw new ToolError('result_too_large', `${what} on MCP server "${entry.name}" returned ${size} bytes, over the ${max} byte limit (spec.max_result_bytes); ask for less data`, { code: RPC.upstream, status: 502 });
  }
  return size;
}

/** Output guardrails on anything an upstream MCP server answers (tool results, resources, prompts). */
export async function guardedResult<T>(rt: Runtime, s: SessionCtx, result: T, where: string, requestId: string, attached: readonly string[] | undefined): Promise<T> {
  const go = await s.access.guard('output', result, where, requestId, attached);
  if (!go.ok) throw new ToolError('guardrail_blocked', go.message, { code: RPC.denied, status: 400, data: { guardrail: go.guardrail } });
  return rt.deps.scrubAcross(go.value as T);
}

/**
 * The one way a value a client sent reaches an upstream MCP server: every field in `fields`
 * (tool or prompt arguments, inputResponses, whatever a tasks/* request carries) through the
 * input guardrails in one walk. Returns the fields, possibly redacted; a block is audited and thrown.
 */
export async function guardInbound<T extends Record<string, unknown>>(rt: Runtime, s: SessionCtx, fields: T, where: string, requestId: string, attached: readonly string[] | undefined, ev: Record<string, unknown>): Promise<T> {
  const g = await s.access.guard('input', fields, where, requestId, attached);
  if (g.ok) return g.value as T;
  rt.deps.audit.record({ ...ev, request_id: requestId, type: 'tool.rejected', outcome: { status: 'guardrail_blocked', error: g.message } });
  throw new ToolError('guardrail_blocked', g.message, { code: RPC.denied, status: 400, data: { guardrail: g.guardrail } });
}

/**
 * credentials.allow, tools[].rate and tools[].budget for an allowed MCP access, checked on every
 * call before the upstream sees it (a stdio server holds its credential from spawn, so injection is no check).
 */
async function admit(rt: Runtime, s: SessionCtx, entry: ServerEntry, d: Decision, ev: Record<string, unknown>): Promise<ToolAdmission> {
  const refused = credentialRefusal(s, entry);
  if (refused) {
    rt.deps.audit.record({ ...ev, type: 'tool.rejected', outcome: { status: 'credential_denied', error: refused.message } });
    throw refused;
  }
  try { return await s.access.admitCall(d); } catch (e) {
    rt.deps.audit.record({ ...ev, type: 'tool.rejected', outcome: { status: e instanceof ToolError ? e.errorCode : 'rate_limited', error: errMsg(e) } });
    throw e;
  }
}

/** Run the steps between admission and the upstream call; a call they stop gives its budget back. */
async function untilForwarded<T>(adm: ToolAdmission, steps: () => T | Promise<T>): Promise<T> {
  let out: T;
  try { out = await steps(); } catch (e) { adm.dropped(); throw e; }
  adm.forwarded();
  return out;
}

function credentialRefusal(s: SessionCtx, entry: ServerEntry): ToolError | null {
  const why = entry.spec.credential ? s.access.credentialRefusal(entry.spec.credential) : null;
  return why === null ? null : new ToolError('policy_denied', `MCP server "${entry.name}": ${why}`, { code: RPC.denied, status: 403, data: { reason: 'credential_not_allowed', credential: entry.spec.credential } });
}

/**
 * Servers in this session's scope whose credential the caller may use: on /mcp listings hide the
 * rest (like tools it may not call); on /mcp/<server> the listing itself is refused, saying why.
 */
function listable(rt: Runtime, s: SessionCtx): ServerEntry[] {
  const out: ServerEntry[] = [];
  for (const e of rt.catalog.inScope(s.scope)) {
    const refused = credentialRefusal(s, e);
    if (!refused) out.push(e);
    else if (s.scope !== null) throw refused;
  }
  return out;
}

/**
 * A name no listed tool has is decided as a tool of that name would be (its server's resource and
 * mapping; an unknown server's name as the resource): a caller denied it gets the same -32001 as
 * for a real tool, so probing learns nothing about which tools or servers exist, and no upstream
 * is asked to list again for it. An allowed caller is told the tool is unknown. `withheld`: the
 * tool exists but this caller's listing withholds it (withheldFromListing): treated the same.
 */
export function refuseUnlisted(rt: Runtime, s: SessionCtx, name: string, rawArgs: unknown, requestId: string, withheld = false): void {
  const at = rt.catalog.locate(s.scope, name);
  if (!withheld && at.entry?.tools.has(at.tool)) return;
  const d = s.access.authorize(at.resource, at.action, (rawArgs ?? {}) as Record<string, unknown>, context(rt, s, requestId, { server: at.entry?.name, tool: at.tool }));
  refuseDenied(rt, s, d, requestId, { server: at.entry?.name, tool: at.tool, resource: at.resource, action: at.action }, `tools/call "${name}" (resource ${at.resource}, action ${at.action})`);
}

/** A decision that does not let a name no server lists proceed: its tool.decision evidence, then -32001 naming the policy. */
function refuseDenied(rt: Runtime, s: SessionCtx, d: Decision, requestId: string, ev: Record<string, unknown>, what: string): void {
  if (d.effect !== 'deny' && (d.allowed || d.effect === 'approval_required')) return;
  rt.deps.audit.record({ type: 'tool.decision', plane: 'mcp', request_id: requestId, client_request_id: s.access.clientRequestId, session_id: s.sessionId(), ...identityFields(s.identity), ...ev, decision: decisionFields(d) });
  throw new ToolError('policy_denied', denialMessage(d, what), { code: RPC.denied, status: 403, data: { policy: d.policy, rule: d.rule } });
}

export async function callTool(rt: Runtime, s: SessionCtx, name: string, rawArgs: unknown, extra: Extra): Promise<CallToolResult> {
  const { deps, catalog } = rt;
  const requestId = extra.requestId ?? `req_${randomUUID()}`;
  refuseUnlisted(rt, s, name, rawArgs, requestId);
  // resolve (a tool this caller's listing withholds is as unknown as one no server lists)
  const t = await catalog.resolve(s.scope, name);
  const w = t !== undefined && withheldFromListing(rt, s, t, requestId);
  const withheld = w instanceof Promise ? await w : w;
  if (withheld) refuseUnlisted(rt, s, name, rawArgs, requestId, true);
  if (!t || withheld) throw new ToolError('unknown_tool', `unknown tool "${name}"; call tools/list for the tools you may call`, { code: RPC.notFound, status: 404 });
  const entry = catalog.servers.get(t.server) as ServerEntry;
  let args = (rawArgs ?? {}) as Record<string, unknown>;
  const base = { type: 'tool.call', plane: 'mcp', request_id: requestId, client_request_id: s.access.clientRequestId, trace_id: s.access.traceId(extra.carried), jsonrpc_id: extra.jsonrpcId, session_id: s.sessionId(), ...identityFields(s.identity),
    server: t.server, tool: t.def.name, resource: t.resource, action: t.action, args_digest: argsDigest(args), mutating: t.mutating,
    credential: entry.spec.credential ? { name: entry.spec.credential } : undefined };
  // A retry of a multi round-trip request: its state must be one aam sealed for this caller and this very request.
  const binding: StateBinding = { sub: s.identity.agent.spiffeId, server: t.server, method: 'tools/call', name: t.def.name, args: base.args_digest };
  // guard (input): block, or redact before policy and upstream see the arguments
  const attached = rt.catalog.servers.get(t.server)?.spec.guardrails;
  args = await guardInbound(rt, s, args, `tools/call ${name}`, requestId, attached, base);
  // decide
  const d = s.access.authorize(t.resource, t.action, args, context(rt, s, requestId, { server: t.server, tool: t.def.name }));
  deps.audit.record({ ...base, type: 'tool.decision', decision: decisionFields(d) });
  if (d.effect === 'deny' || (!d.allowed && d.effect !== 'approval_required')) {
    throw new ToolError('policy_denied', denialMessage(d, `tools/call "${name}" (resource ${t.resource}, action ${t.action})`), { code: RPC.denied, status: 403, data: { policy: d.policy, rule: d.rule } });
  }
  const adm = await admit(rt, s, entry, d, base);
  const mrtr = await untilForwarded(adm, async () => {
    // requestState, integrity and validate come after decide: a caller denied the tool learns nothing about it
    const upstreamState = retryState(rt, binding, extra, base, `tools/call "${name}"`);
    refuseWithheld(rt, t, base);
    const invalid = t.validate(args);
    if (invalid) {
      deps.audit.record({ ...base, type: 'tool.rejected', outcome: { status: 'invalid_arguments', error: invalid } });
      throw new ToolError('invalid_arguments', `arguments for tool "${name}" do not match its input schema: ${invalid}`, { code: RPC.invalidParams, status: 400 });
    }
    // approval
    if (d.effect === 'approval_required') {
      const a = await checkHeld(rt.approvals, heldCall(s.identity, { plane: 'mcp', target: `${t.server}/${t.def.name}`, resource: t.resource, action: t.action }, base.args_digest, d, deps.redactForReview?.(args)));
      if (a.status === 'pending') {
        deps.audit.record({ ...base, type: 'tool.approval_pending', approval_id: a.approval.id });
        throw new ToolError('approval_required', `approval required: approval id ${a.approval.id} (policy "${d.policy}" rule tools[${d.rule}]); retry the same call after an admin approves it, before ${a.approval.expiresAt}`,
          { code: RPC.denied, status: 403, data: { approval_id: a.approval.id, policy: d.policy, rule: d.rule, expires_at: a.approval.expiresAt } });
      }
      deps.audit.record({ ...base, type: 'tool.approval_used', approval_id: a.approval.id, approved_by: a.approval.decidedBy });
    }
    // intent: a call that changes the outside world is on record before it happens
    if (t.mutating) {
      try {
        await deps.audit.recordDurable({ ...base, type: 'tool.intent', decision: decisionFields(d) });
      } catch (e) {
        throw intentUnrecorded(`tools/call "${name}"`, e);
      }
    }
    // call -> limit -> record (a call the client already cancelled is not forwarded)
    if (extra.signal?.aborted) throw new ToolError('cancelled', `tools/call "${name}" was cancelled by the client`, { code: RPC.upstream, status: 499 });
    return mrtrOut(rt, s, extra, upstreamState, { where: `tools/call ${name}`, requestId, attached, ev: base });
  });
  const started = performance.now();
  const trace = s.access.traceCall({ server: t.server, tool: t.def.name, resource: t.resource, action: t.action, method: 'tools/call', jsonrpcId: extra.jsonrpcId, sessionId: base.session_id, carried: extra.carried });
  try {
    let result: CallToolResult;
    const logs = logRelay(rt, s, extra, `tools/call ${name}`, requestId, attached);
    try {
      result = await entry.upstream.callTool(t.def.name, args, s.identity, { signal: extra.signal, onprogress: extra.onprogress, traceContext: trace.traceContext, mrtr, log: logs.log });
    } catch (e) {
      trace.end('error', e instanceof ToolError ? e.errorCode : 'upstream_error');
      throw e;
    } finally { await logs.flush(); }
    trace.end(result.isError ? 'tool_error' : 'ok', result.isError ? 'tool_error' : undefined);
    const relay = isInputRequired(result);
    const task = isTask(result);
    if (relay && !extra.mrtr) throw inputUnsupported(`tool "${name}"`);
    if (task && !extra.mrtr) throw new ToolError('task_unsupported', `tool "${name}" answered with a task (Tasks extension), which aam relays to MCP 2026-07-28 clients only: call it with a 2026-07-28 client that declares the extension`, { code: RPC.upstream, status: 502 });
    // SEP-2663: no CreateTaskResult to a request that did not declare the extension; a server that cannot answer otherwise says -32021.
    if (task && !declaresTasks(extra.mrtr?.clientCapabilities)) {
      throw new ToolError('task_unsupported', `Missing required client capability: tool "${name}" answered with a task (Tasks extension), which this request did not declare; declare params._meta["io.modelcontextprotocol/clientCapabilities"].extensions["${TASKS_EXT}"] to get it`,
        { code: -32021, status: 400, data: { requiredCapabilities: { extensions: { [TASKS_EXT]: {} } } } });
    }
    const bytes = enforceLimit(rt, entry, `tools/call "${name}"`, result);
    deps.audit.record({ ...base, type: 'tool.outcome', outcome: { status: relay ? 'input_required' : task ? 'task_created' : result.isError ? 'tool_error' : 'ok', bytes, latency_ms: performance.now() - started } });
    // The egress door scrubs credentials from the bytes the agent receives; guardrails see every leaf first.
    const out = await guardedResult(rt, s, result, `tools/call ${name}`, requestId, attached);
    await deps.audit.safe(base);
    if (task) return relayTask(deps.stateKey, out, { sub: binding.sub, server: t.server, tool: t.def.name, args: base.args_digest }) as unknown as CallToolResult;
    return relay ? relayInput(deps.stateKey, out, binding) as unknown as CallToolResult : out;
  } catch (e) {
    // Refused for its evidence after its outcome was written: the trail says so already (evidence_refused), not a second outcome.
    if (!(e instanceof UnacknowledgedToolError)) deps.audit.record({ ...base, type: 'tool.outcome', outcome: { status: 'error', error: errMsg(e), latency_ms: performance.now() - started } });
    throw e;
  }
}

/** An upstream's input request as the client gets it: its inputRequests, and aam's sealed state in place of the upstream's. */
function relayInput(key: Buffer, r: unknown, binding: StateBinding): Record<string, unknown> {
  const { inputRequests, requestState } = r as { inputRequests?: unknown; requestState?: unknown };
  return { resultType: 'input_required', ...(inputRequests !== undefined ? { inputRequests } : {}), requestState: sealState(key, binding, typeof requestState === 'string' ? requestState : undefined) };
}

/** A retry of a multi round-trip request: the upstream's own state, once aam's seal opens for this caller and this very request (else refused, audited). */
function retryState(rt: Runtime, binding: StateBinding, extra: Extra, ev: Record<string, unknown>, what: string): string | undefined {
  if (extra.mrtr?.requestState === undefined) return undefined;
  const st = openState(rt.deps.stateKey, extra.mrtr.requestState, binding);
  if (st.ok) return st.upstream;
  rt.deps.audit.record({ request_id: extra.requestId ?? `req_${randomUUID()}`, ...ev, type: 'tool.rejected', outcome: { status: 'invalid_request_state', error: st.why } });
  throw new ToolError('invalid_request_state', `requestState refused for ${what}: ${st.why}; send the request again without requestState and inputResponses to start over`, { code: RPC.invalidParams, status: 400 });
}

/**
 * What a 2026-07-28 client's request passes upstream for multi round-trip requests and tasks: its
 * inputResponses (text the client wrote: input guardrails, like arguments), the upstream's own
 * state (aam opened its seal) and the input capabilities it declared.
 */
async function mrtrOut(rt: Runtime, s: SessionCtx, extra: Extra, upstreamState: string | undefined, g: { where: string; requestId: string; attached: readonly string[] | undefined; ev: Record<string, unknown> }): Promise<CallOptions['mrtr']> {
  if (!extra.mrtr) return undefined;
  const { inputResponses } = extra.mrtr.inputResponses === undefined ? {} : await guardInbound(rt, s, { inputResponses: extra.mrtr.inputResponses }, `${g.where} inputResponses`, g.requestId, g.attached, g.ev);
  return { inputResponses, requestState: upstreamState, clientCapabilities: inputCapabilities(extra.mrtr.clientCapabilities) };
}

const inputUnsupported = (what: string) => new ToolError('input_required', `${what} needs input from the client (elicitation, sampling or roots); aam relays such multi round-trip requests to MCP 2026-07-28 clients only: call it with a 2026-07-28 client`, { code: RPC.upstream, status: 502 });

/**
 * A read's result as the client gets it: an input request relayed (2026-07-28) or refused (sessions),
 * a task refused (SEP-2663: only tools/call may answer with one), else as is.
 */
function interim<T>(rt: Runtime, extra: Extra, r: T, binding: StateBinding, what: string): T {
  if (isTask(r)) throw new ToolError('upstream_error', `${what}: the MCP server answered with a task, which the Tasks extension allows only for tools/call`, { code: RPC.upstream, status: 502 });
  if (!isInputRequired(r)) return r;
  if (!extra.mrtr) throw inputUnsupported(what);
  return relayInput(rt.deps.stateKey, r, binding) as T;
}

/**
 * tools/list for this caller: only tools that are intact and that it could call. A server whose
 * list is `cacheScope: "private"` shows only the tools it lists for this caller (fetched as this
 * caller; aam's shared listing is never served in its place); one that cannot list them shows none.
 */
export async function visibleTools(rt: Runtime, s: SessionCtx): Promise<CompiledTool[]> {
  const out: CompiledTool[] = [];
  const entries = listable(rt, s);
  const own = await Promise.all(entries.map((e) => e.upstream.callerTools(s.identity).catch((err: unknown): ReadonlySet<string> => {
    rt.deps.log.warn({ mcp_server: e.name, spiffe_id: s.identity.agent.spiffeId, err: errMsg(err) }, 'private tools/list failed; none of this server\'s tools are listed for this caller');
    return new Set();
  })));
  entries.forEach((e, i) => {
    for (const t of e.tools.values()) {
      if (t.integrity.ok && s.access.visible(t.resource, t.action) && (own[i] === null || own[i].has(t.def.name))) out.push(t);
    }
  });
  return out;
}

/**
 * The rug-pull rule, one for everything that acts on a tool's behalf: while the tool's current
 * definition is not the accepted one (tool-integrity.ts), nothing of it goes through: a call (so a
 * held approval cannot be used either: this comes first), nor a read or an update of a task it
 * created (mcp-tasks.ts). Refused with 409 and the new digest, a tool.withheld on record (`ev`:
 * the request's evidence fields); once an admin accepts the definition, all of it works again.
 */
export function refuseWithheld(rt: Runtime, t: CompiledTool, ev: Record<string, unknown>): void {
  if (t.integrity.ok) return;
  rt.deps.audit.record({ ...ev, type: 'tool.withheld', outcome: { status: 'withheld', error: t.integrity.reason } });
  throw new ToolError('tool_definition_changed', `tool "${t.def.name}" is withheld: ${t.integrity.reason}`, { code: RPC.denied, status: 409, data: { reason: 'tool_definition_changed', digest: t.integrity.digest } });
}

/** Decide and admit a resource or prompt access: the request id its evidence is filed under, and its admission. */
async function authorizeOrThrow(rt: Runtime, s: SessionCtx, entry: ServerEntry, action: string, args: Record<string, unknown>, what: string, given: string | undefined, ev: Record<string, unknown> = {}): Promise<{ requestId: string; adm: ToolAdmission }> {
  // aam's id of the HTTP request that carried it (x-request-id), so `aam audit show ID` finds the read.
  const requestId = given ?? `req_${randomUUID()}`;
  const d = s.access.authorize(entry.resource, action, args, context(rt, s, requestId, { server: entry.name }));
  rt.deps.audit.record({ type: 'tool.decision', plane: 'mcp', request_id: requestId, client_request_id: s.access.clientRequestId, trace_id: s.access.traceId(), ...identityFields(s.identity), server: entry.name, resource: entry.resource, action,
    args_digest: argsDigest(args), ...ev, decision: decisionFields(d) });
  // Approval flows are for tool calls; a resource or prompt read that needs one is refused.
  if (!d.allowed || d.effect !== 'allow') throw new ToolError('policy_denied', denialMessage(d, what), { code: RPC.denied, status: 403, data: { policy: d.policy, rule: d.rule } });
  const adm = await admit(rt, s, entry, d, { type: 'tool.call', plane: 'mcp', request_id: requestId, client_request_id: s.access.clientRequestId, trace_id: s.access.traceId(), ...identityFields(s.identity), server: entry.name, resource: entry.resource, action });
  return { requestId, adm };
}

/**
 * What each server this caller may use for `action` lists, in catalog order (not in the order the
 * servers answer): pages are cut from the same order each time, and a URI two servers' templates
 * both match routes the same way. A server whose listing fails is logged and lists nothing.
 */
async function perServer<T>(rt: Runtime, s: SessionCtx, action: string, method: string, list: (e: ServerEntry) => Promise<Listing<T>>): Promise<Array<{ entry: ServerEntry } & Listing<T>>> {
  const servers = listable(rt, s).filter((e) => s.access.visible(e.resource, action));
  return Promise.all(servers.map(async (entry) => {
    try { return { entry, ...await list(entry) }; } catch (err) {
      rt.deps.log.warn({ mcp_server: entry.name, err: errMsg(err) }, `${method} failed`);
      // Nothing listed: the gathering is not kept for later pages (hints of a list fresh for 0 ms).
      return { entry, items: [], hints: { ttlMs: 0, private: true, at: 0 } };
    }
  }));
}

/**
 * Every server's list as one, and until when it may serve later pages of the same listing
 * (mcp-pages.ts): the shortest ttlMs of its lists; a list without hints (a 2025-11-25 server) sets
 * no limit of its own when its server declared it announces that list's changes, else none is kept.
 */
function gathered<T>(lists: Array<{ entry: ServerEntry } & Listing<T>>, kind: ListKind): Gathered<T> {
  let until = Infinity;
  for (const l of lists) {
    if (l.hints) until = Math.min(until, l.hints.at + l.hints.ttlMs);
    else if (l.entry.upstream.capabilities()?.[kind]?.listChanged !== true) until = 0;
  }
  return { items: lists.flatMap((l) => l.items), until };
}

export async function listResources(rt: Runtime, s: SessionCtx): Promise<Gathered<Resource>> {
  const lists = await perServer(rt, s, RESOURCE_READ, 'resources/list', (e) => e.upstream.listResources(s.identity));
  for (const { entry, items } of lists) for (const r of items) s.resourceOwner.set(r.uri, entry.name);
  return gathered(lists, 'resources');
}

export async function listResourceTemplates(rt: Runtime, s: SessionCtx): Promise<Gathered<ResourceTemplate>> {
  const lists = await perServer(rt, s, RESOURCE_READ, 'resources/templates/list', (e) => e.upstream.listResourceTemplates(s.identity));
  // In place: the session's containers are shared by the per-request views of it (see SessionCtx).
  s.templateOwners.length = 0;
  for (const { entry, items } of lists) for (const t of items) s.templateOwners.push({ server: entry.name, template: t.uriTemplate, match: uriTemplatePattern(t.uriTemplate) });
  return gathered(lists, 'resources');
}

/**
 * An RFC 6570 URI template as a pattern for the URIs it expands to: {var} is one segment
 * (no '/', '?', '#'), {+var} / {#var} may span segments, other operators match the rest.
 */
export function uriTemplatePattern(template: string): RegExp {
  const literal = (t: string): string => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  let re = '';
  let last = 0;
  for (const m of template.matchAll(/\{([^}]*)\}/g)) {
    re += literal(template.slice(last, m.index));
    re += /^[A-Za-z0-9_%]/.test(m[1]) ? '[^/?#]*' : '.*';
    last = (m.index ?? 0) + m[0].length;
  }
  return new RegExp('^' + re + literal(template.slice(last)) + '$');
}

/** The server that serves `uri` for this session, or an error telling the client how to find out. */
function resourceOwner(rt: Runtime, s: SessionCtx, uri: string): ServerEntry {
  const servers = rt.catalog.inScope(s.scope);
  const listed = s.resourceOwner.get(uri) ?? s.templateOwners.find((t) => t.match.test(uri))?.server;
  const owner = s.scope !== null ? servers[0] : rt.catalog.servers.get(listed ?? '') ?? (servers.length === 1 ? servers[0] : undefined);
  if (!owner) throw new ToolError('unknown_resource', `unknown resource "${uri}"; call resources/list or resources/templates/list first so aam knows which server serves it`, { code: RPC.notFound, status: 404 });
  return owner;
}

/**
 * As resourceOwner; a URI this replica has not seen listed in this session (it was listed on
 * another replica of the fleet) is looked up by listing here once.
 */
async function ownerOf(rt: Runtime, s: SessionCtx, uri: string): Promise<ServerEntry> {
  try { return resourceOwner(rt, s, uri); } catch (e) {
    if (s.scope !== null || s.resourceOwner.size > 0 || s.templateOwners.length > 0) throw e;
    await Promise.all([listResources(rt, s), listResourceTemplates(rt, s)]);
    return resourceOwner(rt, s, uri);
  }
}

export async function readResource(rt: Runtime, s: SessionCtx, uri: string, extra: Extra): Promise<ReadResourceResult> {
  const owner = await ownerOf(rt, s, uri);
  const binding: StateBinding = { sub: s.identity.agent.spiffeId, server: owner.name, method: RESOURCE_READ, name: uri, args: argsDigest({ uri }) };
  const { requestId, adm } = await authorizeOrThrow(rt, s, owner, RESOURCE_READ, { uri }, `resources/read "${uri}" (resource ${owner.resource})`, extra.requestId);
  const ev = { plane: 'mcp', ...identityFields(s.identity), server: owner.name, resource: owner.resource, action: RESOURCE_READ };
  // The requestState is opened once the read is decided: a caller denied it learns nothing of the state.
  const mrtr = await untilForwarded(adm, () => mrtrOut(rt, s, extra, retryState(rt, binding, extra, { request_id: requestId, ...ev }, `resources/read "${uri}"`), { where: `resources/read ${uri}`, requestId, attached: owner.spec.guardrails, ev }));
  const r = await traced(s, owner, RESOURCE_READ, uri, extra, (o) => owner.upstream.readResource(uri, s.identity, { ...o, mrtr }), logRelay(rt, s, extra, `resources/read ${uri}`, requestId, owner.spec.guardrails));
  enforceLimit(rt, owner, `resources/read "${uri}"`, r);
  return acknowledged(rt, interim(rt, extra, await guardedResult(rt, s, r, `resources/read ${uri}`, requestId, owner.spec.guardrails), binding, `resources/read "${uri}"`), { request_id: requestId, client_request_id: s.access.clientRequestId, trace_id: s.access.traceId(), ...ev });
}

/**
 * A read's answer, once its evidence is crash-safe (fleet: committed in PostgreSQL): the answer
 * acknowledges it. Refused (503), the trail says so beside the read's tool.decision (`decided`: its link).
 */
async function acknowledged<T>(rt: Runtime, answer: T, decided: Record<string, unknown>): Promise<T> {
  await rt.deps.audit.safe(decided, 'tool.decision');
  return answer;
}

/**
 * A read (resources/read, prompts/get) under its own CLIENT span, named `{method} {target}` (MCP
 * conventions), with the span's trace context passed on to the server in `_meta`, like tools/call.
 */
async function traced<T>(s: SessionCtx, entry: ServerEntry, method: string, target: string, extra: Extra, run: (o: CallOptions) => Promise<T>, relay: LogRelay): Promise<T> {
  const trace = s.access.traceCall({ server: entry.name, tool: target, resource: entry.resource, action: method, method, jsonrpcId: extra.jsonrpcId, sessionId: s.sessionId(), carried: extra.carried });
  try {
    const r = await run({ signal: extra.signal, onprogress: extra.onprogress, traceContext: trace.traceContext, log: relay.log });
    trace.end('ok');
    return r;
  } catch (e) {
    trace.end('error', e instanceof ToolError ? e.errorCode : 'upstream_error');
    throw e;
  } finally { await relay.flush(); }
}

/** resources/subscribe: allowed when a read of the URI would be; updates then reach this session. */
export async function subscribeResource(rt: Runtime, s: SessionCtx, uri: string, requestId?: string): Promise<void> {
  if (s.subscriptions.has(uri)) return;
  const owner = await ownerOf(rt, s, uri);
  (await authorizeOrThrow(rt, s, owner, RESOURCE_READ, { uri }, `resources/subscribe "${uri}" (resource ${owner.resource})`, requestId)).adm.forwarded();
  await owner.upstream.subscribe(uri, s.identity);
  s.subscriptions.set(uri, owner.name);
}

export async function unsubscribeResource(rt: Runtime, s: SessionCtx, uri: string): Promise<void> {
  const server = s.subscriptions.get(uri);
  if (server === undefined) return;
  s.subscriptions.delete(uri);
  await rt.catalog.servers.get(server)?.upstream.unsubscribe(uri, s.identity);
}

export async function listPrompts(rt: Runtime, s: SessionCtx): Promise<Gathered<Prompt>> {
  const lists = await perServer(rt, s, PROMPT_GET, 'prompts/list', (e) => e.upstream.listPrompts(s.identity));
  return gathered(lists.map((l) => ({ ...l, items: s.scope === null ? l.items.map((p) => ({ ...p, name: `${l.entry.name}${NAME_SEP}${p.name}` })) : l.items })), 'prompts');
}

/** The server a <server>__<name> (as /mcp exposes prompts) belongs to: the longest server name that prefixes it. */
function prefixedServer(rt: Runtime, name: string): ServerEntry | undefined {
  let entry: ServerEntry | undefined;
  for (const e of rt.catalog.servers.values()) {
    if (name.startsWith(e.name + NAME_SEP) && (!entry || e.name.length > entry.name.length)) entry = e;
  }
  return entry;
}

/**
 * What a listing shows the agent passes the output guardrails, as results do: each item of a page
 * (a prompt, resource or template, with its descriptions, titles and annotations) with its
 * server's guardrails, by the access path's one rule for listings (guardListing: a block withholds
 * the item alone and is recorded for this caller; the verdict is cached per item's content, so a
 * listing rescans nothing it has seen). `server`: the server an item came from (null when not known).
 */
export function guardedListing<T>(rt: Runtime, s: SessionCtx, method: string, items: readonly T[], server: (item: T) => string | null, requestId: string): Promise<T[]> {
  return s.access.guardListing(items, requestId, (item) => {
    const name = server(item);
    return { where: name === null ? method : `${method} ${name}`, attached: name === null ? undefined : rt.catalog.servers.get(name)?.spec.guardrails, key: { content: item } };
  });
}

type Shown = { ok: true; value: unknown } | { ok: false; guardrail: string; message: string };

/**
 * A tool's definition as this caller's listing shows it: redacted, or withheld (a block, recorded
 * for every caller it is withheld from). The verdict is cached per definition (a new object
 * whenever the upstream's definition changes) and exposed name, as for every listed item
 * (access/guard.ts guardListing): a listing scans each definition once, not on every tools/list and tools/call.
 */
export function guardedDefinition(rt: Runtime, s: SessionCtx, t: CompiledTool, requestId: string): Promise<Shown> | Shown {
  const name = rt.catalog.exposedName(s.scope, t);
  const attached = rt.catalog.servers.get(t.server)?.spec.guardrails;
  if (s.access.guardrails(attached).length === 0) return { ok: true, value: name === t.def.name ? t.def : { ...t.def, name } };
  return s.access.guard('output', { ...t.def, name }, `tools/list ${t.server}`, requestId, attached, { obj: t.def, name });
}

/**
 * Does this caller's tools/list withhold `t` (a blocking output guardrail refuses its definition)?
 * Then a call to it is refused like a call to a name no server lists: a definition too poisoned
 * to show is not one to run either, and the answer is no oracle for it.
 */
function withheldFromListing(rt: Runtime, s: SessionCtx, t: CompiledTool, requestId: string): boolean | Promise<boolean> {
  // No guardrails (most callers): nothing is withheld, and a call builds and awaits nothing to find that out.
  if (s.access.guardrails(rt.catalog.servers.get(t.server)?.spec.guardrails).length === 0) return false;
  return Promise.resolve(guardedDefinition(rt, s, t, requestId)).then((go) => !go.ok);
}

/** The server a listed prompt, resource or template came from (see guardedListing). */
export function listedServer(rt: Runtime, s: SessionCtx, key: 'prompts' | 'resources' | 'resourceTemplates'): (item: unknown) => string | null {
  if (s.scope !== null) return () => s.scope;
  if (key === 'prompts') return (p) => prefixedServer(rt, String((p as Prompt).name))?.name ?? null;
  if (key === 'resources') return (r) => s.resourceOwner.get(String((r as Resource).uri)) ?? null;
  return (t) => s.templateOwners.find((o) => o.template === (t as ResourceTemplate).uriTemplate)?.server ?? null;
}

/** The server that serves prompt `name` as this endpoint exposes it (<server>__<prompt> on /mcp), and its own name for it. */
function promptOwner(rt: Runtime, s: SessionCtx, name: string, requestId = `req_${randomUUID()}`): { entry: ServerEntry; prompt: string } {
  let entry: ServerEntry | undefined;
  let prompt = name;
  if (s.scope !== null) entry = rt.catalog.servers.get(s.scope);
  else {
    entry = prefixedServer(rt, name);
    if (entry) prompt = name.slice(entry.name.length + NAME_SEP.length);
  }
  if (!entry) {
    // No server of that name: decided as a prompt of a server named so would be (its name before
    // "__" as the resource), so a caller denied it cannot tell which servers exist (as for tools).
    const resource = rt.catalog.locate(null, name).resource;
    const d = s.access.authorize(resource, PROMPT_GET, {}, context(rt, s, requestId, {}));
    refuseDenied(rt, s, d, requestId, { resource, action: PROMPT_GET, prompt: name }, `prompts/get "${name}" (resource ${resource})`);
    throw new ToolError('unknown_prompt', `unknown prompt "${name}"; call prompts/list for the prompts you may use`, { code: RPC.notFound, status: 404 });
  }
  return { entry, prompt };
}

export async function getPrompt(rt: Runtime, s: SessionCtx, name: string, args: Record<string, string> | undefined, extra: Extra): Promise<GetPromptResult> {
  const { entry, prompt } = promptOwner(rt, s, name, extra.requestId);
  const binding: StateBinding = { sub: s.identity.agent.spiffeId, server: entry.name, method: PROMPT_GET, name: prompt, args: argsDigest(args ?? {}) };
  const { requestId, adm } = await authorizeOrThrow(rt, s, entry, PROMPT_GET, { name: prompt, arguments: args ?? {} }, `prompts/get "${name}" (resource ${entry.resource})`, extra.requestId);
  // Prompt arguments are text the agent sends: input guardrails, like tool arguments. The
  // requestState is opened once the read is decided: a caller denied it learns nothing of the state.
  const ev = { plane: 'mcp', ...identityFields(s.identity), server: entry.name, resource: entry.resource, action: PROMPT_GET };
  const { args: guarded, mrtr } = await untilForwarded(adm, async () => {
    const state = retryState(rt, binding, extra, { request_id: requestId, ...ev }, `prompts/get "${name}"`);
    return {
      args: await guardInbound(rt, s, args ?? {}, `prompts/get ${name}`, requestId, entry.spec.guardrails, ev),
      mrtr: await mrtrOut(rt, s, extra, state, { where: `prompts/get ${name}`, requestId, attached: entry.spec.guardrails, ev }),
    };
  });
  const r = await traced(s, entry, PROMPT_GET, prompt, extra, (o) => entry.upstream.getPrompt(prompt, guarded, s.identity, { ...o, mrtr }), logRelay(rt, s, extra, `prompts/get ${name}`, requestId, entry.spec.guardrails));
  enforceLimit(rt, entry, `prompts/get "${name}"`, r);
  return acknowledged(rt, interim(rt, extra, await guardedResult(rt, s, r, `prompts/get ${name}`, requestId, entry.spec.guardrails), binding, `prompts/get "${name}"`), { request_id: requestId, client_request_id: s.access.clientRequestId, trace_id: s.access.traceId(), ...ev });
}

/**
 * completion/complete: suggestions for an argument of a prompt (ref/prompt, named as this endpoint
 * exposes it) or of a resource template (ref/resource), from the server that serves it, decided
 * like prompts/get or resources/read of it (a caller that may not use the prompt may not complete
 * its arguments either). The argument text goes through the input guardrails; the values come back
 * through the egress door like any upstream result.
 */
export async function completeArgument(rt: Runtime, s: SessionCtx, params: CompleteRequest['params'], extra: Extra): Promise<CompleteResult> {
  const ref = (isObj(params.ref) ? params.ref : {}) as { type?: unknown; name?: unknown; uri?: unknown };
  const arg = params.argument as unknown;
  if (!isObj(arg) || typeof arg.name !== 'string' || typeof arg.value !== 'string') {
    throw new ToolError('invalid_params', 'completion/complete needs params.argument with a string name and value', { code: RPC.invalidParams, status: 400 });
  }
  let entry: ServerEntry;
  let upstreamRef: CompleteRequest['params']['ref'];
  let action: string;
  let args: Record<string, unknown>;
  let target: string;
  if (ref.type === 'ref/prompt' && typeof ref.name === 'string') {
    const p = promptOwner(rt, s, ref.name, extra.requestId);
    entry = p.entry;
    upstreamRef = { type: 'ref/prompt', name: p.prompt };
    action = PROMPT_GET;
    args = { name: p.prompt, arguments: params.context?.arguments ?? {} };
    target = `prompt "${ref.name}"`;
  } else if (ref.type === 'ref/resource' && typeof ref.uri === 'string') {
    const uri = ref.uri;
    // A template listed in this session names its server exactly; else as resources/read finds a URI's.
    const listed = s.scope === null ? s.templateOwners.find((t) => t.template === uri)?.server : undefined;
    entry = (listed !== undefined ? rt.catalog.servers.get(listed) : undefined) ?? await ownerOf(rt, s, uri);
    upstreamRef = { type: 'ref/resource', uri };
    action = RESOURCE_READ;
    args = { uri };
    target = `resource template "${uri}"`;
  } else {
    throw new ToolError('invalid_params', 'completion/complete needs params.ref of type "ref/prompt" (with name) or "ref/resource" (with uri)', { code: RPC.invalidParams, status: 400 });
  }
  const what = `completion/complete of ${target} (resource ${entry.resource}, decided as ${action})`;
  const ev = { plane: 'mcp', ...identityFields(s.identity), server: entry.name, resource: entry.resource, action, method: COMPLETE };
  const { requestId, adm } = await authorizeOrThrow(rt, s, entry, action, args, what, extra.requestId, { method: COMPLETE });
  const attached = entry.spec.guardrails;
  // The partial value and the context are text the agent sends: input guardrails, like prompt arguments.
  const sent = await untilForwarded(adm, () => guardInbound(rt, s, { argument: params.argument, ...(params.context ? { context: params.context } : {}) }, `completion/complete ${target}`, requestId, attached, ev));
  // A server that declares no completions has none to offer (spec: clients handle an empty answer).
  const caps = entry.upstream.capabilities();
  if (caps && !caps.completions) return { completion: { values: [] } };
  const r = await traced(s, entry, COMPLETE, upstreamRef.type === 'ref/prompt' ? upstreamRef.name : upstreamRef.uri, extra,
    (o) => entry.upstream.complete({ ref: upstreamRef, ...sent }, s.identity, o), logRelay(rt, s, extra, `completion/complete ${target}`, requestId, attached));
  enforceLimit(rt, entry, `completion/complete of ${target}`, r);
  return guardedResult(rt, s, r, `completion/complete ${target}`, requestId, attached);
}
