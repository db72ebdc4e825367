// The HTTP headers MCP 2026-07-28 mirrors from a request body (basic/transports/streamable-http,
// "Request Metadata"): which fields, how values are encoded, and where tool schemas mark arguments
// for Mcp-Param-*. Pure: shared by aam as a server (validation) and as a client of upstreams.
import { isObj } from '../lib/json.ts';

export const MODERN_VERSION = '2026-07-28';
/** The session generation (initialize): the version aam asks for and accepts as a client, and speaks as a server (the SDK 1.x's LATEST / SUPPORTED_PROTOCOL_VERSIONS; test/mcp-stdio-client checks they match). */
export const SESSION_VERSION = '2025-11-25';
export const SESSION_VERSIONS: readonly string[] = [SESSION_VERSION, '2025-06-18', '2025-03-26', '2024-11-05', '2024-10-07'];
/** MCP's logging levels (RFC 5424 severities), least severe first. */
export const LOG_LEVEL_NAMES = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'] as const;
export const isLogLevel = (v: unknown): v is (typeof LOG_LEVEL_NAMES)[number] => (LOG_LEVEL_NAMES as readonly unknown[]).includes(v);
/** The _meta key of a 2026-07-28 request's client capabilities. */
export const CLIENT_CAPS = 'io.modelcontextprotocol/clientCapabilities';
/** Methods whose params.name (or params.uri, or the Tasks extension's params.taskId) is mirrored into Mcp-Name. */
export const NAMED: Readonly<Record<string, 'name' | 'uri' | 'taskId'>> = {
  'tools/call': 'name', 'prompts/get': 'name', 'resources/read': 'uri', 'tasks/get': 'taskId', 'tasks/update': 'taskId', 'tasks/cancel': 'taskId',
};
/** One JSON-RPC message as a Streamable HTTP SSE event. */
export const sseEvent = (msg: Record<string, unknown>): string => `event: message\ndata: ${JSON.stringify(msg)}\n\n`;

/** RFC 9110 field value: visible ASCII, space, tab. */
const HEADER_SAFE = /^[\t\x20-\x7e]*$/;
const SENTINEL = /^=\?base64\?([A-Za-z0-9+/]*={0,2})\?=$/;

type Json = Record<string, unknown>;

/** A header value as sent, Base64 sentinel decoded (spec: "Value Encoding"); null when malformed. */
export function decodeHeaderValue(raw: string): string | null {
  if (!HEADER_SAFE.test(raw)) return null;
  const m = SENTINEL.exec(raw);
  if (!m) return raw.startsWith('=?base64?') && raw.endsWith('?=') ? null : raw;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  return Buffer.from(text, 'utf8').toString('base64').replace(/=+$/, '') === m[1].replace(/=+$/, '') ? text : null;
}

/** Tool parameters annotated `x-mcp-header`, reachable from the root through `properties` only. */
export function headerParams(schema: unknown, path: string[] = []): Array<{ header: string; path: string[] }> {
  if (!isObj(schema) || !isObj(schema.properties)) return [];
  const out: Array<{ header: string; path: string[] }> = [];
  for (const [key, prop] of Object.entries(schema.properties)) {
    if (!isObj(prop)) continue;
    if (typeof prop['x-mcp-header'] === 'string') out.push({ header: prop['x-mcp-header'], path: [...path, key] });
    out.push(...headerParams(prop, [...path, key]));
  }
  return out;
}

/** Spec "Value Encoding": plain when header-safe (and not sentinel-like), else =?base64?...?=. */
export function encodeHeaderValue(v: string): string {
  const plain = /^[\x20-\x7e]*$/.test(v) && v.trim() === v && !(v.startsWith('=?base64?') && v.endsWith('?='));
  return plain ? v : `=?base64?${Buffer.from(v, 'utf8').toString('base64')}?=`;
}

/** The value at a chain of `properties` keys, for Mcp-Param-* headers. */
export function valueAt(args: unknown, path: string[]): unknown {
  let v = args;
  for (const k of path) v = isObj(v) ? v[k] : undefined;
  return v;
}

/** The headers a 2026-07-28 POST must carry for this body (tool schemas give the Mcp-Param-* ones). */
export function modernHeaders(method: string, params: Json, toolSchema?: unknown): Record<string, string> {
  const h: Record<string, string> = {
    'content-type': 'application/json', accept: 'application/json, text/event-stream',
    'mcp-protocol-version': MODERN_VERSION, 'mcp-method': method,
  };
  const field = NAMED[method];
  if (field && typeof params[field] === 'string') h['mcp-name'] = encodeHeaderValue(params[field]);
  for (const p of headerParams(toolSchema)) {
    const v = valueAt(params.arguments, p.path);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') h[`mcp-param-${p.header.toLowerCase()}`] = encodeHeaderValue(String(v));
  }
  return h;
}

