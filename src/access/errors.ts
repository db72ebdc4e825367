// Coded errors: every error a client can see has a stable code, an HTTP status, an OpenAI-style
// type and a message that says what was wrong and how to fix it.

import { clip } from '../lib/error-message.ts';

export type ErrorCode =
  | 'invalid_json' | 'invalid_request' | 'body_too_large' | 'unsupported_media_type' | 'not_found' | 'method_not_allowed'
  | 'model_not_found' | 'missing_credentials' | 'invalid_api_key' | 'invalid_token' | 'policy_denied' | 'approval_required'
  | 'rate_limited' | 'budget_exceeded' | 'guardrail_blocked' | 'upstream_error' | 'upstream_timeout'
  | 'no_healthy_upstream' | 'unavailable' | 'store_unavailable' | 'admin_unauthorized' | 'admin_forbidden' | 'csrf_failed' | 'internal_error'
  | 'renewal_due' | 'reauthorization_required'
  | 'invalid_delegation' | 'delegation_cycle' | 'delegation_depth_exceeded' | 'unknown_agent' | 'push_url_refused';

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error',
  405: 'invalid_request_error', 408: 'timeout_error', 413: 'invalid_request_error', 415: 'invalid_request_error',
  429: 'rate_limit_error', 500: 'api_error', 502: 'api_error', 503: 'api_error', 504: 'timeout_error',
};

export class AamError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly param: string | null;
  readonly headers: Record<string, string>;
  constructor(status: number, code: ErrorCode, message: string, opts: { param?: string; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'AamError';
    this.status = status;
    this.code = code;
    this.param = opts.param ?? null;
    this.headers = opts.headers ?? {};
  }
  get type(): string { return TYPE_BY_STATUS[this.status] ?? 'api_error'; }
}

/**
 * 503: the audit trail did not commit this request's evidence in time, so it is not acknowledged.
 * Its refusal is answered at once, not after waiting on the trail again: that wait (the commit
 * timeout, 2 s in fleet mode) would end the same way, and the refusal's events stay queued anyway.
 * In fleet mode the trail is PostgreSQL, so the code is the contract's `store_unavailable` (a store
 * is down, as with Redis); embedded, its own writer is behind: `unavailable`.
 */
export class EvidenceUnavailable extends AamError {
  constructor(message: string, opts: { cause?: unknown; store?: boolean } = {}) {
    super(503, opts.store ? 'store_unavailable' : 'unavailable', message, { headers: { 'retry-after': '5' } });
    if (opts.cause !== undefined) this.cause = opts.cause;
  }
}

export const badRequest = (message: string, param?: string) => new AamError(400, 'invalid_request', message, { param });

/**
 * An error's headers as sent: a retry-after over a minute (a daily budget's runs to midnight UTC) also
 * says `x-should-retry: false`, which the OpenAI and Anthropic SDKs obey. Without it they slept the
 * whole retry-after (hours, the agent hung) and then sent the request again.
 */
export function errorHeaders(e: AamError): Record<string, string> {
  const retry = Number(e.headers['retry-after']);
  return retry > SDK_RETRY_WAIT_S ? { ...e.headers, 'x-should-retry': 'false' } : e.headers;
}
const SDK_RETRY_WAIT_S = 60;

/** OpenAI wire error body. */
export function openaiErrorBody(e: AamError): string {
  return JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

/** Anthropic wire error body (type names follow Anthropic's error types). */
export function anthropicErrorBody(e: AamError): string {
  const t = e.status === 401 ? 'authentication_error' : e.status === 403 ? 'permission_error' : e.status === 404 ? 'not_found_error'
    : e.status === 429 ? 'rate_limit_error' : e.status === 413 ? 'request_too_large' : e.status >= 500 ? (e.status === 529 ? 'overloaded_error' : 'api_error') : 'invalid_request_error';
  return JSON.stringify({ type: 'error', error: { type: t, message: e.message, code: e.code } });
}

/**
 * JSON-RPC error body for a refusal made before a JSON-RPC handler ran (the MCP routes: identity,
 * body reading): -32700 for a body that is not JSON, else a code by status (-32001 refused, as the
 * MCP plane's policy denials, -32029 limited with retry_after_seconds); aam's code in data.code.
 */
export function jsonRpcErrorBody(e: AamError): string {
  const code = e.code === 'invalid_json' ? -32700 : RPC_BY_STATUS[e.status] ?? (e.status >= 500 ? -32603 : -32600);
  const retry = Number(e.headers['retry-after']);
  const data = Number.isFinite(retry) && retry > 0 ? { code: e.code, retry_after_seconds: retry } : { code: e.code };
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message: e.message, data } });
}
const RPC_BY_STATUS: Record<number, number> = { 401: -32001, 403: -32001, 404: -32602, 429: -32029 };

/** A path segment, percent-decoded; malformed encoding (e.g. a lone "%") is the caller's mistake (400 naming it), not a 500. */
export function pathSegment(raw: string, what: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new AamError(400, 'invalid_request', `malformed percent-encoding in the ${what} "${clip(raw, 200)}"; encode "%" as "%25"`);
  }
}

export function toAamError(err: unknown): AamError {
  if (err instanceof AamError) return err;
  return new AamError(500, 'internal_error', 'internal error; see the gateway log for details');
}
