// `aam policy test FILE` and `aam policy explain`: run a YAML table of cases against the compiled
// policies and say which rule decided and why. Returns text lines; printing and exit codes are
// the CLI's job (exit non-zero when failed > 0).
import { createRequire } from 'node:module';
import type { AgentRecord } from '../identity/types.ts';
import type { AccessRequest, Decision, Effect } from './types.ts';
import { setFor, rulesFor, trustDomainOfId, modelEntry, type CompiledPolicies, type ModelGlob } from './compile.ts';
import { catalogTargets } from '../config/catalog.ts';
import { decide, celContext, shadowDeny, who } from './decide.ts';
import { checkArgs } from './args.ts';
import type { CelVars } from './cel.ts';
import { isObj } from '../lib/json.ts';
import { UsageError } from '../lib/usage-error.ts';
import { nearest } from '../lib/nearest.ts';

// yaml loads on the first test table read (`aam policy test`), not in a gateway whose console
// only explains decisions with this module (~0.3 MB of module source kept for good otherwise).
const parseYaml = (text: string): unknown => (createRequire(import.meta.url)('yaml') as typeof import('yaml')).parse(text);

export interface PolicyTestResult {
  index: number;
  name: string;
  ok: boolean;
  expected: Effect | null;
  decision: Decision | null;
  /** One line: PASS/FAIL, name, what was expected and what happened. */
  line: string;
}

export interface PolicyTestReport {
  passed: number;
  failed: number;
  results: PolicyTestResult[];
  /** Every result line plus a summary line. */
  lines: string[];
}

type Obj = Record<string, unknown>;
const EFFECTS: readonly string[] = ['allow', 'deny', 'approval_required'];

class CaseError extends Error {}

function identityOf(c: Obj, compiled: CompiledPolicies, agents: ReadonlyMap<string, AgentRecord>): AgentRecord {
  if (typeof c.agent === 'string') {
    const a = agents.get(c.agent) ?? compiled.agents.get(c.agent);
    if (!a) throw new CaseError(`unknown agent "${c.agent}" (defined: ${[...agents.keys()].join(', ') || 'none'})`);
    return a;
  }
  if (typeof c.workload === 'string') {
    const name = compiled.bySpiffe.get(c.workload);
    const a = name === undefined ? undefined : agents.get(name) ?? compiled.agents.get(name);
    return a ?? { name: '', spiffeId: c.workload, trustDomain: trustDomainOfId(c.workload), labels: {} };
  }
  if (isObj(c.identity)) {
    const i = c.identity;
    const s = (k: string) => (typeof i[k] === 'string' ? (i[k] as string) : undefined);
    const spiffeId = s('workload') ?? s('spiffe_id');
    if (!spiffeId) throw new CaseError('identity needs workload (a SPIFFE ID)');
    const labels: Record<string, string> = {};
    if (isObj(i.labels)) for (const [k, v] of Object.entries(i.labels)) labels[k] = String(v);
    return { name: s('agent') ?? s('name') ?? '', spiffeId, trustDomain: trustDomainOfId(spiffeId), owner: s('owner'), team: s('team'), environment: s('environment'), deployment: s('deployment'), labels };
  }
  throw new CaseError('needs agent (name), workload (SPIFFE ID) or identity { workload, team, ... }');
}

/** Build the AccessRequest a case describes (shared with explain). */
/** A name the request gives: an empty one (a form left blank) names nothing and is not decided as "". */
const named = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';

export function requestOf(c: Obj, compiled: CompiledPolicies, agents: ReadonlyMap<string, AgentRecord> = compiled.agents): AccessRequest {
  const agent = identityOf(c, compiled, agents);
  if (named(c.model)) return { kind: 'model', agent, model: c.model };
  if (named(c.callee)) {
    if (c.context !== undefined && !isObj(c.context)) throw new CaseError('context must be a mapping');
    return { kind: 'agent', agent, callee: c.callee, skill: typeof c.skill === 'string' ? c.skill : '', context: c.context as Obj | undefined };
  }
  if (named(c.resource) && named(c.action)) {
    if (c.args !== undefined && !isObj(c.args)) throw new CaseError('args must be a mapping');
    if (c.context !== undefined && !isObj(c.context)) throw new CaseError('context must be a mapping');
    return { kind: 'tool', agent, resource: c.resource, action: c.action, args: (c.args as Obj | undefined) ?? {}, context: c.context as Obj | undefined };
  }
  throw new CaseError('needs model, or resource and action (or callee and skill for an A2A call)');
}

/** A case in a few words for its PASS/FAIL line; only what it gives (before: "ann undefined undefined"). */
function describe(raw: unknown): string {
  if (!isObj(raw)) return JSON.stringify(raw) ?? String(raw);
  const c = raw;
  const subject = typeof c.agent === 'string' ? c.agent : typeof c.workload === 'string' ? c.workload : isObj(c.identity) ? String(c.identity.workload ?? c.identity.spiffe_id ?? '?') : '?';
  if (typeof c.callee === 'string') return `${subject} calls ${c.callee}${typeof c.skill === 'string' ? ` skill ${c.skill}` : ''}`;
  if (typeof c.model === 'string') return `${subject} model ${c.model}`;
  return [subject, c.action, c.resource].filter((w) => typeof w === 'string').join(' ');
}

/** The fields a case may have: any other is a typo that would otherwise change the case unseen (`agnet:`). */
const CASE_FIELDS = ['name', 'agent', 'workload', 'identity', 'model', 'resource', 'action', 'args', 'callee', 'skill', 'context', 'expect', 'expect_policy'];

export function runPolicyTests(casesYamlText: string, compiled: CompiledPolicies, agents: ReadonlyMap<string, AgentRecord> = compiled.agents, file = 'policy test file'): PolicyTestReport {
  let doc: unknown;
  try { doc = parseYaml(casesYamlText); } catch (e) {
    throw new UsageError(`${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const list = Array.isArray(doc) ? doc : isObj(doc) && Array.isArray(doc.cases) ? doc.cases : null;
  if (!list) throw new UsageError(`${file} must be a YAML list of cases (or a mapping with "cases:")`);
  const results: PolicyTestResult[] = list.map((raw: unknown, index: number) => runCase(raw, index, compiled, agents));
  const failed = results.filter((r) => !r.ok).length;
  const lines = results.map((r) => r.line);
  lines.push(`${results.length - failed} passed, ${failed} failed`);
  return { passed: results.length - failed, failed, results, lines };
}

function runCase(raw: unknown, index: number, compiled: CompiledPolicies, agents: ReadonlyMap<string, AgentRecord>): PolicyTestResult {
  const c = isObj(raw) ? raw : {};
  const name = typeof c.name === 'string' ? c.name : `case ${index + 1}: ${describe(raw)}`;
  const fail = (msg: string, expected: Effect | null = null, decision: Decision | null = null): PolicyTestResult =>
    ({ index, name, ok: false, expected, decision, line: `FAIL ${name}: ${msg}` });
  if (!isObj(raw)) return fail('a case must be a mapping');
  const unknown = Object.keys(c).filter((k) => !CASE_FIELDS.includes(k));
  if (unknown.length) return fail(unknown.map((k) => { const n = nearest(k, CASE_FIELDS); return `unknown field "${k}"${n ? ` (did you mean ${n}?)` : ''}`; }).join(', ') + `; a case has ${CASE_FIELDS.join(', ')}`);
  if (typeof c.expect !== 'string' || !EFFECTS.includes(c.expect)) {
    const near = typeof c.expect === 'string' ? nearest(c.expect, EFFECTS) : null;
    return fail(`expect must be allow, deny or approval_required${c.expect === undefined ? ' (none given)' : `, not ${JSON.stringify(c.expect)}${near ? ` (did you mean ${near}?)` : ''}`}`);
  }
  const expected = c.expect as Effect;
  let d: Decision;
  try { d = decide(requestOf(c, compiled, agents), compiled); } catch (e) {
    if (e instanceof CaseError) return fail(e.message, expected);
    throw e;
  }
  const by = d.policy ? `policy "${d.policy}"${d.rulePath ? ` ${d.rulePath}` : ''}` : 'default deny';
  if (d.effect !== expected) return fail(`expected ${expected}, got ${d.effect} (${by}): ${d.reason}`, expected, d);
  if (typeof c.expect_policy === 'string' && c.expect_policy !== d.policy) {
    return fail(`expected the decision from policy "${c.expect_policy}", got ${by}: ${d.reason}`, expected, d);
  }
  return { index, name, ok: true, expected, decision: d, line: `PASS ${name}: ${d.effect} (${by})` };
}

/** Every rule that applies to the request and what it said, then the decision. */
export function explain(req: AccessRequest, compiled: CompiledPolicies): string[] {
  const set = setFor(req.agent, compiled);
  const a = set.agent;
  const attrs = [['team', a.team], ['environment', a.environment], ['owner', a.owner], ['deployment', a.deployment]]
    .filter(([, v]) => v).map(([k, v]) => `${k}=${v}`).concat(Object.entries(a.labels).map(([k, v]) => `labels.${k}=${v}`));
  const lines = [`identity: ${who(a)}${attrs.length ? ` [${attrs.join(', ')}]` : ''}`];
  if (set.policies.length === 0) lines.push('policies that apply: none');
  else lines.push(`policies that apply: ${set.policies.map((p) => `${p.name} (${p.subject.describe})`).join('; ')}`);
  const watching = compiled.shadow ? setFor(req.agent, compiled.shadow).policies.filter((p) => !set.policies.some((e) => e.name === p.name)) : [];
  if (watching.length) lines.push(`audit-mode policies that apply (shadow: they decide, record and never block): ${watching.map((p) => `${p.name} (${p.subject.describe})`).join('; ')}`);
  if (req.kind === 'model') {
    lines.push(`request: model "${req.model}"`);
    for (const p of set.policies) {
      const di = modelEntry(p.modelDeny, p.modelDenyGlobs, req.model);
      const ai = modelEntry(p.modelAllow, p.modelAllowGlobs, req.model);
      const glob = (globs: readonly ModelGlob[], i: number) => { const g = globs.find((x) => x.index === i); return g ? ` (glob "${g.pattern}")` : ''; };
      if (di !== undefined) lines.push(`  policy "${p.name}" models.deny[${di}]${glob(p.modelDenyGlobs, di)}: denies`);
      if (ai !== undefined) lines.push(`  policy "${p.name}" models.allow[${ai}]${glob(p.modelAllowGlobs, ai)}: allows`);
      if (di === undefined && ai === undefined) lines.push(`  policy "${p.name}": does not mention this model`);
    }
    if (set.regions) {
      const targets = compiled.routeFacts.get(req.model) ?? catalogTargets(compiled.catalog, req.model) ?? [];
      lines.push(`  regions: ${[...set.regions.allow].join(', ') || 'none'} (models.regions of ${set.regions.policies.join(', ')})`);
      for (const t of targets) lines.push(`    target ${t.label} (${t.region ?? 'no region'}): ${t.region !== undefined && set.regions.allow.has(t.region) ? 'may serve' : 'never used'}`);
    }
  } else if (req.kind === 'agent') {
    lines.push(`request: call skill "${req.skill}" of agent "${req.callee}" (A2A)`);
    const rules = set.policies.flatMap((p) => p.agents).filter((r) => r.agent === req.callee || r.agent === '*');
    if (rules.length === 0) lines.push('  no agents rule names this agent');
    for (const r of rules) {
      const parts = [r.skills ? `skills ${[...r.skills].join(', ')}` : 'any skill', ...(r.deny.size ? [`deny ${[...r.deny].join(', ')}`] : []), ...(r.when ? [`when \`${r.when.source}\``] : [])];
      lines.push(`  policy "${r.policy}" ${r.path} (agent ${r.agent}): ${parts.join('; ')}`);
    }
  } else {
    lines.push(`request: action "${req.action}" on ${req.resource} with args ${JSON.stringify(req.args)}`);
    const rules = rulesFor(set, req.resource);
    if (rules.length === 0) lines.push('  no tool rule matches this resource');
    const args = req.args ?? {}; // a policy test always names its args (null is for tasks/* at run time)
    let vars: CelVars | null = null;
    for (const r of rules) {
      const head = `  policy "${r.policy}" ${r.path} (resource ${r.resource})`;
      if (r.denyAll || r.deny.has(req.action)) { lines.push(`${head}: denies "${req.action}" explicitly`); continue; }
      if (!r.anyAction && !r.actions.has(req.action)) { lines.push(`${head}: does not cover "${req.action}" (actions: ${[...r.actions].join(', ') || 'none'})`); continue; }
      const parts: string[] = [`covers "${req.action}"`];
      const why = r.args.length ? checkArgs(r.args, args) : null;
      parts.push(why === null ? (r.args.length ? 'args constraints hold' : 'no args constraints') : `args fail: ${why}`);
      if (r.when) {
        vars ??= { identity: set.celIdentity, resource: req.resource, action: req.action, args, context: celContext(req.context) };
        const ok = r.when.evaluate(vars);
        parts.push(ok instanceof Error ? `when \`${r.when.source}\` errors (${ok.message}): denies` : `when \`${r.when.source}\` is ${ok}`);
      }
      if (r.approval) parts.push('approval required');
      lines.push(`${head}: ${parts.join('; ')}`);
    }
  }
  const d = decide(req, compiled);
  lines.push(`decision: ${d.effect.toUpperCase()}${d.policy ? ` by policy "${d.policy}" ${d.rulePath ?? ''}`.trimEnd() : ' (default deny)'}`);
  lines.push(`reason: ${d.reason}`);
  const s = shadowDeny(req, compiled, d);
  if (s) lines.push(`shadow: would DENY by policy "${s.policy}" ${s.rulePath ?? ''} (mode: audit, recorded as would_deny, not enforced): ${s.reason}`);
  lines.push(`config version: ${d.configVersion}`);
  return lines;
}
