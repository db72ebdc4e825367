// Which target of a route is tried first (the rest follow as fallbacks):
//   fallback     config order
//   loadbalance  weighted random first pick
//   latency      lowest recent time to first token (per-target EWMA), probing stale targets
//   cost         cheapest for this request's estimated tokens (unknown price last)
// Unhealthy targets (provider disabled) are dropped here; an open circuit breaker is skipped
// by runAttempts, so the first healthy target in this order serves the request.
import { estimateCostUsd } from './pricing.ts';
import type { Route, Target } from './routes.ts';

/** Tokens a request is expected to use, for the cost strategy (prompt estimate, max output). */
export interface TokenNeed { inputTokens: number; outputTokens: number }

const latencyKey = (t: Target): number => t.latency.ms ?? Number.POSITIVE_INFINITY;

/** Request cost in USD at this target's price; unknown price sorts last. */
function costKey(t: Target, need: TokenNeed): number {
  return t.pricing ? estimateCostUsd(need.inputTokens, need.outputTokens, t.pricing) : Number.POSITIVE_INFINITY;
}

/** Without an estimate, compare the price of an even input/output mix. */
const EVEN: TokenNeed = { inputTokens: 1_000, outputTokens: 1_000 };

function weightedFirst(live: Target[], rand: () => number): Target[] {
  const total = live.reduce((s, t) => s + t.weight, 0);
  if (total <= 0) return live;
  let x = rand() * total;
  let first = live.length - 1;
  for (let i = 0; i < live.length; i++) { x -= live[i].weight; if (x < 0) { first = i; break; } }
  return [live[first], ...live.slice(0, first), ...live.slice(first + 1)];
}

/** Stable sort by key (ties keep config order). */
function byKey(live: Target[], key: (t: Target) => number): Target[] {
  return live.map((t, i) => ({ t, i, k: key(t) })).sort((a, b) => a.k - b.k || a.i - b.i).map((e) => e.t);
}

function byLatency(live: Target[], now: number): Target[] {
  const probe = live.find((t) => t.latency.claimProbe(now));
  const sorted = byKey(live, latencyKey);
  return probe ? [probe, ...sorted.filter((t) => t !== probe)] : sorted;
}

/** Order in which to try a route's enabled targets for one request. */
export function targetOrder(route: Route, need?: TokenNeed, rand = Math.random, now = Date.now()): Target[] {
  const live = route.targets.filter((t) => t.provider.enabled);
  if (live.length < 2) return live;
  switch (route.strategy) {
    case 'loadbalance': return weightedFirst(live, rand);
    case 'latency': return byLatency(live, now);
    case 'cost': return byKey(live, (t) => costKey(t, need ?? EVEN));
    default: return live;
  }
}
