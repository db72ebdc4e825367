// The AuthZEN endpoints (src/policy/authzen.ts) as a client sees them, with no server: the exact
// 400 for each malformed field (saying what to send), what a decision carries, what-if subjects
// described by properties, and batch options and bounds. Written for the mutants
// `npm run mutate -- policy -- --mutate src/policy/authzen.ts` found alive.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { evaluateAuthZen, evaluateAuthZenBatch, lookupInConfig, type AuthZenResponse } from '../src/policy/authzen.ts';
import { doc, yaml } from './helpers/config-docs.ts';

const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'chat', { targets: [{ provider: 'demo', model: 'd' }] }),
  doc('Agent', 'ann', { workload: 'spiffe://prod/agent/ann', team: 'finance' }),
  doc('Agent', 'scorer', { workload: 'spiffe://prod/agent/scorer', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
  doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['chat'] }, tools: [{ resource: 'crm', actions: ['read'], args: { n: { max: 5 } } }], agents: [{ agent: 'scorer', skills: ['score'] }] }),
  doc('AgentPolicy', 'who', { identity: { labels: { tier: 'gold' }, owner: 'o@example.com', deployment: 'v2', environment: 'prod' }, tools: [{ resource: 'gold', actions: ['read'], when: 'identity.trust_domain == "lab" && identity.team == "t" && identity.agent == "" && !("n" in identity.labels)' }, { resource: 'plain', actions: ['read'], when: 'identity.team == ""' }] }),
) }]), 'v-authzen');
const lookup = lookupInConfig(c);

const ANN = { type: 'agent', id: 'ann' };
const message = (r: AuthZenResponse): string => { assert.equal(r.status, 400, JSON.stringify(r.body)); return (r.body as { error: { message: string } }).error.message; };
const body = (r: AuthZenResponse) => { assert.equal(r.status, 200, JSON.stringify(r.body)); return r.body as { decision: boolean; context: Record<string, unknown> }; };

test('AuthZEN: each malformed field is a 400 that names it and says what to send', () => {
  const cases: Array<[unknown, string]> = [
    [[], 'request body must be a JSON object'],
    [{ subject: [], resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, 'subject must be a JSON object'],
    [{ subject: { id: 'ann' }, resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, 'subject.type must be a non-empty string (e.g. "agent")'],
    [{ subject: { type: 'agent', id: '' }, resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, 'subject.id must be a non-empty string (a SPIFFE ID or Agent name)'],
    [{ subject: { type: 'agent', id: 7 }, resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, 'subject.id must be a non-empty string (a SPIFFE ID or Agent name)'],
    [{ subject: { ...ANN, properties: 'x' }, resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, 'subject.properties must be a JSON object'],
    [{ subject: ANN, action: { name: 'use' } }, 'resource must be a JSON object'],
    [{ subject: ANN, resource: { id: 'chat' }, action: { name: 'use' } }, 'resource.type must be a non-empty string ("model" or a tool resource type such as "tool")'],
    [{ subject: ANN, resource: { type: 'tool', id: '' }, action: { name: 'use' } }, 'resource.id must be a non-empty string (the model route name or tool resource, e.g. salesforce.accounts)'],
    [{ subject: ANN, resource: { type: 'model', id: 'chat' } }, 'action must be a JSON object'],
    [{ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: '' } }, 'action.name must be a non-empty string (e.g. "read")'],
    [{ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: [] }, 'context must be a JSON object'],
    [{ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: { args: null } }, 'context.args must be a JSON object'],
    // An unknown subject is a deny, but only once the rest of the request is well formed.
    [{ subject: { type: 'agent', id: 'ghost' }, resource: { type: 'tool', id: 'crm' }, action: {} }, 'action.name must be a non-empty string (e.g. "read")'],
  ];
  for (const [b, msg] of cases) assert.equal(message(evaluateAuthZen(b, lookup, c)), msg, JSON.stringify(b));
  assert.deepEqual(evaluateAuthZen(null, lookup, c).body, { error: { message: 'request body must be a JSON object', type: 'invalid_request_error', code: 'invalid_request' } });
});

test('AuthZEN: a decision carries the effect, reason, policy, rule and config version', () => {
  assert.deepEqual(body(evaluateAuthZen({ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: { args: { n: 1 } } }, lookup, c)), {
    decision: true,
    context: { effect: 'allow', reason: 'policy "fin" tools[0] allows action "read" on crm', reason_admin: { en: 'policy "fin" tools[0] allows action "read" on crm' }, policy: 'fin', rule: 0, rule_path: 'tools[0]', config_version: 'v-authzen' },
  });
  assert.equal(body(evaluateAuthZen({ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: { args: { n: 9 } } }, lookup, c)).decision, false);
  assert.equal(body(evaluateAuthZen({ subject: ANN, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: {} }, lookup, c)).decision, true, 'no args: {}');
  // A model decision needs no action name; an A2A one is the callee and skill.
  assert.equal(body(evaluateAuthZen({ subject: ANN, resource: { type: 'model', id: 'chat' }, action: {} }, lookup, c)).decision, true);
  assert.equal(body(evaluateAuthZen({ subject: ANN, resource: { type: 'agent', id: 'scorer' }, action: { name: 'score' } }, lookup, c)).context.rule_path, 'agents[0]');
  assert.equal(body(evaluateAuthZen({ subject: { type: 'workload', id: 'spiffe://prod/agent/ann' }, resource: { type: 'agent', id: 'scorer' }, action: { name: 'other' } }, lookup, c)).decision, false);
  const reason = 'unknown subject "ghost": not an Agent name or SPIFFE ID known to aam; denied';
  assert.deepEqual(body(evaluateAuthZen({ subject: { type: 'agent', id: 'ghost' }, resource: { type: 'model', id: 'chat' }, action: { name: 'use' } }, lookup, c)), {
    decision: false, context: { effect: 'deny', reason, reason_admin: { en: reason }, policy: '', rule: -1, rule_path: '', config_version: 'v-authzen' },
  });
});

test('AuthZEN: a what-if subject is described by its string properties and labels only', () => {
  const ask = (properties: Record<string, unknown>, id = 'spiffe://lab/agent/new', resource = 'gold') =>
    body(evaluateAuthZen({ subject: { type: 'workload', id, properties }, resource: { type: 'tool', id: resource }, action: { name: 'read' } }, lookup, c));
  const full = { team: 't', owner: 'o@example.com', deployment: 'v2', environment: 'prod', labels: { tier: 'gold', n: 1 } };
  assert.equal(ask(full).decision, true, JSON.stringify(ask(full).context));
  // A property or label that is no string is left out, as if not given (a what-if subject has no Agent name).
  for (const k of ['team', 'owner', 'deployment', 'environment'] as const) {
    const { [k]: _, ...without } = full;
    assert.deepEqual(ask({ ...full, [k]: 5 }), ask(without), k);
    assert.equal(ask(without).decision, false, k);
  }
  assert.equal(ask(full).context.reason, 'policy "who" tools[0] allows action "read" on gold');
  assert.equal(ask({ ...full, team: 5 }).context.reason, 'policy "who" tools[0] allows action "read" on gold only when `identity.trust_domain == "lab" && identity.team == "t" && identity.agent == "" && !("n" in identity.labels)`, which is false for this request');
  assert.equal(ask({ ...full, team: 5 }, undefined, 'plain').decision, true, 'a team that is no string is no team');
  assert.equal(ask(full, undefined, 'plain').decision, false);
  assert.equal(ask({ ...full, labels: { tier: 1 } }).decision, false);
  assert.equal(ask({}).context.reason, 'no AgentPolicy applies to spiffe://lab/agent/new, so action "read" on gold is denied by default');
  assert.equal(ask({ ...full, labels: ['gold'] }).decision, false);
  assert.equal(ask(full, 'spiffe://prod/agent/new').decision, false, 'the trust domain is read from the SPIFFE ID');
  assert.match(String(ask(full, 'lab/agent/new').context.reason), /^unknown subject "lab\/agent\/new"/);
  // A lookup that fails is not the client's 400.
  assert.throws(() => evaluateAuthZen({ subject: ANN, resource: { type: 'model', id: 'chat' }, action: {} }, () => { throw new Error('store down'); }, c), /store down/);
  assert.throws(() => evaluateAuthZenBatch({ subject: ANN, evaluations: [{ resource: { type: 'model', id: 'chat' }, action: {} }] }, () => { throw new Error('store down'); }, c), /store down/);
});

test('AuthZEN batch: options, overrides, each semantic, and the bounds', () => {
  const model = (id: string) => ({ resource: { type: 'model', id }, action: { name: 'use' } });
  const decisions = (r: AuthZenResponse) => { assert.equal(r.status, 200, JSON.stringify(r.body)); return (r.body as { evaluations: Array<{ decision: boolean }> }).evaluations.map((e) => e.decision); };
  const list = [model('chat'), model('nope'), model('chat'), model('nope')];
  assert.deepEqual(decisions(evaluateAuthZenBatch({ subject: ANN, evaluations: list }, lookup, c)), [true, false, true, false]);
  assert.deepEqual(decisions(evaluateAuthZenBatch({ subject: ANN, options: {}, evaluations: list }, lookup, c)), [true, false, true, false]);
  assert.deepEqual(decisions(evaluateAuthZenBatch({ subject: ANN, options: { evaluations_semantic: 'execute_all' }, evaluations: list }, lookup, c)), [true, false, true, false]);
  assert.deepEqual(decisions(evaluateAuthZenBatch({ subject: ANN, options: { evaluations_semantic: 'deny_on_first_deny' }, evaluations: list }, lookup, c)), [true, false]);
  assert.deepEqual(decisions(evaluateAuthZenBatch({ subject: ANN, options: { evaluations_semantic: 'permit_on_first_permit' }, evaluations: [model('nope'), ...list] }, lookup, c)), [false, true]);
  // Top-level subject, resource, action and context are defaults each entry may override.
  assert.deepEqual(decisions(evaluateAuthZenBatch({
    subject: { type: 'agent', id: 'scorer' }, resource: { type: 'tool', id: 'crm' }, action: { name: 'read' }, context: { args: { n: 1 } },
    evaluations: [{}, { subject: ANN }, { subject: ANN, context: { args: { n: 9 } } }, { subject: ANN, action: { name: 'write' } }, { subject: ANN, resource: { type: 'model', id: 'chat' } }],
  }, lookup, c)), [false, true, false, false, true]);
  // No evaluations: one plain decision.
  assert.equal((evaluateAuthZenBatch({ subject: ANN, ...model('chat') }, lookup, c).body as { decision: boolean }).decision, true);
  assert.equal(decisions(evaluateAuthZenBatch({ subject: ANN, evaluations: Array.from({ length: 1000 }, () => model('chat')) }, lookup, c)).length, 1000);
  const bad: Array<[unknown, string]> = [
    [{ subject: ANN, options: 'fast', evaluations: [] }, 'options must be a JSON object'],
    [{ subject: ANN, options: { evaluations_semantic: 'first' }, evaluations: [] }, 'options.evaluations_semantic must be execute_all, deny_on_first_deny or permit_on_first_permit'],
    [{ subject: ANN, evaluations: {} }, 'evaluations must be an array'],
    [{ subject: ANN, evaluations: Array.from({ length: 1001 }, () => model('chat')) }, 'evaluations: at most 1000 entries per request'],
    [{ subject: ANN, evaluations: [model('chat'), 'x'] }, 'evaluations[1] must be a JSON object'],
    [{ subject: ANN, evaluations: [model('chat'), { resource: { type: 'model' }, action: {} }] }, 'evaluations[1]: resource.id must be a non-empty string (the model route name or tool resource, e.g. salesforce.accounts)'],
    [[], 'request body must be a JSON object'],
  ];
  for (const [b, msg] of bad) assert.equal(message(evaluateAuthZenBatch(b, lookup, c)), msg, msg);
});
