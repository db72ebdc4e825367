// HTTP action proxy: `/tools/<tool>/<action>` with a JSON body of path params and arguments.
// resolve -> bind params -> decide -> approval -> intent -> inject credential -> call -> record.
// Only configured actions exist; path params cannot escape their segment; the agent's own
// Authorization header never leaves aam.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { request } from '../lib/http-client.ts';
import { isObj } from '../lib/json.ts';
import type { ConfigSet, HttpToolSpec } from '../config/schema.ts';
import { argsDigest, checkHeld, heldCall, type Approvals } from './approvals.ts';
import { createApprovals } from '../store/approvals.ts';
import { compilePathTemplate, PathParamError, type PathTemplate } from './path-template.ts';
import { decisionFields, denialMessage, intentUnrecorded } from './util.ts';
import { identityFields, ToolError, UnacknowledgedToolError, type ToolAccess, type ToolAdmission, type ToolDeps } from './types.ts';
import { errMsg } from '../lib/error-message.ts';

export interface HttpToolProxyOptions {
  /** Share the MCP gateway's approvals so one admin list covers both planes. */
  approvals?: Approvals;
  approvalWindowMs?: number;
  /** Largest upstream response body passed back (default 10 MiB). */
  maxResponseBytes?: number;
  defaultTimeoutMs?: number;
}

export interface HttpToolProxy {
  /** One call, with the caller's access context for this request. */
  handle(req: IncomingMessage, res: ServerResponse, access: ToolAccess, tool: string, action: string, body: unknown): Promise<void>;
  reload(config: ConfigSet): void;
  approvals: Approvals;
}

interface CompiledAction {
  name: string;
  method: string;
  template: PathTemplate;
  mutating: boolean;
}

interface CompiledTool {
  name: string;
  spec: HttpToolSpec;
  base: URL;
  actions: Map<string, CompiledAction>;
}

// Hop-by-hop headers (RFC 9110 7.6.1) plus ones aam sets itself.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length']);

function compile(config: ConfigSet): Map<string, CompiledTool> {
  const out = new Map<string, CompiledTool>();
  for (const [name, r] of config.httpTools) {
    const actions = new Map<string, CompiledAction>();
    for (const [a, spec] of Object.entries(r.spec.actions)) {
      actions.set(a, { name: a, method: spec.method, template: compilePathTemplate(spec.path), mutating: spec.mutating ?? spec.method !== 'GET' });
    }
    out.set(name, { name, spec: r.spec, base: new URL(r.spec.baseUrl), actions });
  }
  return out;
}

class HttpToolError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string;
  readonly extra?: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(status: number, type: string, code: string, message: string, extra?: Record<string, unknown>, headers: Record<string, string> = {}) {
    super(message);
    this.status = status; this.type = type; this.code = code; this.extra = extra; this.headers = headers;
  }
}

function sendError(res: ServerResponse, e: HttpToolError, requestId: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(e.status, { 'content-type': 'application/json', 'x-aam-request-id': requestId, ...e.headers });
  res.end(JSON.stringify({ error: { message: e.message, type: e.type, code: e.code, ...e.extra } }));
}

const TEXTUAL = /json|text|xml|javascript|x-www-form-urlencoded/i;

/**
 * An upstream body as the agent may see it: decoded (aam asks for identity encoding; a compressed
 * answer anyway is inflated here, bounded, so guardrails and the egress scrubber read real bytes),
 * then output guardrails over every leaf of JSON or text bodies. Binary bodies are not text to a
 * detector; the egress door still scrubs their bytes.
 */
async function guardedBody(access: ToolAccess, raw: Buffer, headers: Record<string, unknown>, max: number, where: string, requestId: string, attached: readonly string[] | undefined): Promise<Buffer> {
  const body = decoded(raw, String(headers['content-encoding'] ?? 'identity').toLowerCase(), max, where);
  const text = textOf(body, String(headers['content-type'] ?? 'application/json'));
  if (text === null) return body;
  let value: unknown = text;
  let json = false;
  try { value = JSON.parse(text); json = true; } catch { /* a text body: one leaf */ }
  const g = await access.guard('output', value, where, requestId, attached);
  if (!g.ok) throw new HttpToolError(400, 'invalid_request_error', 'guardrail_blocked', g.message, { param: g.guardrail });
  if (g.value === value) return body;
  return Buffer.from(json ? JSON.stringify(g.value) : String(g.value), 'utf8');
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The body as text a detector reads, or null for binary. The label alone does not decide: a type
 * TEXTUAL does not list (application/yaml, text mislabelled application/octet-stream) is text the
 * agent reads all the same when its bytes are UTF-8 without NUL (images and archives are not).
 */
function textOf(body: Buffer, contentType: string): string | null {
  if (TEXTUAL.test(contentType)) return body.toString('utf8');
  if (body.includes(0)) return null;
  try { return UTF8.decode(body); } catch { return null; }
}

function decoded(raw: Buffer, encoding: string, max: number, where: string): Buffer {
  const opts = { maxOutputLength: max };
  try {
    if (encoding === 'identity' || encoding === '') return raw;
    if (encoding === 'gzip' || encoding === 'x-gzip') return gunzipSync(raw, opts);
    if (encoding === 'deflate') return inflateSync(raw, opts);
    if (encoding === 'br') return brotliDecompressSync(raw, opts);
  } catch (e) {
    throw new HttpToolError(502, 'upstream_error', 'upstream_error', `${where}: the upstream's ${encoding} body could not be decoded within ${max} bytes (${errMsg(e)})`);
  }
  throw new HttpToolError(502, 'upstream_error', 'upstream_error', `${where}: the upstream answered with content-encoding "${encoding}", which aam cannot inspect; it was not passed on`);
}

/** Join base URL and rendered path; refuse anything that leaves the base (defence in depth). */
export function joinUrl(base: URL, path: string, query: URLSearchParams): URL {
  const basePath = base.pathname.replace(/\/+$/, '');
  const u = new URL(base.origin);
  const [p, q] = path.split('?', 2);
  u.pathname = basePath + p;
  if (q) for (const [k, v] of new URLSearchParams(q)) u.searchParams.append(k, v);
  for (const [k, v] of query) u.searchParams.append(k, v);
  if (u.origin !== base.origin || !u.pathname.startsWith(basePath + '/') && u.pathname !== basePath) {
    throw new HttpToolError(400, 'invalid_request_error', 'invalid_path', 'the request would leave the configured baseUrl');
  }
  return u;
}

function toQuery(args: Record<string, unknown>): URLSearchParams {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(args)) {
    const vals = Array.isArray(v) ? v : [v];
    for (const x of vals) {
      if (x === undefined || x === null) continue;
      if (typeof x === 'object') throw new HttpToolError(400, 'invalid_request_error', 'invalid_argument', `argument "${k}" must be a string, number or boolean (or a list of them) for a GET/DELETE action`);
      q.append(k, String(x));
    }
  }
  return q;
}

export function createHttpToolProxy(config: ConfigSet, deps: ToolDeps, opts: HttpToolProxyOptions = {}): HttpToolProxy {
  let tools = compile(config);
  const approvals = opts.approvals ?? createApprovals(deps.db, { windowMs: opts.approvalWindowMs });
  const maxBytes = opts.maxResponseBytes ?? 10 * 1024 * 1024;

  async function handle(req: IncomingMessage, res: ServerResponse, access: ToolAccess, toolName: string, actionName: string, body: unknown): Promise<void> {
    const identity = access.identity;
    const incoming = req.headers['x-request-id'];
    const requestId = typeof incoming === 'string' && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : `req_${randomUUID()}`;
    const audit: Record<string, unknown> = { type: 'tool.call', plane: 'http', request_id: requestId, client_request_id: access.clientRequestId, trace_id: access.traceId(), ...identityFields(identity), tool: toolName, action: actionName };
    let adm: ToolAdmission | undefined;
    try {
      // resolve
      const tool = tools.get(toolName);
      if (!tool) throw new HttpToolError(404, 'not_found_error', 'unknown_tool', `unknown HTTP tool "${toolName}"`);
      const action = tool.actions.get(actionName);
      if (!action) throw new HttpToolError(404, 'not_found_error', 'unknown_action', `unknown action "${actionName}" for HTTP tool "${toolName}" (actions: ${[...tool.actions.keys()].join(', ')})`);
      // guard (input): a blocked argument never leaves aam; a redacted one is forwarded redacted
      const gi = await access.guard('input', body ?? {}, `http tool ${toolName}/${actionName}`, requestId, tool.spec.guardrails);
      if (!gi.ok) throw new HttpToolError(400, 'invalid_request_error', 'guardrail_blocked', gi.message, { param: gi.guardrail });
      const args = gi.value as Record<string, unknown>;
      Object.assign(audit, { resource: tool.spec.resource, args_digest: argsDigest(args), mutating: action.mutating });
      // decide, before the input is validated: probing a forbidden action learns nothing about it
      const isObject = isObj(args);
      const d = access.authorize(tool.spec.resource, actionName, isObject ? args : {}, { time: new Date().toISOString(), request_id: requestId, environment: identity.agent.environment, plane: 'http', tool: toolName });
      deps.audit.record({ ...audit, type: 'tool.decision', decision: decisionFields(d) });
      if (d.effect === 'deny' || (!d.allowed && d.effect !== 'approval_required')) {
        throw new HttpToolError(403, 'permission_error', 'policy_denied', denialMessage(d, `${toolName}/${actionName} (resource ${tool.spec.resource})`), { policy: d.policy, rule: d.rule });
      }
      const refused = tool.spec.credential ? access.credentialRefusal(tool.spec.credential) : null;
      if (refused) {
        deps.audit.record({ ...audit, type: 'tool.rejected', outcome: { status: 'credential_denied', error: refused } });
        throw new HttpToolError(403, 'permission_error', 'policy_denied', refused);
      }
      adm = await access.admitCall(d);
      // validate: body shape, then bind params
      if (!isObject) throw new HttpToolError(400, 'invalid_request_error', 'invalid_body', 'request body must be a JSON object of path parameters and arguments');
      let path: string;
      try { path = action.template.render(args); } catch (e) {
        if (e instanceof PathParamError) throw new HttpToolError(400, 'invalid_request_error', 'invalid_path_parameter', e.message, { param: e.param });
        throw e;
      }
      const rest: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(args)) if (!action.template.params.includes(k)) rest[k] = v;
      const hasBody = action.method !== 'GET' && action.method !== 'DELETE';
      const url = joinUrl(tool.base, path, hasBody ? new URLSearchParams() : toQuery(rest));
      // approval
      if (d.effect === 'approval_required') {
        const a = await checkHeld(approvals, heldCall(identity, { plane: 'http', target: `${toolName}/${actionName}`, resource: tool.spec.resource, action: actionName }, audit.args_digest as string, d, deps.redactForReview?.(args)));
        if (a.status === 'pending') {
          throw new HttpToolError(403, 'permission_error', 'approval_required', `approval required: approval id ${a.approval.id} (policy "${d.policy}" rule tools[${d.rule}]); retry the same call after an admin approves it, before ${a.approval.expiresAt}`, { approval_id: a.approval.id });
        }
        audit.approval_id = a.approval.id;
      }
      // intent
      if (action.mutating) {
        try { await deps.audit.recordDurable({ ...audit, type: 'tool.intent', decision: decisionFields(d) }); } catch (e) {
          throw fromToolError(intentUnrecorded(`${toolName}/${actionName}`, e));
        }
      }
      // inject credential -> call
      const headers: Record<string, string> = { accept: typeof req.headers.accept === 'string' ? req.headers.accept : 'application/json', 'accept-encoding': 'identity', 'x-aam-request-id': requestId, 'x-aam-agent': identity.agent.spiffeId };
      let credential: { name: string; version: number } | undefined;
      if (tool.spec.credential) {
        const c = await deps.credentialHeaders(tool.spec.credential, identity);
        Object.assign(headers, c.headers);
        for (const [k, v] of Object.entries(c.query ?? {})) url.searchParams.set(k, v);
        credential = c.credential;
      }
      let payload: string | undefined;
      if (hasBody) { payload = JSON.stringify(rest); headers['content-type'] = 'application/json'; }
      const timeout = tool.spec.timeout_ms ?? opts.defaultTimeoutMs ?? 30_000;
      const started = performance.now();
      adm.forwarded();
      // The upstream continues this call's trace (execute_tool span, or the caller's trace).
      const trace = access.traceCall({ server: toolName, tool: `${toolName}/${actionName}`, resource: tool.spec.resource, action: actionName });
      Object.assign(headers, trace.traceContext);
      let up;
      try {
        up = await request(url, { method: action.method as 'GET', headers, body: payload, headersTimeout: timeout, bodyTimeout: timeout });
      } catch (e) {
        trace.end('error', 'upstream_unreachable');
        throw upstreamFailure(toolName, e, timeout);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      try {
        for await (const chunk of up.body) {
          size += (chunk as Buffer).length;
          if (size > maxBytes) { up.body.destroy(); throw new HttpToolError(502, 'upstream_error', 'result_too_large', `HTTP tool "${toolName}" returned more than ${maxBytes} bytes; ask for less data`); }
          chunks.push(chunk as Buffer);
        }
      } catch (e) {
        trace.end('error', e instanceof HttpToolError ? e.code : 'upstream_body');
        throw e instanceof HttpToolError ? e : upstreamFailure(toolName, e, timeout);
      }
      trace.end(up.statusCode >= 400 ? 'tool_error' : 'ok', up.statusCode >= 400 ? String(up.statusCode) : undefined);
      // record -> respond
      deps.audit.record({ ...audit, type: 'tool.outcome', credential, outcome: { status: up.statusCode, bytes: size, latency_ms: performance.now() - started } });
      const out: Record<string, string | string[]> = { 'x-aam-request-id': requestId };
      const connectionListed = new Set(String(up.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()));
      for (const [k, v] of Object.entries(up.headers)) {
        // x-request-id: the agent's is aam's own id (set by the route), never the upstream's.
        if (v === undefined || HOP_BY_HOP.has(k) || connectionListed.has(k) || k === 'set-cookie' || k === 'x-request-id') continue;
        out[k] = Array.isArray(v) ? v : String(v);
      }
      const answer = await guardedBody(access, Buffer.concat(chunks), up.headers, maxBytes, `http tool ${toolName}/${actionName}`, requestId, tool.spec.guardrails);
      delete out['content-length'];
      delete out['content-encoding'];
      // The answer acknowledges the call: only once its evidence is crash-safe (fleet: committed in PostgreSQL).
      await deps.audit.safe(audit);
      // The egress door (res) scrubs headers and body of every credential before they leave.
      res.writeHead(up.statusCode, out);
      res.end(answer);
    } catch (e) {
      adm?.dropped(); // a call never forwarded gives its budget back (after forwarded(): no-op)
      const err = e instanceof HttpToolError ? e
        : e instanceof ToolError ? fromToolError(e)
          : new HttpToolError(500, 'api_error', 'internal_error', `internal error in the HTTP tool proxy: ${errMsg(e)}`);
      // A refusal for evidence not durable after the outcome was written is in the trail already (evidence_refused).
      if (err.code !== 'policy_denied' && err.code !== 'approval_required' && !(e instanceof UnacknowledgedToolError)) deps.audit.record({ ...audit, type: 'tool.outcome', outcome: { status: err.status, error: err.message } });
      if (err.status >= 500) deps.log.warn({ request_id: requestId, tool: toolName, action: actionName, err: err.message }, 'http tool call failed');
      sendError(res, err, requestId);
    }
  }

  return { handle, reload(next) { tools = compile(next); }, approvals };
}

/** A ToolError from the shared deps (credential, rate limit) in this proxy's error shape; a 429 says when to retry. */
function fromToolError(e: ToolError): HttpToolError {
  const retry = e.data?.retry_after_seconds;
  const type = e.status === 403 ? 'permission_error' : e.status === 429 ? 'rate_limit_error' : 'api_error';
  return new HttpToolError(e.status, type, e.errorCode, e.message, undefined, typeof retry === 'number' ? { 'retry-after': String(retry) } : {});
}

function upstreamFailure(tool: string, e: unknown, timeout: number): HttpToolError {
  const code = (e as { code?: unknown }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new HttpToolError(504, 'upstream_error', 'upstream_timeout', `HTTP tool "${tool}" did not answer within ${timeout} ms (raise spec.timeout_ms if it is slow)`);
  }
  return new HttpToolError(502, 'upstream_error', 'upstream_unavailable', `HTTP tool "${tool}" is unreachable: ${errMsg(e)}`);
}
