// Node builtins a gateway holds only once something needs them (bench/RESULTS.md, "Memory"):
// - undici's client requires node:http2 (and so tls) when it loads: +8.9 MB RSS for a gateway that
//   calls only http:// upstreams; src/lib/http-client.ts defers that file to the first HTTP/2 connection;
// - the MCP SDK's Node server transport loads Node's bundled undici, http2 and tls (+7.6 MB): it
//   loads with the first MCP session, not with the config's MCP servers.
// Checked in a process of its own: builtins load once per process, so no other test file may have
// loaded them first. node:http is required, not imported: an ES import of it loads Node's bundled
// undici, which loads http2 itself; and no fetch() (that is Node's bundled undici too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type * as Http from 'node:http';
import type * as Http2 from 'node:http2';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestGateway, agentDocs, doc, yaml } from './helpers/gateway.ts';

const load = createRequire(import.meta.url);
const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const http = load('node:http') as typeof Http;

const builtinsLoaded = (): string[] => (process as unknown as { moduleLoadList: string[] }).moduleLoadList
  .filter((m) => m === 'NativeModule http2' || m === 'NativeModule tls' || m.includes('deps/undici'));

const COMPLETION = JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'u', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });

/** Polls with a deadline (test/helpers/e2e.ts's until() would import node:http). */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !cond();) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** POST with node:http (no fetch: that is Node's bundled undici). */
function post(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('a gateway that calls an http:// upstream loads neither node:http2 nor tls', async () => {
  const up = http.createServer((req, res) => { req.resume(); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(COMPLETION); }); });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const upUrl = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${upUrl}/v1` }),
    doc('Model', 'm', { targets: [{ provider: 'up', model: 'u' }] }), ...agentDocs(['m'])));
  try {
    assert.deepEqual(builtinsLoaded(), [], 'loaded before the first upstream call');
    const res = await post(`${gw.url}/v1/chat/completions`, { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json' },
      JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(res.status, 200, res.text);
    assert.equal((JSON.parse(res.text) as { choices: Array<{ message: { content: string } }> }).choices[0]?.message.content, 'hi');
    assert.deepEqual(builtinsLoaded(), [], 'loaded by a call to an http:// upstream');
  } finally {
    await gw.close();
    up.closeAllConnections();
    await new Promise<void>((r) => up.close(() => r()));
  }
});

test('a gateway with a connected stdio MCP server loads neither until the first MCP session, which works', async () => {
  const everything = join(ROOT, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
  const gw = await startTestGateway(yaml(doc('McpServer', 'everything', { transport: 'stdio', command: process.execPath, args: [everything] }),
    doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'demo-small' }] }), ...agentDocs(['m'])));
  try {
    await until(() => gw.g.rt.tools?.mcp.status().everything?.state === 'ready', 90_000, 'MCP server connected');
    assert.deepEqual(builtinsLoaded(), [], 'loaded by a gateway whose MCP server is connected');
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const res = await post(`${gw.url}/mcp`, { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, JSON.stringify(init));
    assert.equal(res.status, 200, res.text);
    assert.match(res.text, /"serverInfo"/);
  } finally {
    await gw.close();
  }
});

test('an https upstream that negotiates HTTP/2 is still spoken to over HTTP/2 (the deferred half loads on that connection)', async () => {
  const { makeCa, issueLeaf } = await import('./fixtures/identity-pki.ts');
  const { createAgent, request } = await import('../src/lib/http-client.ts');
  const http2 = load('node:http2') as typeof Http2;
  const ca = await makeCa('h2-test-ca');
  const leaf = await issueLeaf(ca, 'localhost', { serverAuth: true, sans: [{ type: 'ip', value: '127.0.0.1' }] });
  // allowHTTP1 off: an HTTP/1.1 client is refused, so a 200 proves HTTP/2.
  const server = http2.createSecureServer({ cert: leaf.certPem, key: leaf.keyPem, allowHTTP1: false }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`version ${req.httpVersion}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const agent = createAgent({ connect: { ca: ca.pem } });
  try {
    for (let i = 0; i < 2; i++) {
      const res = await request(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`, { dispatcher: agent, method: 'GET' });
      assert.equal(res.statusCode, 200);
      assert.equal(await res.body.text(), 'version 2.0');
    }
  } finally {
    await agent.close();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
