// The A2A v1 HTTP+JSON (REST) binding as aam serves it beside JSON-RPC: each REST route is read
// as the JSON-RPC method and params it stands for, so both bindings share one decision, guard,
// relay and evidence path (gateway.ts); only the framing of answers and errors differs. The
// callee is always spoken to in JSON-RPC at spec.a2a.url. Pure functions, no I/O.
import { AamError, pathSegment } from '../access/errors.ts';
import { clip } from '../lib/error-message.ts';

export interface RestOp {
  /** The JSON-RPC method this route stands for. */
  method: string;
  /** Params taken from the path and query (the body, if any, is merged by the caller). */
  params: Record<string, unknown>;
  /** Whether a JSON body is expected (required for sends and push config creation). */
  body: 'none' | 'optional' | 'required';
}

type Route = { re: RegExp; verbs: Record<string, (m: string[], q: URLSearchParams) => RestOp> };

const seg = '([^/:]+)';
const ROUTES: Route[] = [
  { re: /^\/message:send$/, verbs: { POST: () => ({ method: 'SendMessage', params: {}, body: 'required' }) } },
  { re: /^\/message:stream$/, verbs: { POST: () => ({ method: 'SendStreamingMessage', params: {}, body: 'required' }) } },
  { re: new RegExp(`^/tasks/${seg}:cancel$`), verbs: { POST: (m) => ({ method: 'CancelTask', params: { id: m[1] }, body: 'optional' }) } },
  {
    re: new RegExp(`^/tasks/${seg}:subscribe$`),
    verbs: { GET: (m) => ({ method: 'SubscribeToTask', params: { id: m[1] }, body: 'none' }), POST: (m) => ({ method: 'SubscribeToTask', params: { id: m[1] }, body: 'none' }) },
  },
  {
    re: new RegExp(`^/tasks/${seg}/pushNotificationConfigs$`),
    verbs: {
      POST: (m) => ({ method: 'CreateTaskPushNotificationConfig', params: { taskId: m[1] }, body: 'required' }),
      GET: (m, q) => ({ method: 'ListTaskPushNotificationConfigs', params: { taskId: m[1], ...page(q) }, body: 'none' }),
    },
  },
  {
    re: new RegExp(`^/tasks/${seg}/pushNotificationConfigs/${seg}$`),
    verbs: {
      GET: (m) => ({ method: 'GetTaskPushNotificationConfig', params: { taskId: m[1], id: m[2] }, body: 'none' }),
      DELETE: (m) => ({ method: 'DeleteTaskPushNotificationConfig', params: { taskId: m[1], id: m[2] }, body: 'none' }),
    },
  },
  { re: new RegExp(`^/tasks/${seg}$`), verbs: { GET: (m, q) => ({ method: 'GetTask', params: { id: m[1], ...historyLength(q) }, body: 'none' }) } },
  { re: /^\/tasks$/, verbs: { GET: () => ({ method: 'ListTasks', params: {}, body: 'none' }) } },
  { re: /^\/extendedAgentCard$/, verbs: { GET: () => ({ method: 'GetExtendedAgentCard', params: {}, body: 'none' }) } },
];

/** One path segment decoded (task and config ids may be percent-encoded). */
function segment(raw: string): string {
  const v = pathSegment(raw, 'A2A path segment');
  if (!v || /[\u0000-\u001f]/.test(v)) throw new AamError(400, 'invalid_request', 'an empty id or control characters in the A2A path');
  return v;
}

function historyLength(q: URLSearchParams): Record<string, unknown> {
  const v = q.get('historyLength');
  if (v === null) return {};
  if (!/^\d{1,9}$/.test(v)) throw new AamError(400, 'invalid_request', `historyLength must be a non-negative integer (got "${clip(v)}")`);
  return { historyLength: Number(v) };
}

function page(q: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const size = q.get('pageSize');
  if (size !== null && /^\d{1,9}$/.test(size)) out.pageSize = Number(size);
  const token = q.get('pageToken');
  if (token) out.pageToken = token;
  return out;
}

/**
 * The operation a REST request under `/a2a/<agent>` stands for: `rest` is the path after the
 * agent (`/message:send`, `/tasks/ID`, optionally behind one `/<tenant>` segment). Unknown
 * paths are 404 and a known path with another verb is 405, each naming what would work.
 */
export function restOp(verb: string, rest: string, query: string): RestOp {
  let path = rest;
  let tenant: string | undefined;
  const t = /^\/([^/:]+)(\/(?:message:|tasks|extendedAgentCard).*)$/.exec(rest);
  if (t && t[1] !== 'tasks' && t[1] !== 'message') { tenant = t[1]; path = t[2]; }
  const q = new URLSearchParams(query);
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (!m) continue;
    const make = r.verbs[verb];
    if (!make) {
      throw new AamError(405, 'method_not_allowed', `${verb} is not allowed on ${clip(rest)}; use ${Object.keys(r.verbs).join(' or ')}`, { headers: { allow: Object.keys(r.verbs).join(', ') } });
    }
    const ids = m.map((g, i) => (i === 0 ? g : segment(g)));
    const op = make(ids, q);
    if (tenant !== undefined) op.params.tenant = segment(tenant);
    return op;
  }
  throw new AamError(404, 'not_found', `no A2A HTTP+JSON route ${clip(rest)}: aam serves /message:send, /message:stream, /tasks/ID, /tasks/ID:cancel, /tasks/ID:subscribe and /tasks/ID/pushNotificationConfigs[/ID] under /a2a/<agent>`);
}

/** A2A's JSON-RPC error codes and what the HTTP+JSON binding says for each (A2A v1, section 5.4). */
const A2A_ERRORS: Record<number, { status: number; reason: string }> = {
  [-32001]: { status: 404, reason: 'TASK_NOT_FOUND' },
  [-32002]: { status: 409, reason: 'TASK_NOT_CANCELABLE' },
  [-32003]: { status: 400, reason: 'PUSH_NOTIFICATION_NOT_SUPPORTED' },
  [-32004]: { status: 400, reason: 'UNSUPPORTED_OPERATION' },
  [-32005]: { status: 415, reason: 'CONTENT_TYPE_NOT_SUPPORTED' },
  [-32006]: { status: 502, reason: 'INVALID_AGENT_RESPONSE' },
  [-32007]: { status: 400, reason: 'EXTENDED_AGENT_CARD_NOT_CONFIGURED' },
  [-32008]: { status: 400, reason: 'EXTENSION_SUPPORT_REQUIRED' },
  [-32009]: { status: 400, reason: 'VERSION_NOT_SUPPORTED' },
  [-32700]: { status: 400, reason: 'PARSE_ERROR' },
  [-32600]: { status: 400, reason: 'INVALID_REQUEST' },
  [-32601]: { status: 404, reason: 'METHOD_NOT_FOUND' },
  [-32602]: { status: 400, reason: 'INVALID_PARAMS' },
};

/** google.rpc.Code names by HTTP status, as the binding's error body carries them. */
const STATUS_NAME: Record<number, string> = {
  400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND', 405: 'UNIMPLEMENTED',
  409: 'FAILED_PRECONDITION', 413: 'INVALID_ARGUMENT', 415: 'INVALID_ARGUMENT', 429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL', 502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED',
};

const ERROR_INFO = 'type.googleapis.com/google.rpc.ErrorInfo';

export interface RestError { status: number; body: { error: { code: number; status: string; message: string; details: unknown[] } } }

function restError(status: number, message: string, reason: string, domain: string, metadata?: Record<string, string>): RestError {
  return {
    status,
    body: { error: { code: status, status: STATUS_NAME[status] ?? (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT'), message, details: [{ '@type': ERROR_INFO, reason, domain, ...(metadata ? { metadata } : {}) }] } },
  };
}

/** A JSON-RPC error's HTTP status, as the HTTP+JSON binding answers it (its evidence's status on either binding). */
export function rpcStatus(code: number): number {
  return A2A_ERRORS[code]?.status ?? 500;
}

/** A JSON-RPC error (the callee's, or A2A's own raised by aam) in HTTP+JSON form. */
export function restFromRpc(code: number, message: string): RestError {
  return restError(rpcStatus(code), message, A2A_ERRORS[code]?.reason ?? 'INTERNAL_ERROR', 'a2a-protocol.org');
}

/** aam's own refusal (policy, identity, limits, guardrails) in HTTP+JSON form; its code in the ErrorInfo. */
export function restFromAam(status: number, code: string, message: string): RestError {
  return restError(status, message, code.toUpperCase(), 'aam', { code });
}
