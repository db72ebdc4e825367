// A request's access context (src/access/context.ts) as the caller and the audit trail see it, with
// no gateway: a real compiled config, real guardrails, the real embedded limiter and the real
// delegation header; the audit sink and the key book's answer are recorders. A mutant it kills
// costs about a second; the same steps through a gateway: access-e2e, a2a-gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Access, currentCaller, openAccess } from '../src/access/context.ts';
import { callEnded, callStarted, delegate, encodeDelegation, taskEnded } from '../src/access/delegation.ts';
import { AamError } from '../src/access/errors.ts';
import type { Ctx } from '../src/access/request.ts';
import type { AccessRuntime } from '../src/access/runtime-view.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, setFor } from '../src/policy/compile.ts';
import { compileGuardrail } from '../src/guardrails/engine.ts';
import { BudgetLedger, EmbeddedLimiter, RateLimiter } from '../src/policy/limits.ts';
import { IdentitySeen, type SeenRow } from '../src/identity/seen.ts';
import { memoryLiveCalls, redisLiveCalls } from '../src/store/live-calls.ts';
import { connectRedis } from '../src/store/redis.ts';
import { IdPool } from '../src/observability/otlp-context.ts';
import { MasterKey } from '../src/credentials/master-key.ts';
import type { Identity } from '../src/identity/types.ts';
import { doc, yaml } from './helpers/config-docs.ts';
import { openIssuer } from '../src/identity/issuer.ts';
import { createJwtVerifier } from '../src/identity/jwt-svid.ts';
import { tempDir } from './helpers/temp.ts';

const config = parseConfigTexts([{ file: 'aam.yaml', text: yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
  doc('Agent', 'plain', { workload: 'spiffe://prod/agent/plain', team: 'ops' }),
  doc('Guardrail', 'no-falcon', { on: ['input', 'output'], keywords: ['falcon'], action: 'block' }),
  doc('Guardrail', 'small-scan', { on: ['input'], keywords: ['owl'], action: 'redact', max_scan_chars: 40 }),
  doc('Guardrail', 'smaller-scan', { on: ['input'], keywords: ['owl'], action: 'redact', max_scan_chars: 30 }),
  doc('Guardrail', 'lenient-scan', { on: ['input'], keywords: ['owl'], action: 'redact', max_scan_chars: 10, on_scan_limit: 'flag' }),
  doc('Guardrail', 'output-scan', { on: ['output'], keywords: ['owl'], action: 'redact', max_scan_chars: 5 }),
  doc('Guardrail', 'tie-scan', { on: ['input'], keywords: ['owl'], action: 'redact', max_scan_chars: 30 }),
  doc('Guardrail', 'needs-id', { on: ['input'], action: 'block', json_schema: { type: 'object', required: ['id'] } }),
  doc('Agent', 'tooler', { workload: 'spiffe://prod/agent/tooler', team: 'ops' }),
  doc('Agent', 'spender', { workload: 'spiffe://prod/agent/spender', team: 'ops' }),
  doc('AgentPolicy', 'analyst-models', { identity: { agent: 'analyst' }, models: { allow: ['chat'] }, guardrails: ['no-falcon', 'smaller-scan', 'small-scan', 'tie-scan', 'lenient-scan', 'output-scan'] }),
  doc('AgentPolicy', 'tooler-guarded', { identity: { agent: 'tooler' }, models: { allow: ['chat'] }, guardrails: ['needs-id'] }),
  doc('AgentPolicy', 'spender-budget', { identity: { agent: 'spender' }, models: { allow: ['chat'], budget: { daily_usd: 1 } } }),
  doc('AgentPolicy', 'plain-models', { identity: { agent: 'plain' }, models: { allow: ['chat'] }, audit: { record: ['identity', 'policy'] } }),
) }]);

type Event = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const MASTER = new MasterKey(Buffer.alloc(32, 3), 'env');

/** A2A calls in flight, shared by every runtime made here (as one process's). */
const liveCalls = memoryLiveCalls();

function setup(opts: { headers?: Record<string, string>; key?: { agent: string; id: string } } = {}) {
  const events: Event[] = [];
  const rows: SeenRow[] = [];
  const policies = compilePolicies(config, 'v-ctx');
  const generationProblems = new Map<string, string>();
  const rt = {
    compiled: {
      policies,
      guardrails: new Map([...config.guardrails.values()].map((g) => [g.name, compileGuardrail(g.name, g.spec)] as const)),
      guardrailLists: { merged: new WeakMap(), byNames: new WeakMap() },
    },
    audit: { record: (ev: Event) => { events.push(ev); } },
    auditHasRoom: () => true,
    metrics: null,
    limiter: new EmbeddedLimiter(new BudgetLedger(), new RateLimiter()),
    identitySeen: new IdentitySeen({ write: async (r) => { rows.push(...r); }, read: async () => rows }),
    liveCalls,
    ids: new IdPool(),
    vault: { subkey: (info: string) => MASTER.derive(info) },
    scrub: (t: string) => t,
    scanThread: null,
    // The key book's answer for the one key this test presents (identify.ts is tested in mutation-identity).
    keyBook: {
      authenticate: (secret: string) => (opts.key && secret === 'aam_test_secret' ? { ok: true, key: { id: opts.key.id, agent: opts.key.agent }, generation: 'g1' } : { ok: false, reason: 'unknown key' }),
      // As the key mirror answers: a caller with no key secret generation is no key caller.
      generationProblem: (id: string, generation: string | undefined) => (generation === undefined ? `API key ${id}: no generation` : generationProblems.get(id)),
    },
    jwt: null,
    tls: null,
  };
  const ctx = {
    req: { headers: { authorization: 'Bearer aam_test_secret', ...opts.headers }, socket: {} },
    rt, cfg: rt.compiled, requestId: 'req-ctx', path: '/v1/chat/completions', wire: 'openai',
  } as unknown as Ctx;
  return { ctx, rt: rt as unknown as AccessRuntime, events, policies, generationProblems };
}

const who = (s: ReturnType<typeof setup>, name: string): Identity => ({ agent: s.policies.agents.get(name)!, method: 'virtual_key', keyId: `key-${name}`, keyGeneration: 'g1' });

function refusal(fn: () => unknown): AamError {
  try { fn(); } catch (e) { assert.ok(e instanceof AamError, String(e)); return e; }
  assert.fail('expected a refusal');
}

test('an access context holds the caller and its policies for the whole request, and decides model routes by them', () => {
  const s = setup();
  const id = who(s, 'analyst');
  const a = new Access(s.ctx, id);
  assert.equal(s.ctx.identity, id);
  assert.equal(s.ctx.access, a);
  assert.equal(a.set, setFor(id.agent, s.policies));
  assert.equal(a.authorizeModel('chat').effect, 'allow');
  const e = refusal(() => a.authorizeModel('big'));
  assert.equal(e.status, 403);
  // Evidence carries this request and its trace.
  assert.equal(a.at().requestId, 'req-ctx');
  assert.match(a.at().traceId ?? '', /^[0-9a-f]{32}$/);
  assert.equal(a.at().traceId, a.at().traceId, 'one trace per request');
});

test('the guardrails a request runs are remembered for evidence, and a caller with none is not slowed or changed', async () => {
  const s = setup();
  const plain = new Access(s.ctx, who(s, 'plain'));
  assert.deepEqual(plain.guardrails(), []);
  assert.equal(s.ctx.guardrails, undefined, 'no guardrails: nothing to name in evidence');
  const body = { model: 'chat', messages: [{ role: 'user' as const, content: 'falcon' }] };
  assert.equal(await plain.guardChatInput(body), body);
  const result = { text: 'falcon', finish: 'stop' } as unknown as Parameters<Access['guardChatOutput']>[0];
  assert.equal(await plain.guardChatOutput(result), result);
  const payload = { q: 'falcon' };
  assert.equal(await plain.guard('input', payload, 'args'), payload);
  assert.equal(plain.bodyWatch('openai-chat'), undefined, 'no input guardrail: the body is not watched');

  const t = setup();
  const analyst = new Access(t.ctx, who(t, 'analyst'));
  assert.deepEqual(analyst.guardrails(['no-falcon']).map((g) => g.name), ['no-falcon', 'smaller-scan', 'small-scan', 'tie-scan', 'lenient-scan', 'output-scan']);
  assert.deepEqual(t.ctx.guardrails, ['no-falcon', 'smaller-scan', 'small-scan', 'tie-scan', 'lenient-scan', 'output-scan']);
  // Each step applies them, in its direction.
  await assert.rejects(async () => analyst.guardChatInput({ model: 'chat', messages: [{ role: 'user', content: 'about falcon' }] }), (e: unknown) => e instanceof AamError && e.code === 'guardrail_blocked');
  await assert.rejects(async () => analyst.guardChatOutput({ text: 'a falcon', finish: 'stop' } as unknown as Parameters<Access['guardChatOutput']>[0]), (e: unknown) => e instanceof AamError && e.code === 'guardrail_blocked');
  await assert.rejects(analyst.guard('output', { r: 'falcon' }, 'result'), (e: unknown) => e instanceof AamError && e.code === 'guardrail_blocked');
  assert.deepEqual(await analyst.guard('input', { r: 'fine' }, 'args', 'chat'), { r: 'fine' });
  // Evidence of the blocks names this request.
  assert.ok(t.events.length >= 3);
  assert.ok(t.events.every((e) => e.type === 'guardrail' && e.request_id === 'req-ctx'));
});

test('before its guardrails are resolved a request runs none; a tool payload is checked against JSON Schema guardrails, chat content is not', async () => {
  const s = setup();
  const fresh = new Access(s.ctx, who(s, 'analyst'));
  const v = { q: 'falcon' };
  assert.equal(await fresh.guard('input', v, 'args'), v);
  const body = { model: 'chat', messages: [{ role: 'user' as const, content: 'falcon' }] };
  assert.equal(await fresh.guardChatInput(body), body);
  const t = setup();
  const tooler = new Access(t.ctx, who(t, 'tooler'));
  tooler.guardrails();
  await assert.rejects(tooler.guard('input', { x: 1 }, 'args'), (e: unknown) => e instanceof AamError && e.code === 'guardrail_blocked');
  assert.deepEqual(await tooler.guard('input', { id: 7 }, 'args'), { id: 7 });
  assert.deepEqual(await tooler.guard('input', { x: 1 }, 'message', 'chat'), { x: 1 });
});

test('a budget reservation is settled at the real cost, or given back, through the context', () => {
  const s = setup();
  const a = new Access(s.ctx, who(s, 'spender'));
  const ledger = (s.rt.limiter as EmbeddedLimiter).ledger;
  const adm = a.admit(10, 0.5);
  assert.ok(!(adm instanceof Promise));
  assert.deepEqual(ledger.usage('agent:spender'), { daily: 0, monthly: 0, reserved: 0.5 });
  a.settle(adm, 0.2, 10);
  assert.deepEqual(ledger.usage('agent:spender'), { daily: 0.2, monthly: 0.2, reserved: 0 });
  const again = a.admit(10, 0.5);
  assert.ok(!(again instanceof Promise));
  a.release(again);
  assert.deepEqual(ledger.usage('agent:spender'), { daily: 0.2, monthly: 0.2, reserved: 0 });
});

test('a chat body is watched against the smallest scan budget of a blocking input guardrail, and refused past it', () => {
  const s = setup();
  const a = new Access(s.ctx, who(s, 'analyst'));
  const w = a.bodyWatch('openai-chat');
  assert.ok(w);
  // smaller-scan (30): not no-falcon (1 MiB), small-scan (40), tie-scan (30, later in the policy),
  // lenient-scan (10, lets unscanned text pass), output-scan (5, output).
  assert.equal(w.from, 30);
  const chunk = (text: string) => Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: text }] }));
  assert.equal(w.feed(chunk('x'.repeat(30))), undefined);
  const e = a.bodyWatch('openai-chat')!.feed(chunk('x'.repeat(31)));
  assert.ok(e instanceof AamError);
  assert.equal(e.code, 'guardrail_blocked');
  assert.match(e.message, /smaller-scan/);
  const ev = s.events.at(-1)!;
  assert.deepEqual([ev.type, ev.request_id, ev.guardrail.verdict, ev.guardrail.findings], ['guardrail', 'req-ctx', 'block', [{ guardrail: 'smaller-scan', category: 'scan_limit', count: 1 }]]);
});

test('evidence written through the context names the request and its trace, filtered by the caller\'s audit.record', () => {
  const s = setup({ headers: { traceparent: `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01` } });
  const a = new Access(s.ctx, who(s, 'plain'));
  a.record({ type: 'model_call', request_id: 'req-ctx', identity: { agent: 'plain' }, policy: { name: 'plain-models' }, model: { route: 'chat', provider: 'demo', model: 'demo-1' } } as never);
  assert.equal(s.events.length, 1);
  assert.equal(s.events[0].trace_id, 'ab'.repeat(16));
  assert.equal(s.events[0].model, undefined, 'audit.record keeps identity and policy only');
  assert.deepEqual(s.events[0].policy, { name: 'plain-models' });
  // Stream findings: one guardrail event with the block.
  const t = setup();
  const b = new Access(t.ctx, who(t, 'analyst'));
  const g = { findings: () => [{ guardrail: 'no-falcon', category: 'keyword' as const, count: 2 }], push: () => ({ events: [] }), end: () => ({ events: [] }) };
  b.streamFindings(g, 'no-falcon');
  assert.deepEqual([t.events[0].type, t.events[0].request_id, t.events[0].guardrail.verdict, t.events[0].guardrail.where], ['guardrail', 'req-ctx', 'block', 'stream']);
  // Limits go through the caller's policies (no limits here: admitted, nothing to settle).
  const adm = b.admit(10, 0.01);
  assert.ok(!(adm instanceof Promise));
  b.settle(adm, 0.01, 10);
  b.release(adm);
});

test('a caller seen before still holds only as the same agent and workload with a valid key', () => {
  const s = setup();
  const then = who(s, 'analyst');
  assert.deepEqual(currentCaller(s.rt, then), { identity: then });
  assert.equal((currentCaller(s.rt, then) as { identity: Identity }).identity, then, 'unchanged: the same identity');
  // The agent's record was rebuilt by a reload: the caller gets the current one.
  const older = { ...then, agent: { ...then.agent } };
  const now = currentCaller(s.rt, older) as { identity: Identity };
  assert.equal(now.identity.agent, s.policies.agents.get('analyst'));
  assert.equal(now.identity.keyId, 'key-analyst');
  // Removed, or the name now belongs to another workload.
  assert.deepEqual(currentCaller(s.rt, { ...then, agent: { ...then.agent, name: 'gone' } }), { code: 'policy_denied', gone: 'the agent gone is no longer in the config under the same workload' });
  assert.deepEqual(currentCaller(s.rt, { ...then, agent: { ...then.agent, spiffeId: 'spiffe://prod/agent/other' } }), { code: 'policy_denied', gone: 'the agent analyst is no longer in the config under the same workload' });
  // An unregistered caller (named by SPIFFE ID) stays as it was.
  const anon: Identity = { agent: { name: '', spiffeId: 'spiffe://ext/x', trustDomain: 'ext', labels: {} }, method: 'jwt_svid' };
  assert.deepEqual(currentCaller(s.rt, anon), { identity: anon });
  // Its key was revoked or rotated past its grace.
  s.generationProblems.set('key-analyst', 'revoked');
  assert.deepEqual(currentCaller(s.rt, then), { code: 'invalid_api_key', gone: 'the API key it authenticated with is no longer valid (revoked)', detail: 'revoked' });
  const noKey = { ...then, keyId: undefined, keyGeneration: undefined };
  assert.deepEqual(currentCaller(s.rt, noKey), { identity: noKey }, 'no key: nothing to check');
});

test('opening access identifies the caller; a request serving an A2A call is linked to it in the evidence, and a borrowed delegation is refused', async () => {
  const plain = setup({ key: { agent: 'plain', id: 'k1' } });
  const a = await openAccess(plain.ctx);
  assert.equal(a.identity.agent.name, 'plain');
  assert.equal(a.delegation, undefined);
  assert.deepEqual(plain.events, [], 'no delegation: no event');

  const d = delegate(undefined, who(plain, 'analyst'), 'plain', 'req_parent', { traceId: () => 'c0ffee' });
  const serving = setup({ key: { agent: 'plain', id: 'k1' }, headers: { 'x-aam-delegation': '' } });
  (serving.ctx.req.headers as Record<string, string>)['x-aam-delegation'] = encodeDelegation(serving.rt, d);
  // Not issued by a call that runs (never started, or ended): refused, nothing recorded.
  await assert.rejects(async () => openAccess(serving.ctx), (e: unknown) => e instanceof AamError && e.status === 401 && /A2A call that has ended/.test(e.message));
  const call = callStarted(serving.rt, d);
  const b = await openAccess(serving.ctx);
  assert.deepEqual(b.delegation, d);
  assert.equal(serving.events.length, 1);
  const ev = serving.events[0];
  assert.deepEqual([ev.type, ev.request_id, ev.identity.agent, ev.identity.key_id], ['delegation', 'req-ctx', 'plain', 'k1']);
  assert.deepEqual(ev.delegation, { id: 'dlg_c0ffee', hop: 1, parent_request_id: 'req_parent', chain: ['analyst', 'plain'] });
  assert.match(ev.trace_id, /^[0-9a-f]{32}$/);
  // The activity table notes the delegation for the console.
  assert.ok((await serving.rt.identitySeen.table()).get('plain')?.delegation, 'the console shows the agent serving a delegation');
  assert.equal((await plain.rt.identitySeen.table()).get('plain')?.delegation, undefined);
  // The call answers but left task t1 running at the callee (a `working` task): honoured while it is.
  callEnded(serving.rt, call, 'plain', ['t1']);
  assert.deepEqual((await openAccess(serving.ctx)).delegation, d, 'a task the call left running holds its delegation');
  taskEnded(serving.rt, 'other', 't1');
  assert.deepEqual((await openAccess(serving.ctx)).delegation, d, 'another callee\'s task t1 is not this one');
  // The task is seen terminal: the same header, replayed, is refused.
  taskEnded(serving.rt, 'plain', 't1');
  const linked = serving.events.length;
  await assert.rejects(async () => openAccess(serving.ctx), (e: unknown) => e instanceof AamError && e.status === 401 && e.code === 'invalid_delegation' && /has ended/.test(e.message));
  assert.equal(serving.events.length, linked, 'a refused replay records no link');
  // A call that left no task running: refused as soon as it has ended.
  callEnded(serving.rt, callStarted(serving.rt, d), 'plain', null);
  await assert.rejects(async () => openAccess(serving.ctx), (e: unknown) => e instanceof AamError && e.status === 401 && /has ended/.test(e.message));
  // Held by a task, but past the delegation's life (its exp is the cap): refused (as expired) however the task stands.
  const short = { ...d, exp: Date.now() + 30 };
  callEnded(serving.rt, callStarted(serving.rt, short), 'plain', ['t2']);
  (serving.ctx.req.headers as Record<string, string>)['x-aam-delegation'] = encodeDelegation(serving.rt, short);
  await new Promise((r) => setTimeout(r, 40));
  await assert.rejects(async () => openAccess(serving.ctx), (e: unknown) => e instanceof AamError && e.status === 401);
  (serving.ctx.req.headers as Record<string, string>)['x-aam-delegation'] = encodeDelegation(serving.rt, d);
  callStarted(serving.rt, d);

  // A fleet replica that is not running the call asks Redis; Redis down: 503 store_unavailable, never honoured unchecked.
  const redis = connectRedis('redis://127.0.0.1:1', 'aam-test-down');
  try {
    const fleet = setup({ key: { agent: 'plain', id: 'k1' }, headers: { 'x-aam-delegation': encodeDelegation(serving.rt, d) } });
    Object.assign(fleet.rt, { liveCalls: redisLiveCalls(redis, 'aam:{test}:') });
    await assert.rejects(async () => openAccess(fleet.ctx), (e: unknown) => e instanceof AamError && e.status === 503 && e.code === 'store_unavailable' && /cannot tell whether the A2A call that issued x-aam-delegation is still live/.test(e.message));
    // The refusal is evidence under the caller's identity (fleetedges), never a link to the call.
    // (its outcome is left out here by the policy's audit.record selection)
    assert.deepEqual(fleet.events.map((e) => [e.type, e.identity?.agent, e.request_id]), [['delegation', 'plain', 'req-ctx']]);
  } finally {
    redis.disconnect();
  }

  // The same header presented by another agent: refused before anything is recorded.
  const borrowed = setup({ key: { agent: 'analyst', id: 'k2' } });
  (borrowed.ctx.req.headers as Record<string, string>)['x-aam-delegation'] = encodeDelegation(borrowed.rt, d);
  await assert.rejects(async () => openAccess(borrowed.ctx), (e: unknown) => e instanceof AamError && e.status === 403 && e.code === 'invalid_delegation');
  assert.deepEqual(borrowed.events.filter((e) => e.type === 'delegation'), []);
});

test('this process\'s live calls: one is live while it runs, up to its ttl; after its answer only while a task it left running is not terminal, up to the same ttl', () => {
  let t = 1_000;
  const live = memoryLiveCalls(() => t);
  live.begin('run', 100);
  assert.equal(live.live('run'), true);
  t = 1_100;
  assert.equal(live.live('run'), false, 'past its ttl, though it still runs');
  live.end('run', null);
  t = 1_000;
  live.begin('done', 100);
  live.end('done', null);
  assert.equal(live.live('done'), false, 'ended with no task running');
  live.end('done', ['late']);
  assert.equal(live.live('done'), false, 'an end after its end holds nothing');
  live.begin('held', 100);
  live.end('held', ['x', 'y']);
  live.taskEnded('x');
  assert.equal(live.live('held'), true, 'y still holds it');
  live.taskEnded('y');
  assert.equal(live.live('held'), false);
  live.begin('capped', 100);
  live.end('capped', ['z']);
  t = 1_100;
  assert.equal(live.live('capped'), false, 'a running task holds it no longer than its ttl');
  assert.equal(live.live('never'), false);
});

test('opening access for a JWT-SVID caller (identified asynchronously) gives the same access context, with that caller', async () => {
  const ANALYST = 'spiffe://prod/agent/analyst';
  const issuer = await openIssuer(tempDir('aam-ctx-jwt-'));
  const s = setup();
  const rt = s.rt as unknown as Record<string, unknown>;
  rt.jwt = createJwtVerifier({ issuer, isRegisteredAgent: (id) => id === ANALYST, trustDomains: [], audience: ['aam'] });
  rt.isTokenRevoked = () => false;
  (s.ctx.req.headers as Record<string, string>).authorization = `Bearer ${await issuer.mint({ spiffeId: ANALYST, audience: 'aam', ttlSeconds: 300 })}`;
  const pending = openAccess(s.ctx);
  assert.ok(pending instanceof Promise, 'a JWT is verified asynchronously');
  const a = await pending;
  assert.ok(a instanceof Access);
  assert.deepEqual([a.identity.agent.name, a.identity.method, s.ctx.access === a], ['analyst', 'jwt_svid', true]);
  assert.equal(a.authorizeModel('chat').effect, 'allow');
});
