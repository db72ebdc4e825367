import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applyGuardrails, applyToChat, applyToJson, compileGuardrail, leafTexts, replaceLeaves } from '../src/guardrails/engine.ts';
import { guardrailSpec, type GuardrailSpec } from '../src/config/schema.ts';
import type { ChatMessage } from '../src/providers/types.ts';

const g = (name: string, spec: Partial<GuardrailSpec>) =>
  compileGuardrail(name, { on: ['input', 'output'], action: 'redact', ...spec } as GuardrailSpec);
const pii = g('pii', { detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'] });

test('redaction replaces each finding with its typed marker and keeps the rest', () => {
  const text = 'Mail a@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, SSN 078-05-1120, IBAN DE89370400440532013000, ip 10.0.0.1, key AKIAIOSFODNN7EXAMPLE.';
  const r = applyGuardrails(text, [pii], 'input');
  assert.equal(r.verdict, 'redact');
  assert.equal(r.text, 'Mail [EMAIL], call [PHONE], card [CREDIT_CARD], SSN [SSN], IBAN [IBAN], ip [IP_ADDRESS], key [SECRET].');
  assert.deepEqual(r.findings.map((f) => f.category).sort(), ['credit_card', 'email', 'iban', 'ip_address', 'phone', 'secret', 'ssn']);
  assert.ok(!JSON.stringify(r.findings).includes('example.com'), 'summaries never carry values');
});

test('clean text is allowed and returned unchanged', () => {
  const text = 'Order #123456 shipped on 2024-03-15, version 1.2.3, total $1,234.56.';
  const r = applyGuardrails(text, [pii], 'input');
  assert.deepEqual(r, { verdict: 'allow', text, findings: [] });
});

test('regex list and [REDACTED] marker', () => {
  const r = applyGuardrails('ticket ACME-123456 and ACME-12', [g('acme', { regex: ['ACME-\\d{6}'] })], 'output');
  assert.equal(r.text, 'ticket [REDACTED] and ACME-12');
});

test('keywords: case- and diacritic-insensitive, whole words only', () => {
  const kw = g('kw', { keywords: ['project falcon', 'café'] });
  assert.equal(applyGuardrails('About PROJÉCT  Falcon today', [kw], 'input').text, 'About [KEYWORD] today');
  assert.equal(applyGuardrails('meet at the CAFE', [kw], 'input').text, 'meet at the [KEYWORD]');
  assert.equal(applyGuardrails('meet at the cafe\u0301 now', [kw], 'input').text, 'meet at the [KEYWORD] now', 'decomposed accent removed with the word');
  assert.equal(applyGuardrails('the cafeteria and project falconry', [kw], 'input').verdict, 'allow', 'word boundaries');
});

test('block wins over redact over flag; blockedBy names the guardrail', () => {
  const flag = g('flagger', { action: 'flag', keywords: ['secret plan'] });
  const red = g('redactor', { detect: ['email'] });
  const block = g('blocker', { action: 'block', detect: ['credit_card'] });
  const text = 'secret plan: mail a@example.com card 4111111111111111';
  const r = applyGuardrails(text, [flag, red, block], 'input');
  assert.equal(r.verdict, 'block');
  assert.equal(r.blockedBy, 'blocker');
  assert.equal(r.blockedCategory, 'credit_card');
  assert.equal(applyGuardrails('secret plan: a@example.com', [flag, red, block], 'input').verdict, 'redact');
  const f = applyGuardrails('secret plan only', [flag, red, block], 'input');
  assert.equal(f.verdict, 'flag');
  assert.equal(f.text, 'secret plan only', 'flag never changes text');
});

test('direction filter: an output-only guardrail ignores input', () => {
  const out = compileGuardrail('out', { on: ['output'], action: 'block', detect: ['email'] });
  assert.equal(applyGuardrails('a@example.com', [out], 'input').verdict, 'allow');
  assert.equal(applyGuardrails('a@example.com', [out], 'output').verdict, 'block');
});

test('max_chars: block, or truncate on redact', () => {
  assert.equal(applyGuardrails('x'.repeat(11), [g('size', { action: 'block', max_chars: 10 })], 'input').verdict, 'block');
  assert.equal(applyGuardrails('x'.repeat(10), [g('size', { action: 'block', max_chars: 10 })], 'input').verdict, 'allow');
  assert.equal(applyGuardrails('abcdefghijkl', [g('size', { max_chars: 5 })], 'input').text, 'abcde[TRUNCATED]');
});

test('compile errors name the guardrail and field; schema rejects bad regex at load', () => {
  assert.throws(() => compileGuardrail('bad', { on: ['input'], action: 'block', regex: ['('] }), /guardrail "bad": regex\[0\]/);
  assert.throws(() => compileGuardrail('bad', { on: ['input'], action: 'block', json_schema: { oneOf: [] } }), /unsupported keyword "oneOf"/);
  assert.equal(guardrailSpec.safeParse({ on: ['input'], action: 'block', regex: ['('] }).success, false);
  assert.equal(guardrailSpec.safeParse({ on: ['input'], action: 'block', regex: ['a+'], json_schema: { type: 'object' } }).success, true);
});

test('chat messages: text, parts and tool-call arguments redacted; untouched messages keep identity', () => {
  const messages: ChatMessage[] = [
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: [{ type: 'text', text: 'my mail is a@example.com' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }] },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'lookup', arguments: '{"email":"b@example.org","n":1}' } }] },
    { role: 'user', content: 'call +1 415-555-2671' },
  ];
  const req = { messages };
  const r = applyToChat(req, [pii], 'input');
  assert.equal(r.verdict, 'redact');
  assert.equal(r.changed, true);
  assert.notEqual(r.value.messages, messages);
  assert.equal(r.value.messages[0], messages[0], 'unchanged message reused');
  assert.deepEqual(r.value.messages[1].content, [{ type: 'text', text: 'my mail is [EMAIL]' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }]);
  assert.equal(r.value.messages[2].tool_calls![0].function.arguments, '{"email":"[EMAIL]","n":1}');
  assert.equal(r.value.messages[3].content, 'call [PHONE]');
  assert.equal(messages[3].content, 'call +1 415-555-2671', 'input not mutated');
  const email = r.findings.find((f) => f.category === 'email')!;
  assert.equal(email.count, 2);
  assert.deepEqual(email.where, ['$.messages[1].content[0].text', '$.messages[2].tool_calls[0].function.arguments.email']);
  const clean = applyToChat({ messages: [{ role: 'user', content: 'hello' }] }, [pii], 'input');
  assert.equal(clean.changed, false);
  assert.equal(clean.verdict, 'allow');
});

test('chat size limit counts all messages and blocks even when action is redact', () => {
  const r = applyToChat({ messages: [{ role: 'user', content: 'x'.repeat(6) }, { role: 'user', content: 'y'.repeat(6) }] }, [g('size', { max_chars: 10 })], 'input');
  assert.equal(r.verdict, 'block');
  assert.equal(r.blockedBy, 'size');
});

test('JSON tool arguments/results: string leaves scanned, copy-on-write', () => {
  const args = { customer: { email: 'a@example.com', notes: ['card 4111111111111111', 'fine'] }, limit: 5 };
  const r = applyToJson(args, [pii], 'output');
  assert.deepEqual(r.value, { customer: { email: '[EMAIL]', notes: ['card [CREDIT_CARD]', 'fine'] }, limit: 5 });
  assert.equal(args.customer.email, 'a@example.com');
  const same = { q: 'nothing here', n: 3 };
  assert.equal(applyToJson(same, [pii], 'input').value, same);
});

test('json_schema guardrail: violations block (redact escalates), reasons carry paths not values', () => {
  const schema = g('args-schema', {
    on: ['input'], action: 'redact',
    json_schema: { type: 'object', required: ['query'], additionalProperties: false, properties: { query: { type: 'string', maxLength: 20 }, limit: { type: 'integer', minimum: 1, maximum: 50 }, mode: { enum: ['fast', 'full'] } } },
  });
  assert.equal(applyToJson({ query: 'acme', limit: 10, mode: 'fast' }, [schema], 'input').verdict, 'allow');
  const bad = applyToJson({ query: 'x'.repeat(21), limit: 500, mode: 'drop', extra: 1 }, [schema], 'input');
  assert.equal(bad.verdict, 'block');
  assert.equal(bad.blockedBy, 'args-schema');
  assert.deepEqual(bad.schemaErrors, [
    'args-schema: $.query must be at most 20 characters',
    'args-schema: $.limit must be <= 50',
    'args-schema: $.mode must be one of "fast", "full"',
    'args-schema: $.extra is not an allowed property (additionalProperties is false)',
  ]);
  assert.equal(applyToJson({}, [schema], 'input').schemaErrors?.[0], 'args-schema: $.query is required');
  assert.equal(applyToJson({ query: 'x'.repeat(30) }, [schema], 'output').verdict, 'allow', 'input-only guardrail');
});

test('JSON nested deeper than the walk limit is still scanned; redact escalates to block there', () => {
  let deep: unknown = { email: 'a@example.com' };
  for (let i = 0; i < 80; i++) deep = { next: deep };
  const r = applyToJson(deep, [pii], 'input');
  assert.equal(r.verdict, 'block');
  assert.equal(r.findings[0].category, 'email');
});

test('secrets: password in a connection URL is redacted, the rest kept', () => {
  const r = applyGuardrails('DATABASE_URL=postgres://app:Pq7!xR2mZ9vL@db.internal:5432/app', [pii], 'input');
  assert.equal(r.text, 'DATABASE_URL=postgres://app:[SECRET]@db.internal:5432/app');
});

test('blockedMessage names the guardrail and category, never the value', async () => {
  const { blockedMessage } = await import('../src/guardrails/engine.ts');
  const r = applyGuardrails('card 4111111111111111', [g('no-cards', { action: 'block', detect: ['credit_card'] })], 'input');
  const msg = blockedMessage(r.blockedBy!, r.blockedCategory, 'input');
  assert.match(msg, /guardrail "no-cards".*payment card/);
  assert.ok(!msg.includes('4111'));
});

// The one walker: every string leaf an agent sends, wherever it sits (issue 12, finding 6).
test('walker: tool definitions, unknown fields, file parts, documents and deep values are all seen', () => {
  const ssn = '078-05-1120';
  const block = g('ssn', { detect: ['ssn'], action: 'block' });
  const b64 = (t: string) => Buffer.from(t, 'utf8').toString('base64');
  const cases: Array<[string, object]> = [
    ['tool description', { messages: [], tools: [{ type: 'function', function: { name: 'f', description: `ssn ${ssn}` } }] }],
    ['unknown top-level field', { messages: [], extra: { metadata: { note: ssn } } }],
    ['file part (data URL of text)', { messages: [{ role: 'user', content: [{ type: 'file', file: { filename: 'a.txt', file_data: `data:text/plain;base64,${b64(`ssn ${ssn}`)}` } }] }] }],
    ['anthropic document (base64 text)', { messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'text/plain', data: b64(`the customer ssn is ${ssn} as recorded in the file`) } }] }] }],
    ['anthropic document (text source)', { messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: `ssn ${ssn}` } }] }] }],
    ['response_format schema', { messages: [], response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { description: ssn } } } }],
  ];
  for (const [what, req] of cases) {
    const r = applyToChat(req, [block], 'input');
    assert.equal(r.verdict, 'block', what);
  }
  // Deeper than the walker rebuilds: scanned as text, and redact escalates to block.
  let deep: unknown = { note: ssn };
  for (let i = 0; i < 100; i++) deep = { d: deep };
  assert.equal(applyToChat({ messages: [], extra: deep }, [g('r', { detect: ['ssn'] })], 'input').verdict, 'block');
});

test('walker: redaction inside a base64 text payload is re-encoded; binary media and opaque tokens are skipped', () => {
  const red = g('r', { detect: ['email', 'secrets'] });
  const data = `data:text/plain;base64,${Buffer.from('write to a@example.com please').toString('base64')}`;
  const r = applyToChat({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: data } }] }] }, [red], 'input');
  const out = (r.value.messages[0].content as Array<{ file: { file_data: string } }>)[0].file.file_data;
  assert.ok(out.startsWith('data:text/plain;base64,'));
  assert.equal(Buffer.from(out.slice('data:text/plain;base64,'.length), 'base64').toString(), 'write to [EMAIL] please');
  const png = Buffer.alloc(3000, 0); png.write('\x89PNG', 0, 'latin1');
  for (let i = 0; i < png.length; i++) png[i] = (i * 7919) & 0xff;
  const image = { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } }] }] };
  assert.equal(applyToChat(image, [red], 'input').verdict, 'allow', 'binary image not read as a secret');
  const thinking = { messages: [{ role: 'assistant', content: [{ type: 'thinking', thinking: 'ok', signature: 'EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds' }] }] };
  assert.equal(applyToChat(thinking, [red], 'input').verdict, 'allow', 'opaque signature not content');
});

test('walker: a string that only fits the base64 alphabet is read as written, not skipped as binary', () => {
  // Digits joined by '-' and '/' decode to bytes that are no text; real encoded bytes are mostly letters of both cases.
  const ssns = Array.from({ length: 6 }, (_, i) => (i % 2 ? '219-09-9999' : '078-05-1120')).join('/');
  const red = g('r', { detect: ['ssn'] });
  for (const [where, value] of [
    ['data', { messages: [], extra: { data: ssns } }],
    ['data, a letter of each case', { messages: [], extra: { data: `${ssns}/aA` } }],
    ['file_data', { messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: ssns } }] }] }],
    ['b64_json', { messages: [], extra: { b64_json: ssns } }],
    ['A2A raw', { messages: [], extra: { parts: [{ raw: ssns }] } }],
  ] as const) {
    const r = applyToChat(value as never, [red], 'input');
    assert.equal(r.verdict, 'redact', where);
    assert.doesNotMatch(JSON.stringify(r.value), /078-05-1120/, where);
  }
  // Encoded bytes of no known kind (raw PCM audio, an unknown format) are still not read.
  const pcm = Buffer.alloc(3000); for (let i = 0; i < pcm.length; i++) pcm[i] = (i * 7919 + (i >> 3)) & 0xff;
  const b64 = pcm.toString('base64');
  const literal = g('l', { regex: [b64.slice(100, 120).replace(/[+/]/g, '\\$&')] }); // would match the text if it were read
  assert.notEqual(applyToChat({ messages: [], extra: { note: b64 } }, [literal], 'input').verdict, 'allow', 'the pattern matches the text');
  assert.equal(applyToChat({ messages: [], extra: { data: b64 } }, [literal], 'input').verdict, 'allow', 'encoded bytes are not read');
});

test('walker: leaves in order for webhooks, and replaced in the same order', () => {
  const v = { a: 'one', b: [{ c: 'two' }, 3], d: { arguments: '{"x":"three"}' }, role: 'user' };
  assert.deepEqual(leafTexts(v), ['one', 'two', 'three']);
  const out = replaceLeaves(v, ['1', '2', '3']);
  assert.deepEqual(out, { a: '1', b: [{ c: '2' }, 3], d: { arguments: '{"x":"3"}' }, role: 'user' });
  assert.equal(replaceLeaves(v, ['one', 'two', 'three']).a, 'one');
});
