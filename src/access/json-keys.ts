// Duplicated keys in a JSON body. JSON.parse keeps a duplicated key's last value; other parsers
// keep the first or refuse the body. The model plane may send the client's own bytes upstream
// (gateway/raw-body.ts) instead of re-serialising what aam read, so a body with a duplicated key
// could be read one way by aam's policy and guardrails and another way by the upstream: such a
// body is refused (400). Found cheaply: in JSON a colon outside strings separates a key from its
// value, so a body JSON.parse accepted repeats no key exactly when it has as many colons as its
// parsed objects have keys (memberCount, counted in the same pass as the depth check, against
// keyCount); only then is the body scanned for where the repeat is (scanJsonKeys). Linear time,
// like jsonTooDeep: strings are skipped with indexOf (native).
import { MAX_JSON_DEPTH, stringEnd } from './json-depth.ts';

/**
 * The members (key: value pairs) written in `buf`, or -1 when it nests deeper than `max` (then
 * jsonTooDeep says where). Meaningful once JSON.parse accepted the body.
 */
export function memberCount(buf: Buffer, max = MAX_JSON_DEPTH): number {
  let depth = 0;
  let members = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x22) { // '"': jump to the closing quote
      i = stringEnd(buf, i);
      if (i < 0) return members; // unterminated string: JSON.parse reports it
    } else if (c === 0x3a) members++; // ':'
    else if (c === 0x7b || c === 0x5b) { // '{' '['
      if (++depth > max) return -1;
    } else if (c === 0x7d || c === 0x5d) depth--; // '}' ']'
  }
  return members;
}

/**
 * memberCount of JSON held as a string (an SSE event's data): the same count, read from the
 * string's characters. JSON's structural characters are ASCII, so a string counts them as its
 * UTF-8 bytes do, with no Buffer made to read them.
 */
export function textMemberCount(text: string, max = MAX_JSON_DEPTH): number {
  let depth = 0;
  let members = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // '"': jump to the closing quote, the first not preceded by an odd run of backslashes
      for (;;) {
        const q = text.indexOf('"', i + 1);
        if (q < 0) return members; // unterminated string: JSON.parse reports it
        let k = q - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        i = q;
        if ((q - 1 - k) % 2 === 0) break;
      }
    } else if (c === 0x3a) members++; // ':'
    else if (c === 0x7b || c === 0x5b) { // '{' '['
      if (++depth > max) return -1;
    } else if (c === 0x7d || c === 0x5d) depth--; // '}' ']'
  }
  return members;
}

/** The keys of every object in a parsed JSON value (nested at most MAX_JSON_DEPTH deep: checked before it was parsed). */
export function keyCount(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) { const x: unknown = v[i]; if (typeof x === 'object' && x !== null) n += keyCount(x); }
    return n;
  }
  for (const k in v) {
    n++;
    const x = (v as Record<string, unknown>)[k];
    if (typeof x === 'object' && x !== null) n += keyCount(x);
  }
  return n;
}

export interface JsonKeys {
  /** Nesting went deeper than the maximum (jsonTooDeep then says where). */
  tooDeep: boolean;
  /** The first key seen twice in one object: where it is (e.g. messages[0].content) and the byte offset of its second occurrence. */
  duplicate: { path: string; offset: number } | null;
  /** Byte range [start, end) of the top-level "model" value, quotes included, when it is a string. */
  model: readonly [number, number] | null;
}

const OBJECT = 1;
const ARRAY = 2;
/** Keys of one object are compared one by one up to this many, then in a Set. */
const FEW = 16;
/** "model" as bytes. */
const MODEL = [0x6d, 0x6f, 0x64, 0x65, 0x6c];

/**
 * Scans `buf` (the body's bytes); on invalid JSON the answer is only meaningful once JSON.parse
 * accepted it. Keys are compared as bytes while they are plain ASCII without escapes (the same
 * bytes are the same key); any other key is compared as the text JSON.parse reads.
 */
export function scanJsonKeys(buf: Buffer, maxDepth = MAX_JSON_DEPTH): JsonKeys {
  const kinds: number[] = [];
  const index: number[] = []; // per array level: the current element's index
  const from: number[] = []; // per object level: where its keys start in `keys`
  const sets: Array<Set<string> | undefined> = []; // per object level, once it has more than FEW keys
  const keys: number[] = []; // the open objects' keys so far: [start, end, plain 1|0] each (end: the closing quote)
  let depth = 0;
  let expectKey = false; // the next string in this object is a key
  let modelNext = false; // the next value is the top-level "model"'s
  let model: [number, number] | null = null;
  let duplicate: JsonKeys['duplicate'] = null;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x22) { // '"': jump to the closing quote
      const start = i;
      i = stringEnd(buf, i);
      if (i < 0) return { tooDeep: false, duplicate, model }; // unterminated string: JSON.parse reports it
      if (expectKey && kinds[depth - 1] === OBJECT) {
        expectKey = false;
        let plain = 1;
        for (let j = start + 1; j < i; j++) if (buf[j] >= 0x80 || buf[j] === 0x5c) { plain = 0; break; }
        const d = depth - 1;
        if (duplicate === null && repeats(buf, keys, from[d], sets, d, start, i, plain)) duplicate = { path: '', offset: start };
        keys.push(start, i, plain);
        if (duplicate !== null && duplicate.path === '') duplicate.path = pathOf(buf, kinds, index, from, keys, depth);
        modelNext = depth === 1 && i - start === 6 && MODEL.every((b, j) => buf[start + 1 + j] === b);
      } else {
        if (modelNext) model = [start, i + 1];
        modelNext = false;
      }
    } else if (c === 0x7b || c === 0x5b) { // '{' '['
      modelNext = false;
      if (++depth > maxDepth) return { tooDeep: true, duplicate, model };
      const d = depth - 1;
      if (c === 0x7b) {
        kinds[d] = OBJECT;
        from[d] = keys.length;
        sets[d] = undefined;
        expectKey = true;
      } else {
        kinds[d] = ARRAY;
        index[d] = 0;
        expectKey = false;
      }
    } else if (c === 0x7d || c === 0x5d) { // '}' ']'
      if (depth > 0) {
        depth--;
        if (kinds[depth] === OBJECT) { keys.length = from[depth]; sets[depth] = undefined; }
      }
      expectKey = false;
      modelNext = false;
    } else if (c === 0x2c) { // ','
      if (depth > 0) {
        if (kinds[depth - 1] === OBJECT) expectKey = true;
        else index[depth - 1]++;
      }
    } else if (c !== 0x3a && c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) {
      modelNext = false; // a number, true, false or null
    }
  }
  return { tooDeep: false, duplicate, model };
}

/** Whether the key literal [open, close] is one of the object's keys so far (keys[first..]). */
function repeats(buf: Buffer, keys: number[], first: number, sets: Array<Set<string> | undefined>, d: number, open: number, close: number, plain: number): boolean {
  let set = sets[d];
  if (set === undefined && keys.length - first >= FEW * 3) {
    set = sets[d] = new Set();
    for (let k = first; k < keys.length; k += 3) set.add(keyName(buf, keys[k], keys[k + 1]));
  }
  if (set !== undefined) {
    const name = keyName(buf, open, close);
    return set.size === set.add(name).size;
  }
  const len = close - open;
  let name: string | undefined;
  for (let k = first; k < keys.length; k += 3) {
    const s = keys[k];
    if (plain === 1 && keys[k + 2] === 1) {
      if (keys[k + 1] - s !== len) continue;
      let j = 1;
      while (j < len && buf[s + j] === buf[open + j]) j++;
      if (j === len) return true;
    } else if (keyName(buf, s, keys[k + 1]) === (name ??= keyName(buf, open, close))) return true;
  }
  return false;
}

/** The key whose literal spans [open, close] (its quotes), as JSON.parse reads it. */
function keyName(buf: Buffer, open: number, close: number): string {
  // "a" and "\u0061" are the same key: a key with an escape is decoded.
  let escaped = false;
  for (let i = open + 1; i < close && !escaped; i++) escaped = buf[i] === 0x5c;
  if (!escaped) return buf.toString('utf8', open + 1, close);
  try { return JSON.parse(buf.toString('utf8', open, close + 1)) as string; } catch { return buf.toString('utf8', open + 1, close); }
}

/** Where the key just pushed is: e.g. messages[1].content. */
function pathOf(buf: Buffer, kinds: readonly number[], index: readonly number[], from: readonly number[], keys: readonly number[], depth: number): string {
  let path = '';
  for (let d = 0; d < depth; d++) {
    if (kinds[d] === ARRAY) { path += `[${index[d]}]`; continue; }
    // The object's current key is its last: the one before the next open object's keys start.
    let end = keys.length;
    for (let e = d + 1; e < depth; e++) if (kinds[e] === OBJECT) { end = from[e]; break; }
    path += (d === 0 ? '' : '.') + keyName(buf, keys[end - 3], keys[end - 2]);
  }
  return path;
}

/**
 * Byte range [start, end) of the top-level "model" value, quotes included, when it is a string
 * written as the plain key "model": what scanJsonKeys(buf).model finds, without keeping every key
 * (a body with a repeated key was refused before). null when not found (the caller then
 * re-serialises). Meaningful once JSON.parse accepted the body.
 */
export function topLevelModel(buf: Buffer): readonly [number, number] | null {
  let depth = 0;
  let key = false; // the next string at depth 1 is a key
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x22) { // '"'
      const start = i;
      i = stringEnd(buf, i);
      if (i < 0) return null;
      if (depth !== 1 || !key) continue;
      key = false;
      if (i - start !== 6 || !MODEL.every((b, j) => buf[start + 1 + j] === b)) continue;
      let v = i + 1;
      while (buf[v] === 0x20 || buf[v] === 0x0a || buf[v] === 0x0d || buf[v] === 0x09 || buf[v] === 0x3a) v++;
      if (buf[v] !== 0x22) return null;
      const end = stringEnd(buf, v);
      return end < 0 ? null : [v, end + 1];
    } else if (c === 0x7b || c === 0x5b) { // '{' '['
      depth++;
      key = depth === 1 && c === 0x7b;
    } else if (c === 0x7d || c === 0x5d) depth--; // '}' ']'
    else if (c === 0x2c && depth === 1) key = true; // ','
  }
  return null;
}
