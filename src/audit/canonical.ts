// Canonical JSON (RFC 8785-like) for hashing and signing: object keys sorted by UTF-16 code
// units, no whitespace, undefined members omitted, numbers in ECMAScript shortest form.
// Only the value types audit events use are supported; anything else throws so a bad event
// can never hash differently on two machines.
import { sha256Hex } from '../lib/hash.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

// Strings with no quote, backslash, control character or surrogate encode as themselves; the
// rest go through JSON.stringify (same escaping as RFC 8785). Saves most of the encoding time.
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

function quote(s: string): string {
  return PLAIN.test(s) ? '"' + s + '"' : JSON.stringify(s);
}


export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

function write(value: unknown, depth: number): string {
  if (depth > 32) throw new TypeError('canonicalJson: nesting deeper than 32 levels');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return quote(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: non-finite number ${value}`);
      // For finite numbers String() is the same ECMAScript shortest form JSON.stringify uses.
      return Object.is(value, -0) ? '0' : String(value);
    case 'object':
      break;
    default:
      throw new TypeError(`canonicalJson: unsupported type ${typeof value}`);
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ',';
      const v: unknown = value[i];
      out += v === undefined ? 'null' : write(v, depth + 1);
    }
    return out + ']';
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError('canonicalJson: only plain objects are allowed (convert Dates, Maps, Buffers first)');
  }
  const obj = value as Record<string, unknown>;
  const keys = sortedKeys(obj);
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += quote(k) + ':' + write(v, depth + 1);
  }
  return out + '}';
}

/** Keys in UTF-16 code unit order; most objects are small and often already in order. */
function sortedKeys(obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  for (let i = 1; i < keys.length; i++) if (keys[i - 1] > keys[i]) return keys.sort();
  return keys;
}

/** Canonical encoding of each top-level member, sorted: lets a caller add a member without re-encoding. */
export function canonicalEntries(obj: Record<string, unknown>): [string, string][] {
  const out: [string, string][] = [];
  for (const k of sortedKeys(obj)) {
    const v = obj[k];
    if (v !== undefined) out.push([k, write(v, 1)]);
  }
  return out;
}

/** Join sorted entries back into the object's canonical JSON (same bytes as canonicalJson). */
export function joinEntries(entries: readonly [string, string][]): string {
  let out = '{';
  for (let i = 0; i < entries.length; i++) out += (i ? ',' : '') + quote(entries[i][0]) + ':' + entries[i][1];
  return out + '}';
}

/** Digest of tool arguments for the trail when the arguments themselves are not stored. */
export function argsDigest(args: unknown): string {
  return 'sha256:' + sha256Hex(canonicalJson(args));
}
