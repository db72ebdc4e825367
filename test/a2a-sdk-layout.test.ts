// An A2A agent laid out as the @a2a-js/sdk v1 samples lay one out (multi-transport-agent): its card
// at the origin's well-known URI (A2A v1 section 8.2, RFC 8615), JSON-RPC at /a2a/jsonrpc. Published
// with `spec.a2a.url` naming that JSON-RPC URL, its card is found at the root, and the SDK client's
// ClientFactory.createFromUrl reaches it through aam as the README says.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import {
  DefaultRequestHandler, InMemoryTaskStore, JsonRpcTransportHandler, UnauthenticatedUser, defaultServerCallContextBuilder,
  type AgentExecutor,
} from '@a2a-js/sdk/server';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { listenLoopback } from './helpers/e2e.ts';

let gw: TestGateway;
let agent: Server;
/** An agent that serves no card anywhere. */
let bare: Server;
let base = '';
const asked: string[] = [];
let key = '';

const executor: AgentExecutor = {
  async execute(rc, bus) {
    bus.publish({ kind: 'message', data: { messageId: 'm1', contextId: rc.contextId, taskId: '', role: 2, parts: [{ content: { $case: 'text', value: 'scored' }, metadata: undefined, filename: '', mediaType: '' }], metadata: undefined, extensions: [], referenceTaskIds: [] } as never });
    bus.finished();
  },
  async cancelTask() {},
};

before(async () => {
  const card = () => ({
    name: 'scorer', description: 'scores risk', version: '1.0.0',
    supportedInterfaces: [{ url: `${base}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' }],
    capabilities: { streaming: true, pushNotifications: false, extensions: [] },
    securitySchemes: {}, securityRequirements: [], defaultInputModes: ['text'], defaultOutputModes: ['text'],
    skills: [{ id: 'score', name: 'score', description: 'score', tags: [], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }],
  });
  const rpc = new JsonRpcTransportHandler(new DefaultRequestHandler(card() as never, new InMemoryTaskStore(), executor));
  agent = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    if (req.method === 'GET' && req.url === '/.well-known/agent-card.json') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(card())); return; }
    if (req.method !== 'POST' || req.url !== '/a2a/jsonrpc') { res.writeHead(404).end(); return; }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const context = defaultServerCallContextBuilder({ extensions: undefined, user: new UnauthenticatedUser(), headers: req.headers as never, requestedVersion: '1.0' });
      void (rpc.handle(JSON.parse(Buffer.concat(chunks).toString('utf8')) as never, context) as Promise<unknown>).then((out) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(out)));
    });
  });
  base = await listenLoopback(agent);
  bare = createServer((_req, res) => { res.writeHead(404).end(); });
  const bareBase = await listenLoopback(bare);
  gw = await startTestGateway(yaml(
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('Agent', 'scorer', { workload: 'spiffe://test/agent/scorer', a2a: { url: `${base}/a2a/jsonrpc` } }),
    doc('Agent', 'nocard', { workload: 'spiffe://test/agent/nocard', a2a: { url: `${bareBase}/elsewhere/rpc` } }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: 'scorer', skills: ['score'] }, { agent: 'nocard' }] }),
  ));
  key = gw.key('planner');
});

after(async () => {
  await gw?.close();
  await new Promise((r) => agent?.close(r));
  await new Promise((r) => bare?.close(r));
});

function factory() {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('authorization', `Bearer ${key}`);
    return fetch(input, { ...init, headers });
  };
  return new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  }));
}

test('an agent whose card is at its origin\'s well-known URI and JSON-RPC at a path (the SDK samples\' layout): its card through aam, then a call', async () => {
  asked.length = 0;
  const client = await factory().createFromUrl(`${gw.url}/a2a/scorer/`);
  const card = await client.getAgentCard();
  assert.equal(card.name, 'scorer');
  assert.deepEqual(card.supportedInterfaces.map((i) => i.url), [`${gw.url}/a2a/scorer`, `${gw.url}/a2a/scorer`]);
  assert.deepEqual(asked.slice(0, 2), ['GET /a2a/jsonrpc/.well-known/agent-card.json', 'GET /.well-known/agent-card.json'], 'under the URL first, then the origin\'s root');
  const answer = await client.sendMessage({ message: { messageId: 'q1', role: 1, parts: [{ content: { $case: 'text', value: 'hi' } }], metadata: { skill: 'score' } } } as never) as { parts: Array<{ content: { value: string } }> };
  assert.equal(answer.parts[0].content.value, 'scored');
  assert.ok(asked.includes('POST /a2a/jsonrpc'), 'calls go to spec.a2a.url');
});

test('a card at neither place: 502 naming both, never the callee\'s address', async () => {
  const r = await fetch(`${gw.url}/a2a/nocard/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 502);
  const text = await r.text();
  assert.match(text, /HTTP 404 at the Agent's spec\.a2a\.url \+ \/\.well-known\/agent-card\.json and at \/\.well-known\/agent-card\.json of its origin/);
  assert.doesNotMatch(text, /127\.0\.0\.1|elsewhere/);
});

test('createFromUrl without the trailing slash asks /a2a/.well-known/agent-card.json: the 404 says where the card is and how to ask', async () => {
  await assert.rejects(factory().createFromUrl(`${gw.url}/a2a/scorer`), /404/);
  const r = await fetch(`${gw.url}/a2a/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${key}` } });
  assert.equal(r.status, 404);
  assert.match(await r.text(), /an agent's card is at \/a2a\/<agent>\/\.well-known\/agent-card\.json; the @a2a-js\/sdk ClientFactory\.createFromUrl .* give it \/a2a\/<agent>\/ with the trailing slash/);
});
