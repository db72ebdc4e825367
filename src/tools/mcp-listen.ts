// MCP 2026-07-28 subscriptions/listen (basic/patterns/subscriptions): a long-lived SSE stream of
// the notifications a client asked for. aam acknowledges the subset it honours for this caller:
// toolsListChanged (its catalog's changes, for the servers of the endpoint) and resourceSubscriptions
// whose URIs the caller may read (each decided like resources/read, then subscribed upstream like
// a 2025-11-25 session's resources/subscribe). URIs it may not read are left out of the ack.
import type { ServerResponse } from 'node:http';
import { subscribeResource, unsubscribeResource, type Runtime, type SessionCtx } from './mcp-call.ts';
import { sseEvent as sse } from './mcp-headers.ts';
import { errMsg } from './util.ts';
import { RPC } from './types.ts';

const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
/** URIs one listen request may name (each is a decision and possibly an upstream subscription). */
export const MAX_LISTEN_URIS = 100;

type Json = Record<string, unknown>;

interface Listener { who: string; scope: string | null; tools: boolean; ctx: SessionCtx; send(method: string, params?: Json): void; end(): void }

/** The open listen streams of one gateway: fed by its catalog, closed gracefully with it. */
export interface ListenHub {
  toolsChanged(server: string): void;
  resourceUpdated(server: string, uri: string): void;
  /** Open one stream for a validated 2026-07-28 request; resolves when the stream ends. */
  listen(rt: Runtime, s: SessionCtx, params: Json, id: string | number, res: ServerResponse): Promise<void>;
  closeAll(): void;
}


export function createListenHub(maxPerIdentity: number): ListenHub {
  const open = new Set<Listener>();
  const countOf = (who: string) => { let n = 0; for (const l of open) if (l.who === who) n++; return n; };

  return {
    toolsChanged(server) {
      for (const l of open) if (l.tools && (l.scope === null || l.scope === server)) l.send('notifications/tools/list_changed');
    },
    resourceUpdated(server, uri) {
      for (const l of open) if (l.ctx.subscriptions.get(uri) === server) l.send('notifications/resources/updated', { uri });
    },
    async listen(rt, s, params, id, res) {
      const filter = params.notifications;
      const reply = (status: number, code: number, message: string) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code, message } })); };
      if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) return reply(400, RPC.invalidParams, 'subscriptions/listen needs params.notifications: { toolsListChanged?, resourceSubscriptions?: [uri, ...] }');
      const f = filter as Json;
      const uris = f.resourceSubscriptions === undefined ? [] : f.resourceSubscriptions;
      if (!Array.isArray(uris) || uris.some((u) => typeof u !== 'string') || uris.length > MAX_LISTEN_URIS) return reply(400, RPC.invalidParams, `params.notifications.resourceSubscriptions must be a list of at most ${MAX_LISTEN_URIS} URI strings`);
      const who = s.identity.agent.spiffeId;
      if (countOf(who) >= maxPerIdentity) return reply(429, RPC.limited, `too many open subscriptions/listen streams for ${who} (limit ${maxPerIdentity} per identity); close one (end its HTTP response) and retry`);
      // Each URI is decided like a read; one the caller may not read (or that no server owns) is not acknowledged.
      const granted: string[] = [];
      for (const uri of new Set(uris as string[])) {
        try { await subscribeResource(rt, s, uri); granted.push(uri); } catch (e) { rt.deps.log.info({ spiffe_id: who, uri, err: errMsg(e) }, 'subscriptions/listen: resource subscription not granted'); }
      }
      const tools = f.toolsListChanged === true;
      const l: Listener = {
        who, scope: s.scope, tools, ctx: s,
        send: (method, p = {}) => { if (!res.writableEnded) res.write(sse({ jsonrpc: '2.0', method, params: { ...p, _meta: { [SUBSCRIPTION_ID]: id } } })); },
        // Graceful end (spec: a completion result for the listen request, then close).
        end: () => { if (!res.writableEnded) res.end(sse({ jsonrpc: '2.0', id, result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID]: id } } })); },
      };
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      l.send('notifications/subscriptions/acknowledged', { notifications: { ...(tools ? { toolsListChanged: true } : {}), ...(granted.length ? { resourceSubscriptions: granted } : {}) } });
      open.add(l);
      if (!res.destroyed) await new Promise<void>((done) => res.once('close', done));
      open.delete(l);
      for (const uri of [...s.subscriptions.keys()]) await unsubscribeResource(rt, s, uri).catch(() => {});
    },
    closeAll() { for (const l of open) l.end(); },
  };
}
