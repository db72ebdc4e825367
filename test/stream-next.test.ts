// An open upstream stream (src/gateway/stream.ts) gives the events after its head batch by batch:
// a value when they are already here (the rest of the read that brought the first content, the
// tail of a body that ended), a promise only when the upstream must send more; its failures are
// StreamBroken, as the relay (gateway/chat.ts) reads them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openUpstreamStream, StreamBroken, type OpenStream } from '../src/gateway/stream.ts';
import type { UpstreamBody } from '../src/gateway/upstream.ts';
import type { Target } from '../src/gateway/routes.ts';
import { openaiAdapter } from '../src/providers/openai.ts';

const target = { label: 'up/x', provider: {} } as unknown as Target;
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c', model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;

/** A body that hands out `reads` one per next(), then its end; drained once every read was taken and it ended. */
function bodyOf(reads: string[]): UpstreamBody & { asked: number } {
  let i = 0;
  const body = {
    asked: 0,
    get drained() { return i >= reads.length; },
    next() { body.asked++; return Promise.resolve(i < reads.length ? { value: Buffer.from(reads[i++]), done: false as const } : { value: undefined, done: true as const }); },
    return() { return Promise.resolve({ value: undefined, done: true as const }); },
    destroy() {},
    [Symbol.asyncIterator]() { return body; },
  };
  return body as unknown as UpstreamBody & { asked: number };
}

async function open(body: UpstreamBody): Promise<OpenStream> {
  const r = await openUpstreamStream(target, body, openaiAdapter.streamParser());
  assert.ok(r.ok, r.ok ? '' : r.message);
  return r.value;
}

test('the rest of the read that brought the first content, and the end of a body that ended, are values, not promises', async () => {
  const body = bodyOf([chunk({ role: 'assistant', content: 'Hel' }) + chunk({ content: 'lo' }) + chunk({}, 'stop') + 'data: [DONE]\n\n']);
  const s = await open(body);
  assert.deepEqual(s.head.filter((e) => e.type === 'text').map((e) => (e as { text: string }).text), ['Hel']);
  const rest = s.next();
  assert.ok(Array.isArray(rest), 'the rest of the first read is given at once');
  assert.deepEqual(rest.map((e) => e.type), ['text']);
  assert.equal(s.drained(), true);
  // The parser's held finish (OpenAI: given at the end, after a possible usage chunk).
  const tail = s.next();
  assert.ok(Array.isArray(tail), 'a drained body ends the stream without a promise');
  assert.deepEqual(tail.map((e) => e.type), ['finish']);
  assert.equal(s.next(), null);
  assert.equal(body.asked, 1, 'the body was read once');
});

test('a batch the upstream has yet to send is a promise; then the end', async () => {
  const s = await open(bodyOf([chunk({ role: 'assistant', content: 'a' }), chunk({ content: 'b' }), chunk({}, 'stop')]));
  const b1 = s.next();
  assert.ok(b1 instanceof Promise);
  assert.deepEqual((await b1)?.map((e) => e.type), ['text']);
  const b2 = s.next();
  assert.ok(b2 instanceof Promise);
  assert.deepEqual((await b2)?.map((e) => e.type), ['finish']);
  assert.equal(s.next(), null);
});

test('an error event after the first content, and an end without a finish, break the stream (StreamBroken)', async () => {
  const s = await open(bodyOf([chunk({ role: 'assistant', content: 'a' }) + `data: ${JSON.stringify({ error: { message: 'overloaded', type: 'server_error' } })}\n\n`]));
  assert.throws(() => s.next(), (e: unknown) => e instanceof StreamBroken && /mid-stream: overloaded/.test(e.message) && e.errorType === 'server_error');
  const cut = await open(bodyOf([chunk({ role: 'assistant', content: 'a' }), chunk({ content: 'b' })]));
  assert.deepEqual((await cut.next())?.map((e) => e.type), ['text']);
  assert.throws(() => cut.next(), (e: unknown) => e instanceof StreamBroken && /ended before the response was complete/.test(e.message));
});

test('a failing read after the head rejects with StreamBroken naming the target', async () => {
  let n = 0;
  const body = {
    drained: false,
    next() { return n++ === 0 ? Promise.resolve({ value: Buffer.from(chunk({ role: 'assistant', content: 'a' })), done: false }) : Promise.reject(Object.assign(new Error('socket hang up'), { code: 'UND_ERR_SOCKET' })); },
    destroy() {},
  } as unknown as UpstreamBody;
  const s = await open(body);
  const b = s.next();
  assert.ok(b instanceof Promise);
  await assert.rejects(b, (e: unknown) => e instanceof StreamBroken && e.message === 'upstream stream from up/x broke: UND_ERR_SOCKET');
});
