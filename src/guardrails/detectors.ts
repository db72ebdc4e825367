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

/**
 * Within a cluster of overlapping findings keep the most specific (then longest) ones that do not
 * overlap. Taken characters are marked, so a long chain of overlapping findings costs the sum of
 * their lengths, not the square of their number.
 */
function pickWinners(cluster: Finding[], from: number, to: number, kept: Finding[]): void {
  const ranked = cluster.sort((a, b) =>
    (PRIORITY[a.category] ?? 9) - (PRIORITY[b.category] ?? 9) || (b.end - b.start) - (a.end - a.start) || a.start - b.start);
  const taken = new Uint8Array(to - from);
  const won: Finding[] = [];
  for (const f of ranked) {
    const a = f.start - from, b = f.end - from;
    if (taken.subarray(a, b).includes(1)) continue;
    taken.fill(1, a, b);
    won.push(f);
  }
  for (const f of won.sort((x, y) => x.start - y.start)) kept.push(f);
}

/** Sort by start and drop findings that overlap a more specific (or, on ties, longer) one. Findings are non-empty. */
export function resolveOverlaps(findings: Finding[]): Finding[] {
  if (findings.length < 2) return findings;
  const sorted = [...findings].sort((a, b) => a.start - b.start || b.end - a.end);
  const kept: Finding[] = [];
  let cluster: Finding[] = [sorted[0]];
  let clusterEnd = sorted[0].end;
  for (let i = 1; i <= sorted.length; i++) {
    const f = sorted[i];
    if (f !== undefined && f.start < clusterEnd) { cluster.push(f); clusterEnd = Math.max(clusterEnd, f.end); continue; }
    if (cluster.length === 1) kept.push(cluster[0]); else pickWinners(cluster, cluster[0].start, clusterEnd, kept);
    if (f === undefined) break;
    cluster = [f];
    clusterEnd = f.end;
  }
  return kept;
}

/** Run the named detectors over text; findings are sorted and non-overlapping. */
export function detect(text: string, names: Iterable<DetectorName>): Finding[] {
  const out: Finding[] = [];
  for (const n of names) DETECTORS[n](text, out);
  return resolveOverlaps(out);
}
