// `aam policy diff OLD NEW [--against-trail 7d]`: what a config change would change, before it
// ships. With a trail, every recorded decision (model calls, tool calls, A2A calls) is decided
// again under OLD and NEW, offline, with the same decide() the gateway runs; without one, each
// agent's capabilities (models it may use, tool actions it may call) are compared. Pure: the CLI
// loads configs and reads the trail.
import type { AgentRecord } from '../identity/types.ts';
import type { ConfigSet } from '../config/schema.ts';
import type { AccessRequest, Decision, Effect } from './types.ts';
import { rulesFor, setFor, trustDomainOfId, type CompiledPolicies } from './compile.ts';
import { decide } from './decide.ts';
import { toolVisibleIn } from './decide.ts';
import { hasWildcard } from '../config/glob.ts';
import { isObj, str } from '../lib/json.ts';

/** One side of the diff: the loaded config and its compiled policies. */
export interface DiffSide { config: ConfigSet; compiled: CompiledPolicies }

type Obj = Record<string, unknown>;

/** A decision as the trail recorded it, ready to be decided again. */
export interface Replayable {
  seq: number;
  time: string;
  /** Agent name ('' when the identity was not a configured Agent). */
  agent: string;
  spiffeId: string;
  /** The identity's attributes as recorded (used when a config does not define the agent). */
  recorded: Pick<AgentRecord, 'owner' | 'team' | 'environment' | 'deployment'>;
  kind: 'model' | 'tool' | 'agent';
  /** Model route, tool resource, or callee agent. */
  target: string;
  /** Tool action or A2A skill ('' for models). */
  action: string;
  /** Tool arguments when the trail kept them (audit.record: [arguments]); else undefined. */
  args?: Obj;
  context?: Obj;
  /** The effect the gateway recorded at the time. */
  effect: string;
}

/** Decisions recorded in audit events; events that carry none (outcomes, admin...) give null. */
export function replayable(e: Obj): Replayable | null {
  const type = str(e.type);
  const seq = Number(e.seq ?? 0);
  const time = str(e.time) ?? '';
  if (type === 'decision' || type === 'model_call' || type === 'a2a_call') {
    const id = isObj(e.identity) ? e.identity : undefined;
    const p = isObj(e.policy) ? e.policy : undefined;
    if (!id || !p || typeof p.decision !== 'string') return null;
    const who = { seq, time, agent: str(id.agent) ?? '', spiffeId: str(id.spiffe_id) ?? '', recorded: attrs(id), effect: p.decision };
    if (isObj(e.model) && typeof e.model.route === 'string') return { ...who, kind: 'model', target: e.model.route, action: '' };
    if (isObj(e.a2a) && typeof e.a2a.agent === 'string') return { ...who, kind: 'agent', target: e.a2a.agent, action: str(e.a2a.skill) ?? '' };
    const t = isObj(e.tool) ? e.tool : undefined;
    if (t && typeof t.resource === 'string' && typeof t.action === 'string') return { ...who, kind: 'tool', target: t.resource, action: t.action, args: isObj(t.args) ? t.args : undefined };
    return null;
  }
  if (type === 'tool.decision') {
    const d = isObj(e.decision) ? e.decision : undefined;
    if (!d || typeof d.effect !== 'string' || typeof e.resource !== 'string' || typeof e.action !== 'string') return null;
    // The tool plane's own context keys, so `when` conditions see what they saw at the time.
    const context: Obj = { time, request_id: e.request_id, environment: e.environment, plane: e.plane };
    if (typeof e.server === 'string') context.server = e.server;
    if (typeof e.tool === 'string') context.tool = e.tool;
    return {
      seq, time, agent: str(e.agent) ?? '', spiffeId: str(e.spiffe_id) ?? '', recorded: attrs(e), effect: d.effect,
      kind: 'tool', target: e.resource, action: e.action, args: isObj(e.args) ? e.args : undefined, context,
    };
  }
  return null;
}

function attrs(o: Obj): Replayable['recorded'] {
  return { owner: str(o.owner), team: str(o.team), environment: str(o.environment), deployment: str(o.deployment) };
}

/** The agent as this config knows it now (its current attributes), else as the trail recorded it. */
function agentIn(r: Replayable, c: CompiledPolicies): AgentRecord {
  const byName = r.agent ? c.agents.get(r.agent) : undefined;
  if (byName) return byName;
  const named = c.bySpiffe.get(r.spiffeId);
  const bySpiffe = named === undefined ? undefined : c.agents.get(named);
  if (bySpiffe) return bySpiffe;
  return { name: r.agent, spiffeId: r.spiffeId, trustDomain: trustDomainOfId(r.spiffeId), ...r.recorded, labels: {} };
}

function requestIn(r: Replayable, c: CompiledPolicies): AccessRequest {
  const agent = agentIn(r, c);
  if (r.kind === 'model') return { kind: 'model', agent, model: r.target };
  if (r.kind === 'agent') return { kind: 'agent', agent, callee: r.target, skill: r.action };
  return { kind: 'tool', agent, resource: r.target, action: r.action, args: r.args ?? {}, context: r.context };
}

/** Does a decision on this tool resource depend on arguments or conditions the trail did not keep? */
function argsUnknown(r: Replayable, sides: readonly CompiledPolicies[]): boolean {
  if (r.kind !== 'tool' || r.args !== undefined) return false;
  return sides.some((c) => rulesFor(setFor(agentIn(r, c), c), r.target).some((rule) => rule.args.length > 0 || rule.when !== null));
}

export interface DecisionChange {
  agent: string;
  kind: Replayable['kind'];
  target: string;
  action: string;
  old: Decision;
  new: Decision;
  /** How many recorded decisions changed this way, and when the first and last were made. */
  count: number;
  first: string;
  last: string;
  /** The tool decision depends on arguments the trail did not keep: replayed with none. */
  argsUnknown: boolean;
}

export interface TrailDiff {
  replayed: number;
  changed: number;
  changes: DecisionChange[];
  /** Recorded effects that OLD does not reproduce (the trail was made under another config). */
  notReproduced: number;
  lines: string[];
}

const by = (d: Decision): string => (d.policy ? `policy "${d.policy}" ${d.rulePath ?? `rule ${d.rule}`}` : 'default deny');
const what = (c: Pick<DecisionChange, 'kind' | 'target' | 'action'>): string =>
  c.kind === 'model' ? `model ${c.target}` : c.kind === 'agent' ? `call agent ${c.target}${c.action ? ` skill ${c.action}` : ''}` : `tool ${c.target} ${c.action}`;

/** Replay recorded decisions (any order) under OLD and NEW; list the ones whose effect changes (a new deciding rule with the same effect is no change a caller sees), grouped by old and new deciding rule. */
export function diffAgainstTrail(old: CompiledPolicies, next: CompiledPolicies, events: Iterable<Obj>): TrailDiff {
  const groups = new Map<string, DecisionChange>();
  let replayed = 0;
  let notReproduced = 0;
  for (const e of events) {
    const r = replayable(e);
    if (!r) continue;
    replayed++;
    const o = decide(requestIn(r, old), old);
    const n = decide(requestIn(r, next), next);
    if (o.effect !== r.effect) notReproduced++;
    if (o.effect === n.effect) continue;
    const key = JSON.stringify([r.agent || r.spiffeId, r.kind, r.target, r.action, o.effect, n.effect, o.policy, o.rulePath, n.policy, n.rulePath]);
    const g = groups.get(key);
    if (g) {
      g.count++;
      if (r.time < g.first) g.first = r.time;
      if (r.time > g.last) g.last = r.time;
      g.argsUnknown ||= argsUnknown(r, [old, next]);
      continue;
    }
    groups.set(key, { agent: r.agent || r.spiffeId, kind: r.kind, target: r.target, action: r.action, old: o, new: n, count: 1, first: r.time, last: r.time, argsUnknown: argsUnknown(r, [old, next]) });
  }
  const changes = [...groups.values()].sort((a, b) => a.agent.localeCompare(b.agent) || what(a).localeCompare(what(b)));
  const changed = changes.reduce((s, c) => s + c.count, 0);
  const lines = changes.map((c) =>
    `${c.agent}  ${what(c)}: ${c.old.effect} (${by(c.old)}) -> ${c.new.effect} (${by(c.new)})  x${c.count}, last ${c.last}${c.argsUnknown ? '  [arguments not in the trail: replayed without them]' : ''}\n    reason now: ${c.new.reason}`);
  const tally = new Map<string, number>();
  for (const c of changes) tally.set(`${c.old.effect}->${c.new.effect}`, (tally.get(`${c.old.effect}->${c.new.effect}`) ?? 0) + c.count);
  const kinds = [...tally].map(([k, v]) => `${v} ${k}`).join(', ');
  lines.push(`${changed} of ${replayed} recorded decisions would change${changed ? ` (${changes.length} distinct: ${kinds})` : ''}`);
  if (notReproduced) lines.push(`note: OLD does not reproduce ${notReproduced} recorded decision(s); the trail was partly made under another config`);
  return { replayed, changed, changes, notReproduced, lines };
}

export interface CapabilityChange {
  agent: string;
  kind: 'model' | 'tool';
  target: string;
  action: string;
  old: Effect | 'none';
  new: Effect | 'none';
}

export interface StaticDiff { changes: CapabilityChange[]; lines: string[] }

/** (resource, action) pairs either config names: HttpTool actions, McpServer tool mappings, and rules with concrete names. */
function toolPairs(sides: readonly DiffSide[]): Array<[string, string]> {
  const seen = new Set<string>();
  const add = (r: string, a: string) => { if (!hasWildcard(r) && !hasWildcard(a)) seen.add(JSON.stringify([r, a])); };
  for (const { config, compiled } of sides) {
    for (const t of config.httpTools.values()) for (const a of Object.keys(t.spec.actions)) add(t.spec.resource, a);
    for (const s of config.mcpServers.values()) for (const [name, m] of Object.entries(s.spec.tools ?? {})) add(m.resource ?? s.spec.resource ?? s.name, m.action ?? name);
    for (const p of compiled.policies) for (const rule of p.tools) for (const a of [...rule.actions, ...rule.deny]) add(rule.resource, a);
  }
  return [...seen].map((s) => JSON.parse(s) as [string, string]).sort((a, b) => a[0].localeCompare(b[0]) || a[1].localeCompare(b[1]));
}

/** Without a trail: what each configured agent may do (models, tool actions) under OLD and under NEW. */
export function diffCapabilities(old: DiffSide, next: DiffSide): StaticDiff {
  const agents = [...new Set([...old.compiled.agents.keys(), ...next.compiled.agents.keys()])].sort();
  const models = [...new Set([...old.compiled.models, ...next.compiled.models])].sort();
  const pairs = toolPairs([old, next]);
  const changes: CapabilityChange[] = [];
  const modelEffect = (c: CompiledPolicies, name: string, m: string): Effect | 'none' => {
    const a = c.agents.get(name);
    return a && c.modelSet.has(m) ? decide({ kind: 'model', agent: a, model: m }, c).effect : 'none';
  };
  // Tools: "allow" when some arguments could be allowed (as tools/list shows it), else deny.
  const toolEffect = (c: CompiledPolicies, name: string, r: string, act: string): Effect | 'none' => {
    const a = c.agents.get(name);
    return a ? (toolVisibleIn(setFor(a, c), r, act) ? 'allow' : 'deny') : 'none';
  };
  for (const name of agents) {
    for (const m of models) {
      const o = modelEffect(old.compiled, name, m), n = modelEffect(next.compiled, name, m);
      if (o !== n) changes.push({ agent: name, kind: 'model', target: m, action: '', old: o, new: n });
    }
    for (const [r, act] of pairs) {
      const o = toolEffect(old.compiled, name, r, act), n = toolEffect(next.compiled, name, r, act);
      if (o !== n) changes.push({ agent: name, kind: 'tool', target: r, action: act, old: o, new: n });
    }
  }
  const lines = changes.map((c) => `${c.agent}  ${what(c)}: ${c.old} -> ${c.new}`);
  lines.push(`${changes.length} capabilit${changes.length === 1 ? 'y' : 'ies'} would change across ${agents.length} agent(s), ${models.length} model(s) and ${pairs.length} tool action(s)`);
  return { changes, lines };
}
