// A large request body is parsed without holding the event loop: long string literals are decoded
// by JSON.parse in slices across loop turns (src/access/json-turns.ts). The value must be exactly
// JSON.parse's, and every text JSON.parse refuses must be refused, whatever the escapes and wherever
// the slices fall (tiny slices here, so cuts land next to and inside every kind of escape).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJsonInTurns } from '../src/access/json-turns.ts';
import { prng } from './helpers/hostile-text.ts';

/** Pieces of a literal's raw content as written in JSON: plain text, every escape, raw non-ASCII. */
const PIECES = ['a', 'plain ', '\\n', '\\"', '\\\\', '\\/', '\\b\\f\\r\\t', '\\u00e9', '\\uD83D\\uDE00', '\\uD83D', '\\uDE00', 'é', '😀', '"', '\\\\\\"', ':', '{', '[', ','];
/** What turns a valid text invalid: raw control characters, bad escapes, an unterminated literal. */
const BREAKS = ['\u0001', '\n', '\\x', '\\u12G4', '\\u00', '\\'];

function literal(r: () => number, n: number): string {
  let s = '';
  while (s.length < n) {
    const p = PIECES[Math.floor(r() * PIECES.length)];
    if (p !== '"') s += p; // a raw quote would end the literal
  }
  return `"${s}"`;
}

function body(r: () => number): string {
  const long = () => literal(r, 40 + Math.floor(r() * 200));
  const short = () => literal(r, Math.floor(r() * 10));
  const __proto = r() < 0.2 ? `"__proto__": ${long()}, ` : '';
  return `{ ${__proto}"model": ${short()}, "messages": [ { "role": "user", "content": ${long()} }, { "content": [ ${long()}, 3, null, ${short()} ], ${long()}: ${long()} } ], "n": 1.5e3 , "x": [${long()}]}`;
}

function outcome(f: () => unknown): Promise<{ ok: true; value: unknown } | { ok: false }> {
  try {
    const v = f();
    return Promise.resolve(v).then((value) => ({ ok: true as const, value }), () => ({ ok: false as const }));
  } catch {
    return Promise.resolve({ ok: false });
  }
}

test('parsed in slices equals JSON.parse, and what JSON.parse refuses is refused (random bodies, every escape, tiny slices)', async () => {
  const r = prng(21);
  let valid = 0, invalid = 0;
  for (let i = 0; i < 1500; i++) {
    let text = body(r);
    if (r() < 0.4) {
      const at = Math.floor(r() * text.length);
      text = text.slice(0, at) + BREAKS[Math.floor(r() * BREAKS.length)] + text.slice(at);
    }
    const want = await outcome(() => JSON.parse(text));
    const got = await outcome(() => parseJsonInTurns(text, { long: 20, slice: 1 + Math.floor(r() * 9) }));
    assert.equal(got.ok, want.ok, `case ${i}: ${want.ok ? 'refused a valid' : 'accepted an invalid'} text: ${text}`);
    if (want.ok && got.ok) { assert.deepEqual(got.value, want.value, `case ${i}`); valid++; } else invalid++;
  }
  assert.ok(valid > 500 && invalid > 300, `${valid} valid, ${invalid} invalid`);
});

test('a large body with long literals is parsed across loop turns; a small one at once', async () => {
  const content = 'call +44 20 7946 0958 "quoted" \\ café 😀 '.repeat(40_000); // ~1.7 MB of text
  const text = JSON.stringify({ model: 'm', messages: [{ role: 'user', content }, { role: 'user', content: content.slice(0, 100_000) }] });
  let turns = 0, running = true;
  const tick = () => { turns++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const v = parseJsonInTurns(text);
  assert.ok(v instanceof Promise, 'a large body is parsed in turns');
  assert.deepEqual(await v, JSON.parse(text));
  running = false;
  assert.ok(turns > 1, `the loop turned ${turns} times while parsing`);
  const small = '{"model":"m","messages":[{"role":"user","content":"hi"}]}';
  assert.deepEqual(parseJsonInTurns(small), JSON.parse(small));
});

test('long literals are put back at any depth and under a "__proto__" key, as JSON.parse has them', async () => {
  let deep = `"${'x'.repeat(70_000)}"`;
  for (let i = 0; i < 20_000; i++) deep = `[${deep}]`;
  let x = await parseJsonInTurns(deep), depth = 0;
  while (Array.isArray(x)) { assert.equal(x.length, 1); x = x[0]; depth++; }
  assert.equal(depth, 20_000);
  assert.equal(x, 'x'.repeat(70_000));
  const proto = `{"__proto__": "${'y'.repeat(70_000)}", "a": {"__proto__": "${'z'.repeat(70_000)}"}}`;
  const v = await parseJsonInTurns(proto) as Record<string, unknown>;
  assert.deepEqual(Object.keys(v), ['__proto__', 'a']);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.deepEqual(v, JSON.parse(proto));
});

test('parsed from UTF-8 bytes (never decoded whole) equals JSON.parse of the decoded text, invalid UTF-8 and bytes cut anywhere included', async () => {
  const r = prng(33);
  const BAD = [[0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0xff], [0xed, 0xa0, 0x80], [0xc0, 0xaf]];
  let valid = 0, invalid = 0;
  for (let i = 0; i < 1500; i++) {
    let text = body(r);
    if (r() < 0.3) {
      const at = Math.floor(r() * text.length);
      text = text.slice(0, at) + BREAKS[Math.floor(r() * BREAKS.length)] + text.slice(at);
    }
    let buf = Buffer.from(text);
    for (let k = Math.floor(r() * 3); k > 0; k--) {
      const at = Math.floor(r() * buf.length);
      buf = Buffer.concat([buf.subarray(0, at), Buffer.from(BAD[Math.floor(r() * BAD.length)]), buf.subarray(at)]);
    }
    const want = await outcome(() => JSON.parse(buf.toString('utf8')));
    const got = await outcome(() => parseJsonInTurns(buf, { long: 20, slice: 1 + Math.floor(r() * 9) }));
    assert.equal(got.ok, want.ok, `case ${i}: ${want.ok ? 'refused a valid' : 'accepted an invalid'} body: ${buf.toString('hex')}`);
    if (want.ok && got.ok) { assert.deepEqual(got.value, want.value, `case ${i}`); valid++; } else invalid++;
  }
  assert.ok(valid > 500 && invalid > 300, `${valid} valid, ${invalid} invalid`);
});
