// Provider catalogs: a Provider with `spec.models: "*"` or a list of names makes `provider/model`
// a model route without a Model document (it reaches the provider as the bare model name).
// Compiled once per config load; shared by the load checks, the policy engine (what a name
// resolves to: its targets' regions and prices) and the gateway (building the route).
import type { ConfigSet, ProviderSpec } from './schema.ts';
import { resolvePricing } from './pricing.ts';

type ProviderType = ProviderSpec['type'];

/**
 * What GET /v1/models lists for a `*` catalog: models of that provider type with a built-in
 * price (src/config/pricing.ts), so every one of them can be billed against a budget.
 */
const PRICED_MODELS: Partial<Record<ProviderType, readonly string[]>> = {
  openai: ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'o3', 'o4-mini', 'text-embedding-3-small', 'text-embedding-3-large'],
  anthropic: ['claude-opus-4-1', 'claude-opus-4-0', 'claude-sonnet-4-5', 'claude-sonnet-4-0', 'claude-haiku-4-5', 'claude-3-7-sonnet-latest', 'claude-3-5-haiku-latest'],
  gemini: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.5-flash-lite', 'gemini-2.0-flash'],
};

interface CatalogProvider { name: string; type: ProviderType; region?: string; any: boolean; listed: ReadonlySet<string> }

export interface Catalog {
  /** Providers that expose a catalog, by name. */
  providers: ReadonlyMap<string, CatalogProvider>;
  /** Model route names (Model documents win over a catalog name). */
  routes: ReadonlySet<string>;
}

export type CatalogHit =
  | { ok: true; provider: string; model: string }
  /** The provider lists its catalog and this model is not in it (404 model_not_found). */
  | { ok: false; provider: string; model: string; listed: readonly string[] };

/** One target of a route as the policy engine sees it: where it runs and whether it has a price. */
export interface TargetFacts { label: string; region?: string; priced: boolean }

export function compileCatalog(set: ConfigSet): Catalog {
  const providers = new Map<string, CatalogProvider>();
  for (const p of set.providers.values()) {
    const m = p.spec.models;
    if (!m) continue;
    providers.set(p.name, { name: p.name, type: p.spec.type, region: p.spec.region, any: m === '*', listed: new Set(m === '*' ? [] : m) });
  }
  return { providers, routes: new Set(set.models.keys()) };
}

/** Split at the first "/" (provider names never contain one; model names may). */
function split(name: string): [string, string] | null {
  const i = name.indexOf('/');
  return i <= 0 || i === name.length - 1 ? null : [name.slice(0, i), name.slice(i + 1)];
}

/** A catalog model, a miss in a listed catalog, or null: not a catalog name (or a Model document's). */
export function catalogLookup(c: Catalog, name: string): CatalogHit | null {
  if (c.routes.has(name)) return null;
  const parts = split(name);
  const p = parts ? c.providers.get(parts[0]) : undefined;
  if (!parts || !p) return null;
  if (p.any || p.listed.has(parts[1])) return { ok: true, provider: p.name, model: parts[1] };
  return { ok: false, provider: p.name, model: parts[1], listed: [...p.listed] };
}

/** Does a model-name glob (or literal) reach into some provider's catalog? Its provider part must be literal. */
export function catalogProviderOf(c: Catalog, pattern: string): string | null {
  const parts = split(pattern);
  return parts && !parts[0].includes('*') && c.providers.has(parts[0]) ? parts[0] : null;
}

/**
 * Catalog names GET /v1/models may list: every model of a listed catalog; for a `*` catalog its
 * built-in-priced models plus the literal `provider/model` names in `literals` (allow lists).
 */
export function catalogNames(c: Catalog, literals: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const p of c.providers.values()) {
    for (const m of p.any ? PRICED_MODELS[p.type] ?? [] : p.listed) out.add(`${p.name}/${m}`);
  }
  for (const l of literals) {
    if (l.includes('*')) continue;
    const hit = catalogLookup(c, l);
    if (hit?.ok) out.add(l);
  }
  for (const r of c.routes) out.delete(r);
  return [...out];
}

/** A Model document's targets, with region (the target's, else its provider's) and whether a price is known. */
export function modelTargets(set: ConfigSet, name: string): TargetFacts[] | null {
  const m = set.models.get(name);
  if (!m) return null;
  return m.spec.targets.map((t) => {
    const p = set.providers.get(t.provider);
    return { label: `${t.provider}/${t.model}`, region: t.region ?? p?.spec.region, priced: !p || resolvePricing(p.spec.type, t.model, t.pricing, m.spec.pricing) !== null };
  });
}

/** A catalog model's one target (the provider's region, the built-in price); null when not a catalog model. */
export function catalogTargets(c: Catalog, name: string): TargetFacts[] | null {
  const hit = catalogLookup(c, name);
  if (!hit?.ok) return null;
  const p = c.providers.get(hit.provider)!;
  return [{ label: name, region: p.region, priced: resolvePricing(p.type, hit.model) !== null }];
}
