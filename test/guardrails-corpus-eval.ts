// Precision/recall of the built-in detectors on the labelled corpus (used by the corpus test and the bench).
import { readFileSync } from 'node:fs';
import { detect, DETECTOR_NAMES } from '../src/guardrails/detectors.ts';
import type { Finding } from '../src/guardrails/types.ts';

export interface Row { text: string; labels: Array<{ category: string; value: string }> }
export interface Score { category: string; tp: number; fp: number; fn: number; precision: number; recall: number; exact: number }
export interface Miss { kind: 'fp' | 'fn'; category: string; value: string; text: string }

export function loadCorpus(path = new URL('./fixtures/guardrails/corpus.jsonl', import.meta.url)): Row[] {
  return readFileSync(path, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Row);
}

interface Span { category: string; start: number; end: number; value: string }

function labelSpans(r: Row): Span[] {
  const spans: Span[] = [];
  const from = new Map<string, number>();
  for (const l of r.labels) {
    const at = r.text.indexOf(l.value, from.get(l.value) ?? 0);
    from.set(l.value, at + l.value.length);
    spans.push({ category: l.category, start: at, end: at + l.value.length, value: l.value });
  }
  return spans;
}

/** Overlap matching: a finding is a true positive when it overlaps a label of the same category. */
export function evaluate(rows: Row[]): { scores: Score[]; misses: Miss[] } {
  const cats = ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secret'];
  const acc = new Map(cats.map((c) => [c, { tp: 0, fp: 0, fn: 0, exact: 0 }]));
  const misses: Miss[] = [];
  for (const r of rows) {
    const labels = labelSpans(r);
    const found: Finding[] = detect(r.text, DETECTOR_NAMES);
    const used = new Set<Span>();
    for (const f of found) {
      const a = acc.get(f.category)!;
      const l = labels.find((x) => x.category === f.category && !used.has(x) && f.start < x.end && x.start < f.end);
      if (l) { used.add(l); a.tp++; if (l.start === f.start && l.end === f.end) a.exact++; }
      else { a.fp++; misses.push({ kind: 'fp', category: f.category, value: r.text.slice(f.start, f.end), text: r.text }); }
    }
    for (const l of labels) if (!used.has(l)) { acc.get(l.category)!.fn++; misses.push({ kind: 'fn', category: l.category, value: l.value, text: r.text }); }
  }
  const score = (category: string, c: { tp: number; fp: number; fn: number; exact: number }): Score => ({
    category, ...c,
    precision: c.tp + c.fp === 0 ? 1 : c.tp / (c.tp + c.fp),
    recall: c.tp + c.fn === 0 ? 1 : c.tp / (c.tp + c.fn),
  });
  const scores = cats.map((c) => score(c, acc.get(c)!));
  const total = scores.reduce((t, s) => ({ tp: t.tp + s.tp, fp: t.fp + s.fp, fn: t.fn + s.fn, exact: t.exact + s.exact }), { tp: 0, fp: 0, fn: 0, exact: 0 });
  scores.push(score('overall', total));
  return { scores, misses };
}
