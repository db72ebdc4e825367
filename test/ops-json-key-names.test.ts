// "No input can stall the process": JSON.parse spends microseconds on each new key name (V8 builds
// a hidden class per shape), so a body of 400k distinct names held the event loop 1-3 s. Request
// bodies with more than MAX_KEY_NAMES distinct names are refused before they are parsed, on every
// plane; records repeating their names are not limited however many.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JsonTooComplex, MAX_KEY_NAMES, parseJsonInTurns } from '../src/access/json-turns.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { localServer } from './helpers/e2e.ts';

const names = (n: number, tag = 'k') => '{' + Array.from({ length: n }, (_, i) => `"${tag}${i}":1`).join(',') + '}';

test('parseJsonInTurns counts distinct key names only when asked, and refuses one over the limit before parsing', () => {
  const over = Buffer.from(`{"pad":"${'x'.repeat(70_000)}","m":${names(MAX_KEY_NAMES)}}`); // pad + m + k0..k9999: one over
  assert.throws(() => parseJsonInTurns(over, { maxKeyNames: MAX_KEY_NAMES }), (e: unknown) => e instanceof JsonTooComplex && /more than 10000 distinct object key names.*array of records/.test((e as Error).message));
  const at = Buffer.from(`{"pad":"${'x'.repeat(70_000)}","m":${names(MAX_KEY_NAMES - 2)}}`);
  const v = parseJsonInTurns(at.toString('utf8'), { maxKeyNames: MAX_KEY_NAMES }) as Promise<{ m: Record<string, number> }>;
  assert.ok(v instanceof Promise, 'the long pad is decoded across turns as before');
  // Without the option (upstream answers) nothing is counted.
  assert.doesNotThrow(() => parseJsonInTurns(over.toString('utf8')));
  // Records repeat their names: 200k keys, 3 names.
  const records = Buffer.from('[' + Array.from({ length: 100_000 }, (_, i) => `{"id":${i},"name":"n${i}"}`).join(',') + ']');
  assert.equal((parseJsonInTurns(records, { maxKeyNames: MAX_KEY_NAMES }) as unknown[]).length, 100_000);
  // A name that appears both as a key and as a string value counts once, as a key; values never count.
  const values = Buffer.from('[' + Array.from({ length: 20_000 }, (_, i) => `{"v":"k${i}"}`).join(',') + ']');
  assert.equal((parseJsonInTurns(values, { maxKeyNames: MAX_KEY_NAMES }) as unknown[]).length, 20_000);
});

test('a body with more distinct key names than the limit answers 400 saying so on chat, messages, embeddings, MCP and HTTP tools; the upstream sees none', async () => {
  let calls = 0;
  const api = await localServer((_req, res) => { calls++; res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
  const gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Model', 'emb', { kind: 'embeddings', targets: [{ provider: 'demo', model: 'e' }] }),
    doc('HttpTool', 'crm', { baseUrl: api.url, resource: 'crm', actions: { add: { method: 'POST', path: '/r' } } }),
    doc('Agent', 'a', { workload: 'spiffe://test/agent/a' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'a' }, models: { allow: ['one', 'emb'] }, tools: [{ resource: 'crm', actions: ['add'] }] }),
  ));
  try {
    const key = gw.key('a');
    const many = names(50_000);
    const cases: Array<[string, string, RegExp]> = [
      ['/v1/chat/completions', `{"model":"one","messages":[{"role":"user","content":"hi"}],"metadata":${many}}`, /"code":"invalid_request"/],
      ['/v1/messages', `{"model":"one","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":${many}}`, /"code":"invalid_request"/],
      ['/v1/embeddings', `{"model":"emb","input":"hi","user":${many}}`, /"code":"invalid_request"/],
      ['/mcp', `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":${many}}`, /"code":-32600/],
      ['/tools/crm/add', `{"note":${many}}`, /"code":"invalid_request"/],
    ];
    for (const [path, body, code] of cases) {
      const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });
      const text = await r.text();
      assert.equal(r.status, 400, `${path}: ${text.slice(0, 300)}`);
      assert.match(text, /more than 10000 distinct object key names/, path);
      assert.match(text, code, path);
    }
    assert.equal(calls, 0);
    // The same number of keys as records (a few names) is an ordinary request.
    const records = '[' + Array.from({ length: 25_000 }, (_, i) => `{"id":${i},"v":1}`).join(',') + ']';
    const ok = await fetch(`${gw.url}/tools/crm/add`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: `{"rows":${records}}` });
    assert.equal(ok.status, 200, await ok.text());
  } finally {
    await gw.close();
    await api.close();
  }
});
