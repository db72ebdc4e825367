// Shadow mode: an AgentPolicy with mode: audit is recorded, not enforced. A request it would deny
// goes through, and its evidence carries would_deny (policy, rule, reason); the metric counts it.
// Audit-mode policies grant nothing either.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { auditOf, chat, localServer, type LocalServer } from './helpers/e2e.ts';
import { toolEvents } from './helpers/mcp.ts';
import { parseProm, sumOf } from './helpers/prom.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { decide } from '../src/policy/decide.ts';
import { explain } from '../src/policy/test-runner.ts';

const docs = (mode: 'audit' | 'enforce', crmUrl = 'http://127.0.0.1:9') => [
  doc('HttpTool', 'crm', { baseUrl: crmUrl, resource: 'crm.accounts', actions: { export: { method: 'POST', path: '/export' } } }),
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'fast', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
  doc('Agent', 'newbie', { workload: 'spiffe://prod/agent/newbie', team: 'finance' }),
  doc('AgentPolicy', 'analyst-models', { identity: { agent: 'analyst' }, models: { allow: ['fast', 'big'] }, tools: [{ resource: 'crm.accounts', actions: ['read', 'export'] }] }),
  // The rollout being watched: finance may no longer use "big" nor export accounts.
  doc('AgentPolicy', 'finance-tighten', { mode, identity: { team: 'finance' }, models: { allow: ['fast'], deny: ['big'] }, tools: [{ resource: 'crm.accounts', deny: ['export'] }] }),
];

let gw: TestGateway;
let crm: LocalServer;
let key: string;
let newbieKey: string;
before(async () => {
  crm = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"rows":3}'); });
  gw = await startTestGateway(yaml(...docs('audit', crm.url)));
  key = gw.key('analyst');
  newbieKey = gw.key('newbie');
});
after(async () => { await gw?.close(); await crm?.close(); });

test('shadow mode: a request an audit-mode policy would deny is served, with would_deny in its evidence and metrics', async () => {
  const r = await chat(gw.url, key, 'big', 'hello');
  assert.equal(r.status, 200, r.text);
  const ev = (await auditOf(gw, r.requestId)).find((e) => e.policy);
  assert.equal(ev?.policy?.decision, 'allow');
  assert.equal(ev?.policy?.name, 'analyst-models');
  assert.deepEqual(ev?.policy?.would_deny && { ...ev.policy.would_deny, reason: '' }, { policy: 'finance-tighten', rule: 'models.deny[0]', reason: '' });
  assert.match(ev?.policy?.would_deny?.reason ?? '', /finance-tighten.*denies model "big"/);

  const ok = await chat(gw.url, key, 'fast', 'hello');
  assert.equal(ok.status, 200);
  const okEv = (await auditOf(gw, ok.requestId)).find((e) => e.policy);
  assert.equal(okEv?.policy?.would_deny, undefined, 'nothing to report when the shadow agrees');

  const samples = parseProm(await (await fetch(`${gw.url}/metrics`)).text());
  assert.equal(sumOf(samples, 'aam_policy_decisions_total', { agent: 'analyst', effect: 'would_deny' }), 1);
  assert.equal(sumOf(samples, 'aam_policy_decisions_total', { agent: 'analyst', effect: 'allow' }), 2);
});

test('shadow mode: an HTTP tool call the audit-mode policy would deny is forwarded, its tool.decision carries would_deny', async () => {
  const r = await fetch(`${gw.url}/tools/crm/export`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal(await r.text(), '{"rows":3}');
  const ev = (await toolEvents(gw, { type: 'tool.decision', agent: 'analyst' })).at(-1) as { decision?: { effect: string; would_deny?: { policy: string; rule: string } } } | undefined;
  assert.equal(ev?.decision?.effect, 'allow');
  assert.deepEqual(ev?.decision?.would_deny && { policy: ev.decision.would_deny.policy, rule: ev.decision.would_deny.rule }, { policy: 'finance-tighten', rule: 'tools[0]' });
});

test('shadow mode (negative): an audit-mode policy grants nothing: an agent it alone would allow is still denied', async () => {
  const r = await chat(gw.url, newbieKey, 'fast', 'hello');
  assert.equal(r.status, 403, r.text);
  assert.match(r.text, /no AgentPolicy applies/);
});

test('shadow mode: tool decisions too; switched to enforce, the same policy denies', () => {
  const tool = (agent: ReturnType<typeof compilePolicies>['agents'] extends ReadonlyMap<string, infer A> ? A : never) => ({ kind: 'tool' as const, agent, resource: 'crm.accounts', action: 'export', args: {} });
  const audit = compilePolicies(parseConfigTexts([{ file: 'a.yaml', text: yaml(...docs('audit')) }]));
  const analyst = audit.agents.get('analyst')!;
  assert.equal(decide(tool(analyst), audit).effect, 'allow');
  assert.ok(audit.shadow);
  const s = decide(tool(analyst), audit.shadow);
  assert.equal(s.effect, 'deny');
  assert.equal(s.policy, 'finance-tighten');
  const enforced = compilePolicies(parseConfigTexts([{ file: 'e.yaml', text: yaml(...docs('enforce')) }]));
  assert.equal(enforced.shadow, undefined, 'no shadow tables without audit-mode policies');
  assert.equal(decide(tool(enforced.agents.get('analyst')!), enforced).effect, 'deny');
  assert.equal(decide({ kind: 'model', agent: enforced.agents.get('analyst')!, model: 'big' }, enforced).effect, 'deny');
});

test('policy explain shows the audit-mode policies and what they would deny (before: nothing of the shadow, so a rollout could not be checked offline)', () => {
  const audit = compilePolicies(parseConfigTexts([{ file: 'a.yaml', text: yaml(...docs('audit')) }]));
  const analyst = audit.agents.get('analyst')!;
  const lines = explain({ kind: 'model', agent: analyst, model: 'big' }, audit);
  assert.ok(lines.includes('audit-mode policies that apply (shadow: they decide, record and never block): finance-tighten (team=finance)'), lines.join('\n'));
  assert.ok(lines.includes('decision: ALLOW by policy "analyst-models" models.allow[1]'), lines.join('\n'));
  assert.match(lines.join('\n'), /\nshadow: would DENY by policy "finance-tighten" models\.deny\[0\] \(mode: audit, recorded as would_deny, not enforced\): policy "finance-tighten" models\.deny\[0\] denies model "big"/);
  const tool = explain({ kind: 'tool', agent: analyst, resource: 'crm.accounts', action: 'export', args: {} }, audit).join('\n');
  assert.match(tool, /\nshadow: would DENY by policy "finance-tighten" tools\[0\]/);
  assert.doesNotMatch(explain({ kind: 'model', agent: analyst, model: 'fast' }, audit).join('\n'), /would DENY/, 'nothing when the shadow agrees');
});
