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

export function fold(text: string): Folded {
  if (ASCII.test(text)) return { text: text.toLowerCase(), map: null };
  let out = '';
  const map: number[] = [];
  for (let i = 0; i < text.length;) {
    const cp = text.codePointAt(i) ?? 0;
    const w = cp > 0xffff ? 2 : 1;
    const ch = text.slice(i, i + w);
    const f = cp < 0x80 ? ch.toLowerCase() : foldChar(ch);
    for (let k = 0; k < f.length; k++) map.push(i);
    out += f;
    i += w;
  }
  return { text: out, map: Int32Array.from(map) };
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
    while (end < text.length && IS_MARK.test(text[end])) end++;
    return { category: 'keyword', start, end };
  });
}
