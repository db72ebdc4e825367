// Sliced JSON parsing (src/access/json-turns.ts) on small, chosen texts instead of json-turns'
// thousands of random ones, so a mutant it kills costs about a second: every escape and run of
// backslashes cut by every slice width, from a string and from UTF-8 bytes, long keys beside long
// values, which texts are parsed at once and which across loop turns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJsonInTurns } from '../src/access/json-turns.ts';

/** Literal contents as written in JSON (valid and not), each tried as a long value. */
const CONTENTS = [
  'abcdefgh', '\\n\\t\\r\\b\\f\\/', 'a\\"b\\"c', '\\\\\\\\x', 'x\\\\\\"y', '\\\\', '\\\\\\\\', 'ab\\\\',
  '\\u00e9\\u00E9zz', '\\uD83D\\uDE00ok', 'é😀 café', '"', 'tail\\', 'a\\\\\\', '\\u00', '\\u12G4abc', '\\xab', 'ok\u0001ok', 'raw\nline',
];

function outcome(f: () => unknown): Promise<{ ok: true; value: unknown } | { ok: false }> {
  try {
    return Promise.resolve(f()).then((value) => ({ ok: true as const, value }), () => ({ ok: false as const }));
  } catch {
    return Promise.resolve({ ok: false as const });
  }
}

test('every escape cut by every slice width parses as JSON.parse does, from text and from bytes', async () => {
  for (const c of CONTENTS) {
    for (const text of [`{"k": "${c}", "short": "s"}`, `["${c}", "${c}"]`, `"${c}${'p'.repeat(16)}"`]) {
      const want = await outcome(() => JSON.parse(text));
      for (let slice = 1; slice <= 7; slice++) {
        for (const source of [text, Buffer.from(text)]) {
          const got = await outcome(() => parseJsonInTurns(source, { long: 4, slice }));
          const what = `${JSON.stringify(text)} slice ${slice} ${typeof source === 'string' ? 'text' : 'bytes'}`;
          assert.equal(got.ok, want.ok, what);
          if (got.ok && want.ok) assert.deepEqual(got.value, want.value, what);
        }
      }
    }
  }
});

test('bytes cut inside a character or an escape, and invalid UTF-8, decode as the whole text would', async () => {
  const texts = [Buffer.from(`{"a": "${'é😀'.repeat(6)}"}`), Buffer.concat([Buffer.from('{"a": "abcdefgh'), Buffer.from([0xe2, 0x82]), Buffer.from('"}')]),
    Buffer.concat([Buffer.from('{"a": "abcdefgh'), Buffer.from([0xff]), Buffer.from('xyz"}')]), Buffer.from(`{"a": "x\\u00e9y\\\\z\\"${'é'.repeat(8)}"}`)];
  for (const buf of texts) {
    const want = JSON.parse(buf.toString('utf8'));
    for (let slice = 1; slice <= 9; slice++) assert.deepEqual(await parseJsonInTurns(buf, { long: 4, slice }), want, `${buf.toString('hex')} slice ${slice}`);
  }
});

test('long keys stay keys, whatever the whitespace before the colon; long values are put back at any depth', async () => {
  const key = 'K'.repeat(8);
  for (const ws of ['', ' ', '\t', '\n', '\r', ' \r\n\t ']) {
    const text = `{"${key}"${ws}: "${'v'.repeat(8)}", "list": [["${'w'.repeat(9)}"], {"in": "${'x'.repeat(10)}"}], "n": 1}`;
    for (const source of [text, Buffer.from(text)]) assert.deepEqual(await parseJsonInTurns(source, { long: 4, slice: 3 }), JSON.parse(text), JSON.stringify(ws));
  }
  // A long value followed by whitespace and more members is a value, not a key.
  const spaced = `{"a": "${'v'.repeat(8)}"  , "b": "${'u'.repeat(8)}"\n}`;
  assert.deepEqual(await parseJsonInTurns(spaced, { long: 4 }), JSON.parse(spaced));
  const proto = `{"__proto__": "${'y'.repeat(8)}", "z": 1}`;
  const v = await parseJsonInTurns(proto, { long: 4 }) as object;
  assert.deepEqual(Object.keys(v), ['__proto__', 'z']);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
});

test('parsed at once below four times the long length or with no long value; in turns from there', () => {
  const at = (text: string, long: number) => parseJsonInTurns(text, { long }) instanceof Promise;
  const value = (n: number) => `"${'a'.repeat(n)}"`;
  // 4 x 10 = 40 characters; the value's literal must be 10 characters long (between the quotes).
  const exact = `[${value(10)}, ${'1'.padEnd(24, ' ')}]`;
  assert.equal(exact.length, 40);
  assert.equal(at(exact, 10), true, 'exactly 4 x long, with a literal exactly long');
  assert.equal(at(exact.slice(0, -2) + ']', 10), false, 'one character under 4 x long');
  assert.equal(at(`[${value(9)}, ${'1'.padEnd(25, ' ')}]`, 10), false, 'a literal one under long');
  assert.equal(at(`{${value(12)}: ${'1'.padEnd(23, ' ')}}`, 10), false, 'a long key alone');
  assert.equal(at(JSON.stringify({ a: 'x'.repeat(20_000) }), 16 * 1024 + 1), false, 'defaults: under 4 x 16 KiB');
  assert.equal(at(JSON.stringify({ a: 'x'.repeat(70_000) }), 16 * 1024), true);
  assert.equal(parseJsonInTurns(JSON.stringify({ a: 'x'.repeat(70_000) })) instanceof Promise, true, 'the default long length is 16 KiB');
  assert.equal(parseJsonInTurns(JSON.stringify({ a: 'x'.repeat(60_000) })) instanceof Promise, false, 'under 64 KiB of text: at once');
});

test('a long literal is decoded across loop turns, a few slices per turn', async () => {
  // 1.7 MB of text: long enough to span several 1 ms turns on a fast, warm machine too (510 KB took
  // 5 ms and 2 turns there, which made this test fail on speed rather than on the code).
  const text = JSON.stringify({ content: 'café 😀 \\ "q" '.repeat(100_000) });
  let turns = 0, running = true;
  const tick = () => { turns++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const v = await parseJsonInTurns(text, { slice: 1024 });
  running = false;
  assert.deepEqual(v, JSON.parse(text));
  assert.ok(turns > 2, `the loop turned ${turns} times while parsing`);
});
