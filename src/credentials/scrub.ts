// Scrubbing: every text that goes back to an agent (bodies, stream chunks, headers, error
// messages) passes through a Scrubber built at load/rotation time from every active secret and
// its common encodings. The request path does one regex search; only a hit costs more.
//
// Overlapping secrets are handled by finding every start position (lookahead scan) and merging
// the intervals, so a secret that overlaps another one is still fully covered.
//
// A secret found in a base64 spelling inside a longer base64 run (an MCP image or blob, an A2A file
// part, a data: URL) cannot take a bracketed marker: the whole value would stop being base64 and the
// agent's SDK would reject the message (the MCP SDK checks image/audio/blob data with atob). Such a
// hit is overwritten in place with "REDACTED" letters, same length, padding kept: the value stays
// valid base64, the leak is still reported by name. A base64 spelling standing alone (an echoed
// header, "b64=...") gets the marker like any other. A stream holds back such a hit that ends its
// buffer until the next character says which it is.

export const MIN_SCRUB_LENGTH = 8;
const EMPTY: readonly string[] = Object.freeze([]);

export interface ScrubEntry {
  /** Credential name: what the marker and the leak report show. */
  name: string;
  /** The secret value itself. */
  value: string;
  /** Further exact strings to treat as this secret (e.g. base64 of "user:password" for basic auth). */
  extra?: readonly string[];
}

export interface ScrubResult { text: string; leaked: readonly string[] }

export interface StreamScrubber {
  /** Scrub one chunk; may hold back the tail (at most maxPatternLength - 1 chars) if it could start a secret. */
  push(chunk: string): string;
  /** Flush what was held back. */
  end(): string;
  /** What is held back now, as the upstream wrote it (not scrubbed): a stream resumed elsewhere starts from it. */
  readonly pending: string;
  /** Credential names seen so far in this stream. */
  readonly leaked: readonly string[];
}

type HeaderValue = string | string[] | number | undefined;

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/** Base64 substrings of `bytes` that do not depend on neighbouring bytes, for each of the 3 alignments. */
export function base64Forms(bytes: Buffer): string[] {
  // The whole encoding first (covers the padding when the secret is the whole encoded value).
  const out: string[] = [bytes.toString('base64'), bytes.toString('base64url')];
  for (let k = 0; k < 3; k++) {
    const enc = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const start = Math.ceil((8 * k) / 6);
    const end = Math.floor((8 * (bytes.length + k)) / 6);
    const stable = enc.slice(start, end);
    out.push(stable, stable.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return out;
}

/** The forms a secret may take in text: raw, base64 (std/url, any alignment), URL-encoded, JSON-escaped. */
export function secretForms(value: string): string[] {
  const forms = new Set<string>([value]);
  const bytes = Buffer.from(value, 'utf8');
  for (const f of base64Forms(bytes)) forms.add(f);
  // Its UTF-8 bytes one char per byte: how the egress door reads a binary body (a non-ASCII secret).
  forms.add(bytes.toString('latin1'));
  // Hex, as an upstream dumps bytes (Buffer#toString('hex'), a debug print): both cases. Byte
  // aligned, so the whole encoding is the only spelling.
  const hex = bytes.toString('hex');
  forms.add(hex);
  forms.add(hex.toUpperCase());
  const url = encodeURIComponent(value);
  forms.add(url);
  forms.add(url.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()));
  forms.add(url.replace(/%20/g, '+'));
  const once = JSON.stringify(value).slice(1, -1);
  forms.add(once);
  // JSON text inside a JSON string (an MCP tool returning JSON.stringify(...) as text): a secret
  // with a quote or backslash is escaped twice on the wire, and the agent's two parses undo both.
  forms.add(JSON.stringify(once).slice(1, -1));
  // Bodies passed through as the upstream wrote them may spell a secret with the JSON escapes of
  // their serializer; the agent's JSON.parse turns them back into the secret.
  for (const f of [...forms]) for (const e of jsonEscaped(f)) forms.add(e);
  return [...forms].filter((f) => f.length >= MIN_SCRUB_LENGTH);
}

const hexEscape = (c: string, upper: boolean): string => {
  const h = c.charCodeAt(0).toString(16).padStart(4, '0');
  return `\\u${upper ? h.toUpperCase() : h}`;
};

/** `s` as serializers in the wild write it inside a JSON string: PHP ('/' as '\/'), .NET System.Text.Json, Go (HTML characters), Python (non-ASCII). */
function jsonEscaped(s: string): string[] {
  return [
    s.replace(/\//g, '\\/'),
    s.replace(/[+<>&'`]|[^\x00-\x7f]/g, (c) => hexEscape(c, true)),
    s.replace(/[<>&]|[\u2028\u2029]/g, (c) => hexEscape(c, false)),
    s.replace(/[^\x00-\x7f]/g, (c) => hexEscape(c, false)),
  ].filter((e) => e !== s);
}

/** Same-length base64 text a hit inside a base64 value is overwritten with (see the top of the file). */
const FILL = 'REDACTED';
const BASE64_TEXT = /^[A-Za-z0-9+/_-]+=*$/;

/**
 * `length` filler characters (`pad` of them '=' at the end, the one before an 'A': no stray bits);
 * `phase`: how far into the hit they start (a hit cut across joined parts reads as one).
 */
function filler(length: number, pad: number, phase = 0): string {
  const n = length - pad;
  if (n <= 0) return '='.repeat(length);
  const p = phase % FILL.length;
  let s = FILL.repeat(Math.ceil((n + p) / FILL.length)).slice(p, p + n);
  if (pad > 0) s = s.slice(0, -1) + 'A';
  return s + '='.repeat(pad);
}

/** `fill`: every secret spelling in it is a base64-only one (overwritten in place when inside a base64 run). */
interface Interval { start: number; end: number; names: string[]; fill: boolean }

/** A base64 or base64url character (not '=': padding only ever follows). */
function isBase64Char(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47 || c === 45 || c === 95;
}

/**
 * Is this base64-only hit part of a longer base64 run (a character of the run right before or after
 * it, within text[lo, hi))? `before`: the character before text[lo] (a stream's previous chunk), -1 when none.
 */
function inBase64Run(text: string, iv: Interval, before: number, lo = 0, hi = text.length): boolean {
  const prev = iv.start > lo ? text.charCodeAt(iv.start - 1) : before;
  const next = iv.end < hi ? text.charCodeAt(iv.end) : -1;
  return isBase64Char(prev) || isBase64Char(next) || next === 61;
}

export class Scrubber {
  /** Exact pattern -> credential name. */
  readonly #owner: Map<string, string>;
  /** Patterns that are only ever a base64 spelling (a hit is overwritten with filler, not marked). */
  readonly #base64Only = new Set<string>();
  /** Any pattern at all (fast path: one search). */
  readonly #quick: RegExp | undefined;
  /** Every start position (slow path, only after a hit). */
  readonly #all: RegExp | undefined;
  /** First char code -> patterns starting with it (stream hold-back check). */
  readonly #byFirst: Map<number, string[]>;
  /** 1 where some pattern starts with that UTF-16 code unit: a branch-free first filter. */
  readonly #firstChar = new Uint8Array(65536);
  /** 1 where some pattern starts with that (hashed) pair of code units: filters most tail positions. */
  readonly #firstTwo = new Uint8Array(65536);
  /** Longest pattern length; a stream holds back at most this minus one. */
  readonly maxPatternLength: number;
  /** Credentials that were too short to scrub safely. */
  readonly skipped: readonly string[];

  constructor(entries: readonly ScrubEntry[]) {
    this.#owner = new Map();
    const skipped: string[] = [];
    const base64 = new Set<string>();
    const other = new Set<string>();
    for (const e of entries) {
      if (e.value.length < MIN_SCRUB_LENGTH) { skipped.push(e.name); continue; }
      for (const v of [e.value, ...(e.extra ?? [])]) {
        const b64 = new Set(base64Forms(Buffer.from(v, 'utf8')));
        for (const f of secretForms(v)) {
          if (!this.#owner.has(f)) this.#owner.set(f, e.name);
          (b64.has(f) && BASE64_TEXT.test(f) ? base64 : other).add(f);
        }
      }
    }
    for (const f of base64) if (!other.has(f)) this.#base64Only.add(f);
    this.skipped = Object.freeze(skipped);
    // Longest first, so at one position the longest secret wins over a shorter one it contains.
    const patterns = [...this.#owner.keys()].sort((a, b) => b.length - a.length);
    this.maxPatternLength = patterns[0]?.length ?? 0;
    this.#byFirst = new Map();
    for (const p of patterns) {
      const c = p.charCodeAt(0);
      this.#firstChar[c] = 1;
      this.#firstTwo[pairHash(c, p.charCodeAt(1))] = 1;
      const list = this.#byFirst.get(c);
      if (list) list.push(p); else this.#byFirst.set(c, [p]);
    }
    if (patterns.length) {
      const alt = patterns.map(escapeRegex).join('|');
      this.#quick = new RegExp(alt);
      this.#all = new RegExp(`(?=(${alt}))`, 'g');
    }
  }

  get size(): number { return this.#owner.size; }

  /** Replace every secret (in any known encoding) by [REDACTED:name]; unchanged text when none. */
  scrub(text: string): ScrubResult {
    if (!this.#quick) return { text, leaked: EMPTY };
    const first = text.search(this.#quick);
    if (first < 0) return { text, leaked: EMPTY };
    const intervals = this.#intervals(text, first);
    return { text: render(text, intervals, 0, text.length), leaked: namesOf(intervals) };
  }

  /**
   * Texts a reader joins back together (content parts, text blocks): a secret split across a
   * boundary is redacted too, its marker where it starts. The same array when nothing leaked.
   */
  scrubJoined(texts: readonly string[]): { texts: readonly string[]; leaked: readonly string[] } {
    if (!this.#quick || texts.length === 0) return { texts, leaked: EMPTY };
    const joined = texts.join('');
    const first = joined.search(this.#quick);
    if (first < 0) return { texts, leaked: EMPTY };
    const ivs = this.#intervals(joined, first);
    // A part boundary is no base64 neighbour (each part is its own value): decided once per hit.
    const ends: number[] = [];
    let total = 0;
    for (const t of texts) ends.push(total += t.length);
    const partOf = (i: number) => { let k = 0; while (ends[k] <= i) k++; return k; };
    const fills = ivs.map((iv) => {
      const k = partOf(iv.start);
      return iv.fill && inBase64Run(joined, iv, -1, k === 0 ? 0 : ends[k - 1], ends[partOf(iv.end - 1)]);
    });
    const out: string[] = [];
    let o = 0;
    for (const t of texts) {
      const end = o + t.length;
      let piece = '';
      let pos = o;
      for (let k = 0; k < ivs.length; k++) {
        const iv = ivs[k];
        if (iv.end <= o || iv.start >= end) continue;
        const to = Math.min(iv.end, end);
        // Filler covers each text's own share (every part stays valid base64); a marker stands where the secret starts.
        const from = Math.max(pos, iv.start);
        if (fills[k]) piece += joined.slice(pos, from) + filler(to - from, padOf(joined, from, to), from - iv.start);
        else if (iv.start >= pos) piece += joined.slice(pos, iv.start) + marker(iv.names);
        pos = Math.max(pos, to);
      }
      out.push(piece + joined.slice(pos, end));
      o = end;
    }
    return { texts: out, leaked: namesOf(ivs) };
  }

  /** Scrub header values (names are left alone); returns the same object when nothing leaked. */
  scrubHeaders<H extends Record<string, HeaderValue>>(headers: H): { headers: H; leaked: readonly string[] } {
    if (!this.#quick) return { headers, leaked: EMPTY };
    let out: Record<string, HeaderValue> | undefined;
    const leaked = new Set<string>();
    for (const [k, v] of Object.entries(headers)) {
      if (typeof v === 'string') {
        const r = this.scrub(v);
        if (r.leaked.length) { (out ??= { ...headers })[k] = r.text; r.leaked.forEach((n) => leaked.add(n)); }
      } else if (Array.isArray(v)) {
        const rs = v.map((x) => this.scrub(x));
        if (rs.some((r) => r.leaked.length)) {
          (out ??= { ...headers })[k] = rs.map((r) => r.text);
          rs.forEach((r) => r.leaked.forEach((n) => leaked.add(n)));
        }
      }
    }
    return out ? { headers: out as H, leaked: [...leaked] } : { headers, leaked: EMPTY };
  }

  /**
   * A scrubber for one stream; catches secrets split across chunks. `pending`: what another
   * stream scrubber of the same text held back (its `pending`), to resume that stream here.
   */
  stream(onLeak?: (names: readonly string[]) => void, pending = ''): StreamScrubber {
    return new ChunkScrubber(this, onLeak, pending);
  }

  /** @internal used by ChunkScrubber */
  scan(text: string): { intervals: Interval[]; hit: boolean } {
    if (!this.#quick) return { intervals: [], hit: false };
    const first = text.search(this.#quick);
    if (first < 0) return { intervals: [], hit: false };
    return { intervals: this.#intervals(text, first), hit: true };
  }

  /** @internal true when text[i..] is a proper prefix of some pattern (it may complete in a later chunk). */
  couldStartAt(text: string, i: number): boolean {
    const c = text.charCodeAt(i);
    if (this.#firstChar[c] === 0) return false;
    const rest = text.length - i;
    if (rest > 1 && this.#firstTwo[pairHash(c, text.charCodeAt(i + 1))] === 0) return false;
    const list = this.#byFirst.get(c);
    if (!list) return false;
    for (const p of list) {
      if (p.length <= rest) continue;
      let j = 1;
      while (j < rest && p.charCodeAt(j) === text.charCodeAt(i + j)) j++;
      if (j === rest) return true;
    }
    return false;
  }

  #intervals(text: string, from: number): Interval[] {
    const re = this.#all as RegExp;
    const out: Interval[] = [];
    re.lastIndex = from;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const v = m[1];
      const start = m.index;
      const end = start + v.length;
      const name = this.#owner.get(v) as string;
      const fill = this.#base64Only.has(v);
      const last = out[out.length - 1];
      if (last && start < last.end) {
        if (end > last.end) last.end = end;
        if (!last.names.includes(name)) last.names.push(name);
        if (!fill) last.fill = false;
      } else out.push({ start, end, names: [name], fill });
      re.lastIndex = start + 1;
    }
    return out;
  }
}

function pairHash(a: number, b: number): number {
  return ((a * 31) ^ b) & 0xffff;
}

function marker(names: readonly string[]): string {
  return `[REDACTED:${names.join(',')}]`;
}

/** How many '=' end text[start, end) (a whole-value base64 spelling's padding). */
function padOf(text: string, start: number, end: number): number {
  let n = 0;
  while (end - n > start && text.charCodeAt(end - n - 1) === 61) n++;
  return n;
}

/** text[from, to) with the intervals inside it replaced by markers (by filler inside a base64 run; `before` as for inBase64Run). */
function render(text: string, intervals: readonly Interval[], from: number, to: number, before = -1): string {
  let out = '';
  let at = from;
  for (const iv of intervals) {
    if (iv.start >= to) break;
    out += text.slice(at, iv.start) + (iv.fill && inBase64Run(text, iv, before) ? filler(iv.end - iv.start, padOf(text, iv.start, iv.end)) : marker(iv.names));
    at = iv.end;
  }
  return out + text.slice(at, to);
}

function namesOf(intervals: readonly Interval[]): string[] {
  const s = new Set<string>();
  for (const iv of intervals) for (const n of iv.names) s.add(n);
  return [...s];
}

class ChunkScrubber implements StreamScrubber {
  readonly #s: Scrubber;
  readonly #onLeak?: (names: readonly string[]) => void;
  /** Made at the first secret found (most streams have none). */
  #leaked: Set<string> | null = null;
  #pending = '';
  /** The upstream's character before the pending text (-1 at the start): a base64 hit's left neighbour. */
  #before = -1;

  constructor(s: Scrubber, onLeak?: (names: readonly string[]) => void, pending = '') {
    this.#s = s;
    this.#onLeak = onLeak;
    this.#pending = pending;
  }

  get leaked(): readonly string[] { return this.#leaked === null ? [] : [...this.#leaked]; }

  get pending(): string { return this.#pending; }

  push(chunk: string): string {
    const hold = this.#s.maxPatternLength - 1;
    if (hold < 0) return chunk;
    const buf = this.#pending ? this.#pending + chunk : chunk;
    const { intervals } = this.#s.scan(buf);
    // Every pattern starting before `pos` fits inside buf, so the scan saw it whole.
    let pos = Math.max(0, buf.length - hold);
    let k = 0;
    for (; k < intervals.length && intervals[k].start < pos; k++) if (intervals[k].end > pos) pos = intervals[k].end;
    // From pos on, emit until the first position that could begin a secret completed by later chunks.
    let cut = buf.length;
    // A complete match there may still be the prefix of a longer secret: then hold from its start.
    for (let i = pos; i < buf.length; i++) {
      while (k < intervals.length && intervals[k].end <= i) k++;
      if (this.#s.couldStartAt(buf, i)) {
        const iv = intervals[k];
        cut = iv && iv.start <= i ? iv.start : i;
        break;
      }
    }
    // A base64 hit that ends the buffer: whether it is inside a base64 run depends on what comes next.
    let last = -1;
    while (last + 1 < intervals.length && intervals[last + 1].start < cut) last++;
    if (last >= 0 && intervals[last].fill && intervals[last].end >= buf.length) cut = intervals[last].start;
    const before = this.#before;
    this.#pending = buf.slice(cut);
    if (cut > 0) this.#before = buf.charCodeAt(cut - 1);
    if (!intervals.length) return cut === buf.length ? buf : buf.slice(0, cut);
    const emitted = intervals.filter((iv) => iv.start < cut);
    this.#report(emitted);
    return render(buf, emitted, 0, cut, before);
  }

  end(): string {
    const rest = this.#pending;
    this.#pending = '';
    if (!rest) return '';
    const { intervals } = this.#s.scan(rest);
    this.#report(intervals);
    return render(rest, intervals, 0, rest.length, this.#before);
  }

  #report(intervals: readonly Interval[]): void {
    if (!intervals.length) return;
    const names = namesOf(intervals);
    const leaked = this.#leaked ??= new Set();
    for (const n of names) leaked.add(n);
    this.#onLeak?.(names);
  }
}
