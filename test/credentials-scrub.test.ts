import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scrubber, secretForms, MIN_SCRUB_LENGTH } from '../src/credentials/scrub.ts';

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';
const OTHER = 'ghp_Zz9Yy8Xx7Ww6Vv5Uu4';
const s = new Scrubber([{ name: 'openai-key', value: SECRET }, { name: 'github', value: OTHER }, { name: 'tiny', value: 'abc' }]);

function streamAll(sc: Scrubber, chunks: string[]): { out: string; leaked: readonly string[] } {
  const st = sc.stream();
  let out = '';
  for (const c of chunks) out += st.push(c);
  out += st.end();
  return { out, leaked: st.leaked };
}

test('plain secret is replaced with a named marker and reported', () => {
  const r = s.scrub(`error: key ${SECRET} is invalid`);
  assert.equal(r.text, 'error: key [REDACTED:openai-key] is invalid');
  assert.deepEqual(r.leaked, ['openai-key']);
});

test('text without secrets comes back as the same string', () => {
  const text = 'hello world, nothing to see here sk-live- but not the key';
  const r = s.scrub(text);
  assert.equal(r.text, text);
  assert.equal(r.leaked.length, 0);
});

test('url-encoded, JSON-escaped and hex forms are scrubbed with a named marker', () => {
  const weird = 'p@ss/word+with "quotes" and spaces==';
  const sc = new Scrubber([{ name: 'w', value: weird }]);
  const cases = [
    encodeURIComponent(weird),
    encodeURIComponent(weird).toLowerCase().replace(/%[0-9a-f]{2}/g, (m) => m), // lowercase hex
    JSON.stringify({ k: weird }),
    // An upstream that dumps the key's bytes: Buffer.from(key).toString('hex'), either case, alone or inside a longer dump.
    Buffer.from(weird).toString('hex'),
    Buffer.from(weird).toString('hex').toUpperCase(),
    Buffer.from(`\x00${weird}\n`).toString('hex'),
  ];
  for (const c of cases) {
    const r = sc.scrub(`before ${c} after`);
    assert.ok(r.text.includes('[REDACTED:w]'), `not scrubbed: ${c} -> ${r.text}`);
    assert.ok(!r.text.includes(weird), c);
    assert.ok(!r.text.toLowerCase().includes(Buffer.from(weird).toString('hex').slice(0, 16)), c);
    assert.deepEqual(r.leaked, ['w']);
  }
});

test('a base64 spelling standing alone (std and url) gets the named marker', () => {
  const weird = 'p@ss/word+with "quotes" and spaces==';
  const sc = new Scrubber([{ name: 'w', value: weird }]);
  for (const c of [Buffer.from(weird).toString('base64'), Buffer.from(weird).toString('base64url')]) {
    assert.equal(sc.scrub(`b64=${c} (end)`).text, 'b64=[REDACTED:w] (end)');
    assert.equal(streamAll(sc, [`b64=${c}`, ' (end)']).out, 'b64=[REDACTED:w] (end)', 'a stream waits for the next character to tell');
    assert.equal(streamAll(sc, [`b64=${c}`]).out, 'b64=[REDACTED:w]');
  }
});

test('base64 spellings inside a longer base64 run (any alignment) are overwritten in place: the value stays valid base64, same length, the leak is named', () => {
  const weird = 'p@ss/word+with "quotes" and spaces==';
  const sc = new Scrubber([{ name: 'w', value: weird }]);
  const cases = [
    Buffer.from('x' + weird + 'y').toString('base64'),
    Buffer.from('xy' + weird).toString('base64url'),
    Buffer.from('user:' + weird).toString('base64'),
    // A key inside a PNG-like blob (what an MCP image or blob content carries).
    Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2]), Buffer.from(weird), Buffer.from([0xff, 0])]).toString('base64'),
  ];
  for (const c of cases) {
    const r = sc.scrub(`{"data":"${c}"}`);
    const out = /^\{"data":"(.*)"\}$/.exec(r.text)?.[1] ?? '';
    assert.equal(out.length, c.length, `${c} -> ${r.text}`);
    assert.notEqual(out, c);
    assert.match(out, /REDACTED/);
    assert.match(out, /^[A-Za-z0-9+/_-]*={0,2}$/);
    if (!/[-_]/.test(c)) assert.doesNotThrow(() => atob(out), out);
    assert.ok(!Buffer.from(out, 'base64').toString('latin1').includes(weird.slice(0, 8)), out);
    assert.deepEqual(r.leaked, ['w']);
  }
  // The same in a stream cut at every position, and across joined parts.
  const blob = cases[3];
  const text = `{"data":"${blob}"}`;
  const whole = sc.scrub(text).text;
  for (let i = 0; i <= text.length; i++) assert.equal(streamAll(sc, [text.slice(0, i), text.slice(i)]).out, whole, `split at ${i}`);
  for (let i = 1; i < text.length; i++) for (const j of [i + 1, i + 7, i + 40]) assert.equal(streamAll(sc, [text.slice(0, i), text.slice(i, j), text.slice(j)]).out, whole, `split at ${i}, ${j}`);
  const cut = blob.length >> 1;
  const parts = sc.scrubJoined([blob.slice(0, cut), blob.slice(cut)]);
  assert.equal(parts.texts.join(''), /"data":"(.*)"/.exec(whole)?.[1]);
  assert.deepEqual(parts.leaked, ['w']);
});

test('a hit that is the raw secret as well as a base64 spelling is marked (the raw form wins)', () => {
  const b64like = Buffer.from('inner-key-0123456789').toString('base64');
  const sc = new Scrubber([{ name: 'raw-b64', value: b64like }]);
  assert.equal(sc.scrub(`token ${b64like} end`).text, 'token [REDACTED:raw-b64] end');
});

test('secrets shorter than 8 characters are not scrubbed and are reported as skipped', () => {
  assert.equal(MIN_SCRUB_LENGTH, 8);
  assert.deepEqual(s.skipped, ['tiny']);
  assert.equal(s.scrub('abc abc').text, 'abc abc');
});

test('overlapping secrets are both fully covered', () => {
  const a = 'AAAAbbbbCCCC';
  const b = 'CCCCddddEEEE';
  const sc = new Scrubber([{ name: 'a', value: a }, { name: 'b', value: b }]);
  const r = sc.scrub('x AAAAbbbbCCCCddddEEEE y');
  assert.equal(r.text, 'x [REDACTED:a,b] y');
});

test('a secret that contains another is reported as the longer one', () => {
  const sc = new Scrubber([{ name: 'short', value: 'abcdefgh' }, { name: 'long', value: 'abcdefgh12345' }]);
  assert.equal(sc.scrub('[abcdefgh12345]').text, '[[REDACTED:long]]');
  assert.equal(sc.scrub('[abcdefgh]').text, '[[REDACTED:short]]');
});

test('stream: secret split at every position (2 chunks) never leaks and other text is preserved', () => {
  const text = `data: {"content":"the key is ${SECRET} and ${Buffer.from(OTHER).toString('base64')} ok"}\n\n`;
  const expected = s.scrub(text).text;
  assert.ok(!expected.includes(SECRET));
  for (let i = 0; i <= text.length; i++) {
    const { out, leaked } = streamAll(s, [text.slice(0, i), text.slice(i)]);
    assert.equal(out, expected, `split at ${i}`);
    assert.ok(!out.includes(SECRET));
    assert.deepEqual([...leaked].sort(), ['github', 'openai-key']);
  }
});

test('stream: one character per chunk, and three-way splits around the secret', () => {
  const text = `a ${SECRET} b ${encodeURIComponent(OTHER)} c`;
  const expected = s.scrub(text).text;
  assert.equal(streamAll(s, [...text]).out, expected);
  const at = text.indexOf(SECRET);
  for (let i = at - 2; i < at + SECRET.length + 2; i++) {
    for (let j = i; j < at + SECRET.length + 3; j++) {
      const { out } = streamAll(s, [text.slice(0, i), text.slice(i, j), text.slice(j)]);
      assert.equal(out, expected, `split at ${i},${j}`);
    }
  }
});

test('stream: a short secret that prefixes a longer one does not leak the longer one across chunks', () => {
  const sc = new Scrubber([{ name: 'short', value: 'abcdefgh' }, { name: 'long', value: 'abcdefgh12345' }]);
  const text = 'xx abcdefgh12345 yy';
  for (let i = 0; i <= text.length; i++) {
    const { out } = streamAll(sc, [text.slice(0, i), text.slice(i)]);
    assert.ok(!out.includes('12345'), `split at ${i}: ${out}`);
  }
});

test('stream holds back at most maxPatternLength-1 chars, and nothing when no secret can start', () => {
  const st = s.stream();
  const plain = 'zzzz zzzz zzzz ';
  assert.equal(st.push(plain), plain); // 'z' and ' ' start no pattern: emitted at once
  const partial = SECRET.slice(0, 10);
  const out = st.push('hi ' + partial);
  assert.equal(out, 'hi '); // the possible start of a secret is held back
  const big = 'q'.repeat(500);
  const out2 = st.push(big);
  assert.ok(out2.length >= partial.length + big.length - (s.maxPatternLength - 1));
  assert.equal(out + out2 + st.end(), 'hi ' + partial + big);
});

test('stream reports leaks through the callback', () => {
  const seen: string[] = [];
  const st = s.stream((names) => seen.push(...names));
  st.push(`x ${SECRET.slice(0, 5)}`);
  st.push(`${SECRET.slice(5)} y`);
  st.end();
  assert.deepEqual(seen, ['openai-key']);
});

test('scrubHeaders replaces values and leaves clean headers object untouched', () => {
  const clean = { 'content-type': 'application/json', 'x-n': 3 };
  assert.equal(s.scrubHeaders(clean).headers, clean);
  const r = s.scrubHeaders({ 'x-echo-auth': `Bearer ${SECRET}`, 'set-cookie': ['a=1', `t=${encodeURIComponent(OTHER)}`] });
  assert.equal(r.headers['x-echo-auth'], 'Bearer [REDACTED:openai-key]');
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 't=[REDACTED:github]']);
  assert.deepEqual([...r.leaked].sort(), ['github', 'openai-key']);
});

test('secretForms of a secret includes its raw and base64 forms', () => {
  const f = secretForms(SECRET);
  assert.ok(f.includes(SECRET));
  assert.ok(f.includes(Buffer.from(SECRET).toString('base64').replace(/=+$/, '').slice(0, -1)) || f.some((x) => Buffer.from(SECRET).toString('base64').startsWith(x)));
});

test('an empty scrubber is a no-op', () => {
  const e = new Scrubber([]);
  assert.equal(e.scrub('abc').text, 'abc');
  const st = e.stream();
  assert.equal(st.push('abc'), 'abc');
  assert.equal(st.end(), '');
});

test('stream of UTF-8 bytes split at every byte boundary (decoded with a streaming TextDecoder) never leaks', () => {
  const text = `données → ${SECRET} ✓ fin 日本語`;
  const bytes = Buffer.from(text, 'utf8');
  const expected = s.scrub(text).text;
  for (let i = 0; i <= bytes.length; i++) {
    const dec = new TextDecoder('utf-8');
    const st = s.stream();
    let out = st.push(dec.decode(bytes.subarray(0, i), { stream: true }));
    out += st.push(dec.decode(bytes.subarray(i), { stream: true }));
    out += st.push(dec.decode());
    out += st.end();
    assert.equal(out, expected, `byte split at ${i}`);
  }
});
