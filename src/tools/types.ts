// Tool plane dependencies and shared shapes. The gateway never imports policy, identity, credentials
// or audit implementations: the server injects them as one ToolDeps object (long-lived services)
// and, per request, the caller's ToolAccess (decisions, limits, guardrails).
import type { Identity } from '../identity/types.ts';
import type { Decision } from '../policy/types.ts';
import type { CompiledGuardrail } from '../guardrails/engine-core.ts';
import type { ItemKey } from '../access/guard.ts';

/**
 * The caller's access context for one HTTP request (src/access/context.ts, opened when the caller
 * was identified): its identity and policy set, resolved once, drive every decision, listing,
 * limit and guardrail of the tool calls that request carries (a batch, an MCP session's message).
 */
export interface ToolAccess {
  readonly identity: Identity;
  /** The caller's own x-request-id, if sane: kept beside aam's id in evidence (client_request_id), never in its place. */
  readonly clientRequestId: string | undefined;
  /**
   * Per-call decision (policy engine). context carries e.g. {time, request_id, environment}.
   * args null: the arguments were decided when the work was created (tasks/*), so args constraints are not checked again.
   */
  authorize(resource: string, action: string, args: Record<string, unknown> | null, context: Record<string, unknown>): Decision;
  /** Could this caller call (resource, action) for SOME arguments? Used to filter listings. */
  visible(resource: string, action: string): boolean;
  /**
   * Why this caller may not use the credential (credentials.allow of its policies), or null.
   * Checked on every call, whatever the transport, before the upstream sees anything: a stdio
   * server holds its credential from spawn, so injection time is not a check.
   */
  credentialRefusal(credentialName: string): string | null;
  /**
   * Count an allowed call against the rate (tools[].rate) and budget (tools[].budget) of the rule
   * that allowed it, per agent and per key; throws a 429 ToolError when either is spent. Call
   * `forwarded()` once the call goes upstream (it then counts against the budget), else `dropped()`.
   */
  admitCall(decision: Decision): ToolAdmission | Promise<ToolAdmission>;
  /**
   * The refusal of a request a fleet store could not check (an MCP session's owner or cap: Redis
   * down), counted where every plane's such refusal is (aam_limited_total, store_unavailable):
   * 503, JSON-RPC -32603, retry in 1 s. The plane records it as evidence.
   */
  storeRefusal(e: import('../store/types.ts').StoreUnavailable, message: string): ToolError;
  /** Guardrails on tool arguments (input) or results (output): the possibly redacted value, or a block. */
  /** `attached`: guardrails the tool's own resource (McpServer/HttpTool spec.guardrails) adds to the caller's. */
  /** `key`: what stands for a listed item in the verdict cache (access/guard.ts ItemKey): scanned once, recorded for every caller. */
  guard(direction: 'input' | 'output', value: unknown, where: string, requestId: string, attached?: readonly string[], key?: ItemKey): Promise<{ ok: true; value: unknown } | { ok: false; guardrail: string; message: string }>;
  /**
   * A listing as this caller's output guardrails leave it: each item with its server's guardrails
   * (`attached`), the blocked ones withheld (each block recorded), verdicts cached per item (access/guard.ts guardListing).
   */
  guardListing<T>(items: readonly T[], requestId: string, of: (item: T) => { where: string; attached?: readonly string[]; key: ItemKey }): Promise<T[]>;
  /**
   * The guardrails guard() applies with `attached`: one array per config and list of names (a
   * verdict cache key), empty when there are none.
   */
  guardrails(attached?: readonly string[]): readonly CompiledGuardrail[];
  /**
   * This caller's access as of now, for a stream that outlives its request (subscriptions/listen):
   * the identity re-resolved against the running config and key store, with the policies in force
   * now (the same object while nothing changed), or why the caller no longer holds.
   */
  current(): ToolAccess | { gone: string };
  /** The trace of a call (trace_id of its audit events): the one its MCP message carried, else the request's. */
  traceId(carried?: TraceContextIn): string;
  /** Start observing one upstream tool call (just before it is forwarded); `carried`: see traceId. */
  traceCall(call: { server: string; tool: string; resource: string; action: string; method?: string; jsonrpcId?: string | number; sessionId?: string; carried?: TraceContextIn }): ToolCallTrace;
}

/** W3C trace context an MCP message carried in `params._meta` (MCP semconv), if any. */
export interface TraceContextIn { traceparent?: string; tracestate?: string }

/**
 * One tool call as observed: its `execute_tool` span (when tracing is on), the trace context the
 * upstream continues (MCP `params._meta`, HTTP `traceparent` header), and its latency metric.
 */
export interface ToolCallTrace {
  /** W3C trace context for the upstream: this call's span as parent, else the caller's trace. */
  readonly traceContext: { traceparent: string; tracestate?: string };
  /** End the span and observe the latency; `outcome` ok | tool_error (upstream said no) | error (no answer). */
  end(outcome: 'ok' | 'tool_error' | 'error', errorType?: string): void;
}

/** A call admitted against its rule's budget: charged once it is forwarded, given back otherwise. */
export interface ToolAdmission { forwarded(): void; dropped(): void }

export interface ToolDeps {
  /** Outbound auth for a credential name (headers to add; for stdio servers: env vars). Never shown to agents. */
  /** `perCaller`: the value is obtained for this caller (on-behalf-of, per-caller tokens), never to serve another. */
  credentialHeaders(credentialName: string, identity: Identity): Promise<{ headers: Record<string, string>; query?: Record<string, string>; env?: Record<string, string>; credential: { name: string; version: number }; perCaller?: boolean }>;
  /** Audit: fire-and-forget event, and durable write that resolves once stored (for side-effecting calls' intent). */
  audit: {
    record(ev: Record<string, unknown>): void;
    recordDurable(ev: Record<string, unknown>): Promise<unknown>;
    /**
     * An answer is an acknowledgement: await this before one leaves. Resolves once every event
     * recorded so far survives a crash (fleet: committed in PostgreSQL); rejects with a 503
     * ToolError (store_unavailable in fleet mode) when it cannot be. undefined: safe already.
     * amends: the request's last event, of type `amendsType` (a call's tool.outcome, a read's
     * tool.decision): refused, the trail says what the caller got beside it (an evidence_refused
     * event with its link and identity, see evidenceLink), and the rejection is an
     * UnacknowledgedToolError (no second tool.outcome).
     */
    safe(amends?: Record<string, unknown>, amendsType?: string): Promise<void> | undefined;
  };
  log: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void; error(obj: object, msg?: string): void };
  /** Scrub text aam writes to disk (stored tool definitions); what reaches agents is scrubbed by the egress door. */
  scrub(text: string): string;
  /** Redact a secret an upstream split across a result's text parts (an agent joins them). */
  scrubAcross<T>(value: T): T;
  /** Arguments of a held call as the people deciding it may see them (credentials scrubbed, PII redacted). */
  redactForReview?(args: unknown): string;
  /** Open MCP sessions, shared by every replica in fleet mode. */
  sessions: import('../store/types.ts').McpSessionRegistry;
  /** Why a virtual key's secret (generation) no longer authenticates (revoked, expired, rotated), or undefined. */
  keyProblem(keyId: string, generation: string | undefined): string | undefined;
  /** node:sqlite database for approvals and tool-definition digests (create your own tables). */
  db: import('node:sqlite').DatabaseSync;
  /**
   * Key sealing the requestState of relayed MCP multi round-trip requests (tools/mcp-mrtr.ts);
   * derived from the master key, so a retry may land on any replica of a fleet.
   */
  stateKey: Buffer;
  /** A JSON-RPC request body, at most `max` bytes, read and parsed without holding the event loop. */
  readJson(req: import('node:http').IncomingMessage, max: number): Promise<JsonBody>;
  /** The server's one list of open long-lived streams (every plane's): a shutdown's drain ends them all at once. */
  streams: import('../lib/open-streams.ts').OpenStreams;
}

/** A JSON-RPC body as read: its value, or the HTTP status and JSON-RPC error to answer with. */
export type JsonBody = { ok: true; value: unknown } | { ok: false; status: number; code: number; message: string };

/** A tool definition as an upstream MCP server lists it (the fields aam relies on). */
export interface UpstreamTool {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  outputSchema?: Record<string, unknown>;
  title?: string;
  annotations?: Record<string, unknown>;
  _meta?: Record<string, unknown>;
}

/** The identity aam uses for its own upstream traffic (tool listing, spawning stdio servers). */
export const GATEWAY_IDENTITY: Identity = Object.freeze({
  agent: Object.freeze({ name: 'aam-gateway', spiffeId: 'spiffe://aam.local/gateway', trustDomain: 'aam.local', labels: Object.freeze({}) }),
  method: 'jwt_svid',
}) as Identity;

/** Flat identity fields for audit events (never secrets). */
export function identityFields(identity: Identity): Record<string, unknown> {
  const a = identity.agent;
  return {
    spiffe_id: a.spiffeId, agent: a.name, owner: a.owner, team: a.team, environment: a.environment,
    deployment: a.deployment, auth_method: identity.method, key_id: identity.keyId,
  };
}

/** The members of a tool-plane event that link an evidence_refused event to its call: the request, the trace, who, and which tool. */
const LINK = ['plane', 'request_id', 'client_request_id', 'trace_id', 'jsonrpc_id', 'session_id', 'spiffe_id', 'agent', 'owner', 'team', 'environment', 'deployment', 'auth_method', 'key_id', 'server', 'tool', 'resource', 'action'] as const;

/** See LINK: an event's link members, present ones only. */
export function evidenceLink(ev: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of LINK) if (ev[k] !== undefined) out[k] = ev[k];
  return out;
}

/** A user-visible tool-plane error with a JSON-RPC code and an HTTP status for the /tools proxy. */
export class ToolError extends Error {
  readonly code: number;
  readonly status: number;
  readonly errorCode: string;
  readonly data?: Record<string, unknown>;
  constructor(errorCode: string, message: string, opts: { code?: number; status?: number; data?: Record<string, unknown> } = {}) {
    super(message);
    this.name = 'ToolError';
    this.errorCode = errorCode;
    this.code = opts.code ?? -32603;
    this.status = opts.status ?? 500;
    this.data = opts.data;
  }
}

/** A call refused (503) after its outcome was written because its evidence was not durable: the trail says so already (evidence_refused). */
export class UnacknowledgedToolError extends ToolError {}

/** JSON-RPC codes: denials (and held approvals) use -32001 as the Contract says; upstream trouble -32603. */
/** `limited` (rate limits, session caps) is in the implementation-defined server error range; data.retry_after_seconds says when to retry. */
export const RPC = { denied: -32001, invalidParams: -32602, upstream: -32603, notFound: -32602, limited: -32029 } as const;
