// /console: sign-in (OpenID Connect or the break-glass token), sign-out, the app shell and its
// static assets (script, style sheet, icon). Everything the app shows comes from the admin API with the session cookie.
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { readBody, type Ctx, type Handler, type Routes } from '../access/request.ts';
import { AamError, toAamError } from '../access/errors.ts';
import { AdminTokenRefused, adminTokenTag, BREAK_GLASS, BREAK_GLASS_ENDED, createHumanAuth, parseCookies, userActor, type HumanAuth } from './auth.ts';
import type { ConsoleRuntime } from './plane.ts';
import { consoleStores, LOGIN_TTL_MS, sessionLimitsFrom } from './sessions.ts';
import { createOidcClient, oidcSettingsFrom, type LoginTransaction } from './oidc.ts';
import { ReauthorizationRequired, RenewalUnavailable, unavailable } from './renew.ts';
import { sha256Hex } from '../lib/hash.ts';
import { appShell, cspFormTargets, errorPage, loginPage, PAGE_HEADERS } from './html.ts';

const ASSETS: Record<string, { file: string; type: string }> = {
  '/console/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/console/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/console/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

async function formOf(ctx: Ctx): Promise<URLSearchParams> {
  const ct = ctx.req.headers['content-type'] ?? '';
  if (!/^application\/x-www-form-urlencoded/i.test(ct)) throw new AamError(415, 'unsupported_media_type', 'send the form as application/x-www-form-urlencoded');
  return new URLSearchParams((await readBody(ctx, 8192)).toString('utf8'));
}

export interface ConsoleOptions { publicUrl: string | null }

/** The console's authentication for a gateway: OIDC from the environment (or none), sessions in its store. */
export function createConsoleAuth(rt: ConsoleRuntime, env: NodeJS.ProcessEnv, tls: boolean): HumanAuth {
  const publicUrl = rt.options.publicUrl;
  const settings = oidcSettingsFrom(env, publicUrl);
  return createHumanAuth({
    ...consoleStores(rt, sessionLimitsFrom(env)), config: () => rt.compiled.set, adminToken: rt.options.adminToken, oidc: settings ? createOidcClient(settings, { onUnavailable: (message) => rt.log.warn({ event: 'oidc_unavailable', error: message }, 'console sign-in is unavailable: check AAM_OIDC_ISSUER and that aam can reach it') }) : null, publicUrl, log: rt.log, audit: rt.audit,
    // Secure cookies whenever people reach aam over TLS (here or at a proxy in front of it).
    tls: tls || (publicUrl?.startsWith('https:') ?? false),
  });
}

export function addConsoleRoutes<C extends Ctx>(routes: Routes<C>, auth: HumanAuth, o: ConsoleOptions): void {
  const assets = new Map(Object.entries(ASSETS).map(([path, a]) => [path, { text: readFileSync(new URL(`./${a.file}`, import.meta.url), 'utf8'), type: a.type }]));
  const secure = auth.cookie.secure;
  // Reached over https (here or at a proxy): the browser is told to keep to https for this host.
  const headers = secure ? { ...PAGE_HEADERS, 'strict-transport-security': 'max-age=31536000' } : PAGE_HEADERS;
  const send = (ctx: Ctx, status: number, html: string, extra: Record<string, string | string[]> = {}): void =>
    ctx.res.send(status, html, { 'content-type': 'text/html; charset=utf-8', 'x-request-id': ctx.requestId, ...headers, ...extra });
  const redirect = (ctx: Ctx, location: string, cookies: string[] = []) =>
    ctx.res.send(303, '', { location, 'x-request-id': ctx.requestId, ...headers, ...(cookies.length ? { 'set-cookie': cookies } : {}) });
  const loginCookie = secure ? '__Host-aam_login' : 'aam_login';
  const cookie = (name: string, value: string, maxAgeS: number) =>
    `${name}=${value}; Path=/; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}; Max-Age=${Math.max(0, Math.floor(maxAgeS))}`;
  const sessionCookie = auth.cookie.name;

  // Pages answer errors as pages (the admin API answers them as JSON).
  const page = (h: (ctx: Ctx) => Promise<void> | void): Handler => async (ctx) => {
    try { await h(ctx); } catch (err) {
      if (!(err instanceof AamError)) ctx.rt.log.error({ requestId: ctx.requestId, err }, 'console page failed');
      const e = toAamError(err);
      // Signed out, no role, or a session the IdP must renew but cannot now: the sign-in page says why.
      const signIn = e.status === 401 || e.status === 403 || err instanceof RenewalUnavailable;
      send(ctx, e.status, signIn ? loginPage({ sso: !!auth.oidc, token: auth.adminTokenEnabled, error: e.message }) : errorPage('Something went wrong', e.message), err instanceof RenewalUnavailable ? e.headers : {});
    }
  };

  // A session without a refresh token past its ID token: the browser goes to the IdP with
  // prompt=none and comes back to the callback, re-authorized (or not) without a sign-in form.
  // Redirects carry the page's fragment along, so the person lands where they were.
  async function reauthorize(ctx: Ctx, e: ReauthorizationRequired): Promise<void> {
    const sid = parseCookies(ctx.req.headers.cookie).get(sessionCookie)!;
    let begun;
    try { begun = await auth.oidc!.begin({ session: sha256Hex(sid), idTokenHint: e.idTokenHint }); } catch (err) {
      throw unavailable((err as Error).message);
    }
    const id = randomBytes(32).toString('base64url');
    await auth.logins.put(id, begun.tx);
    redirect(ctx, begun.url, [cookie(loginCookie, id, LOGIN_TTL_MS / 1000)]);
  }

  routes.exact.set('GET /console', page(async (ctx) => {
    let s;
    try { s = await auth.sessionOf(ctx.req); } catch (e) {
      if (e instanceof ReauthorizationRequired) return reauthorize(ctx, e);
      throw e;
    }
    const p = s && auth.principalOf(s.session, s.id);
    if (!s || !p) {
      const error = !s ? undefined : s.session.kind === 'admin-token' ? BREAK_GLASS_ENDED : `no RoleBinding names ${s.session.email ?? s.session.sub}; ask an admin to add one`;
      return send(ctx, 200, loginPage({ sso: !!auth.oidc, token: auth.adminTokenEnabled, error }));
    }
    const who = typeof p.actor === 'string' ? 'break-glass admin token' : p.actor.email ?? p.actor.sub;
    // Sign-out (a form) goes on to the IdP's end_session_endpoint: the page's CSP must let it. Known
    // without asking the IdP, so the console opens for a signed-in person while the IdP is down.
    const targets = s.session.kind === 'oidc' && auth.oidc ? auth.oidc.signOutOrigins() : [];
    send(ctx, 200, appShell({ who, role: p.role, csrf: s.session.csrf, until: s.session.expiresAt }), targets.length ? { 'content-security-policy': cspFormTargets(targets) } : {});
  }));
  routes.exact.set('GET /console/', (ctx) => redirect(ctx, '/console'));
  // People type the pages they see as paths (/console/audit, /console/agents/x): the app routes by
  // the fragment, so a GET of any other /console/ path opens that page (same origin, fragment only).
  // Other methods are refused as the router refuses them (405 naming the methods, else 404).
  routes.prefixes.push(['/console/', (ctx) => {
    const path = ctx.path;
    if (ctx.req.method === 'GET') {
      const page = `${path.slice('/console'.length)}${ctx.query ? `?${ctx.query}` : ''}`.replace(/[^\x21-\x7e]/g, encodeURIComponent);
      return redirect(ctx, `/console#${page}`);
    }
    const allowed = [...routes.exact.keys()].filter((k) => k.endsWith(` ${path}`)).map((k) => k.split(' ')[0]);
    throw allowed.length
      ? new AamError(405, 'method_not_allowed', `${ctx.req.method} is not allowed on ${path}; use ${allowed.join(' or ')}`, { headers: { allow: allowed.join(', ') } })
      : new AamError(404, 'not_found', `no route ${ctx.req.method} ${path}`);
  }]);
  for (const [path, a] of assets) {
    routes.exact.set(`GET ${path}`, (ctx) => ctx.res.send(200, a.text, { 'content-type': a.type, 'x-request-id': ctx.requestId, ...headers, 'cache-control': 'no-cache' }));
  }

  routes.exact.set('GET /console/login', page(async (ctx) => {
    if (!auth.oidc) throw new AamError(404, 'not_found', 'single sign-on is not configured (AAM_OIDC_ISSUER, AAM_OIDC_CLIENT_ID, AAM_OIDC_CLIENT_SECRET, AAM_PUBLIC_URL)');
    let begun;
    try { begun = await auth.oidc.begin(); } catch (e) {
      // The IdP is down: say so on the sign-in page, where break-glass sign-in (if enabled) still works.
      const fallback = auth.adminTokenEnabled ? '; sign in with the break-glass AAM_ADMIN_TOKEN below if it cannot wait' : '';
      return send(ctx, 503, loginPage({ sso: true, token: auth.adminTokenEnabled, error: `Single sign-on is unavailable right now (${(e as Error).message}). Try again in a minute${fallback}.` }), { 'retry-after': '15' });
    }
    const { url, tx } = begun;
    const id = randomBytes(32).toString('base64url');
    await auth.logins.put(id, tx);
    redirect(ctx, url, [cookie(loginCookie, id, LOGIN_TTL_MS / 1000)]);
  }));

  routes.exact.set('GET /console/callback', page(async (ctx) => {
    if (!auth.oidc || !o.publicUrl) throw new AamError(404, 'not_found', 'single sign-on is not configured');
    const id = parseCookies(ctx.req.headers.cookie).get(loginCookie);
    const tx = id ? await auth.logins.take(id) : undefined; // one use, whatever happens next
    if (!tx || Date.now() - tx.createdAt > LOGIN_TTL_MS) {
      return send(ctx, 400, errorPage('Sign-in failed', 'this sign-in was not started from this browser or took longer than 10 minutes; start again from the console'));
    }
    const q = new URLSearchParams(ctx.query);
    if (tx.renews) return reauthorized(ctx, tx, q);
    if (q.get('error')) return send(ctx, 400, errorPage('Sign-in failed', `the identity provider said: ${q.get('error')}${q.get('error_description') ? ` (${q.get('error_description')})` : ''}`));
    let who;
    try { who = await auth.oidc.finish(new URL(`${o.publicUrl}/console/callback?${ctx.query}`), tx); } catch (e) {
      ctx.rt.log.warn({ event: 'console_login_failed', error: (e as Error).message }, 'console sign-in refused');
      return send(ctx, 400, errorPage('Sign-in failed', (e as Error).message));
    }
    const role = auth.roleOf(who);
    if (!role) {
      ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'console_login_refused', target: 'console', actor: { type: 'user', sub: who.sub, email: who.email } }, detail: { groups: who.groups.join(',') }, outcome: { status: 403 } });
      return send(ctx, 403, errorPage('No access', `you signed in as ${who.email ?? who.sub}, but no RoleBinding names you${who.groups.length ? ` or your groups (${who.groups.join(', ')})` : ''}; ask an aam admin to add one`));
    }
    const { id: sid, session } = await auth.sessions.create({ kind: 'oidc', sub: who.sub, email: who.email, groups: who.groups, expiresAt: who.exp * 1000, idToken: who.idToken, refreshToken: who.refreshToken });
    ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'console_login', target: 'console', actor: { type: 'user', sub: who.sub, email: who.email } }, detail: { role, expires_at: new Date(session.expiresAt).toISOString(), renews: session.refreshToken !== undefined }, outcome: { status: 200 } });
    redirect(ctx, '/console', [cookie(sessionCookie, sid, (session.expiresAt - Date.now()) / 1000), cookie(loginCookie, '', 0)]);
  }));

  /** The IdP's answer to a silent re-authorization: the session renewed (back to the console), or ended (the sign-in page says why). */
  async function reauthorized(ctx: Ctx, tx: LoginTransaction, q: URLSearchParams): Promise<void> {
    const sid = parseCookies(ctx.req.headers.cookie).get(sessionCookie);
    // The answer renews the session it was asked for, in the browser that asked, only.
    if (!sid || sha256Hex(sid) !== tx.renews) throw new AamError(401, 'admin_unauthorized', 'this renewal of a console session was not started from this browser\'s session; sign in again');
    const error = q.get('error');
    if (error) throw await auth.renewer.notReauthorized(sid, `it answered ${error}${q.get('error_description') ? `: ${q.get('error_description')}` : ''}`);
    let who;
    try { who = await auth.oidc!.finish(new URL(`${o.publicUrl}/console/callback?${ctx.query}`), tx); } catch (e) {
      throw await auth.renewer.notReauthorized(sid, (e as Error).message);
    }
    await auth.renewer.reauthorized(sid, who);
    redirect(ctx, '/console', [cookie(loginCookie, '', 0)]);
  }

  routes.exact.set('POST /console/token-login', page(async (ctx) => {
    auth.checkOrigin(ctx.req);
    const token = (await formOf(ctx)).get('token') ?? '';
    if (!auth.adminTokenEnabled) throw new AamError(401, 'admin_unauthorized', 'that is not the AAM_ADMIN_TOKEN this gateway was started with');
    if (!auth.isAdminToken(token)) {
      const e = new AdminTokenRefused('console', 'that is not the AAM_ADMIN_TOKEN this gateway was started with');
      auth.recordTokenRefused(ctx, e);
      throw e;
    }
    const { id, session } = await auth.sessions.create({ kind: 'admin-token', sub: 'admin-token', groups: [], expiresAt: Infinity, tokenTag: adminTokenTag(token) });
    ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'console_login', target: 'console', actor: BREAK_GLASS }, outcome: { status: 200 } });
    redirect(ctx, '/console', [cookie(sessionCookie, id, (session.expiresAt - Date.now()) / 1000)]);
  }));

  // Sign-out ends the session here and, when the IdP offers RP-initiated logout, there too: the
  // browser goes to its end_session_endpoint (id_token_hint, post_logout_redirect_uri) and comes
  // back to /console/signed-out. Without one, the session here ends and the IdP's stays.
  routes.exact.set('POST /console/logout', page(async (ctx) => {
    auth.checkOrigin(ctx.req);
    // The session as stored, not renewed first: signing out works past the ID token, the IdP up or down.
    const sid = parseCookies(ctx.req.headers.cookie).get(sessionCookie);
    const found = sid ? await auth.sessions.get(sid).catch((e: Error) => { throw new AamError(503, 'store_unavailable', `console sessions are unavailable: ${e.message}`, { headers: { 'retry-after': '5' } }); }) : undefined;
    const s = found && { id: sid!, session: found };
    let next = '/console';
    if (s) {
      const csrf = (await formOf(ctx)).get('csrf') ?? ctx.req.headers['x-csrf-token'];
      if (csrf !== s.session.csrf) throw new AamError(403, 'csrf_failed', 'sign-out needs the page\'s CSRF token; reload the console and try again');
      await auth.sessions.delete(s.id);
      // Its refresh token would renew nothing here any more; revoked at the IdP too, without making sign-out wait for it.
      auth.revokeAtIdp(s.session);
      const actor = s.session.kind === 'admin-token' ? BREAK_GLASS : userActor(s.session);
      const idp = s.session.kind === 'oidc' && auth.oidc ? await auth.oidc.endSessionUrl(s.session.idToken) : null;
      ctx.rt.audit?.record({ type: 'admin', request_id: ctx.requestId, admin: { action: 'console_logout', target: 'console', actor }, detail: { at_idp: idp !== null }, outcome: { status: 200 } });
      if (idp) next = idp;
    }
    redirect(ctx, next, [cookie(sessionCookie, '', 0)]);
  }));

  routes.exact.set('GET /console/signed-out', page(async (ctx) => {
    send(ctx, 200, loginPage({ sso: !!auth.oidc, token: auth.adminTokenEnabled, notice: 'You are signed out of aam and of your identity provider.' }));
  }));
}
