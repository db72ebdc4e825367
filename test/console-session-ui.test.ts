// In the browser: the header says who is signed in and until when (the browser's time zone), warns
// (role=alert) before an end nothing can renew (the maximum), and a session renewed at the IdP goes on without a
// warning; an agent's key rotates with the grace chosen (the admin API checks it, as the CLI does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Page } from 'playwright-core';
import { chromiumMissing, launchChromium, signInWithBrowser, startConsoleEnv, ADMIN_TOKEN, type ConsoleEnv } from './helpers/console-setup.ts';
import type { AuditEvent } from '../src/audit/event.ts';

const skip = chromiumMissing;
let plain: ConsoleEnv; // 2-minute ID tokens, no refresh token, sessions of at most 5 minutes: warned of at once
let renewing: ConsoleEnv; // 3 s ID tokens and refresh tokens: renewed, up to 12 h
let chrome: Awaited<ReturnType<typeof launchChromium>> | undefined;
before(async () => {
  if (skip) return;
  [plain, renewing] = await Promise.all([startConsoleEnv({ idTokenTtlS: 120, env: { AAM_CONSOLE_SESSION_MAX: '5m' } }), startConsoleEnv({ idTokenTtlS: 3, refreshTokens: true })]);
  chrome = await launchChromium('aam-session-ui-');
});
after(async () => { await chrome?.close(); await plain?.close(); await renewing?.close(); });

async function open(env: ConsoleEnv, login: string): Promise<{ page: Page; errors: string[]; close(): Promise<void> }> {
  const ctx = await chrome!.browser.newContext();
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await signInWithBrowser(page, env.url, login);
  return { page, errors, close: () => ctx.close() };
}
const localClock = (page: Page, iso: string) => page.evaluate((t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }), iso);

test('a session near its maximum (AAM_CONSOLE_SESSION_MAX): the header says until when, and warns it ends (role=alert) with a way to sign in again', { skip }, async () => {
  const { page, errors, close } = await open(plain, 'olga');
  try {
    const me = await (await page.request.get(`${plain.url}/admin/v1/me`)).json() as { session_expires_at: string; session_renews: boolean };
    assert.equal(me.session_renews, true, 'renewed (by silent re-authorization: no refresh token here) up to the maximum');
    assert.ok(Date.parse(me.session_expires_at) < Date.now() + 5 * 60_000);
    const when = await localClock(page, me.session_expires_at);
    await page.locator('.who').filter({ hasText: `until ${when}` }).waitFor();
    assert.equal(await page.locator('.who').innerText(), `Signed in as olga@example.com (operator) until ${when}`);
    assert.equal(await page.locator('#session-end').getAttribute('datetime'), me.session_expires_at);
    const warning = page.getByRole('alert').filter({ hasText: 'Your session ends at' });
    await warning.waitFor(); // under 5 minutes left: at once
    assert.equal(await warning.innerText(), `Your session ends at ${when} and cannot be renewed past then: finish what you are doing, then sign in again.`);
    assert.equal(await warning.getByRole('link', { name: 'sign in again' }).getAttribute('href'), '/console/login');
    assert.deepEqual(errors, []);
  } finally { await close(); }
});

test('a session renewed at the IdP: no warning, it ends at the maximum, and pages keep working past the 3 s ID token', { skip }, async () => {
  const { page, errors, close } = await open(renewing, 'victor');
  try {
    const me = await (await page.request.get(`${renewing.url}/admin/v1/me`)).json() as { session_expires_at: string; session_renews: boolean };
    assert.equal(me.session_renews, true);
    assert.ok(Date.parse(me.session_expires_at) > Date.now() + 11 * 3600_000);
    await page.getByRole('heading', { name: 'Agents' }).waitFor();
    await page.waitForTimeout(4500); // past the first ID token
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.getByRole('heading', { name: 'Approvals' }).waitFor();
    await page.getByRole('link', { name: 'Agents' }).click();
    await page.getByRole('link', { name: 'finance-analyst' }).waitFor();
    assert.equal(await page.getByRole('alert').count(), 0, 'no warning, no signed-out notice');
    assert.deepEqual(errors, []);
  } finally { await close(); }
});

test('key rotate offers the grace: "no time" stops the old secret at once, "1 day" keeps it; the choice is on record', { skip }, async () => {
  const made = await (await fetch(`${plain.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{"agent":"finance-analyst","name":"grace-test"}' })).json() as { id: string; key: string };
  const chat = (key: string) => fetch(`${plain.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"model":"reasoning-high","messages":[{"role":"user","content":"hi"}]}' });
  assert.equal((await chat(made.key)).status, 200);
  const { page, errors, close } = await open(plain, 'olga');
  try {
    await page.getByRole('link', { name: 'finance-analyst' }).click();
    await page.getByRole('heading', { name: 'Agent finance-analyst' }).waitFor().catch(async (e: Error) => { throw new Error(`${e.message}\n${await page.locator('main').innerText()}`); });
    const grace = page.getByLabel('Old secret works for').and(page.locator(`#grace-${made.id}`));
    assert.equal(await grace.inputValue(), '3600', 'an hour unless chosen otherwise');
    await grace.selectOption({ label: 'no time: it stops at once' });
    const row = page.getByRole('row').filter({ hasText: made.id });
    await row.getByRole('button', { name: 'Rotate' }).click();
    await page.getByRole('status').filter({ hasText: 'Rotated. The old secret no longer works.' }).waitFor();
    const second = await page.locator('.secret code').innerText();
    assert.equal((await chat(made.key)).status, 401, 'the old secret stopped at once');
    assert.equal((await chat(second)).status, 200);

    await page.locator(`#grace-${made.id}`).selectOption({ label: '1 day' });
    await page.getByRole('row').filter({ hasText: made.id }).getByRole('button', { name: 'Rotate' }).click();
    await page.getByRole('status').filter({ hasText: 'Rotated. The old secret keeps working for 1 day.' }).waitFor();
    assert.equal((await chat(second)).status, 200, 'the previous secret works on for its grace');
    const trail = await (await fetch(`${plain.url}/admin/v1/audit?type=admin&limit=100`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json() as { data: AuditEvent[] };
    const graces = trail.data.filter((e) => e.admin?.action === 'key_rotated' && e.admin.target === made.id).map((e) => (e.admin as unknown as { grace_seconds: number }).grace_seconds);
    assert.deepEqual(graces.sort((a, b) => a - b), [0, 86400]);
    assert.deepEqual(errors, []);
  } finally { await close(); }
});
