// The guardrail step of the access path (src/access/guard.ts) through the real gateway, written
// for the mutants `npm run mutate -- access -- --mutate src/access/guard.ts` found alive: which
// guardrails run (the caller's policy's and the route's, each once), what the upstream, the agent
// and a webhook checker see, and the evidence each verdict leaves (and a clean call does not).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, sseContent, auditOf, localServer, type LocalServer } from './helpers/e2e.ts';
import { redactForReview } from '../src/access/guard.ts';

let fake: FakeUpstream;
let gw: TestGateway;
let checker: LocalServer;
/** What the webhook checker was sent. */
const checked: Array<{ direction: string; texts: string[]; agent: string; guardrail: string; where?: string }> = [];
const EMAIL = 'jane.doe@example.com';
const TOKEN = 'tok-live-9f8e7d6c5b4a39281716';
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

function agent(name: string, guardrails: string[], models = ['gpt']): string[] {
  return [
    doc('Agent', name, { workload: `spiffe://test/agent/${name}`, team: 'qa', environment: 'dev', owner: 'qa@example.com' }),
    doc('AgentPolicy', `${name}-policy`, { identity: { workload: `spiffe://test/agent/${name}` }, models: { allow: models }, guardrails }),
  ];
}

before(async () => {
  fake = await startFakeUpstream({ chunkDelayMs: 1 });
  // "forbidden" -> block; "mask-me" -> redact it in every text; anything else -> allow.
  checker = await localServer((_req, res, body) => {
    const p = JSON.parse(body) as (typeof checked)[number];
    checked.push(p);
    const joined = p.texts.join('\n');
    const verdict = joined.includes('forbidden') ? { verdict: 'block', reason: 'policy word' }
      : joined.includes('mask-me') ? { verdict: 'redact', texts: p.texts.map((t) => t.replaceAll('mask-me', '[MASKED]')) }
      : { verdict: 'allow' };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(verdict));
  });
  gw = await startTestGateway(yaml(
    doc('Credential', 'crm-token', { env: 'MUT_ACCESS_TOKEN' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Model', 'gpt-falcon', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 }, guardrails: ['no-falcon', 'flag-bluebird'] }),
    doc('Model', 'embed', { kind: 'embeddings', targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Model', 'gpt-tools', { targets: [{ provider: 'oai', model: 'tools' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'mask-email-in', { on: ['input'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'mask-email-out', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Guardrail', 'no-paris-out', { on: ['output'], keywords: ['Paris'], action: 'redact' }),
    doc('Guardrail', 'no-falcon', { on: ['input'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'no-falcon-out', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    doc('Guardrail', 'flag-bluebird', { on: ['input'], keywords: ['bluebird'], action: 'flag' }),
    doc('Guardrail', 'args-schema', { on: ['input'], json_schema: { type: 'object', required: ['limit'] }, action: 'block' }),
    doc('Guardrail', 'scan-cap', { on: ['input'], keywords: ['zzz'], action: 'block', max_scan_chars: 300, on_scan_limit: 'block' }),
    doc('Guardrail', 'checker-in', { on: ['input'], action: 'block', webhook: { url: `${checker.url}/in`, timeout_ms: 5000 } }),
    doc('Guardrail', 'checker-out', { on: ['output'], action: 'block', webhook: { url: `${checker.url}/out`, timeout_ms: 5000 } }),
    ...agent('redactor', ['mask-email-in', 'flag-bluebird', 'args-schema'], ['gpt', 'gpt-falcon', 'embed']),
    ...agent('plain', [], ['gpt', 'gpt-falcon']),
    ...agent('out-guard', ['mask-email-out', 'no-falcon-out', 'no-paris-out'], ['gpt', 'gpt-tools']),
    ...agent('hooked', ['mask-email-in', 'checker-in'], ['gpt', 'embed']),
    ...agent('out-hooked', ['checker-out']),
    ...agent('capped', ['scan-cap']),
  ), { MUT_ACCESS_TOKEN: TOKEN });
});
after(async () => { await gw?.close(); await fake?.close(); await checker?.close(); });

type Err = { error: { code: string; message: string; param?: string } };
interface GuardEv { type: string; request_id: string; trace_id?: string; identity?: { agent: string; spiffe_id: string }; guardrail: Record<string, unknown> }

const guardEvents = async (requestId: string): Promise<GuardEv[]> => {
  assert.ok(requestId, 'the response carries x-request-id');
  return (await auditOf(gw, requestId, 'guardrail')) as never;
};
const sentUpstream = (): string => JSON.stringify(fake.requests.at(-1)?.body ?? null);
const content = (json: unknown): string => (json as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;

test('a redaction is evidence naming guardrail, category and count, with the request and its trace; a clean call leaves none', async () => {
  fake.reset();
  const r = await chat(gw.url, gw.key('redactor'), 'gpt', `mail ${EMAIL} and ${EMAIL}`, { headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` } });
  assert.equal(r.status, 200);
  assert.match(sentUpstream(), /mail \[EMAIL\] and \[EMAIL\]/);
  assert.ok(!sentUpstream().includes(EMAIL));
  const evs = await guardEvents(r.requestId);
  assert.equal(evs.length, 1);
  const { identity, ...ev } = evs[0];
  assert.equal(identity?.agent, 'redactor');
  assert.equal(identity?.spiffe_id, 'spiffe://test/agent/redactor');
  assert.deepEqual({ type: ev.type, request_id: ev.request_id, trace_id: ev.trace_id, guardrail: ev.guardrail }, {
    type: 'guardrail', request_id: r.requestId, trace_id: TRACE,
    guardrail: { direction: 'input', where: 'prompt', verdict: 'redact', findings: [{ guardrail: 'mask-email-in', category: 'email', count: 2 }] },
  });
  const clean = await chat(gw.url, gw.key('redactor'), 'gpt', 'nothing to see');
  assert.equal(clean.status, 200);
  assert.deepEqual(await guardEvents(clean.requestId), [], 'an allowed call is not guardrail evidence');
});

test('a route\'s guardrails run on top of the caller\'s, each once; a caller without policy guardrails still gets the route\'s', async () => {
  fake.reset();
  const both = await chat(gw.url, gw.key('redactor'), 'gpt-falcon', `mail ${EMAIL} re bluebird`);
  assert.equal(both.status, 200);
  assert.match(sentUpstream(), /mail \[EMAIL\] re bluebird/, 'the policy\'s redaction still applies on a route with its own guardrails');
  const [ev] = await guardEvents(both.requestId);
  assert.equal(ev.guardrail.verdict, 'redact');
  assert.deepEqual(ev.guardrail.findings, [
    { guardrail: 'mask-email-in', category: 'email', count: 1 },
    { guardrail: 'flag-bluebird', category: 'keyword', count: 1 },
  ], 'flag-bluebird is in both the policy and the route: it runs once');

  const blocked = await chat(gw.url, gw.key('plain'), 'gpt-falcon', 'status of project falcon?');
  assert.equal(blocked.status, 400);
  assert.deepEqual((blocked.json as Err).error, {
    ...(blocked.json as Err).error, code: 'guardrail_blocked', param: 'no-falcon',
    message: 'Request blocked by guardrail "no-falcon": it contains a blocked keyword. Remove it and retry, or ask an administrator to change the guardrail.',
  });
  const [bev] = await guardEvents(blocked.requestId);
  assert.deepEqual(bev.guardrail, { direction: 'input', where: 'prompt', verdict: 'block', findings: [{ guardrail: 'no-falcon', category: 'keyword', count: 1 }] });
  const flagged = await chat(gw.url, gw.key('plain'), 'gpt-falcon', 'a bluebird sang');
  assert.equal(flagged.status, 200);
  const [fev] = await guardEvents(flagged.requestId);
  assert.equal(fev.guardrail.verdict, 'flag');
});

test('a prompt too large to scan at once (scanned across loop turns) is redacted and evidenced the same', async () => {
  fake.reset();
  const filler = 'lorem ipsum '.repeat(4000);
  const r = await chat(gw.url, gw.key('redactor'), 'gpt', `${filler} mail ${EMAIL}`);
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.ok(sentUpstream().includes(`mail [EMAIL]`), 'the address is redacted at the end of a large prompt');
  assert.ok(!sentUpstream().includes(EMAIL));
  const evs = await guardEvents(r.requestId);
  assert.deepEqual(evs.map((e) => e.guardrail), [{ direction: 'input', where: 'prompt', verdict: 'redact', findings: [{ guardrail: 'mask-email-in', category: 'email', count: 1 }] }]);
});

test('a chat request is not checked against a tool-argument JSON schema; the model name is not content', async () => {
  const r = await chat(gw.url, gw.key('redactor'), 'gpt', 'no limit field here');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await guardEvents(r.requestId), []);
});

test('output guardrails: the agent gets the answer and tool-call arguments redacted; evidence says output/completion', async () => {
  fake.reset();
  const r = await chat(gw.url, gw.key('out-guard'), 'gpt', `contact ${EMAIL} today`);
  assert.equal(r.status, 200);
  assert.ok(sentUpstream().includes(EMAIL), 'an output-only guardrail leaves the prompt alone');
  assert.equal(content(r.json), 'echo: contact [EMAIL] today');
  const [ev] = await guardEvents(r.requestId);
  assert.deepEqual(ev.guardrail, { direction: 'output', where: 'completion', verdict: 'redact', findings: [{ guardrail: 'mask-email-out', category: 'email', count: 1 }] });

  const tools = await chat(gw.url, gw.key('out-guard'), 'gpt-tools', 'weather?');
  assert.equal(tools.status, 200, tools.text);
  const calls = (tools.json as { choices: Array<{ message: { tool_calls: Array<{ function: { name: string; arguments: string } }> } }> }).choices[0].message.tool_calls;
  const weather = calls.find((c) => c.function.name === 'get_weather');
  assert.ok(weather && !weather.function.arguments.includes('Paris'), `tool-call arguments redacted: ${JSON.stringify(calls)}`);

  const blocked = await chat(gw.url, gw.key('out-guard'), 'gpt', 'say project falcon');
  assert.equal(blocked.status, 400);
  assert.equal((blocked.json as Err).error.param, 'no-falcon-out');
  assert.equal((blocked.json as Err).error.message, 'Response blocked by guardrail "no-falcon-out": it contained a blocked keyword.');
});

test('streams: redactions and blocks are evidence (where "stream"); a clean stream leaves none', async () => {
  const r = await chat(gw.url, gw.key('out-guard'), 'gpt', `contact ${EMAIL} today`, { stream: true });
  assert.equal(sseContent(r.text).text, 'echo: contact [EMAIL] today');
  const [ev] = await guardEvents(r.requestId);
  assert.deepEqual(ev.guardrail, { direction: 'output', where: 'stream', verdict: 'redact_or_flag', findings: [{ guardrail: 'mask-email-out', category: 'email', count: 1 }] });

  const b = await chat(gw.url, gw.key('out-guard'), 'gpt', 'say project falcon now', { stream: true });
  const s = sseContent(b.text);
  assert.ok(s.error && !s.text.includes('falcon'), b.text);
  const [bev] = await guardEvents(b.requestId);
  assert.equal(bev.guardrail.verdict, 'block');
  assert.equal(bev.guardrail.where, 'stream');

  const clean = await chat(gw.url, gw.key('out-guard'), 'gpt', 'all quiet', { stream: true });
  assert.equal(sseContent(clean.text).text, 'echo: all quiet');
  assert.deepEqual(await guardEvents(clean.requestId), []);
});

test('webhook guardrails see the text after local redactions; their redactions reach the upstream, their blocks name them', async () => {
  fake.reset();
  checked.length = 0;
  const r = await chat(gw.url, gw.key('hooked'), 'gpt', `mail ${EMAIL}: mask-me please`);
  assert.equal(r.status, 200, r.text);
  assert.match(sentUpstream(), /mail \[EMAIL\]: \[MASKED\] please/);
  assert.equal(checked.length, 1);
  assert.equal(checked[0].direction, 'input');
  assert.equal(checked[0].agent, 'spiffe://test/agent/hooked');
  assert.equal(checked[0].where, 'prompt');
  assert.ok(checked[0].texts.some((t) => t.includes('mail [EMAIL]: mask-me')), `the checker never sees what a local guardrail redacted: ${JSON.stringify(checked[0].texts)}`);
  const evs = await guardEvents(r.requestId);
  assert.deepEqual(evs.map((e) => e.guardrail), [
    { direction: 'input', where: 'prompt', verdict: 'redact', findings: [{ guardrail: 'mask-email-in', category: 'email', count: 1 }] },
    { direction: 'input', where: 'prompt', verdict: 'redact', findings: [], webhook: [{ guardrail: 'checker-in', verdict: 'redact' }] },
  ]);

  fake.reset();
  const b = await chat(gw.url, gw.key('hooked'), 'gpt', 'this is forbidden');
  assert.equal(b.status, 400);
  assert.equal(fake.requests.length, 0, 'a blocked call never reaches the upstream');
  assert.deepEqual({ code: (b.json as Err).error.code, param: (b.json as Err).error.param, message: (b.json as Err).error.message }, {
    code: 'guardrail_blocked', param: 'checker-in',
    message: 'Request blocked by guardrail "checker-in": it contains content it does not allow. Remove it and retry, or ask an administrator to change the guardrail.',
  });
  const [bev] = await guardEvents(b.requestId);
  assert.deepEqual(bev.guardrail, { direction: 'input', where: 'prompt', verdict: 'block', findings: [], webhook: [{ guardrail: 'checker-in', verdict: 'block', reason: 'policy word' }] });

  const clean = await chat(gw.url, gw.key('hooked'), 'gpt', 'hello there');
  assert.equal(clean.status, 200);
  assert.deepEqual(await guardEvents(clean.requestId), [], 'a webhook allow is not evidence');
});

test('an output webhook checks a stream whole, before the agent gets any of it', async () => {
  checked.length = 0;
  const r = await chat(gw.url, gw.key('out-hooked'), 'gpt', 'fine words', { stream: true });
  assert.equal(sseContent(r.text).text, 'echo: fine words');
  assert.deepEqual(checked.map((c) => [c.direction, c.texts.join('')]), [['output', 'echo: fine words']]);
  const b = await chat(gw.url, gw.key('out-hooked'), 'gpt', 'forbidden words', { stream: true });
  const s = b.status === 200 ? sseContent(b.text) : { text: '', error: (b.json as Err).error };
  assert.ok(!s.text.includes('forbidden'), b.text);
  assert.match(JSON.stringify(s.error), /checker-out/);
});

test('a prompt over a blocking guardrail\'s scan budget is refused while it is read, with scan_limit evidence', async () => {
  fake.reset();
  const r = await chat(gw.url, gw.key('capped'), 'gpt', 'word '.repeat(200));
  assert.equal(r.status, 400);
  assert.equal((r.json as Err).error.param, 'scan-cap');
  assert.equal((r.json as Err).error.code, 'guardrail_blocked');
  assert.equal((r.json as Err).error.message, 'Request blocked by guardrail "scan-cap": it contains more text than the guardrail scans per request (spec.max_scan_chars). Remove it and retry, or ask an administrator to change the guardrail.');
  assert.equal(fake.requests.length, 0);
  const [ev] = await guardEvents(r.requestId);
  assert.deepEqual(ev.guardrail, { direction: 'input', where: 'prompt', verdict: 'block', findings: [{ guardrail: 'scan-cap', category: 'scan_limit', count: 1 }] });
});

test('the scan budget is enforced while the body is read: the refusal comes before the agent finishes sending', async () => {
  const head = JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content: 'word '.repeat(200) }] }).slice(0, -3);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('capped')}`, 'content-type': 'application/json' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); req.destroy(); });
    req.on('error', () => { /* destroyed after the answer */ });
    req.write(head);
    // The body is never finished: only a refusal decided while reading can answer.
    setTimeout(() => { req.destroy(); reject(new Error('no answer while the body was still being sent')); }, 15_000).unref();
  });
  assert.equal(status, 400);
});

test('embeddings input goes through the guardrail step too', async () => {
  fake.reset();
  const r = await fetch(`${gw.url}/v1/embeddings`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.key('hooked')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'embed', input: `mail ${EMAIL}`, encoding_format: 'float' }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  assert.match(sentUpstream(), /mail \[EMAIL\]/);
  assert.ok(!sentUpstream().includes(EMAIL));
});

test('embeddings input is content, not a tool payload: a tool-argument JSON schema does not block it (its detectors still redact)', async () => {
  fake.reset();
  const r = await fetch(`${gw.url}/v1/embeddings`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.key('redactor')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'embed', input: `mail ${EMAIL}`, encoding_format: 'float' }),
  });
  assert.equal(r.status, 200, await r.clone().text());
  assert.match(sentUpstream(), /mail \[EMAIL\]/);
});

test('with the audit trail off (AAM_AUDIT=off, benchmark mode) guardrails still redact', async () => {
  const off = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], retries: { attempts: 0 } }),
    doc('Guardrail', 'mask-email-in', { on: ['input'], detect: ['email'], action: 'redact' }),
    ...agent('redactor', ['mask-email-in']),
  ), { AAM_AUDIT: 'off' });
  try {
    assert.equal(off.g.rt.audit, null);
    fake.reset();
    const r = await chat(off.url, off.key('redactor'), 'gpt', `mail ${EMAIL}`);
    assert.equal(r.status, 200, r.text);
    assert.match(sentUpstream(), /mail \[EMAIL\]/);
  } finally { await off.close(); }
});

test('a held call\'s arguments as reviewers see them: every PII kind redacted, credentials scrubbed, clipped at 64 KiB', () => {
  const rt = gw.g.rt;
  const shown = redactForReview(rt, {
    email: EMAIL, phone: '+1 415 555 0100', card: '4111 1111 1111 1111', ssn: '123-45-6789',
    iban: 'DE89 3704 0044 0532 0130 00', ip: '203.0.113.7', aws: 'AKIAIOSFODNN7EXAMPLE', token: TOKEN,
  });
  for (const raw of [EMAIL, '555 0100', '4111', '123-45-6789', '3704 0044', '203.0.113.7', 'AKIAIOSFODNN7EXAMPLE', TOKEN]) assert.ok(!shown.includes(raw), `${raw} shown to reviewers: ${shown}`);
  assert.match(shown, /\[REDACTED:crm-token\]/);
  assert.equal(redactForReview(rt, undefined), '{}');
  const big = redactForReview(rt, { note: 'x'.repeat(70 * 1024) });
  assert.equal(big.length, 64 * 1024 + 3);
  assert.ok(big.endsWith('...'));
});
