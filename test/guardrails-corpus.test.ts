import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluate, loadCorpus, writeResultsSection } from './guardrails-corpus-eval.ts';

// Thresholds. Precision >= 0.95 per category: a false positive on the redact path corrupts a
// prompt or tool argument (an order number turned into [PHONE] breaks the agent's task), and on
// the block path it refuses legitimate work, so at most 1 in 20 findings may be wrong. Recall
// >= 0.90 per category: a miss leaks the value, but the corpus includes formats that are
// deliberately ambiguous without context (national phone numbers, bare 9-digit SSNs), where
// precision is preferred. Overall the bar is higher (P >= 0.97, R >= 0.95) because most real
// traffic is in the well-structured formats. The corpus is generated and the detectors were tuned
// against it, so these figures are an upper bound for real traffic; the thresholds leave room.
const MIN_PRECISION = 0.95, MIN_RECALL = 0.9, MIN_OVERALL_PRECISION = 0.97, MIN_OVERALL_RECALL = 0.95;

test('detector precision/recall on the labelled corpus', () => {
  const rows = loadCorpus();
  assert.ok(rows.length >= 300, `corpus has ${rows.length} rows`);
  const negatives = rows.filter((r) => r.labels.length === 0).length;
  const { scores, misses } = evaluate(rows);
  const pct = (x: number) => (x * 100).toFixed(1) + '%';
  const table = [
    `Corpus: ${rows.length} lines (${rows.length - negatives} with labels, ${negatives} hard negatives), \`test/fixtures/guardrails/corpus.jsonl\`.`,
    'A finding counts as a true positive when it overlaps a label of the same category; "exact" = same span.',
    '',
    '| category | TP | FP | FN | exact span | precision | recall |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...scores.map((s) => `| ${s.category} | ${s.tp} | ${s.fp} | ${s.fn} | ${s.exact} | ${pct(s.precision)} | ${pct(s.recall)} |`),
    '',
    `Thresholds asserted: per category precision >= ${MIN_PRECISION}, recall >= ${MIN_RECALL}; overall precision >= ${MIN_OVERALL_PRECISION}, recall >= ${MIN_OVERALL_RECALL}.`,
  ].join('\n');
  writeResultsSection('accuracy', `## Detector accuracy\n\n${table}`);
  const detail = misses.map((m) => `${m.kind} ${m.category}: ${m.text.slice(0, 80)}`).join('\n');
  for (const s of scores) {
    const [p, r] = s.category === 'overall' ? [MIN_OVERALL_PRECISION, MIN_OVERALL_RECALL] : [MIN_PRECISION, MIN_RECALL];
    assert.ok(s.precision >= p, `${s.category} precision ${s.precision}\n${detail}`);
    assert.ok(s.recall >= r, `${s.category} recall ${s.recall}\n${detail}`);
    if (s.category !== 'overall') assert.ok(s.tp >= 30, `${s.category} has at least 30 positives`);
  }
});

// Holdout: 35 hand-written lines in formats and contexts the generator does not produce, written
// after the detectors were tuned on corpus.jsonl. First run: overall P 0.893 / R 0.962 (misses: a
// password in a URL, later added as a detector; version strings 1.0.0.x read as IPv4, still open).
// Reported, and guarded only against regression (overall >= 0.85), since 35 lines are too few for
// per-category thresholds.
test('holdout precision/recall (reported; regression guard)', () => {
  const rows = loadCorpus(new URL('./fixtures/guardrails/holdout.jsonl', import.meta.url));
  const { scores, misses } = evaluate(rows);
  const overall = scores.find((s) => s.category === 'overall')!;
  const pct = (x: number) => (x * 100).toFixed(1) + '%';
  writeResultsSection('holdout', [
    '## Holdout (hand-written, not used for tuning before its first run)',
    '',
    `${rows.length} lines, \`test/fixtures/guardrails/holdout.jsonl\`. First run before any fix: overall precision 89.3%, recall 96.2%.`,
    '',
    '| category | TP | FP | FN | precision | recall |',
    '|---|---:|---:|---:|---:|---:|',
    ...scores.map((s) => `| ${s.category} | ${s.tp} | ${s.fp} | ${s.fn} | ${pct(s.precision)} | ${pct(s.recall)} |`),
    '',
    `Remaining errors: ${misses.map((m) => `${m.kind} ${m.category} in "${m.text.slice(0, 50)}"`).join('; ') || 'none'}.`,
  ].join('\n'));
  assert.ok(overall.precision >= 0.85 && overall.recall >= 0.85, JSON.stringify(overall));
});
