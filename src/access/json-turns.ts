// JSON.parse of a large body without holding the event loop: JSON.parse cost ~4 ms per MB in one
// turn, almost all of it in the long string literals (message text). Those are cut out of the
// text, the rest (the skeleton, with a placeholder per literal) is parsed at once, and each long
// literal is decoded by JSON.parse in slices, across loop turns, then put back. The value is the
// one JSON.parse gives, and what JSON.parse refuses is refused (test/json-turns.test.ts): every
// character of a literal is still parsed by JSON.parse, and slices never cut an escape sequence.
import { randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';

/** Literals this long (characters between the quotes) are decoded in slices. */
const LONG = 16 * 1024;
/** Characters per slice: ~0.3 ms of JSON.parse. */
const SLICE = 64 * 1024;
const TURN_MS = 1;

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A body as text, or as its UTF-8 bytes (not decoded as a whole: each part is decoded on its own,
 * which gives the same text because parts are cut at quotes, ASCII, where UTF-8 decoding restarts).
 */
type Source = string | Buffer;
const codeAt = (s: Source, i: number): number => (typeof s === 'string' ? s.charCodeAt(i) : s[i]);
const quoteFrom = (s: Source, i: number): number => (typeof s === 'string' ? s.indexOf('"', i) : s.indexOf(0x22, i));
const textOf = (s: Source): string => (typeof s === 'string' ? s : s.toString('utf8'));

/** End of the string literal whose opening quote is at `open` (index of its closing quote), or -1. */
function literalEnd(text: Source, open: number): number {
  for (let q = quoteFrom(text, open + 1); q >= 0; q = quoteFrom(text, q + 1)) {
    let k = 0;
    while (codeAt(text, q - 1 - k) === 92) k++;
    if (k % 2 === 0) return q;
  }
  return -1;
}

/** Is `i` (in a literal's content) right after an escape's backslash, or inside the 4 hex digits of a \u escape? */
function insideEscape(text: string, from: number, i: number): boolean {
  // The escape starting before i: the last backslash run before i, if it ends at an escape start.
  for (let j = i - 1; j >= from && j >= i - 5; j--) {
    if (text.charCodeAt(j) !== 92) continue;
    let k = 1;
    while (j - k >= from && text.charCodeAt(j - k) === 92) k++;
    if (k % 2 === 0) return false; // `\\`: a complete escape ends at j
    // An escape starts at j: it spans 2 characters, 6 for \u.
    return i < j + (text.charCodeAt(j + 1) === 117 ? 6 : 2);
  }
  return false;
}

/** A literal's content [from, to) decoded by JSON.parse in slices, yielding between them. */
async function decodeLiteral(text: string, from: number, to: number, slice: number, clock: { since: number }): Promise<string> {
  const parts: string[] = [];
  for (let a = from; a < to;) {
    let b = Math.min(to, a + slice);
    while (b < to && insideEscape(text, a, b)) b++;
    parts.push(JSON.parse(`"${text.slice(a, b)}"`) as string);
    a = b;
    if (performance.now() - clock.since >= TURN_MS) { await nextTurn(); clock.since = performance.now(); }
  }
  return flat(parts, clock);
}

/** The same for a literal's UTF-8 bytes [from, to): decoded slice by slice, a cut escape carried to the next. */
async function decodeLiteralBytes(buf: Buffer, from: number, to: number, slice: number, clock: { since: number }): Promise<string> {
  const parts: string[] = [];
  const dec = new StringDecoder('utf8');
  let carry = '';
  for (let a = from; a < to; a += slice) {
    const text = carry + dec.write(buf.subarray(a, Math.min(to, a + slice)));
    let cut = text.length;
    while (cut > 0 && insideEscape(text, 0, cut)) cut--;
    parts.push(JSON.parse(`"${text.slice(0, cut)}"`) as string);
    carry = text.slice(cut);
    if (performance.now() - clock.since >= TURN_MS) { await nextTurn(); clock.since = performance.now(); }
  }
  const rest = carry + dec.end();
  if (rest !== '') parts.push(JSON.parse(`"${rest}"`) as string);
  return flat(parts, clock);
}

/**
 * One flat string, copied in a turn of its own (a rope of slices would be flattened, ~1-2 ms
 * per MB, by whatever reads it first: the walker, in the turn that also copies it to the scan thread).
 */
async function flat(parts: string[], clock: { since: number }): Promise<string> {
  await nextTurn();
  clock.since = performance.now();
  return parts.join('');
}

/** The first non-whitespace character at or after i. */
function nextToken(text: Source, i: number): number {
  while (i < text.length) {
    const c = codeAt(text, i);
    if (c !== 32 && c !== 9 && c !== 10 && c !== 13) return c;
    i++;
  }
  return -1;
}

/** Put decoded literals back where their placeholders are (string values only; keys stay in the skeleton). Iterative: any depth. */
function restore(root: unknown, long: ReadonlyMap<string, string>): unknown {
  if (typeof root === 'string') return long.get(root) ?? root;
  const stack: unknown[] = [root];
  const put = (o: Record<string | number, unknown>, k: string | number): void => {
    const x = o[k];
    if (typeof x === 'string') { const r = long.get(x); if (r !== undefined) o[k] = r; }
    else if (typeof x === 'object' && x !== null) stack.push(x);
  };
  while (stack.length > 0) {
    const v = stack.pop() as Record<string | number, unknown>;
    if (Array.isArray(v)) for (let i = 0; i < v.length; i++) put(v, i);
    else for (const k of Object.keys(v)) put(v, k);
  }
  return root;
}

/**
 * JSON.parse(text), with long string values decoded across loop turns; short texts are parsed at
 * once. Throws (or rejects with) a SyntaxError where JSON.parse would. `text` may be the UTF-8
 * bytes of the text: a large body is then never decoded into one string (a copy of ~3.5 ms CPU per
 * MB in one turn), only its skeleton and, in slices, its long literals.
 */
export function parseJsonInTurns(text: Source, opts: { long?: number; slice?: number; maxKeyNames?: number } = {}): unknown {
  const longMin = opts.long ?? LONG;
  if (text.length < longMin * 4) return JSON.parse(textOf(text));
  // Long string values: [open quote, close quote]. Outside literals JSON has no quotes, so hopping
  // from quote to quote finds every literal of a valid text; an invalid one fails below anyway.
  const spans: Array<[number, number]> = [];
  const max = opts.maxKeyNames;
  const names = max === undefined ? null : new Set<number>();
  for (let open = quoteFrom(text, 0); open >= 0;) {
    const close = literalEnd(text, open);
    if (close < 0) break;
    const long = close - open - 1 >= longMin;
    // Whether it is a key is asked only when it matters: names are counted, or it is long.
    if ((names !== null || long) && nextToken(text, close + 1) === 58 /* ':' (a key) */) {
      if (names !== null && names.add(nameHash(text, open + 1, close)).size > max!) throw new JsonTooComplex(max!);
    } else if (long) spans.push([open, close]);
    open = quoteFrom(text, close + 1);
  }
  if (spans.length === 0) return JSON.parse(textOf(text));
  return (async () => {
    const nonce = randomBytes(12).toString('hex');
    const holders = spans.map((_, i) => `aam-long-literal-${nonce}-${i}`);
    const value: unknown = JSON.parse(skeletonOf(text, spans, holders));
    const clock = { since: performance.now() };
    const long = new Map<string, string>();
    const slice = opts.slice ?? SLICE;
    for (let i = 0; i < spans.length; i++) {
      const [open, close] = spans[i];
      long.set(holders[i], await (typeof text === 'string' ? decodeLiteral(text, open + 1, close, slice, clock) : decodeLiteralBytes(text, open + 1, close, slice, clock)));
    }
    return restore(value, long);
  })();
}

/**
 * Distinct key names a request body may hold (MAX_KEY_NAMES): JSON.parse spends ~3-6 us per new key
 * name (V8 makes a hidden class per shape, or a dictionary for a huge object) against ~0.1 us per
 * repeated one, so 400k distinct names in a 7 MB body held the loop 1-2 s. Records with the same
 * keys, however many, are not limited. Bodies under 64 KB, too small to hold more than ~11k, are not counted.
 */
export const MAX_KEY_NAMES = 10_000;

/** A body with more distinct key names than allowed (see MAX_KEY_NAMES): refused before it is parsed. */
export class JsonTooComplex extends Error {
  constructor(max: number) {
    super(`the body has more than ${max} distinct object key names, which costs too much to parse; send keyed data (a map of ids) as an array of records, e.g. [{"id": "...", ...}]`);
    this.name = 'JsonTooComplex';
  }
}

/** FNV-1a of a key's characters (or bytes): equal names hash equal; a rare collision only counts two names as one. */
function nameHash(text: Source, from: number, to: number): number {
  let h = 0x811c9dc5;
  if (typeof text === 'string') for (let i = from; i < to; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  else for (let i = from; i < to; i++) h = Math.imul(h ^ text[i], 0x01000193);
  return h >>> 0;
}

/** The text with each long literal replaced by its holder (quoted). */
function skeletonOf(text: Source, spans: ReadonlyArray<[number, number]>, holders: readonly string[]): string {
  if (typeof text === 'string') {
    let skeleton = '';
    let at = 0;
    spans.forEach(([open, close], i) => { skeleton += `${text.slice(at, open)}"${holders[i]}"`; at = close + 1; });
    return skeleton + text.slice(at);
  }
  const parts: Buffer[] = [];
  let at = 0;
  spans.forEach(([open, close], i) => { parts.push(text.subarray(at, open), Buffer.from(`"${holders[i]}"`)); at = close + 1; });
  parts.push(text.subarray(at));
  return Buffer.concat(parts).toString('utf8');
}
