// Guardrail engine entry point: compile at config load, apply on the request path.
// Text scanning lives in engine-core.ts, chat/JSON walking in structured.ts, streams in stream.ts.
export { applyGuardrails, compileGuardrail, MARKERS } from './engine-core.ts';
export type { CompiledGuardrail, TextVerdict, WebhookSpec } from './engine-core.ts';
export { applyToChatMessages, applyToJson } from './structured.ts';
export type { StructuredVerdict } from './structured.ts';
export type { Category, Direction, Finding, FindingSummary, Verdict } from './types.ts';
