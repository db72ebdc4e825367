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
  assert.equal(parseJsonInTurns(value(70_000)) instanceof Promise, true, 'a long string alone, its quote the first character');
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

/**
 * Where an escape-aware slicer may cut a literal's raw content, computed here from JSON's grammar
 * (an escape is `\` and one character, or `\u` and 4 hex digits), not by json-turns.ts.
 */
function cutPoints(content: string): Set<number> {
  const at = new Set([0]);
  for (let i = 0; i < content.length;) {
    i += content[i] !== '\\' ? 1 : content[i + 1] === 'u' ? 6 : 2;
    at.add(i);
  }
  return at;
}

/** Slices of a literal decoded from text: each the shortest at least `slice` long that ends where a cut may be. */
function textSlices(content: string, slice: number): string[] {
  const cuts = cutPoints(content), out: string[] = [];
  for (let a = 0; a < content.length;) {
    let b = Math.min(content.length, a + slice);
    while (!cuts.has(b)) b++;
    out.push(content.slice(a, b));
    a = b;
  }
  return out;
}

/** Slices of an ASCII literal decoded from bytes: `slice` bytes at a time, each cut back to where a cut may be, the rest carried. */
function byteSlices(content: string, slice: number): string[] {
  const cuts = cutPoints(content), out: string[] = [];
  let from = 0;
  for (let end = slice; end - slice < content.length; end += slice) {
    let q = Math.min(end, content.length);
    while (!cuts.has(q)) q--;
    out.push(content.slice(from, q));
    from = q;
  }
  if (from < content.length) out.push(content.slice(from));
  return out;
}

/** A text JSON.parse was given, the loop turn it was parsed in, and how long the parse took. */
interface ParseCall { text: string; turn: number; ms: number }

/** The texts JSON.parse was given while `run` ran (the skeleton's, then the literals' slices), with the turn counted by `turn`. */
async function parsedTexts(run: () => unknown, turn: () => number = () => 0): Promise<{ value: unknown; texts: string[]; calls: ParseCall[] }> {
  const parse = JSON.parse;
  const calls: ParseCall[] = [];
  JSON.parse = ((text: string, reviver?: Parameters<typeof parse>[1]) => {
    const t0 = performance.now();
    try { return parse(text, reviver); } finally { calls.push({ text, turn: turn(), ms: performance.now() - t0 }); }
  }) as typeof JSON.parse;
  try {
    const value = await run();
    return { value, texts: calls.map((c) => c.text), calls };
  } finally {
    JSON.parse = parse;
  }
}

test('a slice ends at the first place at or past its length that cuts no escape, never later (from text and from bytes)', async () => {
  // Valid ASCII contents: runs of backslashes, every escape, \u escapes back to back, at every offset.
  const contents = ['\\\\\\\\\\\\ab\\\\c\\"d', '\\u00e9\\u00E9\\uD83D\\uDE00zz', 'x\\u0041\\\\u0041\\\\\\u0041y', '\\n\\t\\r\\b\\f\\/\\"\\\\abcdef', 'plain text of no escapes'];
  for (const c of contents) {
    for (const [first, second] of [[c, 'q'.repeat(5)], ['y' + c, c + c], ['\\\\' + c, 'zz' + c]]) {
      const text = `["${first}", "${second}"]`;
      for (let slice = 1; slice <= 8; slice++) {
        for (const source of [text, Buffer.from(text)]) {
          const got = await parsedTexts(() => parseJsonInTurns(source, { long: 4, slice }));
          const what = `${JSON.stringify(text)} slice ${slice} ${typeof source === 'string' ? 'text' : 'bytes'}`;
          assert.deepEqual(got.value, JSON.parse(text), what);
          assert.ok(!got.texts[0].includes(first) && !got.texts[0].includes(second), `${what}: the skeleton, parsed at once, leaves the long literals out`);
          const slices = typeof source === 'string' ? textSlices : byteSlices;
          assert.deepEqual(got.texts.slice(1), [...slices(first, slice), ...slices(second, slice)].map((s) => `"${s}"`), what);
        }
      }
    }
  }
});

test('slices share a loop turn until it has lasted TURN_MS (1 ms), then yield: never one slice per turn, never one turn for all', async () => {
  // 1.7 MB in 1 KB slices: ~1,700 slices of a few microseconds each, from text and from bytes.
  const text = JSON.stringify({ content: 'café 😀 \\ "q" '.repeat(100_000) });
  for (const source of [text, Buffer.from(text)]) {
    let turns = 0, running = true;
    const tick = () => { turns++; if (running) setImmediate(tick); };
    setImmediate(tick);
    const { value, calls } = await parsedTexts(() => parseJsonInTurns(source, { slice: 1024 }), () => turns);
    running = false;
    assert.deepEqual(value, JSON.parse(text));
    const slices = calls.slice(1); // after the skeleton
    assert.ok(slices.length > 1500, `${slices.length} slices`);
    // Yielding after each slice would take ~1,700 turns; a turn is cut short only when the
    // machine stalls the process, so a loaded machine has more turns, never close to one per slice.
    assert.ok(turns > 2 && turns < slices.length / 4, `the loop turned ${turns} times for ${slices.length} slices`);
    // The bound itself, whatever the machine's speed or load: a turn goes on to another slice only
    // while it has lasted under 1 ms, so the slices of a turn before its last one took under 1 ms.
    const perTurn = new Map<number, number[]>();
    for (const c of slices) perTurn.set(c.turn, [...(perTurn.get(c.turn) ?? []), c.ms]);
    for (const [turn, ms] of perTurn) {
      const before = ms.slice(0, -1).reduce((a, b) => a + b, 0);
      assert.ok(before < 1, `turn ${turn}: ${ms.length} slices, those before the last took ${before.toFixed(2)} ms (${typeof source})`);
    }
  }
});

test('by default a long literal is decoded 64 KiB at a time', async () => {
  const n = 3 * 65_536 + 3_392;
  const text = `{"a": "${'a'.repeat(n)}", "b": 1}`;
  for (const source of [text, Buffer.from(text)]) {
    const { value, texts } = await parsedTexts(() => parseJsonInTurns(source));
    assert.deepEqual(value, { a: 'a'.repeat(n), b: 1 });
    assert.deepEqual(texts.slice(1).map((t) => t.length - 2), [65_536, 65_536, 65_536, 3_392], typeof source);
  }
});

test('bytes parsed at once (a short body, or one without a long value) decode as UTF-8, as JSON.parse of the text', () => {
  const texts = ['{"a": "é😀", "b": [1, "ü"]}', `{"${'k'.repeat(40)}": "é😀 ${'x'.repeat(3)}", "b": [1, 2, 3, 4, 5, 6, 7, 8, 9]}`];
  for (const text of texts) {
    const got = parseJsonInTurns(Buffer.from(text), { long: 16 });
    assert.ok(!(got instanceof Promise), text);
    assert.deepEqual(got, JSON.parse(text), text);
  }
  assert.throws(() => parseJsonInTurns(Buffer.from('{"a": "é" '), { long: 16 }), SyntaxError);
});

test('long literals are put back among values of every JSON type, empty strings and containers included', async () => {
  const long = (ch: string) => `"${ch.repeat(8)}"`;
  const text = `{"a": [null, true, false, 0, -1.5e3, "", [], {}, ${long('a')}, {"n": null, "s": "", "l": ${long('b')}}], "z": null, "e": "", "b": ${long('c')}}`;
  for (const source of [text, Buffer.from(text)]) assert.deepEqual(await parseJsonInTurns(source, { long: 4, slice: 3 }), JSON.parse(text), typeof source);
});
