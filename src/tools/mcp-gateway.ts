// MCP Streamable HTTP endpoint for agents: `/mcp` (all servers, tools named <server>__<tool>) and
// `/mcp/<server>` (one server, original names). One SDK Server + transport per client session;
// a session is bound to the identity that created it and to its endpoint.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema, GetPromptRequestSchema, ListPromptsRequestSchema, ListResourcesRequestSchema, ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema, ReadResourceRequestSchema, SubscribeRequestSchema, UnsubscribeRequestSchema, isInitializeRequest, type Progress, type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { ConfigSet } from '../config/schema.ts';
import type { Identity } from '../identity/types.ts';
import { mcpTraceparent } from '../observability/otlp-genai.ts';
import { createCatalog } from './catalog.ts';
import { callTool, DEFAULT_MAX_RESULT_BYTES, getPrompt, listPrompts, listResources, listResourceTemplates, readResource, subscribeResource, unsubscribeResource, type Extra, type Runtime, type SessionCtx } from './mcp-call.ts';
import { createMcpShared, sessionLimits, type McpGateway, type McpGatewayOptions, type McpShared } from './mcp-lazy.ts';
import { handleModern, isModernRequest, toolsPage } from './mcp-stateless.ts';
import { RPC, ToolError, type ToolAccess, type ToolDeps } from './types.ts';

interface Session { id: string; ctx: SessionCtx; server: Server; transport: StreamableHTTPServerTransport; lastUsed: number }

const identityKey = (i: Identity) => i.agent.spiffeId;
const instructions = (scope: string | null) => (scope === null ? 'aam MCP gateway: tools are named <server>__<tool>; every call is authorized and audited.' : undefined);

/**
 * The access context opened for one HTTP request rides on it as the SDK's authInfo, so each
 * JSON-RPC request of a session is decided with its own request's identity and policy set
 * (current attributes, current config), never the ones the session was opened with.
 */
type AuthedRequest = IncomingMessage & { auth?: AuthInfo };
function attachAccess(req: IncomingMessage, access: ToolAccess): void {
  (req as AuthedRequest).auth = { token: '', clientId: access.identity.agent.spiffeId, scopes: [], extra: { access } };
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
  const rt: Runtime = { catalog, deps, approvals, maxResultBytes: opts.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES };
  const pageSize = opts.pageSize ?? 200;
  const maxSessions = opts.maxSessions ?? 10_000;
  const { maxPerIdentity, maxPerDomain } = sessionLimits(opts);
  /** Sessions open or being opened, per identity (reserved before initialize, so a burst cannot overshoot). */
  const opened = new Map<string, number>();
  /** The same for unregistered identities, per trust domain (the authority that vouched for them). */
  const openedByDomain = new Map<string, number>();
  let openedTotal = 0;
  const idleMs = opts.sessionIdleMs ?? 30 * 60_000;
  const maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const listWaitMs = opts.listWaitMs ?? 5000;
  const sessions = new Map<string, Session>();

  catalog.onToolsChanged((server) => {
    for (const s of sessions.values()) {
      if (s.ctx.scope === null || s.ctx.scope === server) s.server.sendToolListChanged().catch(() => {});
    }
  });

  // Resource updates go to the sessions that subscribed to that URI on that server.
  catalog.onResourceUpdated((server, uri) => {
    for (const s of sessions.values()) {
      if (s.ctx.subscriptions.get(uri) === server) s.server.sendResourceUpdated({ uri }).catch(() => {});
    }
  });

  const sweeper = setInterval(() => {
    const cutoff = Date.now() - idleMs;
    for (const s of sessions.values()) if (s.lastUsed < cutoff) void s.transport.close();
  }, Math.min(idleMs, 60_000));
  sweeper.unref();

  function buildServer(ctx: SessionCtx): Server {
    const server = new Server({ name: 'aam', version: '0.1.0' }, {
      capabilities: { tools: { listChanged: true }, resources: { subscribe: true }, prompts: {} },
      instructions: instructions(ctx.scope),
    });
    server.setRequestHandler(ListToolsRequestSchema, async (req, extra) => {
      const rc = forRequest(ctx, extra);
      await catalog.ready(ctx.scope, listWaitMs);
      return toolsPage(rt, rc, req.params?.cursor, pageSize) as { tools: Tool[]; nextCursor?: string };
    });
    server.setRequestHandler(CallToolRequestSchema, async (req, extra) =>
      // A trace the agent carried in params._meta (MCP semconv) is the one this call continues.
      callTool(rt, forRequest(ctx, extra), req.params.name, req.params.arguments, { ...callExtra(req.params._meta?.progressToken, extra), carried: mcpTraceparent(req.params) }));
    server.setRequestHandler(ListResourcesRequestSchema, async (_req, extra) => ({ resources: await listResources(rt, forRequest(ctx, extra)) }));
    server.setRequestHandler(ListResourceTemplatesRequestSchema, async (_req, extra) => ({ resourceTemplates: await listResourceTemplates(rt, forRequest(ctx, extra)) }));
    server.setRequestHandler(ReadResourceRequestSchema, async (req, extra) => readResource(rt, forRequest(ctx, extra), req.params.uri, callExtra(req.params._meta?.progressToken, extra)));
    server.setRequestHandler(SubscribeRequestSchema, async (req, extra) => { await subscribeResource(rt, forRequest(ctx, extra), req.params.uri); return {}; });
    server.setRequestHandler(UnsubscribeRequestSchema, async (req, extra) => { await unsubscribeResource(rt, forRequest(ctx, extra), req.params.uri); return {}; });
    server.setRequestHandler(ListPromptsRequestSchema, async (_req, extra) => ({ prompts: await listPrompts(rt, forRequest(ctx, extra)) }));
    server.setRequestHandler(GetPromptRequestSchema, async (req, extra) => getPrompt(rt, forRequest(ctx, extra), req.params.name, req.params.arguments, callExtra(req.params._meta?.progressToken, extra)));
    return server;
  }

  async function startSession(req: IncomingMessage, res: ServerResponse, access: ToolAccess, scope: string | null, body: unknown): Promise<void> {
    const identity = access.identity;
    const who = identityKey(identity);
    const mine = opened.get(who) ?? 0;
    if (mine >= maxPerIdentity) {
      deps.log.warn({ spiffe_id: who, sessions: mine }, 'mcp session refused: per-identity limit');
      return rpcError(res, 429, RPC.limited, `too many open MCP sessions for ${who} (limit ${maxPerIdentity} per identity); close unused sessions (HTTP DELETE with Mcp-Session-Id) or let idle ones expire (after ${Math.round(idleMs / 60_000)} min), then retry`);
    }
    // A registered Agent is one of a configured few; an external SPIFFE ID is whatever its domain mints.
    const domain = identity.agent.name ? null : identity.agent.trustDomain;
    const ours = domain === null ? 0 : openedByDomain.get(domain) ?? 0;
    if (domain !== null && ours >= maxPerDomain) {
      deps.log.warn({ spiffe_id: who, trust_domain: domain, sessions: ours }, 'mcp session refused: per-trust-domain limit');
      return rpcError(res, 429, RPC.limited, `too many open MCP sessions for identities of trust domain ${domain} that are not registered as Agents (limit ${maxPerDomain} per trust domain); close unused sessions (HTTP DELETE with Mcp-Session-Id) or let idle ones expire (after ${Math.round(idleMs / 60_000)} min), then retry; an operator can register the workload as an Agent or raise AAM_MCP_SESSIONS_PER_TRUST_DOMAIN`);
    }
    if (openedTotal >= maxSessions) return rpcError(res, 503, RPC.upstream, `too many MCP sessions (${maxSessions}); close unused sessions (HTTP DELETE with Mcp-Session-Id) and retry`);
    opened.set(who, mine + 1);
    if (domain !== null) openedByDomain.set(domain, ours + 1);
    openedTotal++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      openedTotal--;
      decrement(opened, who);
      if (domain !== null) decrement(openedByDomain, domain);
    };
    let session: Session | undefined;
    const ctx: SessionCtx = { identity, access, scope, sessionId: () => session?.id, resourceOwner: new Map(), templateOwners: [], subscriptions: new Map() };
    const server = buildServer(ctx);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session = { id, ctx, server, transport, lastUsed: Date.now() };
        sessions.set(id, session);
        deps.log.info({ session_id: id, spiffe_id: identity.agent.spiffeId, scope: scope ?? '*' }, 'mcp session started');
      },
      onsessionclosed: (id) => { sessions.delete(id); release(); },
    });
    transport.onclose = () => {
      if (session) sessions.delete(session.id);
      release();
      // The session's subscriptions end with it.
      for (const uri of [...ctx.subscriptions.keys()]) void unsubscribeResource(rt, ctx, uri).catch(() => {});
    };
    try {
      await server.connect(transport);
      attachAccess(req, access);
      await transport.handleRequest(req, res, body);
    } finally {
      if (!session) release(); // initialize failed: no session holds the slot
    }
  }

  return {
    async handle(req, res, access, serverName, parsedBody) {
      const identity = access.identity;
      if (serverName !== null && !catalog.servers.has(serverName)) {
        return rpcError(res, 404, RPC.notFound, `unknown MCP server "${serverName}"; use /mcp for all servers you may use`);
      }
      let body = parsedBody;
      if (body === undefined && req.method === 'POST') {
        const read = await readJson(req, maxBody);
        if (!read.ok) return rpcError(res, read.status, read.code, read.message);
        body = read.value;
      }
      // MCP 2026-07-28: no session, each request carries its own version and capabilities.
      if (req.method === 'POST' && isModernRequest(req.headers, body)) {
        const abort = new AbortController();
        res.on('close', () => { if (!res.writableFinished) abort.abort(); }); // a closed response cancels the request
        const rid = req.headers['x-request-id'];
        const extra = { signal: abort.signal, requestId: typeof rid === 'string' && REQUEST_ID.test(rid) ? rid : undefined };
        return handleModern({ rt, pageSize, listWaitMs, instructions }, req.headers, res, body as Record<string, unknown>, access, serverName, extra);
      }
      const sid = req.headers['mcp-session-id'];
      if (typeof sid === 'string' && sid) {
        const s = sessions.get(sid);
        if (!s) return rpcError(res, 404, RPC.notFound, 'unknown or expired MCP session; start a new one with initialize (without Mcp-Session-Id)');
        if (identityKey(s.ctx.identity) !== identityKey(identity)) {
          deps.log.warn({ session_id: sid, owner: identityKey(s.ctx.identity), caller: identityKey(identity) }, 'mcp session used by another identity');
          return rpcError(res, 403, RPC.denied, 'this MCP session belongs to another identity; start your own session with initialize');
        }
        if (s.ctx.scope !== serverName) return rpcError(res, 400, RPC.invalidParams, `this MCP session was opened on ${s.ctx.scope === null ? '/mcp' : `/mcp/${s.ctx.scope}`}; use that endpoint`);
        s.lastUsed = Date.now();
        // Same SPIFFE ID, attributes as they are now: requests are decided with this access context,
        // and the session's own background work (unsubscribing when it closes) uses the latest identity.
        s.ctx.identity = identity;
        s.ctx.access = access;
        attachAccess(req, access);
        return s.transport.handleRequest(req, res, body);
      }
      const isInit = req.method === 'POST' && (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));
      if (!isInit) return rpcError(res, 400, RPC.invalidParams, 'missing Mcp-Session-Id header: start a session with an initialize request first (MCP 2025-11-25 and earlier), or send MCP 2026-07-28 requests carrying params._meta["io.modelcontextprotocol/protocolVersion"] and the MCP-Protocol-Version header');
      return startSession(req, res, access, serverName, body);
    },
    async reload(next) {
      await catalog.reload(next);
    },
    async close() {
      clearInterval(sweeper);
      await Promise.all([...sessions.values()].map((s) => s.transport.close().catch(() => {})));
      sessions.clear();
      await catalog.close();
    },
    approvals,
    toolDiff: (server, tool) => integrity.diff(server, tool),
    acceptTool(server, tool, actor) {
      // Evidence of who accepted it is the admin event the caller (admin API) records.
      const d = integrity.accept(server, tool, actor);
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
  requestInfo?: { headers: Record<string, string | string[] | undefined> };
  sendNotification: (n: { method: 'notifications/progress'; params: { progressToken: string | number } & Progress }) => Promise<void>;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Forward cancellation (signal) and, when the client asked for it, progress notifications. */
function callExtra(progressToken: string | number | undefined, extra: SdkExtra): Extra {
  const onprogress = progressToken === undefined ? undefined
    : (p: Progress) => { extra.sendNotification({ method: 'notifications/progress', params: { ...p, progressToken } }).catch(() => {}); };
  // The HTTP request id of the POST that carried this message (set by the server), for correlation.
  const rid = extra.requestInfo?.headers['x-request-id'];
  return { signal: extra.signal, onprogress, jsonrpcId: extra.requestId, requestId: typeof rid === 'string' && REQUEST_ID.test(rid) ? rid : undefined };
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1;
  if (n > 0) counts.set(key, n); else counts.delete(key);
}

function rpcError(res: ServerResponse, status: number, code: number, message: string): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

type ReadResult = { ok: true; value: unknown } | { ok: false; status: number; code: number; message: string };

async function readJson(req: IncomingMessage, max: number): Promise<ReadResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) return { ok: false, status: 413, code: -32600, message: `request body over ${max} bytes` };
    chunks.push(chunk as Buffer);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch (e) {
    return { ok: false, status: 400, code: -32700, message: `parse error: request body is not valid JSON (${e instanceof Error ? e.message : String(e)})` };
  }
}
