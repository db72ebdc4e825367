// Held calls tell people and expire: a new held call POSTs a signed, Slack-compatible message with a
// link to the console (never the arguments), a retry of the same held call does not notify again,
// and an undecided approval expires after AAM_APPROVAL_TTL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { startTestGateway, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { consoleConfig, ADMIN_TOKEN } from './helpers/console-setup.ts';

const HOOK_SECRET = 'approval-hook-secret-0123456789';
let upstream: LocalServer;
let hook: LocalServer;
let gw: TestGateway;
const received: Array<{ body: string; signature: string }> = [];

before(async () => {
  upstream = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); });
  hook = await localServer((req, res, body) => { received.push({ body, signature: String(req.headers['x-aam-signature']) }); res.writeHead(200); res.end('ok'); });
  gw = await startTestGateway(consoleConfig(upstream.url), {
    AAM_ADMIN_TOKEN: ADMIN_TOKEN, TEST_CONSOLE_SF_TOKEN: 'sf-token-value-0123456789', AAM_PUBLIC_URL: 'https://aam.example.com',
    AAM_APPROVAL_WEBHOOK_URL: hook.url, AAM_APPROVAL_WEBHOOK_SECRET: HOOK_SECRET, AAM_APPROVAL_TTL: '8s',
  });
});
after(async () => { await gw?.close(); await hook?.close(); await upstream?.close(); });

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a held call notifies the webhook once (signed, with a console link, without arguments); undecided, it expires after AAM_APPROVAL_TTL', async () => {
  const key = gw.key('finance-analyst');
  const call = (id: string) => fetch(`${gw.url}/tools/salesforce/delete`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, note: 'ask carol@example.net' }) });
  const first = await call('a1');
  assert.equal(first.status, 403);
  const firstId = ((await first.json()) as { error: { approval_id: string } }).error.approval_id;
  const msg = await until('the first notification', () => received[0]);
  assert.equal(msg.signature, `sha256=${createHmac('sha256', HOOK_SECRET).update(msg.body).digest('hex')}`, 'signed like the audit webhook');
  const m = JSON.parse(msg.body) as { text: string; approval: { id: string; agent: string }; console_url: string };
  assert.equal(m.approval.id, firstId);
  assert.match(m.text, /Agent finance-analyst is waiting for approval to delete on salesforce\.accounts/);
  assert.equal(m.console_url, 'https://aam.example.com/console#/approvals');
  assert.ok(!msg.body.includes('carol@example.net') && !msg.body.includes('note'), 'the arguments are not sent');

  assert.equal((await call('a1')).status, 403, 'the retry is still held');
  const second = await call('a2'); // another call: a new approval, a new message
  const secondId = ((await second.json()) as { error: { approval_id: string } }).error.approval_id;
  await until('the second notification', () => received[1]);
  assert.deepEqual(received.map((r) => (JSON.parse(r.body) as { approval: { id: string } }).approval.id), [firstId, secondId], 'the retry of a pending call did not notify again');

  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  await until('the first approval to expire', async () => {
    const list = (await (await fetch(`${gw.url}/admin/v1/approvals`, { headers: admin })).json()) as { data: Array<{ id: string; status: string }> };
    return list.data.find((a) => a.id === firstId && a.status === 'expired');
  });
  const late = await fetch(`${gw.url}/admin/v1/approvals/${firstId}/approve`, { method: 'POST', headers: admin });
  assert.equal(late.status, 404, 'an expired approval cannot be granted');
  const expired = (await (await fetch(`${gw.url}/admin/v1/approvals?status=expired`, { headers: admin })).json()) as { data: Array<{ id: string }> };
  assert.ok(expired.data.some((a) => a.id === firstId), 'listed under its status');
  // A misspelt status is named (before: 200 with an empty list, as if nothing were held).
  const typo = await fetch(`${gw.url}/admin/v1/approvals?status=expierd`, { headers: admin });
  assert.equal(typo.status, 400);
  assert.equal(((await typo.json()) as { error: { message: string } }).error.message, 'status must be one of pending, approved, rejected, used, expired, not "expierd"');
});
