// Fallback and retry over a route's targets, shared by chat, streams and embeddings.
// Order: the route's strategy (strategy.ts); per target up to attemptsPerTarget tries with backoff
// that honours retry-after; an open circuit breaker skips the target.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Route, Target } from './routes.ts';
import { targetOrder, type TokenNeed } from './strategy.ts';
import type { AttemptFailure } from './upstream.ts';

/** Longest retry-after we wait on the same target before moving on to the next one. */
const MAX_SAME_TARGET_WAIT_MS = 2_000;

export interface AttemptLog { target: string; status: number; message: string }

export type AttemptsResult<T> =
  | { ok: true; value: T; target: Target; attempts: AttemptLog[] }
  | { ok: false; failure: AttemptFailure; attempts: AttemptLog[] };

/** A call's cancellation as runAttempts reads it: `signal` is only asked for to wait out a backoff (CallAbort makes it then). */
export interface Cancel { readonly aborted: boolean; readonly signal: AbortSignal }

export async function runAttempts<T>(
  route: Route,
  cancel: Cancel,
  once: (target: Target) => Promise<{ ok: true; value: T } | AttemptFailure>,
  need?: TokenNeed,
  /** The route's targets as targetOrder() put them, when the caller ordered them already (chat.ts: while the admission was in flight). */
  ordered?: readonly Target[],
): Promise<AttemptsResult<T>> {
  const attempts: AttemptLog[] = [];
  let last: AttemptFailure | null = null;
  const order = ordered ?? targetOrder(route, need);
  let skipped = 0;
  for (const target of order) {
    if (!target.breaker.allow()) { skipped++; continue; }
    for (let i = 0; i < route.attemptsPerTarget; i++) {
      if (cancel.aborted) return { ok: false, failure: { ok: false, next: 'final', status: 499, clientStatus: 499, code: 'upstream_error', message: 'client closed the request' }, attempts };
      let r: { ok: true; value: T } | AttemptFailure;
      const started = performance.now();
      try { r = await once(target); } catch (e) { target.breaker.release(); throw e; }
      // The client went away: not the upstream's fault, so no breaker failure and no retry.
      if (!r.ok && cancel.aborted) { target.breaker.release(); return { ok: false, failure: { ...r, next: 'final', clientStatus: 499, message: 'client closed the request' }, attempts }; }
      if (r.ok) {
        target.breaker.success();
        // `once` returns at the commit point: a stream's first content, or a whole answer.
        target.latency.observe(performance.now() - started);
        return { ok: true, value: r.value, target, attempts };
      }
      attempts.push({ target: target.label, status: r.status, message: r.message });
      last = r;
      if (r.next === 'final') { target.breaker.release(); return { ok: false, failure: r, attempts }; }
      target.breaker.failure();
      if (r.next === 'fallback' || i + 1 >= route.attemptsPerTarget) break;
      const wait = r.retryAfterMs ?? route.backoffMs * 2 ** i;
      if (wait > MAX_SAME_TARGET_WAIT_MS) break;
      if (wait > 0) await sleep(wait, undefined, { signal: cancel.signal }).catch(() => undefined);
      if (!target.breaker.allow()) break;
    }
  }
  if (!last) {
    const why = order.length === 0
      ? `no target of model route "${route.name}" is enabled (${route.targets.map((t) => `${t.label}: ${t.provider.disabledReason ?? 'disabled'}`).join('; ')})`
      : `all ${skipped} target(s) of model route "${route.name}" are cooling down after repeated failures (circuit open); retry shortly`;
    return { ok: false, failure: { ok: false, next: 'final', status: 503, clientStatus: 503, code: 'upstream_error', message: why }, attempts };
  }
  const summary = attempts.map((a) => `${a.target}: ${a.status}`).join(', ');
  return {
    ok: false,
    failure: { ...last, message: `all targets of model route "${route.name}" failed (${summary}); last: ${last.message}` },
    attempts,
  };
}
