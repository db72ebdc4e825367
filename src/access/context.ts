// A request's access context: created once the caller is identified, it holds the identity and
// its resolved policy set, and offers the access path's steps in order — authorize, guardrails,
// admit, (inject + call: the plane), guard output, settle, record. A plane drives it step by
// step; nothing re-resolves the policy set, and the egress door (ctx.res) is where it writes.
import type { BodyWatch, Ctx } from './request.ts';
import type { Identity } from '../identity/types.ts';
import type { Decision } from '../policy/types.ts';
import { setFor, type PolicySet } from '../policy/compile.ts';
import type { AuditEventInput } from '../audit/event.ts';
import type { CompiledGuardrail, Direction, EventGuard } from '../guardrails/engine.ts';
import type { ChatRequest, ChatResult } from '../providers/types.ts';
import { identify } from './identify.ts';
import { authorize, admit, admitSide, settle, release, recordEvidence, type Admission } from './decide.ts';
import { guardListing, guardrailsOf, guardChatInput, guardChatOutput, guardOrThrow, overScanBudget, recordStreamFindings } from './guard.ts';
import { createTextCounter, type TextShape } from '../guardrails/text-budget.ts';
import { DELEGATION_HEADER, delegationEvidence, liveDelegation, type Delegation } from './delegation.ts';
import { identityEvidence, requestTraceId, type EvidenceAt } from './evidence.ts';
import { AamError } from './errors.ts';

/** C: the plane's view of the request context (see request.ts Ctx). */
export class Access<C extends Ctx = Ctx> {
  readonly ctx: C;
  readonly identity: Identity;
  /** The identity's policies, resolved once for the whole request (config snapshot of ctx.cfg). */
  readonly set: PolicySet;
  /** Guardrails this request runs (policy's and the route's), once known. */
  gs: readonly CompiledGuardrail[] = [];
  /** The A2A call this request serves (x-aam-delegation, verified and bound to this caller), if any. */
  delegation?: Delegation;

  constructor(ctx: C, identity: Identity) {
    this.ctx = ctx;
    this.identity = identity;
    this.set = setFor(identity.agent, ctx.cfg.policies);
    ctx.identity = identity;
    ctx.access = this;
  }

  /** May this identity use this model route? Throws 403 naming the policy when not. */
  authorizeModel(route: string): Decision {
    return authorize(this.ctx, this.identity, { kind: 'model', agent: this.identity.agent, model: route }, this.set);
  }

  /** The guardrails of the caller's policies plus the route's; remembered for evidence. */
  guardrails(route: readonly string[] = []): readonly CompiledGuardrail[] {
    this.gs = guardrailsOf(this.ctx.rt, this.identity, route, this.set);
    if (this.gs.length) this.ctx.guardrails = this.gs.map((g) => g.name);
    return this.gs;
  }

  /**
   * Refuses a chat body, while it is read, whose message text alone is over the scan budget of a
   * blocking input guardrail of the caller's policies: the walker would block it after parsing,
   * and reading, decoding and parsing megabytes is what would hold the event loop meanwhile.
   */
  bodyWatch(shape: TextShape, where = 'prompt'): BodyWatch | undefined {
    let g: CompiledGuardrail | undefined;
    for (const x of guardrailsOf(this.ctx.rt, this.identity, [], this.set)) {
      if (x.on.has('input') && x.onScanLimit === 'block' && (g === undefined || x.maxScanChars < g.maxScanChars)) g = x;
    }
    if (g === undefined) return undefined;
    const budget = g;
    const counter = createTextCounter(shape);
    const rt = this.ctx.rt;
    return {
      from: budget.maxScanChars,
      feed: (chunk) => counter.feed(chunk) > budget.maxScanChars ? overScanBudget(rt, this.at(), this.identity, budget, where) : undefined,
    };
  }

  /** The request as the input guardrails leave it; the request itself (no promise) when none applies. */
  guardChatInput(req: ChatRequest): ChatRequest | Promise<ChatRequest> {
    return this.gs.length ? guardChatInput(this.ctx.rt, this.at(), this.identity, this.gs, req) : req;
  }

  /** The answer as the output guardrails leave it; the answer itself (no promise) when none applies. */
  guardChatOutput(result: ChatResult): ChatResult | Promise<ChatResult> {
    return this.gs.length ? guardChatOutput(this.ctx.rt, this.at(), this.identity, this.gs, result) : result;
  }

  /**
   * Any other value the agent sends (input) or receives (output), through the one walker. `json`:
   * a tool payload, also checked against json_schema guardrails; `chat`: content (embeddings input,
   * agent-to-agent messages), whose shape is the protocol's, not the user's: no schema check.
   */
  guard<T>(direction: Direction, value: T, where: string, shape: 'chat' | 'json' = 'json'): Promise<T> {
    return this.gs.length ? guardOrThrow(this.ctx.rt, this.at(), this.identity, this.gs, direction, value, where, shape) : Promise.resolve(value);
  }

  /**
   * A listing's items as the output guardrails leave them (access/guard.ts guardListing): the
   * blocked ones withheld (each block recorded), verdicts cached per item's content.
   */
  guardListing<T>(items: readonly T[], where: string, shape: 'chat' | 'json' = 'json'): Promise<T[]> {
    if (this.gs.length === 0) return Promise.resolve([...items]);
    const gs = this.gs;
    return guardListing(this.ctx.rt, this.at(), this.identity, items, (item) => ({ where, gs, key: { content: item } }), shape);
  }

  streamFindings(guard: EventGuard, blockedBy?: string): void {
    recordStreamFindings(this.ctx.rt, this.at(), this.identity, guard, blockedBy);
  }

  /** Rate limits and budget reservation (check-and-count; a promise only with the fleet store). */
  admit(tokensEstimate: number, costEstimateUsd: number, cacheKey?: string): Admission | Promise<Admission> {
    return admit(this.ctx, this.identity, tokensEstimate, costEstimateUsd, this.set, cacheKey);
  }

  /**
   * The budgets held for an upstream call made on this request's behalf before its own (the
   * semantic cache's embedding; decide.ts admitSide): settle it with the call's cost once it
   * answers. null: a budget is already overspent, make no such call.
   */
  admitSide(): Admission | null | Promise<Admission | null> {
    return admitSide(this.ctx, this.set);
  }

  settle(a: Admission, costUsd: number | null, tokens: number | null): void {
    settle(this.ctx, a, costUsd, tokens);
  }

  release(a: Admission): void {
    release(this.ctx, a);
  }

  /** This request and its trace, for evidence written outside recordEvidence (guardrail events). */
  at(): EvidenceAt { return { requestId: this.ctx.requestId, traceId: requestTraceId(this.ctx) }; }

  /** Evidence about this request, filtered by the policies' audit.record. */
  record(ev: AuditEventInput): void { recordEvidence(this.ctx, this.identity, ev, this.set); }
}

/**
 * A caller identified by an earlier request, re-resolved against the running config and key
 * store, for what aam does for it later (a push route, a subscriptions/listen stream): the agent
 * as configured now (same name, same workload), or why the caller no longer holds.
 */
export function currentCaller(rt: Ctx['rt'], then: Identity): { identity: Identity } | { gone: string; code: 'policy_denied' | 'invalid_api_key'; detail?: string } {
  const name = then.agent.name;
  const agent = name === '' ? then.agent : rt.compiled.policies.agents.get(name);
  if (!agent || agent.spiffeId !== then.agent.spiffeId) return { code: 'policy_denied', gone: `the agent ${name || then.agent.spiffeId} is no longer in the config under the same workload` };
  const keyProblem = then.keyId === undefined ? undefined : rt.keyBook.generationProblem(then.keyId, then.keyGeneration);
  if (keyProblem) return { code: 'invalid_api_key', gone: `the API key it authenticated with is no longer valid (${keyProblem})`, detail: keyProblem };
  return { identity: agent === then.agent ? then : { ...then, agent } };
}

/**
 * Step 1 of the access path: identify the caller and open its access context. A request made
 * while serving an A2A call (x-aam-delegation) is linked to that call in the evidence, whatever
 * the plane: one `delegation` event under this request's id names the chain and the parent call.
 */
export function openAccess<C extends Ctx>(ctx: C): Access<C> | Promise<Access<C>> {
  const id = identify(ctx);
  return id instanceof Promise ? id.then((i) => opened(ctx, i)) : opened(ctx, id);
}

function opened<C extends Ctx>(ctx: C, identity: Identity): Access<C> | Promise<Access<C>> {
  const a = new Access(ctx, identity);
  const d = liveDelegation(ctx.rt, ctx.req.headers[DELEGATION_HEADER], a.identity);
  if (d === undefined) return a;
  return d instanceof Promise ? d.then((live) => linked(ctx, a, live), (e: unknown) => { throw unchecked(ctx, a, e); }) : linked(ctx, a, d);
}

/** A delegation the fleet store could not check (Redis down): its refusal is evidence too, under the caller's identity. */
function unchecked<C extends Ctx>(ctx: C, a: Access<C>, e: unknown): unknown {
  if (e instanceof AamError && e.code === 'store_unavailable') {
    a.record({ type: 'delegation', request_id: ctx.requestId, trace_id: requestTraceId(ctx), identity: identityEvidence(a.identity), outcome: { status: e.status, error_class: 'server', error: e.message } });
  }
  return e;
}

function linked<C extends Ctx>(ctx: C, a: Access<C>, d: Delegation): Access<C> {
  a.delegation = d;
  ctx.rt.identitySeen.note(a.identity.agent.name, 'delegation');
  a.record({ type: 'delegation', request_id: ctx.requestId, trace_id: requestTraceId(ctx), identity: identityEvidence(a.identity), delegation: delegationEvidence(d) });
  return a;
}
