// The admin API over the evidence: audit queries and one request's chain, behind the admin token;
// keys made through it are admin events naming the admin token as the actor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import type { AuditEvent } from '../src/audit/event.ts';
import { refusalBudget, REFUSALS_RECORDED } from '../src/console/auth.ts';
import { until } from './helpers/e2e.ts';

const TOKEN = 'admin-token-for-tests-0123456789';
let gw: TestGateway;
before(async () => {
  gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Model', 'two', { targets: [{ provider: 'demo', model: 'd' }] }),
    ...agentDocs(['one']),
  ), { AAM_ADMIN_TOKEN: TOKEN });
});
after(async () => { await gw?.close(); });

const admin = (path: string, init: RequestInit = {}, token = TOKEN) =>
  fetch(`${gw.url}/admin/v1${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) } });

/** Recorded break-glass refusals, newest first. */
async function refusals(): Promise<AuditEvent[]> {
  return ((await (await admin('/audit?type=admin&limit=500')).json()) as { data: AuditEvent[] }).data.filter((e) => e.admin?.action === 'admin_token_refused');
}

async function chat(key: string, model: string): Promise<{ status: number; requestId: string }> {
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) });
  await r.text();
  return { status: r.status, requestId: r.headers.get('x-request-id') ?? '' };
}

test('audit queries need the admin token (missing, wrong and agent keys are refused)', async () => {
  const key = gw.key('tester');
  for (const [what, token] of [['no token', ''], ['wrong token', 'admin-token-for-tests-0123456780'], ['agent key', key]] as const) {
    const r = await fetch(`${gw.url}/admin/v1/audit`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    assert.equal(r.status, 401, what);
    assert.match(await r.text(), /admin/);
  }
});

test('wrong AAM_ADMIN_TOKEN attempts (admin API Bearer, console sign-in form) are admin events, at most 10 a minute; agent keys and missing tokens are not', async () => {
  const before = await refusals();
  const wrong = (i: number) => `not-the-admin-token-${i}-0123456789abcdef`;
  const api = await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${wrong(0)}` } });
  assert.equal(api.status, 401);
  const form = await fetch(`${gw.url}/console/token-login`, { method: 'POST', redirect: 'manual', headers: { origin: gw.url, 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${wrong(1)}` });
  assert.equal(form.status, 401);
  await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${gw.key('tester')}` } });
  await fetch(`${gw.url}/admin/v1/keys`);
  let two: AuditEvent[] = [];
  await until(async () => (two = await refusals()).length >= before.length + 2, 10_000, 'two refusals on record');
  const fresh = two.slice(0, two.length - before.length).reverse();
  assert.deepEqual(fresh.map((e) => [e.admin?.target, e.admin?.actor, e.outcome?.status]), [['admin_api', 'unauthenticated', 401], ['console', 'unauthenticated', 401]]);
  assert.match(String(fresh[0].detail?.from), /127\.0\.0\.1/);
  assert.ok(!JSON.stringify(fresh).includes(wrong(0)) && !JSON.stringify(fresh).includes(wrong(1)), 'the guess itself is never recorded');
  // A burst: refused every time, never more than REFUSALS_RECORDED events a minute.
  for (let i = 0; i < 25; i++) assert.equal((await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${wrong(i + 2)}` } })).status, 401);
  await new Promise((r) => setTimeout(r, 500));
  // (The first test's wrong token, in the same minute, is one of them.)
  assert.equal((await refusals()).length, REFUSALS_RECORDED, 'the burst is capped');
});

test('refusalBudget: a fixed window of N recorded refusals; the next recorded one carries the count left unrecorded', () => {
  const take = refusalBudget(2, 1000);
  assert.deepEqual([take(0), take(10), take(20), take(30)], [0, 0, null, null]);
  assert.deepEqual([take(1000), take(1001), take(1002)], [2, 0, null]);
  assert.equal(take(5000), 1);
});

test('GET /admin/v1/audit filters by decision, agent and request; /audit/requests/{id} is one request\'s chain', async () => {
  const created = await admin('/keys', { method: 'POST', body: JSON.stringify({ agent: 'tester' }) });
  assert.equal(created.status, 201);
  const { key, id } = await created.json() as { key: string; id: string };
  const allowed = await chat(key, 'one');
  const denied = await chat(key, 'two');
  assert.deepEqual([allowed.status, denied.status], [200, 403]);

  const denies = (await (await admin('/audit?decision=deny&agent=tester')).json()) as { data: AuditEvent[] };
  assert.deepEqual(denies.data.map((e) => e.request_id), [denied.requestId], 'only the denied request');
  assert.equal(denies.data[0].policy?.decision, 'deny');

  const byId = (await (await admin(`/audit?request_id=${allowed.requestId}`)).json()) as { data: AuditEvent[] };
  assert.deepEqual(byId.data.map((e) => e.type), ['model_call']);
  assert.equal(byId.data[0].identity?.key_id, id);

  const chain = (await (await admin(`/audit/requests/${denied.requestId}`)).json()) as { request_id: string; data: AuditEvent[] };
  assert.equal(chain.request_id, denied.requestId);
  assert.deepEqual(chain.data.map((e) => e.type), ['decision']);
  assert.ok(typeof chain.data[0].hash === 'string' && typeof chain.data[0].seq === 'number', 'events come with their chain fields');

  // The key made through the admin API is evidence too, with the admin token as the actor.
  const keys = (await (await admin('/audit?type=admin&limit=50')).json()) as { data: AuditEvent[] };
  const made = keys.data.find((e) => e.admin?.action === 'key_created' && e.admin?.target === id);
  assert.equal(made?.admin?.actor, 'admin'); // DESIGN.md: break-glass is recorded as `admin`
  assert.ok(!JSON.stringify(keys).includes(key), 'the key secret is never in the trail');

  const bad = await admin('/audit?since=yesterday-ish');
  assert.equal(bad.status, 400);
});

test('GET /admin/v1/audit pages newest first: next_before of a full page gives the next one, with the same filters; nothing repeats or is skipped', async () => {
  const key = gw.key('tester');
  for (let i = 0; i < 60; i++) assert.equal((await chat(key, 'one')).status, 200);
  const all = ((await (await admin('/audit?type=model_call&limit=1000')).json()) as { data: AuditEvent[]; next_before: string | null });
  assert.ok(all.data.length >= 60);
  assert.equal(all.next_before, null, 'the whole list fits: no next page');
  const seen: number[] = [];
  let before: string | null = null;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 10);
    const page = (await (await admin(`/audit?type=model_call&limit=25${before ? `&before=${before}` : ''}`)).json()) as { data: AuditEvent[]; next_before: string | null };
    assert.ok(page.data.every((e) => e.type === 'model_call'), 'the filter holds on every page');
    seen.push(...page.data.map((e) => e.seq));
    // A call made between two pages is newer than both: it shows up on none of the older pages.
    if (pages === 0) assert.equal((await chat(key, 'one')).status, 200);
    before = page.next_before;
    if (!before) break;
  }
  assert.deepEqual(seen, all.data.map((e) => e.seq), 'the pages are the whole list, in order');
  for (const bad of ['nope', Buffer.from('["x"]').toString('base64url'), Buffer.from('[1,2]').toString('base64url')]) {
    const r = await admin(`/audit?before=${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match(await r.text(), /before: pass the next_before value/);
  }
});
