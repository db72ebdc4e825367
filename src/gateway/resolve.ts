// The route a request names, for this caller: a Model document, else a provider catalog model
// (404 model_not_found when neither), authorized (403 naming the policy), and narrowed to the
// targets in the caller's allowed regions, so no other target can ever serve it.
import type { Access } from './plane.ts';
import { AamError } from '../access/errors.ts';
import type { Route } from './routes.ts';

const NOT_FOUND: Record<Route['kind'], string> = {
  chat: 'is not a chat model route on this gateway',
  embeddings: 'is not an embeddings route on this gateway (set kind: embeddings on the Model)',
};

export function resolveRoute(a: Access, name: string, kind: Route['kind']): Route {
  const cfg = a.ctx.cfg;
  const found = cfg.routes.get(name) ?? cfg.catalog.get(name, kind);
  if (!found || !('targets' in found) || found.kind !== kind) {
    const why = found && !('targets' in found)
      ? `is not in the catalog of provider "${found.provider}" (its spec.models lists ${found.listed.join(', ')})`
      : NOT_FOUND[kind];
    throw new AamError(404, 'model_not_found', `model "${name}" ${why}; GET /v1/models lists the models you may use`, { param: 'model' });
  }
  a.authorizeModel(found.name);
  const regions = a.set.regions;
  return regions ? inRegions(found, regions.allow) : found;
}

/** The route with only the targets in `regions` (the decision already refused a route with none), built once per region set. */
export function inRegions(route: Route, regions: ReadonlySet<string>): Route {
  let view = route.regionViews.get(regions);
  if (!view) {
    view = { ...route, targets: route.targets.filter((t) => t.region !== undefined && regions.has(t.region)) };
    route.regionViews.set(regions, view);
  }
  return view;
}
