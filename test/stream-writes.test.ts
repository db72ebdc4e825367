// How a streamed chat answer is written to the agent's socket: the first content at once, on its
// own; what the upstream has already finished sending goes out with the terminator (one write(2),
// not two); content the upstream is still sending is never held back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestGateway, doc, yaml, agentDocs, type TestGateway } from './helpers/gateway.ts';
import { localServer, sseContent, type LocalServer } from './helpers/e2e.ts';

const frame = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => frame({ id: 'c1', object: 'chat.completion.chunk', model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] });
const HEAD = chunk({ role: 'assistant', content: '' }) + chunk({ content: 'one ' });
const REST = chunk({ content: 'two ' }) + chunk({ content: 'three' }) + chunk({}, 'stop')
  + frame({ id: 'c1', object: 'chat.completion.chunk', model: 'm', choices: [], usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } }) + 'data: [DONE]\n\n';

let up: LocalServer;
let gw: TestGateway;
let key: string;
/** Writes to agent sockets (each a write(2) or writev(2)) while counting. */
let writes = 0;
let counting = false;

before(async () => {
  up = await localServer(async (req, res, body) => {
    const model = (JSON.parse(body) as { model: string }).model;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // 'whole': the answer in one write (arrives in one read); 'paced': the rest a while after the first content.
    if (model === 'whole') { res.end(HEAD + REST); return; }
    res.write(HEAD);
    await sleep(50);
    res.write(chunk({ content: 'two ' }));
    await sleep(1000);
    res.end(chunk({ content: 'three' }) + chunk({}, 'stop') + 'data: [DONE]\n\n');
  });
  gw = await startTestGateway(yaml(
    doc('Provider', 'up', { type: 'openai-compatible', baseUrl: `${up.url}/v1` }),
    doc('Model', 'whole', { targets: [{ provider: 'up', model: 'whole' }] }),
    doc('Model', 'paced', { targets: [{ provider: 'up', model: 'paced' }] }),
    ...agentDocs(['whole', 'paced']),
  ));
  key = gw.key('tester');
  gw.g.server.on('connection', (s: Socket) => {
    const sock = s as Socket & { _writeGeneric: (...a: unknown[]) => unknown };
    const orig = sock._writeGeneric;
    sock._writeGeneric = function (...a: unknown[]) { if (counting) { writes++; if (process.env.DBG) console.log("W", a.length, JSON.stringify(a[1]).slice(0, 300)); } return orig.apply(this, a); };
  });
});

after(async () => { await gw?.close(); await up?.close(); });

async function stream(model: string, include_usage = false) {
  const r = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, stream: true, ...(include_usage && { stream_options: { include_usage } }), messages: [{ role: 'user', content: 'count' }] }),
  });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  const t0 = performance.now();
  let text = '';
  let sawTwo = -1;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
    if (sawTwo < 0 && sseContent(text).text.includes('two')) sawTwo = performance.now() - t0;
  }
  return { text, sawTwo, ended: performance.now() - t0 };
}

test('an upstream answer that arrived whole is written in two writes: the first content, then the rest with the terminator', async () => {
  await Promise.all(Array.from({ length: 8 }, () => stream('whole'))); // connections and the upstream pool are open
  for (const include_usage of [false, true]) {
    writes = 0;
    counting = true;
    // Side by side, as under load: the terminator waits for the request's evidence, which is written
    // with the others' in a later loop turn (alone, it is written at once and nothing is split).
    const answers = await Promise.all(Array.from({ length: 8 }, () => stream('whole', include_usage)));
    counting = false;
    for (const { text } of answers) {
      const c = sseContent(text);
      assert.equal(c.text, 'one two three');
      assert.equal(c.done, true);
      assert.equal(c.error, null);
      assert.equal(text.includes('"usage"'), include_usage);
    }
    assert.equal(writes, 2 * 8, `writes to the agents' sockets for 8 streams: ${writes}`);
  }
});

test('content the upstream is still sending is not held back for the end', async () => {
  const { text, sawTwo, ended } = await stream('paced');
  assert.equal(sseContent(text).text, 'one two three');
  assert.ok(sawTwo >= 0 && ended - sawTwo > 500, `"two" arrived at ${sawTwo.toFixed(0)} ms, the end at ${ended.toFixed(0)} ms (the upstream waits 1000 ms in between)`);
});
