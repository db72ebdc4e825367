// A model call alone in flight makes its model_call event's fixed part (type, request, trace,
// identity, policy: EVENT_HEAD) while its upstream works, so that once the answer is in only the
// outcome is left to encode before the evidence's write; with other requests in flight it does not
// (the main thread has their work then). Either way the event's bytes are the same.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EVENT_HEAD, encodeEvent, type AuditEventInput } from '../src/audit/event.ts';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';

const ANSWER = JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } });

test('alone in flight the model_call event is made while the upstream works; not alone, after the answer; same bytes', async () => {
  const steps: string[] = [];
  let held: ServerResponse[] = [];
  let want = 1;
  const upstream = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      steps.push('upstream has the request');
      held.push(res);
      if (held.length < want) return;
      // Answered a while later: the gateway's main thread is idle meanwhile.
      setTimeout(() => { steps.push('upstream answers'); for (const r of held) r.writeHead(200, { 'content-type': 'application/json' }).end(ANSWER); held = []; }, 50);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`, models: ['m'] }),
    doc('Model', 'one', { targets: [{ provider: 'up', model: 'm' }] }),
    ...agentDocs(['one'])));
  try {
    const rt = gw.g.rt;
    const traceId = rt.ids.traceId.bind(rt.ids);
    rt.ids.traceId = () => { steps.push('trace id'); return traceId(); };
    const events: AuditEventInput[] = [];
    const audit = rt.audit!;
    const record = audit.record.bind(audit);
    audit.record = (ev: AuditEventInput) => { if (ev.type === 'model_call') events.push(ev); return record(ev); };
    const chat = () => fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'one', messages: [{ role: 'user', content: 'hello' }] }),
    }).then(async (r) => { assert.equal(r.status, 200, await r.text()); });

    await chat();
    // (The upstream server sees the request after the gateway sent it and went on: not an order to test.)
    const order = () => steps.filter((s) => s !== 'upstream has the request');
    assert.deepEqual(order(), ['trace id', 'upstream answers']);
    assert.equal(events.length, 1);
    const head = (events[0] as { [EVENT_HEAD]?: { keys: string[] } })[EVENT_HEAD];
    assert.deepEqual(head?.keys, ['type', 'request_id', 'trace_id', 'identity', 'policy']);
    const { [EVENT_HEAD]: _h, ...plain } = events[0] as AuditEventInput & { [EVENT_HEAD]?: unknown };
    assert.equal(encodeEvent(events[0], 1).json, encodeEvent(plain as AuditEventInput, 1).json);

    // A second request while the first waits for its upstream: it is not alone, its event is made after its answer.
    steps.length = 0;
    events.length = 0;
    want = 2;
    const first = chat();
    while (held.length === 0) await new Promise((r) => setTimeout(r, 5));
    await Promise.all([first, chat()]);
    assert.deepEqual(order(), ['trace id', 'upstream answers', 'trace id']);
    assert.equal(events.length, 2);
    const heads = events.map((ev) => (ev as { [EVENT_HEAD]?: unknown })[EVENT_HEAD] !== undefined);
    assert.deepEqual(heads.sort(), [false, true]);
  } finally {
    await gw.close();
    upstream.close();
  }
});
