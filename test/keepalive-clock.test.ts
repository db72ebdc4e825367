// Chat streams' keep-alives run on one clock per route (src/gateway/deadlines.ts, KeepAlive)
// instead of a node timer per stream: the same comment after each idle period, postponed by what
// the stream writes, never after it stopped, and never in a loop when the period is 1 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Deadlines, KeepAlive } from '../src/gateway/deadlines.ts';
import { until } from './helpers/e2e.ts';

test('a keep-alive sends after each idle period; a refresh starts the period again; after stop nothing more', async () => {
  const clock = new Deadlines(400);
  const sent: number[] = [];
  const witness: number[] = [];
  const t0 = performance.now();
  const k = new KeepAlive(clock, () => sent.push(performance.now()));
  new KeepAlive(clock, () => witness.push(performance.now())); // shares the clock, never stopped here
  await until(() => sent.length >= 2, 10_000, 'two keep-alives');
  assert.ok(sent[0] - t0 >= 399, `first after ${sent[0] - t0} ms of a 400 ms period`);
  assert.ok(sent[1] - sent[0] >= 399, `second ${sent[1] - sent[0]} ms after the first`);
  // Refreshed every few tens of ms for ~600 ms: no keep-alive meanwhile.
  const before = sent.length;
  const r0 = performance.now();
  await until(async () => { k.refresh(); await new Promise((r) => setTimeout(r, 10)); return performance.now() - r0 > 600; }, 10_000, 'refreshes');
  assert.equal(sent.length, before, 'a refreshed stream is not idle');
  k.stop();
  const w = witness.length;
  await until(() => witness.length >= w + 3, 10_000, 'three more periods on the same clock');
  assert.equal(sent.length, before, 'a stopped keep-alive sends nothing');
  k.refresh(); // refresh after stop does not bring it back
  await until(() => witness.length >= w + 5, 10_000, 'two more periods');
  assert.equal(sent.length, before);
});

test('a 1 ms keep-alive puts itself back for the next tick, not the same one (no busy loop)', async () => {
  const clock = new Deadlines(1);
  let sends = 0;
  const t0 = performance.now();
  const k = new KeepAlive(clock, () => { sends++; });
  await until(() => sends >= 10, 10_000, 'ten keep-alives');
  k.stop();
  assert.ok(performance.now() - t0 >= 9, `10 keep-alives of a 1 ms period in ${performance.now() - t0} ms`);
});
