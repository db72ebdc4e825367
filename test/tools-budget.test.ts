// tools[].budget: calls a tool rule allows per UTC day / month, per agent and per virtual key,
// end to end through the real gateway: HTTP tools answer 429 budget_exceeded with retry-after,
// MCP answers JSON-RPC -32029; the upstream never sees a call over budget, and a call that is
// not forwarded (refused after admission) does not spend the budget.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { connectClient, rpcError, toolEvents } from './helpers/mcp.ts';
import { callsIn, startHttpFixture, STDIO_TIMEOUT_MS, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';

const dir = mkdtempSync(join(tmpdir(), 'aam-tools-budget-'));
const callsFile = join(dir, 'calls.jsonl');
let gw: TestGateway;
let fixture: RunningFixture;
let api: Server;
const apiSeen: string[] = [];

/** The next UTC midnight after now, when a daily budget resets. */
const nextUtcDay = (): string => { const d = new Date(); return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)).toISOString(); };

before(async () => {
  fixture = await startHttpFixture({ CALLS_FILE: callsFile });
  api = createServer((req, res) => {
    apiSeen.push(`${req.method} ${req.url}`);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  gw = await startTestGateway(yaml(
    doc('McpServer', 'web', { transport: 'streamable-http', url: fixture.url, resource: 'salesforce.accounts', timeout_ms: STDIO_TIMEOUT_MS,
      tools: { search_accounts: { action: 'search' }, read_account: { action: 'read' } } }),
    doc('HttpTool', 'mail', { baseUrl: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, resource: 'mail', actions: {
      send: { method: 'POST', path: '/send/{to}' }, list: { method: 'GET', path: '/messages' },
    } }),
    doc('Agent', 'mailer', { workload: 'spiffe://prod/agent/mailer', team: 'ops' }),
    doc('Agent', 'other', { workload: 'spiffe://prod/agent/other', team: 'ops' }),
    doc('AgentPolicy', 'ops', { identity: { team: 'ops' }, tools: [
      { resource: 'mail', actions: ['send'], budget: { calls_per_day: 2 } },
      { resource: 'mail', actions: ['list'] },
      { resource: 'salesforce.accounts', actions: ['read'], budget: { calls_per_month: 1 } },
      { resource: 'salesforce.accounts', actions: ['search'] },
    ] }),
  ));
});

after(async () => {
  await gw?.close();
  await fixture?.close();
  await new Promise((r) => api?.close(r));
  rmSync(dir, { recursive: true, force: true });
});

const send = (key: string, body: unknown) => fetch(`${gw.url}/tools/mail/send`, {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
});

test('HTTP tools: calls_per_day holds per agent (429 budget_exceeded, retry-after to UTC midnight); calls not forwarded do not count', async () => {
  const key = gw.key('mailer');
  // Refused after admission (a path parameter is missing): not forwarded, so not counted.
  const bad = await send(key, { subject: 'x' });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'invalid_path_parameter');
  assert.equal((await send(key, { to: 'a', subject: 'x' })).status, 200);
  assert.equal((await send(key, { to: 'b', subject: 'x' })).status, 200);
  const seen = apiSeen.length;
  const over = await send(key, { to: 'c', subject: 'x' });
  assert.equal(over.status, 429);
  const retry = Number(over.headers.get('retry-after'));
  const expected = Math.ceil((Date.parse(nextUtcDay()) - Date.now()) / 1000);
  assert.ok(retry >= 1 && Math.abs(retry - expected) <= 5, `retry-after ${retry}, expected about ${expected}`);
  const j = (await over.json()) as { error: { code: string; type: string; message: string } };
  assert.equal(j.error.code, 'budget_exceeded');
  assert.equal(j.error.type, 'rate_limit_error');
  assert.match(j.error.message, /policy "ops" tools\[0\]\.budget allows 2 calls per day for agent:spiffe:\/\/prod\/agent\/mailer, and 2 were made; it will reset at /);
  assert.ok(j.error.message.includes(nextUtcDay()), j.error.message);
  assert.equal(apiSeen.length, seen, 'a call over budget never reaches the upstream');
  // Another key of the same agent shares the agent's budget; another agent has its own.
  assert.equal((await send(gw.key('mailer'), { to: 'd' })).status, 429);
  assert.equal((await send(gw.key('other'), { to: 'e' })).status, 200);
  // Calls a rule without a budget allows are not counted.
  const list = await fetch(`${gw.url}/tools/mail/list`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(list.status, 200);
});

test('MCP: calls_per_month holds per agent (-32029 with retry_after_seconds); tools without a budget keep working', async () => {
  const { client, transport } = await connectClient(gw, gw.key('mailer'));
  try {
    await client.callTool({ name: 'web__read_account', arguments: { id: 'a1' } });
    const before = callsIn(callsFile).length;
    const e = await rpcError(client.callTool({ name: 'web__read_account', arguments: { id: 'a1' } }));
    assert.equal(e.code, -32029, e.message);
    assert.match(e.message, /tool call budget exhausted: policy "ops" tools\[2\]\.budget allows 1 calls per month/);
    const data = e.data as { retry_after_seconds: number; resets_at: string; policy: string; rule: number };
    assert.equal(data.policy, 'ops');
    assert.equal(data.rule, 2);
    const d = new Date();
    assert.equal(data.resets_at, new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)).toISOString());
    assert.ok(data.retry_after_seconds >= 1);
    assert.equal(callsIn(callsFile).length, before, 'a call over budget never reaches the upstream');
    await client.callTool({ name: 'web__search_accounts', arguments: { query: 'a' } });
    // The refusal is evidence.
    const events = await toolEvents(gw, { type: 'tool.rejected', agent: 'mailer' });
    assert.ok(events.some((ev) => JSON.stringify(ev).includes('budget_exceeded')), 'a tool.rejected event names budget_exceeded');
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close();
  }
});

test('tools[].budget on a rule that allows nothing, or without a limit, is a load error', () => {
  const load = (rule: Record<string, unknown>) => () => compilePolicies(parseConfigTexts([{ file: 'p.yaml', text: doc('AgentPolicy', 'p', { identity: { team: 't' }, tools: [rule] }) }]));
  assert.throws(load({ resource: 'mail', deny: ['send'], budget: { calls_per_day: 5 } }), (e: InstanceType<typeof ConfigError>) => /tools\[0\]\.budget/.test(e.message) && /allows none/.test(e.message));
  assert.throws(load({ resource: 'mail', actions: ['send'], budget: {} }), (e: InstanceType<typeof ConfigError>) => /tools\[0\]\.budget/.test(e.message) && /calls_per_day, calls_per_month or both/.test(e.message));
  assert.throws(() => parseConfigTexts([{ file: 'p.yaml', text: doc('AgentPolicy', 'p', { identity: { team: 't' }, tools: [{ resource: 'mail', actions: ['send'], budget: { calls_per_day: 0 } }] }) }]), ConfigError);
});
