// A callee whose HTTP answer is no JSON-RPC answer (its auth refusing aam's credential, the page of
// a URL that is not its JSON-RPC endpoint, JSON of another shape) is a 502 upstream_error to the
// caller, A2A's InvalidAgentResponseError (-32006; the SDK raises it as that class), saying what to check: never the callee's status (a 401 would tell the caller its own key
// was refused) nor its body. Seen through the official @a2a-js/sdk client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { auditOf, localServer, type LocalServer } from './helpers/e2e.ts';
import { sdkClientThroughAam } from './helpers/a2a-client.ts';

const TOKEN = 'callee-token-5Qm2Vx9Lr3Tb8Kd1';
let gw: TestGateway;
let callee: LocalServer;
let key = '';

before(async () => {
  process.env.A2A_ANSWERS_TOKEN = TOKEN;
  callee = await localServer((req, res) => {
    const auth = String(req.headers.authorization ?? '');
    if (req.url === '/refuses') { res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end(JSON.stringify({ error: `bad token ${auth}` })); return; }
    if (req.url === '/forbids') { res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden'); return; }
    if (req.url === '/') { res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' }).end('<pre>Cannot POST /</pre>'); return; }
    if (req.url === '/other-json') { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, echo: auth })); return; }
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`crashed holding ${auth}`);
  });
  const agent = (name: string, path: string, credential?: string) => doc('Agent', name, { workload: `spiffe://test/agent/${name}`, a2a: { url: `${callee.url}${path}`, ...(credential ? { credential } : {}) } });
  gw = await startTestGateway(yaml(
    doc('Credential', 'answers-token', { env: 'A2A_ANSWERS_TOKEN' }),
    agent('refuses', '/refuses', 'answers-token'), agent('forbids', '/forbids'), agent('wrong-url', '/', 'answers-token'),
    agent('other-json', '/other-json', 'answers-token'), agent('crashes', '/crashes', 'answers-token'),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, agents: [{ agent: '*' }] }),
  ));
  key = gw.key('planner');
});

after(async () => {
  await gw?.close();
  await callee?.close();
  delete process.env.A2A_ANSWERS_TOKEN;
});

const send = { message: { messageId: 'q1', role: 1, parts: [{ content: { $case: 'text', value: 'hi' } }], metadata: { skill: 'any' } } } as never;

async function raw(agent: string) {
  const r = await fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'SendMessage', params: { message: { messageId: 'm', role: 'ROLE_USER', parts: [{ text: 'hi' }], metadata: { skill: 'any' } } } }),
  });
  return { status: r.status, id: r.headers.get('x-request-id')!, body: await r.json() as { id: number; error: { code: number; message: string; data: { code: string } } } };
}

for (const [agent, why] of [
  ['refuses', /^agent "refuses" answered HTTP 401 \(application\/json\), not a JSON-RPC response: it refused aam's credential for it \(Credential "answers-token"\); check the Agent's spec\.a2a\.credential$/],
  ['forbids', /^agent "forbids" answered HTTP 403 \(text\/plain\), not a JSON-RPC response: it refused aam's credential for it \(none: the Agent has no spec\.a2a\.credential\)/],
  ['wrong-url', /^agent "wrong-url" answered HTTP 404 \(text\/html\), not a JSON-RPC response: check that the Agent's spec\.a2a\.url is its JSON-RPC endpoint$/],
  ['other-json', /^agent "other-json" answered JSON that is not a JSON-RPC response/],
  ['crashes', /^agent "crashes" answered HTTP 500 \(text\/plain\), not a JSON-RPC response$/],
] as const) {
  test(`a callee answering ${agent}: 502 upstream_error saying what to check, recorded; its status and body never reach the caller`, async () => {
    const r = await raw(agent);
    assert.equal(r.status, 502, JSON.stringify(r.body));
    assert.equal(r.body.id, 9);
    assert.equal(r.body.error.data.code, 'upstream_error');
    assert.equal(r.body.error.code, -32006, 'A2A\'s InvalidAgentResponseError: the callee answered what is no answer');
    assert.match(r.body.error.message, why);
    assert.doesNotMatch(JSON.stringify(r.body), new RegExp(`${TOKEN}|Cannot POST|crashed|echo`));
    const [call] = await auditOf(gw, r.id, 'a2a_call') as unknown as Array<{ outcome: { status: number; error: string } }>;
    assert.equal(call.outcome.status, 502);
    assert.match(call.outcome.error, why);
    // The SDK client raises the same words (JSON-RPC and HTTP+JSON).
    for (const rest of [false, true]) {
      const client = await sdkClientThroughAam(gw.url, agent, key, rest);
      await assert.rejects(client.sendMessage(send), (e: Error) => why.test(e.message) && e.name === 'InvalidAgentResponseError', `${rest ? 'HTTP+JSON' : 'JSON-RPC'}`);
    }
  });
}
