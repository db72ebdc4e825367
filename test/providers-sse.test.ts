import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser, sseFrame } from '../src/providers/sse.ts';
import type { SseRecord } from '../src/providers/sse.ts';

function feed(chunks: string[]): SseRecord[] {
  const p = new SseParser();
  const out: SseRecord[] = [];
  for (const c of chunks) out.push(...p.push(c));
  out.push(...p.end());
  return out;
}

function everySplit(s: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i <= s.length; i++) out.push([s.slice(0, i), s.slice(i)]);
  return out;
}

test('sse: LF, CRLF and CR line endings give the same records', () => {
  const lf = 'event: a\ndata: one\n\ndata: two\n\n';
  const want = [{ event: 'a', data: 'one' }, { data: 'two' }];
  assert.deepEqual(feed([lf]), want);
  assert.deepEqual(feed([lf.replace(/\n/g, '\r\n')]), want);
  assert.deepEqual(feed([lf.replace(/\n/g, '\r')]), want);
});

test('sse: CRLF split between CR and LF does not create an extra blank line', () => {
  const s = 'data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n';
  for (const [x, y] of everySplit(s)) {
    assert.deepEqual(feed([x, y]), [{ data: 'a\nb' }, { data: 'c' }], `split at ${x.length}`);
  }
});

test('sse: multi-line data, comments, no-space values, unknown fields, id/retry', () => {
  const s = ': keep-alive\n\nid: 7\nretry: 100\nfoo: bar\nevent:delta\ndata:{"a":\ndata: 1}\n\n:comment\ndata\n\n';
  assert.deepEqual(feed([s]), [{ event: 'delta', data: '{"a":\n1}' }, { data: '' }]);
});

test('sse: comment-only and empty records dispatch nothing; event does not leak to next record', () => {
  assert.deepEqual(feed([': ping\n\n\n\nevent: x\n\ndata: y\n\n']), [{ data: 'y' }]);
});

test('sse: a final record without its blank line is delivered at end()', () => {
  assert.deepEqual(feed(['data: last']), [{ data: 'last' }]);
  assert.deepEqual(feed(['data: last\r']), [{ data: 'last' }]);
});

test('sse: byte-by-byte feeding equals whole feeding', () => {
  const s = 'event: message_start\r\ndata: {"x":"a:b"}\r\n\r\n: c\n\ndata: [DONE]\n\n';
  assert.deepEqual(feed(Array.from(s)), feed([s]));
  assert.deepEqual(feed([s]), [{ event: 'message_start', data: '{"x":"a:b"}' }, { data: '[DONE]' }]);
});

test('sse: only one leading space of a value is removed', () => {
  assert.deepEqual(feed(['data:  two spaces\n\n']), [{ data: ' two spaces' }]);
});

test('sseFrame: encodes event and splits multi-line data; parser reads it back', () => {
  assert.equal(sseFrame('{"a":1}'), 'data: {"a":1}\n\n');
  assert.equal(sseFrame('x', 'ping'), 'event: ping\ndata: x\n\n');
  assert.equal(sseFrame('a\nb'), 'data: a\ndata: b\n\n');
  assert.deepEqual(feed([sseFrame('a\r\nb', 'e')]), [{ event: 'e', data: 'a\nb' }]);
});

test('sse: a large chunk with many lines is parsed in linear time', () => {
  const one = `data: ${JSON.stringify({ choices: [{ delta: { content: 'x'.repeat(50) } }] })}\n\n`;
  const big = one.repeat(20000);
  const t0 = performance.now();
  const recs = feed([big]);
  const ms = performance.now() - t0;
  assert.equal(recs.length, 20000);
  assert.ok(ms < 500, `took ${ms} ms`);
});

test('sse: chunks that complete no record return one shared, frozen empty result (no garbage per chunk)', () => {
  const p = new SseParser();
  const a = p.push('data: {"a"');
  const b = p.push(':1}\n');
  const c = p.push(': keep-alive\n');
  assert.equal(a.length, 0);
  assert.equal(a, b);
  assert.equal(b, c);
  assert.ok(Object.isFrozen(a));
  assert.deepEqual(p.push('\n'), [{ data: '{"a":1}' }]);
  assert.equal(p.end(), a);
});

test('sse: only the exact field names data and event count (compared in place, not sliced)', () => {
  const s = 'dataX: no\ndat: no\nevents: no\nEvent: no\nDATA: no\nevent: e\ndata: yes\n\nevent\ndata\n\n';
  assert.deepEqual(feed([s]), [{ event: 'e', data: 'yes' }, { event: '', data: '' }]);
  for (const [x, y] of everySplit(s)) assert.deepEqual(feed([x, y]), [{ event: 'e', data: 'yes' }, { event: '', data: '' }], `split at ${x.length}`);
});
