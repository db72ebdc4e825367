// A callee whose Credential goes in the query string (kind query / inject.query): aam puts it on the
// URL of every call it makes for the caller (the agent card and the JSON-RPC call), keeps the callee's
// own query parameters, and the caller never sees it (an answer echoing it is scrubbed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

const SECRET = 'callee-query-key-5c2e91d07b4a43f8';
let gw: TestGateway;
let callee: http.Server;
const seen: Array<{ method: string; url: string; authorization?: string }> = [];

before(async () => {
  callee = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
      const key = new URL(req.url ?? '/', 'http://x').searchParams.get('api_key');
      if (key !== SECRET) { res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"api_key missing"}'); return; }
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'scorer', supportedInterfaces: [{ url: 'http://x', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }], skills: [{ id: 'score', name: 'score' }] }));
        return;
      }
      const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown };
      // A careless callee quotes the URL it was called on, key included.
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result: { message: { messageId: 'm1', role: 'ROLE_AGENT', parts: [{ text: `called as ${req.url}` }] } } }));
    });
  });
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(callee.address() as AddressInfo).port}/agents/scorer?tenant=acme`;
  gw = await startTestGateway(yaml(
    doc('Credential', 'scorer-key', { kind: 'query', env: 'A2A_QUERY_TEST_KEY', inject: { query: 'api_key' } }),
    doc('Agent', 'scorer', { workload: 'spiffe://test/agent/scorer', a2a: { url: base, credential: 'scorer-key' } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'scorer', skills: ['score'] }], credentials: { allow: ['scorer-key'] } }),
  ), { A2A_QUERY_TEST_KEY: SECRET });
});

after(async () => {
  await gw?.close();
  await new Promise((r) => callee?.close(r));
});

test('a query-style callee credential is set on the card request and on the call, beside the callee\'s own parameters; the answer is scrubbed', async () => {
  const auth = { authorization: `Bearer ${gw.key('planner')}` };
  const card = await fetch(`${gw.url}/a2a/scorer/.well-known/agent-card.json`, { headers: auth });
  assert.equal(card.status, 200, await card.clone().text());
  const get = seen.find((s) => s.method === 'GET')!;
  const gu = new URL(get.url, 'http://x');
  assert.equal(gu.pathname, '/agents/scorer/.well-known/agent-card.json');
  assert.equal(gu.searchParams.get('tenant'), 'acme', 'the callee URL\'s own query parameters stay');
  assert.equal(gu.searchParams.get('api_key'), SECRET);

  const r = await fetch(`${gw.url}/a2a/scorer`, {
    method: 'POST', headers: { ...auth, 'content-type': 'application/json', 'a2a-version': '1.0' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'q1', role: 'ROLE_USER', parts: [{ text: 'score 42' }], metadata: { skill: 'score' } } } }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  const post = seen.find((s) => s.method === 'POST')!;
  const pu = new URL(post.url, 'http://x');
  assert.equal(pu.pathname, '/agents/scorer');
  assert.equal(pu.searchParams.get('api_key'), SECRET, 'aam injected the callee credential in the query');
  assert.equal(pu.searchParams.get('tenant'), 'acme');
  assert.ok(!post.url.includes(gw.key('planner')) && post.authorization === undefined, 'the caller\'s key never reaches the callee');
  assert.match(text, /called as \/agents\/scorer/);
  assert.ok(!text.includes(SECRET), `the credential echoed by the callee reached the caller: ${text}`);
});
