// Hot-path lookup by several label values without building a composite key: one Map per label,
// keyed by the values themselves. Label values come from the config, so their string hashes are
// computed once and cached by V8; a joined key string would be built and hashed on every call.
export type LabelValue = string | number | boolean | null;
export type Level = Map<LabelValue, unknown>;

/** The next level down for value k (created on first use). */
export function level(m: Level, k: LabelValue): Level {
  let n = m.get(k) as Level | undefined;
  if (n === undefined) { n = new Map(); m.set(k, n); }
  return n;
}
