// What GET /v1/models lists for a `models: "*"` catalog of an OpenAI-compatible provider (vLLM,
// Ollama, OpenRouter, Groq...), where no built-in list says what it serves: the upstream's own
// GET /models, as `provider/<id>`, then filtered by the caller's policy like every other name.
// Asked with the provider's credential, at most 2 s; kept 60 s per provider and config (a failure
// 10 s, listing none of them, logged): a listing is not a call, so nothing is recorded.
import type { Ctx } from './plane.ts';
import type { Identity } from '../identity/types.ts';
import type { CatalogRoutes } from './catalog-routes.ts';
import { CallAbort, sendAttempt } from './upstream.ts';
import { isObj } from '../lib/json.ts';

const KEEP_MS = 60_000;
const KEEP_FAILED_MS = 10_000;
const TIMEOUT_MS = 2_000;
/** At most this many ids per provider (a listing is not a way to fill memory). */
const MAX_IDS = 2_000;

interface Listing { at: number; ttl: number; names: Promise<readonly string[]> }
/** Per config (its CatalogRoutes): a reload asks again. */
const listings = new WeakMap<CatalogRoutes, Map<string, Listing>>();

/** `provider/<id>` for every model the `*` OpenAI-compatible catalogs' upstreams list (not yet filtered by policy). */
export async function upstreamCatalogNames(ctx: Ctx, identity: Identity): Promise<string[]> {
  const catalog = ctx.cfg.catalog;
  let byProvider = listings.get(catalog);
  if (!byProvider) { byProvider = new Map(); listings.set(catalog, byProvider); }
  const out: string[] = [];
  const now = Date.now();
  const pending: Array<Promise<readonly string[]>> = [];
  for (const p of catalog.catalog.providers.values()) {
    if (!p.any || p.type !== 'openai-compatible') continue;
    let l = byProvider.get(p.name);
    if (!l || now - l.at > l.ttl) {
      const entry: Listing = { at: now, ttl: KEEP_MS, names: Promise.resolve([]) };
      entry.names = fetchIds(ctx, identity, catalog, p.name).then((ids) => ids.map((id) => `${p.name}/${id}`), (err: unknown) => {
        entry.ttl = KEEP_FAILED_MS;
        ctx.rt.log.warn({ err, provider: p.name }, 'GET /v1/models: the provider\'s own model list could not be read; its catalog models are not listed');
        return [];
      });
      byProvider.set(p.name, entry);
      l = entry;
    }
    pending.push(l.names);
  }
  for (const names of await Promise.all(pending)) out.push(...names);
  return out;
}

async function fetchIds(ctx: Ctx, identity: Identity, catalog: CatalogRoutes, provider: string): Promise<string[]> {
  // The catalog's route for any name of this provider carries its target (base URL, credential, TLS).
  const route = catalog.get(`${provider}/*`, 'chat');
  const target = route && 'targets' in route ? route.targets[0] : undefined;
  if (!target) throw new Error(`provider "${provider}" has no catalog target`);
  const ac = new CallAbort();
  const timer = setTimeout(() => ac.abort(new DOMException(`no model list within ${TIMEOUT_MS} ms`, 'TimeoutError')), TIMEOUT_MS);
  try {
    const inj = await ctx.rt.injectProvider(target.provider, identity);
    const res = await sendAttempt(target, { method: 'GET', path: '/models', headers: {}, body: '' }, inj, ac);
    if (!res.ok) throw new Error(res.message);
    const body = JSON.parse(res.text) as unknown;
    const data = isObj(body) && Array.isArray(body.data) ? body.data : [];
    const ids: string[] = [];
    for (const m of data) if (isObj(m) && typeof m.id === 'string' && m.id !== '' && ids.length < MAX_IDS) ids.push(m.id);
    return ids;
  } finally {
    clearTimeout(timer);
  }
}
