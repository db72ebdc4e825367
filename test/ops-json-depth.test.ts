// A deeply nested JSON value inside an otherwise valid request is refused at the door (400 naming
// the field), on every plane, instead of overflowing the stack somewhere downstream (500).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jsonTooDeep, MAX_JSON_DEPTH, stringEnd } from '../src/access/json-depth.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { localServer } from './helpers/e2e.ts';

const nested = (levels: number) => '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);

test('a value nested 10,000 levels deep answers 400 naming the field on chat, messages, embeddings, MCP and HTTP tools', async () => {
  const api = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); });
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
    const deep = nested(10_000);
    const cases: Array<[string, string, string]> = [
      ['/v1/chat/completions', `{"model":"one","messages":[{"role":"user","content":"hi"}],"response_format":${deep}}`, 'response_format'],
      ['/v1/chat/completions', `{"model":"one","messages":[{"role":"user","content":"hi","x":${deep}}]}`, 'messages'],
      ['/v1/messages', `{"model":"one","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"metadata":${deep}}`, 'metadata'],
      ['/v1/embeddings', `{"model":"emb","input":"hi","user":${deep}}`, 'user'],
      ['/mcp', `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":${deep}}`, 'params'],
      ['/tools/crm/add', `{"note":${deep}}`, 'note'],
    ];
    for (const [path, body, field] of cases) {
      const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });
      const text = await r.text();
      assert.equal(r.status, 400, `${path}: ${text.slice(0, 300)}`);
      assert.ok(text.includes(`field \\"${field}\\" nests JSON deeper than ${MAX_JSON_DEPTH} levels`), `${path}: ${text.slice(0, 300)}`);
    }
    // Just inside the limit is an ordinary request.
    const ok = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: `{"model":"one","messages":[{"role":"user","content":"hi"}],"metadata":${nested(MAX_JSON_DEPTH - 1)}}` });
    assert.equal(ok.status, 200, await ok.text());
    assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
  } finally { await gw.close(); await api.close(); }
});

test('the depth scan counts only structure: brackets and escaped quotes inside strings do not count', () => {
  const b = (s: string) => Buffer.from(s);
  assert.equal(jsonTooDeep(b(nested(MAX_JSON_DEPTH))), null);
  assert.deepEqual(jsonTooDeep(b(nested(MAX_JSON_DEPTH + 1))), { offset: 5 * MAX_JSON_DEPTH, field: 'a' });
  assert.equal(jsonTooDeep(b(`{"s":"${'['.repeat(10_000)}"}`)), null);
  assert.equal(jsonTooDeep(b(`{"s":"\\"${'{'.repeat(500)}\\\\","t":[]}`)), null, 'escaped quote stays inside the string; an escaped backslash ends it');
  assert.deepEqual(jsonTooDeep(b(`{"s":"x\\\\","deep":${nested(200)}}`)), { offset: 18 + 5 * (MAX_JSON_DEPTH - 1), field: 'deep' });
  assert.deepEqual(jsonTooDeep(b(`  ${'['.repeat(200)}`))?.field, null, 'a top-level array has no field name');
  assert.equal(jsonTooDeep(b(`{"s":"${'\\\\'.repeat(1000)}`)), null, 'an unterminated string is left to JSON.parse');
  assert.equal(jsonTooDeep(b(nested(MAX_JSON_DEPTH + 1)), MAX_JSON_DEPTH + 1), null, 'the limit is a parameter');
});

test('stringEnd: a string\'s closing quote is found alike within its first bytes (read one by one) and past them (indexOf), whatever runs of backslashes come before it', () => {
  // Every string of quotes, backslashes and letters up to 40 bytes long ending around the 32-byte boundary, against the rule itself.
  const expected = (b: Buffer): number => {
    for (let i = 1; i < b.length; i++) {
      if (b[i] === 0x5c) { i++; continue; }
      if (b[i] === 0x22) return i;
    }
    return -1;
  };
  const alphabet = [0x22, 0x5c, 0x61];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648);
  for (let n = 0; n < 20000; n++) {
    const len = 2 + (next() % 40);
    const b = Buffer.alloc(len, 0x61);
    for (let i = 1; i < len; i++) if (next() % 3 === 0) b[i] = alphabet[next() % 3];
    b[0] = 0x22;
    assert.equal(stringEnd(b, 0), expected(b), JSON.stringify(b.toString()));
  }
  // Past the first bytes: an escaped quote, then the closing one.
  const long = Buffer.from(`"${'x'.repeat(40)}\\"${'y'.repeat(3)}\\\\"tail`);
  assert.equal(stringEnd(long, 0), long.indexOf('"tail'));
});
