// Console sessions that outlive a short ID token: with a refresh token from the IdP (a real
// oidc-provider issuing 3 s ID tokens and rotating refresh tokens) the session is renewed at the
// IdP, re-reading groups (a group removed there takes effect at the next renewal); a refused
// renewal ends it with a page saying so; two requests renewing at once renew once; an IdP that is
// down past the ID token's expiry gives the SSO-unavailable page (no grace); sign-out revokes the
// refresh token there. A renewal that changes a person's role or groups, and a refused one, are
// on the audit trail. The refresh token is a secret: sealed in the store, never in a log line, the
// audit trail or a page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startConsoleEnv, ADMIN_TOKEN, type ConsoleEnv } from './helpers/console-setup.ts';
import { loginWithoutBrowser, type CookieJar, type TestUser } from './helpers/oidc-idp.ts';
import { unseal } from '../src/store/seal.ts';
import { sha256Hex } from '../src/lib/hash.ts';

const ID_TOKEN_S = 3;
// The IdP's people, changed by the tests as an IdP admin would.
const users: Record<string, TestUser> = {
  olga: { email: 'olga@example.com', groups: ['platform'] }, // operator (by group)
  victor: { email: 'victor@example.com', groups: ['everyone'] }, // viewer (by group)
  vera: { email: 'vera@example.com', groups: ['everyone'] },
  pat: { email: 'pat@example.com', groups: ['everyone'] },
  dan: { email: 'dan@example.com', groups: ['everyone'] },
  tess: { email: 'tess@example.com', groups: ['everyone'] },
};

let env: ConsoleEnv;
const logged: string[] = [];
const write = process.stderr.write.bind(process.stderr);
before(async () => {
  // The gateway logs to this process's stderr: keep a copy of every line (debug and up).
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => { logged.push(String(chunk)); return write(chunk, ...rest); }) as typeof process.stderr.write;
  env = await startConsoleEnv({ idTokenTtlS: ID_TOKEN_S, refreshTokens: true, users, env: { AAM_LOG_LEVEL: 'debug' } });
});
after(async () => { process.stderr.write = write; await env?.close(); });

interface Me { role: string; csrf_token: string; session_expires_at: string; session_renews: boolean }
const me = (jar: CookieJar) => fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Past the current ID token's expiry (and so past its renewal point). */
const pastIdToken = () => sleep(ID_TOKEN_S * 1000 + 1200);

async function signIn(login: string): Promise<{ jar: CookieJar; id: string; setCookie: string }> {
  const { callback, jar, body } = await loginWithoutBrowser(env.url, login);
  assert.equal(callback.status, 303, body);
  return { jar, id: jar.cookies.get('aam_session')!, setCookie: callback.headers.getSetCookie().find((c) => c.startsWith('aam_session='))! };
}

/** Every refresh and ID token a session of this file held (none may reach the audit trail). */
const secrets = new Set<string>();
const unsealed = (id: string, what: string, sealed: string | undefined) => (sealed ? unseal(createHash('sha256').update(`aam console ${what} v1\0`).update(id).digest(), sealed) : null);

/** The stored record of a session, and its refresh token unsealed with the key only the cookie gives. */
function stored(id: string): { record: string; refreshToken: string | null } | undefined {
  const row = env.g.rt.db.prepare('SELECT record FROM console_session WHERE id_hash = ?').get(sha256Hex(id)) as { record: string } | undefined;
  if (!row) return undefined;
  const r = JSON.parse(row.record) as { refreshTokenSealed?: string; idTokenSealed?: string };
  const refreshToken = unsealed(id, 'refresh_token', r.refreshTokenSealed);
  for (const t of [refreshToken, unsealed(id, 'id_token', r.idTokenSealed)]) if (t) secrets.add(t);
  return { record: row.record, refreshToken };
}

interface AdminEvent { admin: { action: string; actor: { sub: string } }; detail?: Record<string, unknown>; outcome: { status: number; error?: string } }
/** The trail's console-session renewal events for `sub`, oldest first (read with the break-glass token). */
async function renewalEvents(sub: string): Promise<AdminEvent[]> {
  const r = await fetch(`${env.url}/admin/v1/audit?type=admin&limit=1000`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(r.status, 200);
  const all = ((await r.json()) as { data: AdminEvent[] }).data;
  return all.filter((e) => e.admin.action.startsWith('console_session_renew') && e.admin.actor.sub === sub).reverse();
}

test('a session with a refresh token outlives its 3 s ID token: renewed at the IdP, groups read again (a group removed there takes effect at the next renewal)', async () => {
  const { jar, id, setCookie } = await signIn('olga');
  const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie)![1]);
  assert.ok(maxAge > 11 * 3600, `the cookie lasts as long as the session may (12 h), not the 3 s ID token: ${maxAge} s`);
  const first = await (await me(jar)).json() as Me;
  assert.equal(first.role, 'operator');
  assert.equal(first.session_renews, true);
  assert.ok(Date.parse(first.session_expires_at) > Date.now() + 11 * 3600_000, 'it ends for good at the maximum');
  const rt0 = stored(id)!.refreshToken;
  assert.ok(rt0, 'the refresh token is kept, sealed');

  const before = env.idp.refreshes.length;
  await pastIdToken();
  const r = await me(jar);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(((await r.json()) as Me).role, 'operator');
  assert.deepEqual(env.idp.refreshes.slice(before).map((x) => x.status), [200], 'renewed once at the IdP');
  assert.notEqual(stored(id)!.refreshToken, rt0, 'the rotated refresh token replaced the used one');

  users.olga.groups = ['everyone']; // the IdP admin moves her out of platform
  assert.equal(((await (await me(jar)).json()) as Me).role, 'operator', 'until the next renewal, the groups she signed in with');
  await pastIdToken();
  assert.equal(((await (await me(jar)).json()) as Me).role, 'viewer', 'the next renewal reads her groups again');
  stored(id); // (its tokens are collected for the last check: none on the trail)

  users.olga.groups = [];
  await pastIdToken();
  const none = await me(jar);
  assert.equal(none.status, 403);
  assert.match(((await none.json()) as { error: { message: string } }).error.message, /no RoleBinding names olga@example\.com/);
  stored(id);

  // The trail: the two renewals that changed her groups and role, not the one that changed nothing.
  const events = await renewalEvents('olga');
  assert.deepEqual(events.map((e) => [e.admin.action, e.outcome.status, e.detail]), [
    ['console_session_renewed', 200, { role_before: 'operator', role_after: 'viewer', groups_before: 'platform', groups_after: 'everyone' }],
    ['console_session_renewed', 200, { role_before: 'viewer', role_after: 'none', groups_before: 'everyone', groups_after: '' }],
  ]);
});

test('a renewal the IdP refuses (refresh token revoked there) ends the session: the page says the sign-in expired at the identity provider', async () => {
  const { jar, id } = await signIn('victor');
  await env.idp.revokeRefresh(stored(id)!.refreshToken!);
  await pastIdToken();
  const page = await fetch(`${env.url}/console`, { headers: { cookie: jar.header() } });
  assert.equal(page.status, 401);
  const html = await page.text();
  assert.match(html, /role="alert">signed out: your sign-in expired at the identity provider \(the identity provider refused to renew it \(invalid_grant/);
  assert.match(html, /Sign in with single sign-on/);
  assert.equal(stored(id), undefined, 'the session is gone from the store');
  assert.equal((await me(jar)).status, 401);
  assert.ok(logged.some((l) => l.includes('console_session_renewal_refused') && l.includes('"sub":"victor"')), 'the refusal is logged');
  const [refused, ...more] = await renewalEvents('victor');
  assert.equal(more.length, 0);
  assert.equal(refused.admin.action, 'console_session_renewal_refused', 'and on the audit trail');
  assert.equal(refused.outcome.status, 401);
  assert.match(refused.outcome.error!, /^the identity provider refused to renew it \(invalid_grant/);
  assert.deepEqual(refused.detail, { role_before: 'viewer' });
});

test('requests renewing one session at once renew it once at the IdP (rotation: a reused refresh token would revoke the grant) and all succeed', async () => {
  const { jar } = await signIn('vera');
  await pastIdToken();
  const before = env.idp.refreshes.length;
  const all = await Promise.all(Array.from({ length: 6 }, () => me(jar)));
  assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
  assert.deepEqual(env.idp.refreshes.slice(before).map((x) => x.status), [200], 'one refresh-token grant');
  await pastIdToken();
  assert.equal((await me(jar)).status, 200, 'and the next renewal works with the rotated token');
});

test('the refresh token never appears in clear: not in the store, the data dir, a log line, the audit trail or a page', async () => {
  const { jar, id } = await signIn('pat');
  const tokens = new Set<string>([stored(id)!.refreshToken!]);
  await pastIdToken();
  const m = await (await me(jar)).json() as Me;
  tokens.add(stored(id)!.refreshToken!);
  assert.equal(tokens.size, 2, 'two generations: at sign-in and after the renewal');
  const pages = [
    await (await fetch(`${env.url}/console`, { headers: { cookie: jar.header() } })).text(),
    JSON.stringify(m),
    await (await fetch(`${env.url}/admin/v1/audit?limit=1000`, { headers: { cookie: jar.header() } })).text(),
  ];
  // The whole trail, renewal events of the earlier tests included, holds none of this file's refresh or ID tokens.
  const trail = await (await fetch(`${env.url}/admin/v1/audit?limit=1000`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text();
  assert.ok(trail.includes('console_session_renewed') && trail.includes('console_session_renewal_refused'), 'the renewal events are there to check');
  assert.ok(secrets.size >= 6, `tokens collected: ${secrets.size}`);
  for (const t of secrets) assert.ok(!trail.includes(t), 'no token in the audit trail');
  const dataDir = dirname(env.g.rt.db.location()!);
  const files = readdirSync(dataDir, { recursive: true, withFileTypes: true }).filter((f) => f.isFile()).map((f) => readFileSync(join(f.parentPath, f.name)).toString('latin1'));
  assert.ok(files.length > 0);
  for (const t of tokens) {
    assert.ok(t.length >= 20);
    assert.ok(!stored(id)!.record.includes(t), 'not in the session record');
    for (const f of files) assert.ok(!f.includes(t), 'not in any file of the data dir');
    for (const l of logged) assert.ok(!l.includes(t), 'not in a log line');
    for (const p of pages) assert.ok(!p.includes(t), 'not in a page, /me or the audit trail');
  }
});

test('sign-out revokes the session\'s refresh token at the IdP (RFC 7009), so a copy of it renews nothing', async () => {
  const { jar, id } = await signIn('vera');
  const rt = stored(id)!.refreshToken!;
  assert.equal((await env.idp.introspect(rt)).active, true);
  const m = await (await me(jar)).json() as Me;
  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${m.csrf_token}` });
  assert.equal(out.status, 303);
  const deadline = Date.now() + 10_000;
  while ((await env.idp.introspect(rt)).active && Date.now() < deadline) await sleep(100);
  assert.equal((await env.idp.introspect(rt)).active, false, 'revoked at the IdP');
});

test('an open live tail does not renew a session at the IdP while its person is away: past the ID token it ends (renewal_due), and the person\'s next request renews it', async () => {
  const { jar } = await signIn('tess');
  const before = env.idp.refreshes.length;
  // Without the fix the tail's once-a-second check renews the session and it streams until this timeout (the test fails).
  const r = await fetch(`${env.url}/admin/v1/audit/stream`, { headers: { cookie: jar.header() }, signal: AbortSignal.timeout(ID_TOKEN_S * 1000 + 20_000) });
  assert.equal(r.status, 200);
  const text = await r.text(); // until the server ends it
  assert.match(text, /event: ended\ndata: \{"status":401,"message":"your sign-in is due for renewal at the identity provider, and only your own requests renew it[^"]*","code":"renewal_due"\}/);
  assert.deepEqual(env.idp.refreshes.slice(before), [], 'the tail asked the IdP nothing');
  const m = await me(jar);
  assert.equal(m.status, 200, 'the session is live: its person\'s next request renews it');
  assert.deepEqual(env.idp.refreshes.slice(before).map((x) => x.status), [200]);
});

test('IdP down past the ID token\'s expiry: the sign-in page says single sign-on is unavailable (503, retry-after), the session is kept for when it is back (no grace meanwhile)', async () => {
  const { jar, id } = await signIn('dan');
  await env.idp.close(); // refuses connections from now on (the last test of this file)
  await pastIdToken();
  const page = await fetch(`${env.url}/console`, { headers: { cookie: jar.header() } });
  assert.equal(page.status, 503);
  assert.equal(page.headers.get('retry-after'), '15');
  const html = await page.text();
  assert.match(html, /Single sign-on is unavailable right now, and your session must be renewed there/);
  assert.match(html, /name="token"/, 'the break-glass form is on the page');
  const api = await me(jar);
  assert.equal(api.status, 503);
  assert.ok(stored(id), 'not signed out: it renews when the IdP answers again');
});
