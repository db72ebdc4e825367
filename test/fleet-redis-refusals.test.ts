// Fleet mode, Redis down, every plane: a request refused because the fleet store cannot check it
// (limits, MCP sessions, A2A task owners) is answered 503 store_unavailable naming Redis, counted
// (aam_limited_total{code="store_unavailable"}, by agent) and written to the audit trail with its
// identity and outcome (PostgreSQL is up), whichever plane it came on: a plane that answers its
// refusal around the access path's one refusal step fails here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { fleetStore, privateRedis, type FleetTestStore, type PrivateRedis } from './helpers/fleet.ts';
import { localServer, until, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient } from './helpers/mcp.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { startGateway } from '../src/cli/serve.ts';
import { startHttpFixture, STDIO_TIMEOUT_MS, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';

const MCP = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const MODERN_META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, 'io.modelcontextprotocol/clientInfo': { name: 't', version: '1' } };

let store: FleetTestStore;
let redis: PrivateRedis;
let mcp: RunningFixture;
let api: LocalServer;
let agents: TestAgents;
let sql: postgres.Sql;
let gw: Awaited<ReturnType<typeof startGateway>>;
let url = '';
let key = '';
let loneKey = '';
let helperKey = '';

before(async () => {
  redis = await privateRedis();
  store = await fleetStore(redis.url);
  mcp = await startHttpFixture();
  api = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'); });
  agents = await startTestAgents([{ name: 'helper', skills: ['help'], aamUrl: () => url, key: () => helperKey }]);
  sql = postgres(store.databaseUrl, { max: 1, onnotice: () => {} });
  const d = tempDir('aam-fleet-redis-refusals-');
  const config = join(d, 'aam.yaml');
  writeFileSync(config, yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'small', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
    doc('McpServer', 'web', { transport: 'streamable-http', url: mcp.url, resource: 'salesforce.accounts', timeout_ms: STDIO_TIMEOUT_MS, tools: { read_account: { action: 'read' } } }),
    doc('HttpTool', 'mail', { baseUrl: api.url, resource: 'mail', actions: { list: { method: 'GET', path: '/messages' } } }),
    doc('Agent', 'helper', { workload: 'spiffe://test/agent/helper', a2a: { url: `${agents.base}/helper` } }),
    doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', team: 'ops' }),
    doc('Agent', 'lone', { workload: 'spiffe://test/agent/lone', team: 'solo' }),
    // No limit at all: what the fleet store cannot check for its A2A calls is whose task it is.
    // The callee's own model calls, made while it serves a call (x-aam-delegation): no limit either.
    doc('AgentPolicy', 'helper-models', { identity: { agent: 'helper' }, models: { allow: ['small'] } }),
    doc('AgentPolicy', 'solo', { identity: { team: 'solo' }, agents: [{ agent: 'helper' }] }),
    // Limits on the model, tool and MCP rules; none on the A2A rule: what it cannot check is the call's own fleet state.
    doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, models: { allow: ['small'], rate: { rpm: 1000 } }, tools: [{ resource: 'mail', actions: ['list'], rate: { rpm: 1000 } }, { resource: 'salesforce.accounts', actions: ['read'], rate: { rpm: 1000 } }], agents: [{ agent: 'helper' }] }),
  ));
  gw = await startGateway({ configPath: config, dataDir: join(d, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, ...store.env, AAM_LOG_LEVEL: 'error' } });
  url = `http://127.0.0.1:${gw.port}`;
  key = (await gw.rt.keyBook.create('worker')).secret;
  loneKey = (await gw.rt.keyBook.create('lone')).secret;
  helperKey = (await gw.rt.keyBook.create('helper')).secret;
});

after(async () => {
  await redis?.start().catch(() => {});
  await gw?.close();
  await sql?.end();
  await agents?.close();
  await mcp?.close();
  await api?.close();
  await redis?.stop();
  await store?.drop();
});

const auth = () => ({ authorization: `Bearer ${key}` });
const chat = () => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'small', messages: [{ role: 'user', content: 'hi' }] }) });
const httpTool = () => fetch(`${url}/tools/mail/list`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: '{}' });
const mcpSessionCall = (sid: string) => fetch(`${url}/mcp`, { method: 'POST', headers: { ...MCP, ...auth(), 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'web__read_account', arguments: { id: 'a1' } } }) });
const mcpInitialize = () => fetch(`${url}/mcp`, { method: 'POST', headers: { ...MCP, ...auth() },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }) });
const mcpModernCall = () => fetch(`${url}/mcp`, { method: 'POST', headers: { ...MCP, ...auth(), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'web__read_account' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'web__read_account', arguments: { id: 'a1' }, _meta: MODERN_META } }) });
const a2aSend = (text = 'hi') => fetch(`${url}/a2a/helper`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', 'a2a-version': '1.0' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'SendMessage', params: { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }] } } }) });
const a2aGetTask = () => fetch(`${url}/a2a/helper`, { method: 'POST', headers: { authorization: `Bearer ${loneKey}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'GetTask', params: { id: 'task-of-someone' } }) });

/** aam's code and message of a refusal, whatever the plane's error shape. */
async function refusal(r: Response): Promise<{ status: number; code?: string; message?: string; id: string }> {
  const text = await r.text();
  const j = JSON.parse(r.headers.get('content-type')?.includes('text/event-stream') ? text.split('\n').find((l) => l.startsWith('data: '))!.slice(6) : text) as { error?: { code?: unknown; message?: string; data?: { code?: string } } };
  const code = typeof j.error?.code === 'string' ? j.error.code : j.error?.data?.code;
  return { status: r.status, code, message: j.error?.message, id: r.headers.get('x-request-id') ?? '' };
}

const limitedStoreUnavailable = async (agent: string): Promise<number> => {
  const m = new RegExp(`^aam_limited_total\\{code="store_unavailable",agent="${agent}"\\} (\\d+)$`, 'm').exec(await (await fetch(`${url}/metrics`)).text());
  return Number(m?.[1] ?? 0);
};

test('Redis down: a refusal on every plane (model, HTTP tool, MCP session / initialize / 2026 call, A2A) is 503 store_unavailable, counted once and audited with identity and outcome', async () => {
  assert.equal((await chat()).status, 200);
  assert.equal((await httpTool()).status, 200);
  const session = await connectClient({ url } as TestGateway, key);
  const sid = session.transport.sessionId!;
  assert.ok(!(await session.client.callTool({ name: 'web__read_account', arguments: { id: 'a1' } })).isError);
  const ok = await a2aSend();
  assert.equal(ok.status, 200, await ok.text());
  await redis.stop();
  try {
    const planes: Array<[string, () => Promise<Response>, string]> = [
      ['model', chat, 'worker'], ['http tool', httpTool, 'worker'], ['mcp session', () => mcpSessionCall(sid), 'worker'], ['mcp initialize', mcpInitialize, 'worker'],
      ['mcp 2026', mcpModernCall, 'worker'], ['a2a', () => a2aSend(), 'worker'], ['a2a task owner', a2aGetTask, 'lone'],
    ];
    const refused: Array<{ plane: string; id: string; agent: string }> = [];
    for (const [plane, call, agent] of planes) {
      const before = await limitedStoreUnavailable(agent);
      const r = await refusal(await call());
      assert.equal(r.status, 503, `${plane}: ${JSON.stringify(r)}`);
      assert.equal(r.code, 'store_unavailable', `${plane}: ${JSON.stringify(r)}`);
      assert.match(r.message ?? '', /Redis .*unavailable/, plane);
      assert.match(r.message ?? '', /retry/, `${plane}: says what to do`);
      assert.ok(r.id.startsWith('req_'), `${plane}: aam's request id on the answer`);
      assert.equal(await limitedStoreUnavailable(agent), before + 1, `${plane}: counted once in aam_limited_total{code="store_unavailable"}`);
      refused.push({ plane, id: r.id, agent });
    }
    // Evidence: each refusal is in the trail (PostgreSQL is up), naming the caller and the refusal.
    for (const { plane, id, agent } of refused) {
      let body = '';
      await until(async () => {
        const rows = await sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE request_id = ${id}`;
        body = rows.map((x) => x.body).join('\n');
        return /store_unavailable|Redis/.test(body);
      }, 10_000, `${plane}: the refusal ${id} in the audit trail`);
      assert.ok(body.includes(`spiffe://test/agent/${agent}`), `${plane}: the identity in its evidence: ${body}`);
      assert.match(body, /"status":503|"status":"store_unavailable"/, `${plane}: the outcome in its evidence: ${body}`);
    }
  } finally {
    await session.client.close().catch(() => {});
    await redis.start();
  }
  await until(async () => (await chat()).status === 200, 15_000, 'the model plane back with Redis');
  await until(async () => (await httpTool()).status === 200, 15_000, 'HTTP tools back');
  await until(async () => (await a2aSend()).status === 200, 15_000, 'A2A back');
});

test('Redis down: a request carrying x-aam-delegation whose call\'s liveness cannot be checked is 503 store_unavailable, counted and audited under the caller', async () => {
  await until(async () => (await a2aSend()).status === 200, 15_000, 'A2A serving');
  // A task the callee goes on working on after its answer: its delegation is live while the task runs.
  const sent = await fetch(`${url}/a2a/helper`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/json', 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'SendMessage', params: { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text: 'work:later' }] }, configuration: { returnImmediately: true } } }) });
  assert.equal(sent.status, 200, await sent.text());
  const work = [...agents.working.values()].at(-1)!;
  const delegated = () => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${helperKey}`, 'x-aam-delegation': work.delegation, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'small', messages: [{ role: 'user', content: 'hi' }] }) });
  assert.equal((await delegated()).status, 200, 'honoured while its task runs');
  await redis.stop();
  try {
    const before = await limitedStoreUnavailable('helper');
    const r = await refusal(await delegated());
    assert.equal(r.status, 503, JSON.stringify(r));
    assert.equal(r.code, 'store_unavailable');
    assert.match(r.message ?? '', /Redis .*live A2A calls.*unavailable.*retry/);
    assert.equal(await limitedStoreUnavailable('helper'), before + 1, 'counted once');
    let body = '';
    await until(async () => {
      body = (await sql<Array<{ body: string }>>`SELECT body FROM audit_trail WHERE request_id = ${r.id}`).map((x) => x.body).join('\n');
      return body.includes('store_unavailable') || body.includes('Redis');
    }, 10_000, `the refusal ${r.id} in the audit trail`);
    assert.ok(body.includes('spiffe://test/agent/helper'), body);
    assert.match(body, /"status":503/, body);
  } finally {
    work.complete();
    await redis.start();
  }
});

test('Redis stopped and started under load (model, HTTP tool, MCP 2026 calls, a few a second each): every 503 is store_unavailable, counted once and in the trail; every other answer is a 200', async (t) => {
  await until(async () => (await chat()).status === 200 && (await httpTool()).status === 200, 15_000, 'serving');
  const before = await limitedStoreUnavailable('worker');
  const answers: Array<{ plane: string; status: number; code?: string; id: string }> = [];
  let running = true;
  const loop = async (plane: string, call: () => Promise<Response>) => {
    while (running) {
      const r = await refusal(await call()).catch(() => null);
      if (r) answers.push({ plane, ...r });
      await new Promise((res) => setTimeout(res, 100));
    }
  };
  const loops = [loop('model', chat), loop('http tool', httpTool), loop('mcp 2026', mcpModernCall)];
  await new Promise((r) => setTimeout(r, 1000));
  await redis.stop();
  await new Promise((r) => setTimeout(r, 2000));
  await redis.start();
  await until(async () => (await fetch(`${url}/readyz`)).status === 200, 15_000, '/readyz back');
  await new Promise((r) => setTimeout(r, 1000));
  running = false;
  await Promise.all(loops);
  const refused = answers.filter((a) => a.status !== 200);
  assert.ok(refused.length > 0, 'some calls met the outage');
  for (const a of refused) assert.deepEqual([a.status, a.code], [503, 'store_unavailable'], JSON.stringify(a));
  for (const plane of ['model', 'http tool', 'mcp 2026']) assert.ok(answers.some((a) => a.plane === plane && a.status === 200), `${plane} answered after the outage`);
  assert.equal(await limitedStoreUnavailable('worker'), before + refused.length, `each refusal counted once (${refused.length} refused of ${answers.length})`);
  t.diagnostic(`${answers.length} calls, ${refused.length} refused during the outage`);
  const ids = refused.map((a) => a.id);
  await until(async () => (await sql`SELECT DISTINCT request_id FROM audit_trail WHERE request_id = ANY(${ids})`).length === ids.length, 10_000, 'every refusal in the trail');
});
