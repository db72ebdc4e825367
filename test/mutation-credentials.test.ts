// Credential scrubbing as the agent sees it (src/credentials/scrub.ts), written for the mutants
// `npm run mutate -- credentials` found alive: every textual form of a secret is redacted whole,
// redaction keeps JSON valid and headers complete, streams neither delay harmless text nor miss
// or invent leak reports. Expected texts are computed here, not by the scrubber.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Scrubber } from '../src/credentials/scrub.ts';

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';
// Quotes, slash, @, %, +, spaces and a backslash: every encoding differs from the raw text.
const WEIRD = 'p@ss/wo rd+"q" 50%\\x';

function streamAll(sc: Scrubber, chunks: string[]): { out: string; leaked: readonly string[]; calls: string[][] } {
  const calls: string[][] = [];
  const st = sc.stream((names) => calls.push([...names]));
  let out = '';
  for (const c of chunks) out += st.push(c);
  out += st.end();
  return { out, leaked: st.leaked, calls };
}

test('a secret full of special characters is redacted raw, URL-encoded, form-encoded and JSON-escaped', () => {
  const sc = new Scrubber([{ name: 'w', value: WEIRD }]);
  const forms = {
    raw: WEIRD,
    url: encodeURIComponent(WEIRD),
    form: new URLSearchParams({ p: WEIRD }).toString().slice(2),
    json: JSON.stringify(WEIRD).slice(1, -1),
  };
  assert.notEqual(forms.form, forms.url, 'form encoding writes spaces as +');
  for (const [kind, f] of Object.entries(forms)) {
    const r = sc.scrub(`before ${f} after`);
    assert.equal(r.text, 'before [REDACTED:w] after', kind);
    assert.deepEqual(r.leaked, ['w'], kind);
  }
});

test('a JSON body stays valid JSON after redaction, with the marker as the string value', () => {
  const sc = new Scrubber([{ name: 'w', value: WEIRD }]);
  const body = JSON.stringify({ token: WEIRD, note: 'ok' });
  const r = sc.scrub(body);
  assert.deepEqual(JSON.parse(r.text), { token: '[REDACTED:w]', note: 'ok' });
});

/** Indexes of the base64 characters whose 6 bits all come from bytes [from, to). */
function charsOnlyFrom(from: number, to: number, total: number): number[] {
  const out: number[] = [];
  for (let i = 0; i * 6 < total * 8; i++) if (i * 6 >= from * 8 && i * 6 + 6 <= to * 8) out.push(i);
  return out;
}

test('inside a longer base64 or base64url value, at any byte offset, every character that only the secret decides is overwritten with same-length filler (the value stays base64)', () => {
  // Bytes chosen so that the encodings contain both "+" and "/" (and so "-" and "_" in base64url).
  const secret = Buffer.from([0xfb, 0xff, 0xbf, 0xfe, 0x3e, 0xfb, 0xef, 0xbe, 0xff, 0xfb, 0xef, 0x3f]).toString('latin1');
  const bytes = Buffer.from(secret, 'utf8');
  const sc = new Scrubber([{ name: 's', value: secret }]);
  for (const enc of ['base64', 'base64url'] as const) {
    for (let pre = 0; pre < 3; pre++) {
      const whole = Buffer.concat([Buffer.from('P'.repeat(pre)), bytes, Buffer.from('tail')]);
      const text = whole.toString(enc);
      const secretChars = charsOnlyFrom(pre, pre + bytes.length, whole.length);
      const r = sc.scrub(text);
      assert.deepEqual(r.leaked, ['s'], `${enc} at offset ${pre}: ${text}`);
      const n = secretChars.at(-1)! + 1 - secretChars[0];
      const expected = text.slice(0, secretChars[0]) + 'REDACTED'.repeat(10).slice(0, n) + text.slice(secretChars.at(-1)! + 1);
      assert.equal(r.text, expected, `${enc} at offset ${pre}`);
    }
  }
});

test('strings shorter than 8 characters are never redacted, also when given as extra forms of a secret', () => {
  const sc = new Scrubber([{ name: 'k', value: 'long-enough-secret', extra: ['short', 'also-long-enough'] }]);
  assert.equal(sc.scrub('a short note').text, 'a short note');
  assert.equal(sc.scrub('x also-long-enough y').text, 'x [REDACTED:k] y');
});

test('two different secrets back to back get a marker each; a value two credentials share is named after the first', () => {
  const sc = new Scrubber([{ name: 'a', value: 'AAAAAAAAAA' }, { name: 'b', value: 'BBBBBBBBBB' }, { name: 'c', value: 'AAAAAAAAAA' }]);
  assert.equal(sc.scrub('[AAAAAAAAAABBBBBBBBBB]').text, '[[REDACTED:a][REDACTED:b]]');
});

test('header redaction keeps every other header, and a scrubber without secrets returns the headers as they are', () => {
  const sc = new Scrubber([{ name: 'k', value: SECRET }]);
  const r = sc.scrubHeaders({ 'content-type': 'text/plain', 'x-n': 3, 'set-cookie': ['a=1', `t=${SECRET}`] });
  assert.deepEqual(r.headers, { 'content-type': 'text/plain', 'x-n': 3, 'set-cookie': ['a=1', 't=[REDACTED:k]'] });
  assert.deepEqual(r.leaked, ['k']);
  const h = { 'x-a': SECRET };
  const none = new Scrubber([]).scrubHeaders(h);
  assert.equal(none.headers, h);
  assert.deepEqual(none.leaked, []);
});

test('stream: text that only shares the first characters of a secret is passed on at once', () => {
  const sc = new Scrubber([{ name: 'k', value: SECRET }]);
  const st = sc.stream();
  // "sk-li" starts like the secret but "sk-lint" cannot become it: nothing needs holding back.
  assert.equal(st.push('run sk-lint now'), 'run sk-lint now');
  assert.equal(st.push(`key ${SECRET} then sk-`), 'key [REDACTED:k] then ');
  assert.equal(st.push('lint'), 'sk-lint');
  assert.equal(st.end(), '');
});

test('stream: a leak is reported once it is seen, also when the secret completes only at the end; a clean stream reports nothing', () => {
  const sc = new Scrubber([{ name: 'short', value: 'abcdefgh' }, { name: 'long', value: 'abcdefgh12345' }]);
  // "abcdefgh" may still grow into the longer secret, so it is held until the stream ends.
  const tail = streamAll(sc, ['x abc', 'defgh']);
  assert.equal(tail.out, 'x [REDACTED:short]');
  assert.deepEqual(tail.leaked, ['short']);
  assert.deepEqual(tail.calls, [['short']]);
  const clean = streamAll(sc, ['nothing ', 'to see ', 'here abc', 'd']);
  assert.equal(clean.out, 'nothing to see here abcd');
  assert.deepEqual(clean.calls, [], 'no leak report without a leak');
  assert.deepEqual(clean.leaked, []);
});

test("a secret as other serializers escape it inside JSON (PHP, .NET, Go, Python) or escaped twice is redacted", () => {
  const secret = 'k/é+<&>\'`"\\ zz';
  const sc = new Scrubber([{ name: 'w', value: secret }]);
  const u = (c: string, upper: boolean) => { const h = c.charCodeAt(0).toString(16).padStart(4, '0'); return `\\u${upper ? h.toUpperCase() : h}`; };
  const std = JSON.stringify(secret).slice(1, -1);
  const forms: Record<string, string> = {
    php: std.replaceAll('/', '\\/'),
    dotnet: std.replace(/[+<>&'`é]/g, (c) => u(c, true)),
    go: std.replace(/[<>&]/g, (c) => u(c, false)),
    python: std.replace(/é/g, (c) => u(c, false)),
  };
  for (const [who, f] of Object.entries(forms)) {
    assert.notEqual(f, std, who);
    assert.equal(JSON.parse(`"${f}"`), secret, `${who} spells the secret`);
    const r = sc.scrub(`{"v":"${f}"}`);
    assert.equal(r.text, '{"v":"[REDACTED:w]"}', who);
  }
  // JSON text inside a JSON string: two parses give the secret back.
  const twice = JSON.stringify(JSON.stringify({ v: secret }));
  assert.equal(JSON.parse(JSON.parse(twice)).v, secret);
  const r = sc.scrub(twice);
  assert.deepEqual(r.leaked, ['w']);
  assert.ok(!JSON.parse(JSON.parse(r.text)).v.includes('zz'), r.text);
});

test('texts an agent joins back together (content parts): a secret split across them is redacted, its marker where it starts', () => {
  const sc = new Scrubber([{ name: 'k', value: SECRET }]);
  const two = sc.scrubJoined(['hello ' + SECRET.slice(0, 9), SECRET.slice(9) + ' bye', 'clean']);
  assert.deepEqual(two.texts, ['hello [REDACTED:k]', ' bye', 'clean']);
  assert.deepEqual(two.leaked, ['k']);
  const three = sc.scrubJoined(['a ' + SECRET.slice(0, 4), SECRET.slice(4, 20), SECRET.slice(20) + ' z ' + SECRET]);
  assert.deepEqual(three.texts, ['a [REDACTED:k]', '', ' z [REDACTED:k]']);
  assert.equal(three.texts.join('').includes(SECRET.slice(4, 20)), false);
  const clean = ['nothing', ' here'];
  const c = sc.scrubJoined(clean);
  assert.equal(c.texts, clean, 'the same array when nothing leaked');
  assert.deepEqual(c.leaked, []);
  assert.equal(new Scrubber([]).scrubJoined(clean).texts, clean);
  assert.deepEqual(sc.scrubJoined([]).texts, []);
});
