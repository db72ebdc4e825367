// Usage records (one per upstream call), batched off the hot path into the store and drained on
// shutdown. cost_usd NULL means "unknown" (no price or no usage reported), never silently $0.
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { transaction } from '../store/sqlite.ts';

export interface UsageRecord {
  time: number;
  requestId: string;
  agent: string;
  team: string | null;
  keyId: string | null;
  route: string;
  provider: string | null;
  model: string | null;
  inputTokens: number | null;
  outputTokens: number | null;
  cachedTokens: number | null;
  costUsd: number | null;
  latencyMs: number;
  status: number;
  stream: boolean;
  cache: 'hit' | 'miss' | null;
}

export class UsageRecorder {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  #queue: UsageRecord[] = [];
  #timer: NodeJS.Timeout | null = null;
  readonly #maxBatch = 512;
  readonly #intervalMs: number;

  constructor(db: DatabaseSync, intervalMs = 200) {
    this.#db = db;
    this.#intervalMs = intervalMs;
    db.exec(`CREATE TABLE IF NOT EXISTS usage (
      id INTEGER PRIMARY KEY, time INTEGER NOT NULL, request_id TEXT NOT NULL, agent TEXT NOT NULL, team TEXT, key_id TEXT,
      route TEXT NOT NULL, provider TEXT, model TEXT, input_tokens INTEGER, output_tokens INTEGER, cached_tokens INTEGER,
      cost_usd REAL, latency_ms REAL NOT NULL, status INTEGER NOT NULL, stream INTEGER NOT NULL, cache TEXT);
    CREATE INDEX IF NOT EXISTS usage_agent_time ON usage(agent, time);
    CREATE INDEX IF NOT EXISTS usage_team_time ON usage(team, time);`);
    this.#insert = db.prepare(`INSERT INTO usage (time, request_id, agent, team, key_id, route, provider, model, input_tokens,
      output_tokens, cached_tokens, cost_usd, latency_ms, status, stream, cache) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`);
  }

  /** Hot path: enqueue only. */
  record(r: UsageRecord): void {
    this.#queue.push(r);
    if (this.#queue.length >= this.#maxBatch) this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.flush(), this.#intervalMs);
      this.#timer.unref();
    }
  }

  flush(): void {
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    if (this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    transaction(this.#db, () => {
      for (const r of batch) {
        this.#insert.run(r.time, r.requestId, r.agent, r.team, r.keyId, r.route, r.provider, r.model, r.inputTokens, r.outputTokens,
          r.cachedTokens, r.costUsd, r.latencyMs, r.status, r.stream ? 1 : 0, r.cache);
      }
    });
  }

  /** Spend so far in [since, now) for budget seeding: known costs only, plus the count of unknown ones. */
  spendSince(column: 'agent' | 'team', value: string, since: number): { usd: number; unknown: number } {
    const row = this.#db.prepare(`SELECT coalesce(sum(cost_usd), 0) AS usd, sum(cost_usd IS NULL) AS unknown FROM usage WHERE ${column} = ? AND time >= ?`).get(value, since) as { usd: number; unknown: number | null };
    return { usd: row.usd, unknown: row.unknown ?? 0 };
  }

  summary(by: 'agent' | 'team' | 'model' | 'route', since: number): Array<Record<string, unknown>> {
    const col = by === 'model' ? 'model' : by;
    return this.#db.prepare(`SELECT ${col} AS ${by}, count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
      round(sum(cost_usd), 6) AS cost_usd, sum(cost_usd IS NULL) AS unknown_cost_requests, sum(cache = 'hit') AS cache_hits
      FROM usage WHERE time >= ? GROUP BY ${col} ORDER BY cost_usd DESC`).all(since) as Array<Record<string, unknown>>;
  }
}

/**
 * Start of a reporting window: an ISO time, or relative like 30m / 24h / 7d (default 30 days).
 * Throws an Error whose message says what is accepted.
 */
export function sinceTime(text: string | undefined, now = Date.now()): number {
  if (!text) return now - 30 * 86_400_000;
  const rel = /^(\d+)([mhd])$/.exec(text);
  if (rel) return now - Number(rel[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new Error(`"${text}" is neither an ISO time nor like 30m, 24h, 7d`);
  return t;
}
