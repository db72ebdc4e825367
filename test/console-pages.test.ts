// The console without a browser: RoleBinding documents and role lookup, the break-glass sign-in with
// the demo-style config (no OIDC), security headers on every page, escaping in server-rendered
// pages, and a half-configured OIDC set refusing to start.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compileRoles } from '../src/console/roles.ts';
import { humanClaims, oidcSettingsFrom } from '../src/console/oidc.ts';
import { errorPage, esc, loginPage } from '../src/console/html.ts';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';

const TOKEN = 'console-pages-admin-token-0123456789abcdef';
const binding = (name: string, spec: unknown) => doc('RoleBinding', name, spec);
const parse = (...docs: string[]) => parseConfigTexts([{ file: 'aam.yaml', text: yaml(...docs) }]);

test('RoleBinding: roles by email (any case) or group, the highest wins; unverified emails and unknown people get no role', () => {
  const set = parse(
    binding('viewers', { role: 'viewer', subjects: [{ group: 'everyone' }] }),
    binding('ops', { role: 'operator', subjects: [{ group: 'platform' }, { email: 'Olga@Example.com' }] }),
    binding('approvers', { role: 'approver', subjects: [{ email: 'olga@example.com' }] }),
  );
  const roles = compileRoles(set);
  assert.equal(roles.roleOf({ sub: 'a', email: 'olga@example.COM', groups: [] }), 'operator', 'highest of operator and approver');
  assert.equal(roles.roleOf({ sub: 'b', groups: ['everyone', 'platform'] }), 'operator');
  assert.equal(roles.roleOf({ sub: 'c', groups: ['everyone'] }), 'viewer');
  assert.equal(roles.roleOf({ sub: 'd', email: 'eve@example.com', groups: ['Everyone'] }), null, 'groups compare exactly');
  assert.equal(humanClaims({ sub: 'x', email: 'olga@example.com', email_verified: false }).email, undefined, 'an unverified email binds nothing');
  // Some IdPs send the flag as a string (Cognito's userinfo): "false" is not a yes, nor is anything but true/"true".
  for (const v of ['false', 'False', 0, null, 'no']) assert.equal(humanClaims({ sub: 'x', email: 'olga@example.com', email_verified: v }).email, undefined, `email_verified ${JSON.stringify(v)}`);
  assert.equal(humanClaims({ sub: 'x', email: 'olga@example.com', email_verified: 'true' }).email, 'olga@example.com');
  assert.equal(humanClaims({ sub: 'x', email: 'olga@example.com' }).email, 'olga@example.com', 'an IdP that does not say (Entra ID): the email stands');
  assert.deepEqual(humanClaims({ sub: 'x', groups: ['a', 7, 'b'] }).groups, ['a', 'b']);
});

test('RoleBinding: a bad role or subject is a load error naming the field', () => {
  const bad = (spec: unknown, re: RegExp) => {
    assert.throws(() => parse(binding('b', spec)), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.issues.map((i) => `${i.path}: ${i.message}`).join('\n'), re);
      return true;
    });
  };
  bad({ role: 'superuser', subjects: [{ group: 'x' }] }, /spec\.role/);
  bad({ role: 'viewer', subjects: [] }, /spec\.subjects/);
  bad({ role: 'viewer', subjects: [{ user: 'x' }] }, /spec\.subjects\[0\].*email.*group/s);
  bad({ role: 'viewer', subjects: [{ email: 'not-an-address' }] }, /email address/);
});

test('OIDC settings: all four variables or none; a half-configured set names what is missing', () => {
  assert.equal(oidcSettingsFrom({}, null), null);
  assert.throws(() => oidcSettingsFrom({ AAM_OIDC_ISSUER: 'https://idp.example.com' }, null), /AAM_OIDC_CLIENT_ID, AAM_OIDC_CLIENT_SECRET, AAM_PUBLIC_URL/);
  const s = oidcSettingsFrom({ AAM_OIDC_ISSUER: 'https://idp.example.com', AAM_OIDC_CLIENT_ID: 'c', AAM_OIDC_CLIENT_SECRET: 's' }, 'https://aam.example.com');
  assert.equal(s?.redirectUri, 'https://aam.example.com/console/callback');
});

test('server-rendered pages escape what they show', () => {
  assert.equal(esc(`<a href="x" onclick='y'>&`), '&#60;a href=&#34;x&#34; onclick=&#39;y&#39;&#62;&#38;');
  const page = errorPage('Sign-in failed', '<script>alert(1)</script>');
  assert.ok(!page.includes('<script>alert(1)'));
  assert.ok(loginPage({ sso: false, token: false }).includes('Sign-in is not configured'));
});

let gw: TestGateway;
before(async () => { gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['m'])), { AAM_ADMIN_TOKEN: TOKEN }); });
after(async () => { await gw?.close(); });

test('without OIDC, /console offers the break-glass sign-in; every console response carries CSP and friends; SSO routes say they are off', async () => {
  const r = await fetch(`${gw.url}/console`);
  assert.equal(r.status, 200);
  const html = await r.text();
  assert.match(html, /AAM_ADMIN_TOKEN/);
  assert.doesNotMatch(html, /single sign-on<\/a>/);
  for (const path of ['/console', '/console/app.js', '/console/style.css']) {
    const h = (await fetch(`${gw.url}${path}`)).headers;
    assert.match(h.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/, path);
    assert.equal(h.get('x-content-type-options'), 'nosniff', path);
    assert.equal(h.get('x-frame-options'), 'DENY', path);
  }
  assert.equal((await fetch(`${gw.url}/console/login`)).status, 404);
  // Signed in with the token, the app shell comes with the session's CSRF token in the sign-out form only.
  const login = await fetch(`${gw.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
  assert.equal(login.status, 303);
  const cookie = login.headers.getSetCookie()[0];
  assert.match(cookie, /^aam_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=\d+$/);
  const shell = await (await fetch(`${gw.url}/console`, { headers: { cookie: cookie.split(';')[0] } })).text();
  assert.match(shell, /break-glass admin token \(admin\)/);
  assert.ok(!shell.includes(TOKEN), 'the token never comes back');
  assert.match(shell, /<script src="\/console\/app.js"><\/script>/);
  assert.doesNotMatch(shell, /<script>/, 'no inline script (CSP forbids it)');
});

test('admin API answers (data, errors, AuthZEN) are never cached and never sniffed as anything but JSON', async () => {
  const answers = [
    await fetch(`${gw.url}/admin/v1/me`, { headers: { authorization: `Bearer ${TOKEN}` } }),
    await fetch(`${gw.url}/admin/v1/policy/explain`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'tester', model: 'm' }) }),
    await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: 'Bearer aam_not-a-key-of-this-gateway' } }),
    await fetch(`${gw.url}/admin/v1/nothing-here`, { headers: { authorization: `Bearer ${TOKEN}` } }),
    await fetch(`${gw.url}/access/v1/evaluation`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ subject: { type: 'agent', id: 'tester' }, resource: { type: 'model', id: 'm' }, action: { name: 'call' } }) }),
  ];
  assert.deepEqual(answers.map((r) => r.status), [200, 200, 401, 404, 200]);
  for (const r of answers) {
    assert.equal(r.headers.get('cache-control'), 'no-store', r.url);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', r.url);
    await r.arrayBuffer();
  }
});

test('audit live tail: server-sent events of what is committed after it opened, with filters; a viewer\'s stream, never an agent\'s', async () => {
  const agentKey = gw.key('tester');
  assert.equal((await fetch(`${gw.url}/admin/v1/audit/stream`, { headers: { authorization: `Bearer ${agentKey}` } })).status, 401);
  const ctl = new AbortController();
  const r = await fetch(`${gw.url}/admin/v1/audit/stream?type=admin`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ctl.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
  const reader = r.body!.getReader();
  const made = await fetch(`${gw.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"agent":"tester"}' });
  const { id } = await made.json() as { id: string };
  // A model call is not an admin event: the filter keeps it out.
  await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' }, body: '{"model":"m","messages":[{"role":"user","content":"hi"}]}' }).then((x) => x.text());
  let text = '';
  const deadline = Date.now() + 20_000;
  while (!text.includes(`"target":"${id}"`)) {
    assert.ok(Date.now() < deadline, `no key_created event in the tail: ${text}`);
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  ctl.abort();
  const events = text.split('\n\n').filter((b) => b.startsWith('id: ')).map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 6)) as { type: string; admin?: { action: string } });
  assert.ok(events.length >= 1 && events.every((e) => e.type === 'admin'), 'only admin events');
  assert.ok(events.some((e) => e.admin?.action === 'key_created'));
  assert.ok(!events.some((e) => e.admin?.action === 'gateway_started'), 'nothing from before the stream opened');
});

test('a request\'s chain comes with the newest signed checkpoint, its signature checked, covering the request once it is signed', async () => {
  const made = await fetch(`${gw.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"agent":"tester"}' });
  const rid = made.headers.get('x-request-id')!;
  const deadline = Date.now() + 40_000; // checkpoints are signed every 10 s (or 1,000 events)
  for (;;) {
    const r = (await (await fetch(`${gw.url}/admin/v1/audit/requests/${rid}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as {
      data: Array<{ seq: number }>; checkpoint: { tree_size: number; signature_valid: boolean | null } | null;
    };
    if (r.checkpoint && r.data.length && r.checkpoint.tree_size >= Math.max(...r.data.map((e) => e.seq))) {
      assert.equal(r.checkpoint.signature_valid, true);
      break;
    }
    assert.ok(Date.now() < deadline, `no checkpoint covers ${rid}: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
});

test('spend over time: GET /admin/v1/usage/daily counts today\'s calls per agent; a bad grouping names the choices', async () => {
  const key = gw.key('tester');
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"model":"m","messages":[{"role":"user","content":"hi"}]}' });
  assert.equal(r.status, 200);
  await r.text();
  const today = new Date().toISOString().slice(0, 10);
  const daily = (await (await fetch(`${gw.url}/admin/v1/usage/daily?by=agent&since=2d`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { data: Array<{ day: string; key: string; requests: number; input_tokens: number }> };
  const row = daily.data.find((d) => d.key === 'tester' && d.day === today);
  assert.ok(row && row.requests >= 1 && row.input_tokens > 0, JSON.stringify(daily));
  const bad = await fetch(`${gw.url}/admin/v1/usage/daily?by=planet`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /agent, team, model, route, key/);
  // Per virtual key too (the Spend page's "By virtual key"): the key's id, never its secret.
  const keyId = gw.g.rt.keys.list().find((k) => k.agent === 'tester')!.id;
  const byKey = (await (await fetch(`${gw.url}/admin/v1/usage?by=key&since=2d`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { data: Array<{ key: string | null; requests: number }> };
  assert.ok(byKey.data.some((d) => d.key === keyId && d.requests >= 1), JSON.stringify(byKey));
  const dailyByKey = (await (await fetch(`${gw.url}/admin/v1/usage/daily?by=key&since=2d`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { data: Array<{ key: string }> };
  assert.ok(dailyByKey.data.some((d) => d.key === keyId));
  assert.ok(!JSON.stringify(byKey).includes(key));
});

test('reached over https (AAM_PUBLIC_URL https): console pages tell the browser to keep to https (HSTS) and cookies are __Host-/Secure; over plain http neither', async () => {
  assert.equal((await fetch(`${gw.url}/console`)).headers.get('strict-transport-security'), null, 'HSTS over http means nothing, and would pin a dev host');
  const tls = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['m'])), { AAM_ADMIN_TOKEN: TOKEN, AAM_PUBLIC_URL: 'https://aam.example.com' });
  try {
    for (const path of ['/console', '/console/app.js']) assert.equal((await fetch(`${tls.url}${path}`)).headers.get('strict-transport-security'), 'max-age=31536000', path);
    const login = await fetch(`${tls.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: 'https://aam.example.com', 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${TOKEN}` });
    assert.equal(login.status, 303);
    assert.equal(login.headers.get('strict-transport-security'), 'max-age=31536000');
    assert.match(login.headers.getSetCookie()[0], /^__Host-aam_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Lax; Secure; Max-Age=\d+$/);
  } finally { await tls.close(); }
});

test('a console page typed as a path (/console/audit?agent=x) opens that page; other methods keep the router\'s 405/404', async () => {
  const go = (path: string, method = 'GET') => fetch(`${gw.url}${path}`, { method, redirect: 'manual' });
  for (const [path, to] of [['/console/audit', '/console#/audit'], ['/console/audit?agent=tester&plane=model', '/console#/audit?agent=tester&plane=model'], ['/console/agents/a%20b', '/console#/agents/a%20b'], ['/console/logout', '/console#/logout']]) {
    const r = await go(path);
    assert.deepEqual([r.status, r.headers.get('location')], [303, to], path);
    assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'none'/);
  }
  assert.equal((await go('/console/app.js')).status, 200, 'assets are still served');
  const wrong = await go('/console/login', 'POST');
  assert.deepEqual([wrong.status, wrong.headers.get('allow')], [405, 'GET']);
  assert.equal((await go('/console/nothing', 'POST')).status, 404);
});
