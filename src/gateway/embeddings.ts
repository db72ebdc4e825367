// Model plane: POST /v1/embeddings (OpenAI wire), GET /v1/models and GET /v1/models/{id}.
import { embeddingAs, embeddingsEncodedAs, parseEmbeddingsRequest } from '../providers/openai.ts';
import type { EmbeddingsResult } from '../providers/types.ts';
import { identify } from '../access/identify.ts';
import { openAccess } from '../access/context.ts';
import { watchesOutput } from '../access/guard.ts';
import { countCall, unacknowledgedCall, failedCall, recordCall, recordCallEvidence, recordSideCall, type CallOutcome } from './record.ts';
import { allowedModels, mayUseModel } from '../policy/decide.ts';
import { catalogLookup } from '../config/catalog.ts';
import { AamError, badRequest, pathSegment } from '../access/errors.ts';
import { readJson, sendJson, sendText } from '../access/request.ts';
import type { Access, Ctx } from './plane.ts';
import type { Identity } from '../identity/types.ts';
import type { EmbeddingsRequest } from '../providers/types.ts';
import { servedModel, targetInfo, type Route, type Target } from './routes.ts';
import { embeddingFromResult } from '../cache/semantic.ts';
import { NO_ATTEMPTS, runAttempts } from './attempts.ts';
import { demoEmbeddings } from './demo.ts';
import { costUsd, estimateCostUsd } from './pricing.ts';
import { CallAbort, failureError, sendAttempt, unusable, UPSTREAM_MESSAGE_MAX, type AttemptLog } from './upstream.ts';
import { traced } from './traced.ts';
import { resolveRoute } from './resolve.ts';
import { upstreamCatalogNames } from './upstream-models.ts';

export async function handleEmbeddings(ctx: Ctx): Promise<void> {
  const a = await openAccess(ctx);
  const identity = a.identity;
  const parsed = parseEmbeddingsRequest(await readJson(ctx));
  if (!parsed.ok) throw badRequest(`${parsed.field}: ${parsed.message}`, parsed.field);
  let req = parsed.req;
  const route = resolveRoute(a, req.model, 'embeddings');
  // Embeddings input is text the agent sends a provider: the same input guardrails as a prompt,
  // and so is `user`, the other text that goes upstream (a chat request's is guarded too).
  a.guardrails(route.guardrails);
  if (req.user === undefined) {
    const input = await a.guard('input', req.input, 'embeddings input', 'chat');
    if (input !== req.input) req = { ...req, input };
  } else {
    const sent: [EmbeddingsRequest['input'], string] = [req.input, req.user];
    const out = await a.guard('input', sent, 'embeddings input', 'chat');
    if (out !== sent) req = { ...req, input: out[0], user: out[1] };
  }
  const tokens = Math.ceil(JSON.stringify(req.input).length / 4);
  // Looked up before admit, as on the chat path: a hit reserves nothing, and in a fleet the
  // admission script reads the shared entry (one Redis round trip).
  let look = route.cache ? await ctx.rt.cache.lookup('embeddings', route, req, { agent: identity.agent.spiffeId, team: identity.agent.team }, ctx.req.headers, { defer: true }) : null;
  const estimate = look?.status === 'hit' ? 0 : Math.max(0, ...route.targets.map((t) => estimateCostUsd(tokens, 0, t.pricing)));
  const adm = await a.admit(tokens, estimate, look?.pending?.key);
  if (look?.pending) look = await look.pending.finish(adm.cached);
  const ac = new CallAbort();
  ctx.call = ac;
  if (look?.status === 'hit' && look.entry) {
    a.settle(adm, 0, 0);
    return await sendEmbeddings(ctx, identity, route, req, look.entry.result as EmbeddingsResult, null, null, 'hit', 0, NO_ATTEMPTS);
  }
  const r = await callEmbeddings(ctx, identity, route, req, ac);
  if (!r.ok) {
    a.release(adm);
    // Recorded as the chat path records it: the model_call names the targets tried and their errors.
    const message = ctx.rt.scrub(r.failure.message, UPSTREAM_MESSAGE_MAX);
    recordCall(ctx, identity, route, failedCall(ctx, r.failure.clientStatus, false, message, r.attempts), 'embeddings');
    throw failureError(r.failure, message);
  }
  look?.save(r.value.result);
  const { result, raw } = r.value;
  const cost = costUsd(result.usage, r.target.pricing);
  a.settle(adm, cost, result.usage ? result.usage.inputTokens : null);
  // The upstream's body as written carries fields no guardrail read: with output guardrails the
  // agent gets aam's encoding of the vectors and usage only.
  await sendEmbeddings(ctx, identity, route, req, result, watchesOutput(a.gs) ? null : raw, r.target, look ? 'miss' : null, cost, r.attempts);
}

async function sendEmbeddings(ctx: Ctx, identity: Identity, route: Route, req: EmbeddingsRequest, result: EmbeddingsResult, raw: string | null, target: Target | null, cache: 'hit' | 'miss' | null, cost: number | null, attempts: readonly AttemptLog[]): Promise<void> {
  const usage = result.usage ? { ...result.usage, outputTokens: 0 } : undefined;
  const call: CallOutcome = { target, usage, status: 200, stream: false, cost, cache, latencyMs: performance.now() - ctx.start, attempts };
  recordCallEvidence(ctx, identity, route, call);
  const body = raw ?? JSON.stringify({
    object: 'list', model: result.model || route.name,
    data: result.data.map((d) => ({ object: 'embedding', index: d.index, embedding: embeddingAs(d.embedding, req.encoding_format) })),
    usage: { prompt_tokens: result.usage?.inputTokens ?? 0, total_tokens: result.usage?.inputTokens ?? 0 },
  });
  const headers: Record<string, string> = target ? { 'x-aam-target': target.label } : {};
  if (cache) headers['x-aam-cache'] = cache;
  // Counted as answered: 503 when the evidence could not be committed (unacknowledgedCall: the trail says so too).
  try { await ctx.rt.evidenceSafe(); } catch (e) { unacknowledgedCall(ctx, identity, route, call, e, 'embeddings'); throw e; }
  countCall(ctx, identity, route, call, 'embeddings');
  sendText(ctx, 200, body, 'application/json', headers);
}

/** One embeddings call over a route's targets (also used by the semantic cache to embed prompts). */
export function callEmbeddings(ctx: Ctx, identity: Identity, route: Route, req: EmbeddingsRequest, ac: CallAbort) {
  return runAttempts(route, ac, async (target) => {
    if (target.provider.type === 'demo') return { ok: true as const, value: { result: demoEmbeddings(req, target.model), raw: null as string | null } };
    const adapter = target.provider.adapter!;
    if (!adapter.embeddingsRequest || !adapter.embeddingsResponse) {
      return { ok: false as const, next: 'fallback' as const, status: 400, clientStatus: 400, code: 'invalid_request' as const, message: `${target.label} does not support embeddings` };
    }
    const up = adapter.embeddingsRequest(req, targetInfo(target, false));
    const res = await traced(ctx, 'embeddings', route, target, identity, (inj) => sendAttempt(target, up, inj, ac));
    if (!res.ok) return res;
    let result: EmbeddingsResult;
    try { result = adapter.embeddingsResponse(JSON.parse(res.text)); } catch { return unusable(target, 'not a valid embeddings response'); }
    result.model = servedModel(result.model, target);
    return { ok: true as const, value: { result, raw: adapter.wire === 'openai' && embeddingsEncodedAs(result, req.encoding_format) ? res.text : null } };
  });
}

/**
 * The semantic cache's embedder: the route named in cache.embedding_model, called as the same
 * caller. Each call is an upstream call of its own, recorded as one (a model_call of that route
 * with its tokens and cost, in the usage too) and charged to the caller's budgets as it answers,
 * whether the lookup then hits or not and whatever becomes of the request (refused, failed).
 * With a budget already overspent none is made (the lookup is a miss; the request's own admission
 * refuses it).
 */
export function embedderFor(a: Access, routeName: string | undefined): ((text: string) => Promise<Float32Array>) | undefined {
  const { ctx, identity } = a;
  const route = routeName ? ctx.cfg.routes.get(routeName) : undefined;
  if (!route) return undefined;
  return async (text) => {
    const adm = await a.admitSide();
    if (adm === null) throw new Error('a budget of the caller is spent: no embedding call');
    const ac = new CallAbort();
    const timer = setTimeout(() => ac.abort(new DOMException('no embedding within 10000 ms', 'TimeoutError')), 10_000);
    const t0 = performance.now();
    let r: Awaited<ReturnType<typeof callEmbeddings>>;
    try {
      r = await callEmbeddings(ctx, identity, route, { model: route.name, input: text }, ac);
    } catch (e) {
      a.release(adm);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    const latencyMs = performance.now() - t0;
    if (!r.ok) {
      a.release(adm);
      const error = ctx.rt.scrub(r.failure.message, UPSTREAM_MESSAGE_MAX);
      recordSideCall(ctx, identity, route, { target: null, usage: undefined, status: r.failure.clientStatus, stream: false, error, cost: null, cache: null, latencyMs, attempts: r.attempts }, 'embeddings');
      throw new Error(r.failure.message);
    }
    const { result } = r.value;
    const usage = result.usage ? { ...result.usage, outputTokens: 0 } : undefined;
    const cost = costUsd(result.usage, r.target.pricing);
    a.settle(adm, cost, null);
    recordSideCall(ctx, identity, route, { target: r.target, usage, status: 200, stream: false, cost, cache: null, latencyMs, attempts: r.attempts }, 'embeddings');
    return embeddingFromResult(result);
  };
}

/**
 * GET /v1/models: only the routes and catalog models this caller's policy allows; for a `*`
 * OpenAI-compatible catalog, the models its upstream lists (upstream-models.ts), decided one by one
 * and shown as the caller's output guardrails leave them.
 */
export async function handleModels(ctx: Ctx): Promise<void> {
  const a = await openAccess(ctx);
  const { identity } = a;
  const policies = ctx.cfg.policies;
  const ids = allowedModels(identity.agent, policies);
  const upstream = await upstreamCatalogNames(ctx, identity);
  // The upstream's ids are its answer: the caller's output guardrails see them, as a listing (a blocked id is withheld).
  a.guardrails();
  const shown = upstream.length === 0 ? upstream : await a.guardListing(upstream.filter((n) => mayUseModel(identity.agent, n, policies)), 'GET /v1/models', 'chat');
  const listed = shown.length === 0 ? ids : [...new Set([...ids, ...shown])];
  sendJson(ctx, 200, { object: 'list', data: listed.map((id) => modelObject(ctx, id)) });
}

/** One model as OpenAI's models API writes it; `created` is when this gateway started (routes have no birth date). */
function modelObject(ctx: Ctx, id: string) {
  return { id, object: 'model', created: Math.floor(ctx.rt.startedAt / 1000), owned_by: 'aam' };
}

/**
 * GET /v1/models/{id} (the OpenAI SDK's models.retrieve): a route or catalog model the caller's
 * policy allows; any other name is 404, as OpenAI answers a model you have no access to.
 * Nothing is recorded: a lookup is not a call.
 */
export async function handleModelById(ctx: Ctx): Promise<void> {
  if (ctx.req.method !== 'GET') throw new AamError(404, 'not_found', `no route ${ctx.req.method} ${ctx.path}; use GET /v1/models/{id}`);
  const identity = await identify(ctx);
  const id = pathSegment(ctx.path.slice(ctx.path.indexOf('/models/') + '/models/'.length), 'model id');
  const cfg = ctx.cfg;
  const exists = cfg.routes.has(id) || catalogLookup(cfg.catalog.catalog, id)?.ok === true;
  const usable = exists && mayUseModel(identity.agent, id, cfg.policies);
  if (!usable) throw new AamError(404, 'model_not_found', `model "${id}" is not a model you may use on this gateway; GET /v1/models lists them`, { param: 'model' });
  sendJson(ctx, 200, modelObject(ctx, id));
}
