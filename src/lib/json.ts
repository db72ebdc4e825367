// Narrowing of parsed JSON that every layer shares: one rule each, pure, importing nothing (lib is
// the lowest layer; the providers' translators may import it too, test/providers-translate.test.ts).

export type Obj = Record<string, unknown>;

/** A JSON object: not null, not an array (what a request body, params, result or _meta must be). */
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/** A number JSON can hold (finite). */
export function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

/** JSON text's value; undefined when it is not JSON (the caller reports it). */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * `a` and `b` hold the same keys (order aside) and each pair of values is equal by `eq`: keys
 * counted, not listed (the raw-body path compares fields of every request it may pass through).
 */
export function sameEntries(a: Obj, b: Obj, eq: (av: unknown, bv: unknown, key: string) => boolean): boolean {
  let n = 0;
  for (const k in a) {
    n++;
    if (!Object.hasOwn(b, k) || !eq(a[k], b[k], k)) return false;
  }
  for (const _ in b) if (--n < 0) return false;
  return n === 0;
}
