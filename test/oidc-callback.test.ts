// The sign-in callback against a hostile OpenID Provider: its token endpoint answers ID tokens that
// a relying party must refuse (another key's signature, another issuer or audience, expired, the
// wrong nonce or none, alg "none", HS256 keyed with the client secret, no ID token at all) and an
// authorization response naming another issuer. Each is a 400 with no session; the honest answer
// signs in once, and its callback URL cannot be replayed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { CookieJar } from './helpers/oidc-idp.ts';

const CLIENT_SECRET = 'hostile-idp-client-secret-0123456789abcdef';
let mode = 'honest';
let nonce = '';
let issuer = '';
let idp: Server;
let gw: TestGateway;
let keys: { real: CryptoKey; other: CryptoKey };

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function idToken(): Promise<string | undefined> {
  const now = Math.floor(Date.now() / 1000);
  const c: Record<string, unknown> = { iss: issuer, aud: 'aam', sub: 'alice', email: 'alice@example.com', nonce, iat: now, exp: now + 600 };
  if (mode === 'another issuer') c.iss = 'https://evil.example';
  if (mode === 'another audience') c.aud = 'other-app';
  if (mode === 'expired') Object.assign(c, { iat: now - 7200, exp: now - 600 });
  if (mode === 'another nonce') c.nonce = 'n0nce-the-attacker-chose';
  if (mode === 'no nonce') delete c.nonce;
  if (mode === 'no ID token') return undefined;
  if (mode === 'alg none') return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(c)}.`;
  if (mode === 'HS256 with the client secret') return new SignJWT(c).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(CLIENT_SECRET));
  // Another key under the real key's kid: only a signature check tells them apart.
  return new SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(mode === 'signed by another key' ? keys.other : keys.real);
}

before(async () => {
  const real = await generateKeyPair('RS256', { extractable: true });
  keys = { real: real.privateKey, other: (await generateKeyPair('RS256')).privateKey };
  const jwk = { ...(await exportJWK(real.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  idp = createServer(async (req, res) => {
    const u = new URL(req.url!, issuer);
    const json = (o: unknown) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(o)); };
    if (u.pathname === '/.well-known/openid-configuration') {
      return json({ issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`, jwks_uri: `${issuer}/jwks`, response_types_supported: ['code'], subject_types_supported: ['public'], id_token_signing_alg_values_supported: ['RS256'], code_challenge_methods_supported: ['S256'] });
    }
    if (u.pathname === '/jwks') return json({ keys: [jwk] });
    if (u.pathname === '/authorize') {
      nonce = u.searchParams.get('nonce') ?? '';
      const back = new URL(u.searchParams.get('redirect_uri')!);
      back.search = new URLSearchParams({ code: 'c0de', state: u.searchParams.get('state') ?? '', iss: mode === 'another issuer in the response' ? 'https://evil.example' : issuer }).toString();
      res.writeHead(302, { location: back.href });
      return res.end();
    }
    if (u.pathname === '/token') {
      for await (const _ of req) { /* the grant itself is not what is tested */ }
      return json({ access_token: 'opaque-access-token', token_type: 'Bearer', expires_in: 600, id_token: await idToken() });
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`;
  gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['m']),
    doc('RoleBinding', 'admins', { role: 'admin', subjects: [{ email: 'alice@example.com' }] })), {
    AAM_PUBLIC_URL: 'http://127.0.0.1:9', AAM_OIDC_ISSUER: issuer, AAM_OIDC_CLIENT_ID: 'aam', AAM_OIDC_CLIENT_SECRET: CLIENT_SECRET,
  });
});
after(async () => {
  await gw?.close();
  idp?.closeAllConnections();
  await new Promise((resolve) => idp?.close(resolve));
});

/** /console/login -> the IdP's authorize -> aam's callback, in one browser (jar); returns the callback's answer and URL. */
async function signIn(jar = new CookieJar()): Promise<{ r: Response; body: string; callback: string; jar: CookieJar }> {
  const login = await fetch(`${gw.url}/console/login`, { redirect: 'manual' });
  jar.take(login);
  const authorize = await fetch(login.headers.get('location')!, { redirect: 'manual' });
  const back = new URL(authorize.headers.get('location')!);
  const callback = `${gw.url}${back.pathname}${back.search}`;
  const r = await fetch(callback, { redirect: 'manual', headers: { cookie: jar.header() } });
  jar.take(r);
  return { r, body: await r.text(), callback, jar };
}

test('the callback refuses every ID token a relying party must refuse (no session), and signs in with the honest one once', async () => {
  const refused: Record<string, RegExp> = {
    'signed by another key': /signature verification failed/,
    'another issuer': /issuer/,
    'another audience': /audience/,
    expired: /expiration/,
    'another nonce': /nonce/,
    'no nonce': /nonce/,
    'alg none': /alg/,
    'HS256 with the client secret': /alg/,
    'no ID token': /id_token/,
    'another issuer in the response': /issuer/,
  };
  for (const [what, why] of Object.entries(refused)) {
    mode = what;
    const { r, body, jar } = await signIn();
    assert.equal(r.status, 400, `${what}: ${body.slice(0, 300)}`);
    assert.match(body, /Sign-in failed/, what);
    assert.match(body.replace(/&#\d+;/g, ''), why, what);
    assert.equal(jar.cookies.get('aam_session'), undefined, `${what}: no session`);
  }

  mode = 'honest';
  const ok = await signIn();
  assert.equal(ok.r.status, 303, ok.body);
  assert.equal(ok.r.headers.get('location'), '/console');
  const me = await fetch(`${gw.url}/admin/v1/me`, { headers: { cookie: ok.jar.header() } });
  assert.deepEqual(((await me.json()) as { actor: unknown }).actor, { type: 'user', sub: 'alice', email: 'alice@example.com' });
  // The same callback URL again: in the same browser its login is spent; in another login it is the wrong state.
  const again = await fetch(ok.callback, { redirect: 'manual', headers: { cookie: ok.jar.header() } });
  assert.equal(again.status, 400);
  const other = new CookieJar();
  other.take(await fetch(`${gw.url}/console/login`, { redirect: 'manual' }));
  const replay = await fetch(ok.callback, { redirect: 'manual', headers: { cookie: other.header() } });
  assert.equal(replay.status, 400);
  assert.match(await replay.text(), /state/);
  assert.ok(!replay.headers.getSetCookie().some((c) => c.startsWith('aam_session=')), 'a replayed callback opens no session');
});
