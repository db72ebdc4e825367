// Packages that only some configs use load with the feature that needs them, not with the
// gateway (bench/RESULTS.md, "Memory": each one is RSS an idle gateway would hold): a real
// `aam serve` with the demo config resolves none of them while it starts, idles and answers a
// chat request; a reload that adds a `when:` condition loads CEL, and the condition decides.
// A preload resolve hook records, in a file, every package module the process resolves.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { doc, yaml } from './helpers/gateway.ts';
import { ROOT, runCli, until } from './helpers/e2e.ts';
import { startServeChild } from './helpers/serve-child.ts';

const root = mkdtempSync(join(tmpdir(), 'aam-idle-modules-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** Loaded only by the feature that uses them (fleet mode, CEL, Bedrock signing, MCP, /metrics, the first call to an HTTP upstream). */
const LAZY = ['undici', 'ioredis', 'postgres', '@marcbachmann/cel-js', '@smithy/signature-v4', '@aws-crypto/sha256-js', '@modelcontextprotocol/sdk', 'prom-client',
  // JWT signing and verification (the first JWT-SVID, token or OIDC sign-in), OIDC sign-in to the console
  'jose', 'openid-client', 'oauth4webapi'];
const ADMIN = randomBytes(32).toString('hex');

/** aam's modules that only other commands, fleet mode or TLS use (the CLI's dispatcher loads them for those). */
const OTHER_COMMANDS = ['cli/commands', 'cli/stores', 'cli/evidence', 'audit/cli', 'audit/verify', 'audit/fleet-log', 'identity/x509-svid'];

/** A preload whose resolve hook appends every module URL under node_modules, src/ or dist/ to `log`. */
function packageWatcher(dir: string): { preload: string; log: string } {
  const log = join(dir, 'resolved.log');
  const preload = join(dir, 'watch-packages.mjs');
  writeFileSync(preload, `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({ resolve(spec, ctx, next) {
  const r = next(spec, ctx);
  if (['/node_modules/', '/src/', '/dist/'].some((d) => r.url.includes(d))) appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
} });
`);
  return { preload, log };
}

/** Package names (scope included) of the module URLs logged so far. */
function packagesLoaded(log: string): Set<string> {
  const names = new Set<string>();
  if (!existsSync(log)) return names;
  for (const url of readFileSync(log, 'utf8').split('\n')) {
    if (!url.includes('/node_modules/')) continue;
    const tail = url.split('/node_modules/').at(-1) ?? '';
    const parts = tail.split('/');
    if (parts[0]) names.add(parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]);
  }
  return names;
}

async function serve(name: string, configText: string, agent: string) {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(config, configText);
  const env = { ...process.env, AAM_LOG_LEVEL: 'error' };
  const r = await runCli(['keys', 'create', '--agent', agent, '--config', config, '--data', data], { env });
  assert.equal(r.code, 0, r.stderr);
  const w = packageWatcher(dir);
  const gw = await startServeChild({ config, data, env: { AAM_ADMIN_TOKEN: ADMIN, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${w.preload}` } });
  return { config, gw, log: w.log, key: r.stdout.trim().split('\n').at(-1)! };
}

test('the demo config loads none of the packages that only other features use', async () => {
  const s = await serve('demo', readFileSync(join(ROOT, 'aam.yaml'), 'utf8'), 'finance-analyst');
  try {
    assert.equal((await fetch(`${s.gw.url}/healthz`)).status, 200);
    // The demo provider answers (no provider keys set in the test's environment for this agent's route).
    const chat = await fetch(`${s.gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${s.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'summarization', messages: [{ role: 'user', content: 'hello' }] }),
    });
    assert.equal(chat.status, 200, await chat.text());
    const loaded = packagesLoaded(s.log);
    assert.ok(loaded.has('zod'), `the hook sees the gateway's packages: ${[...loaded].join(', ')}`);
    assert.deepEqual(LAZY.filter((p) => loaded.has(p)), [], `loaded by an idle demo gateway: ${[...loaded].join(', ')}`);
    const own = readFileSync(s.log, 'utf8').split('\n').filter((u) => !u.includes('/node_modules/')).map((u) => u.replace(/^.*\/(src|dist)\/|\.(ts|js)$/g, ''));
    assert.ok(own.includes('cli/serve'), 'the hook sees aam\'s modules');
    assert.deepEqual(OTHER_COMMANDS.filter((m) => own.includes(m)), [], 'loaded by `aam serve`');
  } finally { await s.gw.stop(); }
});

test('a reload that adds a `when:` condition loads CEL, and the condition decides', async () => {
  const agents = [
    doc('Agent', 'tester', { workload: 'spiffe://test/agent/tester', team: 'qa' }),
    doc('Agent', 'other', { workload: 'spiffe://test/agent/other', team: 'ops' }),
    doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'd' }] }),
  ];
  const s = await serve('cel', yaml(...agents, doc('AgentPolicy', 'models', { identity: { workload: 'spiffe://test/**' }, models: { allow: ['m'] } })), 'tester');
  const ask = async (agent: string): Promise<boolean> => {
    const r = await fetch(`${s.gw.url}/access/v1/evaluation`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { type: 'agent', id: agent }, resource: { type: 'tool', id: 'crm.deals' }, action: { name: 'search' } }),
    });
    assert.equal(r.status, 200);
    return ((await r.json()) as { decision: boolean }).decision;
  };
  try {
    assert.equal(await ask('tester'), false, 'no tool rule yet');
    assert.equal(packagesLoaded(s.log).has('@marcbachmann/cel-js'), false, 'no condition, no CEL');
    // Replaced whole (rename), so neither the file watcher nor SIGHUP reads it half written.
    writeFileSync(`${s.config}.new`, yaml(...agents, doc('AgentPolicy', 'qa-tools', {
      identity: { workload: 'spiffe://test/**' }, models: { allow: ['m'] },
      tools: [{ resource: 'crm.deals', actions: ['search'], when: 'identity.team == "qa"' }],
    })));
    renameSync(`${s.config}.new`, s.config);
    // SIGHUP each second until the new policy answers (a signal racing the handler wiring is not the subject).
    const nudge = setInterval(() => s.gw.proc.kill('SIGHUP'), 1000);
    s.gw.proc.kill('SIGHUP');
    await until(() => ask('tester'), 30_000, 'the reloaded `when:` rule to allow the qa agent')
      .finally(() => clearInterval(nudge))
      .catch((e: Error) => { throw new Error(`${e.message}\n${s.gw.stderr().slice(-3000)}`); });
    assert.equal(await ask('other'), false, 'the condition is false for another team');
    assert.ok(packagesLoaded(s.log).has('@marcbachmann/cel-js'), 'CEL loaded with the first condition');
  } finally { await s.gw.stop(); }
});
