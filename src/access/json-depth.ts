// Nesting depth of a JSON body, checked before it is parsed. JSON.parse itself copes with deep
// nesting, but JSON.stringify, canonicalisation and the guardrail walkers recurse, so a value
// nested 10,000 levels deep inside an otherwise valid request would overflow the stack (500)
// anywhere downstream. Refusing it at the door keeps every later walk bounded.

/** Deepest nesting of objects/arrays a request body may have (a deep JSON Schema needs ~30). */
export const MAX_JSON_DEPTH = 128;

export interface TooDeep {
  /** Byte offset of the bracket that went one level too deep. */
  offset: number;
  /** The top-level field holding it, when the body is an object (e.g. "response_format"). */
  field: string | null;
}

/**
 * Where `buf` first nests deeper than `max`, or null. Linear time: strings are skipped with
 * indexOf (native), so text-heavy bodies cost a few ms per 10 MB and small ones about 1 us.
 */
export function jsonTooDeep(buf: Buffer, max = MAX_JSON_DEPTH): TooDeep | null {
  let depth = 0;
  let key = -1; // start of the last string seen at depth 1: the key of the value that follows
  let keyEnd = -1;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x22) { // '"': jump to the closing quote
      const start = i;
      i = stringEnd(buf, i);
      if (i < 0) return null; // unterminated string: JSON.parse reports it
      if (depth === 1) { key = start; keyEnd = i; }
    } else if (c === 0x7b || c === 0x5b) { // '{' '['
      if (++depth > max) return { offset: i, field: firstByte(buf) === 0x7b ? fieldName(buf, key, keyEnd) : null };
    } else if (c === 0x7d || c === 0x5d) depth--; // '}' ']'
  }
  return null;
}

/** A string's first bytes are read here, one by one: most JSON strings (keys, ids, short values) end within them. */
const SHORT = 32;

/**
 * Where the string opening at buf[open] ends: its closing quote, the first not preceded by an odd
 * run of backslashes; -1 if none. Its first SHORT bytes are read in JavaScript (a Buffer's indexOf
 * is a call into C++ that costs more than reading a short key), the rest with indexOf.
 */
export function stringEnd(buf: Buffer, open: number): number {
  const short = Math.min(open + 1 + SHORT, buf.length);
  let j = open + 1;
  for (; j < short; j++) {
    const c = buf[j];
    if (c === 0x22) return j;
    if (c === 0x5c) j++; // the escaped byte is skipped
  }
  // Every byte before j is read; the closing quote is the first from j on not preceded by an odd run of backslashes.
  for (let i = j - 1; ;) {
    const q = buf.indexOf(0x22, i + 1);
    if (q < 0) return -1;
    let k = q - 1;
    while (buf[k] === 0x5c) k--;
    if ((q - 1 - k) % 2 === 0) return q;
    i = q;
  }
}

function firstByte(buf: Buffer): number {
  for (const c of buf) if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return c;
  return -1;
}

function fieldName(buf: Buffer, start: number, end: number): string | null {
  if (start < 0 || end - start > 200) return null;
  try { return JSON.parse(buf.subarray(start, end + 1).toString('utf8')) as string; } catch { return null; }
}
