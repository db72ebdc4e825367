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
