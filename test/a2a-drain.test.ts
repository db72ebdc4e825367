// Graceful shutdown with A2A relays open: close() ends every A2A stream relay (SendStreamingMessage,
// SubscribeToTask, over JSON-RPC and HTTP+JSON) at once, through the same list of open streams the
// MCP plane's streams are in (rt.streams), with an error event the official SDK client raises
// (503 shutting_down, naming the task to resubscribe to), and not at the drain bound; each relay's
// evidence is recorded (outcome.ended: shutdown_drain) before the trail's final checkpoint, and a
// request/response call in flight (SendMessage) completes. Before: the relays were in-flight
// requests, held close() until AAM_DRAIN_TIMEOUT_MS and were cut there (no event, counted in drain_cut).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { sdkClientThroughAam } from './helpers/a2a-client.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { startTestAgents, type TestAgents } from './helpers/a2a-agents.ts';
import { runAudit } from './audit-helpers.ts';
import { openAuditDb } from '../src/audit/store.ts';
import { queryEvents } from '../src/audit/query.ts';
import { checkpointFilePath } from '../src/audit/anchor.ts';

/** Far above what a drain with no request in flight takes: a relay still open would hold close() this long. */
const DRAIN_MS = 20_000;
let agents: TestAgents;
let release: () => void = () => {};
let held = new Promise<void>((r) => { release = r; });

before(async () => {
  agents = await startTestAgents([{ name: 'worker', skills: ['work'], aamUrl: () => '', key: () => '', hold: () => held, slowMs: 1200 }]);
});
after(async () => { release(); await agents?.close(); });

const config = () => yaml(
  doc('Agent', 'caller', { workload: 'spiffe://test/agent/caller' }),
  doc('Agent', 'worker', { workload: 'spiffe://test/agent/worker', a2a: { url: `${agents.base}/worker` } }),
  doc('AgentPolicy', 'caller-calls', { identity: { agent: 'caller' }, agents: [{ agent: 'worker' }] }),
);

/** The official SDK client through aam, over JSON-RPC or HTTP+JSON. */
const sdkClient = (gw: TestGateway, rest = false) => sdkClientThroughAam(gw.url, 'worker', gw.key('caller'), rest);

const message = (text: string) => ({
  message: { messageId: `u-${Math.random().toString(36).slice(2)}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: '' }], metadata: { skill: 'work' }, extensions: [], referenceTaskIds: [] },
  configuration: undefined, metadata: undefined, tenant: '',
}) as never;

type Ev = { payload?: { $case: string; value: { id?: string; taskId?: string } } };

/** A stream read by the SDK: its events so far, and how it ended (the error the SDK raised, or null: a clean end). */
function read(events: AsyncIterable<unknown>) {
  const got: Ev[] = [];
  const ended = (async () => {
    try { for await (const ev of events) got.push(ev as Ev); return null; } catch (e) { return e as Error & { cause?: { envelopeCode?: number; data?: { code?: string } } }; }
  })();
  return { got, ended };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** close(), timed, bounded by the test (a hold past DRAIN_MS + 8 s fails, and the connections are cut). */
async function timedClose(gw: TestGateway): Promise<number> {
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([gw.g.close().then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), DRAIN_MS + 8000); })]);
  clearTimeout(timer);
  if (!closed) gw.g.server.closeAllConnections();
  assert.ok(closed, 'close() did not resolve');
  return performance.now() - t0;
}

/** The trail's a2a_call events, and the trail closed with a final checkpoint that covers it and verifies. */
async function trail(gw: TestGateway): Promise<Array<Record<string, any>>> {
  const db = openAuditDb(gw.dataDir);
  let events: Array<Record<string, any>>;
  try { events = queryEvents(db, { order: 'asc', limit: 100_000 }) as unknown as Array<Record<string, any>>; } finally { db.close(); }
  const head = Math.max(...events.map((e) => e.seq as number));
  const cps = readFileSync(checkpointFilePath(gw.dataDir, {}), 'utf8').trim().split('\n').map((x) => JSON.parse(x) as { tree_size?: number });
  assert.equal(cps.at(-1)?.tree_size, head, 'the last checkpoint covers the whole trail');
  const v = await runAudit('audit verify', gw.dataDir, {}, [], gw.configPath);
  assert.equal(v.code, 0, v.out + v.err);
  return events.filter((e) => (e.type ?? e.event?.type) === 'a2a_call' || e.a2a !== undefined || e.event?.a2a !== undefined).map((e) => (e.event ?? e) as Record<string, any>);
}

for (const rest of [false, true]) {
  const binding = rest ? 'HTTP+JSON' : 'JSON-RPC';
  test(`close() with A2A streams open (${binding}: a message stream and a resubscription): both end at once with an error the SDK raises, naming the task; evidence recorded, trail closed`, async () => {
    held = new Promise<void>((r) => { release = r; });
    const gw = await startTestGateway(config(), { AAM_DRAIN_TIMEOUT_MS: String(DRAIN_MS) });
    try {
      const client = await sdkClient(gw, rest);
      const first = read(client.sendMessageStream(message('stream hold please')));
      // task, then working: the callee holds there.
      await until(() => first.got.length >= 2, 15_000, 'the task and its working status');
      const taskId = first.got[0].payload!.value.id!;
      assert.ok(taskId, JSON.stringify(first.got[0]));
      const again = read(client.resubscribeTask({ id: taskId, tenant: '' } as never));
      await until(() => again.got.length >= 1, 15_000, 'the resubscription\'s task snapshot');
      const ms = await timedClose(gw);
      const [e1, e2] = await Promise.all([first.ended, again.ended]);
      for (const e of [e1, e2]) {
        assert.ok(e, 'the SDK raised an error (a clean end would read as a finished stream)');
        assert.match(e.message, /shutting down/);
        assert.match(e.message, new RegExp(`resubscribe to it \\(SubscribeToTask / tasks/resubscribe, id "${taskId}"\\)`));
        if (!rest) {
          assert.equal(e.cause?.envelopeCode, -32603);
          assert.equal(e.cause?.data?.code, 'shutting_down');
        } else assert.equal(e.name, 'A2AError', `${e.name}: the SDK read the error event (google.rpc.Status, 503 UNAVAILABLE), not a broken stream`);
      }
      // Ended by the drain itself, not by the bound (20 s); a quiet host closes in under 1 s.
      assert.ok(ms < DRAIN_MS / 2, `close() took ${Math.round(ms)} ms`);
      const calls = (await trail(gw)).filter((e) => e.a2a?.stream === true);
      assert.equal(calls.length, 2, JSON.stringify(calls));
      for (const c of calls) {
        assert.equal(c.outcome?.status, 200, JSON.stringify(c));
        assert.equal(c.outcome?.ended, 'shutdown_drain', JSON.stringify(c));
      }
      assert.deepEqual(calls.map((c) => c.a2a.method).sort(), ['SendStreamingMessage', 'SubscribeToTask']);
    } finally {
      release();
      await gw.close();
    }
  });
}

test('close() with a SendMessage in flight: it completes (the drain waits for it), within the bound', async () => {
  const gw = await startTestGateway(config(), { AAM_DRAIN_TIMEOUT_MS: String(DRAIN_MS) });
  try {
    const client = await sdkClient(gw);
    const answer = client.sendMessage(message('slow, please'));
    await new Promise((r) => setTimeout(r, 300)); // in flight: the callee answers 1.2 s after it arrived
    const ms = await timedClose(gw);
    const r = await answer as { parts?: Array<{ content?: { value?: unknown } }> };
    assert.match((r.parts ?? []).map((p) => String(p.content?.value ?? '')).join(''), /worker says: slow, please/);
    assert.ok(ms < DRAIN_MS, `close() took ${Math.round(ms)} ms`);
    const calls = (await trail(gw)).filter((e) => e.a2a?.method === 'SendMessage');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].outcome?.status, 200);
    assert.equal(calls[0].outcome?.ended, undefined);
  } finally {
    await gw.close();
  }
});
