// A JSON check that never throws, for the JWT detector: JSON.parse reports bad input by throwing
// (~5 us each), and a hostile text can hold a JWT-shaped candidate every ~25 characters.
// Accepts exactly what JSON.parse accepts; iterative, so deep nesting costs no stack.

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;

function skipWs(s: string, i: number): number {
  for (let c = s.charCodeAt(i); c === 32 || c === 9 || c === 10 || c === 13; c = s.charCodeAt(++i));
  return i;
}

/** End (exclusive) of the JSON string whose opening quote is at i, or -1. */
function stringEnd(s: string, i: number): number {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) return i + 1;
    if (c < 32) return -1;
    if (c !== 92) continue;
    const e = s[i + 1];
    if (e === 'u') {
      if (!HEX4.test(s.slice(i + 2, i + 6))) return -1;
      i += 5;
    } else if (e !== undefined && '"\\/bfnrt'.includes(e)) {
      i++;
    } else {
      return -1;
    }
  }
  return -1;
}

/** `"key" :` at i; collects the key when `into` is given. Returns the index after ':' or -1. */
function member(s: string, i: number, into: string[] | null): number {
  if (s.charCodeAt(i) !== 34) return -1;
  const end = stringEnd(s, i);
  if (end < 0) return -1;
  // A validated string token: JSON.parse cannot throw here.
  if (into !== null) {
    const raw = s.slice(i + 1, end - 1);
    into.push(raw.includes('\\') ? JSON.parse(s.slice(i, end)) as string : raw);
  }
  const j = skipWs(s, end);
  return s.charCodeAt(j) === 58 ? j + 1 : -1;
}

/** End of the scalar (string, number, true, false, null) at i, or -1. */
function scalarEnd(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 34) return stringEnd(s, i);
  for (const lit of ['true', 'false', 'null']) if (s.startsWith(lit, i)) return i + lit.length;
  NUMBER.lastIndex = i;
  return NUMBER.test(s) ? NUMBER.lastIndex : -1;
}

/** The top-level keys if `s` is a JSON object, else null. */
export function jsonObjectKeys(s: string): string[] | null {
  const keys: string[] = [];
  const open: number[] = []; // 123 '{' or 91 '[' per open container
  let i = skipWs(s, 0);
  if (s.charCodeAt(i) !== 123) return null;
  for (;;) {
    // Expecting a value at i.
    i = skipWs(s, i);
    const c = s.charCodeAt(i);
    if (c === 123 || c === 91) {
      open.push(c);
      i = skipWs(s, i + 1);
      if (s.charCodeAt(i) === (c === 123 ? 125 : 93)) {
        open.pop();
        i++;
      } else {
        if (c === 123 && (i = member(s, i, open.length === 1 ? keys : null)) < 0) return null;
        continue;
      }
    } else if ((i = scalarEnd(s, i)) < 0) {
      return null;
    }
    // After a value: close containers, or take ',' and expect the next value.
    for (;;) {
      if (open.length === 0) return skipWs(s, i) === s.length ? keys : null;
      i = skipWs(s, i);
      const top = open[open.length - 1];
      const d = s.charCodeAt(i);
      if (d === (top === 123 ? 125 : 93)) { open.pop(); i++; continue; }
      if (d !== 44) return null;
      i = skipWs(s, i + 1);
      if (top === 123 && (i = member(s, i, open.length === 1 ? keys : null)) < 0) return null;
      break;
    }
  }
}
