// Sign-out revokes the session's refresh token at the IdP (RFC 7009), in the background: sign-out
// never waits for the IdP. An IdP that cannot be asked is asked again a few times over a minute;
// past that, the token stays valid at the IdP until it expires there, and `gaveUp` is told (auth.ts
// puts it on the audit trail, so an operator can revoke it there). Pending revocations are bounded:
// a sign-out storm while the IdP is down gives up on the extra ones at once, on record too; a
// gateway stopping gives up on those still waiting (close), on record before its trail closes.

/** When each try starts after sign-out (ms): four tries over a minute. */
export const REVOKE_TRIES_MS: readonly number[] = [0, 5_000, 20_000, 60_000];
/** Revocations waiting for a retry at once, at most (each holds a refresh token in memory). */
const MAX_PENDING = 1000;

export interface Revocations {
  /** Revoke in the background: `revoke` resolves (revoked, or nothing to revoke with) or throws (try again later). */
  start(revoke: () => Promise<unknown>, gaveUp: (why: string, tries: number) => void): void;
  /** Revocations still trying. */
  readonly pending: number;
  /** Give up on every revocation waiting for its next try (the gateway is stopping): each one's `gaveUp` is told. */
  close(): void;
}

export function createRevocations(tries: readonly number[] = REVOKE_TRIES_MS): Revocations {
  let pending = 0;
  /** Those waiting for their next try: how to give up on each now. */
  const waiting = new Set<() => void>();
  return {
    get pending() { return pending; },
    start(revoke, gaveUp) {
      if (pending >= MAX_PENDING) { gaveUp(`${MAX_PENDING} sign-outs were already waiting to revoke their refresh tokens`, 0); return; }
      pending++;
      const attempt = (i: number) => {
        revoke().then(() => { pending--; }, (e: unknown) => {
          if (i + 1 >= tries.length) { pending--; gaveUp((e as Error).message, i + 1); return; }
          // Unref'd: a gateway shutting down does not wait a minute for an IdP that is down (close gives up on it).
          const timer = setTimeout(() => { waiting.delete(stop); attempt(i + 1); }, tries[i + 1] - tries[i]).unref();
          const stop = () => { clearTimeout(timer); pending--; gaveUp(`${(e as Error).message}; the gateway stopped before the next try`, i + 1); };
          waiting.add(stop);
        });
      };
      attempt(0);
    },
    close() {
      for (const stop of waiting) stop();
      waiting.clear();
    },
  };
}
