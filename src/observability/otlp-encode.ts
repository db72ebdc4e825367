// OTLP/JSON encoding (opentelemetry-proto docs/specification.md, "JSON Protobuf Encoding"):
// lowerCamelCase field names, traceId/spanId as lowercase hex (not base64), enums as integers,
// 64-bit integers (times in unix nanoseconds, intValue) as decimal strings. Runs at export time,
// never on the request path.

export type AttrValue = string | number | boolean | readonly string[] | readonly number[] | readonly boolean[];
export type Attributes = Record<string, AttrValue | null | undefined>;

export type AnyValue =
  | { stringValue: string }
  | { intValue: string }
  | { doubleValue: number | string }
  | { boolValue: boolean }
  | { arrayValue: { values: AnyValue[] } }
  | { kvlistValue: { values: KeyValue[] } }
  | Record<string, never>;
export interface KeyValue { key: string; value: AnyValue }

const MAX_DEPTH = 8;

/** Any JS value as an OTLP AnyValue (objects become kvlists, null/undefined the empty value). */
export function anyValue(v: unknown, depth = 0): AnyValue {
  switch (typeof v) {
    case 'string': return { stringValue: v };
    case 'boolean': return { boolValue: v };
    case 'number':
      if (Number.isSafeInteger(v)) return { intValue: String(v) };
      // NaN and Infinity have no JSON number form; the proto3 JSON mapping spells them as strings.
      return { doubleValue: Number.isFinite(v) ? v : String(v) };
    case 'bigint': return { intValue: v.toString() };
    case 'object': {
      if (v === null) return {};
      if (depth >= MAX_DEPTH) return { stringValue: '[depth limit]' };
      if (Array.isArray(v)) return { arrayValue: { values: v.map((x) => anyValue(x, depth + 1)) } };
      if (v instanceof Date) return { stringValue: v.toISOString() };
      if (v instanceof Error) return { stringValue: `${v.name}: ${v.message}` };
      return { kvlistValue: { values: keyValues(v as Record<string, unknown>, depth + 1) } };
    }
    default: return {};
  }
}

/** Object entries as OTLP KeyValues, skipping null and undefined (an absent attribute, not an empty one). */
export function keyValues(obj: Record<string, unknown>, depth = 0): KeyValue[] {
  const out: KeyValue[] = [];
  for (const key in obj) {
    const v = obj[key];
    if (v === undefined || v === null) continue;
    out.push({ key, value: anyValue(v, depth) });
  }
  return out;
}

/** Unix nanoseconds as the decimal string OTLP/JSON uses, from epoch milliseconds (fractional allowed). */
export function msToNanoString(ms: number): string {
  // Whole milliseconds and the nanosecond remainder as digits: no intermediate exceeds 2^53.
  let whole = Math.floor(ms);
  let frac = Math.round((ms - whole) * 1e6);
  if (frac >= 1e6) { whole += 1; frac -= 1e6; }
  return whole === 0 ? String(frac) : String(whole) + String(frac).padStart(6, '0');
}

export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;

/** A finished span as the exporter sees it (times in epoch ms). */
export interface SpanRecord {
  readonly name: string;
  readonly kind: keyof typeof SPAN_KIND;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  /** The parent came from another process (traceparent header). */
  readonly parentRemote: boolean;
  readonly traceState: string | undefined;
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Attributes;
  readonly droppedAttributes: number;
  readonly status: keyof typeof STATUS_CODE;
  readonly statusMessage: string | undefined;
  readonly events: readonly SpanEventRecord[] | undefined;
  readonly droppedEvents: number;
}

export interface SpanEventRecord { readonly name: string; readonly timeMs: number; readonly attributes: Attributes | undefined }

export interface Scope { name: string; version?: string }

export function encodeSpans(resource: Record<string, string>, scope: Scope, spans: readonly SpanRecord[]): string {
  // Built as a string: about half the cost of building the object tree for JSON.stringify, and
  // this runs once per span on the event loop thread (off the request path, but not free).
  let out = '{"resourceSpans":[{"resource":{"attributes":' + JSON.stringify(keyValues(resource)) +
    '},"scopeSpans":[{"scope":' + JSON.stringify(scope) + ',"spans":[';
  for (let i = 0; i < spans.length; i++) out += (i ? ',' : '') + encodeSpan(spans[i]);
  return out + ']}]}]}';
}

function encodeSpan(s: SpanRecord): string {
  // Low byte of flags: W3C trace flags (always sampled: unsampled spans are never recorded).
  // 0x100: whether the parent is remote is known; 0x200: it is (it came in a traceparent header).
  let out = '{"traceId":"' + s.traceId + '","spanId":"' + s.spanId + '"' +
    (s.parentSpanId ? ',"parentSpanId":"' + s.parentSpanId + '"' : '') +
    (s.traceState ? ',"traceState":' + JSON.stringify(s.traceState) : '') +
    ',"name":' + JSON.stringify(s.name) + ',"kind":' + SPAN_KIND[s.kind] +
    ',"startTimeUnixNano":"' + msToNanoString(s.startMs) + '","endTimeUnixNano":"' + msToNanoString(s.endMs) +
    '","attributes":' + attributesJson(s.attributes) + ',"flags":' + (0x101 | (s.parentRemote ? 0x200 : 0));
  if (s.droppedAttributes) out += ',"droppedAttributesCount":' + s.droppedAttributes;
  if (s.events) {
    out += ',"events":[';
    for (let i = 0; i < s.events.length; i++) {
      const e = s.events[i];
      out += (i ? ',' : '') + '{"timeUnixNano":"' + msToNanoString(e.timeMs) + '","name":' + JSON.stringify(e.name) +
        ',"attributes":' + (e.attributes ? attributesJson(e.attributes) : '[]') + '}';
    }
    out += ']';
  }
  if (s.droppedEvents) out += ',"droppedEventsCount":' + s.droppedEvents;
  const status = s.status === 'unset' ? '{}'
    : '{"code":' + STATUS_CODE[s.status] + (s.statusMessage ? ',"message":' + JSON.stringify(s.statusMessage) : '') + '}';
  return out + ',"status":' + status + '}';
}

/** Same output as JSON.stringify(keyValues(attrs)), without the intermediate objects. */
function attributesJson(attrs: Attributes): string {
  let out = '[';
  let first = true;
  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined || v === null) continue;
    let value: string;
    if (typeof v === 'string') value = '{"stringValue":' + JSON.stringify(v) + '}';
    else if (typeof v === 'boolean') value = v ? '{"boolValue":true}' : '{"boolValue":false}';
    else if (typeof v === 'number' && Number.isSafeInteger(v)) value = '{"intValue":"' + v + '"}';
    else value = JSON.stringify(anyValue(v));
    out += (first ? '{"key":' : ',{"key":') + JSON.stringify(key) + ',"value":' + value + '}';
    first = false;
  }
  return out + ']';
}
