// The delegation tree of one request, for `aam audit show`: the request's own events, then every
// request made while serving an A2A call it made (linked by their `delegation` events'
// parent_request_id), recursively: agent A -> agent B (skill) -> B's model, tool and A2A calls.
import type { DatabaseSync } from 'node:sqlite';
import { identityOf, type AuditEvent } from './event.ts';
import { describeEvent, queryEvents, showRequest } from './query.ts';

export interface RequestNode {
  requestId: string;
  events: AuditEvent[];
  children: RequestNode[];
}

/** Most requests a tree lists (a runaway chain cannot make the CLI read without end). */
const MAX_NODES = 1000;

type Link = { parent_request_id?: unknown };

/**
 * The tree rooted at `requestId`. Links are read once (type-keyed, from the root's first event
 * on), so the cost is one pass over `delegation` events plus one lookup per linked request.
 */
export function delegationTree(db: DatabaseSync, requestId: string): RequestNode {
  const root: RequestNode = { requestId, events: showRequest(db, requestId), children: [] };
  if (root.events.length === 0) return root;
  const byParent = new Map<string, string[]>();
  // A call's own events are written when it ends, after what was done for it: look back over its latency.
  const latency = Math.max(0, ...root.events.map((e) => Number((e.outcome as { latency_ms?: unknown } | undefined)?.latency_ms) || 0));
  const since = new Date(Date.parse(root.events[0].time) - latency - 60_000);
  for (const e of queryEvents(db, { type: 'delegation', since, order: 'asc', limit: 10_000 })) {
    const parent = (e.delegation as Link | undefined)?.parent_request_id;
    if (typeof parent !== 'string') continue;
    const list = byParent.get(parent) ?? [];
    if (!list.includes(e.request_id)) list.push(e.request_id);
    byParent.set(parent, list);
  }
  let nodes = 1;
  const seen = new Set([requestId]);
  const grow = (n: RequestNode): void => {
    for (const child of byParent.get(n.requestId) ?? []) {
      if (seen.has(child) || nodes >= MAX_NODES) continue;
      seen.add(child);
      nodes++;
      const c: RequestNode = { requestId: child, events: showRequest(db, child), children: [] };
      n.children.push(c);
      grow(c);
    }
  };
  grow(root);
  return root;
}

/** Indented text: each request's events, its delegated requests below it. */
export function describeTree(n: RequestNode, depth = 0): string[] {
  const pad = '  '.repeat(depth);
  const who = n.events.map(identityOf).find((i) => i !== undefined)?.agent;
  const lines = [`${pad}${depth ? '-> ' : ''}request ${n.requestId}${who ? ` (agent ${who})` : ''}`];
  for (const e of n.events) lines.push(`${pad}   ${describeEvent(e)}`);
  for (const c of n.children) lines.push(...describeTree(c, depth + 1));
  return lines;
}
