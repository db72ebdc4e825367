// Cost of tracing on the request path (run: node test/observability-bench.ts). Not part of npm test.
import { createTracer } from '../src/observability/tracing.ts';
import { modelSpanAttributes, modelSpanName } from '../src/observability/otlp-genai.ts';
import { encodeSpans } from '../src/observability/otlp-encode.ts';

// The collector runs in a child process so its receive work is not counted as ours.
import { spawn } from 'node:child_process';
const child = spawn(process.execPath, ['-e', `import('${new URL('./observability-collector.ts', import.meta.url).href}').then(async (m) => { const c = await m.startCollector(); c.discard = true; process.stdout.write(c.url + '\\n'); setInterval(() => {}, 1e6); })`], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim())));
const col = { close: async () => { child.kill(); } };
const tracer = createTracer({ endpoint: url, env: {}, maxQueue: 1_000_000 })!;
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

async function run(chunks: number): Promise<{ hot: number; wall: number; cpu: number }> {
  let hot = 0n;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let c = 0; c < chunks; c++) {
    const s = process.hrtime.bigint();
    for (let i = 0; i < CHUNK; i++) one();
    hot += process.hrtime.bigint() - s;
    await new Promise((r) => setImmediate(r));
    // Keep the queue near a real server's (a few batches), not 200k spans deep: that measures GC.
    if (tracer.stats().queued > 2048) await tracer.flush();
  }
  await tracer.flush();
  const wall = process.hrtime.bigint() - t0;
  const cpu = process.cpuUsage(cpu0);
  const n = chunks * CHUNK;
  return { hot: Number(hot) / n / 1000, wall: Number(wall) / n / 1000, cpu: (cpu.user + cpu.system) / n };
}

await run(100); // warm-up
const r = await run(400);
console.log(`spans: ${400 * CHUNK}`);
console.log(`hot path (startSpan w/ traceparent + 13 attrs + end), per span: ${r.hot.toFixed(3)} us`);
console.log(`process CPU incl. batch encode + POST (collector in a child process), per span: ${r.cpu.toFixed(3)} us`);
console.log(`wall per span (producer + exporter on one thread): ${r.wall.toFixed(3)} us`);

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
