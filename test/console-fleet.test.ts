// Console sessions in fleet mode: two replicas on one PostgreSQL + Redis behind one public URL. A
// sign-in started on one replica finishes on the other, the session works on either, sign-out on
// one ends it on both, no session row lands in a replica's data dir, and two replicas renewing one
// session at once (3 s ID tokens, refresh tokens rotated) renew it once. Run through `npm test`
// (it starts PostgreSQL and Redis): npm test -- test/console-fleet.test.ts
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { fleetStore, keyOnEveryReplica, type FleetTestStore } from './helpers/fleet.ts';
import { freePort, localServer, type LocalServer } from './helpers/e2e.ts';
import { startTestIdp, loginWithoutBrowser, CookieJar, type TestIdp } from './helpers/oidc-idp.ts';
import { consoleConfig, USERS, ADMIN_TOKEN } from './helpers/console-setup.ts';

let store: FleetTestStore;
let idp: TestIdp;
let upstream: LocalServer;
let dir: string;
const replicas: Running[] = [];
const urls: string[] = [];

before(async () => {
  store = await fleetStore();
  upstream = await localServer((_req, res) => { res.writeHead(200); res.end('{}'); });
  const ports = [await freePort(), await freePort()];
  urls.push(...ports.map((p) => `http://127.0.0.1:${p}`));
  // The public URL (a load balancer in production) is replica 0; both replicas serve it.
  idp = await startTestIdp({ redirectUri: `${urls[0]}/console/callback`, users: USERS, idTokenTtlS: 3, refreshTokens: true });
  dir = mkdtempSync(join(tmpdir(), 'aam-console-fleet-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, consoleConfig(upstream.url));
  for (const [i, port] of ports.entries()) {
    replicas.push(await startGateway({
      configPath, dataDir: join(dir, `data-${i}`), port, host: '127.0.0.1',
      env: {
        ...process.env, ...store.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: ADMIN_TOKEN, TEST_CONSOLE_SF_TOKEN: 'x'.repeat(24), AAM_PUBLIC_URL: urls[0],
        AAM_OIDC_ISSUER: idp.issuer, AAM_OIDC_CLIENT_ID: idp.clientId, AAM_OIDC_CLIENT_SECRET: idp.clientSecret,
      },
    }));
  }
});
/** Teardown never hangs the file: each step gets 20 s, then the next one runs. */
const bounded = (p: Promise<unknown> | undefined) => Promise.race([p, new Promise((r) => setTimeout(r, 20_000).unref())]);

after(async () => {
  for (const r of replicas) await bounded(r.close());
  await bounded(idp?.close());
  await bounded(upstream?.close());
  await bounded(store?.drop());
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const me = (url: string, jar: CookieJar) => fetch(`${url}/admin/v1/me`, { headers: { cookie: jar.header() } });

test('fleet: sign-in started on one replica finishes on another; the session works on both; sign-out on one ends it everywhere', async () => {
  // /console/login answered by replica 1; the IdP sends the browser back to the public URL (replica 0).
  const { callback, jar, body } = await loginWithoutBrowser(urls[1], 'olga', {
    callbackUrl: (u) => new URL(`${urls[0]}${u.pathname}${u.search}`),
  });
  assert.equal(callback.status, 303, body);
  for (const url of urls) {
    const r = await me(url, jar);
    assert.equal(r.status, 200, url);
    assert.equal(((await r.json()) as { role: string }).role, 'operator');
  }
  const csrf = ((await (await me(urls[1], jar)).json()) as { csrf_token: string }).csrf_token;
  const made = await fetch(`${urls[1]}/admin/v1/keys`, { method: 'POST', headers: { cookie: jar.header(), origin: urls[0], 'x-csrf-token': csrf, 'content-type': 'application/json' }, body: '{"agent":"finance-analyst"}' });
  assert.equal(made.status, 201, 'a change through the other replica, same CSRF token');
  for (const r of replicas) {
    const rows = r.rt.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'console_session'").get() as { n: number };
    assert.equal(rows.n, 0, 'fleet sessions live in Redis, not in a replica\'s data dir');
  }
  const out = await fetch(`${urls[0]}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: urls[0], 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${csrf}` });
  assert.equal(out.status, 303);
  for (const url of urls) assert.equal((await me(url, jar)).status, 401, `signed out on ${url}`);
});

test('fleet: replicas renewing one session at once renew it once at the IdP (a reused rotated refresh token would revoke the grant); it goes on on both', async () => {
  const { callback, jar, body } = await loginWithoutBrowser(urls[1], 'victor', { callbackUrl: (u) => new URL(`${urls[0]}${u.pathname}${u.search}`) });
  assert.equal(callback.status, 303, body);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(4200); // past the 3 s ID token
  const before = idp.refreshes.length;
  const all = await Promise.all([...urls, ...urls, ...urls].map((url) => me(url, jar)));
  assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
  assert.deepEqual(idp.refreshes.slice(before).map((x) => x.status), [200], 'one refresh-token grant for both replicas');
  await sleep(4200);
  for (const url of urls) assert.equal((await me(url, jar)).status, 200, `renewed again, then used on ${url}`);
  assert.ok(idp.refreshes.slice(before).every((x) => x.status === 200));
});

test('fleet: identity methods seen on one replica show on every replica (kept in the fleet store, not per replica)', async () => {
  const key = await keyOnEveryReplica(urls, 'finance-analyst', ADMIN_TOKEN);
  // A JWT-SVID minted and used on replica 1 only.
  const tr = await fetch(`${urls[1]}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"ttl":"5m"}' });
  assert.equal(tr.status, 200);
  const svid = ((await tr.json()) as { access_token: string }).access_token;
  const chat = await fetch(`${urls[1]}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${svid}`, 'content-type': 'application/json' }, body: '{"model":"reasoning-high","messages":[{"role":"user","content":"hi"}]}' });
  assert.equal(chat.status, 200, await chat.text());
  const methodsOn = async (url: string) => {
    const r = await fetch(`${url}/admin/v1/agents`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    return ((await r.json()) as { data: Array<{ name: string; identity_methods: Record<string, string> | null }> }).data.find((a) => a.name === 'finance-analyst')!.identity_methods;
  };
  // Replica 1 writes what it saw within a few seconds; replica 0 reads it from the store.
  const deadline = Date.now() + 15_000;
  let seen = await methodsOn(urls[0]);
  while (!seen?.jwt_svid && Date.now() < deadline) { await new Promise((r) => setTimeout(r, 200)); seen = await methodsOn(urls[0]); }
  assert.ok(seen?.jwt_svid, `replica 0 shows the JWT-SVID replica 1 saw: ${JSON.stringify(seen)}`);
  assert.ok(seen.virtual_key);
  assert.deepEqual(await methodsOn(urls[1]), seen, 'both replicas answer the same');
  for (const r of replicas) {
    const rows = r.rt.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'identity_seen'").get() as { n: number };
    assert.equal(rows.n, 0, 'fleet mode keeps it in the fleet store, not in a replica\'s data dir');
  }
});

test('fleet: the audit list pages through every replica\'s events (next_before), nothing repeated or skipped, asked on either replica', async () => {
  const key = await keyOnEveryReplica(urls, 'finance-analyst', ADMIN_TOKEN);
  for (let i = 0; i < 30; i++) {
    const r = await fetch(`${urls[i % 2]}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"model":"reasoning-high","messages":[{"role":"user","content":"hi"}]}' });
    assert.equal(r.status, 200);
    await r.text();
  }
  type Page = { data: Array<{ replica: string; seq: number; type: string }>; next_before: string | null };
  const get = async (url: string, q: string) => (await (await fetch(`${url}/admin/v1/audit?type=model_call&${q}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as Page;
  const all = await get(urls[0], 'limit=1000');
  assert.ok(all.data.length >= 30 && new Set(all.data.map((e) => e.replica)).size === 2, 'both replicas\' events');
  const seen: string[] = [];
  let before: string | null = null;
  for (let pages = 0; pages < 20; pages++) {
    const page: Page = await get(urls[pages % 2], `limit=7${before ? `&before=${before}` : ''}`);
    seen.push(...page.data.map((e) => `${e.replica}:${e.seq}`));
    before = page.next_before;
    if (!before) break;
  }
  assert.equal(before, null, 'the pages end');
  assert.deepEqual(seen, all.data.map((e) => `${e.replica}:${e.seq}`));
  const embeddedCursor = Buffer.from('[5]').toString('base64url');
  assert.equal((await fetch(`${urls[0]}/admin/v1/audit?before=${embeddedCursor}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status, 400);
});
