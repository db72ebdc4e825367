// The lists aam pages for a client (prompts/list, resources/list, resources/templates/list): the
// first page gathers every server's whole list; the pages after it are cut from that gathering
// while it is still fresh, instead of asking every server again for each page. A gathering is kept
// for its caller (identity and endpoint) and method only, so a list an upstream marked `private`
// is never served to anyone else; it is fresh as long as the shortest `ttlMs` of the lists it was
// built from (a list without caching hints, from a 2025-11-25 server, for MAX_AGE_MS: its changes
// are announced), and a list_changed of that kind, or a reload (policies), ends it at once.
import { randomUUID } from 'node:crypto';
import type { WatchList } from './upstream.ts';

/** What one request gathered: the items, and until when (epoch ms) they may serve later pages. */
export interface Gathered<T> { items: T[]; until: number }

/** Gatherings kept at most (the oldest go first; a page whose gathering is gone gathers again). */
const MAX_KEPT = 1000;
/** How long a gathering of lists without caching hints serves later pages at most. */
export const MAX_AGE_MS = 60_000;

interface Kept { items: unknown[]; who: string; scope: string | null; method: string; until: number; kind: WatchList; gen: number }

export interface PageStore {
  /** Keep a gathering for later pages of this caller's listing; its id for the cursor, or undefined when it is not fresh. */
  keep(g: Gathered<unknown>, who: string, scope: string | null, method: string): string | undefined;
  /** The items of gathering `id` if it is this caller's, for this method, and still fresh. */
  take(id: string, who: string, scope: string | null, method: string): unknown[] | undefined;
  /** A list of this kind changed on some server (undefined: everything may have, e.g. a reload): its gatherings are no longer served. */
  changed(kind?: WatchList): void;
}

const KIND: Record<string, WatchList> = { 'prompts/list': 'prompts', 'resources/list': 'resources', 'resources/templates/list': 'resources', 'tools/list': 'tools' };

export function createPageStore(now: () => number = Date.now): PageStore {
  const kept = new Map<string, Kept>();
  const gen: Record<WatchList, number> = { tools: 0, prompts: 0, resources: 0 };
  return {
    keep(g, who, scope, method) {
      const kind = KIND[method];
      if (kind === undefined || g.until <= now()) return undefined;
      if (kept.size >= MAX_KEPT) kept.delete(kept.keys().next().value as string);
      const id = randomUUID();
      kept.set(id, { items: g.items, who, scope, method, until: Math.min(g.until, now() + MAX_AGE_MS), kind, gen: gen[kind] });
      return id;
    },
    take(id, who, scope, method) {
      const k = kept.get(id);
      if (!k) return undefined;
      if (k.until <= now() || k.gen !== gen[k.kind]) { kept.delete(id); return undefined; }
      return k.who === who && k.scope === scope && k.method === method ? k.items : undefined;
    },
    changed(kind) {
      for (const k of kind ? [kind] : (Object.keys(gen) as WatchList[])) gen[k]++;
    },
  };
}
