// AAM_ADMIN_TOKEN guards the whole admin API, so a weak one is refused at start with how to make a
// good one, before anything listens or touches the data dir.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { adminTokenWeakness, checkAdminToken } from '../src/server/admin.ts';
import { startGateway } from '../src/cli/serve.ts';
import { execFile } from 'node:child_process';
import { CLI, NODE_BIN, ROOT } from './helpers/e2e.ts';

test('weak admin tokens are named weak: short, whitespace, few distinct characters, a repeated chunk, a straight run', () => {
  const weak: Array<[string, RegExp]> = [
    ['changeme', /8 characters long; at least 32/],
    ['a'.repeat(64), /fewer than 8 distinct/],
    ['abcdefgh'.repeat(4), /one short chunk repeated/],
    ['password1234567890password1234567890', /one short chunk repeated|distinct/],
    ['0123456789:;<=>?@ABCDEFGHIJKLMNOP', /run of consecutive characters/],
    ['correct horse battery staple and more words', /whitespace/],
    ['x'.repeat(2000), /distinct|longer than 1024/],
  ];
  for (const [token, why] of weak) assert.match(adminTokenWeakness(token) ?? 'accepted', why, token.slice(0, 20));
  for (const strong of [randomBytes(32).toString('hex'), randomBytes(32).toString('base64url'), 'admin-token-for-tests-0123456789']) {
    assert.equal(adminTokenWeakness(strong), undefined, strong);
  }
  assert.doesNotThrow(() => checkAdminToken(undefined), 'unset: the admin API is simply off');
  assert.doesNotThrow(() => checkAdminToken(''));
});

test('a weak AAM_ADMIN_TOKEN refuses the start (in-process and `aam serve`), says how to make one, and never echoes it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-admintoken-'));
  try {
    const configPath = join(dir, 'aam.yaml');
    writeFileSync(configPath, 'apiVersion: access.envisionai.dev/v1\nkind: Provider\nmetadata: { name: demo }\nspec: { type: demo }\n');
    const data = join(dir, 'data');
    const token = 'hunter2hunter2';
    const started = await startGateway({ configPath, dataDir: data, port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: token } })
      .then((g) => g, (e: Error) => e);
    if (!(started instanceof Error)) { await started.close(); assert.fail('a weak admin token was accepted'); }
    assert.match(started.message, /AAM_ADMIN_TOKEN is too weak .*openssl rand -hex 32/);
    assert.ok(!started.message.includes(token));
    assert.equal(existsSync(data), false, 'nothing was written to the data dir');
    // The real command; if it wrongly started serving, it is stopped after a deadline and the test fails.
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(NODE_BIN, [CLI, 'serve', '--config', configPath, '--data', data, '--port', '0'], { cwd: ROOT, timeout: 60_000, env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: token } },
        (err, _out, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr }));
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /AAM_ADMIN_TOKEN is too weak to guard the admin API \(it is 14 characters long; at least 32 are needed\)\. Use a random token .* AAM_ADMIN_TOKEN=\$\(openssl rand -hex 32\)/);
    assert.ok(!r.stderr.includes(token));
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a refused admin Bearer says which fix applies: API off, a wrong admin token, or an agent credential', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-adminbearer-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, 'apiVersion: access.envisionai.dev/v1\nkind: Provider\nmetadata: { name: demo }\nspec: { type: demo }\n');
  const start = (token?: string) => startGateway({ configPath, dataDir: join(dir, token ? 'on' : 'off'), port: 0, host: '127.0.0.1', quiet: true, env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: token } });
  const message = async (port: number, bearer: string) => {
    const r = await fetch(`http://127.0.0.1:${port}/admin/v1/keys`, { headers: { authorization: `Bearer ${bearer}` } });
    assert.equal(r.status, 401);
    return ((await r.json()) as { error: { message: string } }).error.message;
  };
  const off = await start();
  const on = await start(randomBytes(32).toString('hex'));
  try {
    // The token exported in the client's shell but not the gateway's: before, "agent keys and agent tokens are not accepted here".
    assert.match(await message(off.port, randomBytes(32).toString('hex')), /^the admin API is disabled: start aam with AAM_ADMIN_TOKEN set/);
    assert.equal(await message(on.port, randomBytes(32).toString('hex')), 'the Bearer token is not this gateway\'s AAM_ADMIN_TOKEN: send the value the gateway was started with');
    assert.match(await message(on.port, 'aam_0123456789abcdefghijklmnopqrstuv'), /agent keys and agent tokens are not accepted here/);
    assert.match(await message(on.port, 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'), /agent keys and agent tokens are not accepted here/);
  } finally {
    await off.close();
    await on.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a malformed percent-encoding in an admin path is a 400 naming it, not a 500', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-adminpct-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, 'apiVersion: access.envisionai.dev/v1\nkind: Provider\nmetadata: { name: demo }\nspec: { type: demo }\n');
  const token = randomBytes(32).toString('hex');
  const gw = await startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', quiet: true, env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: token } });
  try {
    for (const [path, what] of [['/admin/v1/agents/ec%E0%A4%A', 'agent name'], ['/admin/v1/tools/srv%/t/diff', 'MCP server name'], ['/admin/v1/tools/srv/t%ZZ/diff', 'tool name']]) {
      const r = await fetch(`http://127.0.0.1:${gw.port}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 400, `${path}: ${JSON.stringify(body)}`);
      assert.equal(body.error.code, 'invalid_request');
      assert.match(body.error.message, new RegExp(`malformed percent-encoding in the ${what} .*encode "%" as "%25"`));
    }
  } finally {
    await gw.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a break-glass console session ends when AAM_ADMIN_TOKEN changes (rotated after a leak), not only when it is unset; the same token keeps it across a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-admintoken-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, 'apiVersion: access.envisionai.dev/v1\nkind: Provider\nmetadata: { name: demo }\nspec: { type: demo }\n');
  const [leaked, rotated] = [randomBytes(24).toString('hex'), randomBytes(24).toString('hex')];
  const start = (token: string) => startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: token } });
  try {
    let g = await start(leaked);
    let url = `http://127.0.0.1:${g.port}`;
    const login = await fetch(`${url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: url, 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${leaked}` });
    assert.equal(login.status, 303);
    const cookie = login.headers.getSetCookie()[0].split(';')[0];
    await g.close();
    g = await start(leaked);
    url = `http://127.0.0.1:${g.port}`;
    assert.equal((await fetch(`${url}/admin/v1/me`, { headers: { cookie } })).status, 200, 'same token, same data dir: the session stands');
    await g.close();
    g = await start(rotated);
    url = `http://127.0.0.1:${g.port}`;
    try {
      const me = await fetch(`${url}/admin/v1/me`, { headers: { cookie } });
      assert.equal(me.status, 401);
      assert.match(await me.text(), /opened with an AAM_ADMIN_TOKEN the gateway no longer has/);
      const page = await (await fetch(`${url}/console`, { headers: { cookie } })).text();
      assert.match(page, /Break-glass sign-in/);
      assert.match(page, /no longer has \(changed or unset\); sign in again/);
    } finally { await g.close(); }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
