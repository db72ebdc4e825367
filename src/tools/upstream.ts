// One supervised connection to an upstream MCP server (stdio, SSE or Streamable HTTP).
// stdio: aam spawns the process, captures stderr to the log and restarts it with exponential backoff.
// The tools list is cached and refreshed on notifications/tools/list_changed.
// Credentials: HTTP transports get the injected headers per request for the identity of the call in
// flight (AsyncLocalStorage), so one agent's on-behalf-of token is never used for another's call.
import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  CallToolResult, CompleteRequest, CompleteResult, GetPromptResult, LoggingLevel, LoggingMessageNotification, ServerCapabilities, ListPromptsResult, ListResourcesResult, ListResourceTemplatesResult, Progress, ReadResourceResult,
} from '@modelcontextprotocol/sdk/types.js';
import type { McpServerSpec } from '../config/schema.ts';
import type { Identity } from '../identity/types.ts';
import { GATEWAY_IDENTITY, ToolError, RPC, type ToolDeps, type UpstreamTool } from './types.ts';
import { createModernClient, discoverModern, logSeverity, type LogParams, type RequestLog, type SessionClient, type UpstreamClient, type UpstreamListen } from './mcp-modern-client.ts';
import { createStdioClient, defaultEnvironment } from './mcp-stdio-client.ts';
import { isMcpError, MCP_CODE } from './mcp-error.ts';
import { CLIENT_CAPS, MODERN_VERSION } from './mcp-headers.ts';
import { errMsg } from '../lib/error-message.ts';

export type UpstreamState = 'connecting' | 'ready' | 'down' | 'closed';

export interface UpstreamOptions {
  /** First restart delay after a crash; doubles per consecutive failure up to restartMaxMs. */
  restartMinMs?: number;
  restartMaxMs?: number;
  /** Per-call timeout when the McpServer has no timeout_ms. */
  defaultTimeoutMs?: number;
  /** A connection that stays up this long resets the backoff. */
  stableAfterMs?: number;
  /** 2026-07-28 listen streams the upstream ends: first retry delay (default 1 s), doubling per retry up to listenRetryMaxMs (30 s). */
  listenRetryMinMs?: number;
  listenRetryMaxMs?: number;
  /** A listen stream that stayed up this long (default 30 s), or brought a notification, resets its retry delay. */
  listenStableMs?: number;
}

/** Lists other than tools whose changes an upstream announces (tools are re-listed and compiled instead). */
export type ListKind = 'prompts' | 'resources';
/** Lists whose list_changed a 2026-07-28 upstream's listen stream is asked for. */
export type WatchList = 'tools' | ListKind;
const LIST_FILTER: Record<WatchList, string> = { tools: 'toolsListChanged', prompts: 'promptsListChanged', resources: 'resourcesListChanged' };

export interface CallOptions {
  signal?: AbortSignal;
  onprogress?: (p: Progress) => void;
  /** W3C trace context for the upstream, sent in `params._meta` (MCP semconv context propagation). */
  traceContext?: { traceparent: string; tracestate?: string };
  /** A 2026-07-28 client's retry of a multi round-trip request (the upstream's own state), and what input it can give. */
  mrtr?: { inputResponses?: unknown; requestState?: string; clientCapabilities: Record<string, unknown> };
  /** Log messages of this one request, for the caller who asked (mcp-modern-client.ts RequestLog). */
  log?: RequestLog;
}

export type { LogParams };

export interface Upstream {
  readonly name: string;
  readonly spec: McpServerSpec;
  /** Cached tool definitions; connects (or waits for the connection) on first use; re-lists once a 2026-07-28 `ttlMs` has lapsed. */
  tools(): Promise<UpstreamTool[]>;
  /**
   * When the server marks its tools list `cacheScope: "private"` (it depends on who asks): the tool
   * names it lists for `identity` (listed with that identity's credential, kept for that identity
   * only, for the list's `ttlMs`). null when the list is the same for everyone.
   */
  callerTools(identity: Identity): Promise<ReadonlySet<string> | null>;
  callTool(tool: string, args: Record<string, unknown>, identity: Identity, opts?: CallOptions): Promise<CallToolResult>;
  /** Every page of the server's resources/list as `identity`, with its caching hints (likewise templates and prompts). */
  listResources(identity: Identity): Promise<Listing<ListResourcesResult['resources'][number]>>;
  readResource(uri: string, identity: Identity, opts?: CallOptions): Promise<ReadResourceResult>;
  listResourceTemplates(identity: Identity): Promise<Listing<ListResourceTemplatesResult['resourceTemplates'][number]>>;
  /** Counted per URI across sessions: the upstream is subscribed on the first and unsubscribed after the last. */
  subscribe(uri: string, identity: Identity): Promise<void>;
  unsubscribe(uri: string, identity: Identity): Promise<void>;
  /**
   * Called with the URI of each notifications/resources/updated from the upstream, and `who` (a
   * SPIFFE ID) when it came on a stream opened with that caller's own credential: it is that caller's alone.
   */
  onResourceUpdated(listener: (uri: string, who?: string) => void): void;
  /**
   * Called on each notifications/prompts/list_changed and notifications/resources/list_changed from
   * the upstream, and on a 2026-07-28 upstream's tools/list_changed about a private tools list
   * (a shared one is re-listed and reported by onToolsChanged); `who` as for onResourceUpdated.
   */
  onListChanged(listener: (list: WatchList, who?: string) => void): void;
  /** Counted per upstream task id: a 2026-07-28 upstream's notifications/tasks for it are wanted (subscriptions/listen). */
  watchTask(taskId: string, identity: Identity): Promise<void>;
  unwatchTask(taskId: string, identity: Identity): void;
  /** Counted per list: a 2026-07-28 upstream's list_changed for these are wanted (subscriptions/listen); no-op for older servers. */
  watchLists(lists: readonly WatchList[], identity: Identity): Promise<void>;
  unwatchLists(lists: readonly WatchList[], identity: Identity): void;
  /** Called with each notifications/tasks (the upstream's task id and the whole task) from the upstream. */
  onTaskStatus(listener: (taskId: string, task: Record<string, unknown>) => void): void;
  listPrompts(identity: Identity): Promise<Listing<ListPromptsResult['prompts'][number]>>;
  getPrompt(name: string, args: Record<string, string> | undefined, identity: Identity, opts?: CallOptions): Promise<GetPromptResult>;
  /** completion/complete as `identity` (ref and argument as the upstream names them). */
  complete(params: CompleteRequest['params'], identity: Identity, opts?: CallOptions): Promise<CompleteResult>;
  /** What the server declared (completions, logging, ...); undefined until it is connected. */
  capabilities(): ServerCapabilities | undefined;
  /** Called with the new list whenever the cached tools list changes. */
  onToolsChanged(listener: (tools: UpstreamTool[]) => void): void;
  /**
   * Called with each tools, prompts or resources list_changed a 2025-11-25 server sends on this
   * process's own session with it (a fleet passes it on to the other replicas, which the server does not tell).
   */
  onAnnounced(listener: (list: WatchList) => void): void;
  /** List the tools again now (another replica heard they changed); true when the list changed (onToolsChanged was told). */
  relist(): Promise<boolean>;
  /** A Tasks extension request (tasks/get, tasks/update, tasks/cancel) as `identity`; 2026-07-28 servers only. */
  task(method: string, params: Record<string, unknown>, identity: Identity, opts?: CallOptions): Promise<Record<string, unknown>>;
  status(): { state: UpstreamState; restarts: number; lastError?: string; pid?: number | null };
  close(): Promise<void>;
}

/**
 * One listen stream to a 2026-07-28 upstream: whose credential opens it, and what it names (each
 * counted by the subscriptions wanting it); `retryMs` is the base of the wait before it is opened
 * again once the upstream ended it, `lost` that it did and is not acknowledged again yet.
 */
interface Watch { identity: Identity; uris: Map<string, number>; tasks: Map<string, number>; lists: Map<string, number>; stream?: UpstreamListen; timer?: NodeJS.Timeout; retryMs?: number; lost?: boolean }
type WatchPart = 'uris' | 'tasks' | 'lists';

/** What a listen stream asks the upstream for; undefined when nothing is wanted any more. */
function notificationsOf(w: Watch): Record<string, unknown> | undefined {
  const uris = [...w.uris.keys()];
  const tasks = [...w.tasks.keys()];
  const f: Record<string, unknown> = { ...(uris.length ? { resourceSubscriptions: uris } : {}), ...(tasks.length ? { taskIds: tasks } : {}) };
  for (const l of w.lists.keys()) f[LIST_FILTER[l as WatchList]] = true;
  return Object.keys(f).length ? f : undefined;
}

/**
 * The wait before the next try and the base after it: `base` +-25 % (so replicas and callers
 * that lost their streams together do not come back in step), the base doubling up to `max`.
 */
export function listenBackoff(base: number, max: number, random = Math.random()): { delay: number; next: number } {
  return { delay: Math.round(base * (0.75 + random / 2)), next: Math.min(max, base * 2) };
}

const MAX_STDERR_LINE = 2000;
/** Pages of one upstream listing followed at most (a server that keeps answering a nextCursor stops there). */
const MAX_PAGES = 100;

/** A server's whole list, with its pages' caching hints (undefined: none, e.g. a 2025-11-25 server). */
export interface Listing<T> { items: T[]; hints?: ListHints }

/** Every page of a paginated list (resources, templates, prompts: both generations page them with nextCursor). */
async function allPages<R extends { nextCursor?: string }, T>(page: (params: { cursor: string } | undefined) => Promise<R>, items: (r: R) => T[]): Promise<Listing<T>> {
  const all: T[] = [];
  const pages: Array<{ ttlMs?: unknown; cacheScope?: unknown }> = [];
  const at = Date.now();
  let cursor: string | undefined;
  for (let n = 0; n < MAX_PAGES; n++) {
    const r = await page(cursor ? { cursor } : undefined);
    for (const x of items(r)) all.push(x);
    pages.push(r as { ttlMs?: unknown; cacheScope?: unknown });
    cursor = r.nextCursor;
    if (!cursor) break;
  }
  return { items: all, hints: listHints(pages, at) };
}
/** Identities whose private tools lists are kept per server (oldest dropped first). */
const MAX_CALLER_LISTS = 10_000;

/** The lists other than tools a server declares in its capabilities (it may change them and say so). */
function declaredLists(c: UpstreamClient): ListKind[] {
  const caps = c.getServerCapabilities();
  return (['prompts', 'resources'] as const).filter((l) => caps?.[l] !== undefined);
}

/** Caching hints of a 2026-07-28 list result (server/utilities/caching); older servers send none. */
export interface ListHints { ttlMs: number; private: boolean; at: number }

/** The hints of a paged list: private if any page is, fresh as long as the shortest TTL; undefined when no page had any. */
function listHints(pages: Array<{ ttlMs?: unknown; cacheScope?: unknown }>, at: number): ListHints | undefined {
  if (!pages.some((p) => p.ttlMs !== undefined || p.cacheScope !== undefined)) return undefined;
  // An absent or negative ttlMs means 0 (immediately stale), per the spec.
  const ttl = Math.min(...pages.map((p) => (typeof p.ttlMs === 'number' && p.ttlMs > 0 ? p.ttlMs : 0)));
  return { ttlMs: ttl, private: pages.some((p) => p.cacheScope === 'private'), at };
}

export function createUpstream(name: string, spec: McpServerSpec, deps: ToolDeps, opts: UpstreamOptions = {}): Upstream {
  const restartMinMs = opts.restartMinMs ?? 250;
  const restartMaxMs = opts.restartMaxMs ?? 30_000;
  const stableAfterMs = opts.stableAfterMs ?? 30_000;
  const listenRetryMinMs = opts.listenRetryMinMs ?? 1000;
  const listenRetryMaxMs = opts.listenRetryMaxMs ?? 30_000;
  const listenStableMs = opts.listenStableMs ?? 30_000;
  const timeoutMs = spec.timeout_ms ?? opts.defaultTimeoutMs ?? 30_000;
  // A start slower than its allowance is killed and begun again cold, so it would never come up:
  // the allowance is its own, and generous for stdio (`npx -y` may download the package first).
  const startTimeoutMs = spec.start_timeout_ms ?? (spec.transport === 'stdio' ? Math.max(timeoutMs, 120_000) : timeoutMs);
  const callerIdentity = new AsyncLocalStorage<Identity>();
  /**
   * A 2025-11-25 server's notifications/message related to a request come on that request's own
   * response stream, read in the async context of the request: its log sink is found here. Anything
   * else (the standalone stream, stdio, SSE: no request context) finds none and is dropped.
   */
  const logSink = new AsyncLocalStorage<{ onlog: (p: LogParams) => void; level: LoggingLevel; done: boolean }>();
  /** The lowest level this process asked the current session of a 2025-11-25 server for (logging/setLevel). */
  let upstreamLevel: LoggingLevel | undefined;
  const listeners: Array<(tools: UpstreamTool[]) => void> = [];
  const updateListeners: Array<(uri: string, who?: string) => void> = [];
  const listListeners: Array<(list: WatchList, who?: string) => void> = [];
  const taskListeners: Array<(taskId: string, task: Record<string, unknown>) => void> = [];
  const announceListeners: Array<(list: WatchList) => void> = [];
  const announced = (list: WatchList) => { for (const l of announceListeners) l(list); };
  /**
   * A 2026-07-28 upstream's subscriptions/listen streams, by credential: '' is the one opened with
   * the server-level credential (aam's own identity), a SPIFFE ID one opened with that caller's own
   * credential (on-behalf-of, per-caller tokens), so one caller's credential never carries another's subscriptions.
   */
  const watches = new Map<string, Watch>();
  /** Subscribed URIs of an older (session) upstream and how many sessions want each; renewed on a reconnect. */
  const subscribed = new Map<string, number>();

  let state: UpstreamState = 'connecting';
  let client: UpstreamClient | undefined;
  let connecting: Promise<UpstreamClient> | undefined;
  let toolCache: UpstreamTool[] | undefined;
  /** Hints of the shared listing (aam's own identity), and a re-listing in flight once they lapse. */
  let hints: ListHints | undefined;
  let relisting: Promise<void> | undefined;
  /** Private tools lists, per SPIFFE ID of the identity they were listed as (never served to another). */
  const callerLists = new Map<string, { names: ReadonlySet<string>; until: number }>();
  let restarts = 0;
  /** Connections tried so far: after the first, callers may have missed list changes (down, restarted). */
  let tries = 0;
  let failures = 0;
  let connectedAt = 0;
  /** When the connection in progress (or the last one) began. */
  let startedAt = 0;
  let lastError: string | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  let nextRestartAt = 0;
  /** The client of a connection still starting (close() must stop it too). */
  let starting: SessionClient | undefined;
  // A function, not an inline comparison: close() may change `state` across the awaits of connect().
  const isClosed = () => state === 'closed';
  const closedError = () => new ToolError('upstream_closed', `MCP server "${name}" was removed from the config or the gateway is closing`, { code: RPC.upstream, status: 502 });

  /** fetch for HTTP transports: adds the credential (headers, or query parameters) for the identity whose call is in flight. */
  const credentialFetch = async (url: string | URL, init?: RequestInit): Promise<Response> => {
    const headers = new Headers(init?.headers);
    let target = url;
    if (spec.credential) {
      const cred = await deps.credentialHeaders(spec.credential, callerIdentity.getStore() ?? GATEWAY_IDENTITY);
      for (const [k, v] of Object.entries(cred.headers)) headers.set(k, v);
      if (cred.query) target = withQuery(url, cred.query);
    }
    return fetch(target, { ...init, headers });
  };

  /** A client to connect: aam's own for stdio, the SDK's (imported only then) for an HTTP server of 2025-11-25 or earlier. */
  async function makeClient(): Promise<SessionClient> {
    if (spec.transport === 'stdio') {
      if (!spec.command) throw new ToolError('config', `McpServer "${name}": transport stdio needs spec.command`);
      const credEnv = spec.credential ? (await deps.credentialHeaders(spec.credential, GATEWAY_IDENTITY)).env ?? {} : {};
      return createStdioClient({
        command: spec.command, args: spec.args ?? [],
        // Only a safe default env (PATH, HOME, ...) plus what config names: aam's own secrets stay out.
        env: { ...defaultEnvironment(), ...(spec.env ?? {}), ...credEnv },
        onStderr: (line) => deps.log.warn({ mcp_server: name, stderr: line.slice(0, MAX_STDERR_LINE) }, 'mcp server stderr'),
      });
    }
    if (!spec.url) throw new ToolError('config', `McpServer "${name}": transport ${spec.transport} needs spec.url`);
    // Imported here, not at the top: the SDK's client, its HTTP transports and zod schemas are for such servers only.
    const { createSdkSessionClient } = await import('./mcp-sdk-client.ts');
    return createSdkSessionClient(spec.transport === 'sse' ? 'sse' : 'streamable-http', new URL(spec.url), credentialFetch);
  }

  /** A 2026-07-28 upstream is stateless: no connection to keep open, supervise or renew. */
  async function adopt(c: UpstreamClient): Promise<UpstreamClient> {
    if (isClosed()) throw closedError();
    await refreshTools(c);
    client = c;
    state = 'ready';
    connectedAt = Date.now();
    lastError = undefined;
    deps.log.info({ mcp_server: name, transport: spec.transport, protocol: MODERN_VERSION, tools: toolCache?.length ?? 0 }, 'mcp server connected');
    resumeWatches();
    return c;
  }

  /**
   * Listening wanted while the server could not be reached (down at start, or restarting with
   * backoff): ask it now, and tell the callers who wanted its prompts or resources lists that they
   * changed (while it was down they listed none of them; its tools were listed and announced by
   * refreshTools).
   */
  function resumeWatches(): void {
    for (const [key, w] of watches) {
      void rewatch(key).catch((e: unknown) => deps.log.warn({ mcp_server: name, err: errMsg(e) }, 'subscriptions/listen to the upstream failed; retried when it ends'));
      missed(key, w, ['prompts', 'resources']);
    }
  }

  /**
   * The lists and resources stream `key` asks for may have changed while nobody listened to the
   * upstream: handled as if it announced each of `lists` (prompts and resources relayed, tools
   * listed again and a change relayed) and an update of each URI (subscribers re-read it).
   */
  function missed(key: string, w: Watch, lists: readonly WatchList[]): void {
    for (const list of lists) if (w.lists.has(list)) onWatched(key, `notifications/${list}/list_changed`, {});
    for (const uri of w.uris.keys()) onWatched(key, 'notifications/resources/updated', { uri });
  }

  async function connect(): Promise<UpstreamClient> {
    state = 'connecting';
    startedAt = Date.now();
    const again = tries++ > 0;
    // Dual-era client (spec 2026-07-28, versioning): an HTTP upstream whose server/discover names
    // 2026-07-28 is spoken to statelessly; any other answer means initialize and a session.
    if (spec.transport === 'streamable-http' && spec.url) {
      const url = new URL(spec.url);
      const caps = await discoverModern(url, credentialFetch, timeoutMs);
      if (caps) return adopt(createModernClient(url, credentialFetch, caps, timeoutMs));
    }
    const c = await makeClient();
    if (isClosed()) throw closedError();
    c.onNotification('notifications/tools/list_changed', async () => {
      announced('tools');
      try { await refreshTools(c); } catch (e) { deps.log.warn({ mcp_server: name, err: errMsg(e) }, 'tools/list refresh failed'); }
    });
    c.onNotification('notifications/resources/updated', async (p) => { if (typeof p.uri === 'string') for (const l of updateListeners) l(p.uri); });
    c.onNotification('notifications/prompts/list_changed', async () => { announced('prompts'); for (const l of listListeners) l('prompts'); });
    c.onNotification('notifications/resources/list_changed', async () => { announced('resources'); for (const l of listListeners) l('resources'); });
    c.onNotification('notifications/message', async (p) => {
      const sink = logSink.getStore();
      if (sink && !sink.done && logSeverity(p.level) >= 0 && logSeverity(p.level) >= logSeverity(sink.level)) sink.onlog(p as LogParams);
    });
    upstreamLevel = undefined;
    c.onclose = () => onTransportClosed(c);
    starting = c;
    try {
      await c.start(startTimeoutMs);
      // close() ran while the process was starting: it must not outlive the gateway.
      if (isClosed()) throw closedError();
      client = c;
      await refreshTools(c);
      // A restarted server forgot its subscriptions: renew them.
      for (const uri of subscribed.keys()) await c.subscribeResource({ uri }, { timeout: timeoutMs }).catch((e: unknown) => deps.log.warn({ mcp_server: name, uri, err: errMsg(e) }, 'resources/subscribe renewal failed'));
    } catch (e) {
      // Do not leave a half-started process behind (e.g. one that never answered initialize).
      client = undefined;
      await c.close().catch(() => {});
      throw e;
    } finally {
      starting = undefined;
    }
    if (isClosed()) { await c.close().catch(() => {}); throw closedError(); }
    state = 'ready';
    connectedAt = Date.now();
    lastError = undefined;
    deps.log.info({ mcp_server: name, transport: spec.transport, tools: toolCache?.length ?? 0 }, 'mcp server connected');
    // Back after an outage or a restart: whatever it announced meanwhile never came, so the prompts
    // and resources lists it declares are announced as changed, and each subscribed URI as updated
    // (its tools were listed again above and announced when they differ; a 2026-07-28 server's
    // listeners are told by resumeWatches).
    if (again) {
      for (const list of declaredLists(c)) for (const l of listListeners) l(list);
      for (const uri of subscribed.keys()) for (const l of updateListeners) l(uri);
    }
    return c;
  }

  function onTransportClosed(c: SessionClient): void {
    if (state === 'closed' || c !== client) return;
    client = undefined;
    state = 'down';
    lastError = lastError ?? 'connection closed';
    deps.log.warn({ mcp_server: name }, 'mcp server connection closed; restarting');
    scheduleRestart();
  }

  function scheduleRestart(): void {
    if (state === 'closed' || restartTimer) return;
    if (connectedAt && Date.now() - connectedAt > stableAfterMs) failures = 0;
    failures++;
    const delay = Math.min(restartMaxMs, restartMinMs * 2 ** (failures - 1));
    nextRestartAt = Date.now() + delay;
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      restarts++;
      ensureClient().catch(() => { /* logged in ensureClient; another restart is scheduled */ });
    }, delay);
    restartTimer.unref();
  }

  /**
   * The client for a caller's request: a start in progress is waited for at most timeoutMs (the
   * start itself may take startTimeoutMs), then the caller is told to retry while it goes on.
   */
  function clientForCaller(): Promise<UpstreamClient> {
    const p = ensureClient();
    if (!connecting || startTimeoutMs <= timeoutMs) return p;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, no) => {
      timer = setTimeout(() => no(new ToolError('upstream_unavailable', `MCP server "${name}" is still starting (${Math.round((Date.now() - startedAt) / 1000)} s so far; it may take start_timeout_ms ${startTimeoutMs}); retry shortly`, { code: RPC.upstream, status: 502 })), timeoutMs);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  function ensureClient(): Promise<UpstreamClient> {
    if (state === 'closed') return Promise.reject(closedError());
    if (client && state === 'ready') return Promise.resolve(client);
    if (state === 'down' && restartTimer) {
      const wait = Math.max(0, nextRestartAt - Date.now());
      return Promise.reject(new ToolError('upstream_unavailable', `MCP server "${name}" is unavailable (${lastError ?? 'connection closed'}); aam restarts it in ${wait} ms, retry then`, { code: RPC.upstream, status: 502 }));
    }
    if (!connecting) {
      // Out of any caller's request context: the connection's own streams must never find a caller's log sink.
      connecting = logSink.exit(() => connect()).catch((e: unknown) => {
        if (state === 'closed') throw closedError(); // no restart after close()
        lastError = errMsg(e);
        state = 'down';
        deps.log.error({ mcp_server: name, err: lastError }, 'mcp server connect failed');
        scheduleRestart();
        throw new ToolError('upstream_unavailable', `MCP server "${name}" is unavailable: ${lastError}`, { code: RPC.upstream, status: 502 });
      }).finally(() => { connecting = undefined; });
    }
    return connecting;
  }

  /** Every page of tools/list, as the identity in flight, with the pages' caching hints. */
  async function listAll(c: UpstreamClient): Promise<{ tools: UpstreamTool[]; hints: ListHints | undefined }> {
    const all: UpstreamTool[] = [];
    const pages: Array<{ ttlMs?: unknown; cacheScope?: unknown }> = [];
    const at = Date.now();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const r = await c.listTools(cursor ? { cursor } : undefined, { timeout: timeoutMs });
      for (const t of r.tools) all.push(t as UpstreamTool);
      pages.push(r as { ttlMs?: unknown; cacheScope?: unknown });
      cursor = r.nextCursor;
      if (!cursor) break;
    }
    return { tools: all, hints: listHints(pages, at) };
  }

  /** List the tools again; true when the list changed (then onToolsChanged listeners were told). */
  async function refreshTools(c: UpstreamClient): Promise<boolean> {
    const r = await listAll(c);
    const changed = toolCache === undefined || JSON.stringify(r.tools) !== JSON.stringify(toolCache);
    toolCache = r.tools;
    hints = r.hints;
    // A re-listing after a lapsed ttlMs usually finds the same list: recompile and notify only on a change.
    if (changed) for (const l of listeners) l(r.tools);
    return changed;
  }

  /** Re-list once the shared list's ttlMs has lapsed (one re-listing for concurrent callers); a failure keeps the stale list. */
  async function freshen(c: UpstreamClient): Promise<void> {
    if (!hints || Date.now() < hints.at + hints.ttlMs) return;
    relisting ??= refreshTools(c).then(() => {}, (e: unknown) => { deps.log.warn({ mcp_server: name, err: errMsg(e) }, 'tools/list re-listing failed; the last list is used'); })
      .finally(() => { relisting = undefined; });
    await relisting;
  }

  /** Run an upstream request as `identity` with the server's timeout and clear errors. */
  async function run<T>(what: string, identity: Identity, fn: (c: UpstreamClient) => Promise<T>, signal?: AbortSignal, log?: CallOptions['log']): Promise<T> {
    const c = await clientForCaller();
    const sink = log && !c.listen ? { ...log, done: false } : undefined;
    try {
      if (sink) await levelAtMost(c, sink.level);
      return await callerIdentity.run(identity, () => (sink ? logSink.run(sink, () => fn(c)) : fn(c)));
    } catch (e) {
      if (signal?.aborted) throw new ToolError('cancelled', `${what} on MCP server "${name}" was cancelled by the client`, { code: RPC.upstream, status: 499 });
      throw upstreamError(name, what, timeoutMs, e);
    } finally {
      if (sink) sink.done = true; // a message that comes after the answer is no longer this request's
    }
  }

  /**
   * A 2025-11-25 server that declares logging sends messages at the level its session was set to:
   * lowered (never raised: other callers may want more) to what this caller asked for; aam filters per caller.
   */
  async function levelAtMost(c: UpstreamClient, level: LoggingLevel): Promise<void> {
    if (!c.getServerCapabilities()?.logging || !c.setLoggingLevel || (upstreamLevel !== undefined && logSeverity(upstreamLevel) <= logSeverity(level))) return;
    upstreamLevel = level; // asked once per level and session: a server that refuses is not asked on every call
    // The call goes on without it: the server then sends what it sends by default, filtered here.
    await callerIdentity.run(GATEWAY_IDENTITY, () => c.setLoggingLevel!(level, { timeout: timeoutMs }))
      .catch((e: unknown) => deps.log.warn({ mcp_server: name, level, err: errMsg(e) }, 'logging/setLevel refused by the upstream'));
  }

  /** Notifications of one of a 2026-07-28 upstream's listen streams, to the same listeners a session's notifications go to. */
  function onWatched(key: string, method: string, params: Record<string, unknown>): void {
    const who = key === '' ? undefined : key;
    if (method === 'notifications/resources/updated' && typeof params.uri === 'string') for (const l of updateListeners) l(params.uri, who);
    else if (method === 'notifications/tasks' && typeof params.taskId === 'string') for (const l of taskListeners) l(params.taskId, params);
    else if (method === 'notifications/prompts/list_changed') for (const l of listListeners) l('prompts', who);
    else if (method === 'notifications/resources/list_changed') for (const l of listListeners) l('resources', who);
    else if (method === 'notifications/tools/list_changed') void toolsAnnounced(who);
  }

  /**
   * The upstream says its tools changed: the shared list is listed again as aam (a change is
   * reported by onToolsChanged); private lists are dropped, and a change of one is announced to
   * its caller (or to every caller, from the server-level stream).
   */
  async function toolsAnnounced(who: string | undefined): Promise<void> {
    if (who === undefined) callerLists.clear(); else callerLists.delete(who);
    const c = client;
    if (!c || state !== 'ready') return;
    try {
      const changed = await callerIdentity.run(GATEWAY_IDENTITY, () => refreshTools(c));
      if (!changed && hints?.private) for (const l of listListeners) l('tools', who);
    } catch (e) { deps.log.warn({ mcp_server: name, err: errMsg(e) }, 'tools/list refresh failed'); }
  }

  /** The key of the stream a caller's subscription goes on: its own when the server's credential is injected per caller. */
  async function watchKey(identity: Identity): Promise<{ key: string; as: Identity }> {
    if (spec.credential && (await deps.credentialHeaders(spec.credential, identity)).perCaller) return { key: identity.agent.spiffeId, as: identity };
    return { key: '', as: GATEWAY_IDENTITY };
  }

  /**
   * Count `items` wanted by `identity` on its stream (2026-07-28 upstreams only); the stream is
   * replaced (once) when it names something new. Counted even while the server cannot be reached:
   * it is asked once it is back (resumeWatches).
   */
  async function want(part: WatchPart, items: readonly string[], identity: Identity): Promise<void> {
    if (items.length === 0) return;
    if (client && state === 'ready' && !client.listen) return;
    const { key, as } = await watchKey(identity);
    // Looked up after the last await: a stream emptied meanwhile has left the map.
    let w = watches.get(key);
    if (!w) watches.set(key, w = { identity: as, uris: new Map(), tasks: new Map(), lists: new Map() });
    w.identity = as;
    let added = false;
    for (const item of items) {
      const n = w[part].get(item) ?? 0;
      w[part].set(item, n + 1);
      added ||= n === 0;
    }
    if (!added) return;
    if (client && state === 'ready') return rewatch(key);
    // Not connected: a connection that comes up asks for what is counted by then (resumeWatches).
    await ensureClient().catch((e: unknown) => deps.log.info({ mcp_server: name, err: errMsg(e) }, 'subscriptions/listen: the upstream is unavailable; it is asked once it is back'));
  }

  /** Undo want(); found without injecting again (the caller may no longer be allowed its credential). */
  function unwant(part: WatchPart, items: readonly string[], identity: Identity): Promise<void> {
    const own = identity.agent.spiffeId;
    const touched = new Set<string>();
    for (const item of items) {
      const key = watches.get(own)?.[part].has(item) ? own : '';
      const m = watches.get(key)?.[part];
      const n = m?.get(item) ?? 0;
      if (n === 0) continue;
      if (n > 1) { m!.set(item, n - 1); continue; }
      m!.delete(item);
      touched.add(key);
    }
    return Promise.all([...touched].map((key) => rewatch(key).catch(() => {}))).then(() => {});
  }

  /**
   * 2026-07-28 replaced resources/subscribe with subscriptions/listen: aam keeps one stream per
   * credential to such an upstream naming everything its callers want on it (URIs, task ids,
   * lists), and replaces it (new one first) whenever that set changes; an empty set ends it; a
   * stream the upstream ends is opened again with a capped backoff while anything is still wanted.
   */
  async function rewatch(key: string): Promise<void> {
    const w = watches.get(key);
    if (!w) return;
    // Nothing wanted any more: forgotten without asking the server anything (it may be down, or older).
    if (!notificationsOf(w)) return forget(key, w);
    const c = client && state === 'ready' ? client : await ensureClient();
    if (!c.listen) return;
    const filter = notificationsOf(w);
    const old = w.stream;
    w.stream = undefined;
    // A retry pending for the stream replaced here would skip this one's own end.
    if (w.timer) { clearTimeout(w.timer); w.timer = undefined; }
    if (filter) {
      /** When it was acknowledged, and whether a notification came on it: what makes it a stream that worked. */
      let ackedAt = 0;
      let heard = false;
      const st = callerIdentity.run(w.identity, () => c.listen!(filter, (method, params) => { heard = true; onWatched(key, method, params); }));
      w.stream = st;
      void st.ended.then(() => {
        if (w.stream !== st || isClosed() || w.timer) return;
        // A stream that worked resets the backoff; one acknowledged and ended at once does not
        // (a server that does so would otherwise be asked every second, forever).
        if (heard || (ackedAt && Date.now() - ackedAt >= listenStableMs)) w.retryMs = undefined;
        // The upstream ended it (down, restarting): opened again with a capped backoff and jitter.
        w.lost = true;
        const { delay, next } = listenBackoff(w.retryMs ?? listenRetryMinMs, listenRetryMaxMs);
        w.retryMs = next;
        w.timer = setTimeout(() => { w.timer = undefined; if (w.stream === st) rewatch(key).catch(() => {}); }, delay);
        w.timer.unref();
      });
      const late = new Promise<never>((_, no) => { setTimeout(() => no(new Error(`no acknowledgement within ${timeoutMs} ms`)), timeoutMs).unref(); });
      try {
        await Promise.race([st.acked, late]);
        if (w.stream === st) {
          ackedAt = Date.now();
          // Listened to again after it was lost: what it announced meanwhile never came.
          if (w.lost) { w.lost = false; missed(key, w, ['tools', 'prompts', 'resources']); }
        }
      } catch (e) {
        // A stream replaced before its acknowledgement (the set changed again) is no failure.
        if (w.stream === st) deps.log.warn({ mcp_server: name, err: errMsg(e) }, 'subscriptions/listen to the upstream failed; its notifications are not relayed');
      }
    } else forget(key, w);
    old?.close();
  }

  function forget(key: string, w: Watch): void {
    if (watches.get(key) === w) watches.delete(key);
    if (w.timer) clearTimeout(w.timer);
    w.stream?.close();
    w.stream = undefined;
  }

  // The call's trace context travels in params._meta (MCP's place for it).
  const withTrace = <P extends object>(params: P, o?: CallOptions): P => {
    const m = o?.mrtr;
    if (!o?.traceContext && !m) return params;
    const meta = { ...o?.traceContext, ...(m ? { [CLIENT_CAPS]: m.clientCapabilities } : {}) };
    return { ...params, _meta: meta, ...(m?.inputResponses !== undefined ? { inputResponses: m.inputResponses } : {}), ...(m?.requestState !== undefined ? { requestState: m.requestState } : {}) };
  };
  const reqOpts = (o?: CallOptions) => ({ timeout: timeoutMs, signal: o?.signal, onprogress: o?.onprogress, resetTimeoutOnProgress: true, maxTotalTimeout: timeoutMs * 10, log: o?.log });

  // Start eagerly: a stdio server is supervised from load time, not from the first call.
  ensureClient().catch(() => {});

  return {
    name,
    spec,
    async tools() {
      if (toolCache && state === 'ready' && client) {
        await freshen(client);
        return toolCache;
      }
      await clientForCaller();
      return toolCache ?? [];
    },
    async callerTools(identity) {
      if (!hints?.private) return null;
      const who = identity.agent.spiffeId;
      const hit = callerLists.get(who);
      if (hit && Date.now() < hit.until) return hit.names;
      callerLists.delete(who);
      const r = await run('tools/list', identity, listAll);
      const names: ReadonlySet<string> = new Set(r.tools.map((t) => t.name));
      const ttl = r.hints?.ttlMs ?? 0;
      if (ttl > 0) {
        if (callerLists.size >= MAX_CALLER_LISTS) callerLists.delete(callerLists.keys().next().value as string);
        callerLists.set(who, { names, until: r.hints!.at + ttl });
      }
      return names;
    },
    callTool: (tool, args, identity, o) => run(`tools/call "${tool}"`, identity, (c) =>
      c.callTool(withTrace({ name: tool, arguments: args }, o), undefined, reqOpts(o)) as Promise<CallToolResult>, o?.signal, o?.log),
    listResources: (identity) => run('resources/list', identity, async (c) =>
      c.getServerCapabilities()?.resources ? allPages((p) => c.listResources(p, reqOpts()), (r) => r.resources) : { items: [] }),
    readResource: (uri, identity, o) => run('resources/read', identity, (c) => c.readResource(withTrace({ uri }, o), reqOpts(o)), o?.signal, o?.log),
    async subscribe(uri, identity) {
      if ((await clientForCaller()).listen) return want('uris', [uri], identity);
      const n = subscribed.get(uri) ?? 0;
      if (n === 0) await run(`resources/subscribe "${uri}"`, identity, (c) => c.subscribeResource({ uri }, reqOpts()));
      subscribed.set(uri, n + 1);
    },
    async unsubscribe(uri, identity) {
      if (client?.listen) return unwant('uris', [uri], identity);
      const n = subscribed.get(uri) ?? 0;
      if (n > 1) { subscribed.set(uri, n - 1); return; }
      if (n === 0) return;
      subscribed.delete(uri);
      await run(`resources/unsubscribe "${uri}"`, identity, (c) => c.unsubscribeResource({ uri }, reqOpts())).catch(() => { /* the server may be gone; nothing to undo */ });
    },
    watchTask: (taskId, identity) => want('tasks', [taskId], identity),
    unwatchTask(taskId, identity) { void unwant('tasks', [taskId], identity); },
    watchLists: (lists, identity) => want('lists', lists, identity),
    unwatchLists(lists, identity) { void unwant('lists', lists, identity); },
    onTaskStatus(l) { taskListeners.push(l); },
    onResourceUpdated(l) { updateListeners.push(l); },
    onListChanged(l) { listListeners.push(l); },
    listResourceTemplates: (identity) => run('resources/templates/list', identity, async (c) =>
      c.getServerCapabilities()?.resources ? allPages((p) => c.listResourceTemplates(p, reqOpts()), (r) => r.resourceTemplates) : { items: [] }),
    listPrompts: (identity) => run('prompts/list', identity, async (c) =>
      c.getServerCapabilities()?.prompts ? allPages((p) => c.listPrompts(p, reqOpts()), (r) => r.prompts) : { items: [] }),
    getPrompt: (p, args, identity, o) => run('prompts/get', identity, (c) => c.getPrompt(withTrace({ name: p, arguments: args }, o), reqOpts(o)), o?.signal, o?.log),
    complete: (params, identity, o) => run('completion/complete', identity, (c) => c.complete(withTrace(params, o), reqOpts(o)), o?.signal, o?.log),
    capabilities: () => (state === 'ready' ? client?.getServerCapabilities() : undefined),
    onToolsChanged(l) { listeners.push(l); },
    onAnnounced(l) { announceListeners.push(l); },
    async relist() {
      const c = client;
      if (!c || state !== 'ready') return false;
      return callerIdentity.run(GATEWAY_IDENTITY, () => refreshTools(c));
    },
    task: (method, params, identity, o) => run(method, identity, (c) => {
      if (!c.task) throw new ToolError('upstream_error', `MCP server "${name}" speaks MCP 2025-11-25 or earlier, which has no ${method}`, { code: RPC.upstream, status: 502 });
      return c.task(method, withTrace(params, o), reqOpts(o));
    }, o?.signal),
    status() {
      const pid = client && 'pid' in client ? (client as SessionClient).pid : undefined;
      return { state, restarts, lastError, pid };
    },
    async close() {
      state = 'closed';
      if (restartTimer) clearTimeout(restartTimer);
      for (const w of watches.values()) { if (w.timer) clearTimeout(w.timer); w.stream?.close(); }
      watches.clear();
      const c = client;
      client = undefined;
      await c?.close().catch(() => {});
      await starting?.close().catch(() => {});
    },
  };
}

/** Turn client errors (aam's clients' and the SDK's) into messages that say which server, what happened and what to do. */
export function upstreamError(server: string, what: string, timeoutMs: number, e: unknown): Error {
  if (e instanceof ToolError) return e;
  if (isMcpError(e)) {
    // -32001/-32000 are also codes an upstream may send itself: only the SDK's own errors (which
    // carry their own messages) mean a timeout or a closed connection.
    const sdk = /^MCP error -?\d+: (Request timed out|Maximum total timeout exceeded|Connection closed)\b/.test(e.message);
    if (sdk && e.code === MCP_CODE.requestTimeout) {
      return new ToolError('upstream_timeout', `MCP server "${server}" did not answer ${what} within ${timeoutMs} ms (raise spec.timeout_ms if it is slow)`, { code: RPC.upstream, status: 504 });
    }
    if (sdk && e.code === MCP_CODE.connectionClosed) {
      return new ToolError('upstream_unavailable', `MCP server "${server}" closed the connection during ${what} (process exited?); aam restarts it, retry shortly`, { code: RPC.upstream, status: 502 });
    }
    // An upstream's own JSON-RPC error: keep its code, except the one aam reserves for denials.
    const code = e.code === RPC.denied ? RPC.upstream : e.code;
    return new ToolError('upstream_error', `MCP server "${server}" answered ${what} with an error: ${e.message.replace(/^MCP error -?\d+: /, '')}`, { code, status: 502 });
  }
  if (e instanceof Error && e.name === 'AbortError') return new ToolError('cancelled', `${what} on MCP server "${server}" was cancelled`, { code: RPC.upstream, status: 499 });
  return new ToolError('upstream_error', `MCP server "${server}" failed during ${what}: ${errMsg(e)}`, { code: RPC.upstream, status: 502 });
}

/** `url` with credential query parameters set (replacing any the URL already had under those names). */
export function withQuery(url: string | URL, query: Record<string, string>): URL {
  const u = new URL(url);
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  return u;
}

