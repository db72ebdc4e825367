// Usage rollups: each upstream call is added to an in-memory aggregate per (minute, agent, team,
// key, route, provider, model, status, stream, cache), and a timer upserts the aggregates into the
// store about once a second (and on shutdown). The hot path does Map lookups and additions;
// per-request detail lives in the audit trail (model_call events), not here.
// Cost: a NULL/unknown cost is counted in unknown_cost_requests, never silently added as $0.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { timeOrAgo } from '../config/duration.ts';
import { transaction } from '../store/sqlite.ts';
import { level, type Level } from '../observability/label-tree.ts';
import { usageGroupColumn, type UsageGrouping, type UsageRollupRow } from '../store/types.ts';

export interface UsageRecord {
  /** Epoch ms; defaults to now. Only its minute is kept. */
  time?: number;
  agent: string;
  team: string | null;
  keyId: string | null;
  route: string;
  provider: string | null;
  model: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
  /** Prompt-cache reads and writes (parts of inputTokens). */
  cachedTokens: number | null;
  cacheWriteTokens?: number | null;
  costUsd: number | null;
  latencyMs: number;
  status: number;
  stream: boolean;
  cache: 'hit' | 'miss' | null;
}

/** One rollup row in the making. Token and cost sums stay null until a request reports them. */
type Aggregate = UsageRollupRow;

export const MINUTE_MS = 60_000;

// Dimension columns are NOT NULL ('' for "none") because SQLite treats NULLs in a primary key as
// distinct, which would defeat the upsert; queries turn '' back into NULL.
const SCHEMA = `CREATE TABLE IF NOT EXISTS usage_rollup (
    minute INTEGER NOT NULL, agent TEXT NOT NULL, team TEXT NOT NULL, key_id TEXT NOT NULL, route TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL, stream INTEGER NOT NULL, cache TEXT NOT NULL,
    requests INTEGER NOT NULL, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER, cache_write_tokens INTEGER,
    cost_usd REAL, unknown_cost_requests INTEGER NOT NULL, latency_ms_sum REAL NOT NULL, latency_ms_max REAL NOT NULL,
    PRIMARY KEY (minute, agent, team, key_id, route, provider, model, status, stream, cache)) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS usage_rollup_agent ON usage_rollup(agent, minute);
  CREATE INDEX IF NOT EXISTS usage_rollup_team ON usage_rollup(team, minute);`;

// Sums that may be NULL ("nothing reported") add as NULL + x = x, NULL + NULL = NULL.
const addNullable = (c: string) => `${c} = CASE WHEN excluded.${c} IS NULL THEN ${c} ELSE coalesce(${c}, 0) + excluded.${c} END`;
const UPSERT = `INSERT INTO usage_rollup (minute, agent, team, key_id, route, provider, model, status, stream, cache, requests,
    input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_usd, unknown_cost_requests, latency_ms_sum, latency_ms_max)
  VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
  ON CONFLICT DO UPDATE SET requests = requests + excluded.requests,
    ${addNullable('input_tokens')}, ${addNullable('output_tokens')}, ${addNullable('cached_tokens')}, ${addNullable('cache_write_tokens')}, ${addNullable('cost_usd')},
    unknown_cost_requests = unknown_cost_requests + excluded.unknown_cost_requests,
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, latency_ms_max = max(latency_ms_max, excluded.latency_ms_max)`;

// The per-request table of earlier versions, folded into the rollup once and kept as usage_v1.
const LEGACY_COLUMNS = 'time, request_id, agent, team, key_id, route, provider, model, input_tokens, output_tokens, cached_tokens, cost_usd, latency_ms, status, stream, cache';
const FOLD_LEGACY = `INSERT INTO usage_rollup (minute, agent, team, key_id, route, provider, model, status, stream, cache, requests,
    input_tokens, output_tokens, cached_tokens, cost_usd, unknown_cost_requests, latency_ms_sum, latency_ms_max)
  SELECT time - time % ${MINUTE_MS} AS m, agent, coalesce(team, '') AS t, coalesce(key_id, '') AS k, route, coalesce(provider, '') AS p,
    coalesce(model, '') AS md, status, stream, coalesce(cache, '') AS c, count(*), sum(input_tokens), sum(output_tokens), sum(cached_tokens),
    sum(cost_usd), sum(cost_usd IS NULL), sum(latency_ms), max(latency_ms)
  FROM usage WHERE true GROUP BY m, agent, t, k, route, p, md, status, stream, c
  ON CONFLICT DO UPDATE SET requests = requests + excluded.requests,
    ${addNullable('input_tokens')}, ${addNullable('output_tokens')}, ${addNullable('cached_tokens')}, ${addNullable('cost_usd')},
    unknown_cost_requests = unknown_cost_requests + excluded.unknown_cost_requests,
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum, latency_ms_max = max(latency_ms_max, excluded.latency_ms_max);`;

export { USAGE_GROUPINGS, type UsageGrouping } from '../store/types.ts';

/** A day's totals in daily() (cache reads and writes: parts of input_tokens; 0 for rows from before they were counted). */
interface DayTotals { requests: number; input_tokens: number; output_tokens: number; cache_read_tokens: number; cache_write_tokens: number; cost_usd: number; unknown_cost_requests: number }

export class UsageRecorder {
  readonly #db: DatabaseSync;
  readonly #upsert: StatementSync;
  readonly #intervalMs: number;
  // Aggregates not yet flushed: a label tree per minute (see label-tree.ts for why not a joined
  // key), plus the flat list the flush walks.
  #trees = new Map<number, Level>();
  #pending: Aggregate[] = [];
  #minute = -1;
  #tree: Level | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** Fleet mode: every flush is also added to the shared rollups (store/fleet-usage.ts). */
  readonly #shared: { add(rows: readonly UsageRollupRow[]): void } | null;

  constructor(db: DatabaseSync, opts: { intervalMs?: number; shared?: { add(rows: readonly UsageRollupRow[]): void } } = {}) {
    this.#db = db;
    this.#intervalMs = opts.intervalMs ?? 1000;
    this.#shared = opts.shared ?? null;
    transaction(db, () => {
      db.exec(SCHEMA);
      // Rollups written before cache writes were counted: the column is added, their rows read as 0.
      const cols = db.prepare('SELECT name FROM pragma_table_info(\'usage_rollup\')').all() as Array<{ name: string }>;
      if (!cols.some((c) => c.name === 'cache_write_tokens')) db.exec('ALTER TABLE usage_rollup ADD COLUMN cache_write_tokens INTEGER');
      const legacy = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage'").get();
      if (legacy) {
        db.exec(FOLD_LEGACY);
        // Kept as usage_v1; a data dir that an older version wrote to again appends to it.
        const kept = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_v1'").get();
        db.exec(kept ? `INSERT INTO usage_v1 (${LEGACY_COLUMNS}) SELECT ${LEGACY_COLUMNS} FROM usage; DROP TABLE usage;` : 'ALTER TABLE usage RENAME TO usage_v1;');
      }
    });
    this.#upsert = db.prepare(UPSERT);
  }

  /** Hot path: nine Map lookups on values whose hashes are cached, then a few additions. */
  record(r: UsageRecord): void {
    const minute = minuteOf(r.time ?? Date.now());
    if (minute !== this.#minute || this.#tree === null) this.#tree = this.#treeOf(minute);
    const leaves = level(level(level(level(level(level(level(level(this.#tree, r.agent), r.team), r.keyId), r.route), r.provider), r.model), r.status), r.stream);
    let a = leaves.get(r.cache) as Aggregate | undefined;
    if (a === undefined) {
      a = {
        minute, agent: r.agent, team: r.team ?? '', keyId: r.keyId ?? '', route: r.route, provider: r.provider ?? '', model: r.model ?? '',
        status: r.status, stream: r.stream ? 1 : 0, cache: r.cache ?? '',
        requests: 0, inputTokens: null, outputTokens: null, cachedTokens: null, cacheWriteTokens: null, costUsd: null, unknownCost: 0, latencySum: 0, latencyMax: 0,
      };
      leaves.set(r.cache, a);
      this.#pending.push(a);
    }
    a.requests++;
    if (r.inputTokens !== null) a.inputTokens = (a.inputTokens ?? 0) + r.inputTokens;
    if (r.outputTokens !== null) a.outputTokens = (a.outputTokens ?? 0) + r.outputTokens;
    if (r.cachedTokens !== null) a.cachedTokens = (a.cachedTokens ?? 0) + r.cachedTokens;
    if (r.cacheWriteTokens != null) a.cacheWriteTokens = (a.cacheWriteTokens ?? 0) + r.cacheWriteTokens;
    if (r.costUsd === null) a.unknownCost++;
    else a.costUsd = (a.costUsd ?? 0) + r.costUsd;
    a.latencySum += r.latencyMs;
    if (r.latencyMs > a.latencyMax) a.latencyMax = r.latencyMs;
    if (this.#timer === null && !this.#closed) {
      this.#timer = setTimeout(() => this.flush(), this.#intervalMs);
      this.#timer.unref();
    }
  }

  #treeOf(minute: number): Level {
    let t = this.#trees.get(minute);
    if (t === undefined) { t = new Map(); this.#trees.set(minute, t); }
    this.#minute = minute;
    return t;
  }

  /**
   * Flush, then write no more: the database closes next. A request recording after this (one whose
   * handler outlived the shutdown's wait for it) is counted in memory only, never flushed by a
   * timer into the closed database (that threw from the timer and crashed the shutdown).
   */
  close(): void {
    this.flush();
    this.#closed = true;
  }
  #closed = false;

  /** Upsert every pending aggregate in one transaction (timer, shutdown, and before reading). */
  flush(): void {
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    if (this.#pending.length === 0 || this.#closed) return;
    const pending = this.#pending;
    this.#pending = [];
    this.#trees = new Map();
    this.#tree = null;
    transaction(this.#db, () => {
      for (const a of pending) {
        this.#upsert.run(a.minute, a.agent, a.team, a.keyId, a.route, a.provider, a.model, a.status, a.stream, a.cache, a.requests,
          a.inputTokens, a.outputTokens, a.cachedTokens, a.cacheWriteTokens, a.costUsd, a.unknownCost, a.latencySum, a.latencyMax);
      }
    });
    this.#shared?.add(pending);
  }
  /**
   * Spend in [since, now) for budget seeding: known costs only, plus the count of unknown ones.
   * `since` counts from the start of its minute (rollups are per minute).
   */
  spendSince(column: 'agent' | 'team', value: string, since: number): { usd: number; unknown: number } {
    const row = this.#db.prepare(`SELECT coalesce(sum(cost_usd), 0) AS usd, coalesce(sum(unknown_cost_requests), 0) AS unknown
      FROM usage_rollup WHERE ${column} = ? AND minute >= ?`).get(value, minuteOf(since)) as { usd: number; unknown: number };
    return { usd: row.usd, unknown: row.unknown };
  }

  /** Totals per agent/team/model/route/virtual key since the start of `since`'s minute, most expensive first. */
  summary(by: UsageGrouping, since: number): Array<Record<string, unknown>> {
    const col = usageGroupColumn(by);
    return this.#db.prepare(`SELECT ${col} AS ${by}, sum(requests) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
      coalesce(sum(cached_tokens), 0) AS cache_read_tokens, coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens,
      round(sum(cost_usd), 6) AS cost_usd, sum(unknown_cost_requests) AS unknown_cost_requests, sum(CASE WHEN cache = 'hit' THEN requests ELSE 0 END) AS cache_hits
      FROM usage_rollup WHERE minute >= ? GROUP BY ${col} ORDER BY cost_usd DESC`).all(minuteOf(since)) as Array<Record<string, unknown>>;
  }

  /** Per UTC day since `since`: requests, tokens and cost per agent/team/model/route (spend over time). */
  daily(by: UsageGrouping, since: number): Array<{ day: string; key: string } & DayTotals> {
    const rows = this.#db.prepare(`SELECT (minute / 86400000) * 86400000 AS d, ${by === 'key' ? 'key_id' : by} AS k, sum(requests) AS requests, coalesce(sum(input_tokens), 0) AS input_tokens,
      coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cached_tokens), 0) AS cache_read_tokens, coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens, round(coalesce(sum(cost_usd), 0), 6) AS cost_usd, sum(unknown_cost_requests) AS unknown_cost_requests
      FROM usage_rollup WHERE minute >= ? GROUP BY d, k ORDER BY d, k`).all(minuteOf(since)) as unknown as Array<{ d: number; k: string } & DayTotals>;
    return rows.map(({ d, k, ...r }) => ({ day: new Date(d).toISOString().slice(0, 10), key: k, ...r }));
  }
}

/** Start of the minute holding `t`: the finest time step usage can be queried at. */
export function minuteOf(t: number): number {
  return t - (((t % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);
}

/**
 * Start of a reporting window: an ISO time, or relative like 30m / 24h / 7d (default 30 days).
 * Throws an Error whose message says what is accepted.
 */
export function sinceTime(text: string | undefined, now = Date.now()): number {
  return text ? timeOrAgo(text, now) : now - 30 * 86_400_000;
}
