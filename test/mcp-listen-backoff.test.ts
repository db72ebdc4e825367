// How aam opens again a 2026-07-28 upstream's subscriptions/listen stream that the upstream ended:
// a capped, jittered backoff that only a stream that worked (stayed up, or brought a
// notification) resets. The upstream is a real HTTP server speaking 2026-07-28 (server/discover,
// tools/list, subscriptions/listen); the Upstream is aam's own, with the retry delays scaled down
// (the same code as the gateway's 1 s .. 30 s).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createUpstream, listenBackoff, type Upstream } from '../src/tools/upstream.ts';
import { GATEWAY_IDENTITY, type ToolDeps } from '../src/tools/types.ts';
import { until, closeAll } from './helpers/e2e.ts';

const MIN = 200;
const MAX = 1600;
const STABLE = 300;

/** What the server does with an acknowledged listen stream: end it at once, send a notification then end it, or end it after STAY ms. */
type Mode = 'end' | 'notify' | 'stay';
const STAY = 1000;

interface Flaky { url: string; server: Server; mode: Mode; tries: Array<{ at: number; endedAt: number }> }

async function startFlaky(): Promise<Flaky> {
  const f: Flaky = { url: '', server: undefined as unknown as Server, mode: 'end', tries: [] };
  f.server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: number; method: string; params: { notifications?: Record<string, unknown> } };
    const ok = (result: Record<string, unknown>) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result })); };
    if (body.method === 'server/discover') return ok({ supportedVersions: ['2026-07-28'], capabilities: { tools: {}, prompts: { listChanged: true } } });
    if (body.method === 'tools/list') return ok({ tools: [], ttlMs: 600_000, cacheScope: 'public' });
    if (body.method !== 'subscriptions/listen') { res.writeHead(404).end(); return; }
    const t = { at: Date.now(), endedAt: 0 };
    f.tries.push(t);
    const end = () => { t.endedAt = Date.now(); res.end(); };
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/subscriptions/acknowledged', params: { notifications: body.params.notifications ?? {} } })}\n\n`);
    if (f.mode === 'notify') res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/prompts/list_changed', params: {} })}\n\n`);
    if (f.mode === 'stay') setTimeout(end, STAY);
    else end();
  });
  await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', r));
  f.url = `http://127.0.0.1:${(f.server.address() as AddressInfo).port}/mcp`;
  return f;
}

const noop = () => {};
const deps = { log: { info: noop, warn: noop, error: noop }, audit: { record: noop, recordDurable: async () => {} } } as unknown as ToolDeps;
const open: Array<{ up: Upstream; f: Flaky }> = [];

after(async () => {
  for (const { up, f } of open) await closeAll(up, f.server);
});

async function listening(): Promise<Flaky> {
  const f = await startFlaky();
  const up = createUpstream('flaky', { transport: 'streamable-http', url: f.url }, deps, { listenRetryMinMs: MIN, listenRetryMaxMs: MAX, listenStableMs: STABLE });
  open.push({ up, f });
  await up.watchLists(['prompts'], GATEWAY_IDENTITY);
  return f;
}

/** The wait between the end of try i and the start of try i + 1. */
const gap = (f: Flaky, i: number) => f.tries[i + 1].at - f.tries[i].endedAt;

test('listenBackoff: the base +-25 %, doubling up to the cap', () => {
  assert.deepEqual(listenBackoff(1000, 30_000, 0), { delay: 750, next: 2000 });
  assert.deepEqual(listenBackoff(1000, 30_000, 1), { delay: 1250, next: 2000 });
  assert.deepEqual(listenBackoff(20_000, 30_000, 0.5), { delay: 20_000, next: 30_000 });
  assert.deepEqual(listenBackoff(30_000, 30_000, 0.5), { delay: 30_000, next: 30_000 });
});

test('a stream the upstream acknowledges and ends at once is opened again with a growing, capped backoff, not every retry minimum', async () => {
  const f = await listening();
  await until(() => f.tries.length >= 5 && f.tries[4].endedAt > 0, 30_000, 'five listen streams');
  // Bases 200, 400, 800, 1600 ms, each waited at least 75 %: the acknowledgement alone resets nothing.
  const floors = [0, 1, 2, 3].map((i) => 0.75 * Math.min(MAX, MIN * 2 ** i));
  const gaps = [0, 1, 2, 3].map((i) => gap(f, i));
  for (const [i, g] of gaps.entries()) assert.ok(g >= floors[i] - 2, `gap ${i} is ${g} ms, at least ${floors[i]} expected (gaps ${gaps.join(', ')})`);
});

for (const mode of ['notify', 'stay'] as const) {
  const why = mode === 'notify' ? 'brought a notification' : `stayed up ${STAY} ms (stable after ${STABLE})`;
  test(`a stream that ${why} resets the backoff`, async () => {
    const f = await listening();
    // Grown: the fourth try comes at least 600 ms after the third, the fifth would come 1200 ms after the fourth.
    await until(() => f.tries.length >= 3, 30_000, 'three listen streams');
    f.mode = mode;
    await until(() => f.tries.length >= 5, 30_000, 'two more listen streams');
    assert.ok(gap(f, 2) >= 600 - 2, `grown before: ${gap(f, 2)} ms`);
    assert.ok(gap(f, 3) < 0.75 * MAX, `the try after a stream that worked comes after about ${MIN} ms, not ${MAX} (${gap(f, 3)} ms)`);
  });
}
