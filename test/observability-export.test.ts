// OTLP export machinery: batching, retry after collector outage, bounded queue, shutdown flush,
// permanent errors, partial success, gzip, and the OTLP audit logs sink that shares it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTracer } from '../src/observability/tracing.ts';
import { otlpLogsSink } from '../src/audit/sink-http.ts';
import type { AuditEvent } from '../src/audit/event.ts';
import { resolveOtlp } from '../src/observability/otlp-config.ts';
import { startCollector, freePort, spansOf, attrs, type OtlpKv } from './observability-collector.ts';

const SLOW = 60_000; // a timer that never fires during a test: only size and flush() export

test('a full batch is exported without waiting for the timer; the rest waits for flush', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {}, batchSize: 10, flushIntervalMs: SLOW })!;
  for (let i = 0; i < 25; i++) tracer.startSpan(`s${i}`).end();
  await col.waitFor((c) => spansOf(c).length >= 20);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(col.received.length, 2);
  assert.deepEqual(col.received.map((r) => spansOf({ ...col, received: [r] }).length), [10, 10], 'only full batches before the timer');
  assert.equal(tracer.stats().queued, 5);
  await tracer.flush();
  assert.equal(col.received.length, 3);
  assert.deepEqual(spansOf(col).map((s) => s.name), Array.from({ length: 25 }, (_, i) => `s${i}`));
  assert.equal(tracer.stats().exported, 25);
  await tracer.shutdown();
  await col.close();
});

test('the timer exports a partial batch on its own', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {}, flushIntervalMs: 30 })!;
  tracer.startSpan('lonely').end();
  await col.waitFor((c) => spansOf(c).length === 1, 2000);
  await tracer.shutdown();
  await col.close();
});

test('collector down then up: spans are retried with backoff and delivered once', async () => {
  const port = await freePort();
  const tracer = createTracer({ endpoint: `http://127.0.0.1:${port}`, env: {}, flushIntervalMs: 20, minBackoffMs: 20, maxBackoffMs: 80, maxRetryMs: 10_000 })!;
  for (let i = 0; i < 3; i++) tracer.startSpan(`during-outage-${i}`).end();
  const deadline = Date.now() + 3000;
  while (tracer.stats().retries < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.ok(tracer.stats().retries >= 2, 'retried while down');
  assert.match(tracer.stats().lastError ?? '', /cannot reach/);
  assert.equal(tracer.stats().exported, 0);
  const col = await startCollector(port);
  await col.waitFor((c) => spansOf(c).length >= 3);
  await tracer.flush();
  assert.deepEqual(spansOf(col).map((s) => s.name).sort(), ['during-outage-0', 'during-outage-1', 'during-outage-2']);
  const st = tracer.stats();
  assert.equal(st.exported, 3);
  assert.equal(st.failed, 0);
  await tracer.shutdown();
  await col.close();
});

test('503 is retried (Retry-After honoured); 400 is permanent and not retried', async () => {
  const col = await startCollector();
  col.respond = { status: 503, headers: { 'retry-after': '0' } };
  const tracer = createTracer({ endpoint: col.url, env: {}, flushIntervalMs: SLOW, minBackoffMs: 10, maxBackoffMs: 20 })!;
  tracer.startSpan('retried').end();
  const flushed = tracer.flush();
  await col.waitFor((c) => c.received.length >= 2);
  col.respond = { status: 200 };
  await flushed;
  assert.equal(tracer.stats().exported, 1);
  assert.ok(tracer.stats().retries >= 1);

  col.received.length = 0;
  col.respond = { status: 400, body: '{"message":"bad"}' };
  tracer.startSpan('rejected').end();
  await tracer.flush();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(col.received.length, 1, 'a 400 is not retried');
  assert.equal(tracer.stats().failed, 1);
  assert.match(tracer.stats().lastError ?? '', /400/);
  await tracer.shutdown();
  await col.close();
});

test('retrying stops after maxRetryMs and the batch is counted as failed', async () => {
  const port = await freePort();
  const tracer = createTracer({ endpoint: `http://127.0.0.1:${port}`, env: {}, flushIntervalMs: SLOW, minBackoffMs: 10, maxBackoffMs: 20, maxRetryMs: 150 })!;
  tracer.startSpan('lost').end();
  const t0 = Date.now();
  await tracer.flush();
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(tracer.stats().failed, 1);
  assert.equal(tracer.stats().exported, 0);
  await tracer.shutdown();
});

test('the queue is bounded: when full the oldest spans are dropped and counted, never blocking', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {}, maxQueue: 5, batchSize: 5, flushIntervalMs: SLOW })!;
  for (let i = 0; i < 8; i++) tracer.startSpan(`q${i}`).end(); // synchronous: no export can run in between
  const st = tracer.stats();
  assert.equal(st.queued, 5);
  assert.equal(st.dropped, 3);
  await tracer.flush();
  assert.deepEqual(spansOf(col).map((s) => s.name), ['q3', 'q4', 'q5', 'q6', 'q7']);
  await tracer.shutdown();
  await col.close();
});

test('shutdown flushes what is queued; spans ended after shutdown are dropped and counted', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {}, flushIntervalMs: SLOW })!;
  for (let i = 0; i < 3; i++) tracer.startSpan(`final-${i}`).end();
  const open = tracer.startSpan('ends-late');
  await tracer.shutdown();
  assert.equal(spansOf(col).length, 3);
  open.end();
  assert.equal(tracer.stats().dropped, 1);
  await tracer.shutdown(); // idempotent
  await col.close();
});

test('shutdown with the collector down returns within its timeout and counts the loss', async () => {
  const port = await freePort();
  const tracer = createTracer({ endpoint: `http://127.0.0.1:${port}`, env: {}, flushIntervalMs: SLOW, minBackoffMs: 5000, maxBackoffMs: 5000 })!;
  tracer.startSpan('a').end();
  void tracer.flush(); // now sleeping in a 5 s backoff
  await new Promise((r) => setTimeout(r, 50));
  tracer.startSpan('b').end();
  const t0 = Date.now();
  await tracer.shutdown(300);
  assert.ok(Date.now() - t0 < 1500, `shutdown took ${Date.now() - t0} ms`);
  const st = tracer.stats();
  assert.equal(st.failed, 2);
  assert.equal(st.queued, 0);
});

test('shutdown does not wait past its timeout for a collector that never answers', async () => {
  const col = await startCollector();
  col.hang = true;
  const tracer = createTracer({ endpoint: col.url, env: {}, flushIntervalMs: SLOW, timeoutMs: 30_000 })!;
  tracer.startSpan('stuck').end();
  void tracer.flush();
  await new Promise((r) => setTimeout(r, 30));
  const t0 = Date.now();
  await tracer.shutdown(200);
  assert.ok(Date.now() - t0 < 1500, `shutdown took ${Date.now() - t0} ms`);
  assert.equal(tracer.stats().failed, 1);
  await col.close();
});

test('credentials in the endpoint URL never appear in stats', async () => {
  const port = await freePort();
  const tracer = createTracer({ endpoint: `http://user:s3cret@127.0.0.1:${port}`, env: {}, flushIntervalMs: SLOW, maxRetryMs: 1 })!;
  tracer.startSpan('x').end();
  await tracer.flush();
  assert.ok(tracer.stats().lastError);
  assert.doesNotMatch(tracer.stats().lastError ?? '', /s3cret/);
  await tracer.shutdown();
});

test('partial success: rejected spans are counted apart from exported ones', async () => {
  const col = await startCollector();
  col.respond = { status: 200, body: JSON.stringify({ partialSuccess: { rejectedSpans: '2', errorMessage: 'too old' } }) };
  const tracer = createTracer({ endpoint: col.url, env: {}, flushIntervalMs: SLOW })!;
  for (let i = 0; i < 5; i++) tracer.startSpan('p').end();
  await tracer.flush();
  assert.equal(tracer.stats().exported, 3);
  assert.equal(tracer.stats().rejected, 2);
  assert.match(tracer.stats().lastError ?? '', /too old/);
  await tracer.shutdown();
  await col.close();
});

test('gzip compression from OTEL_EXPORTER_OTLP_COMPRESSION', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: { OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }, flushIntervalMs: SLOW })!;
  tracer.startSpan('zipped').end();
  await tracer.flush();
  assert.equal(col.received[0].headers['content-encoding'], 'gzip');
  assert.equal(spansOf(col)[0].name, 'zipped');
  await tracer.shutdown();
  await col.close();
  assert.throws(() => createTracer({ endpoint: col.url, env: { OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' } }), /gzip or none/);
});

const EVENT = { seq: 7, time: '2026-01-02T03:04:05.006Z', prev_hash: '0'.repeat(64), hash: 'a'.repeat(64), type: 'model_call', request_id: 'req_1' } as unknown as AuditEvent;

test('the OTLP audit logs sink: the logs URL as is, gzip per OTEL_EXPORTER_OTLP_COMPRESSION like the spans, resolves once accepted, rejects while the collector is down', async () => {
  const port = await freePort();
  const cfg = resolveOtlp('logs', { env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: `http://127.0.0.1:${port}/logs-here`, OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip', OTEL_SERVICE_NAME: 'aam-audit' } })!;
  const sink = otlpLogsSink(cfg);
  assert.equal(sink.name, `otlp:http://127.0.0.1:${port}/logs-here`);
  await assert.rejects(sink.deliver([EVENT], []), /OTLP export of 1 log records failed: cannot reach/);
  const col = await startCollector(port);
  col.respond = { status: 503 };
  await assert.rejects(sink.deliver([EVENT], []), /503/);
  col.respond = { status: 200 };
  await sink.deliver([EVENT, { ...EVENT, seq: 8 } as AuditEvent], []);
  const last = col.received.at(-1)!;
  assert.equal(last.path, '/logs-here');
  assert.equal(last.headers['content-encoding'], 'gzip');
  const body = last.body as { resourceLogs: Array<{ resource: { attributes: OtlpKv[] }; scopeLogs: Array<{ scope: { name: string }; logRecords: Array<{ timeUnixNano: string; attributes: OtlpKv[] }> }> }> };
  assert.deepEqual(attrs(body.resourceLogs[0].resource.attributes)['service.name'], { stringValue: 'aam-audit' });
  const sl = body.resourceLogs[0].scopeLogs[0];
  assert.equal(sl.scope.name, 'aam.audit');
  assert.equal(sl.logRecords[0].timeUnixNano, '1767323045006000000');
  assert.deepEqual(sl.logRecords.map((r) => attrs(r.attributes)['aam.audit.seq']), [{ intValue: '7' }, { intValue: '8' }]);
  await sink.close!();
  await col.close();
});

test('OTEL_EXPORTER_OTLP_PROTOCOL: http/json and http/protobuf are taken (JSON is sent); grpc or anything else refuses, naming the variable and the HTTP port', () => {
  const base = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };
  for (const ok of ['http/json', 'http/protobuf', ' HTTP/PROTOBUF ', '']) assert.ok(resolveOtlp('traces', { env: { ...base, OTEL_EXPORTER_OTLP_PROTOCOL: ok } }));
  assert.throws(() => resolveOtlp('traces', { env: { ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } }), /OTEL_EXPORTER_OTLP_PROTOCOL is "grpc": aam exports OTLP over HTTP only[^]*4318/);
  assert.throws(() => resolveOtlp('logs', { env: { ...base, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: 'grpc' } }), /OTEL_EXPORTER_OTLP_LOGS_PROTOCOL is "grpc"/);
  assert.ok(resolveOtlp('traces', { env: { ...base, OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: 'grpc' } }), 'the logs setting is the logs\' alone');
  assert.equal(resolveOtlp('traces', { env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } }), null, 'no endpoint: nothing is exported, nothing to refuse');
});
