// A lower bound of the characters the guardrail walker will scan in a chat request, counted on
// the raw body bytes while they arrive, so a body whose message text alone is over a blocking
// guardrail's scan budget (max_scan_chars) is refused before it is read whole, decoded and
// parsed: those steps, not the detectors, are what holds the event loop for a 10 MB body.
//
// Sound by construction: only text the walker is certain to scan counts (message text as the
// parsers keep it, not under the keys the walker skips or decodes, not `data:` URLs), and each
// counted character is at most one UTF-16 unit of the decoded string. So a refusal here is one
// the walker would have made after parsing; everything else is left to the walker.
import { walkerMaySkip } from './structured.ts';

/** Which string values count, by their key path (`#` for an array element). */
export type TextShape = 'openai-chat' | 'anthropic-messages' | 'openai-responses' | 'a2a-jsonrpc' | 'a2a-rest';

export interface TextCounter {
  /** Feed the next body bytes; returns the characters counted so far. */
  feed(chunk: Buffer): number;
}

interface Frame { array: boolean; key: string; expectKey: boolean }

const KEY_MAX = 64;

export function createTextCounter(shape: TextShape): TextCounter {
  const counts = COUNTS[shape];
  const frames: Frame[] = [];
  let total = 0;
  // 0 outside a string, 1 in a string, 2 after a backslash, 3..6 hex digits of \uXXXX left + 2
  let state = 0;
  let inKey = false;
  let key = '';
  let counting = false; // this string value counts
  let head = ''; // first characters of a counted value, to recognise `data:` before counting it
  let pending = 0; // characters of `head`, counted once the value is known not to be a data: URL

  const char = (byte: number): void => {
    if (inKey) { if (key.length <= KEY_MAX) key += String.fromCharCode(byte); return; }
    if (!counting) return;
    if (pending < 5) {
      head += String.fromCharCode(byte);
      if (++pending === 5) {
        if (head === 'data:') counting = false;
        else total += pending;
      }
      return;
    }
    total++;
  };

  // An escape sequence: one character. Within a value's first five it could spell `data:`;
  // rather than decode it, such a value is not counted (the bound stays a lower bound).
  const escaped = (): void => {
    if (inKey) { key += '\\'; return; }
    if (counting && pending < 5) counting = false;
    else if (counting) total++;
  };

  const endString = (): void => {
    if (inKey) { const f = frames[frames.length - 1]; if (f) f.key = key; inKey = false; return; }
    if (counting && pending < 5) total += pending; // a short value: never a data: URL
    counting = false;
  };

  const startString = (): void => {
    const f = frames[frames.length - 1];
    if (f && !f.array && f.expectKey) { inKey = true; key = ''; return; }
    counting = f !== undefined && counts(frames);
    head = '';
    pending = 0;
  };

  return {
    feed(chunk: Buffer): number {
      // Next quote and backslash in this chunk (-2: not looked up yet, -1: none), found natively.
      let quote = -2, slash = -2;
      for (let i = 0; i < chunk.length; i++) {
        if (state === 1 && !inKey && (!counting || pending >= 5)) {
          // Plain string content up to the next quote or backslash: only its characters are counted
          // (what char() does byte by byte there), so skip to it; a byte loop cost ~8 ms per MB.
          if (quote !== -1 && quote < i) quote = chunk.indexOf(0x22, i);
          if (slash !== -1 && slash < i) slash = chunk.indexOf(0x5c, i);
          const stop = Math.min(quote < 0 ? chunk.length : quote, slash < 0 ? chunk.length : slash);
          if (counting) for (let j = i; j < stop; j++) if ((chunk[j] & 0xc0) !== 0x80) total++;
          if (stop === chunk.length) break;
          i = stop;
        }
        const b = chunk[i];
        if (state === 1) {
          if (b === 0x22) { state = 0; endString(); }
          else if (b === 0x5c) state = 2;
          else if ((b & 0xc0) !== 0x80) char(b); // a UTF-8 lead byte or ASCII: one character (or more)
        } else if (state === 2) {
          if (b === 0x75) state = 6; // \u: four hex digits follow
          else { state = 1; escaped(); }
        } else if (state > 2) {
          if (--state === 2) { state = 1; escaped(); }
        } else if (b === 0x22) { state = 1; startString(); }
        else if (b === 0x7b || b === 0x5b) frames.push({ array: b === 0x5b, key: b === 0x5b ? '#' : '', expectKey: b === 0x7b });
        else if (b === 0x7d || b === 0x5d) frames.pop();
        else if (b === 0x3a) { const f = frames[frames.length - 1]; if (f) f.expectKey = false; }
        else if (b === 0x2c) { const f = frames[frames.length - 1]; if (f && !f.array) f.expectKey = true; }
      }
      return total;
    },
  };
}

/**
 * The key the walker judges a string by: an array's elements are walked under the array's own key
 * (mapLeaves), so `{"data": ["<base64>"]}` is skipped as `data`, not counted as an element.
 */
function leafKey(frames: readonly Frame[]): string {
  for (let i = frames.length - 1; i >= 0; i--) if (!frames[i].array) return frames[i].key;
  return '';
}

/** Every string the walker scans as it is, under the top-level `root` (a value kept as sent, walked whole). */
function walkedUnder(root: string): (frames: readonly Frame[]) => boolean {
  return (frames) => {
    if (frames.length < 2 || frames[0].key !== root) return false;
    const k = leafKey(frames);
    return !walkerMaySkip(k) && !k.includes('\\'); // an escaped key might spell one the walker skips
  };
}

/** OpenAI chat: messages are kept as sent, so every string in them is walked but for the walker's skips. */
const openaiCounts = walkedUnder('messages');

/**
 * Anthropic messages are converted; count only what the converter keeps verbatim: a message's
 * string content and the `text` of its content blocks (also inside tool_result blocks).
 */
function anthropicCounts(f: readonly Frame[]): boolean {
  const n = f.length;
  if (n < 3 || f[0].key !== 'messages' || f[1].key !== '#') return false;
  const k = f[n - 1].key;
  if (n === 3) return k === 'content'; // messages[i].content: "..."
  if (f[2].key !== 'content' || f[3].key !== '#') return false;
  if (n === 5) return k === 'text' || k === 'content'; // a block's text; a tool_result's string content
  return n === 7 && f[4].key === 'content' && f[5].key === '#' && k === 'text'; // text blocks in a tool_result
}

/**
 * Responses: `input` and `instructions` given as strings, and a message item's string `content`,
 * become message text verbatim (part arrays are left to the walker: some item types are dropped).
 */
function responsesCounts(f: readonly Frame[]): boolean {
  const n = f.length;
  if (n === 1) return f[0].key === 'input' || f[0].key === 'instructions';
  return n === 3 && f[0].key === 'input' && f[1].key === '#' && f[2].key === 'content';
}

/**
 * A2A: a JSON-RPC call's `params` are guarded as sent; an HTTP+JSON SendMessage's body becomes the
 * params with the path's ids laid over it, so only its `message` (which no path sets) counts.
 */
const COUNTS: Readonly<Record<TextShape, (frames: readonly Frame[]) => boolean>> = {
  'openai-chat': openaiCounts, 'anthropic-messages': anthropicCounts, 'openai-responses': responsesCounts,
  'a2a-jsonrpc': walkedUnder('params'), 'a2a-rest': walkedUnder('message'),
};
