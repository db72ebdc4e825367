// Issue 12, findings 2, 6 and 9, through the real gateway: guardrails see every string an agent
// sends or receives on every plane (tool definitions, unknown fields, file and document parts,
// embeddings input, MCP resources and prompts, webhooks on content-part arrays, completions and
// streams), and the prompt estimate behind budgets and tpm cannot be dodged by a chunked upload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { stdioServerDoc } from './fixtures/mcp-accounts/upstream.ts';

const SSN = '078-05-1120';
const ECHO_SECRET = 'sk-echo-7fQ2mZr9XkLw4Vb8Nc3Hs1Tp';
let fake: FakeUpstream;
let gw: TestGateway;
let checker: LocalServer;
let extra: LocalServer;
const seen: Array<{ direction: string; texts?: string[]; text: string }> = [];

function agent(name: string, guardrails: string[], extra: Record<string, unknown> = {}): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: ['gpt', 'claude', 'emb', 'gpt-extra', 'claude-extra', 'emb-extra', 'gpt-echo'] }, guardrails, ...extra }),
  ];
}

before(async () => {
  fake = await startFakeUpstream();
  checker = await localServer((_req, res, body) => {
    const p = JSON.parse(body) as { direction: string; texts?: string[]; text: string };
    seen.push(p);
    const verdict = p.text.includes('forbidden') ? { verdict: 'block', reason: 'policy word' } : { verdict: 'allow' };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(verdict));
  });
  // An upstream whose clean answers carry an SSN in fields aam does not read (vendor extensions,
  // debug fields, keys): what a same-wire pass-through would hand the agent as written.
  extra = await localServer((req, res) => {
    if (req.url?.startsWith('/echo/')) {
      // An upstream that quotes the credential aam injected in its answer.
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'chatcmpl-e', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: `upstream saw ${String(req.headers.authorization)}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } }));
      return;
    }
    const note = { debug_note: `customer ssn ${SSN}`, meta: { [`ssn ${SSN}`]: 1 } };
    const answer = req.url?.endsWith('/embeddings')
      ? { object: 'list', model: 'e', data: [{ object: 'embedding', index: 0, embedding: [0.5, 0.25] }], usage: { prompt_tokens: 1, total_tokens: 1 }, ...note }
      : req.url?.endsWith('/messages')
        ? { id: 'msg_x', type: 'message', role: 'assistant', model: 'c', content: [{ type: 'text', text: 'all clear' }], stop_reason: 'end_turn', stop_sequence: null, usage: { input_tokens: 1, output_tokens: 2 }, ...note }
        : { id: 'chatcmpl-x', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'all clear', reasoning_content: `ssn ${SSN}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }, ...note };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  });
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 }, pricing: { input_per_1m: 10, output_per_1m: 10 } }),
    doc('Model', 'claude', { targets: [{ provider: 'ant', model: 'ok' }], retries: { attempts: 0 }, pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    doc('Model', 'emb', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'e' }], pricing: { input_per_1m: 1, output_per_1m: 0 } }),
    doc('Credential', 'echo-key', { env: 'TEST_ECHO_KEY' }),
    doc('Provider', 'oai-echo', { type: 'openai-compatible', baseUrl: `${extra.url}/echo/v1`, credential: 'echo-key' }),
    doc('Model', 'gpt-echo', { targets: [{ provider: 'oai-echo', model: 'm' }], retries: { attempts: 0 }, pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    doc('Provider', 'oai-extra', { type: 'openai-compatible', baseUrl: `${extra.url}/v1` }),
    doc('Provider', 'ant-extra', { type: 'anthropic', baseUrl: `${extra.url}/v1` }),
    doc('Model', 'gpt-extra', { targets: [{ provider: 'oai-extra', model: 'm' }], retries: { attempts: 0 }, pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    doc('Model', 'claude-extra', { targets: [{ provider: 'ant-extra', model: 'c' }], retries: { attempts: 0 }, pricing: { input_per_1m: 1, output_per_1m: 1 } }),
    doc('Model', 'emb-extra', { kind: 'embeddings', targets: [{ provider: 'oai-extra', model: 'e' }], pricing: { input_per_1m: 1, output_per_1m: 0 } }),
    doc('Guardrail', 'no-ssn', { on: ['input', 'output'], detect: ['ssn'], action: 'block' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'checker-in', { on: ['input'], action: 'block', webhook: { url: `${checker.url}/in`, timeout_ms: 2000, on_error: 'block' } }),
    doc('Guardrail', 'checker-out', { on: ['output'], action: 'block', webhook: { url: `${checker.url}/out`, timeout_ms: 2000, on_error: 'block' } }),
    ...agent('ssn', ['no-ssn'], { tools: [{ resource: 'salesforce.accounts', actions: ['resources/read', 'prompts/get', 'search'] }] }),
    ...agent('masked', ['mask-email-out'], { tools: [{ resource: 'salesforce.accounts', actions: ['resources/read', 'prompts/get', 'search'] }] }),
    ...agent('hooked-in', ['checker-in']),
    ...agent('hooked-out', ['checker-out']),
    ...agent('tight', [], { models: { allow: ['gpt'], budget: { daily_usd: 0.5 } } }),
    stdioServerDoc('salesforce', {}, '  resource: salesforce.accounts'),
  ), { TEST_ECHO_KEY: ECHO_SECRET });
});
after(async () => { await gw?.close(); await checker?.close(); await extra?.close(); await fake?.close(); });

async function post(path: string, agentName: string, body: unknown): Promise<{ status: number; json: { error?: { code?: string; message?: string } } & Record<string, unknown>; text: string }> {
  const r = await fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${gw.key(agentName)}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  let json = {};
  try { json = JSON.parse(text); } catch { /* SSE */ }
  return { status: r.status, json, text };
}

test('an SSN anywhere in a chat request is blocked before the upstream: tool descriptions, unknown fields, file parts, documents', async () => {
  const b64 = (t: string) => Buffer.from(t).toString('base64');
  const cases: Array<[string, string, unknown]> = [
    ['tools[].function.description', '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', description: `customer ssn ${SSN}`, parameters: { type: 'object' } } }] }],
    ['unknown top-level field', '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }], metadata: { note: `ssn ${SSN}` } }],
    ['file part', '/v1/chat/completions', { model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'read this' }, { type: 'file', file: { filename: 'a.txt', file_data: `data:text/plain;base64,${b64(`ssn ${SSN}`)}` } }] }] }],
    ['anthropic document block', '/v1/messages', { model: 'claude', max_tokens: 50, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: `ssn ${SSN}` } }, { type: 'text', text: 'summarise' }] }] }],
    ['anthropic document block (base64)', '/v1/messages', { model: 'claude', max_tokens: 50, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'text/plain', data: b64(`the customer's ssn is ${SSN}, please keep it on file for the account`) } }] }] }],
  ];
  for (const [what, path, body] of cases) {
    const before = fake.requests.length;
    const r = await post(path, 'ssn', body);
    assert.equal(r.status, 400, `${what}: ${r.text}`);
    assert.match(r.text, /guardrail_blocked|no-ssn/, what);
    assert.equal(fake.requests.length, before, `${what}: the upstream never sees it`);
  }
  assert.equal((await post('/v1/chat/completions', 'ssn', { model: 'gpt', messages: [{ role: 'user', content: 'hello' }] })).status, 200, 'a clean request passes');
});

test('/v1/embeddings input passes the input guardrails', async () => {
  const before = fake.requests.length;
  const r = await post('/v1/embeddings', 'ssn', { model: 'emb', input: ['fine', `ssn ${SSN}`] });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error?.code, 'guardrail_blocked');
  assert.equal(fake.requests.length, before);
  assert.equal((await post('/v1/embeddings', 'ssn', { model: 'emb', input: 'fine' })).status, 200);
});

test('/v1/embeddings `user` goes upstream, so it passes the input guardrails too', async () => {
  const before = fake.requests.length;
  const r = await post('/v1/embeddings', 'ssn', { model: 'emb', input: 'fine', user: SSN });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error?.code, 'guardrail_blocked');
  assert.equal(fake.requests.length, before);
  assert.equal((await post('/v1/embeddings', 'ssn', { model: 'emb', input: 'fine', user: 'u-1' })).status, 200);
});

test('with output guardrails, a same-wire answer leaves as aam encodes what they read: upstream fields they never saw are not passed on', async () => {
  const cases: Array<[string, string, unknown]> = [
    ['OpenAI client, OpenAI upstream', '/v1/chat/completions', { model: 'gpt-extra', messages: [{ role: 'user', content: 'hi' }] }],
    ['Anthropic client, Anthropic upstream', '/v1/messages', { model: 'claude-extra', max_tokens: 20, messages: [{ role: 'user', content: 'hi' }] }],
    ['embeddings', '/v1/embeddings', { model: 'emb-extra', input: 'hi' }],
  ];
  for (const [what, path, body] of cases) {
    const r = await post(path, 'ssn', body);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.ok(!r.text.includes(SSN), `${what}: ${r.text}`);
    assert.match(r.text, /all clear|0\.25/, what);
    // Without an output guardrail the body passes as the upstream wrote it (every field kept).
    const plain = await post(path, 'hooked-in', body);
    assert.equal(plain.status, 200, `${what}: ${plain.text}`);
    assert.ok(plain.text.includes('debug_note'), `${what} unguarded: ${plain.text}`);
  }
});

test('a guardrail webhook is a third party: it never gets a credential an upstream echoed (the agent gets the marker)', async () => {
  seen.length = 0;
  const r = await post('/v1/chat/completions', 'hooked-out', { model: 'gpt-echo', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);
  assert.ok(!r.text.includes(ECHO_SECRET) && r.text.includes('[REDACTED:echo-key]'), r.text);
  const out = seen.filter((p) => p.direction === 'output');
  assert.equal(out.length, 1);
  const sent = JSON.stringify(out[0]);
  assert.ok(!sent.includes(ECHO_SECRET) && !sent.includes(ECHO_SECRET.slice(3, 20)), sent);
  assert.match(sent, /upstream saw Bearer \[REDACTED:echo-key\]/);
});

test('webhook guardrails see content-part arrays and every leaf, and run on completions (stream too)', async () => {
  seen.length = 0;
  const parts = await post('/v1/chat/completions', 'hooked-in', { model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'this is forbidden' }] }] });
  assert.equal(parts.status, 400, parts.text);
  assert.ok(seen.some((p) => p.texts?.includes('this is forbidden')), 'the checker got the part text as a leaf');
  // The fake upstream echoes the prompt: the completion carries the word, the output webhook blocks it.
  for (const stream of [false, true]) {
    const out = await post('/v1/chat/completions', 'hooked-out', { model: 'gpt', stream, messages: [{ role: 'user', content: 'say forbidden' }] });
    if (stream) assert.ok(out.status === 400 || /guardrail_blocked/.test(out.text), `stream: ${out.text}`);
    else assert.equal(out.status, 400, out.text);
    assert.ok(!/echo: say forbidden/.test(out.text), `stream=${stream}: the blocked completion never reaches the agent`);
    assert.ok(seen.some((p) => p.direction === 'output' && p.text.includes('forbidden')));
  }
  const fine = await post('/v1/chat/completions', 'hooked-out', { model: 'gpt', stream: true, messages: [{ role: 'user', content: 'say hello' }] });
  assert.equal(fine.status, 200);
  assert.match(fine.text, /data: /, 'still a stream');
  assert.match(fine.text.replace(/"\}[^]*?"content":"/g, ''), /hello/);
});

test('MCP resources/read and prompts/get results pass output guardrails', async () => {
  const connect = async (agentName: string) => {
    const c = new Client({ name: 't', version: '1' });
    await c.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.key(agentName)}` } } }));
    return c;
  };
  const masked = await connect('masked');
  try {
    await masked.listResources();
    const r = await masked.readResource({ uri: 'account://a1' });
    const text = JSON.stringify(r);
    assert.ok(!text.includes('jane@example.com'), text);
    assert.match(text, /\[EMAIL\]/);
    // A file's bytes (`blob`, base64 by the protocol) are read as the text they hold, and redacted there.
    await masked.listResourceTemplates();
    const file = await masked.readResource({ uri: 'account-history://a1/1999' });
    const csv = Buffer.from((file.contents[0] as { blob: string }).blob, 'base64').toString('utf8');
    assert.equal(csv, 'id,contact\na1,[EMAIL]\n');
  } finally { await masked.close(); }
  const ssn = await connect('ssn');
  try {
    await assert.rejects(ssn.getPrompt({ name: 'salesforce__summarize_account', arguments: { id: `ssn ${SSN}` } }), /guardrail|no-ssn/);
    const ok = await ssn.getPrompt({ name: 'salesforce__summarize_account', arguments: { id: 'a1' } });
    assert.match(JSON.stringify(ok), /Summarize account a1/);
  } finally { await ssn.close(); }
});

test('a chunked upload cannot dodge the budget pre-check (the bytes read, not content-length, bound the prompt)', async () => {
  const big = { model: 'gpt', max_tokens: 16, messages: [{ role: 'user', content: 'x '.repeat(200_000) }] };
  const bytes = Buffer.from(JSON.stringify(big));
  const key = gw.key('tight');
  const send = (chunked: boolean) => fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: chunked ? new ReadableStream({ start(c) { for (let i = 0; i < bytes.length; i += 65_536) c.enqueue(bytes.subarray(i, i + 65_536)); c.close(); } }) : bytes,
    ...(chunked ? { duplex: 'half' } : {}),
  } as RequestInit);
  const before = fake.requests.length;
  // ~100k prompt tokens at $10 per 1M is ~$1 of worst case: over the $0.50 daily budget.
  const withLength = await send(false);
  assert.equal(withLength.status, 429, (await withLength.text()).slice(0, 300));
  const chunked = await send(true);
  const body = await chunked.text();
  assert.equal(chunked.status, 429, `chunked upload must be refused the same way: ${body.slice(0, 300)}`);
  assert.match(body, /budget_exceeded/);
  assert.equal(fake.requests.length, before, 'neither reached the upstream');
});

test('object keys are content: an SSN in a key is blocked in a chat request (unknown fields, tool parameter names, tool-call arguments)', async () => {
  const cases: Array<[string, unknown]> = [
    ['unknown field key', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }], metadata: { [`ssn ${SSN}`]: true } }],
    ['tool parameter name', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { [`ssn ${SSN}`]: { type: 'string' } } } } }] }],
    ['tool-call arguments key', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: JSON.stringify({ note: { [`SSN ${SSN}`]: 1 } }) } }] }, { role: 'tool', tool_call_id: 'c1', content: 'ok' }] }],
  ];
  for (const [what, body] of cases) {
    const before = fake.requests.length;
    const r = await post('/v1/chat/completions', 'ssn', body);
    assert.equal(r.status, 400, `${what}: ${r.text}`);
    assert.equal(r.json.error?.code, 'guardrail_blocked', what);
    assert.equal(fake.requests.length, before, `${what}: the upstream never sees it`);
  }
});

test('object keys are content: an SSN in a key of MCP tools/call arguments is blocked', async () => {
  const c = new Client({ name: 't', version: '1' });
  await c.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.key('ssn')}` } } }));
  try {
    await assert.rejects(c.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'acme', note: { [`SSN ${SSN}`]: true } } }), /no-ssn/);
  } finally { await c.close(); }
});
