// Amazon Bedrock end to end: the real gateway signs Converse / ConverseStream requests with SigV4
// and a fake Bedrock checks every signature independently (test/helpers/aws-sigv4-verify.ts, from
// the known secret). A wrong secret surfaces as a clear upstream auth error; the secret and session
// token never reach the agent, the audit trail or the data dir.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, auditOf, chat, sseContent, type LocalServer } from './helpers/e2e.ts';
import { verifySigV4 } from './helpers/aws-sigv4-verify.ts';
import { eventStream, type Frame } from './helpers/eventstream.ts';
import { grepDir } from './helpers/leak-capture.ts';
import { awsSigner } from '../src/credentials/aws-sigv4.ts';

const KEY_ID = 'AKIAIOSFODNN7EXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const BAD_SECRET = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const STS_ID = 'ASIAXAMPLETEMPORARY1';
const STS_SECRET = 'tmpSecret/0123456789abcdefghijklmnopqrstuv';
const STS_TOKEN = 'IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENvalue0123456789abcdefghijklmnopqrstuvwxyz';
const MODEL_ID = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const REGION = 'eu-west-1';

interface Seen { url: string; headers: IncomingHttpHeaders; body: unknown; verified: ReturnType<typeof verifySigV4> }

let upstream: LocalServer;
let gw: TestGateway;
let key: string;
const seen: Seen[] = [];
let cachedOnce = 0;
const toolFrames = JSON.parse(readFileSync(join(import.meta.dirname, 'golden', 'streams', 'bedrock-tools.eventstream.json'), 'utf8')) as Frame[];

/** What the fake model says: echoes secrets when asked (to prove scrubbing), else a fixed answer. */
function replyText(body: unknown): string {
  const msgs = (body as { messages: Array<{ content: Array<{ text?: string }> }> }).messages;
  const said = msgs[msgs.length - 1].content.map((c) => c.text ?? '').join('');
  return said.includes('ECHO') ? `here you go: ${SECRET} and ${STS_SECRET} and ${STS_TOKEN}` : 'Bonjour from Bedrock';
}

before(async () => {
  upstream = await localServer((req, res, raw) => {
    const verified = verifySigV4({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: raw }, new Map([[KEY_ID, SECRET], [STS_ID, STS_SECRET]]), { region: REGION, service: 'bedrock' });
    const body = JSON.parse(raw) as unknown;
    seen.push({ url: req.url ?? '', headers: req.headers, body, verified });
    if (!verified.ok) {
      res.writeHead(403, { 'content-type': 'application/json', 'x-amzn-errortype': 'InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/' });
      res.end(JSON.stringify({ message: 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.' }));
      return;
    }
    const m = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(req.url ?? '');
    if (!m || decodeURIComponent(m[1]) !== MODEL_ID) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"message":"model not found"}'); return; }
    // Prompt caching: a request with cache points writes 1200 tokens the first time (1000 of them
    // for an hour), then reads them; Converse counts them apart from inputTokens.
    const cache = raw.includes('"cachePoint"') ? (cachedOnce++ === 0
      ? { cacheWriteInputTokens: 1200, cacheReadInputTokens: 0, cacheDetails: [{ ttl: '1h', inputTokens: 1000 }, { ttl: '5m', inputTokens: 200 }] }
      : { cacheWriteInputTokens: 0, cacheReadInputTokens: 1200 }) : {};
    if (m[2] === 'converse') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        output: { message: { role: 'assistant', content: [{ text: replyText(body) }] } },
        stopReason: 'end_turn', usage: { inputTokens: 12, outputTokens: 5, totalTokens: 17, ...cache }, metrics: { latencyMs: 40 },
      }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
    const text = replyText(body);
    const frames: Frame[] = text.startsWith('Bonjour') ? toolFrames : [
      { event: 'messageStart', payload: { role: 'assistant' } },
      { event: 'contentBlockDelta', payload: { contentBlockIndex: 0, delta: { text: text.slice(0, 20) } } },
      { event: 'contentBlockDelta', payload: { contentBlockIndex: 0, delta: { text: text.slice(20) } } },
      { event: 'messageStop', payload: { stopReason: 'end_turn' } },
      { event: 'metadata', payload: { usage: { inputTokens: 3, outputTokens: 9, totalTokens: 12 } } },
    ];
    // Frames written in odd slices: the gateway must reassemble them across TCP reads.
    const bytes = eventStream(frames);
    for (let i = 0; i < bytes.length; i += 97) res.write(bytes.subarray(i, i + 97));
    res.end();
  });
  const provider = (name: string, credential: string) => doc('Provider', name, { type: 'bedrock', baseUrl: upstream.url, credential, bedrock: { region: REGION } });
  const route = (name: string, p: string) => doc('Model', name, { targets: [{ provider: p, model: MODEL_ID }], pricing: { input_per_1m: 3, output_per_1m: 15 }, retries: { attempts: 0 } });
  gw = await startTestGateway(yaml(
    doc('Credential', 'aws-key', { env: 'AAM_TEST_AWS_SECRET', aws: { access_key_id: KEY_ID } }),
    doc('Credential', 'aws-wrong', { env: 'AAM_TEST_AWS_BAD', aws: { access_key_id: KEY_ID } }),
    doc('Credential', 'aws-sts', { env: 'AAM_TEST_AWS_STS', kind: 'aws_sigv4' }),
    // The key id from the environment (AWS_ACCESS_KEY_ID style), not written in the config.
    doc('Credential', 'aws-env-id', { env: 'AAM_TEST_AWS_SECRET', aws: { access_key_id_env: 'AAM_TEST_AWS_KEY_ID' } }),
    provider('bedrock-env-id', 'aws-env-id'), route('claude-env-id', 'bedrock-env-id'),
    provider('bedrock', 'aws-key'), provider('bedrock-wrong', 'aws-wrong'), provider('bedrock-sts', 'aws-sts'),
    route('claude', 'bedrock'), route('claude-wrong', 'bedrock-wrong'), route('claude-sts', 'bedrock-sts'),
    doc('Model', 'claude-cached', { targets: [{ provider: 'bedrock', model: MODEL_ID }], retries: { attempts: 0 } }), // built-in prices
    ...agentDocs(['claude', 'claude-wrong', 'claude-sts', 'claude-env-id', 'claude-cached']),
  ), {
    AAM_TEST_AWS_SECRET: SECRET, AAM_TEST_AWS_BAD: BAD_SECRET, AAM_TEST_AWS_KEY_ID: KEY_ID,
    AAM_TEST_AWS_STS: JSON.stringify({ Version: 1, AccessKeyId: STS_ID, SecretAccessKey: STS_SECRET, SessionToken: STS_TOKEN }),
  });
  key = gw.key('tester');
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

const last = (): Seen => seen[seen.length - 1];

test('bedrock e2e: a chat call goes out as Converse, SigV4-signed for the provider region; the answer comes back', async () => {
  const r = await chat(gw.url, key, 'claude', 'Say hello');
  assert.equal(r.status, 200, r.text);
  const body = r.json as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number } };
  assert.equal(body.choices[0].message.content, 'Bonjour from Bedrock');
  assert.equal(body.usage.prompt_tokens, 12);
  const s = last();
  assert.ok(s.verified.ok, s.verified.ok ? '' : s.verified.reason);
  assert.equal(s.url, '/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
  assert.deepEqual(s.verified.ok && s.verified.signedHeaders, ['content-type', 'host', 'x-amz-content-sha256', 'x-amz-date']);
  assert.deepEqual(s.body, { messages: [{ role: 'user', content: [{ text: 'Say hello' }] }] });
  assert.equal(s.headers['x-api-key'], undefined);
  assert.ok(!JSON.stringify(s.headers).includes(key), "the agent's own key never goes upstream");
  const model = (await auditOf(gw, r.requestId)).find((e) => e.credential);
  assert.equal(model?.credential?.name, 'aws-key');
});

test('bedrock e2e: a Responses input_file (PDF) goes as a Converse document block; a file_url or a file in a tool result is a 400 naming the part, nothing sent', async () => {
  const ask = (content: unknown[]) => fetch(`${gw.url}/v1/responses`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude', input: [{ role: 'user', content }] }),
  });
  const n = seen.length;
  const r = await ask([{ type: 'input_text', text: 'Summarise' }, { type: 'input_file', filename: 'report.v2.pdf', file_data: 'data:application/pdf;base64,JVBERi0xLjQK' }]);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(seen.length, n + 1);
  assert.deepEqual(last().body, { messages: [{ role: 'user', content: [{ text: 'Summarise' }, { document: { format: 'pdf', name: 'report-v2', source: { bytes: 'JVBERi0xLjQK' } } }] }] });
  const refused = await ask([{ type: 'input_text', text: 'Summarise' }, { type: 'input_file', file_url: 'https://example.com/a.pdf' }]);
  assert.equal(refused.status, 400);
  const err = (await refused.json() as { error: { param: string; message: string } }).error;
  assert.equal(err.param, 'messages[0].content[1]');
  assert.match(err.message, /bedrock upstreams take file_data .* not a file_url/);
  assert.equal(seen.length, n + 1, 'nothing reached Bedrock');
});

test('bedrock e2e: ConverseStream event-stream frames become an OpenAI stream (text, two tool calls, usage)', async () => {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Weather and time in Paris?' }] }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.ok(last().verified.ok);
  assert.match(last().url, /\/converse-stream$/);
  const { text: said, error, done } = sseContent(text);
  assert.equal(error, null);
  assert.ok(done);
  assert.equal(said, 'Let me check the weather in Paris.');
  const args = new Map<number, string>();
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  let finish: string | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const o = JSON.parse(line.slice(6)) as { usage?: typeof usage; choices: Array<{ finish_reason?: string; delta?: { tool_calls?: Array<{ index: number; function?: { arguments?: string } }> } }> };
    if (o.usage) usage = o.usage;
    for (const tc of o.choices[0]?.delta?.tool_calls ?? []) args.set(tc.index, (args.get(tc.index) ?? '') + (tc.function?.arguments ?? ''));
    finish = o.choices[0]?.finish_reason ?? finish;
  }
  assert.deepEqual(JSON.parse(args.get(0) ?? ''), { location: 'Paris', unit: 'c' });
  assert.deepEqual(JSON.parse(args.get(1) ?? ''), { tz: 'Europe/Paris' });
  assert.equal(finish, 'tool_calls');
  assert.deepEqual(usage && [usage.prompt_tokens, usage.completion_tokens], [432, 93]);
});

test('bedrock e2e: an Anthropic-wire client streams from Bedrock too', async () => {
  const res = await fetch(`${gw.url}/v1/messages`, {
    method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
    body: JSON.stringify({ model: 'claude', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'Weather?' }] }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(text, /"partial_json":"\{\\"location\\": \\"Pa"/);
  assert.match(text, /"stop_reason":"tool_use"/);
  assert.ok((last().body as { inferenceConfig: { maxTokens: number } }).inferenceConfig.maxTokens === 100);
});

test('bedrock e2e (negative): a signature the upstream rejects is a clear upstream auth error, and no secret is in it', async () => {
  const before = seen.length;
  const r = await chat(gw.url, key, 'claude-wrong', 'Say hello');
  assert.equal(r.status, 502, r.text);
  const err = (r.json as { error: { message: string; code: string } }).error;
  assert.equal(err.code, 'upstream_error');
  assert.match(err.message, /bedrock-wrong\/anthropic\.claude.* returned 403: The request signature we calculated does not match/);
  assert.match(err.message, /check the AWS access key id and secret of the Provider's credential and its bedrock\.region/);
  assert.equal(seen.length, before + 1, 'an auth failure is not retried against the same target');
  assert.equal(last().verified.ok, false);
  for (const s of [SECRET, BAD_SECRET]) assert.ok(!r.text.includes(s));
  const events = await auditOf(gw, r.requestId);
  assert.ok(events.some((e) => e.outcome?.status === 502), JSON.stringify(events.map((e) => e.outcome)));
});

test('bedrock e2e: the access key id can come from an environment variable (aws.access_key_id_env)', async () => {
  const r = await chat(gw.url, key, 'claude-env-id', 'Say hello');
  assert.equal(r.status, 200, r.text);
  const s = last();
  assert.ok(s.verified.ok, s.verified.ok ? '' : s.verified.reason);
  assert.match(String(s.headers.authorization), new RegExp(`Credential=${KEY_ID}/`));
});

test('bedrock e2e: temporary keys (export-credentials JSON) send a signed session token', async () => {
  const r = await chat(gw.url, key, 'claude-sts', 'Say hello');
  assert.equal(r.status, 200, r.text);
  const s = last();
  assert.ok(s.verified.ok && s.verified.accessKeyId === STS_ID);
  assert.equal(s.headers['x-amz-security-token'], STS_TOKEN);
  assert.ok(s.verified.ok && s.verified.signedHeaders.includes('x-amz-security-token'));
});

test('bedrock e2e (negative): secret key and session token echoed by the upstream never reach the agent, stream or not', async () => {
  for (const model of ['claude', 'claude-sts']) {
    const whole = await chat(gw.url, key, model, 'ECHO please');
    assert.equal(whole.status, 200, whole.text);
    const streamed = await chat(gw.url, key, model, 'ECHO please', { stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    for (const out of [whole.text, sseContent(streamed.text).text]) {
      assert.match(out, /here you go/);
      for (const s of [SECRET, STS_SECRET, STS_TOKEN]) assert.ok(!out.includes(s), `${model} leaked ${s.slice(0, 6)}... in ${out}`);
    }
  }
  await gw.g.rt.auditLog?.flush();
  const leaks = grepDir(gw.dataDir, [{ name: 'aws', value: SECRET }, { name: 'sts-secret', value: STS_SECRET }, { name: 'sts-token', value: STS_TOKEN }]);
  assert.deepEqual(leaks.map((l) => `${l.file}: ${l.secret}`), []);
});

test('sigv4 verifier agrees with the AWS test suite (get-vanilla), and our signer with the verifier', async () => {
  // AWS Signature Version 4 test suite, "get-vanilla".
  const vanilla = verifySigV4({
    method: 'GET', url: '/', body: '',
    headers: {
      host: 'example.amazonaws.com', 'x-amz-date': '20150830T123600Z',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    },
  }, new Map([['AKIDEXAMPLE', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY']]), { region: 'us-east-1', service: 'service' });
  assert.ok(vanilla.ok, vanilla.ok ? '' : vanilla.reason);
  const sign = awsSigner({ accessKeyId: KEY_ID, secretAccessKey: SECRET }, () => Date.UTC(2026, 0, 2, 3, 4, 5));
  const url = 'https://bedrock-runtime.eu-west-1.amazonaws.com/model/a%3Ab/converse?x=1&a=b%20c';
  const headers = { 'content-type': 'application/json' };
  const h = await sign({ method: 'POST', url, headers, body: '{"x":1}' }, { region: REGION, service: 'bedrock' });
  assert.equal(h['x-amz-date'], '20260102T030405Z');
  const u = new URL(url);
  const check = (body: string) => verifySigV4({ method: 'POST', url: u.pathname + u.search, body, headers: { ...headers, ...h, host: u.host } }, new Map([[KEY_ID, SECRET]]), { region: REGION, service: 'bedrock' });
  assert.ok(check('{"x":1}').ok);
  assert.deepEqual(check('{"x":2}'), { ok: false, reason: 'x-amz-content-sha256 does not match the body' }, 'the body is covered by the signature');
  const forged = verifySigV4({ method: 'POST', url: u.pathname + u.search, body: '{"x":1}', headers: { ...headers, ...h, host: u.host, 'x-amz-date': '20260102T030406Z' } }, new Map([[KEY_ID, SECRET]]), { region: REGION, service: 'bedrock' });
  assert.deepEqual(forged, { ok: false, reason: 'signature mismatch' }, 'signed headers are covered');
});

test('bedrock e2e: prompt caching: cache_control (Anthropic client, and LiteLLM\'s form from an OpenAI client) goes as Converse cachePoint blocks; cache reads and writes come back in usage and are priced', async () => {
  const system = [{ type: 'text', text: 'You read contracts.' }, { type: 'text', text: '<the contract>', cache_control: { type: 'ephemeral', ttl: '1h' } }];
  const tools = [{ name: 'find_clause', input_schema: { type: 'object', properties: {} }, cache_control: { type: 'ephemeral' } }];
  let lastRequestId = '';
  const ask = async () => {
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' },
      body: JSON.stringify({ model: 'claude-cached', max_tokens: 100, system, tools, messages: [{ role: 'user', content: 'Who may terminate?' }] }),
    });
    assert.equal(r.status, 200);
    lastRequestId = r.headers.get('x-request-id') ?? '';
    return (await r.json() as { usage: Record<string, number> }).usage;
  };
  const first = await ask();
  // The call's evidence says what it wrote to the prompt cache (what the cost includes).
  const [call] = await auditOf(gw, lastRequestId, 'model_call');
  assert.deepEqual([call.model?.cached_tokens, call.model?.cache_write_tokens], [null, 1200]);
  const sent = last().body as { system: unknown[]; toolConfig: { tools: unknown[] } };
  assert.deepEqual(sent.system, [{ text: 'You read contracts.' }, { text: '<the contract>' }, { cachePoint: { type: 'default', ttl: '1h' } }]);
  assert.deepEqual(sent.toolConfig.tools[1], { cachePoint: { type: 'default' } });
  // The writes' split by lifetime (Converse cacheDetails) comes back as Anthropic's cache_creation, the total kept.
  assert.deepEqual(first, { input_tokens: 12, output_tokens: 5, cache_creation_input_tokens: 1200, cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 1000 } });
  const second = await ask();
  assert.deepEqual(second, { input_tokens: 12, output_tokens: 5, cache_read_input_tokens: 1200 });

  // An OpenAI client, LiteLLM's form (a message's breakpoint): the read comes back as cached_tokens.
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'claude-cached', messages: [{ role: 'user', content: 'Who may terminate?', cache_control: { type: 'ephemeral' } }] }),
  });
  assert.equal(r.status, 200);
  assert.deepEqual((last().body as { messages: Array<{ content: unknown[] }> }).messages[0].content, [{ text: 'Who may terminate?' }, { cachePoint: { type: 'default' } }]);
  const usage = (await r.json() as { usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens: number } } }).usage;
  assert.deepEqual([usage.prompt_tokens, usage.prompt_tokens_details?.cached_tokens], [1212, 1200]);

  // Cost at Claude 3.5 Sonnet's built-in prices: fresh input 3, 5-minute write 3.75, one-hour write 6, read 0.3, output 15 USD/1M.
  gw.g.rt.usage.flush();
  const row = gw.g.rt.db.prepare(`SELECT sum(cost_usd) AS c FROM usage_rollup WHERE agent = 'tester' AND route = 'claude-cached'`).get() as { c: number };
  const want = (12 * 3 + 200 * 3.75 + 1000 * 6 + 5 * 15) / 1e6 + 2 * (12 * 3 + 1200 * 0.3 + 5 * 15) / 1e6;
  assert.ok(Math.abs(row.c - want) < 1e-9, `${row.c} vs ${want}`);
  // The usage rollup counts the reads and the writes (`aam usage` shows them).
  const [u] = gw.g.rt.usage.summary('route', 0).filter((x) => x.route === 'claude-cached');
  assert.deepEqual([u.requests, u.cache_read_tokens, u.cache_write_tokens], [3, 2400, 1200]);
});
