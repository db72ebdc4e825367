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
