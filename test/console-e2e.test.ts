// The console in a real browser (Debian's chromium driven by playwright-core): sign-in through the
// in-process OpenID Provider, every page without a console error, agent metadata that is markup
// shown as text (no script runs), the approve flow end to end (an agent's held call completes after
// a person approves it), viewer role enforced in the UI, and no configured secret in any response.
// AAM_CONSOLE_SCREENSHOTS=DIR keeps a screenshot of each page there (docs/ holds the README's).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, startConsoleEnv, ADMIN_TOKEN, TOOL_SECRET, type ConsoleEnv } from './helpers/console-setup.ts';

const SHOTS = process.env.AAM_CONSOLE_SCREENSHOTS;
const skip = chromiumMissing;

let env: ConsoleEnv;
let browser: Browser;
let chrome: Awaited<ReturnType<typeof launchChromium>> | undefined;
/** Every response the browser got from aam, for the secret check. */
const bodies: Array<{ url: string; text: string }> = [];
const problems: string[] = [];

before(async () => {
  if (skip) return;
  env = await startConsoleEnv();
  chrome = await launchChromium('aam-chromium-');
  browser = chrome.browser;
});
after(async () => {
  await chrome?.close();
  await env?.close();
});

async function newPage(): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 800 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  // aam's pages only (the test IdP's own login page is not ours to judge).
  const ours = () => page.url().startsWith(env.url);
  page.on('console', (m) => { if (m.type() === 'error' && ours()) problems.push(`console error on ${page.url()}: ${m.text()}`); });
  page.on('pageerror', (e) => { if (ours()) problems.push(`page error on ${page.url()}: ${e.message}`); });
  page.on('response', async (r) => {
    if (!r.url().startsWith(env.url)) return;
    try { bodies.push({ url: r.url(), text: await r.text() }); } catch { /* redirects have no body */ }
  });
  return { ctx, page };
}

async function signIn(page: Page, login: string): Promise<void> {
  await page.goto(`${env.url}/console`);
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).click();
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL(`${env.url}/console`);
  await page.getByRole('heading', { name: 'Agents' }).waitFor();
}

async function shot(page: Page, name: string): Promise<void> {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `console-${name}.png`), fullPage: true });
}

test('console in a browser: SSO sign-in, every page, markup shown as text, approve flow end to end, no console errors, no secret in any response', { skip }, async () => {
  const { ctx, page } = await newPage();
  await signIn(page, 'alice');
  assert.match(await page.locator('.who').innerText(), /alice@example\.com \(admin\)/);

  // Agents: the hostile agent's owner and team are text, and nothing ran.
  const rows = page.locator('main table tbody tr');
  await rows.first().waitFor();
  assert.ok((await page.locator('main').innerText()).includes('<script>window.__pwned=1</script>'), 'the owner is shown literally');
  assert.ok((await page.locator('main').innerText()).includes('<img src=x onerror=window.__pwned=2>'));
  assert.equal(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned), undefined, 'no injected script ran');
  assert.equal(await page.locator('main script, main img').count(), 0, 'no element was made from agent data');
  await shot(page, 'agents');

  // One agent: what it can do, rule by rule; a key made here is shown once.
  await page.getByRole('link', { name: 'finance-analyst' }).click();
  await page.getByRole('heading', { name: 'What can this agent do?' }).waitFor();
  const caps = await page.locator('main').innerText();
  assert.match(caps, /reasoning-high\s+allow\s+finance-analyst-readonly\s+models\.allow\[0\]/);
  assert.match(caps, /summarization\s+deny/);
  assert.match(caps, /salesforce\.accounts\s+delete[^\n]*approval_required/);
  assert.match(caps, /salesforce\.accounts\s+export[^\n]*deny/);
  await page.getByLabel('New key name').fill('from-console');
  await page.getByRole('button', { name: 'Create key' }).click();
  const secret = await page.locator('.secret code').innerText();
  assert.match(secret, /^aam_/);
  if (SHOTS) { // the README's picture shows where the key appears, not a key
    await page.locator('.secret code').evaluate((e) => { e.textContent = 'aam_•••••••••••••••••••••••••••••••'; });
    await shot(page, 'agent');
    await page.locator('.secret code').evaluate((e, k) => { e.textContent = k; }, secret);
  }

  // Approvals: the agent's held call, approved with a reason, then goes through.
  const call = () => fetch(`${env.url}/tools/salesforce/delete`, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: '{"id":"acct-7","note":"closing it for jane.doe@example.org"}' });
  const held = await call();
  assert.equal(held.status, 403);
  const approvalId = ((await held.json()) as { error: { approval_id: string } }).error.approval_id;
  await page.getByRole('link', { name: 'Approvals' }).click();
  await page.getByRole('cell', { name: approvalId }).waitFor();
  assert.match(await page.locator('main').innerText(), /"note": "closing it for \[EMAIL\]"/, 'arguments shown with PII redacted');
  await shot(page, 'approvals');
  await page.getByLabel(`Reason for ${approvalId}`).fill('ticket OPS-7, owner agreed');
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.getByText(`Approve: ${approvalId}`).waitFor();
  assert.equal((await call()).status, 200, 'the held call completes once approved');

  // Spend: a model call shows up per agent, team, model and route, with the budget burn-down.
  const chat = await fetch(`${env.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'reasoning-high', messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal(chat.status, 200);
  await page.getByRole('link', { name: 'Spend' }).click();
  await page.getByRole('heading', { name: 'Budgets (burn-down)' }).waitFor();
  assert.match(await page.locator('main').innerText(), /finance-analyst\s+agent:finance-analyst\s+day/);
  await page.getByRole('cell', { name: 'reasoning-high' }).first().waitFor();
  await page.getByRole('img', { name: /^Tokens per day: \d{4}-\d\d-\d\d [1-9]\d*$/ }).waitFor(); // today's tokens, charted
  await shot(page, 'spend');
  // Tools: servers, changed definitions, providers and routes.
  await page.getByRole('link', { name: 'Tools' }).click();
  await page.getByRole('heading', { name: 'Changed tool definitions' }).waitFor();
  await page.getByRole('cell', { name: 'reasoning-high' }).waitFor();
  assert.match(await page.locator('main').innerText(), /salesforce\.accounts\s+read\s+HTTP tool salesforce\/read\s+finance-analyst\s+-/);
  assert.match(await page.locator('main').innerText(), /salesforce\.accounts\s+delete\s+HTTP tool salesforce\/delete\s+nobody\s+finance-analyst/);
  await shot(page, 'tools');

  // Policy simulator.
  await page.getByRole('link', { name: 'Policy simulator' }).click();
  await page.getByLabel('Agent').selectOption('finance-analyst');
  await page.getByLabel('Model').fill('summarization');
  await page.getByRole('button', { name: 'Decide' }).click();
  await page.getByRole('heading', { name: /Decision:/ }).waitFor();
  assert.match(await page.locator('main pre').innerText(), /decision: DENY/);
  await shot(page, 'simulator');

  // Audit: the approval is on record under alice's name; one request's chain opens.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Event type').fill('admin');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('cell', { name: `approval_granted ${approvalId}` }).waitFor();
  assert.match(await page.locator('main').innerText(), /alice@example\.com/);
  await shot(page, 'audit');
  // Live tail (server-sent events): a key made elsewhere shows up without a reload.
  await page.getByRole('button', { name: 'Live tail' }).click();
  await page.getByText('following new events').waitFor();
  const other = await fetch(`${env.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{"agent":"xss"}' });
  const otherId = ((await other.json()) as { id: string }).id;
  await page.getByRole('cell', { name: `key_created ${otherId}` }).waitFor();
  await page.getByRole('link', { name: /^req_/ }).first().click();
  await page.getByRole('heading', { name: /^Request req_/ }).waitFor();
  // Team and plane filters: finance's tool-plane events (the approved HTTP tool call), nothing else.
  await page.goto(`${env.url}/console#/audit`);
  await page.getByLabel('Plane').waitFor();
  // A search answered late (admin events) after the user searched again: its rows must not replace the newer search's.
  let lateAnswer: Promise<void> = Promise.resolve();
  const adminLate = async (r: import('playwright-core').Route) => {
    if (!r.request().url().includes('type=admin')) return r.continue();
    lateAnswer = new Promise<void>((resolve) => setTimeout(() => { r.continue().then(resolve, resolve); }, 1500));
    await lateAnswer;
  };
  await page.route(/\/admin\/v1\/audit\?/, adminLate);
  await page.getByLabel('Event type').fill('admin');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/type=admin/);
  await page.getByLabel('Event type').fill('');
  await page.getByLabel('Team').fill('finance');
  await page.getByLabel('Plane').selectOption('tool');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/plane=tool/);
  // The page shows the last rows until the new ones come: wait for the search's own rows.
  // (Polled from here: the console's CSP refuses the string a waitForFunction would evaluate.)
  for (let i = 0, t: string[] = []; !(t.length > 0 && t.every((x) => x.startsWith('tool.'))); i++) {
    assert.ok(i < 200, `the search's rows never came: ${t.join(', ')}`);
    if (i > 0) await new Promise((r) => setTimeout(r, 50));
    t = await page.locator('main table tbody tr td:nth-child(3)').allInnerTexts();
  }
  await lateAnswer;
  await page.unroute(/\/admin\/v1\/audit\?/, adminLate);
  await new Promise((r) => setTimeout(r, 300)); // time for the late answer to be shown, were it shown
  const typesShown = await page.locator('main table tbody tr td:nth-child(3)').allInnerTexts();
  assert.ok(typesShown.length > 0 && typesShown.every((t) => t.startsWith('tool.') || t === 'decision'), typesShown.join(', '));
  assert.deepEqual([...new Set(await page.locator('main table tbody tr td:nth-child(4)').allInnerTexts())], ['finance-analyst']);
  assert.equal(await page.getByLabel('Plane').inputValue(), 'tool', 'the filter stays shown');
  await page.getByLabel('Plane').selectOption('model');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('cell', { name: 'model_call' }).first().waitFor();
  assert.equal(await page.getByRole('cell', { name: 'tool.outcome' }).count(), 0);
  // Agents: last activity names the plane (the model call came after the tool call).
  await page.getByRole('link', { name: 'Agents' }).click();
  await page.getByRole('columnheader', { name: 'Last activity' }).waitFor();
  assert.match(await page.getByRole('row', { name: /finance-analyst/ }).innerText(), /\(model\)/);

  // Revoking the key in the console cuts the agent off at its next call.
  await page.goto(`${env.url}/console#/agents/finance-analyst`);
  await page.getByRole('button', { name: 'Revoke', exact: true }).click();
  await page.getByRole('button', { name: /^Revoke key_/ }).click(); // revoking asks first (console-forms)
  await page.getByText(/Key key_\w+ revoked\./).waitFor();
  assert.equal((await call()).status, 401);

  // Every response: the security headers on pages, no configured secret anywhere.
  const shell = await page.request.get(`${env.url}/console`);
  assert.match(shell.headers()['content-security-policy'], /script-src 'self'/);
  assert.equal(shell.headers()['x-frame-options'], 'DENY');
  for (const s of [TOOL_SECRET, ADMIN_TOKEN, env.idp.clientSecret]) {
    const leaks = bodies.filter((b) => b.text.includes(s)).map((b) => b.url);
    assert.deepEqual(leaks, [], 'a configured secret reached the browser');
  }
  assert.ok(bodies.some((b) => b.url.includes('/admin/v1/agents')), 'the check saw the API responses');
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('console as a viewer: pages load, changes are not offered, and the API refuses them', { skip }, async () => {
  const { ctx, page } = await newPage();
  await signIn(page, 'victor');
  await page.getByRole('link', { name: 'finance-analyst' }).click();
  await page.getByRole('heading', { name: 'What can this agent do?' }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Revoke' }).count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Create key' }).count(), 0);
  // Forcing it from the page's own origin, with its CSRF token: still 403 (the browser logs that 403).
  const seen = problems.length;
  const status = await page.evaluate(async () => {
    const me = await (await fetch('/admin/v1/me')).json() as { csrf_token: string };
    const r = await fetch('/admin/v1/keys', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf_token }, body: '{"agent":"finance-analyst"}' });
    return r.status;
  });
  assert.equal(status, 403);
  problems.splice(seen);
  await page.getByRole('link', { name: 'Approvals' }).click();
  await page.getByRole('heading', { name: 'Approvals' }).waitFor();
  // Sign-out goes on to the IdP (RP-initiated logout; the page's CSP lets the form's redirect go there) and back.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
  await page.waitForURL(`${env.url}/console/signed-out`);
  await page.getByText('You are signed out of aam and of your identity provider.').waitFor();
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).waitFor();
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('a session that ends while a page is open: the next page says so and offers sign-in again (not the API\'s message for scripts)', { skip }, async () => {
  const { ctx, page } = await newPage();
  await signIn(page, 'victor');
  // Ended elsewhere: signed out in another tab (as when it expires, or a restart ends a break-glass session).
  const me = await (await page.request.get(`${env.url}/admin/v1/me`)).json() as { csrf_token: string };
  const out = await page.request.post(`${env.url}/console/logout`, { form: { csrf: me.csrf_token }, headers: { origin: env.url }, maxRedirects: 0 });
  assert.equal(out.status(), 303);
  const seen = problems.length;
  await page.getByRole('link', { name: 'Approvals' }).click();
  await page.getByRole('heading', { name: 'Signed out' }).waitFor();
  assert.match(await page.getByRole('alert').innerText(), /Your console session has ended/);
  assert.doesNotMatch(await page.locator('main').innerText(), /Authorization: Bearer/);
  problems.splice(seen); // the browser logs the 401
  await page.getByRole('link', { name: 'Sign in again' }).click();
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).waitFor();
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('audit with more events than a page: newest 100 first, then older ones page by page with the same filters, and back to the newest', { skip }, async () => {
  const key = env.g.rt.keys.create('finance-analyst').secret;
  for (let i = 0; i < 120; i++) {
    const r = await fetch(`${env.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'reasoning-high', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200);
    await r.text();
  }
  const { ctx, page } = await newPage();
  await signIn(page, 'victor');
  await page.goto(`${env.url}/console#/audit?type=model_call`);
  const seqs = async () => (await page.locator('main table tbody tr td:nth-child(1)').allInnerTexts()).map(Number);
  await page.getByRole('link', { name: 'Older events' }).waitFor();
  const first = await seqs();
  assert.equal(first.length, 100);
  await page.getByRole('link', { name: 'Older events' }).click();
  await page.getByRole('link', { name: 'Newest events' }).waitFor();
  const second = await seqs();
  assert.ok(second.length >= 20 && second.length <= 100, String(second.length));
  assert.ok(Math.max(...second) < Math.min(...first), 'the next page holds older events only');
  assert.deepEqual(new Set(await page.locator('main table tbody tr td:nth-child(3)').allInnerTexts()), new Set(['model_call']), 'the filter holds');
  assert.equal(await page.getByLabel('Event type').inputValue(), 'model_call');
  await page.getByRole('link', { name: 'Newest events' }).click();
  await page.getByRole('link', { name: 'Older events' }).waitFor();
  assert.deepEqual(await seqs(), first);
  await ctx.close();
  assert.deepEqual(problems, []);
});

test('a malformed hash (a bad %-escape) still routes: the page says what is wrong, the router keeps working, no page error', { skip }, async () => {
  const { ctx, page } = await newPage();
  await signIn(page, 'victor');
  // decodeURIComponent throws on these; the router takes the hash as written instead of dying (blank page).
  const seen = problems.length;
  await page.goto(`${env.url}/console#/agents/%E0%A4%A`);
  await page.getByRole('heading', { name: 'Error' }).waitFor();
  assert.match(await page.getByRole('alert').innerText(), /no Agent "%E0%A4%A"/);
  assert.ok(problems.slice(seen).every((p) => /404/.test(p)), problems.slice(seen).join('\n')); // the browser logs the API's 404, nothing threw
  problems.splice(seen);
  await page.evaluate(() => { (globalThis as unknown as { location: { hash: string } }).location.hash = '#%'; });
  await page.getByRole('heading', { name: 'Agents' }).waitFor();
  await page.getByRole('link', { name: 'Approvals' }).click();
  await page.getByRole('heading', { name: 'Approvals' }).waitFor();
  await ctx.close();
  assert.deepEqual(problems, []);
});
