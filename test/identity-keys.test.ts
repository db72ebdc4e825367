// Virtual-key lifecycle, end to end: rotation grace periods, `aam keys create --expires`, JWT-SVIDs
// minted from a key dying with the secret they came from, hash-only storage (no plaintext in any
// file or SQLite row), a presented-key cache that wrong keys cannot fill, and a token endpoint that
// authenticates before it reads (and reads at most 8 KB).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { decodeJwt } from 'jose';
import { doc, yaml } from './helpers/gateway.ts';
import { runCli } from './helpers/e2e.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { KeyStore } from '../src/identity/keys.ts';

const ADMIN = 'c0ffee5e-9d1b-4f7a-8e2c-5b3a1d7e9f20-adm';
let dir: string;
let data: string;
let configPath: string;
let g: Running;
let url: string;

const env = () => ({ ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: ADMIN });
const lastLine = (s: string) => s.trim().split('\n').at(-1)!;

async function models(bearer: string): Promise<{ status: number; text: string }> {
  const r = await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${bearer}` } });
  return { status: r.status, text: await r.text() };
}

async function exchange(key: string, body: unknown = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() as Record<string, unknown> };
}

const admin = (path: string, body: unknown) => fetch(`${url}/admin/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  .then(async (r) => ({ status: r.status, json: await r.json() as Record<string, unknown> }));

/** Every key secret this file ever created (the hash-only test looks for all of them). */
const secrets: string[] = [];
const keep = (s: string) => { secrets.push(s); return s; };

let expiredKey: string;
let expiredAt: number;
let futureKey: string;
let rotatedOld: string;
let rotatedNew: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aam-keys-'));
  data = join(dir, 'data');
  configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Agent', 'a', { workload: 'spiffe://prod/agent/a' }),
    doc('AgentPolicy', 'a', { identity: { workload: 'spiffe://prod/agent/a' }, models: { allow: ['one'] } }),
  ));
  // The CLI, as an operator runs it: one key expiring in a moment (one already expired is refused), one
  // expiring next year, one rotated with no grace.
  const cli = (...args: string[]) => runCli([...args, '--config', configPath, '--data', data], { env: env() });
  expiredAt = Date.now() + 8_000; // room for the CLI to start under load
  const past = await cli('keys', 'create', '--agent', 'a', '--expires', new Date(expiredAt).toISOString());
  assert.equal(past.code, 0, past.stderr);
  expiredKey = keep(lastLine(past.stdout));
  const future = await cli('keys', 'create', '--agent', 'a', '--expires', new Date(Date.now() + 365 * 86_400_000).toISOString());
  futureKey = keep(lastLine(future.stdout));
  const r = await cli('keys', 'create', '--agent', 'a', '--name', 'to-rotate');
  rotatedOld = keep(lastLine(r.stdout));
  const id = /created key (key_[0-9a-f]+)/.exec(r.stderr)![1];
  const rot = await cli('keys', 'rotate', id, '--grace', '0');
  assert.equal(rot.code, 0, rot.stderr);
  rotatedNew = keep(lastLine(rot.stdout));
  g = await startGateway({ configPath, dataDir: data, port: 0, host: '127.0.0.1', env: env() });
  url = `http://127.0.0.1:${g.port}`;
});

after(async () => {
  await g?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('aam keys create --expires: an expired key is refused (401 naming the expiry), an unexpired one works', async () => {
  await new Promise((r) => setTimeout(r, Math.max(0, expiredAt + 50 - Date.now())));
  const old = await models(expiredKey);
  assert.equal(old.status, 401);
  assert.match(old.text, /API key key_[0-9a-f]+ expired at /);
  assert.equal((await models(futureKey)).status, 200);
});

test('aam keys rotate --grace 0: the old secret is refused at once, the new one works', async () => {
  const old = await models(rotatedOld);
  assert.equal(old.status, 401);
  assert.match(old.text, /rotated and its grace period ended; use the new secret/);
  assert.equal((await models(rotatedNew)).status, 200);
});

test('rotation grace: the old secret works until the grace period ends, then it is refused', () => {
  const db = openDatabase(join(dir, 'unit-grace'));
  try {
    const keys = new KeyStore(db);
    const { key, secret } = keys.create('a');
    const t0 = Date.now();
    const { secret: fresh } = keys.rotate(key.id, 60);
    assert.equal(keys.authenticate(secret, t0 + 1_000).ok, true, 'old secret inside the grace period');
    assert.equal(keys.authenticate(secret, t0 + 59_000).ok, true);
    const late = keys.authenticate(secret, t0 + 61_000);
    assert.equal(late.ok, false, 'old secret after the grace period');
    assert.match(!late.ok ? late.reason : '', /grace period ended/);
    assert.equal(keys.authenticate(fresh, t0 + 10 * 86_400_000).ok, true, 'the new secret has no end');
    // A second rotation never extends the first secret's grace.
    keys.rotate(key.id, 3600);
    assert.equal(keys.authenticate(secret, t0 + 61_000).ok, false);
    // Expiry of the whole key (what --expires sets) ends every secret of it.
    const exp = keys.create('a', { expiresAt: new Date(t0 + 30_000).toISOString() });
    assert.equal(keys.authenticate(exp.secret, t0).ok, true);
    const gone = keys.authenticate(exp.secret, t0 + 31_000);
    assert.match(!gone.ok ? gone.reason : '', /expired at/);
  } finally { db.close(); }
});

test('a JWT-SVID minted from a key dies with the secret it came from: rotation past grace, revocation, expiry', async () => {
  // Rotation with grace 0 (the finding): the token minted from the old secret stops at once.
  const made = await admin('/keys', { agent: 'a', name: 'jwt-rot' });
  assert.equal(made.status, 201);
  const key = keep(String(made.json.key));
  const t = await exchange(key);
  assert.equal(t.status, 200, JSON.stringify(t.json));
  const jwt = String(t.json.access_token);
  assert.equal((await models(jwt)).status, 200);
  const claims = decodeJwt(jwt);
  assert.equal(claims.aam_key, made.json.id);
  assert.equal(typeof claims.aam_key_gen, 'string', 'the token names the secret (generation) it was minted from');
  const rotated = await admin(`/keys/${String(made.json.id)}/rotate`, { grace_seconds: 0 });
  keep(String(rotated.json.key));
  const dead = await models(jwt);
  assert.equal(dead.status, 401, 'a token minted from a rotated-out secret is refused');
  assert.match(dead.text, /rotated and its grace period ended/);
  // A token from the new secret works, and dies when the key is revoked.
  const t2 = await exchange(String(rotated.json.key));
  const jwt2 = String(t2.json.access_token);
  assert.equal((await models(jwt2)).status, 200);
  assert.notEqual(decodeJwt(jwt2).aam_key_gen, claims.aam_key_gen);
  await admin(`/keys/${String(made.json.id)}/revoke`, {});
  assert.equal((await models(jwt2)).status, 401);
  // Rotation with a grace period keeps the old token alive for that period, and caps its lifetime there.
  const graced = await admin('/keys', { agent: 'a' });
  const gk = keep(String(graced.json.key));
  const gjwt = String((await exchange(gk, { ttl: '1h' })).json.access_token);
  keep(String((await admin(`/keys/${String(graced.json.id)}/rotate`, { grace_seconds: 120 })).json.key));
  assert.equal((await models(gjwt)).status, 200, 'old generation still inside its grace period');
  const during = String((await exchange(gk, { ttl: '1h' })).json.access_token);
  const left = (decodeJwt(during).exp as number) - Date.now() / 1000;
  assert.ok(left <= 121 && left > 60, `a token minted during the grace period ends with it (${left.toFixed(0)} s left)`);
  // A key with an expiry: the token never outlives it.
  const soon = g.rt.keys.create('a', { expiresAt: new Date(Date.now() + 90_000).toISOString() });
  keep(soon.secret);
  const sjwt = String((await exchange(soon.secret, { ttl: '1h' })).json.access_token);
  assert.ok((decodeJwt(sjwt).exp as number) <= Math.ceil(Date.parse(soon.key.expiresAt!) / 1000));
});

test('a JWT-SVID minted from a key counts as that key (per-key usage and evidence)', async () => {
  const made = await admin('/keys', { agent: 'a' });
  const jwt = String((await exchange(keep(String(made.json.key)))).json.access_token);
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${jwt}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'hi' }] }) });
  await r.text();
  assert.equal(r.status, 200);
  g.rt.usage.flush();
  const rows = g.rt.db.prepare('SELECT count(*) AS n FROM usage_rollup WHERE key_id = ?').get(String(made.json.id)) as { n: number } | undefined;
  assert.ok(rows && rows.n >= 1, 'usage is booked on the key the token was minted from');
});

test('the token endpoint authenticates from the headers before reading the body', async () => {
  // A wrong key with a 10 MB body of which only the first bytes are sent: the 401 must come anyway.
  const reply = await new Promise<string>((resolve, reject) => {
    const s = connect(g.port, '127.0.0.1', () => {
      s.write(`POST /identity/v1/token HTTP/1.1\r\nhost: x\r\nauthorization: Bearer aam_${'x'.repeat(32)}\r\ncontent-type: application/json\r\ncontent-length: ${10 * 1024 * 1024}\r\n\r\n{"ttl":`);
    });
    let text = '';
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no answer before the body was sent; got ${JSON.stringify(text)}`)); }, 10_000);
    s.on('data', (c) => { text += c.toString(); if (text.includes('\r\n\r\n')) { clearTimeout(timer); s.destroy(); resolve(text); } });
    s.on('error', reject);
  });
  assert.match(reply, /^HTTP\/1\.1 401/);
});

test('the token endpoint reads at most 8 KB (413), with a key, with a join token, and chunked', async () => {
  const big = { ttl: '15m', pad: 'x'.repeat(9 * 1024) };
  const withKey = await exchange(futureKey, big);
  assert.equal(withKey.status, 413);
  assert.match(JSON.stringify(withKey.json), /8192 byte limit of this endpoint/);
  const join = await fetch(`${url}/identity/v1/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ join_token: 'aamjoin_x', ...big }) });
  assert.equal(join.status, 413);
  // Without a content-length (chunked), the cap holds as the bytes arrive.
  const stream = new ReadableStream({ start(c) { for (let i = 0; i < 10; i++) c.enqueue(new TextEncoder().encode('x'.repeat(1024))); c.close(); } });
  const chunked = await fetch(`${url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${futureKey}`, 'content-type': 'application/json' }, body: stream, duplex: 'half' } as RequestInit);
  assert.equal(chunked.status, 413);
  // A small body still works.
  assert.equal((await exchange(futureKey, { ttl: '5m' })).status, 200);
});

test('wrong keys are never cached: 100k random ones leave only the real key in the presented-key cache', (t) => {
  const db = openDatabase(join(dir, 'unit-cache'));
  try {
    const keys = new KeyStore(db);
    const { secret } = keys.create('a');
    assert.equal(keys.authenticate(secret).ok, true);
    assert.equal(keys.cachedSecrets, 1);
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 100_003; i++) {
      assert.equal(keys.authenticate('aam_' + randomBytes(24).toString('base64url')).ok, false);
      if (i === 5_000) assert.equal(keys.cachedSecrets, 1, 'after 5,000 wrong keys');
    }
    assert.equal(keys.cachedSecrets, 1, 'after 100,003 wrong keys');
    assert.equal(keys.authenticate(secret).ok, true, 'the real key still authenticates');
    assert.equal(keys.authenticate('aam_' + 'y'.repeat(100_000)).ok, false, 'an absurdly long key is refused');
    const grown = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    t.diagnostic(`heap change after 100k wrong keys: ${grown.toFixed(1)} MB`);
  } finally { db.close(); }
});

test('keys are stored hash-only: no secret appears in any file of the data dir or any SQLite row', async () => {
  assert.ok(secrets.length >= 8, `secrets made by this file: ${secrets.length}`);
  await g.rt.auditLog?.flush();
  g.rt.db.exec('PRAGMA wal_checkpoint(PASSIVE)');
  const forms = (s: string) => [s, s.slice(4), Buffer.from(s).toString('base64'), Buffer.from(s).toString('hex')];
  const files: string[] = [];
  const walk = (d: string) => { for (const e of readdirSync(d)) { const p = join(d, e); if (statSync(p).isDirectory()) walk(p); else files.push(p); } };
  walk(data);
  assert.ok(files.some((p) => p.endsWith('.db')), 'the SQLite files are searched');
  for (const p of files) {
    const bytes = readFileSync(p);
    for (const s of secrets) for (const form of forms(s)) assert.equal(bytes.includes(form), false, `${p} contains a key secret`);
  }
  // Every text value of every row of every table, decoded (no byte-level encoding hides it).
  const db = new DatabaseSync(join(data, 'aam.db'), { readOnly: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map((t) => t.name);
    assert.ok(tables.includes('key_secrets'));
    for (const t of tables) {
      for (const row of db.prepare(`SELECT * FROM "${t}"`).all()) {
        const text = JSON.stringify(row, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
        for (const s of secrets) assert.equal(text.includes(s.slice(4)), false, `table ${t} holds a key secret`);
      }
    }
  } finally { db.close(); }
});
