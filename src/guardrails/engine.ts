// Guardrail engine entry point: compile at config load, apply on the request path.
// Text scanning lives in engine-core.ts, chat/JSON walking in structured.ts, streams in stream.ts.
export { applyGuardrails, blockedMessage, compileGuardrail, MARKERS } from './engine-core.ts';
export type { CompiledGuardrail, TextVerdict, WebhookSpec } from './engine-core.ts';
export { applyToChat, applyToJson, leafTexts, mapLeaves, replaceLeaves } from './structured.ts';
export type { StructuredVerdict } from './structured.ts';
export type { Category, Direction, Finding, FindingSummary, Verdict } from './types.ts';
export { createStreamGuard } from './stream.ts';
export type { StreamGuard, StreamGuardOptions, StreamPush } from './stream.ts';
export { createEventGuard } from './stream-events.ts';
export type { EventGuard, EventGuardResult } from './stream-events.ts';
export { callWebhookGuardrail, runWebhookGuardrails } from './webhook.ts';
export type { WebhookConfig, WebhookPayload, WebhookRun, WebhookVerdict } from './webhook.ts';
