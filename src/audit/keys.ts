// The checkpoint signing key lives apart from the data: <dataDir>/keys/audit-signing.key (0600)
// or AAM_AUDIT_KEY_FILE. Verifiers are given the public key; they never need this file.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface SigningKey {
  privateKey: KeyObject;
  publicKeyPem: string;
  keyId: string;
}

export function signingKeyPath(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.AAM_AUDIT_KEY_FILE || join(dataDir, 'keys', 'audit-signing.key');
}

/** Load the Ed25519 key, creating it (0600) on first start. Refuses a key readable by others. */
export function loadOrCreateSigningKey(path: string): SigningKey {
  let pem: string;
  try {
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0) {
      throw new Error(`audit signing key ${path} is readable by group/others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${path}`);
    }
    pem = readFileSync(path, 'utf8');
  } catch (e) {
    if (!isNotFound(e)) throw e;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    // 'wx': never overwrite a key another process created a moment ago.
    try {
      writeFileSync(path, pem, { mode: 0o600, flag: 'wx' });
    } catch (we) {
      if (!(we instanceof Error && 'code' in we && we.code === 'EEXIST')) throw we;
      pem = readFileSync(path, 'utf8');
    }
  }
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`audit signing key ${path} is not an Ed25519 key`);
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicKeyPem, keyId: keyIdOf(publicKeyPem) };
}

/** Short fingerprint of a public key (sha256 of its SPKI DER), shown in checkpoints. */
export function keyIdOf(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export function signBytes(key: KeyObject, data: string): string {
  return sign(null, Buffer.from(data), key).toString('base64');
}

export function verifyBytes(publicKeyPem: string, data: string, signatureB64: string): boolean {
  try {
    return verify(null, Buffer.from(data), createPublicKey(publicKeyPem), Buffer.from(signatureB64, 'base64'));
  } catch {
    return false;
  }
}

function isNotFound(e: unknown): boolean {
  return e instanceof Error && 'code' in e && e.code === 'ENOENT';
}
