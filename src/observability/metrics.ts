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
    const a = agent || 'unregistered';
    this.#requests.inc({ agent: a, team: team ?? '', route, provider, status: String(status) });
    this.#latency.observe({ route, provider }, latencyMs / 1000);
    if (usage) {
      this.#tokens.inc({ agent: a, route, direction: 'input' }, usage.inputTokens);
      this.#tokens.inc({ agent: a, route, direction: 'output' }, usage.outputTokens);
    }
    if (cost !== null && cost > 0) this.#cost.inc({ agent: a, team: team ?? '', route }, cost);
    if (status >= 500) this.#upstreamErrors.inc({ route, status: String(status) });
  }
}
