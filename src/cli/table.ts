// What the list commands print for people: aligned columns, times relative to now, long fields cut.
// Machines pass --json and get the data itself.

/** "3m ago", "in 12m", "2d ago": a time an operator reads at a glance; '-' when absent. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  const t = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(t)) return '-';
  const s = Math.round((now - t) / 1000);
  const a = Math.abs(s);
  const n = a < 60 ? `${a}s` : a < 3600 ? `${Math.floor(a / 60)}m` : a < 86_400 ? `${Math.floor(a / 3600)}h` : `${Math.floor(a / 86_400)}d`;
  return s >= 0 ? `${n} ago` : `in ${n}`;
}

/** A field cut to `max` characters, the cut marked, so one long value cannot push the columns apart. */
export function cut(v: string, max: number): string {
  return v.length <= max ? v : v.slice(0, max - 1) + '…';
}

/** Rows under a header, each column as wide as its widest cell (cells cut to `max`), the last one unpadded. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>, max = 40): string[] {
  const cells = [header, ...rows].map((r) => r.map((c) => cut(c, max)));
  const width = header.map((_, i) => Math.max(...cells.map((r) => r[i]?.length ?? 0)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]))).join('  ').trimEnd());
}
