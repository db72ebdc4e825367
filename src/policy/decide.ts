// The decision function: pure, default deny, any explicit deny wins, fail closed.
// Decisions that do not depend on the call's args are memoized (per (set, model) and per
// (rule, resource, action)) and frozen, so the common path is a few Map lookups and no string building.
//
// Tool rule semantics: `deny` actions are unconditional (no `when`, no args); `actions` allow
// only when `args` constraints hold and `when` is true. A `when` that errors or returns a
// non-boolean on any rule that would apply denies the whole request.
import type { AgentRecord } from '../identity/types.ts';
import type { AccessRequest, Decision, Effect } from './types.ts';
import { setFor, rulesFor, ruleModel, type CompiledPolicies, type CompiledToolRule, type PolicySet, type EffectiveLimits, type DecisionMemo } from './compile.ts';
import type { TargetFacts } from '../config/catalog.ts';
import { checkArgs } from './args.ts';
import type { CelVars } from './cel.ts';
import { decideAgentCall } from './agents.ts';

// Memo bounds: resources per rule x actions per resource (config-derived in practice).
const MEMO_RESOURCES = 256;
const MEMO_ACTIONS = 64;
// Model names beyond the configured routes (catalog models, anything a client sends) memoized per set.
const MEMO_OTHER_MODELS = 256;
/** (callee, skill) decisions memoized per set (A2A calls without a `when`). */
export const MEMO_AGENT_CALLS = 256;
const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({});

function make(compiled: CompiledPolicies, effect: Effect, policy: string, rule: number, rulePath: string, reason: string): Decision {
  return Object.freeze({ effect, allowed: effect === 'allow', policy, rule, rulePath, reason, configVersion: compiled.configVersion });
}

export function who(agent: AgentRecord): string {
  return agent.name ? `${agent.spiffeId} (agent "${agent.name}")` : agent.spiffeId;
}

export function decide(req: AccessRequest, compiled: CompiledPolicies): Decision {
  const set = setFor(req.agent, compiled);
  if (req.kind === 'model') return decideModel(set, req.model, compiled);
  if (req.kind === 'agent') return decideAgent(set, req, compiled);
  return decideTool(set, req.resource, req.action, req.args === null ? null : req.args ?? EMPTY, req.context, compiled);
}

/**
 * Shadow mode: an enforced allow decided again with the policies in mode: audit counted as
 * enforced. Their deny (evidence only, the request goes on), or undefined.
 */
export function shadowDeny(req: AccessRequest, compiled: CompiledPolicies, enforced: Decision): Decision | undefined {
  if (!compiled.shadow || enforced.effect === 'deny') return undefined;
  const s = decide(req, compiled.shadow);
  return s.effect === 'deny' ? s : undefined;
}

/**
 * An A2A call's decision, memoized per (callee, skill) in the caller's set when no rule's `when`
 * was evaluated: then it depends on the set, the callee and the skill alone (deny rules, skills),
 * and a call costs no rules array, reason strings, closures or Decision of its own. A decision a
 * `when` took part in is made per call (the context differs). Bounded: skills are the caller's text.
 */
function decideAgent(set: PolicySet, req: Extract<AccessRequest, { kind: 'agent' }>, compiled: CompiledPolicies): Decision {
  const { callee, skill } = req;
  const memo = set.agentMemo;
  const hit = memo.byCallee.get(callee)?.get(skill);
  if (hit !== undefined) return hit;
  let conditional = false;
  const d = decideAgentCall(set, callee, skill, () => { conditional = true; return celContext(req.context); }, (e, p, i, path, reason) => make(compiled, e, p, i, path, reason));
  if (!conditional && memo.size < MEMO_AGENT_CALLS) {
    let bySkill = memo.byCallee.get(callee);
    if (bySkill === undefined) memo.byCallee.set(callee, (bySkill = new Map()));
    bySkill.set(skill, d);
    memo.size++;
  }
  return d;
}

export function decideModel(set: PolicySet, model: string, compiled: CompiledPolicies): Decision {
  const memo = set.modelMemo.get(model);
  if (memo) return memo;
  const d = computeModel(set, model, compiled);
  if (compiled.modelSet.has(model) || set.modelMemo.size < compiled.modelSet.size + MEMO_OTHER_MODELS) set.modelMemo.set(model, d);
  return d;
}

const regionOf = (t: TargetFacts): string => `${t.label}: ${t.region ?? 'no region'}`;

function computeModel(set: PolicySet, model: string, compiled: CompiledPolicies): Decision {
  const r = ruleModel(set, model, compiled);
  if (r.by === 'deny') return make(compiled, 'deny', r.policy, r.index, `models.deny[${r.index}]`, `policy "${r.policy}" models.deny[${r.index}] denies model "${model}" for ${who(set.agent)}`);
  if (r.by === 'allow') {
    const where = r.usable ? `; regions ${[...set.regions!.allow].join(', ') || 'none'} (models.regions of ${set.regions!.policies.join(', ')}) leave targets ${r.usable.map((t) => t.label).join(', ')}` : '';
    return make(compiled, 'allow', r.policy, r.index, `models.allow[${r.index}]`, `policy "${r.policy}" models.allow[${r.index}] allows model "${model}"${where}`);
  }
  if (r.by === 'regions') {
    const allow = [...set.regions!.allow].join(', ') || 'none (the policies\' lists do not overlap)';
    return make(compiled, 'deny', r.policy, -1, 'models.regions', `policy "${r.policy}" models.regions allows only regions ${allow} for ${who(set.agent)}, and no target of model "${model}" runs there (${r.targets.map(regionOf).join('; ')}); use a model with a target in an allowed region, or set region on its target or Provider`);
  }
  if (r.by === 'pricing') {
    return make(compiled, 'deny', r.policy, -1, 'models.budget', `model "${model}" has no known price (${r.unpriced.map((t) => t.label).join(', ')}), and policy "${r.policy}" puts a budget on ${who(set.agent)}: its calls could not count against the budget. Add a Model document named "${model}" with pricing: { input_per_1m, output_per_1m } (USD), or pricing: { free: true }, or use a model with a built-in price`);
  }
  if (set.policies.length === 0) return make(compiled, 'deny', '', -1, '', `no AgentPolicy applies to ${who(set.agent)}, so model "${model}" is denied by default`);
  const allowed = set.allowedModels.length ? set.allowedModels.join(', ') : 'none';
  const names = set.policies.map((p) => p.name).join(', ');
  return make(compiled, 'deny', '', -1, '', `no policy allows model "${model}" for ${who(set.agent)} (policies: ${names}); allowed: ${allowed}`);
}

/** A rule's decision for (resource, action) does not depend on the caller: build it once. */
function memoized(m: DecisionMemo, resource: string, action: string): Decision | undefined {
  return m.get(resource)?.get(action);
}

function remember(m: DecisionMemo, resource: string, action: string, d: Decision, maxResources = MEMO_RESOURCES, maxActions = MEMO_ACTIONS): Decision {
  let inner = m.get(resource);
  if (!inner) {
    if (m.size >= maxResources) return d;
    inner = new Map();
    m.set(resource, inner);
  }
  if (inner.size < maxActions) inner.set(action, d);
  return d;
}

function explicitDeny(r: CompiledToolRule, action: string, resource: string, compiled: CompiledPolicies): Decision {
  return memoized(r.memo.deny, resource, action) ?? remember(r.memo.deny, resource, action,
    make(compiled, 'deny', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} denies action "${action}" on ${resource}`));
}

function allowDecision(r: CompiledToolRule, action: string, resource: string, compiled: CompiledPolicies): Decision {
  return memoized(r.memo.allow, resource, action) ?? remember(r.memo.allow, resource, action, r.approval
    ? make(compiled, 'approval_required', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} allows action "${action}" on ${resource} only with approval`)
    : make(compiled, 'allow', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} allows action "${action}" on ${resource}`));
}

function conditionFalse(r: CompiledToolRule, action: string, resource: string, compiled: CompiledPolicies): Decision {
  return memoized(r.memo.unmet, resource, action) ?? remember(r.memo.unmet, resource, action,
    make(compiled, 'deny', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} allows action "${action}" on ${resource} only when \`${r.when?.source}\`, which is false for this request`));
}

/** `why` is one of the rule's precomputed constraint reasons, so it is a bounded memo key. */
function argsViolated(r: CompiledToolRule, why: string, action: string, resource: string, compiled: CompiledPolicies): Decision {
  let m = r.memo.args.get(why);
  if (!m) { m = new Map(); r.memo.args.set(why, m); }
  return memoized(m, resource, action) ?? remember(m, resource, action,
    make(compiled, 'deny', r.policy, r.index, r.path, `policy "${r.policy}" ${r.path} allows action "${action}" on ${resource} only within its args constraints: ${why}`));
}

export function celContext(c: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const t = c?.time;
  const time = t instanceof Date ? t : typeof t === 'string' || typeof t === 'number' ? new Date(t) : new Date();
  const hour = time.getUTCHours();
  const weekday = time.getUTCDay();
  return c ? { ...c, time, hour, weekday } : { time, hour, weekday };
}

export function decideTool(
  set: PolicySet, resource: string, action: string, args: Readonly<Record<string, unknown>> | null,
  context: Readonly<Record<string, unknown>> | undefined, compiled: CompiledPolicies,
): Decision {
  const rules = rulesFor(set, resource);
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    if (r.denyAll || r.deny.has(action)) {
      return explicitDeny(r, action, resource, compiled);
    }
  }
  let best: CompiledToolRule | null = null;
  let argFail: { rule: CompiledToolRule; why: string } | null = null;
  let whenFalse: CompiledToolRule | null = null;
  let vars: CelVars | null = null;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    if (!r.anyAction && !r.actions.has(action)) continue;
    // args null: decided when the call that created this work was allowed (a `when` reading args then fails closed)
    if (r.args.length && args !== null) {
      const why = checkArgs(r.args, args);
      if (why !== null) { if (!argFail) argFail = { rule: r, why }; continue; }
    }
    if (r.when) {
      vars ??= { identity: set.celIdentity, resource, action, args: args ?? EMPTY, context: EMPTY };
      if (r.when.usesContext && vars.context === EMPTY) vars.context = celContext(context);
      const ok = r.when.evaluate(vars);
      if (ok instanceof Error) {
        return make(compiled, 'deny', r.policy, r.index, r.path,
          `policy "${r.policy}" ${r.path} condition \`${r.when.source}\` could not be evaluated (${ok.message}); denied because conditions fail closed`);
      }
      if (!ok) { whenFalse ??= r; continue; }
    }
    if (!best || (r.approval && !best.approval)) best = r;
  }
  if (best) return allowDecision(best, action, resource, compiled);
  if (argFail) return argsViolated(argFail.rule, argFail.why, action, resource, compiled);
  if (whenFalse) return conditionFalse(whenFalse, action, resource, compiled);
  return memoized(set.denyMemo, resource, action) ?? remember(set.denyMemo, resource, action, defaultDeny(set, rules, resource, action, compiled), 16, 16);
}

function defaultDeny(set: PolicySet, rules: readonly CompiledToolRule[], resource: string, action: string, compiled: CompiledPolicies): Decision {
  if (rules.length === 0) {
    const none = set.policies.length === 0 ? `no AgentPolicy applies to ${who(set.agent)}` : `no policy has a tool rule for ${resource} for ${who(set.agent)}`;
    return make(compiled, 'deny', '', -1, '', `${none}, so action "${action}" on ${resource} is denied by default`);
  }
  const allowed = [...new Set(rules.flatMap((r) => [...r.actions]))].join(', ') || 'none';
  return make(compiled, 'deny', '', -1, '', `no policy allows action "${action}" on ${resource} for ${who(set.agent)}; allowed actions: ${allowed}`);
}

/** May this caller use this model (GET /v1/models/{id})? The model decision, nothing recorded. */
export function mayUseModel(agent: AgentRecord, model: string, compiled: CompiledPolicies): boolean {
  return decideModel(setFor(agent, compiled), model, compiled).allowed;
}

/** Model routes this caller may use (for GET /v1/models), in config order. */
export function allowedModels(agent: AgentRecord, compiled: CompiledPolicies): readonly string[] {
  return setFor(agent, compiled).allowedModels;
}

/**
 * Could some call of (resource, action) be allowed for this caller? Explicit denies hide the
 * tool. A `when` that reads only identity/resource/action is evaluated (false or error hides
 * the rule); conditions on args or context and args constraints depend on the call, so such a
 * tool is listed and its call may still be denied with a reason (never the reverse).
 */
export function toolVisible(agent: AgentRecord, resource: string, action: string, compiled: CompiledPolicies): boolean {
  return toolVisibleIn(setFor(agent, compiled), resource, action);
}

/** toolVisible for a policy set already resolved (a request's access context). */
export function toolVisibleIn(set: PolicySet, resource: string, action: string): boolean {
  const rules = rulesFor(set, resource);
  let any = false;
  for (const r of rules) {
    if (r.denyAll || r.deny.has(action)) return false;
    if (any || (!r.anyAction && !r.actions.has(action))) continue;
    if (r.when && !r.when.usesArgs && !r.when.usesContext) {
      if (r.when.evaluate({ identity: set.celIdentity, resource, action, args: EMPTY, context: EMPTY }) !== true) continue;
    }
    any = true;
  }
  return any;
}

/** Budgets (per scope; smallest amount wins) and rate limits (smallest wins) for this caller. */
export function limitsFor(agent: AgentRecord, compiled: CompiledPolicies): EffectiveLimits {
  return setFor(agent, compiled).limits;
}

/** Guardrail names attached by every policy that applies to this caller (deduplicated). */
export function guardrailsFor(agent: AgentRecord, compiled: CompiledPolicies): readonly string[] {
  return setFor(agent, compiled).guardrails;
}
