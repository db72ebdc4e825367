// An independent AWS SigV4 verifier for fake upstreams, written from the AWS specification with
// node:crypto only (it must not share code with the signer it checks): it rebuilds the canonical
// request and the signature from the known secret and compares.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;

export type Verified = { ok: true; accessKeyId: string; region: string; service: string; signedHeaders: string[] } | { ok: false; reason: string };

const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');
const hmac = (k: string | Buffer, s: string): Buffer => createHmac('sha256', k).update(s).digest();

/** RFC 3986 unreserved characters stay, everything else is %XX (uppercase). */
function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Non-S3 services: each path segment is encoded again, as received (already encoded once). */
function canonicalUri(rawPath: string): string {
  return rawPath.split('/').map(uriEncode).join('/') || '/';
}

function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  const pairs = [...new URLSearchParams(rawQuery)].map(([k, v]) => [uriEncode(k), uriEncode(v)]);
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join('&');
}

export function verifySigV4(
  req: { method: string; url: string; headers: IncomingHttpHeaders; body: string | Buffer },
  secrets: ReadonlyMap<string, string>,
  expect: { region: string; service: string },
): Verified {
  const m = AUTH.exec(String(req.headers.authorization ?? ''));
  if (!m) return { ok: false, reason: 'no AWS4-HMAC-SHA256 authorization header' };
  const [, keyId, day, region, service, signed, signature] = m;
  const secret = secrets.get(keyId);
  if (secret === undefined) return { ok: false, reason: `unknown access key ${keyId}` };
  if (region !== expect.region || service !== expect.service) return { ok: false, reason: `scope ${region}/${service}, expected ${expect.region}/${expect.service}` };
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  if (!amzDate.startsWith(day)) return { ok: false, reason: 'x-amz-date does not match the credential scope date' };
  const names = signed.split(';');
  if (!names.includes('host') || !names.includes('x-amz-date')) return { ok: false, reason: 'host and x-amz-date must be signed' };
  const headerLines = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? '' : req.url.slice(q + 1);
  // The signature covers the body through its hash; a stated hash must be the body's.
  const payloadHash = sha256(req.body);
  const stated = req.headers['x-amz-content-sha256'];
  if (stated !== undefined && stated !== payloadHash) return { ok: false, reason: 'x-amz-content-sha256 does not match the body' };
  const canonical = [req.method, canonicalUri(path), canonicalQuery(query), headerLines, signed, payloadHash].join('\n');
  const scope = `${day}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request');
  const want = createHmac('sha256', key).update(toSign).digest();
  const got = Buffer.from(signature, 'hex');
  if (!timingSafeEqual(want, got)) return { ok: false, reason: 'signature mismatch' };
  return { ok: true, accessKeyId: keyId, region, service, signedHeaders: names };
}
