// The total-timeout clock of a target's upstream attempts (gateway/upstream.ts): one timer per
// target, not one per attempt; and the keep-alive clock of a route's streams (gateway/chat.ts).

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
    // Only what was on the list when it fired: an entry that puts itself back (a keep-alive) waits.
    const last = this.#tail;
    for (let x = this.#head; x !== null && x.deadline <= now; x = this.#head) {
      this.remove(x);
      x.expire();
      if (x === last) break;
    }
    if (this.#head) this.#arm(this.#head.deadline - now + 1);
  }
}

/**
 * An event stream's keep-alive: `send` runs after each `ms` without refresh(), on a clock shared
 * by the streams of one route. A node timer per stream made and dropped a timer list per stream at
 * c=1 before its first byte (see Deadlines); this is a list entry.
 */
export class KeepAlive implements Timed {
  deadline = 0;
  older: Timed | null = null;
  newer: Timed | null = null;
  clock: Deadlines | null = null;
  readonly #home: Deadlines;
  readonly #send: () => void;

  constructor(home: Deadlines, send: () => void) {
    this.#home = home;
    this.#send = send;
    home.add(this);
  }

  /** Something was written: the idle period starts again. */
  refresh(): void {
    if (this.clock === null) return; // stopped
    this.#home.remove(this);
    this.#home.add(this);
  }

  stop(): void { this.#home.remove(this); }

  expire(): void {
    this.#home.add(this); // before send: a send that throws must not end the keep-alives
    this.#send();
  }
}
