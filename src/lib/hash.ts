// The SHA-256 of a string as 64 lowercase hex digits: how aam stores a secret it must recognise but
// never keep (key secrets, join tokens, console session ids), keys its caches and chains its trail.
import { createHash } from 'node:crypto';

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
