// One mirror of PostgreSQL rows kept current on a replica (keys, tool pins, credentials): re-read
// on the Redis announcement of its kind (milliseconds) and at the latest on a poll
// (AAM_FLEET_POLL_MS, 1 s), so a lost message delays a change by at most the poll. Reads never
// overlap: triggers during a read coalesce into one more read after it.
import type { Fleet } from './fleet.ts';

export class Follower {
  readonly #read: () => Promise<void>;
  readonly #done: (error: unknown) => void;
  #syncing: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | null = null;

  /** read: apply the rows changed since the last read; done(null | error) after each sync (errors never escape). */
  constructor(read: () => Promise<void>, done: (error: unknown) => void) {
    this.#read = read;
    this.#done = done;
  }

  /** Follow the announcements of `kind` and poll every pollMs. */
  follow(fleet: Fleet, kind: string, pollMs = 1000): void {
    fleet.follow(kind, () => { void this.sync(); });
    this.#timer = setInterval(() => { void this.sync(); }, pollMs);
    this.#timer.unref();
  }

  get following(): boolean { return this.#timer !== null; }

  sync(): Promise<void> {
    if (this.#syncing) { this.#again = true; return this.#syncing; }
    this.#syncing = (async () => {
      try {
        do { this.#again = false; await this.#read(); } while (this.#again);
        this.#done(null);
      } catch (e) {
        this.#done(e);
      } finally {
        this.#syncing = null;
      }
    })();
    return this.#syncing;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
