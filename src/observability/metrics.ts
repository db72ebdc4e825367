// Prometheus metrics. Labels are bounded: agent and route names come from the config (a JWT
// identity the config does not know is reported as "unregistered"), never from raw input.
// Request-path metrics are aam's own (prom.ts); prom-client only collects the process metrics
// (from the first scrape on: GC and event-loop histograms start then).
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram, exposition, CONTENT_TYPE, type CounterSeries, type HistogramSeries, type Metric } from './prom.ts';
import { level, type Level } from './label-tree.ts';

/** Every series one model call updates, resolved once per (agent, team, route, provider, status). */
interface CallSeries {
  requests: CounterSeries;
  latency: HistogramSeries;
  tokensIn: CounterSeries;
  tokensOut: CounterSeries;
  cost: CounterSeries;
  unknownCost: CounterSeries;
  upstreamErrors: CounterSeries;
}

export interface MetricsSink {
  decision(effect: string, agent: string): void;
  limited(code: string, agent: string): void;
  modelCall(agent: string, team: string | undefined, route: string, provider: string, status: number, latencyMs: number, usage: { inputTokens: number; outputTokens: number } | undefined, cost: number | null): void;
  /** One upstream tool call (MCP tools/call or HTTP tool), by agent and McpServer/HttpTool name. */
  toolCall?(agent: string, server: string, outcome: string, latencyMs: number): void;
  /** A streamed answer's first content went to the client, latencyMs after the request arrived. */
  firstChunk?(route: string, provider: string, latencyMs: number): void;
  /** A model request's cache lookup: 'hit' or 'miss' (routes without a cache are not counted). */
  cacheLookup?(route: string, result: 'hit' | 'miss'): void;
  /** Upstream attempts that failed before the call's outcome (each one retried or fallen back from, or the last). */
  failedAttempts?(route: string, attempts: readonly { target: string; status: number }[]): void;
  /** A guardrail's non-allow verdict (block, redact, flag) on input or output. */
  guardrailVerdict?(guardrail: string, direction: string, verdict: string): void;
  /**
   * One A2A call that reached its callee (or failed on the way, after its admission), by caller,
   * callee, skill and outcome (A2A_OUTCOMES), latencyMs from aam's call to the callee to the
   * answer's end; calleeStatus: the callee's HTTP status (502: unreachable; 0: not the callee's
   * doing), counted as a callee failure when >= 500.
   */
  a2aCall?(agent: string, callee: string, skill: string, outcome: A2aOutcome, latencyMs: number, calleeStatus: number): void;
  /** An A2A stream's first event went to the caller, latencyMs after the request arrived. */
  a2aFirstEvent?(callee: string, latencyMs: number): void;
  /** An A2A call refused before its callee was called (policy, delegation chain, limits, guardrails, a bad request), by aam's code. */
  a2aRefused?(agent: string, callee: string, code: string): void;
  /** A request refused (or a stream ended unacknowledged) because its evidence could not be recorded, by aam's code (store_unavailable: the fleet's PostgreSQL; unavailable: the local trail). */
  evidenceRefused?(code: string): void;
  /** A callee's push notification to aam, by the caller it is for (agent; "" before its route is verified), callee ("" likewise) and what came of it. */
  a2aPush?(agent: string, callee: string, outcome: A2aPushOutcome): void;
}

/**
 * What came of a push notification: delivered (posted to the caller's URL), held (its text held
 * back to be joined with the next one), refused (no such route, a wrong token, another task's,
 * a policy that no longer lets the caller call the callee), blocked (a guardrail), error (the
 * caller's URL did not take it, a store down).
 */
export type A2aPushOutcome = 'delivered' | 'held' | 'refused' | 'blocked' | 'error';

/**
 * What came of an A2A call: ok (the callee answered, < 400), callee_error (it answered >= 400),
 * error (aam failed it after its admission: unreachable, a guardrail, evidence), client_closed
 * (the caller left a stream), drained (a shutdown ended the stream).
 */
export type A2aOutcome = 'ok' | 'callee_error' | 'error' | 'client_closed' | 'drained';

/** Skills kept as label values per caller and callee; others are counted as "other" (a skill is the caller's text). */
export const A2A_SKILLS_PER_CALLEE = 32;

/** The series one A2A call updates, resolved once per (agent, callee, skill, outcome). */
interface A2aSeries { requests: CounterSeries; latency: HistogramSeries }

export class Metrics implements MetricsSink {
  readonly contentType = CONTENT_TYPE;
  /** prom-client (~7 MB RSS) only collects the process metrics: loaded at the first scrape. */
  #process: Promise<Registry> | null = null;
  readonly #requests = new Counter('aam_model_requests_total', 'Model calls by outcome', ['agent', 'team', 'route', 'provider', 'status']);
  readonly #latency = new Histogram('aam_model_request_duration_seconds', 'Model call latency (gateway in to last byte out)', ['route', 'provider'], [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  readonly #tokens = new Counter('aam_model_tokens_total', 'Tokens by direction', ['agent', 'route', 'direction']);
  readonly #cost = new Counter('aam_model_cost_usd_total', 'Known cost in USD (calls with unknown cost are counted in aam_model_unknown_cost_total)', ['agent', 'team', 'route']);
  readonly #unknownCost = new Counter('aam_model_unknown_cost_total', 'Model calls whose cost is unknown (no price or no usage reported)', ['agent', 'team', 'route']);
  readonly #decisions = new Counter('aam_policy_decisions_total', 'Policy decisions by effect', ['effect', 'agent']);
  readonly #limited = new Counter('aam_limited_total', 'Requests refused by rate limit or budget, or because the fleet store could not check them', ['code', 'agent']);
  readonly #upstreamErrors = new Counter('aam_upstream_errors_total', 'Model calls that failed after fallbacks', ['route', 'status']);
  // Per agent (bounded like every agent label): percentiles of the tool calls each agent makes.
  readonly #toolLatency = new Histogram('aam_tool_call_duration_seconds', 'Upstream tool call latency (MCP tools/call, HTTP tools) by agent, McpServer/HttpTool and outcome (ok, tool_error, error)', ['agent', 'server', 'outcome'], [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  readonly #firstChunk = new Histogram('aam_model_time_to_first_chunk_seconds', 'Streamed model calls: request in to the first content out to the client', ['route', 'provider'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
  readonly #cacheLookups = new Counter('aam_cache_lookups_total', 'Model requests on routes with a cache, by result (hit, miss)', ['route', 'result']);
  readonly #failedAttempts = new Counter('aam_upstream_attempt_failures_total', 'Upstream attempts that failed (then retried, fallen back from, or the call failed), by target and status', ['route', 'target', 'status']);
  readonly #guardrailVerdicts = new Counter('aam_guardrail_verdicts_total', 'Guardrail verdicts other than allow, by guardrail, direction (input, output) and verdict (block, redact, flag)', ['guardrail', 'direction', 'verdict']);
  readonly #a2aRequests = new Counter('aam_a2a_requests_total', 'A2A calls made to a callee, by caller, callee, skill ("other" past 32 per caller and callee, "" unnamed) and outcome (ok, callee_error, error, client_closed, drained)', ['agent', 'callee', 'skill', 'outcome']);
  readonly #a2aLatency = new Histogram('aam_a2a_request_duration_seconds', 'A2A call latency (aam to the callee to the answer\'s or stream\'s end) by caller, callee and outcome', ['agent', 'callee', 'outcome'], [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]);
  readonly #a2aFirstEvent = new Histogram('aam_a2a_time_to_first_event_seconds', 'Streamed A2A calls: request in to the first event out to the caller', ['callee'], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
  readonly #a2aCalleeErrors = new Counter('aam_a2a_callee_errors_total', 'A2A calls whose callee failed (answered >= 500, unreachable: 502, silent past its timeouts: 504), by callee and status', ['callee', 'status']);
  readonly #a2aRefusals = new Counter('aam_a2a_refusals_total', 'A2A calls (and card requests) refused before the callee was called, by caller, callee ("unknown" for a name aam does not know) and code (policy_denied, delegation_cycle, delegation_depth_exceeded, rate_limited, budget_exceeded, guardrail_blocked, unknown_agent, ...)', ['agent', 'callee', 'code']);
  readonly #evidenceRefusals = new Counter('aam_evidence_refusals_total', 'Requests of any plane refused, or streams ended unacknowledged, because their evidence could not be recorded, by code (store_unavailable: the fleet\'s PostgreSQL; unavailable: the local audit trail)', ['code']);
  readonly #a2aPushes = new Counter('aam_a2a_push_notifications_total', 'Push notifications callees sent through aam, by the caller they are for, callee and outcome (delivered, held, refused, blocked, error); agent and callee "unknown" before the route is verified', ['agent', 'callee', 'outcome']);
  readonly info = new Gauge('aam_config_info', 'Loaded config version', ['version']);
  readonly #all: readonly Metric[] = [this.#requests, this.#latency, this.#firstChunk, this.#tokens, this.#cost, this.#unknownCost, this.#cacheLookups, this.#failedAttempts, this.#decisions, this.#limited, this.#upstreamErrors, this.#guardrailVerdicts, this.#toolLatency,
    this.#a2aRequests, this.#a2aLatency, this.#a2aFirstEvent, this.#a2aCalleeErrors, this.#a2aRefusals, this.#evidenceRefusals, this.#a2aPushes, this.info];
  // Resolved series by label values (see label-tree.ts): agent > team > route > provider > status
  // for model calls, effect|code > agent for decisions and refusals.
  readonly #calls: Level = new Map();
  readonly #decisionSeries: Level = new Map();
  readonly #limitedSeries: Level = new Map();
  readonly #toolSeries: Level = new Map();
  readonly #firstChunkSeries: Level = new Map();
  readonly #cacheSeries: Level = new Map();
  // agent > callee > skill > outcome; callee for first events; agent > callee > code for refusals.
  readonly #a2aSeries: Level = new Map();
  readonly #a2aFirstSeries: Level = new Map();
  readonly #a2aRefusalSeries: Level = new Map();
  readonly #a2aPushSeries: Level = new Map();

  /** The scrape body: process metrics, then aam's. */
  async text(): Promise<string> {
    this.#process ??= import('prom-client').then(({ Registry: R, collectDefaultMetrics }) => {
      const r = new R();
      // prom-client's own names behind `aam_`: aam_process_cpu_seconds_total, aam_nodejs_eventloop_lag_seconds.
      collectDefaultMetrics({ register: r, prefix: 'aam_' });
      return r;
    });
    return `${await (await this.#process).metrics()}\n${exposition(this.#all)}`;
  }

  decision(effect: string, agent: string): void { this.#pair(this.#decisionSeries, this.#decisions, effect, agent || 'unregistered').inc(); }
  limited(code: string, agent: string): void { this.#pair(this.#limitedSeries, this.#limited, code, agent || 'unregistered').inc(); }
  evidenceRefused(code: string): void { this.#evidenceRefusals.labels(code).inc(); }

  modelCall(agent: string, team: string | undefined, route: string, provider: string, status: number, latencyMs: number, usage: { inputTokens: number; outputTokens: number } | undefined, cost: number | null): void {
    const c = this.#callSeries(agent || 'unregistered', team ?? '', route, provider, status);
    c.requests.inc();
    c.latency.observe(latencyMs / 1000);
    if (usage) {
      c.tokensIn.inc(usage.inputTokens);
      c.tokensOut.inc(usage.outputTokens);
    }
    if (cost === null) c.unknownCost.inc();
    else if (cost > 0) c.cost.inc(cost);
    if (status >= 500) c.upstreamErrors.inc();
  }

  toolCall(agent: string, server: string, outcome: string, latencyMs: number): void {
    const a = agent || 'unregistered';
    const byOutcome = level(level(this.#toolSeries, a), server);
    let h = byOutcome.get(outcome) as HistogramSeries | undefined;
    if (h === undefined) { h = this.#toolLatency.labels(a, server, outcome); byOutcome.set(outcome, h); }
    h.observe(latencyMs / 1000);
  }

  firstChunk(route: string, provider: string, latencyMs: number): void {
    const byProvider = level(this.#firstChunkSeries, route);
    let h = byProvider.get(provider) as HistogramSeries | undefined;
    if (h === undefined) { h = this.#firstChunk.labels(route, provider); byProvider.set(provider, h); }
    h.observe(latencyMs / 1000);
  }

  cacheLookup(route: string, result: 'hit' | 'miss'): void { this.#pair(this.#cacheSeries, this.#cacheLookups, route, result).inc(); }

  // Rare (a failing upstream): resolved by label values each time.
  failedAttempts(route: string, attempts: readonly { target: string; status: number }[]): void {
    for (const f of attempts) this.#failedAttempts.labels(route, f.target, String(f.status)).inc();
  }

  guardrailVerdict(guardrail: string, direction: string, verdict: string): void { this.#guardrailVerdicts.labels(guardrail, direction, verdict).inc(); }

  a2aCall(agent: string, callee: string, skill: string, outcome: A2aOutcome, latencyMs: number, calleeStatus: number): void {
    const a = agent || 'unregistered';
    const bySkill = level(level(this.#a2aSeries, a), callee);
    // A skill is the caller's text (a rule without `skills` lets any through): past the cap, "other".
    const shown = bySkill.has(skill) || bySkill.size < A2A_SKILLS_PER_CALLEE ? skill : 'other';
    const byOutcome = level(bySkill, shown);
    let c = byOutcome.get(outcome) as A2aSeries | undefined;
    if (c === undefined) {
      c = { requests: this.#a2aRequests.labels(a, callee, shown, outcome), latency: this.#a2aLatency.labels(a, callee, outcome) };
      byOutcome.set(outcome, c);
    }
    c.requests.inc();
    c.latency.observe(latencyMs / 1000);
    // Rare (a failing callee): resolved by label values each time.
    if (calleeStatus >= 500) this.#a2aCalleeErrors.labels(callee, String(calleeStatus)).inc();
  }

  a2aFirstEvent(callee: string, latencyMs: number): void {
    let h = this.#a2aFirstSeries.get(callee) as HistogramSeries | undefined;
    if (h === undefined) { h = this.#a2aFirstEvent.labels(callee); this.#a2aFirstSeries.set(callee, h); }
    h.observe(latencyMs / 1000);
  }

  a2aRefused(agent: string, callee: string, code: string): void { this.#triple(this.#a2aRefusalSeries, this.#a2aRefusals, agent || 'unregistered', callee, code).inc(); }

  a2aPush(agent: string, callee: string, outcome: A2aPushOutcome): void {
    // Names come from the verified route (config names), never from the URL of an unverified one.
    this.#triple(this.#a2aPushSeries, this.#a2aPushes, agent || 'unknown', callee || 'unknown', outcome).inc();
  }

  #callSeries(agent: string, team: string, route: string, provider: string, status: number): CallSeries {
    const byStatus = level(level(level(level(this.#calls, agent), team), route), provider);
    let c = byStatus.get(status) as CallSeries | undefined;
    if (c === undefined) {
      const s = String(status);
      c = {
        requests: this.#requests.labels(agent, team, route, provider, s),
        latency: this.#latency.labels(route, provider),
        tokensIn: this.#tokens.labels(agent, route, 'input'),
        tokensOut: this.#tokens.labels(agent, route, 'output'),
        cost: this.#cost.labels(agent, team, route),
        unknownCost: this.#unknownCost.labels(agent, team, route),
        upstreamErrors: this.#upstreamErrors.labels(route, s),
      };
      byStatus.set(status, c);
    }
    return c;
  }

  #pair(tree: Level, family: Counter, a: string, b: string): CounterSeries {
    const byB = level(tree, a);
    let s = byB.get(b) as CounterSeries | undefined;
    if (s === undefined) { s = family.labels(a, b); byB.set(b, s); }
    return s;
  }

  #triple(tree: Level, family: Counter, a: string, b: string, c: string): CounterSeries {
    const byC = level(level(tree, a), b);
    let s = byC.get(c) as CounterSeries | undefined;
    if (s === undefined) { s = family.labels(a, b, c); byC.set(c, s); }
    return s;
  }
}
