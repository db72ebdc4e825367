// Public surface of the evidence plane (what the server, tool plane and CLI use).
export { openAuditLog, AuditUnavailableError } from './log.ts';
export type { AuditLog, AuditLogOptions, AuditAlert, AuditStats, AuditFailMode, DurableReceipt } from './log.ts';
export type { AuditEvent, AuditEventInput, AuditEventType, AuditIdentity, AuditPolicy, AuditCredential, AuditModel, AuditTool, AuditAdmin, AuditOutcome } from './event.ts';
export { argsDigest, canonicalJson } from './canonical.ts';
export { verifyDatabase, verifyExport } from './verify.ts';
export type { VerifyResult, VerifyError, TamperKind } from './verify.ts';
export { exportJsonl } from './export.ts';
export { toOcsf } from './ocsf.ts';
export { queryEvents, showRequest, describeEvent } from './query.ts';
export type { AuditQuery } from './query.ts';
export { applyRetention } from './retention.ts';
export { startSinks } from './sinks.ts';
export type { AuditSink, SinkRunner, SinkRunnerOptions, SinkStatus } from './sinks.ts';
export { fileSink } from './sink-file.ts';
export { webhookSink, otlpLogsSink, signWebhookBody } from './sink-http.ts';
export { selectForRecord, DEFAULT_RECORD } from './select.ts';
export { auditCommands } from './cli.ts';
