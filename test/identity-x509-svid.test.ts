// X.509-SVIDs over real mTLS, with real certificates: SAN rules, and trust bound to the SVID's own
// trust domain (one CA bundle per domain: a partner's CA cannot vouch for spiffe://prod/...).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  basicConstraintsCa, caTrustDomain, chainProblem, identifyTlsPeer, loadX509Trust, sanEntries,
  spiffeIdFromPeerCertificate, tlsServerOptions, type X509Trust,
} from '../src/identity/x509-svid.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { trustDomainsFromConfig } from '../src/identity/jwks-cache.ts';
import { issueLeaf, leafAsCa, makeCa, type Ca, type Leaf } from './fixtures/identity-pki.ts';
import { tempDir } from './fixtures/identity-jwt.ts';

const ID = 'spiffe://prod/agent/x';
const ALICE = 'spiffe://prod/agent/alice';
const BOT = 'spiffe://partner/agent/bot';
const DAY = 86_400_000;
let serverCa: Ca, clientCa: Ca, otherCa: Ca, partnerCa: Ca;
let good: Leaf, otherCaCert: Leaf, noSan: Leaf, expired: Leaf, twoUris: Leaf, dnsOnly: Leaf, httpsUri: Leaf, caAsLeaf: Leaf;
let srv: Leaf;
let dir: string;
const servers: Server[] = [];

const doc = (kind: string, name: string, spec: unknown) => `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;
const configOf = (...docs: string[]) => parseConfigTexts([{ file: join(dir, 'aam.yaml'), text: docs.join('---\n') }]);
const agent = (name: string, workload: string) => doc('Agent', name, { workload });
const file = (name: string, text: string) => { writeFileSync(join(dir, name), text); return join(dir, name); };

/** A bare HTTPS server that answers with identifyTlsPeer's verdict for the connection. */
async function mtlsServer(trust: X509Trust): Promise<number> {
  const opts = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') }, trust);
  const server = createServer(opts, (req, res) => {
    const r = identifyTlsPeer(req.socket as TLSSocket, trust);
    res.writeHead(r.ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(r));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** One request with a client certificate (and optionally intermediates sent after it). */
function call(port: number, client?: Leaf, chain: Ca[] = []): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/', servername: 'localhost', agent: false, ca: serverCa.pem,
      ...(client ? { cert: [client.certPem, ...chain.map((c) => c.pem)].join('\n'), key: client.keyPem } : {}),
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

let port: number;

before(async () => {
  [serverCa, clientCa, otherCa, partnerCa] = await Promise.all([makeCa('server-ca'), makeCa('client-ca'), makeCa('other-ca'), makeCa('partner-ca')]);
  good = await issueLeaf(clientCa, 'x', { sans: [{ type: 'url', value: ID }] });
  otherCaCert = await issueLeaf(otherCa, 'x', { sans: [{ type: 'url', value: ID }] });
  noSan = await issueLeaf(clientCa, 'nosan');
  expired = await issueLeaf(clientCa, 'old', { sans: [{ type: 'url', value: ID }], notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  twoUris = await issueLeaf(clientCa, 'two', { sans: [{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://prod/agent/admin' }] });
  dnsOnly = await issueLeaf(clientCa, 'dns', { sans: [{ type: 'dns', value: 'agent.example.com' }] });
  httpsUri = await issueLeaf(clientCa, 'uri', { sans: [{ type: 'url', value: 'https://prod/agent/x' }] });
  caAsLeaf = await issueLeaf(clientCa, 'ca', { sans: [{ type: 'url', value: ID }], isCa: true });
  srv = await issueLeaf(serverCa, 'localhost', { sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }], serverAuth: true });
  dir = tempDir();
  file('server.crt', srv.certPem);
  writeFileSync(join(dir, 'server.key'), srv.keyPem, { mode: 0o600 });
  // The classic set-up: one --client-ca for the local trust domain (prod, from the Agent).
  port = await mtlsServer(loadX509Trust(configOf(agent('x', ID)), file('clients-ca.pem', clientCa.pem)));
});

after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  rmSync(dir, { recursive: true, force: true });
});

test('mTLS: a client certificate from the configured CA identifies the SPIFFE ID', async () => {
  const r = await call(port, good);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.spiffeId, ID);
  assert.equal(r.body.trustDomain, 'prod');
  assert.equal(r.body.serial, good.serial);
});

test('mTLS: no certificate, another CA and an expired certificate get 401 with a reason, not a TLS abort', async () => {
  const none = await call(port);
  assert.equal(none.status, 401);
  assert.equal(none.body.code, 'no_certificate');
  const other = await call(port, otherCaCert);
  assert.equal(other.status, 401);
  assert.equal(other.body.code, 'untrusted_certificate');
  assert.match(String(other.body.reason), /not trusted/);
  const old = await call(port, expired);
  assert.equal(old.status, 401);
  assert.equal(old.body.code, 'untrusted_certificate');
  assert.match(String(old.body.reason), /CERT_HAS_EXPIRED/);
});

test('mTLS: trusted certificates without exactly one spiffe:// URI SAN are rejected', async () => {
  for (const [leaf, pattern] of [[noSan, /no URI SAN/], [twoUris, /2 URI SANs/], [dnsOnly, /no URI SAN/], [httpsUri, /spiffe/], [caAsLeaf, /CA certificate/]] as const) {
    const r = await call(port, leaf);
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal(r.body.code, 'bad_san');
    assert.match(String(r.body.reason), pattern);
  }
});

test('mTLS: a CA trusted for the partner trust domain cannot vouch for spiffe://prod IDs, nor prod\'s for partner IDs', async () => {
  file('prod.pem', clientCa.pem);
  file('partner.pem', partnerCa.pem);
  const trust = loadX509Trust(configOf(
    agent('alice', ALICE), agent('bot', BOT),
    doc('TrustDomain', 'prod', { x509_bundle_file: 'prod.pem' }),
    doc('TrustDomain', 'partner', { x509_bundle_file: 'partner.pem' }),
  ));
  assert.deepEqual(trust.domains, ['partner', 'prod']);
  const p = await mtlsServer(trust);
  const alice = await issueLeaf(clientCa, 'alice', { sans: [{ type: 'url', value: ALICE }] });
  const bot = await issueLeaf(partnerCa, 'bot', { sans: [{ type: 'url', value: BOT }] });
  const forgedAlice = await issueLeaf(partnerCa, 'alice', { sans: [{ type: 'url', value: ALICE }] });
  const forgedBot = await issueLeaf(clientCa, 'bot', { sans: [{ type: 'url', value: BOT }] });
  const stranger = await issueLeaf(clientCa, 'x', { sans: [{ type: 'url', value: 'spiffe://elsewhere/agent/x' }] });
  assert.equal((await call(p, alice)).body.spiffeId, ALICE);
  assert.equal((await call(p, bot)).body.spiffeId, BOT);
  const f = await call(p, forgedAlice);
  assert.equal(f.status, 401, 'the handshake accepts the partner CA, the SVID check must not');
  assert.equal(f.body.code, 'untrusted_certificate');
  assert.match(String(f.body.reason), /spiffe:\/\/prod\/agent\/alice is not vouched for by trust domain "prod" \(TrustDomain "prod" x509_bundle_file .*prod\.pem\).*another trust domain/);
  const g = await call(p, forgedBot);
  assert.equal(g.status, 401);
  assert.match(String(g.body.reason), /trust domain "partner"/);
  const s = await call(p, stranger);
  assert.equal(s.body.code, 'unknown_trust_domain');
  assert.match(String(s.body.reason), /trust domain "elsewhere" has no X\.509 bundle \(add a TrustDomain "elsewhere" with x509_bundle_file; bundles exist for partner, prod\)/);
});

test('mTLS: --client-ca serves the Agents\' trust domains without a bundle of their own; a partner domain needs its own', async () => {
  file('partner-only.pem', partnerCa.pem);
  const trust = loadX509Trust(configOf(
    agent('alice', ALICE), agent('bot', BOT),
    doc('TrustDomain', 'partner', { jwks_file: 'partner-jwks.json', x509_bundle_file: 'partner-only.pem' }),
  ), file('local-ca.pem', clientCa.pem));
  assert.equal(trust.bundle('prod')?.source, `--client-ca ${join(dir, 'local-ca.pem')}`);
  assert.match(trust.bundle('partner')?.source ?? '', /TrustDomain "partner"/);
  assert.deepEqual(trust.warnings, []);
  const p = await mtlsServer(trust);
  assert.equal((await call(p, await issueLeaf(clientCa, 'alice', { sans: [{ type: 'url', value: ALICE }] }))).status, 200);
  assert.equal((await call(p, await issueLeaf(partnerCa, 'bot', { sans: [{ type: 'url', value: BOT }] }))).status, 200);
  assert.equal((await call(p, await issueLeaf(partnerCa, 'alice', { sans: [{ type: 'url', value: ALICE }] }))).status, 401);
  assert.equal((await call(p, await issueLeaf(clientCa, 'bot', { sans: [{ type: 'url', value: BOT }] }))).status, 401);
  // The JWT verifier only sees domains with JWT-SVID keys.
  assert.deepEqual(trustDomainsFromConfig(configOf(doc('TrustDomain', 'partner', { x509_bundle_file: 'p.pem' }))), []);
});

test('one --client-ca holding both CAs: the mistake from the finding is refused or named', async () => {
  const both = file('both.pem', clientCa.pem + partnerCa.pem);
  file('partner-only.pem', partnerCa.pem);
  // The same CA for two trust domains is a load error naming both places.
  assert.throws(() => loadX509Trust(configOf(agent('alice', ALICE), doc('TrustDomain', 'partner', { x509_bundle_file: 'partner-only.pem' })), both),
    /CA "CN=partner-ca" \(sha256 .*\) is in TrustDomain "partner" x509_bundle_file .* and in --client-ca .*both\.pem: a CA may vouch for one trust domain only/);
  // Agents in both domains and no per-domain bundles: it works as before, with a warning that says how to separate them.
  const t = loadX509Trust(configOf(agent('alice', ALICE), agent('bot', BOT)), both);
  assert.equal(t.warnings.length, 1);
  assert.match(t.warnings[0], /holds 2 CAs and vouches for trust domains partner, prod: any of its CAs can vouch for any of them; give each domain its own TrustDomain x509_bundle_file/);
});

test('CAs that name their trust domain (spiffe:// URI SAN, as SPIRE\'s do) vouch for that domain only, even in one shared bundle', async () => {
  const [prodNamed, partnerNamed] = await Promise.all([makeCa('prod-spire', { spiffe: 'spiffe://prod' }), makeCa('partner-spire', { spiffe: 'spiffe://partner' })]);
  assert.equal(caTrustDomain(new X509Certificate(prodNamed.pem)), 'prod');
  assert.equal(caTrustDomain(new X509Certificate(clientCa.pem)), undefined);
  const trust = loadX509Trust(configOf(agent('alice', ALICE), agent('bot', BOT)), file('spire-both.pem', prodNamed.pem + partnerNamed.pem));
  assert.deepEqual(trust.warnings, [], 'named CAs cannot be confused');
  const p = await mtlsServer(trust);
  assert.equal((await call(p, await issueLeaf(prodNamed, 'alice', { sans: [{ type: 'url', value: ALICE }] }))).status, 200);
  assert.equal((await call(p, await issueLeaf(partnerNamed, 'bot', { sans: [{ type: 'url', value: BOT }] }))).status, 200);
  const forged = await call(p, await issueLeaf(partnerNamed, 'alice', { sans: [{ type: 'url', value: ALICE }] }));
  assert.equal(forged.status, 401);
  assert.equal(forged.body.code, 'untrusted_certificate');
  // A named CA in another domain's x509_bundle_file is a load error.
  file('wrong.pem', partnerNamed.pem);
  assert.throws(() => loadX509Trust(configOf(doc('TrustDomain', 'prod', { x509_bundle_file: 'wrong.pem' }))), /is the CA of trust domain "partner", not "prod"/);
});

test('mTLS: an intermediate CA listed in its domain\'s bundle vouches; a look-alike intermediate of another domain does not', async () => {
  const prodInt = await makeCa('prod-int', { parent: clientCa });
  // The partner issues an intermediate with the same subject as prod's: name matching alone would be fooled.
  const fakeInt = await makeCa('prod-int', { parent: partnerCa });
  file('partner-only.pem', partnerCa.pem);
  const trust = loadX509Trust(configOf(agent('alice', ALICE), agent('bot', BOT), doc('TrustDomain', 'partner', { x509_bundle_file: 'partner-only.pem' })), file('local-int.pem', clientCa.pem + prodInt.pem));
  const p = await mtlsServer(trust);
  const viaInt = await call(p, await issueLeaf(prodInt, 'alice', { sans: [{ type: 'url', value: ALICE }] }), [prodInt]);
  assert.equal(viaInt.status, 200, JSON.stringify(viaInt.body));
  const viaFake = await call(p, await issueLeaf(fakeInt, 'alice', { sans: [{ type: 'url', value: ALICE }] }), [fakeInt]);
  assert.equal(viaFake.status, 401, JSON.stringify(viaFake.body));
  assert.match(String(viaFake.body.reason), /its issuer is "CN=prod-int"; an intermediate CA that signs SVIDs must be in the bundle file too/);
});

test('chainProblem: signatures, CA flags and validity decide, not names', async () => {
  const roots = [new X509Certificate(clientCa.pem)];
  const now = Date.now();
  const x = (l: Leaf | Ca) => new X509Certificate('certPem' in l ? l.certPem : l.pem);
  assert.equal(chainProblem(x(good), [], roots, now), undefined);
  assert.match(chainProblem(x(otherCaCert), [], roots, now) ?? '', /does not chain to a CA of that trust domain \(its issuer is "CN=other-ca"/);
  assert.match(chainProblem(x(expired), [], roots, now) ?? '', /validity/);
  assert.match(chainProblem(x(good), [], roots, now + 40 * DAY) ?? '', /validity/);
  // A leaf of prod (not a CA) cannot issue another prod SVID: bob cannot mint alice.
  const bob = await issueLeaf(clientCa, 'bob', { sans: [{ type: 'url', value: 'spiffe://prod/agent/bob' }] });
  const minted = await issueLeaf(leafAsCa(bob, 'bob'), 'alice', { sans: [{ type: 'url', value: ALICE }] });
  assert.match(chainProblem(x(minted), [x(bob)], roots, now) ?? '', /does not chain/);
  const prodInt = await makeCa('int', { parent: clientCa });
  assert.equal(chainProblem(x(await issueLeaf(prodInt, 'a', { sans: [{ type: 'url', value: ALICE }] })), [x(prodInt)], roots, now), undefined);
  assert.match(chainProblem(x(good), Array.from({ length: 11 }, () => x(prodInt)), roots, now) ?? '', /more than 10/);
});

test('spiffeIdFromPeerCertificate works on node:crypto X509Certificate too', () => {
  const ok = spiffeIdFromPeerCertificate(new X509Certificate(good.certPem));
  assert.deepEqual(ok, { ok: true, spiffeId: ID, trustDomain: 'prod' });
  const bad = spiffeIdFromPeerCertificate(new X509Certificate(twoUris.certPem));
  assert.equal(bad.ok, false);
});

test('basicConstraintsCa reads cA from the DER, independent of keyUsage', () => {
  assert.equal(basicConstraintsCa(new X509Certificate(clientCa.pem).raw), true);
  assert.equal(basicConstraintsCa(new X509Certificate(caAsLeaf.certPem).raw), true);
  assert.equal(new X509Certificate(caAsLeaf.certPem).ca, false, 'node:crypto alone would miss it');
  assert.equal(basicConstraintsCa(new X509Certificate(good.certPem).raw), false);
});

test('sanEntries decodes quoted values and keeps entries apart', () => {
  assert.deepEqual(sanEntries('DNS:a.example, URI:spiffe://prod/x'), [{ type: 'DNS', value: 'a.example' }, { type: 'URI', value: 'spiffe://prod/x' }]);
  assert.deepEqual(sanEntries('URI:"spiffe://prod/a, URI:spiffe://prod/b"'), [{ type: 'URI', value: 'spiffe://prod/a, URI:spiffe://prod/b' }]);
  assert.deepEqual(sanEntries(''), []);
});

test('tlsServerOptions and bundle loading name the flag or field whose file is wrong', () => {
  assert.throws(() => tlsServerOptions({ certFile: join(dir, 'missing.crt'), keyFile: join(dir, 'server.key') }), /--tls-cert .*missing\.crt.*ENOENT/);
  assert.throws(() => tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'nope.key') }), /--tls-key/);
  const empty = file('empty-ca.pem', 'not a certificate\n');
  assert.throws(() => loadX509Trust(configOf(agent('x', ID)), empty), /--client-ca .*empty-ca\.pem: no PEM certificates/);
  assert.throws(() => loadX509Trust(configOf(agent('x', ID)), join(dir, 'ghost.pem')), /--client-ca .*ghost\.pem: cannot read \(ENOENT\)/);
  assert.throws(() => loadX509Trust(configOf(doc('TrustDomain', 'prod', { x509_bundle_file: 'ghost.pem' }))), /aam\.yaml \(document 1\): TrustDomain "prod": spec\.x509_bundle_file .*ghost\.pem: cannot read/);
  const plain = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') });
  assert.equal(plain.requestCert, undefined, 'no client CA -> no client certificate requested');
  const mtls = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') }, loadX509Trust(configOf(agent('x', ID)), join(dir, 'clients-ca.pem')));
  assert.equal(mtls.requestCert, true);
  assert.equal(mtls.rejectUnauthorized, false);
  // TrustDomain: JWKS and/or an X.509 bundle, at least one of them.
  for (const spec of ['{}', '{ jwks_file: a.json, jwks_url: "https://x/k" }', '{ x509_bundle_file: "" }']) {
    assert.throws(() => configOf(`apiVersion: access.envisionai.dev/v1\nkind: TrustDomain\nmetadata: { name: p }\nspec: ${spec}\n`), spec);
  }
  assert.doesNotThrow(() => configOf(doc('TrustDomain', 'p', { x509_bundle_file: 'p.pem' })));
});
