// Large request bodies are read in short loop turns (src/access/request.ts readBody): watched
// chunk by chunk, pausing the socket for a turn once a turn's work is spent, so other requests run
// meanwhile. (They are never decoded whole: json-turns parses their bytes; test/json-turns.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { readBody, type Ctx } from '../src/access/request.ts';

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
