// aam as a 2026-07-28 client of an upstream MCP server that speaks it (Streamable HTTP). Dual-era
// per the spec (basic/versioning, "Backward Compatibility"): probe with server/discover; a result
// naming 2026-07-28 means modern, anything else (a legacy server's 400, -32601 in a 200, ...) means
// the SDK's initialize-and-session client. Each modern request carries _meta (version, client info,
// capabilities) and the mirrored headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*),
// so a validating server or proxy in front of it accepts it.
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type {
  CallToolResult, CompleteRequest, CompleteResult, GetPromptResult, LoggingLevel, LoggingMessageNotification, ListPromptsResult, ListResourcesResult, ListResourceTemplatesResult,
  ListToolsResult, ReadResourceResult, ServerCapabilities,
} from '@modelcontextprotocol/sdk/types.js';
import { MCP_CODE, McpError } from './mcp-error.ts';
import { CLIENT_CAPS, MODERN_VERSION, modernHeaders } from './mcp-headers.ts';
import { TASKS_EXT } from './mcp-mrtr.ts';
import { isObj } from '../lib/json.ts';

export type LogParams = LoggingMessageNotification['params'];
/**
 * The caller asked for log messages at `level` and above: the upstream's notifications/message
 * sent while serving this very request (on its response stream) go to `onlog`, never anyone else's.
 */
export interface RequestLog { level: LoggingLevel; onlog: (p: LogParams) => void }
/** The SDK's request options, and the log messages of this one request the caller wants. */
export type ReqOptions = RequestOptions & { log?: RequestLog };
const META_LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
/** RFC 5424 severities from least to most severe (the order of the MCP LoggingLevel). */
export const LOG_LEVELS: readonly LoggingLevel[] = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];
export const logSeverity = (l: unknown): number => LOG_LEVELS.indexOf(l as LoggingLevel);

/** What aam needs of a client of one upstream; the SDK's Client (legacy) and ModernClient (2026-07-28) both provide it. */
export interface UpstreamClient {
  getServerCapabilities(): ServerCapabilities | undefined;
  listTools(params: { cursor?: string } | undefined, o?: RequestOptions): Promise<ListToolsResult>;
  callTool(params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> }, schema: undefined, o?: RequestOptions): Promise<unknown>;
  listResources(params: { cursor?: string } | undefined, o?: RequestOptions): Promise<ListResourcesResult>;
  readResource(params: { uri: string }, o?: RequestOptions): Promise<ReadResourceResult>;
  listResourceTemplates(params: { cursor?: string } | undefined, o?: RequestOptions): Promise<ListResourceTemplatesResult>;
  listPrompts(params: { cursor?: string } | undefined, o?: RequestOptions): Promise<ListPromptsResult>;
  getPrompt(params: { name: string; arguments?: Record<string, string> }, o?: RequestOptions): Promise<GetPromptResult>;
  complete(params: CompleteRequest['params'], o?: RequestOptions): Promise<CompleteResult>;
  /** logging/setLevel of the session (2025-11-25 servers only; a 2026-07-28 request carries its level in _meta). */
  setLoggingLevel?(level: LoggingLevel, o?: RequestOptions): Promise<unknown>;
  subscribeResource(params: { uri: string }, o?: RequestOptions): Promise<unknown>;
  unsubscribeResource(params: { uri: string }, o?: RequestOptions): Promise<unknown>;
  /**
   * subscriptions/listen (2026-07-28 upstreams only): `on` gets each notification of the stream
   * after its acknowledgement, until close() or the upstream ends it.
   */
  listen?(notifications: Record<string, unknown>, on: (method: string, params: Record<string, unknown>) => void): UpstreamListen;
  /** Tasks extension (tasks/get, tasks/update, tasks/cancel): 2026-07-28 upstreams only. */
  task?(method: string, params: Record<string, unknown>, o?: RequestOptions): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

/**
 * A client with a connection to keep (2025-11-25 and earlier: initialize, then a session): aam's
 * stdio client or the SDK's for HTTP. start() connects and initializes; onclose: the connection
 * ended (the process exited, the HTTP session was lost); notifications are handled by method.
 */
export interface SessionClient extends UpstreamClient {
  start(timeoutMs: number): Promise<void>;
  onNotification(method: string, handler: (params: Record<string, unknown>) => void | Promise<void>): void;
  onclose?: () => void;
  /** The process of a stdio server (null once it exited); undefined for HTTP. */
  readonly pid: number | null | undefined;
}

type Fetch = (url: string | URL, init?: RequestInit) => Promise<Response>;
type Json = Record<string, unknown>;

/** Each JSON-RPC message of an SSE response body, as it arrives. */
async function* sseMessages(res: Response): AsyncGenerator<Json> {
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buf.search(/\r?\n\r?\n/)) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (data) yield JSON.parse(data) as Json;
    }
  }
}

/** The JSON-RPC response for `id` from a JSON body or an SSE stream (progress notifications and the log messages asked for relayed). */
async function responseFor(res: Response, id: number, o?: ReqOptions): Promise<Json> {
  if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
    const text = await res.text();
    try { return JSON.parse(text) as Json; } catch { throw new Error(`HTTP ${res.status} with a body that is not JSON-RPC: ${text.slice(0, 200)}`); }
  }
  for await (const msg of sseMessages(res)) {
    if (msg.id === id) return msg;
    if (msg.method === 'notifications/progress' && isObj(msg.params)) o?.onprogress?.(msg.params as never);
    // Request-scoped (server/utilities/logging): on this request's stream, at or above the level it set.
    else if (msg.method === 'notifications/message' && isObj(msg.params) && o?.log && logSeverity(msg.params.level) >= logSeverity(o.log.level)) o.log.onlog(msg.params as never);
  }
  throw new Error('the response stream ended without a result');
}

/** An open subscriptions/listen stream to an upstream: what it acknowledged, and how to end it. */
export interface UpstreamListen { acked: Promise<Json>; ended: Promise<void>; close(): void }

/** A 2026-07-28 client of one upstream: stateless, so nothing to connect or close. */
export function createModernClient(url: URL, fetchFn: Fetch, capabilities: ServerCapabilities, defaultTimeoutMs: number): UpstreamClient {
  let nextId = 1;
  /** Tool input schemas as last listed, for the Mcp-Param-* headers of calls. */
  const schemas = new Map<string, unknown>();

  async function request<T>(method: string, params: Json, o?: ReqOptions): Promise<T> {
    const id = nextId++;
    // Capabilities: aam's own (none), or those of the client a relayed call asks input of (set by the caller).
    const given = isObj(params._meta) ? params._meta : {};
    const meta = { ...given, 'io.modelcontextprotocol/protocolVersion': MODERN_VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'aam-gateway', version: '0.1.0' }, [CLIENT_CAPS]: isObj(given[CLIENT_CAPS]) ? given[CLIENT_CAPS] : {}, ...(o?.log ? { [META_LOG_LEVEL]: o.log.level } : {}) };
    const body = { jsonrpc: '2.0', id, method, params: { ...params, _meta: meta } };
    const timeout = AbortSignal.timeout(o?.timeout ?? defaultTimeoutMs);
    let res: Response;
    let msg: Json;
    try {
      res = await fetchFn(url, {
        method: 'POST', headers: modernHeaders(method, params, method === 'tools/call' ? schemas.get(String(params.name)) : undefined),
        body: JSON.stringify(body), signal: o?.signal ? AbortSignal.any([o.signal, timeout]) : timeout,
      });
      msg = await responseFor(res, id, o);
    } catch (e) {
      // The same error the SDK client gives, so both generations report a slow upstream alike.
      if (timeout.aborted && !o?.signal?.aborted) throw new McpError(MCP_CODE.requestTimeout, 'Request timed out');
      throw e;
    }
    if (isObj(msg.error)) throw new McpError(Number(msg.error.code), String(msg.error.message), msg.error.data);
    if (!isObj(msg.result)) throw new Error(`HTTP ${res.status} without a JSON-RPC result`);
    // resultType input_required (multi round-trip) is returned as is: the tool plane relays it or refuses it.
    return msg.result as T;
  }

  return {
    getServerCapabilities: () => capabilities,
    async listTools(params, o) {
      const r = await request<ListToolsResult>('tools/list', params ?? {}, o);
      for (const t of r.tools) schemas.set(t.name, t.inputSchema);
      return r;
    },
    callTool: (params, _schema, o) => request<CallToolResult>('tools/call', params, o),
    listResources: (params, o) => request<ListResourcesResult>('resources/list', params ?? {}, o),
    readResource: (params, o) => request<ReadResourceResult>('resources/read', params, o),
    listResourceTemplates: (params, o) => request<ListResourceTemplatesResult>('resources/templates/list', params ?? {}, o),
    listPrompts: (params, o) => request<ListPromptsResult>('prompts/list', params ?? {}, o),
    getPrompt: (params, o) => request<GetPromptResult>('prompts/get', params, o),
    complete: (params, o) => request<CompleteResult>('completion/complete', params, o),
    // 2026-07-28 replaced per-URI subscriptions with subscriptions/listen streams.
    subscribeResource: async () => { throw new McpError(-32601, 'resources/subscribe is not part of MCP 2026-07-28 (subscriptions/listen replaced it)'); },
    unsubscribeResource: async () => ({}),
    task: (method, params, o) => request<Json>(method, params, o),
    listen(notifications, on) {
      const id = nextId++;
      const ac = new AbortController();
      const meta = { 'io.modelcontextprotocol/protocolVersion': MODERN_VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'aam-gateway', version: '0.1.0' }, [CLIENT_CAPS]: notifications.taskIds ? { extensions: { [TASKS_EXT]: {} } } : {} };
      let ack!: (v: Json) => void;
      let nack!: (e: unknown) => void;
      const acked = new Promise<Json>((y, n) => { ack = y; nack = n; });
      acked.catch(() => {});
      const ended = (async () => {
        const res = await fetchFn(url, { method: 'POST', headers: modernHeaders('subscriptions/listen', {}), body: JSON.stringify({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications, _meta: meta } }), signal: ac.signal });
        if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
          const msg = await responseFor(res, id);
          throw new Error(isObj(msg.error) ? String(msg.error.message) : `HTTP ${res.status}: not an event stream`);
        }
        for await (const msg of sseMessages(res)) {
          if (msg.method === 'notifications/subscriptions/acknowledged' && isObj(msg.params)) ack(isObj(msg.params.notifications) ? msg.params.notifications : {});
          else if (typeof msg.method === 'string' && isObj(msg.params)) on(msg.method, msg.params);
          else if (msg.id === id) break; // the upstream ended the stream
        }
      })().then(() => nack(new Error('the stream ended before it was acknowledged')), (e: unknown) => { nack(e); });
      return { acked, ended, close: () => ac.abort() };
    },
    close: async () => {},
  };
}

/**
 * server/discover against `url`: the upstream's capabilities when it speaks 2026-07-28, else null
 * (fall back to initialize). A network failure is thrown: it says nothing about the generation.
 */
export async function discoverModern(url: URL, fetchFn: Fetch, timeoutMs: number): Promise<ServerCapabilities | null> {
  const body = { jsonrpc: '2.0', id: 0, method: 'server/discover', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN_VERSION, 'io.modelcontextprotocol/clientInfo': { name: 'aam-gateway', version: '0.1.0' }, 'io.modelcontextprotocol/clientCapabilities': {} } } };
  const res = await fetchFn(url, { method: 'POST', headers: modernHeaders('server/discover', {}), body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  let msg: Json;
  try { msg = await responseFor(res, 0); } catch { return null; }
  const r = msg.result;
  if (!isObj(r) || !Array.isArray(r.supportedVersions) || !r.supportedVersions.includes(MODERN_VERSION)) return null;
  return isObj(r.capabilities) ? r.capabilities as ServerCapabilities : {};
}
