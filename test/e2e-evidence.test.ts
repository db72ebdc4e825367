// End-to-end evidence: allowed and denied model calls leave decision + model_call events with the
// whole identity and the policy; `aam audit verify` passes and then names the seq of a tampered
// row; a real gateway process killed with SIGKILL under load keeps every acknowledged request in
// a chain that still verifies; /metrics exposes the request and decision counters.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.ts';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { chat, auditOf, runCli, freePort, until, NODE_BIN, CLI, ROOT } from './helpers/e2e.ts';
import { parseProm, sumOf } from './helpers/prom.ts';
import { readEvents } from '../src/audit/store.ts';
import { rewriteTrail } from './audit-helpers.ts';

let fake: FakeUpstream;

const config = (fakeUrl: string) => yaml(
  doc('Provider', 'oai', { type: 'openai-compatible', baseUrl: `${fakeUrl}/v1` }),
  doc('Model', 'gpt', { targets: [{ provider: 'oai', model: 'ok' }], pricing: { input_per_1m: 1, output_per_1m: 2 } }),
  doc('Model', 'restricted', { targets: [{ provider: 'oai', model: 'ok' }] }),
  doc('Model', 'unlisted', { targets: [{ provider: 'oai', model: 'ok' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', owner: 'jane@example.com', team: 'finance', environment: 'prod', deployment: 'analyst-v3' }),
  doc('AgentPolicy', 'analyst-models', { identity: { workload: 'spiffe://prod/agent/analyst' }, models: { allow: ['gpt'], deny: ['restricted'] } }),
);

let gw: TestGateway;
let closed = false;
before(async () => {
  fake = await startFakeUpstream();
  gw = await startTestGateway(config(fake.url));
});
after(async () => {
  if (gw && !closed) await gw.g.close();
  if (gw) rmSync(join(gw.dataDir, '..'), { recursive: true, force: true });
  await fake?.close();
});

test('decisions and model calls are recorded with identity, policy and reason; metrics count them; verify passes, then catches tampering', async () => {
  const { secret, key } = gw.g.rt.keys.create('analyst');
  const allowed = await chat(gw.url, secret, 'gpt', 'allowed one');
  const streamed = await chat(gw.url, secret, 'gpt', 'allowed two', { stream: true });
  const explicit = await chat(gw.url, secret, 'restricted', 'denied by rule');
  const byDefault = await chat(gw.url, secret, 'unlisted', 'denied by default');
  assert.deepEqual([allowed.status, streamed.status, explicit.status, byDefault.status], [200, 200, 403, 403]);

  const identity = { spiffe_id: 'spiffe://prod/agent/analyst', agent: 'analyst', team: 'finance', owner: 'jane@example.com', environment: 'prod', deployment: 'analyst-v3', key_id: key.id, method: 'virtual_key' };
  // An allowed call is one model_call event carrying its decision (policy) and its outcome.
  for (const r of [allowed, streamed]) {
    const evs = await auditOf(gw, r.requestId);
    assert.deepEqual(evs.map((e) => e.type), ['model_call'], `events of ${r.requestId}`);
    const [m] = evs;
    assert.deepEqual({ ...m.identity }, identity);
    assert.equal(m.policy?.name, 'analyst-models');
    assert.equal(m.policy?.decision, 'allow');
    assert.match(m.policy?.reason ?? '', /allow/);
    assert.ok(m.policy?.version, 'config version stamped on the decision');
    assert.equal(m.model?.route, 'gpt');
    assert.equal(m.model?.provider, 'oai');
    assert.equal(m.model?.model, 'ok');
    assert.ok((m.model?.input_tokens ?? 0) > 0 && (m.model?.output_tokens ?? 0) > 0, 'tokens recorded');
    assert.ok((m.model?.cost_usd ?? 0) > 0, 'cost recorded');
    assert.equal(m.outcome?.status, 200);
  }
  const denied = await auditOf(gw, explicit.requestId);
  assert.deepEqual(denied.map((e) => e.type), ['decision'], 'a denied call has a decision and no upstream call');
  assert.deepEqual({ ...denied[0].identity }, identity);
  assert.equal(denied[0].policy?.decision, 'deny');
  assert.equal(denied[0].outcome?.status, 403);
  assert.equal(denied[0].policy?.name, 'analyst-models');
  assert.match(denied[0].policy?.reason ?? '', /restricted/);
  const dflt = await auditOf(gw, byDefault.requestId);
  assert.equal(dflt[0].policy?.decision, 'deny');
  assert.match(dflt[0].policy?.reason ?? '', /unlisted|no policy|not allow/i);
  assert.equal(dflt[0].identity?.key_id, key.id);

  // Prometheus text: parse the counters.
  const m = await fetch(`${gw.url}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /text\/plain/);
  const samples = parseProm(await m.text());
  const sum = (name: string, match: Record<string, string>) => sumOf(samples, name, match);
  assert.equal(sum('aam_model_requests_total', { agent: 'analyst', route: 'gpt', status: '200' }), 2);
  assert.equal(sum('aam_policy_decisions_total', { agent: 'analyst', effect: 'allow' }), 2);
  assert.equal(sum('aam_policy_decisions_total', { agent: 'analyst', effect: 'deny' }), 2);

  // Verify with the CLI on the stopped gateway's data.
  await gw.g.close();
  closed = true;
  const args = ['--data', gw.dataDir, '--config', gw.configPath];
  const ok = await runCli(['audit', 'verify', ...args]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /^OK/);

  const db = new DatabaseSync(join(gw.dataDir, 'audit.db'));
  const [row] = [...readEvents(db, { match: (k) => k.request_id === explicit.requestId })];
  db.close();
  assert.ok(row.text.includes('"deny"'));
  // An operator with file access flips the decision in the stored line.
  rewriteTrail(gw.dataDir, (events) => { events[row.seq - 1].line = events[row.seq - 1].line.replace('"deny"', '"allow"'); });
  const bad = await runCli(['audit', 'verify', ...args]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, new RegExp(`TAMPERED.*seq ${row.seq}\\b`));
});

test('SIGKILL under load: every acknowledged request is in the trail and the chain verifies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aam-kill-'));
  const cfg = join(dir, 'aam.yaml');
  const data = join(dir, 'data');
  writeFileSync(cfg, config(fake.url));
  try {
    const k = await runCli(['keys', 'create', '--agent', 'analyst', '--config', cfg, '--data', data]);
    assert.equal(k.code, 0, k.stderr);
    const key = k.stdout.trim().split('\n').at(-1) ?? '';
    const port = await freePort();
    const child = spawn(NODE_BIN, [CLI, 'serve', '--config', cfg, '--data', data, '--port', String(port), '--host', '127.0.0.1'], { cwd: ROOT, env: { ...process.env, AAM_LOG_LEVEL: 'error' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_c, sig) => r(sig)));
    const url = `http://127.0.0.1:${port}`;
    await until(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 60_000, `gateway ready (${stderr})`);

    const acked: string[] = [];
    let stop = false;
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        try {
          const r = await chat(url, key, i % 5 === 0 ? 'restricted' : 'gpt', `load ${w}-${i}`);
          if (r.status === 200 && r.requestId) acked.push(r.requestId);
        } catch { /* the process died mid-request: not acknowledged */ }
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));
    await until(() => acked.length >= 150, 60_000, 'load to build up');
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    stop = true;
    await Promise.all(workers);

    // Recovery: what the killed gateway wrote to its segment file is committed by the next reader
    // (aam audit verify, or the next gateway start); after that nothing acknowledged is missing.
    const first = await runCli(['audit', 'verify', '--data', data, '--config', cfg]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const db = new DatabaseSync(join(data, 'audit.db'), { readOnly: true });
    const byRequest = new Map<string, string[]>();
    let total = 0;
    for (const e of readEvents(db)) { total++; byRequest.set(e.request_id, [...(byRequest.get(e.request_id) ?? []), e.type]); }
    const missing = acked.map((id) => ({ id, types: byRequest.get(id) ?? [] }))
      .filter((m) => !m.types.includes('model_call'));
    db.close();
    t.diagnostic(`${acked.length} acknowledged requests before SIGKILL; ${total} audit events on disk; ${missing.length} missing`);
    // The CLI finds an acknowledged request by id.
    const q = await runCli(['audit', 'query', '--request-id', acked[0], '--json', '--data', data, '--config', cfg]);
    assert.equal(q.code, 0, q.stderr);
    assert.ok(q.stdout.includes(acked[0]), `aam audit query --request-id ${acked[0]}: ${q.stdout.slice(0, 300)}`);
    const verify = await runCli(['audit', 'verify', '--data', data, '--config', cfg]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged requests missing from the audit trail (events found per request: ${JSON.stringify(missing.slice(0, 5))})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});


test('audit.record in AgentPolicy selects what is kept; identity and decision always are', async () => {
  const { startTestGateway: start, doc: d, yaml: y } = await import('./helpers/gateway.ts');
  const { queryEvents } = await import('../src/audit/query.ts');
  const gw = await start(y(
    d('Provider', 'demo', { type: 'demo' }),
    d('Model', 'm', { targets: [{ provider: 'demo', model: 'x' }] }),
    d('Agent', 'lean', { workload: 'spiffe://t/agent/lean' }),
    d('AgentPolicy', 'lean', { identity: { agent: 'lean' }, models: { allow: ['m'] }, audit: { record: ['identity', 'policy', 'action'] } }),
  ));
  try {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.key('lean')}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }) });
    assert.equal(r.status, 200);
    await gw.g.rt.auditLog!.flush();
    const [ev] = queryEvents(gw.g.rt.auditLog!.db, { requestId: r.headers.get('x-request-id')! });
    assert.equal(ev.type, 'model_call');
    assert.equal((ev.identity as { agent: string }).agent, 'lean');
    assert.equal((ev.policy as { decision: string }).decision, 'allow');
    assert.equal((ev.model as { route: string }).route, 'm');
    assert.equal(ev.outcome, undefined, 'outcome not selected');
    assert.equal((ev.model as { input_tokens?: number }).input_tokens, undefined, 'usage details not selected');
  } finally { await gw.close(); }
});
