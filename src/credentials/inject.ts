// Injection at the last hop: turns a Credential name (+ the calling agent) into the headers or
// query parameters of one outbound request. Tokens obtained for a principal (OAuth client
// credentials, on-behalf-of assertions) are cached per (principal, credential, version) and are
// never handed to another principal: if one cannot be had, the call fails.
import { randomUUID } from 'node:crypto';
import type { CredentialKind } from '../config/schema.ts';
import { CredentialError } from './errors.ts';
import { DEFAULT_RETRY, requestToken, type FetchLike, type RetryPolicy, type TokenRequest, type TokenResult } from './oauth.ts';
import { REVEAL } from './secret.ts';
import { awsSigner, parseAwsKeys, type RequestSigner } from './aws-sigv4.ts';
import { CLOUD_PLATFORM_SCOPE, GOOGLE_TOKEN_URL, JWT_BEARER_GRANT, parseServiceAccount, serviceAccountAssertion } from './google-sa.ts';
import type { Revealed, Vault } from './vault.ts';

/** How a plain secret is sent when the Credential does not say: the provider's convention. */
export type DefaultStyle = 'bearer' | 'x-api-key' | 'api-key' | 'query:key' | `header:${string}` | `query:${string}`;

export interface Principal { spiffeId: string; name: string }

/** Kinds whose value is obtained for the calling agent (cached per principal, never handed to another). */
export const perPrincipal = (kind: CredentialKind): boolean => kind === 'oauth2_client_credentials' || kind === 'on_behalf_of';

export interface Injection {
  headers: Record<string, string>;
  query?: Record<string, string>;
  /** For the audit: which credential and version went out (never the value). */
  credential: { name: string; version: number; kind: CredentialKind };
  /** aws_sigv4: signs the final request (the signature covers path and body, so it is made last). */
  sign?: RequestSigner;
}

export type Signer = (claims: Record<string, unknown>) => Promise<string>;

export interface InjectorOptions {
  vault: Vault;
  /** Signs on-behalf-of assertions (supplied by the identity module). */
  sign?: Signer;
  /** aam's own identity: `iss` and `act.sub` of on-behalf-of assertions. */
  issuer?: string;
  fetch?: FetchLike;
  /** Where aws.access_key_id_env is read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  retry?: Partial<RetryPolicy>;
  /** Refresh tokens this long before they expire (default 60 s). */
  refreshMarginMs?: number;
  /** Cached tokens without expires_in live this long (default 300 s). */
  defaultTokenTtlMs?: number;
  /** Bound on cached tokens; oldest dropped first (default 10,000). */
  maxCachedTokens?: number;
}

export interface InjectOptions { principal?: Principal; defaultStyle?: DefaultStyle }

export interface Injector {
  injectionFor(credential: string, opts?: InjectOptions): Promise<Injection>;
  /**
   * injectionFor's injection at once, with no promise, when it needs no token (a static secret,
   * a request signer); undefined when it does (then injectionFor). Throws what injectionFor rejects with.
   */
  injectionNow(credential: string, opts?: InjectOptions): Injection | undefined;
  /** For stdio MCP servers: the secret (or token) as one environment variable. */
  environmentFor(credential: string, variable: string, opts?: { principal?: Principal }): Promise<{ env: Record<string, string>; credential: Injection['credential'] }>;
  /** Drop cached tokens of a credential (e.g. after the upstream answered 401), for one principal or all. */
  invalidate(credential: string, principal?: Principal): void;
}

/** Kinds whose value on the wire is the secret itself (no token to obtain): injected without a promise. */
const SECRET_KINDS: ReadonlySet<CredentialKind> = new Set(['api_key', 'bearer', 'basic', 'header', 'query']);

interface CachedToken { token: string; expiresAt: number; refreshAt: number }
interface Slot { cached?: CachedToken; inflight?: Promise<CachedToken> }

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** The access key id a Credential names: written in it, or read from the environment variable it names. */
export function awsKeyId(spec: Revealed['spec'], env: Readonly<Record<string, string | undefined>>): string | undefined {
  const a = spec.aws;
  if (a?.access_key_id !== undefined) return a.access_key_id;
  const v = a?.access_key_id_env !== undefined ? env[a.access_key_id_env]?.trim() : undefined;
  return v === '' ? undefined : v;
}

export function createInjector(opts: InjectorOptions): Injector {
  const now = opts.now ?? Date.now;
  const fetchFn: FetchLike = opts.fetch ?? ((url, init) => fetch(url, init));
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const retry: RetryPolicy = { ...DEFAULT_RETRY, ...opts.retry };
  const margin = opts.refreshMarginMs ?? 60_000;
  const defaultTtl = opts.defaultTokenTtlMs ?? 300_000;
  const maxCached = opts.maxCachedTokens ?? 10_000;
  const slots = new Map<string, Slot>();
  /** One SigV4 signer per credential version (it caches derived signing keys). */
  const signers = new Map<string, RequestSigner>();

  const slotKey = (r: Revealed, p: Principal | undefined) => `${p?.spiffeId ?? '-'}\n${r.name}\n${r.version}`;

  /** Single flight per slot: one fetch however many callers wait; a still-valid token bridges a failed refresh. */
  async function cachedToken(key: string, credential: string, obtain: () => Promise<CachedToken>): Promise<string> {
    let slot = slots.get(key);
    const t = now();
    if (slot?.cached && t < slot.cached.refreshAt) return slot.cached.token;
    if (!slot) {
      if (slots.size >= maxCached) slots.delete(slots.keys().next().value as string);
      slot = {};
      slots.set(key, slot);
    }
    const s = slot;
    s.inflight ??= obtain().then(
      (tok) => { s.cached = tok; s.inflight = undefined; opts.vault.addDerived(credential, tok.token, tok.expiresAt); return tok; },
      (err: unknown) => { s.inflight = undefined; throw err; },
    );
    try {
      return (await s.inflight).token;
    } catch (err) {
      if (s.cached && now() < s.cached.expiresAt) return s.cached.token;
      throw err;
    }
  }

  function toCached(r: TokenResult): CachedToken {
    const t = now();
    const ttl = r.expiresInSec !== undefined ? r.expiresInSec * 1000 : defaultTtl;
    return { token: r.accessToken, expiresAt: t + ttl, refreshAt: t + ttl - Math.min(margin, ttl / 2) };
  }

  async function clientCredentials(r: Revealed): Promise<CachedToken> {
    const o = r.spec.oauth2;
    if (!o || !r.secret) throw new CredentialError('credential_config', `Credential "${r.name}" needs oauth2 settings and a client secret source`, { status: 500, credential: r.name });
    const secret = r.secret[REVEAL]();
    const form: Record<string, string> = { grant_type: 'client_credentials' };
    if (o.scope) form.scope = o.scope;
    if (o.audience) form.audience = o.audience;
    const req: TokenRequest = { credential: r.name, tokenUrl: o.token_url, form, timeoutMs: o.timeout_ms ?? 10_000 };
    if (o.auth_method === 'client_secret_post') { form.client_id = o.client_id; form.client_secret = secret; } else req.basic = { user: o.client_id, password: secret };
    return toCached(await requestToken(req, fetchFn, retry, sleep));
  }

  async function assertion(r: Revealed, p: Principal): Promise<CachedToken> {
    const o = r.spec.obo;
    if (!o) throw new CredentialError('credential_config', `Credential "${r.name}" needs obo: { audience }`, { status: 500, credential: r.name });
    if (!opts.sign) throw new CredentialError('credential_config', `Credential "${r.name}" is on-behalf-of but aam has no signer configured`, { status: 500, credential: r.name });
    const iat = Math.floor(now() / 1000);
    const ttl = o.ttl_seconds ?? 300;
    const claims: Record<string, unknown> = {
      sub: p.spiffeId, aud: o.audience, iat, nbf: iat, exp: iat + ttl, jti: randomUUID(), aam_agent: p.name,
    };
    if (opts.issuer) {
      claims.iss = opts.issuer;
      // RFC 8693 4.1: aam is the party acting for the agent; may_act lets a token exchange accept that.
      claims.act = { sub: opts.issuer };
      if (o.token_exchange) claims.may_act = { sub: opts.issuer };
    }
    const jwt = await opts.sign(claims);
    return { token: jwt, expiresAt: (iat + ttl) * 1000, refreshAt: (iat + ttl) * 1000 - Math.min(margin, (ttl * 1000) / 2) };
  }

  async function exchange(r: Revealed, p: Principal): Promise<CachedToken> {
    const x = r.spec.obo?.token_exchange;
    if (!x) throw new Error('unreachable: exchange without token_exchange');
    const subject = await assertion(r, p);
    const form: Record<string, string> = { grant_type: TOKEN_EXCHANGE, subject_token: subject.token, subject_token_type: JWT_TYPE, requested_token_type: ACCESS_TOKEN_TYPE };
    if (x.audience) form.audience = x.audience;
    if (x.scope) form.scope = x.scope;
    const req: TokenRequest = { credential: r.name, tokenUrl: x.token_url, form, timeoutMs: 10_000 };
    if (x.client_id && r.secret) req.basic = { user: x.client_id, password: r.secret[REVEAL]() };
    else if (x.client_id) form.client_id = x.client_id;
    const got = toCached(await requestToken(req, fetchFn, retry, sleep));
    // The exchanged token must not outlive the assertion it was obtained with.
    return got.expiresAt <= subject.expiresAt ? got : { ...got, expiresAt: subject.expiresAt, refreshAt: Math.min(got.refreshAt, subject.refreshAt) };
  }

  /** A service account's access token is aam's, the same for every agent: one cache slot. */
  async function serviceAccount(r: Revealed): Promise<CachedToken> {
    if (!r.secret) throw new CredentialError('credential_config', `Credential "${r.name}" has no value`, { status: 502, credential: r.name });
    const sa = parseServiceAccount(r.name, r.secret[REVEAL]());
    const tokenUrl = r.spec.google?.token_url ?? sa.tokenUri ?? GOOGLE_TOKEN_URL;
    const assertion = await serviceAccountAssertion(sa, tokenUrl, r.spec.google?.scope ?? CLOUD_PLATFORM_SCOPE, now());
    // The assertion buys tokens for an hour: as secret as the token itself.
    opts.vault.addDerived(r.name, assertion.jwt, assertion.expiresAt);
    const req: TokenRequest = { credential: r.name, tokenUrl, form: { grant_type: JWT_BEARER_GRANT, assertion: assertion.jwt }, timeoutMs: 10_000 };
    return toCached(await requestToken(req, fetchFn, retry, sleep));
  }

  function signerFor(r: Revealed): RequestSigner {
    const key = `${r.name}\n${r.version}`;
    let s = signers.get(key);
    if (!s) {
      if (!r.secret) throw new CredentialError('credential_config', `Credential "${r.name}" has no value`, { status: 502, credential: r.name });
      for (const k of signers.keys()) if (k.startsWith(`${r.name}\n`)) signers.delete(k);
      s = awsSigner(parseAwsKeys(r.name, r.secret[REVEAL](), awsKeyId(r.spec, opts.env ?? process.env)), now);
      signers.set(key, s);
    }
    return s;
  }

  /** The string that goes on the wire for this credential and principal. */
  async function valueFor(r: Revealed, p: Principal | undefined): Promise<string> {
    if (r.kind === 'oauth2_client_credentials') return cachedToken(slotKey(r, p), r.name, () => clientCredentials(r));
    if (r.kind === 'google_service_account') return cachedToken(slotKey(r, undefined), r.name, () => serviceAccount(r));
    if (r.kind === 'on_behalf_of') {
      if (!p) throw new CredentialError('credential_principal', `Credential "${r.name}" acts on behalf of the calling agent, but this call has no agent identity; it is not sent without one`, { status: 500, credential: r.name });
      return cachedToken(slotKey(r, p), r.name, () => (r.spec.obo?.token_exchange ? exchange(r, p) : assertion(r, p)));
    }
    if (!r.secret) throw new CredentialError('credential_config', `Credential "${r.name}" has no value`, { status: 502, credential: r.name });
    return r.secret[REVEAL]();
  }

  /** The injection of a credential that needs no token (the secret itself, a signer); undefined for one that does. */
  function injectionOf(r: Revealed, o: InjectOptions): Injection | undefined {
    if (r.kind === 'aws_sigv4') return { headers: {}, credential: { name: r.name, version: r.version, kind: r.kind }, sign: signerFor(r) };
    if (!SECRET_KINDS.has(r.kind)) return undefined;
    if (!r.secret) throw new CredentialError('credential_config', `Credential "${r.name}" has no value`, { status: 502, credential: r.name });
    const out: Injection = { headers: {}, credential: { name: r.name, version: r.version, kind: r.kind } };
    place(out, r, r.secret[REVEAL](), o.defaultStyle ?? 'bearer');
    return out;
  }

  function injectionNow(credential: string, o: InjectOptions = {}): Injection | undefined {
    return injectionOf(opts.vault[REVEAL](credential), o);
  }

  async function injectionFor(credential: string, o: InjectOptions = {}): Promise<Injection> {
    // Resolve once: this request keeps this version even if a rotation lands while it is in flight.
    const r = opts.vault[REVEAL](credential);
    const now = injectionOf(r, o);
    if (now) return now;
    const value = await valueFor(r, o.principal);
    const out: Injection = { headers: {}, credential: { name: r.name, version: r.version, kind: r.kind } };
    place(out, r, value, o.defaultStyle ?? 'bearer');
    return out;
  }

  async function environmentFor(credential: string, variable: string, o: { principal?: Principal } = {}) {
    const r = opts.vault[REVEAL](credential);
    const value = await valueFor(r, o.principal);
    return { env: { [variable]: value }, credential: { name: r.name, version: r.version, kind: r.kind } };
  }

  function invalidate(credential: string, principal?: Principal): void {
    for (const k of [...slots.keys()]) {
      const [who, name] = k.split('\n');
      if (name === credential && (!principal || who === principal.spiffeId)) slots.delete(k);
    }
  }

  return { injectionFor, injectionNow, environmentFor, invalidate };
}

function setStyle(out: Injection, style: DefaultStyle, value: string): void {
  if (style === 'bearer') out.headers.authorization = `Bearer ${value}`;
  else if (style === 'x-api-key') out.headers['x-api-key'] = value;
  else if (style === 'api-key') out.headers['api-key'] = value;
  else if (style.startsWith('query:')) out.query = { [style.slice(6)]: value };
  else out.headers[style.slice(7).toLowerCase()] = value;
}

/** Put the value where the Credential (or, if it does not say, the caller's convention) wants it. */
function place(out: Injection, r: Revealed, value: string, style: DefaultStyle): void {
  const inj = r.spec.inject;
  if (r.kind === 'basic') {
    const pair = r.spec.username ? `${r.spec.username}:${value}` : value;
    out.headers[(inj?.header ?? 'authorization').toLowerCase()] = `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
    return;
  }
  if (inj?.query) { out.query = { [inj.query]: value }; return; }
  if (inj?.header) { out.headers[inj.header.toLowerCase()] = (inj.prefix ?? '') + value; return; }
  const isToken = r.kind === 'oauth2_client_credentials' || r.kind === 'on_behalf_of' || r.kind === 'bearer' || r.kind === 'google_service_account';
  if (isToken) { out.headers.authorization = `${inj?.prefix ?? 'Bearer '}${value}`; return; }
  if (inj?.prefix !== undefined && style === 'bearer') { out.headers.authorization = inj.prefix + value; return; }
  setStyle(out, style, value);
}

/** Headers an agent sent that must never be forwarded: its own credentials and hop-by-hop headers. */
const STRIPPED = new Set([
  'authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'cookie',
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length',
]);

/** A copy of the agent's headers without auth, cookies and hop-by-hop headers (incl. those named in Connection). */
export function stripInboundAuth<V extends string | string[] | undefined>(headers: Readonly<Record<string, V>>): Record<string, V> {
  const named = new Set<string>();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== 'connection' || v === undefined) continue;
    const list = v as string | string[];
    for (const part of (Array.isArray(list) ? list.join(',') : list).split(',')) named.add(part.trim().toLowerCase());
  }
  const out: Record<string, V> = {};
  for (const [k, v] of Object.entries(headers)) {
    const lk = k.toLowerCase();
    if (STRIPPED.has(lk) || named.has(lk)) continue;
    out[k] = v;
  }
  return out;
}
