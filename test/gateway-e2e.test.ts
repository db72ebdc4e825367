// End-to-end: the real gateway, real SQLite, the official OpenAI and Anthropic SDKs, and a fake
// upstream speaking each provider's wire format.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { until } from './helpers/e2e.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let key: string;
const SECRET = 'sk-upstream-secret-value-0123456789';

const route = (name: string, targets: Array<[string, string]>, extra: Record<string, unknown> = {}) =>
  doc('Model', name, { targets: targets.map(([provider, model]) => ({ provider, model })), retries: { attempts: 1, backoff_ms: 0 }, ...extra });

before(async () => {
  fake = await startFakeUpstream();
  const config = yaml(
    doc('Credential', 'up-key', { env: 'TEST_UPSTREAM_KEY' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'ant', { type: 'anthropic', baseUrl: `${fake.url}/v1`, credential: 'up-key' }),
    doc('Provider', 'gem', { type: 'gemini', baseUrl: `${fake.url}/v1beta`, credential: 'up-key' }),
    doc('Provider', 'az', { type: 'azure-openai', baseUrl: fake.url, credential: 'up-key', azure: { apiVersion: '2024-10-21' } }),
    doc('Provider', 'slow', { type: 'openai-compatible', baseUrl: `${fake.url}/v1`, timeouts: { first_byte_ms: 300 } }),
    route('gpt', [['oai', 'ok']], { pricing: { input_per_1m: 1, output_per_1m: 2 } }),
    route('claude', [['ant', 'ok']]),
    route('gemini', [['gem', 'ok']]),
    route('azure', [['az', 'ok']]),
    route('tools-oai', [['oai', 'tools']]),
    route('tools-ant', [['ant', 'tools']]),
    route('fallback', [['oai', 'fail-500'], ['ant', 'ok']]),
    route('flaky', [['oai', 'flaky-1']]),
    route('bad-request', [['oai', 'fail-400'], ['ant', 'ok']]),
    route('early-error', [['oai', 'error-before-content'], ['ant', 'ok']]),
    route('cut', [['oai', 'cut-stream']]),
    route('garbage', [['oai', 'garbage']]),
    route('garbage-fallback', [['oai', 'garbage'], ['ant', 'ok']]),
    route('hang', [['slow', 'hang']], { retries: { attempts: 0 } }),
    route('silent', [['oai', 'silent-400']]),
    route('long-silent', [['oai', 'silent-3000']]),
    route('breaker', [['oai', 'fail-500'], ['ant', 'ok']]),
    route('denied', [['oai', 'ok']]),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'text-embedding-3-small' }] }),
    ...agentDocs(['gpt', 'claude', 'gemini', 'azure', 'tools-oai', 'tools-ant', 'fallback', 'flaky', 'bad-request', 'early-error', 'cut', 'garbage', 'garbage-fallback', 'hang', 'silent', 'long-silent', 'breaker', 'embed']),
  );
  gw = await startTestGateway(config, { TEST_UPSTREAM_KEY: SECRET, AAM_SSE_KEEPALIVE_MS: '100', AAM_MAX_BODY_BYTES: '200000' });
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await fake?.close(); });

type ErrBody = { error: { code: string; message: string } };
const errJson = async (r: Response): Promise<ErrBody> => (await r.json()) as ErrBody;
const openai = () => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const anthropic = () => new Anthropic({ apiKey: key, baseURL: gw.url, maxRetries: 0 });

test('OpenAI SDK, non-streaming: answer, usage, cost header; upstream got aam credential, not the agent key', async () => {
  fake.reset();
  const r = await openai().chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'hello there' }] });
  assert.match(r.choices[0].message.content ?? '', /echo: hello there/);
  assert.ok(r.usage && r.usage.prompt_tokens > 0);
  const up = fake.requests[0];
  assert.equal(up.headers.authorization, `Bearer ${SECRET}`);
  assert.ok(!JSON.stringify(up.headers).includes(key), 'agent key must not reach the upstream');
  assert.equal((up.body as { model: string }).model, 'ok');
});

test('OpenAI SDK, streaming: chunks in order, usage only when asked, but always requested upstream', async () => {
  fake.reset();
  const chunks: string[] = [];
  let usageSeen = false;
  const s = await openai().chat.completions.create({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'one two three' }] });
  for await (const c of s) {
    if (c.usage) usageSeen = true;
    chunks.push(c.choices[0]?.delta?.content ?? '');
  }
  assert.equal(chunks.join(''), 'echo: one two three');
  assert.equal(usageSeen, false, 'client did not ask for usage');
  assert.equal((fake.requests[0].body as { stream_options?: { include_usage?: boolean } }).stream_options?.include_usage, true);
  const s2 = await openai().chat.completions.create({ model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'x' }] });
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of s2) if (c.usage) usage = c.usage;
  assert.ok(usage && usage.completion_tokens > 0);
});

test('Anthropic SDK -> OpenAI upstream and OpenAI SDK -> Anthropic upstream (cross-format)', async () => {
  const m = await anthropic().messages.create({ model: 'gpt', max_tokens: 50, messages: [{ role: 'user', content: 'cross one' }] });
  assert.equal(m.content[0].type, 'text');
  assert.match((m.content[0] as Anthropic.TextBlock).text, /echo: cross one/);
  assert.ok(m.usage.input_tokens > 0);
  const r = await openai().chat.completions.create({ model: 'claude', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'cross two' }] });
  assert.match(r.choices[0].message.content ?? '', /echo: cross two/);
  const up = fake.requests.at(-1)!;
  assert.equal(up.path, '/v1/messages');
  assert.equal(up.headers['x-api-key'], SECRET);
  assert.equal((up.body as { system?: string }).system, 'be brief');
});

test('streamed tool calls survive translation in both directions (two calls, fragmented arguments)', async () => {
  // OpenAI client, Anthropic upstream
  const s = await openai().chat.completions.create({ model: 'tools-ant', stream: true, messages: [{ role: 'user', content: 'weather?' }],
    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] });
  const calls: Record<number, { id?: string; name?: string; args: string }> = {};
  for await (const c of s) {
    for (const tc of c.choices[0]?.delta?.tool_calls ?? []) {
      const e = (calls[tc.index] ??= { args: '' });
      if (tc.id) e.id = tc.id;
      if (tc.function?.name) e.name = tc.function.name;
      e.args += tc.function?.arguments ?? '';
    }
  }
  assert.deepEqual(Object.values(calls).map((c) => [c.name, JSON.parse(c.args)]), [['get_weather', { location: 'Paris' }], ['get_time', { tz: 'Europe/Paris' }]]);
  // Anthropic client, OpenAI upstream
  const stream = anthropic().messages.stream({ model: 'tools-oai', max_tokens: 100, messages: [{ role: 'user', content: 'weather?' }],
    tools: [{ name: 'get_weather', input_schema: { type: 'object' } }] });
  const final = await stream.finalMessage();
  const uses = final.content.filter((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock[];
  assert.deepEqual(uses.map((u) => [u.name, u.input]), [['get_weather', { location: 'Paris' }], ['get_time', { tz: 'Europe/Paris' }]]);
  assert.equal(final.stop_reason, 'tool_use');
});

test('Gemini and Azure OpenAI upstreams', async () => {
  fake.reset();
  const g = await openai().chat.completions.create({ model: 'gemini', messages: [{ role: 'user', content: 'to gemini' }] });
  assert.match(g.choices[0].message.content ?? '', /echo: to gemini/);
  assert.match(fake.requests[0].path, /^\/v1beta\/models\/ok:generateContent/);
  assert.equal(fake.requests[0].headers['x-goog-api-key'], SECRET);
  const chunks: string[] = [];
  for await (const c of await openai().chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'gem stream' }] })) chunks.push(c.choices[0]?.delta?.content ?? '');
  assert.equal(chunks.join(''), 'echo: gem stream');
  const a = await openai().chat.completions.create({ model: 'azure', messages: [{ role: 'user', content: 'to azure' }] });
  assert.match(a.choices[0].message.content ?? '', /echo: to azure/);
  const az = fake.requests.at(-1)!;
  assert.equal(az.path, '/openai/deployments/ok/chat/completions?api-version=2024-10-21');
  assert.equal(az.headers['api-key'], SECRET);
});

test('fallback on 5xx after retrying the same target; 4xx is returned without fallback', async () => {
  fake.reset();
  const r = await openai().chat.completions.create({ model: 'fallback', messages: [{ role: 'user', content: 'fb' }] });
  assert.match(r.choices[0].message.content ?? '', /echo: fb/);
  assert.equal(fake.count('fail-500'), 2, 'one retry on the failing target, then fallback');
  const flaky = await openai().chat.completions.create({ model: 'flaky', messages: [{ role: 'user', content: 'again' }] });
  assert.match(flaky.choices[0].message.content ?? '', /echo: again/);
  await assert.rejects(openai().chat.completions.create({ model: 'bad-request', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /fail-400/);
    return true;
  });
  assert.equal(fake.count('ok'), 1, 'a 400 must not fall back to the next target');
});

test('stream error before any content falls back; a cut after content ends with an error event', async () => {
  const chunks: string[] = [];
  for await (const c of await openai().chat.completions.create({ model: 'early-error', stream: true, messages: [{ role: 'user', content: 'commit point' }] })) chunks.push(c.choices[0]?.delta?.content ?? '');
  assert.equal(chunks.join(''), 'echo: commit point');
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'cut', stream: true, messages: [{ role: 'user', content: 'a b c d e f' }] }) });
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.match(text, /"content":"echo: "/);
  assert.match(text, /data: \{"error":/);
  assert.doesNotMatch(text, /\[DONE\]/);
});

test('a 200 whose body is not a chat answer is retried, then the next target answers (the answer\'s full parse is the check)', async () => {
  fake.reset();
  const r = await openai().chat.completions.create({ model: 'garbage-fallback', messages: [{ role: 'user', content: 'past garbage' }] });
  assert.match(r.choices[0].message.content ?? '', /echo: past garbage/);
  assert.equal(fake.count('garbage'), 2, 'one retry on the unusable target, then fallback');
  assert.equal(fake.count('ok'), 1);
});

test('garbage and hanging upstreams give 502/504 and the server stays up', async () => {
  await assert.rejects(openai().chat.completions.create({ model: 'garbage', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 502);
  const t0 = Date.now();
  await assert.rejects(openai().chat.completions.create({ model: 'hang', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 504);
  assert.ok(Date.now() - t0 < 3000, 'first-byte timeout of 300 ms applies');
  const ok = await fetch(`${gw.url}/healthz`);
  assert.equal(ok.status, 200);
});

test('circuit breaker: a dead primary stops costing attempts', async () => {
  fake.reset();
  for (let i = 0; i < 6; i++) await openai().chat.completions.create({ model: 'breaker', messages: [{ role: 'user', content: 'cb' }] });
  const hits = fake.count('fail-500');
  assert.equal(hits, 5, `breaker opens after 5 consecutive failures; primary was hit ${hits} times`);
  await openai().chat.completions.create({ model: 'breaker', messages: [{ role: 'user', content: 'cb' }] });
  assert.equal(fake.count('fail-500'), hits, 'open breaker skips the primary');
});

test('keep-alive comments during upstream silence; client disconnect aborts the upstream', async () => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'silent', stream: true, messages: [{ role: 'user', content: 'wait' }] }) });
  const text = await res.text();
  assert.match(text, /: keep-alive/);
  assert.match(text, /\[DONE\]/);
  fake.reset();
  const ac = new AbortController();
  const r2 = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'long-silent', stream: true, messages: [{ role: 'user', content: 'wait' }] }) });
  const reader = r2.body!.getReader();
  await reader.read();
  ac.abort();
  // Within 5 s (a fixed 200 ms wait failed 2 in 9 at load ~18); a request never aborted still fails here.
  await until(() => fake.requests.at(-1)?.aborted === true, 5000, 'the upstream request to be aborted when the client goes away');
});

test('embeddings pass through', async () => {
  const e = await openai().embeddings.create({ model: 'embed', input: ['a', 'b'] });
  assert.equal(e.data.length, 2);
  assert.ok(e.data[0].embedding.length > 0);
});

test('bad input gets clear 4xx errors naming the problem', async () => {
  const post = (body: string, headers: Record<string, string> = {}) => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body });
  let r = await post('{"model": "gpt", "messages": [');
  assert.equal(r.status, 400);
  assert.equal((await errJson(r)).error.code, 'invalid_json');
  r = await post(JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }));
  assert.equal(r.status, 400);
  assert.match((await errJson(r)).error.message, /model/);
  r = await post(JSON.stringify({ model: 'gpt', messages: 'nope' }));
  assert.equal(r.status, 400);
  assert.match((await errJson(r)).error.message, /messages/);
  r = await post(JSON.stringify({ model: 'no-such-route', messages: [{ role: 'user', content: 'x' }] }));
  assert.equal(r.status, 404);
  assert.equal((await errJson(r)).error.code, 'model_not_found');
  r = await post(JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'x'.repeat(300_000) }] }));
  assert.equal(r.status, 413);
  r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 401);
  r = await post('{}', { authorization: 'Bearer aam_not-a-real-key' });
  assert.equal(r.status, 401);
  assert.equal((await errJson(r)).error.code, 'invalid_api_key');
  const a = await fetch(`${gw.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gpt' }) });
  assert.equal(a.status, 400);
  assert.equal(((await a.json()) as { type: string }).type, 'error', 'Anthropic clients get Anthropic-shaped errors');
});

test('policy: denied model is 403 naming the policy; /v1/models lists only allowed routes', async () => {
  await assert.rejects(openai().chat.completions.create({ model: 'denied', messages: [{ role: 'user', content: 'x' }] }), (e: InstanceType<typeof OpenAI.APIError>) => {
    assert.equal(e.status, 403);
    assert.equal(e.code, 'policy_denied');
    assert.match(e.message, /tester-policy/);
    return true;
  });
  const models = await openai().models.list();
  const ids = models.data.map((m) => m.id);
  assert.ok(ids.includes('gpt'));
  assert.ok(!ids.includes('denied'));
});

test('usage is recorded per agent and key; unknown price is unknown, not $0', async () => {
  // Rolled up per minute and key: compare this agent's totals per route before and after one call each.
  const totals = () => {
    gw.g.rt.usage.flush();
    const rows = gw.g.rt.db.prepare(`SELECT route, key_id, sum(requests) AS requests, sum(cost_usd) AS cost_usd, sum(unknown_cost_requests) AS unknown
      FROM usage_rollup WHERE agent = 'tester' AND route IN ('gpt','claude') GROUP BY route, key_id`).all() as Array<{ route: string; key_id: string; requests: number; cost_usd: number | null; unknown: number }>;
    for (const r of rows) assert.match(r.key_id, /^key_/, 'calls are attributed to the virtual key');
    const of = (route: string) => rows.filter((r) => r.route === route).reduce((t, r) => ({ requests: t.requests + r.requests, cost: r.cost_usd === null ? t.cost : (t.cost ?? 0) + r.cost_usd, unknown: t.unknown + r.unknown }), { requests: 0, cost: null as number | null, unknown: 0 });
    return { gpt: of('gpt'), claude: of('claude') };
  };
  const before = totals();
  await openai().chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'priced' }] });
  await openai().chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'unpriced' }] });
  const after = totals();
  assert.equal(after.gpt.requests, before.gpt.requests + 1);
  assert.ok((after.gpt.cost ?? 0) > (before.gpt.cost ?? 0), 'the priced call was billed');
  assert.equal(after.gpt.unknown, before.gpt.unknown);
  assert.equal(after.claude.requests, before.claude.requests + 1);
  assert.equal(after.claude.cost, before.claude.cost, 'model "ok" has no price: no cost is added...');
  assert.equal(after.claude.unknown, before.claude.unknown + 1, '...it is counted as unknown instead');
});

test('key revocation and rotation take effect on the next request', async () => {
  const k = gw.g.rt.keys.create('tester');
  const client = new OpenAI({ apiKey: k.secret, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  await client.models.list();
  const rotated = gw.g.rt.keys.rotate(k.key.id, 0);
  await assert.rejects(client.models.list(), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 401);
  const fresh = new OpenAI({ apiKey: rotated.secret, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  await fresh.models.list();
  // Revoke from another process: the real CLI. The server notices before the next request.
  const { execFileSync } = await import('node:child_process');
  execFileSync(process.execPath, ['src/cli/main.ts', 'keys', 'revoke', k.key.id, '--data', gw.dataDir, '--config', gw.configPath], { stdio: 'pipe' });
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(fresh.models.list(), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 401 && /revoked/.test(e.message));
});

test('the upstream credential never appears in what the agent receives', async () => {
  const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: `leak ${SECRET}` }] }) });
  const text = await r.text();
  assert.ok(!text.includes(SECRET), 'echoed secret must be scrubbed');
  assert.match(text, /REDACTED/);
});
