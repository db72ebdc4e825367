// Budgets and rate limits, in memory. Atomic by construction: every check-and-increment runs
// synchronously on Node's single thread, with no await between the check and the update, so
// 64 concurrent requests cannot all see the same remaining budget (a common gateway failure).
// No timers: stale entries are swept opportunistically, so memory stays bounded and nothing
// keeps the process alive.

import { refusalExhausts, type AdmitRequest, type AdmitResult, type BudgetAlert, type BudgetLimits, type Limiter, type Period, type RateLimits, type Ticket } from '../store/types.ts';

export type { BudgetAlert, BudgetLimits, Period, RateLimits } from '../store/types.ts';


/** end: first ms after the window, so the common case (still inside) needs no calendar arithmetic. */
interface Window { start: number; end: number; spent: number; fired: Set<number> }
interface Account { key: string; day: Window; month: Window; reserved: number }

export interface Reservation {
  readonly id: number;
  readonly entries: ReadonlyArray<{ readonly key: string; readonly limits: BudgetLimits }>;
  readonly amountUsd: number;
  done: boolean;
}

export type ReserveResult =
  | { ok: true; reservation: Reservation }
  | { ok: false; code: 'budget_exceeded'; key: string; resetAt: Date; spent: number; limit: number; period: Period };

export interface SettleResult {
  /** USD charged to every key of the reservation. */
  chargedUsd: number;
  /** True when the real cost was unknown and the reserved estimate was charged instead. */
  estimated: boolean;
}

export const dayStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()); };
export const monthStart = (t: number): number => { const d = new Date(t); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1); };
const nextDay = (start: number): number => start + 86_400_000;
const nextMonth = (start: number): number => { const d = new Date(start); return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1); };

const SWEEP_EVERY = 1024;
/** A budget without alert thresholds (no array made per settle). */
const NO_THRESHOLDS: readonly number[] = Object.freeze([]);

function dayWindow(t: number): Window { const start = dayStart(t); return { start, end: nextDay(start), spent: 0, fired: new Set() }; }
function monthWindow(t: number): Window { const start = monthStart(t); return { start, end: nextMonth(start), spent: 0, fired: new Set() }; }

export interface BudgetLedgerOptions {
  onAlert?: (alert: BudgetAlert) => void;
}

/** Spend per key (agent:NAME, team:NAME, key:ID) in UTC daily and monthly windows. */
export class BudgetLedger {
  private readonly accounts = new Map<string, Account>();
  private readonly onAlert: (alert: BudgetAlert) => void;
  private nextId = 1;
  private ops = 0;

  constructor(opts: BudgetLedgerOptions = {}) {
    this.onAlert = opts.onAlert ?? (() => {});
  }

  private account(key: string, now: number): Account {
    let a = this.accounts.get(key);
    if (!a) {
      a = { key, day: dayWindow(now), month: monthWindow(now), reserved: 0 };
      this.accounts.set(key, a);
      return a;
    }
    // Roll windows; in-flight reservations carry over and are charged to the window they settle in.
    if (now < a.day.start || now >= a.day.end) a.day = dayWindow(now);
    if (now < a.month.start || now >= a.month.end) a.month = monthWindow(now);
    return a;
  }

  /** Seed spend from stored usage at start-up. Thresholds already crossed are not re-alerted. */
  load(key: string, period: Period, spentUsd: number, limits?: BudgetLimits, now: Date = new Date()): void {
    const a = this.account(key, now.getTime());
    const w = period === 'daily' ? a.day : a.month;
    w.spent = spentUsd;
    const limit = period === 'daily' ? limits?.daily_usd : limits?.monthly_usd;
    if (limit) for (const t of limits?.alert_at ?? []) if (spentUsd >= (limit * t) / 100) w.fired.add(t);
  }

  /** Reserve on one key. */
  reserve(key: string, amountUsd: number, limits: BudgetLimits, now: Date = new Date()): ReserveResult {
    return this.reserveMany([{ key, limits }], amountUsd, now);
  }

  /**
   * Reserve the same amount on several keys (agent, team, virtual key) all-or-nothing: if any
   * would exceed its limit nothing is reserved. spent + in-flight + amount must stay within limit.
   */
  reserveMany(entries: ReadonlyArray<{ key: string; limits: BudgetLimits }>, amountUsd: number, now: Date = new Date()): ReserveResult {
    const t = now.getTime();
    if (++this.ops % SWEEP_EVERY === 0) this.sweep(now);
    const amount = amountUsd > 0 && Number.isFinite(amountUsd) ? amountUsd : 0;
    // Indexed loops: for-of over these (frozen) arrays made an iterator and its results per
    // request (~170 B, and 0.9 % of an A2A hop's main-thread samples for this function).
    for (let i = 0; i < entries.length; i++) {
      const { key, limits } = entries[i];
      const a = this.account(key, t);
      const fail = this.over(a, a.day, 'daily', limits.daily_usd, amount, limits) ?? this.over(a, a.month, 'monthly', limits.monthly_usd, amount, limits);
      if (fail) return fail;
    }
    for (let i = 0; i < entries.length; i++) this.account(entries[i].key, t).reserved += amount;
    return { ok: true, reservation: { id: this.nextId++, entries: entries.slice(), amountUsd: amount, done: false } };
  }

  private over(a: Account, w: Window, period: Period, limit: number | undefined, amount: number, limits: BudgetLimits): ReserveResult | null {
    if (limit === undefined) return null;
    const committed = w.spent + a.reserved;
    if (committed + amount <= limit + 1e-9) return null; // epsilon: float sums of cents
    if (limits.alert_at?.includes(100) && refusalExhausts(amount, limit) && !w.fired.has(100)) {
      w.fired.add(100);
      this.onAlert({ key: a.key, period, threshold: 100, spent: w.spent, limit, windowStart: new Date(w.start) });
    }
    const resetAt = new Date(w.end);
    return { ok: false, code: 'budget_exceeded', key: a.key, resetAt, spent: committed, limit, period };
  }

  /**
   * Charge the real cost (null = unknown: the reserved estimate is charged and flagged, never $0).
   * Alert thresholds are checked against the settled spend; settling twice is a no-op.
   */
  settle(r: Reservation, actualUsd: number | null, now: Date = new Date()): SettleResult {
    const estimated = actualUsd === null || !Number.isFinite(actualUsd) || actualUsd < 0;
    const charge = estimated ? r.amountUsd : (actualUsd as number);
    if (r.done) return { chargedUsd: 0, estimated };
    r.done = true;
    const t = now.getTime();
    for (let i = 0; i < r.entries.length; i++) {
      const { key, limits: l } = r.entries[i];
      const a = this.account(key, t);
      a.reserved = Math.max(0, a.reserved - r.amountUsd);
      a.day.spent += charge;
      a.month.spent += charge;
      this.alerts(a, a.day, 'daily', l.daily_usd, l.alert_at ?? NO_THRESHOLDS);
      this.alerts(a, a.month, 'monthly', l.monthly_usd, l.alert_at ?? NO_THRESHOLDS);
    }
    return { chargedUsd: charge, estimated };
  }

  /** Give the reservation back (the request failed before any upstream cost). */
  release(r: Reservation, now: Date = new Date()): void {
    if (r.done) return;
    r.done = true;
    for (let i = 0; i < r.entries.length; i++) {
      const a = this.account(r.entries[i].key, now.getTime());
      a.reserved = Math.max(0, a.reserved - r.amountUsd);
    }
  }

  private alerts(a: Account, w: Window, period: Period, limit: number | undefined, thresholds: readonly number[]): void {
    if (!limit) return;
    for (let i = 0; i < thresholds.length; i++) {
      const t = thresholds[i];
      if (w.fired.has(t) || w.spent < (limit * t) / 100) continue;
      w.fired.add(t);
      this.onAlert({ key: a.key, period, threshold: t, spent: w.spent, limit, windowStart: new Date(w.start) });
    }
  }

  /** Current state of a key (for /admin and tests). */
  usage(key: string, now: Date = new Date()): { daily: number; monthly: number; reserved: number } {
    const a = this.accounts.get(key);
    if (!a) return { daily: 0, monthly: 0, reserved: 0 };
    const t = now.getTime();
    return {
      daily: a.day.start === dayStart(t) ? a.day.spent : 0,
      monthly: a.month.start === monthStart(t) ? a.month.spent : 0,
      reserved: a.reserved,
    };
  }

  /** Drop accounts whose windows are over and that have nothing in flight (lossless). */
  sweep(now: Date = new Date()): void {
    const m = monthStart(now.getTime());
    for (const [k, a] of this.accounts) if (a.month.start !== m && a.reserved === 0) this.accounts.delete(k);
  }

  get size(): number { return this.accounts.size; }
}

export type RateResult = { ok: true } | { ok: false; retryAfterSeconds: number; limit: 'rpm' | 'tpm'; key: string };

/** GCRA state: theoretical arrival time (ms) per key and dimension. */
interface Cell { rpmTat: number; tpmTat: number; tpmInterval: number }

const WINDOW_MS = 60_000;

/**
 * rpm and tpm per key with GCRA (a continuous sliding window): up to `limit` units in any
 * burst, refilled at limit/60 per second. O(1) memory per key; entries expire once refilled.
 */
export class RateLimiter {
  private readonly cells = new Map<string, Cell>();
  private ops = 0;

  /** Check and count one request of ~tokensEstimate tokens on one key. */
  check(key: string, limits: RateLimits, tokensEstimate: number, now: Date = new Date()): RateResult {
    return this.checkMany([{ key, limits }], tokensEstimate, now);
  }

  /** All-or-nothing over several keys (agent, key id, team): counts only when every key admits. */
  checkMany(entries: ReadonlyArray<{ key: string; limits: RateLimits }>, tokensEstimate: number, now: Date = new Date()): RateResult {
    const r = this.fits(entries, tokensEstimate, now);
    if (r.ok) this.count(entries, tokensEstimate, now);
    return r;
  }

  /** Would one request of ~tokensEstimate tokens fit on every key now? Counts nothing. */
  fits(entries: ReadonlyArray<{ key: string; limits: RateLimits }>, tokensEstimate: number, now: Date = new Date()): RateResult {
    const t = now.getTime();
    if (++this.ops % SWEEP_EVERY === 0) this.sweep(now);
    const tokens = tokensEstimate > 0 && Number.isFinite(tokensEstimate) ? tokensEstimate : 0;
    for (const { key, limits } of entries) {
      const c = this.cells.get(key);
      if (limits.rpm) {
        const wait = gcraWait(c?.rpmTat ?? 0, t, WINDOW_MS / limits.rpm, 1);
        if (wait > 0) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)), limit: 'rpm', key };
      }
      if (limits.tpm && tokens > 0) {
        // A single request larger than the whole minute budget is admitted only into an empty bucket.
        const wait = gcraWait(c?.tpmTat ?? 0, t, WINDOW_MS / limits.tpm, Math.min(tokens, limits.tpm));
        if (wait > 0) return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(wait / 1000)), limit: 'tpm', key };
      }
    }
    return { ok: true };
  }

  /** Count one admitted request on every key (after fits()). */
  count(entries: ReadonlyArray<{ key: string; limits: RateLimits }>, tokensEstimate: number, now: Date = new Date()): void {
    const t = now.getTime();
    const tokens = tokensEstimate > 0 && Number.isFinite(tokensEstimate) ? tokensEstimate : 0;
    for (const { key, limits } of entries) {
      let c = this.cells.get(key);
      if (!c) { c = { rpmTat: 0, tpmTat: 0, tpmInterval: 0 }; this.cells.set(key, c); }
      if (limits.rpm) c.rpmTat = Math.max(c.rpmTat, t) + WINDOW_MS / limits.rpm;
      if (limits.tpm) {
        c.tpmInterval = WINDOW_MS / limits.tpm;
        if (tokens > 0) c.tpmTat = Math.max(c.tpmTat, t) + tokens * c.tpmInterval;
      }
    }
  }

  /** Correct tpm after completion with the real token count (may go into debt, never below now). */
  record(key: string, actualTokens: number, estimatedTokens: number, now: Date = new Date()): void {
    const c = this.cells.get(key);
    if (!c || !c.tpmInterval || !Number.isFinite(actualTokens)) return;
    const est = estimatedTokens > 0 && Number.isFinite(estimatedTokens) ? estimatedTokens : 0;
    c.tpmTat = Math.max(now.getTime(), c.tpmTat + (actualTokens - est) * c.tpmInterval);
  }

  /** Drop keys whose buckets are full again (equivalent to a fresh key). */
  sweep(now: Date = new Date()): void {
    const t = now.getTime();
    for (const [k, c] of this.cells) if (c.rpmTat <= t && c.tpmTat <= t) this.cells.delete(k);
  }

  get size(): number { return this.cells.size; }
}

/** ms to wait before `cost` units fit (0 = admit now). Burst tolerance is one full window. */
function gcraWait(tat: number, now: number, interval: number, cost: number): number {
  const newTat = Math.max(tat, now) + cost * interval;
  const excess = newTat - now - WINDOW_MS;
  return excess > 1e-6 ? excess : 0;
}

/**
 * Ledger / limiter keys for a caller: the agent (by name, or SPIFFE ID for identities that are
 * not Agent resources) and, when the request came with a virtual key, that key too.
 */
export function rateEntries(agent: { name: string; spiffeId: string }, keyId: string | undefined, limits: RateLimits): Array<{ key: string; limits: RateLimits }> {
  const out = [{ key: `agent:${agent.name || agent.spiffeId}`, limits }];
  if (keyId) out.push({ key: `key:${keyId}`, limits });
  return out;
}

interface EmbeddedTicket extends Ticket { reservation: Reservation | null; rateKeys: readonly string[]; tokens: number }

/**
 * The embedded Limiter: this process's ledger and limiter, answered synchronously (no await
 * between check and count). Rates are checked, then the budgets, and the rates counted only for
 * a request both admit: one refused by its budget did no work upstream and uses no rpm/tpm (as
 * the fleet's admission script, store/fleet-limits.ts).
 */
export class EmbeddedLimiter implements Limiter {
  readonly ledger: BudgetLedger;
  readonly rates: RateLimiter;

  constructor(ledger: BudgetLedger, rates: RateLimiter) {
    this.ledger = ledger;
    this.rates = rates;
  }

  admit(req: AdmitRequest): AdmitResult {
    const now = new Date();
    if (req.rates.length) {
      const r = this.rates.fits(req.rates, req.tokens, now);
      if (!r.ok) return { ok: false, code: 'rate_limited', limit: r.limit, key: r.key, retryAfterSeconds: r.retryAfterSeconds };
    }
    let reservation: Reservation | null = null;
    if (req.budgets.length) {
      const r = this.ledger.reserveMany(req.budgets, req.amountUsd);
      if (!r.ok) return r;
      reservation = r.reservation;
    }
    if (req.rates.length) this.rates.count(req.rates, req.tokens, now);
    const ticket: EmbeddedTicket = { kind: 'ticket', reservation, rateKeys: req.rates.map((e) => e.key), tokens: req.tokens };
    return { ok: true, ticket };
  }

  settle(t: Ticket, costUsd: number | null, tokens: number | null): void {
    const e = t as EmbeddedTicket;
    if (e.reservation) this.ledger.settle(e.reservation, costUsd);
    if (tokens !== null) for (const k of e.rateKeys) this.rates.record(k, tokens, e.tokens);
  }

  release(t: Ticket): void {
    const e = t as EmbeddedTicket;
    if (e.reservation) this.ledger.release(e.reservation);
  }
}
