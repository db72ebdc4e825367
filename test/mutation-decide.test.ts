// May this identity do this (src/access/decide.ts), as the caller and the audit trail see it, with
// no gateway: a real compiled config, the real embedded limiter (rate counters, budget ledger) and
// activity table; the audit sink, metrics and span are recorders (the interfaces decide.ts writes
// to). A mutant it kills costs about a second; test/mutation-identity.test.ts checks the same
// answers through a real gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authorize, admit, recordDecision, recordEvidence, noteActivity, policyEvidence, settle, release, rateEntriesOf, type Admission } from '../src/access/decide.ts';
import { AamError, EvidenceUnavailable } from '../src/access/errors.ts';
import type { Ctx } from '../src/access/request.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, setFor, type CompiledPolicies } from '../src/policy/compile.ts';
import { BudgetLedger, EmbeddedLimiter, RateLimiter } from '../src/policy/limits.ts';
import { IdentitySeen, type SeenRow } from '../src/identity/seen.ts';
import { IdPool } from '../src/observability/otlp-context.ts';
import { StoreUnavailable, type AdmitRequest, type AdmitResult, type Limiter } from '../src/store/types.ts';
import type { Identity } from '../src/identity/types.ts';
import type { AccessRequest } from '../src/policy/types.ts';
import { doc, yaml } from './helpers/config-docs.ts';

const policies: CompiledPolicies = compilePolicies(parseConfigTexts([{ file: 'aam.yaml', text: yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
  doc('Agent', 'quiet', { workload: 'spiffe://prod/agent/quiet', team: 'ops', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
  doc('Agent', 'chatty', { workload: 'spiffe://prod/agent/chatty', team: 'ops' }),
  doc('Agent', 'spender', { workload: 'spiffe://prod/agent/spender', team: 'ops' }),
  doc('AgentPolicy', 'analyst-models', { identity: { agent: 'analyst' }, models: { allow: ['chat', 'big'] }, agents: [{ agent: 'quiet', skills: ['sum'] }] }),
  // Shadow mode: decided and recorded, not enforced.
  doc('AgentPolicy', 'finance-tighten', { mode: 'audit', identity: { team: 'finance' }, models: { deny: ['big'] } }),
  doc('AgentPolicy', 'quiet-models', { identity: { agent: 'quiet' }, models: { allow: ['chat'] }, audit: { record: ['identity', 'policy'] } }),
  doc('AgentPolicy', 'chatty-rate', { identity: { agent: 'chatty' }, models: { allow: ['chat'], rate: { rpm: 2 } } }),
  doc('AgentPolicy', 'chatty-tokens', { identity: { agent: 'chatty' }, models: { allow: ['chat'], rate: { tpm: 1_000_000 } } }),
  doc('AgentPolicy', 'spender-budget', { identity: { agent: 'spender' }, models: { allow: ['chat'], budget: { daily_usd: 1 } } }),
) }]), 'v-decide');

type Event = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** What decide.ts writes to: the trail, the decision counters, the span, the activity table. */
interface Seen { events: Event[]; decisions: string[]; limited: string[]; span: Record<string, unknown>; rows: SeenRow[] }

function runtime(opts: { limiter?: Limiter; audit?: boolean; room?: boolean; metrics?: boolean; fleet?: boolean } = {}) {
  const seen: Seen = { events: [], decisions: [], limited: [], span: {}, rows: [] };
  const rt = {
    audit: opts.audit === false ? null : { record: (ev: Event) => { seen.events.push(ev); } },
    auditHasRoom: () => opts.room ?? true,
    evidenceRefusal: (m: string) => new EvidenceUnavailable(m, { store: opts.fleet }),
    metrics: opts.metrics === false ? null : { decision: (e: string, a: string) => seen.decisions.push(`${e} ${a}`), limited: (c: string, a: string) => seen.limited.push(`${c} ${a}`), modelCall: () => {} },
    limiter: opts.limiter ?? new EmbeddedLimiter(new BudgetLedger(), new RateLimiter()),
    identitySeen: new IdentitySeen({ write: async (r) => { seen.rows.push(...r); }, read: async () => seen.rows }),
    ids: new IdPool(),
  };
  return { rt, seen };
}

function context(r: ReturnType<typeof runtime>, headers: Record<string, string> = {}, span = false): Ctx {
  const ctx = {
    req: { headers }, rt: r.rt, cfg: { policies }, requestId: 'req-1',
    clientRequestId: headers['x-request-id'],
    span: span ? { context: { traceId: 'a'.repeat(32) }, setAttributes: (a: Record<string, unknown>) => Object.assign(r.seen.span, a) } : undefined,
  };
  return ctx as unknown as Ctx;
}

const who = (name: string, keyId?: string): Identity => ({ agent: policies.agents.get(name)!, method: keyId ? 'virtual_key' : 'jwt_svid', keyId });
const model = (id: Identity, route: string): AccessRequest => ({ kind: 'model', agent: id.agent, model: route });

function refused(fn: () => unknown): AamError {
  try { fn(); } catch (e) { assert.ok(e instanceof AamError, String(e)); return e; }
  assert.fail('expected a refusal');
}

test('an allow is carried, counted and on the span, and recorded once with the outcome that ended the request', () => {
  const r = runtime();
  const ctx = context(r, { 'x-request-id': 'mine-1' }, true);
  const id = who('quiet', 'key_1');
  const d = authorize(ctx, id, model(id, 'chat'), setFor(id.agent, policies));
  assert.deepEqual([d.effect, d.policy, d.configVersion], ['allow', 'quiet-models', 'v-decide']);
  assert.deepEqual(r.seen.span, { 'aam.policy.name': 'quiet-models', 'aam.policy.decision': 'allow', 'aam.policy.rule': String(d.rule), 'aam.policy.reason': d.reason, 'aam.config.version': 'v-decide' });
  assert.deepEqual(r.seen.decisions, ['allow quiet']);
  assert.equal(r.seen.events.length, 0, 'an allow waits for its outcome');
  recordDecision(ctx, 200);
  recordDecision(ctx, 500);
  assert.equal(r.seen.events.length, 1, 'recorded once');
  // quiet's policy records identity and policy only: no route, no outcome.
  assert.deepEqual(r.seen.events[0], {
    type: 'decision', request_id: 'req-1', trace_id: 'a'.repeat(32), client_request_id: 'mine-1',
    identity: { spiffe_id: 'spiffe://prod/agent/quiet', agent: 'quiet', owner: undefined, team: 'ops', environment: undefined, deployment: undefined, method: 'virtual_key', key_id: 'key_1', token_id: undefined },
    policy: { name: 'quiet-models', version: 'v-decide', rule: d.rule, decision: 'allow', reason: d.reason },
    model: undefined,
  });
  assert.equal(recordDecision(context(r), 200), undefined, 'no decision, nothing to record');
  // An A2A call comes with the caller's policy set too: decided by its agents rules, not as a model.
  const analyst = who('analyst');
  const call = authorize(context(r), analyst, { kind: 'agent', agent: analyst.agent, callee: 'quiet', skill: 'sum' }, setFor(analyst.agent, policies));
  assert.deepEqual([call.effect, call.policy, call.rulePath], ['allow', 'analyst-models', 'agents[0]']);
  assert.equal(r.seen.events.length, 1);
});

test('a denial is a 403 with the policy\'s reason, and its evidence names the route, action or callee with the outcome class', () => {
  const r = runtime();
  const analyst = who('analyst');
  const cases: Array<[AccessRequest, number, Event]> = [
    [model(who('quiet'), 'big'), 403, { model: { route: 'big' } }],
    [{ kind: 'tool', agent: analyst.agent, resource: 'files.read', action: 'read', args: {} }, 500, { tool: { resource: 'files.read', action: 'read' } }],
    [{ kind: 'agent', agent: analyst.agent, callee: 'quiet', skill: 'erase' }, 204, { a2a: { agent: 'quiet', skill: 'erase' } }],
  ];
  for (const [req, status, action] of cases) {
    const ctx = context(r);
    const id: Identity = { agent: req.agent, method: 'jwt_svid' };
    // The A2A plane passes the caller's policy set with its request, as the model plane does.
    const e = refused(() => authorize(ctx, id, req, req.kind === 'agent' ? setFor(req.agent, policies) : undefined));
    assert.deepEqual([e.status, e.code], [403, 'policy_denied']);
    assert.equal(e.message, ctx.decision?.d.reason);
    assert.match(e.message, /\S/);
    r.seen.events.length = 0;
    recordDecision(ctx, status, 'why');
    const [ev] = r.seen.events;
    assert.deepEqual([ev.policy.decision, ev.policy.reason], ['deny', e.message]);
    if (req.agent.name === 'quiet') { assert.deepEqual([ev.model, ev.outcome], [undefined, undefined]); continue; }
    assert.deepEqual({ ...action, outcome: ev.outcome }, { ...action, outcome: { status, error_class: status >= 500 ? 'server' : undefined, error: 'why' } });
    assert.deepEqual(ev.tool ?? ev.a2a, action.tool ?? action.a2a);
    assert.match(ev.trace_id, /^[0-9a-f]{32}$/, 'every event names a trace, with or without a span');
  }
  const ctx = context(r);
  refused(() => authorize(ctx, who('analyst'), { kind: 'tool', agent: analyst.agent, resource: 'x', action: 'y', args: {} }));
  recordDecision(ctx, 400);
  assert.equal(r.seen.events.at(-1)?.outcome.error_class, 'client');
  assert.deepEqual(r.seen.decisions, ['deny quiet', 'deny analyst', 'deny analyst', 'deny analyst']);
});

test('shadow mode: an allow that a mode: audit policy would deny carries would_deny and is counted; a shadow allow adds nothing', () => {
  const r = runtime();
  const id = who('analyst');
  const ctx = context(r);
  const d = authorize(ctx, id, model(id, 'big'));
  assert.equal(d.effect, 'allow');
  assert.deepEqual(d.wouldDeny && { ...d.wouldDeny, reason: '' }, { policy: 'finance-tighten', rule: 0, rulePath: 'models.deny[0]', reason: '' });
  assert.match(d.wouldDeny?.reason ?? '', /finance-tighten.*"big"/);
  assert.deepEqual(policyEvidence(d).would_deny, { policy: 'finance-tighten', rule: 'models.deny[0]', reason: d.wouldDeny?.reason });
  assert.deepEqual(policyEvidence({ ...d, wouldDeny: { policy: 'p', rule: 3, reason: 'r' } }).would_deny, { policy: 'p', rule: 3, reason: 'r' });
  const plain = authorize(context(r), id, model(id, 'chat'));
  assert.equal(plain.wouldDeny, undefined);
  assert.equal(policyEvidence(plain).would_deny, undefined);
  // An enforced denial is not decided again.
  refused(() => authorize(context(r), who('quiet'), model(who('quiet'), 'big')));
  assert.deepEqual(r.seen.decisions, ['would_deny analyst', 'allow analyst', 'allow analyst', 'deny quiet']);
});

test('with the audit queue full an allowed request is refused (503, retry-after 5); with no audit trail (or metrics) at all it goes on', () => {
  const id = who('analyst');
  const e = refused(() => authorize(context(runtime({ room: false })), id, model(id, 'chat')));
  assert.deepEqual([e.status, e.code, e.headers], [503, 'unavailable', { 'retry-after': '5' }]);
  assert.match(e.message, /audit trail cannot record/);
  // In fleet mode the trail is PostgreSQL: the contract's store_unavailable.
  assert.equal(refused(() => authorize(context(runtime({ room: false, fleet: true })), id, model(id, 'chat'))).code, 'store_unavailable');
  const off = context(runtime({ audit: false, room: false, metrics: false }));
  assert.equal(authorize(off, id, model(id, 'chat')).effect, 'allow');
  assert.equal(off.decision?.recorded, false);
  assert.equal(authorize(off, id, model(id, 'big')).wouldDeny?.policy, 'finance-tighten');
  assert.equal(refused(() => authorize(off, who('quiet'), model(who('quiet'), 'big'))).code, 'policy_denied');
  recordDecision(off, 403);
  assert.equal(off.decision?.recorded, true, 'nothing to write it to, and no error');
});

test('evidence keeps what the agent\'s audit.record selects, names the caller\'s traceparent trace, and marks the agent active on its plane', async () => {
  const r = runtime();
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const ctx = context(r, { traceparent: `00-${trace}-00f067aa0ba902b7-01` });
  recordEvidence(ctx, who('quiet'), { type: 'model_call', request_id: 'req-1', model: { route: 'chat', provider: 'demo', input_tokens: 3 }, outcome: { status: 200 } });
  recordEvidence(ctx, who('analyst'), { type: 'model_call', request_id: 'req-1', model: { route: 'chat', provider: 'demo', input_tokens: 3 }, outcome: { status: 200 } });
  recordEvidence(ctx, who('analyst'), { type: 'admin', request_id: 'req-1' });
  recordEvidence(context(r), who('chatty'), { type: 'tool.outcome', request_id: 'r2', trace_id: 'b'.repeat(32) });
  const [quiet, analyst, admin, tool] = r.seen.events;
  assert.deepEqual([quiet.model, quiet.outcome, quiet.trace_id], [undefined, undefined, trace]);
  assert.deepEqual([analyst.model, analyst.outcome, analyst.trace_id], [{ route: 'chat', provider: 'demo', input_tokens: 3 }, { status: 200 }, trace]);
  assert.equal(admin.trace_id, trace, 'one trace per request');
  assert.equal(tool.trace_id, 'b'.repeat(32), 'an event\'s own trace stays');
  assert.equal('client_request_id' in quiet, false);
  const table = await r.rt.identitySeen.table();
  assert.deepEqual([...table.keys()].sort(), ['analyst', 'chatty', 'quiet'], 'admin events are no activity');
  assert.deepEqual(Object.keys(table.get('chatty')!), ['tool']);
  assert.deepEqual(Object.keys(table.get('analyst')!), ['model']);
  // Tool-plane events name their agent themselves; one without a (string) agent marks nobody.
  noteActivity(r.rt as unknown as Ctx['rt'], undefined, { type: 'tool.outcome' });
  noteActivity(r.rt as unknown as Ctx['rt'], 'quiet', { type: 'a2a.outcome' });
  noteActivity(r.rt as unknown as Ctx['rt'], 'quiet', { type: 'startup' });
  const after = await r.rt.identitySeen.table();
  assert.deepEqual([...after.keys()].sort(), ['analyst', 'chatty', 'quiet']);
  assert.deepEqual(Object.keys(after.get('quiet')!).sort(), ['a2a', 'model']);
});

test('rate limits count per agent and per virtual key; the third call in a minute is a 429 naming limit, counter and policy', () => {
  const r = runtime();
  const a = who('chatty', 'key_a');
  const b = who('chatty', 'key_b');
  assert.deepEqual(rateEntriesOf(a, 'tool:', { rpm: 2 }).map((e) => e.key), ['tool:agent:spiffe://prod/agent/chatty', 'tool:key:key_a']);
  assert.deepEqual(rateEntriesOf(who('chatty'), '', { rpm: 2 }).map((e) => e.key), ['agent:spiffe://prod/agent/chatty']);
  const first = admit(context(r), a, 10, 0) as Admission;
  assert.ok(first.ticket, 'counted');
  admit(context(r), b, 10, 0);
  const e = refused(() => admit(context(r), b, 10, 0));
  assert.deepEqual([e.status, e.code], [429, 'rate_limited']);
  const m = /^rate limit exceeded: rpm limit of 2 for agent:spiffe:\/\/prod\/agent\/chatty \(policy chatty-rate, chatty-tokens\); retry after (\d+)s$/.exec(e.message);
  assert.ok(m, e.message);
  assert.deepEqual(e.headers, { 'retry-after': m[1] });
  assert.deepEqual(r.seen.limited, ['rate_limited chatty']);
  // With no metrics sink the refusal is the same.
  const quiet = runtime({ metrics: false });
  for (let i = 0; i < 2; i++) admit(context(quiet), a, 10, 0);
  assert.equal(refused(() => admit(context(quiet), a, 10, 0)).code, 'rate_limited');
  // Nothing to count: nothing reserved, nothing asked of the store.
  const none = admit(context(runtime({ limiter: refusing(new Error('not asked')) })), who('analyst'), 10, 1);
  assert.deepEqual(none, { ticket: null });
});

test('budgets: the estimate is reserved, settled at the real cost or released; over the budget a 429 with the spend and the reset', () => {
  const r = runtime();
  const id = who('spender');
  const a = admit(context(r), id, 10, 0.4) as Admission;
  assert.ok(a.ticket);
  release(context(r), a);
  const b = admit(context(r), id, 10, 0.4) as Admission;
  settle(context(r), b, 0.7, 5);
  const c = admit(context(r), id, 10, 0.2) as Admission;
  settle(context(r), c, null, null); // unknown cost: the estimate stays charged
  const e = refused(() => admit(context(r), id, 10, 0.2));
  assert.deepEqual([e.status, e.code], [429, 'budget_exceeded']);
  // Not spent, but short of this request's estimate: says what is left and what the request may cost.
  const m = /^daily budget of \$1 for (\S+) has \$(\d+\.\d{4}) left \(incl\. in-flight reservations\), less than this request may cost \(\$(\d+\.\d{4}): .+; lower that limit, or wait: it will reset at (\S+)$/.exec(e.message);
  assert.ok(m, e.message);
  assert.equal(m[2], '0.1000', 'released 0.4, settled 0.7, kept the 0.2 estimate: 0.9 of 1 spent');
  assert.equal(m[3], '0.2000');
  const resetIn = (Date.parse(m[4]) - Date.now()) / 1000;
  assert.ok(Math.abs(Number(e.headers['retry-after']) - resetIn) <= 5, `${e.headers['retry-after']} vs ${resetIn}`);
  assert.ok(Number(e.headers['retry-after']) >= 1);
  assert.deepEqual(r.seen.limited, ['budget_exceeded spender']);
  // With no metrics sink the refusal is the same.
  const quiet = runtime({ metrics: false });
  settle(context(quiet), admit(context(quiet), id, 10, 1) as Admission, 1, 5);
  const spent = refused(() => admit(context(quiet), id, 10, 0.01));
  assert.equal(spent.code, 'budget_exceeded');
  assert.match(spent.message, /^daily budget of \$1 for \S+ is exhausted \(\$1\.0000 spent incl\. in-flight reservations\); it will reset at \S+$/);
  // A reservation with no ticket (nothing counted) settles and releases as nothing.
  settle(context(r), { ticket: null }, 5, 5);
  release(context(r), { ticket: null });
});

/** A fleet limiter that answers with `result`, or fails with `error` (at once, or as its promise). */
function refusing(error: Error, async = false, result?: AdmitResult): Limiter & { asked: AdmitRequest[] } {
  const asked: AdmitRequest[] = [];
  return {
    asked,
    admit(req) { asked.push(req); if (result) return Promise.resolve(result); if (async) return Promise.reject(error); throw error; },
    settle() {}, release() {},
  } as Limiter & { asked: AdmitRequest[] };
}

test('a fleet store that cannot answer refuses (503 store_unavailable) whether it fails at once or later; an answer passes the shared cache entry on', async () => {
  const id = who('spender', 'key_s');
  const down = new StoreUnavailable('redis', 'connect ECONNREFUSED');
  const now = refused(() => admit(context(runtime({ limiter: refusing(down) })), id, 10, 0.1));
  assert.deepEqual([now.status, now.code, now.headers], [503, 'store_unavailable', { 'retry-after': '1' }]);
  const later = await (admit(context(runtime({ limiter: refusing(down, true) })), id, 10, 0.1) as Promise<Admission>).then(() => null, (e: unknown) => e);
  assert.ok(later instanceof AamError);
  assert.deepEqual([later.status, later.code], [503, 'store_unavailable']);
  const other = new Error('bug');
  assert.equal(await (admit(context(runtime({ limiter: refusing(other, true) })), id, 10, 0.1) as Promise<Admission>).catch((e: unknown) => e), other);
  const ticket = { kind: 'ticket' };
  const entry = { body: '{}', costUsd: 0 };
  const hit = refusing(other, true, { ok: true, ticket: null, cached: entry } as unknown as AdmitResult);
  assert.deepEqual(await admit(context(runtime({ limiter: hit })), id, 10, 0.1, undefined, 'ck'), { ticket: null, cached: entry });
  assert.deepEqual(hit.asked.map((q) => [q.rates.map((x) => x.key), q.budgets.map((x) => x.key), q.amountUsd, q.tokens, q.cacheKey]), [[[], ['agent:spender'], 0.1, 10, 'ck']]);
  assert.deepEqual(await admit(context(runtime({ limiter: refusing(other, true, { ok: true, ticket } as unknown as AdmitResult) })), id, 10, 0.1), { ticket });
  assert.deepEqual(await admit(context(runtime({ limiter: refusing(other, true, { ok: true, ticket: null } as unknown as AdmitResult) })), id, 10, 0.1), { ticket: null });
});
