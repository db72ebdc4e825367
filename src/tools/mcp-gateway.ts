// MCP Streamable HTTP endpoint for agents: `/mcp` (all servers, tools named <server>__<tool>) and
// `/mcp/<server>` (one server, original names). One SDK Server + transport per client session;
// a session is bound to the identity that created it and to its endpoint.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { LoggingLevel, Progress, ServerCapabilities, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { ConfigSet } from '../config/schema.ts';
import type { Identity } from '../identity/types.ts';
import { mcpTraceparent } from '../observability/otlp-genai.ts';
import { createCatalog } from './catalog.ts';
import { callTool, completeArgument, DEFAULT_MAX_RESULT_BYTES, getPrompt, listPrompts, listResources, listResourceTemplates, readResource, subscribeResource, unsubscribeResource, type Extra, type Runtime, type SessionCtx } from './mcp-call.ts';
import { createMcpShared, sessionLimits, type McpGateway, type McpGatewayOptions, type McpShared } from './mcp-shared.ts';
import { handleModern, isModernRequest, listPage, toolsPage } from './mcp-stateless.ts';
import { createListenHub } from './mcp-listen.ts';
import { createPageStore } from './mcp-pages.ts';
import { isLogLevel } from './mcp-headers.ts';
import { isObj } from '../lib/json.ts';
import { identityFields, RPC, ToolError, type ToolAccess, type ToolDeps } from './types.ts';
import { ALL_SESSIONS, LOG_LEVEL_HOLD, StoreUnavailable, type McpSessionNote, type McpSessionRecord } from '../store/types.ts';
import type { LogParams, WatchList } from './upstream.ts';
import { optionalCapabilities } from './catalog.ts';
import { errMsg } from '../lib/error-message.ts';

/** This replica's objects for one session; `ready` once the SDK server is connected, `started` once initialized. */
interface Session {
  rec: McpSessionRecord; ctx: SessionCtx; server: Server; transport: StreamableHTTPServerTransport; lastUsed: number; ready: Promise<void>; started: boolean;
  /** Its GET (notification) streams open on this replica. */
  streams: number;
  /**
   * What it was due while it had no stream here, sent when one opens: list changes (one per list)
   * and resource updates (one per URI); null: unknown (no stream here yet on a session resumed
   * here, or the grace ran out), so one opening gets a list_changed for every list its caller may
   * list and an update for every URI it is subscribed to.
   */
  missed: Missed | null;
  /** aam listening to 2026-07-28 upstreams for it: while a stream is open, and for streamGraceMs after the last closed. */
  watch?: { close(): void };
  grace?: NodeJS.Timeout;
}
interface Missed { lists: Set<WatchList>; uris: Set<string> }
const LISTS: readonly WatchList[] = ['tools', 'prompts', 'resources'];
const nothingMissed = (): Missed => ({ lists: new Set(), uris: new Set() });
/** Resource updates kept for one session at most (distinct URIs); past it, what it missed counts as unknown. */
const MAX_KEPT_UPDATES = 1000;

/**
 * The SDK's server side (its Server, request schemas and Node transport), loaded by the first
 * session mounted on this replica (an initialize, or a request of a session opened elsewhere):
 * the schemas bring zod v4 + v3 and zod-to-json-schema, the transport @hono/node-server with
 * Node's bundled undici, node:http2 and tls (bench/RESULTS.md, "Memory"), which a gateway whose
 * MCP servers no client has opened a session with yet (or only 2026-07-28 clients use) would hold
 * for nothing. Upstream servers are spoken to without the SDK (mcp-stdio-client.ts, mcp-modern-client.ts).
 */
interface ServerSdk { Server: typeof Server; schemas: typeof import('@modelcontextprotocol/sdk/types.js'); Transport: typeof StreamableHTTPServerTransport }
let serverSdk: Promise<ServerSdk> | undefined;
const loadServerSdk = (): Promise<ServerSdk> => serverSdk ??= Promise.all([
  import('@modelcontextprotocol/sdk/server/index.js'), import('@modelcontextprotocol/sdk/types.js'), import('@modelcontextprotocol/sdk/server/streamableHttp.js'),
]).then(([server, schemas, http]) => ({ Server: server.Server, schemas, Transport: http.StreamableHTTPServerTransport }), (e: unknown) => { serverSdk = undefined; throw e; });
/** The body names initialize (the SDK's isInitializeRequest, which needs the schemas, decides whether it is one). */
const namesInitialize = (body: unknown): boolean => (Array.isArray(body) ? body : [body]).some((m) => isObj(m) && m.method === 'initialize');

const identityKey = (i: Identity) => i.agent.spiffeId;
/**
 * Notes between replicas about a session's state (never sent to a client): it subscribed to a URI
 * here (another replica holding the same subscription drops it), unsubscribed (whichever replica
 * holds the subscription undoes it), or ended (every replica drops its objects and subscriptions).
 */
const SUBSCRIBED = 'aam/subscribed';
const UNSUBSCRIBED = 'aam/unsubscribed';
const CLOSED = 'aam/closed';
/** A session's stream opened where aam cannot know which updates it missed: each replica holding its subscriptions announces them all. */
const REANNOUNCE = 'aam/reannounce';
const LIST_NOTES: Record<string, WatchList> = { 'notifications/tools/list_changed': 'tools', 'notifications/prompts/list_changed': 'prompts', 'notifications/resources/list_changed': 'resources' };
const instructions = (scope: string | null) => (scope === null ? 'aam MCP gateway: tools are named <server>__<tool>; every call is authorized and audited.' : undefined);

/**
 * The access context opened for one HTTP request rides on it as the SDK's authInfo, so each
 * JSON-RPC request of a session is decided with its own request's identity and policy set
 * (current attributes, current config), never the ones the session was opened with.
 */
type AuthedRequest = IncomingMessage & { auth?: AuthInfo };
function attachAccess(req: IncomingMessage, access: ToolAccess): void {
  (req as AuthedRequest).auth = { token: '', clientId: access.identity.agent.spiffeId, scopes: [], extra: { access, requestId: requestIdOf(req) } };
}

/**
 * aam's id of this HTTP request (the server puts it in req.headers before the plane runs). The
 * SDK's requestInfo.headers are rebuilt from the raw headers, i.e. the client's own x-request-id:
 * evidence keyed by that would let an agent file its calls under another request's trail.
 */
function requestIdOf(req: IncomingMessage): string | undefined {
  const rid = req.headers['x-request-id'];
  return typeof rid === 'string' && REQUEST_ID.test(rid) ? rid : undefined;
}

/** The session as seen by one request: same shared state, that request's access context. */
function forRequest(ctx: SessionCtx, extra: { authInfo?: AuthInfo }): SessionCtx {
  const access = extra.authInfo?.extra?.access as ToolAccess | undefined;
  // Every request through handle() carries one; a missing one is a bug, and never means "use the old identity".
  if (!access || identityKey(access.identity) !== identityKey(ctx.identity)) throw new ToolError('internal_error', 'MCP request without the caller\'s identity', { code: RPC.upstream, status: 500 });
  return access === ctx.access ? ctx : { ...ctx, identity: access.identity, access };
}

export function createMcpGateway(config: ConfigSet, deps: ToolDeps, opts: McpGatewayOptions = {}, shared: McpShared = createMcpShared(deps, opts)): McpGateway {
  const { integrity, approvals } = shared;
  const catalog = createCatalog(config, deps, integrity, opts);
  // Another replica accepted a changed definition: re-judge this server's tools now.
  integrity.onAccepted((server) => catalog.recompile(server));
  const rt: Runtime = { catalog, deps, approvals, maxResultBytes: opts.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES, pages: createPageStore() };
  const pageSize = opts.pageSize ?? 200;
  const maxSessions = opts.maxSessions ?? 10_000;
  const { maxPerIdentity, maxPerDomain } = sessionLimits(opts);
  const idleMs = opts.sessionIdleMs ?? 30 * 60_000;
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const listWaitMs = opts.listWaitMs ?? 5000;
  const streamGraceMs = opts.streamGraceMs ?? 10_000;
  /** Sessions this replica has SDK objects for (the registry, deps.sessions, says which exist at all). */
  const sessions = new Map<string, Session>();
  /** This gateway on the fleet channel: what it passes on there, it has done itself already. */
  const self = randomUUID();
  /** 2026-07-28 subscriptions/listen streams (bounded per identity like sessions). */
  const hub = createListenHub(rt, maxPerIdentity, streamGraceMs, self);
  /** A note about session `id` to every replica (the others act on it); resolves once every replica has it. */
  const passOn = (id: string, method: string, params: Record<string, unknown> = {}) => deps.sessions.notify(id, { method, params: { ...params, from: self } });

  // `who`: the upstream said it on the stream of that caller's own credential; it is that caller's alone.
  const forOthers = (s: Session, who: string | undefined) => who !== undefined && identityKey(s.ctx.identity) !== who;

  const sendListChanged = (s: Session, list: WatchList) =>
    void (list === 'tools' ? s.server.sendToolListChanged() : list === 'prompts' ? s.server.sendPromptListChanged() : s.server.sendResourceListChanged()).catch(() => {});

  /**
   * A list of `server` changed: this replica's listen streams and sessions hear it, each decided
   * for its caller as it is now; a session without a stream here gets it when one opens.
   */
  function listChanged(server: string, list: WatchList, who?: string): void {
    rt.pages.changed(list);
    hub.listChanged(server, list, who);
    for (const s of sessions.values()) {
      if ((s.ctx.scope !== null && s.ctx.scope !== server) || forOthers(s, who) || !hub.sessionMayList(s.ctx, server, list)) continue;
      if (s.streams > 0) sendListChanged(s, list);
      else s.missed?.lists.add(list);
    }
  }

  /** A resource update for a session (decided already): sent on its stream here, or kept until one opens. */
  function updated(s: Session, uri: string): void {
    // The session's caller as it is now: a revoked key hears nothing more (the sweeper ends the session).
    if ('gone' in s.ctx.access.current()) return;
    if (s.streams > 0) return void s.server.sendResourceUpdated({ uri }).catch(() => {});
    s.missed?.uris.add(uri);
    if (s.missed && s.missed.uris.size > MAX_KEPT_UPDATES) s.missed = null;
  }

  /** Each of the session's subscriptions held here, decided for its caller as it is now, to the replica with its stream. */
  function announceHeld(s: Session): void {
    for (const [uri, server] of s.ctx.subscriptions) decideUpdate(s, server, uri);
  }
  function decideUpdate(s: Session, server: string, uri: string): void {
    // A deny unsubscribes, on record; an update is sent wherever its stream is.
    if (hub.sessionUpdate(s.ctx, server, uri)) void deps.sessions.notify(s.rec.id, { method: 'notifications/resources/updated', params: { uri } });
    else void unsubscribeResource(rt, s.ctx, uri).catch(() => {});
  }

  /**
   * A session's GET stream opened here (the SDK has registered it: its headers are being written).
   * aam listens for it from now on, and it gets what it missed: the list changes and resource
   * updates kept while it had no stream, or (unknown) a list_changed for every list its caller may
   * list on its endpoint and an update for every URI it is subscribed to (on any replica): a
   * needless re-read is cheap, a stale resource is not.
   */
  function streamOpened(s: Session, res: ServerResponse): void {
    s.streams++;
    if (s.grace) { clearTimeout(s.grace); s.grace = undefined; }
    s.watch ??= hub.watchSession(s.ctx);
    const missed = s.missed;
    s.missed = nothingMissed();
    const due = missed?.lists ?? LISTS.filter((list) => [...catalog.servers.keys()].some((server) => (s.ctx.scope === null || s.ctx.scope === server) && hub.sessionMayList(s.ctx, server, list)));
    for (const list of due) sendListChanged(s, list);
    if (missed) for (const uri of missed.uris) void s.server.sendResourceUpdated({ uri }).catch(() => {});
    else { announceHeld(s); void passOn(s.rec.id, REANNOUNCE); }
    // Known to the server's one list of open streams: a shutdown's drain ends it as the network
    // would (the client opens its stream again, on another replica in a fleet, and gets what it
    // missed; the session lives on in the registry).
    const unlist = deps.streams.add(() => { if (!res.writableEnded) res.end(); });
    res.once('close', () => {
      unlist();
      if (--s.streams > 0 || sessions.get(s.rec.id) !== s) return;
      // The client may reconnect (the SDK's does after 1 s): still listened for meanwhile, and what it misses kept.
      s.grace = setTimeout(() => { s.grace = undefined; s.watch?.close(); s.watch = undefined; s.missed = null; }, streamGraceMs);
      s.grace.unref();
    });
  }

  /** Tell streamOpened when the SDK answers this GET with its event stream (200); a refused one (409, 404) is no stream. */
  function onStreamOpen(s: Session, res: ServerResponse): void {
    const writeHead = res.writeHead;
    res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
      res.writeHead = writeHead;
      const r = writeHead.apply(this, args);
      if (res.statusCode === 200) streamOpened(s, res);
      return r;
    } as ServerResponse['writeHead'];
  }
  catalog.onToolsChanged((server) => listChanged(server, 'tools'));
  catalog.onListChanged((server, list, who) => listChanged(server, list, who));
  // A 2025-11-25 server says it on this replica's session with it only: the other replicas hear it over the fleet channel.
  catalog.onAnnounced((server, list) => void deps.sessions.notify(ALL_SESSIONS, { method: `notifications/${list}/list_changed`, params: { server, from: self } }));

  /** Another replica heard a server's list change: its tools are listed again here (told when they differ), the rest relayed as is. */
  function heardElsewhere(note: McpSessionNote): void {
    const list = LIST_NOTES[note.method];
    const server = note.params.server;
    if (list === undefined || typeof server !== 'string' || note.params.from === self) return;
    const entry = catalog.servers.get(server);
    if (!entry) return;
    if (list !== 'tools') return listChanged(server, list);
    entry.upstream.relist().then((changed) => { if (!changed) listChanged(server, 'tools'); }, () => listChanged(server, 'tools'));
  }

  catalog.onTaskStatus((server, taskId, task) => hub.taskStatus(server, taskId, task));

  // Resource updates go to the sessions that subscribed to that URI on that server.
  // The subscription lives on the replica it was last made on; the client's stream may be on another:
  // the registry hands the update to whichever replica holds the session (the others keep it for a stream opening there: updated()).
  catalog.onResourceUpdated((server, uri, who) => {
    hub.resourceUpdated(server, uri, who);
    // Decided here, for the caller as it is now.
    for (const s of sessions.values()) if (s.ctx.subscriptions.get(uri) === server && !forOthers(s, who)) decideUpdate(s, server, uri);
  });
  deps.sessions.onNotify((id, note) => {
    if (id === ALL_SESSIONS) return heardElsewhere(note);
    const s = sessions.get(id);
    if (!s) return;
    const uri = note.params.uri;
    if (note.method === 'notifications/resources/updated') {
      if (typeof uri === 'string') updated(s, uri);
      return;
    }
    // An update kept for a URI it no longer subscribes to is not sent.
    if (note.method === UNSUBSCRIBED && typeof uri === 'string') s.missed?.uris.delete(uri);
    if (note.params.from === self) return;
    if (note.method === REANNOUNCE) return announceHeld(s);
    if ((note.method === SUBSCRIBED || note.method === UNSUBSCRIBED) && typeof uri === 'string' && s.ctx.subscriptions.has(uri)) void unsubscribeResource(rt, s.ctx, uri).catch(() => {});
    else if (note.method === CLOSED) void s.transport.close().catch(() => {});
  });

  /**
   * The subscriptions this replica holds, checked against the registry: a session closed, or a
   * subscription undone or taken over elsewhere, while this replica missed the note (its pub/sub
   * was disconnected) is dropped here and upstream. Run after the bus reconnects; retried each
   * second until the registry answers.
   */
  let recheckHeld = false;
  /** "<session> <uri>" of subscribes whose hold() is not answered yet: a check read before it would find no holder. */
  const subscribing = new Set<string>();
  async function checkHeld(): Promise<void> {
    for (const s of [...sessions.values()]) {
      // Read (in order on the one connection) after every hold() already answered, so only those in flight are skipped.
      const uris = [...s.ctx.subscriptions.keys()].filter((u) => !subscribing.has(`${s.rec.id} ${u}`));
      if (uris.length === 0) continue;
      const holders = await deps.sessions.holders(s.rec.id, uris);
      if (holders === null) { void s.transport.close().catch(() => {}); continue; }
      uris.forEach((uri, i) => { if (holders[i] !== self) void unsubscribeResource(rt, s.ctx, uri).catch(() => {}); });
    }
  }
  const resync = () => { recheckHeld = false; checkHeld().catch(() => { recheckHeld = true; }); };
  deps.sessions.onResync(resync);

  // Every second: drop objects of sessions idle here (the registry ends them when idle fleet-wide),
  // and end sessions whose key was revoked, so their open streams close on every replica within ~1 s.
  const sweeper = setInterval(() => {
    if (recheckHeld) resync();
    hub.recheck(); // listen streams of revoked keys end within ~1 s too
    const cutoff = Date.now() - idleMs;
    for (const s of sessions.values()) {
      const dead = s.started ? keyProblemOf(s.rec) : undefined;
      if (dead) void end(s.rec.id, dead).catch((e: unknown) => deps.log.warn({ session_id: s.rec.id, err: errMsg(e) }, 'mcp session end not recorded; retried'));
      else if (s.lastUsed < cutoff) void s.transport.close();
    }
  }, Math.min(idleMs, 1000));
  sweeper.unref();

  /** `optional`: completions and logging, declared when a server in the session's scope declares them. */
  function buildServer(sdk: ServerSdk, ctx: SessionCtx, id: string, optional: ServerCapabilities): Server {
    const {
      CallToolRequestSchema, CompleteRequestSchema, GetPromptRequestSchema, SetLevelRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema, ListResourceTemplatesRequestSchema,
      ListToolsRequestSchema, ReadResourceRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema,
    } = sdk.schemas;
    const server = new sdk.Server({ name: 'aam', version: '0.1.0' }, {
      capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, ...optional },
      instructions: instructions(ctx.scope),
    });
    if (optional.completions) {
      server.setRequestHandler(CompleteRequestSchema, async (req, extra) =>
        completeArgument(rt, forRequest(ctx, extra), req.params, callExtra(req.params._meta?.progressToken, extra, ctx.logLevel)));
    }
    // Replaces the SDK's own handler (this replica only): the level is the session's, on every replica.
    if (optional.logging) {
      server.setRequestHandler(SetLevelRequestSchema, async (req, extra) => {
        forRequest(ctx, extra);
        // Kept in the registry: every request of the session, on any replica, reads it with the session (touch).
        await deps.sessions.hold(id, LOG_LEVEL_HOLD, req.params.level);
        ctx.logLevel = req.params.level;
        return {};
      });
    }
    server.setRequestHandler(ListToolsRequestSchema, async (req, extra) => {
      const rc = forRequest(ctx, extra);
      await catalog.ready(ctx.scope, listWaitMs);
      return await toolsPage(rt, rc, req.params?.cursor, pageSize, postId(extra)) as { tools: Tool[]; nextCursor?: string };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) =>
      // A trace the agent carried in params._meta (MCP semconv) is the one this call continues.
      callTool(rt, forRequest(ctx, extra), req.params.name, req.params.arguments, { ...callExtra(req.params._meta?.progressToken, extra, ctx.logLevel), carried: mcpTraceparent(req.params) }));
    server.setRequestHandler(ListResourcesRequestSchema, async (req, extra) => { const rc = forRequest(ctx, extra); return listPage(rt, rc, 'resources/list', 'resources', req.params?.cursor, pageSize, () => listResources(rt, rc), postId(extra)); });
    server.setRequestHandler(ListResourceTemplatesRequestSchema, async (req, extra) => { const rc = forRequest(ctx, extra); return listPage(rt, rc, 'resources/templates/list', 'resourceTemplates', req.params?.cursor, pageSize, () => listResourceTemplates(rt, rc), postId(extra)); });
    server.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => readResource(rt, forRequest(ctx, extra), req.params.uri, callExtra(req.params._meta?.progressToken, extra, ctx.logLevel)));
    // A session's subscriptions are held by one replica at a time: the one it last subscribed on.
    // The registry says who holds it (a replica that missed the note reads it there); the note is the fast path.
    server.setRequestHandler(SubscribeRequestSchema, async (req, extra) => {
      const rc = forRequest(ctx, extra);
      const mark = `${id} ${req.params.uri}`;
      subscribing.add(mark);
      try {
        await subscribeResource(rt, rc, req.params.uri, callExtra(undefined, extra).requestId);
        try { await deps.sessions.hold(id, req.params.uri, self); } catch (e) {
          await unsubscribeResource(rt, rc, req.params.uri).catch(() => {});
          throw e;
        }
      } finally { subscribing.delete(mark); }
      void passOn(id, SUBSCRIBED, { uri: req.params.uri });
      return {};
    });
    server.setRequestHandler(UnsubscribeRequestSchema, async (req, extra) => {
      await unsubscribeResource(rt, forRequest(ctx, extra), req.params.uri);
      sessions.get(id)?.missed?.uris.delete(req.params.uri);
      // Refused (the client retries) unless the registry took it: the holder acts on it even if it misses the note.
      await deps.sessions.hold(id, req.params.uri, null);
      // Answered once every replica has it: an update decided after the answer finds nothing to send.
      await passOn(id, UNSUBSCRIBED, { uri: req.params.uri });
      return {};
    });
    server.setRequestHandler(ListPromptsRequestSchema, async (req, extra) => { const rc = forRequest(ctx, extra); return listPage(rt, rc, 'prompts/list', 'prompts', req.params?.cursor, pageSize, () => listPrompts(rt, rc), postId(extra)); });
    server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => getPrompt(rt, forRequest(ctx, extra), req.params.name, req.params.arguments, callExtra(req.params._meta?.progressToken, extra, ctx.logLevel)));
    return server;
  }

  /**
   * This replica's SDK objects for a session (its upstream connections are the catalog's, shared
   * by all sessions). `resumed`: the session was opened elsewhere (or before a restart of these
   * objects): the transport starts out initialized, as the client expects.
   */
  function mount(sdk: ServerSdk, rec: McpSessionRecord, access: ToolAccess, resumed: boolean, optional: ServerCapabilities): Session {
    const ctx: SessionCtx = { identity: access.identity, access, scope: rec.scope, sessionId: () => rec.id, resourceOwner: new Map(), templateOwners: [], subscriptions: new Map() };
    const server = buildServer(sdk, ctx, rec.id, optional);
    const transport = new sdk.Transport({
      sessionIdGenerator: () => rec.id,
      onsessioninitialized: (id) => { session.started = true; deps.log.info({ session_id: id, spiffe_id: rec.owner, scope: rec.scope ?? '*' }, 'mcp session started'); },
      // DELETE from the client: the session ends on every replica.
      onsessionclosed: (id) => {
        void passOn(id, CLOSED);
        void Promise.resolve(deps.sessions.close(id)).catch((e: unknown) => deps.log.warn({ session_id: id, err: errMsg(e) }, 'mcp session close not recorded; it ends when idle'));
      },
    });
    // A new session has missed nothing yet; one resumed here may have missed anything while its stream was elsewhere.
    const session: Session = { rec, ctx, server, transport, lastUsed: Date.now(), ready: Promise.resolve(), started: resumed, streams: 0, missed: resumed ? null : nothingMissed() };
    sessions.set(rec.id, session);
    // Closing the transport drops this replica's objects only; the session lives on in the registry.
    transport.onclose = () => {
      if (sessions.get(rec.id) === session) sessions.delete(rec.id);
      if (session.grace) clearTimeout(session.grace);
      session.watch?.close();
      session.watch = undefined;
      for (const uri of [...ctx.subscriptions.keys()]) void unsubscribeResource(rt, ctx, uri).catch(() => {});
    };
    session.ready = server.connect(transport).then(() => { if (resumed) markInitialized(transport, rec.id); });
    return session;
  }

  /** End a session everywhere (its key was revoked): registry first, then this replica's objects. */
  async function end(id: string, why: string): Promise<void> {
    deps.log.info({ session_id: id, reason: why }, 'mcp session ended');
    await deps.sessions.close(id);
    void passOn(id, CLOSED);
    const s = sessions.get(id);
    if (s) await s.transport.close().catch(() => {});
  }

  async function startSession(req: IncomingMessage, res: ServerResponse, access: ToolAccess, scope: string | null, body: unknown): Promise<void> {
    const identity = access.identity;
    const who = identityKey(identity);
    // A registered Agent is one of a configured few; an external SPIFFE ID is whatever its domain mints.
    const domain = identity.agent.name ? null : identity.agent.trustDomain;
    const rec: McpSessionRecord = {
      id: randomUUID(), owner: who, scope, domain,
      ...(identity.keyId !== undefined ? { keyId: identity.keyId, keyGeneration: identity.keyGeneration } : {}),
    };
    // Counted (fleet-wide) before initialize runs, so a burst cannot overshoot a cap.
    const opened = await deps.sessions.open(rec, { total: maxSessions, perIdentity: maxPerIdentity, perDomain: maxPerDomain, idleMs });
    if (!opened.ok && opened.limit === 'identity') {
      deps.log.warn({ spiffe_id: who, sessions: opened.open }, 'mcp session refused: per-identity limit');
      return rpcError(res, 429, RPC.limited, `too many open MCP sessions for ${who} (limit ${maxPerIdentity} per identity); close unused sessions (HTTP DELETE with Mcp-Session-Id) or let idle ones expire (after ${Math.round(idleMs / 60_000)} min), then retry`);
    }
    if (!opened.ok && opened.limit === 'domain') {
      deps.log.warn({ spiffe_id: who, trust_domain: domain, sessions: opened.open }, 'mcp session refused: per-trust-domain limit');
      return rpcError(res, 429, RPC.limited, `too many open MCP sessions for identities of trust domain ${domain} that are not registered as Agents (limit ${maxPerDomain} per trust domain); close unused sessions (HTTP DELETE with Mcp-Session-Id) or let idle ones expire (after ${Math.round(idleMs / 60_000)} min), then retry; an operator can register the workload as an Agent or raise AAM_MCP_SESSIONS_PER_TRUST_DOMAIN`);
    }
    if (!opened.ok) return rpcError(res, 503, RPC.upstream, `too many MCP sessions (${maxSessions}); close unused sessions (HTTP DELETE with Mcp-Session-Id) and retry`);
    // What the client is told it may use: completions and logging only when a server in scope offers them.
    await catalog.ready(scope, listWaitMs);
    const session = mount(await loadServerSdk(), rec, access, false, optionalCapabilities(catalog.inScope(scope)));
    try {
      await session.ready;
      attachAccess(req, access);
      await session.transport.handleRequest(req, res, body);
    } finally {
      // initialize failed: no session holds the slot
      if (!session.started) {
        await Promise.resolve(deps.sessions.close(rec.id)).catch(() => {});
        void session.transport.close().catch(() => {});
      }
    }
  }

  /** A request of an existing session, on whichever replica it lands. */
  async function continueSession(req: IncomingMessage, res: ServerResponse, access: ToolAccess, serverName: string | null, body: unknown, sid: string): Promise<void> {
    const identity = access.identity;
    // The registry decides (one round trip in fleet mode), so a session closed or expired elsewhere is gone here too.
    const rec = await deps.sessions.touch(sid, idleMs);
    let s = sessions.get(sid);
    if (!rec) {
      if (s) void s.transport.close().catch(() => {});
      return rpcError(res, 404, RPC.notFound, 'unknown or expired MCP session; start a new one with initialize (without Mcp-Session-Id)');
    }
    if (rec.owner !== identityKey(identity)) {
      deps.log.warn({ session_id: sid, owner: rec.owner, caller: identityKey(identity) }, 'mcp session used by another identity');
      return rpcError(res, 403, RPC.denied, 'this MCP session belongs to another identity; start your own session with initialize');
    }
    const dead = keyProblemOf(rec);
    if (dead) {
      await end(sid, dead);
      return rpcError(res, 404, RPC.notFound, `this MCP session has ended: the API key it was opened with no longer authenticates (${dead}); start a new one with initialize`);
    }
    if (rec.scope !== serverName) return rpcError(res, 400, RPC.invalidParams, `this MCP session was opened on ${rec.scope === null ? '/mcp' : `/mcp/${rec.scope}`}; use that endpoint`);
    if (!s) {
      const sdk = await loadServerSdk();
      // Another request of this session may have mounted it while the SDK loaded.
      s = sessions.get(sid);
      if (!s) {
        // Its client was told at initialize (elsewhere) what it may use: both handled here.
        s = mount(sdk, rec, access, true, { completions: {}, logging: {} });
        deps.log.info({ session_id: sid, spiffe_id: rec.owner, scope: rec.scope ?? '*' }, 'mcp session resumed on this replica');
      }
    }
    await s.ready;
    s.lastUsed = Date.now();
    // Same SPIFFE ID, attributes as they are now: requests are decided with this access context,
    // and the session's own background work (unsubscribing when it closes) uses the latest identity.
    s.ctx.identity = identity;
    s.ctx.access = access;
    // Its logging/setLevel, wherever it was set (the registry keeps it with the session).
    if (isLogLevel(rec.logLevel)) s.ctx.logLevel = rec.logLevel;
    attachAccess(req, access);
    if (req.method === 'GET') onStreamOpen(s, res);
    return s.transport.handleRequest(req, res, body);
  }

  /**
   * A session request the registry could not check (Redis down): counted and recorded like every
   * plane's such refusal (the caller, the method, the session), answered once its evidence is safe.
   */
  async function refuseUnchecked(req: IncomingMessage, res: ServerResponse, access: ToolAccess, body: unknown, sid: string | undefined, e: StoreUnavailable): Promise<void> {
    const what = sid ? 'check whom this MCP session belongs to' : 'count open MCP sessions against their caps';
    const refused = access.storeRefusal(e, `Redis (the fleet store for MCP sessions) is unavailable, so aam cannot ${what}: ${e.message}; retry shortly`);
    const method = isObj(body) && typeof body.method === 'string' ? body.method.slice(0, 64) : undefined;
    deps.audit.record({ type: 'tool.rejected', plane: 'mcp', request_id: requestIdOf(req), client_request_id: access.clientRequestId, trace_id: access.traceId(), ...identityFields(access.identity),
      session_id: sid, method, outcome: { status: refused.errorCode, error: refused.message } });
    await deps.audit.safe()?.catch(() => {});
    res.setHeader('retry-after', '1');
    rpcError(res, refused.status, refused.code, refused.message, refused.data);
  }

  /** Why the key a session was opened with no longer authenticates (the session dies with it), or undefined. */
  function keyProblemOf(rec: McpSessionRecord): string | undefined {
    return rec.keyId === undefined ? undefined : deps.keyProblem(rec.keyId, rec.keyGeneration);
  }

  return {
    async handle(req, res, access, serverName, parsedBody) {
      if (serverName !== null && !catalog.servers.has(serverName)) {
        return rpcError(res, 404, RPC.notFound, `unknown MCP server "${serverName}"; use /mcp for all servers you may use`);
      }
      let body = parsedBody;
      if (body === undefined && req.method === 'POST') {
        const read = await deps.readJson(req, maxBody);
        if (!read.ok) return rpcError(res, read.status, read.code, read.message);
        body = read.value;
      }
      // MCP 2026-07-28: no session, each request carries its own version and capabilities.
      if (req.method === 'POST' && isModernRequest(req.headers, body)) {
        const abort = new AbortController();
        res.on('close', () => { if (!res.writableFinished) abort.abort(); }); // a closed response cancels the request
        const extra = { signal: abort.signal, requestId: requestIdOf(req) };
        const listen = (s: SessionCtx, params: Record<string, unknown>, id: string | number, r: ServerResponse) => hub.listen(s, params, id, r, extra.requestId);
        return handleModern({ rt, pageSize, listWaitMs, instructions, listen }, req.headers, res, body as Record<string, unknown>, access, serverName, extra);
      }
      const sid = req.headers['mcp-session-id'];
      try {
        if (typeof sid === 'string' && sid) return await continueSession(req, res, access, serverName, body, sid);
        const isInitializeRequest = req.method === 'POST' && namesInitialize(body) ? (await loadServerSdk()).schemas.isInitializeRequest : undefined;
        const isInit = isInitializeRequest !== undefined && (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));
        // A batch or a scalar without a session is neither generation's request: say that, not "start a session".
        if (!isInit && !isObj(body)) {
          return rpcError(res, 400, -32600, `send one JSON-RPC request object per POST (${Array.isArray(body) ? 'batches are part of no MCP version since 2025-06-18' : `got ${body === null ? 'null' : typeof body}`}): a 2025-11-25 session starts with an initialize request, a 2026-07-28 request carries params._meta["io.modelcontextprotocol/protocolVersion"]`);
        }
        if (!isInit) return rpcError(res, 400, RPC.invalidParams, 'missing Mcp-Session-Id header: start a session with an initialize request first (MCP 2025-11-25 and earlier), or send MCP 2026-07-28 requests carrying params._meta["io.modelcontextprotocol/protocolVersion"] and the MCP-Protocol-Version header');
        return await startSession(req, res, access, serverName, body);
      } catch (e) {
        // The fleet's session registry cannot answer: refuse (a session's owner or the caps cannot be checked).
        if (!(e instanceof StoreUnavailable)) throw e;
        return refuseUnchecked(req, res, access, body, typeof sid === 'string' && sid ? sid : undefined, e);
      }
    },
    async reload(next) {
      rt.pages.changed(); // a gathering was cut to the old policies (in force from now on)
      await catalog.reload(next);
      rt.pages.changed(); // and to the old servers
      hub.recheck(true); // open listen streams (and sessions' listening) are decided with the new policies from now on
    },
    async close() {
      clearInterval(sweeper);
      await hub.closeAll();
      await Promise.all([...sessions.values()].map((s) => s.transport.close().catch(() => {})));
      sessions.clear();
      await catalog.close();
    },
    approvals,
    toolDiff: (server, tool) => integrity.diff(server, tool),
    async acceptTool(server, tool, actor) {
      // Evidence of who accepted it is the admin event the caller (admin API) records.
      const d = await integrity.accept(server, tool, actor);
      catalog.recompile(server);
      return d;
    },
    flaggedTools: () => integrity.flagged(),
    status() {
      const out: ReturnType<McpGateway['status']> = {};
      for (const [name, e] of catalog.servers) out[name] = { ...e.upstream.status(), tools: e.tools.size };
      return out;
    },
  };
}

interface SdkExtra {
  signal: AbortSignal;
  requestId: string | number;
  authInfo?: AuthInfo;
  sendNotification: (n: { method: 'notifications/progress'; params: { progressToken: string | number } & Progress } | { method: 'notifications/message'; params: LogParams }) => Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Forward cancellation (signal) and, when the client asked for them, progress notifications and log messages (on this request's stream). */
/** aam's id of the POST that carried this message (attachAccess), which its evidence is keyed by. */
function postId(extra: { authInfo?: AuthInfo }): string | undefined {
  const rid = extra.authInfo?.extra?.requestId;
  return typeof rid === 'string' ? rid : undefined;
}

function callExtra(progressToken: string | number | undefined, extra: SdkExtra, logLevel?: LoggingLevel): Extra {
  const onprogress = progressToken === undefined ? undefined
    : (p: Progress) => { extra.sendNotification({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => {}); };
  const log = logLevel === undefined ? undefined : { level: logLevel, send: (p: LogParams) => { extra.sendNotification({ method: 'notifications/message', params: p }).catch(() => {}); } };
  return { signal: extra.signal, onprogress, log, jsonrpcId: extra.requestId, requestId: postId(extra) };
}


/**
 * A session opened on another replica (or whose objects were dropped here) continues on fresh
 * SDK objects: the SDK has no public way to start a transport as initialized, so its two fields
 * are set here; a changed SDK fails loudly (the fleet session test catches it).
 */
function markInitialized(t: StreamableHTTPServerTransport, id: string): void {
  const inner = (t as unknown as { _webStandardTransport?: { _initialized?: unknown; sessionId?: string } })._webStandardTransport;
  if (!inner || typeof inner._initialized !== 'boolean') throw new Error('this MCP SDK version cannot resume a session on another replica (transport internals changed)');
  inner._initialized = true;
  inner.sessionId = id;
}

function rpcError(res: ServerResponse, status: number, code: number, message: string, data?: Record<string, unknown>): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message, ...(data ? { data } : {}) }, id: null }));
}

