// Idle event streams get SSE comment frames (AAM_SSE_KEEPALIVE_MS) so proxies and load balancers
// do not cut them: an A2A stream whose callee goes quiet mid-task, and an MCP session's GET
// stream (idle by nature). The events around them arrive unchanged; JSON answers get none.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { startHttpFixture, type RunningFixture } from './fixtures/mcp-accounts/upstream.ts';
import { serversReady, ADMIN_TOKEN } from './helpers/mcp.ts';

const KEEPALIVE_MS = 100;
let gw: TestGateway;
let agents: TestAgents;
let mcp: RunningFixture;
let key = '';
let release: () => void = () => undefined;
const held = new Promise<void>((r) => { release = r; });
let releaseIdle: () => void = () => undefined;
const idleHeld = new Promise<void>((r) => { releaseIdle = r; });

before(async () => {
  agents = await startTestAgents([
    { name: 'slow', skills: ['work'], aamUrl: () => gw.url, key: () => key, hold: () => held },
    { name: 'idle', skills: ['work'], aamUrl: () => gw.url, key: () => key, hold: () => idleHeld },
  ]);
  mcp = await startHttpFixture();
  gw = await startTestGateway(yaml(
    doc('Agent', 'slow', { workload: 'spiffe://test/agent/slow', a2a: { url: `${agents.base}/slow` } }),
    doc('Agent', 'idle', { workload: 'spiffe://test/agent/idle', a2a: { url: `${agents.base}/idle` } }),
    doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
    doc('McpServer', 'web', { transport: 'streamable-http', url: mcp.url, resource: 'salesforce.accounts', timeout_ms: 60_000, tools: { read_account: { action: 'read' } } }),
    doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'slow' }, { agent: 'idle' }], tools: [{ resource: 'salesforce.accounts', actions: ['read'] }] }),
  ), { AAM_SSE_KEEPALIVE_MS: String(KEEPALIVE_MS), AAM_ADMIN_TOKEN: ADMIN_TOKEN });
  key = gw.key('caller');
  await serversReady(gw);
});

after(async () => {
  release();
  releaseIdle();
  await gw?.close();
  await agents?.close();
  await mcp?.close();
});

/** Read a streamed body until `done(text)` holds or the deadline passes; the reader is returned to go on. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, done: (text: string) => boolean, ms = 30_000, text = ''): Promise<string> {
  const dec = new TextDecoder();
  const deadline = Date.now() + ms;
  while (!done(text)) {
    if (Date.now() > deadline) assert.fail(`stream did not show what was expected in ${ms} ms; got: ${text.slice(0, 500)}`);
    const { value, done: end } = await reader.read();
    if (end) break;
    text += dec.decode(value, { stream: true });
  }
  return text;
}

test('an A2A stream whose callee goes quiet gets keep-alive comments, then the rest of its events', async () => {
  const r = await fetch(`${gw.url}/a2a/slow/message:stream`, {
    method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
    body: JSON.stringify({ message: { messageId: 'k1', role: 'ROLE_USER', parts: [{ text: 'stream and hold' }] } }),
  });
  assert.equal(r.status, 200);
  const reader = r.body!.getReader();
  let text = await readUntil(reader, (t) => t.includes(': keep-alive\n\n'));
  assert.match(text, /^data: /, 'the task event came first');
  release();
  text = await readUntil(reader, () => false, 30_000, text);
  assert.match(text, /gamma/);
  for (const frame of text.split('\n\n').filter(Boolean)) assert.match(frame, /^(: keep-alive|data: \{.*\})$/s, 'only whole frames: events and comments');
  const plain = await fetch(`${gw.url}/a2a/slow/message:send`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ message: { messageId: 'k2', role: 'ROLE_USER', parts: [{ text: 'hi' }] } }),
  });
  const body = await plain.text();
  assert.ok(!body.includes('keep-alive'));
  JSON.parse(body);
});

test('idle A2A streams share one keep-alive clock: a stream starts no interval timer of its own', async () => {
  // Timers of the keep-alive period started in this process (the gateway runs in it) while streams open.
  let periodic = 0;
  const setIntervalWas = globalThis.setInterval;
  globalThis.setInterval = ((...a: unknown[]) => {
    if (a[1] === KEEPALIVE_MS) periodic++;
    return Reflect.apply(setIntervalWas, globalThis, a) as ReturnType<typeof setInterval>;
  }) as typeof setInterval;
  const open = async (i: number) => {
    const r = await fetch(`${gw.url}/a2a/idle/message:stream`, {
      method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${key}` },
      body: JSON.stringify({ message: { messageId: `t${i}`, role: 'ROLE_USER', parts: [{ text: 'stream and hold' }] } }),
    });
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    // Its first events and a keep-alive: the stream is open, idle, and kept alive.
    return { reader, text: await readUntil(reader, (t) => t.includes(': keep-alive\n\n')) };
  };
  let first = { reader: undefined as unknown as ReadableStreamDefaultReader<Uint8Array>, text: '' };
  let more: Array<typeof first> = [];
  let again: string[] = [];
  try {
    first = await open(0);
    more = await Promise.all([1, 2, 3, 4, 5, 6].map(open));
    // Every stream still gets its keep-alives, on the one clock.
    again = await Promise.all(more.map(async (s) => readUntil(s.reader, (t) => t.split(': keep-alive').length > 2, 30_000, s.text)));
  } finally {
    globalThis.setInterval = setIntervalWas;
  }
  assert.equal(periodic, 0, 'no interval timer of the keep-alive period per stream');
  releaseIdle();
  for (const s of [first, ...more.map((m, i) => ({ reader: m.reader, text: again[i] }))]) {
    const text = await readUntil(s.reader, () => false, 30_000, s.text);
    assert.match(text, /gamma/);
  }
});

test('an MCP session\'s idle GET stream gets keep-alive comments', async () => {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${key}`, 'mcp-protocol-version': '2025-11-25' };
  const init = await fetch(`${gw.url}/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'ka', version: '1' } } }) });
  assert.equal(init.status, 200);
  await init.text();
  const sid = init.headers.get('mcp-session-id')!;
  assert.ok(sid);
  const note = await fetch(`${gw.url}/mcp`, { method: 'POST', headers: { ...headers, 'mcp-session-id': sid }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  assert.equal(note.status, 202);
  const ac = new AbortController();
  const stream = await fetch(`${gw.url}/mcp`, { method: 'GET', headers: { accept: 'text/event-stream', authorization: `Bearer ${key}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, signal: ac.signal });
  assert.equal(stream.status, 200);
  assert.match(stream.headers.get('content-type') ?? '', /text\/event-stream/);
  const text = await readUntil(stream.body!.getReader(), (t) => t.includes(': keep-alive\n\n'));
  assert.ok(text.includes(': keep-alive'));
  ac.abort();
  await fetch(`${gw.url}/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${key}`, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } });
});
