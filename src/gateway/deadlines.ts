// The total-timeout clock of a target's upstream attempts (gateway/upstream.ts): one timer per
// target, not one per attempt.

/** An attempt on a clock: its deadline and its links in the clock's list. */
export interface Timed {
  deadline: number;
  older: Timed | null;
  newer: Timed | null;
  clock: Deadlines | null;
  /** Called once its deadline has passed (it is off the clock then). */
  expire(): void;
}

/**
 * The total-timeout clock of one target's attempts in flight: one timer per target instead of
 * one per attempt. The attempts of a target share its totalMs, so their deadlines fall in the
 * order they started: a list in that order, whose head is due first. A node timer per attempt
 * made and dropped a timer list per request at c=1 (~4 us); this is two pointer writes.
 */
export class Deadlines {
  readonly ms: number;
  #head: Timed | null = null;
  #tail: Timed | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #fire = (): void => this.#expire();

  constructor(ms: number) { this.ms = ms; }

  add(x: Timed): void {
    x.deadline = performance.now() + this.ms;
    x.older = this.#tail;
    x.newer = null;
    if (this.#tail) this.#tail.newer = x; else this.#head = x;
    this.#tail = x;
    x.clock = this;
    // Armed while anything may be due; it stays armed past an emptied list (fires once, finds nothing).
    if (this.#timer === null) this.#arm(this.ms);
  }

  remove(x: Timed): void {
    if (x.clock !== this) return;
    x.clock = null;
    if (x.older) x.older.newer = x.newer; else this.#head = x.newer;
    if (x.newer) x.newer.older = x.older; else this.#tail = x.older;
    x.older = x.newer = null;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(this.#fire, Math.max(1, ms));
    // Attempts in flight hold their sockets; this timer alone must not keep a process alive.
    this.#timer.unref();
  }

  #expire(): void {
    this.#timer = null;
    // libuv's clock is in whole ms: what is due within 1 ms is due now.
    const now = performance.now() + 1;
    for (let x = this.#head; x !== null && x.deadline <= now; x = this.#head) {
      this.remove(x);
      x.expire();
    }
    if (this.#head) this.#arm(this.#head.deadline - now + 1);
  }
}
