// Reasoning across blocks: a reader joins an answer's thinking texts (Claude's thinking blocks, an
// OpenAI reasoning item's summary parts), so a credential an upstream cut across two of them is
// redacted where it starts, streamed (the held tail carries on past the boundary's events) and
// whole (test/leak-hunt.test.ts has the end-to-end rows: thinking and reasoning, split-parts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEventScrubber } from '../src/access/scrub-events.ts';
import { Scrubber } from '../src/credentials/scrub.ts';
import type { StreamEvent } from '../src/providers/types.ts';

const SECRET = 'sk-live-4f9a8b7c6d5e4f3a2b1c';
const scrubber = new Scrubber([{ name: 'openai-key', value: SECRET }]);

function scrubEvents(evs: StreamEvent[]): StreamEvent[] {
  const s = createEventScrubber(() => scrubber.stream(), (texts) => scrubber.scrubJoined(texts).texts);
  const out = [...evs.flatMap((e) => [...s.push(e)]), ...s.end()];
  for (const e of out) assert.ok(!(e.type === 'thinking' && e.text === ''), 'no empty thinking event');
  return out;
}

/** Each thinking block's text (a block opens at thinking_start), and the event kinds in order (runs of one kind as one). */
function blocks(evs: StreamEvent[]): { texts: string[]; kinds: string[] } {
  const texts: string[] = [];
  for (const e of evs) {
    if (e.type === 'thinking_start') texts.push('');
    else if (e.type === 'thinking') texts[texts.length - 1] += e.text;
  }
  return { texts, kinds: evs.map((e) => e.type).filter((k, i, all) => k !== all[i - 1]) };
}

const claude = (a: string, b: string): StreamEvent[] => [
  { type: 'start', id: 'msg', model: 'claude' },
  { type: 'thinking_start' }, { type: 'thinking', text: a }, { type: 'thinking_signature', signature: 'sig-1' },
  { type: 'thinking_start' }, { type: 'thinking', text: b }, { type: 'thinking_signature', signature: 'sig-2' },
  { type: 'text', text: 'ok' }, { type: 'finish', reason: 'stop' },
];

test('two Claude thinking blocks with a credential cut between them: redacted in the first, where it starts; each block keeps its events and signature in place', () => {
  for (const cut of [1, 9, SECRET.length - 1]) {
    const out = scrubEvents(claude(`the key is ${SECRET.slice(0, cut)}`, `${SECRET.slice(cut)} and more`));
    const { texts, kinds } = blocks(out);
    assert.deepEqual(texts, ['the key is [REDACTED:openai-key]', ' and more'], `cut at ${cut}`);
    assert.deepEqual(kinds, ['start', 'thinking_start', 'thinking', 'thinking_signature', 'thinking_start', 'thinking', 'thinking_signature', 'text', 'finish']);
    assert.deepEqual(out.filter((e) => e.type === 'thinking_signature'), [{ type: 'thinking_signature', signature: 'sig-1' }, { type: 'thinking_signature', signature: 'sig-2' }]);
  }
});

test('a held tail that no secret follows goes back to its own block, unchanged; so does the next block\'s text', () => {
  const out = scrubEvents(claude('thinking about sk-live', '-ness of keys'));
  assert.deepEqual(blocks(out).texts, ['thinking about sk-live', '-ness of keys']);
  const plain = scrubEvents(claude('nothing held', 'here'));
  assert.deepEqual(blocks(plain).texts, ['nothing held', 'here']);
  assert.deepEqual(blocks(plain).kinds, blocks(out).kinds);
});

test('the next block streams its half of the secret in several deltas: the boundary waits until the secret is whole', () => {
  const evs: StreamEvent[] = [
    { type: 'thinking_start' }, { type: 'thinking', text: `key ${SECRET.slice(0, 5)}` }, { type: 'thinking_signature', signature: 's1' },
    { type: 'thinking_start' }, { type: 'thinking', text: SECRET.slice(5, 12) }, { type: 'thinking', text: SECRET.slice(12, 20) },
    { type: 'thinking', text: `${SECRET.slice(20)} done` }, { type: 'thinking_signature', signature: 's2' }, { type: 'finish', reason: 'stop' },
  ];
  const out = scrubEvents(evs);
  assert.deepEqual(blocks(out).texts, ['key [REDACTED:openai-key]', ' done']);
  assert.deepEqual(blocks(out).kinds, ['thinking_start', 'thinking', 'thinking_signature', 'thinking_start', 'thinking', 'thinking_signature', 'finish']);
});

test('an OpenAI reasoning item\'s two summary parts with a credential cut between them: redacted in the first part; the item\'s end after both', () => {
  const item = { id: 'rs_1', type: 'reasoning', summary: [], encrypted_content: 'gAAA' };
  const out = scrubEvents([
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: `first ${SECRET.slice(0, 14)}` },
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: `${SECRET.slice(14)} second` },
    { type: 'reasoning_item', item }, { type: 'text', text: 'ok' }, { type: 'finish', reason: 'stop' },
  ]);
  assert.deepEqual(blocks(out).texts, ['first [REDACTED:openai-key]', ' second']);
  assert.deepEqual(blocks(out).kinds, ['thinking_start', 'thinking', 'thinking_start', 'thinking', 'reasoning_item', 'text', 'finish']);
});

test('a held tail whose next block never comes (a text block, the stream\'s end) is released before it, in its own block', () => {
  const out = scrubEvents([
    { type: 'thinking_start' }, { type: 'thinking', text: `key ${SECRET.slice(0, 5)}` }, { type: 'thinking_signature', signature: 's1' },
    { type: 'text', text: SECRET.slice(5) }, { type: 'finish', reason: 'stop' },
  ]);
  assert.deepEqual(blocks(out).texts, ['key sk-li']);
  assert.deepEqual(blocks(out).kinds, ['thinking_start', 'thinking', 'thinking_signature', 'text', 'finish']);
  const cut = scrubEvents([{ type: 'thinking_start' }, { type: 'thinking', text: `key ${SECRET.slice(0, 5)}` }, { type: 'thinking_signature', signature: 's1' }]);
  assert.deepEqual(blocks(cut), { texts: ['key sk-li'], kinds: ['thinking_start', 'thinking', 'thinking_signature'] }, 'the stream\'s end releases the waiting signature too');
});

test('a credential spanning a whole middle block of three (the end of the first, all of the second, the start of the third): redacted in the first, each block\'s events in place', () => {
  const three = (a: string, b: string, c: string): StreamEvent[] => [
    { type: 'start', id: 'msg', model: 'claude' },
    { type: 'thinking_start' }, { type: 'thinking', text: a }, { type: 'thinking_signature', signature: 'sig-1' },
    { type: 'thinking_start' }, { type: 'thinking', text: b }, { type: 'thinking_signature', signature: 'sig-2' },
    { type: 'thinking_start' }, { type: 'thinking', text: c }, { type: 'thinking_signature', signature: 'sig-3' },
    { type: 'text', text: 'ok' }, { type: 'finish', reason: 'stop' },
  ];
  const KINDS = ['start', 'thinking_start', 'thinking', 'thinking_signature', 'thinking_start', 'thinking', 'thinking_signature', 'thinking_start', 'thinking', 'thinking_signature', 'text', 'finish'];
  for (const [i, j] of [[1, 2], [5, 20], [9, SECRET.length - 1], [1, SECRET.length - 1]]) {
    const out = scrubEvents(three(`the key is ${SECRET.slice(0, i)}`, SECRET.slice(i, j), `${SECRET.slice(j)} and more`));
    const { texts, kinds } = blocks(out);
    assert.deepEqual(texts, ['the key is [REDACTED:openai-key]', '', ' and more'], `cut at ${i}, ${j}: the middle block is all secret (no text of its own left)`);
    assert.deepEqual(kinds.filter((k) => k !== 'thinking'), KINDS.filter((k) => k !== 'thinking'), `cut at ${i}, ${j}`);
    assert.deepEqual(out.filter((e) => e.type === 'thinking_signature').map((e) => (e as { signature: string }).signature), ['sig-1', 'sig-2', 'sig-3']);
  }
  // Held text in three blocks that no secret completes: each goes back to its own block, unchanged.
  const plain = scrubEvents(three('about sk-li', 've-', 'ness'));
  assert.deepEqual(blocks(plain).texts, ['about sk-li', 've-', 'ness']);
  assert.deepEqual(blocks(plain).kinds, KINDS);
});

test('a credential across four summary parts of one reasoning item, the middle two each a piece of it: redacted in the first part', () => {
  const out = scrubEvents([
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: `first ${SECRET.slice(0, 4)}` },
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: SECRET.slice(4, 10) },
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: SECRET.slice(10, 18) },
    { type: 'thinking_start', id: 'rs_1' }, { type: 'thinking', text: `${SECRET.slice(18)} last` },
    { type: 'reasoning_item', item: { id: 'rs_1', type: 'reasoning', summary: [] } }, { type: 'finish', reason: 'stop' },
  ]);
  assert.deepEqual(blocks(out).texts, ['first [REDACTED:openai-key]', '', '', ' last']);
  assert.deepEqual(out.filter((e) => e.type !== 'thinking').map((e) => e.type), ['thinking_start', 'thinking_start', 'thinking_start', 'thinking_start', 'reasoning_item', 'finish']);
});

test('every way of cutting a credential across four thinking blocks: the joined thinking is the text with one marker where the credential was', () => {
  const n = SECRET.length;
  for (let i = 1; i < n - 1; i++) for (let j = i; j < n; j++) for (let k = j; k < n; k++) {
    const texts = [`a ${SECRET.slice(0, i)}`, SECRET.slice(i, j), SECRET.slice(j, k), `${SECRET.slice(k)} z`];
    const out = scrubEvents(texts.flatMap((t, b): StreamEvent[] => [{ type: 'thinking_start' }, ...(t ? [{ type: 'thinking' as const, text: t }] : []), { type: 'thinking_signature', signature: `s${b}` }]));
    const joined = blocks(out).texts.join('');
    assert.equal(joined, 'a [REDACTED:openai-key] z', `cuts ${i} ${j} ${k}`);
    assert.equal(out.filter((e) => e.type === 'thinking_start').length, 4);
  }
});
