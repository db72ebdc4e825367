// Exact-match cache keys: a canonical form of the request (sorted keys, no fields that cannot
// change the answer) hashed together with the caller's scope and the route version, so one
// agent's entries never serve another and a route change invalidates everything cached for it.
import { sha256Hex } from '../lib/hash.ts';
import type { ChatMessage, ChatRequest, EmbeddingsRequest } from '../providers/types.ts';

export type CacheKind = 'chat' | 'embeddings';
export type ScopeMode = 'agent' | 'team' | 'global';

/** Who may share an entry: `agent` is the caller's SPIFFE ID, `team` its team (if any). */
export interface CacheScope { mode: ScopeMode; agent: string; team?: string }

/** Bump when the canonical form changes so old persisted entries stop matching. */
const KEY_FORMAT = 'aam-cache-v1';

// Fields that change delivery or bookkeeping but not the answer:
// - stream / stream_options: a cached answer is replayed in whichever form the client asked for;
// - user / metadata (OpenAI and Anthropic): end-user tags for abuse tracking;
// - anthropicMarks, otherParts: flags the parsers derive from the messages, which are in the key;
// - store / service_tier / prompt_cache_key / safety_identifier: provider-side storage, priority
//   and caching hints, not generation parameters.
// Everything else (temperature, max_tokens, tools, response_format, seed, stop, ...) is kept:
// when in doubt a field stays in the key, because a false miss costs money, a false hit is wrong.
const DROP_TOP = new Set(['stream', 'stream_options', 'user', 'model', 'extra', 'anthropicExtra', 'anthropicMarks', 'otherParts']);
const DROP_EXTRA = new Set(['stream', 'stream_options', 'user', 'metadata', 'store', 'service_tier', 'prompt_cache_key', 'safety_identifier']);

/** Scope part of the key. A `team` scope without a team falls back to the agent (fail closed). */
export function scopeKey(scope: CacheScope): string {
  if (scope.mode === 'global') return 'global';
  if (scope.mode === 'team' && scope.team) return `team:${scope.team}`;
  return `agent:${scope.agent}`;
}

export function cacheKey(kind: CacheKind, route: string, req: ChatRequest | EmbeddingsRequest, scope: CacheScope, routeVersion: string): string {
  const body = kind === 'chat' ? canonicalChat(req as ChatRequest) : canonicalEmbeddings(req as EmbeddingsRequest);
  return sha256Hex(`${KEY_FORMAT}\n${kind}\n${route}\n${routeVersion}\n${scopeKey(scope)}\n${body}`);
}

/** Canonical JSON of the answer-relevant part of a chat request (model route excluded: it is keyed separately). */
export function canonicalChat(req: ChatRequest, opts: { withMessages?: boolean } = {}): string {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(req)) {
    if (v === undefined || DROP_TOP.has(k)) continue;
    if (k === 'messages') { if (opts.withMessages !== false) o.messages = (v as ChatMessage[]).map(normalizeMessage); continue; }
    o[k] = v;
  }
  if (req.extra) o.extra = pick(req.extra, DROP_EXTRA);
  if (req.anthropicExtra) o.anthropicExtra = pick(req.anthropicExtra, DROP_EXTRA);
  return stableStringify(o);
}

function canonicalEmbeddings(req: EmbeddingsRequest): string {
  // encoding_format stays: the cached result holds floats or base64 accordingly.
  return stableStringify({ input: req.input, encoding_format: req.encoding_format ?? 'float', dimensions: req.dimensions });
}

/** A content array holding one plain text part means the same as the bare string. */
function normalizeMessage(m: ChatMessage): unknown {
  const c = m.content;
  if (Array.isArray(c) && c.length === 1) {
    const p = c[0] as { type: string; text?: unknown };
    if (p.type === 'text' && typeof p.text === 'string' && Object.keys(p).length === 2) return { ...m, content: p.text };
  }
  return m;
}

function pick(o: Record<string, unknown>, drop: Set<string>): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(o)) if (v !== undefined && !drop.has(k)) { out[k] = v; n++; }
  return n ? out : undefined;
}

/** JSON with object keys sorted at every level; undefined members dropped (as JSON.stringify does). */
export function stableStringify(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : stableStringify(x))).join(',')}]`;
  const keys = Object.keys(v).sort();
  let out = '';
  for (const k of keys) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined || typeof x === 'function') continue;
    out += `${out ? ',' : ''}${JSON.stringify(k)}:${stableStringify(x)}`;
  }
  return `{${out}}`;
}

/** What routeVersion() reads: a Model spec from the config or a compiled gateway Route. */
export interface RouteShape {
  targets: ReadonlyArray<{ provider: string | { name: string }; model: string; weight?: number; region?: string }>;
  strategy?: string;
  kind?: string;
}

/**
 * Version of a Model route for cache keys: changes when what answers changes (targets, their
 * models and options, strategy, kind), not when only pricing, retries, timeouts or cache settings
 * do. Compute once at config load and keep it on the compiled route.
 */
export function routeVersion(spec: RouteShape): string {
  const targets = spec.targets.map((t) => ({
    provider: typeof t.provider === 'string' ? t.provider : t.provider.name, model: t.model, weight: t.weight ?? 1, region: t.region,
  }));
  return sha256Hex(stableStringify({ targets, strategy: spec.strategy ?? 'fallback', kind: spec.kind ?? 'chat' })).slice(0, 16);
}
