// X.509-SVID over mTLS. The server asks for a client certificate but does not abort the handshake
// when it is missing or untrusted (rejectUnauthorized: false), so the request gets a 401 that says
// why; identifyTlsPeer is the gate and requires socket.authorized (chain verified against the CA bundle).
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import { parseSpiffeId } from './spiffe-id.ts';

export type TlsPeerResult =
  | { ok: true; spiffeId: string; trustDomain: string; serial: string; fingerprint256: string }
  | { ok: false; code: 'no_tls' | 'no_certificate' | 'untrusted_certificate' | 'bad_san'; reason: string };

/**
 * SPIFFE ID from a certificate: exactly one URI SAN, and it must be a spiffe:// ID
 * (X.509-SVID spec). Returns an error message otherwise.
 */
export function spiffeIdFromPeerCertificate(cert: PeerCertificate | X509Certificate): { ok: true; spiffeId: string; trustDomain: string } | { ok: false; reason: string } {
  let x: X509Certificate;
  if (cert instanceof X509Certificate) x = cert;
  else {
    if (!cert.raw || cert.raw.length === 0) return { ok: false, reason: 'no client certificate' };
    x = new X509Certificate(cert.raw);
  }
  const san = x.subjectAltName;
  if (x.ca || basicConstraintsCa(x.raw)) return { ok: false, reason: 'a CA certificate cannot be an X.509-SVID' };
  const uris = sanEntries(san ?? '').filter((e) => e.type === 'URI').map((e) => e.value);
  if (uris.length === 0) return { ok: false, reason: 'certificate has no URI SAN (an X.509-SVID carries spiffe://trust-domain/path)' };
  if (uris.length > 1) return { ok: false, reason: `certificate has ${uris.length} URI SANs; an X.509-SVID must have exactly one` };
  const id = parseSpiffeId(uris[0]);
  if (typeof id === 'string') return { ok: false, reason: `URI SAN: ${id}` };
  return { ok: true, spiffeId: id.id, trustDomain: id.trustDomain };
}

/**
 * True when the DER certificate has basicConstraints with cA=TRUE. node:crypto's `ca` is
 * X509_check_ca, which says false for a cA=TRUE cert whose keyUsage lacks keyCertSign.
 */
export function basicConstraintsCa(der: Uint8Array): boolean {
  // OID 2.5.29.19 = 06 03 55 1d 13, then optional critical BOOLEAN, then OCTET STRING { SEQUENCE { BOOLEAN cA ... } }.
  for (let i = 0; i + 5 < der.length; i++) {
    if (der[i] !== 0x06 || der[i + 1] !== 0x03 || der[i + 2] !== 0x55 || der[i + 3] !== 0x1d || der[i + 4] !== 0x13) continue;
    let j = i + 5;
    if (der[j] === 0x01 && der[j + 1] === 0x01) j += 3; // critical flag
    if (der[j] !== 0x04) return false;
    j += 2; // short-form length: the extension is a few bytes
    if (der[j] !== 0x30) return false;
    j += 2;
    return der[j] === 0x01 && der[j + 1] === 0x01 && der[j + 2] !== 0x00;
  }
  return false;
}

/**
 * Split Node's subjectAltName rendering ("DNS:a, URI:spiffe://x, ...") into entries. Node renders
 * values containing separators as JSON strings (e.g. URI:"a, b"), which we decode.
 */
export function sanEntries(san: string): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  let i = 0;
  while (i < san.length) {
    while (san[i] === ' ' || san[i] === ',') i++;
    if (i >= san.length) break;
    const colon = san.indexOf(':', i);
    if (colon === -1) break;
    const type = san.slice(i, colon);
    let value: string;
    i = colon + 1;
    if (san[i] === '"') {
      let j = i + 1;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      try { value = JSON.parse(san.slice(i, j + 1)) as string; } catch { value = san.slice(i + 1, j); }
      i = j + 1;
    } else {
      const end = san.indexOf(', ', i);
      value = end === -1 ? san.slice(i) : san.slice(i, end);
      i = end === -1 ? san.length : end;
    }
    out.push({ type, value });
  }
  return out;
}

/** Call per request on a TLS connection. Missing/untrusted certificates get a reason, not an exception. */
export function identifyTlsPeer(socket: TLSSocket): TlsPeerResult {
  if (!socket || typeof socket.getPeerCertificate !== 'function' || !socket.encrypted) {
    return { ok: false, code: 'no_tls', reason: 'connection is not TLS' };
  }
  const cert = socket.getPeerCertificate(false);
  if (!cert || Object.keys(cert).length === 0 || !cert.raw) {
    return { ok: false, code: 'no_certificate', reason: 'no client certificate was presented' };
  }
  if (!socket.authorized) {
    const why = socket.authorizationError ? String(socket.authorizationError) : 'not verified';
    return { ok: false, code: 'untrusted_certificate', reason: `client certificate is not trusted by the configured client CA bundle (${why})` };
  }
  const id = spiffeIdFromPeerCertificate(cert);
  if (!id.ok) return { ok: false, code: 'bad_san', reason: id.reason };
  return { ok: true, spiffeId: id.spiffeId, trustDomain: id.trustDomain, serial: cert.serialNumber, fingerprint256: cert.fingerprint256 };
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** CA bundle (PEM) for client certificates; omit to serve TLS without client authentication. */
  clientCaFile?: string;
}

/** Options for https.createServer, read once at startup. Errors name the flag to fix. */
export function tlsServerOptions(files: TlsFiles): TlsOptions {
  const read = (path: string, flag: string) => {
    try { return readFileSync(path); } catch (e) {
      throw new Error(`${flag} ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  const cert = read(files.certFile, '--tls-cert');
  const key = read(files.keyFile, '--tls-key');
  const opts: TlsOptions = { cert, key, minVersion: 'TLSv1.2' };
  if (files.clientCaFile) {
    const ca = read(files.clientCaFile, '--client-ca');
    const blocks = ca.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) throw new Error(`--client-ca ${files.clientCaFile}: no PEM certificates found`);
    for (const b of blocks) {
      try { new X509Certificate(b); } catch (e) {
        throw new Error(`--client-ca ${files.clientCaFile}: invalid certificate (${(e as Error).message})`);
      }
    }
    Object.assign(opts, { ca, requestCert: true, rejectUnauthorized: false });
  }
  return opts;
}
