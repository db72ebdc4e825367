// What the console shows, computed from the running gateway (and served by the admin API, so every
// page is scriptable): agents with keys, spend and budgets; what one agent may do, rule by rule; the
// policy simulator. Read-only; nothing here returns a secret (keys are listed by id, never value).
import type { AccessConfig } from '../access/runtime-view.ts';
import type { ConsoleRuntime } from './plane.ts';
import type { AgentRecord } from '../identity/types.ts';
import type { KeyListing } from '../store/types.ts';
import { ACTIVITY_PLANES, type SeenTable } from '../identity/seen.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import { setFor } from '../policy/compile.ts';
import { decide } from '../policy/decide.ts';
import { explain, requestOf } from '../policy/test-runner.ts';
import { AamError } from '../access/errors.ts';
import type { Decision } from '../policy/types.ts';
import type { DatabaseSync } from 'node:sqlite';
import { getMeta, readCheckpoints } from '../audit/store.ts';
import { newestCheckpoint } from '../audit/anchor.ts';
import { checkpointSignatureValid } from '../audit/checkpoint.ts';

const DAY_MS = 86_400_000;

/**
 * One row per Agent: who owns it, its keys, spend against each budget, the identity methods it was
 * seen using (and when last) and its last activity on each plane (model, tool, A2A). `keys` and `seen` come from the store
 * the gateway uses (embedded or fleet), and so does the spend, so every replica answers the same.
 */
export async function agentsOverview(rt: ConsoleRuntime, cfg: AccessConfig, keys: readonly KeyListing[], seen: SeenTable | null): Promise<Array<Record<string, unknown>>> {
  const agents = [...cfg.policies.agents.values()].map((a) => ({ a, set: setFor(a, cfg.policies) }));
  const spend = await spendOf(rt, [...new Set(agents.flatMap(({ set }) => set.limits.budgets.map((b) => b.key)))]);
  return agents.map(({ a, set }) => {
    const last = spend.lastCall.get(a.name);
    return {
      name: a.name, spiffe_id: a.spiffeId, owner: a.owner ?? null, team: a.team ?? null, environment: a.environment ?? null, deployment: a.deployment ?? null,
      policies: set.policies.map((p) => p.name),
      keys: keys.filter((k) => k.agent === a.name).map((k) => ({ id: k.id, name: k.name, created_at: k.createdAt, revoked_at: k.revokedAt, expires_at: k.expiresAt, last_rotated_at: k.lastRotatedAt })),
      budgets: set.limits.budgets.map((b) => ({ key: b.key, daily_usd: b.daily_usd ?? null, monthly_usd: b.monthly_usd ?? null, spent: spend.budget(b.key), policies: b.policies })),
      identity_methods: seen ? methodsOf(seen.get(a.name)) : null,
      usage_30d: spend.usage30d.get(a.name) ?? null,
      last_model_call: last ?? null,
      last_activity: lastActivity(seen?.get(a.name), last),
    };
  });
}

interface Spend {
  usage30d: Map<string, Record<string, unknown>>;
  /** Latest minute with a model call per agent (usage rollups; no audit scan), ISO time. */
  lastCall: Map<string, string>;
  budget(key: string): { daily: number; monthly: number; reserved: number };
}

/** Spend per agent and budget: this process's ledger and rollups, or in a fleet every replica's (PostgreSQL rollups, Redis live totals). */
async function spendOf(rt: ConsoleRuntime, budgetKeys: string[]): Promise<Spend> {
  const since = Date.now() - 30 * DAY_MS;
  const byAgent = (rows: Array<Record<string, unknown>>) => new Map(rows.map((r) => [String(r.agent), r]));
  const iso = (rows: Iterable<[string, number]>) => new Map([...rows].map(([agent, t]) => [agent, new Date(t).toISOString()]));
  rt.usage.flush(); // this process's latest calls (in a fleet, handed to the shared rollups too)
  if (rt.fleet) {
    const f = rt.fleet;
    await f.usage.settled();
    const [usage, last, live] = await Promise.all([f.usage.summary('agent', since), f.usage.lastCalls(), f.limiter.usage(budgetKeys)]);
    return { usage30d: byAgent(usage), lastCall: iso(last), budget: (k) => live.get(k) ?? { daily: 0, monthly: 0, reserved: 0 } };
  }
  const rows = rt.db.prepare('SELECT agent, max(minute) AS t FROM usage_rollup GROUP BY agent').all() as Array<{ agent: string; t: number }>;
  return { usage30d: byAgent(rt.usage.summary('agent', since)), lastCall: iso(rows.map((r) => [r.agent, r.t])), budget: (k) => rt.ledger.usage(k) };
}

type Seen = NonNullable<ReturnType<SeenTable['get']>>;
const isPlane = (k: string): boolean => (ACTIVITY_PLANES as readonly string[]).includes(k);

/** The identity methods of one agent's seen times (its planes are last_activity). */
function methodsOf(seen: Seen | undefined): Seen {
  return Object.fromEntries(Object.entries(seen ?? {}).filter(([k]) => !isPlane(k)));
}

/** When the agent last did anything, and on each plane; model calls also from the usage rollups (older than the seen times). */
function lastActivity(seen: Seen | undefined, modelCall: string | undefined): Record<string, string | null> {
  const planes: Record<string, string | null> = {};
  for (const p of ACTIVITY_PLANES) planes[p] = seen?.[p] ?? null;
  if (modelCall && (planes.model === null || modelCall > planes.model)) planes.model = modelCall;
  const times = Object.values(planes).filter((t): t is string => t !== null).sort();
  return { at: times.at(-1) ?? null, ...planes };
}

const verdict = (d: Decision) => ({ effect: d.effect, policy: d.policy || null, rule: d.rulePath ?? null, reason: d.reason });

/**
 * "What can this agent do": every model route and every known tool resource/action (from MCP
 * servers, HTTP tools and the agent's own rules) decided for this agent by the compiled policy,
 * with the deciding rule. Actions guarded by `when`/`args` are decided without arguments and flagged.
 */
export function capabilities(agent: AgentRecord, cfg: AccessConfig): { models: unknown[]; tools: unknown[] } {
  const compiled = cfg.policies;
  const models = compiled.models.map((model) => ({ model, ...verdict(decide({ kind: 'model', agent, model }, compiled)) }));
  const pairs = new Map<string, { resource: string; action: string; via: string }>();
  const add = (resource: string, action: string, via: string) => { if (!pairs.has(`${resource}\u0000${action}`)) pairs.set(`${resource}\u0000${action}`, { resource, action, via }); };
  for (const s of cfg.set.mcpServers.values()) {
    for (const [tool, t] of Object.entries(s.spec.tools ?? {})) add(t.resource ?? s.spec.resource ?? s.name, t.action ?? tool, `MCP ${s.name}/${tool}`);
  }
  for (const h of cfg.set.httpTools.values()) for (const action of Object.keys(h.spec.actions)) add(h.spec.resource, action, `HTTP tool ${h.name}/${action}`);
  const set = setFor(agent, compiled);
  for (const p of set.policies) {
    for (const r of p.tools) {
      if (/[*?]/.test(r.resource)) continue; // a glob names no concrete resource to list
      for (const action of [...r.actions, ...r.deny]) add(r.resource, action, `policy ${p.name} ${r.path}`);
    }
  }
  const tools = [...pairs.values()].map(({ resource, action, via }) => {
    const d = decide({ kind: 'tool', agent, resource, action, args: {} }, compiled);
    const rule = set.policies.find((p) => p.name === d.policy)?.tools[d.rule];
    return { resource, action, via, ...verdict(d), conditional: Boolean(rule && (rule.when || rule.args.length)) };
  });
  return { models, tools };
}

/** The policy simulator: `aam policy explain` over the admin API. */
export function simulate(body: Record<string, unknown>, compiled: CompiledPolicies): { decision: ReturnType<typeof verdict>; explanation: string[] } {
  let req;
  try { req = requestOf(body, compiled); } catch (e) {
    throw new AamError(400, 'invalid_request', `${(e as Error).message} (send { agent, model } or { agent, resource, action, args })`);
  }
  return { decision: verdict(decide(req, compiled)), explanation: explain(req, compiled) };
}

/**
 * The newest signed checkpoint of the trail and whether its signature holds (with the public key
 * that signed it, kept in the trail's metadata): what a request page shows beside the chain.
 * Events up to seq = tree_size are covered; `aam audit verify` proves the whole trail.
 */
export function latestCheckpoint(auditDb: DatabaseSync): Record<string, unknown> | null {
  const all = readCheckpoints(auditDb);
  if (!all.length) return null;
  const c = newestCheckpoint(all);
  const pem = getMeta(auditDb, `public_key:${c.key_id}`);
  return { tree_size: c.tree_size, head_hash: c.head_hash, time: c.time, type: c.type, key_id: c.key_id, signature_valid: pem ? checkpointSignatureValid(c, pem) : null };
}
