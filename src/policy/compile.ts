// AgentPolicy -> lookup tables, once per config load. The request path (decide.ts) only reads
// what is built here: per-agent policy sets, Sets of actions/models, compiled CEL and regexes.
import type { ConfigSet, Resource, AgentSpec, PolicySpec, ToolRuleSpec } from '../config/schema.ts';
import { ConfigError, type ConfigIssue } from '../config/errors.ts';
import type { AgentRecord } from '../identity/types.ts';
import type { Decision } from './types.ts';
import { compileSubject, stringMatcher, type SubjectMatcher } from './subject.ts';
import { compileCondition, isCompileError, type CompiledCondition } from './cel.ts';
import { compileArg, type CompiledArg } from './args.ts';
import { catalogNames, catalogTargets, compileCatalog, modelTargets, type Catalog, type TargetFacts } from '../config/catalog.ts';
import { hasWildcard } from '../config/glob.ts';
import { compileAgentRules, type CompiledAgentRule } from './agents.ts';

export interface CompiledToolRule {
  policy: string;
  index: number;
  /** "tools[0]" */
  path: string;
  resource: string;
  matchResource: (r: string) => boolean;
  actions: ReadonlySet<string>;
  anyAction: boolean;
  deny: ReadonlySet<string>;
  denyAll: boolean;
  when: CompiledCondition | null;
  args: readonly CompiledArg[];
  approval: boolean;
  /** tools[].rate: calls this rule allows per minute, per agent and per key (null: unlimited). */
  rate: { rpm: number } | null;
  /** tools[].budget: calls this rule allows per UTC day / month, per agent and per key (null: unlimited). */
  budget: { calls_per_day?: number; calls_per_month?: number } | null;
  /** Memos for decide(): resource -> action -> frozen decision (bounded; see decide.ts). */
  memo: { allow: DecisionMemo; deny: DecisionMemo; unmet: DecisionMemo; args: Map<string, DecisionMemo> };
}

export type DecisionMemo = Map<string, Map<string, Decision>>;

export interface BudgetLimits {
  daily_usd?: number;
  monthly_usd?: number;
  /** Percent thresholds, ascending. */
  alert_at: number[];
}

/** A models.allow/deny entry with a wildcard other than '*' alone (e.g. "openai/*"), compiled at load. */
export interface ModelGlob { pattern: string; index: number; match: (model: string) => boolean }

export interface CompiledPolicy {
  name: string;
  subject: SubjectMatcher;
  /** model name -> index in models.allow / models.deny; '*' is kept as a key too. */
  modelAllow: ReadonlyMap<string, number>;
  modelDeny: ReadonlyMap<string, number>;
  /** Glob entries of models.allow / models.deny, in list order. */
  modelAllowGlobs: readonly ModelGlob[];
  modelDenyGlobs: readonly ModelGlob[];
  /** models.regions (null: any region). */
  regions: ReadonlySet<string> | null;
  budget: (BudgetLimits & { scope: 'agent' | 'team' }) | null;
  rate: { rpm?: number; tpm?: number } | null;
  guardrails: readonly string[];
  /** credentials.allow: the only credentials this identity's calls may use (null: not restricted). */
  credentialsAllow: ReadonlySet<string> | null;
  /** audit.record: what the trail keeps for this identity (null: the default). */
  auditRecord: readonly string[] | null;
  tools: readonly CompiledToolRule[];
  /** agents: A2A callees (and skills) this identity may call. */
  agents: readonly CompiledAgentRule[];
  maxDelegationDepth: number | null;
}

export interface ScopedBudget extends BudgetLimits {
  scope: 'agent' | 'team';
  /** Ledger key, e.g. "agent:finance-analyst" or "team:finance". */
  key: string;
  policies: string[];
}

export interface EffectiveLimits {
  /** One entry per scope that has a budget (smallest amount wins per field). */
  budgets: ScopedBudget[];
  rate: { rpm?: number; tpm?: number; policies: string[] } | null;
}

/** Everything decided about one identity, built on first use and reused. */
export interface PolicySet {
  agent: AgentRecord;
  policies: readonly CompiledPolicy[];
  /** CEL `identity` variable, built once. */
  celIdentity: Readonly<Record<string, unknown>>;
  allowedModels: readonly string[];
  limits: EffectiveLimits;
  /** Intersection of models.regions over the policies that set it, with their names (null: any region). */
  regions: { allow: ReadonlySet<string>; policies: string[] } | null;
  guardrails: readonly string[];
  /** Union of audit.record over the policies that set it (null: none does, keep the default). */
  auditRecord: readonly string[] | null;
  /** Union of credentials.allow over the policies that restrict it, with the names of those policies (null: any). */
  credentials: { allow: ReadonlySet<string>; policies: string[] } | null;
  /** Memo: model name -> decision (every configured route, and a bounded number of other names). */
  modelMemo: Map<string, Decision>;
  /**
   * Memo: callee -> skill -> the agents-rule decision, when no rule's `when` was evaluated for it
   * (then it depends on nothing else); at most MEMO_AGENT_CALLS entries (skills are the caller's text).
   */
  agentMemo: { byCallee: Map<string, Map<string, Decision>>; size: number };
  /** Memo: resource -> tool rules (in policy order) whose resource matches. */
  toolMemo: Map<string, readonly CompiledToolRule[]>;
  /** Memo: resource -> action -> default-deny decision (its reason names this caller). */
  denyMemo: DecisionMemo;
}

export interface CompiledPolicies {
  configVersion: string;
  policies: readonly CompiledPolicy[];
  /** Agent resources by name. */
  agents: ReadonlyMap<string, AgentRecord>;
  /** Agent name -> precomputed set. */
  sets: ReadonlyMap<string, PolicySet>;
  /** SPIFFE ID -> agent name. */
  bySpiffe: ReadonlyMap<string, string>;
  /** Model route names in config order. */
  models: readonly string[];
  modelSet: ReadonlySet<string>;
  /** What GET /v1/models may list: the routes, then catalog models (see catalogNames). */
  listed: readonly string[];
  /** Targets (region, priced) of each configured route. */
  routeFacts: ReadonlyMap<string, readonly TargetFacts[]>;
  catalog: Catalog;
  /** LRU for identities that are not Agent resources (e.g. a JWT-SVID matching a glob). */
  unknownCache: Map<string, PolicySet>;
  unknownCacheMax: number;
  /**
   * Shadow mode: every policy, those with mode: audit included, compiled as if enforced. Present
   * only when some policy is in audit mode; the enforced tables above leave those policies out.
   */
  shadow?: CompiledPolicies;
}

const TOOL_MEMO_MAX = 4096;

export function trustDomainOfId(spiffeId: string): string {
  const rest = spiffeId.startsWith('spiffe://') ? spiffeId.slice(9) : spiffeId;
  const slash = rest.indexOf('/');
  return slash === -1 ? rest : rest.slice(0, slash);
}

/** The AgentRecord for an Agent resource (spec.labels override metadata.labels). */
export function agentRecord(r: Resource<AgentSpec>): AgentRecord {
  const s = r.spec;
  return Object.freeze({
    name: r.name,
    spiffeId: s.workload,
    trustDomain: trustDomainOfId(s.workload),
    owner: s.owner,
    team: s.team,
    environment: s.environment,
    deployment: s.deployment,
    labels: Object.freeze({ ...r.labels, ...(s.labels ?? {}) }),
  });
}

type Issue = (r: Resource<PolicySpec>, path: string, message: string) => void;

/** Identical `when` sources share one compiled program (templated policies repeat them). */
type CelCache = Map<string, ReturnType<typeof compileCondition>>;

function compileToolRule(policy: Resource<PolicySpec>, rule: ToolRuleSpec, index: number, issue: Issue, cel: CelCache): CompiledToolRule {
  const path = `tools[${index}]`;
  const actions = new Set(rule.actions ?? []);
  const deny = new Set(rule.deny ?? []);
  for (const a of actions) {
    if (deny.has(a)) issue(policy, `spec.${path}.deny`, `action "${a}" is both allowed (actions) and denied (deny) in the same rule; remove it from one list`);
  }
  if (!rule.actions?.length && !rule.deny?.length) issue(policy, `spec.${path}`, 'a tool rule needs actions (to allow) or deny (to deny)');
  if (rule.rate && !rule.actions?.length) issue(policy, `spec.${path}.rate`, 'rate limits the calls a rule allows, and this rule allows none; add actions or move rate to the rule that allows them');
  if (rule.budget && !rule.actions?.length) issue(policy, `spec.${path}.budget`, 'budget limits the calls a rule allows, and this rule allows none; add actions or move budget to the rule that allows them');
  if (rule.budget && rule.budget.calls_per_day === undefined && rule.budget.calls_per_month === undefined) issue(policy, `spec.${path}.budget`, 'budget needs calls_per_day, calls_per_month or both');
  let when: CompiledCondition | null = null;
  if (rule.when !== undefined) {
    let c = cel.get(rule.when);
    if (!c) { c = compileCondition(rule.when); cel.set(rule.when, c); }
    if (isCompileError(c)) issue(policy, `spec.${path}.when`, `${c.message}${c.column ? ` at column ${c.column}` : ''} in \`${rule.when}\``);
    else when = c;
  }
  const args: CompiledArg[] = [];
  for (const [name, spec] of Object.entries(rule.args ?? {})) {
    const c = compileArg(name, spec);
    if (typeof c === 'string') issue(policy, `spec.${path}.args.${name}`, c);
    else args.push(c);
  }
  return {
    policy: policy.name, index, path, resource: rule.resource,
    matchResource: stringMatcher(rule.resource, true),
    actions, anyAction: actions.has('*'), deny, denyAll: deny.has('*'),
    when, args, approval: rule.approval === 'required', rate: rule.rate ? { rpm: rule.rate.rpm } : null,
    budget: rule.budget && (rule.budget.calls_per_day !== undefined || rule.budget.calls_per_month !== undefined) ? { ...rule.budget } : null, memo: { allow: new Map(), deny: new Map(), unmet: new Map(), args: new Map() },
  };
}

function compilePolicy(r: Resource<PolicySpec>, issue: Issue, cel: CelCache): CompiledPolicy {
  const s = r.spec;
  const modelAllow = new Map<string, number>();
  const modelDeny = new Map<string, number>();
  const modelAllowGlobs: ModelGlob[] = [];
  const modelDenyGlobs: ModelGlob[] = [];
  // '*' stays an exact key (the common "allow everything" is one Map lookup); other globs compile once.
  const glob = (pattern: string, index: number): ModelGlob => ({ pattern, index, match: stringMatcher(pattern, true) });
  (s.models?.allow ?? []).forEach((m, i) => {
    if (m !== '*' && hasWildcard(m)) modelAllowGlobs.push(glob(m, i));
    else if (!modelAllow.has(m)) modelAllow.set(m, i);
  });
  (s.models?.deny ?? []).forEach((m, i) => {
    if (m !== '*' && hasWildcard(m)) modelDenyGlobs.push(glob(m, i));
    else if (!modelDeny.has(m)) modelDeny.set(m, i);
    if (m !== '*' && modelAllow.has(m)) issue(r, `spec.models.deny[${i}]`, `model "${m}" is both in models.allow and models.deny; remove it from one list`);
    if (m === '*' && (modelAllow.size || modelAllowGlobs.length)) issue(r, `spec.models.deny[${i}]`, 'models.deny "*" denies every model, so models.allow in the same policy can never apply; remove one');
  });
  if (s.identity.workload !== undefined && !s.identity.workload.startsWith('spiffe://') && s.identity.workload !== '**' && s.identity.workload !== '*') {
    issue(r, 'spec.identity.workload', 'must be a SPIFFE ID or glob starting with spiffe:// (or "**" for every workload)');
  }
  const b = s.models?.budget;
  return {
    name: r.name,
    subject: compileSubject(s.identity),
    modelAllow, modelDeny, modelAllowGlobs, modelDenyGlobs,
    regions: s.models?.regions ? new Set(s.models.regions) : null,
    budget: b && (b.daily_usd !== undefined || b.monthly_usd !== undefined)
      ? { daily_usd: b.daily_usd, monthly_usd: b.monthly_usd, scope: b.scope ?? 'agent', alert_at: [...(b.alert_at ?? [])].sort((x, y) => x - y) }
      : null,
    rate: s.models?.rate && (s.models.rate.rpm !== undefined || s.models.rate.tpm !== undefined) ? { ...s.models.rate } : null,
    guardrails: s.guardrails ?? [],
    credentialsAllow: s.credentials?.allow ? new Set(s.credentials.allow) : null,
    auditRecord: s.audit?.record ?? null,
    tools: (s.tools ?? []).map((t, i) => compileToolRule(r, t, i, issue, cel)),
    agents: compileAgentRules(r.name, s.agents, (src) => { let c = cel.get(src); if (!c) { c = compileCondition(src); cel.set(src, c); } return c; }, (path, m) => issue(r, `spec.${path}`, m)),
    maxDelegationDepth: s.max_delegation_depth ?? null,
  };
}

const minDef = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);

function effectiveLimits(agent: AgentRecord, policies: readonly CompiledPolicy[]): EffectiveLimits {
  const budgets = new Map<string, ScopedBudget>();
  let rate: EffectiveLimits['rate'] = null;
  for (const p of policies) {
    if (p.budget) {
      const scope = p.budget.scope === 'team' && agent.team ? 'team' : 'agent';
      const key = scope === 'team' ? `team:${agent.team}` : `agent:${agent.name || agent.spiffeId}`;
      const cur = budgets.get(key);
      if (!cur) budgets.set(key, { scope, key, daily_usd: p.budget.daily_usd, monthly_usd: p.budget.monthly_usd, alert_at: [...p.budget.alert_at], policies: [p.name] });
      else {
        cur.daily_usd = minDef(cur.daily_usd, p.budget.daily_usd);
        cur.monthly_usd = minDef(cur.monthly_usd, p.budget.monthly_usd);
        cur.alert_at = [...new Set([...cur.alert_at, ...p.budget.alert_at])].sort((x, y) => x - y);
        cur.policies.push(p.name);
      }
    }
    if (p.rate) {
      if (!rate) rate = { rpm: p.rate.rpm, tpm: p.rate.tpm, policies: [p.name] };
      else { rate.rpm = minDef(rate.rpm, p.rate.rpm); rate.tpm = minDef(rate.tpm, p.rate.tpm); rate.policies.push(p.name); }
    }
  }
  return { budgets: [...budgets.values()], rate };
}

/** Index of the models.allow/deny entry naming `model`: exact, then '*', then the first matching glob. */
export function modelEntry(exact: ReadonlyMap<string, number>, globs: readonly ModelGlob[], model: string): number | undefined {
  const i = exact.get(model) ?? exact.get('*');
  if (i !== undefined || globs.length === 0) return i;
  for (const g of globs) if (g.match(model)) return g.index;
  return undefined;
}

/**
 * What the policies say about one model name, before it becomes a Decision (decide.ts words it):
 * an explicit deny wins, then an allow, else default deny. An allowed model is still denied when
 * none of its targets runs in the caller's regions, or when it is a catalog model without a known
 * price and a budget applies (a budget that cannot bind must not let calls run as $0).
 */
export type ModelRuling =
  | { effect: 'allow'; by: 'allow'; policy: string; index: number; /** targets in the caller's regions (null: not restricted) */ usable: readonly TargetFacts[] | null }
  | { effect: 'deny'; by: 'deny'; policy: string; index: number }
  | { effect: 'deny'; by: 'none' }
  | { effect: 'deny'; by: 'regions'; policy: string; targets: readonly TargetFacts[] }
  | { effect: 'deny'; by: 'pricing'; policy: string; unpriced: readonly TargetFacts[] };

type RulingSet = Pick<PolicySet, 'policies' | 'regions' | 'limits'>;
type RulingFacts = Pick<CompiledPolicies, 'routeFacts' | 'catalog'>;

export function ruleModel(set: RulingSet, model: string, compiled: RulingFacts): ModelRuling {
  for (const p of set.policies) {
    const i = modelEntry(p.modelDeny, p.modelDenyGlobs, model);
    if (i !== undefined) return { effect: 'deny', by: 'deny', policy: p.name, index: i };
  }
  let allow: { policy: string; index: number } | null = null;
  for (const p of set.policies) {
    const i = modelEntry(p.modelAllow, p.modelAllowGlobs, model);
    if (i !== undefined) { allow = { policy: p.name, index: i }; break; }
  }
  if (!allow) return { effect: 'deny', by: 'none' };
  const configured = compiled.routeFacts.get(model);
  const budgeted = set.limits.budgets.length > 0;
  const targets = configured ?? (set.regions || budgeted ? catalogTargets(compiled.catalog, model) : null);
  if (!targets) return { effect: 'allow', by: 'allow', ...allow, usable: null };
  let usable: readonly TargetFacts[] = targets;
  if (set.regions) {
    const regions = set.regions.allow;
    usable = targets.filter((t) => t.region !== undefined && regions.has(t.region));
    if (usable.length === 0) return { effect: 'deny', by: 'regions', policy: set.regions.policies[0], targets };
  }
  // Configured routes were checked at load (a budgeted route without a price is a load error).
  if (!configured && budgeted) {
    const unpriced = usable.filter((t) => !t.priced);
    if (unpriced.length) return { effect: 'deny', by: 'pricing', policy: set.limits.budgets[0].policies[0], unpriced };
  }
  return { effect: 'allow', by: 'allow', ...allow, usable: set.regions ? usable : null };
}

/** Intersection of models.regions over the policies that set one. */
function regionsOf(policies: readonly CompiledPolicy[]): PolicySet['regions'] {
  const restricting = policies.filter((p) => p.regions !== null);
  if (restricting.length === 0) return null;
  const allow = new Set([...restricting[0].regions!].filter((r) => restricting.every((p) => p.regions!.has(r))));
  return { allow, policies: restricting.map((p) => p.name) };
}

/** Build the set for one identity from the policies whose subject matches it. */
export function buildSet(agent: AgentRecord, compiled: Pick<CompiledPolicies, 'policies' | 'listed' | 'routeFacts' | 'catalog'>): PolicySet {
  const policies = compiled.policies.filter((p) => p.subject.matches(agent));
  const limits = effectiveLimits(agent, policies);
  const regions = regionsOf(policies);
  const allowed = compiled.listed.filter((m) => ruleModel({ policies, regions, limits }, m, compiled).effect === 'allow');
  const guardrails = [...new Set(policies.flatMap((p) => p.guardrails))];
  const restricting = policies.filter((p) => p.credentialsAllow !== null);
  const credentials = restricting.length
    ? { allow: new Set(restricting.flatMap((p) => [...(p.credentialsAllow ?? [])])), policies: restricting.map((p) => p.name) }
    : null;
  const recording = policies.filter((p) => p.auditRecord !== null);
  const auditRecord = recording.length ? [...new Set(recording.flatMap((p) => [...(p.auditRecord ?? [])]))] : null;
  return {
    agent, policies, auditRecord,
    celIdentity: Object.freeze({
      spiffe_id: agent.spiffeId, agent: agent.name, trust_domain: agent.trustDomain,
      owner: agent.owner ?? '', team: agent.team ?? '', environment: agent.environment ?? '', deployment: agent.deployment ?? '',
      labels: agent.labels,
    }),
    allowedModels: allowed,
    limits,
    regions,
    guardrails,
    credentials,
    modelMemo: new Map(),
    agentMemo: { byCallee: new Map(), size: 0 },
    toolMemo: new Map(),
    denyMemo: new Map(),
  };
}

/** Tool rules of a set whose resource matches, memoized (bounded) per resource. */
export function rulesFor(set: PolicySet, resource: string): readonly CompiledToolRule[] {
  const hit = set.toolMemo.get(resource);
  if (hit) return hit;
  const out: CompiledToolRule[] = [];
  for (const p of set.policies) for (const t of p.tools) if (t.matchResource(resource)) out.push(t);
  if (set.toolMemo.size < TOOL_MEMO_MAX) set.toolMemo.set(resource, out);
  return out;
}

/**
 * The rule that decided a tool call (by policy name and tools[] index, as the Decision names it),
 * for what the decision does not carry itself: its rate.
 */
export function decidingToolRule(set: PolicySet, d: Pick<Decision, 'policy' | 'rule'>): CompiledToolRule | undefined {
  if (!d.policy || d.rule < 0) return undefined;
  for (const p of set.policies) if (p.name === d.policy) return p.tools[d.rule];
  return undefined;
}

function unknownKey(a: AgentRecord): string {
  let k = `${a.spiffeId}\0${a.name}\0${a.team ?? ''}\0${a.environment ?? ''}\0${a.owner ?? ''}\0${a.deployment ?? ''}`;
  for (const key of Object.keys(a.labels).sort()) k += `\0${key}=${a.labels[key]}`;
  return k;
}

/**
 * The policy set for a caller. A configured Agent is one Map lookup; any other identity
 * (unknown SPIFFE ID, or a record whose attributes differ from the config) is matched on
 * first sight and kept in a small LRU.
 */
export function setFor(agent: AgentRecord, compiled: CompiledPolicies): PolicySet {
  const known = compiled.sets.get(agent.name);
  if (known && (known.agent === agent || (known.agent.spiffeId === agent.spiffeId && known.agent.team === agent.team
    && known.agent.environment === agent.environment && known.agent.owner === agent.owner && known.agent.deployment === agent.deployment
    && sameLabels(known.agent.labels, agent.labels)))) return known;
  const key = unknownKey(agent);
  const cache = compiled.unknownCache;
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const set = buildSet(agent, compiled);
  cache.set(key, set);
  if (cache.size > compiled.unknownCacheMax) cache.delete(cache.keys().next().value as string);
  return set;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (a[k] !== b[k]) return false;
  return true;
}

/**
 * Compile every AgentPolicy of a config. Throws ConfigError listing every problem
 * (CEL that does not compile, with its column; bad arg patterns; contradictory rules).
 */
export function compilePolicies(config: ConfigSet, configVersion: string = config.digest): CompiledPolicies {
  if (![...config.policies.values()].some((p) => p.spec.mode === 'audit')) return compileEnforced(config, configVersion);
  const enforced = new Map([...config.policies].filter(([, p]) => p.spec.mode !== 'audit'));
  return { ...compileEnforced({ ...config, policies: enforced }, configVersion), shadow: compileEnforced(config, configVersion) };
}

function compileEnforced(config: ConfigSet, configVersion: string): CompiledPolicies {
  const issues: ConfigIssue[] = [];
  const issue: Issue = (r, path, message) => issues.push({ file: r.file, document: r.index, path, message });
  const cel: CelCache = new Map();
  const policies = [...config.policies.values()].map((r) => compilePolicy(r, issue, cel));
  if (issues.length) throw new ConfigError(issues);
  const models = [...config.models.keys()];
  const catalog = compileCatalog(config);
  const routeFacts = new Map(models.map((m) => [m, modelTargets(config, m)!] as const));
  const literals = [...config.policies.values()].flatMap((p) => p.spec.models?.allow ?? []);
  const listed = [...models, ...catalogNames(catalog, literals)];
  const base = { policies, listed, routeFacts, catalog };
  const agents = new Map<string, AgentRecord>();
  const sets = new Map<string, PolicySet>();
  const bySpiffe = new Map<string, string>();
  for (const r of config.agents.values()) {
    const rec = agentRecord(r);
    agents.set(rec.name, rec);
    bySpiffe.set(rec.spiffeId, rec.name);
    sets.set(rec.name, buildSet(rec, base));
  }
  return {
    configVersion, policies, agents, sets, bySpiffe, models, modelSet: new Set(models), listed, routeFacts, catalog,
    unknownCache: new Map(), unknownCacheMax: 1024,
  };
}

/** Look up a configured agent by name or SPIFFE ID. */
export function findAgent(compiled: CompiledPolicies, nameOrSpiffeId: string): AgentRecord | undefined {
  const byName = compiled.agents.get(nameOrSpiffeId);
  if (byName) return byName;
  const name = compiled.bySpiffe.get(nameOrSpiffeId);
  return name === undefined ? undefined : compiled.agents.get(name);
}

