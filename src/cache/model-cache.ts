// The model plane's view of caching: one lookup per request that applies the route's cache
// settings, the caller's scope and the client's cache-control, tries the exact cache, then (mode
// semantic, chat only) the semantic cache, and hands back a save() for the fresh answer.
// A failing embedding call degrades to a miss: the cache never fails a request.
//
// Where it sits in the chat path (after input guardrails, so the key is the request the upstream
// would see, and before admit, so a hit reserves nothing):
//   const look = await rt.cache.lookup('chat', route, req, { agent: spiffeId, team }, ctx.req.headers, { embed });
//   if (look.status === 'hit') -> answer look.entry.result (stream: localStream(resultToEvents(r))) through
//     the same output guardrails + scrub + codec as a fresh answer, header x-aam-cache: hit, record cost 0;
//   else -> call upstream as today (header x-aam-cache: miss unless status 'off'), then look.save(result)
//     (stream: feed a StreamRecorder every event, save(rec.result()) only when the stream ended cleanly).
import type { DatabaseSync } from 'node:sqlite';
import type { ModelSpec } from '../config/schema.ts';
import type { ChatRequest, ChatResult, EmbeddingsRequest, EmbeddingsResult } from '../providers/types.ts';
import { textBlocks, thinkingTexts, withTextBlocks, withThinkingTexts } from '../providers/types.ts';
import { cacheDirectives } from './directives.ts';
import { cacheKey, routeVersion, scopeKey, type CacheKind, type RouteShape } from './key.ts';
import { DEFAULT_SEMANTIC_THRESHOLD, SemanticCache, type Embed, type SemanticOptions, type SemanticProbe, type SemanticScope } from './semantic.ts';
import { ResponseCache, type CachedEntry, type ResponseCacheOptions } from './store.ts';
import { StoreUnavailable, type SharedCache, type SharedCacheEntry } from '../store/types.ts';

export const DEFAULT_TTL_SECONDS = 300;

export type CacheSpec = NonNullable<ModelSpec['cache']>;

/** A compiled gateway Route or anything with its name, targets and cache settings. */
export interface CacheableRoute extends RouteShape { name: string; cache?: CacheSpec }

/** The verified caller: `agent` is its SPIFFE ID (stable across key rotation), `team` its team. */
export interface CacheCaller { agent: string; team?: string }

export interface CacheLookup {
  /** `off`: the route has no cache or the client sent no-store (send no x-aam-cache header). */
  status: 'hit' | 'miss' | 'off';
  entry: CachedEntry | null;
  via: 'exact' | 'semantic' | null;
  similarity?: number;
  /** Why the semantic lookup could not run (embedding call failed); the request goes on as a miss. */
  semanticError?: string;
  /** Store the fresh answer when allowed (not for no-store, nor a content_filter stop). Returns whether stored. */
  save(result: ChatResult | EmbeddingsResult, now?: number): boolean;
  /**
   * Fleet, lookup with `defer`: not in this replica's memory, and the shared cache is still to be
   * read. Pass `key` to the admission (it reads the entry in the same Redis round trip), then
   * finish() with what it read (undefined: the admission did not read it; finish reads it then).
   */
  pending?: { key: string; finish(read: SharedCacheEntry | null | undefined): Promise<CacheLookup> };
}

type HeaderBag = Readonly<Record<string, string | string[] | undefined>>;

const OFF: CacheLookup = Object.freeze({ status: 'off' as const, entry: null, via: null, save: () => false });

export class ModelCache {
  readonly exact: ResponseCache;
  readonly semantic: SemanticCache;
  private readonly versions = new WeakMap<object, string>();
  /** What is stored passes the credential scrubber first (an answer may echo a secret): disk and replays stay clean. */
  private readonly scrub: ((json: string) => string) | undefined;
  /**
   * The scrubber over texts a reader joins (the same array when clean): an interleaved answer's text
   * blocks go through it first, so each keeps its place and its own scrubbed text.
   */
  private readonly scrubTexts: ((texts: readonly string[]) => readonly string[]) | undefined;

  /** Fleet mode: the cache every replica shares (Redis); the two caches above are then this replica's memory in front of it. */
  private readonly shared: SharedCache | null;

  constructor(db: DatabaseSync | null, opts: { exact?: ResponseCacheOptions; semantic?: SemanticOptions; scrub?: (json: string) => string; scrubTexts?: (texts: readonly string[]) => readonly string[]; shared?: SharedCache } = {}) {
    this.scrub = opts.scrub;
    this.scrubTexts = opts.scrubTexts;
    this.exact = new ResponseCache(db, opts.exact);
    this.semantic = new SemanticCache(db, opts.semantic);
    this.shared = opts.shared ?? null;
    if (this.shared) {
      const shared = this.shared;
      this.semantic.onStored = (e) => shared.publishSemantic(e);
      shared.onSemantic((e) => this.semantic.adopt(e));
    }
  }

  /**
   * The fleet's entry for `key`, copied into this replica's memory; null on a miss and when Redis
   * cannot answer (the cache is skipped, never a reason to fail: limits decide that on their own).
   */
  private async fromShared(key: string, now: number, maxAgeSeconds: number | undefined): Promise<CachedEntry | null> {
    let far: SharedCacheEntry | null;
    try { far = await this.shared!.get(key); } catch (e) {
      if (e instanceof StoreUnavailable) return null;
      throw e;
    }
    if (!far || far.expiresAt <= now) return null;
    this.exact.set(key, JSON.parse(far.entry) as CachedEntry, (far.expiresAt - now) / 1000, now);
    return this.exact.get(key, now, maxAgeSeconds);
  }

  /**
   * An entry the admission script found live (by Redis's clock): a hit even if this replica's
   * clock already calls it expired, since the admission reserved nothing for it.
   */
  private adopt(key: string, far: SharedCacheEntry, now: number): CachedEntry {
    const entry = JSON.parse(far.entry) as CachedEntry;
    this.exact.set(key, entry, (far.expiresAt - now) / 1000, now);
    return this.exact.get(key, now) ?? entry;
  }

  private scrubbed<T extends ChatResult | EmbeddingsResult>(v: T): T {
    if (!this.scrub) return v;
    let answer = v;
    // Interleaved text blocks (Anthropic's interleaved thinking) are scrubbed block by block, as
    // texts a reader joins (a secret split across two is redacted too): each keeps its place, and
    // the order's lengths follow. The JSON scrub below then finds them clean (scrubbed whole, the
    // text would no longer match the order and replay as one block).
    if (this.scrubTexts !== undefined && 'order' in v && v.order !== undefined) {
      const texts = textBlocks(v.order, v.text ?? '');
      const clean = texts !== undefined ? this.scrubTexts(texts) : undefined;
      if (clean !== undefined && clean !== texts) answer = withTextBlocks(v, clean) as T;
    }
    // Thinking texts (blocks, summary and reasoning parts) the same way, as the door sends them: a
    // secret split across two is stored redacted where it starts, not in two clean-looking pieces.
    const th = 'thinking' in answer ? answer.thinking : undefined;
    if (this.scrubTexts !== undefined && th !== undefined) {
      const texts = thinkingTexts(th);
      const clean = texts.length > 1 ? this.scrubTexts(texts) : texts;
      if (clean !== texts) answer = { ...answer, thinking: withThinkingTexts(th, clean) };
    }
    const json = JSON.stringify(answer);
    const clean = this.scrub(json);
    return clean === json ? answer : JSON.parse(clean) as T;
  }

  /** Route version, computed once per compiled route object (a reload makes new objects). */
  versionOf(route: CacheableRoute): string {
    let v = this.versions.get(route);
    if (v === undefined) this.versions.set(route, (v = routeVersion(route)));
    return v;
  }

  async lookup(
    kind: CacheKind, route: CacheableRoute, req: ChatRequest | EmbeddingsRequest, caller: CacheCaller, headers: HeaderBag,
    opts: { embed?: Embed; now?: number; defer?: boolean } = {},
  ): Promise<CacheLookup> {
    const spec = route.cache;
    if (!spec) return OFF;
    const dir = cacheDirectives(headers);
    if (!dir.lookup && !dir.store) return OFF;
    const now = opts.now ?? Date.now();
    const version = this.versionOf(route);
    const scope = { mode: spec.scope ?? 'agent', agent: caller.agent, team: caller.team };
    const sk = scopeKey(scope);
    const key = cacheKey(kind, route.name, req, scope, version);
    const ttl = spec.ttl_seconds ?? DEFAULT_TTL_SECONDS;
    const semScope: SemanticScope = { scopeKey: sk, route: route.name, routeVersion: version };
    const useSemantic = spec.mode === 'semantic' && kind === 'chat' && (opts.embed !== undefined || this.semantic.hasDefaultEmbed);
    let probe: SemanticProbe | null = null;
    let semanticError: string | undefined;

    const save = (answer: ChatResult | EmbeddingsResult, at = Date.now()): boolean => {
      if (!dir.store || ('finishReason' in answer && answer.finishReason === 'content_filter')) return false;
      const result = this.scrubbed(answer);
      const entry: CachedEntry = { kind, result, createdAt: at, route: route.name, scopeKey: sk, routeVersion: version };
      const stored = this.exact.set(key, entry, ttl, at);
      if (stored) this.shared?.set(key, JSON.stringify(entry), at + Math.round(ttl * 1000));
      if (stored && probe) this.semantic.store(semScope, probe, entry, ttl, at);
      return stored;
    };

    if (dir.lookup) {
      const mem = this.exact.get(key, now, dir.maxAgeSeconds);
      if (mem) return { status: 'hit', entry: mem, via: 'exact', save };
      // Deferred to the admission's round trip: only when no max-age (the script cannot judge an
      // entry's age) and no semantic lookup would follow a miss (it would wait for the exact read).
      if (this.shared && opts.defer && dir.maxAgeSeconds === undefined && !useSemantic) {
        const miss: CacheLookup = { status: 'miss', entry: null, via: null, save };
        const finish = async (read: SharedCacheEntry | null | undefined): Promise<CacheLookup> => {
          const hit = read === undefined ? await this.fromShared(key, now, undefined) : read ? this.adopt(key, read, now) : null;
          return hit ? { status: 'hit', entry: hit, via: 'exact', save } : miss;
        };
        return { ...miss, pending: { key, finish } };
      }
      const hit = this.shared ? await this.fromShared(key, now, dir.maxAgeSeconds) : null;
      if (hit) return { status: 'hit', entry: hit, via: 'exact', save };
    }
    if (useSemantic) {
      try {
        probe = await this.semantic.probe(req as ChatRequest, opts.embed);
        const hit = probe && dir.lookup ? this.semantic.search(semScope, probe.context, probe.embedding, spec.threshold ?? DEFAULT_SEMANTIC_THRESHOLD, now) : null;
        const fresh = hit && (dir.maxAgeSeconds === undefined || now - hit.entry.createdAt <= dir.maxAgeSeconds * 1000);
        if (hit && fresh) return { status: 'hit', entry: hit.entry, via: 'semantic', similarity: hit.similarity, save };
      } catch (e) {
        semanticError = `semantic cache lookup failed: ${(e as Error).message}`;
      }
    }
    return { status: 'miss', entry: null, via: null, semanticError, save };
  }

  /** After a config reload: free entries of removed or changed routes. */
  pruneRoutes(routes: Iterable<CacheableRoute>): number {
    const current = new Map<string, string>();
    for (const r of routes) if (r.cache) current.set(r.name, this.versionOf(r));
    return this.exact.pruneRoutes(current) + this.semantic.pruneRoutes(current);
  }

  close(): void {
    this.exact.close();
    this.semantic.close();
    this.shared?.close();
  }
}
