// Traces end to end: the gateway exports OTLP spans following the GenAI conventions, continues an
// incoming W3C trace and propagates it to the upstream model provider.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startFakeUpstream } from './fake-upstream.ts';
import { startCollector } from './observability-collector.ts';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';
import { startTestAgents } from './helpers/a2a-agents.ts';

type Attr = { key: string; value: Record<string, unknown> };
type OtlpSpan = { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; attributes: Attr[] };

test('spans carry gen_ai attributes, continue the caller trace and reach the upstream as traceparent', async () => {
  const fake = await startFakeUpstream();
  const collector = await startCollector();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }] }),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'text-embedding-3-small' }] }),
    ...agentDocs(['gpt', 'embed']),
  ), { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50' });
  try {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const client = new OpenAI({ apiKey: gw.key('tester'), baseURL: `${gw.url}/v1`, maxRetries: 0, defaultHeaders: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'trace me' }] });
    const up = String(fake.requests[0].headers.traceparent ?? '');
    assert.match(up, new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`), 'upstream gets the same trace id');
    await gw.g.rt.tracer!.flush();
    const spans: OtlpSpan[] = [];
    for (const r of collector.received) {
      const b = r.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of b.resourceSpans ?? []) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
    const attr = (s: OtlpSpan, k: string) => s.attributes.find((a) => a.key === k)?.value;
    const server = spans.find((s) => s.kind === 2);
    const clientSpan = spans.find((s) => s.kind === 3);
    assert.ok(server && clientSpan, 'a server and a client span were exported');
    assert.equal(server.traceId, traceId);
    assert.equal(clientSpan.parentSpanId, server.spanId);
    assert.equal(attr(server, 'gen_ai.agent.id')?.stringValue, 'spiffe://test/agent/tester');
    assert.equal(attr(clientSpan, 'gen_ai.request.model')?.stringValue, 'ok');
    assert.equal(attr(server, 'aam.policy.name')?.stringValue, 'tester-policy');

    // Embeddings attempts get their own client span and pass the trace upstream too.
    await client.embeddings.create({ model: 'embed', input: 'trace me too' });
    assert.match(String(fake.requests.at(-1)?.headers.traceparent ?? ''), new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    await gw.g.rt.tracer!.flush();
    const all: OtlpSpan[] = [];
    for (const r of collector.received) {
      const b = r.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of b.resourceSpans ?? []) for (const ss of rs.scopeSpans) all.push(...ss.spans);
    }
    const embedClient = all.find((s) => s.kind === 3 && attr(s, 'gen_ai.operation.name')?.stringValue === 'embeddings');
    assert.ok(embedClient, `an embeddings client span (spans: ${all.map((s) => s.name).join(', ')})`);
  } finally {
    await gw.close();
    await collector.close();
    await fake.close();
  }
});

test('server spans name a route template, never a raw path with ids in it; probes and scrapes are not traced', async () => {
  const fake = await startFakeUpstream();
  const collector = await startCollector();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }] }),
    ...agentDocs(['gpt']),
  ), { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50' });
  try {
    const auth = { authorization: `Bearer ${gw.key('tester')}` };
    for (const id of ['resp_0a1b2c', 'resp_9f8e7d']) assert.equal((await fetch(`${gw.url}/v1/responses/${id}`, { headers: auth })).status, 404);
    assert.equal((await fetch(`${gw.url}/wp-login.php`)).status, 404);
    assert.equal((await fetch(`${gw.url}/v1/models`, { method: 'DELETE' })).status, 405);
    for (const probe of ['/healthz', '/readyz', '/metrics']) assert.equal((await fetch(`${gw.url}${probe}`)).status, 200);
    assert.equal((await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'hi' }] }) })).status, 200);
    await gw.g.rt.tracer!.flush();
    const servers: OtlpSpan[] = [];
    for (const r of collector.received) {
      const b = r.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of b.resourceSpans ?? []) for (const ss of rs.scopeSpans) servers.push(...ss.spans.filter((s) => s.kind === 2));
    }
    const route = (s: OtlpSpan) => s.attributes.find((a) => a.key === 'http.route')?.value.stringValue;
    const path = (s: OtlpSpan) => s.attributes.find((a) => a.key === 'url.path')?.value.stringValue;
    assert.deepEqual(servers.map((s) => [s.name, route(s) ?? null, path(s)]), [
      ['GET /v1/responses/*', '/v1/responses/*', '/v1/responses/resp_0a1b2c'],
      ['GET /v1/responses/*', '/v1/responses/*', '/v1/responses/resp_9f8e7d'],
      ['GET', null, '/wp-login.php'],
      ['DELETE /v1/models', '/v1/models', '/v1/models'],
      ['POST /v1/chat/completions', '/v1/chat/completions', '/v1/chat/completions'],
    ]);
  } finally {
    await gw.close();
    await collector.close();
    await fake.close();
  }
});

test('an A2A call is an invoke_agent CLIENT span under the request\'s SERVER span (which names the callee), and the callee continues that span', async () => {
  const agents = await startTestAgents([{ name: 'worker', skills: ['work'], aamUrl: () => '', key: () => '' }]);
  const collector = await startCollector();
  const gw = await startTestGateway(yaml(
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${agents.base}/worker` } }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'worker' }] }),
  ), { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_BSP_SCHEDULE_DELAY: '50' });
  try {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const r = await fetch(`${gw.url}/a2a/worker`, {
      method: 'POST', headers: { authorization: `Bearer ${gw.key('caller')}`, 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
      body: JSON.stringify({ jsonrpc: '2.0', id: '1', method: 'SendMessage', params: { message: { messageId: 'm1', role: 'ROLE_USER', parts: [{ text: 'hello' }], metadata: { skill: 'work' } } } }),
    });
    assert.equal(r.status, 200, await r.text());
    await gw.g.rt.tracer!.flush();
    const spans: OtlpSpan[] = [];
    for (const x of collector.received) {
      const b = x.body as { resourceSpans?: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
      for (const rs of b.resourceSpans ?? []) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
    }
    const server = spans.find((s) => s.kind === 2)!;
    assert.equal(server.name, 'POST /a2a/*');
    const onServer = (k: string) => server.attributes.find((a) => a.key === k)?.value?.stringValue;
    assert.deepEqual([onServer('aam.a2a.callee'), onServer('aam.a2a.skill')], ['worker', 'work'], 'the SERVER span names the callee (its name is the route template)');
    const call = spans.find((s) => s.name === 'invoke_agent worker');
    assert.ok(call, `an invoke_agent span (spans: ${spans.map((s) => s.name).join(', ')})`);
    assert.equal(call.kind, 3, 'CLIENT');
    assert.equal(call.traceId, traceId);
    assert.equal(call.parentSpanId, server.spanId);
    const attr = (k: string) => call.attributes.find((a) => a.key === k)?.value;
    assert.equal(attr('gen_ai.operation.name')?.stringValue, 'invoke_agent');
    assert.equal(attr('gen_ai.agent.name')?.stringValue, 'worker');
    assert.equal(attr('aam.a2a.caller')?.stringValue, 'spiffe://test/agent/caller');
    assert.equal(attr('http.response.status_code')?.intValue, '200');
    assert.equal(agents.received.get('worker')?.traceparent, `00-${traceId}-${call.spanId}-01`, 'the callee\'s parent is the CLIENT span');
  } finally {
    await gw.close();
    await collector.close();
    await agents.close();
  }
});
