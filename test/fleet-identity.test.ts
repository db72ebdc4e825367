// Fleet mode, aam's own identity: two replicas on one real PostgreSQL + Redis. The issuer's signing
// keys are shared rows sealed under the master key, so a JWT-SVID minted on one replica verifies on
// the other, and `aam identity rotate` (the CLI, against the fleet) reaches both within a second.
// Join tokens are one-time across the fleet: redeemed on one replica, refused on the other; of
// concurrent redemptions over both replicas exactly one gets a token.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import postgres from 'postgres';
import { fleetStore, startReplicas, type FleetTestStore, type Replicas } from './helpers/fleet.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { runCli, until } from './helpers/e2e.ts';
import { startGateway } from '../src/cli/serve.ts';
import { openFleet } from '../src/store/fleet.ts';
import { FleetIssuerKeys } from '../src/store/fleet-issuer-keys.ts';
import { issuerKeyPath, openIssuer } from '../src/identity/issuer.ts';

let store: FleetTestStore;
let dir: string;
let configPath: string;
let replicaSet: Replicas;
let replicas: Replicas['replicas'];
let urls: string[];
let key: string;

before(async () => {
  store = await fleetStore();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-identity-'));
  configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one'])));
  replicaSet = await startReplicas({ store, configPath, dir, agents: ['tester'] });
  ({ replicas, urls, keys: { tester: key } } = replicaSet);
});

after(async () => {
  await replicaSet?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const cliEnv = () => ({ ...process.env, ...store.env });

async function mint(url: string): Promise<string> {
  const r = await fetch(`${url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 200, await r.clone().text());
  return ((await r.json()) as { access_token: string }).access_token;
}

const models = async (url: string, bearer: string) => (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${bearer}` } })).status;
const jwks = async (url: string, path = '/.well-known/jwks.json') => ((await (await fetch(`${url}${path}`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid).sort();

test('one issuer for the fleet: a JWT-SVID minted on A verifies on B, and the keys are in PostgreSQL, sealed', async () => {
  assert.equal(replicas[0].rt.issuer!.activeKid, replicas[1].rt.issuer!.activeKid);
  assert.deepEqual(await jwks(urls[0]), await jwks(urls[1]));
  assert.deepEqual(await jwks(urls[0], '/identity/v1/obo/jwks.json'), await jwks(urls[1], '/identity/v1/obo/jwks.json'));
  const fromA = await mint(urls[0]);
  assert.equal(await models(urls[1], fromA), 200);
  assert.equal(await models(urls[0], await mint(urls[1])), 200);
  // No key file in the replicas' data dirs; the rows hold no private key in the clear.
  for (const i of [0, 1]) assert.equal(existsSync(issuerKeyPath(join(dir, `data-${i}`))), false);
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<Array<{ ring: string; sealed: string }>>`SELECT ring, sealed FROM issuer_keys ORDER BY ring`;
    assert.deepEqual(rows.map((r) => r.ring), ['obo', 'svid']);
    // Quoted JSON keys: the sealed text is base64, which holds no quote (an unquoted EC or kid appears in it by chance).
    for (const r of rows) assert.doesNotMatch(r.sealed, /"d"|"kty"|"kid"|"crv"/, 'sealed, not JSON');
  } finally { await sql.end(); }
});

test('`aam identity rotate` against the fleet: both replicas sign with the new key within 1 s, old tokens keep verifying', async () => {
  const before = await mint(urls[0]);
  const oldKid = decodeProtectedHeader(before).kid;
  const r = await runCli(['identity', 'rotate', '--config', configPath, '--data', join(dir, 'cli-data')], { env: cliEnv() });
  assert.equal(r.code, 0, r.stderr);
  const newKid = /new signing key (\S+);/.exec(r.stdout)![1];
  assert.notEqual(newKid, oldKid);
  const t0 = performance.now();
  await until(() => replicas.every((x) => x.rt.issuer!.activeKid === newKid), 1000, 'every replica on the new key');
  const took = performance.now() - t0;
  for (const url of urls) assert.ok((await jwks(url)).includes(newKid) && (await jwks(url)).includes(String(oldKid)), 'new and retired key published');
  const fromB = await mint(urls[1]);
  assert.equal(decodeProtectedHeader(fromB).kid, newKid);
  assert.equal(await models(urls[0], fromB), 200);
  assert.equal(await models(urls[1], before), 200, 'a token of the retired key verifies within grace');
  console.log(`# rotation seen by both replicas ${took.toFixed(0)} ms after the CLI returned`);
});

test('a rotation on a replica reaches the other; two rotations at once keep both keys in the ring', async () => {
  const t0 = performance.now();
  const { kid } = await replicas[0].rt.issuer!.rotate();
  await until(() => replicas[1].rt.issuer!.activeKid === kid, 1000, 'replica 1 on the key rotated on replica 0');
  console.log(`# a rotation on replica 0 seen by replica 1 in ${(performance.now() - t0).toFixed(0)} ms (rotate + announce + re-read)`);
  await Promise.all([replicas[0].rt.issuer!.rotate(), replicas[1].rt.issuer!.rotate()]);
  await until(() => replicas[0].rt.issuer!.activeKid === replicas[1].rt.issuer!.activeKid, 1000, 'one active key');
  const kids = replicas[0].rt.issuer!.keys().map((k) => k.kid);
  await until(async () => (await jwks(urls[0])).join() === (await jwks(urls[1])).join(), 1000, 'the same JWKS');
  assert.equal(new Set(kids).size, kids.length);
  assert.ok(kids.length >= 5, `ring keeps every key within grace (${kids.length})`);
  assert.equal(await models(urls[1], await mint(urls[0])), 200);
});

test('the issuer rows do not open with another master key (the message says every replica needs the same one)', async () => {
  const fleet = await openFleet({ databaseUrl: store.databaseUrl, redisUrl: store.redisUrl }, { follow: false, migrate: false });
  try {
    const keys = new FleetIssuerKeys(fleet, { follow: false });
    const wrong = keys.rings(() => randomBytes(32));
    await assert.rejects(wrong.svid.read(), /does not open with this AAM_MASTER_KEY.*same master key/);
  } finally { await fleet.close(); }
});

test('a data dir\'s issuer key files are imported on the first fleet start, sealed: tokens minted before the move keep verifying', async () => {
  const moved = await fleetStore();
  const data = join(dir, 'data-single');
  const single = await openIssuer(data); // the key files of a gateway that ran alone
  const before = await single.mint({ spiffeId: decodeJwt(await mint(urls[0])).sub!, audience: 'aam', ttlSeconds: 600 });
  const r = await startGateway({ configPath, dataDir: data, port: 0, host: '127.0.0.1', env: { ...process.env, ...moved.env, AAM_LOG_LEVEL: 'error' } });
  const fleet = await openFleet({ databaseUrl: moved.databaseUrl, redisUrl: moved.redisUrl }, { follow: false, migrate: false });
  try {
    assert.equal(r.rt.issuer!.activeKid, single.activeKid);
    assert.equal(r.rt.issuer!.oboKid, single.oboKid);
    assert.equal(await models(`http://127.0.0.1:${r.port}`, before), 200);
    const rows = await fleet.sql<Array<{ sealed: string }>>`SELECT sealed FROM issuer_keys`;
    assert.equal(rows.length, 2);
    for (const row of rows) assert.doesNotMatch(row.sealed, /"d"|"kty"|"kid"|"crv"/, 'sealed, not JSON');
    // Only an empty ring imports: another data dir's files do not replace the fleet's keys.
    const otherDir = join(dir, 'data-other');
    const other = await openIssuer(otherDir);
    const rings = new FleetIssuerKeys(fleet, { follow: false }).rings((info) => r.rt.vault.subkey(info));
    const again = await openIssuer(otherDir, { rings });
    assert.equal(again.activeKid, single.activeKid);
    assert.notEqual(again.activeKid, other.activeKid);
  } finally {
    await fleet.close();
    await r.close();
    await moved.drop();
  }
});

test('`aam identity import-keys` after the first fleet start: another data dir\'s keys verify on every replica within 1 s, sealed, once; bad files import nothing', async () => {
  const late = join(dir, 'data-late');
  const lateIssuer = await openIssuer(late); // a gateway that ran alone, moved after the fleet had its keys
  const spiffeId = decodeJwt(await mint(urls[0])).sub!;
  const token = await lateIssuer.mint({ spiffeId, audience: 'aam', ttlSeconds: 600 });
  const svidFile = issuerKeyPath(late);
  const oboFile = join(late, 'issuer', 'obo-keys.json');
  assert.equal(await models(urls[0], token), 401, 'unknown key before the import');
  const active = replicas[0].rt.issuer!.activeKid;
  const importKeys = (...args: string[]) => runCli(['identity', 'import-keys', ...args, '--config', configPath, '--data', join(dir, 'cli-data')], { env: cliEnv() });
  const sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const stamps = async () => (await sql<Array<{ ring: string; updated_at: Date }>>`SELECT ring, updated_at FROM issuer_keys ORDER BY ring`).map((r) => `${r.ring} ${r.updated_at.toISOString()}`);
  try {
    // Refused whole, nothing written: a key file others can read, beside a good one.
    const loose = join(dir, 'loose', 'keys.json');
    await mkdir(join(dir, 'loose'), { recursive: true });
    await copyFile(svidFile, loose);
    await chmod(loose, 0o644);
    const before = await stamps();
    let r = await importKeys(oboFile, loose);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /mode 0644.*chmod 600/);
    // A key whose kid is not its public key's thumbprint (a renamed or forged key) is refused.
    const forged = join(dir, 'loose', 'obo-keys.json');
    const state = JSON.parse(await readFile(oboFile, 'utf8')) as { active: string; keys: Array<{ kid: string }> };
    state.keys[0].kid = state.active = 'not-its-thumbprint';
    await writeFile(forged, JSON.stringify(state), { mode: 0o600 });
    r = await importKeys(forged);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /not named by its public key's thumbprint/);
    // The ring is never guessed from a file's contents.
    r = await importKeys(join(dir, 'loose', 'other.json'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /--ring svid\|obo/);
    assert.deepEqual(await stamps(), before, 'no ring written by a refused import');

    r = await importKeys(svidFile, oboFile);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /keys\.json -> svid ring: 1 added.*\n.*obo-keys\.json -> obo ring: 1 added/);
    for (const url of urls) await until(async () => (await models(url, token)) === 200, 5000, `${url} verifies the imported key`);
    for (const url of urls) assert.ok((await jwks(url, '/identity/v1/obo/jwks.json')).includes(lateIssuer.oboKid), 'the imported assertion key is published');
    assert.equal(replicas[0].rt.issuer!.activeKid, active, 'the fleet keeps signing with its own key');
    assert.equal(decodeProtectedHeader(await mint(urls[1])).kid, active);
    for (const row of await sql<Array<{ sealed: string }>>`SELECT sealed FROM issuer_keys`) assert.doesNotMatch(row.sealed, /"d"|"kty"|"kid"|"crv"/, 'sealed, not JSON');
    // Again: nothing added, nothing written.
    const once = await stamps();
    r = await importKeys(svidFile, oboFile);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /0 added, 1 already there/);
    assert.deepEqual(await stamps(), once, 'a repeated import writes nothing');
  } finally {
    await sql.end();
  }
});

async function exchange(url: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${url}/identity/v1/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ join_token: token }) });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

async function joinToken(): Promise<string> {
  const r = await runCli(['identity', 'join-token', '--agent', 'tester', '--config', configPath, '--data', join(dir, 'cli-data')], { env: cliEnv() });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').at(-1)!;
}

test('a join token created by the CLI is redeemed once in the fleet: on B, then refused on A and on B', async () => {
  const token = await joinToken();
  const first = await exchange(urls[1], token);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(await models(urls[0], String(first.body.access_token)), 200);
  for (const url of urls) {
    const again = await exchange(url, token);
    assert.equal(again.status, 401);
    assert.match(String((again.body.error as { message: string }).message), /already used/);
  }
});

test('concurrent redemptions of one join token over both replicas: exactly one succeeds', async () => {
  const token = await joinToken();
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => exchange(urls[i % 2], token)));
  assert.deepEqual(results.map((r) => r.status).sort(), [200, 401, 401, 401, 401, 401, 401, 401]);
  const unknown = await exchange(urls[0], `aamjoin_${randomBytes(32).toString('base64url')}`);
  assert.equal(unknown.status, 401);
});
