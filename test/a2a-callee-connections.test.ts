// The A2A hop's connections to an http(s) callee are the A2A gateway's own (an H1Agent, lib/h1-agent.ts,
// as the model plane's): kept alive from one call to the next, made without loading undici, and
// closed when the gateway closes (not left to an idle timeout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const resolved = new Set<string>();
// Registered before the gateway's modules are imported (dynamic imports below).
registerHooks({
  resolve(specifier, context, next) {
    if (specifier.startsWith('undici')) resolved.add(specifier);
    return next(specifier, context);
  },
});

test('A2A calls to an http callee: one kept-alive connection of the gateway\'s own, no undici, closed with the gateway', async () => {
  const { startTestGateway, doc, yaml } = await import('./helpers/gateway.ts');
  const ports: number[] = [];
  let closedAt = 0;
  const callee = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (!ports.includes(req.socket.remotePort!)) req.socket.once('close', () => { closedAt = performance.now(); });
      ports.push(req.socket.remotePort!);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}}');
    });
  });
  callee.keepAliveTimeout = 60_000; // only aam closes the connection
  await new Promise<void>((r) => callee.listen(0, '127.0.0.1', r));
  const gw = await startTestGateway(yaml(
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url: `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a` } }),
    doc('AgentPolicy', 'caller-calls-echo', { identity: { agent: 'caller' }, agents: [{ agent: 'echo' }] }),
  ));
  let closed = false;
  try {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${gw.url}/a2a/echo`, {
        method: 'POST',
        headers: { authorization: `Bearer ${gw.key('caller')}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { role: 'ROLE_USER', parts: [{ text: 'hi' }], messageId: `m${i}` } } }),
      });
      assert.equal(r.status, 200, await r.text());
    }
    assert.equal(ports.length, 3);
    assert.equal(new Set(ports).size, 1, 'one connection, kept alive');
    assert.deepEqual([...resolved], [], 'the A2A hop loads no undici');
    const t0 = performance.now();
    await gw.close();
    closed = true;
    for (let i = 0; i < 100 && closedAt === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(closedAt > 0 && closedAt - t0 < 1000, 'the gateway\'s close closed its connection to the callee');
  } finally {
    if (!closed) await gw.close();
    callee.closeAllConnections();
    await new Promise((r) => callee.close(r));
  }
});
