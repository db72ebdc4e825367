// A JSON-RPC error from (or about) an upstream MCP server, shaped like the MCP SDK's McpError
// (name 'McpError', numeric `code`, message "MCP error <code>: <message>"), so aam's own clients
// (stdio, 2026-07-28 HTTP) and the SDK's legacy HTTP client are reported alike (upstream.ts
// upstreamError) without loading the SDK's types.js (zod schemas for the whole protocol).

/** JSON-RPC codes the clients give themselves (the SDK's ErrorCode values). */
export const MCP_CODE = { connectionClosed: -32000, requestTimeout: -32001, invalidRequest: -32600, methodNotFound: -32601, invalidParams: -32602 } as const;

export class McpError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    super(`MCP error ${code}: ${message}`);
    this.code = code;
    this.data = data;
    this.name = 'McpError';
  }
}

/** aam's McpError or the SDK's (same name and shape): a JSON-RPC error with its code. */
export const isMcpError = (e: unknown): e is Error & { code: number; data?: unknown } =>
  e instanceof Error && e.name === 'McpError' && typeof (e as { code?: unknown }).code === 'number';
