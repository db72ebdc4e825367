// OpenTelemetry logs over OTLP/HTTP JSON (POST <endpoint>/v1/logs), batched like spans. The audit
// module uses it as a sink; emit() only queues (bounded, drop-oldest), it never blocks or throws.
import { resolveOtlp, type OtlpOptions } from './otlp-config.ts';
import { createBatchExporter, type ExportStats } from './otlp-exporter.ts';
import { encodeLogs, type LogRecordInput, type QueuedLog } from './otlp-encode.ts';

export type { LogRecordInput, Severity } from './otlp-encode.ts';

export interface OtlpLogExporter {
  /** Queue a record (never blocks; drops the oldest when the queue is full). */
  emit(record: LogRecordInput): void;
  /**
   * POST these records now and resolve only once the collector accepted them; rejects on failure.
   * For the audit sink runner, which keeps a durable cursor and retries with backoff itself.
   */
  send(records: readonly LogRecordInput[]): Promise<void>;
  flush(): Promise<void>;
  shutdown(timeoutMs?: number): Promise<void>;
  stats(): ExportStats;
}

export interface OtlpLogOptions extends OtlpOptions {
  /** Instrumentation scope name (default 'aam'), e.g. 'aam.audit'. */
  scopeName?: string;
  version?: string;
}

/** A log exporter for the configured endpoint (OTEL_EXPORTER_OTLP_LOGS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT), or null when none is set. */
export function createOtlpLogExporter(opts: OtlpLogOptions = {}): OtlpLogExporter | null {
  const cfg = resolveOtlp('logs', opts);
  if (!cfg) return null;
  const scope = { name: opts.scopeName ?? 'aam', version: opts.version ?? '0.1.0' };
  const exporter = createBatchExporter<QueuedLog>(cfg, {
    encode: (logs) => encodeLogs(cfg.resource, scope, logs),
    rejectedField: 'rejectedLogRecords',
    noun: 'log records',
  });
  return {
    emit: (record) => exporter.push({ record, observedMs: Date.now() }),
    send: (records) => {
      const observedMs = Date.now();
      return exporter.send(records.map((record) => ({ record, observedMs })));
    },
    flush: () => exporter.flush(),
    shutdown: (timeoutMs) => exporter.shutdown(timeoutMs),
    stats: () => exporter.stats(),
  };
}
