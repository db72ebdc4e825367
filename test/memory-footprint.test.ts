// What a gateway holds in memory before it needs it: packages that only some requests use are
// loaded by the first such request, so an idle gateway (demo config) stays small
// (bench/RESULTS.md, "Memory"). Observed with a module resolve hook on a real in-process gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const resolved = new Set<string>();
/** aam's own modules loaded so far, as paths under src/ ('cli/commands.ts'). */
const ownModules = new Set<string>();
// Registered before the gateway's modules are imported (dynamic imports below).
registerHooks({
  resolve(specifier, context, next) {
    if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) resolved.add(specifier);
    const r = next(specifier, context);
    const own = r.url.indexOf('/src/');
    if (own >= 0 && !r.url.includes('/node_modules/')) ownModules.add(r.url.slice(own + 5));
    return r;
  },
});

/** Modules a started embedded gateway without TLS does not run: the other CLI commands, fleet mode, mTLS, the A2A plane. */
const NOT_AT_START = ['cli/commands.ts', 'cli/stores.ts', 'cli/evidence.ts', 'audit/index.ts', 'audit/cli.ts', 'audit/verify.ts', 'audit/export.ts',
  'audit/fleet-log.ts', 'audit/fleet-sinks.ts', 'store/fleet-approvals.ts', 'store/fleet-keys.ts', 'store/fleet-limits.ts', 'store/fleet-pins.ts',
  'store/fleet-credentials.ts', 'store/fleet-issuer-keys.ts', 'store/fleet-usage.ts', 'identity/x509-svid.ts', 'policy/diff.ts', 'a2a/gateway.ts', 'a2a/push.ts'];

const model = (name: string, provider: string): string => `apiVersion: access.envisionai.dev/v1\nkind: Model\nmetadata: { name: ${name} }\nspec: { targets: [{ provider: ${provider}, model: demo-small }] }\n`;

test('the config loader (yaml, zod) never loads into the gateway\'s thread: start, reloads and a refused reload validate in a short-lived process', async () => {
  // First in this file, and without the test helper: the helper validates in this thread (for speed).
  const { startGateway } = await import('../src/cli/serve.ts');
  const dir = mkdtempSync(join(tmpdir(), 'aam-mem-'));
  const configPath = join(dir, 'aam.yaml');
  const demo = readFileSync(join(REPO, 'aam.yaml'), 'utf8');
  writeFileSync(configPath, demo);
  const g = await startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  try {
    assert.ok(g.rt.compiled.set.models.has('reasoning-high'));
    writeFileSync(configPath, `${demo}---\n${model('extra', 'demo')}`);
    assert.equal(await g.rt.reloadInBackground('test'), null);
    assert.ok(g.rt.compiled.set.models.has('extra'));
    writeFileSync(configPath, `${demo}---\n${model('broken', 'nope')}`);
    const refused = /aam\.yaml:\d+ \(document \d+\): spec\.targets\[0\]\.provider: unknown Provider "nope"/;
    assert.match(await g.rt.reloadInBackground('test') ?? '', refused);
    assert.match(g.rt.reload('test') ?? '', refused);
    assert.ok(g.rt.compiled.set.models.has('extra'), 'the refused config did not replace the running one');
    // Before this test's first fetch. An ES import of node:http reads its WebSocket getter, which loads undici.
    // Node's bundled undici (fetch, WebSocket), and https + tls (a gateway without --tls-cert serves none).
    const builtins = (process as unknown as { moduleLoadList: string[] }).moduleLoadList;
    assert.deepEqual(builtins.filter((m) => m.includes('deps/undici') || m === 'NativeModule https' || m === 'NativeModule tls'), [], 'loaded by a gateway without TLS');
    const res = await fetch(`http://127.0.0.1:${g.port}/healthz`);
    assert.equal(res.status, 200);
    const loaded = [...resolved].filter((s) => s === 'yaml' || s === 'zod' || s.startsWith('zod/'));
    assert.deepEqual(loaded, [], 'loaded into the gateway\'s thread');
    assert.ok(ownModules.has('cli/serve.ts') && ownModules.has('runtime.ts'), 'the hook sees aam\'s modules');
    assert.deepEqual(NOT_AT_START.filter((m) => ownModules.has(m)), [], 'loaded by a started embedded gateway');
    // Providers whose keys are not set, and the in-process demo provider: no HTTP client yet.
    assert.ok(![...resolved].some((s) => s.startsWith('undici')), `undici loaded at start: ${[...resolved].filter((s) => s.startsWith('undici')).join(', ')}`);
  } finally {
    await g.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('prom-client (process metrics) is loaded by the first /metrics scrape, not at start', async () => {
  const { startTestGateway } = await import('./helpers/gateway.ts');
  const gw = await startTestGateway(readFileSync(join(REPO, 'aam.yaml'), 'utf8'));
  try {
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200);
    assert.ok(![...resolved].some((s) => s.startsWith('prom-client')), `loaded at start: ${[...resolved].join(', ')}`);
    const res = await fetch(`${gw.url}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.ok(resolved.has('prom-client'));
    assert.match(text, /^aam_process_cpu_user_seconds_total /m, 'process metrics on the first scrape');
    assert.match(text, /^# TYPE aam_config_info gauge$/m);
  } finally {
    await gw.close();
  }
});

test('the key-change watch is woken only by key changes, not by every audit and database write in the data dir', async () => {
  const { startTestGateway, agentDocs, doc, yaml } = await import('./helpers/gateway.ts');
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'demo-small' }] }), ...agentDocs(['m'])));
  try {
    const key = gw.key('tester');
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(res.status, 200);
    await gw.g.rt.auditLog?.flush();
    // The watched directory holds the change signal and nothing the request path writes to.
    const signal = gw.g.rt.keys.signalFile;
    assert.ok(signal, 'the gateway watches for key changes');
    assert.deepEqual(readdirSync(dirname(signal)).filter((f) => f !== basename(signal)), []);
  } finally {
    await gw.close();
  }
});

test('the model plane\'s calls to an HTTP upstream load no undici (lib/h1-agent.ts is their client); its timeouts are still told apart', async () => {
  const { startTestGateway, agentDocs, doc, yaml } = await import('./helpers/gateway.ts');
  const { localServer } = await import('./helpers/e2e.ts');
  // An upstream that answers the first request and never answers the second (a headers timeout).
  let calls = 0;
  const up = await localServer((_req, res) => {
    if (++calls > 1) return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'u', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, timeouts: { first_byte_ms: 1000 } }),
    doc('Model', 'm', { targets: [{ provider: 'up', model: 'u' }] }), ...agentDocs(['m'])));
  try {
    const ask = () => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.ok(![...resolved].some((s) => s.startsWith('undici')), 'undici loaded before any upstream call');
    const first = await ask();
    assert.equal(first.status, 200, await first.text());
    const slow = await ask();
    const text = await slow.text();
    assert.equal(slow.status, 504, text);
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'upstream_timeout');
    assert.ok(![...resolved].some((s) => s.startsWith('undici')), `undici loaded by the chat path: ${[...resolved].filter((s) => s.startsWith('undici')).join(', ')}`);
  } finally {
    await gw.close();
    await up.close();
  }
});

test('a gateway whose MCP servers are all stdio loads no MCP SDK module before the first session (aam\'s own stdio client): no zod schemas, zod-to-json-schema, HTTP client transports (OAuth client, pkce-challenge, eventsource) or Node server transport', async () => {
  const { startTestGateway, agentDocs, doc, yaml } = await import('./helpers/gateway.ts');
  const { until } = await import('./helpers/e2e.ts');
  const everything = join(REPO, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
  const gw = await startTestGateway(yaml(doc('McpServer', 'everything', { transport: 'stdio', command: process.execPath, args: [everything] }),
    doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'demo-small' }] }), ...agentDocs(['m'])));
  try {
    await until(() => gw.g.rt.tools?.mcp.status().everything?.state === 'ready', 90_000, 'MCP server connected');
    assert.ok(resolved.has('ajv'), 'the hook sees the MCP side\'s modules (Ajv, for the tools\' input schemas)');
    // 'zod' itself: this in-process test gateway loads its config here (`aam serve` does it in a short-lived process, first test);
    // the SDK imports 'zod/v4' and 'zod/v3'.
    const unused = [...resolved].filter((s) => s.startsWith('@modelcontextprotocol/sdk') || s.startsWith('zod/') || s.startsWith('zod-to-json-schema')
      || ['pkce-challenge', 'eventsource', '@hono/node-server'].includes(s));
    assert.deepEqual(unused, [], 'loaded by a gateway with one stdio MCP server and no MCP session');
  } finally {
    await gw.close();
  }
});
