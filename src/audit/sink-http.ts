// HTTP sinks: a signed webhook (batched JSON, HMAC-SHA256 in x-aam-signature, seq range as the
// idempotency key) and OpenTelemetry logs over OTLP/HTTP JSON (/v1/logs).
import { createHmac } from 'node:crypto';
import type { AuditSink } from './sinks.ts';
import type { AuditEvent } from './event.ts';
import { toOcsf } from './ocsf.ts';

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
  return {
    name: opts.name ?? `webhook:${opts.url}`,
    async deliver(events) {
      const body = JSON.stringify({
        sent_at: new Date().toISOString(),
        events: opts.format === 'ocsf' ? events.map(toOcsf) : events,
      });
      const first = events[0].seq;
      const last = events[events.length - 1].seq;
      await post(opts.url, body, {
        ...opts.headers,
        'content-type': 'application/json',
        'x-aam-signature': signWebhookBody(opts.secret, body),
        'idempotency-key': `aam-audit-${first}-${last}`,
        'x-aam-seq-range': `${first}-${last}`,
      }, opts.timeoutMs ?? 10_000);
    },
  };
}

export function signWebhookBody(secret: string, body: string): string {
  return 'sha256=' + createHmac('sha256', secret).update(body).digest('hex');
}

export interface OtlpLogsSinkOptions {
  name?: string;
  /** Collector base URL, e.g. http://localhost:4318 (or OTEL_EXPORTER_OTLP_ENDPOINT); /v1/logs is appended. */
  endpoint: string;
  headers?: Record<string, string>;
  serviceName?: string;
  timeoutMs?: number;
}

type OtlpValue = { stringValue: string } | { intValue: string } | { doubleValue: number } | { boolValue: boolean };

export function otlpLogsSink(opts: OtlpLogsSinkOptions): AuditSink {
  const url = opts.endpoint.replace(/\/+$/, '') + (opts.endpoint.endsWith('/v1/logs') ? '' : '/v1/logs');
  return {
    name: opts.name ?? `otlp:${opts.endpoint}`,
    async deliver(events) {
      const body = JSON.stringify({
        resourceLogs: [{
          resource: { attributes: [attr('service.name', opts.serviceName ?? 'aam')] },
          scopeLogs: [{ scope: { name: 'aam.audit' }, logRecords: events.map(otlpRecord) }],
        }],
      });
      await post(url, body, { ...opts.headers, 'content-type': 'application/json' }, opts.timeoutMs ?? 10_000);
    },
  };
}

export function otlpRecord(e: AuditEvent): Record<string, unknown> {
  const nanos = (BigInt(Date.parse(e.time)) * 1_000_000n).toString();
  const warn = e.policy?.decision === 'deny' || e.type === 'credential_leak' || e.type === 'budget_alert';
  const attrs: { key: string; value: OtlpValue }[] = [
    attr('event.name', `aam.audit.${e.type}`),
    { key: 'aam.audit.seq', value: { intValue: String(e.seq) } },
    attr('aam.audit.hash', e.hash),
    attr('aam.request_id', e.request_id),
  ];
  if (e.identity) attrs.push(attr('gen_ai.agent.id', e.identity.spiffe_id), attr('gen_ai.agent.name', e.identity.agent));
  if (e.policy) attrs.push(attr('aam.policy.name', e.policy.name), attr('aam.policy.decision', e.policy.decision));
  if (e.model) attrs.push(attr('gen_ai.request.model', e.model.route), attr('gen_ai.provider.name', e.model.provider ?? ''));
  if (e.tool) attrs.push(attr('gen_ai.tool.name', `${e.tool.server}__${e.tool.tool}`));
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
