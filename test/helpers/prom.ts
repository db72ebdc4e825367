// A strict reader of the Prometheus text exposition format for tests: every non-comment line must
// be a sample; label values are unescaped (\\, \", \n); +Inf/-Inf/NaN values are numbers.
import assert from 'node:assert/strict';

export interface Sample { name: string; labels: Record<string, string>; value: number }

const UNESCAPE: Record<string, string> = { '\\\\': '\\', '\\"': '"', '\\n': '\n' };

export function parseProm(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const pairs = [...body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/g)];
    assert.equal(pairs.map((p) => p[0]).join(''), body, `malformed labels in: ${line}`);
    for (const [, name, value] of pairs) {
      assert.ok(!(name in labels), `label ${name} twice in: ${line}`);
      labels[name] = value.replace(/\\./g, (e) => { assert.ok(e in UNESCAPE, `bad escape ${e} in: ${line}`); return UNESCAPE[e]; });
    }
    const v = m[3];
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    assert.ok(!Number.isNaN(value) || /^nan$/i.test(v), `not a sample value: ${line}`); // Go's ParseFloat: any case (prom-client writes Nan)
    out.push({ name: m[1], labels, value });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sumOf(samples: readonly Sample[], name: string, match: Record<string, string> = {}): number {
  return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}
