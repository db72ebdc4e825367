// End-to-end guardrails through the real gateway: Guardrail resources attached by AgentPolicy
// `guardrails:`, on chat input/output (JSON and streams), on MCP tool arguments, and a webhook
// checker. Every verdict is an audit event that never holds the sensitive value.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import OpenAI from 'openai';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, sseContent, auditOf, localServer, type LocalServer } from './helpers/e2e.ts';
import { stdioServerDoc, tempFile } from './fixtures/mcp-accounts/upstream.ts';
import type { AuditEvent } from '../src/audit/event.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let checker: LocalServer;
const checkerSeen: string[] = [];
const callsFile = tempFile('guard-mcp-calls.jsonl');
const guardedCalls = tempFile('guard-mcp-guarded-calls.jsonl');
const EMAIL = 'jane.doe@example.com';
const CARD = '4111 1111 1111 1111';

/** One agent + policy per guardrail setup, so each test sees exactly one guardrail. */
function agent(name: string, guardrails: string[], extra: Record<string, unknown> = {}): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev' }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: ['gpt'] }, guardrails, ...extra }),
  ];
}

before(async () => {
  fake = await startFakeUpstream({ chunkDelayMs: 1 });
  // Webhook checker: "forbidden" -> block, "slowly" -> answers after 15 s, anything else -> allow.
  // Its timeout (2 s) leaves a loaded CPU room to answer in time, and still cuts the slow answer short.
  checker = await localServer(async (_req, res, body) => {
    const p = JSON.parse(body) as { text: string };
    checkerSeen.push(p.text);
    if (p.text.includes('slowly')) await new Promise((r) => setTimeout(r, 15_000));
    if (res.destroyed) return;
    const verdict = p.text.includes('forbidden') ? { verdict: 'block', reason: 'policy word' } : { verdict: 'allow' };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(verdict));
  });
  const config = yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'no-falcon', { on: ['input'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'mask-email-in', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'mask-pii-out', { on: ['output'], detect: ['email', 'credit_card'], action: 'redact' }),
    doc('Guardrail', 'no-falcon-out', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'no-ssn-args', { on: ['input'], detect: ['ssn'], action: 'block' }),
    doc('Guardrail', 'checker', { on: ['input'], action: 'block', webhook: { url: `${checker.url}/check`, timeout_ms: 2000, on_error: 'block' } }),
    ...agent('in-block', ['no-falcon']),
    ...agent('in-redact', ['mask-email-in']),
    ...agent('out-redact', ['mask-pii-out']),
    ...agent('out-block', ['no-falcon-out']),
    ...agent('webhooked', ['checker']),
    ...agent('tool-user', ['no-ssn-args'], { tools: [{ resource: 'salesforce.accounts', actions: ['search', 'read'] }] }),
    stdioServerDoc('salesforce', { CALLS_FILE: callsFile }),
    // Attached to the server itself: applies to every caller, whatever their policy says.
    ...agent('tool-plain', [], { tools: [{ resource: 'salesforce.accounts', actions: ['search'] }] }),
    stdioServerDoc('guarded', { CALLS_FILE: guardedCalls }, '  guardrails: [no-falcon]\n'),
  );
  gw = await startTestGateway(config);
});
after(async () => { await gw?.close(); await fake?.close(); await checker?.close(); });

type Err = { error: { code: string; message: string; param?: string } };

/** The one guardrail event of a request; asserts it never holds the sensitive value. */
async function guardEvent(requestId: string, secret: string): Promise<AuditEvent & { guardrail: { direction: string; verdict: string; findings: Array<{ guardrail: string; category: string }>; webhook?: Array<{ guardrail: string }> } }> {
  assert.ok(requestId, 'response carries x-request-id');
  const evs = await auditOf(gw, requestId, 'guardrail');
  assert.equal(evs.length, 1, `one guardrail audit event for ${requestId}, got ${evs.length}`);
  assert.ok(!JSON.stringify(evs[0]).includes(secret), 'audit event must not contain the sensitive value');
  return evs[0] as never;
}

test('input block: 400 guardrail_blocked naming the guardrail; upstream never called; audited without the value', async () => {
  fake.reset();
  const r = await chat(gw.url, gw.key('in-block'), 'gpt', 'what is the status of Project Falcon?');
  assert.equal(r.status, 400);
  const e = r.json as Err;
  assert.equal(e.error.code, 'guardrail_blocked');
  assert.match(e.error.message, /no-falcon/);
  assert.equal(fake.requests.length, 0, 'upstream must not be called for a blocked input');
  const ev = await guardEvent(r.requestId, 'Falcon');
  assert.equal(ev.guardrail.direction, 'input');
  assert.equal(ev.guardrail.verdict, 'block');
  assert.equal(ev.guardrail.findings[0].guardrail, 'no-falcon');
  assert.equal(ev.identity?.agent, 'in-block');
  // Control: a clean prompt passes.
  const ok = await chat(gw.url, gw.key('in-block'), 'gpt', 'what is the status of project eagle?');
  assert.equal(ok.status, 200);
  assert.equal(fake.requests.length, 1);
});

test('input redact: the upstream receives [EMAIL], never the address', async () => {
  fake.reset();
  const client = new OpenAI({ apiKey: gw.key('in-redact'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: `mail ${EMAIL} about it` }] }).withResponse();
  assert.equal(fake.requests.length, 1);
  const sent = JSON.stringify(fake.requests[0].body);
  assert.ok(!sent.includes(EMAIL), 'the address must not reach the upstream');
  assert.match(sent, /mail \[EMAIL\] about it/);
  assert.match(data.choices[0].message.content ?? '', /\[EMAIL\]/);
  const ev = await guardEvent(response.headers.get('x-request-id') ?? '', EMAIL);
  assert.equal(ev.guardrail.verdict, 'redact');
  assert.equal(ev.guardrail.findings[0].category, 'email');
});

test('output redact on a JSON answer: upstream got the PII (input unguarded), the agent gets [EMAIL]', async () => {
  fake.reset();
  const r = await chat(gw.url, gw.key('out-redact'), 'gpt', `contact ${EMAIL} today`);
  assert.equal(r.status, 200);
  assert.ok(JSON.stringify(fake.requests[0].body).includes(EMAIL), 'output-only guardrail leaves the prompt alone');
  assert.ok(!r.text.includes(EMAIL), 'the answer must not carry the address');
  const content = (r.json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
  assert.equal(content, 'echo: contact [EMAIL] today');
  const ev = await guardEvent(r.requestId, EMAIL);
  assert.equal(ev.guardrail.direction, 'output');
  assert.equal(ev.guardrail.verdict, 'redact');
});

test('output redact on a stream: a card number split over four chunks is redacted in flight', async () => {
  const client = new OpenAI({ apiKey: gw.key('out-redact'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
  // Long enough (about 600 characters) that the guard's scan window must release text early.
  const filler = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
  const { data: stream, response } = await client.chat.completions.create({ model: 'gpt', stream: true, messages: [{ role: 'user', content: `card ${CARD} and ${EMAIL} ok ${filler}` }] }).withResponse();
  const pieces: string[] = [];
  for await (const c of stream) pieces.push(c.choices[0]?.delta?.content ?? '');
  const text = pieces.join('');
  assert.ok(!text.replace(/\s/g, '').includes(CARD.replace(/\s/g, '')), `card leaked: ${text}`);
  assert.ok(!text.includes(EMAIL), `email leaked: ${text}`);
  assert.equal(text, `echo: card [CREDIT_CARD] and [EMAIL] ok ${filler}`);
  assert.ok(pieces.filter(Boolean).length > 3, `not streamed: ${pieces.filter(Boolean).length} content chunk(s) for ${text.length} characters`);
  const ev = await guardEvent(response.headers.get('x-request-id') ?? '', '1111');
  assert.equal(ev.guardrail.direction, 'output');
  assert.deepEqual(ev.guardrail.findings.map((f) => f.category).sort(), ['credit_card', 'email']);
});

test('output block on a stream: the stream ends with an error event naming the guardrail; the keyword never arrives', async () => {
  const r = await chat(gw.url, gw.key('out-block'), 'gpt', 'tell me about project falcon please', { stream: true });
  assert.equal(r.status, 200, 'headers were already sent as a stream');
  const s = sseContent(r.text);
  assert.ok(s.error, `expected an error event, got: ${r.text.slice(0, 400)}`);
  assert.match(s.error.message ?? '', /no-falcon-out/);
  assert.equal(s.done, false, 'a blocked stream does not end with [DONE]');
  assert.ok(!/falcon/i.test(s.text), `blocked text reached the agent: ${s.text}`);
  const ev = await guardEvent(r.requestId, 'project falcon');
  assert.equal(ev.guardrail.verdict, 'block');
  assert.equal(ev.guardrail.findings[0]?.guardrail ?? 'no-falcon-out', 'no-falcon-out');
  // The OpenAI SDK surfaces the error event as an exception.
  const client = new OpenAI({ apiKey: gw.key('out-block'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
  const stream = await client.chat.completions.create({ model: 'gpt', stream: true, messages: [{ role: 'user', content: 'more on project falcon' }] });
  await assert.rejects(async () => { for await (const _ of stream) { /* drain */ } }, /no-falcon-out/);
});

test('MCP tool argument blocked: the upstream MCP server never receives the call; audited without the value', async () => {
  const calls = () => (existsSync(callsFile) ? readFileSync(callsFile, 'utf8').trim().split('\n').filter(Boolean).length : 0);
  const client = new Client({ name: 'e2e-guard', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${gw.key('tool-user')}` } } }));
  try {
    const ok = await client.callTool({ name: 'salesforce__search_accounts', arguments: { query: 'Acme' } });
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
    const before = calls();
    assert.equal(before, 1);
    const SSN = '123-45-6789';
    const res = await client.callTool({ name: 'salesforce__search_accounts', arguments: { query: `ssn ${SSN}` } })
      .catch((e: Error) => ({ isError: true, content: [{ type: 'text', text: e.message }] }));
    assert.equal(res.isError, true);
    assert.match(JSON.stringify(res.content), /no-ssn-args/);
    assert.equal(calls(), before, 'blocked call must not reach the MCP server');
    await gw.g.rt.auditLog!.flush();
    const { queryEvents } = await import('../src/audit/query.ts');
    const evs = queryEvents(gw.g.rt.auditLog!.db, { type: 'guardrail', agent: 'tool-user' });
    assert.equal(evs.length, 1);
    assert.ok(!JSON.stringify(evs[0]).includes(SSN));
    assert.equal((evs[0] as unknown as { guardrail: { verdict: string } }).guardrail.verdict, 'block');
  } finally {
    await client.close();
  }
});

test('a guardrail attached to an McpServer applies to a caller whose policy has none', async () => {
  const lines = () => (existsSync(guardedCalls) ? readFileSync(guardedCalls, 'utf8').trim().split('\n').filter(Boolean).length : 0);
  const client = new Client({ name: 'e2e-guard-server', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp/guarded`), { requestInit: { headers: { authorization: `Bearer ${gw.key('tool-plain')}` } } }));
  try {
    const ok = await client.callTool({ name: 'search_accounts', arguments: { query: 'Acme' } });
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
    assert.equal(lines(), 1);
    const res = await client.callTool({ name: 'search_accounts', arguments: { query: 'Project Falcon budget' } })
      .catch((e: Error) => ({ isError: true, content: [{ type: 'text', text: e.message }] }));
    assert.equal(res.isError, true);
    assert.match(JSON.stringify(res.content), /no-falcon/);
    assert.equal(lines(), 1, 'blocked call must not reach the MCP server');
  } finally {
    await client.close();
  }
  // The same caller on the unguarded server is not affected by it.
  const plain = new Client({ name: 'e2e-guard-plain', version: '1.0.0' });
  await plain.connect(new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp/salesforce`), { requestInit: { headers: { authorization: `Bearer ${gw.key('tool-plain')}` } } }));
  try {
    const ok = await plain.callTool({ name: 'search_accounts', arguments: { query: 'Project Falcon budget' } });
    assert.notEqual(ok.isError, true, JSON.stringify(ok));
  } finally {
    await plain.close();
  }
});

test('webhook guardrail: allow passes, block -> 400 naming it, timeout with on_error block -> 400 fast; upstream not called when blocked', async () => {
  const key = gw.key('webhooked');
  fake.reset();
  checkerSeen.length = 0;
  const ok = await chat(gw.url, key, 'gpt', 'a perfectly fine question');
  assert.equal(ok.status, 200);
  assert.deepEqual(checkerSeen, ['a perfectly fine question']);
  assert.equal(fake.requests.length, 1);

  const blocked = await chat(gw.url, key, 'gpt', 'a forbidden question');
  assert.equal(blocked.status, 400);
  assert.equal((blocked.json as Err).error.code, 'guardrail_blocked');
  assert.match((blocked.json as Err).error.message, /checker/);
  const ev = await guardEvent(blocked.requestId, 'forbidden question');
  assert.equal(ev.guardrail.verdict, 'block');
  assert.equal(ev.guardrail.webhook?.[0]?.guardrail, 'checker');

  const t0 = performance.now();
  const slow = await chat(gw.url, key, 'gpt', 'answer slowly please');
  const ms = performance.now() - t0;
  assert.equal(slow.status, 400, slow.text);
  assert.equal((slow.json as Err).error.code, 'guardrail_blocked');
  assert.ok(ms < 10_000, `timeout_ms 2000 should cut the 15 s wait (took ${ms.toFixed(0)} ms)`);
  const tev = await guardEvent(slow.requestId, 'slowly');
  assert.match(JSON.stringify(tev.guardrail.webhook), /timed out/);
  assert.equal(fake.requests.length, 1, 'neither blocked request reached the upstream');
});
