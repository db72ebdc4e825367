// Budgets and rpm/tpm limits on the fleet store. Admission is ONE Redis script per request (one
// round trip): it checks rpm/tpm (GCRA, Redis's clock) and the budgets, then counts the rates and
// reserves the estimate on every budget key, all or nothing. Reservations carry an expiry, so a
// replica that dies mid-request does not hold budget forever. Settled spend goes to Redis (the
// live total the script checks) and, batched about once a second, to PostgreSQL (durable: a
// Redis that restarts empty is re-seeded from it, so an exhausted budget stays exhausted).
import type { Fleet } from './fleet.ts';
import { StoreUnavailable, type AdmitRequest, type AdmitResult, type BudgetAlert, type Limiter, type Period, type Ticket } from './types.ts';

const dayStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()); };
const monthStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); };
const nextMonth = (start: number): number => { const d = new Date(start); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1); };

// KEYS: rate hashes (one per rate entry), then per budget key its hash and its reservation zset.
// ARGV: nRates, tokens, (rpm, tpm) per rate, nBudgets, amount, dayField, monthField, member,
//       reservation ttl ms, (daily, monthly; -1 = none) per budget.
// Replies: {'ok'} | {'rate', 'rpm'|'tpm', index, waitMs} | {'budget', index, period, committed}
//          | {'seed', index...} (budget totals of this window not in Redis yet: nothing counted).
const ADMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local W = 60000
local nr = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local a = 3
local cells = {}
local rateFail = nil
for i = 1, nr do
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local c = redis.call('HMGET', KEYS[i], 'r', 't')
  local rtat, ttat = tonumber(c[1]) or 0, tonumber(c[2]) or 0
  cells[i] = { rpm, tpm, rtat, ttat }
  if not rateFail and rpm > 0 then
    local excess = math.max(rtat, now) + W / rpm - now - W
    if excess > 0.000001 then rateFail = { 'rate', 'rpm', i, tostring(math.ceil(excess)) } end
  end
  if not rateFail and tpm > 0 and tokens > 0 then
    local excess = math.max(ttat, now) + math.min(tokens, tpm) * W / tpm - now - W
    if excess > 0.000001 then rateFail = { 'rate', 'tpm', i, tostring(math.ceil(excess)) } end
  end
end
local nb = tonumber(ARGV[a])
local amount = tonumber(ARGV[a + 1])
local dayF, monF, member, ttl = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
a = a + 6
local budgetFail = nil
local missing = {}
for j = 1, nb do
  local bk, zk = KEYS[nr + 2 * j - 1], KEYS[nr + 2 * j]
  local daily, monthly = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local dead = redis.call('ZRANGEBYSCORE', zk, '-inf', now)
  if #dead > 0 then
    local sum = 0
    for _, m in ipairs(dead) do sum = sum + tonumber(string.match(m, '|(.*)$')) end
    redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
    redis.call('HINCRBYFLOAT', bk, 'r', -sum)
  end
  local v = redis.call('HMGET', bk, dayF, monF, 'r')
  if (daily >= 0 and not v[1]) or (monthly >= 0 and not v[2]) then
    missing[#missing + 1] = j
  elseif not budgetFail then
    local reserved = math.max(0, tonumber(v[3]) or 0)
    if daily >= 0 and (tonumber(v[1]) + reserved + amount) > daily + 1e-9 then
      budgetFail = { 'budget', j, 'daily', tostring(tonumber(v[1]) + reserved) }
    elseif monthly >= 0 and (tonumber(v[2]) + reserved + amount) > monthly + 1e-9 then
      budgetFail = { 'budget', j, 'monthly', tostring(tonumber(v[2]) + reserved) }
    end
  end
end
if #missing > 0 then
  table.insert(missing, 1, 'seed')
  return missing
end
if rateFail then return rateFail end
for i = 1, nr do
  local c = cells[i]
  local until_ = now
  if c[1] > 0 then
    local tat = math.max(c[3], now) + W / c[1]
    redis.call('HSET', KEYS[i], 'r', tostring(tat))
    until_ = math.max(until_, tat)
  end
  if c[2] > 0 then
    local tat = c[4]
    if tokens > 0 then tat = math.max(c[4], now) + tokens * W / c[2] end
    redis.call('HSET', KEYS[i], 't', tostring(tat), 'i', tostring(W / c[2]))
    until_ = math.max(until_, tat)
  end
  redis.call('PEXPIRE', KEYS[i], math.ceil(until_ - now) + 1000)
end
if budgetFail then return budgetFail end
for j = 1, nb do
  local bk, zk = KEYS[nr + 2 * j - 1], KEYS[nr + 2 * j]
  if amount > 0 then
    redis.call('ZADD', zk, now + ttl, member)
    redis.call('HINCRBYFLOAT', bk, 'r', amount)
    redis.call('PEXPIRE', zk, ttl + 60000)
  end
  redis.call('PEXPIRE', bk, 3024000000)
end
return { 'ok' }
`;

// KEYS as ADMIT. ARGV: nRates, actualTokens (-1: unknown), estimatedTokens, nBudgets, member,
// amount reserved, charge, dayField, monthField. A reservation that already expired is not
// subtracted twice; its charge still counts.
const SETTLE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nr = tonumber(ARGV[1])
local actual, est = tonumber(ARGV[2]), tonumber(ARGV[3])
if actual >= 0 then
  for i = 1, nr do
    local c = redis.call('HMGET', KEYS[i], 't', 'i')
    local interval = tonumber(c[2])
    if interval then
      local tat = math.max(now, (tonumber(c[1]) or now) + (actual - est) * interval)
      redis.call('HSET', KEYS[i], 't', tostring(tat))
      local ttl = redis.call('PTTL', KEYS[i])
      local need = math.ceil(tat - now) + 1000
      if ttl < need then redis.call('PEXPIRE', KEYS[i], need) end
    end
  end
end
local nb = tonumber(ARGV[4])
local member, amount, charge, dayF, monF = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9]
local totals = {}
for j = 1, nb do
  local bk, zk = KEYS[nr + 2 * j - 1], KEYS[nr + 2 * j]
  if redis.call('ZREM', zk, member) == 1 then redis.call('HINCRBYFLOAT', bk, 'r', -amount) end
  local d, m = '', ''
  if charge > 0 then
    if redis.call('HEXISTS', bk, dayF) == 1 then d = redis.call('HINCRBYFLOAT', bk, dayF, charge) end
    if redis.call('HEXISTS', bk, monF) == 1 then m = redis.call('HINCRBYFLOAT', bk, monF, charge) end
  end
  totals[#totals + 1] = d
  totals[#totals + 1] = m
end
return totals
`;

interface FleetTicket extends Ticket {
  keys: string[];
  nRates: number;
  nBudgets: number;
  budgets: AdmitRequest['budgets'];
  member: string;
  amount: number;
  tokens: number;
  done: boolean;
}

export interface FleetLimiterOptions {
  /** How long a reservation holds budget if its request never settles (crashed replica). Default 15 min. */
  reservationTtlMs?: number;
  /** How often settled spend is written to PostgreSQL. Default 1 s. */
  flushMs?: number;
  onError?: (what: string, e: unknown) => void;
}

type Scripted = { aamAdmit(...args: Array<string | number>): Promise<unknown[]>; aamSettle(...args: Array<string | number>): Promise<string[]> };

export class FleetLimiter implements Limiter {
  readonly #fleet: Fleet;
  readonly #redis: Scripted;
  readonly #ttl: number;
  readonly #onError: (what: string, e: unknown) => void;
  #seq = 0;
  /** Settled spend not yet in PostgreSQL: "key|period|windowStart" -> USD. */
  #pending = new Map<string, number>();
  #timer: NodeJS.Timeout;
  #flushing: Promise<void> | null = null;
  /** Redis round trips made by admissions (for the benchmark notes and tests). */
  admitCalls = 0;
  /** Budget threshold crossings (alert_at); each fires on exactly one replica of the fleet. */
  onAlert: (alert: BudgetAlert) => void = () => {};

  constructor(fleet: Fleet, opts: FleetLimiterOptions = {}) {
    this.#fleet = fleet;
    this.#ttl = opts.reservationTtlMs ?? 15 * 60_000;
    this.#onError = opts.onError ?? (() => {});
    fleet.redis.defineCommand('aamAdmit', { lua: ADMIT });
    fleet.redis.defineCommand('aamSettle', { lua: SETTLE });
    this.#redis = fleet.redis as unknown as Scripted;
    this.#timer = setInterval(() => { void this.flush(); }, opts.flushMs ?? 1000);
    this.#timer.unref();
  }

  #keysOf(req: AdmitRequest): string[] {
    const p = this.#fleet.prefix;
    const keys = req.rates.map((r) => `${p}rl:${r.key}`);
    for (const b of req.budgets) keys.push(`${p}b:${b.key}`, `${p}bz:${b.key}`);
    return keys;
  }

  async admit(req: AdmitRequest): Promise<AdmitResult> {
    const now = Date.now();
    const d = dayStart(now);
    const m = monthStart(now);
    const keys = this.#keysOf(req);
    const amount = req.amountUsd > 0 && Number.isFinite(req.amountUsd) ? req.amountUsd : 0;
    const tokens = req.tokens > 0 && Number.isFinite(req.tokens) ? req.tokens : 0;
    const member = `${this.#fleet.replicaId}:${++this.#seq}|${amount}`;
    const args: Array<string | number> = [keys.length, ...keys, req.rates.length, tokens];
    for (const r of req.rates) args.push(r.limits.rpm ?? 0, r.limits.tpm ?? 0);
    args.push(req.budgets.length, amount, `d:${d}`, `m:${m}`, member, this.#ttl);
    for (const b of req.budgets) args.push(b.limits.daily_usd ?? -1, b.limits.monthly_usd ?? -1);
    let reply = await this.#call(args);
    if (reply[0] === 'seed') {
      await this.#seed(req, reply.slice(1).map(Number), d, m);
      reply = await this.#call(args);
      if (reply[0] === 'seed') throw new StoreUnavailable('redis', 'budget totals could not be loaded into Redis');
    }
    if (reply[0] === 'ok') {
      const ticket: FleetTicket = { kind: 'ticket', keys, nRates: req.rates.length, nBudgets: req.budgets.length, budgets: req.budgets, member, amount, tokens, done: false };
      return { ok: true, ticket };
    }
    if (reply[0] === 'rate') {
      const i = Number(reply[2]) - 1;
      return { ok: false, code: 'rate_limited', limit: reply[1] as 'rpm' | 'tpm', key: req.rates[i].key, retryAfterSeconds: Math.max(1, Math.ceil(Number(reply[3]) / 1000)) };
    }
    const j = Number(reply[1]) - 1;
    const period = reply[2] as Period;
    const b = req.budgets[j];
    const limit = (period === 'daily' ? b.limits.daily_usd : b.limits.monthly_usd) ?? 0;
    // Exhausted: the 100 % alert (when configured) fires even if settled spend never reaches it exactly.
    if (b.limits.alert_at?.includes(100)) this.#alertOnce(b.key, period, 100, Number(reply[3]), limit, period === 'daily' ? d : m);
    return {
      ok: false, code: 'budget_exceeded', key: b.key, period, spent: Number(reply[3]), limit,
      resetAt: new Date(period === 'daily' ? d + 86_400_000 : nextMonth(m)),
    };
  }

  async #call(args: Array<string | number>): Promise<unknown[]> {
    this.admitCalls++;
    try {
      return await this.#redis.aamAdmit(...args);
    } catch (e) {
      throw new StoreUnavailable('redis', (e as Error).message);
    }
  }

  /** Budget totals of this window into Redis from PostgreSQL (plus what this replica has not flushed). */
  async #seed(req: AdmitRequest, indexes: number[], d: number, m: number): Promise<void> {
    const names = indexes.map((i) => req.budgets[i - 1].key);
    let rows: Array<{ key: string; period: string; spent_usd: number }>;
    try {
      rows = await this.#fleet.sql`SELECT key, period, spent_usd FROM budget_spend
        WHERE key = ANY(${names}) AND ((period = 'daily' AND window_start = ${d}) OR (period = 'monthly' AND window_start = ${m}))`;
      this.#fleet.notePostgres(null);
    } catch (e) {
      this.#fleet.notePostgres(e);
      throw new StoreUnavailable('postgres', `settled budget spend could not be read: ${(e as Error).message}`);
    }
    const p = this.#fleet.prefix;
    const r = this.#fleet.redis;
    try {
      await Promise.all(names.flatMap((key) => {
        const spent = (period: Period, start: number) => (rows.find((x) => x.key === key && x.period === period)?.spent_usd ?? 0) + (this.#pending.get(`${key}|${period}|${start}`) ?? 0);
        return [r.hsetnx(`${p}b:${key}`, `d:${d}`, String(spent('daily', d))), r.hsetnx(`${p}b:${key}`, `m:${m}`, String(spent('monthly', m)))];
      }));
    } catch (e) {
      throw new StoreUnavailable('redis', (e as Error).message);
    }
  }

  settle(t: Ticket, costUsd: number | null, tokens: number | null): void {
    const ft = t as FleetTicket;
    if (ft.done) return;
    ft.done = true;
    const estimated = costUsd === null || !Number.isFinite(costUsd) || costUsd < 0;
    const charge = estimated ? ft.amount : (costUsd as number);
    this.#send(ft, charge, tokens === null || !Number.isFinite(tokens) ? -1 : tokens);
    if (charge > 0 && ft.nBudgets > 0) {
      const now = Date.now();
      for (const { key } of ft.budgets) {
        this.#add(`${key}|daily|${dayStart(now)}`, charge);
        this.#add(`${key}|monthly|${monthStart(now)}`, charge);
      }
    }
  }

  release(t: Ticket): void {
    const ft = t as FleetTicket;
    if (ft.done) return;
    ft.done = true;
    if (ft.nBudgets > 0) this.#send(ft, 0, -1);
  }

  #add(k: string, usd: number): void { this.#pending.set(k, (this.#pending.get(k) ?? 0) + usd); }

  /** Not awaited by the request: pipelined with other commands; if it fails the reservation expires. */
  #send(ft: FleetTicket, charge: number, tokens: number): void {
    const now = Date.now();
    const d = dayStart(now);
    const m = monthStart(now);
    this.#redis.aamSettle(ft.keys.length, ...ft.keys, ft.nRates, tokens, ft.tokens, ft.nBudgets, ft.member, ft.amount, charge, `d:${d}`, `m:${m}`)
      .then((totals) => { if (charge > 0) this.#crossed(ft, charge, totals, d, m); })
      .catch((e: unknown) => this.#onError('settle', e));
  }

  /** Thresholds this charge crossed: the script returned the totals after it, atomically, so one replica sees each crossing. */
  #crossed(ft: FleetTicket, charge: number, totals: string[], d: number, m: number): void {
    ft.budgets.forEach((b, j) => {
      for (const [period, total, limit, start] of [['daily', totals[2 * j], b.limits.daily_usd, d], ['monthly', totals[2 * j + 1], b.limits.monthly_usd, m]] as const) {
        if (!limit || total === '' || total === undefined) continue;
        const after = Number(total);
        for (const t of b.limits.alert_at ?? []) {
          const at = (limit * t) / 100;
          if (after - charge < at && after >= at) this.#alertOnce(b.key, period, t, after, limit, start);
        }
      }
    });
  }

  /** Fire an alert once per key, period, window and threshold fleet-wide (a Redis flag decides who). */
  #alertOnce(key: string, period: Period, threshold: number, spent: number, limit: number, windowStart: number): void {
    this.#fleet.redis.set(`${this.#fleet.prefix}alert:${key}:${period}:${windowStart}:${threshold}`, '1', 'PX', 32 * 86_400_000, 'NX')
      .then((won) => { if (won === 'OK') this.onAlert({ key, period, threshold, spent, limit, windowStart: new Date(windowStart) }); })
      .catch((e: unknown) => this.#onError('budget alert', e));
  }

  /** Write settled spend to PostgreSQL (additive upserts); kept for the next try if it fails. */
  flush(): Promise<void> {
    if (this.#flushing || this.#pending.size === 0) return this.#flushing ?? Promise.resolve();
    const batch = this.#pending;
    this.#pending = new Map();
    const rows = [...batch].map(([k, usd]) => { const [key, period, start] = k.split('|'); return { key, period, window_start: Number(start), spent_usd: usd }; });
    this.#flushing = (async () => {
      try {
        await this.#fleet.sql`INSERT INTO budget_spend ${this.#fleet.sql(rows, 'key', 'period', 'window_start', 'spent_usd')}
          ON CONFLICT (key, period, window_start) DO UPDATE SET spent_usd = budget_spend.spent_usd + excluded.spent_usd`;
        this.#fleet.notePostgres(null);
      } catch (e) {
        this.#fleet.notePostgres(e);
        for (const [k, usd] of batch) this.#add(k, usd);
        this.#onError('budget flush', e);
      } finally {
        this.#flushing = null;
      }
    })();
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#flushing;
    await this.flush();
  }
}
