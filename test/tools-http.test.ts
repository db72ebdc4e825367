// HTTP action proxy end-to-end: /tools/<tool>/<action> mounted on node:http, forwarding to a
// recording upstream on 127.0.0.1.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type IncomingHttpHeaders } from 'node:http';
import { createHttpToolProxy, joinUrl, type HttpToolProxy } from '../src/tools/http-tool.ts';
import { checkParam, compilePathTemplate } from '../src/tools/path-template.ts';
import { TOKENS, config, makeDeps, type TestDeps } from './fixtures/mcp-accounts/harness.ts';

interface Seen { method: string; url: string; headers: IncomingHttpHeaders; body: string }
const seen: Seen[] = [];
let upstream: Server;
let gateway: Server;
let base = '';
let proxy: HttpToolProxy;
let deps: TestDeps;

before(async () => {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
    if (req.url?.startsWith('/v1/slow')) { await new Promise((r) => setTimeout(r, 1000)); }
    res.writeHead(req.url?.includes('missing') ? 404 : 200, { 'content-type': 'application/json', 'x-upstream': 'yes', connection: 'keep-alive, x-hop', 'x-hop': 'drop me', 'set-cookie': 'sid=1' });
    res.end(JSON.stringify({ ok: true, path: req.url }));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const port = (upstream.address() as { port: number }).port;
  deps = makeDeps();
  const yaml = `apiVersion: access.envisionai.dev/v1
kind: Credential
metadata: { name: sf-token }
spec: { env: SF_TOKEN }
---
apiVersion: access.envisionai.dev/v1
kind: HttpTool
metadata: { name: salesforce }
spec:
  baseUrl: http://127.0.0.1:${port}/v1
  credential: sf-token
  resource: salesforce.accounts
  timeout_ms: 300
  actions:
    read: { method: GET, path: "/accounts/{id}" }
    search: { method: GET, path: /accounts }
    export: { method: POST, path: /accounts/export }
    delete: { method: DELETE, path: "/accounts/{id}" }
    update: { method: PATCH, path: "/accounts/{id}" }
---
apiVersion: access.envisionai.dev/v1
kind: HttpTool
metadata: { name: ops }
spec:
  baseUrl: http://127.0.0.1:${port}/v1
  resource: web
  timeout_ms: 300
  actions:
    slow: { method: GET, path: /slow }
    create: { method: POST, path: "/things/{kind}/items" }
`;
  proxy = createHttpToolProxy(config(yaml), deps);
  gateway = createServer(async (req, res) => {
    const who = TOKENS[(req.headers.authorization ?? '').replace(/^Bearer /, '')];
    if (!who) { res.writeHead(401).end(); return; }
    const m = /^\/tools\/([^/]+)\/([^/?]+)$/.exec(req.url ?? '');
    if (!m) { res.writeHead(404).end(); return; }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) as unknown : undefined;
    await proxy.handle(req, res, who, decodeURIComponent(m[1]), decodeURIComponent(m[2]), body);
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(gateway.address() as { port: number }).port}`;
});

after(async () => {
  gateway.closeAllConnections(); upstream.closeAllConnections();
  await new Promise((r) => gateway.close(r));
  await new Promise((r) => upstream.close(r));
});

async function call(path: string, body: unknown, token = 'tok-analyst') {
  const res = await fetch(base + path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as { error?: { message: string; code: string; approval_id?: string } } };
}

test('allowed call: path param bound, credential injected, agent token not forwarded, correlation headers', async () => {
  const n = seen.length;
  const r = await call('/tools/salesforce/read', { id: 'a 1' });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('x-upstream'), 'yes');
  assert.equal(r.headers.get('x-hop'), null, 'header named in Connection dropped');
  assert.equal(r.headers.get('set-cookie'), null);
  assert.ok(r.headers.get('x-aam-request-id'));
  const up = seen[n];
  assert.equal(up.method, 'GET');
  assert.equal(up.url, '/v1/accounts/a%201');
  assert.equal(up.headers['x-upstream-token'], 'secret-sf-token-for-finance-analyst');
  assert.equal(up.headers.authorization, undefined, "agent's Authorization never forwarded");
  assert.equal(up.headers['x-aam-agent'], 'spiffe://prod/agent/finance-analyst');
  assert.equal(up.headers['x-aam-request-id'], r.headers.get('x-aam-request-id'));
  const s = await call('/tools/salesforce/search', { query: 'acme', limit: 5 });
  assert.equal(s.status, 200);
  assert.equal(seen.at(-1)?.url, '/v1/accounts?query=acme&limit=5');
  const nf = await call('/tools/salesforce/read', { id: 'missing' });
  assert.equal(nf.status, 404, 'upstream status passed back');
});

test('denied calls and unknown actions never reach the upstream', async () => {
  const n = seen.length;
  const over = await call('/tools/salesforce/search', { query: 'a', limit: 500 });
  assert.equal(over.status, 403);
  assert.equal(over.json().error?.code, 'policy_denied');
  assert.match(over.json().error?.message ?? '', /policy "finance-analyst-readonly" rule tools\[1\]/);
  const exp = await call('/tools/salesforce/export', {});
  assert.equal(exp.status, 403);
  const intern = await call('/tools/salesforce/read', { id: 'a1' }, 'tok-intern');
  assert.equal(intern.status, 403, 'read only in prod');
  const unknown = await call('/tools/salesforce/purge', {});
  assert.equal(unknown.status, 404);
  assert.match(unknown.json().error?.message ?? '', /unknown action "purge".*actions: read, search/);
  assert.equal((await call('/tools/nope/read', {})).status, 404);
  assert.equal((await call('/tools/salesforce/read', [1, 2])).status, 400);
  assert.equal(seen.length, n, 'upstream saw nothing');
});

test('path traversal and encoded tricks are rejected before the upstream', async () => {
  const n = seen.length;
  for (const id of ['../admin', '%2e%2e%2f', '%2E%2E%2Fadmin', 'a/b', '..', '.', 'a\\b', 'a\u0000b', 'x\ny', '', { $gt: '' }, '..%2f']) {
    const r = await call('/tools/salesforce/read', { id });
    assert.equal(r.status, 400, `id ${JSON.stringify(id)} rejected`);
    assert.equal(r.json().error?.code, 'invalid_path_parameter');
  }
  assert.equal((await call('/tools/salesforce/read', {})).status, 400, 'missing param');
  assert.equal(seen.length, n);
});

test('body actions send the remaining arguments as JSON; approval flow on HTTP tools', async () => {
  const held = await call('/tools/salesforce/delete', { id: 'a1' });
  assert.equal(held.status, 403);
  const id = held.json().error?.approval_id as string;
  assert.match(held.json().error?.message ?? '', /approval required: approval id apr_/);
  const n = seen.length;
  proxy.approvals.approve(id, 'admin');
  const ok = await call('/tools/salesforce/delete', { id: 'a1' });
  assert.equal(ok.status, 200);
  assert.equal(seen.length, n + 1);
  assert.equal(seen.at(-1)?.method, 'DELETE');
  assert.ok(deps.events.some((e) => e.type === 'tool.intent' && e.plane === 'http' && e.durable === true));
  const c = await call('/tools/ops/create', { kind: 'widget', size: 3, tags: ['x'] });
  assert.equal(c.status, 200);
  assert.equal(seen.at(-1)?.url, '/v1/things/widget/items');
  assert.deepEqual(JSON.parse(seen.at(-1)?.body ?? ''), { size: 3, tags: ['x'] });
  assert.equal(seen.at(-1)?.headers['content-type'], 'application/json');
});

test('hung upstream: clear 504', async () => {
  const r = await call('/tools/ops/slow', {});
  assert.equal(r.status, 504);
  assert.match(r.json().error?.message ?? '', /did not answer within 300 ms/);
});

test('path template and URL join units', () => {
  const t = compilePathTemplate('/accounts/{id}/contacts/{cid}');
  assert.deepEqual(t.params, ['id', 'cid']);
  assert.equal(t.render({ id: 'a?b#c', cid: 7 }), '/accounts/a%3Fb%23c/contacts/7');
  assert.throws(() => checkParam('id', '..'), /dot segment/);
  assert.throws(() => checkParam('id', 'a%2fb'), /percent-encoding/);
  assert.equal(checkParam('id', 'a.b-c_d'), 'a.b-c_d');
  const u = joinUrl(new URL('http://h/v1/'), '/accounts/x', new URLSearchParams('q=1'));
  assert.equal(u.href, 'http://h/v1/accounts/x?q=1');
});
