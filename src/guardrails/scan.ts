// Small helpers shared by the detectors. Regexes are module-level constants compiled once; the
// scan loop resets lastIndex itself, which is safe because scanning is synchronous.
//
// Linear time, by construction: every detector regex is either bounded (each quantifier has a
// small maximum, so one match attempt does constant work) or has at most one possible start per
// run of the characters it repeats (a literal prefix, or a lookbehind that fails inside the run)
// and no two adjacent quantifiers that can match the same character, so an attempt costs O(run)
// and runs do not overlap. Shapes that cannot be written that way are hand-written scanners.
// test/guardrails-linear.test.ts checks every detector against long hostile runs.
import type { Category, Finding } from './types.ts';

/** Run a global regex over text and keep the matches `accept` returns a finding for. */
export function scan(re: RegExp, text: string, out: Finding[], accept: (m: RegExpExecArray) => Finding | null): void {
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m[0].length === 0) { re.lastIndex++; continue; }
    const f = accept(m);
    if (f !== null) out.push(f);
  }
}

export function finding(category: Category, start: number, end: number, kind?: string): Finding {
  return kind === undefined ? { category, start, end } : { category, start, end, kind };
}

/** Up to `n` characters before `start`, the window context rules look at. */
export function before(text: string, start: number, n: number): string {
  return text.slice(Math.max(0, start - n), start);
}

/**
 * A context rule (a regex anchored at `$`) on the `n` characters before `start`. Every context rule
 * needs a word, '#' or '§', so a window of only digits and separators (dense numbers) skips it.
 */
export function inContext(re: RegExp, text: string, start: number, n: number): boolean {
  const from = Math.max(0, start - n);
  for (let i = from; i < start; i++) {
    const c = text.charCodeAt(i);
    if (isLetter(c) || c === 35 || c >= 0x80) return re.test(text.slice(from, start));
  }
  return false;
}

export function countDigits(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c >= 48 && c <= 57) n++; }
  return n;
}

export function onlyDigits(s: string): string {
  return s.replace(/\D+/g, '');
}

/** Character tests on UTF-16 code units (NaN, past either end of the text, is none of them). */
export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

export function isLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

export function isAlnum(c: number): boolean {
  return isDigit(c) || isLetter(c);
}

/** Regex `\w` without the u flag. */
export function isWord(c: number): boolean {
  return isAlnum(c) || c === 95;
}

/** Regex `\s`: ASCII whitespace plus the Unicode space separators, line separators and BOM. */
export function isSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 0xa0) return false;
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029
    || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}
