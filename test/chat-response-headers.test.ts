// The full response head of a chat answer, whole and streamed: names in order and casing as the
// client reads them (rawHeaders), and every value that is not per-request. Pins the head while the
// gateway builds it with fewer objects per request (gateway/chat.ts answerHeaders, openHeaders).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startFakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';

function post(url: string, key: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; raw: string[]; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, raw: res.rawHeaders, text }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** [name, value] pairs; per-request values (id, date, cost, length) as their shape. */
function head(raw: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const [k, v] = [raw[i], raw[i + 1]];
    out.push([k, k === 'x-request-id' ? (v ? 'ID' : '') : k === 'Date' ? 'DATE' : k === 'x-aam-cost-usd' ? (/^\d+\.\d{8}$/.test(v) ? 'COST' : v) : k === 'content-length' ? (/^\d+$/.test(v) ? 'LEN' : v) : v]);
  }
  return out;
}

test('chat answers: the full response head, whole and streamed, with and without a client request id', async () => {
  const fake = await startFakeUpstream();
  const gw = await startTestGateway(yaml(
    doc('Provider', 'oai', { type: 'openai', baseUrl: `${fake.url}/v1`, models: '*' }),
    doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' }),
    doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['oai/*'] } }),
  ));
  try {
    const key = gw.key('bot');
    const msg = { model: 'oai/gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
    const whole = await post(gw.url, key, msg);
    assert.equal(whole.status, 200, whole.text);
    assert.deepEqual(head(whole.raw), [
      ['content-type', 'application/json'], ['x-request-id', 'ID'], ['x-aam-target', 'oai/gpt-4o'], ['x-aam-cost-usd', 'COST'],
      ['content-length', 'LEN'], ['Date', 'DATE'], ['Connection', 'keep-alive'], ['Keep-Alive', 'timeout=65'],
    ]);
    const withId = await post(gw.url, key, msg, { 'x-request-id': 'client-1' });
    assert.deepEqual(head(withId.raw).slice(0, 2), [['x-client-request-id', 'client-1'], ['content-type', 'application/json']]);
    const streamed = await post(gw.url, key, { ...msg, stream: true });
    assert.equal(streamed.status, 200, streamed.text);
    assert.deepEqual(head(streamed.raw), [
      ['content-type', 'text/event-stream; charset=utf-8'], ['cache-control', 'no-cache'], ['connection', 'keep-alive'], ['x-accel-buffering', 'no'],
      ['x-request-id', 'ID'], ['x-aam-target', 'oai/gpt-4o'], ['Date', 'DATE'], ['Transfer-Encoding', 'chunked'],
    ]);
  } finally {
    await gw.close();
    await fake.close();
  }
});
