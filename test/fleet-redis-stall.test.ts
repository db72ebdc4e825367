// The fleet's Redis connection (src/store/redis.ts) against a Redis of this file's own: commands
// arm no timer each (one watchdog per connection replaces ioredis's per-command timeout), and a
// frozen Redis (SIGSTOP: the socket stays open, nothing answers) still fails the commands in flight
// within about the command timeout, fails new ones at once meanwhile, and the connection recovers
// by itself once Redis answers again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privateRedis, type PrivateRedis } from './helpers/fleet.ts';
import { until } from './helpers/e2e.ts';
import { COMMAND_TIMEOUT_MS, connectRedis, type Redis } from '../src/store/redis.ts';

let server: PrivateRedis;
let redis: Redis;

before(async () => {
  server = await privateRedis();
  redis = connectRedis(server.url, 'aam-stall-test');
  redis.on('error', () => {});
  await redis.connect();
});

after(async () => {
  server?.resume();
  redis?.disconnect();
  await server?.stop();
});

test('commands on the fleet connection arm no timer each', async () => {
  const real = globalThis.setTimeout;
  let armed = 0;
  globalThis.setTimeout = ((...a: Parameters<typeof setTimeout>) => { armed++; return real(...a); }) as typeof setTimeout;
  try {
    for (let i = 0; i < 50; i++) await redis.set(`k${i}`, String(i));
  } finally {
    globalThis.setTimeout = real;
  }
  assert.equal(await redis.get('k49'), '49');
  assert.ok(armed <= 1, `50 commands armed ${armed} timers`);
});

test('a frozen Redis fails the commands in flight within about the command timeout, new ones at once, and the connection recovers by itself', async () => {
  server.pause();
  try {
    const t0 = performance.now();
    const inFlight = await Promise.allSettled([redis.get('k1'), redis.incr('n')]);
    const waited = performance.now() - t0;
    for (const r of inFlight) assert.match(r.status === 'rejected' ? String(r.reason) : 'answered', /did not answer within 1000 ms \(command timed out\)/);
    assert.ok(waited >= COMMAND_TIMEOUT_MS * 0.9, `failed after ${waited.toFixed(0)} ms: before the timeout`);
    // A loaded machine may delay the watchdog's ticks; a hang would be unbounded.
    assert.ok(waited < COMMAND_TIMEOUT_MS * 5, `failed after ${waited.toFixed(0)} ms`);
    const t1 = performance.now();
    await assert.rejects(redis.get('k1'), 'a command while the connection is down fails');
    assert.ok(performance.now() - t1 < COMMAND_TIMEOUT_MS / 2, 'and it fails without waiting for the timeout');
  } finally {
    server.resume();
  }
  await until(async () => (await redis.get('k2').catch(() => null)) === '2', 20_000, 'the connection to answer again');
  assert.equal(redis.status, 'ready');
});

test('a replica whose own loop was blocked past the timeout keeps its connection: only time the loop could read counts', async () => {
  assert.equal(await redis.set('late', 'answered'), 'OK');
  server.pause();
  const reply = redis.get('late');
  // The watchdog has seen this command in flight (it ticks every timeout / 4)...
  await new Promise((r) => setTimeout(r, COMMAND_TIMEOUT_MS / 2));
  // ...then this process is busy (a long task, GC, a starved CPU) while Redis answers into the socket:
  // blocked from the check phase, so the next loop turn runs the (late) watchdog before it reads I/O,
  // and Redis is woken inside the block, so the answer cannot be read before it.
  await new Promise((r) => setImmediate(r));
  const t0 = performance.now();
  let woken = false;
  while (performance.now() - t0 < COMMAND_TIMEOUT_MS * 1.5) {
    if (!woken && performance.now() - t0 > 100) { server.resume(); woken = true; }
  }
  // Timers run before I/O is read: without the lag allowance the watchdog would reset a healthy
  // connection here and fail the command (and every request on it) with "command timed out".
  assert.equal(await reply, 'answered');
  assert.equal(redis.status, 'ready');
});
