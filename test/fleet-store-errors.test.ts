// A fleet store aam cannot log in to or reach: every command that opens it (`aam migrate`, the
// stores the other commands open, `aam audit verify`) and a replica's start name AAM_DATABASE_URL and
// say what to check (the password, the database, the host), against the real PostgreSQL of npm test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fleetUrls } from './helpers/fleet.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { writeFileSync } from 'node:fs';
import { startGateway } from '../src/cli/serve.ts';

const { databaseUrl, redisUrl } = fleetUrls();
const withUrl = (edit: (u: URL) => void): string => { const u = new URL(databaseUrl); edit(u); return u.toString(); };
const WRONG_PASSWORD = withUrl((u) => { u.password = 'not-the-password'; });
const NO_DATABASE = withUrl((u) => { u.pathname = '/aam_no_such_database'; });
const env = (url: string) => ({ ...process.env, AAM_DATABASE_URL: url, AAM_REDIS_URL: redisUrl, AAM_MASTER_KEY: '11'.repeat(32), AAM_LOG_LEVEL: 'error' });

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const PASSWORD_HINT = /cannot use the fleet database \(AAM_DATABASE_URL\): password authentication failed for user "aam" \(the user or password in AAM_DATABASE_URL is wrong/;

test('aam migrate, a store-opening command and audit verify with a wrong password name AAM_DATABASE_URL and the password', async () => {
  for (const args of [['migrate'], ['keys', 'list'], ['audit', 'verify']]) {
    const r = await runCli(args, { env: env(WRONG_PASSWORD) });
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, PASSWORD_HINT, `${args.join(' ')}: ${r.stderr}`);
    assert.ok(!r.stderr.includes('not-the-password'), 'the password is not printed');
  }
});

test('aam migrate on a database that does not exist says to create it; on a closed port, that PostgreSQL is unreachable', async () => {
  const missing = await runCli(['migrate'], { env: env(NO_DATABASE) });
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /AAM_DATABASE_URL.*does not exist.*create it/, missing.stderr);
  const port = await closedPort();
  const down = await runCli(['migrate'], { env: env(withUrl((u) => { u.port = String(port); })) });
  assert.notEqual(down.code, 0);
  assert.match(down.stderr, /cannot use the fleet database \(AAM_DATABASE_URL\):.*PostgreSQL is unreachable at the host and port in AAM_DATABASE_URL/, down.stderr);
});

test('policy diff --against-trail with a wrong password names AAM_DATABASE_URL and the password, and the export to replay instead', async () => {
  const d = tempDir('aam-store-errors-');
  const config = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one']));
  writeFileSync(join(d, 'old.yaml'), config);
  writeFileSync(join(d, 'new.yaml'), config);
  const r = await runCli(['policy', 'diff', join(d, 'old.yaml'), join(d, 'new.yaml'), '--against-trail', '7d'], { env: env(WRONG_PASSWORD) });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, PASSWORD_HINT, r.stderr);
  assert.match(r.stderr, /aam audit export/);
  assert.ok(!r.stderr.includes('not-the-password'), 'the password is not printed');
});

test("a replica's start with a wrong password is refused with the same words", async () => {
  const d = tempDir('aam-store-errors-');
  writeFileSync(join(d, 'aam.yaml'), yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])));
  await assert.rejects(startGateway({ configPath: join(d, 'aam.yaml'), dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: env(WRONG_PASSWORD) }), PASSWORD_HINT);
});

test('a CLI admin action whose evidence cannot reach the fleet database (after its stores opened) says so in the same words', async () => {
  const { recordCliAdmin } = await import('../src/cli/evidence.ts');
  const saved = { url: process.env.AAM_DATABASE_URL, key: process.env.AAM_MASTER_KEY };
  process.env.AAM_MASTER_KEY = '11'.repeat(32);
  try {
    process.env.AAM_DATABASE_URL = WRONG_PASSWORD;
    const refused = await recordCliAdmin(tempDir('aam-store-errors-'), 'key_created', 'key_1', { agent: 'a' });
    assert.match(refused ?? '', /^key_created key_1 was done, but its audit event could not be written: /);
    assert.match(refused ?? '', PASSWORD_HINT);
    assert.ok(!refused?.includes('not-the-password'), 'the password is not printed');
    const port = await closedPort();
    process.env.AAM_DATABASE_URL = withUrl((u) => { u.port = String(port); });
    const down = await recordCliAdmin(tempDir('aam-store-errors-'), 'key_revoked', 'key_1');
    assert.match(down ?? '', /could not be written: cannot use the fleet database \(AAM_DATABASE_URL\):.*PostgreSQL is unreachable at the host and port in AAM_DATABASE_URL/, down ?? '');
  } finally {
    for (const [k, v] of [['AAM_DATABASE_URL', saved.url], ['AAM_MASTER_KEY', saved.key]] as const) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  }
});
