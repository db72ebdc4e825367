// "Identity methods seen" per agent (console Agents page, GET /admin/v1/agents): which ways each
// agent proved who it is and when last, kept off the request path (a per-agent array, written to
// the store by a timer) and read back from the store. Fleet mode is in console-fleet.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import { IdentitySeen, sqliteSeenBackend, type SeenBackend, type SeenRow } from '../src/identity/seen.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

const TOKEN = 'console-identity-seen-token-0123456789abcdef';

test('IdentitySeen: newest time per agent and method wins in the store; unknown methods and unregistered identities are not kept', async () => {
  const db = new DatabaseSync(':memory:');
  const a = new IdentitySeen(sqliteSeenBackend(db));
  const b = new IdentitySeen(sqliteSeenBackend(db)); // a second process on the same store
  a.note('billing', 'virtual_key', 2000);
  b.note('billing', 'virtual_key', 1000); // older: must not move the stored time back
  a.note('billing', 'jwt_svid', 1500);
  a.note('', 'virtual_key', 3000);
  a.note('billing', 'password', 3000);
  await b.flush();
  const t = await a.table();
  assert.deepEqual(t.get('billing'), { virtual_key: new Date(2000).toISOString(), jwt_svid: new Date(1500).toISOString() });
  assert.equal(t.size, 1);
  db.close();
});

test('IdentitySeen: a failed write is retried at the next flush; an unchanged map writes nothing', async () => {
  const written: SeenRow[][] = [];
  let fail = true;
  const backend: SeenBackend = {
    async write(rows) { if (fail) throw new Error('store down'); written.push([...rows]); },
    async read() { return written.flat(); },
  };
  const errors: unknown[] = [];
  const s = new IdentitySeen(backend, (e) => errors.push(e));
  s.note('billing', 'x509_svid', 5000);
  await s.flush();
  assert.equal(errors.length, 1);
  fail = false;
  await s.flush();
  assert.deepEqual(written, [[{ agent: 'billing', method: 'x509_svid', at: 5000 }]]);
  await s.flush();
  assert.equal(written.length, 1, 'nothing new, nothing written');
});

let gw: TestGateway;
before(async () => {
  gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Agent', 'keyed', { workload: 'spiffe://test/agent/keyed' }),
    doc('Agent', 'idle', { workload: 'spiffe://test/agent/idle' }),
    doc('AgentPolicy', 'all', { identity: { workload: 'spiffe://test/agent/*' }, models: { allow: ['m'] } }),
  ), { AAM_ADMIN_TOKEN: TOKEN });
});
after(async () => { await gw?.close(); });

const chat = (cred: string) => fetch(`${gw.url}/v1/chat/completions`, {
  method: 'POST', headers: { authorization: `Bearer ${cred}`, 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
});

test('GET /admin/v1/agents names the identity methods each agent used and when last; an idle agent has none', async () => {
  const key = gw.key('keyed');
  const t0 = Date.now();
  assert.equal((await chat(key)).status, 200);
  const tr = await fetch(`${gw.url}/identity/v1/token`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"ttl":"5m"}' });
  assert.equal(tr.status, 200);
  assert.equal((await chat(((await tr.json()) as { access_token: string }).access_token)).status, 200);
  assert.equal((await chat('aam_not-a-key-at-all-000000000000000000')).status, 401);
  const r = await fetch(`${gw.url}/admin/v1/agents`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  const rows = ((await r.json()) as { data: Array<{ name: string; identity_methods: Record<string, string> }> }).data;
  const keyed = rows.find((a) => a.name === 'keyed')!.identity_methods;
  assert.deepEqual(Object.keys(keyed).sort(), ['jwt_svid', 'virtual_key']);
  for (const at of Object.values(keyed)) assert.ok(Date.parse(at) >= t0 - 1000 && Date.parse(at) <= Date.now(), at);
  assert.deepEqual(rows.find((a) => a.name === 'idle')!.identity_methods, {});
  // Written to the data dir's store: a restart (or another reader) sees the same.
  const rowsInDb = gw.g.rt.db.prepare('SELECT agent, method FROM identity_seen ORDER BY method').all();
  // (The same table keeps the last activity per plane: `model` here, shown as last_activity, not as a method.)
  assert.deepEqual(rowsInDb.map((x) => `${x.agent}/${x.method}`), ['keyed/jwt_svid', 'keyed/model', 'keyed/virtual_key']);
});
