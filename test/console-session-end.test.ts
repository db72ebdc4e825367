// A console session that ends ends everything it opened: the audit live tail (a long-lived
// server-sent events stream) stops within a poll when the person signs out, or when the config no
// longer gives them a role, instead of streaming the trail to a signed-out browser; the page says so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { chromiumMissing, launchChromium, signInWithBrowser, startConsoleEnv, ADMIN_TOKEN, type ConsoleEnv } from './helpers/console-setup.ts';
import { loginWithoutBrowser, type CookieJar } from './helpers/oidc-idp.ts';

let env: ConsoleEnv;
before(async () => { env = await startConsoleEnv(); });
after(async () => { await env?.close(); });

/** Open the live tail as `jar`'s session; `text()` is everything received so far, `done` settles when the server ends it. */
async function openTail(jar: CookieJar) {
  const r = await fetch(`${env.url}/admin/v1/audit/stream`, { headers: { cookie: jar.header() }, signal: AbortSignal.timeout(20_000) });
  assert.equal(r.status, 200);
  let got = '';
  const reader = r.body!.getReader();
  const done = (async () => { for (;;) { const { value, done: end } = await reader.read(); if (end) return; got += Buffer.from(value).toString('utf8'); } })();
  return { text: () => got, done };
}

const makeKey = () => fetch(`${env.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'finance-analyst' }) });

test('signing out ends the audit live tail the session opened: an "ended" event (401), the stream closes, no later event reaches it', async () => {
  const { jar } = await loginWithoutBrowser(env.url, 'victor');
  const me = await (await fetch(`${env.url}/admin/v1/me`, { headers: { cookie: jar.header() } })).json() as { csrf_token: string };
  const tail = await openTail(jar);
  const out = await fetch(`${env.url}/console/logout`, { method: 'POST', redirect: 'manual', headers: { cookie: jar.header(), origin: env.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${me.csrf_token}` });
  assert.equal(out.status, 303);
  await tail.done; // the server ends it (the request's 20 s timeout fails the test otherwise)
  assert.match(tail.text(), /event: ended\ndata: \{"status":401,/);
  const key = await (await makeKey()).json() as { id: string };
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(!tail.text().includes(key.id), 'nothing after sign-out reaches the closed tail');
});

test('a tail ends when a reload leaves its reader without a role (403, the reason given)', async () => {
  const { jar } = await loginWithoutBrowser(env.url, 'victor');
  const tail = await openTail(jar);
  const original = readFileSync(env.configPath, 'utf8');
  try {
    writeFileSync(env.configPath, original.replace(/\{"group":"everyone"\}/, '{"group":"nobody"}'));
    assert.equal(env.g.rt.reload('test'), null);
    await tail.done;
    assert.match(tail.text(), /event: ended\ndata: \{"status":403,"message":"no RoleBinding names victor@example\.com any more/);
  } finally {
    writeFileSync(env.configPath, original);
    env.g.rt.reload('test');
  }
});

test('browser: the audit page following the live tail says the session ended when it is signed out in another tab', { skip: chromiumMissing }, async () => {
  const chrome = await launchChromium('aam-session-end-');
  try {
    const ctx = await chrome.browser.newContext();
    const page = await ctx.newPage();
    page.setDefaultTimeout(20_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await signInWithBrowser(page, env.url, 'victor');
    await page.goto(`${env.url}/console#/audit`);
    const live = page.getByRole('button', { name: 'Live tail' });
    await live.click();
    await page.getByText('following new events').waitFor();
    // Another tab of the same browser signs out.
    const other = await ctx.newPage();
    await other.goto(`${env.url}/console`);
    await other.getByRole('button', { name: 'Sign out' }).click();
    await other.waitForURL(/signed-out|\/console$/);
    await page.getByRole('alert').filter({ hasText: 'Your console session has ended' }).waitFor();
    assert.equal(await live.getAttribute('aria-pressed'), 'false');
    // The tail is closed, not retrying: a key made now does not appear.
    const key = await (await makeKey()).json() as { id: string };
    await page.waitForTimeout(2000);
    assert.ok(!(await page.locator('main').innerText()).includes(key.id));
    assert.deepEqual(errors, []);
  } finally { await chrome.close(); }
});
