import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { callWebhookGuardrail, runWebhookGuardrails } from '../src/guardrails/webhook.ts';
import { compileGuardrail } from '../src/guardrails/engine.ts';

let server: Server;
let base = '';
const seen: unknown[] = [];

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      const payload = JSON.parse(body) as { text: string };
      seen.push(payload);
      const reply = (status: number, obj: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
      if (req.url === '/allow') return reply(200, { verdict: 'allow' });
      if (req.url === '/block') return reply(200, { verdict: 'block', reason: 'toxic' });
      if (req.url === '/redact') return reply(200, { verdict: 'redact', text: payload.text.replace('falcon', '[X]') });
      if (req.url === '/slow') { setTimeout(() => reply(200, { verdict: 'allow' }), 500); return; }
      if (req.url === '/500') return reply(500, { error: 'boom' });
      if (req.url === '/garbage') { res.writeHead(200); res.end('not json'); return; }
      return reply(200, { verdict: 'maybe' });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => { server.closeAllConnections(); server.close(); });

test('webhook allow, block with reason, and payload shape', async () => {
  assert.deepEqual(await callWebhookGuardrail({ url: `${base}/allow` }, { direction: 'input', text: 'hi', agent: 'a1' }), { verdict: 'allow' });
  assert.deepEqual(await callWebhookGuardrail({ url: `${base}/block` }, { direction: 'output', text: 'x', agent: 'a1' }), { verdict: 'block', reason: 'toxic' });
  assert.deepEqual(seen[0], { direction: 'input', text: 'hi', agent: 'a1' });
});

test('webhook redact returns replacement text', async () => {
  const v = await callWebhookGuardrail({ url: `${base}/redact` }, { direction: 'input', text: 'project falcon', agent: 'a1' });
  assert.deepEqual(v, { verdict: 'redact', text: 'project [X]' });
});

test('timeout: fail closed by default, open when on_error is allow', async () => {
  const t0 = Date.now();
  const closed = await callWebhookGuardrail({ url: `${base}/slow`, timeout_ms: 100 }, { direction: 'input', text: 'x', agent: 'a' });
  assert.equal(closed.verdict, 'block');
  assert.equal(closed.failed, true);
  assert.match(closed.reason ?? '', /timed out after 100 ms/);
  assert.ok(Date.now() - t0 < 450, 'did not wait for the slow checker');
  const open = await callWebhookGuardrail({ url: `${base}/slow`, timeout_ms: 100, on_error: 'allow' }, { direction: 'input', text: 'x', agent: 'a' });
  assert.equal(open.verdict, 'allow');
});

test('HTTP error, non-JSON, bad verdict and unreachable checker all go to on_error', async () => {
  for (const path of ['/500', '/garbage', '/bad']) {
    const v = await callWebhookGuardrail({ url: `${base}${path}` }, { direction: 'input', text: 'x', agent: 'a' });
    assert.equal(v.verdict, 'block', path);
    assert.equal(v.failed, true, path);
  }
  const dead = await callWebhookGuardrail({ url: 'http://127.0.0.1:1/', timeout_ms: 500 }, { direction: 'input', text: 'x', agent: 'a' });
  assert.equal(dead.verdict, 'block');
});

test('runWebhookGuardrails: redaction chains, block stops, flag action is shadow mode', async () => {
  const mk = (name: string, path: string, action: 'block' | 'redact' | 'flag') =>
    compileGuardrail(name, { on: ['input'], action, webhook: { url: `${base}${path}`, timeout_ms: 1000 } });
  const r = await runWebhookGuardrails(['about project falcon'], [mk('r', '/redact', 'redact'), mk('a', '/allow', 'block')], 'input', 'agent-1');
  assert.equal(r.verdict, 'redact');
  assert.deepEqual(r.texts, ['about project [X]']);
  // Several leaves: a single-text answer cannot say which leaf it replaces, so on_error decides (block).
  const many = await runWebhookGuardrails(['project falcon', 'b'], [mk('r', '/redact', 'redact')], 'input', 'agent-1');
  assert.equal(many.verdict, 'block');
  const b = await runWebhookGuardrails(['t'], [mk('b', '/block', 'block'), mk('r', '/redact', 'redact')], 'input', 'agent-1');
  assert.equal(b.verdict, 'block');
  assert.equal(b.blockedBy, 'b');
  const s = await runWebhookGuardrails(['t'], [mk('shadow', '/block', 'flag')], 'input', 'agent-1');
  assert.equal(s.verdict, 'flag');
  assert.equal((await runWebhookGuardrails(['t'], [mk('b', '/block', 'block')], 'output', 'agent-1')).verdict, 'allow', 'input-only');
});
