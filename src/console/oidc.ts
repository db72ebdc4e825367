// OpenID Connect for people: the authorization code flow with PKCE, state and nonce (openid-client,
// a certified relying party), and ID tokens presented as Bearer to the admin API (jose, checked
// against the issuer's JWKS, issuer, audience = our client id, expiry). Opaque access tokens as
// Bearer are asked about at the IdP (introspection, which also says which client the token is for,
// or userinfo), with answers cached briefly and boundedly. JWT access tokens (RFC 9068, as
// Keycloak, Okta, Auth0 and Entra issue them for an API: aud = the API, no nonce) are verified
// locally against the issuer's JWKS when AAM_OIDC_AUDIENCE names the admin API's audience, and
// refused with that advice otherwise. Nothing here decides a role.
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Oidc from 'openid-client';
import type { JWTPayload, createRemoteJWKSet } from 'jose';
import { jose } from '../lib/jose.ts';
import type { HumanClaims } from './roles.ts';

export interface OidcSettings {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** $AAM_PUBLIC_URL/console/callback */
  redirectUri: string;
  /** $AAM_PUBLIC_URL/console/signed-out: where the IdP sends people after signing them out. */
  postLogoutRedirectUri: string;
  scopes: string;
  /** Opaque access tokens as Bearer: checked by introspection, userinfo, either (auto) or refused. */
  accessTokens: AccessTokenMode;
  /** AAM_OIDC_AUDIENCE: the audience JWT access tokens for the admin API carry; null: JWT access tokens are refused. */
  apiAudience: string | null;
  /** AAM_OIDC_GROUPS_CLAIM: the claim whose strings RoleBinding `group` subjects match (a name, or a dotted path like realm_access.roles). */
  groupsClaim: string;
}

export type AccessTokenMode = 'auto' | 'introspection' | 'userinfo' | 'off';
const ACCESS_TOKEN_MODES: readonly AccessTokenMode[] = ['auto', 'introspection', 'userinfo', 'off'];

/** Settings from the environment, null when OIDC is off; a half-configured set refuses to start. */
export function oidcSettingsFrom(env: NodeJS.ProcessEnv, publicUrl: string | null): OidcSettings | null {
  const { AAM_OIDC_ISSUER: issuer, AAM_OIDC_CLIENT_ID: clientId, AAM_OIDC_CLIENT_SECRET: clientSecret } = env;
  if (!issuer && !clientId && !clientSecret) return null;
  const missing = Object.entries({ AAM_OIDC_ISSUER: issuer, AAM_OIDC_CLIENT_ID: clientId, AAM_OIDC_CLIENT_SECRET: clientSecret, AAM_PUBLIC_URL: publicUrl })
    .filter(([, v]) => !v).map(([k]) => k);
  if (missing.length) throw new Error(`console login (OpenID Connect) needs ${missing.join(', ')} as well; set all of AAM_OIDC_ISSUER, AAM_OIDC_CLIENT_ID, AAM_OIDC_CLIENT_SECRET and AAM_PUBLIC_URL, or none`);
  try { new URL(issuer!); } catch { throw new Error(`AAM_OIDC_ISSUER must be the issuer's URL, like https://login.example.com/realms/acme (got "${issuer}")`); }
  const accessTokens = (env.AAM_OIDC_ACCESS_TOKENS ?? 'auto') as AccessTokenMode;
  if (!ACCESS_TOKEN_MODES.includes(accessTokens)) throw new Error(`AAM_OIDC_ACCESS_TOKENS must be one of ${ACCESS_TOKEN_MODES.join(', ')} (got "${env.AAM_OIDC_ACCESS_TOKENS}")`);
  const apiAudience = env.AAM_OIDC_AUDIENCE || null;
  return { accessTokens, apiAudience, groupsClaim: env.AAM_OIDC_GROUPS_CLAIM || 'groups', issuer: issuer!, clientId: clientId!, clientSecret: clientSecret!, redirectUri: `${publicUrl}/console/callback`, postLogoutRedirectUri: `${publicUrl}/console/signed-out`, scopes: env.AAM_OIDC_SCOPES ?? 'openid email profile' };
}

/**
 * One login in progress: what the callback must see again (kept server-side, never in the URL);
 * `renews`: the hash of the session a silent re-authorization renews (its cookie must come back with it).
 */
export interface LoginTransaction { state: string; nonce: string; verifier: string; createdAt: number; renews?: string }

export interface LoggedIn extends HumanClaims {
  /** ID token expiry (epoch seconds): the session ends then at the latest. */
  exp: number;
  /** The ID token itself (after a login; kept for sign-out at the IdP). */
  idToken?: string;
  /** The refresh token, when the IdP gave one (after a login or a renewal): the session is renewed with it. */
  refreshToken?: string;
}

/** What a renewal must match: the person the session was opened for, and the ID token it holds (its nonce). */
export interface RenewalOf { sub: string; idToken?: string }

export class OidcError extends Error {}
/** The IdP could not be asked (down, or it refused aam itself): not the caller's fault, a 503. */
export class OidcUnavailable extends OidcError {}

/** How long an access token's answer is reused (never past the token's expiry), and how many are kept. */
const ACCESS_CACHE_MS = 60_000;
const ACCESS_NEGATIVE_MS = 10_000;
const ACCESS_CACHE_MAX = 1000;

export interface OidcClient {
  readonly settings: OidcSettings;
  /**
   * Where to send the browser, and the transaction to keep until the callback. `renew`: silent
   * re-authorization of a session (prompt=none, its ID token as id_token_hint): the IdP answers at
   * once, with a code while the person is signed in there, else with login_required.
   */
  begin(renew?: { session: string; idTokenHint?: string }): Promise<{ url: string; tx: LoginTransaction }>;
  /** Redeem the callback URL: state, PKCE, nonce, ID token signature/iss/aud/exp all checked. */
  finish(callbackUrl: URL, tx: LoginTransaction): Promise<LoggedIn>;
  /**
   * Renew a session with its refresh token: the new ID token is checked as at sign-in (signature,
   * issuer, audience, expiry) and must name the same person (sub) with the same nonce if it carries
   * one; email and groups are read again. OidcError when the IdP refuses (invalid_grant: revoked,
   * expired, reused) or answers wrongly; OidcUnavailable when it cannot be asked.
   */
  renew(refreshToken: string, was: RenewalOf): Promise<LoggedIn>;
  /** Revoke a refresh token at the IdP (RFC 7009): true when revoked, false when it offers no revocation_endpoint; throws when it could not be asked or refused. */
  revokeRefreshToken(refreshToken: string): Promise<boolean>;
  /** An ID token as Bearer: verified against the issuer's current JWKS. */
  verifyBearer(token: string): Promise<LoggedIn>;
  /**
   * RP-initiated logout: the IdP's end_session_endpoint with id_token_hint and
   * post_logout_redirect_uri, or null when the IdP offers none (or cannot be reached): sign out locally.
   */
  endSessionUrl(idToken: string | undefined): Promise<string | null>;
  /**
   * The origins sign-out may send the browser to (a page's CSP form-action), without waiting for
   * the IdP: its end_session_endpoint's once discovery has answered, else the issuer's (asking it
   * meanwhile), none when it offers no RP-initiated logout.
   */
  signOutOrigins(): string[];
  /**
   * An opaque access token as Bearer: active, issued to this client (when the IdP can say:
   * introspection) and whose person userinfo names. Answers are reused for up to a minute.
   */
  verifyAccessToken(token: string): Promise<LoggedIn>;
}

// Asymmetric only: an HS256 token "signed" with the client secret proves nothing about the IdP.
const ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const CLOCK_TOLERANCE_S = 5;
/** How long aam waits for the IdP (discovery and every later call), and how long a failed discovery stands before it is tried again. */
const DISCOVERY_TIMEOUT_S = 5;
const DISCOVERY_RETRY_MS = 15_000;

/**
 * email_verified as IdPs send it: a boolean, or the string "true"/"false" (AWS Cognito's userinfo,
 * some SAML bridges). Absent means the IdP does not say (Entra ID): its email stands. Any other
 * value is not a yes.
 */
const emailVerified = (v: unknown): boolean => v === undefined || v === true || v === 'true';

/** A claim by name, else by dotted path (Keycloak's realm_access.roles; Auth0's namespaced claims are names with dots). */
function claimAt(c: Record<string, unknown>, name: string): unknown {
  if (name in c) return c[name];
  let v: unknown = c;
  for (const part of name.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

/** email (only when not marked unverified) and groups (from `groupsClaim`), in the shape roles need. */
export function humanClaims(c: Record<string, unknown>, groupsClaim = 'groups'): HumanClaims {
  if (typeof c.sub !== 'string' || !c.sub) throw new OidcError('the ID token has no subject (sub)');
  const email = typeof c.email === 'string' && emailVerified(c.email_verified) ? c.email : undefined;
  const g = claimAt(c, groupsClaim);
  const groups = Array.isArray(g) ? g.filter((x): x is string => typeof x === 'string') : typeof g === 'string' ? g.split(' ').filter(Boolean) : [];
  return { sub: c.sub, email, groups };
}

/** A JWT's header typ as RFC 8725 compares it: lowercase, without "application/". */
const typOf = (header: { typ?: unknown }): string => (typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : '');
/** What an access token's header may say: RFC 9068's at+jwt, or the plain JWT most IdPs still send; anything else (logout+jwt, secevent+jwt, dpop+jwt) is another kind of token. */
const ACCESS_TYPS = new Set(['at+jwt', 'jwt', '']);

/**
 * `onUnavailable`: told each time discovery fails (at most once per DISCOVERY_RETRY_MS), so the operator's log
 * says why sign-in is down; the person signing in sees only "try again in a minute".
 */
export function createOidcClient(settings: OidcSettings, opts: { onUnavailable?: (message: string) => void } = {}): OidcClient {
  // Required here, not imported: a gateway without OIDC sign-in never loads it (~1 MB RSS).
  const oidc = createRequire(import.meta.url)('openid-client') as typeof Oidc;
  const issuerUrl = new URL(settings.issuer);
  // Discovery happens on first use and is retried after a failure, so an IdP that is down when
  // aam starts does not keep the gateway from serving agents. An IdP that does not answer costs one
  // person DISCOVERY_TIMEOUT_S, not every page and request 30 s (openid-client's default): its
  // failure is the answer for DISCOVERY_RETRY_MS, and the timeout bounds every later call to it too.
  let config: Promise<Oidc.Configuration> | null = null;
  let discovered: Oidc.Configuration | null = null;
  let failed: { at: number; error: OidcUnavailable } | null = null;
  let jwks: ReturnType<typeof createRemoteJWKSet> | null = null;
  const configured = (): Promise<Oidc.Configuration> => {
    if (config) return config;
    if (failed && Date.now() - failed.at < DISCOVERY_RETRY_MS) return Promise.reject(failed.error);
    return config = oidc.discovery(issuerUrl, settings.clientId, undefined, oidc.ClientSecretBasic(settings.clientSecret), {
      timeout: DISCOVERY_TIMEOUT_S,
      // A plain-http issuer is allowed only when the operator configured one (local IdPs, tests).
      ...(issuerUrl.protocol === 'http:' ? { execute: [oidc.allowInsecureRequests] } : {}),
    }).then((c) => { discovered = c; failed = null; return c; }, (e: unknown) => {
      config = null;
      failed = { at: Date.now(), error: new OidcUnavailable(`the OpenID Provider ${settings.issuer} could not be reached or described itself badly: ${(e as Error).message}`) };
      opts.onUnavailable?.(failed.error.message);
      throw failed.error;
    });
  };

  // Answers per token hash (the token itself is not kept): the person, or why not; bounded, oldest out.
  const answers = new Map<string, { until: number; who?: LoggedIn; error?: OidcError; pending?: Promise<LoggedIn> }>();
  const remember = (k: string, a: { until: number; who?: LoggedIn; error?: OidcError; pending?: Promise<LoggedIn> }) => {
    answers.delete(k);
    if (answers.size >= ACCESS_CACHE_MAX) answers.delete(answers.keys().next().value!);
    answers.set(k, a);
  };

  async function askIdp(token: string): Promise<LoggedIn> {
    const c = await configured().catch((e: unknown) => { throw new OidcUnavailable((e as Error).message); });
    const meta = c.serverMetadata();
    const mode = settings.accessTokens === 'auto' ? (meta.introspection_endpoint ? 'introspection' : 'userinfo') : settings.accessTokens;
    if (mode === 'off') throw new OidcError('opaque access tokens are not accepted here (AAM_OIDC_ACCESS_TOKENS=off); send an ID token');
    let sub: string | typeof oidc.skipSubjectCheck = oidc.skipSubjectCheck;
    let exp = Math.floor((Date.now() + ACCESS_CACHE_MS) / 1000);
    if (mode === 'introspection') {
      if (!meta.introspection_endpoint) throw new OidcUnavailable(`AAM_OIDC_ACCESS_TOKENS=introspection, but ${meta.issuer} publishes no introspection_endpoint; set AAM_OIDC_ACCESS_TOKENS=userinfo`);
      let r: Oidc.IntrospectionResponse;
      try { r = await oidc.tokenIntrospection(c, token); } catch (e) {
        throw new OidcUnavailable(`the IdP's introspection endpoint did not answer aam (client ${settings.clientId}): ${(e as Error).message}; let this client introspect tokens, or set AAM_OIDC_ACCESS_TOKENS=userinfo`);
      }
      if (!r.active) throw new OidcError(`the access token is not active at ${meta.issuer} (expired, revoked or unknown)`);
      const auds = r.aud === undefined ? [] : [r.aud].flat();
      if (r.client_id !== settings.clientId && !auds.includes(settings.clientId)) throw new OidcError(`the access token was issued to ${r.client_id ?? 'another client'}, not to ${settings.clientId}`);
      if (typeof r.sub !== 'string') throw new OidcError('the IdP does not say whose access token this is (no sub); send an ID token');
      sub = r.sub;
      if (typeof r.exp === 'number') exp = Math.min(exp, r.exp);
    }
    let claims: Record<string, unknown>;
    try { claims = await oidc.fetchUserInfo(c, token, sub); } catch (e) {
      const status = (e as { status?: number }).status;
      if (status === 401 || status === 403 || (e as { code?: string }).code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE') {
        throw new OidcError(`the IdP's userinfo endpoint refused the access token (expired, revoked or unknown)`);
      }
      throw new OidcUnavailable(`the IdP's userinfo endpoint could not be asked: ${(e as Error).message}`);
    }
    return { ...humanClaims(claims, settings.groupsClaim), exp };
  }

  /** An ID token's claims once its signature (the issuer's current JWKS), issuer, audience, expiry and azp hold. */
  async function idTokenClaims(c: Oidc.Configuration, token: string, what: string): Promise<JWTPayload> {
    const meta = c.serverMetadata();
    if (!meta.jwks_uri) throw new OidcError('the OpenID Provider publishes no jwks_uri');
    jwks ??= jose().createRemoteJWKSet(new URL(meta.jwks_uri));
    let payload: JWTPayload;
    try {
      ({ payload } = await jose().jwtVerify(token, jwks, { issuer: meta.issuer, audience: settings.clientId, algorithms: ALGS, clockTolerance: CLOCK_TOLERANCE_S, requiredClaims: ['exp', 'sub'] }));
    } catch (e) {
      throw new OidcError(`${what} is not a valid ID token from ${meta.issuer} for client ${settings.clientId}: ${(e as Error).message}`);
    }
    // A token for several audiences must name us as the party it was issued to.
    if (Array.isArray(payload.aud) && payload.aud.length > 1 && payload.azp !== settings.clientId) {
      throw new OidcError(`${what} names several audiences and was issued to ${typeof payload.azp === 'string' ? payload.azp : 'no authorized party (azp)'}, not ${settings.clientId}`);
    }
    return payload;
  }

  /** A JWT access token's claims once its signature, issuer, audience (AAM_OIDC_AUDIENCE), expiry and typ hold. */
  async function accessTokenClaims(c: Oidc.Configuration, token: string, typ: string): Promise<JWTPayload> {
    const meta = c.serverMetadata();
    if (settings.apiAudience === null) {
      throw new OidcError(`the Bearer token is a JWT access token (typ ${typ}); to accept access tokens for the admin API, set AAM_OIDC_AUDIENCE to the audience your IdP issues them for (and AAM_OIDC_GROUPS_CLAIM to the claim that holds roles or groups), or send an ID token`);
    }
    if (!ACCESS_TYPS.has(typ)) throw new OidcError(`the Bearer token's typ is "${typ}", not an access token (at+jwt)`);
    if (!meta.jwks_uri) throw new OidcError('the OpenID Provider publishes no jwks_uri');
    jwks ??= jose().createRemoteJWKSet(new URL(meta.jwks_uri));
    try {
      const { payload } = await jose().jwtVerify(token, jwks, { issuer: meta.issuer, audience: settings.apiAudience, algorithms: ALGS, clockTolerance: CLOCK_TOLERANCE_S, requiredClaims: ['exp', 'sub', 'iat'] });
      return payload;
    } catch (e) {
      throw new OidcError(`the Bearer token is not a valid access token from ${meta.issuer} for ${settings.apiAudience}: ${(e as Error).message}`);
    }
  }

  /** The person of a token response: the ID token's claims, completed from userinfo (bound to the same subject) when email or groups are missing. */
  async function personOf(c: Oidc.Configuration, tokens: Oidc.TokenEndpointResponse, idc: Oidc.IDToken): Promise<HumanClaims> {
    let claims: Record<string, unknown> = idc;
    // Many IdPs put email/groups only in userinfo; ask it (bound to the same subject).
    if ((idc.email === undefined || idc.groups === undefined) && c.serverMetadata().userinfo_endpoint) {
      try { claims = { ...(await oidc.fetchUserInfo(c, tokens.access_token, idc.sub)), ...idc }; } catch { /* the ID token's claims stand */ }
    }
    return humanClaims(claims, settings.groupsClaim);
  }

  return {
    settings,
    async renew(refreshToken, was) {
      const c = await configured().catch((e: unknown) => { throw new OidcUnavailable((e as Error).message); });
      let tokens: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;
      try { tokens = await oidc.refreshTokenGrant(c, refreshToken); } catch (e) {
        // The IdP answered with an OAuth error (invalid_grant: revoked, expired, already used): a refusal.
        if (e instanceof oidc.ResponseBodyError && e.status >= 400 && e.status < 500) throw new OidcError(`the identity provider refused to renew it (${e.error}${e.error_description ? `: ${e.error_description}` : ''})`);
        const cause = (e as Error).cause;
        throw new OidcUnavailable(`the identity provider could not renew it right now: ${(e as Error).message}${cause instanceof Error ? ` (${cause.message})` : ''}`);
      }
      const idc = tokens.claims();
      if (!idc || !tokens.id_token) throw new OidcError('the identity provider renewed it without a new ID token, so who you are cannot be checked again');
      await idTokenClaims(c, tokens.id_token, 'the renewed ID token');
      if (idc.sub !== was.sub) throw new OidcError(`the renewed ID token names another person (${idc.sub}, not ${was.sub})`);
      // OIDC Core 12.2: a renewed ID token need not carry a nonce; if it does, it is the sign-in's.
      const nonce = was.idToken ? jose().decodeJwt(was.idToken).nonce : undefined;
      if (idc.nonce !== undefined && idc.nonce !== nonce) throw new OidcError('the renewed ID token carries a nonce other than the sign-in\'s');
      return { ...(await personOf(c, tokens, idc)), exp: idc.exp, idToken: tokens.id_token, refreshToken: tokens.refresh_token ?? refreshToken };
    },
    async verifyAccessToken(token) {
      const k = createHash('sha256').update(token).digest('base64url');
      const now = Date.now();
      const a = answers.get(k);
      if (a && a.until > now) {
        if (a.pending) return a.pending;
        if (a.who) return a.who;
        throw a.error!;
      }
      // One question per token at a time; the IdP being away is not remembered as the token being bad.
      const pending = askIdp(token).then((who) => {
        remember(k, { until: Math.min(Date.now() + ACCESS_CACHE_MS, who.exp * 1000), who });
        return who;
      }, (e: unknown) => {
        if (e instanceof OidcError && !(e instanceof OidcUnavailable)) remember(k, { until: Date.now() + ACCESS_NEGATIVE_MS, error: e });
        else answers.delete(k);
        throw e;
      });
      remember(k, { until: now + ACCESS_CACHE_MS, pending });
      return pending;
    },
    async begin(renew) {
      const c = await configured();
      const tx: LoginTransaction = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier: oidc.randomPKCECodeVerifier(), createdAt: Date.now(), ...(renew ? { renews: renew.session } : {}) };
      const url = oidc.buildAuthorizationUrl(c, {
        redirect_uri: settings.redirectUri, scope: settings.scopes, response_type: 'code',
        state: tx.state, nonce: tx.nonce, code_challenge: await oidc.calculatePKCECodeChallenge(tx.verifier), code_challenge_method: 'S256',
        ...(renew ? { prompt: 'none', ...(renew.idTokenHint ? { id_token_hint: renew.idTokenHint } : {}) } : {}),
      });
      return { url: url.href, tx };
    },
    async revokeRefreshToken(refreshToken) {
      const c = await configured();
      if (!c.serverMetadata().revocation_endpoint) return false;
      try { await oidc.tokenRevocation(c, refreshToken, { token_type_hint: 'refresh_token' }); } catch (e) {
        const cause = (e as Error).cause;
        throw new OidcUnavailable(`the identity provider did not revoke it: ${(e as Error).message}${cause instanceof Error ? ` (${cause.message})` : ''}`);
      }
      return true;
    },
    async finish(callbackUrl, tx) {
      const c = await configured();
      let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        tokens = await oidc.authorizationCodeGrant(c, callbackUrl, { pkceCodeVerifier: tx.verifier, expectedState: tx.state, expectedNonce: tx.nonce, idTokenExpected: true });
      } catch (e) {
        // openid-client's message is generic ("invalid response encountered"); the cause says which check failed.
        const cause = (e as Error).cause;
        throw new OidcError(`login failed: ${(e as Error).message}${cause instanceof Error ? ` (${cause.message})` : ''}`);
      }
      const idc = tokens.claims();
      if (!idc || !tokens.id_token) throw new OidcError('login failed: the OpenID Provider returned no ID token');
      // openid-client trusts an ID token from the token endpoint on the strength of TLS alone (OIDC
      // Core 3.1.3.7 allows it); aam checks its signature against the issuer's keys as well, as it
      // does for a Bearer ID token: a spoofed or intercepted token endpoint answer opens nothing.
      await idTokenClaims(c, tokens.id_token, 'login failed: the ID token from the token endpoint');
      return { ...(await personOf(c, tokens, idc)), exp: idc.exp, idToken: tokens.id_token, ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}) };
    },
    signOutOrigins() {
      if (!discovered) { configured().catch(() => {}); return [issuerUrl.origin]; }
      const end = discovered.serverMetadata().end_session_endpoint;
      return end ? [new URL(end).origin] : [];
    },
    async endSessionUrl(idToken) {
      const c = await configured().catch(() => null);
      if (!c?.serverMetadata().end_session_endpoint) return null;
      return oidc.buildEndSessionUrl(c, { post_logout_redirect_uri: settings.postLogoutRedirectUri, ...(idToken ? { id_token_hint: idToken } : {}) }).href;
    },
    async verifyBearer(token) {
      const c = await configured();
      let header: { typ?: unknown };
      let unverified: JWTPayload;
      try { header = jose().decodeProtectedHeader(token); unverified = jose().decodeJwt(token); } catch { throw new OidcError('the Bearer token is not a well-formed JWT'); }
      const typ = typOf(header);
      // An RFC 9068 access token says so; many IdPs' access tokens do not, but name the API as audience (an ID token names our client).
      const auds = [unverified.aud ?? []].flat();
      const access = typ === 'at+jwt' || (settings.apiAudience !== null && auds.includes(settings.apiAudience) && !auds.includes(settings.clientId));
      const payload = access ? await accessTokenClaims(c, token, typ) : await idTokenClaims(c, token, 'the Bearer token');
      return { ...humanClaims(payload, settings.groupsClaim), exp: payload.exp! };
    },
  };
}
