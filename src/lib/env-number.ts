// Whole-number settings from the environment (ports, limits, timeouts). A value that is not a
// whole number refuses the start, naming the variable: Number('10MB') is NaN, and a NaN limit
// compares false with everything (AAM_MAX_BODY_BYTES=10MB would turn the body limit off, a NaN
// keep-alive interval fires every millisecond), while Node's own errors never name the variable.

export interface WholeNumberRule {
  /** What the number counts, for the message: "milliseconds", "bytes", "sessions" (none: a plain number). */
  unit?: string;
  /** Smallest value accepted (default 0). */
  min?: number;
  /** Largest value accepted (default Number.MAX_SAFE_INTEGER). */
  max?: number;
  /** Used when the variable is unset or empty; named in the message. Without it, unset is undefined (the consumer's default). */
  fallback?: number;
}

/** `name`'s value as a whole number within the rule's bounds; throws a message naming the variable, the rule and the value. */
export function wholeNumberEnv(name: string, value: string | undefined, rule: WholeNumberRule & { fallback: number }): number;
export function wholeNumberEnv(name: string, value: string | undefined, rule: WholeNumberRule): number | undefined;
export function wholeNumberEnv(name: string, value: string | undefined, rule: WholeNumberRule): number | undefined {
  if (value === undefined || value.trim() === '') return rule.fallback;
  const min = rule.min ?? 0;
  const max = rule.max ?? Number.MAX_SAFE_INTEGER;
  const n = Number(value);
  if (/^\s*\d+\s*$/.test(value) && Number.isSafeInteger(n) && n >= min && n <= max) return n;
  const range = max < Number.MAX_SAFE_INTEGER ? ` from ${min} to ${max}` : min > 0 ? ` (at least ${min})` : '';
  const dflt = rule.fallback !== undefined ? ` (default ${rule.fallback})` : '';
  throw new Error(`${name} must be a whole number${rule.unit ? ` of ${rule.unit}` : ''}${range}${dflt}, not "${value}"`);
}

/** `aam serve`'s port: --port wins over AAM_PORT (default 8080); either is checked and named when wrong. */
export function listenPort(flag: string | undefined, env: string | undefined): number {
  if (flag === undefined) return wholeNumberEnv('AAM_PORT', env, { max: 65535, fallback: 8080 });
  const port = wholeNumberEnv('--port', flag, { max: 65535 });
  if (port === undefined) throw new Error('--port needs a number from 0 to 65535');
  return port;
}
