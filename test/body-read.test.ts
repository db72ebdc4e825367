// Large request bodies are read in short loop turns (src/server/context.ts readBody): watched and
// decoded chunk by chunk (BodyText), pausing the socket for a turn once a turn's work is spent, so
// other requests run meanwhile. The decoded text must be exactly what decoding the whole body
// gives, for any bytes (invalid UTF-8 included) cut anywhere (inside multi-byte characters too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { BodyText, readBody, type Ctx } from '../src/access/request.ts';
import { prng } from './helpers/hostile-text.ts';

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

test('a large body is read in paced turns: once a turn\'s watch work is spent, the next chunk waits for another loop turn', async () => {
  const req = Object.assign(new PassThrough(), { headers: { 'content-length': String(40 * 65536) } });
  const ctx = { req, rt: { options: { maxBodyBytes: 10 * 1024 * 1024 } } } as unknown as Ctx;
  let turn = 0, running = true;
  const tick = () => { turn++; if (running) setImmediate(tick); };
  setImmediate(tick);
  const seen: number[] = [];
  // A watch whose work per chunk is over a turn's allowance (READ_TURN_MS, 1 ms).
  const watch = { from: 0, feed: () => { seen.push(turn); const t = performance.now(); while (performance.now() - t < 1.5) { /* work */ } return undefined; } };
  const body = readBody(ctx, undefined, watch);
  for (let i = 0; i < 40; i++) req.write(Buffer.alloc(65536, 0x61)); // all buffered at once: one turn could read them all
  req.end();
  const buf = await body;
  running = false;
  assert.equal(buf.length, 40 * 65536);
  assert.equal(seen.length, 40);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `chunks ${i - 1} and ${i} were watched in the same loop turn (${seen.join(',')})`);
});
