// Rotating a key over the admin API (what the console and scripts call): grace_seconds is checked as
// the CLI's --grace is (one rule): a number from 0 to a year. A string ("60") or an unreadable body
// used to rotate silently with the default hour, a negative or huge number was taken as given.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { graceProblem, keyNameProblem, MAX_GRACE_SECONDS, MAX_KEY_NAME } from '../src/store/key-secrets.ts';

const TOKEN = 'admin-key-rotate-token-0123456789abcdefgh';
let gw: TestGateway;
before(async () => { gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), ...agentDocs(['m'])), { AAM_ADMIN_TOKEN: TOKEN }); });
after(async () => { await gw?.close(); });

const admin = (path: string, body?: string) => fetch(`${gw.url}/admin/v1${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body });

test('admin API key rotation: a grace that is not 0..1 year seconds is a 400 naming grace_seconds, and the key is not rotated', async () => {
  const made = await (await admin('/keys', JSON.stringify({ agent: 'tester' }))).json() as { id: string; key: string };
  for (const body of ['{"grace_seconds":"60"}', '{"grace_seconds":-1}', `{"grace_seconds":${MAX_GRACE_SECONDS + 1}}`, '{"grace_seconds":1e300}', '{"grace_seconds":null}', '{not json']) {
    const r = await admin(`/keys/${made.id}/rotate`, body);
    const text = await r.text();
    assert.equal(r.status, 400, `${body}: ${text}`);
    if (body !== '{not json') assert.match(text, /grace_seconds must be a number of seconds from 0/);
  }
  const keys = await (await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as { data: Array<{ id: string; secrets: number }> };
  assert.equal(keys.data.find((k) => k.id === made.id)?.secrets, 1, 'no refused request rotated the key');
  const ok = await admin(`/keys/${made.id}/rotate`, '{"grace_seconds":0}');
  assert.equal(ok.status, 200);
  assert.equal(((await ok.json()) as { previous_valid_for_seconds: number }).previous_valid_for_seconds, 0);
  assert.equal((await admin(`/keys/${made.id}/rotate`)).status, 200, 'no body: the default hour');
});

test('the grace rule the CLI and the admin API share', () => {
  for (const ok of [0, 1, 3600, MAX_GRACE_SECONDS]) assert.equal(graceProblem(ok), undefined, String(ok));
  for (const bad of [-1, NaN, Infinity, MAX_GRACE_SECONDS + 1, '60', null]) assert.ok(graceProblem(bad), String(bad));
});

test('admin API key creation: a name that is not 1 to 100 printable characters is a 400 naming name, and no key is made (5,000 characters were taken)', async () => {
  const count = async () => ((await (await fetch(`${gw.url}/admin/v1/keys`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { data: unknown[] }).data.length;
  const before = await count();
  for (const name of ['x'.repeat(5000), 'x'.repeat(MAX_KEY_NAME + 1), '', 'two\nlines', 42]) {
    const r = await admin('/keys', JSON.stringify({ agent: 'tester', name }));
    const text = await r.text();
    assert.equal(r.status, 400, `${String(name).slice(0, 20)}: ${text}`);
    assert.match(text, /name must/);
  }
  assert.equal(await count(), before, 'no refused request made a key');
  const ok = await admin('/keys', JSON.stringify({ agent: 'tester', name: 'n'.repeat(MAX_KEY_NAME) }));
  assert.equal(ok.status, 201);
});

test('the key name rule the CLI and the admin API share', () => {
  for (const ok of ['ci', 'payments bot (prod)', 'é'.repeat(MAX_KEY_NAME)]) assert.equal(keyNameProblem(ok), undefined, ok);
  for (const bad of ['', 'x'.repeat(MAX_KEY_NAME + 1), 'a\tb', 'a\u007fb', 7, null]) assert.ok(keyNameProblem(bad), String(bad));
});
