// The admission connection's RESP encoder and reply parser (src/store/resp.ts), alone: the bytes
// of a command, and every kind of reply, whole, nested, nil, errors, and split across reads at
// every byte (a reply is parsed only once all of it has come, and replies come out in order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode, encodedBound, encodeInto, parse, RespError, type Reply } from '../src/store/resp.ts';

test('a command is an array of bulk strings, lengths in bytes (not UTF-16 units), numbers written in decimal', () => {
  assert.equal(encode('PING', []), '*1\r\n$4\r\nPING\r\n');
  assert.equal(encode('EVALSHA', ['abc', 2, 'k1', 'k2', -1, 0.25, '']), '*8\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$2\r\n-1\r\n$4\r\n0.25\r\n$0\r\n\r\n');
  // 'é' is 2 bytes, '€' 3, an emoji 4 (2 UTF-16 units): a length in units would desync the stream.
  assert.equal(encode('SET', ['k', 'é€😀']), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\né€😀\r\n');
  // Values holding CRLF go as they are (bulk strings are length-prefixed).
  assert.equal(encode('SET', ['k', 'a\r\nb']), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n');
});

const B = (s: string): Buffer => Buffer.from(s, 'utf8');

test('encodeInto writes straight into a buffer at an offset: a length whose bytes need one digit more than its UTF-16 units, integers and floats, within encodedBound', () => {
  const expect = (name: string, args: Array<string | number>): string =>
    `*${args.length + 1}\r\n` + [name, ...args].map((a) => { const v = String(a); return `$${Buffer.byteLength(v)}\r\n${v}\r\n`; }).join('');
  const cases: Array<[string, Array<string | number>]> = [
    // 5 units, 10 bytes; 9 units, 27 bytes; 99 units, 198 bytes: the value moves up one byte.
    ['SET', ['é'.repeat(5), '€'.repeat(9), 'é'.repeat(99)]],
    // Lone surrogates are written as U+FFFD (3 bytes), as Buffer.byteLength counts them.
    ['SET', ['\ud800', 'a\udc00b', '😀'.repeat(3)]],
    ['EVALSHA', [0, -0, 9, 10, -10, 99, 100, 123456789, -987654321, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21, -1.2345678901234567e-300, 0.0000102, 3.9e-5, 1000000, NaN, Infinity]],
    ['X', ['', 'x'.repeat(9), 'x'.repeat(10), 'x'.repeat(1000)]],
  ];
  for (const [name, args] of cases) {
    const bound = encodedBound(name, args);
    // Garbage around it: only [at, end) is written, and end stays within the bound.
    const buf = Buffer.alloc(7 + bound + 5, 0xee);
    const end = encodeInto(buf, 7, name, args);
    assert.deepEqual(buf.subarray(7, end), B(expect(name, args)), name);
    assert.ok(end - 7 <= bound, `${end - 7} bytes written, bound ${bound}`);
    assert.ok(buf.subarray(0, 7).every((x) => x === 0xee) && buf.subarray(end).every((x) => x === 0xee), 'nothing written outside');
    assert.deepEqual(B(encode(name, args)), B(expect(name, args)));
  }
  // Several commands one after another in one buffer parse back as they were.
  const buf = Buffer.alloc(4096);
  let at = 0;
  for (const [name, args] of cases) at = encodeInto(buf, at, name, args);
  assert.deepEqual(buf.subarray(0, at), B(cases.map(([n, a]) => expect(n, a)).join('')));
});


function all(s: string): { replies: Reply[]; at: number } {
  const replies: Reply[] = [];
  const buf = B(s);
  return { replies, at: parse(buf, 0, replies) };
}

test('every reply kind: simple string, error, integer, bulk, nil bulk, empty bulk, nil array, nested arrays with nils and errors', () => {
  const text = '+OK\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n:42\r\n:-7\r\n$5\r\nhello\r\n$-1\r\n$0\r\n\r\n*-1\r\n*0\r\n'
    + '*3\r\n*1\r\n$2\r\nok\r\n*2\r\n$4\r\n0.25\r\n$0\r\n\r\n$-1\r\n'
    + '*2\r\n-ERR inner\r\n*2\r\n:1\r\n*1\r\n$5\r\né€\r\n';
  const { replies, at } = all(text);
  assert.equal(at, B(text).length);
  assert.equal(replies.length, 11);
  assert.equal(replies[0], 'OK');
  assert.ok(replies[1] instanceof RespError && replies[1] instanceof Error);
  assert.equal((replies[1] as RespError).message, 'NOSCRIPT No matching script. Please use EVAL.');
  assert.deepEqual(replies.slice(2, 9), [42, -7, 'hello', null, '', null, []]);
  assert.deepEqual(replies[9], [['ok'], ['0.25', ''], null]);
  const mixed = replies[10] as Reply[];
  assert.ok(mixed[0] instanceof RespError && mixed[0].message === 'ERR inner');
  assert.deepEqual(mixed[1], [1, ['é€']]);
});

test('a reply split across reads at any byte is parsed once it is whole, the replies before it are not held back, and none comes twice', () => {
  const text = '*3\r\n*1\r\n$2\r\nok\r\n*2\r\n$4\r\n0.25\r\n$0\r\n\r\n$-1\r\n+OK\r\n:12345\r\n$7\r\né€ab\r\n-ERR x\r\n*2\r\n*-1\r\n$-1\r\n';
  const buf = B(text);
  const whole: Reply[] = [];
  parse(buf, 0, whole);
  assert.equal(whole.length, 6);
  for (let cut = 0; cut <= buf.length; cut++) {
    // Read 1: the bytes up to `cut`; read 2: the rest appended to what read 1 left (as the connection does).
    const got: Reply[] = [];
    const first = buf.subarray(0, cut);
    const at = parse(first, 0, got);
    const before = got.length;
    assert.ok(at <= cut);
    // Whatever was parsed from the first part is exactly the whole replies that fit in it.
    assert.deepEqual(got, whole.slice(0, before), `cut at ${cut}`);
    const rest = Buffer.concat([first.subarray(at), buf.subarray(cut)]);
    const end = parse(rest, 0, got);
    assert.equal(end, rest.length, `cut at ${cut}: all parsed`);
    assert.deepEqual(got, whole, `cut at ${cut}`);
  }
  // Byte by byte, as a slow socket would deliver it.
  const got: Reply[] = [];
  let pending = Buffer.alloc(0);
  for (let i = 0; i < buf.length; i++) {
    pending = Buffer.concat([pending, buf.subarray(i, i + 1)]);
    pending = pending.subarray(parse(pending, 0, got));
  }
  assert.equal(pending.length, 0);
  assert.deepEqual(got, whole);
});

test('an incomplete reply leaves the position at its start; bytes that are not RESP throw (the connection is reset)', () => {
  for (const partial of ['', '+OK', '+OK\r', '$5\r\nhel', '$5\r\nhello\r', '*2\r\n:1\r\n', '*2\r\n$3\r\nab', ':1']) {
    const out: Reply[] = [];
    assert.equal(parse(B(partial), 0, out), 0, JSON.stringify(partial));
    assert.equal(out.length, 0);
  }
  const out: Reply[] = [];
  assert.equal(parse(B('+A\r\n$3\r\nab'), 0, out), 4);
  assert.deepEqual(out, ['A']);
  assert.throws(() => parse(B('HTTP/1.1 400\r\n'), 0, []), /not a RESP reply/);
});
