// Queries over the trail (CLI `aam audit query|show`, admin API). Read-only: filters are decided
// on the query keys stored per block (time ranges also per block), and only the segment bytes of
// blocks with a match are read; results are the hashed event texts.
import type { DatabaseSync } from 'node:sqlite';
import type { AuditEvent, Plane } from './event.ts';
import { identityOf, planeOf, PLANES, policyOf, toolOf, typeMayBeIn, unacknowledgedText } from './event.ts';
import { readEvents, toEvent } from './store.ts';
import type { EventKeys, KeyCondition } from './store.ts';
import { timeOrAgo } from '../config/duration.ts';

export interface AuditQuery {
  agent?: string;
  /** Any of these agents (a team's members, resolved from the config by the caller). */
  agents?: readonly string[];
  /** model, tool, a2a or admin (planeOf). */
  plane?: string;
  /** ISO time or Date (inclusive). */
  since?: string | Date;
  until?: string | Date;
  /** Policy decision, e.g. 'deny'. */
  decision?: string;
  requestId?: string;
  type?: string;
  /** W3C trace id (32 hex): every event of one trace, across requests and planes. */
  traceId?: string;
  /** Default 100, at most 10 000. */
  limit?: number;
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc';
  /** Only events before this seq (the next page of a newest-first listing). */
  beforeSeq?: number;
}

export function queryEvents(db: DatabaseSync, q: AuditQuery = {}): AuditEvent[] {
  const since = q.since === undefined ? undefined : isoTime(q.since, 'since');
  const until = q.until === undefined ? undefined : isoTime(q.until, 'until');
  const limit = Math.max(1, Math.min(MAX_LIMIT, Math.floor(q.limit ?? 100)));
  const plane = q.plane === undefined ? undefined : planeArg(q.plane);
  const agents = q.agents === undefined ? undefined : new Set(q.agents);
  const planeMember = plane === undefined || plane === 'admin' ? undefined : `"${plane}":{`;
  const keyed = q.agent !== undefined || q.decision !== undefined || q.requestId !== undefined || q.type !== undefined || agents !== undefined || plane !== undefined;
  const match = keyed
    ? (k: EventKeys): boolean => (q.agent === undefined || k.agent === q.agent) && (q.decision === undefined || k.decision === q.decision)
      && (q.requestId === undefined || k.request_id === q.requestId) && (q.type === undefined || k.type === q.type)
      && (agents === undefined || (k.agent !== null && agents.has(k.agent))) && (plane === undefined || typeMayBeIn(k.type, plane))
    : undefined;
  // The trace id is not a block key: the trace index narrows the blocks, the event text decides (exact member, no parse).
  const trace = q.traceId === undefined ? undefined : `"trace_id":"${traceIdArg(q.traceId)}"`;
  const out: AuditEvent[] = [];
  if (agents?.size === 0) return out;
  for (const e of readEvents(db, { since, until, desc: q.order !== 'asc', match, indexed: keyConditions(q), ...(q.beforeSeq !== undefined ? { toSeq: q.beforeSeq - 1 } : {}) })) {
    if (trace !== undefined && !e.text.includes(trace)) continue;
    // A decision event's plane is what it decided on: only its text says. A decision about
    // another plane lacks the member, so most are skipped without a parse.
    if (planeMember !== undefined && e.type === 'decision' && !e.text.includes(planeMember)) continue;
    const event = toEvent(e);
    if (plane !== undefined && e.type === 'decision' && planeOf(event) !== plane) continue;
    out.push(event);
    if (out.length >= limit) break;
  }
  return out;
}

/** The key-index conditions of a query: a block must hold a value of each (`match` still decides per event). */
export function keyConditions(q: AuditQuery): KeyCondition[] {
  const out: KeyCondition[] = [];
  if (q.requestId !== undefined) out.push({ kind: 'r', values: [q.requestId] });
  if (q.traceId !== undefined) out.push({ kind: 't', values: [traceIdArg(q.traceId)] });
  if (q.agent !== undefined) out.push({ kind: 'a', values: [q.agent] });
  if (q.agents !== undefined) out.push({ kind: 'a', values: [...new Set(q.agents)] });
  if (q.decision !== undefined) out.push({ kind: 'd', values: [q.decision] });
  if (q.type !== undefined) out.push({ kind: 'y', values: [q.type] });
  if (q.plane !== undefined) out.push({ kind: 'p', values: [planeArg(q.plane)] });
  return out;
}

/** The whole chain of one request in commit order: identity -> decision -> credential -> upstream -> outcome. */
export function showRequest(db: DatabaseSync, requestId: string): AuditEvent[] {
  return queryEvents(db, { requestId, order: 'asc', limit: MAX_LIMIT });
}

/** One line per event for `aam audit show`. */
export function describeEvent(e: AuditEvent): string {
  const parts = [`#${e.seq}`, e.time, e.type];
  const who = identityOf(e);
  if (who) parts.push(`agent=${who.agent} (${who.spiffe_id}, ${who.method}${who.key_id ? ' ' + who.key_id : ''})`);
  const policy = policyOf(e);
  if (policy) parts.push(`policy=${policy.name || '(default)'}#${policy.rule} ${policy.decision}: ${policy.reason}`);
  const cred = e.credential as { name?: string; version?: string | number; names?: string[] } | undefined;
  if (cred) parts.push(`credential=${cred.name ?? (cred.names ?? []).join(',')}${cred.version ? '@' + cred.version : ''}`);
  if (e.model) {
    // A decision names only the route; a call also says where it went and what it cost.
    parts.push(e.model.provider
      ? `model=${e.model.route}->${e.model.provider}/${e.model.model} tokens=${e.model.input_tokens ?? '?'}/${e.model.output_tokens ?? '?'} cost=${e.model.cost_usd ?? 'unknown'}`
      : `model=${e.model.route}`);
    // The targets the request also went to, which failed first.
    const tried = e.model.attempts;
    if (Array.isArray(tried) && tried.length > 0) parts.push(`failed_first=${tried.map((a) => `${a.target}:${a.status}`).join(',')}`);
  }
  const a2a = e.a2a as { agent?: string; skill?: string; method?: string; card?: boolean; delegation?: { hop?: number } } | undefined;
  if (a2a) parts.push(`a2a=${a2a.agent}${a2a.skill ? ` skill=${a2a.skill}` : ''}${a2a.method ? ` ${a2a.method}` : ''}${a2a.card ? ' card' : ''}${a2a.delegation?.hop ? ` hop=${a2a.delegation.hop}` : ''}`);
  const dlg = e.delegation as { id?: string; hop?: number; parent_request_id?: string; chain?: string[] } | undefined;
  if (dlg) parts.push(`serving=${dlg.parent_request_id} (${(dlg.chain ?? []).join(' -> ')}, hop ${dlg.hop}, ${dlg.id})`);
  const tool = toolOf(e);
  if (tool) parts.push(`tool=${tool.server ? tool.server + '.' : ''}${tool.tool ?? ''} ${tool.resource ?? ''}:${tool.action ?? ''}${tool.args_digest ? ' args=' + tool.args_digest : ''}`);
  if (e.admin) parts.push(`admin=${e.admin.action} ${e.admin.target ?? ''} by ${typeof e.admin.actor === 'string' ? e.admin.actor : `${e.admin.actor.email ?? e.admin.actor.sub} (sub ${e.admin.actor.sub})`}`);
  // A request refused (or its stream cut) after its call was written: what the caller got, beside the call.
  const unacknowledged = unacknowledgedText(e);
  if (unacknowledged) parts.push(unacknowledged);
  if (e.outcome) parts.push(`outcome=${e.outcome.status}${e.outcome.error_class ? ' ' + e.outcome.error_class : ''}${outcomeError(e.outcome.error, policy?.reason)}`);
  return parts.join('  ');
}

/**
 * Why an event failed, when the policy's reason above does not already say it (a delegation cycle or
 * depth, an upstream error): without it `aam audit show` printed a refused hop as a bare status.
 */
function outcomeError(error: unknown, reason: string | undefined): string {
  if (typeof error !== 'string' || !error || error === reason) return '';
  return `: ${error.length > MAX_SHOWN_ERROR ? error.slice(0, MAX_SHOWN_ERROR) + '…' : error}`;
}
const MAX_SHOWN_ERROR = 500;

/** A time filter (ISO-8601, or a duration ago like 24h or 7d) as ISO-8601; throws naming the filter. */
export function isoTime(v: string | Date, field: string): string {
  if (v instanceof Date) {
    if (Number.isNaN(v.getTime())) throw new Error(`audit query: ${field} is not a valid date`);
    return v.toISOString();
  }
  try { return new Date(timeOrAgo(v)).toISOString(); } catch (e) { throw new Error(`audit query: ${field} ${(e as Error).message}`); }
}

/** Most events one query returns. */
export const MAX_LIMIT = 10_000;

/** A limit as given on the command line or API (default 100), checked: "abc" would otherwise mean no limit at all. */
export function limitArg(v: string | undefined): number {
  if (v === undefined || v.trim() === '') return 100;
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || n < 1 || n > MAX_LIMIT) throw new Error(`audit query: limit "${v}" is not a whole number from 1 to ${MAX_LIMIT}`);
  return n;
}

const DECISIONS = ['allow', 'deny', 'approval_required'] as const;

/** A decision filter as given on the command line or API, checked: a misspelt one would match nothing and look like an empty trail. */
export function decisionArg(v: string): string {
  if (!(DECISIONS as readonly string[]).includes(v)) throw new Error(`audit query: decision "${v}" is not one of ${DECISIONS.join(', ')}`);
  return v;
}

/** A plane as given on the command line or API, checked (throws saying what is allowed). */
export function planeArg(v: string): Plane {
  if (!(PLANES as readonly string[]).includes(v)) throw new Error(`audit query: plane "${v}" is not one of ${PLANES.join(', ')}`);
  return v as Plane;
}

/** A trace id as given on the command line or API, checked and lower-cased (throws saying what is wrong). */
export function traceIdArg(v: string): string {
  const id = v.trim().toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(id)) throw new Error(`audit query: trace id "${v}" is not 32 hex digits; take it from an event's trace_id or the traceparent header (00-<trace id>-<span id>-01)`);
  return id;
}
