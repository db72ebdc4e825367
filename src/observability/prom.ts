// Minimal Prometheus counters, histograms and gauges for the request path. A series is resolved
// once per label combination and then updated with plain number arithmetic (prom-client hashes
// the label object on every inc/observe). Rendered in the text exposition format on scrape; as
// with prom-client, a series shows up once it has been updated.

/** Label value escaping of the exposition format: backslash, double quote, newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

const escapeHelp = (h: string) => h.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function formatValue(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
}

const braces = (pairs: string) => (pairs ? `{${pairs}}` : '');

/** `name="value",...` in label-name order (no braces), values escaped. */
function labelPairs(names: readonly string[], values: readonly string[]): string {
  return names.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? '')}"`).join(',');
}

abstract class Family<S extends { live: boolean }> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  // By rendered label pairs, so equal label values always share one series.
  protected readonly series = new Map<string, S>();

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  /** The series for these label values (in labelNames order). Resolve once, keep the result. */
  labels(...values: string[]): S {
    const pairs = labelPairs(this.labelNames, values);
    let s = this.series.get(pairs);
    if (s === undefined) { s = this.create(pairs); this.series.set(pairs, s); }
    return s;
  }

  protected abstract create(pairs: string): S;
  protected abstract get type(): string;
  protected abstract lines(s: S, out: string[]): void;

  render(): string {
    const out = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    for (const s of this.series.values()) if (s.live) this.lines(s, out);
    return out.join('\n');
  }
}

export class CounterSeries {
  readonly pairs: string;
  value = 0;
  live = false;
  constructor(pairs: string) { this.pairs = pairs; }
  inc(v = 1): void { this.value += v; this.live = true; }
}

export class Counter extends Family<CounterSeries> {
  protected get type(): string { return 'counter'; }
  protected create(pairs: string): CounterSeries { return new CounterSeries(pairs); }
  protected lines(s: CounterSeries, out: string[]): void { out.push(`${this.name}${braces(s.pairs)} ${formatValue(s.value)}`); }
}

export class GaugeSeries {
  readonly pairs: string;
  value = 0;
  live = false;
  constructor(pairs: string) { this.pairs = pairs; }
  set(v: number): void { this.value = v; this.live = true; }
}

export class Gauge extends Family<GaugeSeries> {
  protected get type(): string { return 'gauge'; }
  protected create(pairs: string): GaugeSeries { return new GaugeSeries(pairs); }
  protected lines(s: GaugeSeries, out: string[]): void { out.push(`${this.name}${braces(s.pairs)} ${formatValue(s.value)}`); }
  /** prom-client's call shape, for code off the hot path. */
  set(labels: Record<string, string>, v: number): void { this.labels(...this.labelNames.map((n) => labels[n] ?? '')).set(v); }
}

export class HistogramSeries {
  readonly pairs: string;
  readonly bounds: readonly number[];
  /** Observations per bucket, not cumulative (made cumulative on render). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(pairs: string, bounds: readonly number[]) {
    this.pairs = pairs;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }
  get live(): boolean { return this.count > 0; }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    if (i < b.length) this.counts[i]++; // above the last bound: only in +Inf (= count)
    this.sum += v;
    this.count++;
  }
}

export class Histogram extends Family<HistogramSeries> {
  readonly buckets: readonly number[];
  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    this.buckets = [...buckets].sort((a, b) => a - b);
  }
  protected get type(): string { return 'histogram'; }
  protected create(pairs: string): HistogramSeries { return new HistogramSeries(pairs, this.buckets); }
  protected lines(s: HistogramSeries, out: string[]): void {
    const rest = s.pairs ? `,${s.pairs}` : '';
    let acc = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      acc += s.counts[i];
      out.push(`${this.name}_bucket{le="${formatValue(this.buckets[i])}"${rest}} ${acc}`);
    }
    out.push(`${this.name}_bucket{le="+Inf"${rest}} ${s.count}`);
    out.push(`${this.name}_sum${braces(s.pairs)} ${formatValue(s.sum)}`, `${this.name}_count${braces(s.pairs)} ${s.count}`);
  }
}

export type Metric = Counter | Gauge | Histogram;

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The text exposition of these metrics, families separated by a blank line. */
export function exposition(metrics: readonly Metric[]): string {
  return `${metrics.map((m) => m.render()).join('\n\n')}\n`;
}
