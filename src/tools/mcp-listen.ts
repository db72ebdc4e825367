// MCP 2026-07-28 subscriptions/listen (basic/patterns/subscriptions): a long-lived SSE stream of
// the notifications a client asked for. aam acknowledges the subset it honours for this caller:
// toolsListChanged, promptsListChanged and resourcesListChanged (for the servers of the endpoint)
// and resourceSubscriptions whose URIs the caller may read (each decided like resources/read, then
// subscribed upstream like a 2025-11-25 session's resources/subscribe). URIs it may not read are
// left out of the ack. A stream outlives the request that opened it, so each notification is
// decided for the caller as it is now (ToolAccess.current): a revoked key or a removed agent ends
// the stream, a policy that no longer lets it see a list or read a URI stops that notification,
// each with evidence; recheck() applies the same on a reload and every second. With the Tasks
// extension a client may also name its own task ids (taskIds): each upstream notifications/tasks
// about one is decided like a tasks/get, guarded and scrubbed, and relayed with the caller's id.
// A 2026-07-28 upstream is listened to in turn (Upstream.subscribe / watchTask).
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { RESOURCE_READ, PROMPT_GET, context, subscribeResource, unsubscribeResource, type Runtime, type SessionCtx } from './mcp-call.ts';
import { sseEvent as sse } from './mcp-headers.ts';
import type { ListKind, Upstream } from './upstream.ts';
import type { ServerEntry } from './catalog.ts';
import { decisionFields } from './util.ts';
import { identityFields, RPC, ToolError, type ToolAccess } from './types.ts';
import { decideTask, openTask, taskNotification } from './mcp-tasks.ts';
import { declaresTasks, TASKS_EXT } from './mcp-mrtr.ts';
import { isObj } from '../lib/json.ts';
import { StoreUnavailable, type ListenAwayRecord } from '../store/types.ts';
import { errMsg } from '../lib/error-message.ts';

const SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
/** URIs one listen request may name (each is a decision and possibly an upstream subscription). */
export const MAX_LISTEN_URIS = 100;

type Json = Record<string, unknown>;
type Kind = 'tools' | ListKind;
const FILTER: Record<Kind, string> = { tools: 'toolsListChanged', prompts: 'promptsListChanged', resources: 'resourcesListChanged' };

type Task = ReturnType<typeof openTask>;
/** Who wants list changes of its endpoint's 2026-07-28 upstreams: a listen stream, or a 2025-11-25 session while its stream is open. */
interface Watcher {
  who: string; scope: string | null; want: ReadonlySet<Kind>; ctx: SessionCtx;
  /** A listen stream's: aam's x-request-id of the request that opened it, which its evidence is filed under (`aam audit show ID`). */
  requestId?: string;
  /** Servers whose upstreams listen for the lists it wants, for it (undone on close, narrowed on reloads); ops on them run in order. */
  watching: Map<string, Upstream>; ops: Promise<unknown>;
  /** A session's: the access context its watches were last synced with (a session's context changes with each of its requests). */
  synced?: ToolAccess;
}
interface Listener extends Watcher {
  /** What it asked for (lists and URIs): a dropped stream with the same filter is taken over first. */
  sig: string;
  /** Watched tasks by `${server}\n${upstream task id}`: the caller's own id for each. */
  tasks: Map<string, { id: string; task: Task }>;
  send(method: string, params?: Json): void; end(): void; fail(message: string): void;
  /** End the stream as a dropped one (no completion: the client listens again, elsewhere in a fleet; what it misses is kept for the grace). */
  cut(): void;
  /** aam ended the stream (gracefully or with an error): nothing is kept for it. */
  ended?: boolean;
  /** While set: what it was sent (`method uri`), so a catch-up's last part skips what it heard itself. */
  heard?: Set<string>;
}
/**
 * A stream the client dropped (or closed: on HTTP the two look alike) and what it missed since:
 * list changes (one per list) and resource updates (one per URI); null: more than MAX_KEPT_UPDATES
 * URIs, so its caller's next stream is told every list it asks for and every URI it names changed.
 */
interface Away {
  l: Listener; missed: Missed | null; timer: NodeJS.Timeout;
  /** Its id in the fleet's store; `shared` once kept there (a replica the caller listens on next claims it). */
  id: string; shared: boolean;
}
interface Missed { lists: Set<Kind>; uris: Set<string> }
/** Resource updates kept for one dropped stream at most (distinct URIs), as for a 2025-11-25 session. */
const MAX_KEPT_UPDATES = 1000;
const ALL_KINDS: ReadonlySet<Kind> = new Set(['tools', 'prompts', 'resources']);
/** A listen request's filter, the same on every replica. */
const sigOf = (want: Iterable<Kind>, uris: Iterable<string>) => JSON.stringify([[...want].sort(), [...new Set(uris)].sort()]);
const taskKey = (server: string, up: string) => `${server}\n${up}`;
/** Did the listen request's client declare the Tasks extension? */
const listenDeclaresTasks = (params: Json): boolean => declaresTasks((params._meta as Json | undefined)?.['io.modelcontextprotocol/clientCapabilities']);

/** The open listen streams of one gateway: fed by its catalog, re-decided on reloads, closed gracefully with it. */
export interface ListenHub {
  /** A list of `server` changed; `who`: only that caller's streams (the upstream said it on the stream of that caller's own credential). */
  listChanged(server: string, list: Kind, who?: string): void;
  resourceUpdated(server: string, uri: string, who?: string): void;
  /** notifications/tasks from `server` about its task `taskId`. */
  taskStatus(server: string, taskId: string, task: Json): void;
  /**
   * A 2025-11-25 session's resource update, decided for its caller as it is now, like a listen
   * stream's: false (a deny on record) when it may no longer read the URI or no longer holds.
   */
  sessionUpdate(s: SessionCtx, server: string, uri: string): boolean;
  /** May a 2025-11-25 session's caller, as it is now, hear that this list of this server changed? */
  sessionMayList(s: SessionCtx, server: string, kind: Kind): boolean;
  /**
   * A 2025-11-25 session's stream is open: listen to its endpoint's 2026-07-28 upstreams for the
   * lists its caller may list (as a listen stream asking for all three does) until close().
   */
  watchSession(s: SessionCtx): { close(): void };
  /**
   * Re-decide every open stream for its caller as it is now (after a reload; periodically, for
   * revoked keys); sessions' watches follow their latest access context (`reloaded`: resolved now).
   */
  recheck(reloaded?: boolean): void;
  /** Open one stream for a validated 2026-07-28 request; resolves when the stream ends. */
  listen(s: SessionCtx, params: Json, id: string | number, res: ServerResponse, requestId?: string): Promise<void>;
  closeAll(): Promise<void>;
}

/**
 * `graceMs`: how long after a stream dropped aam keeps listening for it (its upstream watches and
 * subscriptions held) and keeps what it missed; the next stream of its caller on its endpoint
 * within that time is sent it right after its acknowledgement (the spec has no Last-Event-ID
 * resumption for listen: a re-listen is a new request, so the caller and endpoint are what tie it
 * to the dropped one). 0: nothing is kept.
 */
export function createListenHub(rt: Runtime, maxPerIdentity: number, graceMs = 0, self: string = randomUUID()): ListenHub {
  const open = new Set<Listener>();
  /**
   * Fleet mode: dropped streams are kept in Redis too (ListenAwayStore), so the caller's next
   * listen on any replica claims one (atomically: once) and is sent what it missed; the replica
   * holding it hears the claim and releases its upstream watches once the new stream's hold.
   */
  const fleet = graceMs > 0 ? rt.deps.sessions.listenAway : undefined;
  const fleetFailed = (what: string) => (err: unknown) => rt.deps.log.warn({ err: errMsg(err) }, `subscriptions/listen: ${what}`);
  /** Dropped streams within the grace, oldest first. */
  const away = new Set<Away>();
  const sessionWatchers = new Set<Watcher>();
  const countOf = (who: string) => { let n = 0; for (const l of open) if (l.who === who) n++; return n; };
  const inScope = (l: Watcher, server: string) => l.scope === null || l.scope === server;
  const evidence = (ctx: SessionCtx, ev: Json, method = 'subscriptions/listen', requestId?: string) => rt.deps.audit.record({ plane: 'mcp', method, request_id: requestId ?? `req_${randomUUID()}`, trace_id: ctx.access.traceId(), ...identityFields(ctx.identity), ...ev });

  /** The listener's caller as it is now; false (and the stream ended, on record) when it no longer holds. */
  function current(l: Listener): boolean {
    const now = l.ctx.access.current();
    if ('gone' in now) {
      open.delete(l);
      evidence(l.ctx, { type: 'tool.rejected', outcome: { status: 'listen_ended', error: now.gone } }, undefined, l.requestId);
      rt.deps.log.info({ spiffe_id: l.who, reason: now.gone }, 'subscriptions/listen stream ended: the caller no longer holds');
      l.fail(`subscriptions/listen ended: ${now.gone}; authenticate again and open a new stream`);
      return false;
    }
    if (now !== l.ctx.access) adopt(l, now);
    return true;
  }

  /** New policies (a reload): resource subscriptions the caller may no longer read are dropped, each a recorded deny. */
  function adopt(l: Listener, access: ToolAccess): void {
    l.ctx.access = access;
    l.ctx.identity = access.identity;
    for (const [uri, server] of l.ctx.subscriptions) {
      if (!mayRead(l.ctx, server, uri, undefined, l.requestId)) void unsubscribeResource(rt, l.ctx, uri).catch(() => {});
    }
    syncWatches(l);
  }

  /**
   * resources/read of `uri` decided for the caller now; a deny is recorded (it is why updates
   * stop). `via`: the stream it is for (a listen stream, or a 2025-11-25 session's); `given`: a
   * listen stream's request id.
   */
  function mayRead(ctx: SessionCtx, server: string, uri: string, via?: string, given?: string): boolean {
    const entry = rt.catalog.servers.get(server);
    if (!entry) return false;
    const requestId = given ?? `req_${randomUUID()}`;
    const d = ctx.access.authorize(entry.resource, RESOURCE_READ, { uri }, context(rt, ctx, requestId, { server, method: 'notifications/resources/updated' }));
    const ok = d.allowed && d.effect === 'allow' && !credentialRefused(ctx, server);
    if (!ok) evidence(ctx, { request_id: requestId, type: 'tool.decision', server, resource: entry.resource, action: RESOURCE_READ, uri, decision: decisionFields(d) }, via);
    return ok;
  }

  const credentialRefused = (ctx: SessionCtx, server: string) => {
    const cred = rt.catalog.servers.get(server)?.spec.credential;
    return cred !== undefined && ctx.access.credentialRefusal(cred) !== null;
  };

  /** Could the caller list this server's tools, prompts or resources now (what a list_changed is about)? */
  function mayList(ctx: SessionCtx, server: string, kind: Kind): boolean {
    const entry = rt.catalog.servers.get(server);
    if (!entry || credentialRefused(ctx, server)) return false;
    if (kind === 'prompts') return ctx.access.visible(entry.resource, PROMPT_GET);
    if (kind === 'resources') return ctx.access.visible(entry.resource, RESOURCE_READ);
    for (const t of entry.tools.values()) if (ctx.access.visible(t.resource, t.action)) return true;
    return false;
  }

  /** A 2025-11-25 session's caller as it is now (its context adopts new policies); false when it no longer holds. */
  function sessionCurrent(s: SessionCtx): boolean {
    const now = s.access.current();
    if ('gone' in now) return false;
    if (now !== s.access) { s.access = now; s.identity = now.identity; }
    return true;
  }

  const forOthers = (l: Listener, who: string | undefined) => who !== undefined && l.who !== who;

  function changed(server: string, kind: Kind, who?: string): void {
    for (const l of [...open]) {
      if (l.want.has(kind) && inScope(l, server) && !forOthers(l, who) && current(l) && mayList(l.ctx, server, kind)) l.send(`notifications/${kind}/list_changed`);
    }
    // Kept undecided: the caller's next stream is decided as it is then.
    for (const a of away) {
      if (!a.l.want.has(kind) || !inScope(a.l, server) || forOthers(a.l, who)) continue;
      a.missed?.lists.add(kind);
      share(a, 'list', kind);
    }
  }

  /** What a kept stream missed, to the fleet's copy too (its claimer may be collecting the rest). */
  function share(a: Away, kind: 'list' | 'uri', value: string): void {
    if (fleet && a.shared) fleet.missed(a.l.who, a.l.scope, a.id, kind, value, MAX_KEPT_UPDATES).catch(fleetFailed('a missed notification was not kept in the fleet store'));
  }

  /** Everything aam holds for a stream that ended: its upstream list watches, task watches and resource subscriptions. */
  async function release(l: Listener): Promise<void> {
    void syncWatches(l, true);
    for (const w of l.tasks.values()) w.task.entry.upstream.unwatchTask(w.task.b.up, l.ctx.identity);
    l.tasks.clear();
    for (const uri of [...l.ctx.subscriptions.keys()]) await unsubscribeResource(rt, l.ctx, uri).catch(() => {});
  }
  /** This replica is shutting down (the server's drain has begun). */
  const draining = (): boolean => rt.deps.streams.draining;
  /** Dropped streams being written to the fleet's store (closeAll waits for them: the store closes after it). */
  const puts = new Set<Promise<void>>();
  /** `drop`: from the fleet's store too (not when another replica took it over: it takes the rest itself). */
  function forget(a: Away, drop = true): Promise<void> {
    away.delete(a);
    clearTimeout(a.timer);
    if (drop && fleet && a.shared) fleet.take(a.l.who, a.l.scope, a.id).catch(fleetFailed('a dropped stream was not removed from the fleet store'));
    return release(a.l);
  }
  // Another replica took one of ours over (its own watches hold now): nothing more is held for it here.
  fleet?.onReleased((id) => { for (const a of away) if (a.id === id) void forget(a, false); });

  /** A stream the client dropped: held for the grace (the oldest of its caller's go past maxPerIdentity). */
  function keepAway(l: Listener): void {
    const mine = [...away].filter((a) => a.l.who === l.who);
    for (const a of mine.slice(0, Math.max(0, mine.length + 1 - maxPerIdentity))) void forget(a);
    const a: Away = { l, missed: { lists: new Set(), uris: new Set() }, timer: setTimeout(() => void forget(a), graceMs), id: randomUUID(), shared: fleet !== undefined };
    a.timer.unref();
    away.add(a);
    // Redis down: kept here only (the caller's next listen on this replica still gets it).
    // Draining (this replica is going away, and its upstream listening with it): what the stream
    // misses from now on is unknown, so the replica it listens on next announces all it asked for.
    const put = fleet?.put(l.who, l.scope, a.id, { holder: self, sig: l.sig, want: [...l.want], subs: [...l.ctx.subscriptions.keys()], lists: [], uris: [], unknown: draining() }, graceMs)
      .catch((err: unknown) => { a.shared = false; fleetFailed('a dropped stream is kept on this replica only')(err); });
    if (put) { puts.add(put); void put.finally(() => puts.delete(put)); }
  }

  /**
   * The dropped stream a new one of the same caller on the same endpoint takes over (one asking
   * for the same notifications first, else the latest), no longer kept; undefined: none.
   */
  function takeAway(l: Listener, which: (a: Away) => boolean = () => true): Away | undefined {
    const mine = [...away].filter((a) => a.l.who === l.who && a.l.scope === l.scope && which(a));
    const a = mine.find((x) => x.l.sig === l.sig) ?? mine.at(-1);
    if (a) { away.delete(a); clearTimeout(a.timer); }
    return a;
  }

  /**
   * What a dropped stream missed (`lists`, `uris`: what it named, for when that is unknown) that
   * `l` asked for and its caller may have now, sent on `l` (after its acknowledgement), except what
   * `l` was sent itself meanwhile (`l.heard`).
   */
  function catchUp(l: Listener, missed: { lists: Iterable<string>; uris: Iterable<string> }): void {
    const servers = [...rt.catalog.servers.keys()].filter((server) => inScope(l, server));
    for (const kind of new Set(missed.lists)) {
      if (!l.want.has(kind as Kind) || l.heard?.has(`notifications/${kind}/list_changed`)) continue;
      if (servers.some((server) => mayList(l.ctx, server, kind as Kind))) l.send(`notifications/${kind}/list_changed`);
    }
    // Its subscriptions were granted just now (each decided like a read).
    for (const uri of new Set(missed.uris)) {
      if (l.ctx.subscriptions.has(uri) && !l.heard?.has(`notifications/resources/updated ${uri}`)) l.send('notifications/resources/updated', { uri });
    }
  }
  /**
   * A catch-up from another replica that names a tools change: this replica did not hear it, so
   * its tools lists of the endpoint (kept for their ttlMs) may be stale; listed again first, so the
   * client's re-read here sees the change (a list that differs is announced to `l` too: the
   * catch-up then skips it, l.heard).
   */
  async function freshen(l: Listener, missed: { lists: Iterable<string> }): Promise<void> {
    if (![...missed.lists].includes('tools')) return;
    await Promise.all([...rt.catalog.servers.values()].filter((e) => inScope(l, e.name)).map((e) => e.upstream.relist().catch(() => false)));
  }
  const missedOf = (a: Away) => a.missed ?? { lists: a.l.want, uris: a.l.ctx.subscriptions.keys() };
  const keptMissed = (r: ListenAwayRecord) => (r.unknown ? { lists: r.want, uris: r.subs } : r);

  /**
   * May the caller hear this server's list changes at all (what an upstream listen stream is kept
   * for)? A server whose tools were never listed (it was down) counts for its tools until they are.
   */
  const mayWatch = (l: Watcher, e: ServerEntry) => !credentialRefused(l.ctx, e.name) && [...l.want].some((k) => (k === 'tools' && e.tools.size === 0) || mayList(l.ctx, e.name, k));

  /**
   * The servers of the listener's endpoint whose upstreams are asked for the lists it wants (2026-07-28
   * ones; older ones send them on their session), kept to those it may hear now: a narrowed policy
   * ends the listening for it at once (the caller's own upstream stream closes when it was the last
   * on it), on record; a widened one adds servers; `closing` undoes them all. In order per listener,
   * so an undo never overtakes the watch it undoes.
   */
  function syncWatches(l: Watcher, closing = false): Promise<unknown> {
    if (l.want.size === 0) return l.ops;
    const next = new Map<string, Upstream>();
    if (!closing) for (const e of rt.catalog.servers.values()) if (inScope(l, e.name) && mayWatch(l, e)) next.set(e.name, e.upstream);
    const gone = [...l.watching].filter(([name, up]) => next.get(name) !== up);
    const added = [...next].filter(([name, up]) => l.watching.get(name) !== up);
    if (!gone.length && !added.length) return l.ops;
    l.watching = next;
    for (const [server] of gone) {
      const entry = rt.catalog.servers.get(server);
      if (closing || entry === undefined || next.has(server)) continue; // removed or replaced by a reload, not narrowed
      // A session's list changes stop being decided its way anyway (each is decided as it comes): its narrowing is logged only.
      if (l.synced === undefined) evidence(l.ctx, { type: 'tool.rejected', server, resource: entry.resource, outcome: { status: 'listen_narrowed', error: `the caller may no longer hear ${server}'s list changes; aam stopped listening to it for them` } }, undefined, l.requestId);
      rt.deps.log.info({ spiffe_id: l.who, server }, 'subscriptions/listen: list changes of this server no longer relayed (policy narrowed); its upstream listening ended');
    }
    const lists = [...l.want];
    const identity = l.ctx.identity;
    l.ops = l.ops.then(() => {
      for (const [, up] of gone) up.unwatchLists(lists, identity);
      return Promise.all(added.map(([server, up]) => up.watchLists(lists, identity)
        .catch((err: unknown) => rt.deps.log.info({ spiffe_id: l.who, server, err: errMsg(err) }, 'subscriptions/listen: the upstream is not listened to for list changes'))));
    });
    return l.ops;
  }

  return {
    listChanged: (server, list, who) => changed(server, list, who),
    resourceUpdated(server, uri, who) {
      for (const l of [...open]) {
        if (l.ctx.subscriptions.get(uri) !== server || forOthers(l, who) || !current(l)) continue;
        if (mayRead(l.ctx, server, uri, undefined, l.requestId)) l.send('notifications/resources/updated', { uri });
        else void unsubscribeResource(rt, l.ctx, uri).catch(() => {});
      }
      for (const a of away) {
        if (a.l.ctx.subscriptions.get(uri) !== server || forOthers(a.l, who)) continue;
        share(a, 'uri', uri);
        if (!a.missed) continue;
        a.missed.uris.add(uri);
        if (a.missed.uris.size > MAX_KEPT_UPDATES) a.missed = null;
      }
    },
    taskStatus(server, up, task) {
      for (const l of [...open]) {
        const w = l.tasks.get(taskKey(server, up));
        if (!w || !current(l)) continue;
        taskNotification(rt, l.ctx, w.task, w.id, task, l.requestId).then((out) => l.send('notifications/tasks', out), (e: unknown) => {
          // Not a task per the extension: this one is dropped (on record), the next may be.
          if (e instanceof ToolError && e.errorCode === 'invalid_task') { rt.deps.log.warn({ spiffe_id: l.who, server, err: errMsg(e) }, 'subscriptions/listen: task notification not relayed'); return; }
          // Denied now (the deny is on record), or not relayable: this stream hears no more of the task.
          l.tasks.delete(taskKey(server, up));
          w.task.entry.upstream.unwatchTask(up, l.ctx.identity);
          rt.deps.log.info({ spiffe_id: l.who, server, err: errMsg(e) }, 'subscriptions/listen: task notification not relayed');
        });
      }
    },
    sessionUpdate: (s, server, uri) => sessionCurrent(s) && mayRead(s, server, uri, 'resources/subscribe'),
    sessionMayList: (s, server, kind) => sessionCurrent(s) && mayList(s, server, kind),
    watchSession(s) {
      const w: Watcher = { who: s.identity.agent.spiffeId, scope: s.scope, want: ALL_KINDS, ctx: s, watching: new Map(), ops: Promise.resolve(), synced: s.access };
      sessionWatchers.add(w);
      void syncWatches(w);
      return { close() { if (sessionWatchers.delete(w)) void syncWatches(w, true); } };
    },
    recheck(reloaded = false) {
      for (const l of [...open]) current(l);
      // A dropped stream's caller that no longer holds: nothing more is kept or held for it; new policies narrow what is held.
      for (const a of [...away]) {
        const now = a.l.ctx.access.current();
        if ('gone' in now) void forget(a);
        else if (now !== a.l.ctx.access) adopt(a.l, now);
      }
      for (const w of sessionWatchers) {
        // Its caller no longer holds (the sweeper ends the session): nothing more is listened to for it.
        if (reloaded && !sessionCurrent(w.ctx)) { void syncWatches(w, true); continue; }
        if (w.ctx.access === w.synced) continue;
        w.synced = w.ctx.access;
        void syncWatches(w);
      }
    },
    async listen(s, params, id, res, requestId) {
      const filter = params.notifications;
      const reply = (status: number, code: number, message: string, data?: Json) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify({ jsonrpc: '2.0', id, error: { code, message, ...(data ? { data } : {}) } })); };
      if (!isObj(filter)) return reply(400, RPC.invalidParams, 'subscriptions/listen needs params.notifications: { toolsListChanged?, promptsListChanged?, resourcesListChanged?, resourceSubscriptions?: [uri, ...], taskIds?: [taskId, ...] }');
      const f = filter as Json;
      const uris = f.resourceSubscriptions === undefined ? [] : f.resourceSubscriptions;
      if (!Array.isArray(uris) || uris.some((u) => typeof u !== 'string') || uris.length > MAX_LISTEN_URIS) return reply(400, RPC.invalidParams, `params.notifications.resourceSubscriptions must be a list of at most ${MAX_LISTEN_URIS} URI strings`);
      const taskIds = f.taskIds === undefined ? [] : f.taskIds;
      if (!Array.isArray(taskIds) || taskIds.some((u) => typeof u !== 'string') || taskIds.length > MAX_LISTEN_URIS) return reply(400, RPC.invalidParams, `params.notifications.taskIds must be a list of at most ${MAX_LISTEN_URIS} task ids`);
      if (taskIds.length && !listenDeclaresTasks(params)) return reply(400, -32021, `Missing required client capability: notifications.taskIds needs the Tasks extension; declare params._meta["io.modelcontextprotocol/clientCapabilities"].extensions["${TASKS_EXT}"]`, { requiredCapabilities: { extensions: { [TASKS_EXT]: {} } } });
      const who = s.identity.agent.spiffeId;
      if (countOf(who) >= maxPerIdentity) return reply(429, RPC.limited, `too many open subscriptions/listen streams for ${who} (limit ${maxPerIdentity} per identity); close one (end its HTTP response) and retry`);
      const want = new Set((Object.keys(FILTER) as Kind[]).filter((k) => f[FILTER[k]] === true));
      const sig = sigOf(want, uris as string[]);
      // Fleet: a stream of this caller on this endpoint that dropped on any replica within the grace, claimed for this one.
      let claimed: { id: string; rec: ListenAwayRecord } | null = null;
      if (fleet) {
        try { claimed = await fleet.claim(who, s.scope, sig); } catch (e) {
          // As the fleet's MCP sessions: refused, never answered without what the caller is owed.
          if (!(e instanceof StoreUnavailable)) throw e;
          res.setHeader('retry-after', '1');
          return reply(503, RPC.upstream, `Redis (the fleet store for MCP) is unavailable, so aam cannot tell what this listen stream missed: ${e.message}; retry shortly`, { retry_after_seconds: 1, store: e.store });
        }
      }
      // Each URI is decided like a read; one the caller may not read (or that no server owns) is not acknowledged.
      const granted: string[] = [];
      for (const uri of new Set(uris as string[])) {
        try { await subscribeResource(rt, s, uri, requestId); granted.push(uri); } catch (e) { rt.deps.log.info({ spiffe_id: who, uri, err: errMsg(e) }, 'subscriptions/listen: resource subscription not granted'); }
      }
      // Each task id must be the caller's own on this endpoint, decided like a tasks/get.
      const tasks = new Map<string, { id: string; task: Task }>();
      for (const id of new Set(taskIds as string[])) {
        try {
          const task = openTask(rt, s, id);
          decideTask(rt, s, task, 'subscriptions/listen', requestId ?? `req_${randomUUID()}`);
          tasks.set(taskKey(task.b.server, task.b.up), { id, task });
        } catch (e) { rt.deps.log.info({ spiffe_id: who, err: errMsg(e) }, 'subscriptions/listen: task notifications not granted'); }
      }
      const frame = (msg: Json) => { if (!res.writableEnded) res.write(sse(msg)); };
      const l: Listener = {
        who, scope: s.scope, sig, want, ctx: s, requestId, tasks, watching: new Map(), ops: Promise.resolve(),
        send: (method, p = {}) => {
          l.heard?.add(typeof p.uri === 'string' ? `${method} ${p.uri}` : method);
          frame({ jsonrpc: '2.0', method, params: { ...p, _meta: { [SUBSCRIPTION_ID]: id } } });
        },
        // Graceful end (spec: a completion result for the listen request, then close).
        end: () => { l.ended = true; if (!res.writableEnded) res.end(sse({ jsonrpc: '2.0', id, result: { resultType: 'complete', _meta: { [SUBSCRIPTION_ID]: id } } })); },
        fail: (message) => { l.ended = true; if (!res.writableEnded) res.end(sse({ jsonrpc: '2.0', id, error: { code: RPC.denied, message } })); },
        cut: () => { if (!res.writableEnded) res.end(); },
      };
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const acked: Json = {};
      for (const k of want) acked[FILTER[k]] = true;
      if (granted.length) acked.resourceSubscriptions = granted;
      if (tasks.size) acked.taskIds = [...tasks.values()].map((w) => w.id);
      l.send('notifications/subscriptions/acknowledged', { notifications: acked });
      open.add(l);
      // Known to the server's one list of open streams: a shutdown's drain ends it as a dropped one.
      res.once('close', rt.deps.streams.add(l.cut));
      // The caller's stream here that dropped within the grace: what it missed, from here on heard by this one.
      // (Fleet: the one claimed, if this replica holds it; else one kept here only, Redis having been down.)
      const claimedId = claimed?.id;
      const back = claimedId !== undefined ? takeAway(l, (a) => a.id === claimedId) : takeAway(l, (a) => fleet === undefined || !a.shared);
      // Held by another replica (or no longer here): what it missed until the claim, from the fleet's copy.
      const elsewhere = claimed && !back ? claimed : undefined;
      if (back) catchUp(l, missedOf(back));
      else if (elsewhere) {
        l.heard = new Set();
        await freshen(l, keptMissed(elsewhere.rec));
        catchUp(l, keptMissed(elsewhere.rec));
      }
      if (claimed && back) fleet?.take(who, s.scope, claimed.id).catch(fleetFailed('a taken-over stream was not removed from the fleet store'));
      // Watched once the stream hears: an upstream may announce a task's status right away.
      for (const w of tasks.values()) await w.task.entry.upstream.watchTask(w.task.b.up, s.identity).catch((e: unknown) => rt.deps.log.warn({ spiffe_id: who, server: w.task.b.server, err: errMsg(e) }, 'subscriptions/listen: the upstream cannot be listened to for this task'));
      await syncWatches(l);
      // Released once this stream's own watches hold: the upstream listening never lapses in between.
      if (back) await release(back.l);
      if (elsewhere && fleet) {
        // What its holder heard between the claim and now (this stream's watches hold from here), minus what this one was sent itself; then it lets go.
        l.heard = new Set();
        try {
          const rest = await fleet.take(who, s.scope, elsewhere.id);
          if (rest) { await freshen(l, keptMissed(rest)); catchUp(l, keptMissed(rest)); }
          await fleet.release(elsewhere.id);
        } catch (e) { fleetFailed('the rest of a catch-up was not taken (its holder lets go when the grace ends)')(e); }
        l.heard = undefined;
      }
      if (!res.destroyed && !res.writableEnded) await new Promise<void>((done) => res.once('close', done));
      open.delete(l);
      // Dropped by the client (aam did not end it) and its caller still holds: kept for a while.
      if (!l.ended && graceMs > 0 && !('gone' in l.ctx.access.current())) keepAway(l);
      else await release(l);
    },
    async closeAll() {
      for (const l of open) l.end();
      // Draining: the fleet's store keeps the streams this replica dropped (another replica's catch-up takes them).
      await Promise.allSettled([...puts]);
      for (const a of [...away]) void forget(a, !draining());
    },
  };
}
