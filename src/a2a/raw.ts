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
import { keyCount, memberCount, textMemberCount } from '../access/json-keys.ts';

/**
 * True when `bytes` (the UTF-8 text JSON.parse read as `value`, or that text as a string: an SSE
 * event's data) may be written to the caller unchanged. Its members are counted as a request
 * body's are (memberCount: the colons outside strings, -1 when nested too deep to count, then
 * re-serialised as before).
 */
export function passesRaw(egress: ScrubSource, bytes: Buffer | string, value: unknown): boolean {
  const members = membersOf(bytes);
  // Counted only within the depth memberCount allows (keyCount's recursion is not bounded).
  if (members < 0 || keyCount(value) !== members) return false;
  if (!escapesChecked(egress, bytes)) return true;
  const strings: string[] = [];
  stringsOf(value, strings);
  return !holdsSecret(egress, strings.join('\n'));
}

/**
 * passesRaw for a value one walk has read already (a stream event: a2a/event-walk.ts): `keys`, its
 * keys counted (keyCount), and `strings`, every string in it, keys included, when escapesChecked
 * (else null). Strings not gathered where they must be checked: re-serialised (fails closed).
 */
export function passesRawWalked(egress: ScrubSource, bytes: Buffer | string, keys: number, strings: readonly string[] | null): boolean {
  const members = membersOf(bytes);
  if (members < 0 || keys !== members) return false;
  if (!escapesChecked(egress, bytes)) return true;
  return strings !== null && !holdsSecret(egress, strings.join('\n'));
}

/**
 * True when the strings of `bytes` are to be checked, decoded, for a secret (stringsOf): it has a
 * backslash (text without one has no JSON escapes at all) and some credential is active.
 */
export function escapesChecked(egress: ScrubSource, bytes: Buffer | string): boolean {
  return (typeof bytes === 'string' ? bytes.indexOf('\\') : bytes.indexOf(0x5c)) !== -1 && egress.scrubber().size > 0; // '\\'
}

/** The members `bytes` writes (no key repeats when its parsed value has as many keys), -1 when nested too deep to count. */
function membersOf(bytes: Buffer | string): number {
  return typeof bytes === 'string' ? textMemberCount(bytes) : memberCount(bytes);
}

/** Every string in a parsed JSON value, object keys included. */
function stringsOf(v: unknown, out: string[]): void {
  if (typeof v === 'string') { out.push(v); return; }
  if (typeof v !== 'object' || v === null) return;
  if (Array.isArray(v)) { for (let i = 0; i < v.length; i++) stringsOf(v[i], out); return; }
  for (const k in v) { out.push(k); stringsOf((v as Record<string, unknown>)[k], out); }
}
