// X.509-SVID over mTLS. The server asks for a client certificate but does not abort the handshake
// when it is missing or untrusted (rejectUnauthorized: false), so the request gets a 401 that says
// why; identifyTlsPeer is the gate. Trust is per SPIFFE trust domain: one CA bundle per domain, and
// a certificate must chain to a CA of the domain its own SPIFFE ID names, so a CA trusted for one
// domain (a partner's) can never vouch for another domain's IDs (ours). The handshake's OpenSSL
// check runs against every bundle at once (socket.authorized); the per-domain chain check narrows it.
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';
import type { ConfigSet } from '../config/schema.ts';
import { parseSpiffeId, trustDomainOf } from './spiffe-id.ts';
import { checkedTrustDomains, pathNextToConfig } from './jwks-cache.ts';

export type TlsPeerResult =
  | { ok: true; spiffeId: string; trustDomain: string; serial: string; fingerprint256: string; /** ms */ notAfter: number }
  | { ok: false; code: 'no_tls' | 'no_certificate' | 'untrusted_certificate' | 'bad_san' | 'unknown_trust_domain'; reason: string };

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

/** The CAs that vouch for one trust domain's X.509-SVIDs. */
export interface X509Bundle {
  domain: string;
  /** Where they came from, for messages (a TrustDomain's x509_bundle_file or --client-ca). */
  source: string;
  cas: readonly X509Certificate[];
}

/** Every trust domain's bundle, as loaded from one config (+ --client-ca). */
export interface X509Trust {
  bundle(domain: string): X509Bundle | undefined;
  readonly domains: readonly string[];
  /** Every CA of every bundle, PEM: the handshake's `ca` (OpenSSL's check, and the CA names offered to clients). */
  readonly pem: string;
  /** Things an operator should know (logged at start and reload). */
  readonly warnings: readonly string[];
}

/** Most certificates a client's chain may hold besides the leaf (intermediates and a root). */
const MAX_CHAIN = 10;

/** Read a file for a flag or field; the error names which one and why. */
function readFor(path: string, what: string): Buffer {
  try { return readFileSync(path); } catch (e) {
    throw new Error(`${what} ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** PEM text -> CA certificates; errors name `what` (a flag or config field). */
export function parseCaBundle(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error(`${what}: no PEM certificates found`);
  return blocks.map((b) => {
    try { return new X509Certificate(b); } catch (e) { throw new Error(`${what}: invalid certificate (${(e as Error).message})`); }
  });
}

/** The trust domain a CA names in a spiffe:// URI SAN (SPIRE's CAs do); such a CA vouches for that domain only. */
export function caTrustDomain(ca: X509Certificate): string | undefined {
  const uri = sanEntries(ca.subjectAltName ?? '').find((e) => e.type === 'URI' && e.value.startsWith('spiffe://'));
  return uri ? trustDomainOf(uri.value) : undefined;
}

const describe = (ca: X509Certificate) => `CA "${ca.subject.replace(/\n/g, ', ')}" (sha256 ${ca.fingerprint256.slice(0, 23)}...)`;

/**
 * One CA bundle per trust domain: a TrustDomain's `x509_bundle_file`, and `--client-ca` for the
 * local trust domains, i.e. those of the config's Agents that have no bundle of their own. A CA in
 * two sources, or a CA naming another trust domain in a TrustDomain's bundle, is a load error.
 */
export function loadX509Trust(config: Pick<ConfigSet, 'trustDomains' | 'agents'>, clientCaFile?: string): X509Trust {
  const bundles = new Map<string, X509Bundle>();
  const warnings: string[] = [];
  const owner = new Map<string, string>(); // CA fingerprint -> source, to refuse a CA shared by two sources
  const claim = (cas: X509Certificate[], source: string) => {
    for (const ca of cas) {
      const other = owner.get(ca.fingerprint256);
      if (other && other !== source) throw new Error(`${describe(ca)} is in ${other} and in ${source}: a CA may vouch for one trust domain only; keep one bundle per trust domain`);
      owner.set(ca.fingerprint256, source);
    }
  };
  for (const r of checkedTrustDomains(config)) {
    if (!r.spec.x509_bundle_file) continue;
    const path = pathNextToConfig(r.file, r.spec.x509_bundle_file);
    const source = `TrustDomain "${r.name}" x509_bundle_file ${path}`;
    const cas = parseCaBundle(readFor(path, `${r.file} (document ${r.index + 1}): TrustDomain "${r.name}": spec.x509_bundle_file`).toString('utf8'), source);
    for (const ca of cas) {
      const named = caTrustDomain(ca);
      if (named && named !== r.name) throw new Error(`${source}: ${describe(ca)} is the CA of trust domain "${named}", not "${r.name}"`);
    }
    claim(cas, source);
    bundles.set(r.name, { domain: r.name, source, cas });
  }
  if (clientCaFile) {
    const source = `--client-ca ${clientCaFile}`;
    const cas = parseCaBundle(readFor(clientCaFile, '--client-ca').toString('utf8'), source);
    claim(cas, source);
    const local = new Set<string>();
    for (const a of config.agents.values()) {
      const td = trustDomainOf(a.spec.workload);
      if (td && !bundles.has(td)) local.add(td);
    }
    for (const domain of local) {
      // A CA that names its trust domain vouches for that one only, even inside --client-ca.
      const own = cas.filter((ca) => { const named = caTrustDomain(ca); return named === undefined || named === domain; });
      if (own.length) bundles.set(domain, { domain, source, cas: own });
    }
    if (local.size === 0) warnings.push(`${source} vouches for no trust domain: no Agent's trust domain is without an x509_bundle_file of its own`);
    const unnamed = cas.filter((ca) => caTrustDomain(ca) === undefined).length;
    if (local.size > 1 && unnamed > 1) {
      warnings.push(`${source} holds ${unnamed} CAs and vouches for trust domains ${[...local].sort().join(', ')}: any of its CAs can vouch for any of them; give each domain its own TrustDomain x509_bundle_file`);
    }
  }
  const used = [...new Set([...bundles.values()].flatMap((b) => b.cas))];
  return Object.freeze({
    bundle: (domain: string) => bundles.get(domain),
    domains: Object.freeze([...bundles.keys()].sort()),
    pem: used.map((ca) => ca.toString()).join('\n'),
    warnings: Object.freeze(warnings),
  });
}

/**
 * Why `leaf` does not chain to one of `anchors` through the client's intermediates (`pool`),
 * checking each link's signature, that every issuer is a CA, and validity at `now`; undefined when
 * it does. Every certificate of a domain's bundle is an anchor here (the handshake has already
 * checked the full path to a self-signed root), so an intermediate CA listed in the bundle works
 * even when the client's own intermediates are not visible (server-side Node does not expose them).
 */
export function chainProblem(leaf: X509Certificate, pool: readonly X509Certificate[], anchors: readonly X509Certificate[], now: number): string | undefined {
  const valid = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
  const isCa = (c: X509Certificate) => c.ca || basicConstraintsCa(c.raw);
  const signs = (issuer: X509Certificate, c: X509Certificate) => isCa(issuer) && valid(issuer) && c.checkIssued(issuer) && c.verify(issuer.publicKey);
  if (!valid(leaf)) return 'the certificate is outside its validity period';
  if (pool.length > MAX_CHAIN) return `its chain has more than ${MAX_CHAIN} certificates`;
  // Each intermediate is followed at most once (if it did not reach a root, it never will): bounded work.
  const followed = new Set<X509Certificate>();
  const reaches = (c: X509Certificate): boolean => anchors.some((r) => signs(r, c))
    || pool.some((p) => !followed.has(p) && signs(p, c) && (followed.add(p), reaches(p)));
  if (reaches(leaf)) return undefined;
  return `it does not chain to a CA of that trust domain (its issuer is "${leaf.issuer.replace(/\n/g, ', ')}"; an intermediate CA that signs SVIDs must be in the bundle file too)`;
}

/** The leaf and the rest of the chain the client sent, as far as Node exposes it (server-side Node 24 does not). */
function peerChain(socket: TLSSocket): { leaf: PeerCertificate; pool: X509Certificate[] } | undefined {
  const leaf = socket.getPeerCertificate(true);
  if (!leaf || !leaf.raw) return undefined;
  const pool: X509Certificate[] = [];
  const seen = new Set([leaf.fingerprint256]);
  for (let c = leaf.issuerCertificate; c?.raw && !seen.has(c.fingerprint256) && pool.length <= MAX_CHAIN; c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    pool.push(new X509Certificate(c.raw));
  }
  return { leaf, pool };
}

/**
 * Identify the TLS peer: a certificate the handshake verified against the union of the bundles,
 * with exactly one spiffe:// URI SAN, that chains to a CA of the trust domain that ID names.
 * Missing/untrusted certificates get a reason, not an exception.
 */
export function identifyTlsPeer(socket: TLSSocket, trust: X509Trust, now = Date.now()): TlsPeerResult {
  if (!socket || typeof socket.getPeerCertificate !== 'function' || !socket.encrypted) {
    return { ok: false, code: 'no_tls', reason: 'connection is not TLS' };
  }
  const chain = peerChain(socket);
  if (!chain) return { ok: false, code: 'no_certificate', reason: 'no client certificate was presented' };
  if (!socket.authorized) {
    const why = socket.authorizationError ? String(socket.authorizationError) : 'not verified';
    return { ok: false, code: 'untrusted_certificate', reason: `client certificate is not trusted by any configured X.509 bundle (${why})` };
  }
  const leaf = new X509Certificate(chain.leaf.raw);
  const id = spiffeIdFromPeerCertificate(leaf);
  if (!id.ok) return { ok: false, code: 'bad_san', reason: id.reason };
  const bundle = trust.bundle(id.trustDomain);
  if (!bundle) {
    return { ok: false, code: 'unknown_trust_domain', reason: `${id.spiffeId}: trust domain "${id.trustDomain}" has no X.509 bundle (add a TrustDomain "${id.trustDomain}" with x509_bundle_file${trust.domains.length ? `; bundles exist for ${trust.domains.join(', ')}` : ''})` };
  }
  const problem = chainProblem(leaf, chain.pool, bundle.cas, now);
  if (problem) {
    return { ok: false, code: 'untrusted_certificate', reason: `${id.spiffeId} is not vouched for by trust domain "${id.trustDomain}" (${bundle.source}): ${problem}; a CA of another trust domain cannot vouch for it` };
  }
  return { ok: true, spiffeId: id.spiffeId, trustDomain: id.trustDomain, serial: chain.leaf.serialNumber, fingerprint256: chain.leaf.fingerprint256, notAfter: Date.parse(leaf.validTo) };
}

/** Logger subset used to report bundle problems (pino-compatible). */
export interface TrustLog {
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/** The mTLS gate of a running server: per-connection results, and bundles that follow config reloads. */
export interface Mtls {
  /** Per request; the result is computed once per connection and bundle set (a success until the certificate expires). */
  identify(socket: TLSSocket): TlsPeerResult;
  /** Re-read every bundle (config reload, SIGHUP); on an error the previous bundles stay and it is logged. */
  reload(config: Pick<ConfigSet, 'trustDomains' | 'agents'>): void;
  readonly trust: X509Trust;
}

/**
 * `onTrust` is told every new bundle set (the server swaps its TLS context so the handshake
 * verifies against it); `trust` is the set already loaded at start (its errors refuse the start,
 * its warnings are the caller's to log).
 */
export function createMtls(o: { trust: X509Trust; clientCaFile?: string; log: TrustLog; onTrust(t: X509Trust): void }): Mtls {
  let trust = o.trust;
  const seen = new WeakMap<TLSSocket, { trust: X509Trust; result: TlsPeerResult; notAfter: number }>();
  return {
    get trust() { return trust; },
    identify(socket) {
      const now = Date.now();
      const hit = seen.get(socket);
      if (hit && hit.trust === trust && now <= hit.notAfter) return hit.result;
      const result = identifyTlsPeer(socket, trust, now);
      // A connection's certificate cannot change, so a refusal holds for the connection too.
      seen.set(socket, { trust, result, notAfter: result.ok ? result.notAfter : Infinity });
      return result;
    },
    reload(config) {
      let next: X509Trust;
      try { next = loadX509Trust(config, o.clientCaFile); } catch (e) {
        o.log.error({ event: 'x509_bundle_reload_failed', error: (e as Error).message }, 'X.509 bundles not reloaded; the previous ones stay in use');
        return;
      }
      if (next.warnings.join('\n') !== trust.warnings.join('\n')) for (const w of next.warnings) o.log.warn({ event: 'x509_bundle_warning' }, w);
      if (next.pem !== trust.pem) o.onTrust(next);
      trust = next;
    },
  };
}

export interface TlsFiles {
  certFile: string;
  keyFile: string;
}

/**
 * Options for https.createServer, read once at startup. Errors name the flag to fix. With X.509
 * bundles, client certificates are requested (not required) and verified against all of them.
 */
export function tlsServerOptions(files: TlsFiles, trust?: X509Trust): TlsOptions {
  const cert = readFor(files.certFile, '--tls-cert');
  const key = readFor(files.keyFile, '--tls-key');
  const opts: TlsOptions = { cert, key, minVersion: 'TLSv1.2' };
  if (trust && trust.pem) Object.assign(opts, { ca: trust.pem, requestCert: true, rejectUnauthorized: false });
  return opts;
}
