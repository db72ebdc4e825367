// MCP 2026-07-28 ("modern", stateless) beside the session-based 2025-11-25 generation on /mcp and
// /mcp/<server>. A modern request carries its protocol version and client capabilities in
// params._meta, mirrors method and name into Mcp-Method / Mcp-Name (and annotated tool arguments
// into Mcp-Param-*) headers, and is answered on its own: no initialize, no session, decided with
// the identity of the HTTP request that carried it. Upstream servers are reached through the same
// call path as legacy sessions (aam speaks to each upstream in its own generation), so a modern
// client reaches a legacy server through aam unchanged.
// Spec: modelcontextprotocol.io/specification/2026-07-28 (basic/transports/streamable-http,
// basic/versioning, server/discover; schema/2026-07-28/schema.ts).
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { CompleteRequest, LoggingLevel, Progress } from '@modelcontextprotocol/sdk/types.js';
import { mcpTraceparent } from '../observability/otlp-genai.ts';
import { optionalCapabilities, type CompiledTool } from './catalog.ts';
import { decodeHeaderValue, headerParams, isLogLevel, LOG_LEVEL_NAMES, MODERN_VERSION, NAMED, SESSION_VERSION, SESSION_VERSIONS, sseEvent, valueAt } from './mcp-headers.ts';
import { callTool, completeArgument, guardedDefinition, guardedListing, listedServer, refuseUnlisted, getPrompt, listPrompts, listResources, listResourceTemplates, readResource, visibleTools, type Extra, type Runtime, type SessionCtx } from './mcp-call.ts';
import { isInputRequired, TASKS_EXT } from './mcp-mrtr.ts';
import { taskRequest } from './mcp-tasks.ts';
import type { Gathered } from './mcp-pages.ts';
import { RPC, ToolError, type ToolAccess } from './types.ts';
import { isObj } from '../lib/json.ts';

export { MODERN_VERSION };

/** What server/discover and UnsupportedProtocolVersionError advertise: modern first, then the legacy ones (via initialize). */
export const SUPPORTED_VERSIONS: readonly string[] = [MODERN_VERSION, ...SESSION_VERSIONS];
/** Error codes the 2026-07-28 schema allocates (HEADER_MISMATCH, MISSING_REQUIRED_CLIENT_CAPABILITY, UNSUPPORTED_PROTOCOL_VERSION). */
export const MODERN_RPC = { headerMismatch: -32020, missingCapability: -32021, unsupportedVersion: -32022, methodNotFound: -32601 } as const;

const META_VERSION = 'io.modelcontextprotocol/protocolVersion';
const META_CAPS = 'io.modelcontextprotocol/clientCapabilities';
const META_SERVER = 'io.modelcontextprotocol/serverInfo';
/** The log level of one request (server/utilities/logging; replaces logging/setLevel): absent, no log messages. */
const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';

type Json = Record<string, unknown>;
const metaOf = (body: Json): Json | undefined => (isObj(body.params) && isObj(body.params._meta) ? body.params._meta : undefined);

/**
 * Does this POST speak the modern generation? A request carrying a modern _meta version, or a
 * protocol version header no legacy session would send, without a session. `initialize` (and
 * anything on a session) stays legacy; batches are legacy-only.
 */
export function isModernRequest(headers: IncomingHttpHeaders, body: unknown): boolean {
  if (headers['mcp-session-id'] !== undefined || !isObj(body) || body.method === 'initialize') return false;
  if (metaOf(body)?.[META_VERSION] !== undefined) return true;
  const v = headers['mcp-protocol-version'];
  return typeof v === 'string' && !SESSION_VERSIONS.includes(v);
}

/** Header and body agree (integers compared as numbers, booleans as lowercase words). */
function sameValue(header: string, body: unknown): boolean {
  if (typeof body === 'number') return header.trim() !== '' && Number(header) === body;
  if (typeof body === 'boolean') return header === String(body);
  return typeof body === 'string' && header === body;
}

const one = (h: string | string[] | undefined): string | undefined => (Array.isArray(h) ? h.join(', ') : h);

/**
 * The spec's Server Validation: required headers present, well-formed and equal to the body
 * (MCP-Protocol-Version, Mcp-Method, Mcp-Name, and Mcp-Param-* of `tool` when given). Returns
 * what is wrong, or null. Runs before anything is routed or decided: aam acts on the body, and a
 * proxy in front may have acted on the headers, so they must say the same thing.
 */
export function headerMismatch(headers: IncomingHttpHeaders, body: Json, tool?: CompiledTool): string | null {
  const version = one(headers['mcp-protocol-version']);
  const bodyVersion = metaOf(body)?.[META_VERSION];
  if (version === undefined) return 'missing MCP-Protocol-Version header; send the protocol version of params._meta["io.modelcontextprotocol/protocolVersion"]';
  if (version !== bodyVersion) return `MCP-Protocol-Version header "${version}" does not match params._meta["${META_VERSION}"] ${JSON.stringify(bodyVersion ?? null)}`;
  const method = one(headers['mcp-method']);
  if (method === undefined) return `missing Mcp-Method header; send the JSON-RPC method ("${String(body.method)}")`;
  if (method !== body.method) return `Mcp-Method header "${method}" does not match body method "${String(body.method)}"`;
  const field = NAMED[method];
  const params = isObj(body.params) ? body.params : {};
  if (field) {
    const raw = one(headers['mcp-name']);
    if (raw === undefined) return `missing Mcp-Name header; ${method} must mirror params.${field} into it`;
    const name = decodeHeaderValue(raw);
    if (name === null) return 'Mcp-Name header is malformed; non-ASCII values use =?base64?...?=';
    if (name !== params[field]) return `Mcp-Name header value "${name.slice(0, 200)}" does not match body params.${field}`;
  }
  if (!tool) return null;
  for (const p of headerParams(tool.def.inputSchema)) {
    const raw = one(headers[`mcp-param-${p.header.toLowerCase()}`]);
    const v = valueAt(params.arguments, p.path);
    if (v === undefined || v === null) {
      if (raw !== undefined) return `Mcp-Param-${p.header} header sent but arguments.${p.path.join('.')} is absent`;
      continue;
    }
    if (raw === undefined) return `missing Mcp-Param-${p.header} header for arguments.${p.path.join('.')} (the tool's inputSchema marks it x-mcp-header)`;
    const decoded = decodeHeaderValue(raw);
    if (decoded === null) return `Mcp-Param-${p.header} header is malformed; non-ASCII values use =?base64?...?=`;
    if (!sameValue(decoded, v)) return `Mcp-Param-${p.header} header does not match arguments.${p.path.join('.')}`;
  }
  return null;
}

export interface StatelessOptions {
  rt: Runtime;
  pageSize: number;
  listWaitMs: number;
  instructions(scope: string | null): string | undefined;
  /** subscriptions/listen: open the stream (validated request, this caller). */
  listen(s: SessionCtx, params: Json, id: string | number, res: ServerResponse): Promise<void>;
}

/** A JSON answer, or (subscriptions/listen) a stream that writes its own response. */
type Reply = { status: number; body: Json; stream?: (res: ServerResponse) => Promise<void>; retryAfter?: number };
const error = (id: unknown, status: number, code: number, message: string, data?: unknown): Reply =>
  ({ status, body: { jsonrpc: '2.0', id: id ?? null, error: { code, message, ...(data === undefined ? {} : { data }) } } });

/**
 * The HTTP status of a refusal: -32021 (a capability the request did not declare) is a 400, as the
 * spec's MissingRequiredClientCapabilityError says; a fleet store that cannot answer is the
 * Contract's 503 store_unavailable with retry-after, as a session's request gets (mcp-gateway.ts);
 * any other JSON-RPC error rides in a 200 body.
 */
function refusal(id: unknown, e: ToolError): Reply {
  const r = error(id, e.code === MODERN_RPC.missingCapability ? 400 : e.errorCode === 'store_unavailable' ? 503 : 200, e.code, e.message, e.data);
  return r.status === 503 ? { ...r, retryAfter: Number(e.data?.retry_after_seconds ?? 1) } : r;
}
/** Cacheable results (lists, resources/read) depend on who asks: a shared cache must never serve them to anyone else. */
const PRIVATE = { ttlMs: 0, cacheScope: 'private' } as const;

/** One modern JSON-RPC request, answered statelessly with this HTTP request's access context. */
export async function handleModern(o: StatelessOptions, headers: IncomingHttpHeaders, res: ServerResponse, body: Json, access: ToolAccess, scope: string | null, extra: Extra): Promise<void> {
  // Progress (basic/patterns/progress) and log messages (server/utilities/logging): a request with a
  // progressToken or a log level, from a client that accepts SSE, is answered as an event stream
  // from the first notification on; else as plain JSON (and without them).
  const meta = metaOf(body);
  const token = meta?.progressToken;
  const sse = String(headers.accept ?? '').includes('text/event-stream');
  let streaming = false;
  const send = (msg: Json) => {
    if (res.writableEnded) return;
    if (!streaming) { streaming = true; res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }); }
    res.write(sseEvent(msg));
  };
  const onprogress = sse && (typeof token === 'string' || typeof token === 'number') ? (p: Progress) => send({ jsonrpc: '2.0', method: 'notifications/progress', params: { ...p, progressToken: token } }) : undefined;
  const level = meta?.[META_LOG_LEVEL];
  const log = sse && isLogLevel(level) ? { level: level as LoggingLevel, send: (p: Json) => send({ jsonrpc: '2.0', method: 'notifications/message', params: p }) } : undefined;
  const r = await answer(o, headers, body, access, scope, { ...extra, ...(onprogress ? { onprogress } : {}), ...(log ? { log } : {}) });
  if (streaming) return void res.end(r ? sseEvent(r.body) : undefined);
  if (res.headersSent) return void res.end();
  if (r === null) { res.writeHead(202); return void res.end(); }
  if (r.stream) return r.stream(res);
  res.writeHead(r.status, r.retryAfter === undefined ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'retry-after': String(r.retryAfter) });
  res.end(JSON.stringify(r.body));
}

async function answer(o: StatelessOptions, headers: IncomingHttpHeaders, body: Json, access: ToolAccess, scope: string | null, extra: Extra): Promise<Reply | null> {
  const id = body.id;
  if (body.jsonrpc !== '2.0' || typeof body.method !== 'string') return error(id, 400, -32600, 'invalid JSON-RPC request: needs "jsonrpc": "2.0" and a string "method"');
  const method = body.method;
  const mismatch = headerMismatch(headers, body);
  if (mismatch) return error(id, 400, MODERN_RPC.headerMismatch, `Header mismatch: ${mismatch}`);
  if (id === undefined) return null; // no client notifications are defined over HTTP in this revision: accept and ignore
  if (typeof id !== 'string' && !Number.isInteger(id)) return error(null, 400, -32600, `invalid JSON-RPC request: an MCP request's id must be a string or an integer, not ${id === null ? 'null' : JSON.stringify(id)}`);
  const meta = metaOf(body) ?? {};
  if (meta[META_VERSION] !== MODERN_VERSION) {
    return error(id, 400, MODERN_RPC.unsupportedVersion, `Unsupported protocol version ${JSON.stringify(meta[META_VERSION])}: use ${MODERN_VERSION} per request, or initialize a session for ${SESSION_VERSION} and earlier`,
      { supported: SUPPORTED_VERSIONS, requested: meta[META_VERSION] });
  }
  if (!isObj(meta[META_CAPS])) return error(id, 400, -32602, `params._meta["${META_CAPS}"] is required (an object; {} declares no optional capabilities)`);
  if (meta[META_LOG_LEVEL] !== undefined && !isLogLevel(meta[META_LOG_LEVEL])) {
    return error(id, 200, -32602, `Invalid params: params._meta["${META_LOG_LEVEL}"] must be one of ${LOG_LEVEL_NAMES.join(', ')}`);
  }
  const params = isObj(body.params) ? body.params : {};
  const s: SessionCtx = { identity: access.identity, access, scope, sessionId: () => undefined, resourceOwner: new Map(), templateOwners: [], subscriptions: new Map() };
  if (method === 'subscriptions/listen') return { status: 200, body: {}, stream: (res) => o.listen(s, isObj(body.params) ? body.params : {}, id as string | number, res) };
  try {
    const result = await dispatch(o, s, method, params, headers, body, extra);
    if (result === undefined) return error(id, 404, MODERN_RPC.methodNotFound, `Method not found: ${method} (aam serves server/discover, tools, resources, prompts, completion/complete, subscriptions/listen and tasks; sessions, resources/subscribe and logging/setLevel are legacy-only: a 2026-07-28 request sets its log level in _meta)`);
    const kind = isInputRequired(result) ? 'input_required' : method === 'tools/call' && result.resultType === 'task' ? 'task' : 'complete';
    return { status: 200, body: { jsonrpc: '2.0', id, result: { ...result, resultType: kind } } };
  } catch (e) {
    if (e instanceof ToolError && e.code === MODERN_RPC.headerMismatch) return error(id, 400, e.code, e.message);
    if (e instanceof ToolError) return refusal(id, e);
    throw e;
  }
}

async function dispatch(o: StatelessOptions, s: SessionCtx, method: string, params: Json, headers: IncomingHttpHeaders, body: Json, extra: Extra): Promise<Json | undefined> {
  const { rt } = o;
  // Multi round-trip retries (tools/call, resources/read, prompts/get) and the input this client can give.
  const mx: Extra = { ...extra, mrtr: { inputResponses: params.inputResponses, requestState: params.requestState, clientCapabilities: metaOf(body)?.[META_CAPS] as Record<string, unknown> | undefined } };
  switch (method) {
    case 'server/discover':
      // completions and logging only when a server in scope offers them (aam routes and relays them)
      await rt.catalog.ready(s.scope, o.listWaitMs);
      return {
        supportedVersions: SUPPORTED_VERSIONS, capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true }, prompts: { listChanged: true }, ...optionalCapabilities(rt.catalog.inScope(s.scope)), extensions: { [TASKS_EXT]: {} } },
        ...(o.instructions(s.scope) ? { instructions: o.instructions(s.scope) } : {}),
        _meta: { [META_SERVER]: { name: 'aam', version: '0.1.0' } }, ...PRIVATE,
      };
    case 'tools/list': {
      await rt.catalog.ready(s.scope, o.listWaitMs);
      return { ...await toolsPage(rt, s, params.cursor, o.pageSize, mx.requestId), ...PRIVATE };
    }
    case 'tools/call': {
      const name = String(params.name);
      // Mcp-Param-* are checked against the tool's schema only for tools this caller may see, so a
      // mismatch error cannot reveal the schema of a tool it may not use (that call is denied next).
      // Decided first when no listed tool has the name: a denied caller's probe asks no upstream.
      refuseUnlisted(rt, s, name, params.arguments, mx.requestId ?? `req_${randomUUID()}`);
      const tool = await rt.catalog.resolve(s.scope, name);
      const mismatch = tool && s.access.visible(tool.resource, tool.action) ? headerMismatch(headers, body, tool) : null;
      if (mismatch) throw new ToolError('header_mismatch', `Header mismatch: ${mismatch}`, { code: MODERN_RPC.headerMismatch, status: 400 });
      // A trace the agent carried in params._meta is the one this call continues (as on sessions).
      return callTool(rt, s, name, params.arguments, { ...mx, carried: mcpTraceparent(params) }) as Promise<Json>;
    }
    case 'resources/list': return { ...await listPage(rt, s, method, 'resources', params.cursor, o.pageSize, () => listResources(rt, s), mx.requestId), ...PRIVATE };
    case 'resources/templates/list': return { ...await listPage(rt, s, method, 'resourceTemplates', params.cursor, o.pageSize, () => listResourceTemplates(rt, s), mx.requestId), ...PRIVATE };
    case 'resources/read': {
      // No session remembers which server listed a URI: on /mcp, list (as this caller) to find its owner.
      if (s.scope === null) await Promise.all([listResources(rt, s), listResourceTemplates(rt, s)]);
      const r = await readResource(rt, s, String(params.uri), mx);
      return isInputRequired(r) ? r : { ...r, ...PRIVATE }; // an interim result carries no caching hints
    }
    case 'prompts/list': return { ...await listPage(rt, s, method, 'prompts', params.cursor, o.pageSize, () => listPrompts(rt, s), mx.requestId), ...PRIVATE };
    case 'tasks/get': case 'tasks/update': case 'tasks/cancel': return taskRequest(rt, s, method, params, extra);
    case 'completion/complete': {
      // No session remembers which server listed a template: on /mcp, list them (as this caller) to find its owner.
      if (s.scope === null && isObj(params.ref) && params.ref.type === 'ref/resource') await listResourceTemplates(rt, s);
      return completeArgument(rt, s, params as unknown as CompleteRequest['params'], extra) as unknown as Promise<Json>;
    }
    case 'prompts/get': return getPrompt(rt, s, String(params.name), isObj(params.arguments) ? params.arguments as Record<string, string> : undefined, mx) as Promise<Json>;
    default: return undefined;
  }
}

/** One page of the tools this caller may call, named as its endpoint exposes them (both generations). */
export async function toolsPage(rt: Runtime, s: SessionCtx, cursor: unknown, pageSize: number, requestId = `req_${randomUUID()}`): Promise<{ tools: Json[]; nextCursor?: string }> {
  const start = decodeCursor(cursor, 'tools/list').o;
  const all = await visibleTools(rt, s);
  const shown = await Promise.all(all.slice(start, start + pageSize).map((t) => guardedDefinition(rt, s, t, requestId)));
  const tools = shown.flatMap((go) => (go.ok ? [go.value as Json] : []));
  return start + pageSize < all.length ? { tools, nextCursor: encodeCursor(start + pageSize) } : { tools };
}

/**
 * One page of a list aam answers itself from its servers' (prompts, resources, resource templates;
 * both generations), cut like tools/list: `pageSize` items from the offset an opaque cursor names,
 * nextCursor while more follow, the same error for a cursor aam did not make (checked before any
 * server is asked). The first page gathers every server's whole list; the pages after it are cut
 * from that gathering while it is fresh and the caller's own (rt.pages, mcp-pages.ts), else gathered again.
 */
export async function listPage<K extends 'prompts' | 'resources' | 'resourceTemplates', T>(rt: Runtime, s: SessionCtx, method: string, key: K, cursor: unknown, pageSize: number, list: () => Promise<Gathered<T>>, requestId = `req_${randomUUID()}`): Promise<Record<K, T[]> & { nextCursor?: string }> {
  const { o: start, p: kept } = decodeCursor(cursor, method);
  const who = s.identity.agent.spiffeId;
  const hit = kept === undefined ? undefined : rt.pages.take(kept, who, s.scope, method) as T[] | undefined;
  let all: T[];
  let id = hit === undefined ? undefined : kept;
  if (hit !== undefined) all = hit;
  else {
    const g = await list();
    all = g.items;
    if (start + pageSize < all.length) id = rt.pages.keep(g, who, s.scope, method);
  }
  const items = { [key]: await guardedListing(rt, s, method, all.slice(start, start + pageSize), listedServer(rt, s, key), requestId) } as Record<K, T[]>;
  return start + pageSize < all.length ? { ...items, nextCursor: encodeCursor(start + pageSize, id) } : items;
}

function encodeCursor(offset: number, kept?: string): string {
  return Buffer.from(JSON.stringify(kept === undefined ? { o: offset } : { o: offset, p: kept })).toString('base64url');
}

function decodeCursor(cursor: unknown, method: string): { o: number; p?: string } {
  if (cursor === undefined) return { o: 0 };
  try {
    const v = JSON.parse(Buffer.from(String(cursor), 'base64url').toString('utf8')) as { o?: unknown; p?: unknown };
    if (typeof v.o === 'number' && Number.isSafeInteger(v.o) && v.o >= 0 && (v.p === undefined || typeof v.p === 'string')) return { o: v.o, p: v.p as string | undefined };
  } catch { /* fall through */ }
  throw new ToolError('invalid_cursor', `invalid ${method} cursor; pass the nextCursor from the previous page unchanged`, { code: RPC.invalidParams, status: 400 });
}
