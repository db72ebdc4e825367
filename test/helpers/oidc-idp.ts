// A real OpenID Provider in-process (oidc-provider, a certified implementation) for console tests:
// users with emails and groups, one confidential client for aam's console, PKCE required, and the
// provider's signing key exposed so tests can mint tokens it would (and one it would not) sign.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

export interface TestUser { email: string; groups: string[]; email_verified?: boolean }

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Sign a token with the provider's own key (claims merged over iss/aud/sub/iat/exp defaults). */
  sign(claims: Record<string, unknown>, opts?: { key?: 'provider' | 'other'; typ?: string }): Promise<string>;
  /** An opaque access token the provider issued for a user (to aam's client unless another is named). */
  accessToken(login: string, opts?: { clientId?: string; expiresIn?: number }): Promise<string>;
  /** Revoke an access token at the provider. */
  revoke(token: string): Promise<void>;
  /** Revoke a refresh token at the provider (its next use is invalid_grant). */
  revokeRefresh(token: string): Promise<void>;
  /** Refresh-token grants the provider answered (ok or not), to count renewals. */
  refreshes: Array<{ status: number }>;
  /** The provider's own view of a token (its introspection answer, as aam's client). */
  introspect(token: string): Promise<{ active: boolean }>;
  /**
   * Down (true: every connection is reset, as a crashed IdP behind a load balancer; requests so
   * reset are counted in `refused`) or up again (false); the tests' own calls (introspect) go around it.
   */
  down(on: boolean): void;
  readonly refused: number;
  close(): Promise<void>;
}

interface TokenLike { save(): Promise<string> }
interface ProviderLike {
  callback(): (req: unknown, res: unknown) => void;
  on(event: string, fn: (ctx: never, err?: unknown) => void): void;
  proxy?: boolean;
  Client: { find(id: string): Promise<unknown> };
  Grant: new (o: object) => { addOIDCScope(s: string): void; save(): Promise<string> };
  AccessToken: (new (o: object) => TokenLike) & { find(v: string): Promise<{ destroy(): Promise<void> } | undefined> };
  RefreshToken: { find(v: string): Promise<{ destroy(): Promise<void> } | undefined> };
}
type ProviderCtor = new (issuer: string, config: Record<string, unknown>) => ProviderLike;

/**
 * rpLogout: false hides the end_session_endpoint (an IdP without RP-initiated logout). refreshTokens:
 * a refresh token with every code grant (as Keycloak gives one for `openid`), rotated on each use
 * (a reused one revokes the grant, as oidc-provider, Auth0 and Okta do with rotation on).
 */
export async function startTestIdp(o: { redirectUri: string; users: Record<string, TestUser>; idTokenTtlS?: number; rpLogout?: boolean; refreshTokens?: boolean }): Promise<TestIdp> {
  const spec = 'oidc-provider'; // untyped package: loaded by name so the type checker does not look for its types
  const { default: Provider } = (await import(spec)) as { default: ProviderCtor };
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const mk = async (kid: string) => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    return { key: privateKey, jwk: { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' } as JWK };
  };
  const provider = await mk('idp-key');
  const other = await mk('idp-key'); // same kid, other key: a forgery that names the real key
  const clientId = 'aam-console';
  const clientSecret = 'test-client-secret-0123456789abcdef';
  const p = new Provider(issuer, {
    clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: [o.redirectUri], post_logout_redirect_uris: [o.redirectUri.replace(/\/callback$/, '/signed-out')], response_types: ['code'], grant_types: o.refreshTokens ? ['authorization_code', 'refresh_token'] : ['authorization_code'], token_endpoint_auth_method: 'client_secret_basic' },
      // Another application at the same IdP: its users' tokens are not for aam.
      { client_id: 'other-app', client_secret: 'other-app-secret-0123456789abcdef', redirect_uris: ['http://127.0.0.1:9/cb'], response_types: ['code'], grant_types: ['authorization_code'] }],
    jwks: { keys: [provider.jwk] },
    findAccount: (_ctx: unknown, id: string) => {
      const u = o.users[id];
      return u ? { accountId: id, claims: () => ({ sub: id, email: u.email, email_verified: u.email_verified ?? true, groups: u.groups }) } : undefined;
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['groups'] },
    // Real IdPs (Okta, Entra, Keycloak) put email and groups in the ID token; so does this one.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: o.rpLogout ?? true }, introspection: { enabled: true }, revocation: { enabled: true } },
    cookies: { keys: ['test-cookie-signing-key-0123456789'] },
    ...(o.refreshTokens ? { issueRefreshToken: async () => true, rotateRefreshToken: true } : {}),
    ttl: { IdToken: o.idTokenTtlS ?? 3600, AccessToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
    // First-party console: no consent screen.
    loadExistingGrant: async (ctx: { oidc: { provider: { Grant: new (o: object) => { addOIDCScope(s: string): void; save(): Promise<string> } }; client: { clientId: string }; session: { accountId: string } } }) => {
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  const refreshes: Array<{ status: number }> = [];
  type GrantCtx = { oidc?: { params?: { grant_type?: string } } };
  p.on('grant.success', (ctx: GrantCtx) => { if (ctx.oidc?.params?.grant_type === 'refresh_token') refreshes.push({ status: 200 }); });
  p.on('grant.error', (ctx: GrantCtx) => { if (ctx.oidc?.params?.grant_type === 'refresh_token') refreshes.push({ status: 400 }); });
  const handle = p.callback();
  let isDown = false;
  let refused = 0;
  server.on('request', (req, res) => {
    if (isDown && req.headers['x-test-around'] === undefined) { refused++; req.socket.destroy(); return; }
    handle(req, res);
  });
  return {
    get refused() { return refused; },
    down(on) { isDown = on; if (on) server.closeAllConnections(); },
    issuer, clientId, clientSecret,
    async sign(claims, opts = {}) {
      const now = Math.floor(Date.now() / 1000);
      const key = opts.key === 'other' ? other : provider;
      return new SignJWT({ iss: issuer, aud: clientId, sub: 'alice', iat: now, exp: now + 600, ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: key.jwk.kid, typ: opts.typ ?? 'JWT' }).sign(key.key);
    },
    async accessToken(login, opts = {}) {
      const id = opts.clientId ?? clientId;
      const grant = new p.Grant({ clientId: id, accountId: login });
      grant.addOIDCScope('openid email profile');
      const grantId = await grant.save();
      return new p.AccessToken({ accountId: login, client: await p.Client.find(id), grantId, scope: 'openid email profile', gty: 'authorization_code', ...(opts.expiresIn ? { expiresIn: opts.expiresIn } : {}) }).save();
    },
    async revoke(token) { await (await p.AccessToken.find(token))?.destroy(); },
    async revokeRefresh(token) { await (await p.RefreshToken.find(token))?.destroy(); },
    refreshes,
    async introspect(token) {
      const r = await fetch(`${issuer}/token/introspection`, { method: 'POST', headers: { 'x-test-around': '1', authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${encodeURIComponent(token)}` });
      return r.json() as Promise<{ active: boolean }>;
    },
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/** Cookies by name (browsers do not separate cookies by port, and neither does this jar). */
export class CookieJar {
  readonly cookies = new Map<string, string>();
  /** A copy of another jar (a second browser tab's view of the same cookies). */
  constructor(from?: CookieJar) { if (from) for (const [k, v] of from.cookies) this.cookies.set(k, v); }
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      const [name, value] = [pair.slice(0, i).trim(), pair.slice(i + 1).trim()];
      if (/max-age=0\b/i.test(c) || value === '') this.cookies.delete(name); else this.cookies.set(name, value);
    }
  }
  header(): string { return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '); }
}

export interface LoginSteps {
  /** Change the IdP authorization URL before the browser follows it (attacks on nonce etc.). */
  authorizeUrl?: (u: URL) => URL;
  /** Change the callback URL before it reaches aam (attacks on state, code). */
  callbackUrl?: (u: URL) => URL;
}

/**
 * Sign in to aam's console the way a browser does (redirects, cookies, the IdP's login form), without
 * a browser. Returns aam's answer to the callback and the jar (with aam_session on success).
 */
export async function loginWithoutBrowser(gateway: string, login: string, steps: LoginSteps = {}, jar = new CookieJar()): Promise<{ callback: Response; jar: CookieJar; body: string }> {
  const get = async (url: string, init: RequestInit = {}) => {
    const r = await fetch(url, { ...init, redirect: 'manual', headers: { ...(init.headers as Record<string, string>), cookie: jar.header() } });
    jar.take(r);
    return r;
  };
  let r = await get(`${gateway}/console/login`);
  if (r.status !== 303) throw new Error(`/console/login answered ${r.status}: ${await r.text()}`);
  let next = new URL(r.headers.get('location')!);
  if (steps.authorizeUrl) next = steps.authorizeUrl(next);
  for (let hops = 0; hops < 12; hops++) {
    if (next.pathname === '/console/callback') { // on whichever replica the IdP sends the browser to
      const cb = steps.callbackUrl ? steps.callbackUrl(next) : next;
      const callback = await get(cb.href);
      return { callback, jar, body: await callback.text() };
    }
    r = await get(next.href);
    if (r.status >= 300 && r.status < 400) { next = new URL(r.headers.get('location')!, next); continue; }
    const html = await r.text();
    const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
    if (r.status !== 200 || !action || !html.includes('name="login"')) throw new Error(`unexpected IdP page ${r.status} at ${next.href}: ${html.slice(0, 300)}`);
    r = await get(new URL(action.replace(/&amp;/g, '&'), next).href, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ prompt: 'login', login, password: 'any' }).toString(),
    });
    if (r.status < 300 || r.status >= 400) throw new Error(`IdP login answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
    next = new URL(r.headers.get('location')!, next);
  }
  throw new Error('too many redirects during sign-in');
}
