// The fleet's store of A2A push text held across a route's notifications (src/store/push-held.ts)
// on a real Redis of this file's own: sealed (the held characters are not in Redis in clear, and a
// value sealed under another master key, or moved to another route's key, does not open: refused,
// never read as "nothing held"); compare-and-set (a write naming a version another replica
// replaced is refused, and PushArtifactText then joins on the newer state); Redis down: the
// notification fails closed (StoreUnavailable), it is never passed on unjoined.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { privateRedis, type PrivateRedis } from './helpers/fleet.ts';
import { connectRedis, type Redis } from '../src/store/redis.ts';
import { redisPushHeld } from '../src/store/push-held.ts';
import { StoreUnavailable } from '../src/store/types.ts';
import { PushArtifactText } from '../src/a2a/chunks.ts';
import { Scrubber } from '../src/credentials/scrub.ts';
import type { ScrubSource } from '../src/access/egress.ts';

const SECRET = 'held-store-cred-0f6b3e9d27a4c815';
let server: PrivateRedis;
let redis: Redis;
const scrubber = new Scrubber([{ name: 'tok', value: SECRET }]);
const src: ScrubSource = { scrubber: () => scrubber, leaked: () => {} };

before(async () => {
  server = await privateRedis();
  redis = connectRedis(server.url, 'aam-push-held-test');
  redis.on('error', () => {});
  await redis.connect();
});

after(async () => {
  redis?.disconnect();
  await server?.stop();
});

const au = (text: string, append = false) => ({ artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [{ text }] }, ...(append ? { append: true } : {}) } });
const textOf = (r: unknown) => (r as { artifactUpdate: { artifact: { parts: Array<{ text: string }> } } }).artifactUpdate.artifact.parts.map((p) => p.text).join('');

test('sealed, bound to its route and key; compare-and-set; two processes on one Redis join one route\'s chunks', async () => {
  const key = randomBytes(32);
  const store = redisPushHeld(redis, 'aamtest:', key);
  const a = new PushArtifactText<string>(src, store, () => { assert.fail('nothing released'); }, { ttlMs: 60_000 });
  const b = new PushArtifactText<string>(src, store, () => { assert.fail('nothing released'); }, { ttlMs: 60_000 });
  const first = await a.pass('psh_1', 'r', au(`key ${SECRET.slice(0, 11)}`));
  assert.equal(textOf(first[0]), 'key ');
  const raw = (await redis.get('aamtest:a2a:held:psh_1'))!;
  assert.ok(!raw.includes(SECRET.slice(0, 11)) && !raw.includes(Buffer.from(SECRET.slice(0, 11)).toString('base64')), raw);
  assert.ok(await redis.pttl('aamtest:a2a:held:psh_1') > 60_000, 'kept a minute past the route\'s bound');
  const second = await b.pass('psh_1', 'r', { artifactUpdate: { ...au(`${SECRET.slice(11)} end`, true).artifactUpdate, lastChunk: true } });
  assert.equal(textOf(second[0]), '[REDACTED:tok] end', 'the other process joined the first one\'s held text');
  assert.equal(await redis.exists('aamtest:a2a:held:psh_1'), 0, 'nothing held: nothing kept');
  // Compare-and-set: a write naming a replaced version is refused.
  const v1 = await store.put('psh_2', 'one', null, 60_000);
  assert.equal(typeof v1, 'string');
  assert.equal(await store.put('psh_2', 'two', null, 60_000), false, 'another writer created it first');
  const v2 = await store.put('psh_2', 'two', v1 as string, 60_000);
  assert.equal(await store.put('psh_2', 'three', v1 as string, 60_000), false, 'another writer replaced it');
  assert.deepEqual(await store.get('psh_2'), { state: 'two', version: v2 });
  // Another master key, or the value moved to another route's key: refused, never "nothing held".
  await assert.rejects(Promise.resolve(redisPushHeld(redis, 'aamtest:', randomBytes(32)).get('psh_2')), (e: unknown) => e instanceof StoreUnavailable);
  await redis.set('aamtest:a2a:held:psh_3', (await redis.get('aamtest:a2a:held:psh_2'))!);
  await assert.rejects(Promise.resolve(store.get('psh_3')), (e: unknown) => e instanceof StoreUnavailable);
});

test('Redis down: a notification fails closed (StoreUnavailable), never passed on unjoined; Redis back: it joins again', async () => {
  const store = redisPushHeld(redis, 'aamdown:', randomBytes(32));
  const p = new PushArtifactText<string>(src, store, () => {}, { ttlMs: 60_000 });
  await server.stop();
  await assert.rejects(p.pass('psh_d', 'r', au(`key ${SECRET.slice(0, 11)}`)), (e: unknown) => e instanceof StoreUnavailable);
  // A status update too: the route may hold text that must go out before it.
  await assert.rejects(p.pass('psh_d', 'r', { statusUpdate: { taskId: 't1', status: { state: 'TASK_STATE_COMPLETED' } } }), (e: unknown) => e instanceof StoreUnavailable);
  await server.start();
  const deadline = Date.now() + 10_000;
  for (;;) {
    try { await redis.ping(); break; } catch { if (Date.now() > deadline) throw new Error('Redis did not come back'); await new Promise((r) => setTimeout(r, 50)); }
  }
  const again = await p.pass('psh_d', 'r', au(`key ${SECRET.slice(0, 11)}`));
  assert.equal(textOf(again[0]), 'key ');
});
