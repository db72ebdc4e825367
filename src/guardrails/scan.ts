// Small helpers shared by the detectors. Regexes are module-level constants compiled once; the
// scan loop resets lastIndex itself, which is safe because scanning is synchronous.
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

export function countDigits(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) { const c = s.charCodeAt(i); if (c >= 48 && c <= 57) n++; }
  return n;
}

export function onlyDigits(s: string): string {
  return s.replace(/\D+/g, '');
}
