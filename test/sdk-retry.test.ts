// What the OpenAI and Anthropic SDKs do with aam's 429s, as their default retry runs: a budget spent
// until the day ends (retry-after hours) is not retried (a rate limit's retry-after, at most 60 s, they
// wait and retry: checked by hand, 22-30 s, not here: it would hold the suite that long).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';

const fake = await startFakeUpstream();
const gw = await startTestGateway(yaml(
  doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fake.url}/v1` }),
  // Each call is reserved at (prompt + max_tokens) x price: more than the whole daily budget.
  doc('Model', 'pricey', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 10_000, output_per_1m: 10_000 } }),
  doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'qa' }),
  doc('AgentPolicy', 'spender', { identity: { agent: 'spender' }, models: { allow: ['pricey'], budget: { daily_usd: 0.001 } } }),
));
after(async () => { await gw.close(); await fake.close(); });

/** A fetch that counts the requests an SDK sends (its retries included). */
function counting(): { fetch: typeof fetch; sent: () => number } {
  let n = 0;
  return { fetch: (input, init) => { n++; return fetch(input, init); }, sent: () => n };
}

test('a budget exhausted until the day ends: the OpenAI and Anthropic SDKs give up after one request (x-should-retry: false), with aam\'s message', async () => {
  const o = counting();
  const openai = new OpenAI({ apiKey: gw.key('spender'), baseURL: `${gw.url}/v1`, fetch: o.fetch }); // default maxRetries: 2
  const oe = await openai.chat.completions.create({ model: 'pricey', max_tokens: 100, messages: [{ role: 'user', content: 'spend' }] }).then(() => null, (e: InstanceType<typeof OpenAI.APIError>) => e);
  assert.equal(oe?.status, 429);
  assert.equal(oe?.code, 'budget_exceeded');
  assert.ok(Number(oe?.headers?.get('retry-after')) > 60, 'retry-after runs to the end of the day');
  assert.equal(oe?.headers?.get('x-should-retry'), 'false');
  assert.equal(o.sent(), 1, 'not retried'); // before: the SDK slept the whole retry-after (hours) to retry

  const a = counting();
  const anthropic = new Anthropic({ apiKey: gw.key('spender'), baseURL: gw.url, fetch: a.fetch });
  const ae = await anthropic.messages.create({ model: 'pricey', max_tokens: 100, messages: [{ role: 'user', content: 'spend' }] }).then(() => null, (e: InstanceType<typeof Anthropic.APIError>) => e);
  assert.equal(ae?.status, 429);
  assert.match(String(ae?.message), /budget/);
  assert.equal(a.sent(), 1, 'not retried');
  assert.equal(fake.count('ok'), 0, 'nothing reached the upstream');
});
