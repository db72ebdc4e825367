// Per-target circuit breaker, on by default: after `threshold` consecutive failures the target is
// skipped for `cooldownMs`, then one trial request is let through (half-open). A dead primary
// therefore costs one failed attempt per cooldown, not one per request.

export interface BreakerOptions { threshold: number; cooldownMs: number }
export const DEFAULT_BREAKER: BreakerOptions = { threshold: 5, cooldownMs: 30_000 };

export class CircuitBreaker {
  readonly opts: BreakerOptions;
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  constructor(opts: BreakerOptions = DEFAULT_BREAKER) { this.opts = opts; }

  /** May a request be sent now? In half-open state only one trial at a time. */
  allow(now = Date.now()): boolean {
    if (this.#failures < this.opts.threshold) return true;
    if (now < this.#openUntil || this.#trialInFlight) return false;
    this.#trialInFlight = true;
    return true;
  }
  success(): void { this.#failures = 0; this.#trialInFlight = false; }
  /**
   * The attempt ended without a verdict on the upstream (the client went away, the upstream
   * refused the request itself, or aam failed before sending): free the half-open trial slot so
   * the next request can be the trial; otherwise the target would stay shut for good.
   */
  release(): void { this.#trialInFlight = false; }
  failure(now = Date.now()): void {
    this.#failures++;
    this.#trialInFlight = false;
    if (this.#failures >= this.opts.threshold) this.#openUntil = now + this.opts.cooldownMs;
  }
  /** Same thresholds (a reload keeps a breaker's state only when its options did not change). */
  sameOptions(o: BreakerOptions): boolean { return o.threshold === this.opts.threshold && o.cooldownMs === this.opts.cooldownMs; }
  get state(): 'closed' | 'open' | 'half_open' {
    if (this.#failures < this.opts.threshold) return 'closed';
    return Date.now() < this.#openUntil ? 'open' : 'half_open';
  }
}
