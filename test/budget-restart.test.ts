// A budget survives a restart: what the gateway billed earlier today, kept in the data dir, still
// counts when a new process opens that dir (the runtime seeds each configured agent's and team's
// budget from the usage it recorded). Two real gateways in turn on one data dir, the demo provider.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, type Running } from '../src/cli/serve.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { doc, yaml } from './helpers/config-docs.ts';
import { tempDir } from './helpers/temp.ts';

const CONFIG = yaml(
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'priced', { targets: [{ provider: 'demo', model: 'demo-1' }] }),
  doc('Agent', 'spender', { workload: 'spiffe://test/agent/spender', team: 'ops' }),
  doc('Agent', 'saver', { workload: 'spiffe://test/agent/saver', team: 'ops' }),
  doc('Agent', 'teammate', { workload: 'spiffe://test/agent/teammate', team: 'sales' }),
  doc('AgentPolicy', 'daily', { identity: { workload: 'spiffe://test/agent/*' }, models: { allow: ['priced'], budget: { daily_usd: 5 } } }),
  doc('AgentPolicy', 'sales-team', { identity: { team: 'sales' }, models: { budget: { daily_usd: 5, scope: 'team' } } }),
);

async function open(dir: string): Promise<Running> {
  const configPath = join(dir, 'aam.yaml');
  writeFileSync(configPath, CONFIG);
  return startGateway({ configPath, dataDir: join(dir, 'data'), port: 0, host: '127.0.0.1', env: { ...process.env, AAM_LOG_LEVEL: 'error' }, parseConfig: parseConfigTexts });
}

async function chat(g: Running, key: string): Promise<{ status: number; code?: string }> {
  const r = await fetch(`http://127.0.0.1:${g.port}/v1/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'priced', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = await r.json() as { error?: { code: string } };
  return r.status === 200 ? { status: 200 } : { status: r.status, code: body.error?.code };
}

test('spend recorded before a restart still counts against the daily budget, per agent and per team', async () => {
  const dir = tempDir('aam-budget-restart-');
  const first = await open(dir);
  const keys = { spender: first.rt.keys.create('spender').secret, saver: first.rt.keys.create('saver').secret, teammate: first.rt.keys.create('teammate').secret };
  try {
    // What this process billed today: $6 for spender, and $6 for the sales team (by an agent since removed).
    // (The demo provider is free, so a call reserves $0: only spend over the $5 limit refuses it.)
    const billed = { team: null, keyId: null, route: 'priced', provider: 'demo', model: 'demo-1', inputTokens: 1, outputTokens: 1, cachedTokens: null, latencyMs: 1, status: 200, stream: false, cache: null } as const;
    first.rt.usage.record({ ...billed, agent: 'spender', team: 'ops', costUsd: 6 });
    first.rt.usage.record({ ...billed, agent: 'gone', team: 'sales', costUsd: 6 });
    first.rt.usage.flush();
  } finally { await first.close(); }
  const second = await open(dir);
  try {
    assert.deepEqual(await chat(second, keys.spender), { status: 429, code: 'budget_exceeded' }, 'its own $6 already spent');
    assert.deepEqual(await chat(second, keys.teammate), { status: 429, code: 'budget_exceeded' }, 'its team\'s $6 already spent');
    assert.deepEqual(await chat(second, keys.saver), { status: 200 }, 'nothing spent: the budget has room');
  } finally { await second.close(); }
});
