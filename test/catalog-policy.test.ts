// Globs in models.allow / models.deny and provider catalog names as the policy engine and the
// config loader see them (no gateway): what a glob must never match, deny beating allow, and the
// load errors for names that reach nothing. In the `policy` mutation group (scripts/mutate-groups.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts, ConfigError } from '../src/config/load.ts';
import { compilePolicies, findAgent } from '../src/policy/compile.ts';
import { decide } from '../src/policy/decide.ts';
import { explain } from '../src/policy/test-runner.ts';

// Local (not helpers/gateway.ts): this file runs per mutant, so it imports no server code.
const doc = (kind: string, name: string, spec: unknown): string =>
  `apiVersion: access.envisionai.dev/v1\nkind: ${kind}\nmetadata: { name: ${name} }\nspec: ${JSON.stringify(spec)}\n`;
const yaml = (...docs: string[]): string => docs.join('---\n');

const agentDoc = doc('Agent', 'bot', { workload: 'spiffe://test/agent/bot' });
const providers = [
  doc('Provider', 'openai', { type: 'openai', models: '*' }),
  doc('Provider', 'openai-evil', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', models: '*' }),
  doc('Provider', 'anthropic', { type: 'anthropic', models: ['claude-sonnet-4-5'] }),
];

function compiled(models: Record<string, unknown>, extra: string[] = []) {
  const set = parseConfigTexts([{ file: 't.yaml', text: yaml(...providers, agentDoc, doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models }), ...extra) }]);
  const c = compilePolicies(set);
  const agent = findAgent(c, 'bot')!;
  return (model: string) => decide({ kind: 'model', agent, model }, c);
}

function loadError(...docs: string[]): string {
  try { parseConfigTexts([{ file: 't.yaml', text: yaml(...docs) }]); } catch (e) { if (e instanceof ConfigError) return e.message; throw e; }
  assert.fail('expected a load error');
}

test('glob "openai/*" allows that provider\'s models and nothing across the provider boundary', () => {
  const d = compiled({ allow: ['openai/*'] });
  const ok = d('openai/gpt-4o');
  assert.equal(ok.effect, 'allow');
  assert.equal(ok.rulePath, 'models.allow[0]');
  for (const m of ['openai-evil/gpt-4o', 'anthropic/claude-sonnet-4-5', 'openai', 'xopenai/gpt-4o', 'openai/ft/gpt-4o', 'OPENAI/gpt-4o']) {
    assert.equal(d(m).effect, 'deny', `${m} must not be allowed by openai/*`);
  }
});

test('glob "openai/gpt-4o-*" matches only names with that prefix in the model segment', () => {
  const d = compiled({ allow: ['openai/gpt-4o-*'] });
  assert.equal(d('openai/gpt-4o-mini').effect, 'allow');
  for (const m of ['openai/gpt-4o', 'openai/gpt-4.1', 'openai/gpt-4o-mini/x', 'openai-evil/gpt-4o-mini']) assert.equal(d(m).effect, 'deny', m);
});

test('deny beats allow for globs, within one policy and across policies; default deny is unchanged', () => {
  const d = compiled({ allow: ['openai/*'], deny: ['openai/gpt-4o-*'] });
  assert.equal(d('openai/gpt-4o').effect, 'allow');
  const denied = d('openai/gpt-4o-mini');
  assert.equal(denied.effect, 'deny');
  assert.equal(denied.rulePath, 'models.deny[0]');
  assert.match(denied.reason, /policy "p" models\.deny\[0\] denies model "openai\/gpt-4o-mini"/);
  // Another policy's glob deny wins over this policy's exact allow.
  const other = doc('AgentPolicy', 'q', { identity: { agent: 'bot' }, models: { deny: ['anthropic/*'] } });
  const d2 = compiled({ allow: ['anthropic/claude-sonnet-4-5'] }, [other]);
  assert.equal(d2('anthropic/claude-sonnet-4-5').effect, 'deny');
  assert.equal(d2('anthropic/claude-sonnet-4-5').policy, 'q');
  // Nothing allows it: default deny.
  assert.equal(compiled({ allow: ['anthropic/*'] })('openai/gpt-4o').effect, 'deny');
});

test('load: "/" only in Model names; allow entries must name a route, a catalog model or a glob that reaches one', () => {
  const pol = (models: unknown) => doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models });
  assert.match(loadError(doc('Agent', 'a/b', { workload: 'spiffe://test/agent/x' })), /metadata\.name: .*"\/" only in Model names/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['anthropic/claude-opus-4-1'] })), /not in the catalog of Provider "anthropic"/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['nothing/*'] })), /matches no Model route and no provider catalog/);
  assert.match(loadError(...providers, agentDoc, pol({ allow: ['*/gpt-4o'] })), /provider part must be literal/);
  assert.match(loadError(doc('Provider', 'x', { type: 'openai', models: ['gpt-*'] })), /no globs in a list/);
  // And the valid forms load: a Model named with "/", catalog literals, globs over routes and catalogs.
  parseConfigTexts([{ file: 't.yaml', text: yaml(...providers, agentDoc, doc('Model', 'team/gpt', { targets: [{ provider: 'openai', model: 'gpt-4o' }] }),
    pol({ allow: ['team/*', 'openai/gpt-4o', 'openai-evil/**', 'anthropic/claude-sonnet-4-5'], deny: ['openai/o3'] })) }]);
});

test('a glob in a budgeted policy makes the load check that every matched route has a price', () => {
  const msg = loadError(
    doc('Provider', 'local', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1' }),
    doc('Model', 'team/llama', { targets: [{ provider: 'local', model: 'llama-3' }] }),
    agentDoc, doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['team/*'], budget: { daily_usd: 5 } } }),
  );
  assert.match(msg, /no price for model "llama-3".*AgentPolicy "p" puts a budget on route "team\/llama"/);
});

test('a glob deny hides catalog models from the listing; explain names the glob that decided', () => {
  const set = parseConfigTexts([{ file: 't.yaml', text: yaml(...providers, agentDoc, doc('AgentPolicy', 'p', { identity: { agent: 'bot' }, models: { allow: ['openai/*'], deny: ['openai/gpt-4o-*'] } })) }]);
  const c = compilePolicies(set);
  const listed = c.sets.get('bot')!.allowedModels;
  assert.ok(listed.includes('openai/gpt-4o') && listed.includes('openai/gpt-5'), listed.join(', '));
  assert.ok(!listed.includes('openai/gpt-4o-mini'), 'denied by the glob');
  assert.ok(!listed.some((m) => m.startsWith('openai-evil/') || m.startsWith('anthropic/')), listed.join(', '));
  const lines = explain({ kind: 'model', agent: findAgent(c, 'bot')!, model: 'openai/gpt-4o-mini' }, c).join('\n');
  assert.match(lines, /models\.deny\[0\] \(glob "openai\/gpt-4o-\*"\): denies/);
  assert.match(lines, /decision: DENY by policy "p" models\.deny\[0\]/);
});
