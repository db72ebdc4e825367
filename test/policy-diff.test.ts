// `aam policy diff OLD NEW [--against-trail 7d]`: a real gateway makes real decisions under OLD
// (model calls, HTTP tool calls, a denial), then the CLI replays that trail under NEW and lists
// every decision that would change; without a trail it compares what each agent may do.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestGateway, doc, yaml, type TestGateway } from './helpers/gateway.ts';
import { auditOf, chat, localServer, runCli, type LocalServer } from './helpers/e2e.ts';
import { tempDir } from './helpers/temp.ts';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { diffAgainstTrail } from '../src/policy/diff.ts';

const common = (crmUrl: string) => [
  doc('HttpTool', 'crm', { baseUrl: crmUrl, resource: 'crm.accounts', actions: { read: { method: 'GET', path: '/accounts' }, export: { method: 'POST', path: '/export' } } }),
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'fast', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'demo' }] }),
  doc('Agent', 'analyst', { workload: 'spiffe://prod/agent/analyst', team: 'finance' }),
  doc('Agent', 'newbie', { workload: 'spiffe://prod/agent/newbie', team: 'finance' }),
];
const OLD = (crmUrl: string) => yaml(...common(crmUrl),
  doc('AgentPolicy', 'analyst', { identity: { agent: 'analyst' }, models: { allow: ['fast', 'big'] }, tools: [{ resource: 'crm.accounts', actions: ['read', 'export'] }] }));
// NEW: "big" and exporting accounts are taken away from analyst; newbie may now use "fast".
const NEW = (crmUrl: string) => yaml(...common(crmUrl),
  doc('AgentPolicy', 'analyst', { identity: { agent: 'analyst' }, models: { allow: ['fast'] }, tools: [{ resource: 'crm.accounts', actions: ['read'] }] }),
  doc('AgentPolicy', 'newbie', { identity: { agent: 'newbie' }, models: { allow: ['fast'] } }));

let gw: TestGateway;
let crm: LocalServer;
const dir = tempDir('aam-policy-diff-');
const oldPath = join(dir, 'old.yaml');
const newPath = join(dir, 'new.yaml');

before(async () => {
  crm = await localServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"rows":3}'); });
  gw = await startTestGateway(OLD(crm.url));
  writeFileSync(oldPath, OLD(crm.url));
  writeFileSync(newPath, NEW(crm.url));
  const analyst = gw.key('analyst');
  const newbie = gw.key('newbie');
  const tool = (action: string) => fetch(`${gw.url}/tools/crm/${action}`, { method: action === 'read' ? 'GET' : 'POST', headers: { authorization: `Bearer ${analyst}`, ...(action === 'read' ? {} : { 'content-type': 'application/json' }) }, body: action === 'read' ? undefined : '{}' });
  for (const m of ['big', 'big', 'fast']) assert.equal((await chat(gw.url, analyst, m, 'hi')).status, 200);
  assert.equal((await tool('export')).status, 200);
  assert.equal((await tool('read')).status, 200);
  const denied = await chat(gw.url, newbie, 'fast', 'hi');
  assert.equal(denied.status, 403);
  await auditOf(gw, denied.requestId); // flushed: every decision above is in the trail
});
after(async () => { await gw?.close(); await crm?.close(); });

test('policy diff --against-trail: lists every recorded decision NEW would decide differently, with a count; exit 1', async () => {
  const r = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--data', gw.dataDir]);
  assert.equal(r.code, 1, r.stderr + r.stdout);
  const lines = r.stdout.split('\n');
  const big = lines.find((l) => l.startsWith('analyst  model big'));
  assert.match(big ?? '', /allow \(policy "analyst" models\.allow\[1\]\) -> deny \(.*\)\s+x2/, r.stdout);
  assert.match(lines.find((l) => l.startsWith('analyst  tool crm.accounts export')) ?? '', /allow \(policy "analyst" tools\[0\]\) -> deny .* x1/, r.stdout);
  assert.match(lines.find((l) => l.startsWith('newbie  model fast')) ?? '', /deny \(default deny\) -> allow \(policy "newbie" models\.allow\[0\]\) +x1/, r.stdout);
  assert.ok(!lines.some((l) => /model fast/.test(l) && l.startsWith('analyst')), 'unchanged decisions are not listed');
  assert.ok(!lines.some((l) => /crm\.accounts read/.test(l)), 'unchanged tool decisions are not listed');
  assert.match(r.stdout, /4 of 6 recorded decisions would change \(3 distinct: /);

  const j = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--data', gw.dataDir, '--json']);
  assert.equal(j.code, 1);
  const parsed = JSON.parse(j.stdout) as { replayed: number; changed: number; changes: Array<{ agent: string; new: { effect: string } }> };
  assert.equal(parsed.replayed, 6);
  assert.equal(parsed.changed, 4);
});

test('policy diff --against-trail --file: the same replay from an `aam audit export` file (e.g. a fleet\'s trail)', async () => {
  const file = join(dir, 'trail.jsonl');
  const exp = await runCli(['audit', 'export', '--out', file, '--data', gw.dataDir]);
  assert.equal(exp.code, 0, exp.stderr);
  const r = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--file', file]);
  assert.equal(r.code, 1, r.stderr + r.stdout);
  assert.match(r.stdout, /^4 of 6 recorded decisions would change \(3 distinct: /m);
  const alone = await runCli(['policy', 'diff', oldPath, newPath, '--file', file]);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /give --against-trail too/);
  const garbage = join(dir, 'garbage.jsonl');
  writeFileSync(garbage, 'not json\n');
  const bad = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--file', garbage]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /line 1 is not JSON/);
});

test('policy diff --against-trail: the same config changes nothing (exit 0)', async () => {
  const r = await runCli(['policy', 'diff', oldPath, oldPath, '--against-trail', '1h', '--data', gw.dataDir]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /^0 of 6 recorded decisions would change$/m);
});

test('policy diff without a trail: what each agent may do, OLD vs NEW', async () => {
  const r = await runCli(['policy', 'diff', oldPath, newPath]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^analyst  model big: allow -> deny$/m);
  assert.match(r.stdout, /^analyst  tool crm\.accounts export: allow -> deny$/m);
  assert.match(r.stdout, /^newbie  model fast: deny -> allow$/m);
  assert.doesNotMatch(r.stdout, /crm\.accounts read/);
  assert.match(r.stdout, /^3 capabilities would change across 2 agent\(s\)/m);
  const same = await runCli(['policy', 'diff', newPath, newPath]);
  assert.equal(same.code, 0, same.stderr);
});

test('policy diff (negative): bad arguments exit 2 and say what to fix', async () => {
  const one = await runCli(['policy', 'diff', oldPath]);
  assert.equal(one.code, 2);
  assert.match(one.stderr, /exactly two config files/);
  const missing = await runCli(['policy', 'diff', oldPath, join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /NEW config .*nope\.yaml does not exist/);
  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, doc('Model', 'm', { targets: [{ provider: 'ghost', model: 'x' }] }));
  const invalid = await runCli(['policy', 'diff', broken, newPath]);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /OLD config .*broken\.yaml is not valid/);
  const window = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', 'last week', '--data', gw.dataDir]);
  assert.equal(window.code, 2);
  assert.match(window.stderr, /--against-trail: .*like 30m, 24h, 7d/);
  const noTrail = await runCli(['policy', 'diff', oldPath, newPath, '--against-trail', '7d', '--data', join(dir, 'empty')]);
  assert.equal(noTrail.code, 2);
  assert.match(noTrail.stderr, /no audit trail in .*pass --data/);
});

test('policy diff: a tool decision whose rule checks arguments the trail did not keep is flagged, not guessed silently', () => {
  const cfg = (args: unknown) => compilePolicies(parseConfigTexts([{ file: 'c.yaml', text: yaml(...common('http://127.0.0.1:9'),
    doc('AgentPolicy', 'analyst', { identity: { agent: 'analyst' }, tools: [{ resource: 'crm.accounts', actions: ['export'], ...(args ? { args } : {}) }] })) }]));
  const ev = { type: 'tool.decision', seq: 1, time: '2026-01-01T00:00:00Z', agent: 'analyst', spiffe_id: 'spiffe://prod/agent/analyst', resource: 'crm.accounts', action: 'export', decision: { effect: 'allow' } };
  const r = diffAgainstTrail(cfg(null), cfg({ region: { enum: ['eu'], required: true } }), [ev]);
  assert.equal(r.changed, 1);
  assert.equal(r.changes[0].argsUnknown, true);
  assert.match(r.lines[0], /arguments not in the trail/);
  // With the arguments recorded (audit.record: [arguments]) the replay uses them.
  const withArgs = diffAgainstTrail(cfg(null), cfg({ region: { enum: ['eu'], required: true } }), [{ ...ev, args: { region: 'eu' } }]);
  assert.equal(withArgs.changed, 0);
});

test('policy diff: A2A calls (a2a_call and denied decision events) are replayed too', () => {
  const cfg = (skills: string[]) => compilePolicies(parseConfigTexts([{ file: 'c.yaml', text: yaml(...common('http://127.0.0.1:9'),
    doc('Agent', 'helper', { workload: 'spiffe://prod/agent/helper', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
    doc('AgentPolicy', 'analyst', { identity: { agent: 'analyst' }, agents: [{ agent: 'helper', skills: skills }] })) }]));
  const who = { agent: 'analyst', spiffe_id: 'spiffe://prod/agent/analyst', method: 'api_key' };
  const events = [
    { type: 'a2a_call', seq: 1, time: '2026-01-01T00:00:00Z', identity: who, policy: { decision: 'allow' }, a2a: { agent: 'helper', skill: 'summarize', method: 'message/send' } },
    { type: 'decision', seq: 2, time: '2026-01-01T00:00:01Z', identity: who, policy: { decision: 'deny' }, a2a: { agent: 'helper', skill: 'translate' } },
  ];
  const r = diffAgainstTrail(cfg(['summarize']), cfg(['translate']), events);
  assert.equal(r.replayed, 2);
  assert.equal(r.changed, 2);
  assert.deepEqual(r.changes.map((c) => `${c.target}/${c.action}: ${c.old.effect}->${c.new.effect}`).sort(), ['helper/summarize: allow->deny', 'helper/translate: deny->allow']);
  assert.match(r.lines.join('\n'), /analyst  call agent helper skill summarize: allow/);
  assert.equal(r.notReproduced, 0);
});
