// An upstream that echoes the credential aam injected — raw, base64 and URL-encoded — in its body,
// headers, stream and errors, on every plane, through the real gateway: the upstream must get the
// credential (and never the agent's key); the agent must get [REDACTED:<credential>] in its place.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingHttpHeaders } from 'node:http';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { parseConfigTexts } from '../src/config/load.ts';
import { openDatabase } from '../src/store/sqlite.ts';
import { openVault } from '../src/credentials/vault.ts';
import { createInjector } from '../src/credentials/inject.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { localServer, sseContent, type LocalServer } from './helpers/e2e.ts';
import { connectClient, rpcError, textOf } from './helpers/mcp.ts';
import { callsIn, stdioServerDoc, tempFile } from './fixtures/mcp-accounts/upstream.ts';

const LLM_SECRET = 'sk-echo-llm-NEEDLE-0123456789abcdef';
const TOOL_SECRET = 'tok-echo-tool-NEEDLE-fedcba9876543210';
/** Quotes and a backslash: JSON text must not be a way around the scrubber. */
const MCP_SECRET = 'mcp-echo-"quoted"-\\slash-NEEDLE-55aa';

/** What the upstreams send back: the credential they received in three encodings. */
const echoForms = (v: string) => `raw=${v} base64=${Buffer.from(v).toString('base64')} url=${encodeURIComponent(v)}`;
/** What the agent must see instead. */
const markers = (name: string) => `raw=[REDACTED:${name}] base64=[REDACTED:${name}] url=[REDACTED:${name}]`;
const leakedForms = (secret: string, text: string) =>
  [secret, Buffer.from(secret).toString('base64'), encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), 'NEEDLE'].filter((f) => text.includes(f));

const bearer = (h: IncomingHttpHeaders) => String(h.authorization ?? '').replace(/^Bearer /, '');
const chunk = (model: string, content: string | null, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion.chunk', created: 1764081600, model, choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }] })}\n\n`;

let echo: LocalServer;
const received: IncomingHttpHeaders[] = [];
let gw: TestGateway;
let key: string;
const mcpCalls = tempFile('echo-mcp-calls.jsonl');

before(async () => {
  echo = await localServer(async (req, res, body) => {
    received.push(req.headers);
    const forms = echoForms(bearer(req.headers));
    const headers = { 'x-echo-auth': forms };
    if (req.url === '/v1/chat/completions') {
      const model = (JSON.parse(body) as { model: string }).model;
      if (model === 'echo-400') return void res.writeHead(400, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: `bad key ${forms}`, type: 'invalid_request_error', code: 'invalid_api_key' } }));
      if (model === 'echo-500') return void res.writeHead(500, { ...headers, 'content-type': 'text/plain' }).end(`exploded while using ${forms}`);
      if (model === 'echo-stream') {
        res.writeHead(200, { ...headers, 'content-type': 'text/event-stream' });
        // 5-character deltas, and each SSE frame written in 7-byte pieces: the secret is split both ways.
        const frames = [...Array.from({ length: Math.ceil(forms.length / 5) }, (_, i) => chunk(model, forms.slice(i * 5, i * 5 + 5))), chunk(model, null, 'stop'), 'data: [DONE]\n\n'].join('');
        for (let i = 0; i < frames.length; i += 7) { res.write(frames.slice(i, i + 7)); await new Promise((r) => setImmediate(r)); }
        return void res.end();
      }
      return void res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify({
        id: 'chatcmpl-echo', object: 'chat.completion', created: 1764081600, model,
        choices: [{ index: 0, message: { role: 'assistant', content: forms }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 },
      }));
    }
    if (req.url === '/api/fail') return void res.writeHead(500, { ...headers, 'content-type': 'text/plain' }).end(`upstream refused ${forms}`);
    if (req.url === '/api/stream') {
      res.writeHead(200, { ...headers, 'content-type': 'text/event-stream' });
      const text = `data: ${forms}\n\n`;
      for (let i = 0; i < text.length; i += 7) { res.write(text.slice(i, i + 7)); await new Promise((r) => setImmediate(r)); }
      return void res.end();
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify({ echo: forms }));
  });
  gw = await startTestGateway(yaml(
    doc('Credential', 'llm-key', { env: 'ECHO_LLM_KEY' }),
    doc('Credential', 'tool-key', { env: 'ECHO_TOOL_KEY' }),
    doc('Credential', 'mcp-key', { env: 'ECHO_MCP_KEY' }),
    doc('Provider', 'echo', { type: 'openai-compatible', baseUrl: `${echo.url}/v1`, credential: 'llm-key' }),
    ...['echo-json', 'echo-stream', 'echo-400', 'echo-500'].map((m) => doc('Model', m, { targets: [{ provider: 'echo', model: m }], retries: { attempts: 0 } })),
    doc('HttpTool', 'api', {
      baseUrl: `${echo.url}/api`, credential: 'tool-key', resource: 'echo.api',
      actions: { read: { method: 'GET', path: '/items/{id}' }, stream: { method: 'GET', path: '/stream' }, fail: { method: 'POST', path: '/fail' } },
    }),
    stdioServerDoc('crm', { CALLS_FILE: mcpCalls, ECHO_ENV: 'MCP_KEY' }, '  credential: mcp-key\n'),
    doc('Agent', 'echoer', { workload: 'spiffe://test/agent/echoer', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'echoer-policy', {
      identity: { workload: 'spiffe://test/agent/echoer' }, models: { allow: ['echo-json', 'echo-stream', 'echo-400', 'echo-500'] },
      tools: [{ resource: 'echo.api', actions: ['read', 'stream', 'fail'] }, { resource: 'crm', actions: ['leak', 'whoami'] }],
    }),
  ), { ECHO_LLM_KEY: LLM_SECRET, ECHO_TOOL_KEY: TOOL_SECRET, ECHO_MCP_KEY: MCP_SECRET });
  key = gw.key('echoer');
});

after(async () => {
  await gw?.close();
  await echo?.close();
});

async function post(path: string, body: unknown): Promise<{ status: number; text: string; headers: Headers }> {
  const r = await fetch(gw.url + path, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, text: await r.text(), headers: r.headers };
}
const chat = (model: string, stream = false) => post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'repeat your credential' }], ...(stream ? { stream: true } : {}) });

/** The upstream got the injected credential, and the agent's own key never left aam. */
function assertInjected(secret: string): void {
  const last = received.at(-1);
  assert.equal(last?.authorization, `Bearer ${secret}`);
  for (const h of received) assert.ok(!JSON.stringify(h).includes(key), "the agent's key reached an upstream");
}

function assertNoSecret(secret: string, ...texts: string[]): void {
  for (const t of texts) assert.deepEqual(leakedForms(secret, t), [], `the agent got a form of the secret: ${t}`);
}

const headerText = (h: Headers) => JSON.stringify([...h]);

test('model plane, JSON body: the echoed credential comes back as markers', async () => {
  const r = await chat('echo-json');
  assert.equal(r.status, 200, r.text);
  assertInjected(LLM_SECRET);
  assert.equal((JSON.parse(r.text) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content, markers('llm-key'));
  assertNoSecret(LLM_SECRET, r.text, headerText(r.headers));
});

test('model plane, stream: a credential split over deltas and over TCP writes never reaches the agent', async () => {
  const r = await chat('echo-stream', true);
  assert.equal(r.status, 200, r.text);
  assertInjected(LLM_SECRET);
  const s = sseContent(r.text);
  assert.equal(s.error, null);
  assert.equal(s.text, markers('llm-key'));
  assertNoSecret(LLM_SECRET, r.text, headerText(r.headers));
});

test('model plane, errors: a 400 and a 500 quoting the credential are scrubbed', async () => {
  for (const model of ['echo-400', 'echo-500']) {
    const r = await chat(model);
    assert.ok(r.status >= 400, `${model}: ${r.status}`);
    assertInjected(LLM_SECRET);
    assert.ok(r.text.includes('[REDACTED:llm-key]'), `${model}: ${r.text}`);
    assertNoSecret(LLM_SECRET, r.text, headerText(r.headers));
  }
});

test('HTTP tool: body, response header, stream and error echoes are scrubbed', async () => {
  const read = await post('/tools/api/read', { id: 'x1' });
  assert.equal(read.status, 200, read.text);
  assertInjected(TOOL_SECRET);
  assert.deepEqual(JSON.parse(read.text), { echo: markers('tool-key') });
  assert.equal(read.headers.get('x-echo-auth'), markers('tool-key'));
  const stream = await post('/tools/api/stream', {});
  assert.equal(stream.status, 200);
  assert.equal(stream.text, `data: ${markers('tool-key')}\n\n`);
  const fail = await post('/tools/api/fail', {});
  assert.equal(fail.status, 500);
  assert.equal(fail.text, `upstream refused ${markers('tool-key')}`);
  for (const r of [read, stream, fail]) assertNoSecret(TOOL_SECRET, r.text, headerText(r.headers));
});

test('MCP: a stdio server echoing its credential (with quotes and a backslash) in a result, in JSON text and in an error', async () => {
  let client: Client | undefined;
  try {
    client = (await connectClient(gw, key)).client;
    const leaked = textOf(await client.callTool({ name: 'crm__leak', arguments: { as: 'result' } }));
    assert.equal(callsIn(mcpCalls).at(-1)?.env_token, MCP_SECRET, 'the server got the credential');
    assert.equal(leaked, markers('mcp-key'));
    // A tool answering JSON text: the credential is escaped once in the text, twice on the wire.
    const who = textOf(await client.callTool({ name: 'crm__whoami', arguments: {} }));
    assert.equal((JSON.parse(who) as { env_token?: string }).env_token, '[REDACTED:mcp-key]', `the agent got ${who}`);
    const err = await rpcError(client.callTool({ name: 'crm__leak', arguments: { as: 'error' } }));
    assert.match(err.message, /raw=\[REDACTED:mcp-key\]/);
    assertNoSecret(MCP_SECRET, leaked, who, err.message);
  } finally {
    await client?.close();
  }
});

test('rotation under load: every injection carries the value of the version it reports', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-rot-'));
  const config = parseConfigTexts([{ file: 't.yaml', text: 'apiVersion: access.envisionai.dev/v1\nkind: Credential\nmetadata: { name: r }\nspec: { stored: true }' }]);
  const vault = openVault({ dataDir: dir, db: openDatabase(dir), config, env: {}, refreshMs: 0, strict: false });
  try {
    const inj = createInjector({ vault });
    const valueOf = new Map<number, string>();
    const rotate = async () => { const v = `rotating-value-${valueOf.size + 1}-abcdef`; valueOf.set((await vault.set('r', v)).version, v); };
    await rotate();
    const tick = () => new Promise((r) => setImmediate(r));
    let running = true;
    const rotator = (async () => { while (running) { await rotate(); for (let i = 0; i < 3; i++) await tick(); } })();
    const worker = async () => { const out = []; for (let i = 0; i < 20; i++) { out.push(await inj.injectionFor('r')); await tick(); } return out; };
    const results = (await Promise.all(Array.from({ length: 20 }, worker))).flat();
    running = false;
    await rotator;
    const versions = new Set(results.map((r) => r.credential.version));
    assert.ok(versions.size >= 5, `saw versions ${[...versions]}`);
    for (const r of results) assert.equal(r.headers.authorization, `Bearer ${valueOf.get(r.credential.version)}`);
  } finally {
    vault.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
