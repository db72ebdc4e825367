// When a callee's JSON (an answer, a stream event) may reach the caller as the callee wrote it.
// aam reads a callee's JSON to bind the task ids it names, to run output guardrails and to
// scrub secrets split across text parts; where none of that changes anything, re-serialising
// what it read only costs CPU (a JSON.stringify per answer and per event). The bytes may go on
// as they are when they say exactly what aam read and the egress door, which scrubs every byte
// written, sees every secret in them:
// - no key repeats in any object: JSON.parse keeps a repeated key's last value, other parsers
//   the first, so the caller could read a value (a text part, a task id) aam never checked;
// - no secret is spelled with JSON escapes the door does not know (e.g. "\u0073k-..."): the
//   caller's parser turns them back into the secret. Text without a backslash has no escapes
//   at all; otherwise every string in it (keys too) is checked, decoded, for a secret.
// Anything else is re-serialised (and so scrubbed in its decoded form), as before.
import { holdsSecret, type ScrubSource } from '../access/egress.ts';
import { keyCount } from '../access/json-keys.ts';

/** True when `text` (which JSON.parse read as `value`) may be written to the caller unchanged. */
export function passesRaw(egress: ScrubSource, text: string, value: unknown): boolean {
  try {
    if (keyCount(value) !== membersIn(text)) return false;
  } catch {
    return false; // nested too deep to count: re-serialised, as before
  }
  if (text.indexOf('\\') === -1 || egress.scrubber().size === 0) return true;
  const strings: string[] = [];
  stringsOf(value, strings);
  return !holdsSecret(egress, strings.join('\n'));
}

/**
 * The members (key: value pairs) written in a JSON text: its colons outside strings. Meaningful
 * once JSON.parse accepted it; then fewer keys in the parsed value than members means a key repeats.
 */
export function membersIn(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x3a) n++; // ':'
    else if (c === 0x22) { // '"': to the closing quote (the first not preceded by an odd run of backslashes)
      for (;;) {
        i = text.indexOf('"', i + 1);
        if (i < 0) return n;
        let k = i - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((i - 1 - k) % 2 === 0) break;
      }
    }
  }
  return n;
}

/** Every string in a parsed JSON value, object keys included. */
function stringsOf(v: unknown, out: string[]): void {
  if (typeof v === 'string') { out.push(v); return; }
  if (typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) { for (let i = 0; i < v.length; i++) stringsOf(v[i], out); return; }
  for (const k in v) { out.push(k); stringsOf((v as Record<string, unknown>)[k], out); }
}
