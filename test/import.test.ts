// `aam import litellm|portkey`: realistic configs (written from the LiteLLM proxy and Portkey
// gateway docs) become aam documents that the loader accepts; what cannot map is listed with its
// path; literal secrets are never copied into the output.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { importLitellm } from '../src/config/import-litellm.ts';
import { importPortkey } from '../src/config/import-portkey.ts';
import { renderDocs, type Doc } from '../src/config/import-common.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';

const FIX = join(import.meta.dirname, 'fixtures', 'import');
const litellmText = readFileSync(join(FIX, 'litellm-config.yaml'), 'utf8');
const portkeyText = readFileSync(join(FIX, 'portkey-config.json'), 'utf8');
const dir = tempDir('aam-import-');
after(() => rmSync(dir, { recursive: true, force: true }));

const byName = (docs: Doc[], kind: string, name: string): Record<string, unknown> => {
  const d = docs.find((x) => x.kind === kind && x.name === name);
  assert.ok(d, `${kind} ${name} in ${docs.map((x) => `${x.kind}/${x.name}`).join(', ')}`);
  return d.spec;
};

test('import litellm: providers, credentials by env, load-balanced group with weights and fallbacks, retries, breaker, cache; valid', () => {
  const r = importLitellm(parseYaml(litellmText));
  const text = renderDocs(r.docs, 'test');
  const set = parseConfigTexts([{ file: 'imported.yaml', text }]);
  assert.deepEqual([...set.providers.keys()], ['openai', 'azure', 'anthropic', 'bedrock', 'vertex', 'openai-2', 'groq']);
  assert.deepEqual(byName(r.docs, 'Provider', 'azure'), { type: 'azure-openai', baseUrl: 'https://acme-eastus.openai.azure.com', azure: { apiVersion: '2024-10-21' }, credential: 'azure-api-key' });
  assert.deepEqual(byName(r.docs, 'Provider', 'bedrock'), { type: 'bedrock', bedrock: { region: 'eu-west-1' }, credential: 'aws-secret-access-key' });
  // os.environ/AWS_ACCESS_KEY_ID: the key id is read from the same variable, not a placeholder to edit.
  assert.deepEqual(byName(r.docs, 'Credential', 'aws-secret-access-key'), { env: 'AWS_SECRET_ACCESS_KEY', aws: { access_key_id_env: 'AWS_ACCESS_KEY_ID' } });
  assert.ok(!r.unmapped.some((u) => u.includes('aws_access_key_id')), r.unmapped.join('\n'));
  assert.deepEqual(byName(r.docs, 'Provider', 'vertex'), { type: 'vertex', vertex: { project: 'acme-prod', region: 'europe-west4' }, credential: 'file-vertex-sa.json' });
  assert.deepEqual(byName(r.docs, 'Credential', 'file-vertex-sa.json'), { file: '/run/secrets/vertex-sa.json', kind: 'google_service_account' });
  assert.equal(byName(r.docs, 'Provider', 'groq').models, '*', 'a wildcard route becomes the provider catalog');
  const gpt = set.models.get('gpt-4o')!.spec;
  assert.equal(gpt.strategy, 'loadbalance');
  assert.deepEqual(gpt.targets.map((t) => [t.provider, t.model, t.weight]), [['openai', 'gpt-4o', 3], ['azure', 'gpt-4o-prod', 1], ['anthropic', 'claude-sonnet-4-5', 0]]);
  assert.deepEqual(gpt.targets.map((t) => t.timeouts?.total_ms), [30000, 30000, 120000]);
  assert.deepEqual(gpt.retries, { attempts: 2 });
  assert.deepEqual(gpt.breaker, { failures: 3, cooldown_ms: 30000 });
  assert.deepEqual(gpt.cache, { mode: 'exact', ttl_seconds: 600, scope: 'agent' });
  const claude = set.models.get('claude-sonnet')!.spec;
  assert.equal(claude.strategy, undefined, 'one deployment plus fallbacks: plain fallback order');
  assert.deepEqual(claude.targets.map((t) => t.provider), ['anthropic', 'bedrock']);
  assert.deepEqual(set.models.get('claude-bedrock')!.spec.targets[0].pricing, { input_per_1m: 3, output_per_1m: 15 });
  const pol = set.policies.get('litellm-default')!.spec;
  assert.deepEqual(pol.models, { allow: ['gpt-4o', 'claude-sonnet', 'claude-bedrock', 'gemini-flash'], budget: { monthly_usd: 100 }, rate: { rpm: 60, tpm: 100000 } });
});

test('import litellm: what does not map is listed with its path; literal keys are never copied', () => {
  const r = importLitellm(parseYaml(litellmText));
  const text = renderDocs(r.docs, 'test');
  for (const secret of ['sk-local-0123456789abcdef', 'sk-1234567890abcdef']) assert.ok(!text.includes(secret), `${secret} copied`);
  const paths = r.unmapped.map((u) => u.slice(0, u.indexOf(': ')));
  for (const p of ['model_list[0].litellm_params.rpm', 'model_list[5].litellm_params.api_key', 'model_list[7].litellm_params.model', 'router_settings.context_window_fallbacks',
    'router_settings.redis_host', 'litellm_settings.success_callback', 'general_settings.master_key', 'AgentPolicy litellm-default.models.allow']) {
    assert.ok(paths.includes(p), `${p} missing from:\n${r.unmapped.join('\n')}`);
  }
  // The local server's key is its own env var, never the OpenAI one.
  assert.equal(byName(r.docs, 'Provider', 'openai-2').credential, 'vllm-internal-api-key');
  assert.match(r.unmapped.find((u) => u.startsWith('model_list[7]')) ?? '', /"cohere" has no aam equivalent/);
});

test('import litellm: fallbacks to unknown routes and odd strategies are reported, not guessed', () => {
  const r = importLitellm({
    model_list: [{ model_name: 'a', litellm_params: { model: 'openai/gpt-4o-mini', api_key: 'os.environ/K' } }],
    router_settings: { routing_strategy: 'usage-based-routing-v2', fallbacks: [{ a: ['nope'] }, { ghost: ['a'] }] },
  });
  parseConfigTexts([{ file: 'i.yaml', text: renderDocs(r.docs, 't') }]);
  assert.ok(r.unmapped.some((u) => u.startsWith('router_settings.routing_strategy: "usage-based-routing-v2"')));
  assert.ok(r.unmapped.some((u) => u.startsWith('fallbacks.a: fallback "nope"')));
  assert.ok(r.unmapped.some((u) => u.startsWith('fallbacks.ghost: not a model_name')));
  assert.deepEqual(importLitellm('nonsense').docs, []);
});

test('import portkey: nested strategies flattened in order with weights, virtual keys as stored credentials, retry, timeout, cache; valid', () => {
  const r = importPortkey(JSON.parse(portkeyText), 'support-chat');
  const text = renderDocs(r.docs, 'test');
  const set = parseConfigTexts([{ file: 'imported.yaml', text }]);
  const route = set.models.get('support-chat')!.spec;
  assert.deepEqual(route.targets.map((t) => [t.provider, t.model, t.weight]), [
    ['openai', 'gpt-4o', 0.7], ['azure-openai', 'gpt-4o', 0.3], ['anthropic', 'claude-sonnet-4-5', undefined], ['bedrock', 'anthropic.claude-3-5-sonnet-20240620-v1:0', undefined],
  ]);
  assert.equal(route.strategy, undefined);
  assert.deepEqual(route.retries, { attempts: 3 });
  assert.ok(route.targets.every((t) => t.timeouts?.total_ms === 20000));
  assert.deepEqual(route.cache, { mode: 'exact', ttl_seconds: 300 });
  assert.deepEqual(byName(r.docs, 'Credential', 'portkey-anthropic-main-91bc'), { stored: true });
  assert.deepEqual(byName(r.docs, 'Provider', 'azure-openai').azure, { apiVersion: '2024-10-21', deployment: 'gpt-4o-prod' });
  assert.deepEqual(byName(r.docs, 'Credential', 'aws-secret-access-key'), { env: 'AWS_SECRET_ACCESS_KEY', aws: { access_key_id: 'AKIAIOSFODNN7EXAMPLE' } });
  for (const secret of ['sk-proj-Zx81LITERALKEYdoNotCopy', 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', 'co-123']) assert.ok(!text.includes(secret), `${secret} copied`);
  const paths = r.unmapped.map((u) => u.slice(0, u.indexOf(': ')));
  for (const p of ['$.targets[0].strategy', '$.targets[1].override_params.max_tokens', '$.targets[3].provider', '$.strategy.on_status_codes', '$.cache.mode', '$.output_guardrails']) {
    assert.ok(paths.includes(p), `${p} missing from:\n${r.unmapped.join('\n')}`);
  }
});

test('import portkey: a single-provider config and a loadbalance config', () => {
  const single = importPortkey({ provider: 'openai', api_key: '$OPENAI_KEY', override_params: { model: 'gpt-4o-mini' } }, 'mini');
  assert.deepEqual(single.unmapped, []);
  const s = parseConfigTexts([{ file: 'i.yaml', text: renderDocs(single.docs, 't') }]);
  assert.deepEqual(s.models.get('mini')!.spec.targets, [{ provider: 'openai', model: 'gpt-4o-mini' }]);
  assert.deepEqual(s.credentials.get('openai-key')!.spec, { env: 'OPENAI_KEY' });
  const lb = importPortkey({ strategy: { mode: 'loadbalance' }, targets: [
    { provider: 'groq', api_key: '$GROQ', override_params: { model: 'llama-3.3-70b' }, weight: 2 },
    { provider: 'openai', custom_host: 'http://localhost:11434/v1', override_params: { model: 'llama3' } },
  ] }, 'llama');
  const l = parseConfigTexts([{ file: 'i.yaml', text: renderDocs(lb.docs, 't') }]).models.get('llama')!.spec;
  assert.equal(l.strategy, 'loadbalance');
  assert.deepEqual(l.targets.map((t) => t.weight), [2, 1]);
});

test('aam import (CLI): YAML on stdout or --out, unmapped items on stderr, the result validates', async () => {
  const out = join(dir, 'from-litellm.yaml');
  const r = await runCli(['import', 'litellm', join(FIX, 'litellm-config.yaml'), '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^not mapped: model_list\[0\]\.litellm_params\.rpm: /m);
  assert.match(r.stderr, /imported 20 document\(s\) .* valid/);
  const v = await runCli(['validate', out]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const p = await runCli(['import', 'portkey', join(FIX, 'portkey-config.json')]);
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /^kind: Model\nmetadata:\n {2}name: portkey-config$/m, 'the route is named after the file');
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '{ "targets": [ ');
  const b = await runCli(['import', 'portkey', bad]);
  assert.equal(b.code, 2, 'a file given that cannot be read is a usage error, as for policy test and audit verify');
  assert.match(b.stderr, /bad\.json is not a readable JSON file/);
  const missing = await runCli(['import', 'litellm', join(dir, 'no-such.yaml')]);
  assert.deepEqual([missing.code, missing.stderr], [2, `${join(dir, 'no-such.yaml')}: no such file; give the YAML file to import\n`], 'before: "error: ENOENT: no such file or directory, open …", exit 1');
});
