// Model plane: chat completions (OpenAI wire) and messages (Anthropic wire), stream and not.
// The whole path reads top to bottom: identify -> parse -> decide -> admit -> call (fallback) ->
// respond -> settle + record.
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { codecFor } from '../providers/index.ts';
import { parseOpenAIChatRequest } from '../providers/openai.ts';
import { parseAnthropicRequest } from '../providers/anthropic.ts';
import { SSE_KEEPALIVE } from '../providers/sse.ts';
import { sentMaxTokens, uncarried } from '../providers/params.ts';
import type { ChatRequest, ChatResult, ClientCodec, ProviderAdapter, StreamEvent, Usage } from '../providers/types.ts';
import { thinkingTexts, withThinkingTexts } from '../providers/types.ts';
import { openAccess } from '../access/context.ts';
import { holdsSecret, scrubJoinedTexts } from '../access/egress.ts';
import type { Admission } from '../access/decide.ts';
import { chatStreamGuard, hasOutputWebhook, nextTurn, streamPieces, TURN_MS, watchesOutput } from '../access/guard.ts';
import type { EventScrubber } from '../access/scrub-events.ts';
import type { EventGuard } from '../guardrails/engine.ts';
import { AamError, badRequest, toAamError } from '../access/errors.ts';
import { anthropicRequestId, readJsonBody, sendText } from '../access/request.ts';
import type { Access, Ctx } from './plane.ts';
import { parseJsonInTurns } from '../access/json-turns.ts';
import type { Identity } from '../identity/types.ts';
import { NO_ATTEMPTS, runAttempts, type AttemptsResult } from './attempts.ts';
import { targetOrder, type TokenNeed } from './strategy.ts';
import { demoChat, demoStream } from './demo.ts';
import { costUsd, estimateCostUsd } from './pricing.ts';
import { localStream, openUpstreamStream, StreamBroken, type OpenStream } from './stream.ts';
import { CallAbort, failureError, sendAttempt, sendStreamAttempt, unusable, UPSTREAM_MESSAGE_MAX, type AttemptFailure, type AttemptLog, type AttemptStream, type AttemptText, type OutboundRequest, type UpstreamBody } from './upstream.ts';
import { traced } from './traced.ts';
import { Deadlines, KeepAlive } from './deadlines.ts';
import { servedModel, targetInfo, type Route, type Target } from './routes.ts';
import { blockedMessage } from '../guardrails/engine.ts';
import type { Category } from '../guardrails/types.ts';
import { resultToEvents, StreamRecorder } from '../cache/replay.ts';
import type { CacheLookup } from '../cache/model-cache.ts';
import { embedderFor } from './embeddings.ts';
import { callEvidenceAhead, unacknowledgedCall, countCall, failedCall, recordCall, recordCallEvidence, type CallEvidenceAhead, type CallOutcome } from './record.ts';
import { chatUpstream, clientBody, type ClientBody } from './raw-body.ts';
import { resolveRoute } from './resolve.ts';

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' };

export function handleChat(ctx: Ctx, wire: 'openai' | 'anthropic'): Promise<void> {
  ctx.wire = wire;
  // Not async (an async function's frame is ~0.5 KB of garbage per request): steps that need not
  // wait return values, not promises, and the body's read is chained. A throw is a rejection.
  try {
    const opened = openAccess(ctx);
    return opened instanceof Promise ? opened.then((a) => readChat(a, wire)) : readChat(opened, wire);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** The body read (no key repeated in it, a 400 otherwise: its bytes may then go upstream as they are, raw-body.ts), parsed and served. */
function readChat(a: Access, wire: 'openai' | 'anthropic'): Promise<void> {
  return readJsonBody(a.ctx, undefined, a.bodyWatch(wire === 'openai' ? 'openai-chat' : 'anthropic-messages')).then((body) => {
    const parsed = wire === 'openai' ? parseOpenAIChatRequest(body.value) : parseAnthropicRequest(body.value);
    if (!parsed.ok) throw badRequest(`${parsed.field}: ${parsed.message}`, parsed.field);
    return serveChat(a, parsed.req, codecFor(wire), { client: clientBody(body) });
  });
}

/** What a plane speaking another wire over the chat path (the Responses API) adds to it. */
export interface ServeOptions {
  /**
   * Completes the request once the model is authorized (decide before you look), before the
   * input guardrails, so they see the result: e.g. stored conversation state. `bytes`: what it
   * added to the prompt, for the budget estimate. A value, not a promise, when nothing was read.
   */
  resolve?: (req: ChatRequest) => { req: ChatRequest; bytes: number } | Promise<{ req: ChatRequest; bytes: number }>;
  /** Sees the request before and after the input guardrails (e.g. to keep at rest what they redacted, not what was sent). */
  guarded?: (before: ChatRequest, after: ChatRequest) => void;
  /** The client's body in the chat request's own wire: sent upstream as it is where nothing in it must change (raw-body.ts). */
  client?: ClientBody;
}

/**
 * The model access path for a parsed chat request, answered in the client's wire (codec).
 * Not an async function (its frame was ~1.1 KB per request): each step below returns a value
 * where nothing was to wait for and is chained only where a promise appears (a resolve that
 * reads, input guardrails, a cache lookup, a fleet admission), in the same order: decide (the
 * route) before resolve, guardrails before the cache, the cache before admission. A throw is a rejection.
 */
export function serveChat(a: Access, parsedReq: ChatRequest, codec: ClientCodec, opts: ServeOptions = {}): Promise<void> {
  try {
    // The bytes actually read bound the prompt (a chunked upload declares no length).
    const bodyBytes = a.ctx.bodyBytes ?? 0;
    const route = resolveRoute(a, parsedReq.model, 'chat');
    if (!opts.resolve) return guardInput(a, route, parsedReq, parsedReq, bodyBytes, codec, opts);
    const resolved = opts.resolve(parsedReq);
    return resolved instanceof Promise
      ? resolved.then((r) => guardInput(a, route, parsedReq, r.req, bodyBytes + r.bytes, codec, opts))
      : guardInput(a, route, parsedReq, resolved.req, bodyBytes + resolved.bytes, codec, opts);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** serveChat's input guardrails (req: as resolved), then the cache. */
function guardInput(a: Access, routed: Route, parsedReq: ChatRequest, req: ChatRequest, bodyBytes: number, codec: ClientCodec, opts: ServeOptions): Promise<void> {
  a.guardrails(routed.guardrails);
  const route = carrying(a, routed, req, codec);
  const guarded = a.guardChatInput(req);
  return guarded instanceof Promise
    ? guarded.then((g) => lookUp(a, route, parsedReq, req, g, bodyBytes, codec, opts))
    : lookUp(a, route, parsedReq, req, guarded, bodyBytes, codec, opts);
}

/**
 * The route's targets that carry every answer-changing field of the request (providers/params.ts):
 * a field is never dropped silently, so the others do not serve it (no fallback to them); none
 * left is a 400 naming the field and the route. Logprobs are refused where output guardrails
 * watch: they read the answer's text, and its tokens would spell what they redact.
 */
function carrying(a: Access, route: Route, req: ChatRequest, codec: ClientCodec): Route {
  if (req.extra === undefined && req.anthropicExtra === undefined && req.otherParts === undefined && (req.response_format === undefined || req.response_format.type === 'text')) return route;
  const x = req.extra;
  if (x && (x.logprobs === true || (x.top_logprobs !== undefined && x.top_logprobs !== null)) && watchesOutput(a.gs)) {
    throw new AamError(400, 'invalid_request', `logprobs: model route "${route.name}" has output guardrails, which read the answer's text, not its tokens; ask without logprobs`, { param: 'logprobs' });
  }
  let why: string | null = null;
  const targets = route.targets.filter((t) => {
    if (t.provider.type === 'demo') return true;
    const w = uncarried(req, adapterFor(codec, t).wire, t.model, t.options);
    if (w !== null) why ??= `${w} (target ${t.label})`;
    return w === null;
  });
  if (targets.length === route.targets.length) return route;
  if (targets.length === 0) throw new AamError(400, 'invalid_request', `${why}; model route "${route.name}" has no target that takes it, and aam does not drop it silently`, { param: why!.slice(0, why!.indexOf(':')) });
  return { ...route, targets };
}

/** serveChat's cache lookup, for the request the input guardrails passed (req; unguarded: before them), then admission. */
function lookUp(a: Access, route: Route, parsedReq: ChatRequest, unguarded: ChatRequest, req: ChatRequest, bodyBytes: number, codec: ClientCodec, opts: ServeOptions): Promise<void> {
  opts.guarded?.(unguarded, req);
  // The client's bytes only stand for the request the guardrails passed unchanged (and nothing added to).
  const client = req === parsedReq ? opts.client : undefined;
  // Cache (scoped to this agent or team): looked up after policy and input guardrails, so a hit
  // is only ever served to a caller who may make the request, and counts as a $0 call.
  // Fleet: an entry not in this replica's memory is read by the admission script (one round trip).
  if (!route.cache) return admitAndCall(a, route, req, bodyBytes, codec, client, null);
  const { ctx, identity } = a;
  return ctx.rt.cache.lookup('chat', route, req, { agent: identity.agent.spiffeId, team: identity.agent.team }, ctx.req.headers,
    { embed: embedderFor(a, route.cache.embedding_model), defer: true })
    .then((look) => admitAndCall(a, route, req, bodyBytes, codec, client, look));
}

/** A cached answer to replay, if the lookup found one. */
function hitOf(look: CacheLookup | null): ChatResult | null {
  return look?.status === 'hit' && look.entry ? (look.entry.result as ChatResult) : null;
}

/** serveChat's admission (budget, limits), then the call. */
function admitAndCall(a: Access, route: Route, req: ChatRequest, bodyBytes: number, codec: ClientCodec, client: ClientBody | undefined, look: CacheLookup | null): Promise<void> {
  // ~4 bytes per token; the request body size is a free upper bound of the prompt.
  const promptTokens = Math.ceil(bodyBytes / 4);
  // Each target's output limit as sent (raised for the thinking a reasoning effort adds on Claude).
  const hit = hitOf(look) !== null;
  let maxOut = 0;
  let estimate = 0;
  for (const t of route.targets) {
    const out = t.provider.type === 'demo' ? sentMaxTokens(req, 'openai', t.model) : sentMaxTokens(req, adapterFor(codec, t).wire, t.model, t.options);
    maxOut = Math.max(maxOut, out);
    // A hit costs $0 (the admission script reserves nothing for an entry it finds, too).
    if (!hit) estimate = Math.max(estimate, estimateCostUsd(promptTokens, out, t.pricing));
  }
  const admitted = a.admit(promptTokens + maxOut, estimate, look?.pending?.key);
  const need: TokenNeed = { inputTokens: promptTokens, outputTokens: maxOut };
  if (admitted instanceof Promise || look?.pending) return admittedLater(a, route, req, codec, client, look, admitted, need);
  return callModel(a, route, req, codec, admitted, { hit: hitOf(look), save: look && look.status !== 'off' ? look.save : null }, need, client, undefined);
}

/** admitAndCall with the fleet's admission (a round trip) or a cache entry the admission script read. */
async function admittedLater(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, client: ClientBody | undefined, look: CacheLookup | null, admitted: Admission | Promise<Admission>, need: TokenNeed): Promise<void> {
  // Fleet: the admission's round trip is in flight. The first target's upstream request is built
  // meanwhile; it is sent only once admitted (a refused request reaches no upstream).
  const early = admitted instanceof Promise && !hitOf(look) ? firstRequest(a, route, req, codec, need, client) : undefined;
  const adm = admitted instanceof Promise ? await admitted : admitted;
  if (look?.pending) look = await look.pending.finish(adm.cached);
  return callModel(a, route, req, codec, adm, { hit: hitOf(look), save: look && look.status !== 'off' ? look.save : null }, need, client, early);
}

/** The admitted call, whole or streamed. */
function callModel(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, adm: Admission, cache: CacheState, need: TokenNeed, client: ClientBody | undefined, early: FirstRequest | undefined): Promise<void> {
  const ac = new CallAbort();
  // Aborted by the server's close listener when the client goes away before the answer is finished.
  a.ctx.call = ac;
  return req.stream ? streamChat(a, route, req, codec, adm, ac, cache, need, client, early) : completeChat(a, route, req, codec, adm, ac, cache, need, client, early);
}

/**
 * The route's targets in order and the first one's upstream request, built before the admission
 * answers (fleet: its Redis round trip). Only what has no effect outside this request runs here:
 * the order, the adapter's request and its bytes; no breaker slot, credential, span or dispatch
 * (the attempt does those, once admitted). Undefined when the build fails: the attempt builds it
 * again and fails as it would have, after the admission's own answer.
 */
export interface FirstRequest {
  readonly order: readonly Target[];
  readonly target: Target;
  readonly stream: boolean;
  readonly up: OutboundRequest | Promise<OutboundRequest>;
}

function firstRequest(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, need: TokenNeed, client: ClientBody | undefined): FirstRequest | undefined {
  // A stream an output webhook watches is called whole (checkedWhole), without the prepared request.
  if (req.stream && hasOutputWebhook(a.gs)) return undefined;
  const order = targetOrder(route, need);
  const target = order[0];
  if (target === undefined || target.provider.type === 'demo') return undefined;
  try {
    const adapter = adapterFor(codec, target);
    const stream = req.stream === true;
    const up = chatUpstream(adapter, asCalled(req, stream), targetInfo(target, stream), a.ctx.bodyBytes ?? 0, adapter.wire === codec.wire ? client : undefined);
    // A long body built across turns: its failure is the attempt's to report, if it is made.
    if (up instanceof Promise) up.catch(() => undefined);
    return { order, target, stream, up };
  } catch {
    return undefined;
  }
}

/** The request as called (whole or streamed): itself when it already says so, not a copy per attempt (adapters read the call's kind from TargetInfo). */
function asCalled(req: ChatRequest, stream: boolean): ChatRequest {
  return (req.stream === true) === stream ? req : { ...req, stream };
}

/** The attempt's upstream request: the one built ahead for this target, or built now. */
function upstreamFor(early: FirstRequest | undefined, target: Target, stream: boolean, build: () => OutboundRequest | Promise<OutboundRequest>): OutboundRequest | Promise<OutboundRequest> {
  return early !== undefined && early.target === target && early.stream === stream ? early.up : build();
}

/** hit: a cached answer to replay; save: store the fresh answer (null when caching is off). */
interface CacheState { hit: ChatResult | null; save: ((r: ChatResult) => boolean) | null }

function cacheHeader(c: CacheState): Record<string, string> {
  return c.hit ? { 'x-aam-cache': 'hit' } : c.save ? { 'x-aam-cache': 'miss' } : {};
}

/**
 * A non-streamed answer. Not an async function (its frame was ~1-1.6 KB per request): the upstream's
 * answer is chained, and from there each step waits only on a promise that is there (the evidence's
 * write and commit, output guardrails, the codec's settlement). The order is the same: settle and
 * record the evidence, check the answer, wait for the evidence's commit, send; counters once.
 */
function completeChat(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, adm: Admission, ac: CallAbort, cache: CacheState, need: TokenNeed, client: ClientBody | undefined, early?: FirstRequest): Promise<void> {
  if (cache.hit) return replayWhole(a, route, codec, adm, cache, cache.hit);
  const called = callWhole(a.ctx, a.identity, route, req, codec, ac, need, client, early);
  // The upstream request is sent (callWhole ran up to its first await): alone in flight, the
  // evidence's fixed part is made while the upstream works.
  const ahead = callEvidenceAhead(a.ctx, a.identity);
  return called.then((r) => answerWhole(a, route, codec, adm, cache, r, ahead));
}

/** A cache hit, answered whole ($0). */
async function replayWhole(a: Access, route: Route, codec: ClientCodec, adm: Admission, cache: CacheState, hit: ChatResult): Promise<void> {
  const { ctx } = a;
  const call = settleAndRecord(a, route, null, hit.usage, adm, 200, false, undefined, 'hit', NO_ATTEMPTS);
  let body: string;
  try {
    // Joined as a fresh answer's are (sendChecked): an entry stored before aam scrubbed them so may hold a secret cut across blocks.
    const result = thinkingScrubbed(ctx.rt.egress, await a.guardChatOutput(hit), ctx.requestId);
    body = encodeBody(codec, result, result.model || route.name);
    await ctx.rt.evidenceSafe();
    await codec.settle?.();
  } catch (e) {
    unacknowledgedCall(ctx, a.identity, route, call, e);
    throw e;
  }
  countCall(ctx, a.identity, route, call);
  sendText(ctx, 200, body, 'application/json', { ...cacheHeader(cache), 'x-aam-cost-usd': '0' });
}

type Answered = Extract<AttemptsResult<WholeAnswer['value']>, { ok: true }>;

/** The upstream's answer (or the attempts' failure): settled and recorded, then checked and sent. */
function answerWhole(a: Access, route: Route, codec: ClientCodec, adm: Admission, cache: CacheState, r: AttemptsResult<WholeAnswer['value']>, ahead: CallEvidenceAhead | undefined): Promise<void> | undefined {
  const { ctx, identity } = a;
  if (!r.ok) {
    a.release(adm);
    const message = ctx.rt.scrub(r.failure.message, UPSTREAM_MESSAGE_MAX);
    recordCall(ctx, identity, route, failedCall(ctx, r.failure.clientStatus, false, message, r.attempts));
    throw failureError(r.failure, message);
  }
  const call = settleAndRecord(a, route, r.target, r.value.result.usage, adm, 200, false, undefined, cache.save ? 'miss' : null, r.attempts, ahead);
  // Without output guardrails nothing more is recorded before the answer: alone in flight, the
  // evidence's write (the fleet's INSERT) starts now, its round trip overlapping the checks and
  // encoding below once it is on the socket; the answer still waits for evidenceSafeNow().
  if (a.gs.length === 0) {
    const sent = ctx.rt.evidenceSoon();
    if (sent) return sent.then(() => checkWhole(a, route, codec, cache, r, call));
  }
  return checkWhole(a, route, codec, cache, r, call);
}

/**
 * The answer stored in the cache, checked by the output guardrails, then sent. Its counters
 * (countCall) are done once whatever comes of it: before the wait on the evidence's commit when
 * there is one (sendChecked), else once the answer is out or failed.
 */
function checkWhole(a: Access, route: Route, codec: ClientCodec, cache: CacheState, r: Answered, call: CallOutcome): Promise<void> | undefined {
  let checked: ChatResult | Promise<ChatResult>;
  try {
    cache.save?.(r.value.result);
    checked = a.guardChatOutput(r.value.result);
  } catch (e) {
    countCall(a.ctx, a.identity, route, call);
    throw e;
  }
  return checked instanceof Promise
    ? checked.then((result) => sendChecked(a, route, codec, cache, r, call, result), (e: unknown) => { countCall(a.ctx, a.identity, route, call); throw e; })
    : sendChecked(a, route, codec, cache, r, call, checked);
}

function sendChecked(a: Access, route: Route, codec: ClientCodec, cache: CacheState, r: Answered, call: CallOutcome, checked: ChatResult): Promise<void> | undefined {
  const { ctx } = a;
  // A secret split across thinking blocks (or summary parts) has JSON between its halves in the body: the door cannot see it.
  const result = thinkingScrubbed(ctx.rt.egress, checked, ctx.requestId);
  // Counting is handed on (done, or left to the promise returned) once this is true.
  let handed = false;
  try {
    // The raw upstream body is only usable when no guardrail watches output (they read the answer's
    // text, tool calls and thinking, not the upstream's other fields: re-encoded, the agent gets only
    // what they saw), and when no secret hides in it split across text blocks (the joined text shows
    // it; re-encoded, the door scrubs it).
    const raw = result === r.value.result && !watchesOutput(a.gs) && !holdsSecret(ctx.rt.egress, result.text ?? '') && !thinkingHoldsSecret(ctx.rt.egress, result) ? r.value.raw : null;
    const text = raw ?? encodeBody(codec, result, result.model);
    const safe = ctx.rt.evidenceSafeNow();
    if (safe) {
      // The answer waits for its evidence's commit (the fleet's INSERT in flight); counted once
      // that says what the caller is answered: 200, or 503 when the commit failed (unacknowledgedCall, which amends the trail too).
      handed = true;
      return safe.then(() => {
        const settled = codec.settle?.();
        if (!settled) { try { sendWhole(ctx, text, r, call, cache); } finally { countCall(ctx, a.identity, route, call); } return undefined; }
        return settled.then(
          () => { try { sendWhole(ctx, text, r, call, cache); } finally { countCall(ctx, a.identity, route, call); } },
          (e: unknown) => { countCall(ctx, a.identity, route, call); throw e; },
        );
      }, (e: unknown) => { unacknowledgedCall(ctx, a.identity, route, call, e); throw e; });
    }
    const settled = codec.settle?.();
    if (settled) {
      handed = true;
      return settled.then(
        () => { try { sendWhole(ctx, text, r, call, cache); } finally { countCall(ctx, a.identity, route, call); } },
        (e: unknown) => { countCall(ctx, a.identity, route, call); throw e; },
      );
    }
    sendWhole(ctx, text, r, call, cache);
  } finally {
    // Counters (usage, metrics) once the answer is out, whatever came of it: alone in flight, the
    // answer leaves that much sooner. Its evidence and the budget's settlement came before it.
    if (!handed) countCall(ctx, a.identity, route, call);
  }
  return undefined;
}

function sendWhole(ctx: Ctx, text: string, r: Answered, call: CallOutcome, cache: CacheState): void {
  ctx.res.send(200, text, anthropicRequestId(answerHeaders(ctx.requestId, r.target, call.cost, cache), ctx));
}

/** One non-streamed answer over the route's targets (fallback, retries); `need` orders them for strategy cost. */
function callWhole(ctx: Ctx, identity: Identity, route: Route, req: ChatRequest, codec: ClientCodec, ac: CallAbort, need: TokenNeed, client?: ClientBody, early?: FirstRequest) {
  // Not an async function: its frame was ~0.5 KB per request. A throw here is the attempt's
  // rejection all the same (runAttempts calls it inside its try).
  return runAttempts(route, ac, (target): Promise<AttemptText | WholeAnswer | AttemptFailure> => {
    if (target.provider.type === 'demo') return Promise.resolve({ ok: true as const, value: { result: demoChat(req, target.model), raw: null } });
    const adapter = adapterFor(codec, target);
    const built = upstreamFor(early, target, false, () => chatUpstream(adapter, asCalled(req, false), targetInfo(target, false), ctx.bodyBytes ?? 0, adapter.wire === codec.wire ? client : undefined));
    const send = (up: OutboundRequest) => traced(ctx, 'chat', route, target, identity, (inj) => sendAttempt(target, up, inj, ac));
    return built instanceof Promise ? built.then(send) : send(built);
  }, need, early?.order, (res, target) => (res.ok && 'text' in res ? wholeAnswer(target, adapterFor(codec, target), codec, res.text) : res));
}

/** The adapter a target is called with: the client wire's native one there, else the provider's. */
function adapterFor(codec: ClientCodec, target: Target): ProviderAdapter {
  return codec.native?.(target.provider.type) ?? target.provider.adapter!;
}

type WholeAnswer = { ok: true; value: { result: ChatResult; raw: string | null } };

/** A whole upstream answer read as a chat result: one that does not parse or read as one is unusable (another attempt may do). */
function wholeAnswer(target: Target, adapter: ProviderAdapter, codec: ClientCodec, text: string): WholeAnswer | AttemptFailure | Promise<WholeAnswer | AttemptFailure> {
  let parsed: unknown;
  try {
    parsed = parseJsonInTurns(text); // a large answer's long strings are decoded across loop turns
  } catch { return unusable(target, 'not a valid chat response'); }
  if (parsed instanceof Promise) return parsed.then((v) => readAnswer(target, adapter, codec, text, v), () => unusable(target, 'not a valid chat response'));
  return readAnswer(target, adapter, codec, text, parsed);
}

function readAnswer(target: Target, adapter: ProviderAdapter, codec: ClientCodec, text: string, parsed: unknown): WholeAnswer | AttemptFailure {
  let result: ChatResult;
  try { result = adapter.chatResponse(parsed); } catch { return unusable(target, 'not a valid chat response'); }
  result.model = servedModel(result.model, target); // a fresh object: what the cache keeps names it too
  // Same wire format on both sides: hand the upstream body through untouched (keeps every field).
  return { ok: true as const, value: { result, raw: adapter.wire === codec.wire ? text : null } };
}

/**
 * A webhook guardrail on output judges a whole answer, so a streamed request it watches is
 * answered whole first, checked (detectors and webhooks), then replayed as a stream: the stream
 * is never a way around it.
 */
async function checkedWhole(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, ac: CallAbort, need: TokenNeed) {
  const r = await callWhole(a.ctx, a.identity, route, req, codec, ac, need);
  if (!r.ok) return r;
  const checked = await a.guardChatOutput(r.value.result);
  return { ok: true as const, value: localStream(resultToEvents(checked)), target: r.target, attempts: r.attempts };
}

/** A whole answer's headers (sendText's, then target, cost, cache), filled in one object: no spreads per request. */
function answerHeaders(requestId: string, target: Target, cost: number | null, cache: CacheState): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': requestId, 'x-aam-target': target.label, 'x-aam-cost-usd': cost === null ? 'unknown' : cost.toFixed(8) };
  if (cache.hit) h['x-aam-cache'] = 'hit';
  else if (cache.save) h['x-aam-cache'] = 'miss';
  return h;
}

/** What a streamed call came to: the stream opened (target null: a cached answer) or the attempts' failure. */
type StreamCalled = { ok: true; value: OpenStream; target: Target | null; attempts: readonly AttemptLog[] } | { ok: false; failure: AttemptFailure; attempts: readonly AttemptLog[] };

/**
 * A streamed answer. Not an async function: its frame (~2 KB) lived from the call to the stream's
 * end, and at c=64 a stream outlives a scavenge, so it was promoted to old space (major GCs' work).
 * One ChatStream object holds the stream's state; each step is chained only where a promise
 * appears (the upstream's answer, a socket that pushes back, the evidence's write and commit).
 */
function streamChat(a: Access, route: Route, req: ChatRequest, codec: ClientCodec, adm: Admission, ac: CallAbort, cache: CacheState, need: TokenNeed, client: ClientBody | undefined, early?: FirstRequest): Promise<void> {
  const { ctx, identity, gs } = a;
  const whole = !cache.hit && hasOutputWebhook(gs);
  const s = new ChatStream(a, route, codec, adm, ac, cache, whole, codec.wire === 'anthropic' || req.stream_options?.include_usage === true);
  let done: Promise<void> | undefined;
  try {
    const called: StreamCalled | Promise<StreamCalled> = cache.hit ? { ok: true as const, value: localStream(resultToEvents(cache.hit)), target: null, attempts: NO_ATTEMPTS }
      : whole ? checkedWhole(a, route, req, codec, ac, need) : runAttempts(route, ac, (target): Promise<AttemptStream | { ok: true; value: OpenStream } | AttemptFailure> => {
      // Not an async function (its frame was ~0.4 KB per stream); a throw is the attempt's rejection all the same.
      if (target.provider.type === 'demo') return Promise.resolve({ ok: true as const, value: localStream(demoStream(req, target.model)) });
      const adapter = adapterFor(codec, target);
      const built = upstreamFor(early, target, true, () => chatUpstream(adapter, asCalled(req, true), targetInfo(target, true), ctx.bodyBytes ?? 0, adapter.wire === codec.wire ? client : undefined));
      const open = (up: OutboundRequest) => traced(ctx, 'chat', route, target, identity, (inj) => sendStreamAttempt(target, up, inj, ac));
      return built instanceof Promise ? built.then(open) : open(built);
    }, need, early?.order, (up1, target) => {
      // The head arrived: read up to the first content (runAttempts' commit point).
      if (!up1.ok || !('body' in up1)) return up1;
      s.bodies.push(up1.body);
      return openUpstreamStream(target, up1.body, adapterFor(codec, target).streamParser());
    });
    // The upstream request is sent (runAttempts ran up to its first await): what needs no answer is built meanwhile.
    codec.prepareStream?.(early?.target.model ?? route.targets[0]?.model ?? route.name);
    if (called instanceof Promise) {
      s.ahead = callEvidenceAhead(ctx, identity);
      done = called.then((r) => s.answered(r));
    } else done = s.answered(called);
  } catch (e) {
    s.close();
    return Promise.reject(e);
  }
  if (!done) {
    s.close();
    return Promise.resolve();
  }
  return done.then(() => s.close(), (e: unknown) => { s.close(); throw e; });
}

/**
 * One streamed answer's state, from the call to the terminator: the response's headers and
 * keep-alive, the upstream bodies opened, then the relay (encoder, scrubber, guard, recorder) and
 * its outcome. The relay's parts are let go once the last event is out, before the end waits on
 * the evidence's write (a loop turn or more at c=64).
 */
class ChatStream {
  readonly a: Access;
  readonly route: Route;
  readonly codec: ClientCodec;
  readonly adm: Admission;
  readonly ac: CallAbort;
  readonly cache: CacheState;
  readonly whole: boolean;
  readonly includeUsage: boolean;
  readonly res: ServerResponse;
  /** Upstream bodies opened; any still unread when we are done is aborted (no-op once ended). */
  readonly bodies: UpstreamBody[] = [];
  readonly keepalive: KeepAlive;
  ahead: CallEvidenceAhead | undefined = undefined;
  /** Text held for the stream's last write (see send); written if the stream ends otherwise. */
  held = '';
  target: Target | null = null;
  /** The upstream attempts that failed before the stream opened (its evidence names them). */
  attempts: readonly AttemptLog[] = NO_ATTEMPTS;
  stream: OpenStream | null = null;
  recorder: StreamRecorder | null = null;
  encode: ((ev: StreamEvent) => string) | null = null;
  scrub: EventScrubber | null = null;
  guard: EventGuard | null = null;
  usage: Usage | undefined = undefined;
  broken: string | null = null;
  blockedBy: string | undefined = undefined;
  brokenType = 'api_error';
  /**
   * Past the first content, once the upstream has sent everything (drained), what is left goes
   * out with the terminator: one write(2) instead of two, and the end follows without waiting on
   * the upstream (only on this request's evidence). The first content is never held.
   */
  pastHead = false;
  /** Without a credential to scrub, an event is its own clean event: one reused array instead of one per event. */
  readonly one: StreamEvent[] = [];

  constructor(a: Access, route: Route, codec: ClientCodec, adm: Admission, ac: CallAbort, cache: CacheState, whole: boolean, includeUsage: boolean) {
    this.a = a;
    this.route = route;
    this.codec = codec;
    this.adm = adm;
    this.ac = ac;
    this.cache = cache;
    this.whole = whole;
    this.includeUsage = includeUsage;
    this.res = a.ctx.res;
    // Keep-alive: an SSE comment after each idle period (also before the first token, when
    // reasoning models think for minutes) so proxies and load balancers do not cut the stream.
    // On the route's clock: a node timer per stream cost a timer list per stream at c=1, before the first byte.
    this.keepalive = new KeepAlive(route.keepalive ??= new Deadlines(Math.max(1, a.ctx.rt.options.sseKeepaliveMs) || 1), () => { this.openHeaders(); this.res.write(SSE_KEEPALIVE); });
  }

  openHeaders(extra?: Record<string, string>): void {
    const res = this.res;
    if (res.headersSent) return;
    // One object filled in place (SSE_HEADERS, id, cache, extra: the order on the wire).
    const h: Record<string, string> = { ...SSE_HEADERS, 'x-request-id': this.a.ctx.requestId };
    if (this.cache.hit) h['x-aam-cache'] = 'hit';
    else if (this.cache.save) h['x-aam-cache'] = 'miss';
    if (extra) for (const k in extra) h[k] = extra[k];
    res.writeHead(200, anthropicRequestId(h, this.a.ctx));
  }

  /** The call's outcome: a failure answered (or thrown, before any header), a stream relayed. */
  answered(r: StreamCalled): Promise<void> | undefined {
    const { a, res } = this;
    const { ctx } = a;
    if (!r.ok) {
      a.release(this.adm);
      const message = ctx.rt.scrub(r.failure.message, UPSTREAM_MESSAGE_MAX);
      recordCall(ctx, a.identity, this.route, failedCall(ctx, r.failure.clientStatus, true, message, r.attempts));
      if (!res.headersSent) throw failureError(r.failure, message);
      res.end(this.codec.streamError(message, 'api_error'));
      return undefined;
    }
    this.target = r.target;
    this.attempts = r.attempts;
    this.stream = r.value;
    this.openHeaders(r.target ? { 'x-aam-target': r.target.label } : undefined);
    this.recorder = this.cache.save ? new StreamRecorder() : null;
    this.encode = this.codec.streamEncoder({ includeUsage: this.includeUsage, model: r.target ? servedModel(undefined, r.target) : this.cache.hit?.model || this.route.name });
    // Credentials are scrubbed per text/tool-argument stream (a secret can be split across
    // deltas), then guardrails see the scrubbed events.
    this.scrub = ctx.rt.eventScrubber();
    this.guard = this.whole ? null : chatStreamGuard(a.gs);
    let first: Promise<void> | undefined;
    try {
      first = this.emit(r.value.head);
    } catch (e) {
      this.brokenBy(e);
      return this.end();
    }
    return first ? first.then(() => this.pastTheHead(), (e: unknown) => this.endBroken(e)) : this.pastTheHead();
  }

  private pastTheHead(): Promise<void> | undefined {
    // node:http corks a response's socket until the next tick; the rest of a read that came
    // with the first content would be converted before then. Send the first chunk now.
    this.res.socket?.uncork();
    this.pastHead = true;
    const target = this.target;
    if (target) this.a.ctx.rt.metrics?.firstChunk?.(this.route.name, target.provider.name, performance.now() - this.a.ctx.start);
    return this.relay();
  }

  /** The events after the head, batch by batch; synchronous while they are here and the socket takes them. */
  private relay(): Promise<void> | undefined {
    const stream = this.stream!;
    try {
      for (;;) {
        const batch = stream.next();
        if (batch instanceof Promise) return batch.then((b) => this.relayed(b), (e: unknown) => this.endBroken(e));
        if (batch === null) break;
        const waiting = this.out(batch);
        if (waiting) return waiting;
      }
    } catch (e) {
      this.brokenBy(e);
    }
    return this.end();
  }

  private relayed(batch: StreamEvent[] | null): Promise<void> | undefined {
    if (batch === null) return this.end();
    try {
      const waiting = this.out(batch);
      if (waiting) return waiting;
    } catch (e) {
      return this.endBroken(e);
    }
    return this.relay();
  }

  /**
   * One batch sent and the keep-alive put off: undefined when the socket took it at once, else the
   * relay going on once it has (relay and relayed share it).
   */
  private out(batch: readonly StreamEvent[]): Promise<void> | undefined {
    const sent = this.emit(batch);
    if (sent) return sent.then(() => { this.keepalive.refresh(); return this.relay(); }, (e: unknown) => this.endBroken(e));
    this.keepalive.refresh();
    return undefined;
  }

  private brokenBy(e: unknown): void {
    this.broken = this.a.ctx.rt.scrub(e instanceof StreamBroken ? e.message : `stream failed: ${(e as Error).message}`, UPSTREAM_MESSAGE_MAX);
    if (e instanceof StreamBroken) this.brokenType = e.errorType;
  }

  private endBroken(e: unknown): Promise<void> | undefined {
    this.brokenBy(e);
    return this.end();
  }

  private send(s: string): Promise<void> | undefined {
    if (this.pastHead && this.stream!.drained()) { this.held += s; return undefined; }
    if (this.held) { s = this.held + s; this.held = ''; }
    return write(this.res, s);
  }

  private cleaned(ev: StreamEvent): readonly StreamEvent[] {
    if (this.scrub) return this.scrub.push(ev);
    this.one[0] = ev;
    return this.one;
  }

  /** Unguarded batches are encoded and written without a promise unless the socket pushes back. */
  private emit(events: readonly StreamEvent[]): Promise<void> | undefined {
    if (this.guard) return this.emitGuarded(this.guard, events);
    const encode = this.encode!;
    let out = '';
    // Indexed loops: this runs per upstream read, and array iterators showed up in its garbage.
    for (let i = 0; i < events.length; i++) {
      const upstreamEv = events[i];
      if (upstreamEv.type === 'usage') this.usage = upstreamEv.usage;
      this.recorder?.push(upstreamEv);
      const clean = this.cleaned(upstreamEv);
      for (let j = 0; j < clean.length; j++) out += encode(clean[j]);
    }
    return out ? this.send(out) : undefined;
  }

  private async emitGuarded(guard: EventGuard, events: readonly StreamEvent[]): Promise<void> {
    const encode = this.encode!;
    let out = '';
    let since = performance.now();
    for (const upstreamEv of events) {
      if (upstreamEv.type === 'usage') this.usage = upstreamEv.usage;
      this.recorder?.push(upstreamEv);
      for (const clean of this.cleaned(upstreamEv)) {
        // Output guardrails scan a sliding window across chunks: held text is released as soon
        // as it is known clean; a block ends the stream with an error event.
        for (const piece of streamPieces(clean)) {
          const evs = guard.push(piece);
          if (evs.blocked) { this.blockedBy = evs.blocked.guardrail; throw new StreamBroken(blockedMessage(evs.blocked.guardrail, evs.blocked.category, 'output'), 'guardrail_blocked'); }
          for (const ev of evs.events) out += encode(ev);
          // A large batch or delta is guarded across loop turns: send what is ready, let others run.
          if (performance.now() - since >= TURN_MS) {
            if (out) { await this.send(out); out = ''; }
            await nextTurn();
            since = performance.now();
          }
        }
      }
    }
    if (out) await this.send(out);
  }

  /** The relay is over (ended, broken or the client gone): settle, record, and end the stream once its evidence is safe. */
  private end(): Promise<void> | undefined {
    const { a, route, adm, codec, res } = this;
    const stream = this.stream!;
    let tail = this.held;
    this.held = '';
    // What the scrubber and the guard still hold goes out, cleared as at a clean end, before the
    // terminator or the error event of a stream the upstream broke (a cut loses none of it).
    if (!this.blockedBy && !this.ac.aborted) tail += this.released();
    if (this.guard) a.streamFindings(this.guard, this.blockedBy);
    if (this.blockedBy) stream.abort();
    // Not needed past the last event: let go before the waits below (the parser, framer and encoder).
    this.stream = null;
    this.encode = null;
    this.scrub = null;
    this.guard = null;
    if (this.ac.aborted) {
      codec.streamAborted?.();
      finish(a, route, this.target, this.usage, adm, 499, true, 'client disconnected', null, this.attempts);
      return undefined;
    }
    if (this.broken) {
      finish(a, route, this.target, this.usage, adm, this.blockedBy ? 400 : 502, true, this.broken, null, this.attempts);
      const error = codec.streamError(this.broken, this.brokenType);
      // What the error handed on (a failed Response, stored) is written before the error is sent.
      const settled = codec.settle?.();
      if (settled) return settled.then(() => { res.end(tail + error); });
      res.end(tail + error);
      return undefined;
    }
    const call = settleAndRecord(a, route, this.target, this.usage, adm, 200, true, undefined, this.cache.hit ? 'hit' : this.cache.save ? 'miss' : null, this.attempts, this.ahead);
    // Every finding is recorded by now: alone in flight, the evidence's write starts before the
    // counters and the cache entry are done (the terminator still waits for evidenceSafe()).
    const sent = a.ctx.rt.evidenceSoon();
    return sent ? sent.then(() => this.recorded(call, tail)) : this.recorded(call, tail);
  }

  /** The held text, scrubbed then guarded; a block found in it ends the stream as any block does. */
  private released(): string {
    const encode = this.encode!;
    const evs = this.scrub ? this.scrub.end() : [];
    let out = '';
    const guard = this.guard;
    if (!guard) {
      for (const ev of evs) out += encode(ev);
      return out;
    }
    for (const ev of evs) {
      const r = guard.push(ev);
      if (r.blocked) return this.blockedIn(r.blocked);
      for (const g of r.events) out += encode(g);
    }
    const r = guard.end();
    if (r.blocked) return this.blockedIn(r.blocked);
    for (const g of r.events) out += encode(g);
    return out;
  }

  private blockedIn(b: { guardrail: string; category: Category }): string {
    this.blockedBy = b.guardrail;
    this.broken = blockedMessage(b.guardrail, b.category, 'output');
    this.brokenType = 'guardrail_blocked';
    return '';
  }

  private recorded(call: CallOutcome, tail: string): Promise<void> | undefined {
    const { a, codec, res } = this;
    // Only a stream that ended cleanly is stored (never a cut or errored one).
    const complete = this.recorder?.result();
    this.recorder = null;
    if (complete) this.cache.save?.(complete);
    // The stream is acknowledged by its terminator: only once its evidence is crash-safe (and
    // what the codec handed on, e.g. a stored Response, is written). Evidence the trail could not
    // commit ends it with an error event instead, as a whole answer would be refused (503): counted
    // so (as a stream the upstream broke is counted 502, not by its 200 head) and amended in the
    // trail (unacknowledgedCall), so the metrics and the trail say the same.
    // Waited on only when there is something to wait for (a request alone in flight wrote its
    // evidence at once): a wait on an already-known value is a promise and a loop turn more.
    const safe = a.ctx.rt.evidenceSafeNow();
    if (safe) {
      return safe.then(() => { countCall(a.ctx, a.identity, this.route, call); return this.settled(tail); }, (e: unknown) => {
        unacknowledgedCall(a.ctx, a.identity, this.route, call, e, 'chat', 'stream_cut');
        const unsafe = toAamError(e);
        res.end(tail + codec.streamError(unsafe.message, unsafe.type, unsafe.code));
      });
    }
    countCall(a.ctx, a.identity, this.route, call);
    return this.settled(tail);
  }

  private settled(tail: string): Promise<void> | undefined {
    const settled = this.codec.settle?.();
    if (settled) return settled.then(() => { this.res.end(tail + this.codec.streamDone); });
    this.res.end(tail + this.codec.streamDone);
    return undefined;
  }

  /** Whatever ended the stream: what was held is still written (after a throw the error handler ends the stream); keep-alive off; bodies closed. */
  close(): void {
    const res = this.res;
    if (this.held && !res.writableEnded && !res.destroyed) res.write(this.held);
    this.keepalive.stop();
    for (const b of this.bodies) b.destroy();
  }
}

/**
 * The answer with its thinking texts (each block's text, each summary part) scrubbed across their
 * boundaries, as a reader joins them: a secret split across two is redacted where it starts. The
 * same object when none is split (one within a text is the door's).
 */
function thinkingScrubbed(egress: Parameters<typeof holdsSecret>[0], result: ChatResult, requestId: string): ChatResult {
  const th = result.thinking;
  if (th === undefined) return result;
  const texts = thinkingTexts(th);
  const clean = scrubJoinedTexts(egress, texts, requestId);
  return clean === texts ? result : { ...result, thinking: withThinkingTexts(th, clean) };
}

/** The answer's thinking text, its blocks joined, holds a secret (one split across blocks too). */
function thinkingHoldsSecret(egress: Parameters<typeof holdsSecret>[0], result: ChatResult): boolean {
  return result.thinking !== undefined && holdsSecret(egress, thinkingTexts(result.thinking).join(''));
}

/** A non-streamed answer's JSON body text in the client's wire. */
function encodeBody(codec: ClientCodec, result: ChatResult, model: string): string {
  return codec.encodeResultText ? codec.encodeResultText(result, model) : JSON.stringify(codec.encodeResult(result, model));
}

/** Writes s; a promise only when the socket pushes back (wait for drain or close). */
function write(res: ServerResponse, s: string): Promise<void> | undefined {
  if (!res.write(s) && !res.destroyed) return Promise.race([once(res, 'drain'), once(res, 'close')]).then(() => undefined);
  return undefined;
}

/** Settle budget/limits and record usage + evidence (target null: served from cache, $0). */
function finish(a: Access, route: Route, target: Target | null, usage: Usage | undefined, adm: Admission, status: number, stream: boolean, error: string | undefined, cache: 'hit' | 'miss' | null, attempts: readonly AttemptLog[]): number | null {
  const call = settleAndRecord(a, route, target, usage, adm, status, stream, error, cache, attempts);
  countCall(a.ctx, a.identity, route, call);
  return call.cost;
}

/** finish() but for its counters (countCall): settle budget/limits and record the evidence. */
function settleAndRecord(a: Access, route: Route, target: Target | null, usage: Usage | undefined, adm: Admission, status: number, stream: boolean, error: string | undefined, cache: 'hit' | 'miss' | null, attempts: readonly AttemptLog[], ahead?: CallEvidenceAhead): CallOutcome {
  const cost = target ? costUsd(usage, target.pricing) : 0;
  a.settle(adm, cost, usage ? usage.inputTokens + usage.outputTokens : null);
  const call: CallOutcome = { target, usage, status, stream, error, cost, cache, latencyMs: performance.now() - a.ctx.start, attempts };
  recordCallEvidence(a.ctx, a.identity, route, call, ahead);
  return call;
}

