// People sign in with OpenID Connect (a real provider in-process) and use the admin API as
// themselves: code flow with PKCE, state and nonce checked, sessions in HttpOnly SameSite cookies
// bounded by AAM_CONSOLE_SESSION_MAX (renewed at the IdP past the ID token), CSRF token and Origin on every change, roles from RoleBindings as they
// are now, ID tokens as Bearer verified against the issuer's keys, and agent credentials refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { startConsoleEnv, ADMIN_TOKEN, TOOL_SECRET, type ConsoleEnv } from './helpers/console-setup.ts';
import { loginWithoutBrowser, startTestIdp, CookieJar } from './helpers/oidc-idp.ts';
import { createOidcClient, oidcSettingsFrom, OidcError, OidcUnavailable } from '../src/console/oidc.ts';
import type { AuditEvent } from '../src/audit/event.ts';

let env: ConsoleEnv;
before(async () => { env = await startConsoleEnv(); });
after(async () => { await env?.close(); });

interface Me { actor: unknown; role: string; csrf_token: string | null; session_expires_at: string | null }

async function signIn(login: string): Promise<{ jar: CookieJar; me: Me }> {
  const { callback, jar, body } = await loginWithoutBrowser(env.url, login);
  assert.equal(callback.status, 303, body);
  const me = await (await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).json() as Me;
  return { jar, me };
}

/** A state-changing admin call with the session cookie (CSRF token and Origin unless overridden). */
function post(jar: CookieJar, path: string, body: unknown, o: { csrf?: string | null; origin?: string | null } = {}) {
  const headers: Record<string, string> = { cookie: jar.header(), 'content-type': 'application/json' };
  if (o.csrf !== null && o.csrf !== undefined) headers['x-csrf-token'] = o.csrf;
  if (o.origin !== null) headers.origin = o.origin ?? env.url;
  return fetch(`${env.url}/admin/v1${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
}

async function adminEvents(action: string): Promise<AuditEvent[]> {
  const r = await fetch(`${env.url}/admin/v1/audit?type=admin&limit=200`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  return ((await r.json()) as { data: AuditEvent[] }).data.filter((e) => e.admin?.action === action);
}

test('sign-in: code flow with PKCE lands in an HttpOnly SameSite=Lax session bounded by the session maximum (12 h; renewed at the IdP past the ID token); the person is the actor', async () => {
  let authorize: URL | undefined;
  const { callback, jar } = await loginWithoutBrowser(env.url, 'olga', { authorizeUrl: (u) => { authorize = u; return u; } });
  assert.equal(callback.status, 303);
  assert.equal(callback.headers.get('location'), '/console');
  const p = authorize!.searchParams;
  assert.equal(p.get('code_challenge_method'), 'S256');
  assert.ok(p.get('code_challenge') && p.get('state') && p.get('nonce'), 'PKCE challenge, state and nonce are sent');
  assert.equal(p.get('redirect_uri'), `${env.url}/console/callback`);
  const setCookie = callback.headers.getSetCookie().find((c) => c.startsWith('aam_session='))!;
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Lax/);
  assert.match(setCookie, /Path=\//);
  assert.doesNotMatch(setCookie, /Secure/, 'plain http: no Secure flag (the browser would drop the cookie)');
  const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie)![1]);
  assert.ok(maxAge > 11 * 3600 && maxAge <= 12 * 3600, `the cookie lasts as long as the session may (12 h), renewed past the 1 h ID token, not longer (${maxAge} s)`);

  const me = await (await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).json() as Me;
  assert.equal(me.role, 'operator');
  assert.deepEqual(me.actor, { type: 'user', sub: 'olga', email: 'olga@example.com' });
  assert.ok(Date.parse(me.session_expires_at!) <= Date.now() + 12 * 3600_000 + 5000);

  const made = await post(jar, '/keys', { agent: 'finance-analyst' }, { csrf: me.csrf_token });
  assert.equal(made.status, 201, await made.clone().text());
  const { id } = await made.json() as { id: string };
  const ev = (await adminEvents('key_created')).find((e) => e.admin?.target === id);
  assert.deepEqual(ev?.admin?.actor, { type: 'user', sub: 'olga', email: 'olga@example.com' }, 'the key event names the person');
  const login = (await adminEvents('console_login')).find((e) => typeof e.admin?.actor === 'object' && e.admin.actor.sub === 'olga');
  assert.ok(login, 'the sign-in itself is on record');
});

test('CSRF: a change without the token, with a wrong one, cross-origin or without Origin is refused (403) and nothing changes', async () => {
  const { jar, me } = await signIn('olga');
  const before = (await (await fetch(`${env.url}/admin/v1/keys`, { headers: { cookie: jar.header() } })).json() as { data: unknown[] }).data.length;
  const cases: Array<[string, { csrf?: string | null; origin?: string | null }]> = [
    ['no CSRF token', { csrf: null }],
    ['wrong CSRF token', { csrf: 'x'.repeat(43) }],
    ['cross-origin POST', { csrf: me.csrf_token, origin: 'https://evil.example' }],
    ['no Origin', { csrf: me.csrf_token, origin: null }],
  ];
  for (const [what, o] of cases) {
    const r = await post(jar, '/keys', { agent: 'finance-analyst' }, o);
    assert.equal(r.status, 403, what);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'csrf_failed', what);
  }
  const after = (await (await fetch(`${env.url}/admin/v1/keys`, { headers: { cookie: jar.header() } })).json() as { data: unknown[] }).data.length;
  assert.equal(after, before, 'no key was made');
  // Sign-out is a change too: a cross-site form cannot log a person out.
  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${me.csrf_token}` });
  assert.equal(out.status, 403);
});

test('roles: a viewer reads but cannot revoke a key (403), an approver cannot create one, no RoleBinding means no session', async () => {
  const key = env.g.rt.keys.create('finance-analyst').key;
  const viewer = await signIn('victor');
  assert.equal(viewer.me.role, 'viewer');
  assert.equal((await fetch(`${env.url}/admin/v1/agents`, { headers: { cookie: viewer.jar.header() } })).status, 200);
  const r = await post(viewer.jar, `/keys/${key.id}/revoke`, {}, { csrf: viewer.me.csrf_token });
  assert.equal(r.status, 403);
  assert.match(((await r.json()) as { error: { message: string } }).error.message, /operator role/);
  assert.equal(env.g.rt.keys.get(key.id)?.revokedAt, null, 'the key still works');

  const approver = await signIn('april'); // bound by email in another case (APRIL@example.com)
  assert.equal(approver.me.role, 'approver');
  assert.equal((await post(approver.jar, '/keys', { agent: 'finance-analyst' }, { csrf: approver.me.csrf_token })).status, 403);

  const { callback, jar, body } = await loginWithoutBrowser(env.url, 'mallory');
  assert.equal(callback.status, 403);
  assert.match(body, /no RoleBinding names you/);
  assert.ok(!jar.cookies.has('aam_session'), 'no session for a person without a role');

  // Each refusal is on record under the person's name: the route, the role it needs, the one they have.
  const nobody = await fetch(`${env.url}/admin/v1/audit`, { headers: { authorization: `Bearer ${await env.idp.sign({ sub: 'mallory', email: 'mallory@example.com', groups: ['contractors'] })}` } });
  assert.equal(nobody.status, 403);
  const denied = await adminEvents('admin_denied');
  const of = (email: string) => denied.filter((e) => (e.admin?.actor as { email?: string }).email === email);
  const v = of('victor@example.com').find((e) => e.admin?.target === `POST /admin/v1/keys/${key.id}/revoke`);
  assert.deepEqual(v?.admin?.actor, { type: 'user', sub: 'victor', email: 'victor@example.com' });
  assert.deepEqual(v?.detail, { need: 'operator', role: 'viewer' });
  assert.equal(v?.outcome?.status, 403);
  assert.deepEqual(of('april@example.com').map((e) => [e.admin?.target, e.detail]), [['POST /admin/v1/keys', { need: 'operator', role: 'approver' }]]);
  assert.deepEqual(of('mallory@example.com').map((e) => [e.admin?.target, e.detail]), [['GET /admin/v1/audit', { need: 'viewer', role: 'none' }]]);
});

test('sign-in attacks: a wrong state or a nonce the session did not choose is refused; the login cannot be replayed', async () => {
  const wrongState = await loginWithoutBrowser(env.url, 'alice', { callbackUrl: (u) => { u.searchParams.set('state', 'attacker-state'); return u; } });
  assert.equal(wrongState.callback.status, 400);
  assert.match(wrongState.body, /state/i);
  assert.ok(!wrongState.jar.cookies.has('aam_session'));

  const wrongNonce = await loginWithoutBrowser(env.url, 'alice', { authorizeUrl: (u) => { u.searchParams.set('nonce', 'attacker-nonce'); return u; } });
  assert.equal(wrongNonce.callback.status, 400);
  assert.match(wrongNonce.body, /nonce/i);
  assert.ok(!wrongNonce.jar.cookies.has('aam_session'));

  // A callback replayed (same code, same browser) finds no login in progress.
  let cb: URL | undefined;
  const first = await loginWithoutBrowser(env.url, 'alice', { callbackUrl: (u) => { cb = new URL(u); return u; } });
  assert.equal(first.callback.status, 303);
  const replay = await fetch(cb!, { redirect: 'manual', headers: { cookie: first.jar.header() } });
  assert.equal(replay.status, 400);
  // A callback in a browser that never started the login (login CSRF) is refused too.
  const foreign = await fetch(cb!, { redirect: 'manual' });
  assert.equal(foreign.status, 400);
  assert.match(await foreign.text(), /not started from this browser/);
});

test('ID tokens as Bearer: the issuer\'s own token works with the person\'s role; another audience, expired, forged and agent credentials do not', async () => {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const good = await env.idp.sign({ sub: 'olga', email: 'olga@example.com', groups: ['platform'] });
  const me = await fetch(`${env.url}/admin/v1/me`, { headers: { authorization: `Bearer ${good}` } });
  assert.equal(me.status, 200);
  assert.equal(((await me.json()) as Me).role, 'operator');
  // A Bearer token is not ambient authority: no CSRF token needed.
  const reload = await fetch(`${env.url}/admin/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${good}` } });
  assert.equal(reload.status, 200);

  const agentKey = env.g.rt.keys.create('finance-analyst').secret;
  const svid = await env.g.rt.issuer!.mint({ spiffeId: 'spiffe://prod/agent/finance-analyst', audience: 'aam', ttlSeconds: 300 });
  const bad: Array<[string, string]> = [
    ['another audience', await env.idp.sign({ sub: 'olga', email: 'olga@example.com', groups: ['platform'], aud: 'some-other-app' })],
    ['expired', await env.idp.sign({ sub: 'olga', email: 'olga@example.com', groups: ['platform'], iat: now - 7200, exp: now - 60 })],
    ['forged (other key, same kid)', await env.idp.sign({ sub: 'alice', email: 'alice@example.com' }, { key: 'other' })],
    ['another issuer', await env.idp.sign({ sub: 'alice', email: 'alice@example.com', iss: 'https://evil.example' })],
    // Unsigned: a JWT with an empty signature is refused as one (401), not asked about at the IdP as an opaque token (was 503).
    ['unsigned (alg none)', `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: env.idp.issuer, aud: env.idp.clientId, sub: 'alice', email: 'alice@example.com', iat: now, exp: now + 600 })}.`],
    ['agent virtual key', agentKey],
    ['agent JWT-SVID', svid],
  ];
  for (const [what, token] of bad) {
    const r = await fetch(`${env.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(r.status, 401, what);
  }
  // An agent key never opens a console session either, whatever cookie it is put in.
  for (const cookie of [`aam_session=${agentKey}`, `aam_session=${svid}`]) {
    assert.equal((await fetch(`${env.url}/admin/v1/me`, { headers: { cookie } })).status, 401);
    const page = await fetch(`${env.url}/console`, { headers: { cookie } });
    assert.match(await page.text(), /Sign in with single sign-on/);
  }
  // An email the IdP marks unverified (as the string "false", as Cognito's userinfo does) binds no role.
  const unverified = await env.idp.sign({ sub: 'zed', email: 'alice@example.com', email_verified: 'false' });
  assert.equal((await fetch(`${env.url}/admin/v1/me`, { headers: { authorization: `Bearer ${unverified}` } })).status, 403);
  // A valid token for a person without a RoleBinding is 403, naming what to fix.
  const nobody = await fetch(`${env.url}/admin/v1/me`, { headers: { authorization: `Bearer ${await env.idp.sign({ sub: 'mallory', email: 'mallory@example.com', groups: ['contractors'] })}` } });
  assert.equal(nobody.status, 403);
});

test('roles are read as they are now: removing a RoleBinding ends that person\'s access at the next request; sign-out ends the session', async () => {
  const { jar, me } = await signIn('olga');
  assert.equal(me.role, 'operator');
  const original = readFileSync(env.configPath, 'utf8');
  try {
    writeFileSync(env.configPath, original.replace('role: "operator"', 'role: "viewer"').replace('"role":"operator"', '"role":"viewer"'));
    assert.equal(env.g.rt.reload('test'), null);
    const after = await (await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).json() as Me;
    assert.equal(after.role, 'viewer', 'the same session now has the role the config gives');
  } finally {
    writeFileSync(env.configPath, original);
    env.g.rt.reload('test');
  }
  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${me.csrf_token}` });
  assert.equal(out.status, 303);
  assert.match(out.headers.getSetCookie().join(), /aam_session=;.*Max-Age=0/);
  assert.equal((await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).status, 401, 'the old cookie opens nothing');
});

test('approvals: an approver sees the held call\'s arguments redacted, decides with a reason; the event names the person and the reason, and the call then goes through', async () => {
  const key = env.g.rt.keys.create('finance-analyst').secret;
  const args = JSON.stringify({ id: 'a1', note: 'customer bob@example.org asked', leaked: `token ${TOOL_SECRET}` });
  const call = () => fetch(`${env.url}/tools/salesforce/delete`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: args });
  const held = await call();
  assert.equal(held.status, 403);
  const approvalId = ((await held.json()) as { error: { approval_id: string } }).error.approval_id;
  const viewer = await signIn('victor');
  const listed = await (await fetch(`${env.url}/admin/v1/approvals?status=pending`, { headers: { cookie: viewer.jar.header() } })).text();
  const pending = (JSON.parse(listed) as { data: Array<{ id: string; argsForReview?: string }> }).data.find((a) => a.id === approvalId)!;
  const shown = JSON.parse(pending.argsForReview!) as Record<string, string>;
  assert.equal(shown.id, 'a1', 'what is not sensitive is shown as sent');
  assert.equal(shown.note, 'customer [EMAIL] asked', 'PII is redacted');
  assert.ok(!listed.includes(TOOL_SECRET) && !listed.includes('bob@example.org'), 'neither the credential nor the email reaches the reviewer');
  assert.equal((await post(viewer.jar, `/approvals/${approvalId}/approve`, { reason: 'looks fine' }, { csrf: viewer.me.csrf_token })).status, 403, 'a viewer cannot approve');
  const approver = await signIn('april');
  const ok = await post(approver.jar, `/approvals/${approvalId}/approve`, { reason: 'ticket OPS-42' }, { csrf: approver.me.csrf_token });
  assert.equal(ok.status, 200, await ok.clone().text());
  assert.equal(((await ok.json()) as { decidedBy: string }).decidedBy, 'user:april@example.com');
  const ev = (await adminEvents('approval_granted')).find((e) => e.admin?.target === approvalId) as AuditEvent & { admin: { reason?: string } };
  assert.deepEqual(ev.admin.actor, { type: 'user', sub: 'april', email: 'april@example.com' });
  assert.equal(ev.admin.reason, 'ticket OPS-42');
  assert.equal((await call()).status, 200, 'the approved call completes');
});

test('break-glass: AAM_ADMIN_TOKEN still opens the admin API and a console session, recorded as the admin token', async () => {
  assert.equal((await fetch(`${env.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 200);
  const wrong = await fetch(`${env.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=nope' });
  assert.equal(wrong.status, 401);
  const cross = await fetch(`${env.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: 'https://evil.example', 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN_TOKEN}` });
  assert.equal(cross.status, 403, 'no login CSRF');
  const r = await fetch(`${env.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN_TOKEN}` });
  assert.equal(r.status, 303);
  const cookie = r.headers.getSetCookie()[0].split(';')[0];
  const me = await (await fetch(`${env.url}/admin/v1/me`, { headers: { cookie } })).json() as Me;
  assert.equal(me.role, 'admin');
  assert.equal(me.actor, 'admin');
});

test('credentials are admin-only and name the person; a reload by an operator is recorded under their name', async () => {
  const bearer = async (sub: string, email: string, groups: string[]) => ({ authorization: `Bearer ${await env.idp.sign({ sub, email, groups })}`, 'content-type': 'application/json' });
  const operator = await bearer('olga', 'olga@example.com', ['platform']);
  const admin = await bearer('alice', 'alice@example.com', ['security']);
  const secret = 'vendor-secret-value-7c1e9a0b5d';
  const refused = await fetch(`${env.url}/admin/v1/credentials/vendor-key`, { method: 'POST', headers: operator, body: JSON.stringify({ secret }) });
  assert.equal(refused.status, 403, 'an operator may not set credentials');
  const set = await fetch(`${env.url}/admin/v1/credentials/vendor-key`, { method: 'POST', headers: admin, body: JSON.stringify({ secret }) });
  assert.equal(set.status, 200, await set.clone().text());
  assert.ok(!(await set.text()).includes(secret), 'the value never comes back');
  const listed = await (await fetch(`${env.url}/admin/v1/credentials`, { headers: operator })).text();
  assert.ok(listed.includes('sf-token') && !listed.includes(secret) && !listed.includes(TOOL_SECRET), 'names and versions only, never a value');
  const ev = (await adminEvents('credential_set')).find((e) => e.admin?.target === 'vendor-key');
  assert.deepEqual(ev?.admin?.actor, { type: 'user', sub: 'alice', email: 'alice@example.com' });

  const original = readFileSync(env.configPath, 'utf8');
  try {
    writeFileSync(env.configPath, `${original}---\napiVersion: access.envisionai.dev/v1\nkind: RoleBinding\nmetadata: { name: extra }\nspec: { role: viewer, subjects: [ { email: nobody@example.com } ] }\n`);
    const r = await fetch(`${env.url}/admin/v1/reload`, { method: 'POST', headers: operator });
    assert.equal(r.status, 200);
    const reloaded = (await adminEvents('config_reloaded')).find((e) => typeof e.admin?.actor === 'object' && e.admin.actor.sub === 'olga');
    assert.deepEqual(reloaded?.admin?.actor, { type: 'user', sub: 'olga', email: 'olga@example.com' }, 'the reload names the person');
  } finally {
    writeFileSync(env.configPath, original);
    env.g.rt.reload('test');
  }
});

/** Does /console/login come back to aam's callback without the IdP asking anyone to sign in (an IdP session)? */
async function signsInSilently(jar: CookieJar): Promise<boolean> {
  let next = new URL(`${env.url}/console/login`);
  for (let hops = 0; hops < 10; hops++) {
    if (next.href.startsWith(`${env.url}/console/callback`)) return true;
    const r = await fetch(next, { redirect: 'manual', headers: { cookie: jar.header() } });
    jar.take(r);
    if (r.status < 300 || r.status >= 400) { await r.arrayBuffer(); return false; }
    next = new URL(r.headers.get('location')!, next);
  }
  throw new Error('too many redirects');
}

test('sign-out at the IdP: RP-initiated logout with id_token_hint and post_logout_redirect_uri ends the IdP session too; the ID token is kept sealed', async () => {
  const { jar, me } = await signIn('april');
  const stored = env.g.rt.db.prepare('SELECT record FROM console_session').all().map((r) => String(r.record));
  assert.ok(stored.some((t) => t.includes('"idTokenSealed":"v1:')), 'the session keeps the ID token for sign-out');
  assert.ok(stored.every((t) => !/eyJ[\w-]+\.eyJ/.test(t)), 'never in clear: a copy of the store gives no usable ID token');
  assert.equal(await signsInSilently(new CookieJar(jar)), true, 'before: the IdP session signs her in again without a form');

  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${me.csrf_token}` });
  assert.equal(out.status, 303);
  jar.take(out);
  const end = new URL(out.headers.get('location')!);
  assert.ok(end.href.startsWith(env.idp.issuer), `sent to the IdP: ${end.href}`);
  assert.equal(end.searchParams.get('post_logout_redirect_uri'), `${env.url}/console/signed-out`);
  assert.equal(end.searchParams.get('client_id'), env.idp.clientId);
  const hint = JSON.parse(Buffer.from(end.searchParams.get('id_token_hint')!.split('.')[1], 'base64url').toString()) as { sub: string; aud: string };
  assert.deepEqual([hint.sub, hint.aud], ['april', env.idp.clientId], 'id_token_hint is the ID token she signed in with');
  assert.equal((await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).status, 401, 'the session here is over at once');

  // At the IdP: its confirmation form, then back to aam's signed-out page.
  const confirm = await fetch(end, { headers: { cookie: jar.header() } });
  const html = await confirm.text();
  const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(html)?.[1];
  assert.ok(action && xsrf, html.slice(0, 300));
  const done = await fetch(new URL(action.replace(/&amp;/g, '&'), end), { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ xsrf, logout: 'yes' }).toString() });
  jar.take(done);
  assert.ok(done.status >= 300 && done.status < 400, `IdP answered ${done.status}`);
  assert.equal(new URL(done.headers.get('location')!).href.split('?')[0], `${env.url}/console/signed-out`);
  const page = await fetch(`${env.url}/console/signed-out`);
  assert.match(await page.text(), /You are signed out of aam and of your identity provider/);
  assert.equal(await signsInSilently(new CookieJar(jar)), false, 'after: the IdP asks her to sign in again');
  const ev = (await adminEvents('console_logout')).find((e) => typeof e.admin?.actor === 'object' && e.admin.actor.sub === 'april');
  assert.equal((ev?.detail as { at_idp?: boolean } | undefined)?.at_idp, true, 'the sign-out is on record, naming her');
});

test('sign-out with an IdP that offers no end_session_endpoint is local only: no URL to send the browser to', async () => {
  const idp = await startTestIdp({ redirectUri: 'http://127.0.0.1:9/console/callback', users: {}, rpLogout: false });
  try {
    const client = createOidcClient(oidcSettingsFrom({ AAM_OIDC_ISSUER: idp.issuer, AAM_OIDC_CLIENT_ID: idp.clientId, AAM_OIDC_CLIENT_SECRET: idp.clientSecret }, 'http://127.0.0.1:9')!);
    assert.equal(await client.endSessionUrl('x.y.z'), null);
    const told: string[] = [];
    const down = createOidcClient(oidcSettingsFrom({ AAM_OIDC_ISSUER: 'http://127.0.0.1:9', AAM_OIDC_CLIENT_ID: 'c', AAM_OIDC_CLIENT_SECRET: 's' }, 'http://127.0.0.1:9')!, { onUnavailable: (m) => told.push(m) });
    assert.equal(await down.endSessionUrl(undefined), null, 'an IdP out of reach: sign out here anyway');
    // The operator's log is told why (before: the person saw "unavailable", the log nothing); once per retry window.
    await assert.rejects(down.begin());
    assert.deepEqual(told, ['the OpenID Provider http://127.0.0.1:9 could not be reached or described itself badly: fetch failed']);
  } finally { await idp.close(); }
});

const asBearer = (token: string, path = '/me', init: RequestInit = {}) => fetch(`${env.url}/admin/v1${path}`, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` } });
async function errorOf(r: Response): Promise<string> { return ((await r.json()) as { error: { message: string } }).error.message; }

test('opaque access tokens as Bearer: checked by the IdP\'s introspection, with the person\'s role; revoked, expired, unknown and other clients\' tokens are refused', async () => {
  const olga = await env.idp.accessToken('olga');
  assert.doesNotMatch(olga, /\./, 'an opaque token, not a JWT');
  const me = await asBearer(olga);
  assert.equal(me.status, 200);
  assert.deepEqual(((await me.json()) as Me).actor, { type: 'user', sub: 'olga', email: 'olga@example.com' });
  const made = await asBearer(olga, '/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"agent":"finance-analyst"}' });
  assert.equal(made.status, 201, 'an operator\'s change, no CSRF token needed for a Bearer');
  const { id } = (await made.json()) as { id: string };
  assert.deepEqual((await adminEvents('key_created')).find((e) => e.admin?.target === id)?.admin?.actor, { type: 'user', sub: 'olga', email: 'olga@example.com' });
  const victor = await env.idp.accessToken('victor');
  assert.equal((await asBearer(victor, `/keys/${id}/revoke`, { method: 'POST' })).status, 403, 'a viewer\'s token has a viewer\'s rights');

  const unknown = await asBearer('opaque-token-the-idp-never-issued-0123456789');
  assert.equal(unknown.status, 401);
  assert.match(await errorOf(unknown), /not active/);
  const revoked = await env.idp.accessToken('april');
  await env.idp.revoke(revoked);
  assert.equal((await asBearer(revoked)).status, 401, 'revoked at the IdP');
  const other = await asBearer(await env.idp.accessToken('alice', { clientId: 'other-app' }));
  assert.equal(other.status, 401, 'a token another application got for an admin opens nothing here');
  assert.match(await errorOf(other), /issued to other-app, not to aam-console/);
  assert.equal((await asBearer(await env.idp.accessToken('mallory'))).status, 403, 'a real person without a RoleBinding');
  const expiring = await env.idp.accessToken('alice', { expiresIn: 1 });
  for (const deadline = Date.now() + 15_000; (await env.idp.introspect(expiring)).active;) {
    assert.ok(Date.now() < deadline, 'the token did not expire');
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await asBearer(expiring)).status, 401, 'expired');
  assert.equal((await asBearer(`aam_${'x'.repeat(40)}`)).status, 401, 'agent keys are never taken for access tokens');
});

test('access tokens by userinfo (AAM_OIDC_ACCESS_TOKENS=userinfo), refused when off, and a 503 (not a 401) when the IdP is away', async () => {
  const client = (mode: string, issuer = env.idp.issuer) => createOidcClient(oidcSettingsFrom({ AAM_OIDC_ISSUER: issuer, AAM_OIDC_CLIENT_ID: env.idp.clientId, AAM_OIDC_CLIENT_SECRET: env.idp.clientSecret, AAM_OIDC_ACCESS_TOKENS: mode }, env.url)!);
  const userinfo = client('userinfo');
  const who = await userinfo.verifyAccessToken(await env.idp.accessToken('olga'));
  assert.deepEqual([who.sub, who.email, who.groups], ['olga', 'olga@example.com', ['platform']]);
  // Answers are reused briefly (at most a minute): a token revoked after it was checked still works until then.
  const used = await env.idp.accessToken('olga');
  await userinfo.verifyAccessToken(used);
  await env.idp.revoke(used);
  assert.equal((await userinfo.verifyAccessToken(used)).sub, 'olga', 'cached answer');
  assert.equal((await client('userinfo').verifyAccessToken(await env.idp.accessToken('olga'))).sub, 'olga');
  const revoked = await env.idp.accessToken('olga');
  await env.idp.revoke(revoked);
  await assert.rejects(userinfo.verifyAccessToken(revoked), (e: unknown) => e instanceof OidcError && !(e instanceof OidcUnavailable) && /userinfo endpoint refused/.test((e as Error).message));
  await assert.rejects(client('off').verifyAccessToken(await env.idp.accessToken('olga')), /AAM_OIDC_ACCESS_TOKENS=off/);
  await assert.rejects(client('auto', 'http://127.0.0.1:9').verifyAccessToken('opaque-token-0123456789abcdef'), (e: unknown) => e instanceof OidcUnavailable);
  assert.throws(() => oidcSettingsFrom({ AAM_OIDC_ISSUER: env.idp.issuer, AAM_OIDC_CLIENT_ID: 'c', AAM_OIDC_CLIENT_SECRET: 's', AAM_OIDC_ACCESS_TOKENS: 'jwt' }, env.url), /AAM_OIDC_ACCESS_TOKENS must be one of auto, introspection, userinfo, off/);
});
