// Fleet mode, Responses API: two replicas on one real PostgreSQL + Redis, each with its own data
// dir. A response created on one replica is continued (previous_response_id), referenced
// (item_reference), read and deleted on the other; another agent gets 404 on both; expiry and a
// PostgreSQL that cannot answer (503 store_unavailable, never "not found").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import postgres from 'postgres';
import { fleetStore, type FleetTestStore } from './helpers/fleet.ts';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { fleetResponseStore } from '../src/store/fleet-responses.ts';
import { migrate } from '../src/store/postgres.ts';

let store: FleetTestStore;
let fake: FakeUpstream;
let dir: string;
const replicas: Running[] = [];
const keys: Record<string, string> = {};

before(async () => {
  store = await fleetStore();
  fake = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), 'aam-fleet-responses-'));
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }] }),
    doc('Model', 'loop', { targets: [{ provider: 'oai', model: 'tool-loop' }] }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('Agent', 'b', { workload: 'spiffe://test/agent/b' }),
    doc('AgentPolicy', 'p', { identity: { workload: 'spiffe://test/agent/a' }, models: { allow: ['gpt', 'loop'] } }),
    doc('AgentPolicy', 'q', { identity: { workload: 'spiffe://test/agent/b' }, models: { allow: ['gpt', 'loop'] } }),
  ));
  for (const i of [0, 1]) {
    replicas.push(await startGateway({ configPath, dataDir: join(dir, `data-${i}`), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_LOG_LEVEL: 'error' } }));
  }
  keys.a = (await replicas[0].rt.keyBook.create('a')).secret;
  keys.b = (await replicas[0].rt.keyBook.create('b')).secret;
});
after(async () => {
  for (const r of replicas) await r.close();
  await fake?.close();
  await store?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const on = (i: number, agent = 'a') => new OpenAI({ apiKey: keys[agent], baseURL: `http://127.0.0.1:${replicas[i].port}/v1`, maxRetries: 0 });
const WEATHER = { type: 'function' as const, name: 'get_weather', strict: false, parameters: { type: 'object', properties: { location: { type: 'string' } } } };

/** A key created on replica 0 reaches replica 1 within about a second (the fleet's key push). */
async function keyEverywhere(): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${replicas[1].port}/v1/models`, { headers: { authorization: `Bearer ${keys.b}` } });
    if (r.status === 200) return;
    if (Date.now() > deadline) throw new Error(`replica 1 does not know the new keys (HTTP ${r.status})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('fleet: a conversation started on one replica continues on another (previous_response_id, item_reference, GET, DELETE)', async () => {
  await keyEverywhere();
  const first = await on(0).responses.create({ model: 'loop', input: 'Weather in Paris?', tools: [WEATHER] });
  const call = first.output.find((o) => o.type === 'function_call');
  assert.ok(call && call.type === 'function_call' && call.id);
  // Streamed on replica 1, chained to replica 0's response.
  const second = await on(1).responses.stream({ model: 'loop', previous_response_id: first.id, tools: [WEATHER], input: [{ type: 'function_call_output', call_id: call.call_id, output: 'fog' }] }).finalResponse();
  assert.equal(second.output_text, 'final: the tool said fog');
  // Read back on replica 0 right away (acknowledged only once stored), and its input items.
  assert.equal((await on(0).responses.retrieve(second.id)).output_text, 'final: the tool said fog');
  const items = await on(0).responses.inputItems.list(second.id);
  assert.equal(items.data.length, 1);
  // An item of replica 0's response, referenced on replica 1.
  const ref = await on(1).responses.create({ model: 'loop', tools: [WEATHER], input: [{ role: 'user', content: 'Weather?' }, { type: 'item_reference', id: call.id }, { type: 'function_call_output', call_id: call.call_id, output: 'sun' }] });
  assert.equal(ref.output_text, 'final: the tool said sun');
  // Another agent: 404 on every replica, like an unknown id.
  for (const i of [0, 1]) {
    await assert.rejects(on(i, 'b').responses.retrieve(first.id), OpenAI.NotFoundError);
    await assert.rejects(on(i, 'b').responses.create({ model: 'gpt', previous_response_id: first.id, input: 'x' }), OpenAI.NotFoundError);
  }
  await on(1).responses.delete(first.id);
  await assert.rejects(on(0).responses.retrieve(first.id), OpenAI.NotFoundError);
});

test('fleet response store: per agent, expiring, purged; a database that cannot answer is StoreUnavailable, not "not found"', async () => {
  const sql = postgres(store.databaseUrl, { max: 2, onnotice: () => {} });
  try {
    await migrate(sql);
    let t = 5_000_000;
    const s = fleetResponseStore(sql, () => t);
    await s.put({ id: 'resp_unit_1', agent: 'A', previousId: null, input: '[]', response: '{"output":[]}', expiresAt: t + 1000 }, ['msg_unit_1', 'msg_unit_1']);
    assert.equal((await s.get('A', 'resp_unit_1'))?.expiresAt, t + 1000);
    assert.equal(await s.get('B', 'resp_unit_1'), null);
    assert.equal(await s.itemOwner('A', 'msg_unit_1'), 'resp_unit_1');
    assert.equal(await s.itemOwner('B', 'msg_unit_1'), null);
    assert.equal(await s.delete('B', 'resp_unit_1'), false);
    t += 1000;
    assert.equal(await s.get('A', 'resp_unit_1'), null, 'expired');
    t += 120_000;
    await s.put({ id: 'resp_unit_2', agent: 'A', previousId: null, input: '[]', response: '{}', expiresAt: t + 1000 }, []);
    const [n] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM responses WHERE id LIKE 'resp_unit_%'`;
    assert.equal(n.n, 1, 'expired rows are purged (their items with them)');
    const [m] = await sql<Array<{ n: number }>>`SELECT count(*)::int AS n FROM response_items WHERE item_id = 'msg_unit_1'`;
    assert.equal(m.n, 0);
  } finally {
    await sql.end();
  }
  const dead = postgres('postgres://aam:x@127.0.0.1:1/none', { max: 1, connect_timeout: 2, onnotice: () => {} });
  try {
    const s = fleetResponseStore(dead);
    await assert.rejects(s.get('A', 'resp_x'), (e: unknown) => (e as Error).name === 'StoreUnavailable');
    await assert.rejects(s.put({ id: 'resp_x', agent: 'A', previousId: null, input: '[]', response: '{}', expiresAt: 1 }, []), (e: unknown) => (e as Error).name === 'StoreUnavailable');
  } finally {
    await dead.end({ timeout: 1 });
  }
});
