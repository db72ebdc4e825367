// bench/lib/http-once.ts times a stream's first content: the first chunk with real text. An A2A
// stream's text is in its events' text parts (the artifact), not in its first event (the task):
// `cpu-per-request --kind a2a-stream` printed "first content p50 NaN us" before it knew them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';
import { sendOnce, CONTENT_RE } from '../bench/lib/http-once.ts';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

const server = createServer(async (req, res) => {
  if (req.url === '/refused') {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'store_unavailable', message: 'x'.repeat(400) } }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: {"jsonrpc":"2.0","id":1,"result":{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}}\n\n');
  await pause(150);
  // The artifact's text part, its key and value in two chunks (spaces as a callee's serializer may write them).
  res.write('data: {"jsonrpc":"2.0","id":1,"result":{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":[{"text" :');
  await pause(20);
  res.end(' "score account 42"}]}}}}\n\n');
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
after(async () => { await pool.close(); server.close(); });

test('an A2A stream\'s first content is its first text part (the artifact event), not its first event', async () => {
  const t = await sendOnce(pool, { path: '/a2a/echo', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') }, true);
  assert.equal(t.status, 200);
  assert.ok(Number.isFinite(t.firstContentMs), `first content ${t.firstContentMs}`);
  assert.ok(t.firstContentMs - t.firstChunkMs >= 150, `first chunk ${t.firstChunkMs} ms, first content ${t.firstContentMs} ms`);
});

test('what counts as content: a non-empty content, delta or text string; an empty one or an object does not', () => {
  for (const s of ['{"delta":{"content":"Hi"}}', '{"type":"response.output_text.delta","delta":"Hi"}', '{"delta":{"type":"text_delta","text":"Hi"}}', '"parts":[{"text": "x"}]']) assert.ok(CONTENT_RE.test(s), s);
  for (const s of ['{"delta":{"role":"assistant","content":""}}', '{"content_block":{"type":"text","text":""}}', '{"text":{"format":{"type":"text"}}}', '{"task":{"id":"t1","status":{"state":"TASK_STATE_WORKING"}}}']) assert.ok(!CONTENT_RE.test(s), s);
});

test('a refusal keeps the start of its body (cpu-per-request says what a 503 was), an answer none', async () => {
  const spec = { headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') };
  const t = await sendOnce(pool, { ...spec, path: '/refused' }, false);
  assert.equal(t.status, 503);
  assert.match(t.error ?? '', /^\{"error":\{"code":"store_unavailable"/);
  assert.equal(t.error?.length, 300);
  assert.equal((await sendOnce(pool, { ...spec, path: '/a2a/echo' }, false)).error, undefined);
});
