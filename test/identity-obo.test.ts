// On-behalf-of assertions and JWT-SVIDs are signed by different keys, published in different JWKS
// and typed differently: a downstream that trusts aam's assertions cannot be handed a JWT-SVID as
// one, a JWT-SVID verifier cannot be handed an assertion, and aam never accepts an assertion as an
// identity. Driven through a real gateway: an HTTP tool whose credential is on_behalf_of.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { assertionKeyPath, issuerKeyPath, OBO_TYP, openIssuer } from '../src/identity/issuer.ts';
import { tempDir } from './fixtures/identity-jwt.ts';
import { rmSync } from 'node:fs';

const AGENT = 'spiffe://prod/agent/a';
const DOWNSTREAM = 'https://crm.example';
let gw: TestGateway;
let api: LocalServer;
const seen: string[] = [];
let assertion: string;
let svid: string;
let oboJwks: JSONWebKeySet;
let svidJwks: JSONWebKeySet;

before(async () => {
  api = await localServer((req, res) => { seen.push(String(req.headers.authorization ?? '')); res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"a1"}'); });
  gw = await startTestGateway(yaml(
    doc('Credential', 'crm-obo', { kind: 'on_behalf_of', obo: { audience: DOWNSTREAM, ttl_seconds: 120 } }),
    doc('HttpTool', 'crm', { baseUrl: api.url, credential: 'crm-obo', resource: 'crm', actions: { read: { method: 'GET', path: '/accounts/{id}' } } }),
    doc('Agent', 'a', { workload: AGENT }),
    doc('AgentPolicy', 'a', { identity: { workload: AGENT }, tools: [{ resource: 'crm', actions: ['read'] }] }),
  ));
  const key = gw.key('a');
  const r = await fetch(`${gw.url}/tools/crm/read`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"id":"a1"}' });
  assert.equal(r.status, 200, await r.text());
  assertion = seen.at(-1)!.replace(/^Bearer /, '');
  const t = await fetch(`${gw.url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}` } });
  svid = ((await t.json()) as { access_token: string }).access_token;
  oboJwks = await (await fetch(`${gw.url}/identity/v1/obo/jwks.json`)).json() as JSONWebKeySet;
  svidJwks = await (await fetch(`${gw.url}/.well-known/jwks.json`)).json() as JSONWebKeySet;
});

after(async () => {
  await gw?.close();
  await api?.close();
});

test('the downstream gets an assertion it can verify with the on-behalf-of JWKS, typed aam-obo+jwt', async () => {
  const { payload, protectedHeader } = await jwtVerify(assertion, createLocalJWKSet(oboJwks), { issuer: 'aam', audience: DOWNSTREAM, typ: OBO_TYP, algorithms: ['ES256'] });
  assert.equal(payload.sub, AGENT);
  assert.equal(protectedHeader.typ, 'aam-obo+jwt');
  assert.equal((payload.exp as number) - (payload.iat as number), 120);
});

test('assertion and JWT-SVID keys are disjoint: neither JWKS verifies the other kind of token', async () => {
  const oboKids = new Set(oboJwks.keys.map((k) => k.kid));
  const svidKids = new Set(svidJwks.keys.map((k) => k.kid));
  assert.equal([...oboKids].filter((k) => svidKids.has(k)).length, 0, 'no key in both JWKS');
  assert.ok(oboKids.has(decodeProtectedHeader(assertion).kid));
  assert.ok(svidKids.has(decodeProtectedHeader(svid).kid));
  // A downstream trusting assertions, handed a JWT-SVID (even one naming its audience would need aam to mint it): refused.
  await assert.rejects(jwtVerify(svid, createLocalJWKSet(oboJwks)), /no applicable key found|JWKSNoMatchingKey/i);
  // A JWT-SVID verifier (aam's published JWKS), handed an assertion: refused.
  await assert.rejects(jwtVerify(assertion, createLocalJWKSet(svidJwks)), /no applicable key found|JWKSNoMatchingKey/i);
  assert.equal(decodeProtectedHeader(svid).typ, 'JWT');
});

test('aam refuses an on-behalf-of assertion presented as an identity', async () => {
  const r = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${assertion}` } });
  assert.equal(r.status, 401);
  assert.match(await r.text(), /invalid JWT-SVID \((wrong_type|bad_signature)\)/);
  assert.equal(decodeJwt(assertion).aud, DOWNSTREAM);
});

test('signAssertion: its own key file (0600), never aam\'s own audiences, a SPIFFE subject, current times, our iss', async () => {
  const dir = tempDir();
  try {
    const issuer = await openIssuer(dir, { issuer: 'https://aam.example', svidAudiences: ['aam', 'internal-api'] });
    assert.equal(statSync(assertionKeyPath(dir)).mode & 0o777, 0o600);
    assert.notEqual(issuer.oboKid, issuer.activeKid);
    const ok = await issuer.signAssertion({ sub: AGENT, aud: DOWNSTREAM });
    assert.equal(decodeProtectedHeader(ok).kid, issuer.oboKid);
    assert.equal(decodeJwt(ok).iss, 'https://aam.example');
    await assert.rejects(issuer.signAssertion({ sub: AGENT, aud: 'internal-api' }), /audience "internal-api" is one aam accepts JWT-SVIDs for/);
    await assert.rejects(issuer.signAssertion({ sub: AGENT, aud: ['x', 'aam'] }), /audience "aam"/);
    await assert.rejects(issuer.signAssertion({ sub: AGENT }), /"aud" must name the downstream/);
    await assert.rejects(issuer.signAssertion({ sub: 'alice', aud: DOWNSTREAM }), /SPIFFE ID/);
    await assert.rejects(issuer.signAssertion({ sub: AGENT, aud: DOWNSTREAM, iss: 'aam' }), /"iss" must be this issuer/);
    const now = Math.floor(Date.now() / 1000);
    await assert.rejects(issuer.signAssertion({ sub: AGENT, aud: DOWNSTREAM, iat: now - 3600, exp: now + 60 }), /current time/);
    await assert.rejects(issuer.signAssertion({ sub: AGENT, aud: DOWNSTREAM, iat: now, exp: now + 7200 }), /between 1 and 3600/);
    // Rotation rotates both rings; the old assertion key stays published for the grace period.
    const before = issuer.oboKid;
    const r = await issuer.rotate();
    assert.notEqual(r.oboKid, before);
    assert.deepEqual(new Set(issuer.oboJwks().keys.map((k) => k.kid)), new Set([before, r.oboKid]));
    assert.ok(!issuer.jwks().keys.some((k) => k.kid === r.oboKid || k.kid === before));
    assert.notEqual(issuerKeyPath(dir), assertionKeyPath(dir));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
