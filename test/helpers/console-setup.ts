// A gateway with single sign-on against the in-process OpenID Provider, role bindings for five
// people, an HTTP tool whose deletes need approval, and an agent with a hostile name.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type Running } from '../../src/cli/serve.ts';
import { parseConfigTexts } from '../../src/config/load.ts';
import { doc, yaml } from './gateway.ts';
import { freePort, localServer, type LocalServer } from './e2e.ts';
import { startTestIdp, type TestIdp, type TestUser } from './oidc-idp.ts';

export const ADMIN_TOKEN = 'console-break-glass-token-0123456789abcdef';
export const TOOL_SECRET = 'sf-secret-value-never-in-a-page-9f8e7d';

/** login -> email, groups; roles come from the RoleBindings below. */
export const USERS = {
  alice: { email: 'alice@example.com', groups: ['security'] }, // admin (by email)
  olga: { email: 'olga@example.com', groups: ['platform'] }, // operator (by group)
  april: { email: 'april@example.com', groups: ['everyone'] }, // approver (by email)
  victor: { email: 'victor@example.com', groups: ['everyone'] }, // viewer (by group)
  mallory: { email: 'mallory@example.com', groups: ['contractors'] }, // no binding
};

export function consoleConfig(upstream: string): string {
  return yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'reasoning-high', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Model', 'summarization', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Credential', 'sf-token', { env: 'TEST_CONSOLE_SF_TOKEN' }),
    doc('HttpTool', 'salesforce', {
      baseUrl: upstream, credential: 'sf-token', resource: 'salesforce.accounts',
      actions: { read: { method: 'GET', path: '/accounts/{id}' }, delete: { method: 'DELETE', path: '/accounts/{id}' } },
    }),
    doc('Agent', 'finance-analyst', { workload: 'spiffe://prod/agent/finance-analyst', owner: 'jane@example.com', team: 'finance', environment: 'prod', deployment: 'analyst-v3' }),
    doc('AgentPolicy', 'finance-analyst-readonly', {
      identity: { workload: 'spiffe://prod/agent/finance-analyst' },
      models: { allow: ['reasoning-high'], budget: { daily_usd: 75 } },
      tools: [
        { resource: 'salesforce.accounts', actions: ['read'], deny: ['export'] },
        { resource: 'salesforce.accounts', actions: ['delete'], approval: 'required' },
      ],
    }),
    // An agent whose metadata is markup: the console must show it as text.
    doc('Agent', 'xss', { workload: 'spiffe://prod/agent/xss', owner: '<script>window.__pwned=1</script>', team: '<img src=x onerror=window.__pwned=2>' }),
    doc('RoleBinding', 'admins', { role: 'admin', subjects: [{ email: 'alice@example.com' }] }),
    doc('RoleBinding', 'platform', { role: 'operator', subjects: [{ group: 'platform' }] }),
    doc('RoleBinding', 'approvers', { role: 'approver', subjects: [{ email: 'APRIL@example.com' }] }),
    doc('RoleBinding', 'everyone', { role: 'viewer', subjects: [{ group: 'everyone' }] }),
  );
}

export interface ConsoleEnv {
  url: string;
  idp: TestIdp;
  g: Running;
  upstream: LocalServer;
  configPath: string;
  close(): Promise<void>;
}

/** users: the IdP's people (USERS unless given; a test may change their groups as the IdP would). */
export async function startConsoleEnv(o: { idTokenTtlS?: number; env?: Record<string, string>; refreshTokens?: boolean; users?: Record<string, TestUser> } = {}): Promise<ConsoleEnv> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const upstream = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
  const idp = await startTestIdp({ redirectUri: `${url}/console/callback`, users: o.users ?? USERS, idTokenTtlS: o.idTokenTtlS, refreshTokens: o.refreshTokens });
  const dir = mkdtempSync(join(tmpdir(), 'aam-console-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, consoleConfig(upstream.url));
  let g: Running;
  try {
    g = await startGateway({
      configPath, dataDir: join(dir, 'data'), port, host: '127.0.0.1',
      env: {
        ...process.env, AAM_LOG_LEVEL: 'error', AAM_ADMIN_TOKEN: ADMIN_TOKEN, TEST_CONSOLE_SF_TOKEN: TOOL_SECRET, AAM_PUBLIC_URL: url,
        AAM_OIDC_ISSUER: idp.issuer, AAM_OIDC_CLIENT_ID: idp.clientId, AAM_OIDC_CLIENT_SECRET: idp.clientSecret, ...o.env,
      },
      parseConfig: parseConfigTexts, // validated in this thread: no config thread per start and reload
    });
  } catch (e) {
    // Nothing left listening: a failed start must fail the file, not hang it.
    await idp.close(); await upstream.close(); rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    url, idp, g, upstream, configPath,
    close: async () => { await g.close(); await idp.close(); await upstream.close(); rmSync(dir, { recursive: true, force: true }); },
  };
}

/** Debian's chromium (playwright-core drives it); the browser tests skip, saying why, when it is missing. */
export const CHROMIUM = '/usr/bin/chromium';
export const chromiumMissing: string | false = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install chromium)`;

/** A headless chromium with a throwaway disk cache; close() also removes the cache. */
export async function launchChromium(prefix: string): Promise<{ browser: Browser; close(): Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), prefix));
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true, timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--disk-cache-dir=${profile}`],
  });
  return { browser, close: async () => { await browser.close(); rmSync(profile, { recursive: true, force: true }); } };
}

/** Sign in at the console through the test IdP's login form, as a person does, and wait for the console. */
export async function signInWithBrowser(page: Page, url: string, login: string): Promise<void> {
  await page.goto(`${url}/console`);
  await page.getByRole('link', { name: 'Sign in with single sign-on' }).click();
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any');
  await page.locator('button[type="submit"]').click();
  await page.waitForURL(`${url}/console`);
}
