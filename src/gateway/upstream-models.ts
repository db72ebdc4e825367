// What GET /v1/models lists for a `models: "*"` catalog of an OpenAI-compatible provider (vLLM,
// Ollama, OpenRouter, Groq...), where no built-in list says what it serves: the upstream's own
// GET /models, as `provider/<id>`, then filtered by the caller's policy like every other name.
// Asked with the provider's credential as injected for this caller (its policy's credentials.allow
// checked on every listing; an on-behalf-of credential carries the caller), at most 2 s; kept 60 s
// per provider, config and credential as injected (a failure 10 s, listing none of them, logged):
// one caller's listing never answers another's who reaches the upstream with another credential.
// A listing is not a call, so nothing is recorded.
import type { Ctx } from './plane.ts';
import type { Identity } from '../identity/types.ts';
import type { CatalogRoutes } from './catalog-routes.ts';
import type { Target } from './routes.ts';
import { CallAbort, sendAttempt, type Injection } from './upstream.ts';
import { isObj } from '../lib/json.ts';
import { sha256Hex } from '../lib/hash.ts';

const KEEP_MS = 60_000;
const KEEP_FAILED_MS = 10_000;
const TIMEOUT_MS = 2_000;
/** At most this many ids per provider (a listing is not a way to fill memory). */
const MAX_IDS = 2_000;
/** Listings kept per config before the expired ones are let go (a minted credential makes one per caller). */
const SWEEP_AT = 256;

interface Listing { at: number; ttl: number; names: Promise<readonly string[]> }
/** Per config (its CatalogRoutes): a reload asks again. Keyed by provider and credential as injected. */
const listings = new WeakMap<CatalogRoutes, Map<string, Listing>>();

/** `provider/<id>` for every model the `*` OpenAI-compatible catalogs' upstreams list to this caller (not yet filtered by policy). */
export async function upstreamCatalogNames(ctx: Ctx, identity: Identity): Promise<string[]> {
  const catalog = ctx.cfg.catalog;
  let cached = listings.get(catalog);
  if (!cached) { cached = new Map(); listings.set(catalog, cached); }
  const byKey = cached;
  const pending: Array<Promise<readonly string[]>> = [];
  for (const p of catalog.catalog.providers.values()) {
    if (!p.any || p.type !== 'openai-compatible') continue;
    pending.push(listed(ctx, identity, catalog, byKey, p.name));
  }
  const out: string[] = [];
  for (const names of await Promise.all(pending)) out.push(...names);
  return out;
}

/** One provider's listing for this caller: cached per credential as injected, fetched when none is fresh. */
async function listed(ctx: Ctx, identity: Identity, catalog: CatalogRoutes, byKey: Map<string, Listing>, provider: string): Promise<readonly string[]> {
  let target: Target;
  let inj: Injection;
  try {
    target = catalogTarget(catalog, provider);
    inj = await ctx.rt.injectProvider(target.provider, identity);
  } catch (err) {
    ctx.rt.log.warn({ err, provider }, 'GET /v1/models: the provider\'s own model list could not be asked for this caller; its catalog models are not listed');
    return [];
  }
  const key = `${provider}\0${sha256Hex(JSON.stringify([inj.headers, inj.query ?? null, inj.credential ?? null]))}`;
  const now = Date.now();
  const l = byKey.get(key);
  if (l && now - l.at <= l.ttl) return l.names;
  if (byKey.size >= SWEEP_AT) for (const [k, v] of byKey) if (now - v.at > v.ttl) byKey.delete(k);
  const entry: Listing = { at: now, ttl: KEEP_MS, names: Promise.resolve([]) };
  entry.names = fetchIds(target, inj).then((ids) => ids.map((id) => `${provider}/${id}`), (err: unknown) => {
    entry.ttl = KEEP_FAILED_MS;
    ctx.rt.log.warn({ err, provider }, 'GET /v1/models: the provider\'s own model list could not be read; its catalog models are not listed');
    return [];
  });
  byKey.set(key, entry);
  return entry.names;
}

/** The catalog's route for any name of this provider carries its target (base URL, credential, TLS). */
function catalogTarget(catalog: CatalogRoutes, provider: string): Target {
  const route = catalog.get(`${provider}/*`, 'chat');
  const target = route && 'targets' in route ? route.targets[0] : undefined;
  if (!target) throw new Error(`provider "${provider}" has no catalog target`);
  return target;
}

async function fetchIds(target: Target, inj: Injection): Promise<string[]> {
  const ac = new CallAbort();
  const timer = setTimeout(() => ac.abort(new DOMException(`no model list within ${TIMEOUT_MS} ms`, 'TimeoutError')), TIMEOUT_MS);
  try {
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
