// `agents:` rules of an AgentPolicy: which A2A agents (and which of their skills) an identity
// may call. Same semantics as tool rules: an explicit deny wins, no match denies, a `when` that
// cannot be evaluated denies (fail closed). Compiled once per config; decided per call.
import type { AgentRuleSpec } from '../config/schema.ts';
import type { Decision } from './types.ts';
import type { CelVars, CompiledCondition, CelCompileError } from './cel.ts';
import { isCompileError } from './cel.ts';
import { clip } from '../lib/error-message.ts';

/** Default bound on an agent-to-agent chain (the caller's call is hop 1). */
export const DEFAULT_MAX_DELEGATION_DEPTH = 4;

export interface CompiledAgentRule {
  policy: string;
  index: number;
  /** "agents[0]" */
  path: string;
  /** Callee agent name, or '*' for any agent. */
  agent: string;
  /** Skills allowed (null: any skill). */
  skills: ReadonlySet<string> | null;
  /** Skills denied; '*' denies the agent outright. */
  deny: ReadonlySet<string>;
  when: CompiledCondition | null;
  /** Calls per minute this rule allows, per agent and per key (null: no rule rate). */
  rate: { rpm: number } | null;
  /** Calls per UTC day/month this rule allows, per agent and per key (null: no rule budget). */
  budget: { calls_per_day?: number; calls_per_month?: number } | null;
}

/** The parts of a policy set and compiled config this module needs (no import cycle with compile.ts). */
export interface AgentRuleSource {
  policies: ReadonlyArray<{ name: string; agents: readonly CompiledAgentRule[]; maxDelegationDepth: number | null }>;
  agent: { name: string; spiffeId: string };
  celIdentity: Readonly<Record<string, unknown>>;
}

type Compile = (source: string) => CompiledCondition | CelCompileError;

/** Compile one policy's agents rules; problems go to `issue` (path relative to spec). */
export function compileAgentRules(policy: string, rules: readonly AgentRuleSpec[] | undefined, compile: Compile, issue: (path: string, message: string) => void): CompiledAgentRule[] {
  return (rules ?? []).map((r, index) => {
    const path = `agents[${index}]`;
    if (r.skills && r.deny) {
      const both = r.skills.filter((s) => r.deny!.includes(s));
      if (both.length) issue(`${path}.deny`, `skill "${both[0]}" is both in skills and deny; remove it from one list`);
    }
    if (r.deny?.includes('*') && (r.rate || r.budget)) issue(path, 'rate and budget limit the calls a rule allows, and this rule denies the agent outright; move them to the rule that allows it');
    const budget = r.budget && (r.budget.calls_per_day !== undefined || r.budget.calls_per_month !== undefined) ? { ...r.budget } : null;
    if (r.budget && !budget) issue(`${path}.budget`, 'budget needs calls_per_day, calls_per_month or both');
    let when: CompiledCondition | null = null;
    if (r.when !== undefined) {
      const c = compile(r.when);
      if (isCompileError(c)) issue(`${path}.when`, `${c.message}${c.column ? ` at column ${c.column}` : ''} in \`${r.when}\``);
      else when = c;
    }
    return { policy, index, path, agent: r.agent, skills: r.skills ? new Set(r.skills) : null, deny: new Set(r.deny ?? []), when, rate: r.rate ? { rpm: r.rate.rpm } : null, budget };
  });
}

/** The smallest max_delegation_depth of the caller's policies (default 4). */
export function maxDelegationDepth(set: AgentRuleSource): number {
  let max = DEFAULT_MAX_DELEGATION_DEPTH;
  let set1 = false;
  for (const p of set.policies) {
    if (p.maxDelegationDepth === null) continue;
    max = set1 ? Math.min(max, p.maxDelegationDepth) : p.maxDelegationDepth;
    set1 = true;
  }
  return max;
}

type Make = (effect: Decision['effect'], policy: string, rule: number, rulePath: string, reason: string) => Decision;

/**
 * May the caller call `callee`'s `skill` ('' when the message names none)? Deny rules first
 * (any policy), then the first rule whose agent, skills and `when` hold.
 */
/** context: the CEL context, built only when a rule's `when` reads it (most rules have none). */
export function decideAgentCall(set: AgentRuleSource, callee: string, skill: string, context: () => Readonly<Record<string, unknown>>, make: Make): Decision {
  const rules: CompiledAgentRule[] = [];
  for (const p of set.policies) for (const r of p.agents) if (r.agent === callee || r.agent === '*') rules.push(r);
  const what = skill ? `skill "${clip(skill)}" of agent "${callee}"` : `agent "${callee}" (no skill named in message.metadata.skill)`;
  for (const r of rules) {
    if (r.deny.has('*') || (skill && r.deny.has(skill))) return make('deny', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} denies ${what}`);
  }
  let whenFalse: CompiledAgentRule | null = null;
  let skillMiss: CompiledAgentRule | null = null;
  let vars: CelVars | null = null;
  for (const r of rules) {
    // A rule without skills allows any skill it does not deny.
    if (r.skills && !(skill && r.skills.has(skill))) { skillMiss ??= r; continue; }
    if (r.when) {
      vars ??= { identity: set.celIdentity, resource: callee, action: skill, args: {}, context: context() };
      const ok = r.when.evaluate(vars);
      if (ok instanceof Error) return make('deny', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} condition \`${r.when.source}\` could not be evaluated (${ok.message}); denied because conditions fail closed`);
      if (!ok) { whenFalse ??= r; continue; }
    }
    return make('allow', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} allows ${what}`);
  }
  if (whenFalse) return make('deny', whenFalse.policy, whenFalse.index, whenFalse.path, `policy "${whenFalse.policy}" ${whenFalse.path} allows ${what} only when \`${whenFalse.when?.source}\`, which is false for this call`);
  if (skillMiss) {
    const allowed = [...(skillMiss.skills ?? [])].join(', ') || 'none';
    return make('deny', skillMiss.policy, skillMiss.index, skillMiss.path, `policy "${skillMiss.policy}" ${skillMiss.path} allows only skills ${allowed} of agent "${callee}", not ${skill ? `"${clip(skill)}"` : 'a message without message.metadata.skill'}`);
  }
  const who = set.agent.name ? `${set.agent.spiffeId} (agent "${set.agent.name}")` : set.agent.spiffeId;
  if (set.policies.length === 0) return make('deny', '', -1, '', `no AgentPolicy applies to ${who}, so calling ${what} is denied by default`);
  return make('deny', '', -1, '', `no policy has an agents rule allowing ${who} to call ${what}; add \`agents: [{ agent: ${callee} }]\` to its AgentPolicy`);
}

/** The agents rule a decision names (its rate and budget apply to the call). */
export function decidingAgentRule(set: AgentRuleSource, d: Pick<Decision, 'policy' | 'rule'>): CompiledAgentRule | undefined {
  if (!d.policy || d.rule < 0) return undefined;
  for (const p of set.policies) if (p.name === d.policy) return p.agents[d.rule];
  return undefined;
}

/**
 * Why this caller may not see `callee`'s card, i.e. could call no skill of it (a rule denies the agent outright, or no rule names
 * it), in the words a call's decision would use; null when some rule may let it call a skill.
 */
export function cardRefusal(set: AgentRuleSource, callee: string): string | null {
  let any = false;
  for (const p of set.policies) for (const r of p.agents) {
    if (r.agent !== callee && r.agent !== '*') continue;
    if (r.deny.has('*')) return `policy "${r.policy}" ${r.path} denies agent "${callee}" outright (deny: ["*"])`;
    any = true;
  }
  if (any) return null;
  const who = set.agent.name ? `${set.agent.spiffeId} (agent "${set.agent.name}")` : set.agent.spiffeId;
  return `no policy has an agents rule allowing ${who} to call agent "${callee}"; add \`agents: [{ agent: ${callee} }]\` to its AgentPolicy`;
}
