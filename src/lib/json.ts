// Narrowing of parsed JSON that every layer shares: one rule each, pure, importing nothing (lib is
// the lowest layer; the providers' translators may import it too, test/providers-translate.test.ts).

export type Obj = Record<string, unknown>;

/** A JSON object: not null, not an array (what a request body, params, result or _meta must be). */
export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
