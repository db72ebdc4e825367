// HTTP sinks: a signed webhook (batched JSON, HMAC-SHA256 in x-aam-signature, seq range as the
// idempotency key) and OpenTelemetry logs over OTLP/HTTP JSON (/v1/logs, through the traces' exporter). Both carry the signed
// checkpoints too, as records of their own.
import { createHash, createHmac } from 'node:crypto';
import type { AuditSink } from './sinks.ts';
import { identityOf, policyOf, toolOf, type AuditEvent } from './event.ts';
import { toOcsf } from './ocsf.ts';
import { checkpointLine, checkpointRecord } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { ResolvedOtlp } from '../observability/otlp-config.ts';
import { createBatchExporter } from '../observability/otlp-exporter.ts';
import { keyValues } from '../observability/otlp-encode.ts';

export interface WebhookSinkOptions {
  name?: string;
  url: string;
  /** HMAC key; receivers check x-aam-signature = "sha256=" + hex(HMAC-SHA256(secret, raw body)). */
  secret: string;
  format?: 'native' | 'ocsf';
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export function webhookSink(opts: WebhookSinkOptions): AuditSink {
  const send = (body: string, headers: Record<string, string>): Promise<void> => post(opts.url, body, {
    ...opts.headers,
    'content-type': 'application/json',
    'x-aam-signature': signWebhookBody(opts.secret, body),
    ...headers,
  }, opts.timeoutMs ?? 10_000);
  return {
    name: opts.name ?? `webhook:${opts.url}`,
    async deliver(events) {
      const body = JSON.stringify({
        sent_at: new Date().toISOString(),
        events: opts.format === 'ocsf' ? events.map(toOcsf) : events,
      });
      const first = events[0].seq;
      const last = events[events.length - 1].seq;
      // Fleet mode: a batch is one replica chain's; (replica, seq) is what identifies an event.
      const replica = typeof events[0].replica === 'string' ? events[0].replica : undefined;
      await send(body, {
        'idempotency-key': `aam-audit-${replica ? `${replica}-` : ''}${first}-${last}`, 'x-aam-seq-range': `${first}-${last}`, 'x-aam-record': 'events',
        ...(replica ? { 'x-aam-replica': replica } : {}),
      });
    },
    // Their own body ({"checkpoints":[...]}, lines as in exports): a receiver keeps the newest
    // outside aam for `aam audit verify --checkpoint` (a body as received is accepted there).
    async deliverCheckpoints(checkpoints) {
      const body = JSON.stringify({ sent_at: new Date().toISOString(), checkpoints: checkpoints.map(checkpointRecord) });
      const id = createHash('sha256').update(checkpoints.map((c) => c.signature).join()).digest('hex').slice(0, 16);
      await send(body, { 'idempotency-key': `aam-checkpoint-${checkpoints[checkpoints.length - 1].tree_size}-${id}`, 'x-aam-record': 'checkpoints' });
    },
    async deliverFleetCheckpoints(lines) {
      const body = JSON.stringify({ sent_at: new Date().toISOString(), checkpoints: lines.map((l) => JSON.parse(l) as unknown) });
      const id = createHash('sha256').update(lines.join('\n')).digest('hex').slice(0, 16);
      await send(body, { 'idempotency-key': `aam-fleet-checkpoint-${id}`, 'x-aam-record': 'checkpoints' });
    },
  };
}

export function signWebhookBody(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

type OtlpValue = { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean };

/**
 * OTLP logs through the traces' exporter (one place for OTEL_* headers, resource, timeout, gzip
 * per OTEL_EXPORTER_OTLP_COMPRESSION, kept-alive connections, partial success): each delivery is one
 * POST that resolves once the collector accepted it; the sink runner keeps the cursor and retries.
 * `name`: the cursor is kept under it (default otlp:<logs URL>).
 */
export function otlpLogsSink(cfg: ResolvedOtlp, name = `otlp:${cfg.url}`): AuditSink {
  const resource = keyValues(cfg.resource);
  const exporter = createBatchExporter<Record<string, unknown>>(cfg, {
    encode: (logRecords) => JSON.stringify({ resourceLogs: [{ resource: { attributes: resource }, scopeLogs: [{ scope: { name: 'aam.audit' }, logRecords }] }] }),
    rejectedField: 'rejectedLogRecords',
    noun: 'log records',
  });
  return {
    name,
    deliver: (events) => exporter.send(events.map(otlpRecord)),
    deliverCheckpoints: (checkpoints) => exporter.send(checkpoints.map(otlpCheckpointRecord)),
    deliverFleetCheckpoints: (lines) => exporter.send(lines.map((line) => {
      const nanos = (BigInt(Date.parse((JSON.parse(line) as { time: string }).time)) * 1_000_000n).toString();
      return { timeUnixNano: nanos, observedTimeUnixNano: nanos, severityNumber: 9, severityText: 'INFO', body: { stringValue: line }, attributes: [attr('event.name', 'aam.audit.fleet_checkpoint')] };
    })),
    close: () => exporter.shutdown(1000),
  };
}

/** A signed checkpoint as a log record of its own (event.name aam.audit.checkpoint); the body is its export line. */
export function otlpCheckpointRecord(c: Checkpoint): Record<string, unknown> {
  const nanos = (BigInt(Date.parse(c.time)) * 1_000_000n).toString();
  return {
    timeUnixNano: nanos,
    observedTimeUnixNano: nanos,
    severityNumber: 9,
    severityText: 'INFO',
    body: { stringValue: checkpointLine(c) },
    attributes: [
      attr('event.name', 'aam.audit.checkpoint'),
      { key: 'aam.audit.checkpoint.tree_size', value: { intValue: String(c.tree_size) } },
      attr('aam.audit.checkpoint.head_hash', c.head_hash),
      attr('aam.audit.checkpoint.type', c.type),
      attr('aam.audit.checkpoint.key_id', c.key_id),
    ],
  };
}

export function otlpRecord(e: AuditEvent): Record<string, unknown> {
  const nanos = (BigInt(Date.parse(e.time)) * 1_000_000n).toString();
  const who = identityOf(e);
  const policy = policyOf(e);
  const tool = toolOf(e);
  const warn = policy?.decision === 'deny' || e.type === 'credential_leak' || e.type === 'budget_alert';
  const attrs: { key: string; value: OtlpValue }[] = [
    attr('event.name', `aam.audit.${e.type}`),
    { key: 'aam.audit.seq', value: { intValue: String(e.seq) } },
    attr('aam.audit.hash', e.hash),
    attr('aam.request_id', e.request_id),
  ];
  // Fleet: the replica whose chain holds the event (the resource's service.instance.id is the replica that delivered it).
  if (typeof e.replica === 'string') attrs.push(attr('aam.audit.replica', e.replica));
  if (who) attrs.push(attr('gen_ai.agent.id', who.spiffe_id), attr('gen_ai.agent.name', who.agent));
  if (policy) attrs.push(attr('aam.policy.name', policy.name), attr('aam.policy.decision', policy.decision));
  if (e.model) attrs.push(attr('gen_ai.request.model', e.model.route), attr('gen_ai.provider.name', e.model.provider ?? ''));
  if (tool) attrs.push(attr('gen_ai.tool.name', tool.server ? `${tool.server}__${tool.tool}` : tool.tool ?? ''));
  const rec: Record<string, unknown> = {
    timeUnixNano: nanos,
    observedTimeUnixNano: nanos,
    severityNumber: warn ? 13 : 9,
    severityText: warn ? 'WARN' : 'INFO',
    body: { stringValue: JSON.stringify(e) },
    attributes: attrs,
  };
  if (e.trace_id && /^[0-9a-f]{32}$/.test(e.trace_id)) rec.traceId = e.trace_id;
  return rec;
}

function attr(key: string, value: string): { key: string; value: OtlpValue } {
  return { key, value: { stringValue: value } };
}

async function post(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<void> {
  const res = await fetch(url, { method: 'POST', body, headers, signal: AbortSignal.timeout(timeoutMs) });
  // Drain the body so the connection can be reused.
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new Error(`${url} answered ${res.status}${text ? ': ' + text.slice(0, 200) : ''}`);
}
