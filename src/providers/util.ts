// Small narrowing helpers shared by the translators (no I/O, no state).
import { randomBytes } from 'node:crypto';
import { isNum, isObj, parseJson, type Obj } from '../lib/json.ts';
import type { ChatMessage, ContentPart, FinishReason, RawChatHead, ToolCall, ToolDef, UpstreamRequest, Usage } from './types.ts';

export type { Obj };

/** Thrown when an upstream body does not have the shape its wire format promises. */
export class UpstreamShapeError extends Error {
  override name = 'UpstreamShapeError';
}

export function num(v: unknown): number | undefined {
  return isNum(v) ? v : undefined;
}

export function obj(v: unknown): Obj | undefined {
  return isObj(v) ? v : undefined;
}

export function arr(v: unknown): unknown[] | undefined {
  return Array.isArray(v) ? v : undefined;
}

/** Parse tool-call arguments into an object; non-object or invalid JSON is wrapped, never lost. */
export function argsObject(args: string): Obj {
  if (args === '') return {};
  const v = parseJson(args);
  return isObj(v) ? v : { _raw: args };
}

/** The random bytes of localId: drawn 10 per id from one randomBytes call per 256 ids. */
const ID_RANDOM = 10;
const ID_POOL = 256 * ID_RANDOM;
let idPool = Buffer.alloc(0);
let idAt = ID_POOL;
/** One id's 16 bytes (6 of time, 10 random), written as hex in one call. */
const idBytes = Buffer.alloc(6 + ID_RANDOM);

/**
 * Locally unique id for responses that upstreams leave without one: 12 hex digits of the time in
 * ms, then 80 random bits (20 hex digits). Time first, as aam's trace ids (lib/time-hex.ts): ids
 * made close in time sort close together, so a store keyed by them (stored Responses, embedded
 * and fleet) appends to its index instead of writing a random page per insert.
 * The bytes are written into one buffer and hex-encoded at once: a UUID cut into four slices and
 * the time's six two-digit pieces cost twice the CPU (~0.55 vs ~0.29 us) and ~400 bytes of
 * strings per id (a Responses request makes one; streams make one each).
 */
export function localId(prefix: string): string {
  if (idAt >= ID_POOL) { idPool = randomBytes(ID_POOL); idAt = 0; }
  const b = idBytes;
  const ms = Date.now();
  const hi = Math.floor(ms / 0x1_0000_0000) & 0xffff; // the low 48 bits, as timeHex
  const lo = ms >>> 0;
  b[0] = hi >>> 8; b[1] = hi; b[2] = lo >>> 24; b[3] = lo >>> 16; b[4] = lo >>> 8; b[5] = lo;
  idPool.copy(b, 6, idAt, (idAt += ID_RANDOM));
  return prefix + b.toString('hex');
}

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Canonical usage; cache reads and writes (subsets of input) only when some were counted. */
export function usageOf(input: number, output: number, cached: number | undefined, written?: number): Usage {
  const u: Usage = cached !== undefined && cached > 0 ? { inputTokens: input, outputTokens: output, cachedTokens: cached } : { inputTokens: input, outputTokens: output };
  if (written !== undefined && written > 0) u.cacheWriteTokens = written;
  return u;
}

export const OPENAI_FINISH: Readonly<Record<string, FinishReason>> = {
  stop: 'stop', length: 'length', tool_calls: 'tool_calls', function_call: 'tool_calls', content_filter: 'content_filter',
};

/** Error type name for an upstream HTTP status when the body does not say. */
export function statusType(status: number): string {
  if (status === 400 || status === 422) return 'invalid_request_error';
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status === 529) return 'overloaded_error';
  return 'api_error';
}

/**
 * The one rule of ProviderAdapter.rawChatRequest (gateway/raw-body.ts sends the client's bytes
 * instead of `built`): the adapter's body `built` says what the client's body says, "model" aside,
 * when every field of the client's is in it with the same value (`same`, the adapter's own
 * comparison of one top-level field); a field only `built` has is one aam adds (answered in `add`,
 * to be put into the bytes); a field `built` drops or holds another value for: answered with
 * `built` as the body to send (head() and `built` must be what the adapter's chatRequest sends).
 */
export function rawChatHead(built: Obj, client: Readonly<Obj>, same: (key: string, built: unknown, client: unknown) => boolean, head: () => Omit<UpstreamRequest, 'body'>): RawChatHead {
  let add: Obj | null = null;
  for (const k in built) {
    if (k === 'model') continue;
    const v = built[k];
    if (!Object.hasOwn(client, k)) {
      if (v !== undefined) (add ??= {})[k] = v;
    } else if (!same(k, v, client[k])) return { head: head(), body: built };
  }
  for (const k in client) if (!Object.hasOwn(built, k)) return { head: head(), body: built };
  return { head: head(), add };
}

/** An object without its `cache_control`, the same one when it has none. */
function uncached<T extends object>(o: T): T {
  if (!Object.hasOwn(o, 'cache_control')) return o;
  const { cache_control: _, ...rest } = o as T & { cache_control?: unknown };
  return rest as T;
}

/**
 * Messages and tools without the fields only the Anthropic wire has (ChatRequest.anthropicMarks):
 * cache_control on messages, parts, tool calls and tools, a tool message's is_error, an assistant
 * turn's thinking blocks. Other wires send these (OpenAI answers 400 to an unknown cache_control).
 */
export function withoutAnthropicMarks(messages: ChatMessage[], tools: ToolDef[] | undefined): { messages: ChatMessage[]; tools: ToolDef[] | undefined } {
  const out = messages.map((m) => {
    const { cache_control: _c, is_error: _e, thinking: _t, order: _o, ...rest } = m;
    const msg: ChatMessage = rest;
    if (Array.isArray(m.content)) msg.content = m.content.map((p: ContentPart) => uncached(p));
    if (m.tool_calls !== undefined) msg.tool_calls = m.tool_calls.map((tc: ToolCall) => uncached(tc));
    return msg;
  });
  return { messages: out, tools: tools?.map((t) => uncached(t)) };
}
