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
function offences(where: string, text: string): Offence[] {
  return Object.entries(SECRETS).filter(([, s]) => forms(s).some((f) => text.includes(f))).map(([secret]) => ({ where, secret }));
}
function assertClean(what: string, text: string): void {
  assert.deepEqual(offences(what, text), [], `${what} contains a secret`);
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
/** Where a secret turned up in something aam wrote, filled by the file/log grep. */
interface Offence { where: string; secret: string }

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
  await until(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 60_000, `gateway ready; logs: ${logs}`);
});

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await new Promise((r) => child.once('exit', r)); }
  await echo?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Raw call: status, headers (as JSON) and body text. */
async function call(path: string, body: unknown): Promise<{ status: number; text: string; headers: string }> {
  const r = await fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, text: await r.text(), headers: JSON.stringify([...r.headers]) };
}
const msg = (model: string, content: string, stream = false) => ({ model, messages: [{ role: 'user', content }], ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) });
const sdk = () => new OpenAI({ apiKey: key, baseURL: `${url}/v1`, maxRetries: 0 });

/** Streamed text content reassembled from an OpenAI SSE body (what a client shows the agent). */
function sseText(body: string): string {
  let t = '';
  for (const l of body.split('\n')) {
    if (!l.startsWith('data: ') || l.includes('[DONE]')) continue;
    t += (JSON.parse(l.slice(6)) as { choices?: Array<{ delta?: { content?: string } }> }).choices?.[0]?.delta?.content ?? '';
  }
  return t;
}

/** Every file under dir, recursively (databases, -wal, -shm, keys, exports). */
function allFiles(d: string): string[] {
  return readdirSync(d).flatMap((n) => { const p = join(d, n); return statSync(p).isDirectory() ? allFiles(p) : [p]; });
}
function grepFiles(d: string): Offence[] {
  return allFiles(d).flatMap((f) => offences(f.slice(dir.length + 1), readFileSync(f).toString('latin1')));
}

test('chat JSON: the upstream gets the credential, the echoed credential comes back as a marker', async () => {
  seen.length = 0;
  const json = await call('/v1/chat/completions', msg('echo', 'json please'));
  assert.equal(json.status, 200, json.text);
  assert.equal(seen[0].headers.authorization, `Bearer ${LLM_SECRET}`, 'the credential was injected upstream');
  assert.ok(!JSON.stringify(seen[0].headers).includes(key), 'the agent key is not forwarded');
  assert.match(json.text, /authorization/, 'the echo really came back (so the scrubber had work to do)');
  assert.match(json.text, /REDACTED:llm-key/);
  assertClean('JSON answer', json.text + json.headers);
  const { data, response } = await sdk().chat.completions.create({ model: 'echo', messages: [{ role: 'user', content: 'sdk' }] }).withResponse();
  assert.match(data.choices[0].message.content ?? '', /REDACTED:llm-key/);
  assertClean('SDK answer', JSON.stringify(data) + JSON.stringify([...response.headers]));
});

test('chat stream: a credential split over many SSE chunks never reaches the agent', async () => {
  const raw = await call('/v1/chat/completions', msg('echo', 'stream please', true));
  assert.equal(raw.status, 200);
  assert.match(raw.text, /\[DONE\]/);
  assertClean('raw SSE bytes', raw.text + raw.headers);
  const text = sseText(raw.text);
  assert.match(text, /authorization/, 'the echo streamed back');
  assertClean('reassembled streamed content', text);
  const s = await sdk().chat.completions.create({ model: 'echo', stream: true, messages: [{ role: 'user', content: 'sdk stream' }] });
  let streamed = '';
  for await (const c of s) streamed += c.choices[0]?.delta?.content ?? '';
  assertClean('SDK streamed content', streamed);
});

test('upstream errors quoting the credential (JSON, stream, SDK) are scrubbed', async () => {
  const fail = await call('/v1/chat/completions', msg('echo-fail', 'fail please'));
  assert.equal(fail.status, 502);
  assert.match(fail.text, /Incorrect API key provided/);
  const failStream = await call('/v1/chat/completions', msg('echo-fail', 'fail stream please', true));
  assert.ok(failStream.status >= 400);
  const e = await sdk().chat.completions.create({ model: 'echo-fail', messages: [{ role: 'user', content: 'sdk fail' }] }).catch((x: unknown) => x);
  assert.ok(e instanceof OpenAI.APIError);
  assertClean('JSON error', fail.text + fail.headers);
  assertClean('stream error', failStream.text + failStream.headers);
  assertClean('SDK error', `${e.message} ${JSON.stringify(e.error)}`);
});

test('HTTP tool: credential injected upstream; echoed result and upstream error bodies scrubbed', async () => {
  seen.length = 0;
  const ok = await call('/tools/echo-api/read', { id: 'item-1' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(seen[0].url, '/items/item-1');
  assert.match(JSON.stringify(seen[0].headers), new RegExp(TOOL_SECRET));
  assert.match(ok.text, /REDACTED:tool-key/, 'the echoed credential was replaced by a marker');
  const fail = await call('/tools/echo-api/fail', { note: 'x' });
  assert.ok(fail.status >= 400, `upstream 500 surfaces as an error (${fail.status})`);
  assertClean('a tool response body', ok.text);
  assertClean('a tool error body', fail.text);
});

test('HTTP tool: upstream response headers are scrubbed too', async () => {
  const ok = await call('/tools/echo-api/read', { id: 'item-2' });
  const fail = await call('/tools/echo-api/fail', { note: 'y' });
  assertClean('tool response headers', ok.headers);
  assertClean('tool error response headers', fail.headers);
});

test('stored credential (aam credentials set via stdin) is used upstream and `credentials list` never shows it', async () => {
  seen.length = 0;
  const r = await call('/v1/chat/completions', msg('stored', 'stored'));
  assert.equal(r.status, 200, r.text);
  assert.equal(seen[0].headers.authorization, `Bearer ${STORED_SECRET}`);
  assert.match(r.text, /REDACTED:stored-key/);
  assertClean('stored-credential answer', r.text);
  const list = await runCli(['credentials', 'list', '--json', '--config', cfg, '--data', data]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /stored-key/);
  assertClean('credentials list', list.stdout + list.stderr);
});

let found: Offence[] = [];
test('grep everything aam wrote: logs, every data file (incl. WAL) while running and after shutdown, audit exports', async () => {
  const running = allFiles(data);
  assert.ok(running.some((f) => f.endsWith('-wal')), `expected WAL files while running: ${running.join(', ')}`);
  found.push(...grepFiles(data));
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
  assert.equal(ocsf.code, 0, ocsf.stderr);
  found.push(...offences('OCSF export', ocsf.stdout), ...grepFiles(dir), ...offences('gateway log output', logs));
  found = found.filter((o, i) => found.findIndex((x) => x.where === o.where && x.secret === o.secret) === i);
  const files = allFiles(dir).map((f) => f.slice(dir.length + 1));
  assert.ok(files.includes('data/audit.db') && files.includes('data/audit-sink.jsonl') && files.includes('export.jsonl'), files.join(', '));
  assert.ok(logs.split('\n').filter(Boolean).length > 5, 'debug logging produced output to grep');
  // Strict: the stored and tool secrets are nowhere, and nothing leaked into the logs or the
  // gateway's own database (keys, usage, vault ciphertext).
  assert.deepEqual(found.filter((o) => o.secret !== 'llm'), [], 'stored/tool secret written somewhere');
  assert.deepEqual(found.filter((o) => o.where === 'gateway log output' || /^data\/aam\.db/.test(o.where)), [], 'secret in logs or the gateway db');
});

test('the audit trail (db, sink file, exports) holds no credential', () => {
  assert.deepEqual(found, []);
});
