// Accessibility basics of every console page, checked in Debian's chromium (playwright-core): every
// form control has an accessible name, text contrast is at least 4.5:1 (computed in the page from
// the computed styles), nothing scrolls sideways at 1366x768, and the main actions are reachable
// and operable by keyboard alone, each focused control showing a visible focus indicator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, startConsoleEnv, type ConsoleEnv } from './helpers/console-setup.ts';

const skip = chromiumMissing;

let env: ConsoleEnv;
let browser: Browser;
let chrome: Awaited<ReturnType<typeof launchChromium>> | undefined;
before(async () => {
  if (skip) return;
  env = await startConsoleEnv();
  chrome = await launchChromium('aam-chromium-a11y-');
  browser = chrome.browser;
});
after(async () => {
  await chrome?.close();
  await env?.close();
});

const AUDIT_JS = readFileSync(new URL('./helpers/a11y-page.js', import.meta.url), 'utf8').replace(/^\/\/.*\n/gm, '');

/** Problems on the page as it is now: unnamed controls, low-contrast text, sideways scrolling. */
async function audit(page: Page): Promise<string[]> {
  return page.evaluate(`(${AUDIT_JS.trim()})()`) as Promise<string[]>;
}

/** The focused element, its accessible name and whether it shows a focus indicator (outline or shadow). */
const FOCUSED_JS = `(() => {
  const e = document.activeElement;
  // The page's own focus target after navigation (main, tabindex -1) is not a control: nothing to indicate.
  if (!e || e === document.body || e.tabIndex < 0) return null;
  const st = getComputedStyle(e);
  const visible = (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2) || st.boxShadow !== 'none';
  return { tag: e.tagName.toLowerCase(), name: (e.getAttribute('aria-label') || (e.labels && e.labels[0] && e.labels[0].textContent) || e.textContent || '').trim(), visible };
})()`;

/** Press Tab until the focused element matches, checking each focused element shows a focus indicator. */
async function tabTo(page: Page, matches: (e: { tag: string; name: string }) => boolean, max = 80, key = 'Tab'): Promise<void> {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(key);
    const f = await page.evaluate(FOCUSED_JS) as { tag: string; name: string; visible: boolean } | null;
    if (!f) continue;
    assert.ok(f.visible, `no visible focus indicator on <${f.tag}> "${f.name}"`);
    if (matches(f)) return;
  }
  throw new Error('not reachable by Tab');
}

test('every console page: named controls, 4.5:1 contrast, no sideways scrolling at 1366x768; main actions by keyboard alone', { skip }, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const problems: string[] = [];
  const check = async (where: string) => { for (const p of await audit(page)) problems.push(`${where}: ${p}`); };

  await page.goto(`${env.url}/console`);
  await check('sign-in page');
  // Sign in by keyboard: Tab to the single sign-on link and press Enter.
  await tabTo(page, (e) => e.tag === 'a' && e.name === 'Sign in with single sign-on');
  await page.keyboard.press('Enter');
  await page.locator('input[name="login"]').fill('alice');
  await page.locator('input[name="password"]').fill('any');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL(`${env.url}/console`);
  await page.getByRole('heading', { name: 'Agents' }).waitFor();
  await check('agents');

  // Data for the other pages: a held call and a model call.
  const key = env.g.rt.keys.create('finance-analyst').secret;
  const held = await fetch(`${env.url}/tools/salesforce/delete`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"id":"acct-7","note":"closing it for jane.doe@example.org"}' });
  const approvalId = ((await held.json()) as { error: { approval_id: string } }).error.approval_id;
  await fetch(`${env.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"model":"reasoning-high","messages":[{"role":"user","content":"hi"}]}' });

  // Skip link first, then the navigation: Agents -> one agent, by keyboard.
  // Pages focus their content; backwards from there: the navigation, then the skip link.
  await tabTo(page, (e) => e.tag === 'a' && e.name === 'Skip to content', 40, 'Shift+Tab');
  await page.keyboard.press('Enter');
  assert.equal(await page.evaluate('document.activeElement.id'), 'main', 'the skip link lands on the content');
  await tabTo(page, (e) => e.tag === 'a' && e.name === 'finance-analyst');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'What can this agent do?' }).waitFor();
  await check('agent');
  // Create a key by keyboard: type a name, Tab to the button, Enter.
  await tabTo(page, (e) => e.tag === 'input' && /New key name/.test(e.name));
  await page.keyboard.type('kb-key');
  await tabTo(page, (e) => e.tag === 'button' && e.name === 'Create key');
  await page.keyboard.press('Enter');
  await page.locator('.secret code').waitFor();
  await check('agent with a new key');

  // Approvals: reason and Approve by keyboard.
  await page.goto(`${env.url}/console#/approvals`);
  await page.getByRole('cell', { name: approvalId }).waitFor();
  await check('approvals');
  await tabTo(page, (e) => e.tag === 'input' && e.name === `Reason for ${approvalId}`);
  await page.keyboard.type('ticket OPS-9');
  await tabTo(page, (e) => e.tag === 'button' && e.name === 'Approve');
  await page.keyboard.press('Enter');
  await page.getByText(`Approve: ${approvalId}`).waitFor();

  // Simulator: every field by keyboard, submitted with Enter.
  await page.goto(`${env.url}/console#/simulator`);
  await page.getByRole('heading', { name: 'Policy simulator' }).waitFor();
  await check('simulator');
  await tabTo(page, (e) => e.tag === 'input' && /Model/.test(e.name));
  await page.keyboard.type('summarization');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: /Decision:/ }).waitFor();
  await check('simulator with a decision');

  for (const [hash, heading] of [['#/audit', 'Audit'], ['#/spend', 'Spend'], ['#/tools', 'Tools']] as const) {
    await page.goto(`${env.url}/console${hash}`);
    await page.getByRole('heading', { name: heading, exact: true }).waitFor();
    await page.locator('main table').first().waitFor();
    await check(heading.toLowerCase());
  }
  // Audit: filter by keyboard, then open one request's chain.
  await page.goto(`${env.url}/console#/audit`);
  await page.getByRole('heading', { name: 'Audit', exact: true }).waitFor();
  await tabTo(page, (e) => e.tag === 'input' && /Event type/.test(e.name));
  await page.keyboard.type('model_call');
  await page.keyboard.press('Enter');
  await page.waitForURL(/type=model_call/);
  // The filtered page is shown once the script moves focus to main. Polled from here: a waitForFunction
  // that is not true at once polls with a string, which the console's CSP refuses (no 'unsafe-eval').
  for (let i = 0; (await page.evaluate('document.activeElement && document.activeElement.id')) !== 'main'; i++) {
    assert.ok(i < 200, 'the filtered audit page never took focus');
    await new Promise((r) => setTimeout(r, 50));
  }
  await tabTo(page, (e) => e.tag === 'a' && /^req_/.test(e.name));
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: /^Request req_/ }).waitFor();
  await check('request');
  await ctx.close();
  assert.deepEqual(problems, []);
});
