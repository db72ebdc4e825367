// A provider's upstream connections across reloads: a reload that keeps the provider's endpoint keeps
// its pooled sockets; one that changes it retires the old connections (a call in flight on them
// still completes, then they close) instead of leaving them open until the upstream's idle timeout;
// the gateway's shutdown closes what is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';
import { chat, localServer, until, type LocalServer } from './helpers/e2e.ts';
import { H1Agent } from '../src/lib/h1-agent.ts';

interface Upstream extends LocalServer { open: Set<Socket>; opened: number; held(): number; release(): void }

/** A fake OpenAI upstream that counts its connections; a prompt "slow" waits for release(). */
async function upstream(): Promise<Upstream> {
  const waiting: Array<() => void> = [];
  const u = await localServer(async (req, res, body) => {
    if (body.includes('slow')) await new Promise<void>((r) => waiting.push(r));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'gpt', choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  }) as Upstream;
  u.open = new Set();
  u.opened = 0;
  u.held = () => waiting.length;
  u.release = () => { for (const f of waiting.splice(0)) f(); };
  u.server.keepAliveTimeout = 120_000; // the upstream never closes an idle socket itself during the test
  u.server.on('connection', (s: Socket) => { u.opened++; u.open.add(s); s.on('close', () => u.open.delete(s)); });
  return u;
}

const config = (baseUrl: string, models = ['m']) => yaml(
  doc('Provider', 'p', { type: 'openai', baseUrl: `${baseUrl}/v1` }),
  ...models.map((m) => doc('Model', m, { targets: [{ provider: 'p', model: 'gpt' }] })),
  ...agentDocs(models),
);

test('a reload keeps a provider\'s pooled connection when its endpoint is unchanged, retires it when the endpoint moves, and shutdown closes the rest', async () => {
  const a = await upstream();
  const b = await upstream();
  const gw = await startTestGateway(config(a.url));
  try {
    const key = gw.key('tester');
    assert.equal((await chat(gw.url, key, 'm', 'hi')).status, 200);
    assert.equal(a.open.size, 1);

    // Same endpoint, another model added: the same socket serves the next call.
    writeFileSync(gw.configPath, config(a.url, ['m', 'm2']));
    assert.equal(gw.g.rt.reload(), null);
    assert.equal((await chat(gw.url, key, 'm2', 'hi')).status, 200);
    assert.equal(a.opened, 1, 'one connection to A across the reload');

    // A call in flight on A when the endpoint moves to B completes there; then A's socket closes.
    const slow = chat(gw.url, key, 'm', 'slow');
    await until(() => a.held() === 1, 5_000, 'the slow call to reach A');
    assert.equal(a.opened, 1);
    writeFileSync(gw.configPath, config(b.url, ['m', 'm2']));
    assert.equal(gw.g.rt.reload(), null);
    assert.equal(a.open.size, 1, 'the busy socket stays open for its call');
    a.release();
    assert.equal((await slow).status, 200, 'a call begun before the reload completes');
    await until(() => a.open.size === 0, 5_000, 'the retired connection to A to close (not linger until its idle timeout)');
    assert.equal((await chat(gw.url, key, 'm', 'hi')).status, 200);
    assert.equal(b.open.size, 1);
    assert.equal(a.opened, 1, 'nothing new went to A');
  } finally { a.release(); b.release(); await gw.close(); }
  await until(() => b.open.size === 0, 5_000, 'shutdown to close the idle connection to B');
  await a.close();
  await b.close();
});

test('a retired H1Agent still takes a late call (a retry begun under the old config) on a socket it closes after the answer', async () => {
  const u = await upstream();
  const agent = new H1Agent({ connectMs: 1_000, keepAliveTimeout: 30_000, connections: 4 });
  const get = (via = agent) => new Promise<number>((resolve, reject) => {
    via.dispatch({ origin: u.url, path: '/v1/chat/completions', method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } }, {
      onResponseStart(_c, status) { resolve(status); }, onResponseError(_c, e) { reject(e); },
    });
  });
  try {
    assert.equal(await get(), 200);
    await until(() => agent.sockets === 1, 2_000, 'the socket to be pooled');
    agent.retire();
    await until(() => u.open.size === 0 && agent.sockets === 0, 2_000, 'the idle socket to close on retire');
    assert.equal(await get(), 200, 'a retired agent still answers a late call');
    await until(() => u.open.size === 0 && agent.sockets === 0, 2_000, 'the late call\'s socket to close after its answer');
    assert.equal(u.opened, 2);
    // Retired before its first call (a provider no call had used yet): the same.
    const fresh = new H1Agent({ connectMs: 1_000, keepAliveTimeout: 30_000, connections: 4 });
    fresh.retire();
    assert.equal(await get(fresh), 200);
    await until(() => u.open.size === 0 && fresh.sockets === 0, 2_000, 'a fresh retired agent\'s socket to close after its answer');
  } finally { await agent.destroy(); await u.close(); }
});
