// Where and how OTLP data is sent, resolved once at start from options and the standard OTEL_*
// environment variables (https://opentelemetry.io/docs/specs/otel/protocol/exporter/). Explicit
// options win over the environment; a signal-specific variable wins over the generic one.
import type { Logger } from './log.ts';

export type OtlpSignal = 'traces' | 'logs';

export interface OtlpOptions {
  /** Base URL; the signal path (/v1/traces, /v1/logs) is appended. Env OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint?: string;
  /** Full URL used as is. Env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_LOGS_ENDPOINT. */
  url?: string;
  /** Extra request headers, or a "k=v,k2=v2" string (values percent-decoded). Env OTEL_EXPORTER_OTLP_HEADERS. */
  headers?: Record<string, string> | string;
  /** service.name resource attribute (default 'aam'). Env OTEL_SERVICE_NAME. */
  serviceName?: string;
  /** Extra resource attributes. Env OTEL_RESOURCE_ATTRIBUTES ("k=v,k2=v2"). */
  resourceAttributes?: Record<string, string>;
  /** Resource attributes OTEL_RESOURCE_ATTRIBUTES may override (service.instance.id). */
  resourceDefaults?: Record<string, string>;
  /** Queue bound; when full the oldest item is dropped and counted (default 2048). */
  maxQueue?: number;
  /** Items per POST (default 512). */
  batchSize?: number;
  /** Export period (default 1000 ms). */
  flushIntervalMs?: number;
  /** Per-request timeout (default 10000 ms). Env OTEL_EXPORTER_OTLP_TIMEOUT. */
  timeoutMs?: number;
  /** Give up on a batch after retrying for this long (default 60000 ms). */
  maxRetryMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Env OTEL_EXPORTER_OTLP_COMPRESSION (gzip | none). */
  compression?: 'gzip' | 'none';
  /** Read instead of process.env (tests). */
  env?: Record<string, string | undefined>;
  /** Export failures are reported here (one warning per failure streak). */
  logger?: Logger;
}

export interface ResolvedOtlp {
  url: string;
  headers: Record<string, string>;
  resource: Record<string, string>;
  maxQueue: number;
  batchSize: number;
  flushIntervalMs: number;
  timeoutMs: number;
  maxRetryMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  compression: 'gzip' | 'none';
  logger?: Logger;
}

const SIGNAL_PATH: Record<OtlpSignal, string> = { traces: '/v1/traces', logs: '/v1/logs' };
const SIGNAL_ENV: Record<OtlpSignal, string> = { traces: 'TRACES', logs: 'LOGS' };
// Batch processor variables: BSP for spans, BLRP for log records.
const BATCH_ENV: Record<OtlpSignal, string> = { traces: 'OTEL_BSP', logs: 'OTEL_BLRP' };

/** Resolve the exporter settings, or null when no endpoint is configured or OTel is disabled. */
export function resolveOtlp(signal: OtlpSignal, opts: OtlpOptions = {}): ResolvedOtlp | null {
  const env = opts.env ?? process.env;
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return null;
  if (env[`OTEL_${SIGNAL_ENV[signal]}_EXPORTER`]?.trim().toLowerCase() === 'none') return null;
  const url = resolveUrl(signal, opts, env);
  if (!url) return null;
  const sig = SIGNAL_ENV[signal];
  checkProtocol(env, sig);
  const headers = {
    ...parseKeyValues(env.OTEL_EXPORTER_OTLP_HEADERS ?? ''),
    ...parseKeyValues(env[`OTEL_EXPORTER_OTLP_${sig}_HEADERS`] ?? ''),
    ...(typeof opts.headers === 'string' ? parseKeyValues(opts.headers) : opts.headers ?? {}),
  };
  const resource: Record<string, string> = {
    'service.name': 'aam',
    ...opts.resourceDefaults,
    ...parseKeyValues(env.OTEL_RESOURCE_ATTRIBUTES ?? ''),
    ...opts.resourceAttributes,
    'telemetry.sdk.name': 'aam',
    'telemetry.sdk.language': 'nodejs',
  };
  const serviceName = opts.serviceName ?? env.OTEL_SERVICE_NAME;
  if (serviceName) resource['service.name'] = serviceName;
  const num = (opt: number | undefined, name: string, def: number): number => {
    if (opt !== undefined) return positive(opt, name);
    const raw = env[name];
    return raw === undefined || raw.trim() === '' ? def : positive(Number(raw), name);
  };
  const b = BATCH_ENV[signal];
  const maxQueue = num(opts.maxQueue, `${b}_MAX_QUEUE_SIZE`, 2048);
  const compression = opts.compression ?? (env[`OTEL_EXPORTER_OTLP_${sig}_COMPRESSION`] ?? env.OTEL_EXPORTER_OTLP_COMPRESSION ?? 'none').trim().toLowerCase();
  if (compression !== 'gzip' && compression !== 'none') throw new Error(`OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none (got "${compression}")`);
  return {
    url,
    headers,
    resource,
    maxQueue,
    batchSize: Math.min(maxQueue, num(opts.batchSize, `${b}_MAX_EXPORT_BATCH_SIZE`, 512)),
    flushIntervalMs: num(opts.flushIntervalMs, `${b}_SCHEDULE_DELAY`, 1000),
    timeoutMs: num(opts.timeoutMs, env[`OTEL_EXPORTER_OTLP_${sig}_TIMEOUT`] !== undefined ? `OTEL_EXPORTER_OTLP_${sig}_TIMEOUT` : 'OTEL_EXPORTER_OTLP_TIMEOUT', 10_000),
    maxRetryMs: opts.maxRetryMs ?? 60_000,
    minBackoffMs: opts.minBackoffMs ?? 500,
    maxBackoffMs: opts.maxBackoffMs ?? 30_000,
    compression,
    logger: opts.logger,
  };
}

function resolveUrl(signal: OtlpSignal, opts: OtlpOptions, env: Record<string, string | undefined>): string | null {
  const sigVar = `OTEL_EXPORTER_OTLP_${SIGNAL_ENV[signal]}_ENDPOINT`;
  let url: string | undefined;
  let source: string;
  if (opts.url) { url = opts.url; source = 'url option'; }
  else if (opts.endpoint) { url = joinPath(opts.endpoint, SIGNAL_PATH[signal]); source = 'endpoint option'; }
  else if (env[sigVar]?.trim()) { url = env[sigVar]!.trim(); source = sigVar; }
  else if (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim()) { url = joinPath(env.OTEL_EXPORTER_OTLP_ENDPOINT.trim(), SIGNAL_PATH[signal]); source = 'OTEL_EXPORTER_OTLP_ENDPOINT'; }
  else return null;
  let parsed: URL;
  try { parsed = new URL(url); } catch { parsed = new URL('invalid:'); }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`${source} must be an http(s) URL such as http://localhost:4318 (OTLP/HTTP; got "${url}")`);
  }
  return parsed.toString();
}

/**
 * aam speaks OTLP/HTTP (JSON, which collectors take on their HTTP port beside protobuf): `grpc`
 * (port 4317) would have had every export fail, each batch retried for a minute and dropped.
 */
function checkProtocol(env: Record<string, string | undefined>, sig: string): void {
  const name = env[`OTEL_EXPORTER_OTLP_${sig}_PROTOCOL`]?.trim() ? `OTEL_EXPORTER_OTLP_${sig}_PROTOCOL` : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const protocol = env[name]?.trim().toLowerCase();
  if (!protocol || protocol === 'http/json' || protocol === 'http/protobuf') return;
  throw new Error(`${name} is "${env[name]}": aam exports OTLP over HTTP only (it sends JSON); set http/json or http/protobuf, or unset it, and point the endpoint at the collector's OTLP/HTTP port (usually 4318), not gRPC's 4317`);
}

function joinPath(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

function positive(n: number, name: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number (got ${n})`);
  return Math.floor(n);
}

/** Parse the W3C-baggage-like "k=v,k2=v2" lists used by OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES. */
export function parseKeyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const key = part.slice(0, eq).trim();
    if (!key) continue;
    out[key] = safeDecode(part.slice(eq + 1).trim());
  }
  return out;
}

function safeDecode(s: string): string {
  try { return decodeURIComponent(s); } catch { return s; }
}
