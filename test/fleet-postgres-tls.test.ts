// Fleet mode over TLS to PostgreSQL, against a PostgreSQL of this file's own (ssl=on, TLS-only in
// pg_hba.conf, one role that must also present a client certificate) and throwaway CAs made with
// the openssl CLI: what sslmode means with and without AAM_DATABASE_CA_FILE; a replica serves over
// TLS, and refuses (503 store_unavailable, /readyz down postgres, nothing written) once the server
// presents a certificate from another CA; every `aam` command takes the same settings; client
// certificates (AAM_DATABASE_CERT_FILE / _KEY_FILE) are accepted when the server's CA signed them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetUrls } from './helpers/fleet.ts';
import { chat, runCli, until } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';
import { testCa, signedBy, type Signed, type TestCa } from './helpers/test-ca.ts';
import { pgBinDir } from '../scripts/test.ts';
import { startGateway } from '../src/cli/serve.ts';
import { connectPostgres } from '../src/store/postgres.ts';
import { databaseTls } from '../src/store/fleet-tls.ts';
import { fleetEnv } from '../src/store/fleet-lazy.ts';

const PASSWORD = randomBytes(12).toString('hex');
const DB = `aam_tls_${randomBytes(4).toString('hex')}`;
const CLI_DB = `${DB}_cli`;
const CONFIG = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['one']));

const dir = tempDir('aam-pg-tls-');
let good: TestCa;
let rogue: TestCa;
let goodServer: Signed;
let rogueServer: Signed;
let goodClient: Signed;
let rogueClient: Signed;
let port = 0;
let admin: postgres.Sql;
let stop = () => {};
const srv = join(dir, 'srv');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

/** PostgreSQL refuses to run as root: then its processes run as the `postgres` OS user (as npm test's). */
function pgUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const id = (f: string) => Number(spawnSync('id', [f, 'postgres'], { encoding: 'utf8' }).stdout);
  return { uid: id('-u'), gid: id('-g') };
}

/** The server presents `c` (its files are rewritten; a reload makes new connections use them). */
function serverCert(c: Signed): void {
  writeFileSync(join(srv, 'server.crt'), readFileSync(c.cert));
  writeFileSync(join(srv, 'server.key'), readFileSync(c.key));
}

before(async () => {
  fleetUrls(); // npm test: the fleet's Redis (plain; this file is about PostgreSQL's TLS)
  chmodSync(dir, 0o711);
  good = testCa(dir, 'good');
  rogue = testCa(dir, 'rogue');
  // The server's certificate names 127.0.0.1 only; it also listens on 127.0.0.2 (a name it does not have).
  goodServer = signedBy(good, 'good-server', '127.0.0.1', 'IP:127.0.0.1');
  rogueServer = signedBy(rogue, 'rogue-server', '127.0.0.1', 'IP:127.0.0.1');
  goodClient = signedBy(good, 'good-client', 'aam_mtls');
  rogueClient = signedBy(rogue, 'rogue-client', 'aam_mtls');
  const user = pgUser();
  const as = user ? { uid: user.uid, gid: user.gid } : {};
  const data = join(dir, 'pg');
  const sock = join(dir, 'sock');
  for (const d of [data, sock, srv]) { mkdirSync(d, { mode: 0o700 }); if (user) chownSync(d, user.uid, user.gid); }
  serverCert(goodServer);
  copyFileSync(good.ca, join(srv, 'ca.pem'));
  for (const f of ['server.crt', 'server.key', 'ca.pem']) { chmodSync(join(srv, f), 0o600); if (user) chownSync(join(srv, f), user.uid, user.gid); }
  const bin = pgBinDir() ?? '/usr/lib/postgresql/15/bin';
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(join(bin, cmd), args, { ...as, encoding: 'utf8', cwd: '/' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stdout}${r.stderr}`);
  };
  run('initdb', ['-D', data, '-U', 'postgres', '--auth-local=trust', '-N', '-E', 'UTF8', '--locale=C']);
  // TCP is TLS only (no hostnossl line); aam_mtls must also present a certificate the CA signed, for its own name.
  writeFileSync(join(data, 'pg_hba.conf'), [
    'local all all trust',
    'hostssl all aam_mtls 127.0.0.0/8 scram-sha-256 clientcert=verify-full',
    'hostssl all all 127.0.0.0/8 scram-sha-256',
  ].join('\n') + '\n');
  port = await freePort();
  const opts = `-k ${sock} -h 127.0.0.1,127.0.0.2 -p ${port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c ssl=on ` +
    `-c ssl_cert_file=${srv}/server.crt -c ssl_key_file=${srv}/server.key -c ssl_ca_file=${srv}/ca.pem`;
  run('pg_ctl', ['-D', data, '-l', join(data, 'server.log'), '-w', '-t', '30', '-o', opts, 'start']);
  let stopped = false;
  stop = () => {
    if (stopped) return;
    stopped = true;
    spawnSync(join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop'], { ...as, stdio: 'ignore', cwd: '/' });
  };
  process.once('exit', stop); // also when a test is cut short
  admin = postgres({ host: sock, port, user: 'postgres', database: 'postgres', max: 1, onnotice: () => {} });
  await admin.unsafe(`CREATE ROLE aam LOGIN PASSWORD '${PASSWORD}'; CREATE ROLE aam_mtls LOGIN PASSWORD '${PASSWORD}'`);
  await admin.unsafe(`CREATE DATABASE ${DB} OWNER aam`);
  await admin.unsafe(`CREATE DATABASE ${CLI_DB} OWNER aam`);
});

after(async () => {
  await admin?.end({ timeout: 1 });
  stop();
});

const url = (q = 'sslmode=verify-full', host = '127.0.0.1', user = 'aam', db = DB) => `postgres://${user}:${PASSWORD}@${host}:${port}/${db}${q ? `?${q}` : ''}`;

/** One connection as aam makes it from these settings: 'tls' (verified as asked), or why it was refused. */
async function attempt(databaseUrl: string, files: Record<string, string> = {}): Promise<string> {
  const sql = connectPostgres(databaseUrl, 1, { tls: databaseTls(files, databaseUrl) });
  try {
    const [r] = await sql<Array<{ ssl: boolean; dn: string | null }>>`SELECT ssl, client_dn AS dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()`;
    return r.ssl ? (r.dn ? `tls as ${r.dn}` : 'tls') : 'plain';
  } catch (e) { return (e as Error).message; } finally { await sql.end({ timeout: 1 }); }
}

test('sslmode: with AAM_DATABASE_CA_FILE the server is verified (chain and name) unless sslmode=verify-ca; without it, as postgres.js reads the URL', async () => {
  const ca = { AAM_DATABASE_CA_FILE: good.ca };
  const wrongName = /Hostname\/IP does not match|altnames/;
  const [full, noMode, otherName, requireOther, verifyCaOther, rogueCa, requireBare, plain, verifyFullBare] = await Promise.all([
    attempt(url(), ca),
    attempt(url(''), ca), // a CA file alone: verify-full
    attempt(url('', '127.0.0.2'), ca), // the certificate does not name 127.0.0.2
    attempt(url('sslmode=require', '127.0.0.2'), ca), // require with a CA verifies the name too (libpq would not)
    attempt(url('sslmode=verify-ca', '127.0.0.2'), ca), // verify-ca: the chain only
    attempt(url(), { AAM_DATABASE_CA_FILE: rogue.ca }),
    attempt(url('sslmode=require')), // no CA file: encrypted, the server unchecked (postgres.js and libpq)
    attempt(url('')), // no TLS at all: this server takes none
    attempt(url()), // verify-full without a CA file: Node's bundled CAs, which never signed this server
  ]);
  assert.equal(full, 'tls');
  assert.equal(noMode, 'tls');
  assert.match(otherName, wrongName);
  assert.match(requireOther, wrongName);
  assert.equal(verifyCaOther, 'tls');
  assert.match(rogueCa, /certificate/i);
  assert.equal(requireBare, 'tls');
  assert.match(plain, /no encryption|pg_hba/);
  assert.match(verifyFullBare, /certificate/i);
});

test('client certificates: the role that requires one is accepted with a certificate the server\'s CA signed, refused without one or with another CA\'s', async () => {
  const mtls = url('sslmode=verify-full', '127.0.0.1', 'aam_mtls');
  const [right, none, other] = await Promise.all([
    attempt(mtls, { AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_CERT_FILE: goodClient.cert, AAM_DATABASE_KEY_FILE: goodClient.key }),
    attempt(mtls, { AAM_DATABASE_CA_FILE: good.ca }),
    attempt(mtls, { AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_CERT_FILE: rogueClient.cert, AAM_DATABASE_KEY_FILE: rogueClient.key }),
  ]);
  assert.equal(right, 'tls as /CN=aam_mtls');
  assert.match(none, /requires a valid client certificate/);
  assert.match(other, /unknown ca|certificate verify failed|alert/i);
  // A client certificate alone (no CA file) still verifies the server, against Node's bundled CAs.
  assert.match(await attempt(mtls, { AAM_DATABASE_CERT_FILE: goodClient.cert, AAM_DATABASE_KEY_FILE: goodClient.key }), /certificate/i);
});

test('a replica serves over TLS with AAM_DATABASE_CA_FILE; once the server presents another CA\'s certificate: 503 (evidence unavailable), /readyz down postgres, nothing written; back when it is fixed', async () => {
  const d = tempDir('aam-pg-tls-gw-');
  writeFileSync(join(d, 'aam.yaml'), CONFIG);
  const redis = fleetUrls().redisUrl;
  const env = { ...process.env, AAM_DATABASE_URL: url(), AAM_REDIS_URL: redis, AAM_DATABASE_CA_FILE: good.ca, AAM_MASTER_KEY: randomBytes(32).toString('hex'), AAM_FLEET_POLL_MS: '200', AAM_LOG_LEVEL: 'error' };
  // Given a CA that did not sign the server's certificate, a replica does not start.
  await assert.rejects(startGateway({ configPath: join(d, 'aam.yaml'), dataDir: join(d, 'refused'), port: 0, host: '127.0.0.1', env: { ...env, AAM_DATABASE_CA_FILE: rogue.ca } }),
    /cannot use the fleet database \(AAM_DATABASE_URL\):.*certificate/i);
  const gw = await startGateway({ configPath: join(d, 'aam.yaml'), dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env });
  const base = `http://127.0.0.1:${gw.port}`;
  const db = postgres({ host: join(dir, 'sock'), port, user: 'postgres', database: DB, max: 1, onnotice: () => {} });
  try {
    const key = (await gw.rt.keyBook.create('tester')).secret;
    assert.equal((await chat(base, key, 'one', 'over TLS')).status, 200);
    const conns = await admin<Array<{ app: string; ssl: boolean }>>`SELECT a.application_name AS app, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = ${DB}`;
    assert.ok(conns.some((c) => c.app === 'aam') && conns.some((c) => c.app === 'aam-evidence'), JSON.stringify(conns));
    assert.ok(conns.every((c) => c.ssl), `every connection of the replica is TLS: ${JSON.stringify(conns)}`);

    // The server now presents a certificate another CA signed; the replica's connections are cut.
    serverCert(rogueServer);
    await admin`SELECT pg_reload_conf()`;
    await until(async () => /certificate/i.test(await attempt(url(), { AAM_DATABASE_CA_FILE: good.ca })), 10_000, 'the server to present the rogue certificate');
    const written = async () => Number((await db<Array<{ n: string }>>`SELECT count(*) AS n FROM audit_trail`)[0].n);
    await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${DB} AND application_name LIKE 'aam%'`;
    const before = await written();
    const refused = await chat(base, key, 'one', 'to a server nobody verified');
    assert.equal(refused.status, 503, refused.text);
    // The evidence cannot be committed, so the request is not acknowledged (EvidenceUnavailable, as with PostgreSQL down).
    const error = (refused.json as { error?: { code?: string; message?: string } }).error;
    assert.equal(error?.code, 'store_unavailable');
    assert.match(error?.message ?? '', /PostgreSQL/);
    await until(async () => {
      const ready = await fetch(`${base}/readyz`);
      return ready.status === 503 && (((await ready.json()) as { down?: string[] }).down ?? []).includes('postgres');
    }, 10_000, '/readyz to name postgres');
    assert.equal((await chat(base, key, 'one', 'still refused')).status, 503);
    assert.equal(await written(), before, 'nothing written while the server is not the one the CA vouches for');
    const replicaConns = await admin<Array<{ n: string }>>`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ${DB} AND application_name LIKE 'aam%'`;
    assert.equal(Number(replicaConns[0].n), 0, 'no connection of the replica got past the handshake');

    serverCert(goodServer);
    await admin`SELECT pg_reload_conf()`;
    await until(async () => (await chat(base, key, 'one', 'verified again')).status === 200, 15_000, 'served again once the server is the right one');
  } finally {
    serverCert(goodServer);
    await admin`SELECT pg_reload_conf()`;
    await db.end({ timeout: 1 });
    await gw.close();
  }
});

test('every aam command takes the same settings: migrate, keys create, audit verify, fleet status over TLS; a CA that did not sign the server refuses', async () => {
  const d = tempDir('aam-pg-tls-cli-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, CONFIG);
  const env = { ...process.env, AAM_DATABASE_URL: url('sslmode=verify-full', '127.0.0.1', 'aam', CLI_DB), AAM_REDIS_URL: fleetUrls().redisUrl, AAM_DATABASE_CA_FILE: good.ca, AAM_MASTER_KEY: randomBytes(32).toString('hex') };
  const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { env: { ...env, ...extra } });
  const g = ['--config', config, '--data', join(d, 'data')];
  // Two rounds of commands side by side (each is a process of its own): a person runs them one by one.
  const [migrated, refused] = await Promise.all([cli(['migrate']), cli(['audit', 'verify', ...g], { AAM_DATABASE_CA_FILE: rogue.ca })]);
  assert.equal(migrated.code, 0, migrated.stdout + migrated.stderr);
  assert.match(migrated.stdout, /migrated the fleet database/);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stdout + refused.stderr, /certificate/i);
  const [created, verified, status, rogueStatus] = await Promise.all([cli(['keys', 'create', '--agent', 'tester', ...g]), cli(['audit', 'verify', ...g]),
    cli(['fleet', 'status', '--json']), cli(['fleet', 'status', '--json'], { AAM_DATABASE_CA_FILE: rogue.ca })]);
  const pg = (r: { stdout: string }) => (JSON.parse(r.stdout) as { stores: { postgres: { ok: boolean; error?: string } } }).stores.postgres;
  assert.equal(pg(status).ok, true, status.stdout + status.stderr);
  assert.equal(pg(rogueStatus).ok, false, rogueStatus.stdout);
  assert.match(pg(rogueStatus).error ?? '', /certificate/i);
  assert.notEqual(rogueStatus.code, 0, 'a store that cannot be reached is not a healthy fleet');
  assert.equal(created.code, 0, created.stdout + created.stderr);
  assert.match(created.stdout, /aam_/);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /^OK: fleet trail/m);
});

test('AAM_DATABASE_*_FILE: unreadable, half-given, the wrong kind or contradicting sslmode stops the start with the variable named', () => {
  const base = { AAM_DATABASE_URL: 'postgres://a@h/db', AAM_REDIS_URL: 'redis://h:6379' };
  const env = (extra: Record<string, string>) => () => fleetEnv({ ...base, ...extra });
  assert.throws(env({ AAM_DATABASE_CA_FILE: join(dir, 'missing.pem') }), /cannot read AAM_DATABASE_CA_FILE/);
  assert.throws(env({ AAM_DATABASE_CA_FILE: good.caKey }), /AAM_DATABASE_CA_FILE .* holds no PEM certificate/);
  assert.throws(env({ AAM_DATABASE_CERT_FILE: goodClient.cert }), /AAM_DATABASE_CERT_FILE is set without AAM_DATABASE_KEY_FILE/);
  assert.throws(env({ AAM_DATABASE_KEY_FILE: goodClient.key }), /AAM_DATABASE_KEY_FILE is set without AAM_DATABASE_CERT_FILE/);
  assert.throws(env({ AAM_DATABASE_CERT_FILE: goodClient.cert, AAM_DATABASE_KEY_FILE: goodClient.cert }), /AAM_DATABASE_KEY_FILE .* holds no PEM private key/);
  assert.throws(env({ AAM_DATABASE_CERT_FILE: goodClient.cert, AAM_DATABASE_KEY_FILE: rogueClient.key }), /AAM_DATABASE_KEY_FILE is not the private key of the certificate in AAM_DATABASE_CERT_FILE/);
  assert.throws(env({ AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_URL: 'postgres://a@h/db?sslmode=disable' }), /sslmode=disable, which lets the connection go unencrypted/);
  assert.throws(env({ AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_URL: 'postgres://a@h/db?sslmode=prefer' }), /sslmode=prefer/);
  assert.throws(env({ AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_URL: 'postgres://a@h/db?sslmode=strict' }), /sslmode=strict: use verify-full/);
  assert.throws(env({ AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_URL: `postgres://a@h/db?sslrootcert=${good.ca}` }), /names sslrootcert and AAM_DATABASE_CA_FILE is set/);
  const ok = fleetEnv({ ...base, AAM_DATABASE_CA_FILE: good.ca, AAM_DATABASE_CERT_FILE: goodClient.cert, AAM_DATABASE_KEY_FILE: goodClient.key });
  assert.deepEqual(ok?.databaseTls, { ca: readFileSync(good.ca, 'utf8'), cert: readFileSync(goodClient.cert, 'utf8'), key: readFileSync(goodClient.key, 'utf8') });
  assert.equal(fleetEnv(base)?.databaseTls, undefined);
});
