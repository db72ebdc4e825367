// Fleet mode, starts that must stop with a clear message, against the real PostgreSQL and Redis of
// npm test. A Redis that refuses aam:
// a wrong or missing password in AAM_REDIS_URL stops `aam serve` (exit 1) and an `aam` command
// (exit 1, nothing written) naming AAM_REDIS_URL and what Redis answered, as a wrong PostgreSQL
// password does; they used to start and answer 503 for ever (the command: exit 0). A Redis that
// is only unreachable is still waited for: the replica starts, logs it once and /readyz names it
// with the cause; `aam fleet status` says what Redis answered. No AAM_MASTER_KEY: a replica or a
// command that needs the key stops saying so, instead of making a master.key of its own in its data
// dir (the second replica then refused with "wrong master key ... restore master.key").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { serveRefusal, startServeChild } from './helpers/serve-child.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { redisRefusal } from '../src/store/redis.ts';

let store: FleetTestStore;
const dir = tempDir('aam-fleet-redis-refusal-');
const config = join(dir, 'aam.yaml');
const ADMIN = randomBytes(24).toString('hex');

before(async () => {
  store = await fleetStore();
  writeFileSync(config, yaml(doc('Agent', 'a', { workload: 'spiffe://test/agent/a' })));
  // Migrated, so that only Redis can refuse.
  const r = await runCli(['migrate'], { env: { ...process.env, ...store.env } });
  assert.equal(r.code, 0, r.stderr);
});

after(async () => { await store?.drop(); });

/** The test Redis's URL with another password, or none. */
function withPassword(password: string): string {
  const u = new URL(store.redisUrl);
  u.password = password;
  return u.toString();
}

const cases = [['a wrong password', () => withPassword('not-the-password'), /WRONGPASS/], ['no password', () => withPassword(''), /NOAUTH/]] as const;

for (const [what, url, answer] of cases) {
  test(`aam serve with ${what} in AAM_REDIS_URL refuses to start, naming AAM_REDIS_URL and Redis's answer`, async () => {
    const outcome = await serveRefusal({ config, data: join(dir, `serve-${what.length}`), env: { ...store.env, AAM_REDIS_URL: url(), AAM_ADMIN_TOKEN: ADMIN } });
    assert.match(outcome, /exited \(1\) before listening/);
    assert.match(outcome, /cannot use Redis \(AAM_REDIS_URL\)/);
    assert.match(outcome, answer);
    assert.doesNotMatch(outcome, /not-the-password/, 'the URL (its password) is never printed');
  });

  test(`aam keys create with ${what} in AAM_REDIS_URL exits 1 and writes no key`, async () => {
    const r = await runCli(['keys', 'create', '--agent', 'a', '--config', config, '--data', join(dir, 'cli')], { env: { ...process.env, ...store.env, AAM_REDIS_URL: url() } });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot use Redis \(AAM_REDIS_URL\)/);
    assert.match(r.stderr, answer);
    const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
    try { assert.equal((await sql`SELECT count(*)::int AS n FROM keys`)[0].n, 0); } finally { await sql.end(); }
  });
}

test('aam fleet status with a wrong password says what Redis answered (not "Connection is closed."), exit 1', async () => {
  const r = await runCli(['fleet', 'status'], { env: { ...process.env, ...store.env, AAM_REDIS_URL: withPassword('not-the-password') } });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /redis: DOWN \(WRONGPASS.*AAM_REDIS_URL/);
});

test('a Redis that does not answer at start is waited for: the replica starts, logs it once, /readyz names redis and why', async () => {
  const gw = await startServeChild({ config, data: join(dir, 'down'), env: { ...store.env, AAM_REDIS_URL: 'redis://:pw@127.0.0.1:1', AAM_ADMIN_TOKEN: ADMIN } });
  try {
    const r = await fetch(`${gw.url}/readyz`);
    assert.equal(r.status, 503);
    const body = (await r.json()) as { down: string[]; store: { stores: { redis: { error: string } } } };
    assert.deepEqual(body.down, ['redis']);
    assert.match(body.store.stores.redis.error, /ECONNREFUSED/);
    assert.match(gw.stderr(), /"event":"store_unavailable","store":"redis".*ECONNREFUSED/);
  } finally { await gw.stop(); }
});

test('redisRefusal: passwords and certificates refuse; a Redis that is away does not', () => {
  assert.match(redisRefusal(Object.assign(new Error('WRONGPASS invalid username-password pair or user is disabled.'), { name: 'ReplyError' })) ?? '', /AAM_REDIS_URL/);
  assert.match(redisRefusal(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })) ?? '', /AAM_REDIS_CA_FILE/);
  assert.notEqual(redisRefusal(Object.assign(new Error('Hostname/IP does not match certificate\'s altnames'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })), null);
  assert.notEqual(redisRefusal(Object.assign(new Error('tlsv13 alert certificate required'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' })), null);
  for (const away of [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), Object.assign(new Error('connect ETIMEDOUT'), { code: 'ETIMEDOUT' }),
    new Error('LOADING Redis is loading the dataset in memory'), null]) {
    assert.equal(redisRefusal(away), null, String(away));
  }
});

test('no AAM_MASTER_KEY in fleet mode: aam serve and aam identity issue stop naming it, and make no master.key of their own', async () => {
  const env = { ...store.env, AAM_ADMIN_TOKEN: ADMIN };
  delete (env as Record<string, string | undefined>).AAM_MASTER_KEY;
  const data = join(dir, 'no-master');
  const outcome = await serveRefusal({ config, data, env: { ...env, AAM_MASTER_KEY: '' } });
  assert.match(outcome, /exited \(1\) before listening/);
  assert.match(outcome, /fleet mode \(AAM_DATABASE_URL\) needs AAM_MASTER_KEY/);
  assert.equal(existsSync(join(data, 'master.key')), false);
  const cli = join(dir, 'no-master-cli');
  const r = await runCli(['identity', 'issue', '--agent', 'a', '--config', config, '--data', cli], { env: { ...process.env, ...env, AAM_MASTER_KEY: '' } });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /needs AAM_MASTER_KEY/);
  assert.equal(existsSync(join(cli, 'master.key')), false);
});
