// "Identity methods seen": which ways each agent actually proved who it is (virtual key, JWT-SVID,
// X.509-SVID), served a delegation (x-aam-delegation) or was asserted downstream on its behalf
// (an on_behalf_of credential), and when each was last seen. The hot path writes one number into a
// per-agent array (no allocation once the agent has one); a timer armed by the first change writes
// what changed to the store a few seconds later: SQLite in the data dir, or Redis in fleet mode
// (ZADD GT keeps the newest time any replica saw), so every replica answers the same.
import type { DatabaseSync } from 'node:sqlite';
import type { Redis } from '../store/redis.ts';
import { transaction } from '../store/sqlite.ts';

export const SEEN_METHODS = ['virtual_key', 'jwt_svid', 'x509_svid', 'delegation', 'on_behalf_of'] as const;
/** The agent's last activity per plane is kept the same way ("model", "tool", "a2a": an event recorded there). */
export const ACTIVITY_PLANES = ['model', 'tool', 'a2a'] as const;
const SEEN_KINDS = [...SEEN_METHODS, ...ACTIVITY_PLANES] as const;
export type SeenMethod = typeof SEEN_KINDS[number];

/** agent -> method (or plane) -> ISO time it was last seen. */
export type SeenTable = Map<string, Partial<Record<SeenMethod, string>>>;

export interface SeenRow { agent: string; method: SeenMethod; at: number }

/** Where seen times are kept: write keeps the newest per (agent, method). */
export interface SeenBackend {
  write(rows: readonly SeenRow[]): Promise<void>;
  read(): Promise<SeenRow[]>;
}

const INDEX: Readonly<Record<string, number>> = Object.fromEntries(SEEN_KINDS.map((m, i) => [m, i]));
/** Agents are config names; a bound keeps a config with many agents from growing this without end. */
const MAX_AGENTS = 100_000;
const FLUSH_MS = 2000;

export class IdentitySeen {
  readonly #backend: SeenBackend;
  readonly #onError: (e: unknown) => void;
  /** Last seen (epoch ms, 0 = not since start) and what was last written, per agent and method. */
  readonly #times = new Map<string, { seen: Float64Array; written: Float64Array }>();
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();

  constructor(backend: SeenBackend, onError: (e: unknown) => void = () => {}) {
    this.#backend = backend;
    this.#onError = onError;
  }

  /** The hot path: `agent` (a config name; '' for unregistered identities, not kept) used `method` now. */
  note(agent: string, method: string, now = Date.now()): void {
    const i = INDEX[method];
    if (i === undefined || agent === '') return;
    let t = this.#times.get(agent);
    if (t === undefined) {
      if (this.#times.size >= MAX_AGENTS) return;
      t = { seen: new Float64Array(SEEN_KINDS.length), written: new Float64Array(SEEN_KINDS.length) };
      this.#times.set(agent, t);
    }
    t.seen[i] = now;
    if (this.#timer === null) {
      this.#timer = setTimeout(() => { void this.flush(); }, FLUSH_MS);
      this.#timer.unref();
    }
  }

  /** Write what changed since the last flush (timer, shutdown, and before reading). Never throws. */
  flush(): Promise<void> {
    if (this.#timer) { clearTimeout(this.#timer); this.#timer = null; }
    const rows: SeenRow[] = [];
    for (const [agent, t] of this.#times) {
      for (let i = 0; i < SEEN_KINDS.length; i++) {
        if (t.seen[i] > t.written[i]) { rows.push({ agent, method: SEEN_KINDS[i], at: t.seen[i] }); t.written[i] = t.seen[i]; }
      }
    }
    if (rows.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(() => this.#backend.write(rows)).catch((e: unknown) => {
      // Not written: let the next flush try these again.
      for (const r of rows) { const t = this.#times.get(r.agent); if (t) t.written[INDEX[r.method]] = 0; }
      this.#onError(e);
    });
    return this.#flushing;
  }

  /** Every agent's methods with the time each was last seen (this process's unwritten ones first written). */
  async table(): Promise<SeenTable> {
    await this.flush();
    const out: SeenTable = new Map();
    for (const r of await this.#backend.read()) {
      let m = out.get(r.agent);
      if (!m) { m = {}; out.set(r.agent, m); }
      m[r.method] = new Date(r.at).toISOString();
    }
    return out;
  }
}

const isMethod = (m: string): m is SeenMethod => INDEX[m] !== undefined;

export function sqliteSeenBackend(db: DatabaseSync): SeenBackend {
  db.exec(`CREATE TABLE IF NOT EXISTS identity_seen (agent TEXT NOT NULL, method TEXT NOT NULL, last_seen INTEGER NOT NULL,
    PRIMARY KEY (agent, method)) WITHOUT ROWID`);
  const upsert = db.prepare(`INSERT INTO identity_seen (agent, method, last_seen) VALUES (?, ?, ?)
    ON CONFLICT DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`);
  const all = db.prepare('SELECT agent, method, last_seen FROM identity_seen');
  return {
    async write(rows) {
      transaction(db, () => { for (const r of rows) upsert.run(r.agent, r.method, r.at); });
    },
    async read() {
      return all.all().flatMap((r) => { const m = String(r.method); return isMethod(m) ? [{ agent: String(r.agent), method: m, at: Number(r.last_seen) }] : []; });
    },
  };
}

/** Fleet: one sorted set per fleet, member "<method> <agent>", score = epoch ms (GT: never goes back). */
export function redisSeenBackend(redis: Redis, prefix: string): SeenBackend {
  const key = `${prefix}identity_seen`;
  return {
    async write(rows) {
      const args: (string | number)[] = [];
      for (const r of rows) args.push(r.at, `${r.method} ${r.agent}`);
      await redis.zadd(key, 'GT', ...args);
    },
    async read() {
      const flat = await redis.zrange(key, 0, -1, 'WITHSCORES');
      const out: SeenRow[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const sp = flat[i].indexOf(' ');
        const method = flat[i].slice(0, sp);
        if (sp > 0 && isMethod(method)) out.push({ agent: flat[i].slice(sp + 1), method, at: Number(flat[i + 1]) });
      }
      return out;
    },
  };
}
