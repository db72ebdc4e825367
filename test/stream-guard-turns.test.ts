// A streamed answer with a giant delta (or a burst of many deltas) is guarded across loop turns:
// the chat plane pushes deltas longer than 16 KB to the output guard in pieces and yields once a
// turn's allowance is spent, so one upstream answer cannot hold the event loop for everyone else
// (issue 12). The client still gets every character, redacted as the guard redacts any chunking.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, sseContent } from './helpers/e2e.ts';
import { streamPieces } from '../src/access/guard.ts';
import { compileGuardrail } from '../src/guardrails/engine-core.ts';
import { createEventGuard } from '../src/guardrails/stream-events.ts';

let fake: FakeUpstream;
let gw: TestGateway;
const OUTPUT_GUARDRAIL = { on: ['output'], detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'], action: 'redact', max_scan_chars: 8_000_000 };

before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'out', OUTPUT_GUARDRAIL),
    doc('Agent', 'streamer', { workload: 'spiffe://test/agent/streamer', team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', 'streamer-policy', { identity: { workload: 'spiffe://test/agent/streamer' }, models: { allow: ['gpt'] }, guardrails: ['out'] }),
  ));
});
after(async () => { await gw?.close(); await fake?.close(); });

/** One whitespace-free run (the fake upstream echoes it as a single delta) full of addresses. */
const GIANT = 'mail:a.b@example.com;ip:10.0.0.1;'.repeat(30_000); // ~1 MB

test('streamPieces: long deltas become pieces of at most 16 KB (never splitting a surrogate pair); the rest pass as they are', () => {
  const text = `${'x'.repeat(16 * 1024 - 1)}😀${'y'.repeat(40_000)}`;
  const parts = streamPieces({ type: 'text', text });
  assert.equal(parts.map((p) => (p as { text: string }).text).join(''), text);
  assert.ok(parts.every((p) => (p as { text: string }).text.length <= 16 * 1024));
  assert.equal((parts[0] as { text: string }).text.length, 16 * 1024 - 1, 'the cut moved before the surrogate pair');
  const args = streamPieces({ type: 'tool_args', index: 2, delta: 'z'.repeat(40_000) });
  assert.deepEqual(args.map((p) => p.type === 'tool_args' && p.index), [2, 2, 2]);
  const small = { type: 'text' as const, text: 'hi' };
  assert.deepEqual(streamPieces(small), [small]);
});

test('the output guard redacts a giant delta in pieces as it does whole', () => {
  const g = compileGuardrail('out', OUTPUT_GUARDRAIL as Parameters<typeof compileGuardrail>[1]);
  const run = (events: Array<{ type: 'text'; text: string }>) => {
    const guard = createEventGuard([g]);
    let out = '';
    for (const ev of events) for (const e of guard.push(ev).events) out += e.type === 'text' ? e.text : '';
    for (const e of guard.end().events) out += e.type === 'text' ? e.text : '';
    return { out, findings: guard.findings() };
  };
  const prose = Array.from({ length: 4000 }, (_, i) => `line ${i}: write to a${i}@example.com or call +44 20 7946 0958. `).join('');
  for (const text of [prose, GIANT.slice(0, 200_000)]) {
    const whole = run([{ type: 'text', text }]);
    const pieces = run(streamPieces({ type: 'text', text }) as Array<{ type: 'text'; text: string }>);
    assert.equal(pieces.out, whole.out);
    assert.deepEqual(pieces.findings, whole.findings);
    assert.ok(!pieces.out.includes('@example.com'));
  }
});

test('a streamed answer with a 1 MB delta is guarded across loop turns: no turn holds the loop for long, the answer arrives redacted', async () => {
  // The same guard over the same text on the loop, whole: what one turn would cost without pieces.
  const g = compileGuardrail('out', OUTPUT_GUARDRAIL as Parameters<typeof compileGuardrail>[1]);
  const c0 = process.threadCpuUsage();
  const whole = createEventGuard([g]);
  whole.push({ type: 'text', text: `echo: ${GIANT}` });
  whole.end();
  const d0 = process.threadCpuUsage(c0);
  const wholeMs = (d0.user + d0.system) / 1000;

  // This thread's CPU between loop turns (CPU time: a loaded machine's preemption does not count).
  const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
  let longest = 0, prev = cpu(), running = true;
  const tick = () => { const now = cpu(); longest = Math.max(longest, now - prev); prev = now; if (running) setImmediate(tick); };
  setImmediate(tick);
  const r = await chat(gw.url, gw.key('streamer'), 'gpt', GIANT, { stream: true });
  running = false;
  assert.equal(r.status, 200, r.text.slice(0, 300));
  const content = sseContent(r.text);
  assert.equal(content.error, null);
  assert.ok(content.done);
  assert.equal(content.text, `echo: ${'mail:[EMAIL];ip:[IP_ADDRESS];'.repeat(30_000)}`);
  // Reading and parsing the 1 MB request and the upstream's 1 MB event stay on the loop (~1-5 ms each).
  assert.ok(longest < Math.max(15, wholeMs / 3), `longest turn ${longest.toFixed(1)} ms of CPU; guarding the delta whole took ${wholeMs.toFixed(1)} ms`);
});
