// The A2A v1 plane: `/a2a/<agent>` proxies A2A JSON-RPC (and, under it, the HTTP+JSON binding's
// routes, read as the JSON-RPC call each stands for: rest.ts) to an Agent's `spec.a2a.url`, and
// `/a2a/<agent>/.well-known/agent-card.json` serves its card rewritten to point at aam.
// identify -> resolve callee -> delegation (cycle, depth) -> decide (agents rules, skill) ->
// guard input -> admit -> inject (aam's credential for the callee, never the caller's) -> call
// (SSE relayed event by event) -> guard output -> record (linked to the delegation chain).
// Everything written to the caller goes through the egress door (ctx.res), which scrubs it.
import { H1Agent } from '../lib/h1-agent.ts';
import { sendToCallee, type CalleeAnswer, type CalleeCall, type CalleeHandler, type CalleeText } from './callee.ts';
import type { Access, CalleeInjection, Ctx } from './plane.ts';
import { readJson, readJsonWithBytes, sendJson, type BodyWatch } from '../access/request.ts';
import { AamError, EvidenceUnavailable, pathSegment, toAamError } from '../access/errors.ts';
import { Access as AccessOf, currentCaller as callerNow, openAccess } from '../access/context.ts';
import { authorize, policyEvidence, recordDecision, recordUnacknowledged, storeFailure, storeUnchecked, type Admission } from '../access/decide.ts';
import type { Identity } from '../identity/types.ts';
import { admitRuleCall, type RuleAdmission, type RuleRefusal } from '../access/rule-limits.ts';
import { encodesAhead, identityEvidence, requestTraceId } from '../access/evidence.ts';
import { EVENT_HEAD, eventHead, type EventHead } from '../audit/event.ts';
import { postToAgent, scrubAcross } from '../access/egress.ts';
import { callEnded, callStarted, chainName, taskEnded, delegate, delegationEvidence, encodeDelegation, outgoingTraceparent, type Delegation, type LiveCall } from '../access/delegation.ts';
import { decide } from '../policy/decide.ts';
import type { Decision } from '../policy/types.ts';
import { cardRefusal, decidingAgentRule, maxDelegationDepth } from '../policy/agents.ts';
import type { AgentSpec } from '../config/schema.ts';
import { CardCache, CARD_PATH, rewriteCard, type Card } from './card.ts';
import { idsIn, SeenIds, statesIn, type TaskStates } from './tasks.ts';
import { passesRaw } from './raw.ts';
import { EventWalk } from './event-walk.ts';
import { ArtifactText, PushArtifactText, mayAppend, mayJoin, type HeldRelease, type Released } from './chunks.ts';
import { StoreUnavailable } from '../store/types.ts';
import { restFromAam, restFromRpc, restOp, rpcStatus } from './rest.ts';
import { PushRoutes, type PushRoute, type PushSeen, pinnedDispatcher, pushConfigIn, pushOutcome, pushDestination, pushUrlRefusal, restoreCallerTargets, withAamTarget } from './push.ts';
import { SseParser, sseFrame, SSE_KEEPALIVE, type SseRecord } from '../providers/sse.ts';
import { Deadlines, KeepAlive, type Timed } from '../gateway/deadlines.ts';
import { isObj } from '../lib/json.ts';
import { clip } from '../lib/error-message.ts';
import { endHttpSpan, type Span } from '../observability/tracing.ts';
import { agentCallSpanAttributes, agentCallSpanName } from '../observability/otlp-genai.ts';
import type { A2aOutcome } from '../observability/metrics.ts';

/** spec.a2a.timeouts' defaults: the longest silence of a callee (before its answer's head, between two chunks), and a request/response call's whole (a stream has no total unless set). */
const IDLE_MS = 300_000;
const TOTAL_MS = 300_000;
/** An A2A call costs aam nothing, but a caller whose budget is spent is refused like any other call. */
const BUDGET_PROBE_USD = 0.000001;
const MAX_RESPONSE_BYTES = 10 * 1024 * 1024;
/** A stream's frames are written once this many characters wait, even while more has arrived. */
const FLUSH_AT = 64 * 1024;

const SEND = new Set(['SendMessage', 'SendStreamingMessage']);
/** A callee without a credential: nothing injected. */
const NO_INJECTION: { headers: Readonly<Record<string, string>>; query?: undefined; credential?: undefined } = Object.freeze({ headers: Object.freeze({}) });
/** Task methods and where their task id is. */
const TASK_ID: Record<string, 'id' | 'taskId'> = {
  GetTask: 'id', CancelTask: 'id', SubscribeToTask: 'id',
  CreateTaskPushNotificationConfig: 'taskId', GetTaskPushNotificationConfig: 'taskId',
  ListTaskPushNotificationConfigs: 'taskId', DeleteTaskPushNotificationConfig: 'taskId',
};
const STREAMING = new Set(['SendStreamingMessage', 'SubscribeToTask']);

/** JSON-RPC error codes aam uses (A2A keeps -32001..-32009 for its own errors). */
const RPC_CODE: Record<number, number> = { 400: -32602, 401: -32051, 403: -32050, 404: -32053, 413: -32602, 415: -32602, 429: -32029 };
const TASK_NOT_FOUND = -32001;
/** A2A's InvalidAgentResponseError: the callee's answer is not a valid answer to the call (aam's own failures stay -32603). */
const INVALID_AGENT_RESPONSE = -32006;
/** The most tasks one message may refer to (each is looked up in the task-owner store). */
const MAX_REFERENCED_TASKS = 64;
const UNSUPPORTED = -32004;

/**
 * A JSON-RPC call. `bytes`: the caller's body, when it is exactly this call (no other member, an
 * id, params an object, no key repeated, UTF-8): sent to the callee as it is while params need not change.
 */
type Rpc = { jsonrpc: '2.0'; id: string | number | null; method: string; params: Record<string, unknown>; bytes?: Buffer };

class RpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string) { super(message); this.code = code; }
}

/** The callee answered what is no valid answer to the call: 502 upstream_error, framed as A2A's InvalidAgentResponseError (-32006; HTTP+JSON: 502 INVALID_AGENT_RESPONSE). */
class InvalidAnswer extends AamError {
  constructor(message: string) { super(502, 'upstream_error', message); }
}

export interface A2aGateway {
  handle(ctx: Ctx): Promise<void> | void;
  /** Its connections to callees close (after the server's drain: a call still open then is cut). */
  close(): Promise<void>;
}

export function createA2aGateway(): A2aGateway {
  const cards = new CardCache();
  /**
   * The keep-alive clock of this gateway's streams (one node timer for all of them, as chat's
   * routes have): a setInterval and two listeners per stream cost every SendStreamingMessage a
   * timer list and its teardown before its first byte.
   */
  let keepalives: Deadlines | undefined;
  /**
   * Artifact text held across push notifications, per push route (chunks.ts): made with the first
   * notification (the runtime's egress door is the scrubber's source; the runtime's held-text
   * store keeps each route's state, Redis in a fleet); what a route held past its bounds is posted
   * to the caller on its own and recorded (deliverHeld).
   */
  let pushText: PushArtifactText<{ route: PushRoute; ctx: Ctx; name: string }> | undefined;
  /**
   * This gateway's connections to http(s) callees (lib/h1-agent.ts, as the model plane's): made with
   * the first call, closed with the gateway. undici's global dispatcher's settings: connect timeout
   * 10 s, idle sockets kept 4 s, no cap on sockets per callee (a stream relay holds one for its length).
   */
  let callees: H1Agent | undefined;
  const calleeDispatcher = (url: URL): H1Agent | undefined => url.protocol === 'http:' || url.protocol === 'https:'
    ? (callees ??= new H1Agent({ connectMs: 10_000, keepAliveTimeout: 4_000, connections: Infinity }))
    : undefined;

  /**
   * Not an async function: a JSON-RPC call (the common case) is its steps chained where a promise
   * appears (the access context only when it waits, the body, the call), with no async frame and
   * loop turn of its own per request. A throw before the first promise is answered as a refusal.
   */
  function handle(ctx: Ctx): Promise<void> | void {
    // The server routes every path under /a2a/ here: /a2a/<agent>[/rest].
    const path = ctx.path;
    const slash = path.indexOf('/', 5);
    const encoded = slash < 0 ? path.slice(5) : path.slice(5, slash);
    if (!path.startsWith('/a2a/') || encoded === '' || /[\n\r\u2028\u2029]/.test(path)) throw new AamError(404, 'not_found', `no A2A endpoint ${clip(path)}; use /a2a/<agent> (JSON-RPC) or /a2a/<agent>${CARD_PATH}`);
    const name = pathSegment(encoded, 'agent name');
    const rest = slash < 0 || slash === path.length - 1 ? '' : path.slice(slash);
    if (rest === CARD_PATH) {
      if (ctx.req.method !== 'GET') throw new AamError(405, 'method_not_allowed', `${ctx.req.method} is not allowed on ${clip(ctx.path)}; use GET`, { headers: { allow: 'GET' } });
      return card(ctx, name);
    }
    if (rest) {
      const push = /^\/push\/([A-Za-z0-9_]{1,80})$/.exec(rest);
      if (push) return countedPush(ctx, name, push[1]);
      // The SDK's createFromUrl resolves the card path against its URL: `/a2a/<agent>` without a slash lands here.
      if (`/${name}${rest}` === CARD_PATH) throw new AamError(404, 'not_found', `no agent card at ${path}: an agent's card is at /a2a/<agent>${CARD_PATH}; the @a2a-js/sdk ClientFactory.createFromUrl resolves the card against its URL, so give it /a2a/<agent>/ with the trailing slash`);
      return restCall(ctx, name, rest);
    }
    let opened: Access | Promise<Access>;
    try {
      if (ctx.req.method !== 'POST') throw new AamError(405, 'method_not_allowed', `${ctx.req.method} is not allowed on ${clip(ctx.path)}; use POST (JSON-RPC) or an HTTP+JSON route such as /a2a/${clip(encoded)}/message:send`, { headers: { allow: 'POST' } });
      opened = openAccess(ctx);
    } catch (e) { return JSONRPC.refuse(ctx, e, null); }
    return opened instanceof Promise ? opened.then((access) => rpcCall(ctx, access, name), (e: unknown) => JSONRPC.refuse(ctx, e, null)) : rpcCall(ctx, opened, name);
  }

  /** A JSON-RPC call once its caller is identified: the callee, the body, the call; every refusal is a JSON-RPC error. */
  function rpcCall(ctx: Ctx, access: Access, name: string): Promise<void> | void {
    let spec: NonNullable<AgentSpec['a2a']>;
    try { spec = calleeSpec(ctx, name); } catch (e) { return refusedCall(ctx, access, name, e, null, JSONRPC); }
    // A body whose params alone are over a blocking guardrail's scan budget is refused while it is read.
    return readJsonWithBytes(ctx, undefined, access.bodyWatch('a2a-jsonrpc', `a2a ${name}`)).then((body) => {
      let rpc: Rpc;
      try { rpc = parseRpc(body); } catch (e) { return refusedCall(ctx, access, name, e, null, JSONRPC); }
      // A promise only while a step before the callee waits (see call()); from the callee on, the call refuses on its own.
      let calling: Promise<void> | void;
      try { calling = call(ctx, access, name, spec, rpc, JSONRPC); } catch (e) { return refusedCall(ctx, access, name, e, rpc, JSONRPC); }
      return calling && calling.catch((e: unknown) => refusedCall(ctx, access, name, e, rpc, JSONRPC));
    }, (e: unknown) => refusedCall(ctx, access, name, e, null, JSONRPC));
  }

  /** An HTTP+JSON route (rest.ts): read as the JSON-RPC call it stands for. */
  async function restCall(ctx: Ctx, name: string, rest: string): Promise<void> {
    let rpc: Rpc | null = null;
    // Set once the caller is known: a refusal from then on (an unknown callee's too) is a refused call of that callee.
    let calling: Access | undefined;
    try {
      const op = restOp(ctx.req.method ?? '', rest, ctx.query);
      const opened = openAccess(ctx);
      const access = opened instanceof Promise ? await opened : opened;
      calling = access;
      const spec = calleeSpec(ctx, name);
      rpc = await restRpc(ctx, op, access.bodyWatch('a2a-rest', `a2a ${name}`));
      await call(ctx, access, name, spec, rpc, REST);
    } catch (e) {
      return calling ? refusedCall(ctx, calling, name, e, rpc, REST) : REST.refuse(ctx, e, null);
    }
  }

  function calleeSpec(ctx: Ctx, name: string): NonNullable<AgentSpec['a2a']> {
    const a2a = ctx.cfg.set.agents.get(name)?.spec.a2a;
    if (!a2a) throw new AamError(404, 'unknown_agent', `no A2A agent "${clip(name)}": an Agent resource with spec.a2a.url publishes one`);
    return a2a;
  }

  async function card(ctx: Ctx, name: string): Promise<void> {
    const access = await openAccess(ctx);
    let spec: NonNullable<AgentSpec['a2a']>;
    let auth: CalleeInjection | { headers: Record<string, string> };
    try {
      spec = calleeSpec(ctx, name);
      const hidden = cardRefusal(access.set, name);
      if (hidden !== null) throw new AamError(403, 'policy_denied', hidden);
      auth = spec.credential ? await inject(ctx, access, spec.credential) : { headers: {} };
    } catch (e) {
      // Refused as a call would be (an unknown callee, one the caller may call no skill of): recorded, then answered once that is safe.
      recordRefusal(ctx, access, name, e, CARD);
      throw e;
    }
    let raw;
    try { raw = await cards.get(name, spec.url, auth, 10_000); } catch (e) {
      // The callee failed, not a refusal: in the trail as its failed calls are, not counted as a refusal.
      const failed = new AamError(502, 'upstream_error', `agent "${name}" did not serve its agent card: ${(e as Error).message}`);
      recordA2aFailure(ctx, access, name, failed, CARD);
      throw failed;
    }
    const context = { time: new Date().toISOString(), request_id: ctx.requestId };
    const mayCall = (skill: string) => decide({ kind: 'agent', agent: access.identity.agent, callee: name, skill, context }, ctx.cfg.policies).allowed;
    const card = rewriteCard(raw, `${publicBase(ctx)}/a2a/${encodeURIComponent(name)}`, mayCall, spec.url, ctx.rt.tls !== null && (ctx.req.socket as { encrypted?: boolean }).encrypted === true);
    sendJson(ctx, 200, access.guardrails().length ? await guardedCard(access, name, card) : card, { 'cache-control': 'private, max-age=30' });
  }

  /** What a call's steps (HopCall) use of this gateway: made once. */
  /** The clocks of calls' totals (spec.a2a.timeouts.total_ms), one per bound (Deadlines: one node timer for its calls). */
  const totals = new Map<number, Deadlines>();
  const totalClock = (ms: number): Deadlines => {
    let d = totals.get(ms);
    if (d === undefined) totals.set(ms, d = new Deadlines(ms));
    return d;
  };
  const hopDeps: HopDeps = { dispatcher: calleeDispatcher, relayStream, relayJson, totals: totalClock };

  /**
   * Not an async function (its frame was ~2 KB per call): its steps up to the callee run at once
   * where nothing waits and are chained only where a promise appears (a task's or context's owner,
   * input guardrails, a push config's route, an admission or rule count that waits); from the
   * decision on, the call's state is one object (HopCall). A refusal before the callee is called is
   * a throw, or the rejection of the promise a waiting step returns; from then on (HopCall.send) the
   * call answers its refusals itself and nothing is returned to wait for.
   */
  function call(ctx: Ctx, access: Access, name: string, spec: NonNullable<AgentSpec['a2a']>, rpc: Rpc, binding: Binding): Promise<void> | void {
    const caller = access.identity.agent.spiffeId;
    // Which skill: named by the message, or the one that created the task.
    if (SEND.has(rpc.method)) {
      const msg = rpc.params.message as Record<string, unknown> | undefined;
      if (!msg || typeof msg !== 'object') throw new RpcError(-32602, `${rpc.method} needs params.message`);
      const alias = unreadAlias(msg, rpc.params.configuration);
      if (alias !== null) throw new RpcError(-32602, `${rpc.method}: ${alias[0]} is proto JSON's other name for ${alias[1]}, which aam checks (the task's, context's or push target's owner); send ${alias[1]}`);
      const meta = msg.metadata as Record<string, unknown> | undefined;
      const skill = typeof meta?.skill === 'string' ? meta.skill : '';
      const taskId = typeof msg.taskId === 'string' && msg.taskId ? msg.taskId : undefined;
      const ctxId = typeof msg.contextId === 'string' ? msg.contextId : undefined;
      // Tasks the message refers to for context are the callee's to read as aam: the caller's own only.
      const refs = Array.isArray(msg.referenceTaskIds) && msg.referenceTaskIds.length > 0 ? msg.referenceTaskIds as unknown[] : undefined;
      if (!taskId && !ctxId && !refs) return decided(ctx, access, name, spec, rpc, binding, skill, undefined);
      return sendOwners(ctx, name, caller, skill, taskId, ctxId, refs).then((s) => decided(ctx, access, name, spec, rpc, binding, s, taskId));
    }
    if (Object.hasOwn(TASK_ID, rpc.method)) {
      const id = rpc.params[TASK_ID[rpc.method]];
      if (typeof id !== 'string' || !id) throw new RpcError(-32602, `${rpc.method} needs params.${TASK_ID[rpc.method]}`);
      return ownedBy(ctx, name, 'task', id, caller).then((o) => decided(ctx, access, name, spec, rpc, binding, o.skill, id));
    }
    if (rpc.method === 'ListTasks' || rpc.method === 'GetExtendedAgentCard') {
      throw new RpcError(UNSUPPORTED, `aam does not relay ${rpc.method}: the callee sees every caller as aam, so its answer would mix callers; use GetTask with your task ids, or the card at /a2a/${name}${CARD_PATH}`);
    }
    throw new RpcError(-32601, `method "${clip(rpc.method)}" is not an A2A v1 method aam relays (SendMessage, SendStreamingMessage, GetTask, CancelTask, SubscribeToTask, *TaskPushNotificationConfig*)`);
  }

  /** A message's skill when it names a task (the skill that created it), after its context and the tasks it refers to (if any) are found the caller's. */
  async function sendOwners(ctx: Ctx, name: string, caller: string, skill: string, taskId: string | undefined, ctxId: string | undefined, refs?: unknown[]): Promise<string> {
    if (taskId) skill = (await ownedBy(ctx, name, 'task', taskId, caller)).skill;
    if (ctxId) { const o = await owner(ctx, name, 'context', ctxId); if (o && o.caller !== caller) throw new RpcError(TASK_NOT_FOUND, `context "${clip(ctxId)}" not found`); }
    if (refs) {
      if (refs.length > MAX_REFERENCED_TASKS || !refs.every((r) => typeof r === 'string' && r)) throw new RpcError(-32602, `message.referenceTaskIds must be at most ${MAX_REFERENCED_TASKS} task ids`);
      for (const r of refs as string[]) await ownedBy(ctx, name, 'task', r, caller);
    }
    return skill;
  }

  /** The call once its skill is known: the chain, the decision, then its input guardrails (a promise only when there are any). */
  function decided(ctx: Ctx, access: Access, name: string, spec: NonNullable<AgentSpec['a2a']>, rpc: Rpc, binding: Binding, skill: string, taskId: string | undefined): Promise<void> | void {
    const identity = access.identity;
    // The chain: this call extends the delegation the caller is serving, if any (a first hop's is
    // the caller alone: no array made for it).
    const from = access.delegation;
    const hop = (from?.hop ?? 0) + 1;
    const max = maxDelegationDepth(access.set);
    if (from ? from.chain.includes(name) : chainName(identity) === name) refuseChain(access, name, skill, rpc.method, 'delegation_cycle', `calling agent "${name}" would loop: it is already in this delegation chain (${[...callChain(access), name].join(' -> ')}); aam refuses cycles`);
    if (hop > max) refuseChain(access, name, skill, rpc.method, 'delegation_depth_exceeded', `calling agent "${name}" would be hop ${hop} of the delegation chain ${[...callChain(access), name].join(' -> ')}, over max_delegation_depth ${max} of ${chainName(identity)}'s policies`);
    // The call is its own access request: its context is made only if a `when` rule reads it.
    const c = new HopCall(hopDeps, ctx, access, name, spec, rpc, binding, skill, taskId, hop);
    c.d = authorize(ctx, identity, c, access.set);
    if (spec.credential) {
      const refused = ctx.rt.credentialRefusal(spec.credential, identity, access.set);
      if (refused) throw new AamError(403, 'policy_denied', refused);
    }
    access.guardrails();
    // No guardrail: the params as they are, with no promise to wait for.
    if (!access.gs.length) return c.guarded(rpc.params);
    return access.guard('input', rpc.params, `a2a ${name}`, 'chat').then((params) => c.guarded(params));
  }

  /**
   * A callee's push notification to aam (`POST /a2a/<agent>/push/<id>`, token in
   * X-A2A-Notification-Token): verified, checked against the caller's tasks, guarded with the
   * caller's guardrails, scrubbed, and posted to the caller's URL with the caller's token.
   */
  /** receivePush, counted in aam_a2a_push_notifications_total by what came of it. */
  async function countedPush(ctx: Ctx, name: string, id: string): Promise<void> {
    const seen: PushSeen = { agent: '', callee: '', held: false };
    try {
      await receivePush(ctx, name, id, seen);
      ctx.rt.metrics?.a2aPush?.(seen.agent, seen.callee, seen.held ? 'held' : 'delivered');
    } catch (e) {
      ctx.rt.metrics?.a2aPush?.(seen.agent, seen.callee, pushOutcome(toAamError(e)));
      throw e;
    }
  }

  async function receivePush(ctx: Ctx, name: string, id: string, seen: PushSeen): Promise<void> {
    if (ctx.req.method !== 'POST') throw new AamError(405, 'method_not_allowed', 'push notifications are POSTed', { headers: { allow: 'POST' } });
    const token = ctx.req.headers['x-a2a-notification-token'];
    const route = await storeCall(ctx, () => new PushRoutes(ctx.rt.a2aPushRoutes).verify(id, name, typeof token === 'string' ? token : undefined));
    if (!route) throw new AamError(401, 'invalid_token', 'unknown push route or wrong X-A2A-Notification-Token');
    seen.agent = route.identity.agent.name;
    seen.callee = name;
    const body = await readJson(ctx);
    const caller = route.identity.agent.spiffeId;
    const ids = idsIn(body);
    // Registered with the message that creates the task: the callee may notify before aam has seen the task in an answer.
    if (route.taskId === '') await bind(ctx, name, body, caller, route.skill);
    const owned = await Promise.all(ids.tasks.map((t) => owner(ctx, name, 'task', t)));
    const foreign = ids.tasks.length === 0 || ids.tasks.some((t, i) => owned[i]?.caller !== caller || (route.taskId !== '' && t !== route.taskId));
    if (foreign) throw new AamError(403, 'policy_denied', `a push notification through this route must be about the task it was registered for (${route.taskId || 'the task its message created'})`);
    // A task reported terminal ends the delegations it held (the callee works on it no more).
    statesIn(body, { taskState: (task, terminal) => { if (terminal) taskEnded(ctx.rt, name, task); } });
    // The caller as it is now, not as it registered: a removed, moved or revoked caller, or a
    // policy that no longer lets it call this agent, gets no more notifications.
    const identity = currentCaller(ctx, route.identity);
    const access = new AccessOf(ctx, identity);
    authorize(ctx, identity, { kind: 'agent', agent: identity.agent, callee: name, skill: route.skill, context: { time: new Date().toISOString(), request_id: ctx.requestId, method: 'PushNotification', environment: identity.agent.environment ?? '' } }, access.set);
    access.guardrails();
    const started = performance.now();
    const ev = { request_id: ctx.requestId, identity: identityEvidence(identity), a2a: { agent: name, method: 'PushNotification', task_id: ids.tasks[0], stream: false } };
    let status = 0;
    try {
      const value = await access.guard('output', body, `a2a ${name} push`, 'chat');
      // Artifact chunks across this route's notifications are one text (chunks.ts): what an
      // artifact held goes out first (before a final status), then this notification.
      if (pushText === undefined) {
        const rt = ctx.rt;
        const made = new PushArtifactText<{ route: PushRoute; ctx: Ctx; name: string }>(rt.egress, rt.a2aPushHeld, (h, released, reason) => deliverHeld(h.ctx, h.name, h.route, released, reason), {
          // A release under way counts as a request handler: a shutdown waits for it (bounded) before the stores close.
          working: (p) => {
            rt.handling++;
            p.catch((e: unknown) => rt.log.warn({ event: 'a2a_push_held_failed', err: (e as Error).message }, 'A2A push: a route\'s held text could not be let go of (it expires in the store)')).finally(rt.handled);
          },
        });
        pushText = made;
        // A shutdown's drain lets go of what routes hold (posted at once, recorded, not lost with the process).
        rt.streams.add(() => made.releaseAll());
      }
      const joiner = pushText;
      const values = await storeCall(ctx, () => joiner.pass(route.id, { route, ctx, name }, value));
      seen.held = values.length === 0;
      for (const v of values) status = await postPush(ctx, route, v);
      access.record({ type: 'a2a_call', ...ev, outcome: { status, latency_ms: performance.now() - started } } as never);
    } catch (e) {
      access.record({ type: 'a2a_call', ...ev, outcome: { status: toAamError(e).status, error: (e as Error).message, latency_ms: performance.now() - started } } as never);
      throw e;
    }
    // Acknowledged to the callee only once its evidence is safe (else 503: delivered, but not recorded
    // yet; the trail then says so beside the a2a_call that records the delivery).
    try { await ctx.rt.evidenceSafe(); } catch (e) { recordUnacknowledged(ctx, identity, 'a2a_call', e, 'refused', access.set); throw e; }
    sendJson(ctx, 200, {});
  }

  /** One notification posted to the caller's push URL (SSRF rule checked again); its HTTP status, 2xx, else 502. */
  async function postPush(ctx: Ctx, route: PushRoute, value: unknown, src = ctx.rt.egress): Promise<number> {
    // Checked again now (a name may resolve elsewhere than at registration), and connected to the address checked.
    const dest = await pushDestination(route.url, ctx.rt.a2aPushAllow);
    if ('refused' in dest) throw new AamError(502, 'push_url_refused', dest.refused);
    const dispatcher = dest.pin ? pinnedDispatcher(dest.pin) : undefined;
    let status: number;
    try {
      // Through the egress door's request side: scrubbed across parts, whole, and in headers.
      status = await postToAgent(src, route.url, value, {
        ...(dispatcher ? { dispatcher } : {}), timeoutMs: 10_000,
        headers: { 'x-aam-request-id': ctx.requestId, ...(route.callerToken ? { 'x-a2a-notification-token': route.callerToken } : {}) },
      });
    } catch (e) {
      throw new AamError(502, 'upstream_error', `the caller's push URL did not take the notification: ${(e as Error).message}`);
    } finally {
      void dispatcher?.close().catch(() => undefined);
    }
    if (status < 200 || status > 299) throw new AamError(502, 'upstream_error', `the caller's push URL answered HTTP ${status}`);
    return status;
  }

  /**
   * What a push route's artifacts held when it let go without a closing notification (`reason`:
   * 10 min without one, more routes holding than the bound, a shutdown): each posted as an
   * appended last chunk, and recorded as an `a2a_push_held` event under the request that
   * registered the route (`aam audit show` of it lists it): route, task, artifact, reason, the
   * byte count and what scrubbing found, never the text.
   */
  async function deliverHeld(ctx: Ctx, name: string, route: PushRoute, released: Released[], reason: HeldRelease): Promise<void> {
    for (const { result, findings } of released) {
      const found = [...findings];
      const src = { scrubber: () => ctx.rt.egress.scrubber(), leaked: (names: readonly string[]) => { found.push(...names); ctx.rt.egress.leaked(names); } };
      const au = (isObj(result.artifactUpdate) ? result.artifactUpdate : result) as { taskId?: unknown; artifact?: { artifactId?: unknown; parts?: unknown[] } };
      let bytes = 0;
      for (const p of au.artifact?.parts ?? []) if (isObj(p) && typeof p.text === 'string') bytes += Buffer.byteLength(p.text); // scrubbed already (ArtifactText)
      let status: number;
      let error: string | undefined;
      try {
        status = await postPush(ctx, route, result, src);
        ctx.rt.log.info({ event: 'a2a_push_held_released', agent: name, route: route.id, reason }, 'A2A push: an artifact\'s held text posted on its own (no closing notification came)');
      } catch (e) {
        status = toAamError(e).status;
        error = (e as Error).message;
        ctx.rt.log.warn({ event: 'a2a_push_held_failed', agent: name, route: route.id, reason, err: error }, 'A2A push: an artifact\'s held text was not delivered');
      }
      ctx.rt.audit?.record({
        type: 'a2a_push_held', request_id: route.requestId ?? `push-${route.id}`, ...(route.traceId ? { trace_id: route.traceId } : {}),
        identity: identityEvidence(route.identity),
        a2a: { agent: name, method: 'PushNotification', route: route.id, ...(typeof au.taskId === 'string' ? { task_id: au.taskId } : {}), ...(typeof au.artifact?.artifactId === 'string' ? { artifact_id: au.artifact.artifactId } : {}), stream: false },
        detail: { reason, bytes, findings: [...new Set(found)] },
        outcome: { status, ...(error !== undefined ? { error } : {}) },
      });
    }
  }

  /** The registering caller re-resolved against the running config and key store; refuses (403) what no longer holds. */
  function currentCaller(ctx: Ctx, then: Identity): Identity {
    const now = callerNow(ctx.rt, then);
    if (!('gone' in now)) return now.identity;
    if (now.code === 'invalid_api_key') throw new AamError(403, now.code, `the key that registered this push route is no longer valid (${now.detail}); the caller must register again`);
    throw new AamError(403, now.code, `the agent that registered this push route (${then.agent.name || then.agent.spiffeId}) is no longer in the config under the same workload; it must register again`);
  }

  /** Who owns an id, from the store seam; a fleet store that cannot answer refuses (503), never "not found". */
  async function owner(ctx: Ctx, callee: string, kind: 'task' | 'context', id: string) {
    return storeCall(ctx, () => ctx.rt.a2aTasks.get(callee, kind, id));
  }

  /** The owner of a task id, which must be this caller (another caller's task does not exist for it). */
  async function ownedBy(ctx: Ctx, callee: string, kind: 'task', id: string, caller: string) {
    const o = await owner(ctx, callee, kind, id);
    if (!o || o.caller !== caller) throw new RpcError(TASK_NOT_FOUND, `task "${clip(id)}" not found`);
    return o;
  }

  /**
   * The callee's JSON-RPC answer (`raw`: its whole body, null when over the limit), bound, guarded
   * and scrubbed across parts (sent by the caller of this): its text as the callee wrote it when
   * none of that changed it and it may pass raw (raw.ts; JSON-RPC only: HTTP+JSON answers are
   * reframed), else the message to re-serialise. A promise only when something waits (a fleet
   * store's binding, an output guardrail, a push config's routes).
   */
  function relayJson(ctx: Ctx, access: Access, name: string, skill: string, caller: string, raw: Buffer | null, method: string, binding: Binding, states: TaskStates, id: Rpc['id']): Record<string, unknown> | string | Promise<Record<string, unknown> | string> {
    if (raw === null) throw new InvalidAnswer(`agent "${name}" answered more than ${MAX_RESPONSE_BYTES} bytes`);
    const text = raw.toString('utf8');
    let msg: Record<string, unknown>;
    try { msg = JSON.parse(text) as Record<string, unknown>; } catch {
      throw new InvalidAnswer(`agent "${name}" answered without a JSON-RPC body`);
    }
    if (msg === null || typeof msg !== 'object' || (msg.result === undefined && (msg.error === null || typeof msg.error !== 'object'))) {
      throw new InvalidAnswer(`agent "${name}" answered JSON that is not a JSON-RPC response (no result, no error object)`);
    }
    const other = otherRequest(name, msg, id);
    if (other !== null) throw other;
    if (msg.result !== undefined) {
      statesIn(msg.result, states);
      const bound = bind(ctx, name, msg.result, caller, skill);
      if (bound instanceof Promise || access.gs.length || method.includes('PushNotificationConfig')) return checkedJson(ctx, access, name, msg, bound, method, binding, raw, text);
      const result = scrubAcross(ctx.rt.egress, msg.result);
      return result === msg.result ? asWritten(ctx, binding, raw, text, msg) : { ...msg, result };
    }
    if (msg.error !== undefined && access.gs.length) return access.guard('output', msg.error, `a2a ${name}`, 'chat').then((error) => (error === msg.error ? asWritten(ctx, binding, raw, text, msg) : { ...msg, error }));
    return asWritten(ctx, binding, raw, text, msg);
  }

  /** relayJson's answer when it waits for its ids' binding, an output guardrail or a push config's routes. */
  async function checkedJson(ctx: Ctx, access: Access, name: string, msg: Record<string, unknown>, bound: void | Promise<void>, method: string, binding: Binding, raw: Buffer, text: string): Promise<Record<string, unknown> | string> {
    if (bound) await bound;
    // The caller's own push URL and token restored: never the callee's text.
    if (method.includes('PushNotificationConfig')) msg = { ...msg, result: await storeCall(ctx, () => restoreCallerTargets(msg.result, (url) => new PushRoutes(ctx.rt.a2aPushRoutes).get(url.slice(url.lastIndexOf('/') + 1)))) };
    const result = scrubAcross(ctx.rt.egress, await access.guard('output', msg.result, `a2a ${name}`, 'chat'));
    if (result !== msg.result) return { ...msg, result };
    return method.includes('PushNotificationConfig') ? msg : asWritten(ctx, binding, raw, text, msg);
  }

  /**
   * SSE relayed event by event: each event's JSON-RPC result is bound, guarded and written at once; the caller ends it.
   * Once it waits, the relay is in the server's list of open streams: a shutdown's drain stops it (StreamRelay).
   */
  function relayStream(ctx: Ctx, access: Access, name: string, skill: string, caller: string, body: CalleeText & { destroy(): void }, binding: Binding, rpcId: Rpc['id'], end: RelayEnd): StreamRelay | Promise<StreamRelay> {
    const ms = ctx.rt.options.sseKeepaliveMs;
    if (ms > 0 && keepalives?.ms !== ms) keepalives = new Deadlines(ms);
    return new StreamRelay(ctx, access, name, skill, caller, body, binding, rpcId, end, ms > 0 ? keepalives! : null).start();
  }

  return { handle, close: () => callees?.destroy() ?? Promise.resolve() };
}

/** What a call's steps use of their gateway (its callee connections and its answer relays). */
interface HopDeps {
  dispatcher(url: URL): H1Agent | undefined;
  /** The clock of calls whose total is `ms`. */
  totals(ms: number): Deadlines;
  relayStream(ctx: Ctx, access: Access, name: string, skill: string, caller: string, body: CalleeText & { destroy(): void }, binding: Binding, rpcId: Rpc['id'], end: RelayEnd): StreamRelay | Promise<StreamRelay>;
  relayJson(ctx: Ctx, access: Access, name: string, skill: string, caller: string, raw: Buffer | null, method: string, binding: Binding, states: TaskStates, id: Rpc['id']): Record<string, unknown> | string | Promise<Record<string, unknown> | string>;
}

/** How a stream relay ended early, noted on its call for the evidence: a shutdown's drain, or its caller's going away. */
type RelayEnd = TaskStates & { drained: boolean; left: boolean; broken: { status: number; error: string } | null; failure(e: unknown): unknown };

/** What a call acknowledges once its evidence is safe: a JSON answer (parsed, or its text as written), or a stream's end. */
type Answer = Record<string, unknown> | string | StreamRelay;

/** The call's one audit event (recorded once, on success or failure): its credential and outcome are filled in then, no copy made. */
type CallEvent = { type: 'a2a_call'; request_id: string; trace_id: string; identity: unknown; policy: unknown; a2a: unknown; credential: { name: string; version: number } | undefined; outcome: unknown; [EVENT_HEAD]?: EventHead };

/**
 * One A2A call from its decision on, as fields and steps (no async frame, no closure per step
 * but where a promise is chained): push config -> admit -> the deciding rule's count -> inject ->
 * the callee -> its answer relayed -> settle and record -> the answer once its evidence is safe.
 * From inject on, a failure releases the admission, is recorded and is refused (fail). It is also the
 * stream relay's end marker (`drained`: ended by a shutdown's drain, which its evidence says).
 */
class HopCall implements CalleeHandler, Timed {
  readonly deps: HopDeps;
  readonly ctx: Ctx;
  readonly access: Access;
  readonly name: string;
  readonly spec: NonNullable<AgentSpec['a2a']>;
  readonly rpc: Rpc;
  readonly binding: Binding;
  readonly skill: string;
  /** The skill as spans, metrics labels and events quote it (the caller chose it; policy decides on the whole). */
  readonly shownSkill: string;
  readonly taskId: string | undefined;
  /** Its hop in the delegation chain (decided() counts it; the decision's context reads it). */
  readonly hop: number;
  /** The call's decision (decided() makes it with this call as its access request). */
  d: Decision | undefined = undefined;
  /** As an access request (AccessRequest): an agent call, of the caller's agent, to `callee` for `skill`. */
  readonly kind = 'agent';
  #context: Readonly<Record<string, unknown>> | undefined = undefined;
  params: Record<string, unknown>;
  adm: Admission | undefined = undefined;
  calls: RuleAdmission | undefined = undefined;
  delegation: Delegation | undefined = undefined;
  /** Its delegation's entry in rt.liveCalls while it runs (send; handled ends it). */
  live: LiveCall | undefined = undefined;
  traceparent = '';
  /** Its CLIENT span (tracing on): the callee's traceparent names it; ended with the call's outcome. */
  span: Span | undefined = undefined;
  started = 0;
  ev: CallEvent | undefined = undefined;
  credential: { name: string; version: number } | undefined = undefined;
  status = 0;
  /** A stream relay ended by a shutdown's drain (relayStream sets it). */
  drained = false;
  /** The caller closed its connection before its answer or the stream it asked for ended (abort, StreamRelay.abort). */
  left = false;
  /** A stream relay ended with an error event (the callee broke it, or aam refused an event): its evidence says so. */
  broken: { status: number; error: string } | null = null;
  /** What finish() delivers once the evidence is safe (the answer, its text, or a stream's relay: its end). */
  answer: Answer | null = null;
  /** What finish() found (the metrics' outcome if the evidence is safe) and the call's time, counted once it settles. */
  outcome: A2aOutcome = 'ok';
  ms = 0;
  /** Tasks a send left running as last seen (null: none): they keep its delegation live after its answer (taskState). */
  running: string[] | null = null;
  /** The call to the callee in flight (post): abort and expire stop it. */
  upstream: CalleeCall | undefined = undefined;
  /** On the clock of its total (Timed), while it runs (post to handled). */
  deadline = 0;
  older: Timed | null = null;
  newer: Timed | null = null;
  clock: Deadlines | null = null;

  constructor(deps: HopDeps, ctx: Ctx, access: Access, name: string, spec: NonNullable<AgentSpec['a2a']>, rpc: Rpc, binding: Binding, skill: string, taskId: string | undefined, hop: number) {
    this.deps = deps;
    this.ctx = ctx;
    this.access = access;
    this.name = name;
    this.spec = spec;
    this.rpc = rpc;
    this.binding = binding;
    this.skill = skill;
    this.shownSkill = clip(skill);
    this.taskId = taskId;
    this.hop = hop;
    this.params = rpc.params;
  }

  get agent(): Identity['agent'] { return this.access.identity.agent; }

  get callee(): string { return this.name; }

  /**
   * The decision's context, read only where a rule's `when` is evaluated (a memo miss: decideAgent),
   * so made then, once (time as epoch ms: celContext makes the Date). Its chain is a copy of the caller's.
   */
  get context(): Readonly<Record<string, unknown>> {
    if (this.#context !== undefined) return this.#context;
    const { ctx, access } = this;
    return (this.#context = { time: Date.now(), request_id: ctx.requestId, method: this.rpc.method, hop: this.hop, chain: callChain(access), environment: access.identity.agent.environment ?? '' });
  }

  /** The params the input guardrails passed (or the caller's own). */
  guarded(params: Record<string, unknown>): Promise<void> | void {
    this.params = params;
    // A push config: the callee gets aam's URL and token, the caller's are kept (push.ts).
    const pushCfg = pushConfigIn(this.rpc.method, params);
    if (pushCfg && typeof pushCfg.url === 'string') return this.pushTarget(pushCfg.url, pushCfg.token).then(() => this.admit());
    return this.admit();
  }

  async pushTarget(url: string, token: unknown): Promise<void> {
    const { ctx, name } = this;
    const refused = await pushUrlRefusal(url, ctx.rt.a2aPushAllow);
    if (refused) throw new AamError(400, 'push_url_refused', refused);
    const callerToken = typeof token === 'string' && token ? token : undefined;
    // The registering request names the route's evidence: what it holds and lets go of later is recorded under it.
    const route = await storeCall(ctx, () => new PushRoutes(ctx.rt.a2aPushRoutes).add({ callee: name, taskId: this.taskId ?? '', skill: this.skill, identity: this.access.identity, url, ...(callerToken ? { callerToken } : {}), requestId: ctx.requestId, traceId: requestTraceId(ctx) }));
    this.params = withAamTarget(this.rpc.method, this.params, `${publicBase(ctx)}/a2a/${encodeURIComponent(name)}/push/${route.id}`, route.token);
  }

  /** Counted against the caller's rate limits; the smallest reservation makes a spent budget refuse it (settled at $0). */
  admit(): Promise<void> | void {
    const admitting = this.access.admit(0, BUDGET_PROBE_USD);
    return admitting instanceof Promise ? admitting.then((adm) => this.counted(adm)) : this.counted(admitting);
  }

  /** The deciding agents rule's own rate and call budget (fleet-wide, like tools[].rate/budget). */
  counted(adm: Admission): Promise<void> | void {
    this.adm = adm;
    let counted: RuleAdmission | Promise<RuleAdmission> | undefined;
    try {
      const rule = decidingAgentRule(this.access.set, this.d!);
      counted = rule ? admitRuleCall(this.ctx.rt, this.access.identity, rule, 'a2a', ruleRefusal, storeFailure) : undefined;
    } catch (e) { this.access.release(adm); throw e; }
    if (!(counted instanceof Promise)) return this.send(counted);
    return counted.then((calls) => this.send(calls), (e: unknown) => { this.access.release(adm); throw e; });
  }

  /**
   * Admitted: the evidence begun, then aam's credential and the callee. From here on the call is
   * its own request handler (rt.handling, until its answer or refusal is out: a shutdown waits for
   * it) and nothing is returned: each step hands on to the next where its promise settles, and any
   * failure is recorded and refused (fail). One handler per step, no promise layers stacked per call.
   */
  send(calls: RuleAdmission | undefined): void {
    this.calls = calls;
    const { ctx, access, name, rpc } = this;
    const identity = access.identity;
    ctx.rt.handling++;
    const delegation = (this.delegation = delegate(access.delegation, identity, name, ctx.requestId, ctx.rt.ids));
    this.live = callStarted(ctx.rt, delegation);
    const traceId = requestTraceId(ctx);
    const span = ctx.span && ctx.rt.tracer ? (this.span = ctx.rt.tracer.startSpan(agentCallSpanName(name), {
      kind: 'client', parent: ctx.span.context,
      attributes: agentCallSpanAttributes({ agent: name, skill: this.shownSkill, method: rpc.method, caller: identity.agent.spiffeId }),
    })) : ctx.span;
    this.traceparent = outgoingTraceparent(span, traceId, ctx.rt.ids);
    this.started = performance.now();
    // One literal each way (no properties added to it after), in the evidence's order.
    const stream = STREAMING.has(rpc.method);
    const a2a = this.taskId
      ? { agent: name, skill: this.shownSkill, method: rpc.method, task_id: this.taskId, stream, delegation: delegationEvidence(delegation) }
      : { agent: name, skill: this.shownSkill, method: rpc.method, stream, delegation: delegationEvidence(delegation) };
    this.ev = { type: 'a2a_call', request_id: ctx.requestId, trace_id: traceId, identity: identityEvidence(identity), policy: policyEvidence(this.d!), a2a, credential: undefined, outcome: undefined };
    let injected: CalleeInjection | typeof NO_INJECTION | Promise<CalleeInjection>;
    try {
      // A static secret is injected at once: no promise, no loop turn (an OAuth or on-behalf-of token may wait).
      injected = this.spec.credential ? inject(ctx, access, this.spec.credential, true) : NO_INJECTION;
    } catch (e) { return this.fail(e); }
    if (injected instanceof Promise) injected.then((auth) => this.post(auth), (e: unknown) => this.fail(e));
    else this.post(injected);
  }

  /** The call to the callee, with aam's headers (credential, delegation, trace) and the caller's body; its answer goes to answered (or unanswered). */
  post(auth: CalleeInjection | typeof NO_INJECTION): void {
    const { ctx, name, rpc } = this;
    try {
      this.credential = auth.credential;
      const headers: Record<string, string> = {
        'content-type': 'application/json', accept: STREAMING.has(rpc.method) ? 'text/event-stream' : 'application/json',
        'a2a-version': headerOf(ctx, 'a2a-version') ?? '1.0', traceparent: this.traceparent,
        // DELEGATION_HEADER, written out: a computed key makes the literal's later keys added one by one (34 B more per object).
        'x-aam-delegation': encodeDelegation(ctx.rt, this.delegation!), 'x-aam-request-id': ctx.requestId, 'x-aam-caller': this.access.identity.agent.spiffeId,
      };
      for (const k in auth.headers) headers[k] = auth.headers[k];
      const ext = headerOf(ctx, 'a2a-extensions');
      if (ext) headers['a2a-extensions'] = ext;
      try {
        // The caller's own bytes when nothing in them changes (a guardrail's redaction, a push
        // config's URL do): only the headers (credential, delegation, trace) are aam's.
        const params = this.params;
        const body = rpc.bytes !== undefined && params === rpc.params ? rpc.bytes : JSON.stringify({ jsonrpc: '2.0', id: rpc.id, method: rpc.method, params });
        const url = withQuery(urlOf(this.spec), auth.query);
        const t = this.spec.timeouts;
        this.upstream = sendToCallee(url, { headers, body, timeoutMs: t?.idle_ms ?? IDLE_MS, wholeUpTo: MAX_RESPONSE_BYTES }, this, this.deps.dispatcher(url));
        // Its whole bounded (a stream's only when set): on a clock shared by the calls of that bound (Deadlines).
        const total = t?.total_ms ?? (STREAMING.has(rpc.method) ? 0 : TOTAL_MS);
        if (total > 0) this.deps.totals(total).add(this);
        // A caller that goes away before the answer (the server's close listener): recorded 499 (a stream's relay takes this over).
        ctx.call = this;
      } catch (e) {
        throw unreachable(name, e);
      }
      // The request is sent: alone in flight, the event's members up to its credential and outcome
      // are encoded while the callee works (as chat's model_call), so less runs between its answer and the caller's.
      if (encodesAhead(ctx)) this.ev![EVENT_HEAD] = eventHead(this.ev!);
    } catch (e) { this.fail(e); }
  }

  /**
   * The caller closed its connection before its answer: the call to the callee is aborted (its
   * connection closed: the callee sees its request end), not read to its end for nobody; the
   * evidence says 499 (fail, or finish when the answer was in already).
   */
  abort(): void {
    this.left = true;
    this.upstream?.destroy();
  }

  /** The call's total (spec.a2a.timeouts.total_ms) has passed (its clock, Deadlines): the callee's call is stopped with a 504. */
  expire(): void {
    const ms = this.spec.timeouts?.total_ms ?? TOTAL_MS;
    this.upstream?.destroy(new AamError(504, 'upstream_timeout', `agent "${this.name}" did not finish its answer within ${ms} ms (spec.a2a.timeouts.total_ms${this.spec.timeouts?.total_ms === undefined ? `, default ${TOTAL_MS} for ${this.rpc.method}` : ''}); raise it for this Agent, or use SendStreamingMessage for a long task`));
  }

  /** No answer came (sendToCallee): the callee is unreachable, or silent past its idle bound. */
  unanswered(e: Error): void { this.fail(this.failure(e, false)); }

  /**
   * What the callee's failure is to the caller: a timeout (idle: undici's headers or body timeout;
   * total: expire's) 504 upstream_timeout; no answer, unreachable (502); an answer that broke off
   * (its connection cut mid-body) an invalid answer (-32006). Anything else is aam's own, as it is.
   */
  failure(e: unknown, answered = true): unknown {
    if (e instanceof AamError) return e;
    const code = (e as { code?: unknown }).code;
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      const ms = this.spec.timeouts?.idle_ms;
      return new AamError(504, 'upstream_timeout', `agent "${this.name}" sent nothing for ${ms ?? IDLE_MS} ms ${answered ? 'in the middle of its answer' : 'before its answer began'} (spec.a2a.timeouts.idle_ms${ms === undefined ? ', the default' : ''}); raise it for this Agent, or have the agent send SSE keep-alive comments while it works`);
    }
    if (!answered) return unreachable(this.name, e);
    if (typeof code === 'string') return new InvalidAnswer(`agent "${this.name}" ${STREAMING.has(this.rpc.method) ? 'stream failed' : 'answer broke off'}: ${(e as Error).message} (its connection broke before the answer ended)`);
    return e;
  }

  /**
   * The callee's answer (sendToCallee, from the connection's handler: no promise turn), relayed: a
   * stream event by event, else its whole body (parsed, bound, guarded, scrubbed).
   */
  answered(up: CalleeAnswer): void {
    const { ctx, access, name, skill, binding, rpc } = this;
    try {
      this.calls?.forwarded();
      this.status = up.statusCode;
      const caller = access.identity.agent.spiffeId;
      const ct = String(up.headers['content-type'] ?? '');
      // Not the callee's JSON-RPC answer (its auth refusing aam's credential, a wrong URL's page): the caller's
      // status must not say it was the caller that was refused, nor its body what the callee runs on.
      if (up.statusCode >= 300 && (up.statusCode === 401 || up.statusCode === 403 || !ct.includes('json'))) {
        up.body.destroy();
        return this.fail(notJsonRpc(name, up.statusCode, ct, this.credential?.name));
      }
      // The answer: parsed (re-serialised when sent), its text as the callee wrote it, or a stream's relay.
      // A stream's relay starts once the read that carried its head is parsed (this is called from
      // within it): an answer whose events and end came in that read is relayed in one pass, with no wait.
      if (ct.startsWith('text/event-stream')) return queueMicrotask(() => this.relay(up.body, caller));
      // Read whole already (sendToCallee's wholeUpTo), unless its body failed after its head: all() says how.
      if (up.whole !== undefined) return this.relayed(up.whole);
      up.body.all(MAX_RESPONSE_BYTES).then((raw) => this.relayed(raw), (e: unknown) => this.fail(this.failure(e)));
    } catch (e) { this.fail(e); }
  }

  /** A stream's events relayed, then settled and recorded. */
  relay(body: CalleeAnswer['body'], caller: string): void {
    const { ctx, access, name, skill, binding, rpc } = this;
    let relayed: StreamRelay | Promise<StreamRelay>;
    try { relayed = this.deps.relayStream(ctx, access, name, skill, caller, body, binding, rpc.id, this); } catch (e) { return this.fail(e); }
    if (relayed instanceof Promise) relayed.then((answer) => this.finish(answer), (e: unknown) => this.fail(e));
    else this.finish(relayed);
  }

  /** A JSON answer's body (null: over the bound) relayed, then settled and recorded. */
  relayed(raw: Buffer | null): void {
    const { ctx, access, name, skill, binding, rpc } = this;
    let relayed: Record<string, unknown> | string | Promise<Record<string, unknown> | string>;
    try { relayed = this.deps.relayJson(ctx, access, name, skill, access.identity.agent.spiffeId, raw, rpc.method, binding, this, rpc.id); } catch (e) { return this.fail(e); }
    if (relayed instanceof Promise) relayed.then((answer) => this.finish(answer), (e: unknown) => this.fail(e));
    else this.finish(relayed);
  }

  /** Settled and recorded; acknowledged (the answer, or the stream's end) only once its evidence is crash-safe. */
  finish(answer: Answer): void {
    const { ctx, access } = this;
    try {
      access.settle(this.adm!, 0, 0);
      const ev = this.ev!;
      ev.credential = this.credential;
      const ms = performance.now() - this.started;
      ev.outcome = this.drained ? { status: this.status, latency_ms: ms, ended: 'shutdown_drain' }
        : this.left ? { status: 499, error: 'client disconnected', latency_ms: ms }
        : this.broken !== null ? { ...this.broken, latency_ms: ms }
        : { status: this.status, latency_ms: ms };
      this.ended(this.left && !this.drained ? 499 : this.broken?.status ?? this.status);
      access.record(ev as never);
      if (ctx.decision) ctx.decision.recorded = true;
      // Counted once the evidence settles (safe, refused): a call refused for it is aam's error, not 'ok'.
      this.outcome = this.drained ? 'drained' : this.left ? 'client_closed' : this.status >= 400 || this.broken?.status === 502 ? 'callee_error' : 'ok';
      this.ms = ms;
    } catch (e) { return this.fail(e); }
    // A stream's last events (those that came with the callee's end, not yet flushed) wait with the
    // end and leave in the same write: relayStream corked the socket for that (end() uncorks it).
    // A promise only when the evidence is not safe at once (a request alone in flight writes it now).
    // The wait is one promise layer with this call as its handler (safe, refused): no closures over the answer.
    this.answer = answer;
    if (ctx.rt.evidenceSafeThen(this) === undefined) this.safe();
  }

  /** The call counted in the A2A metrics, once: after finish recorded it (its time, the callee's status), or by fail. */
  metered(outcome: A2aOutcome, ms = this.ms, calleeStatus = this.status): void {
    this.ctx.rt.metrics?.a2aCall?.(this.access.identity.agent.name, this.name, this.shownSkill, outcome, ms, calleeStatus);
  }

  /** Its span ends with the call's outcome, once (finish, then a fail of the answer's write, ends it first). */
  ended(status: number): void {
    const span = this.span;
    if (span === undefined) return;
    this.span = undefined;
    endHttpSpan(span, status, 'client');
  }

  /** The evidence is safe (evidenceSafeThen): the answer goes out (a stream's relay ends), and the call is handled. */
  safe(): void {
    const { ctx, status } = this;
    const answer = this.answer!;
    this.metered(this.outcome);
    try {
      if (typeof answer === 'string') sendJson(ctx, status, answer);
      else if (answer instanceof StreamRelay) answer.close('');
      else this.binding.answer(ctx, status, answer, this.rpc.method);
    } catch (e) { return this.fail(e); }
    this.handled();
  }

  /** The evidence could not be recorded (evidenceSafeThen): an answer is refused (503), a stream (its events out) ends with an error event. */
  refused(err: AamError): void {
    const answer = this.answer!;
    // The caller got aam's 503 (or a cut stream), as aam_model_requests_total counts it; a callee's failure still counts in its own series.
    this.metered(this.outcome === 'client_closed' || this.outcome === 'drained' ? this.outcome : 'error');
    // The a2a_call above says what the callee answered; the trail also says what the caller got.
    recordUnacknowledged(this.ctx, this.access.identity, 'a2a_call', err, answer instanceof StreamRelay ? 'stream_cut' : 'refused', this.access.set);
    if (!(answer instanceof StreamRelay)) return this.fail(err);
    const r = rpcErrorOf(err);
    try { answer.close(this.binding.failFrame(this.rpc.id, r.code, r.message, r.data)); } catch (e) { return this.fail(e); }
    this.handled();
  }

  /**
   * A failure from inject on: the admission released, the rule's count dropped, the call recorded
   * (once), then refused to the caller (or the connection cut, once the answer had begun); handled
   * once the refusal is out.
   */
  fail(e: unknown): void {
    const { ctx, access } = this;
    let refusing: Promise<void> | void = undefined;
    try {
      access.release(this.adm!);
      this.calls?.dropped();
      if (!ctx.decision?.recorded) {
        const ev = this.ev!;
        ev.credential = this.credential;
        const err = toAamError(e);
        const ms = performance.now() - this.started;
        // A caller that left (abort: its callee's call was stopped) is recorded as one, whatever that stop did.
        ev.outcome = this.left ? { status: 499, error: 'client disconnected', latency_ms: ms } : { status: err.status, error: (e as Error).message, latency_ms: ms };
        access.record(ev as never);
        if (ctx.decision) ctx.decision.recorded = true;
        // The callee's failure (unreachable, silent, or an answer aam could not take) is upstream_error or _timeout; others are aam's.
        this.metered(this.left ? 'client_closed' : 'error', ms, err.code === 'upstream_error' || err.code === 'upstream_timeout' ? err.status : 0);
      }
      this.ended(this.left ? 499 : toAamError(e).status);
      // Nobody to refuse to: the caller's connection is gone.
      if (this.left) ctx.res.destroy();
      else refusing = this.binding.refuse(ctx, e, this.rpc.id);
    } catch (x) {
      // Not even refused (a record or a write that threw): logged, and the caller's connection cut.
      ctx.rt.log.error({ requestId: ctx.requestId, err: x }, 'a2a call failed and could not be refused');
      ctx.res.destroy();
    }
    if (refusing) refusing.then(() => this.handled(), () => this.handled());
    else this.handled();
  }

  /** The call's answer or refusal is out: it is no longer a request handler (see send). */
  handled(): void {
    this.clock?.remove(this);
    if (this.live !== undefined) callEnded(this.ctx.rt, this.live, this.name, this.running);
    this.ctx.rt.handled();
  }

  /**
   * A task state in the callee's answer or stream (TaskStates). A send's task not terminal keeps its
   * delegation live after the answer, until aam sees it terminal; a task this call did not create
   * (it names one: a poll, cancel, resubscribe or continuation) seen terminal ends the delegations
   * it held. A task this send created was held by no other call: no store write for it.
   */
  taskState(task: string, terminal: boolean): void {
    const running = this.running;
    const at = running === null ? -1 : running.indexOf(task);
    if (!terminal) {
      if (at < 0 && SEND.has(this.rpc.method)) (this.running ??= []).push(task);
      return;
    }
    if (at >= 0) running!.splice(at, 1);
    if (this.taskId !== undefined) taskEnded(this.ctx.rt, this.name, task);
  }
}

/**
 * The card as the caller's output guardrails leave it: its descriptions and examples are text the
 * caller's model reads. Its skills are a listing, guarded by the access path's one rule for
 * listings (as an MCP listing's items are): a skill they block is withheld alone (the block
 * recorded); a block elsewhere in the card refuses it (400 guardrail_blocked).
 */
async function guardedCard(access: Access, name: string, card: Card): Promise<Card> {
  const { skills, ...rest } = card;
  const out = await access.guard('output', rest, `a2a ${name} card`, 'chat');
  if (!Array.isArray(skills)) return out;
  return { ...out, skills: await access.guardListing(skills as unknown[], `a2a ${name} card skill`, 'chat') };
}

/**
 * Proto JSON's snake_case names of the fields aam reads to isolate a send (the SDK's server reads
 * them when the camelCase name is absent): a callee must never act on a task, context or push
 * target aam did not check, so a send naming one is refused. [sent, what aam reads]
 */
const MESSAGE_ALIASES = [['task_id', 'taskId'], ['context_id', 'contextId'], ['reference_task_ids', 'referenceTaskIds']] as const;
const CONFIGURATION_ALIASES = [['task_push_notification_config', 'taskPushNotificationConfig'], ['push_notification_config', 'taskPushNotificationConfig']] as const;

function unreadAlias(msg: object, configuration: unknown): readonly [string, string] | null {
  for (const a of MESSAGE_ALIASES) if (a[0] in msg) return [`message.${a[0]}`, `message.${a[1]}`];
  if (configuration && typeof configuration === 'object') {
    for (const a of CONFIGURATION_ALIASES) if (a[0] in configuration) return [`configuration.${a[0]}`, `configuration.${a[1]}`];
  }
  return null;
}

/** JSON-RPC errors aam raises itself, named as aam_a2a_refusals_total's code label says them. */
const RPC_REFUSAL: Record<number, string> = { [-32602]: 'invalid_params', [-32601]: 'method_not_found', [TASK_NOT_FOUND]: 'task_not_found', [UNSUPPORTED]: 'unsupported_operation' };

/**
 * A call refused before its callee was called (its caller and callee known): counted, recorded,
 * then refused as its binding answers. A refusal after the decision is that decision's event
 * (recordDecision); one before it (a body that is no request, bad params, an unknown method,
 * another caller's task, a store that cannot say whose task it is, a loop in the chain) is an
 * a2a_call event of its own: its status and aam's reason, the method only when it is one aam relays.
 */
function refusedCall(ctx: Ctx, access: Access, name: string, e: unknown, rpc: Rpc | null, binding: Binding): Promise<void> | void {
  recordRefusal(ctx, access, name, e, e instanceof HopRefused ? e.a2a : rpc && (SEND.has(rpc.method) || Object.hasOwn(TASK_ID, rpc.method)) ? { method: rpc.method } : undefined);
  return binding.refuse(ctx, e, rpc?.id ?? null);
}

/** What a refused card request's event says besides its callee. */
const CARD = Object.freeze({ card: true });

/**
 * A refusal of an identified caller before its callee was called or its card served: counted in
 * aam_a2a_refusals_total and, unless a decision's event carries it, an a2a_call event of its own
 * (`a2a`: what it says besides the callee). A callee aam does not know is the caller's text: clipped
 * in the event, `unknown` as a label (a name from a URL is never one). An unidentified caller never
 * gets here (its 401 comes first), so it cannot fill the trail with names.
 */
function recordRefusal(ctx: Ctx, access: Access, name: string, e: unknown, a2a: Readonly<Record<string, unknown>> | undefined): void {
  const err = e instanceof RpcError ? null : toAamError(e);
  const code = err === null ? RPC_REFUSAL[(e as RpcError).code] ?? 'invalid_request' : err.code;
  const unknown = code === 'unknown_agent';
  ctx.rt.metrics?.a2aRefused?.(access.identity.agent.name, unknown ? 'unknown' : name, code);
  recordA2aFailure(ctx, access, unknown ? clip(name) : name, e, a2a, err === null ? rpcStatus((e as RpcError).code) : err.status);
}

/** An identified caller's request that reached no callee answer: its a2a_call event (unless its decision's event carries it). */
function recordA2aFailure(ctx: Ctx, access: Access, agent: string, e: unknown, a2a: Readonly<Record<string, unknown>> | undefined, status = toAamError(e).status): void {
  if (ctx.decision) return;
  access.record({ type: 'a2a_call', request_id: ctx.requestId, identity: identityEvidence(access.identity), a2a: { agent, ...a2a },
    outcome: { status, error_class: status >= 500 ? 'server' : 'client', error: (e as Error).message } } as never);
}

/** A hop the delegation chain refuses (a cycle, too deep): what its evidence says of the call (refusedCall records it). */
class HopRefused extends AamError {
  readonly a2a: Record<string, unknown>;
  constructor(code: 'delegation_cycle' | 'delegation_depth_exceeded', message: string, a2a: Record<string, unknown>) { super(403, code, message); this.a2a = a2a; }
}

/** A rule's refusal, as the A2A plane frames it (429 with its retry-after). */
function ruleRefusal(r: RuleRefusal): AamError {
  return new AamError(429, r.code, r.message, { headers: { 'retry-after': String(r.retryAfterSeconds) } });
}

/** A callee's HTTP answer that is no JSON-RPC answer: 502, saying what to check. */
function notJsonRpc(name: string, status: number, ct: string, credential: string | undefined): AamError {
  const what = `agent "${name}" answered HTTP ${status}${ct ? ` (${ct.split(';')[0]})` : ''}, not a JSON-RPC response`;
  if (status === 401 || status === 403) {
    return new InvalidAnswer(`${what}: it refused aam's credential for it (${credential ? `Credential "${credential}"` : 'none: the Agent has no spec.a2a.credential'}); check the Agent's spec.a2a.credential`);
  }
  return new InvalidAnswer(status === 404 || status === 405 ? `${what}: check that the Agent's spec.a2a.url is its JSON-RPC endpoint` : what);
}

/**
 * A JSON-RPC answer (or stream event) whose id is not the call's: it answers another request, so it
 * is refused, never relayed (null: the call's own). An error with id null is the call's (JSON-RPC
 * 2.0: the callee could not read the request's id).
 */
function otherRequest(name: string, msg: Record<string, unknown>, id: Rpc['id']): InvalidAnswer | null {
  if (msg.id === id || (msg.id === null && msg.error !== undefined)) return null;
  // The callee's id is not repeated: its text reaches the caller only as a checked answer.
  return new InvalidAnswer(`agent "${name}" answered another request (${msg.id === undefined ? 'its answer has no JSON-RPC id' : 'its answer\'s JSON-RPC id is not'} this call's id ${JSON.stringify(id)}): the agent must answer each request with its id, as JSON-RPC 2.0 says; check the agent's JSON-RPC server`);
}

function unreachable(name: string, e: unknown): AamError {
  return new AamError(502, 'upstream_error', `agent "${name}" is unreachable: ${(e as Error).message}`);
}

/** The callee's answer as it wrote it (`text`) when it may pass raw (raw.ts; JSON-RPC only: HTTP+JSON answers are reframed), else `msg` to re-serialise. */
function asWritten(ctx: Ctx, binding: Binding, raw: Buffer, text: string, msg: Record<string, unknown>): Record<string, unknown> | string {
  return binding === JSONRPC && passesRaw(ctx.rt.egress, raw, msg) ? text : msg;
}

/** The delegation chain a call extends: a copy of the caller's, or the caller alone (a first hop). */
function callChain(access: Access): string[] {
  const from = access.delegation;
  return from ? [...from.chain] : [chainName(access.identity)];
}

/** A refused chain is a 403 whose evidence (refusedCall's) shows in the caller's tree (a function of its own: no closure per call). */
function refuseChain(access: Access, name: string, skill: string, method: string, code: 'delegation_cycle' | 'delegation_depth_exceeded', message: string): never {
  const from = access.delegation;
  throw new HopRefused(code, message, { agent: name, skill: clip(skill), method, ...(from ? { delegation: delegationEvidence(from) } : {}) });
}

/**
 * A task-owner or push-route store call; Redis down is 503 store_unavailable, never "not found".
 * The embedded stores answer at once: then no promise (a stream's binding costs it no loop turn).
 */
function storeCall<T>(ctx: Ctx, fn: () => T | Promise<T>): T | Promise<T> {
  let r: T | Promise<T>;
  try { r = fn(); } catch (e) { throw storeRefusal(ctx, e); }
  return r instanceof Promise ? r.catch((e: unknown) => { throw storeRefusal(ctx, e); }) : r;
}

/**
 * The fleet's store cannot answer: 503 store_unavailable (whose task it is cannot be checked),
 * counted with every plane's such refusal (storeUnchecked) when a caller was identified (a
 * callee's push has its own counter); any other error as it is.
 */
function storeRefusal(ctx: Ctx, e: unknown): unknown {
  if (!(e instanceof StoreUnavailable)) return e;
  const refused = new AamError(503, 'store_unavailable', `Redis (the fleet store for A2A task owners and push routes) is unavailable, so aam cannot check whose task or push route this is: ${e.message}; retry shortly`, { headers: { 'retry-after': '1' } });
  return ctx.identity ? storeUnchecked(ctx.rt, ctx.identity, e, () => refused) : refused;
}

/**
 * Bind the ids an answer names before the caller sees it, so its next call may land on any
 * replica. `seen`: ids this stream already bound (its events repeat the task and context ids),
 * bound once per stream rather than once per event.
 */
function bind(ctx: Ctx, callee: string, result: unknown, caller: string, skill: string, seen?: SeenIds): void | Promise<void> {
  const ids = idsIn(result, seen);
  // Nothing new to bind (a plain message; a stream's later events): no promise, no await.
  if (ids.tasks.length === 0 && ids.contexts.length === 0) return;
  return storeCall(ctx, () => ctx.rt.a2aTasks.bind(callee, ids, caller, skill));
}

/**
 * One SSE relay (relayStream): its state in one object and its steps as methods. As closures over
 * an async function's locals (a dozen per stream: flush, frame, emit, fail, ...) they cost each
 * stream ~1.5 KB of closures and context before its first event (a2a-stream heap profile, c=64).
 * What has arrived is read in one turn (readText: no promise per chunk) and written once, just
 * before waiting for more; the frames of one read leave in one write (one pass of the egress
 * door's scrubber, one chunk of the response's framing), not one write per event. The head waits
 * for the first write: a stream whose whole answer came before anything was written (a callee
 * that answers at once) is one body with its head (close()), as an answer is.
 */
class StreamRelay {
  /** Frames waiting for the next write (and the read's own text up to `srcAt`, see cut()). */
  out = '';
  /**
   * The text last read from the callee, while its events are passed on as it wrote them (null:
   * not now): `srcAt` is where its next event's frame would start, and its text from `spanFrom`
   * to there is framed but not yet in `out` (cut()). An event whose frame is exactly that text
   * (`data: ` + its data + a blank line: what sseFrame makes of it) is passed on as that text,
   * not framed again: the echo agent's three events are the read's own text, with no frame
   * strings made, joined and flattened for the egress door's scrubber (~1 KB per stream).
   */
  src: string | null = null;
  srcAt = 0;
  spanFrom = 0;
  /**
   * The text of artifacts sent chunk by chunk, scrubbed as one text each (chunks.ts): made at
   * the stream's first artifact update (or task snapshot with artifacts).
   */
  joined: ArtifactText | null = null;
  /** The callee's events may append to an artifact (false: its whole answer was read at once and none can, chunks.ts mayAppend). */
  appends = true;
  /** The JSON-RPC id of the callee's last event. */
  lastId: unknown = null;
  /** What one walk found in the event being framed (its keys, text parts, escaped strings). */
  readonly walk = new EventWalk();
  /** Ids this stream has bound (its events repeat them): each bound once. */
  readonly bound = new SeenIds();
  /** The head is written (head()): from then on frames go out as chunks. */
  headed = false;
  /** An event went to the caller (its time to first event is observed then). */
  sent = false;
  /** The keep-alive clock (null: none), and this relay's keep-alive and its drain's unlisting once it waits (listen()). */
  readonly keepalives: Deadlines | null;
  keepalive: KeepAlive | null = null;
  unlist: (() => void) | null = null;
  readonly parser = new SseParser();
  /** Bytes read up to the last complete event: an event may not grow past MAX_RESPONSE_BYTES. */
  eventFrom = 0;
  /** A shutdown's drain asked this relay to stop (see drained). */
  draining = false;
  /** What an artifact held, framed (ArtifactText's emit: one function per stream). */
  readonly held = (result: Record<string, unknown>): void => { this.add(this.binding.frame({ jsonrpc: '2.0', id: this.lastId, result })); };

  readonly ctx: Ctx;
  readonly access: Access;
  readonly name: string;
  readonly skill: string;
  readonly caller: string;
  readonly body: CalleeText & { destroy(): void };
  readonly binding: Binding;
  readonly rpcId: Rpc['id'];
  /** The call's note that a drain ended the stream (its evidence says so). */
  readonly end: RelayEnd;

  constructor(ctx: Ctx, access: Access, name: string, skill: string, caller: string, body: CalleeText & { destroy(): void }, binding: Binding, rpcId: Rpc['id'], end: RelayEnd, keepalives: Deadlines | null) {
    this.ctx = ctx; this.access = access; this.name = name; this.skill = skill; this.caller = caller;
    this.body = body; this.binding = binding; this.rpcId = rpcId; this.end = end;
    this.keepalives = keepalives;
  }

  /**
   * The relay waits (for the callee, a store, a guardrail): from now on a shutdown's drain may stop
   * it (rt.streams: while draining, at once) and an idle period gets a keep-alive. A relay that
   * never waits (the callee's whole answer in one read) needs neither: no clock entry, no open
   * stream entry, no closures for them.
   */
  listen(): void {
    if (this.unlist !== null) return;
    const body = this.body;
    this.unlist = this.ctx.rt.streams.add(() => { this.draining = true; body.wake(); });
    // The server's close listener aborts ctx.call when the caller goes away before the stream's end.
    if (this.ctx.res.destroyed) this.abort();
    else this.ctx.call = this;
    if (this.keepalives === null) return;
    const res = this.ctx.res;
    // The head goes out with the first write (a write of its own cost ~0.06 ms CPU per stream); a
    // callee that stays silent sends it with the first keep-alive.
    // A comment after each idle period (never inside a frame: writes are whole frames), postponed by every write.
    this.keepalive = new KeepAlive(this.keepalives, () => { if (!res.writableEnded && !res.destroyed) { this.head(); res.write(SSE_KEEPALIVE); } });
  }

  /**
   * The caller closed its connection mid-stream: the callee's stream is closed too (its task goes
   * on there; the caller may resubscribe), not read on for nobody until the callee ends it.
   */
  abort(): void {
    this.end.left = true;
    this.body.destroy();
    this.body.wake();
  }

  /** The SSE head's headers (written by head(), or with the whole stream by close()). */
  headers(): Record<string, string> {
    return { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': this.ctx.requestId };
  }

  /** The head, before the stream's first write. */
  head(): void {
    if (this.headed) return;
    this.headed = true;
    this.ctx.res.writeHead(200, this.headers());
  }

  /** A read's text, about to be parsed: its events may go out as that text (see src). */
  reading(text: string): void {
    this.cut();
    this.src = text;
    this.srcAt = 0;
    this.spanFrom = 0;
  }

  /** The read's text framed so far goes to `out` (before anything else is added, and before `out` is written). */
  cut(): void {
    const src = this.src;
    if (src !== null && this.spanFrom < this.srcAt) { this.out += src.slice(this.spanFrom, this.srcAt); this.spanFrom = this.srcAt; }
  }

  /** A frame aam made, after what came before it. */
  add(frame: string): void {
    this.cut();
    this.out += frame;
  }

  /**
   * A JSON-RPC event passed on as the callee wrote it (raw.ts): the read's own text when that text,
   * where the event's frame would start, is that frame exactly (the same bytes sseFrame makes);
   * else its frame made (and the read's text is not followed further: where the next event starts is not known).
   */
  asWritten(data: string, event: string | undefined): void {
    const src = this.src;
    if (src !== null) {
      const at = this.srcAt;
      const end = at + 6 + data.length;
      if (event === undefined && src.charCodeAt(end) === 10 && src.charCodeAt(end + 1) === 10 && src.startsWith('data: ', at) && src.startsWith(data, at + 6)
        && data.indexOf('\n') === -1 && data.indexOf('\r') === -1) {
        this.srcAt = end + 2;
        return;
      }
      this.cut();
      this.src = null;
    }
    this.out += sseFrame(data, event);
  }

  flush(): void {
    this.cut();
    if (this.out) { this.head(); this.ctx.res.write(this.out); this.out = ''; this.keepalive?.refresh(); if (!this.sent) this.firstEvent(); }
  }

  /** The stream's first event is out (a keep-alive is not one): aam_a2a_time_to_first_event_seconds. */
  firstEvent(): void {
    this.sent = true;
    this.ctx.rt.metrics?.a2aFirstEvent?.(this.name, performance.now() - this.ctx.start);
  }

  /**
   * The relay is done: the last frames wait for the stream's end (close(), once the evidence is
   * safe). Once something was written, they are held in the corked socket and leave with the end in one write.
   */
  done(): this {
    if (this.headed) { this.ctx.res.socket?.cork(); this.flush(); }
    return this;
  }

  /**
   * The stream's end (`last`: a frame to end it with, or ''). With nothing written yet, the whole
   * stream is one body: its frames scrubbed at once, its length known (no chunked framing).
   */
  close(last: string): void {
    const res = this.ctx.res;
    this.cut();
    if (!this.sent && (this.out || last)) this.firstEvent();
    if (this.headed) res.end(last);
    else res.send(200, this.out + last, this.headers());
  }

  /** What the artifacts hold, framed (before an error, and at the stream's end). */
  release(): void { this.joined?.end(this.held); }

  fail(id: unknown, code: number, message: string, data?: { code: string; http_status?: number }): void {
    this.end.broken ??= { status: data?.http_status ?? 502, error: message };
    this.release();
    this.add(this.binding.failFrame(id, code, message, data));
  }

  /** The stream broke (the callee's connection, timeout or event; else aam's own error, -32603): it ends with the error. */
  broke(e: unknown): void {
    const f = this.end.failure(e);
    if (!(f instanceof AamError)) return this.fail(this.rpcId, -32603, `agent "${this.name}" stream failed: ${(e as Error).message}`);
    const r = rpcErrorOf(f);
    this.fail(this.rpcId, r.code, r.message, r.data);
  }

  /** An event aam could not pass on: the stream ends with the error. */
  refused(ev: Record<string, unknown>, e: unknown): false {
    const r = rpcErrorOf(toAamError(e));
    this.fail(ev.id, r.code, r.message, r.data);
    return false;
  }

  /**
   * The event's frame added to what is written next; false ends the stream. `data`: the event as
   * the callee wrote it, framed as it is when nothing changed it and it may pass raw (raw.ts;
   * JSON-RPC only: an HTTP+JSON frame is the result alone), else the event re-serialised.
   */
  framed(ev: Record<string, unknown>, result: unknown, data: string, event: string | undefined): boolean {
    const egress = this.ctx.rt.egress;
    // One walk over the event for the scrub across its parts and the raw check (event-walk.ts).
    const walk = this.walk;
    walk.read(egress, ev, data);
    if (result !== undefined) try { result = walk.scrubbed(egress, ev, result); } catch (e) { return this.refused(ev, e); }
    this.lastId = ev.id;
    if (this.joined !== null || (this.appends && mayJoin(result))) {
      const joined = this.joined ??= new ArtifactText(egress);
      // An error ends the stream: what artifacts hold goes out before it.
      if (ev.error !== undefined) joined.end(this.held);
      else result = joined.pass(result, this.held);
    }
    const binding = this.binding;
    if (result !== ev.result) this.add(binding.frame({ ...ev, result }, event));
    else if (binding === JSONRPC && walk.passesRaw(egress, data)) this.asWritten(data, event);
    else this.add(binding.frame(ev, event));
    return !(ev.error !== undefined && binding === REST);
  }

  /** An event that waits for its ids' binding (a store) or an output guardrail before it is framed. */
  async checked(ev: Record<string, unknown>, owning: void | Promise<void>, data: string, event: string | undefined): Promise<boolean> {
    let result: unknown;
    try {
      if (owning) await owning;
      result = await this.access.guard('output', ev.result, `a2a ${this.name} stream`, 'chat');
    } catch (e) { return this.refused(ev, e); }
    return this.framed(ev, result, data, event);
  }

  /**
   * One event's frame for the caller; false ends the stream. A promise only when the event
   * waits for something (a fleet store's binding, an output guardrail): otherwise it is framed
   * in the same turn, with no promise per event.
   */
  emit(rec: SseRecord): boolean | Promise<boolean> {
    let ev: Record<string, unknown>;
    try { ev = JSON.parse(rec.data) as Record<string, unknown>; } catch {
      this.fail(this.rpcId, INVALID_AGENT_RESPONSE, `agent "${this.name}" sent a stream event that is not JSON`);
      return false;
    }
    if (!isObj(ev)) { this.fail(this.rpcId, INVALID_AGENT_RESPONSE, `agent "${this.name}" sent a stream event that is not a JSON-RPC response`); return false; }
    const other = otherRequest(this.name, ev, this.rpcId);
    if (other !== null) { this.fail(this.rpcId, INVALID_AGENT_RESPONSE, other.message); return false; }
    if (ev.result === undefined) return this.framed(ev, undefined, rec.data, rec.event);
    statesIn(ev.result, this.end);
    let owning: void | Promise<void>;
    try { owning = bind(this.ctx, this.name, ev.result, this.caller, this.skill, this.bound); } catch (e) { return this.refused(ev, e); }
    return owning instanceof Promise || this.access.gs.length ? this.checked(ev, owning, rec.data, rec.event) : this.framed(ev, ev.result, rec.data, rec.event);
  }

  /**
   * A shutdown's drain (rt.streams): the relay stops reading the callee once what it has read is
   * framed, sends what artifacts hold, and ends the stream with an error event the caller's SDK
   * raises (503 shutting_down, the caller's JSON-RPC id): the task goes on at the callee, and the
   * caller resubscribes to it (SubscribeToTask, tasks/resubscribe), through any replica. The call
   * is then recorded and its end acknowledged as any stream's (call()), before close() goes on.
   */
  drained(): void {
    this.end.drained = true;
    this.body.destroy();
    const task = this.bound.task || undefined;
    this.fail(this.rpcId, -32603, `aam is shutting down (this replica is draining): the stream ended before the task did${task ? `; task "${task}" goes on at the agent: resubscribe to it (SubscribeToTask / tasks/resubscribe, id "${task}")` : '; retry the call'} through aam, which another replica answers`, { code: 'shutting_down', http_status: 503 });
  }

  /** The events `text` completes (an event may not grow past MAX_RESPONSE_BYTES). */
  events(text: string): readonly SseRecord[] {
    this.reading(text);
    const records = this.parser.push(text);
    if (records.length) this.eventFrom = this.body.bytesRead;
    else if (this.body.bytesRead - this.eventFrom > MAX_RESPONSE_BYTES) throw new InvalidAnswer(`agent "${this.name}" stream failed: an event larger than ${MAX_RESPONSE_BYTES} bytes`);
    return records;
  }

  /**
   * The relay, run. A callee's answer whose end came in the read that carried its head (a callee
   * that answers at once) is relayed in one synchronous pass: no async frame, promise or loop turn
   * before the call is recorded (run()'s cost ~0.5 KB per stream). An event that waits (a fleet
   * store's binding, an output guardrail) hands the rest to run(), from that event on; an answer
   * still coming, or a drain under way, is run() from the start.
   */
  start(): this | Promise<this> {
    const body = this.body;
    if (!body.complete || this.ctx.rt.streams.draining) return this.run(null);
    try {
      const text = body.readText();
      // The whole answer: its events are all in `text` (run() reads no more when it takes over).
      if (text !== null && !mayAppend(text)) this.appends = false;
      let records = text === null ? NO_RECORDS : this.events(text);
      // The read's events, then what the parser holds at the end (run()'s order).
      for (let last = false; ; last = true) {
        for (let i = 0; i < records.length; i++) {
          const ok = this.emit(records[i]);
          if (typeof ok !== 'boolean') return this.run({ ok, records, next: i + 1, last });
          if (!ok) {
            if (last) break;
            body.destroy();
            return this.done();
          }
        }
        if (last) break;
        if (this.out.length >= FLUSH_AT) this.flush();
        records = this.parser.end();
      }
    } catch (e) {
      body.destroy();
      this.broke(e);
    }
    this.release();
    return this.done();
  }

  /** `waiting`: where start()'s pass stopped (an event that waits); null: from the start. */
  async run(waiting: Waiting | null): Promise<this> {
    const body = this.body;
    // A stream that opens once a drain has begun is ended at once, whether it waits or not.
    if (this.ctx.rt.streams.draining) this.listen();
    try {
      try {
        // More to read: what start() read was not the parser's last (nor has a drain ended it).
        let more = waiting === null || !waiting.last;
        // The rest of start()'s pass: the event that waits, then those after it in that batch.
        if (waiting !== null) {
          this.listen();
          const { records, last } = waiting;
          let ok: boolean = await waiting.ok;
          for (let i = waiting.next; ok && i < records.length; i++) {
            const r = this.emit(records[i]);
            ok = typeof r === 'boolean' ? r : await r;
          }
          if (!ok && !last) { body.destroy(); return this.done(); }
          if (more) {
            if (this.out.length >= FLUSH_AT) this.flush();
            if (this.draining) { this.drained(); more = false; }
          }
        }
        // Chunks that came with the callee's end (a callee that answers at once: head, events and
        // end in one read) are not written here: they leave with the end, in one write, once the
        // evidence is safe (close()). The echo agent's answer (three events, each its own HTTP
        // chunk) took three writes, each a pass of the egress door's scrubber and a chunk of the
        // response's framing, and a promise turn per chunk.
        if (more) {
          for (;;) {
            const text = body.readText();
            if (text === null) {
              if (body.ended) break;
              this.listen();
              if (this.draining) { this.drained(); break; }
              this.flush();
              await body.ready();
              continue;
            }
            const records = this.events(text);
            for (let i = 0; i < records.length; i++) {
              const ok = this.emit(records[i]);
              if (typeof ok !== 'boolean') this.listen();
              if (!(typeof ok === 'boolean' ? ok : await ok)) { body.destroy(); return this.done(); }
            }
            // A callee far ahead of its caller: what one turn reads is bounded (the connection pauses at 64 KiB unread).
            if (this.out.length >= FLUSH_AT) this.flush();
            if (this.draining) { this.drained(); break; }
          }
          if (!this.draining) for (const rec of this.parser.end()) {
            const ok = this.emit(rec);
            if (typeof ok !== 'boolean') this.listen();
            if (!(typeof ok === 'boolean' ? ok : await ok)) break;
          }
        }
      } catch (e) {
        body.destroy();
        if (this.draining && !this.end.drained) this.drained();
        else this.broke(e);
      }
      this.release();
      return this.done();
    } finally {
      this.unlist?.();
      this.keepalive?.stop();
    }
  }
}

/** start()'s pass stopped at an event that waits (`ok`: emit's promise): the events after it (from `next`) and whether they were the parser's last. */
type Waiting = { ok: Promise<boolean>; records: readonly SseRecord[]; next: number; last: boolean };

const NO_RECORDS: readonly SseRecord[] = Object.freeze([]);

/** How answers, stream events and refusals are framed for the caller's binding; everything else is shared. */
interface Binding {
  /** The callee's JSON-RPC answer (guarded and scrubbed) to the caller. */
  answer(ctx: Ctx, status: number, msg: Record<string, unknown>, method: string): void;
  /** One stream event (a JSON-RPC response from the callee, guarded) as an SSE frame. */
  frame(ev: Record<string, unknown>, event?: string): string;
  /** The frame that ends a stream with an error. */
  failFrame(id: unknown, code: number, message: string, data?: { code: string; http_status?: number }): string;
  /** A refusal or failure before any answer was sent; a promise while it waits for its evidence (then it is sent). */
  refuse(ctx: Ctx, e: unknown, id: Rpc['id']): Promise<void> | void;
}

const JSONRPC: Binding = {
  answer: (ctx, status, msg) => sendJson(ctx, status, msg),
  frame: (ev, event) => sseFrame(JSON.stringify(ev), event),
  failFrame: (id, code, message, data) => sseFrame(JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: { code, message, ...(data ? { data: { code: data.code } } : {}) } })),
  refuse: rpcError,
};

/** HTTP+JSON: the result is the body; errors are google.rpc.Status bodies with the matching HTTP status. */
const REST: Binding = {
  answer(ctx, status, msg, method) {
    const err = msg.error as { code?: unknown; message?: unknown } | undefined;
    if (err !== undefined) {
      const r = restFromRpc(typeof err.code === 'number' ? err.code : -32603, typeof err.message === 'string' ? err.message : 'the agent answered an error');
      return sendJson(ctx, r.status, r.body);
    }
    if (status < 200 || status > 299) {
      const r = restFromAam(502, 'upstream_error', `the agent answered HTTP ${status}`);
      return sendJson(ctx, r.status, r.body);
    }
    if (method === 'DeleteTaskPushNotificationConfig') return ctx.res.send(204, '', { 'x-request-id': ctx.requestId });
    sendJson(ctx, 200, msg.result ?? {});
  },
  frame(ev, event) {
    const err = ev.error as { code?: unknown; message?: unknown } | undefined;
    if (err === undefined) return sseFrame(JSON.stringify(ev.result ?? {}), event);
    return sseFrame(JSON.stringify(restFromRpc(typeof err.code === 'number' ? err.code : -32603, String(err.message ?? 'the agent stream failed')).body), 'error');
  },
  failFrame(_id, code, message, data) {
    const body = data && code !== INVALID_AGENT_RESPONSE ? restFromAam(data.http_status ?? 500, data.code, message).body : restFromRpc(code, message).body;
    return sseFrame(JSON.stringify(body), 'error');
  },
  refuse(ctx, e) {
    if (e instanceof RpcError) {
      recordDecision(ctx, rpcStatus(e.code), e.message);
      const r = restFromRpc(e.code, e.message);
      return afterEvidence(ctx, e, () => sendJson(ctx, r.status, r.body));
    }
    const err = toAamError(e);
    if (failed(ctx, e, err)) return;
    const r = err instanceof InvalidAnswer ? restFromRpc(INVALID_AGENT_RESPONSE, err.message) : restFromAam(err.status, err.code, err.message);
    return afterEvidence(ctx, e, () => sendJson(ctx, r.status, r.body, err.headers));
  },
};

/** The JSON-RPC request an HTTP+JSON route stands for (its body merged under the path's ids). */
async function restRpc(ctx: Ctx, op: ReturnType<typeof restOp>, watch: BodyWatch | undefined): Promise<Rpc> {
  let body: Record<string, unknown> = {};
  if (op.body !== 'none') {
    // HTTP framing: no content-length and no transfer-encoding means no body (a bare POST .../tasks/ID:cancel).
    const h = ctx.req.headers;
    const empty = op.body === 'optional' && (h['content-length'] === '0' || (h['content-length'] === undefined && h['transfer-encoding'] === undefined));
    if (!empty) {
      const b = await readJson(ctx, undefined, watch);
      if (!b || typeof b !== 'object' || Array.isArray(b)) throw new RpcError(-32602, `${op.method} needs a JSON object body`);
      body = b as Record<string, unknown>;
    }
  }
  return { jsonrpc: '2.0', id: ctx.requestId, method: op.method, params: { ...body, ...op.params } };
}

/** aam's credential for the callee (credentials.allow checked here, unless the caller just did): a promise only when a token is obtained. */
function inject(ctx: Ctx, access: Access, credential: string, allowChecked = false): CalleeInjection | Promise<CalleeInjection> {
  const refused = allowChecked ? null : ctx.rt.credentialRefusal(credential, access.identity, access.set);
  if (refused) throw new AamError(403, 'policy_denied', refused);
  return ctx.rt.injectCallee(credential, access.identity);
}

/** The URL with a credential's query parameters (a Credential with inject.query) set on a copy. */
function withQuery(u: URL, query: Record<string, string> | undefined): URL {
  if (!query) return u;
  const q = new URL(u);
  for (const k in query) q.searchParams.set(k, query[k]);
  return q;
}

/** The callee's URL, parsed once per config snapshot (not per call). */
const urls = new WeakMap<object, URL>();
function urlOf(spec: NonNullable<AgentSpec['a2a']>): URL {
  let u = urls.get(spec);
  if (!u) { u = new URL(spec.url); urls.set(spec, u); }
  return u;
}

function headerOf(ctx: Ctx, name: string): string | undefined {
  const v = ctx.req.headers[name];
  return typeof v === 'string' && v.length <= 1024 ? v : undefined;
}

/** AAM_PUBLIC_URL, else the scheme and Host the caller used (the rewritten card goes only to that caller). */
function publicBase(ctx: Ctx): string {
  if (ctx.rt.options.publicUrl) return ctx.rt.options.publicUrl.replace(/\/+$/, '');
  const tls = (ctx.req.socket as { encrypted?: boolean }).encrypted === true;
  const host = typeof ctx.req.headers.host === 'string' && /^[A-Za-z0-9.\-:[\]]{1,255}$/.test(ctx.req.headers.host) ? ctx.req.headers.host : `127.0.0.1:${ctx.req.socket.localPort}`;
  return `${tls ? 'https' : 'http'}://${host}`;
}

function parseRpc(body: { value: unknown; bytes: Buffer | null }): Rpc {
  const b = body.value;
  if (!isObj(b)) throw new RpcError(-32600, 'send one JSON-RPC 2.0 request object (batches are not part of A2A)');
  if (b.jsonrpc !== '2.0' || typeof b.method !== 'string') throw new RpcError(-32600, 'a JSON-RPC 2.0 request needs jsonrpc: "2.0" and a method');
  const id = typeof b.id === 'string' || Number.isInteger(b.id) ? b.id as string | number : null;
  // JSON-RPC ids are strings, numbers or null (the SDK's server takes integers only): no other id is relayed as null.
  if (id === null && b.id !== null && b.id !== undefined) throw new RpcError(-32600, 'a JSON-RPC request\'s id must be a string, an integer or null');
  const params = isObj(b.params) ? b.params : {};
  // jsonrpc, method, id and params, and nothing else: the body is the call re-serialised would be.
  let members = 0;
  for (const _ in b) members++;
  const exact = body.bytes !== null && members === 4 && b.id === id && params === b.params;
  return exact ? { jsonrpc: '2.0', id, method: b.method, params, bytes: body.bytes! } : { jsonrpc: '2.0', id, method: b.method, params };
}

/**
 * An A2A caller gets JSON-RPC errors: aam's refusals keep their HTTP status (403 denied, 401,
 * 404, 429) with the error code in error.data.code; A2A's own errors (task not found) are HTTP 200.
 */
function rpcError(ctx: Ctx, e: unknown, id: Rpc['id']): Promise<void> | void {
  if (e instanceof RpcError) {
    recordDecision(ctx, rpcStatus(e.code), e.message);
    const body = { jsonrpc: '2.0', id, error: { code: e.code, message: e.message } };
    return afterEvidence(ctx, e, () => sendJson(ctx, 200, body));
  }
  const err = toAamError(e);
  if (failed(ctx, e, err)) return;
  const body = { jsonrpc: '2.0', id, error: rpcErrorOf(err) };
  return afterEvidence(ctx, e, () => sendJson(ctx, err.status, body, err.headers));
}

/** An aam refusal as a JSON-RPC error: the code by its HTTP status (a body that is not JSON: A2A's JSONParseError), aam's own code and status in data. */
function rpcErrorOf(err: AamError): { code: number; message: string; data: { code: string; http_status: number } } {
  const code = err instanceof InvalidAnswer ? INVALID_AGENT_RESPONSE : err.code === 'invalid_json' ? -32700 : RPC_CODE[err.status] ?? -32603;
  return { code, message: err.message, data: { code: err.code, http_status: err.status } };
}

/**
 * A refusal once its evidence is safe (or failed to be); at once when the refusal is that the
 * trail did not commit (waiting on it again would end the same way, after the commit timeout).
 * The promise (the plane's handler waits for it) settles once the refusal is sent.
 */
function afterEvidence(ctx: Ctx, e: unknown, send: () => void): Promise<void> | void {
  if (e instanceof EvidenceUnavailable) return send();
  return ctx.rt.evidenceSafe().then(send, send);
}

/** Log and record a failed call; true when the answer had begun (the connection is then cut). */
function failed(ctx: Ctx, e: unknown, err: AamError): boolean {
  if (err.status >= 500 && err.code === 'internal_error') ctx.rt.log.error({ requestId: ctx.requestId, err: e }, 'a2a call failed');
  recordDecision(ctx, err.status, err.message);
  if (ctx.res.headersSent) { ctx.res.destroy(); return true; }
  return false;
}
