// Queries over the trail (CLI `aam audit query|show`, admin API). Read-only; they use the indexed
// copy columns and return the hashed bodies.
import type { DatabaseSync, SQLInputValue } from 'node:sqlite';
import type { AuditEvent } from './event.ts';
import { firstSeqAtOrAfter, rowToEvent } from './store.ts';
import type { EventRow } from './store.ts';

export interface AuditQuery {
  agent?: string;
  /** ISO time or Date (inclusive). */
  since?: string | Date;
  until?: string | Date;
  /** Policy decision, e.g. 'deny'. */
  decision?: string;
  requestId?: string;
  type?: string;
  /** Default 100, at most 10 000. */
  limit?: number;
  /** Newest first (default) or oldest first. */
  order?: 'desc' | 'asc';
}

export function queryEvents(db: DatabaseSync, q: AuditQuery = {}): AuditEvent[] {
  const where: string[] = [];
  const args: SQLInputValue[] = [];
  if (q.agent !== undefined) { where.push('agent = ?'); args.push(q.agent); }
  // Time bounds become seq bounds (the trail is in time order; see firstSeqAtOrAfter), keeping
  // the time comparison as well so the edges stay exact.
  if (q.since !== undefined) {
    const since = isoTime(q.since, 'since');
    const from = firstSeqAtOrAfter(db, since);
    if (from === null) return [];
    where.push('seq >= ?', 'time >= ?');
    args.push(from, since);
  }
  if (q.until !== undefined) {
    const until = isoTime(q.until, 'until');
    const to = firstSeqAtOrAfter(db, until);
    if (to !== null) { where.push('seq < ?', 'time < ?'); args.push(to, until); }
  }
  if (q.decision !== undefined) { where.push('decision = ?'); args.push(q.decision); }
  if (q.requestId !== undefined) { where.push('request_id = ?'); args.push(q.requestId); }
  if (q.type !== undefined) { where.push('type = ?'); args.push(q.type); }
  const limit = Math.max(1, Math.min(10_000, Math.floor(q.limit ?? 100)));
  const sql = `SELECT seq, time, type, request_id, agent, decision, body, hash FROM audit_events${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY seq ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ${limit}`;
  return db.prepare(sql).all(...args).map((r) => rowToEvent(r as unknown as EventRow));
}

/** The whole chain of one request in commit order: identity -> decision -> credential -> upstream -> outcome. */
export function showRequest(db: DatabaseSync, requestId: string): AuditEvent[] {
  return queryEvents(db, { requestId, order: 'asc', limit: 10_000 });
}

/** One line per event for `aam audit show`. */
export function describeEvent(e: AuditEvent): string {
  const parts = [`#${e.seq}`, e.time, e.type];
  if (e.identity) parts.push(`agent=${e.identity.agent} (${e.identity.spiffe_id}, ${e.identity.method}${e.identity.key_id ? ' ' + e.identity.key_id : ''})`);
  if (e.policy) parts.push(`policy=${e.policy.name || '(default)'}#${e.policy.rule} ${e.policy.decision}: ${e.policy.reason}`);
  if (e.credential) parts.push(`credential=${e.credential.name}${e.credential.version ? '@' + e.credential.version : ''}`);
  if (e.model) {
    // A decision names only the route; a call also says where it went and what it cost.
    parts.push(e.model.provider
      ? `model=${e.model.route}->${e.model.provider}/${e.model.model} tokens=${e.model.input_tokens ?? '?'}/${e.model.output_tokens ?? '?'} cost=${e.model.cost_usd ?? 'unknown'}`
      : `model=${e.model.route}`);
  }
  if (e.tool) parts.push(`tool=${e.tool.server}.${e.tool.tool} ${e.tool.resource ?? ''}:${e.tool.action ?? ''} args=${e.tool.args_digest}`);
  if (e.admin) parts.push(`admin=${e.admin.action} ${e.admin.target ?? ''} by ${e.admin.actor}`);
  if (e.outcome) parts.push(`outcome=${e.outcome.status}${e.outcome.error_class ? ' ' + e.outcome.error_class : ''}`);
  return parts.join('  ');
}

function isoTime(v: string | Date, field: string): string {
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`audit query: ${field} "${String(v)}" is not a date; use ISO-8601 like 2026-01-31T00:00:00Z`);
  return d.toISOString();
}
