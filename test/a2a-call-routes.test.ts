// Every way a SendMessage can fail once it is admitted ends the same way: the caller's budget
// reservation is given back, the deciding rule's call count dropped when the callee never served it,
// the call recorded once (its a2a_call, with the failure's status), the refusal answered as a
// JSON-RPC error (or the connection cut once the answer had begun), and the request counted as being
// handled until that answer is out (rt.handling: a shutdown waits for it). Each route is taken three
// times: a reservation or a count that leaked would refuse the call that follows them (429).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { AamError } from '../src/access/errors.ts';
import { StoreUnavailable } from '../src/store/types.ts';

let gw: TestGateway;
let callee: http.Server;
const keys: Record<string, string> = {};

before(async () => {
  // The callee answers as the message's text says.
  callee = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rpc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: unknown; method: string; params: { message: { parts: Array<{ text: string }> } } };
      const id = JSON.stringify(rpc.id);
      const text = rpc.params.message.parts[0].text;
      if (rpc.method === 'SendStreamingMessage') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: {"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"s1","role":"ROLE_AGENT","parts":[{"text":"streamed"}]}}}\n\n`);
        return;
      }
      if (text === 'not json') { res.writeHead(200, { 'content-type': 'application/json' }).end('this is not JSON'); return; }
      if (text === 'too big') { res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"b","role":"ROLE_AGENT","parts":[{"text":"${'x'.repeat(10 * 1024 * 1024)}"}]}}}`); return; }
      if (text === 'task') { res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"task":{"id":"t-${Math.random()}","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}}`); return; }
      const answer = text === 'leak' ? 'the launch code is tangerine-seventeen' : 'done';
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${id},"result":{"message":{"messageId":"m1","role":"ROLE_AGENT","parts":[{"text":"${answer}"}]}}}`);
    });
  });
  await new Promise<void>((resolve) => callee.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(callee.address() as AddressInfo).port}/a2a`;
  // Room for two calls' budget probes at once ($0.000001 each); keyed's and keyed2's rules count two and one calls a day.
  const budget = { budget: { daily_usd: 0.0000025 } };
  gw = await startTestGateway(yaml(
    doc('Credential', 'keyed-key', { kind: 'query', env: 'A2A_ROUTES_TEST_KEY', inject: { query: 'api_key' } }),
    doc('Guardrail', 'no-launch-codes', { on: ['output'], keywords: ['launch code'], action: 'block' }),
    doc('Agent', 'echo', { workload: 'spiffe://test/agent/echo', a2a: { url } }),
    doc('Agent', 'keyed', { workload: 'spiffe://test/agent/keyed', a2a: { url, credential: 'keyed-key' } }),
    doc('Agent', 'keyed2', { workload: 'spiffe://test/agent/keyed2', a2a: { url, credential: 'keyed-key' } }),
    doc('Agent', 'planner', { workload: 'spiffe://test/agent/planner' }),
    doc('Agent', 'guarded', { workload: 'spiffe://test/agent/guarded' }),
    doc('AgentPolicy', 'planner-calls', { identity: { agent: 'planner' }, models: budget, agents: [{ agent: 'echo' }, { agent: 'keyed', budget: { calls_per_day: 2 } }, { agent: 'keyed2', budget: { calls_per_day: 1 } }], credentials: { allow: ['keyed-key'] } }),
    doc('AgentPolicy', 'guarded-calls', { identity: { agent: 'guarded' }, models: budget, agents: [{ agent: 'echo' }], guardrails: ['no-launch-codes'] }),
  ), { A2A_ROUTES_TEST_KEY: 'keyed-secret-7f3a9c' });
  keys.planner = gw.key('planner');
  keys.guarded = gw.key('guarded');
});

after(async () => {
  await gw?.close();
  await new Promise((r) => callee?.close(r));
});

let n = 0;
async function send(agent: string, text: string, opts: { caller?: string; method?: string } = {}) {
  const id = ++n;
  const r = await fetch(`${gw.url}/a2a/${agent}`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[opts.caller ?? 'planner']}` },
    body: JSON.stringify({ jsonrpc: '2.0', id, method: opts.method ?? 'SendMessage', params: { message: { messageId: `m${id}`, role: 'ROLE_USER', parts: [{ text }] } } }),
  });
  const raw = await r.text();
  return { id, status: r.status, requestId: r.headers.get('x-request-id')!, raw, body: raw.startsWith('{') ? JSON.parse(raw) as { id: number; result?: unknown; error?: { code: number; message: string; data: { code: string; http_status: number } } } : undefined };
}

/** The request's call evidence: exactly one a2a_call (a guardrail's block is an event of its own beside it). */
async function recordedOnce(requestId: string): Promise<{ outcome: { status: number; error?: string }; a2a: { agent: string } }> {
  const { queryEvents } = await import('../src/audit/query.ts');
  await gw.g.rt.auditLog!.flush();
  const events = queryEvents(gw.g.rt.auditLog!.db, { requestId, limit: 10 }).filter((e) => e.type === 'a2a_call');
  assert.equal(events.length, 1, `one a2a_call for ${requestId}`);
  return events[0] as never;
}

/** Every handler has settled (the count drops once the answer is out, a moment after the caller read it). */
async function settled(): Promise<void> {
  for (let i = 0; i < 100 && gw.g.rt.handling !== 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(gw.g.rt.handling, 0, 'no request handler left unsettled');
}

/** A route taken three times, each a JSON-RPC error with `status` and `code`, recorded once. */
async function route(agent: string, text: string, status: number, code: string, message: RegExp, caller = 'planner'): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const r = await send(agent, text, { caller });
    assert.equal(r.status, status, r.raw);
    assert.equal(r.body?.id, r.id);
    assert.equal(r.body?.result, undefined);
    assert.equal(r.body?.error?.data.code, code, r.raw);
    assert.equal(r.body?.error?.data.http_status, status);
    assert.match(r.body!.error!.message, message);
    const ev = await recordedOnce(r.requestId);
    assert.equal(ev.outcome.status, status);
    assert.equal(ev.a2a.agent, agent);
    await settled();
  }
}

/** After a route taken three times: neither the budget's reservations nor (for keyed) the rule's call count leaked. */
async function servedStill(agent: string, caller = 'planner'): Promise<void> {
  const ok = await send(agent, 'hello', { caller });
  assert.equal(ok.status, 200, ok.raw);
  await settled();
}

test('a callee that answers what is not JSON: 502, recorded once, nothing leaked', async () => {
  await route('echo', 'not json', 502, 'upstream_error', /^agent "echo" answered without a JSON-RPC body$/);
  await servedStill('echo');
});

test('a callee that answers more than the bound: 502, recorded once, nothing leaked', async () => {
  await route('echo', 'too big', 502, 'upstream_error', /^agent "echo" answered more than 10485760 bytes$/);
  await servedStill('echo');
});

test('an output guardrail that blocks the answer: refused, recorded once, nothing leaked', async () => {
  const r = await send('echo', 'leak', { caller: 'guarded' });
  assert.ok(r.status >= 400);
  await route('echo', 'leak', r.status, 'guardrail_blocked', /no-launch-codes/, 'guarded');
  await servedStill('echo', 'guarded');
});

test('the fleet store cannot bind the answer\'s task: 503 store_unavailable, recorded once, nothing leaked', async () => {
  const tasks = gw.g.rt.a2aTasks as { bind: (...a: unknown[]) => void | Promise<void> };
  const real = tasks.bind;
  for (const fail of [() => { throw new StoreUnavailable('redis', 'connection refused'); }, () => Promise.reject(new StoreUnavailable('redis', 'connection refused'))]) {
    tasks.bind = fail;
    try {
      for (let i = 0; i < 3; i++) {
        const r = await send('echo', 'task');
        assert.equal(r.status, 503, r.raw);
        assert.equal(r.body?.error?.data.code, 'store_unavailable');
        assert.equal((await recordedOnce(r.requestId)).outcome.status, 503);
        await settled();
      }
    } finally { tasks.bind = real; }
    assert.equal((await send('echo', 'task')).status, 200);
  }
});

test('an injection that fails (an OAuth or on-behalf-of token not obtained), at once or later: 502, recorded once, the rule\'s count and the budget given back', async () => {
  const rt = gw.g.rt as unknown as { injectCallee: (...a: unknown[]) => unknown };
  const real = rt.injectCallee;
  const refusal = () => new AamError(502, 'upstream_error', 'credential "keyed-key": the token endpoint did not answer');
  for (const fail of [() => { throw refusal(); }, () => Promise.reject(refusal())]) {
    rt.injectCallee = fail;
    try { await route('keyed', 'hello', 502, 'upstream_error', /^credential "keyed-key": the token endpoint did not answer$/); } finally { rt.injectCallee = real; }
    await servedStill('keyed');
  }
});

test('a throw while the call to the callee is made (its headers): 500, recorded once, the rule\'s count and the budget given back', async () => {
  const rt = gw.g.rt as unknown as { injectCallee: (...a: unknown[]) => unknown };
  const real = rt.injectCallee;
  rt.injectCallee = () => ({ headers: { get authorization(): string { throw new Error('a header that cannot be read'); } }, credential: { name: 'keyed-key', version: 1 } });
  try { await route('keyed2', 'hello', 500, 'internal_error', /^internal error/); } finally { rt.injectCallee = real; }
  await servedStill('keyed2');
});

test('a stream relay that fails (its promise rejects) before it wrote anything: 500, recorded once, nothing leaked', async () => {
  // The relay reads the drain's state as it starts: here that read throws.
  const streams = gw.g.rt.streams;
  Object.defineProperty(streams, 'draining', { configurable: true, get(): boolean { throw new Error('the relay could not start'); } });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await send('echo', 'hi', { method: 'SendStreamingMessage' });
      assert.equal(r.status, 500, r.raw);
      assert.equal(r.body?.id, r.id);
      assert.equal(r.body?.error?.data.code, 'internal_error');
      assert.equal((await recordedOnce(r.requestId)).outcome.status, 500);
      await settled();
    }
  } finally { delete (streams as { draining?: boolean }).draining; }
  const ok = await send('echo', 'hello', { method: 'SendStreamingMessage' });
  assert.equal(ok.status, 200, ok.raw);
  assert.match(ok.raw, /streamed/);
  await settled();
});

test('a call counts as handled until its answer is out: an answer and a refusal both wait for their evidence', async () => {
  const audit = gw.g.rt.audit as { journaledNow?: (now?: boolean) => Promise<void> | undefined };
  const real = audit.journaledNow!;
  for (const text of ['hello', 'not json']) {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let waits = 0;
    audit.journaledNow = (now) => { waits++; const p = real.call(audit, now); return p ? p.then(() => held) : held; };
    try {
      let answered = false;
      const p = send('echo', text).then((r) => { answered = true; return r; });
      for (let i = 0; i < 200 && waits === 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.ok(waits > 0, 'the answer waits for its evidence');
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(answered, false, `${text}: not answered before its evidence is safe`);
      assert.equal(gw.g.rt.handling, 1, `${text}: the request is still being handled`);
      release();
      const r = await p;
      assert.equal(r.status, text === 'hello' ? 200 : 502);
      await settled();
    } finally { audit.journaledNow = real; }
  }
});
