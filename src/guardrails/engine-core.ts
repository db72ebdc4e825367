// Guardrail engine core: compile a Guardrail resource once (regexes, keyword list, schema), then
// apply a list of compiled guardrails to text as a pure function. Block wins over redact over
// flag; redaction swaps each finding for a typed marker; summaries carry categories and counts,
// never the matched values.
import type { GuardrailSpec } from '../config/schema.ts';
import { compileLinearRegex } from '../config/linear-regex.ts';
import { DETECTORS, resolveOverlaps } from './detectors.ts';
import { compileSchema, type Validator } from './json-schema.ts';
import { compileKeywords, findKeywords, fold, type Folded } from './keywords.ts';
import { finding, scan } from './scan.ts';
import type { Action, Category, DetectorName, Direction, Finding, FindingSummary, Verdict } from './types.ts';

export { finding } from './scan.ts';
export { validateSchema as validate } from './json-schema.ts';

export interface WebhookSpec { url: string; timeout_ms?: number; on_error?: 'block' | 'allow' }

export interface CompiledGuardrail {
  readonly name: string;
  readonly on: ReadonlySet<Direction>;
  readonly action: Action;
  readonly detectors: readonly DetectorName[];
  readonly regexes: readonly RegExp[];
  readonly keywords: RegExp | null;
  /** Longest keyword phrase in characters: the stream guard holds back at least this much. */
  readonly keywordSpan: number;
  readonly maxChars: number | undefined;
  /** Characters of one request (or response) this guardrail scans; beyond it `onScanLimit` applies. */
  readonly maxScanChars: number;
  readonly onScanLimit: 'block' | 'flag';
  readonly webhook: WebhookSpec | undefined;
  readonly schema: Validator | undefined;
}

export interface TextVerdict {
  verdict: Verdict;
  /** The text after redaction (the input itself when nothing was redacted). */
  text: string;
  findings: FindingSummary[];
  /** First guardrail with action block that matched. */
  blockedBy?: string;
  blockedCategory?: Category;
}

export const MARKERS: Readonly<Record<Category, string>> = {
  email: '[EMAIL]', phone: '[PHONE]', credit_card: '[CREDIT_CARD]', ssn: '[SSN]', iban: '[IBAN]',
  ip_address: '[IP_ADDRESS]', secret: '[SECRET]', regex: '[REDACTED]', keyword: '[KEYWORD]',
  size: '[TRUNCATED]', schema: '[REDACTED]', webhook: '[REDACTED]', scan_limit: '[REDACTED]',
};

/**
 * Default per-request scan budget: linear detectors cost ~0.1 s per MiB on one core (bench/DETECTORS.md),
 * so one request can hold the event loop for about that long at most, per guardrail.
 */
export const DEFAULT_MAX_SCAN_CHARS = 1024 * 1024;

const RANK: Readonly<Record<Verdict, number>> = { allow: 0, flag: 1, redact: 2, block: 3 };

/** Compile at config load; throws a message naming the guardrail and field on bad input. */
export function compileGuardrail(name: string, spec: GuardrailSpec): CompiledGuardrail {
  const regexes = (spec.regex ?? []).map((src, i) => {
    try {
      return compileLinearRegex(src);
    } catch (err) {
      throw new Error(`guardrail "${name}": regex[${i}] ${(err as Error).message}`);
    }
  });
  let schema: Validator | undefined;
  if (spec.json_schema !== undefined) {
    try {
      schema = compileSchema(spec.json_schema);
    } catch (err) {
      throw new Error(`guardrail "${name}": ${(err as Error).message}`);
    }
  }
  return Object.freeze({
    name,
    on: new Set(spec.on),
    action: spec.action,
    detectors: [...new Set(spec.detect ?? [])],
    regexes,
    keywords: compileKeywords(spec.keywords ?? []),
    keywordSpan: Math.max(0, ...(spec.keywords ?? []).map((k) => k.length)),
    maxChars: spec.max_chars,
    maxScanChars: spec.max_scan_chars ?? DEFAULT_MAX_SCAN_CHARS,
    // A flag-only guardrail never blocks; the others fail closed unless told to let unscanned text pass.
    onScanLimit: spec.on_scan_limit ?? (spec.action === 'flag' ? 'flag' : 'block'),
    webhook: spec.webhook,
    schema,
  });
}

/** Per-call memo so several guardrails sharing a detector scan the text once. */
export interface ScanMemo { text: string; detectors: Map<DetectorName, Finding[]>; folded?: Folded }

export function newMemo(text: string): ScanMemo {
  return { text, detectors: new Map() };
}

/** All findings of one guardrail on one text (detectors, regexes, keywords, optionally size). */
export function findingsFor(g: CompiledGuardrail, memo: ScanMemo, checkSize: boolean): Finding[] {
  const text = memo.text;
  let out: Finding[] = [];
  for (const d of g.detectors) {
    let found = memo.detectors.get(d);
    if (found === undefined) {
      found = [];
      DETECTORS[d](text, found);
      memo.detectors.set(d, found);
    }
    for (const f of found) out.push(f);
  }
  if (g.detectors.length > 1) out = resolveOverlaps(out);
  for (const re of g.regexes) scan(re, text, out, (m) => finding('regex', m.index, m.index + m[0].length));
  if (g.keywords !== null) {
    memo.folded ??= fold(text);
    for (const f of findKeywords(g.keywords, text, memo.folded)) out.push(f);
  }
  if (checkSize && g.maxChars !== undefined && text.length > g.maxChars) out.push(finding('size', g.maxChars, text.length));
  return out;
}

/** Running verdict over several texts and guardrails (an explicit object, not module state). */
export interface Tally {
  verdict: Verdict;
  /** Characters scanned so far in this request's walk: the scan budget of every guardrail. */
  scanned: number;
  blockedBy?: string;
  blockedCategory?: Category;
  summaries: Map<string, FindingSummary>;
}

export function newTally(): Tally {
  return { verdict: 'allow', scanned: 0, summaries: new Map() };
}

/** Record one guardrail's findings; `action` may differ from g.action (e.g. a size redact on JSON blocks). */
export function record(t: Tally, g: CompiledGuardrail, findings: readonly Finding[], action: Action = g.action, where?: string): void {
  if (findings.length === 0) return;
  if (RANK[action] > RANK[t.verdict]) t.verdict = action;
  if (action === 'block' && t.blockedBy === undefined) {
    t.blockedBy = g.name;
    t.blockedCategory = findings[0].category;
  }
  for (const f of findings) {
    const key = `${g.name}\u0000${f.category}`;
    let s = t.summaries.get(key);
    if (s === undefined) {
      s = { guardrail: g.name, category: f.category, count: 0 };
      t.summaries.set(key, s);
    }
    s.count++;
    if (where !== undefined) {
      s.where ??= [];
      if (s.where.length < 10 && !s.where.includes(where)) s.where.push(where);
    }
  }
}

/** A guardrail's budget is spent: the text is not scanned, and the guardrail blocks (or flags) once per walk. */
export function overScanLimit(t: Tally, g: CompiledGuardrail, where?: string): void {
  if (!t.summaries.has(`${g.name}\u0000scan_limit`)) record(t, g, [finding('scan_limit', 0, 0)], g.onScanLimit, where);
}

export function summaries(t: Tally): FindingSummary[] {
  return [...t.summaries.values()];
}

interface Span { start: number; end: number; marker: string }

/** Replace spans with markers; overlapping spans merge and keep the first marker. */
export function redactSpans(text: string, spans: Span[]): string {
  if (spans.length === 0) return text;
  spans.sort((a, b) => a.start - b.start || b.end - a.end);
  let out = '';
  let pos = 0;
  for (const s of spans) {
    if (s.end <= pos) continue;
    if (s.start >= pos) {
      out += text.slice(pos, s.start) + s.marker;
    }
    pos = s.end;
  }
  return out + text.slice(pos);
}

export function toSpans(findings: readonly Finding[]): Span[] {
  return findings.map((f) => ({ start: f.start, end: f.end, marker: MARKERS[f.category] }));
}

/**
 * Scan one text with every guardrail that applies to `direction`, record into the tally and
 * return the text with redact-guardrail findings replaced.
 */
export function evaluateText(text: string, guardrails: readonly CompiledGuardrail[], direction: Direction, t: Tally, checkSize: boolean, where?: string): string {
  const memo = newMemo(text);
  const spans: Span[] = [];
  const scanned = t.scanned;
  t.scanned += text.length;
  for (const g of guardrails) {
    if (!g.on.has(direction)) continue;
    if (scanned + text.length > g.maxScanChars) { overScanLimit(t, g, where); continue; }
    const found = findingsFor(g, memo, checkSize);
    if (found.length === 0) continue;
    record(t, g, found, g.action, where);
    if (g.action === 'redact') for (const s of toSpans(found)) spans.push(s);
  }
  return redactSpans(text, spans);
}

/** Apply guardrails to one text (prompt, completion, tool result text). */
export function applyGuardrails(text: string, guardrails: readonly CompiledGuardrail[], direction: Direction): TextVerdict {
  const t = newTally();
  const out = evaluateText(text, guardrails, direction, t, true);
  const res: TextVerdict = { verdict: t.verdict, text: out, findings: summaries(t) };
  if (t.blockedBy !== undefined) { res.blockedBy = t.blockedBy; res.blockedCategory = t.blockedCategory; }
  return res;
}

/** Findings per applicable guardrail, without recording (the stream guard decides what is committed). */
export function evaluateTextFindings(text: string, guardrails: readonly CompiledGuardrail[]): Array<{ g: CompiledGuardrail; findings: Finding[] }> {
  const memo = newMemo(text);
  const out: Array<{ g: CompiledGuardrail; findings: Finding[] }> = [];
  for (const g of guardrails) {
    const findings = findingsFor(g, memo, false);
    if (findings.length > 0) out.push({ g, findings });
  }
  return out;
}

const CATEGORY_TEXT: Readonly<Record<Category, string>> = {
  email: 'an email address', phone: 'a phone number', credit_card: 'a payment card number', ssn: 'a US social security number',
  iban: 'an IBAN', ip_address: 'an IP address', secret: 'a secret (API key, token or private key)', regex: 'a blocked pattern',
  keyword: 'a blocked keyword', size: 'more text than allowed', schema: 'arguments that do not match the allowed schema',
  webhook: 'content rejected by an external checker',
  scan_limit: 'more text than the guardrail scans per request (spec.max_scan_chars)',
};

/** User-facing message for a block (for error.code guardrail_blocked); names the guardrail, never the value. */
export function blockedMessage(guardrail: string, category: Category | undefined, direction: Direction): string {
  const what = category === undefined ? 'content it does not allow' : CATEGORY_TEXT[category];
  return direction === 'input'
    ? `Request blocked by guardrail "${guardrail}": it contains ${what}. Remove it and retry, or ask an administrator to change the guardrail.`
    : `Response blocked by guardrail "${guardrail}": it contained ${what}.`;
}
