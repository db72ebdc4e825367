// No input can stall a guardrail: every detector, the keyword matcher, operator regexes and the
// stream guard run in time linear in the text. Asserted by scaling (8x the input must cost far
// less than 64x, what a quadratic scan costs) and by generous absolute bounds, both on CPU time
// so a busy machine does not fail them; the quadratic and exponential detectors this replaced
// failed both (e.g. "://" + "a." * 48000 took ~7 s, "+" and 40 digits ~12 us per character).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DETECTORS, resolveOverlaps } from '../src/guardrails/detectors.ts';
import { compileKeywords, findKeywords } from '../src/guardrails/keywords.ts';
import { applyGuardrails, applyToChat, applyToJson, blockedMessage, compileGuardrail, createStreamGuard } from '../src/guardrails/engine.ts';
import { compileLinearRegex } from '../src/config/linear-regex.ts';
import type { GuardrailSpec } from '../src/config/schema.ts';
import type { Finding } from '../src/guardrails/types.ts';
import { adversarialInputs, randomInputs, run } from './helpers/hostile-text.ts';

const SMALL = 16 * 1024, BIG = 8 * SMALL;
/** Linear costs 8x for 8x the input; quadratic 64x. Above this, the scan is not linear. */
const MAX_RATIO = 24;
/** Absolute bound for 128 KB of hostile text, ~40x the measured worst detector: only a broken scan gets near it. */
const MAX_BIG_MS = 500;
/** Below this the big run is too short to judge its ratio (a background compile can cost as much). */
const RATIO_FLOOR_MS = 20;

/** Least CPU milliseconds of `runs` calls (CPU time, so waiting for a busy core is not counted). */
function cpuMs(fn: () => void, runs: number): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = process.cpuUsage();
    fn();
    const d = process.cpuUsage(t);
    best = Math.min(best, (d.user + d.system) / 1000);
  }
  return best;
}

interface Scaling { smallMs: number; bigMs: number; ratio: number }

/** Too slow, or growing faster than linear (judged once the big run is long enough to measure). */
function nonLinear(r: Scaling, maxBigMs = MAX_BIG_MS): boolean {
  return r.bigMs > maxBigMs || (r.bigMs > RATIO_FLOOR_MS && r.ratio > MAX_RATIO);
}

/** Small and big costs; measured twice when the first try looks non-linear, to rule out a hiccup. */
function scaling(scanner: (text: string) => void, small: string, big: string): Scaling {
  let r: Scaling = { smallMs: 0, bigMs: Infinity, ratio: Infinity };
  for (let attempt = 0; attempt < 2 && nonLinear(r); attempt++) {
    const smallMs = cpuMs(() => scanner(small), 3);
    const bigMs = cpuMs(() => scanner(big), 2);
    // Below a quarter millisecond the small run is timer noise; a linear big run stays far below the bound.
    r = { smallMs, bigMs, ratio: bigMs / Math.max(smallMs, 0.25) };
  }
  return r;
}

const shapes = (size: number) => [...adversarialInputs(size), ...randomInputs(size)];

for (const [name, detect] of Object.entries(DETECTORS)) {
  test(`detector ${name}: linear on every hostile and random input`, () => {
    const small = shapes(SMALL), big = shapes(BIG);
    const slow: string[] = [];
    small.forEach(([label, text], i) => {
      const r = scaling((t) => detect(t, []), text, big[i][1]);
      if (nonLinear(r)) slow.push(`${label}: ${r.smallMs.toFixed(2)} ms at 16 KB, ${r.bigMs.toFixed(1)} ms at 128 KB`);
    });
    assert.deepEqual(slow, [], `${name} is not linear on:\n${slow.join('\n')}`);
  });
}

test('the reported inputs: 96 KB "://" + "a." and 50 KB of "+" and digits scan in milliseconds', () => {
  const secrets = compileGuardrail('secrets', { on: ['input'], action: 'block', detect: ['secrets', 'phone'] } as GuardrailSpec);
  const url = '://' + 'a.'.repeat(48_000);
  const phone = run('', '+' + '1'.repeat(40) + ' ', 50 * 1024);
  for (const text of [url, phone]) {
    const ms = cpuMs(() => assert.equal(applyGuardrails(text, [secrets], 'input').verdict, 'allow'), 1);
    assert.ok(ms < MAX_BIG_MS, `${text.slice(0, 12)}...: ${ms.toFixed(0)} ms`);
  }
});

test('a guardrail with every detector, keywords and a regex is linear on every hostile input', () => {
  const all = compileGuardrail('all', {
    on: ['input'], action: 'redact', detect: Object.keys(DETECTORS), keywords: ['project falcon', 'café'], regex: ['ACME-\\d{6}', '(a+)+b'],
  } as GuardrailSpec);
  const small = shapes(SMALL), big = shapes(BIG);
  const slow: string[] = [];
  small.forEach(([label, text], i) => {
    const r = scaling((t) => applyGuardrails(t, [all], 'input'), text, big[i][1]);
    if (nonLinear(r, 4 * MAX_BIG_MS)) slow.push(`${label}: ${r.smallMs.toFixed(2)} ms, ${r.bigMs.toFixed(1)} ms`);
  });
  assert.deepEqual(slow, [], slow.join('\n'));
});

test('keywords: linear on non-ASCII text, combining marks and dense matches', () => {
  const re = compileKeywords(['project falcon', 'café'])!;
  for (const unit of ['café crème ', '中文字符测试', '😀🎉 ', 'e\u0301\u0302 ', '\u0301', 'project      ', 'cafe\u0301 ']) {
    const r = scaling((t) => findKeywords(re, t), run('', unit, SMALL), run('', unit, BIG));
    assert.ok(!nonLinear(r), `${JSON.stringify(unit)}: ${JSON.stringify(r)}`);
  }
});

test('overlap resolution stays linear when one finding overlaps thousands of others', () => {
  // One email whose domain labels are each a high-entropy token: a cluster of one email and N
  // secrets, which compared every secret with every kept one (N^2).
  const findingsOf = (size: number) => {
    const text = 'x@' + 'Zx8Qp2Lm9Rt4Vn7Ks1Wd.'.repeat(Math.ceil(size / 21)) + 'com';
    const out: Finding[] = [];
    for (const d of Object.values(DETECTORS)) d(text, out);
    return out;
  };
  const small = findingsOf(SMALL), big = findingsOf(BIG);
  assert.ok(small.some((f) => f.category === 'email') && small.length > 500, `${small.length} findings`);
  assert.ok(resolveOverlaps([...small]).every((f) => f.category === 'secret'));
  const r = scaling((which) => resolveOverlaps(which === 'small' ? [...small] : [...big]), 'small', 'big');
  assert.ok(!nonLinear(r), JSON.stringify(r));
});

test('operator regexes run on the linear-time engine: nested quantifiers cannot backtrack', () => {
  const re = compileLinearRegex('(a+)+b');
  assert.ok(re.flags.includes('l') && re.global, `flags ${re.flags}`);
  // Exponential on a backtracking engine (2^n for n a's); one pass here.
  const ms = cpuMs(() => { re.lastIndex = 0; assert.equal(re.exec('a'.repeat(100_000) + 'c'), null); }, 1);
  assert.ok(ms < MAX_BIG_MS, `${ms} ms`);
  // Same matches as the ordinary engine.
  const acme = compileGuardrail('acme', { on: ['input'], action: 'redact', regex: ['ACME-\\d{6}'] } as GuardrailSpec);
  assert.equal(applyGuardrails('ticket ACME-123456 and ACME-12', [acme], 'input').text, 'ticket [REDACTED] and ACME-12');
});

test('operator regexes the linear engine cannot run are refused, naming the guardrail, the field and a fix', () => {
  const cases: Array<[string, RegExp]> = [
    ['(a)\\1', /backreference/],
    ['(?<year>\\d{4})-\\k<year>', /backreference/],
    ['foo(?=bar)', /lookahead or lookbehind/],
    ['(?<!x)y', /lookahead or lookbehind/],
    ['(?i:acme)', /inline flags/],
    ['\\d{20}', /\\d\{16\}\\d\{4\}/],
    ['(', /not a valid regular expression/],
  ];
  for (const [src, why] of cases) {
    assert.throws(() => compileGuardrail('strict', { on: ['input'], action: 'block', regex: ['ok', src] } as GuardrailSpec),
      (e: Error) => /^guardrail "strict": regex\[1\] /.test(e.message) && why.test(e.message), src);
  }
});

test('json_schema patterns run on the linear-time engine too; ones it cannot run are refused naming the path', () => {
  const schema = (pattern: string) => ({ type: 'object', properties: { q: { type: 'string', pattern } } });
  const g = compileGuardrail('args', { on: ['input'], action: 'block', json_schema: schema('^(a+)+$') } as GuardrailSpec);
  const ms = cpuMs(() => assert.equal(applyToJson({ q: 'a'.repeat(50_000) + 'b' }, [g], 'input').verdict, 'block'), 1);
  assert.ok(ms < MAX_BIG_MS, `${ms} ms`);
  assert.equal(applyToJson({ q: 'aaa' }, [g], 'input').verdict, 'allow');
  for (const [pattern, why] of [['^(\\w)\\1$', /backreference/], ['^\\p{L}+$', /Unicode property escape/]] as const) {
    assert.throws(() => compileGuardrail('args', { on: ['input'], action: 'block', json_schema: schema(pattern) } as GuardrailSpec),
      (e: Error) => e.message.includes('json_schema at $.properties.q.pattern cannot run in linear time') && why.test(e.message), pattern);
  }
});

test('scan budget: text beyond max_scan_chars is not scanned; block by default with a message naming the setting', () => {
  const g = (spec: Partial<GuardrailSpec>) => compileGuardrail('pii', { on: ['input'], action: 'redact', detect: ['email'], max_scan_chars: 100, ...spec } as GuardrailSpec);
  const big = 'x'.repeat(80);
  const msgs = [{ role: 'user', content: big }, { role: 'user', content: `${big} a@example.com` }];
  const blocked = applyToChat({ messages: msgs }, [g({})], 'input');
  assert.equal(blocked.verdict, 'block');
  assert.equal(blocked.blockedCategory, 'scan_limit');
  assert.deepEqual(blocked.findings.map((f) => [f.category, f.count]), [['scan_limit', 1]]);
  const text = applyGuardrails('y'.repeat(101), [g({})], 'input');
  assert.equal(text.verdict, 'block');
  assert.match(blockedMessage('pii', text.blockedCategory, 'input'), /guardrail "pii".*more text than the guardrail scans per request \(spec\.max_scan_chars\)/);
  // Within the budget, scanning is unchanged.
  assert.equal(applyToChat({ messages: [msgs[1]] }, [g({})], 'input').verdict, 'redact');
  // Deep subtrees (scanned as one flat text) share the walk's budget.
  let deep: unknown = big;
  for (let i = 0; i < 70; i++) deep = [deep];
  assert.equal(applyToJson({ a: big, deep }, [g({})], 'input').blockedCategory, 'scan_limit');
  // on_scan_limit: flag lets the unscanned remainder through, recorded.
  const flagged = applyToJson({ a: big, b: `${big} a@example.com` }, [g({ on_scan_limit: 'flag' })], 'input');
  assert.equal(flagged.verdict, 'flag');
  assert.deepEqual(flagged.value, { a: big, b: `${big} a@example.com` });
  // A flag-only guardrail never blocks, not even here.
  assert.equal(applyGuardrails('y'.repeat(101), [g({ action: 'flag' })], 'input').verdict, 'flag');
});

test('scan budget on streams: a stream longer than max_scan_chars is cut (block) or passes flagged', () => {
  const spec = { on: ['output'], action: 'redact', detect: ['email'], max_scan_chars: 1000 } as GuardrailSpec;
  const block = createStreamGuard([compileGuardrail('pii', spec)]);
  let blocked;
  for (let i = 0; i < 200 && !blocked; i++) blocked = block.push('hello world ').blocked;
  assert.deepEqual(blocked, { guardrail: 'pii', category: 'scan_limit' });
  const flag = createStreamGuard([compileGuardrail('pii', { ...spec, on_scan_limit: 'flag' })]);
  let out = '';
  for (let i = 0; i < 200; i++) out += flag.push('hello world ').emit;
  out += flag.end().emit;
  assert.equal(out, 'hello world '.repeat(200));
  assert.deepEqual(flag.findings().map((f) => f.category), ['scan_limit']);
});

test('stream guard: a long run without whitespace, streamed in tiny deltas, costs linear time', () => {
  const g = compileGuardrail('all', { on: ['output'], action: 'redact', detect: Object.keys(DETECTORS) } as GuardrailSpec);
  const stream = (text: string) => {
    const sg = createStreamGuard([g]);
    for (let i = 0; i < text.length; i += 4) sg.push(text.slice(i, i + 4));
    sg.end();
  };
  const unit = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo';
  // Before: every delta rescanned everything held (16 KB took ~9 s of CPU).
  const r = scaling(stream, run('', unit, 4 * 1024), run('', unit, 32 * 1024));
  assert.ok(!nonLinear(r, 4 * MAX_BIG_MS), JSON.stringify(r));
});
