// The chunks of one streamed answer differ only in their text: `{"id":..,"choices":[{"delta":
// {"content":"Hello"},..}]}` (OpenAI), `{"type":"content_block_delta",..,"text":"Hello"}}`
// (Anthropic), `{"candidates": [{"content": {"parts": [{"text": "Hello"}]..` (Gemini), again and
// again. After one such chunk has been parsed whole, a next one that is byte-identical around its
// text string is read by comparing that frame and decoding the one string, instead of JSON.parse
// of the whole chunk (most of a stream's parsing CPU, and ~10 objects of garbage per chunk).
// Anything else is parsed whole as before.

/**
 * The bytes before and after the content string of a chunk parsed whole. `pad`: the chunk ended
 * in OpenAI's `,"obfuscation":"..."}` (random padding, different in every chunk), which `tail`
 * leaves out and a match accepts with any plain value.
 */
export interface ChunkTemplate { readonly head: string; readonly tail: string; readonly pad: boolean }

const PAD = ',"obfuscation":"';

/**
 * The frame around `data`'s one `"<key>":"..."` string (`content` unless told), when that string
 * decodes to `content` (the value JSON.parse found at the slot the caller reads), else null.
 * Spaces after the colon (Gemini writes `"text": "..."`) belong to the frame.
 */
export function learnTemplate(data: string, content: string, key = 'content'): ChunkTemplate | null {
  const name = `"${key}"`;
  const at = data.indexOf(name);
  // One such key only, so the slot found is the one JSON.parse read.
  if (at < 0 || data.indexOf(name, at + 1) !== -1) return null;
  let start = at + name.length;
  while (data.charCodeAt(start) === 32) start++;
  if (data.charCodeAt(start) !== 58) return null; // ':'
  start++;
  while (data.charCodeAt(start) === 32) start++;
  const end = literalEnd(data, start);
  if (end < 0 || decodeLiteral(data, start, end) !== content) return null;
  const padAt = data.lastIndexOf(PAD);
  const pad = padAt > end && plainPadFrom(data, padAt + PAD.length);
  return { head: data.slice(0, start), tail: data.slice(end, pad ? padAt : data.length), pad };
}

/** Frames learned per stream at most: an upstream whose every chunk differs stops trying. */
const TEMPLATES_PER_STREAM = 4;

/**
 * One stream's template (a parser holds one): the frame of the last text-only chunk parsed whole,
 * and the SSE event name it came with (a match needs the same one: some parsers read it).
 */
export class StreamTemplate {
  private tpl: ChunkTemplate | null = null;
  private event: string | undefined = undefined;
  private learned = 0;
  private readonly key: string;

  constructor(key: string) { this.key = key; }

  /** The text of a chunk in the learned frame, else null (parse it whole). */
  match(data: string, event: string | undefined): string | null {
    return this.tpl === null || event !== this.event ? null : matchTemplate(this.tpl, data);
  }

  /** Whether a chunk parsed whole should be offered to learn(). */
  get open(): boolean { return this.learned < TEMPLATES_PER_STREAM; }

  /** `data`, parsed whole, had text `text` as its only effect: its frame becomes the template (true if it did). */
  learn(data: string, event: string | undefined, text: string): boolean {
    const t = learnTemplate(data, text, this.key);
    if (t === null) return false;
    this.tpl = t;
    this.event = event;
    this.learned++;
    return true;
  }
}

/**
 * The content string of `data` when it is the template's frame around one JSON string literal,
 * else null (the caller then parses it whole). Equal frames around another valid literal are
 * the same JSON value but for that string.
 */
export function matchTemplate(t: ChunkTemplate, data: string): string | null {
  const start = t.head.length;
  // lastIndexOf(x, 0) compares at one place only; startsWith on the parser's sliced strings ran
  // 4x slower after warm-up (V8 12/13 here).
  if (data.lastIndexOf(t.head, 0) !== 0) return null;
  const end = literalEnd(data, start);
  if (end < 0 || data.indexOf(t.tail, end) !== end) return null;
  const after = end + t.tail.length;
  if (t.pad ? data.indexOf(PAD, after) !== after || !plainPadFrom(data, after + PAD.length) : after !== data.length) return null;
  return decodeLiteral(data, start, end);
}

/** data[from..] is the rest of a padding value and the chunk's end: plain characters, then `"}`. */
function plainPadFrom(data: string, from: number): boolean {
  const last = data.length - 2;
  if (last < from || data.charCodeAt(last) !== 34 || data.charCodeAt(last + 1) !== 125) return false;
  for (let i = from; i < last; i++) {
    const c = data.charCodeAt(i);
    if (c === 34 || c === 92 || c < 32) return false;
  }
  return true;
}

/** Index just past the JSON string literal that starts at `start`; -1 if none (or it holds raw control characters). */
function literalEnd(s: string, start: number): number {
  if (s.charCodeAt(start) !== 34) return -1;
  for (let i = start + 1; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) return i + 1;
    if (c === 92) i++; // the escaped character is skipped; JSON.parse checks the escape below
    else if (c < 32) return -1;
  }
  return -1;
}

/** The value of the literal s[start, end); null when an escape in it is not valid JSON. */
function decodeLiteral(s: string, start: number, end: number): string | null {
  const bs = s.indexOf('\\', start);
  if (bs < 0 || bs >= end) return s.slice(start + 1, end - 1);
  try {
    const v: unknown = JSON.parse(s.slice(start, end));
    return typeof v === 'string' ? v : null;
  } catch {
    return null;
  }
}
