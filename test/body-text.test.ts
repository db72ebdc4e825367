// Large request bodies are decoded chunk by chunk while read (src/server/context.ts BodyText), so
// no loop turn decodes megabytes at once; the text must be exactly what decoding the whole body
// gives, for any bytes (invalid UTF-8 included) cut anywhere (inside multi-byte characters too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyText } from '../src/server/context.ts';

function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Bytes that make UTF-8 decoding interesting: lead bytes, continuations, overlongs, surrogates, invalid ones. */
const BYTES = [0x41, 0x22, 0x5c, 0x80, 0xbf, 0xc0, 0xc2, 0xc3, 0xa9, 0xe0, 0xe2, 0x82, 0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0x80, 0xf4, 0x90, 0xf8, 0xff];

test('a body decoded while read is the same text as the whole body decoded, for any bytes in any chunking', () => {
  const r = prng(5);
  for (let i = 0; i < 300; i++) {
    const n = 200_000 + Math.floor(r() * 200_000);
    const body = Buffer.alloc(n);
    for (let k = 0; k < n; k++) body[k] = r() < 0.7 ? 0x61 + (k % 26) : BYTES[Math.floor(r() * BYTES.length)];
    const chunks: Buffer[] = [];
    const text = new BodyText();
    let size = 0;
    for (let p = 0; p < n;) {
      const q = Math.min(n, p + 1 + Math.floor(r() * (r() < 0.2 ? 8 : 70_000)));
      chunks.push(body.subarray(p, q));
      size += q - p;
      text.feed(chunks, size);
      p = q;
    }
    assert.equal(text.of(Buffer.concat(chunks)), body.toString('utf8'), `case ${i}`);
  }
});

test('a small body is decoded once at the end (nothing spent while reading)', () => {
  const text = new BodyText();
  const body = Buffer.from('{"a":"café"}');
  text.feed([body], body.length);
  assert.equal(text.of(body), '{"a":"café"}');
});
