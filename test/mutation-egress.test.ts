// The egress door (src/access/egress.ts) as an agent sees it, written for the mutants
// `npm run mutate -- access -- --mutate src/access/egress.ts` found alive: every header API, status
// message, body, chunk, encoding and callback form a handler (or a library handed the response)
// may use. The server here is built the way src/server/http.ts builds aam's (EgressResponse as the
// response class, open() before any handler), with the real Scrubber; the source stands for
// Runtime.egress (the vault's current scrubber, and leak evidence) so a test can add or drop a
// credential mid-request. It imports no gateway, so a mutant it kills costs about a second
// (architecture-trust and leak-hunt check the same door through the whole gateway).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, IncomingMessage, type Server } from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { ServerResponse } from '../src/lib/node-http.ts';
import { EgressResponse, scrubAcross, holdsSecret, clipAfterScrub, type ScrubSource } from '../src/access/egress.ts';
import { Scrubber } from '../src/credentials/scrub.ts';

const SECRET = 'sk-live-Egr3ss9f8e7d6c5b4a3Z';
const NAME = 'llm-key';
const MARK = `[REDACTED:${NAME}]`;
/** A prefix of the secret: a stream holds it back until it knows the secret does not follow. */
const HALF = SECRET.slice(0, 10);
const REST = SECRET.slice(10);

/** The vault as the door sees it (Runtime.egress): the same scrubber until a credential changes. */
class Vault implements ScrubSource {
  #sc: Scrubber;
  readonly leaks: string[][] = [];
  constructor(secrets: string[]) { this.#sc = Vault.#build(secrets); }
  static #build(secrets: string[]): Scrubber { return new Scrubber(secrets.map((value) => ({ name: NAME, value }))); }
  /** An OAuth token fetched, or a credential deleted, while a request runs. */
  set(secrets: string[]): void { this.#sc = Vault.#build(secrets); }
  scrubber(): Scrubber { return this.#sc; }
  leaked(names: readonly string[]): void { this.leaks.push([...names]); }
}

type Handler = (res: EgressResponse, vault: Vault) => void | Promise<void>;
interface Seen { status: number; statusText: string; headers: Headers; body: Buffer; text: string; thrown: unknown[] }

let server: Server;
let url: string;
let current: { vault: Vault; handler: Handler; thrown: unknown[] };

before(async () => {
  server = createServer({ ServerResponse: EgressResponse }, (_req, res) => {
    const door = res as EgressResponse;
    door.open(current.vault);
    const c = current;
    Promise.resolve().then(() => c.handler(door, c.vault)).catch((e: unknown) => {
      c.thrown.push(e);
      if (!door.writableEnded) door.destroy();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => { server.closeAllConnections(); await new Promise((r) => server.close(r)); });

/** One request; what the agent receives (a response that never ends fails after 15 s, not the 60 s test timeout). */
async function through(vault: Vault, handler: Handler): Promise<Seen> {
  current = { vault, handler, thrown: [] };
  const r = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  const body = Buffer.from(await r.arrayBuffer());
  return { status: r.status, statusText: r.statusText, headers: r.headers, body, text: body.toString('utf8'), thrown: current.thrown };
}

const headerText = (h: Headers): string => JSON.stringify([...h]);

/** Resolves when n callbacks have run; rejects after a deadline (a callback that never runs is a hung write). */
function callbacks(n: number): { cb: (i: number) => () => void; all: Promise<number[]> } {
  const got: number[] = [];
  let done!: (v: number[]) => void;
  const all = new Promise<number[]>((resolve, reject) => {
    done = resolve;
    setTimeout(() => reject(new Error(`callbacks run: ${JSON.stringify(got)} of ${n}`)), 10_000).unref();
  });
  return { cb: (i) => () => { got.push(i); if (got.length === n) done(got.sort()); }, all };
}

test('with no credential active the door passes writes through as written: content-length framing, raw header arrays, encodings', async () => {
  const none = (): Vault => new Vault([]);
  for (const [how, handler] of [
    // Two writes: node would compute the length of a body given whole to end() itself.
    ['setHeader', (res: EgressResponse) => { res.setHeader('Content-Length', 5); res.write('hel'); res.end('lo'); }],
    ['appendHeader', (res: EgressResponse) => { res.appendHeader('Content-Length', '5'); res.write('hel'); res.end('lo'); }],
    ['writeHead raw array', (res: EgressResponse) => { res.writeHead(200, ['Content-Length', '5', 'X-B', 'ok']); res.write('hel'); res.end('lo'); }],
    ['send', (res: EgressResponse) => { res.send(200, 'hello', { 'content-type': 'text/plain' }); }],
  ] as const) {
    const r = await through(none(), handler);
    assert.equal(r.text, 'hello', how);
    assert.equal(r.headers.get('content-length'), '5', `${how}: the handler's content-length is kept (no chunking)`);
    assert.equal(r.headers.get('transfer-encoding'), null, how);
  }
  const cbs = callbacks(2);
  const r = await through(none(), (res) => {
    res.write('6865', 'hex', cbs.cb(1));
    res.write('6c6c', 'hex');
    res.write('ÿ', 'latin1');
    res.end('6f', 'hex', cbs.cb(2));
  });
  assert.deepEqual([...r.body], [...Buffer.from('hell'), 0xff, ...Buffer.from('o')], 'hex and latin1 chunks are decoded, also when a callback is given');
  assert.deepEqual(await cbs.all, [1, 2]);
});

test('a credential fetched while the request runs (an OAuth token) is scrubbed from every write that follows', async () => {
  const styles: Array<[string, Handler]> = [
    ['send', (res, v) => { v.set([SECRET]); res.send(200, `a ${SECRET}`, { 'x-t': SECRET }); }],
    ['writeHead', (res, v) => { v.set([SECRET]); res.writeHead(200, { 'x-t': SECRET }); res.end(`a ${SECRET}`); }],
    ['write', (res, v) => { v.set([SECRET]); res.write(`a ${SECRET}`); res.end(); }],
    ['end', (res, v) => { v.set([SECRET]); res.end(`a ${SECRET}`); }],
  ];
  for (const [how, handler] of styles) {
    const r = await through(new Vault([]), handler);
    assert.deepEqual(r.thrown, [], how);
    assert.equal(r.text, `a ${MARK}`, how);
    assert.ok(!headerText(r.headers).includes(SECRET), `${how}: headers leaked`);
  }
});

test('a credential removed mid-stream loses none of the text the stream was holding back', async () => {
  const r = await through(new Vault([SECRET]), (res, v) => {
    res.write(`hello ${HALF}`);
    v.set([]);
    res.write(' world');
    res.end();
  });
  assert.equal(r.text, `hello ${HALF} world`);
});

test('every header API is scrubbed: setHeader, appendHeader, writeHead (object, raw array, status message); numbers and lists kept', async () => {
  const body = `raw ${SECRET}`;
  const n = Buffer.byteLength(body);
  const set = await through(new Vault([SECRET]), (res) => {
    res.setHeader('X-Set', `k=${SECRET}`);
    res.setHeader('X-Num', 7);
    res.setHeader('Set-Cookie', ['a=1', `b=${SECRET}`]);
    res.appendHeader('X-App', `v ${SECRET}`);
    res.appendHeader('X-App', ['w', SECRET]);
    res.setHeader('Content-Length', n);
    res.end(body);
  });
  assert.equal(set.text, `raw ${MARK}`, 'the handler\'s content-length (of the raw body) is dropped, so the scrubbed body arrives whole');
  assert.equal(set.headers.get('x-set'), `k=${MARK}`);
  assert.equal(set.headers.get('x-num'), '7');
  assert.deepEqual(set.headers.getSetCookie(), ['a=1', `b=${MARK}`]);
  assert.equal(set.headers.get('x-app'), `v ${MARK}, w, ${MARK}`);

  const appended = await through(new Vault([SECRET]), (res) => { res.appendHeader('Content-Length', String(n)); res.end(body); });
  assert.equal(appended.text, `raw ${MARK}`);

  const obj = await through(new Vault([SECRET]), (res) => {
    res.writeHead(200, `Fine ${SECRET}`, { 'X-Echo': SECRET, 'Content-Length': String(n), 'X-Num': 3, 'X-List': ['a', SECRET], 'X-Undef': undefined });
    res.end(body);
  });
  assert.equal(obj.statusText, `Fine ${MARK}`, 'the status message is a header line too');
  assert.equal(obj.text, `raw ${MARK}`);
  assert.equal(obj.headers.get('x-echo'), MARK);
  assert.equal(obj.headers.get('x-num'), '3');
  assert.equal(obj.headers.get('x-list'), `a, ${MARK}`);
  assert.equal(obj.headers.has('x-undef'), false);

  const raw = await through(new Vault([SECRET]), (res) => { res.writeHead(201, ['X-Echo', SECRET, 'Content-Length', String(n), 'X-B', 'ok']); res.end(body); });
  assert.equal(raw.status, 201);
  assert.equal(raw.text, `raw ${MARK}`);
  assert.equal(raw.headers.get('x-echo'), MARK);
  assert.equal(raw.headers.get('x-b'), 'ok');

  const bare = await through(new Vault([SECRET]), (res) => { res.writeHead(202); res.end(body); });
  assert.equal(bare.status, 202);
  assert.equal(bare.text, `raw ${MARK}`);

  const noHeaders = await through(new Vault([SECRET]), (res) => { res.writeHead(203, `Status ${SECRET}`); res.end('x'); });
  assert.equal(noHeaders.statusText, `Status ${MARK}`);
  for (const r of [set, appended, obj, raw, bare, noHeaders]) {
    assert.deepEqual(r.thrown, []);
    assert.ok(!headerText(r.headers).includes(SECRET) && !r.statusText.includes(SECRET) && !r.text.includes(SECRET));
  }
});

test('a credential in a header alone is leak evidence; clean headers and bodies report nothing', async () => {
  const hit = new Vault([SECRET]);
  await through(hit, (res) => { res.setHeader('x-leak', SECRET); res.setHeader('content-type', 'text/plain'); res.end('clean'); });
  assert.deepEqual(hit.leaks, [[NAME]]);
  const clean = new Vault([SECRET]);
  await through(clean, (res) => { res.setHeader('x-a', 'fine'); res.writeHead(200, 'OK', { 'x-b': 'fine' }); res.write('clean'); res.end('text'); });
  assert.deepEqual(clean.leaks, []);
  const streamed = new Vault([SECRET]);
  await through(streamed, (res) => { res.write(`a ${HALF}`); res.end(`${REST} b`); });
  assert.deepEqual(streamed.leaks, [[NAME]], 'a secret split across writes is reported once');
});

test('send: content-length is the scrubbed body\'s, also after earlier setHeader calls; undefined header values are left out', async () => {
  const r = await through(new Vault([SECRET]), (res) => {
    res.setHeader('x-client-request-id', 'abc');
    res.send(200, `body ${SECRET}`, { 'content-type': 'text/plain', 'x-u': undefined, 'x-echo': SECRET });
  });
  assert.equal(r.text, `body ${MARK}`);
  assert.equal(r.headers.get('content-length'), String(Buffer.byteLength(`body ${MARK}`)));
  assert.equal(r.headers.get('transfer-encoding'), null);
  assert.equal(r.headers.get('content-type'), 'text/plain');
  assert.equal(r.headers.get('x-client-request-id'), 'abc');
  assert.equal(r.headers.get('x-echo'), MARK);
  assert.equal(r.headers.has('x-u'), false);
});

test('send after a stream has begun (an error mid-stream) ends the response instead of throwing', async () => {
  for (const secrets of [[SECRET], []]) {
    const r = await through(new Vault(secrets), (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part');
      res.send(500, `error ${SECRET}`, {});
    });
    assert.deepEqual(r.thrown, []);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'part');
  }
});

test('write and end with a credential active: callbacks run, encodings decode, binary stays binary, held-back text is flushed as written', async () => {
  const cbs = callbacks(5);
  const text = await through(new Vault([SECRET]), (res) => {
    res.write('a-', cbs.cb(1));
    res.write('622d', 'hex', cbs.cb(2));
    res.write('c-', 'utf8', cbs.cb(3));
    res.write('d-', 'utf-8');
    res.write(`${SECRET}-`);
    res.end('e', cbs.cb(4));
  });
  assert.equal(text.text, `a-b-c-d-${MARK}-e`);
  const endCb = await through(new Vault([SECRET]), (res) => { res.write('x'); res.end(cbs.cb(5)); });
  assert.equal(endCb.text, 'x');
  assert.deepEqual(await cbs.all, [1, 2, 3, 4, 5]);
  const endEnc = callbacks(1);
  const hex = await through(new Vault([SECRET]), (res) => { res.end(Buffer.from(`z ${SECRET}`).toString('hex'), 'hex', endEnc.cb(1)); });
  assert.equal(hex.text, `z ${MARK}`, 'a hex chunk is decoded before it is scrubbed');
  assert.deepEqual(await endEnc.all, [1]);

  const bytes = Buffer.concat([Buffer.from([0, 0xff, 0xfe]), Buffer.from(SECRET), Buffer.from([0x80])]);
  const backing = new Uint8Array(3 + bytes.length);
  backing.set(Buffer.concat([Buffer.from('pad'), bytes]));
  const view = new Uint8Array(backing.buffer, 3, bytes.length);
  const binary = await through(new Vault([SECRET]), (res) => { res.write('ÿ', 'latin1'); res.end(view); });
  assert.deepEqual([...binary.body], [0xff, 0, 0xff, 0xfe, ...Buffer.from(MARK), 0x80], 'latin1 and Uint8Array bytes go out as bytes, the secret among them redacted');

  const heldBinary = await through(new Vault([SECRET]), (res) => { res.write(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(HALF)])); res.end(); });
  assert.deepEqual([...heldBinary.body], [0xff, 0xfe, ...Buffer.from(HALF)], 'a held-back tail after binary writes is flushed as bytes');
  const heldInEnd = await through(new Vault([SECRET]), (res) => { res.end(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(HALF)])); });
  assert.deepEqual([...heldInEnd.body], [0xff, 0xfe, ...Buffer.from(HALF)], 'a binary last chunk with a held-back tail stays bytes');
  const heldText = await through(new Vault([SECRET]), (res) => { res.write(`x ${HALF}`); res.end(); });
  assert.equal(heldText.text, `x ${HALF}`);
  const heldUnicode = await through(new Vault([SECRET]), (res) => { res.end(`naïve ${HALF}`); });
  assert.equal(heldUnicode.text, `naïve ${HALF}`, 'non-ASCII text before a held-back tail is not re-encoded');
  for (const r of [text, endCb, hex, binary, heldBinary, heldInEnd, heldText, heldUnicode]) assert.deepEqual(r.thrown, []);
});

test('a held-back prefix of a non-ASCII secret is flushed in the form it was written (text or bytes); an empty end() sends nothing', async () => {
  const key = 'schlüssel-geheim-9876';
  const prefix = 'key: schlü';
  const text = await through(new Vault([key]), (res) => { res.write(prefix); res.end(); });
  assert.equal(text.text, prefix);
  const bytes = await through(new Vault([key]), (res) => { res.write(Buffer.from(prefix)); res.end(); });
  assert.deepEqual([...bytes.body], [...Buffer.from(prefix)]);
  const whole = await through(new Vault([key]), (res) => { res.write(Buffer.from(`${key}!`)); res.end(); });
  assert.equal(whole.text, `${MARK}!`, 'the secret\'s UTF-8 bytes are redacted in a binary body');
  const empty = await through(new Vault([key]), (res) => { res.writeHead(200, { 'x-a': 'b' }); res.end(); });
  assert.equal(empty.text, '');
  for (const r of [text, bytes, whole, empty]) assert.deepEqual(r.thrown, []);
});

test('writeHead\'s headers object goes to node as it is when scrubbing changes nothing (no copy per stream head), else copied in order from the first change', async () => {
  const given: unknown[] = [];
  const write = ServerResponse.prototype.writeHead;
  ServerResponse.prototype.writeHead = function (this: InstanceType<typeof ServerResponse>, ...args: unknown[]) {
    given.push(args[args.length - 1]);
    return (write as (...a: unknown[]) => InstanceType<typeof ServerResponse>).apply(this, args);
  } as typeof write;
  try {
    const clean = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req-1' };
    const same = await through(new Vault([SECRET]), (res) => { res.writeHead(200, clean); res.end('x'); });
    assert.equal(given[0], clean, 'clean headers: the caller\'s object itself');
    assert.equal(same.headers.get('x-request-id'), 'req-1');
    const late = { 'x-a': 'one', 'x-b': 'two', 'x-c': `k=${SECRET}`, 'x-d': 'four', 'Content-Length': '1', 'x-e': undefined, 'x-f': 6 };
    const copied = await through(new Vault([SECRET]), (res) => { res.writeHead(200, late); res.end('x'); });
    assert.notEqual(given[1], late);
    assert.deepEqual(given[1], { 'x-a': 'one', 'x-b': 'two', 'x-c': `k=${MARK}`, 'x-d': 'four', 'x-f': 6 }, 'the headers before the first change kept, in order; content-length and undefined left out');
    assert.equal(late['x-c'], `k=${SECRET}`, 'the caller\'s object is not changed');
    assert.equal(copied.headers.get('x-c'), `k=${MARK}`);
    const length = { 'x-a': 'one', 'content-length': '1' };
    await through(new Vault([SECRET]), (res) => { res.writeHead(200, length); res.end('xy'); });
    assert.deepEqual(given[2], { 'x-a': 'one' }, 'a clean content-length is still left out (the body may change length)');
    const undef = { 'x-a': 'one', 'x-u': undefined };
    await through(new Vault([SECRET]), (res) => { res.writeHead(200, undef); res.end('x'); });
    assert.deepEqual(given[3], { 'x-a': 'one' });
  } finally {
    ServerResponse.prototype.writeHead = write;
  }
});

test('a response the listener never opened refuses to write anything', () => {
  for (const write of [
    (res: EgressResponse) => res.send(200, 'x', {}),
    (res: EgressResponse) => res.writeHead(200),
    (res: EgressResponse) => res.write('x'),
    (res: EgressResponse) => res.end('x'),
  ]) {
    const res = new EgressResponse(new IncomingMessage(new Socket()));
    assert.throws(() => write(res), /EgressResponse used before open\(\): the request listener must open the egress door first/);
  }
});

test('scrubAcross: a secret split across content parts is redacted where it starts and reported; anything else is the same value', () => {
  const vault = new Vault([SECRET]);
  const value = { content: [{ type: 'text', text: `a ${HALF}`, title: 'one' }, { type: 'text', text: `${REST} b`, title: 'two' }] };
  const out = scrubAcross(vault, value);
  assert.deepEqual(out, { content: [{ type: 'text', text: `a ${MARK}`, title: 'one' }, { type: 'text', text: ' b', title: 'two' }] });
  assert.deepEqual(vault.leaks, [[NAME]]);
  const three = { content: [{ type: 'text', text: 'x' }, { type: 'text', text: HALF }, { type: 'text', text: REST }] };
  assert.deepEqual(scrubAcross(vault, three).content.map((p) => p.text), ['x', MARK, '']);
  const clean = { content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] };
  assert.equal(scrubAcross(vault, clean), clean);
  assert.equal(scrubAcross(new Vault([]), value), value, 'no credential active: nothing to do');
  assert.deepEqual(vault.leaks, [[NAME], [NAME]], 'only the two hits are evidence');
});

test('holdsSecret finds a credential in any text; clipAfterScrub clips only text longer than its limit', () => {
  assert.equal(holdsSecret(new Vault([SECRET]), `x ${SECRET} y`), true);
  assert.equal(holdsSecret(new Vault([SECRET]), `x ${HALF} y`), false);
  assert.equal(holdsSecret(new Vault([]), SECRET), false);
  assert.equal(clipAfterScrub('abcd', 4), 'abcd');
  assert.equal(clipAfterScrub('abcde', 4), 'abcd...');
});
