// How a path under /a2a/ is read (gateway.ts handle): /a2a/<agent> (JSON-RPC, POST only; a
// trailing slash is the same endpoint), its card, its HTTP+JSON routes, and what is refused before
// anything is read: no agent named (404), a name that is not percent-decodable (400), another
// method on the JSON-RPC endpoint (405 as a JSON-RPC error), an identity missing (401) or an
// unknown agent (404), each with its JSON-RPC or HTTP+JSON shape.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { startCalleeGateway, type TestGateway } from './helpers/gateway.ts';
import { rpcCallee } from './helpers/rpc-callee.ts';
import { createServer as createAamServer, type Routes } from '../src/server/http.ts';

let gw: TestGateway;
let key = '';
let close: (() => Promise<void>) | undefined;
/** Paths the callee was called on, in order. */
const calls: string[] = [];

before(async () => {
  const callee = rpcCallee((call, res, req) => {
    calls.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.method === 'GET') {
      res.end('{"name":"echo","supportedInterfaces":[{"url":"http://x","protocolBinding":"JSONRPC","protocolVersion":"1.0"}],"skills":[{"id":"echo","name":"echo"}]}');
      return;
    }
    res.end(JSON.stringify({ jsonrpc: '2.0', id: call!.id, result: { message: { messageId: 'm1', role: 'ROLE_AGENT', parts: [{ text: 'ok' }] } } }));
  });
  ({ gw, key, close } = await startCalleeGateway(callee, { agent: 'echo', caller: 'caller' }));
});

after(() => close?.());

const send = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'SendMessage', params: { message: { messageId: 'b1', role: 'ROLE_USER', parts: [{ text: 'hi' }] } } });

async function req(path: string, init: { method?: string; body?: string; auth?: boolean } = {}): Promise<{ status: number; body: Record<string, any>; headers: Headers }> {
  const r = await fetch(`${gw.url}${path}`, {
    method: init.method ?? 'POST', ...(init.body !== undefined ? { body: init.body } : {}),
    headers: { ...(init.auth === false ? {} : { authorization: `Bearer ${key}` }), 'content-type': 'application/json', 'a2a-version': '1.0' },
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) as Record<string, any> : {}, headers: r.headers };
}

test('a2a routes: /a2a/<agent>, with or without a trailing slash or percent-encoding, is the JSON-RPC endpoint', async () => {
  for (const path of ['/a2a/echo', '/a2a/echo/', '/a2a/ec%68o']) {
    const r = await req(path, { body: send });
    assert.equal(r.status, 200, path);
    assert.equal(r.body.id, 7, path);
    assert.equal(r.body.result.message.parts[0].text, 'ok', path);
  }
});

test('a2a routes: no agent named is 404; a name that does not percent-decode is 400; neither reaches the callee', async () => {
  calls.length = 0;
  for (const path of ['/a2a/', '/a2a//message:send']) {
    const r = await req(path, { body: send });
    assert.equal(r.status, 404, path);
    assert.equal(r.body.error.code, 'not_found', path);
    assert.match(r.body.error.message, /no A2A endpoint .*use \/a2a\/<agent>/, path);
  }
  const bad = await req('/a2a/ec%E0%A4%A', { body: send });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'invalid_request');
  assert.match(bad.body.error.message, /malformed percent-encoding/);
  assert.deepEqual(calls, []);
});

test('a2a routes: another method on the JSON-RPC endpoint is 405 as a JSON-RPC error naming POST', async () => {
  const r = await req('/a2a/echo', { method: 'GET' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  assert.equal(r.body.jsonrpc, '2.0');
  assert.equal(r.body.id, null);
  assert.equal(r.body.error.data.code, 'method_not_allowed');
  assert.match(r.body.error.message, /use POST \(JSON-RPC\) or an HTTP\+JSON route such as \/a2a\/echo\/message:send/);
});

test('a2a routes: no identity is 401 and an unknown agent 404, as JSON-RPC errors; a body that is not a call is -32600 and one that is not JSON -32700, with its id null', async () => {
  const anon = await req('/a2a/echo', { body: send, auth: false });
  assert.equal(anon.status, 401);
  assert.equal(anon.body.jsonrpc, '2.0');
  assert.equal(anon.body.error.code, -32051);
  const unknown = await req('/a2a/nobody', { body: send });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.data.code, 'unknown_agent');
  assert.equal(unknown.body.id, null);
  const notCall = await req('/a2a/echo', { body: '[1]' });
  assert.equal(notCall.status, 200);
  assert.equal(notCall.body.error.code, -32600);
  assert.equal(notCall.body.id, null);
  // A body that is not JSON (cut short, or nested too deep to read) is A2A's JSONParseError, -32700.
  for (const body of ['{"jsonrpc":', `{"x":${'['.repeat(200)}${']'.repeat(200)}}`]) {
    const parse = await req('/a2a/echo', { body });
    assert.equal(parse.status, 400);
    assert.equal(parse.body.error.code, -32700, JSON.stringify(parse.body));
    assert.equal(parse.body.error.data.code, 'invalid_json');
    assert.equal(parse.body.id, null);
  }
  // A refusal after the call was read carries its id.
  const method = await req('/a2a/echo', { body: JSON.stringify({ jsonrpc: '2.0', id: 'x1', method: 'Nope', params: {} }) });
  assert.equal(method.body.error.code, -32601);
  assert.equal(method.body.id, 'x1');
});

test('a2a routes: an id that is not a string, an integer or null is -32600 (as the SDK\'s own server answers), not relayed as id null', async () => {
  calls.length = 0;
  for (const id of [{ a: 1 }, [7], true, 1.5]) {
    const r = await req('/a2a/echo', { body: JSON.stringify({ jsonrpc: '2.0', id, method: 'SendMessage', params: { message: { messageId: 'b2', role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }) });
    assert.equal(r.body.error?.code, -32600, `${JSON.stringify(id)}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error.message, /id must be a string, an integer or null/);
    assert.equal(r.body.id, null);
  }
  assert.deepEqual(calls, [], 'the callee never saw them');
  for (const id of ['s', 3, null]) assert.ok((await req('/a2a/echo', { body: JSON.stringify({ jsonrpc: '2.0', id, method: 'SendMessage', params: { message: { messageId: 'b3', role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }) })).body.result, JSON.stringify(id));
});

test('a2a routes: the card and an HTTP+JSON route under the agent are served; an HTTP+JSON refusal is a google.rpc.Status body', async () => {
  const card = await req('/a2a/echo/.well-known/agent-card.json', { method: 'GET' });
  assert.equal(card.status, 200);
  assert.equal(card.body.name, 'echo');
  const rest = await req('/a2a/echo/message:send', { body: JSON.stringify({ message: { messageId: 'b2', role: 'ROLE_USER', parts: [{ text: 'hi' }] } }) });
  assert.equal(rest.status, 200);
  assert.equal(rest.body.message.parts[0].text, 'ok');
  const anon = await req('/a2a/echo/message:send', { body: '{}', auth: false });
  assert.equal(anon.status, 401);
  assert.equal(typeof anon.body.error.status, 'string');
});

test('the router: exact routes before prefixes; a route set after the server was made is served, and a 405 names its method', async () => {
  const routes: Routes = { exact: new Map(), prefixes: [] };
  const said = (what: string) => (ctx: Parameters<Routes['prefixes'][0][1]>[0]) => { ctx.res.send(200, what, { 'content-type': 'text/plain' }); };
  routes.exact.set('GET /r/exact', said('exact'));
  routes.prefixes.push(['/r/', said('prefix')]);
  const server = createAamServer(gw.g.rt, routes);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const at = (method: string, path: string) => fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`, { method }).then(async (r) => [r.status, await r.text()] as const);
  try {
    assert.deepEqual(await at('GET', '/r/exact'), [200, 'exact']);
    assert.deepEqual(await at('GET', '/r/other'), [200, 'prefix']);
    assert.equal((await at('GET', '/nowhere'))[0], 404);
    // Set once requests were served (as the admin, MCP and identity routes are set after the core ones).
    routes.exact.set('POST /later', said('later'));
    routes.exact.set('GET /r/later', said('later exact'));
    assert.deepEqual(await at('POST', '/later'), [200, 'later']);
    assert.deepEqual(await at('GET', '/r/later'), [200, 'later exact'], 'an exact route set later wins over its prefix');
    const [status, body] = await at('GET', '/later');
    assert.equal(status, 405);
    assert.match(body, /use POST/);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
