// What one A2A stream keeps while it is relayed (a2a/gateway.ts StreamRelay): the ids it bound
// (a2a/tasks.ts SeenIds) and its artifacts' text (a2a/chunks.ts ArtifactText, each artifact's
// credentials/scrub.ts stream scrubber). The usual stream (one task, one context, one artifact, no
// secret) made two Sets for its ids, two Maps for its artifacts and a Set in each artifact's
// scrubber; now it makes one Map. Counted with v8.queryObjects (the live objects of a kind). The
// ids an answer or a stream's first event names (idsIn, bound for every send and stream) are in
// arrays of their size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getHeapStatistics, queryObjects, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Scrubber } from '../src/credentials/scrub.ts';
import { ArtifactText } from '../src/a2a/chunks.ts';
import { idsIn, SeenIds } from '../src/a2a/tasks.ts';

const SECRET = 'objects-cred-5d1a90c3e7b24f68aa';
const count = (of: Function): number => queryObjects(of, { format: 'count' }) as number;

const EVENTS = [
  { task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } },
  { artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: 'a1', parts: [{ text: 'score account 42 for risk' }] } } },
  { statusUpdate: { taskId: 't1', contextId: 'c1', status: { state: 'TASK_STATE_COMPLETED' } } },
];

/** An echo agent's stream (task, artifact, then completed), relayed as StreamRelay relays it, from event `from` to before `to`. */
function relay(r: { seen: SeenIds; text: ArtifactText }, out: unknown[], from: number, to: number): void {
  for (let i = from; i < to; i++) {
    idsIn(EVENTS[i], r.seen);
    out.push(r.text.pass(EVENTS[i], (x) => out.push(x)));
  }
  if (to === EVENTS.length) r.text.end((x) => out.push(x));
}

test('a2a stream: the usual stream keeps its ids and artifact text in one Map (no Set), and still scrubs a secret split across chunks', () => {
  const sc = new Scrubber([{ name: 'agent-key', value: SECRET }]);
  const found: string[] = [];
  const src = { scrubber: () => sc, leaked: (n: readonly string[]) => { found.push(...n); } };
  const N = 200;
  const keep: unknown[] = [];
  const out: unknown[] = [];
  relay({ seen: new SeenIds(), text: new ArtifactText(src) }, [], 0, 3); // warm: whatever the modules make once
  const maps = count(Map);
  const sets = count(Set);
  // N streams open, each after its artifact's first chunk (its text may go on: it is being joined).
  const open = Array.from({ length: N }, () => ({ seen: new SeenIds(), text: new ArtifactText(src) }));
  for (const r of open) relay(r, out, 0, 2);
  const perMap = (count(Map) - maps) / N;
  const perSet = (count(Set) - sets) / N;
  assert.equal(perSet, 0, `Sets per stream: ${perSet}`);
  assert.equal(perMap, 1, `Maps per stream: ${perMap}`);
  for (const r of open) relay(r, out, 2, 3);
  keep.push(...open);
  assert.equal(out.length, N * 3, 'each event passed on as it came, nothing held');
  assert.equal(found.length, 0);

  // The same objects still join an artifact's chunks: a secret split across two of them is redacted.
  const text = new ArtifactText(src);
  const chunk = (t: string, more: object) => ({ artifactUpdate: { taskId: 't9', contextId: 'c9', artifact: { artifactId: 'a9', parts: [{ text: t }] }, ...more } });
  const sent: string[] = [];
  const textOf = (r: unknown) => ((r as { artifactUpdate: { artifact: { parts: Array<{ text: string }> } } }).artifactUpdate.artifact.parts.map((p) => p.text).join(''));
  sent.push(textOf(text.pass(chunk(`key ${SECRET.slice(0, 10)}`, {}), (r) => sent.push(textOf(r)))));
  sent.push(textOf(text.pass(chunk(`${SECRET.slice(10)} here`, { append: true, lastChunk: true }), (r) => sent.push(textOf(r)))));
  assert.ok(!sent.join('').includes(SECRET.slice(4)), sent.join(''));
  assert.match(sent.join(''), /^key \[REDACTED:agent-key\] here$/);
  assert.deepEqual(found, ['agent-key']);
  assert.equal(keep.length, N);
});

test('idsIn: the ids an answer names are in arrays of their size (no room reserved by a push onto an empty array)', () => {
  const N = 20_000;
  const task = { task: { id: 't1', contextId: 'c1', status: { state: 'TASK_STATE_WORKING' } } };
  const keep: unknown[] = new Array(N);
  for (let i = 0; i < 100; i++) idsIn(task);
  const before = getHeapStatistics().used_heap_size;
  for (let i = 0; i < N; i++) keep[i] = idsIn(task);
  const per = (getHeapStatistics().used_heap_size - before) / N;
  // One object and two one-element arrays: about 140 bytes (with two pushes onto empty arrays, about 390).
  assert.ok(per < 250, `${per.toFixed(0)} bytes per answer's ids`);
  assert.deepEqual(keep[N - 1], { tasks: ['t1'], contexts: ['c1'] });
  // Several ids still all come (the first in an array of one, the next pushed onto it).
  assert.deepEqual(idsIn({ task: { id: 't1', contextId: 'c1', status: {} }, statusUpdate: { taskId: 't2', contextId: 'c2' }, artifactUpdate: { contextId: 'c3' } }), { tasks: ['t1', 't2'], contexts: ['c1', 'c2', 'c3'] });
  assert.deepEqual(idsIn({ message: { contextId: 'c4' } }), { tasks: [], contexts: ['c4'] });
});

test('ArtifactText: a final status ends its task\'s artifacts without an entry array and iterator result per artifact', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const sc = new Scrubber([{ name: 'agent-key', value: SECRET }]);
  const src = { scrubber: () => sc, leaked: () => {} };
  const art = (id: string) => ({ artifactUpdate: { taskId: 't1', contextId: 'c1', artifact: { artifactId: id, parts: [{ text: 'score account 42' }] } } });
  const done = { statusUpdate: { taskId: 't1', contextId: 'c1', status: { state: 'TASK_STATE_COMPLETED' } } };
  const N = 2000;
  const emit = () => {};
  const texts = Array.from({ length: N }, () => {
    const t = new ArtifactText(src);
    for (const a of ['a1', 'a2', 'a3']) t.pass(art(a), emit);
    return t;
  });
  gc();
  const before = getHeapStatistics().used_heap_size;
  for (let i = 0; i < N; i++) texts[i].pass(done, emit);
  const per = (getHeapStatistics().used_heap_size - before) / N;
  // About 280 bytes (its final status read, three scrubbers ended); with [key, run] entries iterated, about 860.
  assert.ok(per < 500, `${per.toFixed(0)} bytes per final status`);
  assert.ok(texts.every((t) => !t.holding));
});
