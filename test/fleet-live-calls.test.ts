// The fleet's live A2A calls (src/store/live-calls.ts, redisLiveCalls) on a real Redis of this
// file's own, two replicas on one prefix: a call another replica runs, or a task it left running
// holds, is live there; once ended (or its task ended, or its ttl past) it is not. What a turn's
// calls cost Redis: one ZADD for the calls that started in it and one ZREM for those that ended,
// however many (a SET and a DEL per call before); a call that starts and ends within one turn costs
// none. The zset is a skiplist (a listpack's ZADD and ZREM scan it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { privateRedis, type PrivateRedis } from './helpers/fleet.ts';
import { connectRedis, type Redis } from '../src/store/redis.ts';
import { redisLiveCalls } from '../src/store/live-calls.ts';

const P = 'aamtest:';
let server: PrivateRedis;
let redis: Redis;
let other: Redis;

before(async () => {
  server = await privateRedis();
  redis = connectRedis(server.url, 'aam-live-a');
  other = connectRedis(server.url, 'aam-live-b');
  for (const r of [redis, other]) { r.on('error', () => {}); await r.connect(); }
});

after(async () => {
  redis?.disconnect();
  other?.disconnect();
  await server?.stop();
});

/** The turn's writes sent (at its next tick) and answered. */
const sent = async (): Promise<void> => { await new Promise((r) => setImmediate(r)); await redis.ping(); };

/** Calls of each command since the last reset (INFO commandstats: inside scripts too). */
async function commands(): Promise<Record<string, number>> {
  const info = await other.info('commandstats');
  const out: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_(\w+):calls=(\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

test('a turn\'s starts are one ZADD and its ends one ZREM; live on the other replica only while running', async () => {
  const a = redisLiveCalls(redis, P);
  const b = redisLiveCalls(other, P);
  await sent();
  await other.config('RESETSTAT');
  for (const c of ['c1', 'c2', 'c3']) a.begin(c, 60_000);
  await sent();
  assert.deepEqual(await Promise.all(['c1', 'c2', 'c3', 'c9'].map((c) => b.live(c))), [true, true, true, false]);
  a.end('c1', null);
  a.end('c2', []);
  await sent();
  assert.deepEqual(await Promise.all(['c1', 'c2', 'c3'].map((c) => b.live(c))), [false, false, true]);
  const n = await commands();
  assert.equal(n.zadd, 1, 'three starts, one ZADD');
  assert.equal(n.zrem, 1, 'two ends, one ZREM');
  assert.equal(n.set ?? 0, 0);
  assert.equal(n.del ?? 0, 0);
  assert.equal(a.live('c3'), true, 'its own running call: answered without Redis');
  // A skiplist from its first member: as a listpack every ZADD and ZREM would scan and move it.
  assert.equal(await redis.object('ENCODING', `${P}live:calls`), 'skiplist');

  // Started and ended in one turn: nothing written.
  await other.config('RESETSTAT');
  a.begin('c4', 60_000);
  a.end('c4', null);
  await sent();
  assert.equal(await b.live('c4'), false);
  const m = await commands();
  assert.equal((m.zadd ?? 0) + (m.zrem ?? 0), 0, JSON.stringify(m));
  a.end('c3', null);
});

test('a call that left a task running stays live (on every replica) until the task ends; a ttl past ends it', async () => {
  const a = redisLiveCalls(redis, P);
  const b = redisLiveCalls(other, P);
  a.begin('h1', 60_000);
  a.begin('h2', 60_000);
  await sent();
  a.end('h1', ['agent:t1', 'agent:t2']);
  a.end('h2', ['agent:t1']);
  await sent();
  assert.deepEqual([await b.live('h1'), await b.live('h2'), await a.live('h1')], [true, true, true], 'held by their tasks, on both replicas');
  b.taskEnded('agent:t1');
  await new Promise((r) => setImmediate(r));
  await other.ping();
  assert.deepEqual([await a.live('h1'), await a.live('h2')], [true, false], 'h1 still held by t2; h2 by nothing');
  a.taskEnded('agent:t2');
  await sent();
  assert.equal(await b.live('h1'), false);
  assert.equal(await redis.exists(`${P}live:h:h1`, `${P}live:t:agent:t1`, `${P}live:t:agent:t2`), 0, 'no empty set left');

  // Started, then its ttl past (its replica stopped without ending it): not live.
  a.begin('x1', 40);
  await sent();
  assert.equal(await b.live('x1'), true);
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(await b.live('x1'), false);
});

test('a call a replica of the version before runs (its live:c key) is live here too', async () => {
  const b = redisLiveCalls(other, P);
  await redis.set(`${P}live:c:old1`, '1', 'PX', 60_000);
  assert.equal(await b.live('old1'), true);
  await redis.del(`${P}live:c:old1`);
  assert.equal(await b.live('old1'), false);
});
