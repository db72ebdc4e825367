// Object keys are content too: the one guardrail walker scans every key that is not a wire field
// name (WIRE_KEYS) as one text per walk, after the leaves. A finding in a key blocks under a redact
// guardrail (a key is never renamed), flags under flag, blocks under block; evidence names the
// object holding the key; the keys count against max_scan_chars; webhooks get leaves only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileGuardrail, type CompiledGuardrail } from '../src/guardrails/engine-core.ts';
import { after } from 'node:test';
import { applyToChat, applyToJson, leafTexts, replaceLeaves, scanValue, INLINE_CHARS, OFFLOAD_CHARS } from '../src/guardrails/structured.ts';
import { createScanThread } from '../src/guardrails/offload.ts';

const thread = createScanThread();
after(() => thread.close());

const g = (name: string, spec: Record<string, unknown>): CompiledGuardrail =>
  compileGuardrail(name, { on: ['input', 'output'], action: 'redact', ...spec } as Parameters<typeof compileGuardrail>[1]);
const SSN = '078-05-1120';

test('a finding in a key: redact blocks (the key is kept as it is), flag flags, block blocks; evidence names the object', () => {
  const v = { note: { [`SSN ${SSN}`]: true, fine: 'x' }, list: [{ 'mail a.b@example.com': 1 }] };
  const red = applyToJson(v, [g('pii', { detect: ['ssn', 'email'] })], 'output');
  assert.equal(red.verdict, 'block');
  assert.equal(red.blockedBy, 'pii');
  assert.equal(red.value, v, 'nothing renamed');
  assert.deepEqual(red.findings.map((f) => [f.category, f.count, f.where]).sort(), [['email', 1, ['$.list[0]{key}']], ['ssn', 1, ['$.note{key}']]]);
  assert.equal(applyToJson(v, [g('f', { detect: ['ssn'], action: 'flag' })], 'input').verdict, 'flag');
  assert.equal(applyToJson(v, [g('b', { detect: ['ssn'], action: 'block' })], 'input').blockedCategory, 'ssn');
  assert.equal(applyToJson(v, [g('kw', { keywords: ['fine'], action: 'block' })], 'input').verdict, 'block', 'keywords see keys');
  assert.equal(applyToJson({ note: { plain: true } }, [g('pii', { detect: ['ssn', 'email'] })], 'input').verdict, 'allow');
});

test('keys inside tool-call arguments (a JSON string) and chat unknown fields are scanned; wire field names are not', () => {
  const gs = [g('b', { detect: ['ssn'], keywords: ['content'], action: 'block' })];
  const chat = { messages: [{ role: 'assistant', content: 'ok', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: JSON.stringify({ a: { [`x ${SSN}`]: 1 } }) } }] }] };
  const r = applyToChat(chat, gs, 'input');
  assert.equal(r.verdict, 'block');
  assert.deepEqual(r.findings[0].where, ['$.messages[0].tool_calls[0].function.arguments.a{key}']);
  assert.equal(applyToChat({ messages: [{ role: 'user', content: 'hi' }] }, gs, 'input').verdict, 'allow', "the wire's `content` key is not content");
  assert.equal(applyToChat({ messages: [{ role: 'user', content: 'hi' }], extra: { [SSN]: 1 } }, gs, 'input').verdict, 'block');
});

test('keys count against max_scan_chars after the leaves: past the budget the guardrail blocks (scan_limit)', () => {
  const gs = [g('tight', { detect: ['ssn'], max_scan_chars: 100 })];
  const within = { a: 'x'.repeat(50), b: { k: 1 } };
  assert.equal(applyToJson(within, gs, 'input').verdict, 'allow');
  const over = { a: 'x'.repeat(95), b: { 'a long key of many characters': 1 } };
  const r = applyToJson(over, gs, 'input');
  assert.equal(r.verdict, 'block');
  assert.equal(r.blockedCategory, 'scan_limit');
});

test('the deferred walk equals the synchronous one with keys (findings in keys behind deferred leaves)', async () => {
  const gs = [g('pii', { detect: ['ssn', 'email'] }), g('kw', { keywords: ['project falcon'], action: 'flag', max_scan_chars: 3 * INLINE_CHARS })];
  for (const n of [1, 2, 4]) {
    const v = {
      messages: Array.from({ length: n }, (_, i) => ({ role: 'user', content: `mail a.b@example.com ${'y'.repeat(INLINE_CHARS)}`, extra: { [`project falcon ${i}`]: 1 } })),
      metadata: { [`SSN ${SSN}`]: 'a.b@example.com' },
    };
    const split = scanValue(v, gs, 'input', 'chat');
    assert.ok(split instanceof Promise, 'deferred');
    assert.deepEqual(await split, applyToChat(v, gs, 'input'), `${n} messages`);
  }
});

test('many keys and small values do not hold the loop: the keys are deferred, large ones scanned on the thread, with the same verdict', async () => {
  let sent = 0;
  const counting = { scan: (...a: Parameters<typeof thread.scan>) => { sent++; return thread.scan(...a); } };
  const v: Record<string, Record<string, number>> = {};
  for (let i = 0; i < 2000; i++) v[`o${i}`] = { [`customer record number ${i} of the export`]: i };
  v.o1999[`SSN ${SSN}`] = 1;
  assert.ok(Object.keys(v).length * 40 > OFFLOAD_CHARS);
  const gs = [g('pii', { detect: ['ssn', 'email'] })];
  const split = scanValue(v, gs, 'input', 'json', counting);
  assert.ok(split instanceof Promise, 'deferred');
  const whole = applyToJson(v, gs, 'input');
  assert.deepEqual(await split, whole);
  assert.equal(sent, 1, 'the key text went to the thread');
  assert.equal(whole.verdict, 'block');
  assert.deepEqual(whole.findings[0].where, ['$.o1999{key}']);
  const many: Record<string, Record<string, number>> = {};
  for (let i = 0; i < 20_000; i++) many[`o${i}`] = { [`SSN ${SSN}`]: i };
  const t0 = performance.now();
  const r = applyToJson(many, [g('f', { detect: ['ssn'], action: 'flag' })], 'input');
  assert.equal(r.findings[0].count, 20_000);
  assert.deepEqual(r.findings[0].where?.slice(0, 2), ['$.o0{key}', '$.o1{key}']);
  assert.ok(performance.now() - t0 < 5000, 'a finding in every key is attributed in n log n, not n^2');
  assert.deepEqual(await scanValue(v, gs, 'input', 'json'), whole, 'no thread: scanned on the loop in a later turn');
});

test('webhooks get leaves only: leafTexts and replaceLeaves stay aligned when keys are content', () => {
  const v = { [`SSN ${SSN}`]: 'a', b: { 'c d': 'e' } };
  assert.deepEqual(leafTexts(v), ['a', 'e']);
  assert.deepEqual(replaceLeaves(v, ['A', 'E']), { [`SSN ${SSN}`]: 'A', b: { 'c d': 'E' } });
});
