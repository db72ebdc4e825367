// Span names and attributes per the OpenTelemetry GenAI and MCP semantic conventions
// (open-telemetry/semantic-conventions-genai: gen-ai-spans.md, mcp.md; Development status).
// Attributes the conventions do not define (route, policy, cost) use the aam.* namespace.
import type { Attributes } from './otlp-encode.ts';
import type { Span } from './tracing.ts';

/** aam Provider.type -> the well-known gen_ai.provider.name value (others pass through). */
const PROVIDER_NAMES: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  gemini: 'gcp.gemini',
  'azure-openai': 'azure.ai.openai',
};

export function genAiProviderName(providerType: string): string {
  return PROVIDER_NAMES[providerType] ?? providerType;
}

export type ModelOperation = 'chat' | 'embeddings';

export interface ModelSpanInput {
  operation: ModelOperation;
  /** aam Provider.type (openai, anthropic, gemini, azure-openai, openai-compatible) or a semconv name. */
  provider?: string;
  /** The Model route the caller asked for (aam.route). */
  route?: string;
  requestModel?: string;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
  /** The agent's SPIFFE ID. */
  agentId?: string;
  agentName?: string;
  finishReason?: string | readonly string[];
  responseId?: string;
  /** Upstream host and port (server.address / server.port). */
  serverAddress?: string;
  serverPort?: number;
  streaming?: boolean;
  costUsd?: number | null;
  /** Low-cardinality error class when the call failed (error.type), e.g. '429', 'timeout'. */
  errorType?: string;
}

/** `chat {model}` / `embeddings {model}`; the operation alone when the model is unknown. */
export function modelSpanName(operation: ModelOperation, model?: string): string {
  return model ? `${operation} ${model}` : operation;
}

export function modelSpanAttributes(m: ModelSpanInput): Attributes {
  const provider = m.provider ? genAiProviderName(m.provider) : undefined;
  return {
    'gen_ai.operation.name': m.operation,
    'gen_ai.provider.name': provider,
    // Deprecated by gen_ai.provider.name but still what many backends read.
    'gen_ai.system': provider,
    'gen_ai.request.model': m.requestModel,
    'gen_ai.response.model': m.responseModel,
    'gen_ai.response.id': m.responseId,
    'gen_ai.usage.input_tokens': m.inputTokens,
    'gen_ai.usage.output_tokens': m.outputTokens,
    'gen_ai.response.finish_reasons': m.finishReason === undefined ? undefined : typeof m.finishReason === 'string' ? [m.finishReason] : m.finishReason,
    'gen_ai.agent.id': m.agentId,
    'gen_ai.agent.name': m.agentName,
    'server.address': m.serverAddress,
    'server.port': m.serverPort,
    'error.type': m.errorType,
    'aam.route': m.route,
    'aam.stream': m.streaming,
    'aam.cost_usd': m.costUsd ?? undefined,
  };
}

export interface ToolSpanInput {
  /** Tool name as the upstream knows it (gen_ai.tool.name). */
  tool?: string;
  /** McpServer or HttpTool resource name (aam.tool.server). */
  server?: string;
  /** MCP method (tools/call, tools/list, resources/read, ...); absent for HTTP tools. */
  method?: string;
  /** Policy resource and action (aam.tool.resource / aam.tool.action). */
  resource?: string;
  action?: string;
  agentId?: string;
  agentName?: string;
  mcpSessionId?: string;
  jsonrpcRequestId?: string | number;
  errorType?: string;
  /** The policy decision for this call (aam.policy.name / aam.policy.decision). */
  policy?: string;
  decision?: string;
}

/** `execute_tool {tool}` for tool calls (GenAI), `{method} {target}` for other MCP methods (MCP semconv). */
export function toolSpanName(t: { method?: string; tool?: string }): string {
  if (!t.method || t.method === 'tools/call') return t.tool ? `execute_tool ${t.tool}` : 'execute_tool';
  return t.tool ? `${t.method} ${t.tool}` : t.method;
}

export function toolSpanAttributes(t: ToolSpanInput): Attributes {
  const isCall = !t.method || t.method === 'tools/call';
  return {
    // The MCP conventions: set gen_ai.operation.name only when the operation is a tool call.
    'gen_ai.operation.name': isCall ? 'execute_tool' : undefined,
    'gen_ai.tool.name': t.tool,
    // Executed by the gateway against an external API on the agent's behalf.
    'gen_ai.tool.type': isCall ? 'extension' : undefined,
    'mcp.method.name': t.method,
    'mcp.session.id': t.mcpSessionId,
    'jsonrpc.request.id': t.jsonrpcRequestId === undefined ? undefined : String(t.jsonrpcRequestId),
    'gen_ai.agent.id': t.agentId,
    'gen_ai.agent.name': t.agentName,
    'error.type': t.errorType,
    // No convention names the MCP server a gateway routes to; server.address carries the host.
    'aam.tool.server': t.server,
    'aam.tool.resource': t.resource,
    'aam.tool.action': t.action,
    'aam.policy.name': t.policy,
    'aam.policy.decision': t.decision,
  };
}

/** `invoke_agent {agent}`: an A2A call aam makes to a callee for its caller (GenAI agent spans). */
export function agentCallSpanName(agent: string): string {
  return `invoke_agent ${agent}`;
}

/** The invoked agent is gen_ai.agent.* here (GenAI's invoke_agent); the caller is aam.a2a.caller. */
export function agentCallSpanAttributes(c: { agent: string; skill?: string; method: string; caller: string }): Attributes {
  return {
    'gen_ai.operation.name': 'invoke_agent',
    'gen_ai.agent.name': c.agent,
    'aam.a2a.skill': c.skill,
    'aam.a2a.method': c.method,
    'aam.a2a.caller': c.caller,
  };
}

export interface DecisionSpanInput {
  policy?: string;
  /** 'allow' | 'deny' (or the decision effect string). */
  decision: string;
  rule?: number | string;
  reason?: string;
  /** Config version the decision was made under. */
  configVersion?: string;
}

/** aam.policy.* attributes for the span that carries a policy decision. */
export function decisionSpanAttributes(d: DecisionSpanInput): Attributes {
  return {
    'aam.policy.name': d.policy,
    'aam.policy.decision': d.decision,
    'aam.policy.rule': d.rule === undefined ? undefined : String(d.rule),
    'aam.policy.reason': d.reason,
    'aam.config.version': d.configVersion,
  };
}

/**
 * What a decided request targets, for the request's SERVER span: its name is the route template
 * (`POST /a2a/*`, `POST /mcp/*`; HTTP conventions keep names low-cardinality), so the callee, MCP
 * server or tool resource is said here. The CLIENT span under it (invoke_agent, execute_tool) names it too.
 */
export function targetSpanAttributes(req: { kind: string; callee?: string; skill?: string; resource?: string; action?: string; context?: Readonly<Record<string, unknown>> }): Attributes | null {
  if (req.kind === 'agent') return { 'aam.a2a.callee': req.callee, 'aam.a2a.skill': req.skill || undefined };
  if (req.kind !== 'tool') return null;
  const server = req.context?.server;
  return { 'aam.tool.server': typeof server === 'string' ? server : undefined, 'aam.tool.resource': req.resource, 'aam.tool.action': req.action };
}

/**
 * MCP carries trace context per message in `params._meta` (unprefixed `traceparent`,
 * `tracestate`; MCP semconv "Context propagation"). The incoming one, if any:
 */
export function mcpTraceparent(params: unknown): { traceparent?: string; tracestate?: string } {
  const meta = params && typeof params === 'object' ? (params as { _meta?: unknown })._meta : undefined;
  if (!meta || typeof meta !== 'object') return {};
  const m = meta as Record<string, unknown>;
  return {
    traceparent: typeof m.traceparent === 'string' ? m.traceparent : undefined,
    tracestate: typeof m.tracestate === 'string' ? m.tracestate : undefined,
  };
}

/** A copy of JSON-RPC params whose `_meta` names `span` as the parent (other _meta keys kept). */
export function withMcpTraceContext<T extends object>(params: T | undefined, span: Span | null | undefined): T | Record<string, unknown> {
  if (!span) return params ?? {};
  const base = (params ?? {}) as Record<string, unknown>;
  const prev = base._meta && typeof base._meta === 'object' ? (base._meta as Record<string, unknown>) : {};
  const meta: Record<string, unknown> = { ...prev, traceparent: span.traceparent() };
  if (span.context.traceState) meta.tracestate = span.context.traceState;
  else delete meta.tracestate;
  return { ...base, _meta: meta };
}
