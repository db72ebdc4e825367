// Prometheus metrics. Labels are bounded: agent and route names come from the config (a JWT
// identity the config does not know is reported as "unregistered"), never from raw input.
import { Registry, Counter, Histogram, Gauge, collectDefaultMetrics } from 'prom-client';
import type { MetricsSink } from '../runtime.ts';

export class Metrics implements MetricsSink {
  readonly registry = new Registry();
  readonly #requests: Counter;
  readonly #latency: Histogram;
  readonly #tokens: Counter;
  readonly #cost: Counter;
  readonly #decisions: Counter;
  readonly #limited: Counter;
  readonly #upstreamErrors: Counter;
  readonly info: Gauge;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'aam_process_' });
    this.#requests = new Counter({ name: 'aam_model_requests_total', help: 'Model calls by outcome', labelNames: ['agent', 'team', 'route', 'provider', 'status'], registers });
    this.#latency = new Histogram({ name: 'aam_model_request_duration_seconds', help: 'Model call latency (gateway in to last byte out)', labelNames: ['route', 'provider'], buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers });
    this.#tokens = new Counter({ name: 'aam_model_tokens_total', help: 'Tokens by direction', labelNames: ['agent', 'route', 'direction'], registers });
    this.#cost = new Counter({ name: 'aam_model_cost_usd_total', help: 'Known cost in USD (calls with unknown cost are counted in aam_model_unknown_cost_total)', labelNames: ['agent', 'team', 'route'], registers });
    this.#decisions = new Counter({ name: 'aam_policy_decisions_total', help: 'Policy decisions by effect', labelNames: ['effect', 'agent'], registers });
    this.#limited = new Counter({ name: 'aam_limited_total', help: 'Requests refused by rate limit or budget', labelNames: ['code', 'agent'], registers });
    this.#upstreamErrors = new Counter({ name: 'aam_upstream_errors_total', help: 'Model calls that failed after fallbacks', labelNames: ['route', 'status'], registers });
    this.info = new Gauge({ name: 'aam_config_info', help: 'Loaded config version', labelNames: ['version'], registers });
  }

  decision(effect: string, agent: string): void { this.#decisions.inc({ effect, agent: agent || 'unregistered' }); }
  limited(code: string, agent: string): void { this.#limited.inc({ code, agent: agent || 'unregistered' }); }
  modelCall(agent: string, team: string | undefined, route: string, provider: string, status: number, latencyMs: number, usage: { inputTokens: number; outputTokens: number } | undefined, cost: number | null): void {
    const c = this.#children(agent || 'unregistered', team ?? '', route, provider, status);
    c.requests.inc();
    c.latency.observe(latencyMs / 1000);
    if (usage) {
      c.tokensIn.inc(usage.inputTokens);
      c.tokensOut.inc(usage.outputTokens);
    }
    if (cost !== null && cost > 0) c.cost.inc(cost);
    if (status >= 500) this.#upstreamErrors.inc({ route, status: String(status) });
  }

  // Label children resolved once per label combination (prom-client hashes label objects on
  // every inc otherwise). Labels come from the config, so the map stays small.
  readonly #cache = new Map<string, { requests: { inc(v?: number): void }; latency: { observe(v: number): void }; tokensIn: { inc(v?: number): void }; tokensOut: { inc(v?: number): void }; cost: { inc(v?: number): void } }>();
  #children(agent: string, team: string, route: string, provider: string, status: number) {
    const key = `${agent}\0${team}\0${route}\0${provider}\0${status}`;
    let c = this.#cache.get(key);
    if (!c) {
      c = {
        requests: this.#requests.labels({ agent, team, route, provider, status: String(status) }),
        latency: this.#latency.labels({ route, provider }),
        tokensIn: this.#tokens.labels({ agent, route, direction: 'input' }),
        tokensOut: this.#tokens.labels({ agent, route, direction: 'output' }),
        cost: this.#cost.labels({ agent, team, route }),
      };
      if (this.#cache.size < 10_000) this.#cache.set(key, c);
    }
    return c;
  }
}
