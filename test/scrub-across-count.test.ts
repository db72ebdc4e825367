// scrubAcross skips its path-building walk when a value has fewer than two text parts
// (textLeavesUpTo). The count may be too high, never too low: every value where the walker finds
// two or more `.text` leaves must still be walked, so a secret split across them is redacted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mapLeaves, textLeavesUpTo } from '../src/guardrails/structured.ts';
import { scrubAcross, type ScrubSource } from '../src/access/egress.ts';
import { Scrubber } from '../src/credentials/scrub.ts';

const SECRET = 'sk-live-Acr0ss7f6e5d4c3b2a1Q';

/** What scrubAcross collects: the walker's leaves at paths ending in `.text`. */
function textLeaves(v: unknown): number {
  let n = 0;
  mapLeaves(v, { leaf(t, path) { if (path.endsWith('.text')) n++; return t; }, deep() { /* counted as the walker does: not at all */ } });
  return n;
}

const deep = (levels: number, leaf: unknown): unknown => { let v = leaf; for (let i = 0; i < levels; i++) v = { n: v }; return v; };
const b64 = Buffer.from('a decoded text payload, long enough to be taken as base64 by the walker.').toString('base64');

const VALUES: unknown[] = [
  null, 'text', { text: 'a' }, { text: 'a', other: 'b' },
  { parts: [{ text: 'a' }, { text: 'b' }] },
  { artifact: { parts: [{ text: 'a' }] }, status: { message: { parts: [{ text: 'b' }] } } },
  { text: ['a', 'b'] }, // array items under `text`: paths end in [i], an over-count is fine
  { 'a.text': 'x', text: 'y' },
  { tool: { arguments: '{"text":"a","more":{"text":"b"}}' } },
  { tool: { arguments: '["x"]' }, text: 'y' },
  { text: `data:text/plain;base64,${b64}`, t2: { text: 'z' } },
  { data: b64, text: 'only one' },
  deep(70, { text: 'a', t: { text: 'b' } }), // past the walker's depth: handed to deep(), not leaves
  deep(62, { text: 'a', t: { text: 'b' } }),
  { signature: 'opaque', text: 'a', encrypted_content: 'x' },
];

test('textLeavesUpTo never counts fewer of two than the walker visits at .text paths', () => {
  for (const v of VALUES) {
    const real = textLeaves(v);
    const counted = textLeavesUpTo(v, 2);
    assert.ok(counted >= Math.min(2, real), `${JSON.stringify(v).slice(0, 120)}: walker ${real}, counted ${counted}`);
  }
});

test('scrubAcross: a secret split across two parts is still redacted; one part alone comes back as the same object', () => {
  const leaks: string[][] = [];
  const sc = new Scrubber([{ name: 'k', value: SECRET }]);
  const src: ScrubSource = { scrubber: () => sc, leaked: (n) => leaks.push([...n]) };
  const split = { artifact: { parts: [{ text: SECRET.slice(0, 9) }, { text: SECRET.slice(9) }] } };
  const out = scrubAcross(src, split);
  assert.ok(!JSON.stringify(out).includes(SECRET.slice(0, 9)) || !JSON.stringify(out).includes(SECRET.slice(9)), JSON.stringify(out));
  assert.deepEqual(leaks, [['k']]);
  const inArgs = { tool: { arguments: JSON.stringify({ text: SECRET.slice(0, 9), more: { text: SECRET.slice(9) } }) } };
  assert.notEqual(scrubAcross(src, inArgs), inArgs, 'a secret split across text leaves of tool arguments');
  const one = { artifact: { parts: [{ text: 'hello' }] }, id: 't1' };
  assert.equal(scrubAcross(src, one), one);
});
