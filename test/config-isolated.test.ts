// The config is validated in a short-lived process (src/config/isolated.ts) so the gateway
// never loads yaml and zod: what comes back must be exactly what the in-process loader
// gives, errors included (same issues, same line numbers, still a ConfigError).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, parseConfigTexts } from '../src/config/load.ts';
import { ConfigError as IsolatedConfigError } from '../src/config/errors.ts';
import { loadConfigHere, parseConfigInBackground, parseConfigIsolated } from '../src/config/isolated.ts';
import { configDigest, readConfigSources } from '../src/config/sources.ts';
import { doc, yaml } from './helpers/gateway.ts';
import { runCli } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));

test('a config validated in its own process is the same ConfigSet as one validated here (demo config, every kind)', async () => {
  const demo = join(REPO, 'aam.yaml');
  const here = parseConfigTexts([{ file: demo, text: readFileSync(demo, 'utf8') }]);
  assert.deepEqual(parseConfigIsolated(readConfigSources(demo)), here);
  assert.deepEqual(await parseConfigInBackground(readConfigSources(demo)), here);
  assert.deepEqual(loadConfigHere(demo), here, 'the CLI\'s loader');
  const every = [{
    file: 'every.yaml',
    text: yaml(
      doc('Credential', 'k', { env: 'SOME_KEY', inject: { header: 'x-api-key', prefix: '' } }),
      doc('Provider', 'p', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', credential: 'k', models: ['m1'] }),
      doc('Model', 'r', { targets: [{ provider: 'p', model: 'm1', pricing: { input_per_1m: 1, output_per_1m: 2 } }] }),
      doc('Agent', 'a', { workload: 'spiffe://t/agent/a', owner: 'o@example.com', team: 't', environment: 'dev' }),
      doc('AgentPolicy', 'pol', { identity: { team: 't' }, models: { allow: ['r'], budget: { daily_usd: 5 } }, tools: [{ resource: 'h', actions: ['get'] }] }),
      doc('HttpTool', 'h', { baseUrl: 'http://127.0.0.1:1', resource: 'h', actions: { get: { method: 'GET', path: '/x' } } }),
      doc('Guardrail', 'g', { on: ['input'], action: 'block', regex: ['secret-[0-9]+'] }),
    ),
  }];
  assert.deepEqual(parseConfigIsolated(every), parseConfigTexts(every));
});

test('a config error from the validating process is a ConfigError with the same issues and line numbers', async () => {
  const bad = [{ file: 'bad.yaml', text: yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'nope', model: 'x' }] }), doc('Provider', 'q', { type: 'demo', colour: 'red' })) }];
  const here = (() => { try { parseConfigTexts(bad); } catch (e) { return e; } })() as ConfigError;
  const there = (() => { try { parseConfigIsolated(bad); } catch (e) { return e; } })() as ConfigError;
  assert.ok(there instanceof ConfigError && there instanceof IsolatedConfigError, 'one ConfigError class on both sides');
  assert.deepEqual(there.issues, here.issues);
  assert.match(there.message, /bad\.yaml:\d+ \(document 2\): spec\.targets\[0\]\.provider: unknown Provider "nope"/);
  assert.match(there.message, /unknown field "colour"/);
  const async = await parseConfigInBackground(bad).then(() => null, (e: unknown) => e) as ConfigError;
  assert.ok(async instanceof ConfigError);
  assert.deepEqual(async.issues, here.issues);
  const yamlError = [{ file: 'y.yaml', text: 'kind: [unclosed\n' }];
  assert.throws(() => parseConfigIsolated(yamlError), (e: unknown) => e instanceof ConfigError && /YAML syntax/.test(e.message));
});

test('the digest a reload compares is the loader\'s digest (an unchanged text never starts the process)', () => {
  const demo = join(REPO, 'aam.yaml');
  const sources = [{ file: demo, text: readFileSync(demo, 'utf8') }];
  assert.equal(configDigest(sources), parseConfigIsolated(sources).digest);
});

test('aam serve validates while its modules load: a bad config still refuses the start, naming the problem, before anything listens', async () => {
  const dir = tempDir('aam-serve-bad-');
  const file = join(dir, 'aam.yaml');
  writeFileSync(file, yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'nope', model: 'x' }] })));
  const r = await runCli(['serve', '--config', file, '--port', '0', '--data', join(dir, 'data')], { env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /aam\.yaml:\d+ \(document 2\): spec\.targets\[0\]\.provider: unknown Provider "nope"/);
  assert.doesNotMatch(r.stdout + r.stderr, /listening/);
});
