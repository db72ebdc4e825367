// Routes for provider catalog models (`openai/gpt-4o` without a Model document), built on first
// use and kept (with their breaker and latency state) so they behave like configured routes.
// Bounded: with `models: "*"` a client can name any model, so the least recently used are dropped.
import type { ConfigSet } from '../config/schema.ts';
import { catalogLookup, compileCatalog, type Catalog, type CatalogHit } from '../config/catalog.ts';
import { compileRoute, type ProviderRuntime, type Route } from './routes.ts';

const MAX_ROUTES = 1024;

export class CatalogRoutes {
  readonly catalog: Catalog;
  readonly #set: ConfigSet;
  readonly #providers: Map<string, ProviderRuntime>;
  readonly #routes = new Map<string, Route>();
  /** The previous config's routes (not the object: no chain of configs): breaker and latency state carry over a reload. */
  readonly #previous: ReadonlyMap<string, Route> | undefined;

  constructor(set: ConfigSet, providers: Map<string, ProviderRuntime>, previous?: CatalogRoutes) {
    this.catalog = compileCatalog(set);
    this.#set = set;
    this.#providers = providers;
    this.#previous = previous ? previous.#routes : undefined;
  }

  /** The route for a catalog model; a miss in a listed catalog (to name in the 404); null when not a catalog name. */
  get(name: string, kind: Route['kind']): Route | Extract<CatalogHit, { ok: false }> | null {
    const key = `${kind}\0${name}`;
    const hit = this.#routes.get(key);
    if (hit) {
      this.#routes.delete(key);
      this.#routes.set(key, hit);
      return hit;
    }
    const found = catalogLookup(this.catalog, name);
    if (!found?.ok) return found;
    const route = compileRoute(name, { targets: [{ provider: found.provider, model: found.model }], kind }, this.#set, this.#providers, this.#previous?.get(key));
    this.#routes.set(key, route);
    if (this.#routes.size > MAX_ROUTES) this.#routes.delete(this.#routes.keys().next().value as string);
    return route;
  }
}
