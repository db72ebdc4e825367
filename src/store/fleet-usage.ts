// Usage rollups in the fleet store: each replica adds the aggregates it flushes (about once a
// second, off the request path) to PostgreSQL usage_rollup, so `aam usage` and the admin API's
// usage answer for the whole fleet. A write that fails is kept (bounded) and sent again first at
// the next flush; rows are sent in key order, so two replicas adding to the same rows cannot deadlock.
import type { Sql } from './postgres.ts';
import { usageGroupColumn, type UsageGrouping, type UsageRollupRow } from './types.ts';

/** Batches kept while PostgreSQL fails (each about one second of aggregates). */
const MAX_BACKLOG = 600;

const COLUMNS = ['minute', 'agent', 'team', 'key_id', 'route', 'provider', 'model', 'status', 'stream', 'cache', 'requests',
  'input_tokens', 'output_tokens', 'cached_tokens', 'cache_write_tokens', 'cost_usd', 'unknown_cost_requests', 'latency_ms_sum', 'latency_ms_max'] as const;
const addNullable = (c: string) => `${c} = CASE WHEN excluded.${c} IS NULL THEN usage_rollup.${c} ELSE coalesce(usage_rollup.${c}, 0) + excluded.${c} END`;
const ON_CONFLICT = `ON CONFLICT (minute, agent, team, key_id, route, provider, model, status, stream, cache) DO UPDATE SET
  requests = usage_rollup.requests + excluded.requests, ${['input_tokens', 'output_tokens', 'cached_tokens', 'cache_write_tokens', 'cost_usd'].map(addNullable).join(', ')},
  unknown_cost_requests = usage_rollup.unknown_cost_requests + excluded.unknown_cost_requests,
  latency_ms_sum = usage_rollup.latency_ms_sum + excluded.latency_ms_sum, latency_ms_max = greatest(usage_rollup.latency_ms_max, excluded.latency_ms_max)`;

const dbRow = (a: UsageRollupRow) => ({
  minute: a.minute, agent: a.agent, team: a.team, key_id: a.keyId, route: a.route, provider: a.provider, model: a.model, status: a.status,
  stream: a.stream, cache: a.cache, requests: a.requests, input_tokens: a.inputTokens, output_tokens: a.outputTokens, cached_tokens: a.cachedTokens,
  cache_write_tokens: a.cacheWriteTokens, cost_usd: a.costUsd, unknown_cost_requests: a.unknownCost, latency_ms_sum: a.latencySum, latency_ms_max: a.latencyMax,
});
interface DayTotals { requests: number; input_tokens: number; output_tokens: number; cache_read_tokens: number; cache_write_tokens: number; cost_usd: number; unknown_cost_requests: number }

/** Queries count from the start of the minute holding `since`, as the embedded store does (rollups are per minute). */
const minuteStart = (since: number): number => Math.floor(since / 60_000) * 60_000;

const keyOf = (a: UsageRollupRow) => [a.minute, a.agent, a.team, a.keyId, a.route, a.provider, a.model, a.status, a.stream, a.cache].join('\u0000');

export class FleetUsage {
  readonly #sql: Sql;
  readonly #onError: (e: unknown) => void;
  #backlog: UsageRollupRow[][] = [];
  #writing: Promise<void> = Promise.resolve();

  constructor(sql: Sql, onError: (e: unknown) => void = () => {}) {
    this.#sql = sql;
    this.#onError = onError;
  }

  /** Queue one flush's aggregates (unique per key) and send them behind the previous writes. */
  add(rows: readonly UsageRollupRow[]): void {
    if (rows.length === 0) return;
    this.#backlog.push([...rows].sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : 1)));
    if (this.#backlog.length > MAX_BACKLOG) this.#backlog.shift(); // oldest second of rollups lost; the audit trail still has every call
    this.#writing = this.#writing.then(() => this.#drain());
  }

  async #drain(): Promise<void> {
    while (this.#backlog.length) {
      try {
        await this.#sql`INSERT INTO usage_rollup ${this.#sql(this.#backlog[0].map(dbRow), ...COLUMNS)} ${this.#sql.unsafe(ON_CONFLICT)}`;
      } catch (e) {
        this.#onError(e);
        return; // kept; sent again at the next flush
      }
      this.#backlog.shift();
    }
  }

  /** Resolves once every queued write was tried (close, and before reading this replica's own usage). */
  settled(): Promise<void> { return this.#writing; }

  /** Fleet-wide totals per grouping since the start of `since`'s minute, most expensive first. */
  async summary(by: UsageGrouping, since: number): Promise<Array<Record<string, unknown>>> {
    const col = usageGroupColumn(by);
    return this.#sql.unsafe(`SELECT ${col} AS ${by}, sum(requests)::float8 AS requests, sum(input_tokens)::float8 AS input_tokens,
      sum(output_tokens)::float8 AS output_tokens, coalesce(sum(cached_tokens), 0)::float8 AS cache_read_tokens,
      coalesce(sum(cache_write_tokens), 0)::float8 AS cache_write_tokens, round(sum(cost_usd)::numeric, 6)::float8 AS cost_usd,
      sum(unknown_cost_requests)::float8 AS unknown_cost_requests, sum(CASE WHEN cache = 'hit' THEN requests ELSE 0 END)::float8 AS cache_hits
      FROM usage_rollup WHERE minute >= $1 GROUP BY 1 ORDER BY cost_usd DESC NULLS LAST`, [minuteStart(since)]);
  }

  /** The latest minute with a call, per agent, fleet-wide (bigint minute as a number). */
  async lastCalls(): Promise<Map<string, number>> {
    const rows = await this.#sql<Array<{ agent: string; t: string }>>`SELECT agent, max(minute) AS t FROM usage_rollup GROUP BY agent`;
    return new Map(rows.map((r) => [r.agent, Number(r.t)]));
  }

  /** Fleet-wide per UTC day since `since`: requests, tokens and cost per grouping (spend over time). */
  async daily(by: UsageGrouping, since: number): Promise<Array<{ day: string; key: string } & DayTotals>> {
    const rows = await this.#sql.unsafe<Array<{ d: string; k: string } & DayTotals>>(`SELECT (minute / 86400000) * 86400000 AS d, ${by === 'key' ? 'key_id' : by} AS k, sum(requests)::float8 AS requests,
      coalesce(sum(input_tokens), 0)::float8 AS input_tokens, coalesce(sum(output_tokens), 0)::float8 AS output_tokens,
      coalesce(sum(cached_tokens), 0)::float8 AS cache_read_tokens, coalesce(sum(cache_write_tokens), 0)::float8 AS cache_write_tokens,
      round(coalesce(sum(cost_usd), 0)::numeric, 6)::float8 AS cost_usd, sum(unknown_cost_requests)::float8 AS unknown_cost_requests
      FROM usage_rollup WHERE minute >= $1 GROUP BY 1, 2 ORDER BY 1, 2`, [minuteStart(since)]);
    return rows.map(({ d, k, ...r }) => ({ day: new Date(Number(d)).toISOString().slice(0, 10), key: k, ...r }));
  }
}
