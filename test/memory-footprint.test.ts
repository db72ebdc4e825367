// What a gateway holds in memory before it needs it: packages that only some requests use are
// loaded by the first such request, so an idle gateway (demo config) stays small
// (bench/RESULTS.md, "Memory"). Observed with a module resolve hook on a real in-process gateway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registerHooks } from 'node:module';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = dirname(dirname(fileURLToPath(import.meta.url)));
const resolved = new Set<string>();
// Registered before the gateway's modules are imported (dynamic imports below).
registerHooks({
  resolve(specifier, context, next) {
    if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) resolved.add(specifier);
    return next(specifier, context);
  },
});

test('prom-client (process metrics) is loaded by the first /metrics scrape, not at start', async () => {
  const { startTestGateway } = await import('./helpers/gateway.ts');
  const gw = await startTestGateway(readFileSync(join(REPO, 'aam.yaml'), 'utf8'));
  try {
    const health = await fetch(`${gw.url}/healthz`);
    assert.equal(health.status, 200);
    assert.ok(![...resolved].some((s) => s.startsWith('prom-client')), `loaded at start: ${[...resolved].join(', ')}`);
    const res = await fetch(`${gw.url}/metrics`);
    const text = await res.text();
    assert.equal(res.status, 200);
    assert.ok(resolved.has('prom-client'));
    assert.match(text, /^aam_process_process_cpu_user_seconds_total /m, 'process metrics on the first scrape');
    assert.match(text, /^# TYPE aam_config_info gauge$/m);
  } finally {
    await gw.close();
  }
});

test('the key-change watch is woken only by key changes, not by every audit and database write in the data dir', async () => {
  const { startTestGateway, agentDocs, doc, yaml } = await import('./helpers/gateway.ts');
  const gw = await startTestGateway(yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'm', { targets: [{ provider: 'demo', model: 'demo-small' }] }), ...agentDocs(['m'])));
  try {
    const key = gw.key('tester');
    const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) });
    assert.equal(res.status, 200);
    await gw.g.rt.auditLog?.flush();
    // The watched directory holds the change signal and nothing the request path writes to.
    const signal = gw.g.rt.keys.signalFile;
    assert.ok(signal, 'the gateway watches for key changes');
    assert.deepEqual(readdirSync(dirname(signal)).filter((f) => f !== basename(signal)), []);
  } finally {
    await gw.close();
  }
});
