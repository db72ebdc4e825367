// X.509-SVIDs against a real gateway (`aam serve --tls-cert --tls-key --client-ca`) with a partner
// trust domain that has its own bundle: each SVID is vouched for only by its own domain's CAs, and
// bundle files follow a reload (SIGHUP) without a restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:https';
import { makeCa, issueLeaf, type Ca, type Leaf } from './fixtures/identity-pki.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';

const ALICE = 'spiffe://prod/agent/alice';
const BOT = 'spiffe://partner/agent/bot';
let dir: string;
let g: Running;
let serverCa: Ca, prodCa: Ca, partnerCa: Ca;
let alice: Leaf, bot: Leaf, forgedAlice: Leaf;
const f = (n: string, t: string) => { writeFileSync(join(dir, n), t); return join(dir, n); };

/** GET /v1/models over a new TLS connection with this client certificate. */
const models = (leaf?: Leaf) => new Promise<{ status: number; body: string }>((resolve, reject) => {
  const req = request({ host: '127.0.0.1', port: g.port, path: '/v1/models', ca: serverCa.pem, cert: leaf?.certPem, key: leaf?.keyPem, servername: 'localhost', agent: false }, (res) => {
    let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
  });
  req.on('error', reject);
  req.end();
});

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aam-mtls-e2e-'));
  [serverCa, prodCa, partnerCa] = await Promise.all([makeCa('server'), makeCa('prod-ca'), makeCa('partner-ca')]);
  const server = await issueLeaf(serverCa, 'localhost', { serverAuth: true, sans: [{ type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }] });
  alice = await issueLeaf(prodCa, 'alice', { sans: [{ type: 'url', value: ALICE }] });
  bot = await issueLeaf(partnerCa, 'bot', { sans: [{ type: 'url', value: BOT }] });
  forgedAlice = await issueLeaf(partnerCa, 'alice', { sans: [{ type: 'url', value: ALICE }] });
  f('partner.pem', partnerCa.pem);
  const configPath = f('aam.yaml', yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Agent', 'alice', { workload: ALICE }),
    doc('Agent', 'bot', { workload: BOT }),
    doc('AgentPolicy', 'all', { identity: { workload: 'spiffe://*/agent/*' }, models: { allow: ['one'] } }),
    doc('TrustDomain', 'partner', { x509_bundle_file: 'partner.pem' }),
  ));
  g = await startGateway({
    configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1',
    tlsCert: f('srv.pem', server.certPem), tlsKey: f('srv.key', server.keyPem), clientCa: f('prod.pem', prodCa.pem),
    env: { ...process.env, AAM_LOG_LEVEL: 'error' },
  });
});

after(async () => {
  await g?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a partner-signed certificate claiming spiffe://prod/agent/alice is refused; real alice and the partner\'s own agent get in', async () => {
  const ok = await models(alice);
  assert.equal(ok.status, 200, ok.body);
  assert.match(ok.body, /"one"/);
  assert.equal((await models(bot)).status, 200);
  const forged = await models(forgedAlice);
  assert.equal(forged.status, 401);
  assert.match(forged.body, /client certificate rejected: spiffe:\/\/prod\/agent\/alice is not vouched for by trust domain \\"prod\\" \(--client-ca .*prod\.pem\)/);
  const noCert = await models();
  assert.equal(noCert.status, 401);
});

test('a rotated partner bundle takes effect on SIGHUP-style reload, without a restart', async () => {
  const newPartner = await makeCa('partner-ca-2');
  const newBot = await issueLeaf(newPartner, 'bot', { sans: [{ type: 'url', value: BOT }] });
  assert.equal((await models(newBot)).status, 401, 'not trusted before the bundle changes');
  f('partner.pem', newPartner.pem);
  g.rt.tls!.reload(g.rt.compiled.set); // what SIGHUP does when the config text itself is unchanged
  assert.equal((await models(newBot)).status, 200, 'the new partner CA vouches after the reload');
  const old = await models(bot);
  assert.equal(old.status, 401, 'the retired partner CA no longer does');
  assert.equal((await models(alice)).status, 200);
  // A broken bundle file keeps the last good bundles.
  f('partner.pem', 'garbage');
  g.rt.tls!.reload(g.rt.compiled.set);
  assert.equal((await models(newBot)).status, 200);
});

test('--client-ca without TLS is refused at start, not silently ignored', async () => {
  const configPath = f('min.yaml', yaml(doc('Provider', 'demo', { type: 'demo' })));
  await assert.rejects(startGateway({ configPath, dataDir: join(dir, 'data2'), port: 0, host: '127.0.0.1', clientCa: join(dir, 'prod.pem'), env: { ...process.env, AAM_LOG_LEVEL: 'error' } }),
    /--client-ca needs --tls-cert and --tls-key/);
});
