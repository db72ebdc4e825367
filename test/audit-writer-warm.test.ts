// The audit writer thread stops after 30 s without work (memory) and starts again with the next
// evidence. An agent's request starts it as soon as the caller is identified, without waiting for
// it, so the evidence that follows (a tool's durable intent) does not pay the whole start-up; a
// request nobody could identify starts nothing (an anonymous client cannot keep the thread up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agentDocs, doc, startTestGateway, yaml } from './helpers/gateway.ts';

test('an identified agent\'s request warms the audit writer; an unauthenticated one does not', async () => {
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'demo-small' }] }), ...agentDocs(['m'])));
  try {
    const sink = gw.g.rt.audit!;
    let warmed = 0;
    // The real sink, observed: how many times the access path asked it to get ready.
    gw.g.rt.audit = { record: (ev) => sink.record(ev), journaled: (now) => sink.journaled!(now), recordDurable: (ev) => sink.recordDurable!(ev), warm: () => { warmed++; sink.warm!(); } };
    const chat = (auth: string) => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
    const anon = await chat('Bearer aam-sk-not-a-key');
    await anon.arrayBuffer();
    assert.equal(anon.status, 401);
    assert.equal(warmed, 0, 'an unidentified caller does not start the writer');
    const ok = await chat(`Bearer ${gw.key('tester')}`);
    await ok.arrayBuffer();
    assert.equal(ok.status, 200);
    assert.equal(warmed, 1);
  } finally {
    await gw.close();
  }
});
