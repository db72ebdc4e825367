import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { decodeJwt } from 'jose';
import { parseConfigTexts } from '../src/config/load.ts';
import { buildAgentRegistry } from '../src/identity/registry.ts';
import { parseSpiffeId, trustDomainOf } from '../src/identity/spiffe-id.ts';
import { createJoinTokenStore, exchangeJoinToken } from '../src/identity/join-tokens.ts';
import { openIssuer } from '../src/identity/issuer.ts';
import { tempDir } from './fixtures/identity-jwt.ts';

const CONFIG = `
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: finance-analyst, labels: { tier: gold, region: eu } }
spec:
  workload: spiffe://prod/agent/finance-analyst
  owner: jane@example.com
  team: finance
  environment: prod
  deployment: analyst-v3
  labels: { region: us }
---
apiVersion: access.envisionai.dev/v1
kind: Agent
metadata: { name: batch }
spec: { workload: spiffe://staging.example.org/ns/jobs/sa/batch }
`;

test('registry resolves agents by SPIFFE ID and name with the full record', () => {
  const reg = buildAgentRegistry(parseConfigTexts([{ file: 'aam.yaml', text: CONFIG }]));
  assert.equal(reg.size, 2);
  const a = reg.bySpiffeId('spiffe://prod/agent/finance-analyst');
  assert.deepEqual(a, {
    name: 'finance-analyst', spiffeId: 'spiffe://prod/agent/finance-analyst', trustDomain: 'prod',
    owner: 'jane@example.com', team: 'finance', environment: 'prod', deployment: 'analyst-v3',
    labels: { tier: 'gold', region: 'us' },
  });
  assert.equal(reg.byName('batch')?.trustDomain, 'staging.example.org');
  assert.equal(reg.bySpiffeId('spiffe://prod/agent/finance-analyst/'), undefined);
  assert.equal(reg.bySpiffeId('spiffe://PROD/agent/finance-analyst'), undefined);
  assert.equal(reg.byName('ghost'), undefined);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a!.labels) && Object.isFrozen(reg.all()));
  assert.throws(() => { (a as { team?: string }).team = 'x'; });
});

test('registry refuses workloads that are not strict SPIFFE IDs', () => {
  const text = CONFIG.replace('spiffe://prod/agent/finance-analyst', 'spiffe://prod/agent/a%2Fb');
  assert.throws(() => buildAgentRegistry(parseConfigTexts([{ file: 'aam.yaml', text }])), /finance-analyst.*spec\.workload/);
});

test('parseSpiffeId follows the SPIFFE ID spec', () => {
  assert.deepEqual(parseSpiffeId('spiffe://prod/agent/x'), { id: 'spiffe://prod/agent/x', trustDomain: 'prod', path: '/agent/x' });
  assert.deepEqual(parseSpiffeId('spiffe://prod'), { id: 'spiffe://prod', trustDomain: 'prod', path: '' });
  for (const bad of ['', 'http://prod/x', 'SPIFFE://prod/x', 'spiffe://', 'spiffe:///x', 'spiffe://Prod/x', 'spiffe://prod/x/',
    'spiffe://prod//x', 'spiffe://prod/./x', 'spiffe://prod/../x', 'spiffe://prod:8080/x', 'spiffe://user@prod/x', 'spiffe://prod/x?y=1', 'spiffe://prod/x#f',
    'spiffe://prod/x%20y', 'spiffe://prod/' + 'a'.repeat(2100)]) {
    assert.equal(typeof parseSpiffeId(bad), 'string', bad.slice(0, 40));
  }
  assert.equal(trustDomainOf('spiffe://a.b-c_d/x'), 'a.b-c_d');
  assert.equal(trustDomainOf('nope'), undefined);
});

test('join tokens: stored hashed, exchanged exactly once, expiry and revocation enforced', async () => {
  let t = 1_800_000_000_000;
  const db = new DatabaseSync(':memory:');
  const store = createJoinTokenStore(db, { now: () => t });
  const reg = buildAgentRegistry(parseConfigTexts([{ file: 'aam.yaml', text: CONFIG }]));
  const issuer = await openIssuer(tempDir());
  const { id, token } = store.create({ agent: 'finance-analyst', ttlSeconds: 600, createdBy: 'admin' });
  assert.match(token, /^aamjoin_[A-Za-z0-9_-]{43}$/);
  const rows = db.prepare('SELECT * FROM identity_join_tokens').all();
  assert.equal(JSON.stringify(rows).includes(token.slice(8)), false, 'plaintext never stored');
  const r = await exchangeJoinToken(store, issuer, reg, token, { ttlSeconds: 300 });
  assert.equal(r.ok, true);
  assert.equal(r.ok && decodeJwt(r.svid.token).sub, 'spiffe://prod/agent/finance-analyst');
  const again = await exchangeJoinToken(store, issuer, reg, token);
  assert.deepEqual(again.ok === false && again.reason, 'used');
  assert.equal(store.list()[0].id, id);
  assert.equal(store.list()[0].usedAt, 1_800_000_000);

  const exp = store.create({ agent: 'finance-analyst', ttlSeconds: 60 });
  t += 61_000;
  assert.equal(store.redeem(exp.token).ok === false && (store.redeem(exp.token) as { reason: string }).reason, 'expired');

  const rev = store.create({ agent: 'finance-analyst' });
  assert.equal(store.revoke(rev.id), true);
  assert.equal(store.revoke(rev.id), false);
  assert.deepEqual((store.redeem(rev.token) as { reason: string }).reason, 'revoked');

  assert.equal((store.redeem('aamjoin_guess') as { reason: string }).reason, 'invalid');
  assert.equal((store.redeem('aam_virtualkey') as { reason: string }).reason, 'invalid');
  assert.throws(() => store.create({ agent: 'x', ttlSeconds: 8 * 86400 }), /ttl/);

  // The agent was removed from the config after the token was created.
  const gone = store.create({ agent: 'retired-agent' });
  const g = await exchangeJoinToken(store, issuer, reg, gone.token);
  assert.equal(g.ok === false && g.reason, 'unknown_agent');
});

test('join tokens: one token redeemed through two connections succeeds once', () => {
  const dir = tempDir();
  const a = new DatabaseSync(`${dir}/j.db`);
  const b = new DatabaseSync(`${dir}/j.db`);
  a.exec('PRAGMA busy_timeout=2000');
  b.exec('PRAGMA busy_timeout=2000');
  const sa = createJoinTokenStore(a);
  const sb = createJoinTokenStore(b);
  const { token } = sa.create({ agent: 'finance-analyst' });
  const results = [sa.redeem(token), sb.redeem(token), sa.redeem(token)];
  assert.equal(results.filter((r) => r.ok).length, 1);
});

test('verified SVIDs resolve to the Agent record, unknown workloads do not', async () => {
  const { identityFromJwtSvid, identityFromTlsPeer } = await import('../src/identity/resolve.ts');
  const reg = buildAgentRegistry(parseConfigTexts([{ file: 'aam.yaml', text: CONFIG }]));
  const svid = { ok: true as const, spiffeId: 'spiffe://prod/agent/finance-analyst', trustDomain: 'prod', verifiedBy: 'aam', kid: 'k', jti: 'j1', keyId: 'key_1', expiresAt: 0, claims: {} };
  const r = identityFromJwtSvid(svid, reg);
  assert.equal(r.ok && r.identity.agent.team, 'finance');
  assert.equal(r.ok && r.identity.method, 'jwt_svid');
  assert.equal(r.ok && r.identity.tokenId, 'j1');
  assert.equal(r.ok && r.identity.keyId, 'key_1');
  const miss = identityFromJwtSvid({ ...svid, spiffeId: 'spiffe://prod/agent/ghost' }, reg);
  assert.equal(miss.ok === false && miss.code, 'unknown_agent');
  const t = identityFromTlsPeer({ ok: true, spiffeId: 'spiffe://staging.example.org/ns/jobs/sa/batch', trustDomain: 'staging.example.org', serial: 'AB', fingerprint256: '', notAfter: 0 }, reg);
  assert.equal(t.ok && t.identity.agent.name, 'batch');
  assert.equal(t.ok && t.identity.method, 'x509_svid');
});
