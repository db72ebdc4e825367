// `aam policy test` and `aam policy explain` (src/policy/test-runner.ts) as a policy author reads
// them, with no gateway: which identity a case names, what each malformed case says, the PASS and
// FAIL lines, and every line of an explanation (rules that apply, what each says, the decision).
// Written for the mutants `npm run mutate -- policy -- --mutate src/policy/test-runner.ts` found
// alive; a killed mutant costs about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigTexts } from '../src/config/load.ts';
import { compilePolicies, findAgent } from '../src/policy/compile.ts';
import { explain, requestOf, runPolicyTests } from '../src/policy/test-runner.ts';
import type { AgentRecord } from '../src/identity/types.ts';
import { doc, yaml } from './helpers/config-docs.ts';

const ANN = 'spiffe://prod/agent/ann';
const c = compilePolicies(parseConfigTexts([{ file: 't.yaml', text: yaml(
  doc('Provider', 'eu', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', region: 'eu' }),
  doc('Model', 'fast', { targets: [{ provider: 'eu', model: 'f' }, { provider: 'eu', model: 'g', region: 'us' }] }),
  doc('Model', 'big', { targets: [{ provider: 'eu', model: 'b' }] }),
  doc('Agent', 'ann', { workload: ANN, team: 'finance', environment: 'prod', labels: { tier: 'gold' } }),
  doc('Agent', 'bare', { workload: 'spiffe://prod/agent/bare' }),
  doc('Agent', 'helper', { workload: 'spiffe://prod/agent/helper', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
  doc('AgentPolicy', 'fin', { identity: { team: 'finance' }, models: { allow: ['fast', 'b*'], deny: ['bi*'], regions: ['eu'] },
    tools: [
      { resource: 'crm', actions: ['read'], args: { n: { max: 5 } } },
      { resource: 'crm', actions: ['write'], when: 'args.n > 1', approval: 'required' },
      { resource: 'crm', actions: ['read'], when: 'args.q == "x"' },
      { resource: 'crm', actions: [], deny: ['drop'] },
      { resource: 'crm', actions: ['list'] },
    ],
    agents: [{ agent: 'helper', skills: ['sum', 'draft'], deny: ['wipe'], when: 'context.hop == 1' }, { agent: '*' }] }),
  doc('AgentPolicy', 'gold', { identity: { labels: { tier: 'gold' } }, tools: [{ resource: 'db', actions: [], deny: ['*'] }] }),
) }]), 'v7');
const ann = findAgent(c, 'ann')!;

const header = [
  `identity: ${ANN} (agent "ann") [team=finance, environment=prod, labels.tier=gold]`,
  'policies that apply: fin (team=finance); gold (labels.tier=gold)',
];
const tool = (action: string, args: Record<string, unknown>, resource = 'crm') => explain({ kind: 'tool', agent: ann, resource, action, args }, c);

test('explain a tool call: what each rule on the resource says of it (covers, args, when, approval, explicit deny), then the decision, reason and config version', () => {
  assert.deepEqual(tool('read', { n: 9 }), [...header,
    'request: action "read" on crm with args {"n":9}',
    '  policy "fin" tools[0] (resource crm): covers "read"; args fail: args.n exceeds max 5',
    '  policy "fin" tools[1] (resource crm): does not cover "read" (actions: write)',
    '  policy "fin" tools[2] (resource crm): covers "read"; no args constraints; when `args.q == "x"` errors (No such key: q): denies',
    '  policy "fin" tools[3] (resource crm): does not cover "read" (actions: none)',
    '  policy "fin" tools[4] (resource crm): does not cover "read" (actions: list)',
    'decision: DENY by policy "fin" tools[2]',
    'reason: policy "fin" tools[2] condition `args.q == "x"` could not be evaluated (No such key: q); denied because conditions fail closed',
    'config version: v7',
  ]);
  assert.deepEqual(tool('read', { n: 1, q: 'x' }).slice(3, 6), [
    '  policy "fin" tools[0] (resource crm): covers "read"; args constraints hold',
    '  policy "fin" tools[1] (resource crm): does not cover "read" (actions: write)',
    '  policy "fin" tools[2] (resource crm): covers "read"; no args constraints; when `args.q == "x"` is true',
  ]);
  assert.equal(tool('read', { n: 1, q: 'y' })[5], '  policy "fin" tools[2] (resource crm): covers "read"; no args constraints; when `args.q == "x"` is false');
  assert.deepEqual(tool('read', { n: 1, q: 'x' }).slice(-3), ['decision: ALLOW by policy "fin" tools[0]', 'reason: policy "fin" tools[0] allows action "read" on crm', 'config version: v7']);
  assert.deepEqual(tool('write', { n: 2 }).slice(4, 5).concat(tool('write', { n: 2 }).slice(-3, -1)), [
    '  policy "fin" tools[1] (resource crm): covers "write"; no args constraints; when `args.n > 1` is true; approval required',
    'decision: APPROVAL_REQUIRED by policy "fin" tools[1]',
    'reason: policy "fin" tools[1] allows action "write" on crm only with approval',
  ]);
  assert.equal(tool('drop', {})[6], '  policy "fin" tools[3] (resource crm): denies "drop" explicitly');
  // deny: ['*'] denies every action explicitly.
  assert.deepEqual(tool('x', {}, 'db').slice(2), ['request: action "x" on db with args {}', '  policy "gold" tools[0] (resource db): denies "x" explicitly', 'decision: DENY by policy "gold" tools[0]', 'reason: policy "gold" tools[0] denies action "x" on db', 'config version: v7']);
  assert.deepEqual(tool('x', {}, 'none').slice(2, 5), ['request: action "x" on none with args {}', '  no tool rule matches this resource', 'decision: DENY (default deny)']);
});

test('explain a model and an A2A call: each policy\'s entry (with its glob), the regions and which targets may serve; each agents rule', () => {
  assert.deepEqual(explain({ kind: 'model', agent: ann, model: 'fast' }, c).slice(2), [
    'request: model "fast"',
    '  policy "fin" models.allow[0]: allows',
    '  policy "gold": does not mention this model',
    '  regions: eu (models.regions of fin)',
    '    target eu/f (eu): may serve',
    '    target eu/g (us): never used',
    'decision: ALLOW by policy "fin" models.allow[0]',
    'reason: policy "fin" models.allow[0] allows model "fast"; regions eu (models.regions of fin) leave targets eu/f',
    'config version: v7',
  ]);
  assert.deepEqual(explain({ kind: 'model', agent: ann, model: 'big' }, c).slice(3, 8), [
    '  policy "fin" models.deny[0] (glob "bi*"): denies',
    '  policy "fin" models.allow[1] (glob "b*"): allows',
    '  policy "gold": does not mention this model',
    '  regions: eu (models.regions of fin)',
    '    target eu/b (eu): may serve',
  ]);
  assert.deepEqual(explain({ kind: 'agent', agent: ann, callee: 'helper', skill: 'sum', context: { hop: 1 } }, c).slice(2), [
    'request: call skill "sum" of agent "helper" (A2A)',
    '  policy "fin" agents[0] (agent helper): skills sum, draft; deny wipe; when `context.hop == 1`',
    '  policy "fin" agents[1] (agent *): any skill',
    'decision: ALLOW by policy "fin" agents[0]',
    'reason: policy "fin" agents[0] allows skill "sum" of agent "helper"',
    'config version: v7',
  ]);
  // An identity with no attributes, no policy, no rule.
  assert.deepEqual(explain({ kind: 'agent', agent: findAgent(c, 'bare')!, callee: 'helper', skill: 'sum' }, c).slice(0, 5), [
    'identity: spiffe://prod/agent/bare (agent "bare")',
    'policies that apply: none',
    'request: call skill "sum" of agent "helper" (A2A)',
    '  no agents rule names this agent',
    'decision: DENY (default deny)',
  ]);
});

test('policy test: each case\'s identity (agent, workload, ad hoc identity), PASS and FAIL lines, every malformed case named, the summary', () => {
  const r = runPolicyTests(`
- { agent: ann, model: fast, expect: allow }
- { name: named, agent: ann, model: big, expect: deny, expect_policy: fin }
- { agent: ann, model: big, expect: deny, expect_policy: gold }
- { agent: ann, model: big, expect: allow }
- { agent: ghost, model: big, expect: deny }
- { workload: 'spiffe://prod/agent/ann', resource: crm, action: read, args: { n: 1, q: x }, expect: allow }
- { workload: 'spiffe://lab/x', resource: crm, action: read, expect: deny }
- { identity: { workload: 'spiffe://lab/y', team: finance }, callee: helper, skill: sum, context: { hop: 1 }, expect: allow }
- { identity: { spiffe_id: 'spiffe://lab/z', labels: { tier: gold } }, resource: db, action: read, expect: deny, expect_policy: gold }
- { identity: { team: finance }, model: fast, expect: allow }
- { model: fast, expect: allow }
- { agent: ann, expect: allow }
- { agent: ann, callee: helper, expect: allow }
- { agent: ann, callee: helper, context: 1, expect: deny }
- { agent: ann, resource: crm, action: read, args: [1], expect: deny }
- { agent: ann, resource: crm, action: read, context: x, expect: deny }
- { agent: ann, model: fast, expect: maybe }
- { agent: ann, model: fast }
- just text
- { agent: ann, resource: crm, action: write, args: { n: 2 }, expect: approval_required }
`, c);
  assert.deepEqual(r.lines, [
    'PASS case 1: ann model fast: allow (policy "fin" models.allow[0])',
    'PASS named: deny (policy "fin" models.deny[0])',
    'FAIL case 3: ann model big: expected the decision from policy "gold", got policy "fin" models.deny[0]: policy "fin" models.deny[0] denies model "big" for spiffe://prod/agent/ann (agent "ann")',
    'FAIL case 4: ann model big: expected allow, got deny (policy "fin" models.deny[0]): policy "fin" models.deny[0] denies model "big" for spiffe://prod/agent/ann (agent "ann")',
    'FAIL case 5: ghost model big: unknown agent "ghost" (defined: ann, bare, helper)',
    'PASS case 6: spiffe://prod/agent/ann read crm: allow (policy "fin" tools[0])',
    'PASS case 7: spiffe://lab/x read crm: deny (default deny)',
    'PASS case 8: spiffe://lab/y calls helper skill sum: allow (policy "fin" agents[0])',
    'PASS case 9: spiffe://lab/z read db: deny (policy "gold" tools[0])',
    'FAIL case 10: ? model fast: identity needs workload (a SPIFFE ID)',
    'FAIL case 11: ? model fast: needs agent (name), workload (SPIFFE ID) or identity { workload, team, ... }',
    'FAIL case 12: ann: needs model, or resource and action (or callee and skill for an A2A call)',
    'PASS case 13: ann calls helper: allow (policy "fin" agents[1])',
    'FAIL case 14: ann calls helper: context must be a mapping',
    'FAIL case 15: ann read crm: args must be a mapping',
    'FAIL case 16: ann read crm: context must be a mapping',
    'FAIL case 17: ann model fast: expect must be allow, deny or approval_required, not "maybe"',
    'FAIL case 18: ann model fast: expect must be allow, deny or approval_required (none given)',
    'FAIL case 19: "just text": a case must be a mapping',
    'PASS case 20: ann write crm: approval_required (policy "fin" tools[1])',
    '8 passed, 12 failed',
  ]);
  assert.deepEqual([r.passed, r.failed, r.results.length], [8, 12, 20]);
  assert.deepEqual([r.results[2].ok, r.results[2].expected, r.results[2].decision?.policy, r.results[4].expected, r.results[4].decision, r.results[18].expected], [false, 'deny', 'fin', 'deny', null, null]);
  assert.deepEqual([r.results[0].ok, r.results[0].index, r.results[0].decision?.effect], [true, 0, 'allow']);
  // A mapping with cases: is the same list.
  assert.deepEqual(runPolicyTests('cases:\n  - { agent: ann, model: fast, expect: allow }\n', c).lines, ['PASS case 1: ann model fast: allow (policy "fin" models.allow[0])', '1 passed, 0 failed']);
  assert.throws(() => runPolicyTests('cases: 1', c), { message: 'policy test file must be a YAML list of cases (or a mapping with "cases:")' });
  assert.throws(() => runPolicyTests('- [', c), (e: Error) => e.message.startsWith('policy test file is not valid YAML: ') && !e.message.includes('\n'));
});

test('policy test: a misspelt field or expect names the nearest real one (before: "needs agent (name)..." for agnet:, and a bare "expect must be ..." for alow)', () => {
  assert.deepEqual(runPolicyTests(`
- { agnet: ann, model: fast, expect: deny }
- { agent: ann, model: fast, expect: alow }
- { agent: ann, model: fast, expect: allow, colour: blue }
`, c).lines, [
    'FAIL case 1: ? model fast: unknown field "agnet" (did you mean agent?); a case has name, agent, workload, identity, model, resource, action, args, callee, skill, context, expect, expect_policy',
    'FAIL case 2: ann model fast: expect must be allow, deny or approval_required, not "alow" (did you mean allow?)',
    'FAIL case 3: ann model fast: unknown field "colour"; a case has name, agent, workload, identity, model, resource, action, args, callee, skill, context, expect, expect_policy',
    '0 passed, 3 failed',
  ]);
});

test('policy test: the agents a run is given (e.g. a fleet\'s registry) come before the config\'s, for names and workloads', () => {
  const moved: AgentRecord = { ...ann, team: 'sales', labels: {} };
  const agents = new Map([['ann', moved]]);
  const r = runPolicyTests(`
- { agent: ann, model: fast, expect: deny }
- { workload: '${ANN}', model: fast, expect: deny }
- { agent: bare, model: fast, expect: deny }
- { agent: nobody, model: fast, expect: deny }
`, c, agents);
  assert.deepEqual(r.lines, [
    'PASS case 1: ann model fast: deny (default deny)',
    `PASS case 2: ${ANN} model fast: deny (default deny)`,
    'PASS case 3: bare model fast: deny (default deny)',
    'FAIL case 4: nobody model fast: unknown agent "nobody" (defined: ann)',
    '3 passed, 1 failed',
  ]);
  assert.equal(runPolicyTests('- { agent: nobody, model: fast, expect: deny }', c, new Map()).lines[0], 'FAIL case 1: nobody model fast: unknown agent "nobody" (defined: none)');
  // requestOf is what `aam policy explain` builds: an ad hoc identity's labels are text.
  const req = requestOf({ identity: { workload: 'spiffe://lab/agent/q', name: 'q', owner: 'o', environment: 'dev', deployment: 'd', labels: { n: 1 } }, resource: 'crm', action: 'read' }, c);
  assert.deepEqual(req, { kind: 'tool', agent: { name: 'q', spiffeId: 'spiffe://lab/agent/q', trustDomain: 'lab', owner: 'o', team: undefined, environment: 'dev', deployment: 'd', labels: { n: '1' } }, resource: 'crm', action: 'read', args: {}, context: undefined });
  assert.equal((requestOf({ identity: { workload: 'spiffe://lab/agent/q', agent: 'a', name: 'q' }, model: 'fast' }, c).agent as AgentRecord).name, 'a');
});

// A second config for what the first leaves out: an identity with owner and deployment, a policy that
// only denies a model, two policies whose regions do not meet, a target without a region, agents
// rules for other agents, lists of more than one action or denied skill.
const CAT = 'spiffe://prod/agent/cat';
const c2 = compilePolicies(parseConfigTexts([{ file: 't2.yaml', text: yaml(
  doc('Provider', 'eu', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:1/v1', region: 'eu' }),
  doc('Provider', 'plain', { type: 'openai-compatible', baseUrl: 'http://127.0.0.1:2/v1' }),
  doc('Model', 'fast', { targets: [{ provider: 'eu', model: 'f' }, { provider: 'plain', model: 'p' }] }),
  doc('Agent', 'cat', { workload: CAT, team: 'ops', owner: 'lee', deployment: 'blue', labels: { tier: 'x' } }),
  doc('Agent', 'dog', { workload: 'spiffe://prod/agent/dog', team: 'ops' }),
  doc('Agent', 'bare', { workload: 'spiffe://prod/agent/bare' }),
  doc('Agent', 'helper', { workload: 'spiffe://prod/agent/helper', a2a: { url: 'http://127.0.0.1:9/a2a' } }),
  doc('Agent', 'other', { workload: 'spiffe://prod/agent/other', a2a: { url: 'http://127.0.0.1:8/a2a' } }),
  doc('AgentPolicy', 'a', { identity: { team: 'ops' }, models: { deny: ['fast'], regions: ['eu', 'us'] },
    tools: [{ resource: 'crm', actions: ['read', 'list'] }], agents: [{ agent: 'other' }, { agent: 'helper', deny: ['wipe', 'drop'] }] }),
  doc('AgentPolicy', 'b', { identity: { labels: { tier: 'x' } }, models: { allow: ['fast'], regions: ['ap'] } }),
) }]), 'v8');

test('explain: owner and deployment, a policy that only denies, regions that do not meet or list several, targets without a region, only the agents rules naming the callee', () => {
  const cat = findAgent(c2, 'cat')!;
  const dog = findAgent(c2, 'dog')!;
  assert.deepEqual(explain({ kind: 'model', agent: cat, model: 'fast' }, c2), [
    `identity: ${CAT} (agent "cat") [team=ops, owner=lee, deployment=blue, labels.tier=x]`,
    'policies that apply: a (team=ops); b (labels.tier=x)',
    'request: model "fast"',
    '  policy "a" models.deny[0]: denies',
    '  policy "b" models.allow[0]: allows',
    '  regions: none (models.regions of a, b)',
    '    target eu/f (eu): never used',
    '    target plain/p (no region): never used',
    'decision: DENY by policy "a" models.deny[0]',
    `reason: policy "a" models.deny[0] denies model "fast" for ${CAT} (agent "cat")`,
    'config version: v8',
  ]);
  // One policy's regions, listed; a model no route or catalog knows has no targets to list.
  assert.deepEqual(explain({ kind: 'model', agent: dog, model: 'nope' }, c2).slice(2, 6), [
    'request: model "nope"',
    '  policy "a": does not mention this model',
    '  regions: eu, us (models.regions of a)',
    'decision: DENY (default deny)',
  ]);
  // No policy, so no regions line.
  assert.deepEqual(explain({ kind: 'model', agent: findAgent(c2, 'bare')!, model: 'fast' }, c2).slice(1, 4), ['policies that apply: none', 'request: model "fast"', 'decision: DENY (default deny)']);
  assert.deepEqual(explain({ kind: 'agent', agent: cat, callee: 'helper', skill: 'sum' }, c2).slice(2, 5), [
    'request: call skill "sum" of agent "helper" (A2A)',
    '  policy "a" agents[1] (agent helper): any skill; deny wipe, drop',
    'decision: ALLOW by policy "a" agents[1]',
  ]);
  assert.equal(explain({ kind: 'tool', agent: cat, resource: 'crm', action: 'write', args: {} }, c2)[3], '  policy "a" tools[0] (resource crm): does not cover "write" (actions: read, list)');
});

test('explain what `aam policy explain` builds: an unknown workload or an ad hoc identity names no agent, keeps only text attributes, and an A2A call without a skill asks for ""', () => {
  const first = (cse: Record<string, unknown>) => explain(requestOf(cse, c2), c2);
  assert.deepEqual(first({ workload: 'spiffe://lab/w', model: 'fast' }).slice(0, 2), ['identity: spiffe://lab/w', 'policies that apply: none']);
  assert.deepEqual(first({ identity: { workload: 'spiffe://lab/w', team: 'ops' }, model: 'fast' }).slice(0, 2), ['identity: spiffe://lab/w [team=ops]', 'policies that apply: a (team=ops)']);
  // A number is not a team (YAML `team: 5`), nor a workload: spiffe_id is used then.
  assert.deepEqual(first({ identity: { workload: 7, spiffe_id: 'spiffe://lab/v', team: 5, owner: true }, model: 'fast' }).slice(0, 2), ['identity: spiffe://lab/v', 'policies that apply: none']);
  assert.equal(first({ agent: 'cat', callee: 'helper' })[2], 'request: call skill "" of agent "helper" (A2A)');
  assert.equal(first({ agent: 'cat', callee: 'helper', skill: 5 })[2], 'request: call skill "" of agent "helper" (A2A)');
});

test('policy test: a tool case needs both resource and action, an empty or null case is no mapping, an empty file no list, and a YAML error is its first line', () => {
  assert.deepEqual(runPolicyTests(`
- { agent: cat, resource: crm, expect: deny }
- { agent: cat, action: read, expect: deny }
- ~
- { agent: cat, resource: crm, action: read, expect: allow }
`, c2).lines, [
    'FAIL case 1: cat crm: needs model, or resource and action (or callee and skill for an A2A call)',
    'FAIL case 2: cat read: needs model, or resource and action (or callee and skill for an A2A call)',
    'FAIL case 3: null: a case must be a mapping',
    'PASS case 4: cat read crm: allow (policy "a" tools[0])',
    '1 passed, 3 failed',
  ]);
  assert.throws(() => runPolicyTests('', c2), { message: 'policy test file must be a YAML list of cases (or a mapping with "cases:")' });
  assert.throws(() => runPolicyTests('- [', c2), { message: 'policy test file is not valid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 1, column 4:' });
});
