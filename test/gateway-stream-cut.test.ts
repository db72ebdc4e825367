// An upstream stream that breaks mid-answer: the client gets every character that was safe to send,
// also what the credential scrubber or an output guardrail was still holding (cleared as at a clean
// end), then an error event in its wire (OpenAI `data: {"error"}`, Anthropic `event: error`), and
// the audit trail records the cut (502, the reason). Real SDKs against an upstream that cuts the socket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, type LocalServer } from './helpers/e2e.ts';
import { queryEvents } from '../src/audit/query.ts';

const SECRET = 'sk-cut-upstream-secret-0123456789';
let up: LocalServer;
let gw: TestGateway;
let key: string;

before(async () => {
  up = await localServer((_req, res, raw) => {
    const body = JSON.parse(raw) as { messages: Array<{ content: string }> };
    const said = body.messages.at(-1)!.content;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const chunk = (delta: unknown) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta, finish_reason: null }] })}\n\n`;
    // The answer's last characters are held: a prefix of the upstream's credential, or the guardrail's window.
    res.write(chunk({ role: 'assistant', content: '' }) + chunk({ content: said }));
    setTimeout(() => res.socket?.destroy(), 30);
  });
  const free = { pricing: { free: true } };
  gw = await startTestGateway(yaml(
    doc('Credential', 'up-key', { env: 'TEST_UPSTREAM_KEY' }),
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${up.url}/v1`, credential: 'up-key' }),
    doc('Guardrail', 'mask', { on: ['output'], detect: ['email'], action: 'redact' }),
    doc('Model', 'plain', { targets: [{ provider: 'oai', model: 'm' }], retries: { attempts: 0 }, ...free }),
    doc('Model', 'masked', { targets: [{ provider: 'oai', model: 'm' }], retries: { attempts: 0 }, guardrails: ['mask'], ...free }),
    ...agentDocs(['plain', 'masked']),
  ), { TEST_UPSTREAM_KEY: SECRET });
  key = gw.key('tester');
});
after(async () => { await gw?.close(); await up?.close(); });

const openai = () => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0 });

/** The streamed text and the error the SDK raised at the cut. */
async function cutStream(model: string, content: string): Promise<{ text: string; error: unknown; requestId: string }> {
  let text = '';
  const { data: s, response } = await openai().chat.completions.create({ model, stream: true, messages: [{ role: 'user', content }] }).withResponse();
  try {
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
  } catch (e) {
    return { text, error: e, requestId: response.headers.get('x-request-id')! };
  }
  return { text, error: undefined, requestId: response.headers.get('x-request-id')! };
}

test('credential scrubber: the text it held when the upstream cut is sent, then an error event the SDK raises; the audit records the cut', async () => {
  const { text, error, requestId } = await cutStream('plain', 'the key starts sk-cut');
  assert.equal(text, 'the key starts sk-cut', 'a prefix of a secret that never came is text');
  assert.ok(error instanceof Error, 'the OpenAI SDK raises the error event');
  assert.match(error.message, /upstream stream from oai\/m (broke|ended before the response was complete)/);
  await gw.g.rt.auditLog!.flush();
  const ev = queryEvents(gw.g.rt.auditLog!.db, { requestId }).find((e) => e.type === 'model_call') as unknown as { outcome: { status: number; error: string } } | undefined;
  assert.ok(ev, 'a model_call event');
  assert.equal(ev.outcome.status, 502);
  assert.match(ev.outcome.error, /upstream stream from oai\/m/);
});

test('output guardrail: the window it held is sent redacted before the error event; Anthropic clients get an error event too', async () => {
  const { text, error } = await cutStream('masked', 'write to bob@example.com or call');
  assert.equal(text, 'write to [EMAIL] or call');
  assert.ok(error instanceof Error);
  let got = '';
  const anthropic = new Anthropic({ baseURL: gw.url, apiKey: key, maxRetries: 0 });
  const s = anthropic.messages.stream({ model: 'masked', max_tokens: 50, messages: [{ role: 'user', content: 'mail ann@example.com now' }] });
  s.on('text', (t) => { got += t; });
  await assert.rejects(s.finalMessage(), (e: unknown) => { assert.match(String(e), /upstream stream from oai\/m/); return true; });
  assert.equal(got, 'mail [EMAIL] now');
});
