// The embedded stored-Responses write is behind the answer: put() holds the record in memory and
// the puts of a few milliseconds are written in one transaction after them. The promises still hold:
// the same agent reads its response at once (GET, previous_response_id, item_reference), another
// agent never does, held records expire like written ones, and a SIGTERM drain loses nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { openResponseStore, type StoredResponse } from '../src/store/responses.ts';
import { conversationOf, resolveReferences } from '../src/gateway/responses.ts';
import { doc, yaml, startTestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { startServeChild, heldUpstream, createKey } from './helpers/serve-child.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-resp-store-'));
after(() => rmSync(root, { recursive: true, force: true }));

const rec = (id: string, agent: string, expiresAt: number, text = id): StoredResponse => ({
  id, agent, previousId: null, input: JSON.stringify([{ type: 'message', role: 'user', content: text, id: `msg_${id}_in0` }]),
  response: JSON.stringify({ id, output: [{ type: 'message', role: 'assistant', id: `msg_${id}_out`, content: [{ type: 'output_text', text: `echo: ${text}` }] }] }), expiresAt,
});
const rowCount = (db: ReturnType<typeof openDatabase>) => (db.prepare('SELECT count(*) AS n FROM responses').get() as { n: number }).n;

test('a held put is read at once by its agent only (get, previous_response_id chain, item_reference), then written in one transaction', async () => {
  const dir = join(root, 'held');
  const db = openDatabase(dir);
  try {
    let t = 1_000_000;
    const s = openResponseStore(db, () => t);
    await s.put(rec('resp_1', 'A', t + 1000), ['msg_resp_1_in0', 'msg_resp_1_out']);
    await s.put({ ...rec('resp_2', 'A', t + 1000, 'second'), previousId: 'resp_1' }, ['msg_resp_2_in0', 'msg_resp_2_out']);
    // Same turn: nothing written yet, every read of agent A sees both.
    assert.equal(rowCount(db), 0, 'not written on the request\'s turn');
    assert.equal((await s.get('A', 'resp_2'))?.previousId, 'resp_1');
    const chain = await conversationOf(s, 'A', 'resp_2');
    assert.deepEqual(chain.items.map((it) => it.id), ['msg_resp_1_in0', 'msg_resp_1_out', 'msg_resp_2_in0', 'msg_resp_2_out']);
    assert.equal(await s.itemOwner('A', 'msg_resp_1_out'), 'resp_1');
    const refs = await resolveReferences(s, 'A', [{ type: 'item_reference', id: 'msg_resp_2_in0' }]);
    assert.equal(refs[0].content, 'second');
    // Another agent: as unknown, held or not.
    assert.equal(await s.get('B', 'resp_1'), null);
    assert.equal(await s.itemOwner('B', 'msg_resp_1_out'), null);
    await assert.rejects(conversationOf(s, 'B', 'resp_2'), /was not found/);
    await assert.rejects(resolveReferences(s, 'B', [{ type: 'item_reference', id: 'msg_resp_2_in0' }]), /not an item of a stored response of this agent/);
    // The next turn writes both (one transaction), and reads are the same from SQLite.
    await until(() => rowCount(db) === 2, 5000, 'the held puts to be written');
    assert.equal((await s.get('A', 'resp_1'))?.id, 'resp_1');
    assert.equal(await s.get('B', 'resp_1'), null);
    assert.equal(await s.itemOwner('A', 'msg_resp_2_out'), 'resp_2');
    // Held records expire like written ones.
    await s.put(rec('resp_3', 'A', t + 10), ['msg_resp_3_in0']);
    t += 10;
    assert.equal(await s.get('A', 'resp_3'), null, 'expired while held');
    assert.equal(await s.itemOwner('A', 'msg_resp_3_in0'), null);
    // Delete of a held put: written first, then deleted with its items; another agent cannot.
    await s.put(rec('resp_4', 'A', t + 1000), ['msg_resp_4_in0']);
    assert.equal(await s.delete('B', 'resp_4'), false);
    assert.equal(await s.delete('A', 'resp_4'), true);
    assert.equal(await s.get('A', 'resp_4'), null);
    assert.equal(await s.itemOwner('A', 'msg_resp_4_in0'), null);
  } finally {
    db.close();
  }
});

test('held puts of several turns are written in one transaction: once the group window ends, or in the next check phase once group.max are held', async () => {
  const dir = join(root, 'group');
  const db = openDatabase(dir);
  const turn = () => new Promise((r) => setImmediate(r));
  try {
    const t = Date.now();
    // A window no test reaches: only the size bound (or flush) writes.
    const s = openResponseStore(db, Date.now, undefined, { ms: 3_600_000, max: 3 });
    await s.put(rec('resp_g1', 'A', t + 60_000), ['msg_resp_g1_in0']);
    await turn(); await turn(); await turn();
    assert.equal(rowCount(db), 0, 'still held three turns later (within the window)');
    assert.equal((await s.get('A', 'resp_g1'))?.id, 'resp_g1', 'and read from memory by its agent');
    assert.equal(await s.get('B', 'resp_g1'), null, 'never by another');
    await s.put(rec('resp_g2', 'A', t + 60_000), ['msg_resp_g2_in0']);
    await turn();
    assert.equal(rowCount(db), 0);
    await s.put(rec('resp_g3', 'A', t + 60_000), ['msg_resp_g3_in0']);
    assert.equal(rowCount(db), 0, 'not written on the put\'s own turn, even at the size bound');
    await turn();
    assert.equal(rowCount(db), 3, 'the size bound writes all three in the next check phase');
    assert.equal(await s.itemOwner('A', 'msg_resp_g2_in0'), 'resp_g2');
    // The window: a short one writes without the bound.
    const w = openResponseStore(db, Date.now, undefined, { ms: 20, max: 256 });
    await w.put(rec('resp_g4', 'A', t + 60_000), ['msg_resp_g4_in0']);
    await turn();
    assert.equal(rowCount(db), 3, 'held past the next check phase');
    await until(() => rowCount(db) === 4, 5000, 'the window to end');
  } finally {
    db.close();
  }
});

test('flush() drains held puts now (shutdown); a put whose write fails is reported with its id', async () => {
  const dir = join(root, 'drain');
  const db = openDatabase(dir);
  const failed: string[][] = [];
  const s = openResponseStore(db, Date.now, (_e, ids) => failed.push(ids));
  await s.put(rec('resp_d1', 'A', Date.now() + 60_000), ['msg_resp_d1_in0']);
  s.flush!();
  db.close(); // in the same turn, as the runtime closes its database after the drain
  const again = openDatabase(dir);
  try {
    assert.equal(rowCount(again), 1, 'written by the drain, before the database closed');
    const s2 = openResponseStore(again);
    assert.equal((await s2.get('A', 'resp_d1'))?.id, 'resp_d1');
    assert.equal(await s2.itemOwner('A', 'msg_resp_d1_in0'), 'resp_d1');
  } finally { again.close(); }
  await s.put(rec('resp_d2', 'A', Date.now() + 60_000), []);
  s.flush!(); // its database is closed: the write fails
  assert.deepEqual(failed, [['resp_d2']]);
});

test('over HTTP: the same agent reads and chains its stored response at once; another agent gets 404 (GET, previous_response_id, item_reference, DELETE)', async () => {
  const agent = (name: string) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa' });
  const policy = (name: string) => doc('AgentPolicy', `${name}-policy`, { identity: { agent: name }, models: { allow: ['m'] } });
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }),
    agent('alice'), policy('alice'), agent('mallory'), policy('mallory')));
  try {
    const [alice, mallory] = [gw.key('alice'), gw.key('mallory')];
    const call = (key: string, method: string, path: string, body?: unknown) => fetch(`${gw.url}${path}`, {
      method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const first = await call(alice, 'POST', '/v1/responses', { model: 'm', input: 'remember the number 7' });
    assert.equal(first.status, 200, await first.clone().text());
    const { id } = await first.json() as { id: string };
    // Sent at once, together: each read must find the response whether or not it is written yet.
    const [got, chained, ref, theirs, theirChain, theirDelete] = await Promise.all([
      call(alice, 'GET', `/v1/responses/${id}`),
      call(alice, 'POST', '/v1/responses', { model: 'm', previous_response_id: id, input: 'which number?' }),
      call(alice, 'POST', '/v1/responses', { model: 'm', input: [{ type: 'item_reference', id: `msg_${id.slice(5)}_in0` }] }),
      call(mallory, 'GET', `/v1/responses/${id}`),
      call(mallory, 'POST', '/v1/responses', { model: 'm', previous_response_id: id, input: 'which number?' }),
      call(mallory, 'DELETE', `/v1/responses/${id}`),
    ]);
    assert.equal(got.status, 200, await got.clone().text());
    assert.equal((await got.json() as { id: string }).id, id);
    assert.equal(chained.status, 200, await chained.clone().text());
    assert.equal((await chained.json() as { previous_response_id: string }).previous_response_id, id);
    assert.equal(ref.status, 200, await ref.clone().text());
    for (const r of [theirs, theirChain, theirDelete]) assert.equal(r.status, 404, await r.clone().text());
    assert.equal((await call(alice, 'DELETE', `/v1/responses/${id}`)).status, 200);
    assert.equal((await call(alice, 'GET', `/v1/responses/${id}`)).status, 404);
  } finally { await gw.close(); }
});

test('ids aam gives items (input and output) have no index row: item_reference reads their response from the id; ids a client gave are indexed and win', async () => {
  // A database written before (every item id indexed) still resolves, and a held put resolves before its write.
  const db0 = openDatabase(join(root, 'derived'));
  try {
    const s = openResponseStore(db0, Date.now, undefined, { ms: 3_600_000, max: 1000 });
    const hex = '0123456789abcdef0123456789abcdef';
    db0.prepare('INSERT INTO responses (id, agent, previous_id, input, response, expires_at) VALUES (?, ?, NULL, ?, ?, ?)').run(`resp_${hex}`, 'A', '[]', '{"output":[]}', Date.now() + 60_000);
    db0.prepare('INSERT INTO response_items (agent, item_id, response_id) VALUES (?, ?, ?)').run('A', `msg_${hex}_0`, `resp_${hex}`);
    assert.equal(await s.itemOwner('A', `msg_${hex}_0`), `resp_${hex}`, 'an old index row');
    assert.equal(await s.itemOwner('A', `msg_${hex}_in0`), `resp_${hex}`, 'not indexed: read from the id');
    assert.equal(await s.itemOwner('B', `msg_${hex}_0`), null);
    assert.equal(await s.itemOwner('B', `msg_${hex}_in0`), null, 'another agent\'s');
    const held = 'fedcba9876543210fedcba9876543210';
    await s.put({ ...rec(`resp_${held}`, 'A', Date.now() + 60_000), previousId: null }, [`msg_${held}_in0`, `msg_${held}_0`]);
    assert.equal(await s.itemOwner('A', `fc_${held}_1`), `resp_${held}`, 'held, not yet written');
    assert.equal(await s.itemOwner('B', `fc_${held}_1`), null);
    s.flush!();
    assert.equal(await s.itemOwner('A', `msg_${held}_0`), `resp_${held}`, 'written');
    assert.equal((db0.prepare('SELECT count(*) AS n FROM response_items WHERE response_id = ?').get(`resp_${held}`) as { n: number }).n, 0);
    await s.put(rec(`resp_${hex}`, 'A', Date.now() - 1), []);
    s.flush!();
    assert.equal(await s.itemOwner('A', `msg_${hex}_in0`), null, 'expired');
  } finally { db0.close(); }
  const agent = (name: string) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa' });
  const policy = (name: string) => doc('AgentPolicy', `${name}-policy`, { identity: { agent: name }, models: { allow: ['m'] } });
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }),
    agent('alice'), policy('alice'), agent('mallory'), policy('mallory')));
  try {
    const [alice, mallory] = [gw.key('alice'), gw.key('mallory')];
    const create = async (key: string, input: unknown): Promise<{ status: number; body: { id: string; output_text?: string; output: Array<{ id: string; content?: Array<{ text: string }> }> } }> => {
      const r = await fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', input }) });
      return { status: r.status, body: await r.json() as never };
    };
    const said = (b: { output: Array<{ content?: Array<{ text: string }> }> }) => /You said: "(.*)"/.exec(b.output[0].content?.[0].text ?? '')?.[1];
    const a = await create(alice, [{ role: 'user', content: 'first' }, { role: 'user', content: 'second' }]);
    assert.equal(a.status, 200);
    const hex = a.body.id.slice(5);
    // A later response sends A's second input item back under its id, changed: that copy is indexed (the client gave the id).
    const b = await create(alice, [{ type: 'message', role: 'user', content: 'second, changed', id: `msg_${hex}_in1` }]);
    assert.equal(b.status, 200);
    const db = openDatabase(gw.dataDir);
    try {
      await until(() => (db.prepare('SELECT count(*) AS n FROM responses WHERE id IN (?, ?)').get(a.body.id, b.body.id) as { n: number }).n === 2, 5000, 'both responses written');
      const items = (id: string) => (db.prepare('SELECT item_id FROM response_items WHERE response_id = ?').all(id) as Array<{ item_id: string }>).map((r) => r.item_id);
      assert.deepEqual(items(a.body.id), [], 'the ids aam gave (2 input items, 1 output item): no index row');
      assert.deepEqual(items(b.body.id), [`msg_${hex}_in1`], 'the id the client gave: indexed');
    } finally { db.close(); }
    const ref = async (key: string, id: string) => create(key, [{ type: 'item_reference', id }]);
    const in0 = await ref(alice, `msg_${hex}_in0`);
    assert.equal(in0.status, 200);
    assert.equal(said(in0.body), 'first', 'an input item of A, read from A');
    const in1 = await ref(alice, `msg_${hex}_in1`);
    assert.equal(said(in1.body), 'second, changed', 'the indexed, later copy (as before: the latest holder)');
    const out0 = await ref(alice, a.body.output[0].id);
    assert.equal(out0.status, 200, 'an output item of A');
    for (const [key, id] of [[alice, `msg_${hex}_in2`], [alice, `msg_${hex}_5`], [alice, `fc_${hex}_0`], [mallory, `msg_${hex}_in0`], [mallory, a.body.output[0].id], [alice, 'msg_0123abcd_in0']]) {
      const r = await ref(key, id);
      assert.equal(r.status, 404, `${id}: not an item of a stored response of this agent`);
    }
  } finally { await gw.close(); }
});

test('the runtime drains held puts when it closes (the database is closed in the same turn as the last put)', async () => {
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' })));
  const rt = gw.g.rt;
  await rt.responses.put(rec('resp_close', 'A', Date.now() + 60_000), ['msg_resp_close_in0']);
  await rt.close(); // what SIGTERM's drain ends with, after the listener has drained
  const db = openDatabase(gw.dataDir);
  try {
    const s = openResponseStore(db);
    assert.equal((await s.get('A', 'resp_close'))?.id, 'resp_close', 'written before the database closed');
    assert.equal(await s.itemOwner('A', 'msg_resp_close_in0'), 'resp_close');
  } finally {
    db.close();
    await gw.close(); // the runtime is closed already: the gateway's close still closes the rest (the audit writer too)
  }
});

test('SIGTERM while stored Responses are in flight: each is answered, then readable by its agent after a restart (nothing lost)', async () => {
  const dir = join(root, 'sigterm');
  mkdirSync(dir, { recursive: true });
  const up = await heldUpstream();
  const config = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(config, yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'slow', { targets: [{ provider: 'up', model: 'held' }] }),
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' }),
    doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow: ['slow'] } }),
  ));
  const key = await createKey(config, data);
  const N = 4;
  const gw = await startServeChild({ config, data });
  let ids: string[];
  try {
    const inFlight = Array.from({ length: N }, (_, i) => fetch(`${gw.url}/v1/responses`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', input: `keep me ${i}` }), // store: true is the default
    }).then(async (r) => ({ status: r.status, body: await r.json() as { id: string; store: boolean } })));
    await until(() => up.received === N, 15_000, 'every request to reach the upstream');
    gw.proc.kill('SIGTERM');
    up.release(); // all answers arrive together: their puts are held while the drain runs
    const answers = await Promise.all(inFlight);
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
    ids = answers.map((a) => a.body.id);
    assert.equal(await gw.exited, 0, gw.stderr());
  } finally { await gw.stop(); }
  const again = await startServeChild({ config, data });
  try {
    for (const id of ids) {
      const r = await fetch(`${again.url}/v1/responses/${id}`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(r.status, 200, `${id}: ${await r.clone().text()}`);
      assert.equal((await r.json() as { id: string }).id, id);
    }
    const chained = await fetch(`${again.url}/v1/responses`, {
      method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slow', previous_response_id: ids[0], input: 'and then?' }),
    });
    assert.equal(chained.status, 200, await chained.clone().text());
    again.proc.kill('SIGTERM');
    assert.equal(await again.exited, 0, again.stderr());
  } finally { await again.stop(); await up.close(); }
});
