// OpenTelemetry and audit sinks as an operator sets them, on a real `aam serve`: the audit log
// records go where the spans go, with the same OTEL_* settings (a collector that wants a token in
// OTEL_EXPORTER_OTLP_HEADERS got spans but refused every log record), both say which process sent
// them (service.instance.id), and a sink that fails says so in the log on one process too (the
// embedded gateway retried a failing webhook in silence; only a fleet logged it).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCollector } from './observability-collector.ts';
import { startServeChild, createKey } from './helpers/serve-child.ts';
import { until } from './helpers/e2e.ts';
import { doc, yaml, agentDocs } from './helpers/gateway.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-otlp-sinks-'));
after(() => rmSync(root, { recursive: true, force: true }));

type Attr = { key: string; value: { stringValue?: string } };
type Resource = { attributes: Attr[] };

test('OTLP logs use the traces\' OTEL_* settings (headers, compression, service name, resource), both name the instance; a failing webhook is logged', async () => {
  const collector = await startCollector();
  const dir = join(root, 'one');
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(config, yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'demo-small' }] }),
    ...agentDocs(['chat']),
  ));
  const key = await createKey(config, data);
  const gw = await startServeChild({ config, data, env: {
    OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50',
    OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20collector-token', OTEL_SERVICE_NAME: 'aam-prod', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod',
    OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
    // Nothing listens there: the webhook fails on every attempt.
    AAM_AUDIT_WEBHOOK_URL: 'http://127.0.0.1:9/hook', AAM_AUDIT_WEBHOOK_SECRET: 'whsec-test',
  } });
  try {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(r.status, 200, await r.text());
    const body = (path: string) => collector.received.filter((x) => x.path === path);
    const logged = () => body('/v1/logs').some((x) => JSON.stringify(x.body).includes('aam.audit.model_call'));
    await until(() => logged() && body('/v1/traces').length > 0, 15_000, 'spans and the model_call log record at the collector');
    for (const path of ['/v1/traces', '/v1/logs']) {
      for (const x of body(path)) assert.equal(x.headers.authorization, 'Bearer collector-token', `${path} carries OTEL_EXPORTER_OTLP_HEADERS`);
      for (const x of body(path)) assert.equal(x.headers['content-encoding'], 'gzip', `${path} is gzipped per OTEL_EXPORTER_OTLP_COMPRESSION (the logs were not)`);
    }
    const resourceOf = (path: string): Record<string, string | undefined> => {
      const b = body(path)[0].body as { resourceSpans?: Array<{ resource: Resource }>; resourceLogs?: Array<{ resource: Resource }> };
      const res = (b.resourceSpans ?? b.resourceLogs)![0].resource;
      return Object.fromEntries(res.attributes.map((a) => [a.key, a.value.stringValue]));
    };
    const spans = resourceOf('/v1/traces');
    const logs = resourceOf('/v1/logs');
    assert.equal(logs['service.name'], 'aam-prod');
    assert.equal(logs['deployment.environment.name'], 'prod');
    assert.match(String(spans['service.instance.id']), /^[0-9a-f]{12}$/);
    assert.equal(logs['service.instance.id'], spans['service.instance.id'], 'logs and spans name the same instance');
    await until(() => /"event":"audit_sink_failed"[^\n]*webhook:http:\/\/127\.0\.0\.1:9\/hook/.test(gw.stderr()), 15_000, 'the failing webhook to be logged');
  } finally {
    await gw.stop();
    await collector.close();
  }
});
