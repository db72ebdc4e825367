// Operator-written patterns (`Guardrail.spec.regex`, `json_schema` `pattern`) run on V8's linear-time regexp engine (the
// `l` flag): however a pattern is written, scanning costs time proportional to the text, never
// the seconds a backtracking pattern like `(a+)+b` can take on a crafted prompt. The engine sits
// behind a V8 flag, set here before the first compile, so every entry point (npm start,
// bin/aam.js, aam validate, tests, benchmarks) gets it by loading config or the guardrail engine.
// Patterns the engine cannot run are refused at config load with the reason and a rewrite.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--enable-experimental-regexp-engine');
// Patterns compiled by code aam does not own (CEL's matches() does `new RegExp(p)` per call) run on
// the backtracking engine; with this flag V8 re-runs one on the linear engine after 50,000
// backtracks, when the engine supports it: `when:` patterns are checked at load to be such.
// It costs the backtracking engine a counter per backtrack only: the scrubber and the detectors
// measured the same CPU with and without it (2026-12-07, 12 interleaved runs each, paired medians
// 1.008 and 0.949, spread 0.6-1.9 at load 15-19), so it stays as the bound on CEL's patterns.
setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');

/** False on a Node.js whose V8 lacks the engine: user patterns are then refused, never run unbounded. */
const LINEAR_ENGINE = ((): boolean => {
  try {
    return new RegExp('a', 'l').flags.includes('l');
  } catch {
    return false;
  }
})();

/** `\p{` or `\P{` after an even number of other backslashes (an escape, not a literal backslash). */
const PROPERTY_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\[pP]\{/;

/** Why the linear engine refused a pattern that is otherwise valid, with the way around it. */
function unsupported(src: string): string {
  if (/\\[1-9]|\\k</.test(src)) return 'it uses a backreference (\\1, \\k<name>); match the text without referring back to a group';
  if (/\(\?<?[=!]/.test(src)) return 'it uses a lookahead or lookbehind ((?=, (?!, (?<=, (?<!); match the surrounding text instead, or use \\b for word boundaries';
  if (/\(\?[a-z-]+:/.test(src)) return 'it uses inline flags such as (?i:...); spell out both cases, e.g. [Aa][Cc][Mm][Ee]';
  if (/\\[pP]\{/.test(src)) return 'it uses a Unicode property escape (\\p{...}), which needs the u flag the engine lacks; list the characters or ranges instead';
  const big = [...src.matchAll(/\{(\d+)(?:,(\d*))?\}/g)].find((m) => Number(m[1]) > 16 || Number(m[2] || 0) > 16);
  if (big !== undefined) return `it repeats ${big[0]}: counted repetitions above 16, or nested counts whose product is above 16, are not supported; split them (\\d{20} as \\d{16}\\d{4}) or use + / *`;
  return 'it uses a construct the linear-time engine does not support (backreferences, lookaround, inline flags, \\p{...} or large counted repetitions)';
}

/**
 * Compile one pattern to run in linear time (global by default, for scanning; '' for `test`). The
 * engine has no `u` or `i` flag, so `\p{...}` and case folding are refused like the rest.
 * The error says what is wrong and how to fix it.
 */
export function compileLinearRegex(src: string, flags = 'g'): RegExp {
  try {
    new RegExp(src, flags);
  } catch (err) {
    throw new Error(`is not a valid regular expression (${(err as Error).message}); fix or remove it`);
  }
  // Without the u flag `\p{L}` would silently mean the letters "p{L}": refuse it instead.
  if (PROPERTY_ESCAPE.test(src)) throw new Error(`cannot run in linear time: ${unsupported(src)}`);
  if (!LINEAR_ENGINE) {
    throw new Error('cannot be used: this Node.js has no linear-time regexp engine (V8 --enable-experimental-regexp-engine) and patterns never run on the backtracking engine; run aam on Node.js 24 or remove the pattern');
  }
  try {
    return new RegExp(src, `${flags}l`);
  } catch {
    throw new Error(`cannot run in linear time: ${unsupported(src)}`);
  }
}
