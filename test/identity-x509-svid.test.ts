import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { basicConstraintsCa, identifyTlsPeer, sanEntries, spiffeIdFromPeerCertificate, tlsServerOptions } from '../src/identity/x509-svid.ts';
import { issueLeaf, makeCa, type Ca, type Leaf } from './fixtures/identity-pki.ts';
import { tempDir } from './fixtures/identity-jwt.ts';

const ID = 'spiffe://prod/agent/x';
const DAY = 86_400_000;
let serverCa: Ca, clientCa: Ca, otherCa: Ca;
let good: Leaf, otherCaCert: Leaf, noSan: Leaf, expired: Leaf, twoUris: Leaf, dnsOnly: Leaf, httpsUri: Leaf, caAsLeaf: Leaf;
let server: Server;
let port: number;
let dir: string;

before(async () => {
  [serverCa, clientCa, otherCa] = await Promise.all([makeCa('server-ca'), makeCa('client-ca'), makeCa('other-ca')]);
  good = await issueLeaf(clientCa, 'x', { sans: [{ type: 'url', value: ID }] });
  otherCaCert = await issueLeaf(otherCa, 'x', { sans: [{ type: 'url', value: ID }] });
  noSan = await issueLeaf(clientCa, 'nosan');
  expired = await issueLeaf(clientCa, 'old', { sans: [{ type: 'url', value: ID }], notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  twoUris = await issueLeaf(clientCa, 'two', { sans: [{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://prod/agent/admin' }] });
  dnsOnly = await issueLeaf(clientCa, 'dns', { sans: [{ type: 'dns', value: 'agent.example.com' }] });
  httpsUri = await issueLeaf(clientCa, 'uri', { sans: [{ type: 'url', value: 'https://prod/agent/x' }] });
  caAsLeaf = await issueLeaf(clientCa, 'ca', { sans: [{ type: 'url', value: ID }], isCa: true });
  const srv = await issueLeaf(serverCa, 'localhost', { sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }], serverAuth: true });
  dir = tempDir();
  writeFileSync(join(dir, 'server.crt'), srv.certPem);
  writeFileSync(join(dir, 'server.key'), srv.keyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'clients-ca.pem'), clientCa.pem);
  const opts = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), clientCaFile: join(dir, 'clients-ca.pem') });
  server = createServer(opts, (req, res) => {
    const r = identifyTlsPeer(req.socket as TLSSocket);
    res.writeHead(r.ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(r));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

function call(client?: Leaf): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/', servername: 'localhost', agent: false, ca: serverCa.pem,
      ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
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

test('mTLS: a client certificate from the configured CA identifies the SPIFFE ID', async () => {
  const r = await call(good);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.spiffeId, ID);
  assert.equal(r.body.trustDomain, 'prod');
  assert.equal(r.body.serial, good.serial);
});

test('mTLS: no certificate, another CA and an expired certificate get 401 with a reason, not a TLS abort', async () => {
  const none = await call();
  assert.equal(none.status, 401);
  assert.equal(none.body.code, 'no_certificate');
  const other = await call(otherCaCert);
  assert.equal(other.status, 401);
  assert.equal(other.body.code, 'untrusted_certificate');
  assert.match(String(other.body.reason), /not trusted/);
  const old = await call(expired);
  assert.equal(old.status, 401);
  assert.equal(old.body.code, 'untrusted_certificate');
  assert.match(String(old.body.reason), /CERT_HAS_EXPIRED/);
});

test('mTLS: trusted certificates without exactly one spiffe:// URI SAN are rejected', async () => {
  for (const [leaf, pattern] of [[noSan, /no URI SAN/], [twoUris, /2 URI SANs/], [dnsOnly, /no URI SAN/], [httpsUri, /spiffe/], [caAsLeaf, /CA certificate/]] as const) {
    const r = await call(leaf);
    assert.equal(r.status, 401, JSON.stringify(r.body));
    assert.equal(r.body.code, 'bad_san');
    assert.match(String(r.body.reason), pattern);
  }
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

test('tlsServerOptions names the flag whose file is wrong', () => {
  assert.throws(() => tlsServerOptions({ certFile: join(dir, 'missing.crt'), keyFile: join(dir, 'server.key') }), /--tls-cert .*missing\.crt.*ENOENT/);
  assert.throws(() => tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'nope.key') }), /--tls-key/);
  writeFileSync(join(dir, 'empty-ca.pem'), 'not a certificate\n');
  assert.throws(() => tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), clientCaFile: join(dir, 'empty-ca.pem') }), /--client-ca .*no PEM certificates/);
  const plain = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key') });
  assert.equal(plain.requestCert, undefined, 'no client CA -> no client certificate requested');
  const mtls = tlsServerOptions({ certFile: join(dir, 'server.crt'), keyFile: join(dir, 'server.key'), clientCaFile: join(dir, 'clients-ca.pem') });
  assert.equal(mtls.requestCert, true);
  assert.equal(mtls.rejectUnauthorized, false);
});
