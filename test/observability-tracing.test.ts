// Tracing: OTLP/JSON structure, W3C trace context, parent/child linkage, sampling, GenAI attributes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTracer, parseTraceparent, formatTraceparent, startServerSpan, endHttpSpan, traceHeaders } from '../src/observability/tracing.ts';
import { modelSpanAttributes, modelSpanName, toolSpanAttributes, toolSpanName, decisionSpanAttributes, genAiProviderName, mcpTraceparent, withMcpTraceContext } from '../src/observability/otlp-genai.ts';
import { IdPool } from '../src/observability/otlp-context.ts';
import { startCollector, spansOf, attrs } from './observability-collector.ts';

const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

test('no endpoint -> createTracer returns null; disabled SDK too; a bad URL is refused with a clear message', () => {
  assert.equal(createTracer({ env: {} }), null);
  assert.equal(createTracer({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_SDK_DISABLED: 'true' } }), null);
  assert.equal(createTracer({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:1', OTEL_TRACES_EXPORTER: 'none' } }), null);
  assert.throws(() => createTracer({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' } }), /OTEL_EXPORTER_OTLP_ENDPOINT must be an http\(s\) URL/);
  assert.throws(() => createTracer({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://x' } }), /http\(s\) URL/);
});

test('parseTraceparent accepts valid W3C headers and rejects malformed ones', () => {
  assert.deepEqual(parseTraceparent(TP), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true });
  assert.equal(parseTraceparent(TP.replace(/-01$/, '-00'))?.sampled, false);
  assert.equal(parseTraceparent(TP, 'rojo=00f067aa0ba902b7')?.traceState, 'rojo=00f067aa0ba902b7');
  // A later version may carry more fields after a dash.
  assert.equal(parseTraceparent('01' + TP.slice(2) + '-extra')?.spanId, '00f067aa0ba902b7');
  const bad = [
    undefined, '', 'garbage', TP.toUpperCase(), TP + '-extra', TP.slice(0, -1),
    'ff' + TP.slice(2),                                      // version ff is invalid
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero span id
    '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01', // non-hex
    '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01',
    '01' + TP.slice(2) + 'x',                                  // later version, junk after flags
    [TP, TP],                                                  // two headers are ambiguous
  ];
  for (const h of bad) assert.equal(parseTraceparent(h), undefined, `should reject ${JSON.stringify(h)}`);
  assert.equal(formatTraceparent({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }), TP);
});

test('id pool gives distinct lowercase hex ids of the right length across refills', () => {
  const pool = new IdPool(64);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const t = pool.traceId();
    const s = pool.spanId();
    assert.match(t, /^[0-9a-f]{32}$/);
    assert.match(s, /^[0-9a-f]{16}$/);
    seen.add(t); seen.add(s);
  }
  assert.equal(seen.size, 400);
});

test('trace ids start with the time in ms, so ids made later sort after earlier ones (the audit trace index appends)', async () => {
  const pool = new IdPool(64);
  const before = Date.now();
  const first = pool.traceId();
  const at = parseInt(first.slice(0, 12), 16);
  assert.ok(at >= before && at <= Date.now(), `time prefix ${at} not within [${before}, now]`);
  // Wait for the next millisecond (no sleep: the clock moves on its own).
  while (Date.now() === at) await new Promise((r) => setImmediate(r));
  const later = pool.traceId();
  assert.ok(later > first, `${later} should sort after ${first}`);
  // The rest stays random: ids of one millisecond differ.
  const same = new Set(Array.from({ length: 50 }, () => pool.traceId().slice(12)));
  assert.equal(same.size, 50);
});

test('timeHex: the low 48 bits of a time in ms as 12 hex digits, at every byte boundary', async () => {
  const { timeHex } = await import('../src/lib/time-hex.ts');
  const expected = (ms: number) => (BigInt(ms) % 2n ** 48n).toString(16).padStart(12, '0');
  for (const ms of [0, 1, 0xff, 0x100, 0xffff_ffff, 0x1_0000_0000, 0xff_ffff_ffff, Date.now(), 2 ** 48 - 1, 2 ** 48, 2 ** 48 + 0x1234]) {
    assert.equal(timeHex(ms), expected(ms), `ms ${ms}`);
  }
});

test('spans arrive with the OTLP/JSON structure, typed attributes, kinds, status and nanosecond times', async () => {
  const col = await startCollector();
  const tracer = createTracer({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: col.url + '/', OTEL_SERVICE_NAME: 'aam-test', OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=ci,team=a%20b' } })!;
  assert.ok(tracer);
  const before = Date.now();
  const span = tracer.startSpan('chat gpt-4o', { kind: 'client', attributes: { 'gen_ai.request.model': 'gpt-4o', skipped: undefined } });
  span.setAttribute('int', 42).setAttribute('dbl', 1.5).setAttribute('yes', true).setAttribute('list', ['stop']).setAttribute('nothing', null);
  span.setAttributes({ 'gen_ai.usage.input_tokens': 12, big: 2 ** 60 });
  span.setStatus('error', 'upstream 502');
  span.end();
  span.setAttribute('late', 'ignored'); // after end: not recorded
  span.end(); // second end is a no-op
  tracer.startSpan('server', { kind: 'server' }).setStatus('ok').end();
  tracer.startSpan('internal').end();
  await tracer.flush();
  const after = Date.now();

  assert.equal(col.received.length, 1);
  const req = col.received[0];
  assert.equal(req.path, '/v1/traces');
  assert.equal(req.headers['content-type'], 'application/json');
  const body = req.body as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: unknown }> }; scopeSpans: Array<{ scope: { name: string } }> }> };
  const res = attrs(body.resourceSpans[0].resource.attributes as never);
  assert.deepEqual(res['service.name'], { stringValue: 'aam-test' });
  assert.deepEqual(res['deployment.environment'], { stringValue: 'ci' });
  assert.deepEqual(res.team, { stringValue: 'a b' });
  assert.equal(body.resourceSpans[0].scopeSpans[0].scope.name, 'aam');

  const [s, srv, int] = spansOf(col);
  assert.equal(s.name, 'chat gpt-4o');
  assert.match(s.traceId, /^[0-9a-f]{32}$/);
  assert.match(s.spanId, /^[0-9a-f]{16}$/);
  assert.equal(s.parentSpanId, undefined);
  assert.equal(s.kind, 3);
  assert.equal(srv.kind, 2);
  assert.equal(int.kind, 1);
  assert.deepEqual(s.status, { code: 2, message: 'upstream 502' });
  assert.deepEqual(srv.status, { code: 1 });
  assert.deepEqual(int.status, {});
  assert.equal(s.flags & 0xff, 1);
  assert.equal(typeof s.startTimeUnixNano, 'string');
  const startMs = Number(BigInt(s.startTimeUnixNano) / 1_000_000n);
  const endMs = Number(BigInt(s.endTimeUnixNano) / 1_000_000n);
  assert.ok(startMs >= before - 5 && startMs <= after + 5, `start ${startMs} within [${before}, ${after}]`);
  assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano));
  assert.ok(endMs <= after + 5);
  const a = attrs(s.attributes);
  assert.deepEqual(a, {
    'gen_ai.request.model': { stringValue: 'gpt-4o' },
    int: { intValue: '42' },
    dbl: { doubleValue: 1.5 },
    yes: { boolValue: true },
    list: { arrayValue: { values: [{ stringValue: 'stop' }] } },
    'gen_ai.usage.input_tokens': { intValue: '12' },
    big: { doubleValue: 2 ** 60 },
  });
  await tracer.shutdown();
  await col.close();
});

test('parent/child linkage: incoming traceparent continues the trace; children link to their parent; traceparent() propagates', async () => {
  const col = await startCollector();
  const tracer = createTracer({ env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: col.url + '/custom/path' } })!;
  const server = tracer.startSpan('POST /v1/chat/completions', { kind: 'server', parent: TP, traceState: 'rojo=1' });
  const client = tracer.startSpan('chat gpt-4o', { kind: 'client', parent: server.context });
  const out = client.traceparent();
  assert.match(out, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
  assert.equal(parseTraceparent(out)?.spanId, client.context.spanId);
  // An upstream that continues from our header becomes a grandchild of the caller's span.
  const upstream = tracer.startSpan('upstream handler', { kind: 'server', parent: out });
  upstream.end(); client.end(); server.end();
  await tracer.flush();
  assert.equal(col.received[0].path, '/custom/path');
  const byName = new Map(spansOf(col).map((s) => [s.name, s]));
  const srv = byName.get('POST /v1/chat/completions')!;
  const cli = byName.get('chat gpt-4o')!;
  const up = byName.get('upstream handler')!;
  for (const s of [srv, cli, up]) assert.equal(s.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(srv.parentSpanId, '00f067aa0ba902b7');
  assert.equal(srv.traceState, 'rojo=1');
  assert.equal(srv.flags, 0x301, 'remote parent flagged');
  assert.equal(cli.parentSpanId, srv.spanId);
  assert.equal(cli.flags, 0x101, 'local parent');
  assert.equal(up.parentSpanId, cli.spanId);
  assert.notEqual(srv.spanId, '00f067aa0ba902b7');
  await tracer.shutdown();
  await col.close();
});

test('an invalid traceparent starts a new trace; an unsampled caller gets ids but no exported span', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {} })!;
  const a = tracer.startSpan('bad parent', { kind: 'server', parent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' });
  const b = tracer.startSpan('bad parent 2', { kind: 'server', parent: 'nonsense' });
  assert.notEqual(a.context.traceId, b.context.traceId);
  assert.notEqual(a.context.traceId, '0'.repeat(32));
  a.end(); b.end();
  const unsampled = tracer.startSpan('not sampled', { kind: 'server', parent: TP.replace(/-01$/, '-00') });
  assert.equal(unsampled.recording, false);
  assert.match(unsampled.traceparent(), /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-00$/);
  const child = tracer.startSpan('child of unsampled', { parent: unsampled.context });
  assert.equal(child.recording, false);
  child.end(); unsampled.end();
  await tracer.flush();
  const spans = spansOf(col);
  assert.deepEqual(spans.map((s) => s.name), ['bad parent', 'bad parent 2']);
  for (const s of spans) { assert.equal(s.parentSpanId, undefined); assert.equal(s.flags, 0x101); }
  assert.equal(spans[0].traceId, a.context.traceId);
  await tracer.shutdown();
  await col.close();
});

test('root sampling ratio 0 records nothing; ratio from OTEL_TRACES_SAMPLER_ARG is honoured', async () => {
  const col = await startCollector();
  const none = createTracer({ endpoint: col.url, env: {}, sampleRatio: 0 })!;
  for (let i = 0; i < 20; i++) none.startSpan('x').end();
  await none.flush();
  assert.equal(col.received.length, 0);
  const half = createTracer({ endpoint: col.url, env: { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.5' } })!;
  let recorded = 0;
  for (let i = 0; i < 2000; i++) { const s = half.startSpan('x'); if (s.recording) recorded++; }
  assert.ok(recorded > 850 && recorded < 1150, `about half sampled (${recorded})`);
  await none.shutdown(); await half.shutdown();
  await col.close();
});

test('headers from OTEL_EXPORTER_OTLP_HEADERS (percent-decoded) and the attribute cap', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, maxAttributes: 3, env: { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20tok,x-tenant = acme ,broken' } })!;
  const s = tracer.startSpan('capped', { attributes: { a: 1, b: 2, c: 3, d: 4 } });
  s.setAttribute('a', 10).setAttribute('e', 5);
  s.end();
  await tracer.flush();
  assert.equal(col.received[0].headers.authorization, 'Bearer tok');
  assert.equal(col.received[0].headers['x-tenant'], 'acme');
  const [span] = spansOf(col);
  assert.deepEqual(Object.keys(attrs(span.attributes)), ['a', 'b', 'c']);
  assert.deepEqual(attrs(span.attributes).a, { intValue: '10' }, 'existing keys can still be updated');
  assert.equal(span.droppedAttributesCount, 2);
  await tracer.shutdown();
  await col.close();
});

test('GenAI and MCP semantic-convention attributes and span names', () => {
  assert.equal(modelSpanName('chat', 'gpt-4o'), 'chat gpt-4o');
  assert.equal(modelSpanName('embeddings', 'text-embedding-3-small'), 'embeddings text-embedding-3-small');
  assert.equal(genAiProviderName('gemini'), 'gcp.gemini');
  assert.equal(genAiProviderName('azure-openai'), 'azure.ai.openai');
  assert.equal(genAiProviderName('openai-compatible'), 'openai-compatible');
  const m = modelSpanAttributes({
    operation: 'chat', provider: 'anthropic', route: 'reasoning-high', requestModel: 'claude-sonnet', responseModel: 'claude-sonnet-4-5',
    inputTokens: 10, outputTokens: 20, agentId: 'spiffe://prod/agent/finance-analyst', agentName: 'finance-analyst', finishReason: 'stop',
  });
  assert.deepEqual(Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)), {
    'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'anthropic', 'gen_ai.system': 'anthropic',
    'gen_ai.request.model': 'claude-sonnet', 'gen_ai.response.model': 'claude-sonnet-4-5',
    'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 20, 'gen_ai.response.finish_reasons': ['stop'],
    'gen_ai.agent.id': 'spiffe://prod/agent/finance-analyst', 'gen_ai.agent.name': 'finance-analyst', 'aam.route': 'reasoning-high',
  });
  assert.equal(toolSpanName({ method: 'tools/call', tool: 'search_accounts' }), 'execute_tool search_accounts');
  assert.equal(toolSpanName({ tool: 'read' }), 'execute_tool read');
  assert.equal(toolSpanName({ method: 'tools/list' }), 'tools/list');
  const t = toolSpanAttributes({ tool: 'search_accounts', server: 'salesforce', method: 'tools/call', resource: 'salesforce.accounts', action: 'search', agentId: 'spiffe://x', policy: 'p', decision: 'allow', jsonrpcRequestId: 7 });
  assert.equal(t['gen_ai.operation.name'], 'execute_tool');
  assert.equal(t['gen_ai.tool.name'], 'search_accounts');
  assert.equal(t['mcp.method.name'], 'tools/call');
  assert.equal(t['jsonrpc.request.id'], '7');
  assert.equal(t['aam.tool.server'], 'salesforce');
  assert.equal(t['aam.policy.decision'], 'allow');
  assert.equal(toolSpanAttributes({ method: 'tools/list', server: 's' })['gen_ai.operation.name'], undefined, 'only tool calls are execute_tool');
  assert.deepEqual(decisionSpanAttributes({ policy: 'finance-analyst-readonly', decision: 'deny', rule: 0, reason: 'export denied' })['aam.policy.rule'], '0');
});

test('HTTP helpers: server span from request headers, status mapping, propagation headers; events and exceptions', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {} })!;
  const req = { method: 'POST', headers: { traceparent: TP, tracestate: 'congo=t61' } };
  const server = startServerSpan(tracer, req, { route: '/v1/chat/completions', path: '/v1/chat/completions' });
  assert.deepEqual(traceHeaders(server), { traceparent: server.traceparent(), tracestate: 'congo=t61' });
  assert.deepEqual(traceHeaders(null), {});
  const upstream = tracer.startSpan('chat gpt-4o', { kind: 'client', parent: server.context });
  upstream.recordException(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
  upstream.addEvent('fallback', { 'aam.target': 'anthropic/claude' });
  endHttpSpan(upstream, 502, 'client');
  const clientErr = tracer.startSpan('denied upstream', { kind: 'client' });
  endHttpSpan(clientErr, 404, 'client');
  const server4xx = tracer.startSpan('GET /x', { kind: 'server' });
  endHttpSpan(server4xx, 403, 'server');
  endHttpSpan(server, 502, 'server');
  await tracer.flush();
  const byName = new Map(spansOf(col).map((s) => [s.name, s]));
  const srv = byName.get('POST /v1/chat/completions')!;
  assert.equal(srv.parentSpanId, '00f067aa0ba902b7');
  const sa = attrs(srv.attributes);
  assert.deepEqual(sa['http.request.method'], { stringValue: 'POST' });
  assert.deepEqual(sa['http.route'], { stringValue: '/v1/chat/completions' });
  assert.deepEqual(sa['http.response.status_code'], { intValue: '502' });
  assert.equal(srv.status.code, 2);
  const up = byName.get('chat gpt-4o')! as unknown as { events: Array<{ name: string; timeUnixNano: string; attributes: Array<{ key: string; value: unknown }> }>; status: { code: number; message: string }; attributes: never };
  assert.deepEqual(up.events.map((e) => e.name), ['exception', 'fallback']);
  assert.deepEqual(attrs(up.events[0].attributes as never), { 'exception.type': { stringValue: 'ECONNREFUSED' }, 'exception.message': { stringValue: 'connect ECONNREFUSED' } });
  assert.match(up.events[0].timeUnixNano, /^\d{19}$/);
  assert.deepEqual(up.status, { code: 2, message: 'connect ECONNREFUSED' });
  assert.deepEqual(attrs(up.attributes)['error.type'], { stringValue: '502' }, 'the final HTTP outcome names the error class');
  assert.equal(byName.get('denied upstream')!.status.code, 2, 'client 4xx is an error');
  assert.deepEqual(byName.get('GET /x')!.status, {}, 'server 4xx leaves status unset');
  await tracer.shutdown();
  await col.close();
});

test('MCP trace context travels in params._meta', () => {
  const span = { traceparent: () => TP, context: { traceId: 'a', spanId: 'b' } } as never;
  const out = withMcpTraceContext({ name: 'search', arguments: { q: 1 }, _meta: { progressToken: 3, tracestate: 'old' } }, span);
  assert.deepEqual(out, { name: 'search', arguments: { q: 1 }, _meta: { progressToken: 3, traceparent: TP } });
  assert.deepEqual(withMcpTraceContext({ name: 'x' }, null), { name: 'x' });
  assert.deepEqual(mcpTraceparent({ _meta: { traceparent: TP, tracestate: 'k=v' } }), { traceparent: TP, tracestate: 'k=v' });
  assert.deepEqual(mcpTraceparent({ _meta: 'nope' }), {});
  assert.deepEqual(mcpTraceparent(undefined), {});
});

test('span JSON is valid and escapes keys and values; odd numbers keep their meaning', async () => {
  const col = await startCollector();
  const tracer = createTracer({ endpoint: col.url, env: {} })!;
  const s = tracer.startSpan('na"me\n\u2028ü', { attributes: { 'k"ey\\': 'v"al\n\u0000', nums: [1, 2.5], nan: Number.NaN, inf: Infinity, neg: -3, flags: [true, false] } });
  s.setStatus('error', 'bad "thing"');
  s.end();
  await tracer.flush();
  const [span] = spansOf(col);
  assert.equal(span.name, 'na"me\n\u2028ü');
  assert.deepEqual(attrs(span.attributes), {
    'k"ey\\': { stringValue: 'v"al\n\u0000' },
    nums: { arrayValue: { values: [{ intValue: '1' }, { doubleValue: 2.5 }] } },
    nan: { doubleValue: 'NaN' },
    inf: { doubleValue: 'Infinity' },
    neg: { intValue: '-3' },
    flags: { arrayValue: { values: [{ boolValue: true }, { boolValue: false }] } },
  });
  assert.equal(span.status.message, 'bad "thing"');
  await tracer.shutdown();
  await col.close();
});
