// What a model call costs per token: a target's or route's `pricing`, else a built-in table by
// upstream model name (longest prefix match). Lives with the config because load checks that
// every route a budgeted policy allows has a price (a budget that cannot bind is a load error).
import type { PricingSpec } from './schema.ts';

/**
 * USD per 1M tokens. Cache reads (cached_input) and writes (cache_write_input: Anthropic's and
 * Bedrock's prompt-cache writes; cache_write_1h_input: Anthropic's one-hour writes) are parts of the
 * input priced apart; unset, a read or write costs input_per_1m and a one-hour write a write's price.
 */
export interface Pricing { input_per_1m: number; output_per_1m: number; cached_input_per_1m?: number; cache_write_input_per_1m?: number; cache_write_1h_input_per_1m?: number }

// USD per 1M tokens, public list prices (Nov 2026 snapshot); override per route in config. Claude's
// cache writes: Anthropic's 5-minute price, 1.25x input; 1-hour writes 2x input.
const BUILTIN: Array<[prefix: string, p: Pricing]> = [
  ['gpt-4o-mini', { input_per_1m: 0.15, output_per_1m: 0.6, cached_input_per_1m: 0.075 }],
  ['gpt-4o', { input_per_1m: 2.5, output_per_1m: 10, cached_input_per_1m: 1.25 }],
  ['gpt-4.1-nano', { input_per_1m: 0.1, output_per_1m: 0.4, cached_input_per_1m: 0.025 }],
  ['gpt-4.1-mini', { input_per_1m: 0.4, output_per_1m: 1.6, cached_input_per_1m: 0.1 }],
  ['gpt-4.1', { input_per_1m: 2, output_per_1m: 8, cached_input_per_1m: 0.5 }],
  ['gpt-5-nano', { input_per_1m: 0.05, output_per_1m: 0.4, cached_input_per_1m: 0.005 }],
  ['gpt-5-mini', { input_per_1m: 0.25, output_per_1m: 2, cached_input_per_1m: 0.025 }],
  ['gpt-5', { input_per_1m: 1.25, output_per_1m: 10, cached_input_per_1m: 0.125 }],
  ['o4-mini', { input_per_1m: 1.1, output_per_1m: 4.4, cached_input_per_1m: 0.275 }],
  ['o3', { input_per_1m: 2, output_per_1m: 8, cached_input_per_1m: 0.5 }],
  ['text-embedding-3-small', { input_per_1m: 0.02, output_per_1m: 0 }],
  ['text-embedding-3-large', { input_per_1m: 0.13, output_per_1m: 0 }],
  ['claude-opus-4', { input_per_1m: 15, output_per_1m: 75, cached_input_per_1m: 1.5, cache_write_input_per_1m: 18.75, cache_write_1h_input_per_1m: 30 }],
  ['claude-sonnet-4', { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3, cache_write_input_per_1m: 3.75, cache_write_1h_input_per_1m: 6 }],
  ['claude-3-7-sonnet', { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3, cache_write_input_per_1m: 3.75, cache_write_1h_input_per_1m: 6 }],
  ['claude-3-5-sonnet', { input_per_1m: 3, output_per_1m: 15, cached_input_per_1m: 0.3, cache_write_input_per_1m: 3.75, cache_write_1h_input_per_1m: 6 }],
  ['claude-haiku-4', { input_per_1m: 1, output_per_1m: 5, cached_input_per_1m: 0.1, cache_write_input_per_1m: 1.25, cache_write_1h_input_per_1m: 2 }],
  ['claude-3-5-haiku', { input_per_1m: 0.8, output_per_1m: 4, cached_input_per_1m: 0.08, cache_write_input_per_1m: 1, cache_write_1h_input_per_1m: 1.6 }],
  ['gemini-2.5-pro', { input_per_1m: 1.25, output_per_1m: 10, cached_input_per_1m: 0.31 }],
  ['gemini-2.5-flash-lite', { input_per_1m: 0.1, output_per_1m: 0.4, cached_input_per_1m: 0.025 }],
  ['gemini-2.5-flash', { input_per_1m: 0.3, output_per_1m: 2.5, cached_input_per_1m: 0.075 }],
  ['gemini-2.0-flash', { input_per_1m: 0.1, output_per_1m: 0.4, cached_input_per_1m: 0.025 }],
].sort((a, b) => (b[0] as string).length - (a[0] as string).length) as Array<[string, Pricing]>;

/** Resolve at config load, not per request. */
export function builtinPricing(model: string): Pricing | null {
  const m = model.toLowerCase();
  for (const [prefix, p] of BUILTIN) if (m.startsWith(prefix)) return p;
  return null;
}

/**
 * Bedrock model ids carry the vendor, and inference profiles a geography, before the model name
 * (us.anthropic.claude-sonnet-4-...): list prices are the vendor's, so look the name up without them.
 */
function bedrockBaseModel(model: string): string {
  return model.replace(/^(?:[a-z]{2,6}\.)?[a-z0-9-]+\./, '');
}

/** Zero: the demo provider, and routes that opted in with `pricing: { free: true }`. */
const FREE: Pricing = { input_per_1m: 0, output_per_1m: 0 };

/** The price a target is billed at (target pricing, then route pricing, then built-in), or null if unknown. */
export function resolvePricing(providerType: string, model: string, ...specs: Array<PricingSpec | undefined>): Pricing | null {
  if (providerType === 'demo') return FREE;
  const spec = specs.find((s) => s !== undefined);
  if (!spec) return builtinPricing(providerType === 'bedrock' ? bedrockBaseModel(model) : model);
  if (spec.free) return FREE;
  return { input_per_1m: spec.input_per_1m ?? 0, output_per_1m: spec.output_per_1m ?? 0, ...(spec.cached_input_per_1m !== undefined ? { cached_input_per_1m: spec.cached_input_per_1m } : {}), ...(spec.cache_write_input_per_1m !== undefined ? { cache_write_input_per_1m: spec.cache_write_input_per_1m } : {}), ...(spec.cache_write_1h_input_per_1m !== undefined ? { cache_write_1h_input_per_1m: spec.cache_write_1h_input_per_1m } : {}) };
}
