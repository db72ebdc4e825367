// The MCP SDK (~13 MB RSS) loads only when needed: a real `aam serve` must not load any
// '@modelcontextprotocol/sdk' module until a client opens a session (initialize, MCP 2025-11-25
// and earlier), whether or not MCP servers are configured: stdio servers are spoken to with aam's
// own client, 2026-07-28 requests are answered without the SDK; a reload that adds an MCP server
// loads the gateway at once, without the SDK.
// A preload resolve hook records, in a file, every SDK module the process resolves.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { doc, yaml } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';
import { startServeChild, serveRefusal, createKey } from './helpers/serve-child.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-lazy-sdk-'));
after(() => rmSync(root, { recursive: true, force: true }));

const SDK = '@modelcontextprotocol/sdk';
const agent = doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' });
const policy = doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow: ['m'] } });
const base = [doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }), agent, policy];

/** A preload whose resolve hook appends every SDK module resolved to `log` (and marks itself active). */
function sdkWatcher(dir: string): { preload: string; log: string; active: string } {
  const log = join(dir, 'sdk-resolved.log');
  const active = join(dir, 'hook-active');
  const preload = join(dir, 'watch-sdk.mjs');
  writeFileSync(preload, `import { registerHooks } from 'node:module';
import { appendFileSync, writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(active)}, '1');
registerHooks({ resolve(spec, ctx, next) {
  const r = next(spec, ctx);
  if (r.url.includes(${JSON.stringify(`/node_modules/${SDK}/`)})) appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
} });
`);
  return { preload, log, active };
}

const ADMIN = randomBytes(32).toString('hex');

async function setup(name: string, docs: string[]) {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(config, yaml(...docs));
  const key = await createKey(config, data);
  const w = sdkWatcher(dir);
  const gw = await startServeChild({ config, data, env: { AAM_ADMIN_TOKEN: ADMIN, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${w.preload}` } });
  return { dir, config, key, gw, ...w };
}

const sdkLoaded = (log: string) => existsSync(log) && readFileSync(log, 'utf8').includes(SDK);

async function mcp(url: string, key: string, body: unknown, headers: Record<string, string> = {}) {
  const r = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

test('no MCP server configured: the SDK is not loaded until /mcp is called, then /mcp works', async () => {
  const s = await setup('idle', base);
  try {
    assert.ok(existsSync(s.active), 'the preload hook runs in the gateway');
    // Requests that touch the tool plane without /mcp: the HTTP tool proxy (unknown tool) still loads nothing.
    const tool = await fetch(`${s.gw.url}/tools/nope/act`, { method: 'POST', headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' }, body: '{}' });
    assert.ok(tool.status >= 400, `an unknown HTTP tool is refused (${tool.status})`);
    // The admin API's tool endpoints answer as a gateway without MCP servers always did.
    const admin = async (method: string, path: string) => {
      const r = await fetch(`${s.gw.url}/admin/v1${path}`, { method, headers: { authorization: `Bearer ${ADMIN}` } });
      return { status: r.status, json: await r.json() as unknown };
    };
    assert.deepEqual(await admin('GET', '/mcp/status'), { status: 200, json: {} });
    assert.deepEqual(await admin('GET', '/tools/flagged'), { status: 200, json: { data: [] } });
    assert.deepEqual(await admin('GET', '/approvals'), { status: 200, json: { data: [] } });
    // A server the config does not define is a 404 (14c7f61), answered without the SDK too.
    const diff = await admin('GET', '/tools/none/nope/diff');
    assert.equal(diff.status, 404, JSON.stringify(diff.json));
    assert.equal(sdkLoaded(s.log), false, `SDK loaded before any /mcp call:\n${existsSync(s.log) ? readFileSync(s.log, 'utf8') : ''}`);

    // MCP 2025-11-25: initialize opens a session on the SDK's server.
    const init = await mcp(s.gw.url, s.key, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    assert.equal(init.status, 200, init.text);
    assert.match(init.text, /"serverInfo":\{"name":"aam"/);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid, 'a session id');
    const list = await mcp(s.gw.url, s.key, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' });
    assert.equal(list.status, 200, list.text);
    assert.match(list.text, /"tools":\[\]/);
    assert.ok(sdkLoaded(s.log), 'the SDK is loaded once /mcp is used');

    // MCP 2026-07-28: server/discover, stateless.
    const v = '2026-07-28';
    const discover = await mcp(s.gw.url, s.key,
      { jsonrpc: '2.0', id: 3, method: 'server/discover', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': v, 'io.modelcontextprotocol/clientCapabilities': {} } } },
      { 'mcp-protocol-version': v, 'mcp-method': 'server/discover' });
    assert.equal(discover.status, 200, discover.text);
    assert.match(discover.text, /"supportedVersions":\[[^\]]*"2026-07-28"/);
  } finally { await s.gw.stop(); }
});

test('a stdio MCP server is connected and listed at start without the SDK; 2026-07-28 requests need none; the first initialize loads it', async () => {
  const dir = join(root, 'stdio-annotations');
  mkdirSync(dir, { recursive: true });
  const annotations = join(dir, 'annotations.json');
  writeFileSync(annotations, '{"readOnlyHint":true}');
  const server = doc('McpServer', 'annotated', { transport: 'stdio', command: process.execPath, args: [join(import.meta.dirname, 'fixtures', 'mcp-annotated.ts')], env: { ANNOTATIONS_FILE: annotations } });
  const s = await setup('stdio', [...base, server]);
  try {
    assert.ok(existsSync(s.active), 'the preload hook runs in the gateway');
    const status = async () => (await (await fetch(`${s.gw.url}/admin/v1/mcp/status`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as Record<string, { state: string; tools: number; pid?: number }>;
    await until(async () => (await status()).annotated?.state === 'ready', 60_000, 'the stdio server to be connected');
    const st = (await status()).annotated;
    assert.equal(st.tools, 2);
    assert.ok(st.pid, 'its process id');
    const v = '2026-07-28';
    const discover = await mcp(s.gw.url, s.key,
      { jsonrpc: '2.0', id: 3, method: 'server/discover', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': v, 'io.modelcontextprotocol/clientCapabilities': {} } } },
      { 'mcp-protocol-version': v, 'mcp-method': 'server/discover' });
    assert.equal(discover.status, 200, discover.text);
    // A body that is no initialize, without a session: refused as before, still without the SDK.
    const stray = await mcp(s.gw.url, s.key, { jsonrpc: '2.0', id: 4, method: 'tools/list', params: {} });
    assert.equal(stray.status, 400, stray.text);
    assert.match(stray.text, /missing Mcp-Session-Id header/);
    assert.equal(sdkLoaded(s.log), false, `SDK loaded by a gateway with a stdio MCP server before any session:\n${existsSync(s.log) ? readFileSync(s.log, 'utf8') : ''}`);
    const init = await mcp(s.gw.url, s.key, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    assert.equal(init.status, 200, init.text);
    assert.ok(init.headers.get('mcp-session-id'), 'a session id');
    assert.ok(sdkLoaded(s.log), 'the SDK is loaded by the first session');
  } finally { await s.gw.stop(); }
});

test('a reload that adds an MCP server loads the MCP gateway without any /mcp call (and without the SDK)', async () => {
  const s = await setup('reload', base);
  try {
    assert.ok(existsSync(s.active), 'the preload hook runs in the gateway');
    assert.equal(sdkLoaded(s.log), false, 'nothing loaded at start');
    // An HTTP MCP server nobody listens on: the gateway loads, tries it and keeps retrying.
    // Replaced whole (rename), so neither the file watcher nor SIGHUP can read it half written.
    writeFileSync(`${s.config}.new`, yaml(...base, doc('McpServer', 'later', { transport: 'streamable-http', url: 'http://127.0.0.1:9/mcp' })));
    renameSync(`${s.config}.new`, s.config);
    // SIGHUP again each second until it shows: a signal that arrives while the gateway is still
    // wiring its handlers is not what this test is about (a reload that swapped the config
    // without loading the gateway is: later SIGHUPs are no-ops then, and it still fails).
    const nudge = setInterval(() => s.gw.proc.kill('SIGHUP'), 1000);
    s.gw.proc.kill('SIGHUP');
    const status = async () => (await (await fetch(`${s.gw.url}/admin/v1/mcp/status`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as Record<string, { state: string; lastError?: string }>;
    await until(async () => (await status()).later?.lastError !== undefined, 30_000, 'the gateway to load and try the server after a reload added it')
      .finally(() => clearInterval(nudge))
      .catch((e: Error) => { throw new Error(`${e.message}\n${s.gw.stderr().slice(-3000)}`); });
    // Nothing answers its server/discover: the SDK's session client is never needed.
    assert.equal(sdkLoaded(s.log), false, 'no SDK module for an upstream that never answered');
  } finally { await s.gw.stop(); }
});

test('a bad MCP session limit still refuses the start when no MCP server is configured (checked without the SDK)', async () => {
  const dir = join(root, 'bad-limit');
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'aam.yaml');
  writeFileSync(config, yaml(...base));
  const outcome = await serveRefusal({ config, data: join(dir, 'data'), env: { AAM_MCP_SESSIONS_PER_IDENTITY: '0' } });
  assert.match(outcome, /AAM_MCP_SESSIONS_PER_IDENTITY must be a whole number of sessions \(at least 1\), not "0"/);
});
