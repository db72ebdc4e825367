// The order of a non-stream model answer's steps, which its c=1 latency rests on: the evidence and
// the budget's settlement before the answer (promises), the counters (usage rollup, metrics) after
// it, and on every outcome (an answer an output guardrail blocks is counted too).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EgressResponse } from '../src/access/egress.ts';
import type { AuditEventInput } from '../src/audit/event.ts';
import type { UsageRecord } from '../src/gateway/usage.ts';
import { startTestGateway, doc, yaml, agentDocs } from './helpers/gateway.ts';

test('a non-stream answer leaves after its evidence and before its counters; a blocked answer is counted too', async () => {
  const gw = await startTestGateway(yaml(
    doc('Provider', 'demo', { type: 'demo' }),
    doc('Guardrail', 'no-falcon-out', { on: ['output'], keywords: ['project falcon'], action: 'block' }),
    doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }),
    doc('Model', 'guarded', { targets: [{ provider: 'demo', model: 'd' }], guardrails: ['no-falcon-out'] }),
    ...agentDocs(['one', 'guarded'])));
  const steps: string[] = [];
  const send = EgressResponse.prototype.send;
  try {
    EgressResponse.prototype.send = function (this: EgressResponse, ...args: Parameters<EgressResponse['send']>) { steps.push(`answer ${args[0]}`); return send.apply(this, args); };
    const rt = gw.g.rt;
    const usage = rt.usage.record.bind(rt.usage);
    rt.usage.record = (r: UsageRecord) => { steps.push(`usage ${r.route} ${r.status}`); usage(r); };
    const audit = rt.audit!;
    const record = audit.record.bind(audit);
    audit.record = (ev: AuditEventInput) => { if (ev.type === 'model_call') steps.push(`evidence ${(ev.model as { route: string }).route}`); return record(ev); };
    const chat = (model: string, content: string) => fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${gw.key('tester')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content }] }),
    });
    const ok = await chat('one', 'hello');
    assert.equal(ok.status, 200, await ok.text());
    assert.deepEqual(steps, ['evidence one', 'answer 200', 'usage one 200']);
    steps.length = 0;
    // The demo provider echoes the prompt: the answer carries the keyword and the output guardrail blocks it.
    const blocked = await chat('guarded', 'tell me about project falcon');
    assert.equal(blocked.status, 400, await blocked.text());
    assert.deepEqual(steps, ['evidence guarded', 'usage guarded 200', 'answer 400']);
  } finally {
    EgressResponse.prototype.send = send;
    await gw.close();
  }
});
