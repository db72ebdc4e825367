// TLS to the fleet stores, from the environment: the CA that signs each server's certificate and
// the client certificate (mutual TLS) aam presents, as PEM files (mounted from Secrets). Read once
// at start; anything unreadable, half-given or contradicting the URL stops the start with a message
// naming the variable, because a TLS setting that is silently dropped sends the store's password
// and every key in the clear, or trusts a server nobody checked.
//
// PostgreSQL: without any AAM_DATABASE_*_FILE, AAM_DATABASE_URL's sslmode (and sslrootcert,
// sslcert, sslkey) mean what postgres.js makes of them. With one, aam decides, and verifies by default:
//   sslmode absent, require or verify-full: the server's chain AND its name (verify-full);
//   verify-ca: the chain only (a server reached by an address its certificate does not name);
//   disable, allow, prefer: refused (each lets the connection go unencrypted).
// Without a CA file the chain is checked against Node's bundled CAs, except for an explicit
// sslmode=require (encrypted, the server unchecked, as libpq and postgres.js do).

import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';

/** PEM texts for one store's TLS: `ca` replaces Node's bundled CAs; `cert` + `key` are aam's client certificate. */
export interface TlsFiles { ca?: string; cert?: string; key?: string }

/** postgres.js's `ssl` option: Node TLS options (the PEMs, and how much of the server is checked). */
export type PostgresTls = ConnectionOptions & TlsFiles;

const SSLMODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];

function readPem(env: NodeJS.ProcessEnv, name: string, what: 'certificate' | 'private key'): string | undefined {
  const file = env[name];
  if (!file) return undefined;
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    throw new Error(`cannot read ${name} (${file}): ${(e as Error).message}`, { cause: e });
  }
  if (what === 'certificate' && !text.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`${name} (${file}) holds no PEM certificate`);
  if (what === 'private key') {
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(text)) throw new Error(`${name} (${file}) is an encrypted private key: aam takes it unencrypted (keep the file in a Secret)`);
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) throw new Error(`${name} (${file}) holds no PEM private key`);
  }
  return text;
}

/** PREFIX_CA_FILE, PREFIX_CERT_FILE and PREFIX_KEY_FILE, checked: a certificate needs its key and the key must be its. */
function tlsFiles(env: NodeJS.ProcessEnv, prefix: 'AAM_REDIS' | 'AAM_DATABASE'): TlsFiles | undefined {
  const ca = readPem(env, `${prefix}_CA_FILE`, 'certificate');
  const cert = readPem(env, `${prefix}_CERT_FILE`, 'certificate');
  const key = readPem(env, `${prefix}_KEY_FILE`, 'private key');
  if (cert && !key) throw new Error(`${prefix}_CERT_FILE is set without ${prefix}_KEY_FILE: a client certificate needs its private key`);
  if (key && !cert) throw new Error(`${prefix}_KEY_FILE is set without ${prefix}_CERT_FILE: give the client certificate too`);
  if (cert && key) {
    let matches: boolean;
    try { matches = new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)); } catch (e) {
      throw new Error(`${prefix}_CERT_FILE / ${prefix}_KEY_FILE cannot be parsed: ${(e as Error).message}`, { cause: e });
    }
    if (!matches) throw new Error(`${prefix}_KEY_FILE is not the private key of the certificate in ${prefix}_CERT_FILE`);
  }
  if (!ca && !cert) return undefined;
  return { ...(ca ? { ca } : {}), ...(cert ? { cert, key } : {}) };
}

/** Redis: the files for a rediss:// URL (TLS verifies chain and name, as ioredis does); any of them with redis:// is refused. */
export function redisTls(env: NodeJS.ProcessEnv, redisUrl: string): TlsFiles | undefined {
  const files = tlsFiles(env, 'AAM_REDIS');
  if (!files) return undefined;
  // A CA or certificate with a plain redis:// URL would be ignored, and the password sent in the clear: refuse.
  if (!/^rediss:\/\//i.test(redisUrl)) {
    const set = ['CA', 'CERT', 'KEY'].map((k) => `AAM_REDIS_${k}_FILE`).filter((n) => env[n]);
    throw new Error(`${set.join(', ')} ${set.length > 1 ? 'are' : 'is'} set but AAM_REDIS_URL is not rediss://: TLS files are for TLS, use rediss://HOST:PORT`);
  }
  return files;
}

/**
 * PostgreSQL: postgres.js's `ssl` option from the AAM_DATABASE_*_FILE variables and the URL's
 * sslmode (the table at the top of this file); undefined when no file is given (the URL decides).
 */
export function databaseTls(env: NodeJS.ProcessEnv, databaseUrl: string): PostgresTls | undefined {
  const files = tlsFiles(env, 'AAM_DATABASE');
  if (!files) return undefined;
  const set = ['CA', 'CERT', 'KEY'].map((k) => `AAM_DATABASE_${k}_FILE`).filter((n) => env[n]).join(', ');
  let params: URLSearchParams;
  try { params = new URL(databaseUrl).searchParams; } catch { throw new Error('AAM_DATABASE_URL is not a URL, like postgres://aam:PASSWORD@db:5432/aam?sslmode=verify-full'); }
  const inUrl = ['sslrootcert', 'sslcert', 'sslkey'].filter((p) => params.has(p));
  if (inUrl.length) throw new Error(`AAM_DATABASE_URL names ${inUrl.join(', ')} and ${set} is set: give the files one way, the AAM_DATABASE_*_FILE variables`);
  const mode = params.get('sslmode') ?? undefined;
  if (mode !== undefined && !SSLMODES.includes(mode)) throw new Error(`AAM_DATABASE_URL has sslmode=${mode}: use verify-full, verify-ca or require`);
  if (mode === 'disable' || mode === 'allow' || mode === 'prefer') {
    throw new Error(`${set} ${set.includes(',') ? 'are' : 'is'} set but AAM_DATABASE_URL has sslmode=${mode}, which lets the connection go unencrypted: use sslmode=verify-full (or leave sslmode out)`);
  }
  if (mode === 'verify-ca') return { ...files, checkServerIdentity: () => undefined };
  // require: encrypted and, given a CA, verified like verify-full (libpq would skip the name); with no CA, unverified.
  if (mode === 'require' && !files.ca) return { ...files, rejectUnauthorized: false };
  return files;
}
