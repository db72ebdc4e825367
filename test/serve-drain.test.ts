// Graceful shutdown with long-lived streams open: close() stops accepting, ends the MCP listen
// streams (only aam can end them: the client would hold them forever), lets an in-flight model
// stream finish, and is bounded by AAM_DRAIN_TIMEOUT_MS (then the rest is cut, and counted); the
// final audit checkpoint is always written after it. Without the drain, an open listen stream held
// server.close() until Node's request timeout (60 s) and SIGTERM's hard deadline exited 1 without
// the audit trail's close.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { serversReady, sseMessages, ADMIN_TOKEN } from './helpers/mcp.ts';
import { listenLoopback, until } from './helpers/e2e.ts';
import { startServeChild, createKey } from './helpers/serve-child.ts';
import { runAudit } from './audit-helpers.ts';
import { openAuditDb } from '../src/audit/store.ts';
import { queryEvents } from '../src/audit/query.ts';
import { checkpointFilePath } from '../src/audit/anchor.ts';
import { drainTimeoutMs } from '../src/cli/serve.ts';
import { DatabaseSync } from 'node:sqlite';

const VERSION = '2026-07-28';
const DRAIN_MS = 4000;
const root = mkdtempSync(join(tmpdir(), 'aam-drain-'));
let upstream: HttpServer;
let mcpUrl = '';
let modelUrl = '';

/** A 2026-07-28 MCP server (discover, tools/list, listen streams) and an OpenAI-shaped model that streams its answer over ~1.5 s. */
before(async () => {
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: Record<string, unknown>; stream?: boolean };
    if (req.url?.startsWith('/v1/chat/completions') && (body as { model?: string }).model === 'stuck') return; // never answers
    if (req.url?.startsWith('/v1/chat/completions')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const words = ['finished', ' within', ' the', ' drain'];
      for (const [i, w] of words.entries()) {
        await new Promise((r) => setTimeout(r, 400));
        res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'slow', choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: w } : { content: w }, finish_reason: null }] })}\n\n`);
      }
      res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'slow', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    const ok = (result: Record<string, unknown>) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { resultType: 'complete', ...result } })); };
    if (body.method === 'server/discover') return ok({ supportedVersions: [VERSION], capabilities: { tools: { listChanged: true } }, ttlMs: 0, cacheScope: 'public' });
    if (body.method === 'tools/list') return ok({ tools: [{ name: 'lookup', inputSchema: { type: 'object', properties: {} } }], ttlMs: 600_000, cacheScope: 'public' });
    if (body.method === 'subscriptions/listen') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: body.params.notifications, _meta: { 'io.modelcontextprotocol/subscriptionId': body.id } } })}\n\n`);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: body.id, error: { code: -32601, message: 'no' } }));
  });
  const base = await listenLoopback(upstream);
  mcpUrl = `${base}/mcp`;
  modelUrl = `${base}/v1`;
});
after(() => { upstream.closeAllConnections(); upstream.close(); rmSync(root, { recursive: true, force: true }); });

const config = () => yaml(
  doc('Provider', 'up', { type: 'openai-compatible', baseUrl: modelUrl }),
  doc('Model', 'slow', { targets: [{ provider: 'up', model: 'slow' }] }),
  doc('Model', 'stuck', { targets: [{ provider: 'up', model: 'stuck' }] }),
  doc('McpServer', 'modern', { transport: 'streamable-http', url: mcpUrl, timeout_ms: 60_000 }),
  doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' }),
  doc('AgentPolicy', 'tester-policy', { identity: { agent: 'tester' }, models: { allow: ['slow', 'stuck'] }, tools: [{ resource: 'modern', actions: ['*'] }] }),
);

/** An open subscriptions/listen stream on aam: its status, the messages so far, and whether the body ended. */
async function listen(url: string, key: string): Promise<{ status: number; messages: Array<Record<string, any>>; ended: Promise<void> }> {
  const id = 7;
  const r = await fetch(`${url}/mcp/modern`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}`, 'mcp-protocol-version': VERSION, 'mcp-method': 'subscriptions/listen' },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: { 'io.modelcontextprotocol/protocolVersion': VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'drain-client', version: '1.0.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } }),
  });
  const [a, b] = r.body!.tee();
  const messages = sseMessages(a);
  const ended = (async () => { try { for await (const _ of b as unknown as AsyncIterable<Uint8Array>) { /* read to the end */ } } catch { /* cut */ } })();
  return { status: r.status, messages, ended };
}

test('AAM_DRAIN_TIMEOUT_MS: a whole number of milliseconds, else a clear refusal', () => {
  assert.equal(drainTimeoutMs(undefined), 10_000);
  assert.equal(drainTimeoutMs('0'), 0);
  assert.equal(drainTimeoutMs('2500'), 2500);
  for (const bad of ['-1', '1.5', '10s', 'soon']) assert.throws(() => drainTimeoutMs(bad), /AAM_DRAIN_TIMEOUT_MS must be a whole number of milliseconds \(default 10000\), not "/);
});

test('close() with an open listen stream and a slow chat stream: the chat completes, the listen stream ends, close() is bounded, the trail ends with its checkpoint', async () => {
  const gw = await startTestGateway(config(), { AAM_ADMIN_TOKEN: ADMIN_TOKEN, AAM_DRAIN_TIMEOUT_MS: String(DRAIN_MS) });
  const key = gw.key('tester');
  await serversReady(gw);
  const l = await listen(gw.url, key);
  assert.equal(l.status, 200);
  await until(() => l.messages.some((m) => m.method === 'notifications/subscriptions/acknowledged'), 15_000, 'the listen stream to be acknowledged');
  let listenEnded = false;
  void l.ended.then(() => { listenEnded = true; });
  const chat = fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'take your time' }] }),
  }).then(async (r) => ({ status: r.status, text: await r.text() }));
  await new Promise((r) => setTimeout(r, 300)); // the chat is in flight (its first word is 400 ms away)
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([gw.g.close().then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), DRAIN_MS + 8000); })]);
  clearTimeout(timer);
  const ms = performance.now() - t0;
  try {
    assert.ok(closed, `close() did not resolve within ${DRAIN_MS + 8000} ms (the listen stream held it)`);
    // The chat (1.6 s) finished inside the drain: close() waited for it, not for the bound.
    const c = await chat;
    assert.equal(c.status, 200);
    assert.match(c.text, /within/);
    assert.match(c.text, /\[DONE\]/);
    assert.ok(ms < DRAIN_MS + 4000, `close() took ${Math.round(ms)} ms`);
    await until(() => listenEnded, 5000, 'the listen stream to end');
    // Ended as a dropped stream (the client listens again elsewhere), not with a completion.
    assert.ok(!l.messages.some((m) => m.id === 7), JSON.stringify(l.messages));
    // The audit trail was closed with a final checkpoint covering every event, and verifies.
    const db = openAuditDb(gw.dataDir);
    let head = 0;
    try { head = Math.max(...queryEvents(db, { order: 'asc', limit: 100_000 }).map((e) => e.seq)); } finally { db.close(); }
    const cps = readFileSync(checkpointFilePath(gw.dataDir, {}), 'utf8').trim().split('\n').map((x) => JSON.parse(x) as { tree_size?: number });
    assert.equal(cps.at(-1)?.tree_size, head, 'the last checkpoint covers the whole trail');
    const v = await runAudit('audit verify', gw.dataDir, {}, [], gw.configPath);
    assert.equal(v.code, 0, v.out + v.err);
    assert.match(v.out, /^OK/);
  } finally {
    if (!closed) gw.g.server.closeAllConnections();
    await gw.close();
  }
});

test('aam serve: SIGTERM with a listen stream open exits 0 within the drain bound', async () => {
  const dir = join(root, 'child');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'aam.yaml');
  writeFileSync(file, config());
  const data = join(dir, 'data');
  const key = await createKey(file, data);
  const gw = await startServeChild({ config: file, data, env: { AAM_DRAIN_TIMEOUT_MS: String(DRAIN_MS) } });
  try {
    let l = await listen(gw.url, key);
    await until(async () => {
      if (l.status === 200 && l.messages.some((m) => m.method === 'notifications/subscriptions/acknowledged')) return true;
      if (l.status !== 200) l = await listen(gw.url, key);
      return false;
    }, 30_000, 'a listen stream to be open');
    const t0 = performance.now();
    gw.proc.kill('SIGTERM');
    const code = await Promise.race([gw.exited, new Promise<string>((r) => setTimeout(() => r('still running'), DRAIN_MS + 10_000).unref())]);
    assert.equal(code, 0, gw.stderr());
    assert.ok(performance.now() - t0 < DRAIN_MS + 10_000, `exited after ${Math.round(performance.now() - t0)} ms`);
    assert.match(gw.stderr(), /"event":"drained","streams_ended":1/);
    await l.ended;
  } finally { await gw.stop(); }
});

test('aam serve: SIGTERM with a model request that never ends: cut after AAM_DRAIN_TIMEOUT_MS (counted in the log), the trail closed, exit 0', async () => {
  const dir = join(root, 'stuck');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'aam.yaml');
  writeFileSync(file, config());
  const data = join(dir, 'data');
  const key = await createKey(file, data);
  const gw = await startServeChild({ config: file, data, env: { AAM_DRAIN_TIMEOUT_MS: '500' } });
  try {
    const stuck = fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'stuck', stream: true, messages: [{ role: 'user', content: 'hang' }] }),
    }).then(async (r) => { await r.text(); return 'answered'; }, () => 'cut');
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    gw.proc.kill('SIGTERM');
    const code = await Promise.race([gw.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 12_000).unref())]);
    assert.equal(code, 0, gw.stderr());
    assert.ok(performance.now() - t0 < 12_000, `exited after ${Math.round(performance.now() - t0)} ms`);
    assert.match(gw.stderr(), /"event":"drain_cut","connections":1,/);
    assert.equal(await stuck, 'cut');
    const v = await runAudit('audit verify', data, {}, [], file);
    assert.equal(v.code, 0, v.out + v.err);
    // The cut request's bookkeeping finishes after its connection is cut: the runtime closes only
    // after it, so its usage is in the data dir (before: recorded into a closed database, or
    // flushed by a timer that then threw 'database is not open' and crashed the shutdown).
    const db = new DatabaseSync(join(data, 'aam.db'), { readOnly: true });
    try {
      const row = db.prepare(`SELECT coalesce(sum(requests), 0) AS n FROM usage_rollup WHERE route = 'stuck'`).get() as { n: number };
      assert.equal(row.n, 1, 'the cut request is counted in usage');
    } finally { db.close(); }
  } finally { await gw.stop(); }
});

test('close() with a 2025-11-25 session\'s GET stream open: the stream is ended at once (the client reconnects elsewhere), not held for the drain bound', async () => {
  const gw = await startTestGateway(config(), { AAM_ADMIN_TOKEN: ADMIN_TOKEN, AAM_DRAIN_TIMEOUT_MS: '20000' });
  const key = gw.key('tester');
  await serversReady(gw);
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}` };
  const init = await fetch(`${gw.url}/mcp/modern`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'drain-session', version: '1.0.0' } } }) });
  assert.equal(init.status, 200);
  await init.text();
  const sid = init.headers.get('mcp-session-id')!;
  assert.ok(sid);
  const session = { ...headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  await (await fetch(`${gw.url}/mcp/modern`, { method: 'POST', headers: session, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })).text();
  const get = await fetch(`${gw.url}/mcp/modern`, { method: 'GET', headers: { accept: 'text/event-stream', authorization: `Bearer ${key}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
  assert.equal(get.status, 200);
  let getEnded = false;
  void (async () => { try { for await (const _ of get.body as unknown as AsyncIterable<Uint8Array>) { /* read */ } } catch { /* cut */ } getEnded = true; })();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(getEnded, false, 'the GET stream is open');
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([gw.g.close().then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), 8000); })]);
  clearTimeout(timer);
  try {
    assert.ok(closed, `close() did not resolve within 8000 ms: the GET stream held it (drain bound 20000 ms)`);
    assert.ok(performance.now() - t0 < 8000);
    await until(() => getEnded, 5000, 'the GET stream to end');
  } finally {
    if (!closed) gw.g.server.closeAllConnections();
    await gw.close();
  }
});
