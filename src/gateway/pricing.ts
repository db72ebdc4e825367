// Cost of a call in USD from the price each target resolved at load (src/config/pricing.ts).
// Unknown price or unknown usage -> null, never 0.
import type { Usage } from '../providers/types.ts';
import type { Pricing } from '../config/pricing.ts';

export type { Pricing } from '../config/pricing.ts';

export function costUsd(usage: Usage | undefined, pricing: Pricing | null): number | null {
  if (!usage || !pricing) return null;
  const cached = usage.cachedTokens ?? 0;
  const written = usage.cacheWriteTokens ?? 0;
  const hour = usage.cacheWrite1hTokens ?? 0;
  const fresh = Math.max(0, usage.inputTokens - cached - written);
  const cachedPrice = pricing.cached_input_per_1m ?? pricing.input_per_1m;
  const writePrice = pricing.cache_write_input_per_1m ?? pricing.input_per_1m;
  const hourPrice = pricing.cache_write_1h_input_per_1m ?? writePrice;
  return (fresh * pricing.input_per_1m + cached * cachedPrice + (written - hour) * writePrice + hour * hourPrice + usage.outputTokens * pricing.output_per_1m) / 1e6;
}

/** Worst-case estimate used to reserve budget before the call: prompt + max output tokens. */
export function estimateCostUsd(promptTokens: number, maxOutputTokens: number, pricing: Pricing | null): number {
  if (!pricing) return 0;
  return (promptTokens * pricing.input_per_1m + maxOutputTokens * pricing.output_per_1m) / 1e6;
}
