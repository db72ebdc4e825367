// How virtual-key secrets look and are stored, shared by the embedded and the fleet key stores:
// `aam_<secret>`, only sha256(secret) is kept, and each secret has a public generation name.
import { createHash, randomBytes } from 'node:crypto';
import { sha256Hex } from '../lib/hash.ts';

export const KEY_PREFIX = 'aam_';

export function hashKey(secret: string): string {
  return sha256Hex(secret);
}

/**
 * Public name of one secret of a key (its generation), for tokens minted from it: derived from the
 * stored hash so it needs no column, and one-way so a token never carries the lookup hash itself.
 */
export function generationOf(hash: string): string {
  return createHash('sha256').update(`aam-key-generation:${hash}`).digest('base64url').slice(0, 22);
}

export function newSecret(): string {
  return KEY_PREFIX + randomBytes(24).toString('base64url');
}

export function newKeyId(): string {
  return 'key_' + randomBytes(8).toString('hex');
}

/** Longest a rotated-out secret may keep working: a grace beyond a year would be no rotation at all. */
export const MAX_GRACE_SECONDS = 365 * 86_400;

/**
 * A rotation's grace period (seconds the old secret keeps working), as the CLI's --grace and the
 * admin API's grace_seconds give it: a number from 0 to MAX_GRACE_SECONDS, else why not.
 */
export function graceProblem(v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_GRACE_SECONDS) {
    return `must be a number of seconds from 0 (the old secret stops at once) to ${MAX_GRACE_SECONDS} (a year)${typeof v === 'string' ? ', not a string' : ''}`;
  }
  return undefined;
}

/** Longest label a key may carry: it is shown in key lists, the console and the evidence of every change to the key. */
export const MAX_KEY_NAME = 100;

/**
 * A key's label as the CLI's --name and the admin API's `name` give it: 1 to MAX_KEY_NAME
 * characters, none of them control characters (a newline would forge lines in a table), else why not.
 */
export function keyNameProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'must be a string (a label for the key)';
  if (v.length === 0 || v.length > MAX_KEY_NAME) return `must be 1 to ${MAX_KEY_NAME} characters, not ${v.length}`;
  if (/[\u0000-\u001f\u007f]/.test(v)) return 'must not contain control characters (newlines, tabs, ...)';
  return undefined;
}
