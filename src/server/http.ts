// The HTTP front door: a plain node:http server with a Map router (measured: a framework router
// costs more per request than the whole policy decision). Routes are exact paths; the few
// prefixed families (/mcp/, /tools/, /admin/) are dispatched by prefix.
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import type { Socket } from 'node:net';
import { createServer as createHttpServer, https } from '../lib/node-http.ts';
import type { ServerOptions as HttpsOptions } from 'node:https';
import type { Compiled, Runtime } from '../runtime.ts';
import { EgressResponse } from '../access/egress.ts';
import { AamError, EvidenceUnavailable, toAamError } from '../access/errors.ts';
import { recordDecision } from '../access/decide.ts';
import { requestIdFor, sendError, sendJson, type Ctx as AccessCtx, type Handler as AccessHandler, type Routes as AccessRoutes } from '../access/request.ts';
import { handleChat } from '../gateway/chat.ts';
import { handleResponseById, handleResponses } from '../gateway/responses.ts';
import { handleEmbeddings, handleModelById, handleModels } from '../gateway/embeddings.ts';
import { startServerSpan, endHttpSpan } from '../observability/tracing.ts';
import type { A2aGateway } from '../a2a/gateway.ts';

/** The server's request context: the whole runtime, which every plane's view is a part of. */
export type Ctx = AccessCtx<Runtime, Compiled>;
export type Handler = AccessHandler<Ctx>;
export type Routes = AccessRoutes<Ctx>;

/** The core routes, and close(): the planes they loaded let go of their upstream connections (after the drain). */
export function coreRoutes(): Routes & { close(): Promise<void> } {
  const exact = new Map<string, Handler>([
    ['POST /v1/chat/completions', (ctx) => handleChat(ctx, 'openai')],
    ['POST /chat/completions', (ctx) => handleChat(ctx, 'openai')],
    ['POST /v1/messages', (ctx) => handleChat(ctx, 'anthropic')],
    ['POST /v1/responses', handleResponses],
    ['POST /v1/embeddings', handleEmbeddings],
    ['POST /embeddings', handleEmbeddings],
    ['GET /v1/models', handleModels],
    ['GET /models', handleModels],
    ['GET /healthz', (ctx) => sendJson(ctx, 200, { status: 'ok' })],
    ['GET /readyz', async (ctx) => {
      if (!ctx.rt.ready) return sendJson(ctx, 503, { status: 'starting' });
      const store = await ctx.rt.probeStores();
      if (!store.ok) return sendJson(ctx, 503, { status: 'store_unavailable', store, down: Object.keys(store.stores).filter((k) => !store.stores[k].ok) });
      return sendJson(ctx, 200, { status: 'ready', config_version: ctx.cfg.version, store: store.kind });
    }],
  ]);
  // The A2A plane's modules load with the first /a2a/ request: a config without A2A agents never holds them.
  let a2a: Promise<A2aGateway> | undefined;
  let a2aLoaded: A2aGateway | undefined;
  // Once loaded, a call goes straight to the gateway: no promise and loop turn of its own per request.
  const handleA2a = (ctx: Ctx): Promise<void> | void => a2aLoaded
    ? a2aLoaded.handle(ctx)
    : (a2a ??= import('../a2a/gateway.ts').then((m) => (a2aLoaded = m.createA2aGateway()))).then((g) => g.handle(ctx));
  return { exact, prefixes: [['/v1/responses/', handleResponseById], ['/v1/models/', handleModelById], ['/models/', handleModelById], ['/a2a/', handleA2a]], close: () => a2aLoaded?.close() ?? Promise.resolve() };
}

export function createRequestListener(rt: Runtime, routes: Routes) {
  const methodsByPath = new Map<string, string[]>();
  // method -> path -> the exact route's key: a request's lookup builds no `${method} ${path}` string
  // (the handler is still read from routes.exact, so a handler set later is the one called).
  const keyByMethod = new Map<string, Map<string, string>>();
  // Made again when routes were added after this listener (the planes' routes are set once at
  // start): a miss (a prefixed route such as /a2a/<agent>, a 404) then builds no key string either.
  let indexed = -1;
  const index = (): void => {
    methodsByPath.clear();
    keyByMethod.clear();
    for (const key of routes.exact.keys()) {
      const [m, p] = key.split(' ');
      methodsByPath.set(p, [...(methodsByPath.get(p) ?? []), m]);
      let paths = keyByMethod.get(m);
      if (!paths) keyByMethod.set(m, (paths = new Map()));
      paths.set(p, key);
    }
    indexed = routes.exact.size;
  };
  const prefixes = routes.prefixes;
  return (req: IncomingMessage, res: ServerResponse): void => {
    // First, before any handler: the egress door (every byte to the agent is scrubbed).
    if (!(res instanceof EgressResponse)) throw new Error('the HTTP server must be created with EgressResponse (server/http.ts createServer)');
    const ids = requestIdFor(req, rt);
    res.open(rt.egress, ids.requestId);
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    // Every field a request may come to hold is here from the start (no spread, no field added
    // later): each ctx is one allocation of one shape, which every plane's reads of it then share.
    const ctx: Ctx = {
      req, res, rt, cfg: rt.compiled, path, query: q < 0 ? '' : url.slice(q + 1),
      requestId: ids.requestId, clientRequestId: ids.clientRequestId,
      start: performance.now(), wire: wireOf(path),
      identity: undefined, resource: undefined, access: undefined, span: undefined, traceId: undefined,
      decision: undefined, credentialUsed: undefined, bodyBytes: undefined, guardrails: undefined, call: undefined,
    };
    // Echoed so a client can correlate; aam's own id is always x-request-id.
    if (ids.clientRequestId) res.setHeader('x-client-request-id', ids.clientRequestId);
    rt.inFlight++;
    // on, not once: a response emits 'close' once (node's emitCloseNT), and once's wrapper (its state
    // and bound function, ~370 B, and a removeListener when it fires) was paid by every request.
    res.on('close', () => {
      rt.inFlight--;
      if (ctx.call !== undefined && !res.writableFinished) ctx.call.abort();
    });
    if (routes.exact.size !== indexed) index();
    const key = keyByMethod.get(req.method!)?.get(path);
    let handler = key === undefined ? undefined : routes.exact.get(key);
    let prefix: string | undefined;
    if (!handler) {
      for (let i = 0; i < prefixes.length; i++) if (path.startsWith(prefixes[i][0])) { handler = prefixes[i][1]; prefix = prefixes[i][0]; break; }
    }
    const allowed = handler ? undefined : methodsByPath.get(path);
    if (rt.tracer && !UNTRACED.has(path)) {
      const span = startServerSpan(rt.tracer, req, { route: spanRoute(path, handler !== undefined || allowed !== undefined, prefix), path, startTime: ctx.start });
      ctx.span = span;
      res.on('close', () => endHttpSpan(span, res.statusCode, 'server'));
    }
    if (!handler) {
      sendError(ctx, allowed
        ? new AamError(405, 'method_not_allowed', `${req.method} is not allowed on ${path}; use ${allowed.join(' or ')}`, { headers: { allow: allowed.join(', ') } })
        : new AamError(404, 'not_found', `no route ${req.method} ${path}`));
      return;
    }
    // Counted until the handler settles, not until its socket closes: a shutdown that cut the
    // connection still waits for the request's own bookkeeping (usage, evidence) before closing.
    rt.handling++;
    try {
      const p = handler(ctx);
      if (p) p.then(rt.handled, (err) => { fail(ctx, err); rt.handled(); });
      else rt.handled();
    } catch (err) {
      fail(ctx, err);
      rt.handled();
    }
  };
}

/** Probes and scrapes (every few seconds from each orchestrator and Prometheus): no spans, they would drown the agents' traces. */
const UNTRACED = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * `http.route` of a server span (and its name, `{method} {route}`): the path of an exact route, a
 * prefixed family's prefix and `*` (what follows holds ids: responses, tasks, keys), none for a
 * path no route has. The HTTP conventions want a low-cardinality template here: the raw path made a
 * span name per response id, and one per path a scanner tried.
 */
export function spanRoute(path: string, routed: boolean, prefix: string | undefined): string | undefined {
  if (prefix !== undefined) return `${prefix}*`;
  return routed ? path : undefined;
}

/**
 * The error format a path's clients read, fixed before any route runs, so a refusal the router or
 * the access path makes (404/405, identity, body) already has it: Anthropic's on /v1/messages,
 * JSON-RPC on the MCP routes (/mcp, /mcp/<server>), OpenAI's elsewhere.
 */
function wireOf(path: string): Ctx['wire'] {
  if (path === '/v1/messages') return 'anthropic';
  return path.startsWith('/mcp') && (path.length === 4 || path.charCodeAt(4) === 47 /* / */) ? 'jsonrpc' : 'openai';
}

/** A request ended in an error: its decision (if any) is recorded with that outcome, then answered. */
function fail(ctx: Ctx, err: unknown): void {
  const e = toAamError(err);
  recordDecision(ctx, e.status, e.message);
  // The trail just failed to commit this request's evidence: waiting again would end the same way.
  if (e instanceof EvidenceUnavailable) { sendError(ctx, e); return; }
  // A refusal is acknowledged too: answer once its evidence is in the crash-safe segment file.
  ctx.rt.evidenceSafe().then(() => sendError(ctx, e), () => sendError(ctx, e));
}

export interface ServerOptions { tls?: HttpsOptions; requestTimeoutMs?: number; headersTimeoutMs?: number }

export function createServer(rt: Runtime, routes: Routes, opts: ServerOptions = {}): Server {
  const listener = createRequestListener(rt, routes);
  // Slow-loris: a client must send its headers within headersTimeout and its whole request
  // within requestTimeout (checked every second, not Node's default 30 s); responses (long
  // streams) are not limited by these.
  const headersTimeout = opts.headersTimeoutMs ?? 15_000;
  const requestTimeout = opts.requestTimeoutMs ?? 60_000;
  const timing = { headersTimeout, requestTimeout, connectionsCheckingInterval: Math.min(1000, headersTimeout) };
  // Every response object is an egress door: no handler or library can write around the scrubber.
  const base = { ...timing, ServerResponse: EgressResponse };
  const server: Server = opts.tls ? https().createServer({ ...opts.tls, ...base }, listener) : createHttpServer(base, listener);
  server.keepAliveTimeout = 65_000;
  // Its open connections (the TLS socket the HTTP parser reads, with TLS), for the drain (drainConnections).
  const sockets = new Set<Socket>();
  server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  connections.set(server, sockets);
  return server;
}

const connections = new WeakMap<Server, Set<Socket>>();

/**
 * The drain's connection half: stop accepting, answer every request from now on with `connection:
 * close` (endKeepAlive), and close the connections with nothing under way; `closed` settles when the
 * last one is gone (server.close()'s callback), stop() ends the sweeps (at the drain bound's cut).
 */
export function drainConnections(server: Server): { closed: Promise<void>; stop(): void } {
  endKeepAlive(server);
  const sweep = drainSweep(server);
  const timer = setInterval(sweep, SWEEP_MS);
  sweep();
  // server.close() closes Node's idle connections at once: after the loop's next read too, so a
  // request already at aam on one of them is answered (with connection: close), not reset.
  const closed = new Promise<void>((resolve) => afterRead(() => server.close(() => resolve())));
  return { closed, stop: () => clearInterval(timer) };
}

const SWEEP_MS = 50;

/** Runs fn once the event loop has read its sockets again (a poll phase lies between two immediates). */
function afterRead(fn: () => void): void {
  setImmediate(() => setImmediate(fn));
}

/**
 * A drain's sweep, called every SWEEP_MS: it closes the connections with nothing under way, no
 * answer being made and between requests (a kept-alive one whose last answer ended; one on which the
 * client has sent nothing, not a byte: `bytesRead` counts a TLS socket's decrypted bytes, 0 after its
 * handshake), at two sweeps in a row with not a byte read in between. Each sweep runs after the loop
 * has read its sockets, so a request already at aam is parsed and answered rather than reset.
 * Node's closeIdleConnections() alone closed a kept-alive connection at the first sweep after its
 * answer ended, racing the client's next request on it (a stream promised keep-alive before the
 * drain, its agent sending again at once: 5 of 20 such requests reset or unanswered under load);
 * and it never closes a connection the client has not used yet (fetch/undici reopens its pool's
 * connections as others close; a load balancer pre-connects), which held close() to the drain bound:
 * 10 s a replica in test/fleet-mcp-notify. A client sees such a close before its request went out
 * and sends it on a new connection (another replica).
 */
function drainSweep(server: Server): () => void {
  let quiet = new Map<Socket, number>();
  const sweep = (): void => {
    const idle = betweenRequests(server);
    if (!idle) { server.closeIdleConnections(); return; }
    const still = new Map<Socket, number>();
    for (const s of connections.get(server) ?? []) {
      const res = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      if ((res && !res.finished) || (s.bytesRead !== 0 && !idle.has(s))) continue;
      if (quiet.get(s) === s.bytesRead) s.destroy(); else still.set(s, s.bytesRead);
    }
    quiet = still;
  };
  return () => afterRead(sweep);
}

/**
 * The connections whose HTTP parser is between requests: Node's own list, the one its
 * closeIdleConnections() reads (a request's headers half read are not between). Undefined if this
 * Node has no such list (the sweep then falls back to closeIdleConnections()).
 */
function betweenRequests(server: Server): Set<Socket> | undefined {
  const key = Object.getOwnPropertySymbols(server).find((k) => k.description === 'http.server.connections');
  const list = key && (server as unknown as Record<symbol, { idle?: () => { socket: Socket }[] }>)[key];
  if (typeof list?.idle !== 'function') return undefined;
  return new Set(list.idle().map((p) => p.socket));
}

/**
 * For a drain: from now on every answer says `connection: close` and its
 * connection ends after it, both the answers still being made on the open connections (headers
 * not yet sent) and those to requests arriving on them later. Node goes on serving requests on
 * kept-alive connections after close(), promising keep-alive: a busy client held a draining
 * replica until its drain was cut, and a request sent as the idle sweep closed its connection
 * was reset (ECONNRESET) instead of going to another replica.
 */
function endKeepAlive(server: Server): void {
  server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => { res.shouldKeepAlive = false; });
  for (const s of connections.get(server) ?? []) {
    // The answer being written on this connection: Node's own link from socket to response.
    const res = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (res && !res.headersSent) res.shouldKeepAlive = false;
  }
}
