// JWT-SVID verification. The key is chosen by who the token claims to be: aam's own issuer when
// iss is aam's, otherwise the JWKS of the trust domain in `sub`. So a token signed by trust domain A
// that claims a SPIFFE ID in domain B finds no key and is rejected (forged SPIFFE ID).
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import { jose } from '../lib/jose.ts';
import type { KeyObject } from 'node:crypto';
import { createJwksCache, DEFAULT_MAX_TOKEN_SECONDS, type JwksCache, type JwksCacheOptions, type KeyEntry, type TrustDomainSource } from './jwks-cache.ts';
import { parseSpiffeId } from './spiffe-id.ts';
import type { Issuer } from './issuer.ts';

export const DEFAULT_ALGORITHMS = ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const;
/** Never accepted, whatever the caller configures: unsigned and shared-secret algorithms. */
const FORBIDDEN = /^(none|HS\d+)$/i;
const MAX_TOKEN_LENGTH = 8192;
const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export type VerifyFailureCode =
  | 'malformed' | 'alg_not_allowed' | 'bad_signature' | 'expired' | 'not_yet_valid' | 'bad_audience'
  | 'bad_subject' | 'unknown_trust_domain' | 'unknown_agent' | 'revoked' | 'jwks_unavailable' | 'wrong_type' | 'too_long_lived';

export interface VerifiedSvid {
  ok: true;
  spiffeId: string;
  trustDomain: string;
  /** 'aam' for aam's own issuer, otherwise the TrustDomain resource name. */
  verifiedBy: string;
  kid: string;
  jti?: string;
  /** Virtual-key id the token was exchanged for (aam-issued tokens only; claim aam_key). */
  keyId?: string;
  /** Which secret of that key it was exchanged for (claim aam_key_gen). */
  keyGeneration?: string;
  /** Seconds since epoch. */
  expiresAt: number;
  claims: JWTPayload;
}

export interface VerifyFailure {
  ok: false;
  code: VerifyFailureCode;
  message: string;
  /** 503 when keys could not be loaded (fail closed, retry later); 401 for a bad token. */
  status: 401 | 503;
}

export interface JwtVerifierOptions {
  /** aam's own issuer; its tokens are trusted for every agent registered in the config. */
  issuer?: Pick<Issuer, 'issuer' | 'publicKey'>;
  /** Decides which SPIFFE IDs aam's own issuer may vouch for (current registry, read per call). */
  isRegisteredAgent: (spiffeId: string) => boolean;
  /**
   * For aam-issued tokens obtained by exchanging a virtual key (claims aam_key, aam_key_gen): why
   * the secret it was minted from no longer authenticates (revoked, expired, rotated past grace),
   * or undefined while it does. Checked on every use, cached or not. When omitted, the caller must
   * check result.keyId / keyGeneration itself.
   */
  keyProblem?: (keyId: string, generation: string | undefined) => string | undefined;
  trustDomains: TrustDomainSource[];
  /** Accepted audiences; a token must name at least one (per-trust-domain `audience` overrides). */
  audience: string[];
  clockSkewSeconds?: number;
  algorithms?: readonly string[];
  now?: () => number;
  jwks?: Omit<JwksCacheOptions, 'now'>;
  /** Verified tokens remembered (re-checked cheaply on reuse); 0 disables. Default 10,000. */
  cacheSize?: number;
}

export interface JwtVerifier {
  /**
   * `resource`: the absolute URL of the route the token is presented to (RFC 8707). A token whose
   * audience is that URL is accepted there, and only there; the gateway's own audiences stay valid everywhere.
   */
  verify(token: string, resource?: string): Promise<VerifiedSvid | VerifyFailure>;
  /** Swap the trust domains (config reload); caches of unchanged domains are kept. */
  update(trustDomains: TrustDomainSource[]): void;
  /** Load every trust domain's JWKS now (startup); returns the problems found. */
  warm(): Promise<string[]>;
}

/** Cheap check used to route a bearer token: JWT-shaped (virtual keys start with aam_). */
export function looksLikeJwt(bearer: string): boolean {
  return bearer.length <= MAX_TOKEN_LENGTH && JWT_SHAPE.test(bearer);
}

const fail = (code: VerifyFailureCode, message: string): VerifyFailure => ({ ok: false, code, message, status: code === 'jwks_unavailable' ? 503 : 401 });

export function createJwtVerifier(opts: JwtVerifierOptions): JwtVerifier {
  const now = opts.now ?? Date.now;
  const skew = opts.clockSkewSeconds ?? 30;
  const algorithms = new Set((opts.algorithms ?? DEFAULT_ALGORITHMS).filter((a) => !FORBIDDEN.test(a)));
  if (opts.audience.length === 0) throw new Error('JWT verifier needs at least one audience');
  let domains = new Map<string, JwksCache>();
  // Verified-token cache: agents reuse one JWT for many requests, and ECDSA verify costs ~200 us.
  // A hit re-runs the cheap checks (time, agent registered, key still published/active).
  const cacheMax = opts.cacheSize ?? 10_000;
  const verified = new Map<string, { result: VerifiedSvid; until: number; stillValid: () => boolean }>();

  const update = (list: TrustDomainSource[]) => {
    const next = new Map<string, JwksCache>();
    for (const src of list) {
      const prev = domains.get(src.name);
      const same = prev && prev.source.jwksUrl === src.jwksUrl && prev.source.jwksFile === src.jwksFile
        && prev.source.refreshSeconds === src.refreshSeconds && prev.source.absentKidSeconds === src.absentKidSeconds && prev.source.audience === src.audience
        && prev.source.maxTokenSeconds === src.maxTokenSeconds;
      next.set(src.name, same ? prev : createJwksCache(src, { ...opts.jwks, now }));
    }
    domains = next; // atomic swap: in-flight verifications keep the map they started with
    verified.clear();
  };
  update(opts.trustDomains);

  /** Diagnostic only: which other trust domain's cached JWKS holds this kid. */
  const ownerOf = (kid: string, except: string) => [...domains.values()].find((c) => c.source.name !== except && c.peek(kid))?.source.name;

  async function verify(token: string, resource?: string): Promise<VerifiedSvid | VerifyFailure> {
    // Keyed by route too: a token verified for one route's audience says nothing about another route.
    const cacheKey = resource === undefined ? token : `${resource}\n${token}`;
    const hit = verified.get(cacheKey);
    if (hit) {
      if (now() < hit.until && hit.stillValid()) return hit.result;
      verified.delete(cacheKey);
    }
    const r = await verifyUncached(token, resource);
    if (!r.ok || cacheMax <= 0) return r.ok ? r.result : r;
    if (verified.size >= cacheMax) verified.delete(verified.keys().next().value as string); // oldest first
    verified.set(cacheKey, { result: r.result, until: r.until, stillValid: r.stillValid });
    return r.result;
  }

  type Uncached = { ok: true; result: VerifiedSvid; until: number; stillValid: () => boolean } | VerifyFailure;

  async function verifyUncached(token: string, resource: string | undefined): Promise<Uncached> {
    if (typeof token !== 'string' || !looksLikeJwt(token)) return fail('malformed', 'not a compact JWS (header.payload.signature)');
    let header: ProtectedHeaderParameters;
    let claims: JWTPayload;
    try {
      header = jose().decodeProtectedHeader(token);
      claims = jose().decodeJwt(token);
    } catch (e) {
      return fail('malformed', `cannot decode token: ${(e as Error).message}`);
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || !algorithms.has(alg)) return fail('alg_not_allowed', `alg "${String(alg)}" is not allowed (allowed: ${[...algorithms].join(', ')})`);
    if (typeof header.kid !== 'string' || !header.kid) return fail('malformed', 'JWT-SVID header has no kid');
    // SPIFFE JWT-SVID: typ, when present, is JWT or JOSE. Other typed tokens (aam's on-behalf-of
    // assertions, OAuth access tokens) are never accepted as an identity.
    if (header.typ !== undefined && !/^(application\/)?(jwt|jose)$/i.test(String(header.typ))) {
      return fail('wrong_type', `token typ "${String(header.typ)}" is not a JWT-SVID (JWT or JOSE)`);
    }
    if (typeof claims.sub !== 'string') return fail('bad_subject', 'token has no sub (SPIFFE ID)');
    const id = parseSpiffeId(claims.sub);
    if (typeof id === 'string') return fail('bad_subject', `sub: ${id}`);

    let key: KeyEntry | { key: KeyObject; alg?: string; type: string; curve?: string; modulusLength?: number };
    let audience = opts.audience;
    let verifiedBy: string;
    let domain: JwksCache | undefined;
    if (opts.issuer && claims.iss === opts.issuer.issuer) {
      const k = opts.issuer.publicKey(header.kid);
      if (!k) return fail('bad_signature', `key "${header.kid}" is not an active aam issuer key (rotated out or forged)`);
      key = { key: k, type: k.asymmetricKeyType ?? 'unknown', alg: 'ES256', curve: k.asymmetricKeyDetails?.namedCurve };
      verifiedBy = 'aam';
    } else {
      const cache = domains.get(id.trustDomain);
      if (!cache) return fail('unknown_trust_domain', `trust domain "${id.trustDomain}" has no JWT-SVID keys configured (a TrustDomain resource with jwks_url or jwks_file)`);
      const found = await cache.lookup(header.kid);
      if (!found.ok) {
        if (found.code === 'jwks_unavailable') return fail('jwks_unavailable', found.message);
        const other = ownerOf(header.kid, id.trustDomain);
        return fail('bad_signature', other
          ? `token is signed with a key of trust domain "${other}" but claims ${claims.sub}: forged SPIFFE ID`
          : found.message);
      }
      key = found.key;
      domain = cache;
      if (cache.source.audience) audience = [cache.source.audience];
      verifiedBy = cache.source.name;
    }
    const mismatch = keyMismatch(alg, key);
    if (mismatch) return fail('alg_not_allowed', mismatch);

    try {
      const res = await jose().jwtVerify(token, key.key, {
        algorithms: [alg],
        audience: resource === undefined ? audience : [...audience, resource],
        clockTolerance: skew,
        currentDate: new Date(now()),
        requiredClaims: ['exp', 'sub', 'aud'],
      });
      claims = res.payload;
    } catch (e) {
      return mapJoseError(e, audience, resource);
    }
    if (typeof claims.iat === 'number' && claims.iat > now() / 1000 + skew) return fail('not_yet_valid', 'iat is in the future');
    if (domain) {
      const long = lifetimeProblem(claims, domain.source);
      if (long) return fail('too_long_lived', long);
    }
    if (verifiedBy === 'aam' && !opts.isRegisteredAgent(id.id)) {
      return fail('unknown_agent', `${id.id} is not a registered Agent (removed from the config?)`);
    }
    const keyId = verifiedBy === 'aam' && typeof claims.aam_key === 'string' ? claims.aam_key : undefined;
    const keyGeneration = keyId !== undefined && typeof claims.aam_key_gen === 'string' ? claims.aam_key_gen : undefined;
    const keyProblem = () => (keyId === undefined || !opts.keyProblem ? undefined : opts.keyProblem(keyId, keyGeneration));
    const problem = keyProblem();
    if (problem) return fail('revoked', `this token was minted from a virtual key that no longer authenticates: ${problem}`);
    const kid = header.kid;
    // Frozen: a cached result is shared by every request that presents the same token.
    const result: VerifiedSvid = Object.freeze({
      ok: true as const, spiffeId: id.id, trustDomain: id.trustDomain, verifiedBy, kid,
      ...(typeof claims.jti === 'string' ? { jti: claims.jti } : {}),
      ...(keyId !== undefined ? { keyId } : {}),
      ...(keyGeneration !== undefined ? { keyGeneration } : {}),
      expiresAt: claims.exp as number, claims: Object.freeze(claims),
    });
    const expiry = ((claims.exp as number) + skew) * 1000;
    if (domain) {
      // External keys: re-verify at least once per JWKS refresh period, and only while the key is still published.
      const dom = domain;
      const entry = key;
      return { ok: true, result, until: Math.min(expiry, now() + dom.source.refreshSeconds * 1000), stillValid: () => domains.get(id.trustDomain) === dom && dom.peek(kid) === entry };
    }
    const issuer = opts.issuer!;
    return {
      ok: true, result, until: expiry,
      stillValid: () => issuer.publicKey(kid) !== undefined && opts.isRegisteredAgent(id.id) && keyProblem() === undefined,
    };
  }

  return {
    verify,
    update,
    async warm() {
      const errors = await Promise.all([...domains.values()].map((c) => c.refresh()));
      return errors.filter((e): e is string => e !== undefined);
    },
  };
}

/**
 * Why a token of an external trust domain lives too long to accept, or undefined: a leaked
 * long-lived token stays usable until its exp. exp - iat is bounded, and iat is never in the
 * future (checked before), so exp - now is bounded by the same plus the clock skew; without iat
 * the lifetime is unknown.
 */
export function lifetimeProblem(claims: JWTPayload, domain: Pick<TrustDomainSource, 'name' | 'maxTokenSeconds'>): string | undefined {
  const max = domain.maxTokenSeconds ?? DEFAULT_MAX_TOKEN_SECONDS;
  const bound = `trust domain "${domain.name}" accepts JWT-SVIDs of at most ${max} s (TrustDomain max_token_seconds)`;
  if (typeof claims.iat !== 'number') return `token has no iat, so its lifetime is unknown; ${bound}`;
  const lives = (claims.exp as number) - claims.iat;
  return lives > max ? `token lives ${lives} s (exp - iat); ${bound}` : undefined;
}

/** The alg must fit the key: stops RSA/EC/EdDSA confusion and weak RSA keys. */
function keyMismatch(alg: string, k: { type: string; curve?: string; modulusLength?: number; alg?: string }): string | undefined {
  if (k.alg && k.alg !== alg) return `token alg ${alg} does not match the key's alg ${k.alg}`;
  const ok = (() => {
    switch (alg) {
      case 'ES256': return k.type === 'ec' && k.curve === 'prime256v1';
      case 'ES384': return k.type === 'ec' && k.curve === 'secp384r1';
      case 'ES512': return k.type === 'ec' && k.curve === 'secp521r1';
      case 'RS256': case 'RS384': case 'RS512': return k.type === 'rsa' && (k.modulusLength ?? 0) >= 2048;
      case 'PS256': case 'PS384': case 'PS512': return (k.type === 'rsa' || k.type === 'rsa-pss') && (k.modulusLength ?? 0) >= 2048;
      case 'EdDSA': case 'Ed25519': return k.type === 'ed25519' || k.type === 'ed448';
      default: return false;
    }
  })();
  return ok ? undefined : `token alg ${alg} does not match the key type (${k.type}${k.curve ? ' ' + k.curve : ''}${k.modulusLength ? ' ' + k.modulusLength + ' bits' : ''})`;
}

function mapJoseError(e: unknown, audience: readonly string[], resource: string | undefined): VerifyFailure {
  const err = e as { code?: string; claim?: string; message?: string };
  const msg = err.message ?? String(e);
  switch (err.code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return fail('bad_signature', 'signature does not verify');
    case 'ERR_JWT_EXPIRED': return fail('expired', 'token has expired');
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return fail('alg_not_allowed', msg);
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (err.claim === 'aud') {
        return fail('bad_audience', resource === undefined
          ? `aud does not include this gateway's audience (${audience.join(', ')})`
          : `aud names neither this gateway (${audience.join(', ')}) nor this route (${resource}); a token for another route is not accepted here: get one with "resource": "${resource}" (RFC 8707)`);
      }
      if (err.claim === 'nbf' || err.claim === 'iat') return fail('not_yet_valid', `token is not valid yet (${err.claim})`);
      return fail('malformed', msg);
    default: return fail('malformed', msg);
  }
}
