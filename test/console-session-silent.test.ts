// Console sessions at an IdP that issues no refresh token (a real oidc-provider without the
// refresh_token grant, 5 s ID tokens): past its ID token the session is re-authorized silently, by
// sending the browser to the IdP with prompt=none (and the ID token as id_token_hint); signed in
// there, the person comes back renewed without a form (groups read again); signed out there
// (login_required), the session ends and the sign-in page says why. The IdP's answer renews only
// the session whose browser asked for it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromiumMissing, launchChromium, signInWithBrowser, startConsoleEnv, ADMIN_TOKEN, type ConsoleEnv } from './helpers/console-setup.ts';
import { CookieJar, loginWithoutBrowser, type TestUser } from './helpers/oidc-idp.ts';
import { sha256Hex } from '../src/lib/hash.ts';

const ID_TOKEN_S = 5;
const users: Record<string, TestUser> = {
  olga: { email: 'olga@example.com', groups: ['platform'] }, // operator (by group)
  victor: { email: 'victor@example.com', groups: ['everyone'] }, // viewer (by group)
  vera: { email: 'vera@example.com', groups: ['everyone'] },
  pat: { email: 'pat@example.com', groups: ['everyone'] },
  alice: { email: 'alice@example.com', groups: ['security'] }, // admin (by email)
};
let env: ConsoleEnv;
before(async () => { env = await startConsoleEnv({ idTokenTtlS: ID_TOKEN_S, users }); });
after(async () => { await env?.close(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const me = (jar: CookieJar) => fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } });
const stored = (jar: CookieJar) => {
  const row = env.g.rt.db.prepare('SELECT record FROM console_session WHERE id_hash = ?').get(sha256Hex(jar.cookies.get('aam_session')!)) as { record: string } | undefined;
  return row && JSON.parse(row.record) as { sub: string; email: string; idExp: number; renewAt: number; expiresAt: number; refreshTokenSealed?: string };
};
/** Until the session's current ID token has run out. */
const pastIdToken = (jar: CookieJar) => sleep(Math.max(0, stored(jar)!.idExp - Date.now()) + 300);

/** A browser's walk: follow redirects (cookies kept, the IdP's too) until a page answers; every URL passed. */
async function follow(start: string, jar: CookieJar): Promise<{ urls: URL[]; res: Response; body: string }> {
  const urls: URL[] = [];
  let url = new URL(start);
  for (let i = 0; i < 10; i++) {
    urls.push(url);
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.take(res);
    if (res.status >= 300 && res.status < 400) { url = new URL(res.headers.get('location')!, url); continue; }
    return { urls, res, body: await res.text() };
  }
  throw new Error(`too many redirects: ${urls.map((u) => u.href).join(' -> ')}`);
}

async function signIn(login: string): Promise<CookieJar> {
  const { callback, jar, body } = await loginWithoutBrowser(env.url, login);
  assert.equal(callback.status, 303, body);
  return jar;
}

async function trail(sub: string): Promise<Array<{ admin: { action: string }; detail?: Record<string, unknown>; outcome: { status: number; error?: string } }>> {
  const r = await fetch(`${env.url}/admin/v1/audit?type=admin&limit=1000`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const all = ((await r.json()) as { data: Array<{ admin: { action: string; actor: { sub?: string } }; outcome: { status: number } }> }).data;
  return all.filter((e) => e.admin.action.startsWith('console_session_') && e.admin.actor.sub === sub).reverse() as never;
}

test('no refresh token: past the ID token the console page re-authorizes the session at the IdP with prompt=none, without a form, and the session goes on (groups read again)', async () => {
  const jar = await signIn('olga');
  const session = jar.cookies.get('aam_session');
  const first = stored(jar)!;
  assert.equal(first.refreshTokenSealed, undefined, 'this IdP gave no refresh token');
  assert.ok(first.expiresAt > Date.now() + 11 * 3600_000, 'the session may last until the maximum, not the 5 s ID token');
  assert.equal(((await (await me(jar)).json()) as { session_renews: boolean }).session_renews, true);

  users.olga.groups = ['everyone']; // moved at the IdP meanwhile
  await pastIdToken(jar);
  const api = await me(jar);
  assert.equal(api.status, 401, 'past the ID token the admin API opens nothing until the session is re-authorized');
  assert.equal(((await api.json()) as { error: { code: string } }).error.code, 'reauthorization_required');

  const walk = await follow(`${env.url}/console`, jar);
  const authorize = walk.urls.find((u) => u.href.startsWith(env.idp.issuer));
  assert.ok(authorize, `the browser went to the IdP: ${walk.urls.map((u) => u.href).join(' -> ')}`);
  assert.equal(authorize.searchParams.get('prompt'), 'none');
  assert.ok(authorize.searchParams.get('id_token_hint'), 'the expired ID token names the person to the IdP');
  assert.ok(!walk.body.includes('name="login"'), 'no sign-in form on the way');
  assert.equal(walk.res.status, 200, walk.body.slice(0, 300));
  assert.match(walk.body, /olga@example\.com \(viewer\)/, 'back at the console, with the groups the IdP has now');
  assert.equal(jar.cookies.get('aam_session'), session, 'the same session');
  assert.ok(stored(jar)!.idExp > first.idExp, 'with the new ID token');
  assert.equal((await me(jar)).status, 200);
  const events = await trail('olga');
  assert.deepEqual(events.map((e) => [e.admin.action, e.detail]), [['console_session_renewed', { role_before: 'operator', role_after: 'viewer', groups_before: 'platform', groups_after: 'everyone' }]]);
});

test('no refresh token, signed out at the IdP meanwhile: it answers login_required, the session ends, and the sign-in page says so', async () => {
  const jar = await signIn('victor');
  for (const name of [...jar.cookies.keys()]) if (!name.startsWith('aam_')) jar.cookies.delete(name); // the IdP's own session is gone
  await pastIdToken(jar);
  const walk = await follow(`${env.url}/console`, jar);
  assert.equal(walk.res.status, 401);
  assert.match(walk.body, /role="alert">signed out: your sign-in expired at the identity provider \(it answered login_required/);
  assert.match(walk.body, /Sign in with single sign-on/);
  assert.equal(stored(jar), undefined, 'the session is gone');
  assert.equal((await me(jar)).status, 401);
  const [refused, ...more] = await trail('victor');
  assert.equal(more.length, 0);
  assert.equal(refused.admin.action, 'console_session_renewal_refused');
  assert.match(refused.outcome.error!, /^it answered login_required/);
});

test('the IdP\'s answer to a silent re-authorization renews only the session whose browser asked: presented with another session\'s cookie it is refused', async () => {
  const asker = await signIn('vera');
  const other = await signIn('alice');
  const before = stored(other)!;
  await pastIdToken(asker);
  // The asker's browser goes to the IdP and gets its answer (a code for vera), but does not deliver it...
  let url = new URL(`${env.url}/console`);
  for (let hops = 0; url.pathname !== '/console/callback'; hops++) {
    const r = await fetch(url, { redirect: 'manual', headers: { cookie: asker.header() } });
    asker.take(r);
    const next = r.headers.get('location');
    assert.ok(next && hops < 10, `${url.href} answered ${r.status}, not a redirect on the way to the callback`);
    url = new URL(next, url);
  }
  // ...another session's browser does, with the asker's login cookie.
  const mixed = new CookieJar(other);
  mixed.cookies.set('aam_login', asker.cookies.get('aam_login')!);
  const r = await fetch(url, { redirect: 'manual', headers: { cookie: mixed.header() } });
  assert.equal(r.status, 401);
  assert.match(await r.text(), /this renewal of a console session was not started from this browser&#39;s session|this renewal of a console session was not started from this browser's session/);
  const after = stored(other)!;
  assert.deepEqual([after.sub, after.email, after.idExp], ['alice', 'alice@example.com', before.idExp], 'the other session is still alice\'s, not renewed');
});

test('an open live tail of such a session does not send it to the IdP: past the ID token the tail ends (renewal_due), the session stays for its person\'s next page load', async () => {
  const jar = await signIn('pat');
  const r = await fetch(`${env.url}/admin/v1/audit/stream`, { headers: { cookie: jar.header() }, signal: AbortSignal.timeout(ID_TOKEN_S * 1000 + 20_000) });
  assert.equal(r.status, 200);
  assert.match(await r.text(), /event: ended\ndata: \{"status":401,"message":"your sign-in is due for renewal[^"]*","code":"renewal_due"\}/);
  assert.ok(stored(jar), 'not signed out');
  const walk = await follow(`${env.url}/console`, jar);
  assert.equal(walk.res.status, 200);
  assert.match(walk.body, /pat@example\.com \(viewer\)/);
});

test('signing out works past the ID token (nothing to renew first)', async () => {
  const jar = await signIn('pat');
  const m = await (await me(jar)).json() as { csrf_token: string };
  await pastIdToken(jar);
  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${m.csrf_token}` });
  assert.equal(out.status, 303, await out.text());
  assert.equal(stored(jar), undefined, 'signed out');
});

test('browser: past the ID token a click in the console re-authorizes silently and lands on the page clicked, without a form or a warning', { skip: chromiumMissing }, async () => {
  const chrome = await launchChromium('aam-session-silent-');
  try {
    const ctx = await chrome.browser.newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(30_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const idp: string[] = [];
    page.on('request', (req) => { if (req.url().startsWith(env.idp.issuer) && req.isNavigationRequest()) idp.push(req.url()); });
    await signInWithBrowser(page, env.url, 'alice');
    await page.getByRole('heading', { name: 'Agents' }).waitFor();
    idp.length = 0;
    await page.waitForTimeout(ID_TOKEN_S * 1000 + 1000);
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.waitForURL(`${env.url}/console#/approvals`);
    await page.getByRole('heading', { name: 'Approvals' }).waitFor();
    assert.ok(idp.some((u) => new URL(u).searchParams.get('prompt') === 'none'), `re-authorized at the IdP: ${idp.join(', ')}`);
    assert.equal(await page.locator('input[name="login"]').count(), 0, 'no sign-in form');
    assert.equal(await page.getByRole('alert').count(), 0, 'no warning, no signed-out notice');
    assert.deepEqual(errors, []);
  } finally { await chrome.close(); }
});
