// Recent time to first token of one target (the latency strategy reads it, routes keep it across reloads).
/** Weight of the newest sample in the decaying average: a target that turns slow loses the lead within a few requests. */
export const LATENCY_ALPHA = 0.3;
/** A target not measured for this long is tried once (one request) to refresh its measurement. */
export const LATENCY_STALE_MS = 30_000;

/**
 * Time to first token of one target, as an exponentially weighted moving average. Without
 * probing, a target that was slow once would never be chosen again, so it could never show it
 * recovered: a stale measurement earns one trial request (like the breaker's half-open trial).
 */
export class LatencyStats {
  #ewma = Number.NaN;
  #at = Number.NEGATIVE_INFINITY;

  observe(ms: number, now = Date.now()): void {
    this.#ewma = Number.isNaN(this.#ewma) ? ms : LATENCY_ALPHA * ms + (1 - LATENCY_ALPHA) * this.#ewma;
    this.#at = now;
  }

  /** The decaying average in ms (null until measured). */
  get ms(): number | null { return Number.isNaN(this.#ewma) ? null : this.#ewma; }

  /** Claim the refresh trial of a stale (or never measured) target; only one request wins it per period. */
  claimProbe(now = Date.now()): boolean {
    if (now - this.#at < LATENCY_STALE_MS) return false;
    this.#at = now;
    return true;
  }
}
