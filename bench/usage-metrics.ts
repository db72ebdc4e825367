// Microbenchmark of the per-request evidence counters: UsageRecorder.record() (including its
// share of the flushes into SQLite) and Metrics.modelCall(), as recordCall runs them.
//   node_modules/.bin/node bench/usage-metrics.ts [--calls 1000000]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/sqlite.ts';
import { UsageRecorder } from '../src/gateway/usage.ts';
import { Metrics } from '../src/observability/metrics.ts';

const calls = Number(process.argv[process.argv.indexOf('--calls') + 1]) || 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'aam-bench-usage-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

// A realistic spread: 8 agents in 2 teams, 3 routes, mostly 200s.
const agents = Array.from({ length: 8 }, (_, i) => ({ name: `agent-${i}`, team: i % 2 ? 'finance' : 'research' }));
const routes = ['gpt', 'claude', 'embed'];
const usage = { inputTokens: 812, outputTokens: 210, cachedTokens: 0 };

function usageRun(n: number): number {
  const db = openDatabase(dir, `usage-${n}-${Math.random()}.db`);
  const rec = new UsageRecorder(db);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const a = agents[i & 7];
    const route = routes[i % 3];
    rec.record({
      time: Date.now(), agent: a.name, team: a.team, keyId: 'key_0123',
      route, provider: 'openai', model: 'gpt-4o',
      inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, cachedTokens: usage.cachedTokens,
      costUsd: i % 10 ? 0.00413 : null, latencyMs: 1.5 + (i & 15), status: i % 50 ? 200 : 502, stream: (i & 1) === 1, cache: null,
    });
  }
  rec.flush();
  const ns = ((performance.now() - t0) * 1e6) / n;
  db.close();
  return ns;
}

function metricsRun(n: number): number {
  const m = new Metrics();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const a = agents[i & 7];
    m.modelCall(a.name, a.team, routes[i % 3], 'openai', i % 50 ? 200 : 502, 1.5 + (i & 15), usage, i % 10 ? 0.00413 : null);
  }
  return ((performance.now() - t0) * 1e6) / n;
}

usageRun(calls / 10); // warm-up (JIT)
metricsRun(calls / 10);
const u = usageRun(calls);
const m = metricsRun(calls);
console.log(`${calls} calls: usage.record ${u.toFixed(0)} ns/call, metrics.modelCall ${m.toFixed(0)} ns/call, together ${(u + m).toFixed(0)} ns/call`);
