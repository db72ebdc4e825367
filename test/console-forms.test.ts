// The console's forms as a demanding person meets them, in a real browser: a request left blank in
// the policy simulator is refused with what to fill in (not decided as an empty action); a refused
// audit or spend filter keeps its form, with the reason under it; closed lists are choices; and
// revoking a key, which cannot be undone, asks first (Cancel focused, so a stray Enter revokes nothing).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, signInWithBrowser, startConsoleEnv, ADMIN_TOKEN, type ConsoleEnv } from './helpers/console-setup.ts';

const skip = chromiumMissing;
let env: ConsoleEnv;
let chrome: Awaited<ReturnType<typeof launchChromium>> | undefined;
let browser: Browser;
let page: Page;
const errors: string[] = [];

before(async () => {
  if (skip) return;
  env = await startConsoleEnv();
  chrome = await launchChromium('aam-forms-');
  browser = chrome.browser;
  page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (e) => errors.push(e.message));
  await signInWithBrowser(page, env.url, 'alice');
  await page.getByRole('heading', { name: 'Agents' }).waitFor();
});
after(async () => {
  await chrome?.close();
  await env?.close();
});

test('policy simulator: a blank request is refused, naming what to fill in; the API decides no empty action', { skip }, async () => {
  await page.goto(`${env.url}/console#/simulator`);
  await page.getByRole('button', { name: 'Decide' }).click();
  await page.getByRole('alert').filter({ hasText: 'needs model, or resource and action' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: /Decision/ }).count(), 0);
  const r = await fetch(`${env.url}/admin/v1/policy/explain`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'finance-analyst', model: '', resource: '', action: ' ' }) });
  assert.equal(r.status, 400);
  assert.deepEqual(errors, []);
});

test('audit and spend: a refused filter keeps the form with the reason under it; decision is a choice', { skip }, async () => {
  await page.goto(`${env.url}/console#/audit?since=yesterdayish`);
  await page.getByRole('alert').filter({ hasText: 'since: "yesterdayish" is neither an ISO time' }).waitFor();
  assert.equal(await page.getByLabel('Since (e.g. 24h)').inputValue(), 'yesterdayish', 'the filter as typed stays to be corrected');
  await page.getByLabel('Since (e.g. 24h)').fill('24h');
  await page.getByLabel('Decision').selectOption('deny');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL(/#\/audit\?decision=deny&since=24h/);
  await page.getByRole('columnheader', { name: 'Decision' }).waitFor();
  assert.deepEqual(await page.getByLabel('Decision').locator('option').allInnerTexts(), ['any', 'allow', 'deny', 'approval required']);

  await page.goto(`${env.url}/console#/spend?since=soon`);
  await page.getByRole('alert').filter({ hasText: 'since: "soon"' }).waitFor();
  assert.equal(await page.getByLabel('Since').inputValue(), 'soon');
  await page.getByLabel('Since').fill('7d');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByRole('heading', { name: 'Budgets (burn-down)' }).waitFor();
  assert.deepEqual(errors, []);
});

test('revoking a key asks first: Cancel (focused) keeps it, the confirm button revokes it', { skip }, async () => {
  const made = await (await fetch(`${env.url}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'finance-analyst', name: 'ci-runner' }) })).json() as { id: string; key: string };
  const works = async () => (await fetch(`${env.url}/v1/models`, { headers: { authorization: `Bearer ${made.key}` } })).status;
  await page.goto(`${env.url}/console#/agents/finance-analyst`);
  const row = page.getByRole('row', { name: new RegExp(made.id) });
  await row.getByRole('button', { name: 'Revoke', exact: true }).click();
  await page.getByText(`Revoke key ${made.id} (ci-runner)? Every agent using it is refused (401) at once; this cannot be undone.`).waitFor();
  assert.equal(await page.evaluate('document.activeElement.textContent'), 'Cancel');
  await page.keyboard.press('Enter'); // the focused Cancel
  await page.getByRole('button', { name: `Revoke ${made.id}` }).waitFor({ state: 'detached' });
  assert.equal(await page.evaluate('document.activeElement.textContent'), 'Revoke', 'the focus is back where the person was');
  assert.equal(await works(), 200, 'nothing revoked yet');
  await row.getByRole('button', { name: 'Revoke', exact: true }).click();
  await page.getByRole('button', { name: `Revoke ${made.id}` }).click();
  await page.getByText(`Key ${made.id} revoked.`).waitFor();
  assert.equal(await works(), 401);
  assert.deepEqual(errors, []);
});
