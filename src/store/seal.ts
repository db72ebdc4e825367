// Authenticated encryption of a short text under a 32-byte key (AES-256-GCM, random 96-bit nonce),
// as one printable string "v1:<nonce>:<tag>:<ciphertext>" (base64 parts). One primitive for every
// store that must keep a value it should not be able to read back without the key.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

export function seal(key: Buffer, text: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([c.update(text, 'utf8'), c.final()]);
  return ['v1', iv.toString('base64'), c.getAuthTag().toString('base64'), ct.toString('base64')].join(':');
}

/** The text, or null when the key is wrong, the string was altered or is not of this form. */
export function unseal(key: Buffer, sealed: string): string | null {
  const [v, iv, tag, ct] = sealed.split(':');
  if (v !== 'v1' || iv === undefined || tag === undefined || ct === undefined) return null;
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64'));
    d.setAuthTag(Buffer.from(tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(ct, 'base64')), d.final()]).toString('utf8');
  } catch { return null; }
}
