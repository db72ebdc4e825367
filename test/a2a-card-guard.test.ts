// The agent card through aam passes the caller's output guardrails: its descriptions and examples
// are text the caller's model reads, as an MCP listing's are. A redaction shows the card redacted;
// a blocked skill is withheld alone; a block elsewhere in the card refuses it (400 guardrail_blocked).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';

let gw: TestGateway;
let callee: Server;
let key = '';

const card = (name: string, description: string) => ({
  name, description, version: '1', capabilities: { streaming: true }, defaultInputModes: ['text/plain'], defaultOutputModes: ['text/plain'],
  supportedInterfaces: [{ url: `http://127.0.0.1:${(callee.address() as AddressInfo).port}/${name}`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }],
  skills: [
    { id: 'score', name: 'score', description: 'scores the Project Falcon accounts', tags: [] },
    { id: 'plain', name: 'plain', description: 'questions to carol@example.com', tags: [], examples: ['ask dave@example.com'] },
  ],
});

before(async () => {
  callee = createServer((req, res) => {
    const name = req.url!.split('/')[1];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(card(name, name === 'secretive' ? 'all about Project Falcon' : 'contact bob@example.com')));
  });
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(callee.address() as AddressInfo).port}`;
  gw = await startTestGateway(yaml(
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'scorer', { workload: 'spiffe://test/agent/scorer', a2a: { url: `${base}/scorer` } }),
    doc('Agent', 'secretive', { workload: 'spiffe://test/agent/secretive', a2a: { url: `${base}/secretive` } }),
    doc('Guardrail', 'no-falcon', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'pii-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'scorer' }, { agent: 'secretive' }], guardrails: ['no-falcon', 'pii-out'] }),
  ));
  key = gw.key('caller');
});

after(async () => {
  await gw?.close();
  callee?.closeAllConnections();
  await new Promise((r) => callee?.close(r));
});

const get = (agent: string) => fetch(`${gw.url}/a2a/${agent}/.well-known/agent-card.json`, { headers: { authorization: `Bearer ${key}` } });

test('the card passes the caller\'s output guardrails: redacted where they redact, a skill they block withheld alone', async () => {
  const r = await get('scorer');
  assert.equal(r.status, 200);
  const c = await r.json() as { description: string; skills: Array<{ id: string; description: string; examples?: string[] }> };
  assert.equal(c.description, 'contact [EMAIL]');
  assert.deepEqual(c.skills.map((s) => [s.id, s.description, s.examples]), [['plain', 'questions to [EMAIL]', ['ask [EMAIL]']]]);
});

test('a block outside the skills refuses the card: 400 guardrail_blocked naming the guardrail', async () => {
  const r = await get('secretive');
  assert.equal(r.status, 400);
  const body = await r.json() as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'guardrail_blocked');
  assert.match(body.error.message, /no-falcon/);
  assert.doesNotMatch(JSON.stringify(body), /Falcon accounts|all about/);
});
