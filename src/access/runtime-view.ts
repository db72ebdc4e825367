// What the access path needs of the runtime and of a config snapshot. src/runtime.ts (the
// composition root, above every plane) has all of it; each plane names what it needs beyond this
// in a view of its own (gateway/plane.ts and the like), so nothing below the server names the root.
import type { ConfigSet } from '../config/schema.ts';
import type { CompiledPolicies } from '../policy/compile.ts';
import type { Limiter, KeyBook } from '../store/types.ts';
import type { LiveCalls } from '../store/live-calls.ts';
import type { AgentRegistry } from '../identity/registry.ts';
import type { JwtVerifier, VerifiedSvid } from '../identity/jwt-svid.ts';
import type { Mtls } from '../identity/x509-svid.ts';
import type { IdentitySeen } from '../identity/seen.ts';
import type { CompiledGuardrail } from '../guardrails/engine.ts';
import type { ScanThread } from '../guardrails/offload.ts';
import type { Vault } from '../credentials/vault.ts';
import type { Logger } from '../observability/log.ts';
import type { MetricsSink } from '../observability/metrics.ts';
import type { IdPool } from '../observability/otlp-context.ts';
import type { Tracer } from '../observability/tracing.ts';
import type { ScrubSource } from './egress.ts';
import type { EventScrubber } from './scrub-events.ts';
import type { OpenStreams } from '../lib/open-streams.ts';
import type { EvidenceUnavailable } from './errors.ts';

/** Evidence sink (the audit log); optional so tools like `aam validate` need none. */
export interface AuditSink {
  /** Queue an event; false means the audit queue is full and the caller must refuse the request. */
  record(ev: Record<string, unknown>): boolean | void;
  recordDurable?(ev: Record<string, unknown>): Promise<unknown>;
  /** Resolves when every recorded event is in its crash-safe segment file (await before acknowledging). */
  journaled?(now?: boolean): Promise<void>;
  /** journaled() that returns undefined instead of a promise when the events are already safe. */
  journaledNow?(now?: boolean): Promise<void> | undefined;
  /**
   * Start writing what is recorded now instead of at the end of this loop turn (a request alone in
   * flight: nothing else would share the write), without waiting for it. Only a head start:
   * journaled() still says when the events are safe, and covers any recorded after this call.
   * Returns, when a write started, a promise of the moment its bytes are on the socket (a client
   * may write later than the call: postgres.js does): work done after it overlaps the round trip.
   */
  send?(): Promise<void> | undefined;
  /** An agent's request arrived: get ready to record (the audit writer thread starts, not awaited). */
  warm?(): void;
}

/** Memo of resolved guardrail lists, per config snapshot. */
export interface GuardrailLists {
  /** (policy names, route names) -> their union. */
  merged: WeakMap<readonly string[], WeakMap<readonly string[], readonly string[]>>;
  /** names -> compiled guardrails. */
  byNames: WeakMap<readonly string[], readonly CompiledGuardrail[]>;
}

/** The parts of a compiled config (runtime.ts `Compiled`) the access path reads. */
export interface AccessConfig {
  set: ConfigSet;
  /** Short config digest stamped on decisions, usage and audit. */
  version: string;
  policies: CompiledPolicies;
  registry: AgentRegistry;
  guardrails: Map<string, CompiledGuardrail>;
  /**
   * Per-config memo of the guardrail lists requests resolve (policy names, route names -> compiled
   * guardrails): built on first use, dropped with this config on reload, so a request allocates nothing.
   */
  guardrailLists: GuardrailLists;
}

/** The parts of the runtime (runtime.ts `Runtime`) the access path uses. */
export interface AccessRuntime {
  readonly compiled: AccessConfig;
  readonly options: { readonly maxBodyBytes: number; readonly sseKeepaliveMs: number; readonly publicUrl: string | null; readonly adminToken: string | null };
  readonly log: Logger;
  readonly metrics: MetricsSink | null;
  readonly audit: AuditSink | null;
  readonly vault: Vault;
  readonly limiter: Limiter;
  readonly keyBook: KeyBook;
  readonly identitySeen: IdentitySeen;
  /** A2A calls in flight (delegation.ts): a delegation is honoured only while its call runs. */
  readonly liveCalls: LiveCalls;
  readonly scanThread: ScanThread;
  readonly jwt: JwtVerifier | null;
  readonly tls: Mtls | null;
  readonly ids: IdPool;
  /** OpenTelemetry tracer; null (zero cost) unless OTEL_EXPORTER_OTLP_ENDPOINT is set. */
  readonly tracer: Tracer | null;
  /** What the egress door of every response scrubs with (see egress.ts). */
  readonly egress: ScrubSource;
  /** The server's one list of open long-lived streams (every plane's): a shutdown's drain ends them all at once. */
  readonly streams: OpenStreams;
  /** Request id sequence (requestIdFor increments it). */
  requestSeq: number;
  scrub(text: string, max?: number): string;
  isTokenRevoked(v: VerifiedSvid): boolean;
  auditHasRoom(): boolean;
  /** The refusal of a request whose evidence cannot be recorded now (its code says which store: see EvidenceUnavailable). */
  evidenceRefusal(message: string): EvidenceUnavailable;
  /** Before acknowledging a request: its evidence must survive a crash of this process. */
  evidenceSafe(): Promise<void>;
  /** evidenceSafe() without a promise when the evidence is already safe (written at once): undefined then. */
  evidenceSafeNow(): Promise<void> | undefined;
  /**
   * evidenceSafeNow() and what follows it as one promise layer: `h.safe()` once the evidence is
   * safe, `h.refused(refusal)` when it cannot be recorded; undefined (neither called) when it is
   * safe at once.
   */
  evidenceSafeThen<T>(h: { safe(): T; refused(e: EvidenceUnavailable): T }): Promise<T> | undefined;
  /**
   * The request's evidence is recorded and nothing more will be before its answer: a request alone
   * in flight starts its write now (the fleet's INSERT), so the round trip overlaps the work left
   * before evidenceSafe(), which is still what the answer waits for. A promise when the write
   * started: await it before that work, which then runs while the write is on its way.
   */
  evidenceSoon(): Promise<void> | undefined;
  /** Client requests being handled now (1: this one alone, the main thread waits with it). */
  readonly inFlight: number;
  /** Event-level stream scrubber, or null when no credential is active. */
  eventScrubber(): EventScrubber | null;
}
