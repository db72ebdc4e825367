// The admission script's own Redis connection (src/store/resp.ts, made by connectAdmission from
// AAM_REDIS_URL) against a Redis of this file's own: replies matched to commands in order, all the
// commands of one loop turn in one write, no timer per command, a frozen Redis (SIGSTOP) failing
// the commands in flight within about the command timeout and new ones at once, Redis stopped and
// started again (reconnects by itself), and the URL's password, db and the connection's name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Socket } from 'node:net';
import { privateRedis, type PrivateRedis } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { COMMAND_TIMEOUT_MS, connectAdmission } from '../src/store/redis.ts';
import type { RespConnection } from '../src/store/resp.ts';

let server: PrivateRedis;
let conn: RespConnection;

before(async () => {
  server = await privateRedis();
  conn = connectAdmission(server.url, 'aam-admit-test');
  conn.on('error', () => {});
  await conn.connect();
});

after(async () => {
  server?.resume();
  conn?.disconnect();
  await server?.stop();
});

const cli = (url: string, ...args: string[]): string => spawnSync('redis-cli', ['-u', url, ...args], { encoding: 'utf8' }).stdout.trim();

/** The test runner's own output (its reports go through process.stdout), not a write of the connection's. */
const stdio = (s: Socket): boolean => s === (process.stdout as unknown) || s === (process.stderr as unknown);

/** Socket writes (the runner's own left out) seen until the returned undo is called: their first argument as text. */
function spyWrites(seen: string[]): () => void {
  const write = Socket.prototype.write;
  Socket.prototype.write = function (this: Socket, ...a: unknown[]) { if (!stdio(this)) seen.push(String(a[0])); return (write as (...x: unknown[]) => boolean).apply(this, a); } as typeof write;
  return () => { Socket.prototype.write = write; };
}

test('a command on an idle connection is written at once, not at the end of its loop turn; one sent while it is in flight waits for the turn\'s write', async () => {
  const seen: string[] = [];
  const undo = spyWrites(seen);
  let first: Promise<unknown>, second: Promise<unknown>;
  try {
    first = conn.send('ECHO', ['first']);
    assert.equal(seen.length, 1, 'written within send()');
    assert.match(seen[0], /first/);
    second = conn.send('ECHO', ['second']);
    assert.equal(seen.length, 1, 'the second waits: the first is in flight');
    await new Promise((r) => setImmediate(r));
    assert.equal(seen.length, 2);
    assert.match(seen[1], /second/);
  } finally {
    undo();
  }
  assert.deepEqual(await Promise.all([first, second]), ['first', 'second']);
});

test('a script sent with `now` is written at once though a command is in flight (the admissions of a turn, sent at its check phase, do not wait for the next turn)', async () => {
  const seen: string[] = [];
  const undo = spyWrites(seen);
  let first: Promise<unknown>, second: Promise<unknown>;
  try {
    first = conn.send('ECHO', ['first']);
    assert.equal(seen.length, 1, 'written within send()');
    second = conn.evalsha("return 'now'", ['', 0], true);
    assert.equal(seen.length, 2, 'written within evalsha(), the first still in flight');
    assert.match(seen[1], /EVALSHA/);
  } finally {
    undo();
  }
  assert.deepEqual(await Promise.all([first, second]), ['first', 'now']);
});

test('replies come back to their commands in order; one loop turn\'s commands leave in one write (the first alone when the connection was idle); no timer per command', async () => {
  const realTimeout = globalThis.setTimeout;
  const written: string[] = [];
  let armed = 0;
  const undo = spyWrites(written);
  globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => { armed++; return realTimeout(...a); }) as typeof setTimeout;
  let replies: unknown[];
  try {
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 200; i++) {
      calls.push(conn.send('INCR', ['order']));
      calls.push(conn.send('SET', [`v${i}`, `é${i}`]));
      calls.push(conn.send('GET', [`v${i}`]));
    }
    calls.push(conn.send('EVAL', ["return {1, 'two', {KEYS[1], false}, redis.status_reply('OK')}", 1, 'k']).then((r) => r));
    replies = await Promise.all(calls);
  } finally {
    undo();
    globalThis.setTimeout = realTimeout;
  }
  // The first found the connection idle and left at once; the other 600 shared the turn's write.
  assert.equal(written.length, 2, 'the first command alone, the other 600 of the turn in one write');
  assert.ok(armed === 0, `${armed} timers armed`);
  for (let i = 0; i < 200; i++) assert.deepEqual(replies.slice(3 * i, 3 * i + 3), [i + 1, 'OK', `é${i}`]);
  assert.deepEqual(replies[600], [1, 'two', ['k', null], 'OK']);
  // An error reply fails its own command only.
  const [bad, good] = await Promise.allSettled([conn.send('EVALSHA', ['0'.repeat(40), 0]), conn.send('GET', ['v3'])]);
  assert.ok(bad.status === 'rejected' && /^NOSCRIPT/.test((bad.reason as Error).message), String(bad.status === 'rejected' && bad.reason));
  assert.deepEqual(good, { status: 'fulfilled', value: 'é3' });
});

test('a turn\'s bytes the socket could not take at once are not overwritten by the next turn\'s (its buffer is left to the socket)', async () => {
  // Redis frozen for a moment: the kernel's buffers fill and each turn's write stays queued in the
  // socket, holding the bytes the connection wrote for it; the next turns must not write over them.
  const values = Array.from({ length: 8 }, (_, i) => String.fromCharCode(97 + i).repeat(1024 * 1024 + i));
  server.pause();
  const sets: Array<Promise<unknown>> = [];
  try {
    for (let i = 0; i < values.length; i++) {
      sets.push(conn.send('SET', [`big${i}`, values[i]]));
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    server.resume();
  }
  assert.deepEqual(await Promise.all(sets), values.map(() => 'OK'));
  for (let i = 0; i < values.length; i++) assert.ok(await conn.send('GET', [`big${i}`]) === values[i], `big${i} intact`);
  await conn.send('DEL', values.map((_, i) => `big${i}`));
});

test('replies longer than a read (split across reads of the one reused read buffer) come back whole, and the replies around them too', async () => {
  // Each value is several reads long and unlike itself at every offset (random): a partial reply
  // kept as a view of the read buffer instead of a copy is overwritten by the next read.
  const values = Array.from({ length: 6 }, (_, i) => randomBytes(150_000 + 7777 * i).toString('base64'));
  await Promise.all(values.map((v, i) => conn.send('SET', [`long${i}`, v])));
  const calls: Array<Promise<unknown>> = [];
  for (let i = 0; i < values.length; i++) { calls.push(conn.send('GET', [`long${i}`])); calls.push(conn.send('ECHO', [`after ${i}`])); }
  const replies = await Promise.all(calls);
  for (let i = 0; i < values.length; i++) {
    assert.ok(replies[2 * i] === values[i], `long${i} intact`);
    assert.equal(replies[2 * i + 1], `after ${i}`);
  }
  await conn.send('DEL', values.map((_, i) => `long${i}`));
});

test('a frozen Redis fails the commands in flight within about the command timeout, new ones at once, and the connection recovers by itself', async () => {
  server.pause();
  try {
    const t0 = performance.now();
    const inFlight = await Promise.allSettled([conn.send('GET', ['v1']), conn.send('INCR', ['n'])]);
    const waited = performance.now() - t0;
    for (const r of inFlight) assert.match(r.status === 'rejected' ? String(r.reason) : 'answered', /did not answer within 1000 ms \(command timed out\)/);
    assert.ok(waited >= COMMAND_TIMEOUT_MS * 0.9, `failed after ${waited.toFixed(0)} ms: before the timeout`);
    // A loaded machine may delay the watchdog's ticks; a hang would be unbounded.
    assert.ok(waited < COMMAND_TIMEOUT_MS * 5, `failed after ${waited.toFixed(0)} ms`);
    const t1 = performance.now();
    await assert.rejects(conn.send('GET', ['v1']), 'a command while the connection is down fails');
    assert.ok(performance.now() - t1 < COMMAND_TIMEOUT_MS / 2, 'and it fails without waiting for the timeout');
  } finally {
    server.resume();
  }
  await until(async () => (await conn.send('GET', ['v2']).catch(() => null)) === 'é2', 20_000, 'the connection to answer again');
  assert.equal(conn.status, 'ready');
});

test('a replica whose own loop was blocked past the timeout keeps its connection: only time the loop could read counts', async () => {
  assert.equal(await conn.send('SET', ['late', 'answered']), 'OK');
  server.pause();
  const reply = conn.send('GET', ['late']);
  await new Promise((r) => setTimeout(r, COMMAND_TIMEOUT_MS / 2));
  await new Promise((r) => setImmediate(r));
  const t0 = performance.now();
  let woken = false;
  while (performance.now() - t0 < COMMAND_TIMEOUT_MS * 1.5) {
    if (!woken && performance.now() - t0 > 100) { server.resume(); woken = true; }
  }
  assert.equal(await reply, 'answered');
  assert.equal(conn.status, 'ready');
});

test('Redis stopped: commands fail at once; started again: the connection is back by itself', async () => {
  await server.stop();
  await until(() => conn.status !== 'ready', 10_000, 'the connection to see Redis go');
  const t0 = performance.now();
  await assert.rejects(conn.send('GET', ['v1']), /reconnecting|connecting|closed/);
  assert.ok(performance.now() - t0 < 100, 'failed at once');
  await server.start();
  await until(() => conn.status === 'ready', 10_000, 'the connection to reconnect');
  assert.equal(await conn.send('SET', ['back', '1']), 'OK');
});

test('the URL\'s password and db are used, the connection is named; a wrong password never gets ready; lazy: connected by its first command', async () => {
  assert.equal(cli(server.url, 'CONFIG', 'SET', 'requirepass', 's3cret'), 'OK');
  const u = new URL(server.url);
  const authed = connectAdmission(`redis://:s3cret@${u.host}/3`, 'aam-admit-auth');
  authed.on('error', () => {});
  const wrong = connectAdmission(`redis://:nope@${u.host}/3`, 'aam-admit-wrong');
  wrong.on('error', () => {});
  const lazy = connectAdmission(`redis://:s3cret@${u.host}/4`, 'aam-admit-lazy', { lazy: true });
  lazy.on('error', () => {});
  try {
    await authed.connect();
    assert.equal(await authed.send('SET', ['in-db-3', 'yes']), 'OK');
    const authedCli = (...args: string[]): string => spawnSync('redis-cli', ['-h', u.hostname, '-p', u.port, '-a', 's3cret', '--no-auth-warning', ...args], { encoding: 'utf8' }).stdout.trim();
    assert.equal(authedCli('-n', '3', 'GET', 'in-db-3'), 'yes');
    assert.equal(authedCli('-n', '0', 'EXISTS', 'in-db-3'), '0');
    assert.match(authedCli('CLIENT', 'LIST'), /name=aam-admit-auth .*db=3/);
    await assert.rejects(wrong.connect());
    assert.notEqual(wrong.status, 'ready');
    await assert.rejects(wrong.send('GET', ['x']));
    assert.equal(lazy.status, 'wait');
    assert.equal(await lazy.send('SET', ['in-db-4', 'lazy']), 'OK');
    assert.equal(lazy.status, 'ready');
    assert.equal(authedCli('-n', '4', 'GET', 'in-db-4'), 'lazy');
  } finally {
    authed.disconnect();
    wrong.disconnect();
    lazy.disconnect();
    spawnSync('redis-cli', ['-h', u.hostname, '-p', u.port, '-a', 's3cret', '--no-auth-warning', 'CONFIG', 'SET', 'requirepass', '']);
  }
  assert.equal(wrong.status, 'end');
});
