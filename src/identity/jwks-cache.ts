// Per-trust-domain JWKS cache: keys imported once per fetch, served from memory on the request path.
// Stale keys are used while a background refresh runs (bounded by maxStaleSeconds); an unknown kid
// triggers one rate-limited refetch (key rotation); no keys at all fails closed (jwks_unavailable).
// A kid seen while the limiter is closed waits for the fetch that ends its window instead of being
// refused, so tokens with random kids (a "kid storm") cannot delay a real rotation past one window.
// A kid a fetch showed absent is refused at once for a while (one junk kid repeated costs no fetch
// per window). A refresh honours HTTP caching: If-None-Match with the last ETag (304: the keys are
// kept, not parsed again), and the publisher's Cache-Control max-age, within bounds, in place of
// refresh_seconds.
import { readFile } from 'node:fs/promises';
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { ConfigSet, Resource, TrustDomainSpec } from '../config/schema.ts';

export interface TrustDomainSource {
  /** Trust domain name, e.g. "prod" (matches spiffe://prod/...). */
  name: string;
  jwksUrl?: string;
  /** Absolute path. */
  jwksFile?: string;
  refreshSeconds: number;
  /** How long a kid a fetch showed absent is refused without another fetch (TrustDomain absent_kid_seconds, default DEFAULT_ABSENT_KID_SECONDS). */
  absentKidSeconds?: number;
  audience?: string;
  /** Longest token lifetime accepted (exp - iat, and exp - now); default DEFAULT_MAX_TOKEN_SECONDS. */
  maxTokenSeconds?: number;
}

export interface KeyEntry {
  kid: string;
  key: KeyObject;
  /** node:crypto asymmetricKeyType: ec, rsa, rsa-pss, ed25519, ed448. */
  type: string;
  /** EC curve (prime256v1, secp384r1) when type is ec. */
  curve?: string;
  modulusLength?: number;
  /** `alg` from the JWK, when the publisher pinned one. */
  alg?: string;
}

export type KeyLookup =
  | { ok: true; key: KeyEntry }
  | { ok: false; code: 'unknown_kid' | 'jwks_unavailable'; message: string };

export interface JwksCacheOptions {
  now?: () => number;
  fetch?: typeof fetch;
  /** Minimum gap between fetches after a failure (default 10 s). */
  minRefetchSeconds?: number;
  /** Minimum gap between fetches caused by unknown kids while the JWKS loads fine (default 1000 ms). */
  kidRefetchMs?: number;
  /** How long keys may be used after a failed refresh before failing closed (default 3600 s). */
  maxStaleSeconds?: number;
  timeoutMs?: number;
}

export interface JwksCache {
  readonly source: TrustDomainSource;
  lookup(kid: string): Promise<KeyLookup>;
  /** Keys currently cached (no fetch). */
  peek(kid: string): KeyEntry | undefined;
  /** Fetch now; resolves to an error message or undefined on success. */
  refresh(): Promise<string | undefined>;
  status(): { loadedAt?: number; keys: number; lastError?: string };
}

export const DEFAULT_REFRESH_SECONDS = 300;
/** One junk kid sent over and over costs one fetch a minute, and a kid a publisher adds late is found within one. */
export const DEFAULT_ABSENT_KID_SECONDS = 60;
/** SPIRE mints JWT-SVIDs for 5 min by default: an hour leaves room, a 10-year token is refused. */
export const DEFAULT_MAX_TOKEN_SECONDS = 3600;
const MAX_BYTES = 1 << 20;
const MAX_KEYS = 100;
/** A publisher's Cache-Control max-age is honoured within these (a shorter one would hammer it; a longer one keeps a removed key trusted). */
export const MAX_AGE_BOUNDS_SECONDS = [30, 3600] as const;
/** Kids remembered absent at most (past it the oldest is forgotten: a storm of distinct kids is the fetch limiter's). */
const MAX_ABSENT = 10_000;

/** What a fetch of the JWKS URL brought: its text (null: 304, the keys held are current), its ETag, its max-age. */
interface Fetched { text: string | null; etag?: string; maxAgeSeconds?: number }

/** A path from a config file, resolved against that file's directory when relative. */
export function pathNextToConfig(configFile: string, path: string): string {
  return isAbsolute(path) ? path : resolve(dirname(configFile), path);
}

/** TrustDomain resources, refused when a name is not a SPIFFE trust domain. */
export function checkedTrustDomains(config: Pick<ConfigSet, 'trustDomains'>): Array<Resource<TrustDomainSpec>> {
  const bad = [...config.trustDomains.values()].filter((r) => !/^[a-z0-9._-]+$/.test(r.name));
  if (bad.length) {
    throw new Error(bad.map((r) => `${r.file} (document ${r.index + 1}): TrustDomain "${r.name}": metadata.name must be a SPIFFE trust domain (lowercase letters, digits, ".", "-", "_")`).join('\n'));
  }
  return [...config.trustDomains.values()];
}

/** TrustDomain resources with JWT-SVID keys -> sources, with jwks_file resolved against the config file's directory. */
export function trustDomainsFromConfig(config: Pick<ConfigSet, 'trustDomains'>): TrustDomainSource[] {
  return checkedTrustDomains(config).filter((r) => r.spec.jwks_url || r.spec.jwks_file).map((r) => ({
    name: r.name,
    ...(r.spec.jwks_url ? { jwksUrl: r.spec.jwks_url } : {}),
    ...(r.spec.jwks_file ? { jwksFile: pathNextToConfig(r.file, r.spec.jwks_file) } : {}),
    refreshSeconds: r.spec.refresh_seconds ?? DEFAULT_REFRESH_SECONDS,
    absentKidSeconds: r.spec.absent_kid_seconds ?? DEFAULT_ABSENT_KID_SECONDS,
    ...(r.spec.audience ? { audience: r.spec.audience } : {}),
    maxTokenSeconds: r.spec.max_token_seconds ?? DEFAULT_MAX_TOKEN_SECONDS,
  }));
}

export function createJwksCache(source: TrustDomainSource, opts: JwksCacheOptions = {}): JwksCache {
  const now = opts.now ?? Date.now;
  const minGap = (opts.minRefetchSeconds ?? 10) * 1000;
  const kidGap = opts.kidRefetchMs ?? 1000;
  const maxStale = (opts.maxStaleSeconds ?? 3600) * 1000;
  const doFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 5000;
  let keys: Map<string, KeyEntry> | undefined;
  let loadedAt: number | undefined;
  let lastAttempt = -Infinity;
  let lastError: string | undefined;
  let inflight: Promise<string | undefined> | undefined;
  /** The fetch at the end of the unknown-kid window, shared by every kid that waits for it. */
  let next: Promise<string | undefined> | undefined;
  /** The keys' ETag (sent as If-None-Match) and how long they are fresh (the publisher's max-age, bounded, or refresh_seconds). */
  let etag: string | undefined;
  let ttl = source.refreshSeconds * 1000;
  const absentFor = (source.absentKidSeconds ?? DEFAULT_ABSENT_KID_SECONDS) * 1000;
  /** Kid -> until when it is refused without a fetch (a fetch showed it absent). */
  const absent = new Map<string, number>();

  const load = async (): Promise<Fetched> => {
    const got = source.jwksUrl ? await fetchText(source.jwksUrl, doFetch, timeoutMs, keys ? etag : undefined) : { text: await readFile(source.jwksFile!, 'utf8') };
    if (got.text !== null && got.text.length > MAX_BYTES) throw new Error(`JWKS larger than ${MAX_BYTES} bytes`);
    return got;
  };

  const refresh = (): Promise<string | undefined> => {
    inflight ??= (async () => {
      lastAttempt = now();
      try {
        const got = await load();
        if (got.text !== null) keys = parseJwks(got.text);
        etag = got.etag;
        ttl = got.maxAgeSeconds === undefined ? source.refreshSeconds * 1000
          : Math.min(Math.max(got.maxAgeSeconds, MAX_AGE_BOUNDS_SECONDS[0]), MAX_AGE_BOUNDS_SECONDS[1]) * 1000;
        loadedAt = now();
        lastError = undefined;
        return undefined;
      } catch (e) {
        lastError = `trust domain "${source.name}": cannot load JWKS from ${source.jwksUrl ?? source.jwksFile}: ${(e as Error).message}`;
        return lastError;
      } finally {
        inflight = undefined;
      }
    })();
    return inflight;
  };

  /**
   * The fetch an unknown kid waits for: the one in flight, one now, or the one that ends the
   * window (at most one per kidGap: a storm of junk kids costs the publisher one fetch per
   * window, and a genuine new kid waits at most that long). Undefined after a failure while the
   * longer failure gap runs (the publisher is not hammered; the kid is refused at once).
   */
  const fetchForKid = (): Promise<string | undefined> | undefined => {
    if (inflight) return inflight;
    const wait = lastAttempt + (lastError === undefined ? kidGap : minGap) - now();
    if (wait <= 0) return refresh();
    if (lastError !== undefined) return undefined;
    // Never longer than one window, even when the clock stepped back.
    next ??= new Promise<void>((r) => { setTimeout(r, Math.min(wait, kidGap)).unref(); }).then(() => { next = undefined; return inflight ?? refresh(); });
    return next;
  };

  /** `kid` was not in the keys a fetch brought: refused without another fetch for absentFor. */
  const noteAbsent = (kid: string): void => {
    absent.delete(kid);
    if (absent.size >= MAX_ABSENT) absent.delete(absent.keys().next().value!);
    absent.set(kid, now() + absentFor);
  };

  const unavailable = (why: string | undefined): KeyLookup => ({ ok: false, code: 'jwks_unavailable', message: why ?? `trust domain "${source.name}": JWKS not loaded` });

  return {
    source,
    peek: (kid) => keys?.get(kid),
    refresh,
    status: () => ({ loadedAt, keys: keys?.size ?? 0, lastError }),
    async lookup(kid) {
      const canFetch = () => now() - lastAttempt >= minGap;
      const age = () => (loadedAt === undefined ? Infinity : now() - loadedAt);
      if (age() >= ttl + maxStale) {
        // Nothing trustworthy cached: this request waits for a fetch, or fails closed.
        if (inflight) await inflight;
        else if (canFetch()) await refresh();
        if (age() >= ttl + maxStale) return unavailable(lastError);
      } else if (age() >= ttl && !inflight && canFetch()) {
        void refresh(); // stale-while-revalidate: a routine refresh never blocks the request path
      }
      let k = keys?.get(kid);
      const fetching = k || (absent.get(kid) ?? 0) > now() ? undefined : fetchForKid();
      if (fetching) {
        // Unknown kid: the publisher may have rotated. One refetch, rate-limited (fetchForKid).
        const err = await fetching;
        if (err) return unavailable(err);
        k = keys?.get(kid);
        if (!k) noteAbsent(kid);
      }
      if (!k) return { ok: false, code: 'unknown_kid', message: `key "${kid}" is not in the JWKS of trust domain "${source.name}"` };
      return { ok: true, key: k };
    },
  };
}

/** The JWKS at `url`; `etag` (the keys held) is sent as If-None-Match, and a 304 is text null. */
async function fetchText(url: string, doFetch: typeof fetch, timeoutMs: number, etag: string | undefined): Promise<Fetched> {
  const res = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: etag ? { accept: 'application/json', 'if-none-match': etag } : { accept: 'application/json' } });
  const cache = httpCaching(res.headers);
  if (res.status === 304 && etag) {
    await res.body?.cancel();
    // A 304 may leave its ETag out: the held keys' stays theirs.
    return { text: null, ...cache, etag: cache.etag ?? etag };
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`HTTP ${res.status}`);
  }
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > MAX_BYTES) {
    await res.body?.cancel();
    throw new Error(`JWKS larger than ${MAX_BYTES} bytes`);
  }
  return { text: await res.text(), ...cache };
}

/** ETag, and Cache-Control's max-age (no-store or no-cache: 0, then bounded), of a JWKS response. */
export function httpCaching(h: Headers): { etag?: string; maxAgeSeconds?: number } {
  const etag = h.get('etag') ?? undefined;
  const cc = (h.get('cache-control') ?? '').toLowerCase();
  const m = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/.exec(cc);
  const maxAgeSeconds = /(?:^|,)\s*no-(?:store|cache)\s*(?:[,=]|$)/.test(cc) ? 0 : m ? Number(m[1]) : undefined;
  return { ...(etag ? { etag } : {}), ...(maxAgeSeconds !== undefined ? { maxAgeSeconds } : {}) };
}

/**
 * Parse a JWKS or SPIFFE bundle. Keys without kid, symmetric keys (kty oct: the HMAC confusion
 * vector), encryption keys and X.509-SVID bundle entries are skipped; only public parts are kept.
 */
export function parseJwks(text: string): Map<string, KeyEntry> {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch { throw new Error('JWKS is not valid JSON'); }
  const list = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(list)) throw new Error('JWKS has no "keys" array');
  const out = new Map<string, KeyEntry>();
  for (const raw of list.slice(0, MAX_KEYS)) {
    if (!raw || typeof raw !== 'object') continue;
    const jwk = raw as JsonWebKey & { kid?: unknown; use?: unknown; alg?: unknown };
    if (typeof jwk.kid !== 'string' || !jwk.kid) continue;
    if (jwk.kty !== 'EC' && jwk.kty !== 'RSA' && jwk.kty !== 'OKP') continue;
    if (jwk.use !== undefined && jwk.use !== 'sig' && jwk.use !== 'jwt-svid') continue;
    let key: KeyObject;
    try { key = createPublicKey({ key: jwk, format: 'jwk' }); } catch { continue; }
    const d = key.asymmetricKeyDetails ?? {};
    out.set(jwk.kid, {
      kid: jwk.kid,
      key,
      type: key.asymmetricKeyType ?? 'unknown',
      ...(d.namedCurve ? { curve: d.namedCurve } : {}),
      ...(d.modulusLength ? { modulusLength: d.modulusLength } : {}),
      ...(typeof jwk.alg === 'string' ? { alg: jwk.alg } : {}),
    });
  }
  return out;
}
