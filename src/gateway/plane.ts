// What the model plane needs of the runtime beyond the access path's view (access/runtime-view.ts).
import type { AccessConfig, AccessRuntime } from '../access/runtime-view.ts';
import type { Ctx as AccessCtx } from '../access/request.ts';
import type { Access as AccessOf } from '../access/context.ts';
import type { Identity } from '../identity/types.ts';
import type { ModelCache } from '../cache/model-cache.ts';
import type { ResponseStore } from '../store/responses.ts';
import type { ProviderRuntime, Route } from './routes.ts';
import type { CatalogRoutes } from './catalog-routes.ts';
import type { UsageRecorder } from './usage.ts';
import type { Injection } from './upstream.ts';

/** The model plane's part of a compiled config. */
export interface GatewayConfig {
  providers: Map<string, ProviderRuntime>;
  routes: Map<string, Route>;
  /** Provider catalog models (`provider/model` without a Model document), routed on first use. */
  catalog: CatalogRoutes;
}

export interface GatewayRuntime extends AccessRuntime {
  readonly startedAt: number;
  readonly usage: UsageRecorder;
  /** Response cache (exact and semantic), for routes with spec.cache. */
  readonly cache: ModelCache;
  /** Stored Responses API state (previous_response_id, GET /v1/responses/{id}). */
  readonly responses: ResponseStore;
  readonly responsesTtlMs: number;
  /** Outbound auth for a provider (the agent's own credential is never forwarded). */
  injectProvider(p: ProviderRuntime, identity: Identity): Injection | Promise<Injection>;
}

/** A model-plane request's context. */
export type Ctx = AccessCtx<GatewayRuntime, AccessConfig & GatewayConfig>;

/** A model-plane request's access context. */
export type Access = AccessOf<Ctx>;
