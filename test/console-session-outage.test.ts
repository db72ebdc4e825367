// The identity provider going down under signed-in people (a real oidc-provider, 20 s ID tokens,
// refresh tokens; "down" resets every connection to it, as a crashed IdP behind a load balancer
// does). A session stays usable while its ID token is valid, though renewal fails; past it, pages
// say single sign-on is unavailable (503) and the session renews once the IdP is back. Sign-out
// while the IdP is down does not wait for it, and revokes the refresh token once the IdP answers
// again (retried over a minute); given up on, the token left valid at the IdP is on the audit trail.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { startConsoleEnv, type ConsoleEnv } from './helpers/console-setup.ts';
import { loginWithoutBrowser, type CookieJar, type TestUser } from './helpers/oidc-idp.ts';
import { createHumanAuth } from '../src/console/auth.ts';
import { createMemoryLoginStore, createSqliteSessionStore, type Session } from '../src/console/sessions.ts';
import { createOidcClient } from '../src/console/oidc.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import { unseal } from '../src/store/seal.ts';
import { sha256Hex } from '../src/lib/hash.ts';

const users: Record<string, TestUser> = {
  dan: { email: 'dan@example.com', groups: ['everyone'] },
  vera: { email: 'vera@example.com', groups: ['everyone'] },
  pat: { email: 'pat@example.com', groups: ['everyone'] },
};
let env: ConsoleEnv;
before(async () => { env = await startConsoleEnv({ idTokenTtlS: 20, refreshTokens: true, users }); });
after(async () => { env?.idp.down(false); await env?.close(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (t: number) => sleep(Math.max(0, t - Date.now()));
const get = (path: string, jar: CookieJar) => fetch(`${env.url}${path}`, { headers: { cookie: jar.header() } });

async function signIn(login: string): Promise<{ jar: CookieJar; id: string }> {
  const { callback, jar, body } = await loginWithoutBrowser(env.url, login);
  assert.equal(callback.status, 303, body);
  return { jar, id: jar.cookies.get('aam_session')! };
}

/** The stored session: its renewal times, and its refresh token unsealed with the key only the cookie gives. */
function stored(id: string): { idExp: number; renewAt: number; refreshToken: string } | undefined {
  const row = env.g.rt.db.prepare('SELECT record FROM console_session WHERE id_hash = ?').get(sha256Hex(id)) as { record: string } | undefined;
  if (!row) return undefined;
  const r = JSON.parse(row.record) as { idExp: number; renewAt: number; refreshTokenSealed: string };
  return { idExp: r.idExp, renewAt: r.renewAt, refreshToken: unseal(createHash('sha256').update('aam console refresh_token v1\0').update(id).digest(), r.refreshTokenSealed)! };
}

test('IdP down: a session stays usable while its ID token is valid (renewal tried and failed), then pages say single sign-on is unavailable (503), and it renews once the IdP is back', async () => {
  const { jar, id } = await signIn('dan');
  const { renewAt, idExp } = stored(id)!;
  env.idp.down(true);
  try {
    await until(renewAt + 200);
    const refused = env.idp.refused;
    const page = await get('/console', jar);
    assert.equal(page.status, 200, 'the console opens while the ID token is valid');
    assert.match(await page.text(), /dan@example\.com \(viewer\)/);
    assert.equal((await get('/admin/v1/me', jar)).status, 200);
    assert.ok(env.idp.refused > refused, 'the renewal was tried at the IdP, and the IdP reset it');
    assert.ok(Date.now() < idExp, `the checks ran before the ID token's expiry (a loaded host can make this test inconclusive: ${Date.now() - idExp} ms late)`);

    await until(idExp + 300);
    const ended = await get('/console', jar);
    assert.equal(ended.status, 503);
    assert.equal(ended.headers.get('retry-after'), '15');
    const html = await ended.text();
    assert.match(html, /Single sign-on is unavailable right now, and your session must be renewed there before it opens anything more/);
    assert.match(html, /name="token"/, 'with the break-glass form');
    assert.equal((await get('/admin/v1/me', jar)).status, 503);
  } finally { env.idp.down(false); }
  // Back: once the 15 s without asking have passed, the next request renews the session.
  const deadline = Date.now() + 30_000;
  let status = 0;
  while (Date.now() < deadline && (status = (await get('/admin/v1/me', jar)).status) !== 200) await sleep(500);
  assert.equal(status, 200, 'renewed once the IdP answers');
  assert.ok(stored(id)!.idExp > idExp);
});

test('sign-out while the IdP is down does not wait for it, and revokes the refresh token once the IdP answers again (retried)', async () => {
  const { jar, id } = await signIn('vera');
  const { refreshToken } = stored(id)!;
  const m = await (await get('/admin/v1/me', jar)).json() as { csrf_token: string };
  env.idp.down(true);
  let out: Response;
  const t0 = Date.now();
  try {
    out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${m.csrf_token}` });
    assert.equal(out.status, 303);
    assert.ok(Date.now() - t0 < 4000, `sign-out took ${Date.now() - t0} ms`);
    assert.equal(stored(id), undefined, 'signed out here');
    await sleep(1000); // the first try has failed
    assert.equal((await env.idp.introspect(refreshToken)).active, true, 'not revoked yet: the IdP is down');
  } finally { env.idp.down(false); }
  // Without the retry it stays valid at the IdP; with it, the next try (5 s after sign-out) revokes it.
  const deadline = Date.now() + 25_000;
  while ((await env.idp.introspect(refreshToken)).active && Date.now() < deadline) await sleep(250);
  assert.equal((await env.idp.introspect(refreshToken)).active, false, 'revoked at the IdP once it answered');
});

test('a refresh token sign-out could not revoke (every try failed) is on the audit trail (console_session_revocation_failed), without the token', async () => {
  const { id } = await signIn('pat');
  const { refreshToken } = stored(id)!;
  const events: AuditEventInput[] = [];
  const logged: string[] = [];
  const db = new DatabaseSync(':memory:');
  const oidc = createOidcClient({ issuer: env.idp.issuer, clientId: env.idp.clientId, clientSecret: env.idp.clientSecret, redirectUri: `${env.url}/console/callback`, postLogoutRedirectUri: `${env.url}/console/signed-out`, scopes: 'openid email profile', accessTokens: 'auto', apiAudience: null, groupsClaim: 'groups' });
  await oidc.begin(); // discovered while the IdP is up: each try goes to its revocation endpoint
  const auth = createHumanAuth({
    sessions: createSqliteSessionStore(db), logins: createMemoryLoginStore(), config: () => env.g.rt.compiled.set, adminToken: null, oidc, publicUrl: env.url, tls: false,
    audit: { record: (e) => events.push(e) }, log: { warn: (obj, msg) => logged.push(JSON.stringify({ ...obj, msg })) }, revokeTries: [0, 300, 900],
  });
  const session: Session = { kind: 'oidc', sub: 'pat', email: 'pat@example.com', groups: ['everyone'], csrf: 'c', expiresAt: Date.now() + 3600_000, seenAt: Date.now(), refreshToken };
  env.idp.down(true);
  try {
    const refused = env.idp.refused;
    auth.revokeAtIdp(session); // returns at once: the tries run in the background
    assert.equal(events.length, 0);
    const deadline = Date.now() + 15_000;
    while (events.length === 0 && Date.now() < deadline) await sleep(100);
    // (A try on a kept-alive connection the IdP just reset may fail before its request reaches the IdP.)
    assert.ok(env.idp.refused - refused >= 2, `the tries reached the IdP: ${env.idp.refused - refused}`);
  } finally { env.idp.down(false); }
  assert.equal(events.length, 1);
  const [e] = events;
  assert.equal(e.type, 'admin');
  assert.deepEqual(e.admin, { action: 'console_session_revocation_failed', target: 'console', actor: { type: 'user', sub: 'pat', email: 'pat@example.com' } });
  assert.deepEqual(e.detail, { tries: 3, refresh_token: 'valid at the identity provider until it expires there' });
  assert.equal((e.outcome as { status: number }).status, 503);
  assert.match((e.outcome as { error: string }).error, /^the identity provider did not revoke it/);
  assert.ok(!JSON.stringify(e).includes(refreshToken) && !logged.join('\n').includes(refreshToken), 'no token in the event or the log line');
  assert.ok(logged.some((l) => l.includes('console_session_revocation_failed')));
  assert.equal((await env.idp.introspect(refreshToken)).active, true, 'what the event says: still valid at the IdP');
  db.close();
});

test('a gateway stopping gives up on the revocations still waiting for the IdP, on the audit trail (not dropped unseen)', async () => {
  const { id } = await signIn('pat');
  const { refreshToken } = stored(id)!;
  const events: AuditEventInput[] = [];
  const oidc = createOidcClient({ issuer: env.idp.issuer, clientId: env.idp.clientId, clientSecret: env.idp.clientSecret, redirectUri: `${env.url}/console/callback`, postLogoutRedirectUri: `${env.url}/console/signed-out`, scopes: 'openid email profile', accessTokens: 'auto', apiAudience: null, groupsClaim: 'groups' });
  await oidc.begin();
  const db = new DatabaseSync(':memory:');
  const auth = createHumanAuth({
    sessions: createSqliteSessionStore(db), logins: createMemoryLoginStore(), config: () => env.g.rt.compiled.set, adminToken: null, oidc, publicUrl: env.url, tls: false,
    audit: { record: (e) => events.push(e) }, revokeTries: [0, 60_000],
  });
  env.idp.down(true);
  try {
    auth.revokeAtIdp({ kind: 'oidc', sub: 'pat', email: 'pat@example.com', groups: ['everyone'], csrf: 'c', expiresAt: Date.now() + 3600_000, seenAt: Date.now(), refreshToken });
    await sleep(1500); // the first try has failed (reset by the IdP); the next is a minute away
    assert.equal(events.length, 0);
    auth.close();
  } finally { env.idp.down(false); }
  assert.equal(events.length, 1);
  assert.equal(events[0].admin?.action, 'console_session_revocation_failed');
  assert.equal((events[0].detail as { tries: number }).tries, 1);
  assert.match((events[0].outcome as { error: string }).error, /the gateway stopped before the next try$/);
  db.close();
});
