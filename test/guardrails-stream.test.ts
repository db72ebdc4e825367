import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyGuardrails, compileGuardrail } from '../src/guardrails/engine.ts';
import { createStreamGuard } from '../src/guardrails/stream.ts';
import type { GuardrailSpec } from '../src/config/schema.ts';
import type { StreamEvent } from '../src/providers/types.ts';

const g = (name: string, spec: Partial<GuardrailSpec>) => compileGuardrail(name, { on: ['output'], action: 'redact', ...spec } as GuardrailSpec);
const pii = g('pii', { detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'], keywords: ['project falcon'] });

function run(chunks: string[], guardrails = [pii], window?: number): { out: string; pieces: string[]; blocked?: { guardrail: string } } {
  const guard = createStreamGuard(guardrails, window === undefined ? {} : { window });
  const pieces: string[] = [];
  for (const c of chunks) {
    const r = guard.push(c);
    pieces.push(r.emit);
    if (r.blocked) return { out: pieces.join(''), pieces, blocked: r.blocked };
  }
  const e = guard.end();
  pieces.push(e.emit);
  return e.blocked ? { out: pieces.join(''), pieces, blocked: e.blocked } : { out: pieces.join(''), pieces };
}

const VALUES = ['jane.doe@example.com', '+44 20 7946 0958', '4111 1111 1111 1111', '078-05-1120', 'DE89 3704 0044 0532 0130 00', '192.168.10.20', 'AKIAIOSFODNN7EXAMPLE', 'Project Falcon'];

test('PII split across every chunk boundary is never emitted raw; surrounding text preserved', () => {
  for (const v of VALUES) {
    const text = `Before text, then ${v} and after text.`;
    const expected = applyGuardrails(text, [pii], 'output').text;
    assert.notEqual(expected, text, v);
    for (let i = 1; i < text.length; i++) {
      for (let j = i; j < text.length; j += 7) {
        const chunks = [text.slice(0, i), text.slice(i, j), text.slice(j)].filter((c) => c.length > 0);
        const { out, pieces } = run(chunks);
        assert.equal(out, expected, `${v} split at ${i},${j}`);
        assert.ok(!pieces.some((p) => p.includes(v)), 'no piece carries the value');
      }
    }
  }
});

test('one-character chunks: every value redacted, all text kept', () => {
  const text = VALUES.map((v, i) => `line ${i}: ${v}`).join('\n') + '\nend';
  const { out } = run([...text]);
  assert.equal(out, applyGuardrails(text, [pii], 'output').text);
  for (const v of VALUES) assert.ok(!out.includes(v), v);
});

test('text flows: only the window is held back, not the whole response', () => {
  const guard = createStreamGuard([pii], { window: 64 });
  let emitted = 0;
  for (let i = 0; i < 100; i++) emitted += guard.push(`word${i} is fine here. `).emit.length;
  const total = 100 * 'word0 is fine here. '.length + 190;
  assert.ok(emitted > total - 300, `emitted ${emitted} chars in flight`);
});

test('long tokens (JWT, sk-proj key) longer than the window are held until complete', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  const text = `token ${jwt} done`;
  for (let size = 1; size < 40; size += 3) {
    const chunks = text.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g'))!;
    const { out, pieces } = run(chunks, [pii], 32);
    assert.equal(out, 'token [SECRET] done');
    assert.ok(!pieces.some((p) => p.includes('eyJhbGci')), 'no fragment of the token');
  }
});

test('PEM private key block is held until END and redacted whole', () => {
  const body = Array.from({ length: 6 }, (_, i) => 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC' + i).join('\n');
  const text = `key:\n-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\nbye`;
  const { out, pieces } = run(text.match(/[\s\S]{1,10}/g)!, [pii], 32);
  assert.equal(out, 'key:\n[SECRET]\nbye');
  assert.ok(!pieces.some((p) => p.includes('MIIEv')));
});

test('block: the stream is cut before the value is emitted', () => {
  const block = g('no-cards', { action: 'block', detect: ['credit_card'] });
  const text = 'Here is the card: 4111 1111 1111 1111 thanks ' + 'more text '.repeat(30);
  const { out, blocked } = run(text.match(/[\s\S]{1,5}/g)!, [block]);
  assert.equal(blocked?.guardrail, 'no-cards');
  assert.ok(!out.includes('4111'), out);
});

test('flag records findings without changing text; summaries are available at end', () => {
  const flag = g('watch', { action: 'flag', detect: ['email'] });
  const guard = createStreamGuard([flag]);
  const text = 'write to a@example.com please';
  let out = '';
  for (const c of text.match(/[\s\S]{1,4}/g)!) out += guard.push(c).emit;
  out += guard.end().emit;
  assert.equal(out, text);
  assert.deepEqual(guard.findings(), [{ guardrail: 'watch', category: 'email', count: 1 }]);
});

test('max_chars on a stream: redact truncates, block cuts', () => {
  const { out } = run(['abcde', 'fghij', 'klmno'], [g('size', { max_chars: 7 })]);
  assert.equal(out, 'abcdefg[TRUNCATED]');
  const b = run(['abcde', 'fghij'], [g('size', { action: 'block', max_chars: 7 })]);
  assert.equal(b.blocked?.guardrail, 'size');
});

test('a keyword phrase longer than the window is still caught across chunks', () => {
  const phrase = 'the extremely confidential acquisition of northwind traders by contoso';
  const kw = g('kw', { keywords: [phrase] });
  const text = `Today: ${phrase.toUpperCase()} is announced.`;
  const { out } = run(text.match(/[\s\S]{1,3}/g)!, [kw], 16);
  assert.equal(out, 'Today: [KEYWORD] is announced.');
});

test('event guard: text and tool-call argument deltas redacted, order kept, findings merged', async () => {
  const { createEventGuard } = await import('../src/guardrails/stream-events.ts');
  const guard = createEventGuard([pii]);
  const input: StreamEvent[] = [
    { type: 'start', id: 'r1', model: 'm' },
    ...'Write to jane.doe@example.com now.'.match(/[\s\S]{1,4}/g)!.map((t): StreamEvent => ({ type: 'text', text: t })),
    { type: 'tool_start', index: 0, id: 'c1', name: 'send' },
    ...'{"to":"bob@example.org"}'.match(/[\s\S]{1,3}/g)!.map((d): StreamEvent => ({ type: 'tool_args', index: 0, delta: d })),
    { type: 'finish', reason: 'tool_calls' },
  ];
  const out = input.flatMap((ev) => guard.push(ev).events);
  const text = out.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text).join('');
  const args = out.filter((e) => e.type === 'tool_args').map((e) => (e as { delta: string }).delta).join('');
  assert.equal(text, 'Write to [EMAIL] now.');
  assert.equal(args, '{"to":"[EMAIL]"}');
  assert.deepEqual(out.map((e) => e.type).filter((t, i, a) => t !== a[i - 1]), ['start', 'text', 'tool_start', 'tool_args', 'finish']);
  assert.deepEqual(guard.findings(), [{ guardrail: 'pii', category: 'email', count: 2 }]);
});
