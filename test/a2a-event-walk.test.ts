// One walk over a streamed event (a2a/event-walk.ts) stands in for the walks the raw check and the
// scrub across parts made on their own: what it finds must decide as they decided. Compared on
// events of every shape the relay meets, and on those that stress the rules (a key written twice, a
// JSON escape, text parts in arrays, under `arguments`, nested too deep to count).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventWalk } from '../src/a2a/event-walk.ts';
import { passesRaw } from '../src/a2a/raw.ts';
import { scrubAcross } from '../src/access/egress.ts';
import { mapLeaves } from '../src/guardrails/structured.ts';
import { Scrubber } from '../src/credentials/scrub.ts';

const SECRET = 'walk-cred-3f9a1c7e5b2d4086aa';
const HALF = SECRET.length >> 1;
const ESCAPED = `\\u00${SECRET.charCodeAt(0).toString(16)}${SECRET.slice(1)}`;
const sc = new Scrubber([{ name: 'walk-token', value: SECRET }]);
const found: string[] = [];
const egress = { scrubber: () => sc, leaked: (n: readonly string[]) => { found.push(...n); } };
const none = new Scrubber([]);
const bare = { scrubber: () => none, leaked: () => {} };

const rpc = (result: string) => `{"jsonrpc":"2.0","id":7,"result":${result}}`;
const deep = (n: number) => `${'{"a":'.repeat(n)}{"text":"x"}${'}'.repeat(n)}`;
// Two text parts, the second nested `n` objects deep in the result (mapLeaves hands a subtree at 64 to `deep`).
const deepPart = (n: number) => `{"parts":[{"text":"key ${SECRET.slice(0, HALF)}"}],"x":${'{"a":'.repeat(n)}{"text":"${SECRET.slice(HALF)}"}${'}'.repeat(n)}}`;
const b64 = (t: string) => Buffer.from(t).toString('base64');
const DATA = [
  rpc('{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}'),
  rpc('{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":[{"text":"alpha"}]},"append":true}}'),
  rpc(`{"statusUpdate":{"taskId":"t1","status":{"state":"TASK_STATE_WORKING","message":{"parts":[{"text":"key ${SECRET.slice(0, HALF)}"},{"text":"${SECRET.slice(HALF)} here"}]}}}}`),
  rpc(`{"statusUpdate":{"taskId":"t1","status":{"state":"TASK_STATE_WORKING","message":{"parts":[{"text":"key ${ESCAPED}"}]}}}}`),
  rpc(`{"message":{"parts":[],"metadata":{"${ESCAPED}":1}}}`),
  rpc('{"task":{"id":"t1","id":"t2","status":{"state":"TASK_STATE_COMPLETED"}}}'),
  rpc('{"message":{"parts":[{"text":["a","b"]}]}}'),
  rpc('{"message":{"parts":[{"data":{"arguments":"{\\"text\\":\\"a\\"}"}}]}}'),
  rpc('{"message":{"parts":[{"data":{"x.text":"a","y":{"text":"b"}}}]}}'),
  rpc('"a string result"'),
  '{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"text","data":{"text":"a"}}}',
  '{"jsonrpc":"2.0","id":{"text":"a"},"result":{"message":{"parts":[{"text":"b"}]}}}',
  rpc(deep(60)),
  rpc(deep(140)),
  // A secret across three parts (the middle one wholly inside it), and across parts of two messages.
  rpc(`{"message":{"parts":[{"text":"a ${SECRET.slice(0, 5)}"},{"text":"${SECRET.slice(5, 9)}"},{"text":"${SECRET.slice(9)} b"}]}}`),
  rpc(`{"task":{"status":{"message":{"parts":[{"text":"${SECRET.slice(0, HALF)}"}]}},"history":[{"parts":[{"text":"${SECRET.slice(HALF)}"}]}]}}`),
  // Read otherwise by mapLeaves: a data: URL text part (decoded), JSON arguments in an array, a text array's elements (no part).
  rpc(`{"message":{"parts":[{"text":"data:text/plain;base64,${b64(`x ${SECRET.slice(0, HALF)}`)}"},{"text":"${SECRET.slice(HALF)}"}]}}`),
  rpc(`{"message":{"parts":[{"text":"${SECRET.slice(0, HALF)}"}],"data":{"arguments":["{\\"text\\":\\"${SECRET.slice(HALF)}\\"}"]}}}`),
  rpc(`{"message":{"parts":[{"text":"${SECRET.slice(0, HALF)}"},{"text":["${SECRET.slice(HALF)}"]},{"x.text":"${SECRET.slice(HALF)}"}]}}`),
  rpc(`{"message":${deepPart(60)}}`),
  rpc(`{"message":${deepPart(61)}}`),
  rpc(`{"message":${deepPart(62)}}`),
  rpc(`{"message":${deepPart(63)}}`),
  rpc(`{"message":${deepPart(64)}}`),
];

/** scrubAcross's text parts of `v`, as it gathers them (mapLeaves' leaves at a path ending in `.text`). */
function partsOf(v: unknown): string[] {
  const parts: string[] = [];
  mapLeaves(v, { leaf(t, path) { if (path.endsWith('.text')) parts.push(t); return t; }, deep() {} });
  return parts;
}

test('a2a event walk: its key count, text parts and raw verdict decide as keyCount, scrubAcross and passesRaw did', () => {
  const walk = new EventWalk();
  for (const src of [egress, bare]) {
    for (const data of DATA) {
      const ev = JSON.parse(data) as Record<string, unknown>;
      walk.read(src, ev, data);
      assert.equal(walk.passesRaw(src, data), passesRaw(src, data, ev), data);
      // The text parts it gathers, when it says they are exact, are those scrubAcross joins.
      if (walk.exact && !walk.deep) assert.deepEqual(walk.parts, partsOf(ev.result), data);
      // What it gives the caller is what scrubAcross gives.
      found.length = 0;
      const result = walk.scrubbed(src, ev, ev.result);
      const leaks = found.splice(0);
      assert.deepEqual(result, scrubAcross(src, ev.result), data);
      assert.deepEqual(leaks, found.splice(0), data);
    }
  }
  // The secret split across a status message's two parts is found, its escape read, the repeated key and the deep event re-serialised.
  const read = (data: string) => { const ev = JSON.parse(data) as Record<string, unknown>; walk.read(egress, ev, data); return ev; };
  const split = read(DATA[2]);
  assert.equal(walk.exact, true);
  assert.equal(walk.parts.length, 2);
  assert.doesNotMatch(JSON.stringify(walk.scrubbed(egress, split, split.result)), new RegExp(SECRET.slice(0, HALF)));
  for (const i of [3, 4, 5, 13]) { read(DATA[i]); assert.equal(walk.passesRaw(egress, DATA[i]), false, DATA[i]); }
  read(DATA[13]);
  assert.equal(walk.deep, true);
  // Another result than the event's (an output guardrail's): scrubAcross decides alone.
  const ev = read(DATA[1]);
  const other = { message: { parts: [{ text: `key ${SECRET.slice(0, HALF)}` }, { text: `${SECRET.slice(HALF)} here` }] } };
  assert.doesNotMatch(JSON.stringify(walk.scrubbed(egress, ev, other)), new RegExp(SECRET.slice(0, HALF)));
});

test('a2a event walk: text parts it cannot gather as scrubAcross does leave it to scrubAcross; a secret split across them is redacted either way', () => {
  const walk = new EventWalk();
  const read = (data: string) => { const ev = JSON.parse(data) as Record<string, unknown>; walk.read(egress, ev, data); return ev; };
  // Gathered: three parts, two messages' parts.
  for (const i of [14, 15]) {
    const ev = read(DATA[i]);
    assert.equal(walk.exact, true, DATA[i]);
    assert.ok(walk.parts.length >= 2, DATA[i]);
    assert.doesNotMatch(JSON.stringify(walk.scrubbed(egress, ev, ev.result)), new RegExp(SECRET.slice(HALF)), DATA[i]);
  }
  // Not gathered: a data: URL part, JSON arguments, a part as deep as mapLeaves hands over (its object at depth 64: 62 objects under `x`) or deeper.
  for (const i of [16, 17, 21, 22, 23]) { read(DATA[i]); assert.equal(walk.exact, false, DATA[i]); }
  // A text array's elements and a `x.text` member: the member is a part, the elements are not (their path ends in `]`).
  read(DATA[18]);
  assert.deepEqual(walk.parts, [SECRET.slice(0, HALF), SECRET.slice(HALF)]);
  // Just above the depth mapLeaves hands over: gathered, and the split secret found there.
  for (const i of [19, 20]) {
    const ev = read(DATA[i]);
    assert.equal(walk.exact, true, DATA[i]);
    assert.doesNotMatch(JSON.stringify(walk.scrubbed(egress, ev, ev.result)), new RegExp(SECRET.slice(0, HALF)), DATA[i]);
  }
});
