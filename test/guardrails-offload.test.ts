// Large guardrail scans do not hold the event loop (issue 12, "linear time"): scanValue scans the
// first INLINE_CHARS characters of a value at once and the rest across loop turns, large leaves on
// the scan thread. It must give exactly what the synchronous walk gives (verdict, redacted value,
// findings with counts and where, blockedBy, scan_limit), on random and hostile values, and a
// scan of megabytes must leave the loop free for other work between short turns.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { compileGuardrail, type CompiledGuardrail } from '../src/guardrails/engine-core.ts';
import { applyToChat, applyToJson, INLINE_CHARS, OFFLOAD_CHARS, scanValue, type StructuredVerdict } from '../src/guardrails/structured.ts';
import { createScanThread } from '../src/guardrails/offload.ts';
import { adversarialInputs, randomInputs, prng } from './helpers/hostile-text.ts';
import { longestTurnCpuMs } from './helpers/loop-turns.ts';

const ALL = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'] as const;
const thread = createScanThread();
after(() => thread.close());

const g = (name: string, spec: Record<string, unknown>): CompiledGuardrail =>
  compileGuardrail(name, { on: ['input', 'output'], action: 'redact', ...spec } as Parameters<typeof compileGuardrail>[1]);

/** Guardrail sets: redact and block side by side, keywords and regexes, budgets spent mid-walk, size limits. */
const SETS: Array<[string, CompiledGuardrail[]]> = [
  ['all detectors, redact', [g('pii', { detect: [...ALL] })]],
  ['block + redact + flag, keywords and a regex', [
    g('cards', { detect: ['credit_card', 'iban'], action: 'block' }),
    g('pii', { detect: ['email', 'phone', 'ssn', 'ip_address'], keywords: ['project falcon', 'internal only'] }),
    g('keys', { detect: ['secrets'], regex: ['ACME-[0-9]{6}'], action: 'flag' }),
  ]],
  ['small scan budgets and size limits', [
    g('tight', { detect: ['email', 'secrets'], max_scan_chars: 40_000 }),
    g('loose', { detect: ['phone'], action: 'flag', max_scan_chars: 90_000, on_scan_limit: 'flag', max_chars: 60_000 }),
    g('kw', { keywords: ['project falcon'], action: 'block', max_scan_chars: 200_000 }),
  ]],
];

const PII = ['a.b@example.com', '+44 20 7946 0958', '4111 1111 1111 1111', '078-05-1120', 'DE89370400440532013000',
  '10.0.0.1', 'AKIAIOSFODNN7EXAMPLE', 'project falcon', 'ACME-123456', 'sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12', 'password=Hunter2isMyPass'];
const hostile = adversarialInputs(4096).map(([, t]) => t);
const random = randomInputs(4096).map(([, t]) => t);

/** A text of about `size` characters: hostile and random pieces with PII dropped in, some right at the inline boundary. */
function text(r: () => number, size: number): string {
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const k = r();
    const src = k < 0.4 ? hostile[Math.floor(r() * hostile.length)] : k < 0.7 ? random[Math.floor(r() * random.length)] : 'plain words and more plain words ';
    const piece = src.slice(0, 1 + Math.floor(r() * Math.min(src.length, size - n + 1)));
    parts.push(piece, r() < 0.5 ? ' ' : '', r() < 0.3 ? PII[Math.floor(r() * PII.length)] : '', ' ');
    n += piece.length + 20;
  }
  return parts.join('').slice(0, size);
}

/** Leaf sizes around the thresholds, where inline scanning stops and the thread takes over. */
function size(r: () => number): number {
  const k = r();
  if (k < 0.45) return Math.floor(r() * 600);
  if (k < 0.6) return INLINE_CHARS - 300 + Math.floor(r() * 600);
  if (k < 0.75) return OFFLOAD_CHARS - 300 + Math.floor(r() * 600);
  return OFFLOAD_CHARS + Math.floor(r() * 60_000);
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** A chat-like value with every kind of leaf the walker treats specially. */
function value(r: () => number): Record<string, unknown> {
  const messages: unknown[] = [];
  const count = 1 + Math.floor(r() * 7);
  for (let i = 0; i < count; i++) {
    const k = r();
    if (k < 0.5) messages.push({ role: 'user', content: text(r, size(r)) });
    else if (k < 0.65) messages.push({ role: 'user', content: [{ type: 'text', text: text(r, size(r)) }, { type: 'file', file: { file_data: `data:text/plain;base64,${b64(text(r, size(r)))}` } }] });
    else if (k < 0.8) messages.push({ role: 'assistant', tool_calls: [{ type: 'function', function: { name: 'f', arguments: JSON.stringify({ q: text(r, size(r)), n: 3, list: [text(r, 200), 'x'] }) } }] });
    else if (k < 0.9) {
      let deep: unknown = { note: text(r, size(r)) };
      for (let d = 0; d < 70; d++) deep = { d: deep };
      messages.push({ role: 'user', content: 'deep follows', extra: deep });
    } else messages.push({ role: 'tool', content: text(r, size(r)), tool_call_id: 'call_1' });
  }
  // Object keys are scanned too (once per walk, after the leaves): a random one, PII now and then.
  return { messages, metadata: { note: text(r, 300), [text(r, 60)]: 1 } };
}

async function same(label: string, v: object, gs: CompiledGuardrail[], shape: 'chat' | 'json', offload: boolean): Promise<void> {
  const whole: StructuredVerdict<object> = shape === 'chat' ? applyToChat(v, gs, 'input') : applyToJson(v, gs, 'input');
  const split = await scanValue(v, gs, 'input', shape, offload ? thread : undefined);
  assert.deepEqual(split, whole, label);
}

test('scanValue equals the synchronous walk on random and hostile values (verdicts, redactions, counts, where), with and without the thread', async () => {
  const r = prng(12);
  let deferred = 0;
  for (let i = 0; i < 60; i++) {
    const v = value(r);
    const [name, gs] = SETS[i % SETS.length];
    const shape = i % 4 === 3 ? 'json' : 'chat';
    if (!(scanValue(v, gs, 'input', shape) instanceof Promise)) continue;
    deferred++;
    await same(`case ${i} (${name}, ${shape})`, v, gs, shape, true);
    if (i % 3 === 0) await same(`case ${i} (${name}, ${shape}, no thread)`, v, gs, shape, false);
  }
  assert.ok(deferred >= 40, `most generated values are large enough to be deferred (${deferred})`);
});

test('scanValue equals the synchronous walk on every hostile shape as one large leaf, and redacts identically', async () => {
  const [, gs] = SETS[1];
  for (const [label, t] of adversarialInputs(40_000)) {
    await same(label, { messages: [{ role: 'user', content: 'x'.repeat(INLINE_CHARS - 10) }, { role: 'user', content: t + ' a.b@example.com' }] }, gs, 'chat', true);
  }
  const pii = [g('pii', { detect: [...ALL] })];
  const big = `${'call +44 20 7946 0958 or mail a.b@example.com; '.repeat(1000)}`;
  const r = await scanValue({ messages: [{ role: 'user', content: big }] }, pii, 'input', 'chat', thread);
  assert.equal(r.verdict, 'redact');
  assert.equal((r.value.messages[0] as { content: string }).content, 'call [PHONE] or mail [EMAIL]; '.repeat(1000));
});

test('a leaf past every scan budget is tallied on the loop, not copied to the thread: the same verdict', async () => {
  let sent = 0;
  const counting = { scan: (...a: Parameters<typeof thread.scan>) => { sent++; return thread.scan(...a); } };
  const v = { messages: [{ role: 'user', content: 'x'.repeat(INLINE_CHARS - 10) }, { role: 'user', content: 'mail a.b@example.com '.repeat(20_000) }] };
  for (const on_scan_limit of ['block', 'flag'] as const) {
    const gs = [g('tight', { detect: ['email'], max_scan_chars: 40_000, on_scan_limit })];
    assert.deepEqual(await scanValue(v, gs, 'input', 'chat', counting), applyToChat(v, gs, 'input'), on_scan_limit);
  }
  assert.equal(sent, 0, 'nothing for the thread to scan');
  const roomy = [g('roomy', { detect: ['email'], max_scan_chars: 1_000_000 })];
  assert.deepEqual(await scanValue(v, roomy, 'input', 'chat', counting), applyToChat(v, roomy, 'input'));
  assert.equal(sent, 1, 'a leaf within the budget still goes to the thread');
});

test('a small value is answered at once, without a promise (no await on the hot path)', () => {
  const gs = SETS[0][1];
  const small = { messages: [{ role: 'user', content: 'mail a.b@example.com '.repeat(500) }] };
  const r = scanValue(small, gs, 'input', 'chat', thread);
  assert.ok(!(r instanceof Promise));
  assert.deepEqual(r, applyToChat(small, gs, 'input'));
});

test('a scan thread that dies mid-scan: the scan finishes on the loop with the same result', async () => {
  const gs = SETS[0][1];
  const own = createScanThread();
  const v = { messages: [{ role: 'user', content: text(prng(7), 300_000) }, { role: 'user', content: text(prng(8), 300_000) }] };
  const pending = scanValue(v, gs, 'input', 'chat', own);
  await own.close(); // terminates the worker while it holds the first leaf
  assert.deepEqual(await pending, applyToChat(v, gs, 'input'));
});

test('a 2 MB scan leaves the loop to other work: no turn holds it for more than a fraction of the whole scan', async (ctx) => {
  const gs = [g('pii', { detect: [...ALL], max_scan_chars: 4_000_000 })];
  const r = prng(3);
  const v = { messages: [
    ...Array.from({ length: 40 }, () => ({ role: 'user', content: text(r, 10_000) })),
    { role: 'user', content: text(r, 800_000) }, { role: 'user', content: text(r, 800_000) },
  ] };
  await scanValue(v, gs, 'input', 'chat', thread); // the thread is started and warm
  const t = process.threadCpuUsage();
  const whole = applyToChat(v, gs, 'input');
  const d = process.threadCpuUsage(t);
  const wholeMs = (d.user + d.system) / 1000;
  let split: unknown;
  const { longest, turns } = await longestTurnCpuMs(async () => { split = await scanValue(v, gs, 'input', 'chat', thread); });
  assert.deepEqual(split, whole);
  ctx.diagnostic(`longest turn ${longest.toFixed(1)} ms of CPU over ${turns} turns; the whole scan on the loop took ${wholeMs.toFixed(1)} ms`);
  // CPU time is counted in scheduler ticks of up to 4 ms, hence the floor.
  assert.ok(longest < Math.max(12, wholeMs / 5), `longest turn ${longest.toFixed(1)} ms of CPU; the whole scan on the loop took ${wholeMs.toFixed(1)} ms`);
  assert.ok(turns > 10, `the loop turned ${turns} times during the scan`);
});

test('an idle scan thread stops (its memory goes back) and starts again on the next large value', async () => {
  const gs = SETS[0][1];
  const own = createScanThread({ idleMs: 50 });
  try {
    const v = { messages: [{ role: 'user', content: text(prng(9), 100_000) }] };
    assert.deepEqual(await scanValue(v, gs, 'input', 'chat', own), applyToChat(v, gs, 'input'));
    assert.ok(own.running());
    for (const deadline = Date.now() + 10_000; own.running();) {
      assert.ok(Date.now() < deadline, 'the idle thread did not stop');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.deepEqual(await scanValue(v, gs, 'input', 'chat', own), applyToChat(v, gs, 'input'));
    assert.ok(own.running(), 'started again');
  } finally {
    await own.close();
  }
});
