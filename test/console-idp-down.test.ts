// The identity provider does not answer (a host that accepts connections and says nothing, as a
// hung IdP or a black-holed route does). People already signed in keep their console; sign-in says
// single sign-on is unavailable within seconds and offers break-glass; Bearer ID tokens get 503
// (retry), not 401 (a bad token); and after one timed-out try aam does not make every request wait again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { createSqliteSessionStore } from '../src/console/sessions.ts';
import { consoleConfig, ADMIN_TOKEN } from './helpers/console-setup.ts';
import { freePort } from './helpers/e2e.ts';

let hole: Server;
const sockets: Socket[] = [];
let g: Running;
let url: string;
let dir: string;

before(async () => {
  hole = createServer((s) => { sockets.push(s); }); // accepts, never answers
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', () => r()));
  const issuer = `http://127.0.0.1:${(hole.address() as AddressInfo).port}`;
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  dir = mkdtempSync(join(tmpdir(), 'aam-idp-down-'));
  writeFileSync(join(dir, 'aam.yaml'), consoleConfig('http://127.0.0.1:9'));
  g = await startGateway({
    configPath: join(dir, 'aam.yaml'), dataDir: join(dir, 'data'), port, host: '127.0.0.1', parseConfig: parseConfigTexts,
    env: { ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: ADMIN_TOKEN, TEST_CONSOLE_SF_TOKEN: 'x', AAM_PUBLIC_URL: url, AAM_OIDC_ISSUER: issuer, AAM_OIDC_CLIENT_ID: 'aam', AAM_OIDC_CLIENT_SECRET: 'secret-0123456789abcdef' },
  });
});
after(async () => {
  await g?.close();
  for (const s of sockets) s.destroy();
  hole?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function timed(path: string, init: RequestInit = {}): Promise<{ status: number; ms: number; body: string; res: Response }> {
  const t = Date.now();
  const res = await fetch(`${url}${path}`, { redirect: 'manual', signal: AbortSignal.timeout(40_000), ...init });
  const body = await res.text();
  return { status: res.status, ms: Date.now() - t, body, res };
}

test('IdP not answering: a signed-in person\'s console opens at once; sign-in says SSO is unavailable within seconds, offers break-glass, and then answers at once; a Bearer ID token is 503', async () => {
  // A person who signed in before the IdP went away (their session is in the gateway's store).
  const { id } = await createSqliteSessionStore(g.rt.db).create({ kind: 'oidc', sub: 'victor', email: 'victor@example.com', groups: ['everyone'], expiresAt: Date.now() + 3600_000 });
  const cookie = `aam_session=${id}`;

  const shell = await timed('/console', { headers: { cookie } });
  assert.equal(shell.status, 200);
  assert.match(shell.body, /victor@example\.com \(viewer\)/);
  assert.ok(shell.ms < 2000, `the console shell waited ${shell.ms} ms for the IdP`);
  // Its CSP still lets sign-out go on to the IdP (the issuer's origin until discovery answers).
  assert.match(shell.res.headers.get('content-security-policy')!, /form-action 'self' http:\/\/127\.0\.0\.1:\d+/);

  const first = await timed('/console/login');
  assert.equal(first.status, 503);
  assert.ok(first.ms < 9000, `sign-in waited ${first.ms} ms for the IdP`);
  assert.match(first.body, /Single sign-on is unavailable right now/);
  assert.match(first.body, /break-glass/);
  assert.match(first.body, /name="token"/, 'the break-glass form is on the page');
  assert.equal(first.res.headers.get('retry-after'), '15');

  const again = await timed('/console/login');
  assert.equal(again.status, 503);
  assert.ok(again.ms < 1000, `a second sign-in waited ${again.ms} ms: the failure is remembered for a while`);

  // An ID token as Bearer cannot be checked now: retry later (503), not "your token is bad" (401).
  const jwt = `${Buffer.from('{"alg":"RS256","kid":"k"}').toString('base64url')}.${Buffer.from('{"sub":"victor","aud":"aam"}').toString('base64url')}.c2ln`;
  const bearer = await timed('/admin/v1/me', { headers: { authorization: `Bearer ${jwt}` } });
  assert.equal(bearer.status, 503, bearer.body);
  assert.ok(bearer.ms < 1000);

  // Sign-out still ends the session here (locally), without waiting for the IdP.
  const me = JSON.parse((await timed('/admin/v1/me', { headers: { cookie } })).body) as { csrf_token: string };
  const out = await timed('/console/logout', { method: 'POST', headers: { cookie, origin: url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${me.csrf_token}` });
  assert.equal(out.status, 303);
  assert.equal(out.res.headers.get('location'), '/console');
  assert.ok(out.ms < 1000, `sign-out waited ${out.ms} ms`);
  assert.equal((await timed('/admin/v1/me', { headers: { cookie } })).status, 401);
});
