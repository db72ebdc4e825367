import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { calculateJwkThumbprint, createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import type { JWK } from 'jose';
import { generateKeyPairSync } from 'node:crypto';
import { IssuerError, ecThumbprint, issuerKeyPath, openIssuer } from '../src/identity/issuer.ts';
import { createJwtVerifier } from '../src/identity/jwt-svid.ts';
import { issueAgentSvid, parseTtl, tokenResponse } from '../src/identity/issue.ts';
import { buildAgentRegistry } from '../src/identity/registry.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { tempDir } from './fixtures/identity-jwt.ts';

const AGENT = 'spiffe://prod/agent/finance-analyst';

test('first start creates a 0600 key file; a restart reuses the same key', async () => {
  const dir = tempDir();
  const a = await openIssuer(dir);
  const path = issuerKeyPath(dir);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const b = await openIssuer(dir);
  assert.equal(b.activeKid, a.activeKid);
  const set = a.jwks();
  assert.equal(set.keys.length, 1);
  assert.equal(set.keys[0].kid, a.activeKid);
  assert.equal(set.keys[0].alg, 'ES256');
  assert.equal('d' in set.keys[0], false, 'JWKS must not contain private key material');
  assert.match(readFileSync(path, 'utf8'), /"d":/); // the private key is on disk (0600), not in the JWKS
});

test('key ids are the RFC 7638 thumbprint jose computes (computed without loading jose at start)', async () => {
  for (let i = 0; i < 20; i++) {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' }) as JWK;
    assert.equal(ecThumbprint(jwk), await calculateJwkThumbprint(jwk, 'sha256'));
  }
  const issuer = await openIssuer(tempDir());
  const [pub] = issuer.jwks().keys;
  assert.equal(pub.kid, await calculateJwkThumbprint(pub as JWK, 'sha256'));
});

test('a key file readable by group/others is refused with a chmod hint', async () => {
  const dir = tempDir();
  await openIssuer(dir);
  chmodSync(issuerKeyPath(dir), 0o644);
  await assert.rejects(openIssuer(dir), (e: unknown) => e instanceof IssuerError && /mode 0644/.test(e.message) && /chmod 600/.test(e.message));
  chmodSync(issuerKeyPath(dir), 0o640);
  await assert.rejects(openIssuer(dir), /chmod 600/);
  chmodSync(issuerKeyPath(dir), 0o600);
  await openIssuer(dir);
});

test('a corrupt key file is refused, not silently replaced', async () => {
  const dir = tempDir();
  await openIssuer(dir);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(issuerKeyPath(dir), '{not json', { mode: 0o600 });
  await assert.rejects(openIssuer(dir), /not valid JSON/);
});

test('mint sets the registered claims and kid; reserved extra claims are refused', async () => {
  let t = 1_800_000_000_000;
  const issuer = await openIssuer(tempDir(), { issuer: 'https://aam.example.com', now: () => t });
  const token = await issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 900, extra: { agent: 'finance-analyst' } });
  const h = decodeProtectedHeader(token);
  const c = decodeJwt(token);
  assert.equal(h.alg, 'ES256');
  assert.equal(h.kid, issuer.activeKid);
  assert.equal(c.iss, 'https://aam.example.com');
  assert.equal(c.sub, AGENT);
  assert.equal(c.aud, 'aam');
  assert.equal(c.iat, 1_800_000_000);
  assert.equal(c.nbf, 1_800_000_000);
  assert.equal(c.exp, 1_800_000_900);
  assert.equal(typeof c.jti, 'string');
  assert.equal(c.agent, 'finance-analyst');
  await assert.rejects(issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 60, extra: { sub: 'spiffe://evil/x' } }), /override/);
  await assert.rejects(issuer.mint({ spiffeId: 'https://not-spiffe', audience: 'aam', ttlSeconds: 60 }), /SPIFFE/);
  await assert.rejects(issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 0 }), /ttl/);
  await assert.rejects(issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 90_000 }), /ttl/);
  t += 1; // keep the clock referenced
});

test('rotation keeps old tokens valid during the overlap, then drops the old key', async () => {
  let t = 1_800_000_000_000;
  const now = () => t;
  const dir = tempDir();
  const issuer = await openIssuer(dir, { graceSeconds: 600, now });
  const verifier = createJwtVerifier({ issuer, isRegisteredAgent: (id) => id === AGENT, trustDomains: [], audience: ['aam'], now });
  const old = await issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 3600 });
  const oldKid = issuer.activeKid;
  const r = await issuer.rotate();
  assert.equal(r.retired, oldKid);
  assert.notEqual(issuer.activeKid, oldKid);
  const fresh = await issuer.mint({ spiffeId: AGENT, audience: 'aam', ttlSeconds: 3600 });
  assert.equal(decodeProtectedHeader(fresh).kid, issuer.activeKid);
  assert.deepEqual(issuer.jwks().keys.map((k) => k.kid).sort(), [oldKid, issuer.activeKid].sort());
  assert.equal((await verifier.verify(old)).ok, true, 'old token valid during grace');
  assert.equal((await verifier.verify(fresh)).ok, true);
  // The rotation is durable: a restart sees both keys and the new active one.
  const reopened = await openIssuer(dir, { graceSeconds: 600, now });
  assert.equal(reopened.activeKid, issuer.activeKid);
  assert.ok(reopened.publicKey(oldKid));
  t += 601_000; // past the grace period
  assert.deepEqual(issuer.jwks().keys.map((k) => k.kid), [issuer.activeKid]);
  const res = await verifier.verify(old);
  assert.equal(res.ok, false);
  assert.equal(!res.ok && res.code, 'bad_signature');
  assert.equal((await verifier.verify(fresh)).ok, true);
});

test('signAssertion carries issuer-set times and refuses to let callers set them', async () => {
  const issuer = await openIssuer(tempDir());
  const a = await issuer.signAssertion({ sub: AGENT, aud: 'https://api.example.com', act: { sub: 'aam' } }, { ttlSeconds: 60 });
  const c = decodeJwt(a);
  assert.equal(c.iss, 'aam');
  assert.equal(c.sub, AGENT);
  assert.equal((c.exp as number) - (c.iat as number), 60);
  assert.equal(typeof c.jti, 'string');
  await assert.rejects(issuer.signAssertion({ sub: AGENT, exp: 9_999_999_999 }), /set by the issuer/);
});

test('parseTtl accepts the CLI forms and rejects nonsense', () => {
  assert.equal(parseTtl('15m'), 900);
  assert.equal(parseTtl('1h30m'), 5400);
  assert.equal(parseTtl('90s'), 90);
  assert.equal(parseTtl('300'), 300);
  assert.equal(parseTtl('1d'), 86400);
  for (const bad of ['', 'm', '15x', '1h 30m', '-5m', '0s', '2d', 'abc', '0']) {
    assert.throws(() => parseTtl(bad), /ttl/, bad);
  }
});

test('issueAgentSvid mints for a registered agent only, and the token verifies', async () => {
  const config = parseConfigTexts([{ file: 'aam.yaml', text: `
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: finance-analyst }
spec: { workload: ${AGENT}, team: finance }
` }]);
  const registry = buildAgentRegistry(config);
  const issuer = await openIssuer(tempDir());
  const s = await issueAgentSvid(issuer, registry, { agent: 'finance-analyst', ttlSeconds: parseTtl('15m') });
  assert.equal(s.spiffeId, AGENT);
  const body = tokenResponse(s);
  assert.equal(body.token_type, 'Bearer');
  assert.ok((body.expires_in as number) > 890 && (body.expires_in as number) <= 900);
  const v = createJwtVerifier({ issuer, isRegisteredAgent: (id) => registry.bySpiffeId(id) !== undefined, trustDomains: [], audience: ['aam'] });
  const r = await v.verify(s.token);
  assert.equal(r.ok && r.spiffeId, AGENT);
  assert.equal(r.ok && r.jti, s.jti);
  await assert.rejects(issueAgentSvid(issuer, registry, { agent: 'ghost' }), /unknown Agent "ghost".*finance-analyst/);
  // Agent removed from the config -> the token it holds stops working.
  const empty = buildAgentRegistry({ agents: new Map() });
  const v2 = createJwtVerifier({ issuer, isRegisteredAgent: (id) => empty.bySpiffeId(id) !== undefined, trustDomains: [], audience: ['aam'] });
  const r2 = await v2.verify(s.token);
  assert.equal(!r2.ok && r2.code, 'unknown_agent');
});

test('a token exchanged for a virtual key stops working when that key is revoked', async () => {
  const config = parseConfigTexts([{ file: 'aam.yaml', text: `
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: finance-analyst }
spec: { workload: ${AGENT} }
` }]);
  const registry = buildAgentRegistry(config);
  const issuer = await openIssuer(tempDir());
  const active = new Set(['key_1/gen_a']);
  const s = await issueAgentSvid(issuer, registry, { agent: 'finance-analyst', keyId: 'key_1', keyGeneration: 'gen_a' });
  const seen: Array<[string, string | undefined]> = [];
  const keyProblem = (id: string, gen: string | undefined) => { seen.push([id, gen]); return active.has(`${id}/${gen}`) ? undefined : 'revoked for the test'; };
  const v = createJwtVerifier({ issuer, isRegisteredAgent: (id) => registry.bySpiffeId(id) !== undefined, keyProblem, trustDomains: [], audience: ['aam'] });
  const ok = await v.verify(s.token);
  assert.equal(ok.ok && ok.keyId, 'key_1');
  assert.equal(ok.ok && ok.keyGeneration, 'gen_a');
  assert.deepEqual(seen[0], ['key_1', 'gen_a'], 'the verifier asks about the key and the generation the token was minted from');
  active.delete('key_1/gen_a');
  const r = await v.verify(s.token);
  assert.equal(!r.ok && r.code, 'revoked');
  assert.match(!r.ok ? r.message : '', /revoked for the test/);
  assert.equal(decodeJwt(s.token).aam_key, 'key_1');
  assert.equal(decodeJwt(s.token).aam_key_gen, 'gen_a');
  // Without keyProblem the verifier hands the key id to the caller, who must check it.
  const plain = createJwtVerifier({ issuer, isRegisteredAgent: () => true, trustDomains: [], audience: ['aam'] });
  const r2 = await plain.verify(s.token);
  assert.equal(r2.ok && r2.keyId, 'key_1');
});

test('concurrent first starts agree on one key', async () => {
  const dir = tempDir();
  const all = await Promise.all(Array.from({ length: 8 }, () => openIssuer(dir)));
  assert.equal(new Set(all.map((i) => i.activeKid)).size, 1);
  const { readdirSync } = await import('node:fs');
  assert.deepEqual(readdirSync(`${dir}/issuer`).sort(), ['keys.json', 'obo-keys.json'], 'no temp files left behind');
});

test('a rotation done by another process is picked up by reload() and not lost by a later rotate()', async () => {
  const dir = tempDir();
  const server = await openIssuer(dir);
  const cli = await openIssuer(dir);
  const first = server.activeKid;
  const r1 = await cli.rotate();
  assert.equal(server.activeKid, first, 'the server has not reloaded yet');
  await server.reload();
  assert.equal(server.activeKid, r1.kid);
  const r2 = await cli.rotate();
  const r3 = await server.rotate();
  assert.equal(r3.retired, r2.kid, 'rotate() re-reads the file before rotating');
  assert.deepEqual(new Set(server.jwks().keys.map((k) => k.kid)), new Set([first, r1.kid, r2.kid, r3.kid]));
});

test('the published JWKS lets a third party (plain jose) verify aam-issued tokens', async () => {
  const issuer = await openIssuer(tempDir());
  const token = await issuer.mint({ spiffeId: AGENT, audience: 'downstream', ttlSeconds: 60 });
  const published = JSON.parse(JSON.stringify(issuer.jwks())) as ReturnType<typeof issuer.jwks>;
  const { payload } = await jwtVerify(token, createLocalJWKSet(published), { issuer: 'aam', audience: 'downstream', algorithms: ['ES256'] });
  assert.equal(payload.sub, AGENT);
  await assert.rejects(jwtVerify(token, createLocalJWKSet(published), { audience: 'other' }));
});
