// Compile Provider + Model resources into frozen lookup tables at load time: resolved targets,
// adapters, pricing, timeouts, breakers. The request path only reads these.
import { H1Agent, type UpstreamDispatcher } from '../lib/h1-agent.ts';
import type { ConfigSet, ModelSpec, ProviderSpec, TimeoutsSpec } from '../config/schema.ts';
import { adapterFor, bedrockEndpoint, vertexBasePath, vertexEndpoint } from '../providers/index.ts';
import type { ProviderAdapter, TargetInfo } from '../providers/types.ts';
import { CircuitBreaker, DEFAULT_BREAKER, type BreakerOptions } from './breaker.ts';
import type { Pricing } from './pricing.ts';
import { resolvePricing } from '../config/pricing.ts';
import { LatencyStats } from './latency.ts';
import type { Deadlines } from './deadlines.ts';

export type ProviderType = ProviderSpec['type'];

export interface Timeouts { connectMs: number; firstByteMs: number; totalMs: number }
export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 5_000, firstByteMs: 60_000, totalMs: 600_000 };

export interface ProviderRuntime {
  name: string;
  type: ProviderType;
  /** Base URL without trailing slash, e.g. https://api.openai.com/v1 ('' for demo). */
  baseUrl: string;
  /** baseUrl split for the dispatcher: scheme://host:port, and the path prefix without trailing slash. */
  origin: string;
  basePath: string;
  adapter: ProviderAdapter | null;
  credential: string | null;
  /** Where the credential goes when the Credential does not say (provider convention). */
  authStyle: 'bearer' | 'x-api-key' | 'x-goog-api-key' | 'api-key';
  headers: Record<string, string>;
  /** Its own HTTP/1.1 keep-alive pool (lib/h1-agent.ts); null for demo. */
  dispatcher: UpstreamDispatcher | null;
  timeouts: Timeouts;
  /** AWS SigV4 scope (bedrock): requests are signed for this region and service. */
  signing?: { region: string; service: string };
  /** False when an optional provider's credential is absent: its targets are skipped. */
  enabled: boolean;
  disabledReason?: string;
}

export interface Target {
  provider: ProviderRuntime;
  model: string;
  weight: number;
  region?: string;
  timeouts: Timeouts;
  pricing: Pricing | null;
  options: Record<string, string>;
  breaker: CircuitBreaker;
  /** Recent time to first token (strategy latency); kept across reloads like the breaker. */
  latency: LatencyStats;
  /** "provider/model", used in logs, metrics and audit. */
  label: string;
  /** The total-timeout clock of its attempts in flight (gateway/upstream.ts), made by the first. */
  deadlines?: Deadlines;
  /** What an adapter is told of this target for a whole / a streamed call (targetInfo), made by the first. */
  wholeInfo?: TargetInfo;
  streamInfo?: TargetInfo;
  /** The last attempt's merged upstream headers and path, reused while their parts are the same objects (gateway/upstream.ts). */
  sent?: { base: Readonly<Record<string, string>>; up: Readonly<Record<string, string>>; inj: Readonly<Record<string, string>>; headers: Readonly<Record<string, string>>; method: string; upPath: string; path: string };
}

/**
 * The `model` an answer carries, on every path (chat, Messages, Responses, embeddings; streamed,
 * whole, relayed as written or translated, replayed from the cache): the model that served it, as
 * the upstream names it (OpenAI's dated snapshot, e.g. gpt-4o-2024-08-06), else the model aam asked
 * that target for. As OpenAI answers an alias, and what cost trackers price; the route is the
 * client's own word and x-aam-target names the target.
 */
export function servedModel(upstream: string | undefined, target: Target): string {
  return upstream || target.model;
}

/**
 * The target as an adapter sees it for a call (model, stream, options): one frozen object per
 * target and kind of call, not one per attempt (adapters only read it).
 */
export function targetInfo(target: Target, stream: boolean): TargetInfo {
  return stream
    ? (target.streamInfo ??= Object.freeze({ model: target.model, stream: true, options: target.options }))
    : (target.wholeInfo ??= Object.freeze({ model: target.model, stream: false, options: target.options }));
}

export interface Route {
  name: string;
  kind: 'chat' | 'embeddings';
  /** The keep-alive clock of its event streams in flight (gateway/chat.ts), made by the first. */
  keepalive?: Deadlines;
  strategy: NonNullable<ModelSpec['strategy']>;
  targets: Target[];
  attemptsPerTarget: number;
  backoffMs: number;
  cache?: ModelSpec['cache'];
  /** Guardrails every call of this route passes (besides the caller's policy guardrails). */
  guardrails: readonly string[];
  /** This route narrowed to a caller's allowed regions (policy models.regions), built once per region set. */
  regionViews: WeakMap<ReadonlySet<string>, Route>;
}

const DEFAULT_BASE: Partial<Record<ProviderType, string>> = {
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com/v1',
  gemini: 'https://generativelanguage.googleapis.com/v1beta',
};
const AUTH_STYLE: Record<ProviderType, ProviderRuntime['authStyle']> = {
  openai: 'bearer', 'openai-compatible': 'bearer', anthropic: 'x-api-key', gemini: 'x-goog-api-key', 'azure-openai': 'api-key', demo: 'bearer',
  bedrock: 'bearer', vertex: 'bearer',
};

/** Where a provider is served: baseUrl, or its type's default; Bedrock and Vertex derive it from region (and project). */
function baseUrlOf(s: ProviderSpec): string {
  if (s.type === 'bedrock' && s.bedrock) return s.baseUrl ?? bedrockEndpoint(s.bedrock.region);
  // Vertex: baseUrl replaces only the endpoint root (e.g. a Private Service Connect host).
  if (s.type === 'vertex' && s.vertex) return (s.baseUrl ?? vertexEndpoint(s.vertex.region)).replace(/\/+$/, '') + vertexBasePath(s.vertex.project, s.vertex.region);
  return s.baseUrl ?? DEFAULT_BASE[s.type] ?? '';
}

function timeouts(...specs: Array<TimeoutsSpec | undefined>): Timeouts {
  const t = { ...DEFAULT_TIMEOUTS };
  for (const s of specs) {
    if (!s) continue;
    if (s.connect_ms) t.connectMs = s.connect_ms;
    if (s.first_byte_ms) t.firstByteMs = s.first_byte_ms;
    if (s.total_ms) t.totalMs = s.total_ms;
  }
  return t;
}

/** `credentialAvailable` tells whether a credential can be resolved (env var set, file present...). */
export function compileProviders(set: ConfigSet, credentialAvailable: (name: string) => string | null, previous?: Map<string, ProviderRuntime>): Map<string, ProviderRuntime> {
  const out = new Map<string, ProviderRuntime>();
  for (const r of set.providers.values()) {
    const s = r.spec;
    const problem = s.credential ? credentialAvailable(s.credential) : null;
    const t = timeouts(s.timeouts);
    const prev = previous?.get(r.name);
    const baseUrl = baseUrlOf(s).replace(/\/+$/, '');
    // Keep pooled connections across reloads when the provider's endpoint did not change.
    const dispatcher = s.type === 'demo' ? null
      : prev && prev.baseUrl === baseUrl && prev.timeouts.connectMs === t.connectMs && prev.dispatcher ? prev.dispatcher
        : new H1Agent({ connectMs: t.connectMs, keepAliveTimeout: 30_000, connections: 256 });
    const url = baseUrl ? new URL(baseUrl) : null;
    out.set(r.name, {
      name: r.name, type: s.type, baseUrl, origin: url?.origin ?? '', basePath: url?.pathname.replace(/\/+$/, '') ?? '', adapter: s.type === 'demo' ? null : adapterFor(s.type), credential: s.credential ?? null,
      authStyle: AUTH_STYLE[s.type], headers: Object.freeze({ ...s.headers }), dispatcher, timeouts: t,
      enabled: problem === null, disabledReason: problem ?? undefined,
      ...(s.bedrock ? { signing: { region: s.bedrock.region, service: 'bedrock' } } : {}),
    });
  }
  return out;
}

/**
 * After a reload swapped `previous` for `next`: the dispatchers `next` no longer uses (a provider
 * removed, or its endpoint or connect timeout changed) retire, so their sockets close as the calls
 * still on them end instead of lingering until the upstream's idle timeout.
 */
export function retireDispatchers(previous: Map<string, ProviderRuntime>, next: Map<string, ProviderRuntime>): void {
  const kept = new Set<UpstreamDispatcher>();
  for (const p of next.values()) if (p.dispatcher !== null) kept.add(p.dispatcher);
  for (const p of previous.values()) if (p.dispatcher !== null && !kept.has(p.dispatcher)) p.dispatcher.retire();
}

export function compileRoutes(set: ConfigSet, providers: Map<string, ProviderRuntime>, previous?: Map<string, Route>): Map<string, Route> {
  const out = new Map<string, Route>();
  for (const m of set.models.values()) out.set(m.name, compileRoute(m.name, m.spec, set, providers, previous?.get(m.name)));
  return out;
}

/** One route (a Model document, or a provider catalog model given as a one-target spec). */
export function compileRoute(name: string, s: ModelSpec, set: ConfigSet, providers: Map<string, ProviderRuntime>, prev?: Route): Route {
  const breakerOpts: BreakerOptions = {
    threshold: s.breaker?.failures ?? DEFAULT_BREAKER.threshold,
    cooldownMs: s.breaker?.cooldown_ms ?? DEFAULT_BREAKER.cooldownMs,
  };
  const targets: Target[] = s.targets.map((t) => {
    const provider = providers.get(t.provider)!; // references were checked at load
    const label = `${t.provider}/${t.model}`;
    const options: Record<string, string> = {};
    const az = set.providers.get(t.provider)?.spec.azure;
    if (az) { options.apiVersion = az.apiVersion; options.deployment = az.deployment ?? t.model; }
    if (t.thinking !== undefined) options.thinking = t.thinking;
    const kept = prev?.targets.find((p) => p.label === label);
    return {
      provider, model: t.model, weight: t.weight ?? 1, region: t.region ?? set.providers.get(t.provider)?.spec.region,
      timeouts: timeouts(set.providers.get(t.provider)?.spec.timeouts, t.timeouts),
      pricing: resolvePricing(provider.type, t.model, t.pricing, s.pricing),
      options,
      // Breaker state survives reloads so a reload does not re-admit a dead upstream.
      breaker: keptBreaker(kept?.breaker, breakerOpts),
      latency: kept?.latency ?? new LatencyStats(),
      label,
    };
  });
  return {
    name, kind: s.kind ?? 'chat', strategy: s.strategy ?? 'fallback', targets,
    attemptsPerTarget: 1 + (s.retries?.attempts ?? 1), backoffMs: s.retries?.backoff_ms ?? 200, cache: s.cache,
    guardrails: s.guardrails ?? [],
    regionViews: new WeakMap(),
  };
}

/** The previous breaker (its open/closed state) when its options are unchanged, else a fresh one. */
function keptBreaker(prev: CircuitBreaker | undefined, opts: BreakerOptions): CircuitBreaker {
  return prev?.sameOptions(opts) ? prev : new CircuitBreaker(opts);
}
