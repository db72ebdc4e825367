// undici's client requires node:http2 (and so tls) when it loads: +8.9 MB RSS that a gateway
// calling only http:// upstreams held for nothing (bench/RESULTS.md, "Memory"). src/lib/http-client.ts
// defers that file to the first HTTP/2 connection. Checked in a process of its own: Node's builtins
// load once per process, so no other test file may have loaded them first. node:http is required,
// not imported: an ES import of it loads Node's bundled undici, which loads http2 itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type * as Http from 'node:http';
import type * as Http2 from 'node:http2';
import { startTestGateway, agentDocs, doc, yaml } from './helpers/gateway.ts';

const load = createRequire(import.meta.url);
const http = load('node:http') as typeof Http;

const builtinsLoaded = (): string[] => (process as unknown as { moduleLoadList: string[] }).moduleLoadList
  .filter((m) => m === 'NativeModule http2' || m === 'NativeModule tls' || m.includes('deps/undici'));

const COMPLETION = JSON.stringify({ id: 'x', object: 'chat.completion', created: 1, model: 'u', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });

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
