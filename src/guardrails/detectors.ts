// Built-in detectors behind one entry point. Each detector appends findings; overlaps between
// detectors are resolved by a fixed priority (a secret beats a card beats a phone ...) so one
// span is reported once, under its most specific category.
import { detectCreditCard, detectEmail, detectIban, detectIp, detectPhone, detectSsn } from './detectors-pii.ts';
import { detectSecrets } from './detectors-secrets.ts';
import type { Category, DetectorName, Finding } from './types.ts';

export { detectCreditCard, detectEmail, detectIban, detectIp, detectPhone, detectSsn } from './detectors-pii.ts';
export { detectSecrets, looksRandom } from './detectors-secrets.ts';

export const DETECTORS: Readonly<Record<DetectorName, (text: string, out: Finding[]) => void>> = {
  secrets: detectSecrets,
  credit_card: detectCreditCard,
  iban: detectIban,
  ssn: detectSsn,
  email: detectEmail,
  ip_address: detectIp,
  phone: detectPhone,
};

export const DETECTOR_NAMES = Object.keys(DETECTORS) as DetectorName[];

/** Lower is more specific: wins when two findings overlap. */
const PRIORITY: Partial<Record<Category, number>> = {
  secret: 0, credit_card: 1, iban: 2, ssn: 3, email: 4, ip_address: 5, phone: 6,
};

/** Sort by start and drop findings that overlap a more specific (or, on ties, longer) one. */
export function resolveOverlaps(findings: Finding[]): Finding[] {
  if (findings.length < 2) return findings;
  const ranked = [...findings].sort((a, b) =>
    (PRIORITY[a.category] ?? 9) - (PRIORITY[b.category] ?? 9) || (b.end - b.start) - (a.end - a.start) || a.start - b.start);
  const kept: Finding[] = [];
  for (const f of ranked) {
    if (!kept.some((k) => f.start < k.end && k.start < f.end)) kept.push(f);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Run the named detectors over text; findings are sorted and non-overlapping. */
export function detect(text: string, names: Iterable<DetectorName>): Finding[] {
  const out: Finding[] = [];
  for (const n of names) DETECTORS[n](text, out);
  return resolveOverlaps(out);
}
