// Fallback and retry over a route's targets, shared by chat, streams and embeddings.
// Order: the route's strategy (strategy.ts); per target up to attemptsPerTarget tries with backoff
// that honours retry-after; an open circuit breaker skips the target.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Route, Target } from './routes.ts';
import { targetOrder, type TokenNeed } from './strategy.ts';
import type { AttemptFailure, AttemptLog } from './upstream.ts';

/** Longest retry-after we wait on the same target before moving on to the next one. */
const MAX_SAME_TARGET_WAIT_MS = 2_000;


export type AttemptsResult<T> =
  | { ok: true; value: T; target: Target; attempts: readonly AttemptLog[] }
  | { ok: false; failure: AttemptFailure; attempts: readonly AttemptLog[] };

/**
 * A call's cancellation as runAttempts reads it: `signal` is only asked for to wait out a backoff
 * (CallAbort makes it then). The attempts that failed are in the result, never on the call: a
 * side call on the same request (the semantic cache's embedding) has attempts of its own.
 */
export interface Cancel { readonly aborted: boolean; readonly signal: AbortSignal }

/** A result's attempt log when its first attempt answered: shared, never written (nothing failed to log). */
export const NO_ATTEMPTS: readonly AttemptLog[] = Object.freeze([]);

/** One attempt's outcome, as runAttempts reads it. */
export type AttemptResult<T> = { ok: true; value: T } | AttemptFailure;
type Once<A> = (target: Target) => Promise<A>;
/** What an attempt's promise came to, read as its outcome in the same microtask (no promise layer between). */
type Read<A, T> = (a: A, target: Target) => AttemptResult<T> | Promise<AttemptResult<T>>;

/**
 * `once(target)` makes one attempt; `read`, when given, turns what its promise resolved to into
 * the attempt's outcome (e.g. parses a whole answer) in the same microtask: a `.then` of once's
 * own would be one more promise and loop turn between the upstream's answer and the response.
 * A throw or rejection of either is the attempt's rejection.
 */
export function runAttempts<T>(route: Route, cancel: Cancel, once: Once<AttemptResult<T>>, need?: TokenNeed, ordered?: readonly Target[]): Promise<AttemptsResult<T>>;
export function runAttempts<T, A>(route: Route, cancel: Cancel, once: Once<A>, need: TokenNeed | undefined, ordered: readonly Target[] | undefined, read: Read<A, T>): Promise<AttemptsResult<T>>;
export function runAttempts<T, A>(
  route: Route,
  cancel: Cancel,
  once: Once<A>,
  need?: TokenNeed,
  /** The route's targets as targetOrder() put them, when the caller ordered them already (chat.ts: while the admission was in flight). */
  ordered?: readonly Target[],
  read?: Read<A, T>,
): Promise<AttemptsResult<T>> {
  // Not an async function (its frame was ~0.8 KB per request): the first attempt of the first
  // target is made here and its success chained; only a failure (or a first target the breaker
  // skips) goes on in the loop below, from where this left off. A throw is a rejection all the same.
  let order: readonly Target[];
  try { order = ordered ?? targetOrder(route, need); } catch (e) { return Promise.reject(e); }
  const target = order[0];
  if (target === undefined || route.attemptsPerTarget < 1) return attemptLoop(route, cancel, once, read, order, undefined);
  if (!target.breaker.allow()) return attemptLoop(route, cancel, once, read, order, SKIPPED);
  if (cancel.aborted) return Promise.resolve({ ok: false, failure: clientClosed(), attempts: NO_ATTEMPTS });
  const started = performance.now();
  let p: Promise<A>;
  try { p = once(target); } catch (e) { target.breaker.release(); return Promise.reject(e); }
  return p.then((a): AttemptsResult<T> | Promise<AttemptsResult<T>> => {
    let r: AttemptResult<T> | Promise<AttemptResult<T>>;
    try { r = read ? read(a, target) : a as AttemptResult<T>; } catch (e) { target.breaker.release(); throw e; }
    return r instanceof Promise
      ? r.then((r1) => firstDone(route, cancel, once, read, order, target, started, r1), (e: unknown) => { target.breaker.release(); throw e; })
      : firstDone(route, cancel, once, read, order, target, started, r);
  }, (e: unknown) => { target.breaker.release(); throw e; });
}

/** The first attempt's outcome: a success is the result; a failure goes on in the loop. */
function firstDone<T, A>(route: Route, cancel: Cancel, once: Once<A>, read: Read<A, T> | undefined, order: readonly Target[], target: Target, started: number, r: AttemptResult<T>): AttemptsResult<T> | Promise<AttemptsResult<T>> {
  if (!r.ok) return attemptLoop(route, cancel, once, read, order, r);
  return succeeded(target, started, r.value, NO_ATTEMPTS);
}

/** An attempt answered: its target's breaker and latency learn of it (first attempt and loop alike). */
function succeeded<T>(target: Target, started: number, value: T, attempts: readonly AttemptLog[]): AttemptsResult<T> {
  target.breaker.success();
  // `once` returns at the commit point: a stream's first content, or a whole answer.
  target.latency.observe(performance.now() - started);
  return { ok: true, value, target, attempts };
}

/** The first target's breaker refused it (runAttempts asked: the loop does not ask again). */
const SKIPPED = 'skipped';

function clientClosed(): AttemptFailure {
  return { ok: false, next: 'final', status: 499, clientStatus: 499, code: 'upstream_error', message: 'client closed the request' };
}

/**
 * The attempts over `order`. `first`: how runAttempts left the first target: refused by its breaker
 * (SKIPPED), or its first attempt's failure, to be handled here as if this loop had made it.
 */
async function attemptLoop<T, A>(route: Route, cancel: Cancel, once: Once<A>, read: Read<A, T> | undefined, order: readonly Target[], first: AttemptFailure | typeof SKIPPED | undefined): Promise<AttemptsResult<T>> {
  // Only this loop logs failures (a first attempt that answered never comes here).
  const attempts: AttemptLog[] = [];
  let last: AttemptFailure | null = null;
  let skipped = 0;
  for (let t = 0; t < order.length; t++) {
    const target = order[t];
    const resumed = t === 0 && first !== undefined;
    if (resumed ? first === SKIPPED : !target.breaker.allow()) { skipped++; continue; }
    for (let i = 0; i < route.attemptsPerTarget; i++) {
      let r: AttemptResult<T>;
      let started = 0;
      if (resumed && i === 0) r = first as AttemptFailure;
      else {
        if (cancel.aborted) return { ok: false, failure: clientClosed(), attempts };
        started = performance.now();
        try {
          const a = await once(target);
          const m = read ? read(a, target) : a as AttemptResult<T>;
          r = m instanceof Promise ? await m : m;
        } catch (e) { target.breaker.release(); throw e; }
      }
      // The client went away: not the upstream's fault, so no breaker failure and no retry.
      if (!r.ok && cancel.aborted) { target.breaker.release(); return { ok: false, failure: { ...r, next: 'final', clientStatus: 499, message: 'client closed the request' }, attempts }; }
      if (r.ok) return succeeded(target, started, r.value, attempts);
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
