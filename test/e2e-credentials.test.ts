// Credentials never leak, end to end with the real CLI: a gateway process (debug logging) in front
// of upstreams that echo every header and body they receive (LLM JSON + SSE, HTTP tool, errors).
// The upstreams must receive the secrets; the agent must never see them (bodies, headers,
// streams, errors), and nothing aam wrote (logs, every file in the data dir incl. WAL, the audit
// export) may contain them in plain, base64 or URL-encoded form. A `stored: true` credential is
// set through `aam credentials set` (stdin) and works without its plaintext touching the disk.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { doc, yaml } from './helpers/gateway.ts';
import { localServer, runCli, freePort, until, NODE_BIN, CLI, ROOT, type LocalServer } from './helpers/e2e.ts';

const LLM_SECRET = 'sk-LEAKTEST-llm-7f3a9c2e1b4d5f60aa';
const TOOL_SECRET = 'tok-LEAKTEST-tool-91b2c3d4e5f6a7b8';
const STORED_SECRET = 'sk-LEAKTEST-stored-0c1d2e3f4a5b6c7d';
const SECRETS = { llm: LLM_SECRET, tool: TOOL_SECRET, stored: STORED_SECRET };

/** Every form a secret could leak in. */
function forms(secret: string): string[] {
  return [secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url'), encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)];
}
function assertClean(what: string, text: string): void {
  for (const [name, s] of Object.entries(SECRETS)) {
    for (const f of forms(s)) assert.ok(!text.includes(f), `${what} contains the ${name} secret (${f === s ? 'plain' : 'encoded'})`);
  }
}

let echo: LocalServer;
const seen: Array<{ url: string; headers: Record<string, unknown> }> = [];
let dir: string;
let cfg: string;
let data: string;
let url: string;
let key: string;
let child: ChildProcess;
let logs = '';
/** Everything the agent received: status, every header and every body. */
const agentSaw: string[] = [];

before(async () => {
  // Echo upstream: LLM answers whose content is JSON of the headers + body it got; HTTP tool
  // answers with the same; /fail and model echo-401 fail with the credential in the error text.
  echo = await localServer((req, res, body) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    const dump = JSON.stringify({ headers: req.headers, body });
    if (req.url === '/v1/chat/completions') {
      const b = JSON.parse(body) as { model: string; stream?: boolean };
      if (b.model === 'echo-401') {
        res.writeHead(401, { 'content-type': 'application/json', 'x-echo-auth': String(req.headers.authorization) }).end(JSON.stringify({ error: { message: `Incorrect API key provided: ${String(req.headers.authorization)}. ${dump}`, type: 'invalid_request_error', code: 'invalid_api_key' } }));
        return;
      }
      const usage = { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 };
      if (!b.stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': String(req.headers.authorization) })
          .end(JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion', created: 1764081600, model: b.model, choices: [{ index: 0, message: { role: 'assistant', content: dump }, finish_reason: 'stop' }], usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-echo-auth': String(req.headers.authorization) });
      const chunk = (delta: object, finish: string | null) => `data: ${JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion.chunk', created: 1764081600, model: b.model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      // 3-character pieces: every secret is split over many chunks.
      for (let i = 0; i < dump.length; i += 3) res.write(chunk({ content: dump.slice(i, i + 3) }, null));
      res.write(chunk({}, 'stop'));
      res.write(`data: ${JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion.chunk', created: 1764081600, model: b.model, choices: [], usage })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    if (req.url === '/fail') {
      res.writeHead(500, { 'content-type': 'text/plain', 'x-echo-auth': String(req.headers.authorization) }).end(`upstream exploded; request was ${dump}`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'x-echo-auth': String(req.headers.authorization) }).end(dump);
  });

  dir = mkdtempSync(join(tmpdir(), 'aam-leak-'));
  cfg = join(dir, 'aam.yaml');
  data = join(dir, 'data');
  writeFileSync(cfg, yaml(
    doc('Credential', 'llm-key', { env: 'LEAK_TEST_LLM_KEY' }),
    doc('Credential', 'tool-key', { env: 'LEAK_TEST_TOOL_KEY' }),
    doc('Credential', 'stored-key', { stored: true }),
    doc('Provider', 'echo', { type: 'openai-compatible', baseUrl: `${echo.url}/v1`, credential: 'llm-key' }),
    doc('Provider', 'echo-stored', { type: 'openai-compatible', baseUrl: `${echo.url}/v1`, credential: 'stored-key' }),
    doc('Model', 'echo', { targets: [{ provider: 'echo', model: 'echo-ok' }], retries: { attempts: 0 } }),
    doc('Model', 'echo-fail', { targets: [{ provider: 'echo', model: 'echo-401' }], retries: { attempts: 0 } }),
    doc('Model', 'stored', { targets: [{ provider: 'echo-stored', model: 'echo-ok' }], retries: { attempts: 0 } }),
    doc('HttpTool', 'echo-api', { baseUrl: echo.url, credential: 'tool-key', resource: 'echo.api', actions: { read: { method: 'GET', path: '/items/{id}' }, fail: { method: 'POST', path: '/fail' } } }),
    doc('Agent', 'agent-x', { workload: 'spiffe://test/agent/x', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'agent-x-policy', { identity: { workload: 'spiffe://test/agent/x' }, models: { allow: ['echo', 'echo-fail', 'stored'] }, tools: [{ resource: 'echo.api', actions: ['read', 'fail'] }] }),
  ));
  const g = ['--config', cfg, '--data', data];
  const set = await runCli(['credentials', 'set', 'stored-key', ...g], { stdin: STORED_SECRET });
  assert.equal(set.code, 0, set.stderr);
  logs += set.stdout + set.stderr;
  const k = await runCli(['keys', 'create', '--agent', 'agent-x', ...g]);
  assert.equal(k.code, 0, k.stderr);
  key = k.stdout.trim().split('\n').at(-1) ?? '';
  const port = await freePort();
  child = spawn(NODE_BIN, [CLI, 'serve', ...g, '--port', String(port), '--host', '127.0.0.1'], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, AAM_LOG_LEVEL: 'debug', LEAK_TEST_LLM_KEY: LLM_SECRET, LEAK_TEST_TOOL_KEY: TOOL_SECRET, AAM_AUDIT_FILE: join(data, 'audit-sink.jsonl') },
  });
  child.stdout?.on('data', (c: Buffer) => { logs += c.toString(); });
  child.stderr?.on('data', (c: Buffer) => { logs += c.toString(); });
  url = `http://127.0.0.1:${port}`;
  await until(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 8000, `gateway ready; logs: ${logs}`);
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); }
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Raw call; records everything the agent could see. */
async function call(path: string, body: unknown, record = true): Promise<{ status: number; text: string; headers: string }> {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await r.text();
  const headers = JSON.stringify([...r.headers]);
  if (record) agentSaw.push(`${r.status} ${headers}\n${text}`);
  return { status: r.status, text, headers };
}

/** Every file under dir, recursively (database, -wal, -shm, keys, exports). */
function allFiles(d: string): string[] {
  return readdirSync(d).flatMap((n) => { const p = join(d, n); return statSync(p).isDirectory() ? allFiles(p) : [p]; });
}
function grepFiles(d: string): string[] {
  const files = allFiles(d);
  for (const f of files) for (const l of readFileSync(f).toString('latin1').split('\n')) if (l.includes(LLM_SECRET)) console.log('FILEDBG', f, l.slice(0, 1500));
  for (const f of files) assertClean(`file ${f}`, readFileSync(f).toString('latin1'));
  return files;
}

test('chat JSON, stream and upstream errors: the upstream gets the credential, the agent never sees it', async () => {
  const msg = (content: string) => ({ messages: [{ role: 'user', content }] });
  seen.length = 0;
  const json = await call('/v1/chat/completions', { model: 'echo', ...msg('json please') });
  assert.equal(json.status, 200);
  assert.equal(seen[0].headers.authorization, `Bearer ${LLM_SECRET}`, 'the credential was injected upstream');
  assert.ok(!JSON.stringify(seen[0].headers).includes(key), 'the agent key is not forwarded');
  assert.match(json.text, /authorization/, 'the echo really came back (so the scrubber had work to do)');
  assert.match(json.text, /REDACTED:llm-key/);
  const stream = await call('/v1/chat/completions', { model: 'echo', stream: true, stream_options: { include_usage: true }, ...msg('stream please') });
  assert.equal(stream.status, 200);
  assert.match(stream.text, /\[DONE\]/);
  const fail = await call('/v1/chat/completions', { model: 'echo-fail', ...msg('fail please') });
  assert.ok(fail.status >= 400, `error passes through as an error (${fail.status})`);
  const failStream = await call('/v1/chat/completions', { model: 'echo-fail', stream: true, ...msg('fail stream please') });
  assert.ok(failStream.status >= 400);
  // The official SDK sees the same clean answer.
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });
  const { data: r, response } = await client.chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'sdk' }] }).withResponse();
  agentSaw.push(JSON.stringify([...response.headers]) + JSON.stringify(r));
  const s = await client.chat.completions.create({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'sdk stream' }] });
  let streamed = '';
  for await (const c of s) streamed += c.choices[0]?.delta?.content ?? '';
  agentSaw.push(streamed);
  assert.match(streamed, /authorization/);
  const e = await client.chat.completions.create({ model: 'echo-fail', messages: [{ role: 'user', content: 'sdk fail' }] }).catch((x: unknown) => x);
  assert.ok(e instanceof OpenAI.APIError);
  agentSaw.push(`${e.message} ${JSON.stringify(e.error)} ${JSON.stringify(e.headers)}`);
  for (const t of agentSaw) if (t.includes(LLM_SECRET)) console.log('LEAKDBG', t.slice(0, 2500));
  for (const t of agentSaw) assertClean('a response to the agent', t);
});

test('HTTP tool: credential injected upstream; echoed result and upstream error bodies scrubbed', async () => {
  seen.length = 0;
  const ok = await call('/tools/echo-api/read', { id: 'item-1' }, false);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(seen[0].url, '/items/item-1');
  assert.match(JSON.stringify(seen[0].headers), new RegExp(TOOL_SECRET));
  assert.match(ok.text, /REDACTED:tool-key/, 'the echoed credential was replaced by a marker');
  const fail = await call('/tools/echo-api/fail', { note: 'x' }, false);
  assert.ok(fail.status >= 400, `upstream 500 surfaces as an error (${fail.status})`);
  assertClean('a tool response body', ok.text);
  assertClean('a tool error body', fail.text);
});

// BUG (todo): src/tools/http-tool.ts (the response-header loop before res.writeHead, ~line 190)
// copies upstream response headers to the agent unscrubbed, so an upstream that reflects the
// Authorization header (here `x-echo-auth`) hands the agent the credential.
test('HTTP tool: upstream response headers are scrubbed too', { todo: 'src/tools/http-tool.ts forwards upstream response header values without deps.scrub' }, async () => {
  const ok = await call('/tools/echo-api/read', { id: 'item-2' }, false);
  const fail = await call('/tools/echo-api/fail', { note: 'y' }, false);
  assertClean('tool response headers', ok.headers);
  assertClean('tool error response headers', fail.headers);
});

test('stored credential (aam credentials set via stdin) is used upstream and never stored or returned in plaintext', async () => {
  seen.length = 0;
  const r = await call('/v1/chat/completions', { model: 'stored', messages: [{ role: 'user', content: 'stored' }] });
  assert.equal(r.status, 200, r.text);
  assert.equal(seen[0].headers.authorization, `Bearer ${STORED_SECRET}`);
  assertClean('stored-credential answer', r.text);
  const list = await runCli(['credentials', 'list', '--json', '--config', cfg, '--data', data]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /stored-key/);
  assertClean('credentials list', list.stdout + list.stderr);
});

test('nothing aam wrote contains a secret: logs, every data file (incl. WAL) while running and after shutdown, the audit export', async () => {
  // While running: WAL files still hold recent pages.
  const running = grepFiles(data);
  assert.ok(running.some((f) => f.endsWith('-wal')), `expected WAL files while running: ${running.join(', ')}`);
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  const exportFile = join(dir, 'export.jsonl');
  const ex = await runCli(['audit', 'export', '--out', exportFile, '--config', cfg, '--data', data]);
  assert.equal(ex.code, 0, ex.stderr);
  const exported = readFileSync(exportFile, 'utf8');
  assert.match(exported, /"model_call"/);
  assert.match(exported, /"credential_leak"/, 'the echoed credential was reported as a leak event');
  assert.match(exported, /llm-key/, 'events name the credential');
  const ocsf = await runCli(['audit', 'export', '--format', 'ocsf', '--config', cfg, '--data', data]);
  assertClean('OCSF export', ocsf.stdout);
  const files = grepFiles(dir);
  assert.ok(files.some((f) => f.endsWith('audit.db')) && files.some((f) => f.endsWith('audit-sink.jsonl')), files.join(', '));
  assert.ok(logs.split('\n').filter(Boolean).length > 5, 'debug logging produced output to grep');
  assertClean('the gateway log output', logs);
});
