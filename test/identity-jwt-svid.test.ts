import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { SignJWT, UnsecuredJWT, base64url } from 'jose';
import { createSecretKey, createPublicKey, type JsonWebKey } from 'node:crypto';
import { openIssuer } from '../src/identity/issuer.ts';
import { createJwtVerifier, looksLikeJwt, type VerifyFailure, type VerifiedSvid } from '../src/identity/jwt-svid.ts';
import { trustDomainsFromConfig, type TrustDomainSource } from '../src/identity/jwks-cache.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { jwksServer, makeKey, sign, svidClaims, tempDir, writeJwksFile, type TestKey } from './fixtures/identity-jwt.ts';

const T0 = 1_800_000_000; // seconds
const PARTNER = 'spiffe://partner/agent/billing';
const PROD = 'spiffe://prod/agent/finance-analyst';

function clock() {
  let t = T0 * 1000;
  return { now: () => t, advance: (s: number) => { t += s * 1000; } };
}

function failure(r: VerifiedSvid | VerifyFailure): VerifyFailure {
  assert.equal(r.ok, false, `expected a failure, got ${JSON.stringify(r)}`);
  return r as VerifyFailure;
}

async function fileDomain(name: string, ...keys: TestKey[]): Promise<TrustDomainSource> {
  return { name, jwksFile: writeJwksFile(tempDir(), ...keys), refreshSeconds: 300 };
}

test('external JWKS file: a valid token verifies and is bound to its trust domain', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key)], audience: ['aam'], now: c.now });
  const r = await v.verify(await sign(key, svidClaims(PARTNER, T0)));
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal(r.ok && r.spiffeId, PARTNER);
  assert.equal(r.ok && r.trustDomain, 'partner');
  assert.equal(r.ok && r.verifiedBy, 'partner');
});

test('every allowed algorithm verifies with its own key type', async () => {
  const c = clock();
  for (const alg of ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'] as const) {
    const key = await makeKey(alg);
    const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key)], audience: ['aam'], now: c.now });
    const r = await v.verify(await sign(key, svidClaims(PARTNER, T0)));
    assert.equal(r.ok, true, `${alg}: ${JSON.stringify(r)}`);
  }
});

test('time checks: expired, nbf/iat in the future, with 30 s skew tolerated', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key)], audience: ['aam'], now: c.now });
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0 - 600, { exp: T0 - 31 })))).code, 'expired');
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0 - 600, { exp: T0 - 10 })))).ok, true, 'within skew');
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0, { nbf: T0 + 120 })))).code, 'not_yet_valid');
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0, { iat: T0 + 120, nbf: undefined })))).code, 'not_yet_valid');
  const noExp = svidClaims(PARTNER, T0);
  delete noExp.exp;
  assert.equal(failure(await v.verify(await sign(key, noExp))).code, 'malformed', 'exp is required');
});

test('lifetime: an external token may live at most max_token_seconds (default 1 h), as issued and as presented; iat is required', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const td = await fileDomain('partner', key);
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [td], audience: ['aam'], now: c.now });
  const tenYears = failure(await v.verify(await sign(key, svidClaims(PARTNER, T0, { exp: T0 + 10 * 365 * 86400 }))));
  assert.equal(tenYears.code, 'too_long_lived');
  assert.equal(tenYears.status, 401);
  assert.match(tenYears.message, /lives 315360000 s \(exp - iat\); trust domain "partner" accepts JWT-SVIDs of at most 3600 s \(TrustDomain max_token_seconds\)/);
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0, { exp: T0 + 3600 })))).ok, true, 'exactly the bound');
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0, { exp: T0 + 3601 })))).code, 'too_long_lived');
  // A backdated iat does not help (exp - iat), nor does a future one (iat past now + skew is refused), so exp - now is bounded too.
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0 - 3000, { exp: T0 + 3600 })))).code, 'too_long_lived');
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0 + 31, { nbf: T0, exp: T0 + 3631 })))).code, 'not_yet_valid');
  const noIat = svidClaims(PARTNER, T0);
  delete noIat.iat;
  const f = failure(await v.verify(await sign(key, noIat)));
  assert.equal(f.code, 'too_long_lived');
  assert.match(f.message, /no iat/);
  // Configurable per trust domain (a reload keeps the other domains' caches, not this bound).
  v.update([{ ...td, maxTokenSeconds: 120 }]);
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0)))).code, 'too_long_lived', '300 s > 120 s');
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0, { exp: T0 + 120 })))).ok, true);
});

test('audience: must include ours; a trust domain may pin its own audience', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const td = await fileDomain('partner', key);
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [td], audience: ['aam', 'https://aam.example.com'], now: c.now });
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0, { aud: 'other-service' })))).code, 'bad_audience');
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0, { aud: ['x', 'https://aam.example.com'] })))).ok, true);
  const noAud = svidClaims(PARTNER, T0);
  delete noAud.aud;
  assert.equal(failure(await v.verify(await sign(key, noAud))).ok, false);
  v.update([{ ...td, audience: 'partner-gw' }]);
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0)))).code, 'bad_audience');
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0, { aud: 'partner-gw' })))).ok, true);
});

test('forged SPIFFE ID: a token signed by trust domain A claiming an ID in domain B is rejected', async () => {
  const c = clock();
  const partnerKey = await makeKey('ES256');
  const prodKey = await makeKey('ES256');
  const v = createJwtVerifier({
    isRegisteredAgent: () => false,
    trustDomains: [await fileDomain('partner', partnerKey), await fileDomain('prod', prodKey)],
    audience: ['aam'], now: c.now,
  });
  assert.deepEqual(await v.warm(), []);
  assert.equal((await v.verify(await sign(prodKey, svidClaims(PROD, T0)))).ok, true);
  const f = failure(await v.verify(await sign(partnerKey, svidClaims(PROD, T0))));
  assert.equal(f.code, 'bad_signature');
  assert.match(f.message, /trust domain "partner".*forged/);
  // Same key material but the kid of prod's key: signature check fails.
  const f2 = failure(await v.verify(await sign(partnerKey, svidClaims(PROD, T0), { kid: prodKey.kid })));
  assert.equal(f2.code, 'bad_signature');
  // A trust domain nobody configured.
  assert.equal(failure(await v.verify(await sign(partnerKey, svidClaims('spiffe://evil/agent/x', T0)))).code, 'unknown_trust_domain');
});

test('aam issuer tokens are not accepted for a foreign kid, and external keys cannot claim iss=aam', async () => {
  const c = clock();
  const issuer = await openIssuer(tempDir(), { now: c.now });
  const partnerKey = await makeKey('ES256');
  const v = createJwtVerifier({ issuer, isRegisteredAgent: () => true, trustDomains: [await fileDomain('partner', partnerKey)], audience: ['aam'], now: c.now });
  const f = failure(await v.verify(await sign(partnerKey, svidClaims(PROD, T0, { iss: 'aam' }))));
  assert.equal(f.code, 'bad_signature');
  const f2 = failure(await v.verify(await sign(partnerKey, svidClaims(PROD, T0, { iss: 'aam' }), { kid: issuer.activeKid })));
  assert.equal(f2.code, 'bad_signature');
});

test('alg none, HS256 with the public key as secret (confusion) and alg/key mismatch are refused', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const rsa = await makeKey('RS256');
  const v = createJwtVerifier({
    isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key, rsa)], audience: ['aam'], now: c.now,
    algorithms: ['ES256', 'RS256', 'HS256', 'none'], // forbidden ones are dropped even if configured
  });
  const none = new UnsecuredJWT(svidClaims(PARTNER, T0)).encode();
  assert.equal(failure(await v.verify(none)).code, 'alg_not_allowed');
  const noneWithKid = `${base64url.encode(JSON.stringify({ alg: 'none', kid: key.kid }))}.${base64url.encode(JSON.stringify(svidClaims(PARTNER, T0)))}.`;
  assert.equal(failure(await v.verify(noneWithKid)).code, 'alg_not_allowed');
  for (const k of [key, rsa]) {
    const pem = createPublicKey({ key: k.publicJwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    const hs = await new SignJWT(svidClaims(PARTNER, T0)).setProtectedHeader({ alg: 'HS256', kid: k.kid }).sign(createSecretKey(Buffer.from(pem)));
    assert.equal(failure(await v.verify(hs)).code, 'alg_not_allowed');
  }
  // RS256 header pointing at the EC key (and vice versa): refused before any crypto.
  const ecAsRs = `${base64url.encode(JSON.stringify({ alg: 'RS256', kid: key.kid }))}.${base64url.encode(JSON.stringify(svidClaims(PARTNER, T0)))}.AAAA`;
  assert.equal(failure(await v.verify(ecAsRs)).code, 'alg_not_allowed');
  const rsAsEs = `${base64url.encode(JSON.stringify({ alg: 'ES256', kid: rsa.kid }))}.${base64url.encode(JSON.stringify(svidClaims(PARTNER, T0)))}.AAAA`;
  assert.equal(failure(await v.verify(rsAsEs)).code, 'alg_not_allowed');
});

test('tampered payload, malformed tokens and non-SPIFFE subjects', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key)], audience: ['aam'], now: c.now });
  const good = await sign(key, svidClaims(PARTNER, T0));
  const [h, , s] = good.split('.');
  const forged = `${h}.${base64url.encode(JSON.stringify(svidClaims('spiffe://partner/agent/admin', T0)))}.${s}`;
  assert.equal(failure(await v.verify(forged)).code, 'bad_signature');
  const flipped = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.equal(failure(await v.verify(flipped)).code, 'bad_signature');
  for (const bad of ['', 'abc', 'a.b.c', 'eyJ.eyJ.', 'eyJhbGciOiJFUzI1NiJ9.%%%.sig', 'eyJub3Rqc29u.eyJ4IjoxfQ.c2ln', 'x'.repeat(10000)]) {
    assert.equal(failure(await v.verify(bad)).code, 'malformed', bad.slice(0, 40));
  }
  assert.equal(failure(await v.verify(await sign(key, svidClaims('https://partner/agent', T0)))).code, 'bad_subject');
  assert.equal(failure(await v.verify(await sign(key, svidClaims('spiffe://partner/../admin', T0)))).code, 'bad_subject');
  assert.equal(failure(await v.verify(await sign(key, { ...svidClaims(PARTNER, T0), sub: undefined }))).code, 'bad_subject');
  assert.equal(failure(await v.verify(await sign(key, svidClaims(PARTNER, T0), { kid: undefined }))).code, 'malformed');
});

test('JWKS URL: fetched once, cached; unknown kids refetch at most once per second (waiting for it) to pick up rotation', async () => {
  const c = clock();
  const k1 = await makeKey('ES256');
  const k2 = await makeKey('EdDSA');
  const srv = await jwksServer([k1]);
  try {
    const v = createJwtVerifier({
      isRegisteredAgent: () => false, audience: ['aam'], now: c.now,
      trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 300 }],
    });
    assert.deepEqual(await v.warm(), []);
    assert.equal(srv.hits(), 1);
    for (let i = 0; i < 5; i++) assert.equal((await v.verify(await sign(k1, svidClaims(PARTNER, T0)))).ok, true);
    assert.equal(srv.hits(), 1, 'keys are served from the cache');
    srv.setKeys([k1, k2]); // publisher rotates in a new key
    const t2 = await sign(k2, svidClaims(PARTNER, T0));
    // Within the refetch window (1 s after the last fetch) an unknown kid waits for the fetch that ends it.
    const t = performance.now();
    const r = await v.verify(t2);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(performance.now() - t > 500, 'it waited for the window');
    assert.equal(srv.hits(), 2);
    // A garbage kid right after waits for the next window too, and is refused (one fetch per window, not per kid).
    const junk = await Promise.all(['nope', 'nope2', 'nope3'].map(async (kid) => v.verify(await sign(k2, svidClaims(PARTNER, T0), { kid }))));
    for (const j of junk) assert.equal(failure(j).code, 'bad_signature');
    assert.equal(srv.hits(), 3);
    // Routine refresh after refresh_seconds happens in the background; the request is not blocked.
    c.advance(301);
    assert.equal((await v.verify(await sign(k1, svidClaims(PARTNER, T0 + 312)))).ok, true);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.hits(), 4);
  } finally {
    await srv.close();
  }
});

test('kid storm: tokens with random unknown kids cannot delay a real key rotation past one refetch window', async (tc) => {
  const k1 = await makeKey('ES256');
  const k2 = await makeKey('ES256');
  const srv = await jwksServer([k1]);
  const junk = await sign(k1, svidClaims(PARTNER, Math.floor(Date.now() / 1000)), { kid: 'junk' });
  const [head, ...rest] = junk.split('.');
  /** The junk token under another kid (its signature is not checked: no key has that kid). */
  const withKid = (kid: string) => [Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(head, 'base64url').toString()), kid })).toString('base64url'), ...rest].join('.');
  let stop = false;
  let refused = 0;
  try {
    const v = createJwtVerifier({ isRegisteredAgent: () => false, audience: ['aam'], trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 300 }] });
    assert.deepEqual(await v.warm(), []);
    const storm = Array.from({ length: 16 }, async () => {
      while (!stop) {
        const r = await v.verify(withKid(`junk-${Math.random().toString(36).slice(2)}`));
        assert.equal(failure(r).code, 'bad_signature');
        refused++;
        await new Promise((r) => setImmediate(r));
      }
    });
    const started = performance.now();
    await new Promise((r) => setTimeout(r, 1500)); // the storm is under way: the limiter is spent on junk
    srv.setKeys([k1, k2]); // the publisher rotates
    const t = performance.now();
    const r = await v.verify(await sign(k2, svidClaims(PARTNER, Math.floor(Date.now() / 1000))));
    const ms = performance.now() - t;
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(ms < 2500, `the new key verified after ${ms.toFixed(0)} ms (one window is 1 s)`);
    stop = true;
    await Promise.all(storm);
    const seconds = (performance.now() - started) / 1000;
    tc.diagnostic(`new key verified after ${ms.toFixed(0)} ms; ${refused} junk tokens, ${srv.hits()} JWKS fetches in ${seconds.toFixed(1)} s`);
    // One fetch per window at most (plus the warm-up one and one in flight at the end).
    assert.ok(srv.hits() <= Math.ceil(seconds) + 2, `${srv.hits()} fetches in ${seconds.toFixed(1)} s for ${refused} junk tokens`);
    assert.ok(refused > 16, `${refused} junk tokens refused`);
  } finally {
    stop = true;
    await srv.close();
  }
});

test('JWKS unavailable fails closed with 503, distinct from a bad token', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const srv = await jwksServer([key]);
  const url = srv.url;
  await srv.close(); // server down from the start
  const v = createJwtVerifier({ isRegisteredAgent: () => false, audience: ['aam'], now: c.now, trustDomains: [{ name: 'partner', jwksUrl: url, refreshSeconds: 300 }] });
  const errors = await v.warm();
  assert.equal(errors.length, 1);
  assert.match(errors[0], /partner/);
  c.advance(11);
  const f = failure(await v.verify(await sign(key, svidClaims(PARTNER, T0 + 11))));
  assert.equal(f.code, 'jwks_unavailable');
  assert.equal(f.status, 503);
  // A JWKS file with garbage is also unavailable, not "no keys -> everything forged".
  const dir = tempDir();
  const path = `${dir}/bad.json`;
  writeFileSync(path, '<html>oops</html>');
  const v2 = createJwtVerifier({ isRegisteredAgent: () => false, audience: ['aam'], now: c.now, trustDomains: [{ name: 'partner', jwksFile: path, refreshSeconds: 300 }] });
  const f2 = failure(await v2.verify(await sign(key, svidClaims(PARTNER, T0 + 11))));
  assert.equal(f2.code, 'jwks_unavailable');
  assert.equal(f2.status, 503);
});

test('JWKS that goes down after loading: cached keys keep working until maxStale, then fail closed', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const srv = await jwksServer([key]);
  const v = createJwtVerifier({
    isRegisteredAgent: () => false, audience: ['aam'], now: c.now, jwks: { maxStaleSeconds: 600 },
    trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 60 }],
  });
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0)))).ok, true);
  await srv.close();
  c.advance(120);
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0 + 120)))).ok, true, 'stale but usable');
  c.advance(600);
  const f = failure(await v.verify(await sign(key, svidClaims(PARTNER, T0 + 720))));
  assert.equal(f.code, 'jwks_unavailable');
});

test('TrustDomain resources load from config; jwks_file is resolved next to the config file', async () => {
  const config = parseConfigTexts([{ file: '/etc/aam/aam.yaml', text: `
apiVersion: access.envisionai.dev/v1
kind: TrustDomain
metadata: { name: partner }
spec: { jwks_file: bundles/partner.json, refresh_seconds: 60, audience: aam-partner, max_token_seconds: 600 }
---
apiVersion: access.envisionai.dev/v1
kind: TrustDomain
metadata: { name: prod }
spec: { jwks_url: "https://spire.example.com/keys" }
` }]);
  const list = trustDomainsFromConfig(config);
  assert.deepEqual(list, [
    { name: 'partner', jwksFile: '/etc/aam/bundles/partner.json', refreshSeconds: 60, absentKidSeconds: 60, audience: 'aam-partner', maxTokenSeconds: 600 },
    { name: 'prod', jwksUrl: 'https://spire.example.com/keys', refreshSeconds: 300, absentKidSeconds: 60, maxTokenSeconds: 3600 },
  ]);
  const upper = parseConfigTexts([{ file: 'x.yaml', text: 'apiVersion: access.envisionai.dev/v1\nkind: TrustDomain\nmetadata: { name: Prod }\nspec: { jwks_file: a.json }\n' }]);
  assert.throws(() => trustDomainsFromConfig(upper), /TrustDomain "Prod".*lowercase/);
  for (const spec of ['{}', '{ jwks_file: a.json, jwks_url: "https://x/k" }', '{ jwks_file: a.json, extra: 1 }', '{ jwks_file: a.json, max_token_seconds: 0 }', '{ jwks_file: a.json, max_token_seconds: 1.5 }']) {
    assert.throws(() => parseConfigTexts([{ file: 'x.yaml', text: `apiVersion: access.envisionai.dev/v1\nkind: TrustDomain\nmetadata: { name: p }\nspec: ${spec}\n` }]));
  }
});

test('looksLikeJwt routes bearer tokens cheaply', async () => {
  const key = await makeKey('ES256');
  assert.equal(looksLikeJwt(await sign(key, svidClaims(PARTNER, T0))), true);
  assert.equal(looksLikeJwt('aam_live_0123456789abcdef'), false);
  assert.equal(looksLikeJwt('sk-abc.def.ghi'), false);
  assert.equal(looksLikeJwt('eyJ' + 'a'.repeat(9000) + '.b.c'), false);
});

test('verified-token cache: a reused token is re-checked for expiry and for its key still being published', async () => {
  const c = clock();
  const k1 = await makeKey('ES256');
  const k2 = await makeKey('ES256');
  const srv = await jwksServer([k1, k2]);
  try {
    const v = createJwtVerifier({
      isRegisteredAgent: () => false, audience: ['aam'], now: c.now,
      trustDomains: [{ name: 'partner', jwksUrl: srv.url, refreshSeconds: 60 }],
    });
    const token = await sign(k1, svidClaims(PARTNER, T0, { exp: T0 + 100 }));
    const first = await v.verify(token);
    assert.equal(first.ok, true);
    assert.equal(await v.verify(token), first, 'second use is served from the cache');
    assert.ok(Object.isFrozen(first));
    // The publisher withdraws k1 (compromised); after the next refresh the cached token is dead.
    srv.setKeys([k2]);
    c.advance(61);
    await v.warm();
    const r = failure(await v.verify(token));
    assert.equal(r.code, 'bad_signature');
    // Expiry is enforced on cache hits too.
    const t2 = await sign(k2, svidClaims(PARTNER, T0 + 61, { exp: T0 + 100 }));
    assert.equal((await v.verify(t2)).ok, true);
    c.advance(40);
    assert.equal((await v.verify(t2)).ok, true, 'within skew');
    c.advance(30);
    assert.equal(failure(await v.verify(t2)).code, 'expired');
  } finally {
    await srv.close();
  }
});

test('typ: a JWT-SVID is typed JWT or JOSE (or untyped); other typed tokens (on-behalf-of assertions, access tokens) are refused', async () => {
  const c = clock();
  const key = await makeKey('ES256');
  const v = createJwtVerifier({ isRegisteredAgent: () => false, trustDomains: [await fileDomain('partner', key)], audience: ['aam'], now: c.now });
  for (const typ of ['JWT', 'jwt', 'JOSE', 'application/jwt']) assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0), { typ }))).ok, true, typ);
  assert.equal((await v.verify(await sign(key, svidClaims(PARTNER, T0), { typ: undefined }))).ok, true, 'no typ');
  for (const typ of ['aam-obo+jwt', 'at+jwt', 'JWT+x']) {
    const f = failure(await v.verify(await sign(key, svidClaims(PARTNER, T0), { typ })));
    assert.equal(f.code, 'wrong_type', typ);
    assert.match(f.message, /is not a JWT-SVID/);
  }
});
