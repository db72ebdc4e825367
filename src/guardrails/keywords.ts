// Keyword blocklists: case- and diacritic-insensitive, whole words only. Text is folded
// (NFD, combining marks dropped, lower-cased) with a map back to original offsets, so a match
// on "Projèct FALCON" redacts exactly those original characters.
import type { Finding } from './types.ts';
import { scan } from './scan.ts';

const MARKS = /\p{M}+/gu;
const IS_MARK = /^\p{M}$/u;
const ASCII = /^[\x00-\x7f]*$/;

export interface Folded {
  text: string;
  /** Original UTF-16 offset of each folded code unit; null when folding kept offsets (ASCII). */
  map: Int32Array | null;
}

export function foldChar(c: string): string {
  return c.normalize('NFD').replace(MARKS, '').toLowerCase();
}

/**
 * Fold text for keyword matching, with the original offset of every folded code unit. Written into
 * typed arrays, with each distinct non-ASCII character folded once per call: building strings one
 * character at a time cost ~200 us per KB of non-ASCII text.
 */
export function fold(text: string): Folded {
  if (ASCII.test(text)) return { text: text.toLowerCase(), map: null };
  const folds = new Map<number, string>();
  let units = new Uint16Array(text.length + 16);
  let map = new Int32Array(text.length + 16);
  let n = 0;
  for (let i = 0; i < text.length;) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      units[n] = c >= 65 && c <= 90 ? c + 32 : c;
      map[n++] = i++;
      continue;
    }
    const cp = c >= 0xd800 && c <= 0xdbff ? text.codePointAt(i)! : c;
    const w = cp > 0xffff ? 2 : 1;
    let f = folds.get(cp);
    if (f === undefined) folds.set(cp, f = foldChar(text.slice(i, i + w)));
    // Room for this fold and one unit per remaining input unit.
    const need = n + f.length + (text.length - i);
    if (need > units.length) {
      units = grown(units, new Uint16Array(need * 2));
      map = grown(map, new Int32Array(need * 2));
    }
    for (let k = 0; k < f.length; k++) {
      units[n] = f.charCodeAt(k);
      map[n++] = i;
    }
    i += w;
  }
  return { text: fromUnits(units.subarray(0, n)), map: map.subarray(0, n) };
}

function grown<T extends Uint16Array | Int32Array>(from: T, to: T): T {
  to.set(from);
  return to;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** UTF-16 code units to a string, lone surrogates kept (TextDecoder would replace them). */
function fromUnits(units: Uint16Array): string {
  if (LITTLE_ENDIAN) return Buffer.from(units.buffer, units.byteOffset, units.byteLength).toString('utf16le');
  const parts: string[] = [];
  for (let k = 0; k < units.length; k += 8192) parts.push(String.fromCharCode.apply(null, Array.from(units.subarray(k, k + 8192))));
  return parts.join('');
}

/** One regex for the whole list; longest keywords first so "project falcon x" beats "project falcon". */
export function compileKeywords(keywords: readonly string[]): RegExp | null {
  const alts = keywords
    .map((k) => foldChar(k.trim()))
    .filter((k) => k.length > 0)
    .sort((a, b) => b.length - a.length)
    .map((k) => k.split(/\s+/).map((w) => w.replace(/[.*+?^${}()|[\]\\\/-]/g, '\\$&')).join('\\s+'));
  if (alts.length === 0) return null;
  return new RegExp(`(?<![\\p{L}\\p{N}_])(?:${alts.join('|')})(?![\\p{L}\\p{N}_])`, 'gu');
}

/** Keyword findings in original offsets (trailing combining marks included in the span). */
export function findKeywords(re: RegExp, text: string, folded: Folded = fold(text)): Finding[] {
  const raw: Finding[] = [];
  scan(re, folded.text, raw, (m) => ({ category: 'keyword', start: m.index, end: m.index + m[0].length }));
  const map = folded.map;
  if (map === null) return raw;
  return raw.map((f) => {
    const start = map[f.start];
    const lastStart = map[f.end - 1];
    let end = lastStart + (text.codePointAt(lastStart)! > 0xffff ? 2 : 1);
    // Combining marks start at U+0300: the cheap test first.
    while (end < text.length && text.charCodeAt(end) >= 0x300 && IS_MARK.test(text[end])) end++;
    return { category: 'keyword', start, end };
  });
}
