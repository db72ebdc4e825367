// The nearest real name to a mistyped one, for errors that say "did you mean ...?" (config fields,
// kinds and options; CLI commands and flags).

/** The candidate within two edits (case-insensitive) of `s`, if any. */
export function nearest<T extends string>(s: string, candidates: readonly T[]): T | null {
  let best: T | null = null;
  let bestD = 3;
  for (const k of candidates) {
    const d = editDistance(s.toLowerCase(), k.toLowerCase());
    if (d < bestD) { best = k; bestD = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}
