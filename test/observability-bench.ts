// Cost of tracing on the request path (run: node test/observability-bench.ts). Not part of npm test.
import { createTracer } from '../src/observability/tracing.ts';
import { modelSpanAttributes, modelSpanName } from '../src/observability/otlp-genai.ts';
import { encodeSpans } from '../src/observability/otlp-encode.ts';
import { startCollector } from './observability-collector.ts';

const col = await startCollector();
col.discard = true;
const tracer = createTracer({ endpoint: col.url, env: {}, maxQueue: 8192 })!;
const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const CHUNK = 500;

function one(): void {
  const server = tracer.startSpan('POST /v1/chat/completions', { kind: 'server', parent: TP, attributes: { 'http.request.method': 'POST', 'url.path': '/v1/chat/completions' } });
  server.setAttributes(modelSpanAttributes({ operation: 'chat', provider: 'openai', route: 'reasoning-high', requestModel: 'gpt-4o', responseModel: 'gpt-4o-2024-08-06', inputTokens: 120, outputTokens: 300, agentId: 'spiffe://prod/agent/finance-analyst', agentName: 'finance-analyst', finishReason: 'stop' }));
  server.updateName(modelSpanName('chat', 'gpt-4o'));
  server.setAttribute('http.response.status_code', 200);
  server.setStatus('ok');
  server.end();
}

async function run(chunks: number): Promise<{ hot: number; wall: number }> {
  let hot = 0n;
  const t0 = process.hrtime.bigint();
  for (let c = 0; c < chunks; c++) {
    const s = process.hrtime.bigint();
    for (let i = 0; i < CHUNK; i++) one();
    hot += process.hrtime.bigint() - s;
    await new Promise((r) => setImmediate(r));
  }
  await tracer.flush();
  const wall = process.hrtime.bigint() - t0;
  const n = chunks * CHUNK;
  return { hot: Number(hot) / n / 1000, wall: Number(wall) / n / 1000 };
}

await run(100); // warm-up
const r = await run(400);
console.log(`spans: ${400 * CHUNK}`);
console.log(`hot path (startSpan w/ traceparent + 13 attrs + end), per span: ${r.hot.toFixed(3)} us`);
console.log(`wall incl. batch encode + POST on the same thread, per span: ${r.wall.toFixed(3)} us`);

// Encoding alone

const t2 = createTracer({ endpoint: 'http://127.0.0.1:9', env: {}, maxQueue: 100000 })!;
const spans = [];
for (let i = 0; i < 512; i++) { const s = t2.startSpan('x', { attributes: modelSpanAttributes({ operation: 'chat', provider: 'openai', requestModel: 'gpt-4o', inputTokens: 1, outputTokens: 2, agentId: 'spiffe://a/b', finishReason: 'stop' }) }); spans.push(s); }
const t3 = process.hrtime.bigint();
for (let k = 0; k < 50; k++) encodeSpans({ 'service.name': 'aam' }, { name: 'aam' }, spans as never);
console.log(`encode per span (512-span batch): ${(Number(process.hrtime.bigint() - t3) / 50 / 512 / 1000).toFixed(3)} us`);
// No tracer: the cost the lead pays when OTEL is off
const nul = createTracer({ env: {} });
const t4 = process.hrtime.bigint();
for (let i = 0; i < 1e6; i++) { const s = nul?.startSpan('x'); s?.setAttribute('a', 1); s?.end(); }
console.log(`no endpoint (null tracer, optional chaining), per request: ${(Number(process.hrtime.bigint() - t4) / 1e6 / 1000).toFixed(4)} us`);
console.log('stats', tracer.stats());
await tracer.shutdown(); await t2.shutdown(10); await col.close();
