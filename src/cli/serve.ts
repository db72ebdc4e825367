// `aam serve`: start the runtime, listen, hot-reload on file change and SIGHUP, drain on SIGTERM.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { ConfigSet } from '../config/schema.ts';
import { appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Runtime, openFleetStores, type FleetStores, type RuntimeOptions } from '../runtime.ts';
import { watchConfig } from '../config/watch.ts';
import { createServer, coreRoutes, drainConnections } from '../server/http.ts';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { addAdminRoutes, checkAdminToken } from '../server/admin.ts';
import { addConsoleRoutes, createConsoleAuth } from '../console/routes.ts';
import { approvalNotifier, approvalWebhookFrom } from '../console/notify.ts';
import { Metrics } from '../observability/metrics.ts';
import { createTracer } from '../observability/tracing.ts';
import type { Logger } from '../observability/log.ts';
import { resolveOtlp } from '../observability/otlp-config.ts';
import { addIdentityRoutes } from '../server/identity-routes.ts';
import { addToolRoutes } from '../server/tool-routes.ts';
import { createLazyMcpGateway } from '../tools/mcp-lazy.ts';
import { createHttpToolProxy } from '../tools/http-tool.ts';
import { createApprovals } from '../store/approvals.ts';
import { toolDeps } from '../server/tool-deps.ts';
// The evidence modules the gateway runs, not the barrel (audit/index.ts), which also holds the CLI's.
import { openAuditLog, type AuditAlert } from '../audit/log.ts';
import { startSinks, stopSinksWithCheckpoint, type AuditSink } from '../audit/sinks.ts';
import { fileSink } from '../audit/sink-file.ts';
import { webhookSink, otlpLogsSink } from '../audit/sink-http.ts';
import { checkpointFilePath } from '../audit/anchor.ts';
import { segmentAgeFor, startRetention } from '../audit/retention.ts';
import { DEFAULT_SEGMENTS } from '../audit/writer.ts';
import { mergeSmallSegments } from '../audit/store.ts';
import { loadMasterKey } from '../credentials/master-key.ts';
import { parseDurationSeconds } from '../config/duration.ts';
import { wholeNumberEnv } from '../lib/env-number.ts';
import { openIssuer } from '../identity/issuer.ts';
import { createJwtVerifier } from '../identity/jwt-svid.ts';
import { trustDomainsFromConfig } from '../identity/jwks-cache.ts';
import { boundHeapGrowth, maglevTier, releaseStartupMemory, workerHeapsUseTheirLimits } from '../observability/memory.ts';

export interface ServeOptions {
  configPath: string;
  dataDir: string;
  port: number;
  host: string;
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  /** The config at configPath, already being validated (`aam serve` starts that before loading this module). */
  config?: Promise<ConfigSet>;
}

export interface Running {
  rt: Runtime; server: Server; port: number; close(): Promise<void>;
  /** The longest close() should take (the drain, the audit and sink bounds): past it, a close is stuck. */
  closeBudgetMs: number;
}

/** Start a gateway (used by the CLI and by the end-to-end tests). */
export async function startGateway(o: ServeOptions & { env?: NodeJS.ProcessEnv; quiet?: boolean; parseConfig?: RuntimeOptions['parseConfig'] }): Promise<Running> {
  const env = o.env ?? process.env;
  checkAdminToken(env.AAM_ADMIN_TOKEN); // before anything listens or writes to the data dir
  const drainMs = drainTimeoutMs(env.AAM_DRAIN_TIMEOUT_MS);
  workerHeapsUseTheirLimits(); // before the audit writer and scan threads start
  if ((o.tlsCert || o.tlsKey) && !(o.tlsCert && o.tlsKey)) throw new Error('--tls-cert and --tls-key go together');
  if (o.clientCa && !o.tlsCert) throw new Error('--client-ca needs --tls-cert and --tls-key: X.509-SVIDs are presented over TLS');
  const config = await o.config; // a bad config refuses the start before any store is opened
  // Fleet mode (AAM_DATABASE_URL + AAM_REDIS_URL): connect and migrate before anything else.
  const fleet = await openFleetStores(env, { follow: true });
  // TLS and fleet-only modules load only when in use (an embedded gateway without TLS never holds them).
  const x509m = o.tlsCert ? await import('../identity/x509-svid.ts') : null;
  const fleetAuditM = fleet ? await import('../audit/fleet-log.ts') : null;
  const rt = newRuntime(fleet, () => new Runtime({
    configPath: o.configPath, dataDir: o.dataDir, adminToken: env.AAM_ADMIN_TOKEN, env, fleet: fleet ?? undefined,
    maxBodyBytes: wholeNumberEnv('AAM_MAX_BODY_BYTES', env.AAM_MAX_BODY_BYTES, { unit: 'bytes', min: 1 }),
    sseKeepaliveMs: wholeNumberEnv('AAM_SSE_KEEPALIVE_MS', env.AAM_SSE_KEEPALIVE_MS, { unit: 'milliseconds', min: 1 }),
    publicUrl: publicUrlFrom(env.AAM_PUBLIC_URL), parseConfig: o.parseConfig, config,
  }));
  // Redis unreachable at start is waited for (openFleet refused one that refuses aam): said once here.
  const redisAtStart = fleet?.fleet.health().stores.redis;
  if (redisAtStart && !redisAtStart.ok) {
    rt.log.error({ event: 'store_unavailable', store: 'redis', error: redisAtStart.error }, 'Redis (AAM_REDIS_URL) does not answer: requests that need it get 503 store_unavailable, and /readyz names it, until it does');
  }
  // X.509-SVIDs: one CA bundle per trust domain (TrustDomain x509_bundle_file; --client-ca for the
  // local ones). The handshake verifies against all of them; each SVID against its own domain's.
  const x509 = x509m?.loadX509Trust(rt.compiled.set, o.clientCa);
  for (const w of x509?.warnings ?? []) rt.log.warn({ event: 'x509_bundle_warning' }, w);
  if (!o.tlsCert && [...rt.compiled.set.trustDomains.values()].some((r) => r.spec.x509_bundle_file)) {
    rt.log.warn({ event: 'x509_bundle_unused' }, 'TrustDomain x509_bundle_file has no effect without --tls-cert and --tls-key (mTLS)');
  }
  const tls = x509m && o.tlsCert && o.tlsKey ? x509m.tlsServerOptions({ certFile: o.tlsCert, keyFile: o.tlsKey }, x509) : undefined;
  rt.tls = tls && x509?.pem && x509m ? x509m.createMtls({
    trust: x509, clientCaFile: o.clientCa, log: rt.log,
    // Bundles changed on reload: new handshakes verify against the new set.
    onTrust: (t) => (server as unknown as TlsServer).setSecureContext({ ...tls, ca: t.pem }),
  }) : null;
  // Evidence: hash-chained audit log (writes off the request path, in a worker thread) and sinks.
  // AAM_AUDIT=off exists only to measure the cost of audit (bench/); never run production so.
  // AAM_AUDIT_RETENTION=90d: older whole segments are dropped hourly, behind a signed anchor.
  const retentionMs = env.AAM_AUDIT_RETENTION ? parseDurationSeconds(env.AAM_AUDIT_RETENTION, 'AAM_AUDIT_RETENTION') * 1000 : null;
  // AAM_AUDIT_FAIL_MODE: while storage fails, buffer (default: bounded queue, alert, refuse when
  // full) or fail_closed (refuse at once). Tool actions that change the world fail closed either way.
  const failMode = env.AAM_AUDIT_FAIL_MODE ?? 'buffer';
  if (failMode !== 'buffer' && failMode !== 'fail_closed') throw new Error(`AAM_AUDIT_FAIL_MODE must be buffer or fail_closed, not "${failMode}"`);
  rt.auditFailClosed = failMode === 'fail_closed';
  // Fleet mode: the trail is in PostgreSQL (one chain per replica start, group commit), not the data dir.
  const fleetAudit = fleet && fleetAuditM && env.AAM_AUDIT !== 'off' ? await fleetAuditM.openFleetAuditLog(fleet.fleet.sql, {
    replica: fleet.fleet.replicaId, writer: fleet.fleet.evidence, keyEncryptionKey: loadMasterKey({ dataDir: o.dataDir, env }).derive(fleetAuditM.SIGNING_KEY_KEK_INFO),
    scrub: (json) => rt.scrub(json),
    onAlert: (a) => logAuditAlert(rt.log, a),
    checkpointIntervalMs: wholeNumberEnv('AAM_AUDIT_CHECKPOINT_INTERVAL_MS', env.AAM_AUDIT_CHECKPOINT_INTERVAL_MS, { unit: 'milliseconds', min: 1 }),
    // A copy outside the database: `aam audit verify --checkpoint` catches rows and checkpoints cut together.
    onCheckpoint: (line) => appendFileSync(checkpointFilePath(o.dataDir, env), line + '\n', { mode: 0o600 }),
  }) : null;
  // Checked in fleet mode too (no writer thread there): a typo refuses every start alike.
  const writerNice = wholeNumberEnv('AAM_AUDIT_WRITER_NICE', env.AAM_AUDIT_WRITER_NICE, { max: 19, fallback: 5 });
  const audit = env.AAM_AUDIT === 'off' || fleetAudit ? null : openAuditLog({
    dataDir: o.dataDir, failMode, durableTimeoutMs: 2_000, checkpointFile: checkpointFilePath(o.dataDir, env),
    // Evidence passes the same scrubber as every response: upstream text never puts a secret on disk.
    scrub: (json) => rt.scrub(json),
    onAlert: (a) => logAuditAlert(rt.log, a),
    segments: retentionMs ? { ...DEFAULT_SEGMENTS, maxAgeMs: segmentAgeFor(retentionMs) } : undefined,
    writerNice,
  });
  const stopRetention = audit && retentionMs ? startRetention(audit, retentionMs, {
    onPruned: (r) => rt.log.info({ event: 'audit_retention', cut_seq: r.cutSeq, events: r.deletedEvents, segments: r.segments }, 'audit retention dropped old segments'),
    onError: (e) => rt.log.error({ event: 'audit_retention_failed', err: e }, 'audit retention failed; retried next hour'),
  }) : null;
  if (!audit && !fleetAudit) rt.log.warn({ event: 'audit_disabled' }, 'AAM_AUDIT=off: no audit trail is written (benchmark mode)');
  // Small files left by CLI commands are merged into one (bytes and hashes unchanged).
  if (audit) {
    try {
      const merged = mergeSmallSegments(audit.db, o.dataDir);
      if (merged) rt.log.info({ event: 'audit_segments_merged', files: merged }, `merged ${merged} small audit segment files`);
    } catch (e) { rt.log.warn({ event: 'audit_merge_skipped', err: e }, 'small audit segment files not merged this time'); }
  }
  rt.audit = fleetAudit ?? audit;
  rt.auditLog = audit;
  // Fleet: every replica runs the sinks; for each sink one replica at a time delivers the whole fleet's trail.
  // Which process sent a span or an audit log record: the replica id `aam fleet status` and the
  // trail name, else one per process (OTEL_RESOURCE_ATTRIBUTES may set its own).
  const otlpResource = { 'service.instance.id': fleet?.fleet.replicaId ?? randomBytes(6).toString('hex') };
  // A sink that fails is logged once per failure streak, one process or a fleet (it retries with backoff).
  const sinkErrors = { onError: (name: string, e: unknown, attempt: number) => { if (attempt === 1) rt.log.warn({ event: 'audit_sink_failed', sink: name, err: e }, `audit sink ${name} failed; retrying with backoff`); } };
  const sinks = audit ? startSinks(audit, auditSinks(env, otlpResource), sinkErrors)
    : fleet && fleetAudit ? (await import('../audit/fleet-sinks.ts')).startFleetSinks(fleet.fleet.sql, auditSinks(env, otlpResource), sinkErrors) : null;
  const sinkShutdownMs = wholeNumberEnv('AAM_AUDIT_SINK_SHUTDOWN_MS', env.AAM_AUDIT_SINK_SHUTDOWN_MS, { unit: 'milliseconds', fallback: 5000 });
  rt.audit?.record({ type: 'admin', request_id: `startup-${Date.now()}`, admin: { action: 'gateway_started', target: rt.compiled.version, actor: 'system' }, outcome: { status: 200 } });
  // Identity: aam's own JWT-SVID issuer (keys created 0600 on first start) and the verifier for
  // its tokens and for external SPIFFE trust domains.
  rt.audience = ['aam', ...(env.AAM_AUDIENCE ? env.AAM_AUDIENCE.split(',') : []), ...(env.AAM_ISSUER_URL ? [env.AAM_ISSUER_URL] : [])];
  // Fleet: the key rings are shared rows (sealed under the master key), re-read when any replica rotates.
  rt.issuer = await openIssuer(o.dataDir, { issuer: env.AAM_ISSUER_URL, svidAudiences: rt.audience, rings: fleet?.issuerKeys.rings((info) => rt.vault.subkey(info)) });
  const issuer = rt.issuer;
  fleet?.issuerKeys.onChange(() => issuer.reload());
  rt.jwt = createJwtVerifier({
    issuer: rt.issuer, audience: rt.audience, trustDomains: trustDomainsFromConfig(rt.compiled.set),
    isRegisteredAgent: (id) => rt.compiled.policies.bySpiffe.has(id),
    keyProblem: (keyId, generation) => rt.keyBook.generationProblem(keyId, generation),
  });
  for (const problem of await rt.jwt.warm()) rt.log.warn({ event: 'trust_domain_unavailable', problem }, 'trust domain JWKS not loaded yet');
  rt.tracer = createTracer({ logger: rt.log, env, resourceDefaults: otlpResource });
  const metrics = new Metrics();
  rt.metrics = metrics;
  metrics.info.set({ version: rt.compiled.version }, 1);
  const routes = coreRoutes();
  const people = createConsoleAuth(rt, env, !!o.tlsCert); // console sign-in and roles for the admin API
  addAdminRoutes(routes, people);
  addConsoleRoutes(routes, people, { publicUrl: rt.options.publicUrl });
  addIdentityRoutes(routes);
  // Tool plane: MCP gateway + HTTP action proxy share one approvals list.
  const deps = toolDeps(rt);
  const hook = approvalWebhookFrom(env);
  // Held calls: how long a person has to decide (AAM_APPROVAL_TTL, default 15m) and who is told.
  const approvalOpts = {
    windowMs: env.AAM_APPROVAL_TTL ? parseDurationSeconds(env.AAM_APPROVAL_TTL, 'AAM_APPROVAL_TTL') * 1000 : undefined,
    onPending: hook ? approvalNotifier(hook, rt.options.publicUrl, rt.log) : undefined,
  };
  const mcp = createLazyMcpGateway(rt.compiled.set, deps, {
    approvals: rt.fleet ? (await import('../store/fleet-approvals.ts')).fleetApprovals(rt.fleet.fleet.sql, approvalOpts) : createApprovals(rt.db, approvalOpts),
    pins: rt.fleet?.pins,
    maxSessionsPerIdentity: wholeNumberEnv('AAM_MCP_SESSIONS_PER_IDENTITY', env.AAM_MCP_SESSIONS_PER_IDENTITY, { unit: 'sessions', min: 1 }),
    maxSessionsPerTrustDomain: wholeNumberEnv('AAM_MCP_SESSIONS_PER_TRUST_DOMAIN', env.AAM_MCP_SESSIONS_PER_TRUST_DOMAIN, { unit: 'sessions', min: 1 }),
    streamGraceMs: env.AAM_MCP_STREAM_GRACE ? parseDurationSeconds(env.AAM_MCP_STREAM_GRACE, 'AAM_MCP_STREAM_GRACE') * 1000 : undefined,
  });
  const httpTools = createHttpToolProxy(rt.compiled.set, deps, { approvals: mcp.approvals });
  rt.tools = { mcp, http: httpTools };
  addToolRoutes(routes, mcp, httpTools);
  routes.exact.set('GET /metrics', async (ctx) => {
    const text = await metrics.text();
    ctx.res.writeHead(200, { 'content-type': metrics.contentType });
    ctx.res.end(text);
  });
  const server = createServer(rt, routes, {
    tls,
    ...slowLorisTimeouts(env),
  });
  // A connection's identity is its handshake's certificate: no renegotiating to another one.
  if (rt.tls) server.on('secureConnection', (s: TLSSocket) => s.disableRenegotiation());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError(e as NodeJS.ErrnoException, o.port, o.host)));
    server.listen(o.port, o.host, () => { server.removeAllListeners('error'); resolve(); });
  });
  rt.ready = true;
  const port = (server.address() as AddressInfo).port;

  // Hot reload: file change (debounced, atomic replaces included) or SIGHUP. A bad config is
  // logged and recorded (config_reload_failed), and the old one kept.
  const watcher = watchConfig(o.configPath, () => void rt.reloadInBackground('file-watch'),
    (e) => rt.log.error({ event: 'config_watch_failed', err: e }, 'config file watch failed; reload with SIGHUP'));
  let closing: Promise<void> | null = null;
  const close = () => closing ??= (async () => {
    watcher.close();
    rt.ready = false;
    // Drain: stop accepting (and keeping connections alive: drainConnections); end the long-lived streams, every plane's, from the server's one list
    // of them (rt.streams: MCP listen and GET SSE streams, their clients reconnect, to another
    // replica in a fleet; A2A stream relays, ended with an error event telling the caller to
    // resubscribe to its task); let in-flight requests (a model's answer streaming, an A2A
    // SendMessage) finish, for at most AAM_DRAIN_TIMEOUT_MS; then cut what is left. The rest of
    // close() (final audit checkpoint, sinks, fleet) always runs after it.
    const t0 = performance.now();
    // Stop accepting; close the connections with nothing under way (kept-alive ones between requests,
    // ones never used) until the last one is gone; every answer from now on closes its connection.
    const drain = drainConnections(server);
    let ended = 0;
    try { ended = rt.streams.drain(); } catch (e) { rt.log.warn({ event: 'drain_streams_failed', err: e }, 'long-lived streams not all ended for the drain'); }
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([drain.closed.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), drainMs); })]);
    clearTimeout(timer);
    drain.stop();
    if (!inTime) {
      const cut = await new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n ?? 0)));
      server.closeAllConnections();
      rt.log.warn({ event: 'drain_cut', connections: cut, drain_timeout_ms: drainMs }, `drain did not finish within ${drainMs} ms: cut ${cut} connection(s) still open`);
      await drain.closed;
    }
    // A cut request's handler still records its usage and outcome: the stores close after it (bounded).
    if (!await rt.handlersSettled(HANDLERS_SETTLE_MS)) rt.log.warn({ event: 'drain_handlers_unsettled', handlers: rt.handling, wait_ms: HANDLERS_SETTLE_MS }, `${rt.handling} request handler(s) still running ${HANDLERS_SETTLE_MS} ms after the drain; closing without their last records`);
    rt.log.info({ event: 'drained', streams_ended: ended, cut: !inTime, ms: Math.round(performance.now() - t0) }, 'connections drained');
    people.close(); // sign-outs' revocations still waiting for the IdP: given up on, on the trail before it closes
    await mcp.close().catch((e: unknown) => rt.log.error({ event: 'mcp_close_failed', err: e }, 'MCP plane not closed cleanly'));
    await routes.close(); // the A2A plane's connections to its callees
    // Before rt.close() ends the fleet's connections: the last events and a final checkpoint, to the sinks too (bounded wait).
    const fleetLate = fleetAudit && sinks ? await stopSinksWithCheckpoint({ flush: () => fleetAudit.flush(), checkpoint: async () => { await fleetAudit.checkpoint(); return null; } }, sinks, sinkShutdownMs) : null;
    if (fleetLate) rt.log.warn({ event: 'audit_sinks_not_drained', err: fleetLate }, 'audit sinks did not get the final checkpoint before shutdown; whichever replica delivers next resumes from the cursors');
    await fleetAudit?.close().catch((e: unknown) => rt.log.error({ event: 'audit_close_failed', err: e }, 'fleet audit trail not closed cleanly'));
    if (fleetAudit) {
      const st = fleetAudit.stats();
      rt.log.info({ event: 'audit_fleet_stats', events: st.written, inserts: st.batches, events_per_insert: st.batches ? +(st.written / st.batches).toFixed(1) : 0, mean_commit_ms: st.batches ? +(st.commitMs / st.batches).toFixed(2) : 0, failures: st.failures }, 'fleet audit trail: group commits this run');
    }
    // The audit trail is closed (its writer thread ended, its final checkpoint signed) even when the
    // runtime's close fails: an open writer would go on writing into a data dir being removed.
    try { await rt.close(); } finally {
      stopRetention?.();
      // The final signed checkpoint reaches the sinks before exit (bounded wait), not only at the next start.
      const late = audit && sinks ? await stopSinksWithCheckpoint(audit, sinks, sinkShutdownMs) : null;
      if (late) rt.log.warn({ event: 'audit_sinks_not_drained', err: late }, 'audit sinks did not get the final checkpoint before shutdown; each resumes from its cursor at the next start');
      await audit?.close();
      await rt.tracer?.shutdown(5000);
    }
  })();
  // The drain, the handlers' settling, the audit trail's durable wait (2 s), the sinks' bound (fleet and local), tracing's 5 s, and margin.
  return { rt, server, port, close, closeBudgetMs: drainMs + HANDLERS_SETTLE_MS + 2 * sinkShutdownMs + 2_000 + 5_000 + 10_000 };
}

/** After the drain, how long a shutdown waits for request handlers to finish their bookkeeping. */
const HANDLERS_SETTLE_MS = 2_000;

/** AAM_DRAIN_TIMEOUT_MS: how long a shutdown lets in-flight requests finish (default 10000); a bad value refuses the start. */
/** An audit storage alert in the log: a recovery is news (info: it must not page anyone), the rest a problem (error). */
export function logAuditAlert(log: Logger, a: AuditAlert): void {
  if (a.kind === 'recovered') log.info({ event: 'audit_alert', ...a }, 'audit storage recovered');
  else log.error({ event: 'audit_alert', ...a }, 'audit storage problem');
}

export function drainTimeoutMs(value: string | undefined): number {
  return wholeNumberEnv('AAM_DRAIN_TIMEOUT_MS', value, { unit: 'milliseconds', fallback: 10_000 });
}

/**
 * AAM_HEADERS_TIMEOUT_MS / AAM_REQUEST_TIMEOUT_MS (defaults 15000 / 60000, server/http.ts): a client's
 * headers must come within the first, its whole request within the second, so the first may not
 * exceed the second (Node refuses that with a message naming neither variable).
 */
export function slowLorisTimeouts(env: NodeJS.ProcessEnv): { headersTimeoutMs?: number; requestTimeoutMs?: number } {
  const headersTimeoutMs = wholeNumberEnv('AAM_HEADERS_TIMEOUT_MS', env.AAM_HEADERS_TIMEOUT_MS, { unit: 'milliseconds', min: 1 });
  const requestTimeoutMs = wholeNumberEnv('AAM_REQUEST_TIMEOUT_MS', env.AAM_REQUEST_TIMEOUT_MS, { unit: 'milliseconds', min: 1 });
  const headers = headersTimeoutMs ?? 15_000;
  const request = requestTimeoutMs ?? 60_000;
  if (headers > request) throw new Error(`AAM_HEADERS_TIMEOUT_MS (${headers}) must not exceed AAM_REQUEST_TIMEOUT_MS (${request}): the headers are part of the request`);
  return { headersTimeoutMs, requestTimeoutMs };
}

/** A runtime that fails to start does not leave the fleet connections open. */
function newRuntime(fleet: FleetStores | null, make: () => Runtime): Runtime {
  try { return make(); } catch (e) {
    if (fleet) { fleet.keys.close(); void fleet.limiter.close().finally(() => fleet.fleet.close()); }
    throw e;
  }
}

/** AAM_PUBLIC_URL as a base URL (no trailing slash), or undefined; a bad value refuses to start. */
export function publicUrlFrom(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let u: URL;
  try { u = new URL(value); } catch { throw new Error(`AAM_PUBLIC_URL must be an absolute http(s) URL like https://aam.example.com, not "${value}"`); }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.search || u.hash || u.username || u.password) {
    throw new Error(`AAM_PUBLIC_URL must be an http(s) URL without query, fragment or credentials, like https://aam.example.com (got "${value}")`);
  }
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

/** Audit exports configured by environment: a JSONL/OCSF file, a signed webhook, OTLP logs. */
function auditSinks(env: NodeJS.ProcessEnv, resourceDefaults: Record<string, string>): AuditSink[] {
  const sinks: AuditSink[] = [];
  const format = env.AAM_AUDIT_FORMAT === 'ocsf' ? 'ocsf' : 'native';
  if (env.AAM_AUDIT_FILE) sinks.push(fileSink({ path: env.AAM_AUDIT_FILE, format }));
  if (env.AAM_AUDIT_WEBHOOK_URL) {
    if (!env.AAM_AUDIT_WEBHOOK_SECRET) throw new Error('AAM_AUDIT_WEBHOOK_URL needs AAM_AUDIT_WEBHOOK_SECRET (HMAC key for x-aam-signature)');
    sinks.push(webhookSink({ url: env.AAM_AUDIT_WEBHOOK_URL, secret: env.AAM_AUDIT_WEBHOOK_SECRET, format }));
  }
  // The traces' resolver (endpoint, headers, resource, timeout, OTEL_SDK_DISABLED, OTEL_LOGS_EXPORTER=none):
  // the logs went without OTEL_EXPORTER_OTLP_HEADERS, so a collector that wants a token refused them.
  const logs = resolveOtlp('logs', { env, resourceDefaults });
  // Named by the variable's value, as before: a fleet's delivery cursor is kept per sink name.
  const otlp = env.OTEL_EXPORTER_OTLP_LOGS_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (logs && otlp) sinks.push(otlpLogsSink(logs, `otlp:${otlp}`));
  return sinks;
}

export async function serve(o: ServeOptions): Promise<number> {
  boundHeapGrowth(process.env.AAM_HEAP_GROWING_PERCENT); // a bad value refuses the start
  maglevTier(process.env.AAM_MAGLEV); // before the request path gets hot; a bad value refuses the start
  const g = await startGateway(o);
  const scheme = o.tlsCert ? 'https' : 'http';
  // Signal handlers first: until a handler is installed the OS's default for SIGHUP is to end the
  // process, so one sent as soon as "listening" shows (during the startup GC below) killed it.
  process.on('SIGHUP', () => {
    // re-read X.509 bundle files even when the config text is unchanged
    void g.rt.reloadInBackground('SIGHUP').then(() => g.rt.tls?.reload(g.rt.compiled.set));
  });
  const stop = (sig: string) => {
    g.rt.log.info({ event: 'shutdown', signal: sig }, 'draining in-flight requests');
    // Hard deadline, above the drain and the audit/sink bounds: only a close that is truly stuck ends so.
    setTimeout(() => {
      g.rt.log.error({ event: 'shutdown_stuck', after_ms: g.closeBudgetMs }, 'shutdown did not finish in time; exiting without it');
      process.exit(1);
    }, g.closeBudgetMs).unref();
    g.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  g.rt.log.info({ event: 'listening', port: g.port, config: o.configPath, data: o.dataDir, version: g.rt.compiled.version }, `aam listening on ${scheme}://${o.host}:${g.port}`);
  // Here, not in startGateway: a process that serves, not every gateway a test starts in-process.
  const gcMs = releaseStartupMemory();
  g.rt.log.debug({ event: 'startup_memory_released', gc_ms: Math.round(gcMs), rss_mb: Math.round(process.memoryUsage.rss() / 1048576) }, 'startup garbage collected');
  return 0;
}

/** Why the gateway cannot listen, and what to give instead (before: "listen EADDRINUSE: address already in use 0.0.0.0:8080"). */
export function listenError(e: NodeJS.ErrnoException, port: number, host: string): Error {
  const where = `port ${port} on ${host}`;
  if (e.code === 'EADDRINUSE') return new Error(`${where} is already in use (another aam or another program listens there): stop it, or give another port with --port N or AAM_PORT`, { cause: e });
  if (e.code === 'EACCES') return new Error(`${where} needs privileges this user lacks (ports below 1024): give a port above 1023 with --port N or AAM_PORT`, { cause: e });
  if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') return new Error(`host ${host} is not an address of this machine: give one with --host or AAM_HOST (0.0.0.0: every address)`, { cause: e });
  return e;
}
