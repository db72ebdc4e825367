// Cost of guardrails per KB of text with every detector on (plus a keyword list and a regex),
// for clean prose and for PII-dense text, and of the stream guard per chunk.
// Run: node_modules/.bin/node bench/guardrails-cost.ts   (appends its section to bench/GUARDRAILS-RESULTS.md)
import { applyGuardrails, compileGuardrail } from '../src/guardrails/engine.ts';
import { createStreamGuard } from '../src/guardrails/stream.ts';
import { writeResultsSection } from '../test/guardrails-corpus-eval.ts';

const all = compileGuardrail('all', {
  on: ['input', 'output'], action: 'redact',
  detect: ['email', 'phone', 'credit_card', 'ssn', 'iban', 'ip_address', 'secrets'],
  keywords: ['project falcon', 'confidential roadmap'], regex: ['ACME-\\d{6}'],
});

const prose = 'The quarterly report shows revenue grew 12% to $4.2 million in Q3 2024, driven by new customers in Europe. '
  + 'Version 2.3.1 of the app shipped on 2024-10-01; order #48213 was the largest. The team will review the roadmap on Monday. ';
const dense = 'Contact jane.doe@example.com or +44 20 7946 0958; card 4111 1111 1111 1111, SSN 078-05-1120, '
  + 'IBAN DE89 3704 0044 0532 0130 00, from 192.168.1.20, key AKIAIOSFODNN7EXAMPLE. ';

function makeKb(unit: string, kb: number): string {
  return unit.repeat(Math.ceil((kb * 1024) / unit.length)).slice(0, kb * 1024);
}

function timeIt(fn: () => void, minMs = 300): number {
  for (let i = 0; i < 20; i++) fn();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) { fn(); n++; }
  return ((performance.now() - t0) * 1000) / n; // microseconds per call
}

const rows: string[] = [];
for (const [label, unit] of [['clean prose', prose], ['PII-dense', dense]] as const) {
  for (const kb of [1, 16]) {
    const text = makeKb(unit, kb);
    const us = timeIt(() => applyGuardrails(text, [all], 'input'));
    rows.push(`| ${label} | ${kb} KB | ${us.toFixed(1)} | ${(us / kb).toFixed(1)} |`);
  }
}

const streamRows: string[] = [];
for (const [label, unit] of [['clean prose', prose], ['PII-dense', dense]] as const) {
  const text = makeKb(unit, 16);
  for (const chunkSize of [8, 32]) {
    const chunks = text.match(new RegExp(`[\\s\\S]{1,${chunkSize}}`, 'g'))!;
    const us = timeIt(() => {
      const g = createStreamGuard([all]);
      for (const c of chunks) g.push(c);
      g.end();
    });
    streamRows.push(`| ${label} | ${chunkSize} chars | ${(us / chunks.length).toFixed(2)} | ${((us / text.length) * 1024).toFixed(1)} |`);
  }
}

const md = [
  '## Cost',
  '',
  `Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; one guardrail with all 7 detectors + 2 keywords + 1 regex, action redact.`,
  '',
  '| text | size | us per call | us per KB |',
  '|---|---|---:|---:|',
  ...rows,
  '',
  'Stream guard (window 128), 16 KB streamed in fixed-size chunks:',
  '',
  '| text | chunk | us per chunk | us per KB |',
  '|---|---|---:|---:|',
  ...streamRows,
].join('\n');
console.log(md);
writeResultsSection('cost', md);
