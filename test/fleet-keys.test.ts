// Fleet mode, virtual keys: three real `aam serve` replicas on one real PostgreSQL + Redis. A key
// created by the CLI, revoked on one replica or rotated on another takes effect on every replica
// within 1 s (push over Redis); a change whose announcement is lost still lands within the poll
// interval. Also: migrations run once, `aam migrate`, and a schema newer than the replica refuses.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { startServeChild, type ServeChild } from './helpers/serve-child.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { startGateway } from '../src/cli/serve.ts';
import { SCHEMA_VERSION } from '../src/store/postgres.ts';

const ADMIN = randomBytes(24).toString('hex');
const CONFIG = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one']));

let store: FleetTestStore;
let dir: string;
let config: string;
let replicas: ServeChild[] = [];

const fleetEnv = () => ({ ...process.env, ...store.env, AAM_ADMIN_TOKEN: ADMIN, AAM_LOG_LEVEL: 'info' });

before(async () => {
  store = await fleetStore();
  dir = tempDir('aam-fleet-keys-');
  config = join(dir, 'aam.yaml');
  writeFileSync(config, CONFIG);
  // Each replica has its own (ephemeral) data dir: they share nothing but the fleet store.
  const t0 = performance.now();
  replicas = await Promise.all([0, 1, 2].map((i) => {
    const data = join(dir, `data-${i}`);
    mkdirSync(data);
    return startServeChild({ config, data, env: fleetEnv() });
  }));
  process.stdout.write(`# three replicas' first start on a fresh database: ${(performance.now() - t0).toFixed(0)} ms\n`);
});

after(async () => {
  await Promise.all(replicas.map((r) => r.stop()));
  await store.drop();
});

const status = async (url: string, key: string) => (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status;

/** ms until every replica answers `want` for this key (polling every 10 ms), or throw after `ms`. */
async function everywhere(key: string, want: number, ms: number): Promise<number> {
  const t0 = performance.now();
  const done = new Set<number>();
  while (performance.now() - t0 < ms) {
    await Promise.all(replicas.map(async (r, i) => { if (!done.has(i) && await status(r.url, key) === want) done.add(i); }));
    if (done.size === replicas.length) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`after ${ms} ms only replicas ${[...done].join(',') || 'none'} answer ${want}`);
}

const admin = (url: string, path: string, body: unknown = {}) => fetch(`${url}/admin/v1${path}`, {
  method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
});

test('a key created by the CLI, revoked on replica A, rotated on replica B takes effect on every replica within 1 s', async () => {
  const created = await runCli(['keys', 'create', '--agent', 'tester', '--config', config, '--data', join(dir, 'cli-data')], { env: fleetEnv() });
  assert.equal(created.code, 0, created.stderr);
  const secret = created.stdout.trim().split('\n').at(-1)!;
  const id = /created key (key_\w+)/.exec(created.stderr)![1];
  const tookCreate = await everywhere(secret, 200, 1000);

  const revoked = await admin(replicas[0].url, `/keys/${id}/revoke`);
  assert.equal(revoked.status, 200);
  const tookRevoke = await everywhere(secret, 401, 1000);

  const k2 = (await (await admin(replicas[1].url, '/keys', { agent: 'tester' })).json()) as { id: string; key: string };
  await everywhere(k2.key, 200, 1000);
  const rotated = (await (await admin(replicas[1].url, `/keys/${k2.id}/rotate`, { grace_seconds: 0 })).json()) as { key: string };
  const tookRotateNew = await everywhere(rotated.key, 200, 1000);
  const tookRotateOld = await everywhere(k2.key, 401, 1000);
  process.stdout.write(`# propagation ms: create ${tookCreate.toFixed(0)}, revoke ${tookRevoke.toFixed(0)}, rotate ${tookRotateNew.toFixed(0)}/${tookRotateOld.toFixed(0)}\n`);

  // Every replica and the CLI list the same keys from the fleet store.
  const listed = await runCli(['keys', 'list', '--json', '--config', config, '--data', join(dir, 'cli-data')], { env: fleetEnv() });
  const ids = (JSON.parse(listed.stdout) as Array<{ id: string; revokedAt: string | null; secrets: number }>);
  assert.deepEqual(ids.map((k) => [k.id, k.revokedAt !== null, k.secrets]).sort(), [[id, true, 1], [k2.id, false, 2]].sort());
});

test('a key command without AAM_MASTER_KEY in fleet mode refuses before it acts (before: the key was made and printed, then "its audit event could not be written")', async () => {
  const env = { ...fleetEnv(), AAM_MASTER_KEY: '' };
  const data = tempDir('aam-fleet-nokey-');
  const before = await runCli(['keys', 'list', '--json', '--config', config, '--data', data], { env });
  for (const args of [['keys', 'create', '--agent', 'tester'], ['keys', 'rotate', 'key_nope'], ['keys', 'revoke', 'key_nope']]) {
    const r = await runCli([...args, '--config', config, '--data', data], { env });
    assert.equal(r.code, 1, args.join(' '));
    assert.equal(r.stdout, '', `${args.join(' ')}: no secret printed`);
    assert.match(r.stderr, /^error: fleet mode \(AAM_DATABASE_URL\) needs AAM_MASTER_KEY, the same on every replica and aam command; it is not set/, args.join(' '));
  }
  const after = await runCli(['keys', 'list', '--json', '--config', config, '--data', data], { env });
  assert.equal(after.stdout, before.stdout, 'no key made');
});

test('a change whose announcement is lost still reaches every replica within the poll interval (1 s)', async () => {
  const created = await runCli(['keys', 'create', '--agent', 'tester', '--config', config, '--data', join(dir, 'cli-data')], { env: fleetEnv() });
  const secret = created.stdout.trim().split('\n').at(-1)!;
  const id = /created key (key_\w+)/.exec(created.stderr)![1];
  await everywhere(secret, 200, 1000);
  // Revoke behind aam's back: committed in PostgreSQL, never announced on Redis.
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${0x61616d2d6b})`;
      await tx`UPDATE keys SET revoked_at = ${new Date().toISOString()}, seq = nextval('key_seq') WHERE id = ${id}`;
    });
  } finally { await sql.end(); }
  const took = await everywhere(secret, 401, 2500);
  process.stdout.write(`# unannounced revoke seen everywhere after ${took.toFixed(0)} ms\n`);
});

test('/readyz names the fleet store; aam migrate is idempotent; a replica refuses a schema newer than it knows', async () => {
  const ready = await fetch(`${replicas[2].url}/readyz`);
  assert.equal(ready.status, 200);
  assert.equal(((await ready.json()) as { store: string }).store, 'fleet');

  const again = await runCli(['migrate'], { env: fleetEnv() });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`at schema ${SCHEMA_VERSION}, current .*nothing to do`));
  const noFleet = await runCli(['migrate'], { env: { ...process.env, AAM_DATABASE_URL: '', AAM_REDIS_URL: '' } });
  assert.equal(noFleet.code, 1);
  assert.match(noFleet.stderr, /set AAM_DATABASE_URL/);

  const newer = await fleetStore();
  try {
    // A command other than serve and migrate needs the schema it knows: on a database not migrated
    // yet it says to run aam migrate (it failed with relation "credential_meta" does not exist).
    const early = await runCli(['keys', 'create', '--agent', 'tester', '--config', config, '--data', tempDir('aam-fleet-early-')], { env: { ...process.env, ...newer.env } });
    assert.equal(early.code, 1, early.stdout);
    assert.match(early.stderr, new RegExp(`schema version 0, older than this aam \\(${SCHEMA_VERSION}\\): run \`aam migrate\``));
    // The README's walk runs aam fleet status there too: it said 'postgres: DOWN (relation "aam_schema" does not exist)'.
    const unmigrated = await runCli(['fleet', 'status'], { env: { ...process.env, ...newer.env } });
    assert.equal(unmigrated.code, 1, unmigrated.stderr);
    assert.match(unmigrated.stdout, /^postgres: ok, schema 0 \(not migrated yet: run aam migrate, or start a replica, which migrates\)$/m);
    const fresh = await runCli(['migrate'], { env: { ...process.env, ...newer.env } });
    assert.match(fresh.stdout, new RegExp(`from schema 0 to ${SCHEMA_VERSION}`));
    const sql = postgres(newer.databaseUrl, { max: 1, onnotice: () => {} });
    await sql`INSERT INTO aam_schema (version, name) VALUES (${SCHEMA_VERSION + 1}, 'from the future')`;
    await sql.end();
    const d = tempDir('aam-fleet-newer-');
    await assert.rejects(
      startGateway({ configPath: config, dataDir: d, port: 0, host: '127.0.0.1', env: { ...process.env, ...newer.env, AAM_LOG_LEVEL: 'error' } }),
      new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this aam knows \\(${SCHEMA_VERSION}\\)`),
    );
    const half = await startGateway({ configPath: config, dataDir: d, port: 0, host: '127.0.0.1', env: { ...process.env, AAM_DATABASE_URL: newer.databaseUrl, AAM_REDIS_URL: '', AAM_LOG_LEVEL: 'error' } })
      .then(() => null, (e: Error) => e.message);
    assert.match(half ?? '', /needs both AAM_DATABASE_URL .* and AAM_REDIS_URL/);
    // Nor does the CLI write to (or read) a schema it does not know: a key created there went in silently.
    for (const args of [['keys', 'create', '--agent', 'tester', '--config', config, '--data', d], ['audit', 'verify']]) {
      const r = await runCli(args, { env: { ...process.env, ...newer.env } });
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than this aam knows`), args.join(' '));
    }
  } finally { await newer.drop(); }
});
