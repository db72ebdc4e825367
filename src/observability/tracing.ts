// OpenTelemetry traces without the OTel SDK: spans are small objects queued on end() and exported
// in OTLP/HTTP JSON batches off the request path (otlp-exporter.ts). createTracer returns null when
// no endpoint is configured, so an untraced gateway pays one null check per request.
// Sampling is parent-based: a caller that sent `traceparent` with the sampled flag off gets a
// non-recording span (ids still propagate); root spans are sampled at `sampleRatio` (default 1).
import { resolveOtlp, type OtlpOptions } from './otlp-config.ts';
import { createBatchExporter, type ExportStats } from './otlp-exporter.ts';
import { encodeSpans, type AttrValue, type Attributes, type SpanEventRecord, type SpanRecord } from './otlp-encode.ts';
import { IdPool, formatTraceparent, parseTraceparent, type SpanContext } from './otlp-context.ts';
import type { IncomingHttpHeaders } from 'node:http';

export type { AttrValue, Attributes } from './otlp-encode.ts';
export type { SpanContext } from './otlp-context.ts';
export type { ExportStats } from './otlp-exporter.ts';
export { parseTraceparent, formatTraceparent } from './otlp-context.ts';

export type SpanKind = 'server' | 'client' | 'internal';

export interface StartSpanOptions {
  kind?: SpanKind;
  /** Parent span context, or an incoming `traceparent` header value (invalid -> new trace). */
  parent?: SpanContext | string | string[] | null;
  /** Incoming `tracestate`, kept with a header-string parent. */
  traceState?: string | string[];
  attributes?: Attributes;
  /** Start time on the performance.now() clock (e.g. the request's ctx.start); default now. */
  startTime?: number;
}

export interface Span {
  readonly context: SpanContext;
  /** False for unsampled spans: they propagate ids but are never exported. */
  readonly recording: boolean;
  setAttribute(key: string, value: AttrValue | null | undefined): this;
  setAttributes(attrs: Attributes): this;
  setStatus(code: 'ok' | 'error', message?: string): this;
  /** A timestamped event on the span (at most 32 per span; more are counted as dropped). */
  addEvent(name: string, attributes?: Attributes): this;
  /**
   * Record a failure: an `exception` event (type and message, no stack), error.type unless set,
   * and status ERROR with the message. Pass only messages that are safe to export (scrubbed).
   */
  recordException(err: unknown, errorType?: string): this;
  /** Update the name (e.g. once the model is known). */
  updateName(name: string): this;
  /** End the span (only the first call counts); endTime on the performance.now() clock. */
  end(endTime?: number): void;
  /** W3C `traceparent` naming this span as the parent, for upstream requests. */
  traceparent(): string;
}

export interface Tracer {
  startSpan(name: string, opts?: StartSpanOptions): Span;
  /** Export everything queued now. */
  flush(): Promise<void>;
  /** Flush and stop (call on SIGTERM); spans ended afterwards are dropped and counted. */
  shutdown(timeoutMs?: number): Promise<void>;
  stats(): ExportStats;
}

export interface TracerOptions extends OtlpOptions {
  /** Fraction of new (root) traces recorded, 0..1 (default 1, or OTEL_TRACES_SAMPLER_ARG with a traceidratio sampler). */
  sampleRatio?: number;
  /** Attribute cap per span (default 128, env OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT); extras are counted as dropped. */
  maxAttributes?: number;
  /** Instrumentation scope version. */
  version?: string;
}

/** A tracer exporting to the configured OTLP endpoint, or null when none is set (zero cost). */
export function createTracer(opts: TracerOptions = {}): Tracer | null {
  const cfg = resolveOtlp('traces', opts);
  if (!cfg) return null;
  const env = opts.env ?? process.env;
  const scope = { name: 'aam', version: opts.version ?? '0.1.0' };
  const exporter = createBatchExporter<SpanRecord>(cfg, {
    encode: (spans) => encodeSpans(cfg.resource, scope, spans),
    rejectedField: 'rejectedSpans',
    noun: 'spans',
  });
  const limits = {
    maxAttributes: opts.maxAttributes ?? (Number(env.OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT) || 128),
    // Ids are uniformly random, so comparing the last 52 bits of the trace id to the ratio samples fairly
    // and every service with the same ratio makes the same choice for one trace.
    sampleBelow: Math.floor(clampRatio(opts.sampleRatio ?? envRatio(env)) * 0x10000000000000),
  };
  const ids = new IdPool();
  // Wall-clock anchor for the monotonic clock: span times are epoch ms = perf time + offset.
  const offset = Date.now() - performance.now();
  const sink = (s: SpanImpl): void => exporter.push(s);

  return {
    startSpan(name, o = {}) {
      let parent: SpanContext | undefined;
      let remote = false;
      if (typeof o.parent === 'string' || Array.isArray(o.parent)) { parent = parseTraceparent(o.parent, o.traceState); remote = parent !== undefined; }
      else if (o.parent) parent = o.parent;
      const traceId = parent?.traceId ?? ids.traceId();
      const sampled = parent ? parent.sampled !== false : limits.sampleBelow >= 0x10000000000000 || parseInt(traceId.slice(19), 16) < limits.sampleBelow;
      const ctx: SpanContext = { traceId, spanId: ids.spanId(), sampled };
      if (parent?.traceState) ctx.traceState = parent.traceState;
      const span = new SpanImpl(name, o.kind ?? 'internal', ctx, parent?.spanId, remote, (o.startTime ?? performance.now()) + offset, offset, limits.maxAttributes, sampled ? sink : null);
      if (o.attributes) span.setAttributes(o.attributes);
      return span;
    },
    flush: () => exporter.flush(),
    shutdown: (timeoutMs) => exporter.shutdown(timeoutMs),
    stats: () => exporter.stats(),
  };
}

class SpanImpl implements Span, SpanRecord {
  name: string;
  readonly kind: SpanKind;
  readonly context: SpanContext;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly parentRemote: boolean;
  readonly traceState: string | undefined;
  readonly startMs: number;
  endMs = 0;
  readonly attributes: Record<string, AttrValue> = {};
  droppedAttributes = 0;
  status: 'unset' | 'ok' | 'error' = 'unset';
  statusMessage: string | undefined = undefined;
  events: SpanEventRecord[] | undefined = undefined;
  droppedEvents = 0;
  #count = 0;
  readonly #offset: number;
  readonly #max: number;
  /** Where the span goes on end(); null once ended or when not recording. */
  #sink: ((s: SpanImpl) => void) | null;
  readonly recording: boolean;

  constructor(name: string, kind: SpanKind, ctx: SpanContext, parentSpanId: string | undefined, parentRemote: boolean, startMs: number, offset: number, max: number, sink: ((s: SpanImpl) => void) | null) {
    this.name = name;
    this.kind = kind;
    this.context = ctx;
    this.traceId = ctx.traceId;
    this.spanId = ctx.spanId;
    this.parentSpanId = parentSpanId;
    this.parentRemote = parentRemote;
    this.traceState = ctx.traceState;
    this.startMs = startMs;
    this.#offset = offset;
    this.#max = max;
    this.#sink = sink;
    this.recording = sink !== null;
  }

  setAttribute(key: string, value: AttrValue | null | undefined): this {
    if (this.#sink === null || value === undefined || value === null) return this;
    if (!(key in this.attributes)) {
      if (this.#count >= this.#max) { this.droppedAttributes++; return this; }
      this.#count++;
    }
    this.attributes[key] = value;
    return this;
  }

  setAttributes(attrs: Attributes): this {
    if (this.#sink === null) return this;
    for (const k in attrs) this.setAttribute(k, attrs[k]);
    return this;
  }

  setStatus(code: 'ok' | 'error', message?: string): this {
    // OK is final (the spec: later attempts to set ERROR are ignored); a message belongs to ERROR only.
    if (this.#sink === null || this.status === 'ok') return this;
    if (code === 'ok') this.statusMessage = undefined;
    else if (message) this.statusMessage = message;
    this.status = code;
    return this;
  }

  addEvent(name: string, attributes?: Attributes): this {
    if (this.#sink === null) return this;
    const events = (this.events ??= []);
    if (events.length >= MAX_EVENTS) this.droppedEvents++;
    else events.push({ name, timeMs: performance.now() + this.#offset, attributes });
    return this;
  }

  recordException(err: unknown, errorType?: string): this {
    if (this.#sink === null) return this;
    const e = err instanceof Error ? err : undefined;
    const type = e ? ((e as { code?: unknown }).code !== undefined ? String((e as { code?: unknown }).code) : e.name) : typeof err;
    const message = e ? e.message : String(err);
    this.addEvent('exception', { 'exception.type': type, 'exception.message': message });
    if (!('error.type' in this.attributes)) this.setAttribute('error.type', errorType ?? type);
    return this.setStatus('error', message);
  }

  updateName(name: string): this {
    if (this.#sink !== null) this.name = name;
    return this;
  }

  end(endTime?: number): void {
    const sink = this.#sink;
    if (sink === null) return;
    this.#sink = null;
    this.endMs = Math.max(this.startMs, (endTime ?? performance.now()) + this.#offset);
    sink(this);
  }

  traceparent(): string {
    return formatTraceparent(this.context);
  }
}

/**
 * The SERVER span for an incoming HTTP request, continuing the caller's trace from its
 * `traceparent`/`tracestate` headers. Name per the HTTP conventions: `{method} {route}`.
 */
export function startServerSpan(tracer: Tracer, req: { method?: string; headers: IncomingHttpHeaders }, opts: { route?: string; path?: string; startTime?: number; attributes?: Attributes } = {}): Span {
  const method = req.method ?? 'GET';
  const span = tracer.startSpan(opts.route ? `${method} ${opts.route}` : method, {
    kind: 'server', parent: req.headers.traceparent ?? null, traceState: req.headers.tracestate, startTime: opts.startTime,
  });
  span.setAttribute('http.request.method', method).setAttribute('http.route', opts.route).setAttribute('url.path', opts.path);
  if (opts.attributes) span.setAttributes(opts.attributes);
  return span;
}

/**
 * Record the HTTP status and end the span. Server spans are ERROR on 5xx only (a 4xx is the
 * caller's mistake); client spans on any status >= 400 (HTTP semantic conventions).
 */
export function endHttpSpan(span: Span, status: number, side: 'server' | 'client', endTime?: number): void {
  span.setAttribute('http.response.status_code', status);
  if (status >= 500 || (side === 'client' && status >= 400)) {
    span.setAttribute('error.type', String(status)).setStatus('error');
  }
  span.end(endTime);
}

/** Headers that make an upstream request continue this trace (empty without a span). */
export function traceHeaders(span: Span | null | undefined): Record<string, string> {
  if (!span) return {};
  const h: Record<string, string> = { traceparent: span.traceparent() };
  if (span.context.traceState) h.tracestate = span.context.traceState;
  return h;
}

const MAX_EVENTS = 32;

function clampRatio(r: number): number {
  return Number.isFinite(r) ? Math.min(1, Math.max(0, r)) : 1;
}

function envRatio(env: Record<string, string | undefined>): number {
  const sampler = env.OTEL_TRACES_SAMPLER?.trim();
  if (sampler === 'always_off' || sampler === 'parentbased_always_off') return 0;
  if (sampler === 'traceidratio' || sampler === 'parentbased_traceidratio') {
    const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1');
    return Number.isFinite(arg) ? arg : 1;
  }
  return 1;
}
