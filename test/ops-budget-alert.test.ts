// Budget alerts are delivered: crossing an alert_at threshold writes one budget_alert event that
// reaches the signed audit webhook (once per threshold and window, not once per request).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { queryEvents } from '../src/audit/query.ts';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';
import { localServer, until } from './helpers/e2e.ts';

interface Delivered { budget?: { key: string; period: string; threshold_pct: number; spent_usd: number; limit_usd: number }; type: string }

test('alert_at thresholds produce budget_alert events that reach the webhook sink, signed, once per threshold', async () => {
  const secret = 'webhook-test-secret';
  const received: Delivered[] = [];
  const badSignatures: string[] = [];
  const hook = await localServer((req, res, body) => {
    // The receiver's own check (RFC 2104 HMAC over the raw body), not aam's signer.
    const expected = 'sha256=' + createHmac('sha256', secret).update(body, 'utf8').digest('hex');
    if (req.headers['x-aam-signature'] !== expected) badSignatures.push(String(req.headers['x-aam-signature']));
    const parsed = JSON.parse(body) as { events?: Delivered[] };
    received.push(...(parsed.events ?? []));
    res.writeHead(200).end();
  });
  const fake = await startFakeUpstream();
  // $0.01 per token: each call (about 17 tokens) spends about 17 % of the $1 daily budget.
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
    doc('Model', 'pricey', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 10_000, output_per_1m: 10_000 } }),
    doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
    doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['pricey'], budget: { daily_usd: 1, alert_at: [50, 80] } } }),
  ), { AAM_AUDIT_WEBHOOK_URL: hook.url, AAM_AUDIT_WEBHOOK_SECRET: secret });
  try {
    const key = gw.key('spender');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'pricey', max_tokens: 5, messages: [{ role: 'user', content: 'spend' }] }),
      });
      statuses.push(r.status);
      await r.body?.cancel();
    }
    assert.ok(statuses.filter((s) => s === 200).length >= 4, `enough calls admitted to cross 80 %: ${statuses.join(',')}`);
    const alerts = () => received.filter((e) => e.type === 'budget_alert');
    await until(() => alerts().length >= 2, 15_000, 'two budget_alert events at the webhook');
    // Delivery is at-least-once; distinct thresholds are what the receiver sees.
    const byThreshold = new Map(alerts().map((e) => [e.budget!.threshold_pct, e.budget!]));
    assert.deepEqual([...byThreshold.keys()].sort((a, b) => a - b), [50, 80]);
    for (const [t, b] of byThreshold) {
      assert.equal(b.key, 'agent:spender');
      assert.equal(b.period, 'daily');
      assert.equal(b.limit_usd, 1);
      assert.ok(b.spent_usd >= t / 100 && b.spent_usd < 1, `alert ${t} % at $${b.spent_usd}`);
    }
    assert.deepEqual(badSignatures, []);
    // Nothing more to cross: more traffic (refused or not) raises no further alert.
    await gw.g.rt.auditLog!.flush();
    assert.equal(queryEvents(gw.g.rt.auditLog!.db, { type: 'budget_alert', limit: 100 }).length, 2, 'one event per threshold in the trail');
  } finally { await gw.close(); await fake.close(); await hook.close(); }
});
