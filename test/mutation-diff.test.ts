// `aam policy diff` (src/policy/diff.ts) as a reviewer reads it, with no gateway: which trail
// events are replayed and as whom, how changed decisions are grouped, counted, dated and sorted,
// and which capabilities (models, HttpTool and MCP tool actions, names in rules) are compared.
// Written for the mutants `npm run mutate -- policy -- --mutate src/policy/diff.ts` found alive;
// a killed mutant costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies } from '../src/policy/compile.ts';
import { diffAgainstTrail, diffCapabilities, replayable, type DiffSide } from '../src/policy/diff.ts';
import { doc, yaml } from './helpers/config-docs.ts';

const ANN = 'spiffe://prod/agent/ann';
const BOB = 'spiffe://prod/agent/bob';
const base = [
  doc('Provider', 'demo', { type: 'demo' }),
  doc('Model', 'fast', { targets: [{ provider: 'demo', model: 'd' }] }),
  doc('Model', 'big', { targets: [{ provider: 'demo', model: 'd' }] }),
  doc('Agent', 'ann', { workload: ANN, team: 'finance' }),
  doc('Agent', 'bob', { workload: BOB, team: 'sales' }),
  doc('Agent', 'helper', { workload: 'spiffe://prod/agent/helper', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
  doc('HttpTool', 'crm', { baseUrl: 'http://127.0.0.1:9', resource: 'crm.accounts', actions: { read: { method: 'GET', path: '/a' }, export: { method: 'POST', path: '/e' } } }),
  // An MCP tool's action is named by its mapping's resource, else the server's, else the server
  // name, and by the mapping's action, else the tool name.
  doc('McpServer', 'notes', { transport: 'stdio', command: 'node', tools: { add_note: {}, wipe: { action: 'delete' } } }),
  doc('McpServer', 'files', { transport: 'stdio', command: 'node', resource: 'fs', tools: { ls: {}, cat: { resource: 'fs.read', action: 'get' } } }),
];
const side = (...docs: string[]): DiffSide => {
  const config = parseConfigTexts([{ file: 'c.yaml', text: yaml(...base, ...docs) }]);
  return { config, compiled: compilePolicies(config, 'v') };
};
const OLD = side(
  doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast', 'big'] }, tools: [{ resource: 'crm.accounts', actions: ['read', 'export'] }, { resource: 'notes', actions: ['add_note'] }] }),
  doc('AgentPolicy', 'sales', { identity: { team: 'sales' }, models: { allow: ['big'] }, tools: [{ resource: 'db.rows', actions: ['*'] }] }),
);
// NEW: ann loses "big" and exports (and exports check an argument now), gains MCP actions; bob
// loses "big" and dropping rows, may call helper; a new agent "cat" and a new model "tiny".
const NEW = side(
  doc('Model', 'tiny', { targets: [{ provider: 'demo', model: 'd' }] }),
  doc('Agent', 'cat', { workload: 'spiffe://prod/agent/cat', team: 'finance' }),
  doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast', 'tiny'] }, tools: [{ resource: 'crm.accounts', actions: ['read'], args: { n: { max: 5 } } }, { resource: 'notes', actions: ['add_note', 'delete'] }, { resource: 'fs', actions: ['ls'] }, { resource: 'fs.read', actions: ['get'] }] }),
  doc('AgentPolicy', 'sales', { identity: { team: 'sales' }, tools: [{ resource: 'db.rows', actions: ['*'], deny: ['drop'] }, { resource: 'db.*', actions: ['*'] }], agents: [{ agent: 'helper' }] }),
);

test('policy diff without a trail: every capability that changes, per agent in name order, models then tool actions; "none" where a side lacks the agent or model', () => {
  const d = diffCapabilities(OLD, NEW);
  assert.deepEqual(d.lines, [
    'ann  model big: allow -> deny',
    'ann  model tiny: none -> allow',
    'ann  tool crm.accounts export: allow -> deny',
    'ann  tool fs ls: deny -> allow',
    'ann  tool fs.read get: deny -> allow',
    'ann  tool notes delete: deny -> allow',
    'bob  model big: allow -> deny',
    'bob  model tiny: none -> deny',
    'bob  tool db.rows drop: allow -> deny',
    'cat  model big: none -> deny',
    'cat  model fast: none -> allow',
    'cat  model tiny: none -> allow',
    'cat  tool crm.accounts export: none -> deny',
    'cat  tool crm.accounts read: none -> allow',
    'cat  tool db.rows drop: none -> deny',
    'cat  tool fs ls: none -> allow',
    'cat  tool fs.read get: none -> allow',
    'cat  tool notes add_note: none -> allow',
    'cat  tool notes delete: none -> allow',
    'helper  model tiny: none -> deny',
    // Tool actions: crm.accounts read/export (HttpTool), notes add_note/delete, fs ls, fs.read get
    // (MCP), db.rows drop (a deny list); '*' and 'db.*' name no action.
    '20 capabilities would change across 4 agent(s), 3 model(s) and 7 tool action(s)',
  ]);
  assert.deepEqual(d.changes[0], { agent: 'ann', kind: 'model', target: 'big', action: '', old: 'allow', new: 'deny' });
  assert.deepEqual(d.changes[2], { agent: 'ann', kind: 'tool', target: 'crm.accounts', action: 'export', old: 'allow', new: 'deny' });
  assert.deepEqual(diffCapabilities(OLD, OLD).lines, ['0 capabilities would change across 3 agent(s), 2 model(s) and 6 tool action(s)']);
  const one = diffCapabilities(OLD, side(
    doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast'] }, tools: [{ resource: 'crm.accounts', actions: ['read', 'export'] }, { resource: 'notes', actions: ['add_note'] }] }),
    doc('AgentPolicy', 'sales', { identity: { team: 'sales' }, models: { allow: ['big'] }, tools: [{ resource: 'db.rows', actions: ['*'] }] }),
  ));
  assert.deepEqual(one.lines, ['ann  model big: allow -> deny', '1 capability would change across 3 agent(s), 2 model(s) and 6 tool action(s)']);
});

const who = (extra: Record<string, unknown> = {}) => ({ agent: 'ann', spiffe_id: ANN, method: 'api_key', ...extra });
const modelCall = (seq: number, time: string, identity: Record<string, unknown>, route: string, decision = 'allow') =>
  ({ type: 'model_call', seq, time, identity, policy: { decision }, model: { route } });
const toolDecision = (seq: number, time: string, extra: Record<string, unknown> = {}) =>
  ({ type: 'tool.decision', seq, time, agent: 'ann', spiffe_id: ANN, team: 'finance', resource: 'crm.accounts', action: 'export', decision: { effect: 'allow' }, ...extra });

test('policy diff --against-trail: changed decisions grouped with a count and first/last time, as whom they are replayed, sorted, tallied', () => {
  const events = [
    modelCall(3, '2026-01-03T00:00:00Z', who(), 'big'),
    modelCall(1, '2026-01-01T00:00:00Z', who(), 'big'),
    modelCall(5, '2026-01-05T00:00:00Z', who(), 'fast'), // unchanged: not listed
    modelCall(2, '2026-01-02T00:00:00Z', who(), 'big'),
    // Recorded without an agent name: the configured agent with that SPIFFE ID, as it is now
    // (team finance), not as recorded (sales).
    modelCall(4, '2026-01-04T00:00:00Z', { spiffe_id: ANN, team: 'sales' }, 'big'),
    // Not a configured agent: its recorded attributes select the policies.
    modelCall(6, '2026-01-06T00:00:00Z', { spiffe_id: 'spiffe://prod/agent/ghost', team: 'sales' }, 'big'),
    // The same change twice: once with its arguments recorded, once without (flagged).
    toolDecision(7, '2026-01-07T00:00:00Z', { args: { n: 1 } }),
    toolDecision(8, '2026-01-08T00:00:00Z'),
    // A2A: with and without a skill; the first was recorded as allowed, which OLD does not reproduce.
    { type: 'a2a_call', seq: 9, time: '2026-01-09T00:00:00Z', identity: { agent: 'bob', spiffe_id: BOB }, policy: { decision: 'allow' }, a2a: { agent: 'helper' } },
    { type: 'decision', seq: 10, time: '2026-01-10T00:00:00Z', identity: { agent: 'bob', spiffe_id: BOB }, policy: { decision: 'deny' }, a2a: { agent: 'helper', skill: 'sum' } },
    // No decision in these: not replayed.
    { type: 'outcome', seq: 11, identity: who(), policy: { decision: 'allow' }, model: { route: 'big' } },
    { type: 'model_call', seq: 12, policy: { decision: 'allow' }, model: { route: 'big' } },
    { type: 'model_call', seq: 13, identity: who(), model: { route: 'big' } },
    { type: 'model_call', seq: 14, identity: who(), policy: { decision: true }, model: { route: 'big' } },
    { type: 'decision', seq: 15, identity: who(), policy: { decision: 'allow' } },
    { type: 'tool.decision', seq: 16, agent: 'ann', resource: 'crm.accounts', action: 'export', decision: {} },
  ];
  const r = diffAgainstTrail(OLD.compiled, NEW.compiled, events);
  assert.equal(r.replayed, 10);
  assert.equal(r.changed, 9);
  assert.equal(r.notReproduced, 1);
  const heads = r.lines.map((l) => l.split('\n')[0]);
  assert.deepEqual(heads, [
    'ann  model big: allow (policy "fin" models.allow[1]) -> deny (default deny)  x3, last 2026-01-03T00:00:00Z',
    'ann  tool crm.accounts export: allow (policy "fin" tools[0]) -> deny (default deny)  x2, last 2026-01-08T00:00:00Z  [arguments not in the trail: replayed without them]',
    'bob  call agent helper: deny (default deny) -> allow (policy "sales" agents[0])  x1, last 2026-01-09T00:00:00Z',
    'bob  call agent helper skill sum: deny (default deny) -> allow (policy "sales" agents[0])  x1, last 2026-01-10T00:00:00Z',
    'spiffe://prod/agent/ann  model big: allow (policy "fin" models.allow[1]) -> deny (default deny)  x1, last 2026-01-04T00:00:00Z',
    'spiffe://prod/agent/ghost  model big: allow (policy "sales" models.allow[0]) -> deny (default deny)  x1, last 2026-01-06T00:00:00Z',
    '9 of 10 recorded decisions would change (6 distinct: 7 allow->deny, 2 deny->allow)',
    'note: OLD does not reproduce 1 recorded decision(s); the trail was partly made under another config',
  ]);
  assert.equal(r.lines[0].split('\n')[1], `    reason now: ${r.changes[0].new.reason}`);
  assert.deepEqual([r.changes[0].count, r.changes[0].first, r.changes[0].last, r.changes[0].argsUnknown], [3, '2026-01-01T00:00:00Z', '2026-01-03T00:00:00Z', false]);
  assert.deepEqual([r.changes[1].first, r.changes[1].last, r.changes[1].argsUnknown], ['2026-01-07T00:00:00Z', '2026-01-08T00:00:00Z', true]);
  // The same trail under the same config: nothing changes, and no tally.
  assert.deepEqual(diffAgainstTrail(OLD.compiled, OLD.compiled, events.slice(0, 2)).lines, ['0 of 2 recorded decisions would change']);
});

test('policy diff: what each kind of trail event replays (model, A2A, tool in a decision event; tool.decision with its context)', () => {
  const recorded = { owner: 'o@example.com', team: 'finance', environment: 'prod', deployment: 'v2' };
  const id = { ...who(), ...recorded };
  const common = { seq: 4, time: 't', agent: 'ann', spiffeId: ANN, recorded, effect: 'deny' };
  assert.deepEqual(replayable({ type: 'decision', seq: '4', time: 't', identity: id, policy: { decision: 'deny' }, model: { route: 'big' }, a2a: { agent: 'x' } }), { ...common, kind: 'model', target: 'big', action: '' });
  assert.deepEqual(replayable({ type: 'a2a_call', seq: 4, time: 't', identity: id, policy: { decision: 'deny' }, a2a: { agent: 'helper', skill: 7 }, tool: { resource: 'r', action: 'a' } }), { ...common, kind: 'agent', target: 'helper', action: '' });
  assert.deepEqual(replayable({ type: 'decision', seq: 4, time: 't', identity: id, policy: { decision: 'deny' }, tool: { resource: 'crm', action: 'read', args: { n: 1 } } }), { ...common, kind: 'tool', target: 'crm', action: 'read', args: { n: 1 } });
  assert.deepEqual(replayable({ type: 'decision', seq: 4, time: 't', identity: id, policy: { decision: 'deny' }, tool: { resource: 'crm', action: 'read', args: [1] } }), { ...common, kind: 'tool', target: 'crm', action: 'read', args: undefined });
  assert.equal(replayable({ type: 'decision', identity: id, policy: { decision: 'deny' }, tool: { resource: 'crm' } }), null);
  assert.equal(replayable({ type: 'decision', identity: id, policy: { decision: 'deny' }, model: { route: 1 }, a2a: { skill: 's' } }), null);
  assert.equal(replayable({ type: 'decision', identity: [], policy: { decision: 'deny' }, model: { route: 'big' } }), null);
  // Missing seq and time: 0 and ''; identity fields that are no strings are left out.
  assert.deepEqual(replayable({ type: 'model_call', identity: { agent: 5, spiffe_id: null, team: 1 }, policy: { decision: 'allow' }, model: { route: 'big' } }), {
    seq: 0, time: '', agent: '', spiffeId: '', recorded: { owner: undefined, team: undefined, environment: undefined, deployment: undefined }, effect: 'allow', kind: 'model', target: 'big', action: '',
  });
  // tool.decision: the tool plane's context keys, so `when` sees what it saw at the time.
  const ev = { type: 'tool.decision', seq: 9, time: 't9', agent: 'ann', spiffe_id: ANN, ...recorded, resource: 'notes', action: 'delete', decision: { effect: 'allow' }, request_id: 'r1', plane: 'mcp', server: 'notes', tool: 'wipe', args: { id: 1 } };
  assert.deepEqual(replayable(ev), {
    seq: 9, time: 't9', agent: 'ann', spiffeId: ANN, recorded, effect: 'allow', kind: 'tool', target: 'notes', action: 'delete', args: { id: 1 },
    context: { time: 't9', request_id: 'r1', environment: 'prod', plane: 'mcp', server: 'notes', tool: 'wipe' },
  });
  const bare = replayable({ ...ev, server: 1, tool: 2, args: 'x', agent: 3, spiffe_id: 4 })!;
  assert.deepEqual([bare.context, bare.args, bare.agent, bare.spiffeId], [{ time: 't9', request_id: 'r1', environment: 'prod', plane: 'mcp' }, undefined, '', '']);
  for (const broken of [{ decision: null }, { decision: { effect: 1 } }, { resource: 1 }, { action: null }]) assert.equal(replayable({ ...ev, ...broken }), null, JSON.stringify(broken));
  assert.equal(replayable({ ...ev, type: 'tool.outcome' }), null);
});

test('policy diff --against-trail: which changes are flagged as replayed without arguments (a rule on that resource with args or a when, on either side), as whom a renamed workload is replayed, one group per unnamed workload', () => {
  // OLD2 -> NEW2: ann loses "big" and crm reads; a `when` reading args now guards add_note; fs ls is
  // newly allowed within an args constraint. The "b*" rule has args on both sides: it matches a
  // model route's name, which must still not flag a model change.
  const OLD2 = side(doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast', 'big'] },
    tools: [{ resource: 'crm.accounts', actions: ['read', 'export'] }, { resource: 'notes', actions: ['add_note'] }, { resource: 'b*', actions: ['x'], args: { n: { max: 1 } } }] }));
  const NEW2 = side(doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast'] },
    tools: [{ resource: 'notes', actions: ['add_note'], when: 'args.x == 1' }, { resource: 'b*', actions: ['x'], args: { n: { max: 1 } } }, { resource: 'fs', actions: ['ls'], args: { n: { max: 1 } } }] }));
  const denied = { decision: { effect: 'deny' } };
  const events = [
    toolDecision(1, 't1', { action: 'read' }),
    modelCall(2, 't2', who(), 'big'),
    // Recorded under ann's old workload and team: replayed as the configured "ann" (team finance).
    modelCall(3, 't3', { agent: 'ann', spiffe_id: 'spiffe://old/ann', team: 'sales' }, 'big'),
    toolDecision(4, 't4', { resource: 'notes', action: 'add_note' }),
    toolDecision(5, 't5', { resource: 'fs', action: 'ls', ...denied }),
    // The same change with its arguments kept (recorded without an agent name: its own group).
    toolDecision(6, 't6', { agent: '', resource: 'fs', action: 'ls', args: { n: 1 }, ...denied }),
    modelCall(7, 't7', { spiffe_id: 'spiffe://prod/agent/g1', team: 'finance' }, 'big'),
    modelCall(8, 't8', { spiffe_id: 'spiffe://prod/agent/g2', team: 'finance' }, 'big'),
  ];
  const r = diffAgainstTrail(OLD2.compiled, NEW2.compiled, events);
  const flag = '  [arguments not in the trail: replayed without them]';
  assert.deepEqual(r.lines.map((l) => l.split('\n')[0]), [
    'ann  model big: allow (policy "fin" models.allow[1]) -> deny (default deny)  x2, last t3',
    'ann  tool crm.accounts read: allow (policy "fin" tools[0]) -> deny (default deny)  x1, last t1',
    `ann  tool fs ls: deny (default deny) -> allow (policy "fin" tools[2])  x1, last t5${flag}`,
    `ann  tool notes add_note: allow (policy "fin" tools[1]) -> deny (policy "fin" tools[0])  x1, last t4${flag}`,
    'spiffe://prod/agent/ann  tool fs ls: deny (default deny) -> allow (policy "fin" tools[2])  x1, last t6',
    'spiffe://prod/agent/g1  model big: allow (policy "fin" models.allow[1]) -> deny (default deny)  x1, last t7',
    'spiffe://prod/agent/g2  model big: allow (policy "fin" models.allow[1]) -> deny (default deny)  x1, last t8',
    '8 of 8 recorded decisions would change (7 distinct: 6 allow->deny, 2 deny->allow)',
  ]);
  assert.equal(r.lines[3].split('\n')[1], '    reason now: policy "fin" tools[0] condition `args.x == 1` could not be evaluated (No such key: x); denied because conditions fail closed');
  assert.equal(r.notReproduced, 0);
  // Kept arguments are replayed: n 9 exceeds NEW's max 1, so the denial stays a denial.
  assert.deepEqual(diffAgainstTrail(OLD2.compiled, NEW2.compiled, [toolDecision(9, 't9', { resource: 'fs', action: 'ls', args: { n: 9 }, ...denied })]).lines, ['0 of 1 recorded decisions would change']);
});

test('policy diff: an HttpTool action no rule names is compared too; null arguments in the trail are no arguments', () => {
  const rules = (tools: unknown[]) => side(doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, tools }));
  // crm.accounts read and export come from the HttpTool alone here: the NEW rule names only "*".
  assert.deepEqual(diffCapabilities(rules([]), rules([{ resource: 'crm.accounts', actions: ['*'] }])).lines, [
    'ann  tool crm.accounts export: deny -> allow',
    'ann  tool crm.accounts read: deny -> allow',
    '2 capabilities would change across 3 agent(s), 2 model(s) and 6 tool action(s)',
  ]);
  const id = who();
  assert.equal(replayable({ type: 'decision', seq: 1, time: 't', identity: id, policy: { decision: 'deny' }, tool: { resource: 'crm', action: 'read', args: null } })!.args, undefined);
  assert.equal(replayable(toolDecision(2, 't', { args: null }))!.args, undefined);
  // A null model or a2a member is no model or A2A call (the event is a tool decision here).
  assert.equal(replayable({ type: 'decision', seq: 3, time: 't', identity: id, policy: { decision: 'deny' }, model: null, a2a: null, tool: { resource: 'crm', action: 'read' } })!.kind, 'tool');
});
