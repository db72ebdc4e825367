// What an agents rule's `when` reads of an A2A call through the gateway: context.method, hop,
// chain (the caller alone on a first hop; the delegation's chain on a delegated one), environment,
// request_id and the time's hour. The context is made only when a `when` reads it, so each member
// is pinned here end to end, first hop and delegated hop alike, allowed and denied. And the chain a
// first hop checks for a cycle is its caller alone (no array made for it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway;
let callee: http.Server;
/** The x-aam-delegation header each callee path last received. */
const received = new Map<string, string>();
/** While set, the callee answers only once it settles (a delegation is honoured only while its call runs). */
let hold: Promise<void> | undefined;

const FIRST: Record<string, string> = {
  method: 'context.method == "SendMessage"', hop: 'context.hop == 1', chain: 'context.chain == ["planner"]',
  environment: 'context.environment == "dev"', request: 'context.request_id != ""', hour: 'context.hour >= 0 && context.hour < 24',
  get: 'context.method == "GetTask"',
};
const SECOND: Record<string, string> = {
  hop: 'context.hop == 2', chain: 'context.chain == ["planner", "echo"]', environment: 'context.environment == "prod"', first: 'context.hop == 1', alone: 'context.chain == ["echo"]',
};

before(async () => {
  callee = http.createServer((req, res) => {
    received.set(req.url ?? '', String(req.headers['x-aam-delegation'] ?? ''));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (req.url === '/echo') await hold;
      const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown };
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${JSON.stringify(rpc.id)},"result":{"message":{"messageId":"r1","role":"ROLE_AGENT","parts":[{"text":"done"}]}}}`);
    });
  });
  await new Promise<void>((resolve) => callee.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(callee.address() as AddressInfo).port}`;
  // One rule per member read (its skill names it), so that a wrong member names itself.
  const rules = (whens: Record<string, string>, to: string) => Object.entries(whens).map(([skill, when]) => ({ agent: to, skills: [skill], when }));
  gw = await startTestGateway(yaml(
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner', environment: 'dev' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', environment: 'prod', a2a: { url: `${base}/echo` } }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other', a2a: { url: `${base}/other` } }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: rules(FIRST, 'echo') }),
    doc('Agent', 'loop', { workload: 'spiffe://test/agent/loop', a2a: { url: `${base}/loop` } }),
    doc('AgentPolicy', 'loop-calls', { identity: { agent: 'loop' }, agents: [{ agent: 'loop' }] }),
    doc('AgentPolicy', 'echo-calls', { identity: { agent: 'echo' }, agents: rules(SECOND, 'other') }),
  ));
});

after(async () => {
  await gw?.close();
  await new Promise<void>((resolve) => callee?.close(() => resolve()));
});

const send = (caller: string, to: string, skill: string, headers: Record<string, string> = {}) => fetch(`${gw.url}/a2a/${to}`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.key(caller)}`, ...headers },
  body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'hi' }], metadata: { skill } } } }),
}).then(async (r) => ({ status: r.status, body: await r.text() }));

test('a first hop\'s `when` reads its method, hop 1, the caller alone as its chain, its environment, request id and hour', async () => {
  for (const skill of ['method', 'hop', 'chain', 'environment', 'request', 'hour']) {
    const ok = await send('planner', 'echo', skill);
    assert.equal(ok.status, 200, `${skill}: ${ok.body}`);
  }
  // Another method's rule: the context says SendMessage.
  const get = await send('planner', 'echo', 'get');
  assert.equal(get.status, 403, get.body);
  assert.match(get.body, /context.method == \\"GetTask\\"/);
});

test('a delegated hop\'s `when` reads hop 2 and the delegation\'s chain, and its own caller\'s environment', async () => {
  // echo serves planner's call (held open) while it makes its own calls with the delegation it got.
  let release!: () => void;
  hold = new Promise<void>((r) => { release = r; });
  received.delete('/echo');
  const serving = send('planner', 'echo', 'method');
  while (!received.has('/echo')) await new Promise((r) => setTimeout(r, 5));
  const delegation = received.get('/echo');
  assert.ok(delegation);
  for (const skill of ['hop', 'chain', 'environment']) {
    const ok = await send('echo', 'other', skill, { 'x-aam-delegation': delegation });
    assert.equal(ok.status, 200, `${skill}: ${ok.body}`);
  }
  for (const skill of ['first', 'alone']) assert.equal((await send('echo', 'other', skill, { 'x-aam-delegation': delegation })).status, 403, skill);
  hold = undefined;
  release();
  const first = await serving;
  assert.equal(first.status, 200, first.body);
  // Without the delegation, echo's own call is a first hop: its chain is echo alone.
  for (const skill of ['first', 'alone']) assert.equal((await send('echo', 'other', skill)).status, 200, skill);
  for (const skill of ['hop', 'chain']) assert.equal((await send('echo', 'other', skill)).status, 403, skill);
});

test('a first hop to its caller itself is a cycle, refused before the callee sees it', async () => {
  received.delete('/loop');
  const r = await send('loop', 'loop', 'x');
  assert.equal(r.status, 403, r.body);
  assert.match(r.body, /would loop: it is already in this delegation chain \(loop -> loop\)/);
  assert.equal(received.has('/loop'), false);
});
