// Model plane: the OpenAI Responses API (POST /v1/responses; GET/DELETE /v1/responses/{id} and
// GET .../input_items) over any provider. A Responses request is translated to a canonical chat
// request and driven down the SAME access path as chat (serveChat: policy, guardrails, budgets,
// cache, fallback, scrubbing, evidence); only the wire differs (responses-parse / responses-codec;
// OpenAI providers are called on their own Responses API through responses-upstream). Conversation
// state (previous_response_id, item_reference) is kept by aam per agent and resolved into the
// conversation sent upstream: never forwarded as ids to a provider.
import { openAccess } from '../access/context.ts';
import { sameRedactions } from '../access/guard.ts';
import { itemsToMessages, parseResponsesRequest, type Marks, type ResponseItem, type ResponsesRequest } from '../providers/responses-parse.ts';
import { responsesCodec, type FinishedResponse, type ResponseMeta, type ResponsesCodecHooks } from '../providers/responses-codec.ts';
import { responsesUpstreamAdapter } from '../providers/responses-upstream.ts';
import { localId, nowSeconds, type Obj } from '../providers/util.ts';
import type { ChatRequest } from '../providers/types.ts';
import { AamError, badRequest } from '../access/errors.ts';
import { readJson, sendJson } from '../access/request.ts';
import type { Ctx } from './plane.ts';
import { serveChat } from './chat.ts';
import type { ResponseStore, StoredResponse } from '../store/responses.ts';
import { StoreUnavailable } from '../store/types.ts';

/** Bounds on the stored conversation one request may pull in (no input can stall the process). */
export const MAX_CHAIN = 1000;
const MAX_HISTORY_CHARS = 64 * 1024 * 1024;

/** Id prefixes of stored input items, by item type. */
const ITEM_PREFIX: Readonly<Record<string, string>> = { message: 'msg', function_call: 'fc', function_call_output: 'fco' };

/** OpenAI is called on its own Responses API (models offered only there work); every other provider through its chat translator. */
const native = (type: string) => (type === 'openai' ? responsesUpstreamAdapter : undefined);
/** The hooks of an answer that is not stored: nothing to wait for. */
const NOT_STORED: ResponsesCodecHooks = { native };

export async function handleResponses(ctx: Ctx): Promise<void> {
  ctx.wire = 'openai';
  // Steps that need not wait return values, not promises (as on the chat path): each await costs a microtask turn.
  const opened = openAccess(ctx);
  const a = opened instanceof Promise ? await opened : opened;
  const parsed = parseResponsesRequest(await readJson(ctx, undefined, a.bodyWatch('openai-responses')));
  if (!parsed.ok) throw badRequest(`${parsed.field}: ${parsed.message}`, parsed.field);
  const p = parsed.req;
  const agent = a.identity.agent.spiffeId;
  const store = failClosed(ctx.rt.responses);
  const meta: ResponseMeta = {
    id: localId('resp_'), createdAt: nowSeconds(), instructions: p.instructions,
    previousResponseId: p.previousResponseId, store: p.store, echo: p.echo, encrypted: p.chat.reasoningItems === true,
  };
  let input: ResponseItem[] = p.input;
  let atRest: ResponseItem[] | null = null; // the input as the input guardrails left it
  let stored: Promise<void> | undefined; // the store write of this answer, once there is one
  // Stored scrubbed (like cached answers): a credential an upstream echoed is not kept at rest,
  // nor sent upstream again with the next turn. A failed write is logged; the answer still goes out
  // (a later previous_response_id naming it gets 404).
  // The Response's JSON is the answer's own text (not serialized again).
  const save = p.store ? (response: FinishedResponse): void => {
    const withIdsIn = withIds(meta.id, atRest ?? input);
    const items: string[] = [];
    for (const it of withIdsIn) if (typeof it.id === 'string') items.push(it.id);
    for (const id of response.outputIds) items.push(id);
    const rec: StoredResponse = {
      id: meta.id, agent, previousId: p.previousResponseId, input: ctx.rt.scrub(JSON.stringify(withIdsIn)),
      response: ctx.rt.scrub(response.json), expiresAt: Date.now() + ctx.rt.responsesTtlMs,
    };
    stored = store.put(rec, items).catch((err: unknown) => ctx.rt.log.error({ err, requestId: ctx.requestId }, 'storing a response failed'));
  } : undefined;
  // The answer is acknowledged once stored, so a client that chains at once finds it (any replica).
  // Closures a request does not use are not made (store: false, nothing stored to read: the bench's request).
  const codec = responsesCodec(meta, save, save ? { native, settle: () => stored } : NOT_STORED);
  await serveChat(a, p.chat, codec, {
    // After the model is authorized (decide before you look), before the input guardrails (they see it all).
    // Nothing stored to read (no previous_response_id, no item_reference): the request as it is, without a promise.
    resolve: p.previousResponseId === null && !hasReferences(p.input)
      ? (req) => ({ req: withConversation(req, p, input), bytes: 0 })
      : async (req) => {
        const history = p.previousResponseId ? await conversationOf(store, agent, p.previousResponseId) : { items: [], chars: 0 };
        input = await resolveReferences(store, agent, p.input);
        return { req: withConversation(req, p, [...history.items, ...input]), bytes: history.chars };
      },
    // Stored as redacted, like the answer: PII a redact guardrail masked upstream is not kept at rest.
    // Nothing kept at rest (store: false): nothing to redact there.
    guarded: p.store ? (before, after) => { atRest = sameRedactions(input, before, after); } : undefined,
  });
}

/** failClosed per store, made once (the runtime's store lives as long as the runtime). */
const closedStores = new WeakMap<ResponseStore, ResponseStore>();
function failClosed(s: ResponseStore): ResponseStore {
  let closed = closedStores.get(s);
  if (closed === undefined) { closed = failClosedOnce(s); closedStores.set(s, closed); }
  return closed;
}

/** A fleet store that cannot answer is 503 store_unavailable (never "not found", never skipped). */
function failClosedOnce(s: ResponseStore): ResponseStore {
  const map = (e: unknown): never => {
    if (!(e instanceof StoreUnavailable)) throw e;
    throw new AamError(503, 'store_unavailable', `PostgreSQL (the fleet store for stored responses) is unavailable: ${e.message}; retry shortly`, { headers: { 'retry-after': '1' } });
  };
  return {
    put: (r, ids) => s.put(r, ids).catch(map),
    get: (agent, id) => s.get(agent, id).catch(map),
    itemOwner: (agent, id) => s.itemOwner(agent, id).catch(map),
    delete: (agent, id) => s.delete(agent, id).catch(map),
  };
}

/** Input items get ids when stored (as at OpenAI), so input_items lists them and item_reference can name them. */
function withIds(responseId: string, items: readonly ResponseItem[]): ResponseItem[] {
  const hex = responseId.startsWith('resp_') ? responseId.slice(5) : responseId;
  return items.map((it, i) => (typeof it.id === 'string' ? it : { ...it, id: `${ITEM_PREFIX[it.type] ?? 'item'}_${hex}_in${i}` }));
}

function withConversation(req: ChatRequest, p: ResponsesRequest, items: ResponseItem[]): ChatRequest {
  const marks: Marks = { on: false };
  const messages = itemsToMessages(p.instructions, items, marks);
  if (!messages.some((m) => m.role !== 'system' && m.role !== 'developer')) {
    throw badRequest('input: the conversation holds no message to answer; send a user message or a function_call_output', 'input');
  }
  const out: ChatRequest = { ...req, messages };
  if (marks.on) out.anthropicMarks = true;
  if (marks.parts === true) out.otherParts = true;
  return out;
}

const unknownResponse = (id: string, param?: string) => new AamError(404, 'not_found',
  `response "${id}" was not found: it is unknown, expired, was created with store: false, or belongs to another agent`, { param });

/** The stored conversation up to and including response `id` (its chain of inputs and outputs), oldest first. */
export async function conversationOf(store: ResponseStore, agent: string, id: string): Promise<{ items: ResponseItem[]; chars: number }> {
  const turns: ResponseItem[][] = [];
  let chars = 0;
  let next: string | null = id;
  for (let depth = 0; next !== null; depth++) {
    if (depth >= MAX_CHAIN) throw badRequest(`previous_response_id: the conversation is longer than ${MAX_CHAIN} responses; start a new one with the history you need as input`, 'previous_response_id');
    const rec: StoredResponse | null = await store.get(agent, next);
    if (rec === null) {
      throw depth === 0 ? unknownResponse(next, 'previous_response_id')
        : new AamError(404, 'not_found', `previous_response_id: an earlier response of this conversation ("${next}") has expired; start a new conversation`, { param: 'previous_response_id' });
    }
    chars += rec.input.length + rec.response.length;
    if (chars > MAX_HISTORY_CHARS) throw badRequest(`previous_response_id: the stored conversation exceeds ${MAX_HISTORY_CHARS} characters; start a new one`, 'previous_response_id');
    turns.push([...(JSON.parse(rec.input) as ResponseItem[]), ...((JSON.parse(rec.response) as { output: ResponseItem[] }).output)]);
    next = rec.previousId;
  }
  return { items: turns.reverse().flat(), chars };
}

const hasReferences = (input: readonly ResponseItem[]): boolean => input.some((it) => it.type === 'item_reference');

/** item_reference inputs -> the items they name, from this agent's stored responses. */
export async function resolveReferences(store: ResponseStore, agent: string, input: ResponseItem[]): Promise<ResponseItem[]> {
  if (!hasReferences(input)) return input;
  const records = new Map<string, ResponseItem[]>();
  const out: ResponseItem[] = [];
  let chars = 0; // stored JSON read for references: bounded like a conversation
  for (let i = 0; i < input.length; i++) {
    const it = input[i];
    if (it.type !== 'item_reference') { out.push(it); continue; }
    const ref = it.id as string;
    const notFound = () => new AamError(404, 'not_found', `input[${i}].id: item "${ref}" is not an item of a stored response of this agent (unknown, expired, or another agent's)`, { param: `input[${i}].id` });
    const owner = await store.itemOwner(agent, ref);
    if (owner === null) throw notFound();
    let items = records.get(owner);
    if (items === undefined) {
      const rec = await store.get(agent, owner);
      if (rec === null) throw notFound();
      chars += rec.input.length + rec.response.length;
      if (records.size >= MAX_CHAIN || chars > MAX_HISTORY_CHARS) {
        throw badRequest(`input[${i}]: the item references reach more than ${MAX_CHAIN} stored responses or ${MAX_HISTORY_CHARS} characters; send the items themselves`, `input[${i}]`);
      }
      items = [...(JSON.parse(rec.input) as ResponseItem[]), ...((JSON.parse(rec.response) as { output: ResponseItem[] }).output)];
      records.set(owner, items);
    }
    const found = items.find((x) => x.id === ref);
    if (found === undefined || found.type === 'item_reference') throw notFound();
    out.push(found);
  }
  return out;
}

/**
 * GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items: only the agent that
 * created a response can see or remove it.
 */
export async function handleResponseById(ctx: Ctx): Promise<void> {
  ctx.wire = 'openai';
  const parts = ctx.path.slice('/v1/responses/'.length).split('/');
  const method = ctx.req.method;
  const listing = parts.length === 2 && parts[1] === 'input_items';
  if (parts[0] === '' || (parts.length > 1 && !listing) || (method !== 'GET' && method !== 'DELETE') || (listing && method !== 'GET')) {
    throw new AamError(404, 'not_found', `no route ${method} ${ctx.path}; use GET or DELETE /v1/responses/{id}, or GET /v1/responses/{id}/input_items`);
  }
  const a = await openAccess(ctx);
  const agent = a.identity.agent.spiffeId;
  const store = failClosed(ctx.rt.responses);
  let id: string;
  try { id = decodeURIComponent(parts[0]); } catch { throw unknownResponse(parts[0]); }
  if (listing) {
    const rec = await store.get(agent, id);
    if (rec === null) throw unknownResponse(id);
    sendJson(ctx, 200, inputItemsPage(JSON.parse(rec.input) as ResponseItem[], new URLSearchParams(ctx.query)));
    return;
  }
  if (method === 'DELETE') {
    if (!(await store.delete(agent, id))) throw unknownResponse(id);
    sendJson(ctx, 200, { id, object: 'response.deleted', deleted: true });
    return;
  }
  const rec = await store.get(agent, id);
  if (rec === null) throw unknownResponse(id);
  sendJson(ctx, 200, rec.response);
}

/** One page of a stored response's input items (OpenAI's list shape: order, limit, after). */
function inputItemsPage(items: ResponseItem[], q: URLSearchParams): Obj {
  const order = q.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw badRequest('order: must be "asc" or "desc"', 'order');
  const limit = Number(q.get('limit') ?? 20);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw badRequest('limit: must be an integer from 1 to 100', 'limit');
  const list = order === 'desc' ? [...items].reverse() : items;
  const after = q.get('after');
  const from = after === null ? 0 : list.findIndex((it) => it.id === after) + 1;
  if (after !== null && from === 0) throw badRequest(`after: "${after}" is not an input item of this response`, 'after');
  const data = list.slice(from, from + limit);
  return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: from + limit < list.length };
}
