// JWT access tokens (RFC 9068: typ at+jwt, aud = the API, no nonce; as Keycloak, Okta, Auth0 and
// Entra issue them) as the admin API's Bearer token: accepted when AAM_OIDC_AUDIENCE names the
// API's audience (roles from AAM_OIDC_GROUPS_CLAIM, here Keycloak's realm_access.roles), checked
// against the issuer's JWKS, issuer, audience, expiry and typ; refused with that advice otherwise.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConsoleEnv, type ConsoleEnv } from './helpers/console-setup.ts';

const API = 'https://aam.example.com/admin';
let on: ConsoleEnv;
let off: ConsoleEnv;
before(async () => {
  on = await startConsoleEnv({ env: { AAM_OIDC_AUDIENCE: API, AAM_OIDC_GROUPS_CLAIM: 'realm_access.roles' } });
  off = await startConsoleEnv();
});
after(async () => { await on?.close(); await off?.close(); });

const now = () => Math.floor(Date.now() / 1000);
/** An access token as an IdP issues one for the API: no email, no nonce, roles in realm_access. */
const accessClaims = (extra: Record<string, unknown> = {}) => ({ aud: API, sub: 'svc-olga', client_id: 'ops-cli', scope: 'aam.admin', jti: 'j1', realm_access: { roles: ['platform'] }, ...extra });
async function me(env: ConsoleEnv, token: string): Promise<{ status: number; body: { role?: string; actor?: unknown; error?: { message: string } } }> {
  const r = await fetch(`${env.url}/admin/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json() as { role?: string; actor?: unknown; error?: { message: string } } };
}

test('an at+jwt access token for the configured audience opens the admin API with the role its roles claim gives; a plain-typ one (Keycloak, Okta) too', async () => {
  for (const typ of ['at+jwt', 'application/at+jwt', 'JWT']) {
    const r = await me(on, await on.idp.sign(accessClaims(), { typ }));
    assert.equal(r.status, 200, `${typ}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.role, 'operator', 'the platform group (from realm_access.roles) is bound to operator');
    assert.deepEqual(r.body.actor, { type: 'user', sub: 'svc-olga' });
  }
  // A change made with it names the person.
  const reload = await fetch(`${on.url}/admin/v1/reload`, { method: 'POST', headers: { authorization: `Bearer ${await on.idp.sign(accessClaims(), { typ: 'at+jwt' })}` } });
  assert.equal(reload.status, 200);
  // ID tokens still work beside them (groups from the configured claim).
  const id = await me(on, await on.idp.sign({ sub: 'olga', email: 'olga@example.com', realm_access: { roles: ['platform'] } }));
  assert.equal(id.status, 200, JSON.stringify(id.body));
  assert.equal(id.body.role, 'operator');
});

test('access tokens refused: wrong audience, expired, not yet valid, another issuer, forged key, wrong typ, alg none, an ID token typed at+jwt; each a 401 saying why', async () => {
  const t = now();
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const bad: Array<[string, string, RegExp]> = [
    ['another API\'s audience', await on.idp.sign(accessClaims({ aud: 'https://other.example.com/api' }), { typ: 'at+jwt' }), /audience|aud/],
    ['expired', await on.idp.sign(accessClaims({ iat: t - 7200, exp: t - 60 }), { typ: 'at+jwt' }), /exp/],
    ['not yet valid', await on.idp.sign(accessClaims({ nbf: t + 3600 }), { typ: 'at+jwt' }), /nbf/],
    ['another issuer', await on.idp.sign(accessClaims({ iss: 'https://evil.example' }), { typ: 'at+jwt' }), /iss/],
    ['forged (other key, same kid)', await on.idp.sign(accessClaims(), { typ: 'at+jwt', key: 'other' }), /signature/],
    ['a logout token for the API audience', await on.idp.sign(accessClaims(), { typ: 'logout+jwt' }), /typ is "logout\+jwt"/],
    ['unsigned (alg none)', `${b64({ alg: 'none', typ: 'at+jwt' })}.${b64({ iss: on.idp.issuer, iat: t, exp: t + 600, ...accessClaims() })}.`, /not a valid access token/],
    // An access token is never taken for an ID token (nor the other way round): at+jwt for our client id is checked as an access token.
    ['at+jwt with the client id as audience', await on.idp.sign({ sub: 'olga', email: 'olga@example.com', realm_access: { roles: ['platform'] } }, { typ: 'at+jwt' }), /audience|aud/],
  ];
  for (const [what, token, why] of bad) {
    const r = await me(on, token);
    assert.equal(r.status, 401, `${what}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error?.message ?? '', why, what);
  }
  // A valid one whose roles claim names no bound group: known, but no role (403).
  const nobody = await me(on, await on.idp.sign(accessClaims({ realm_access: { roles: ['contractors'] } }), { typ: 'at+jwt' }));
  assert.equal(nobody.status, 403);
});

test('without AAM_OIDC_AUDIENCE a JWT access token is refused, saying how to accept it', async () => {
  const r = await me(off, await off.idp.sign(accessClaims(), { typ: 'at+jwt' }));
  assert.equal(r.status, 401);
  assert.match(r.body.error?.message ?? '', /JWT access token.*set AAM_OIDC_AUDIENCE/);
  // An ID token still works there.
  assert.equal((await me(off, await off.idp.sign({ sub: 'olga', email: 'olga@example.com', groups: ['platform'] }))).status, 200);
});
