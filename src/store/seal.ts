// Authenticated encryption of a short text under a 32-byte key (AES-256-GCM, random 96-bit nonce),
// optionally bound to associated data (a row's name and version: a ciphertext moved to another row
// does not open). One primitive for every store that keeps a value it must not read back without
// the key: stored credentials (binary parts), the fleet audit signing key and console sessions
// (one printable string "v1:<nonce>:<tag>:<ciphertext>", base64 parts).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export interface SealedParts { nonce: Buffer; tag: Buffer; ciphertext: Buffer }

export function sealParts(key: Buffer, text: string, aad?: Buffer): SealedParts {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  if (aad) c.setAAD(aad);
  const ciphertext = Buffer.concat([c.update(text, 'utf8'), c.final()]);
  return { nonce, tag: c.getAuthTag(), ciphertext };
}

/** The text, or null when the key or associated data is wrong or the parts were altered. */
export function unsealParts(key: Buffer, p: { nonce: Uint8Array; tag: Uint8Array; ciphertext: Uint8Array }, aad?: Buffer): string | null {
  try {
    const d = createDecipheriv('aes-256-gcm', key, p.nonce);
    if (aad) d.setAAD(aad);
    d.setAuthTag(p.tag);
    return Buffer.concat([d.update(p.ciphertext), d.final()]).toString('utf8');
  } catch { return null; }
}

export function seal(key: Buffer, text: string): string {
  const p = sealParts(key, text);
  return ['v1', p.nonce.toString('base64'), p.tag.toString('base64'), p.ciphertext.toString('base64')].join(':');
}

/** The text, or null when the key is wrong, the string was altered or is not of this form. */
export function unseal(key: Buffer, sealed: string): string | null {
  const [v, iv, tag, ct] = sealed.split(':');
  if (v !== 'v1' || iv === undefined || tag === undefined || ct === undefined) return null;
  return unsealParts(key, { nonce: Buffer.from(iv, 'base64'), tag: Buffer.from(tag, 'base64'), ciphertext: Buffer.from(ct, 'base64') });
}
