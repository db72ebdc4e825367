// The one runtime object: the compiled config (swapped atomically on reload) and the long-lived
// services. Everything mutable in a running gateway hangs off this object; nothing is global.
import { ConfigError, formatIssues } from './config/errors.ts';
import { linesInBackground, parseConfigIsolated, parseConfigInBackground } from './config/isolated.ts';
import { configDigest, readConfigSources, type ConfigSource } from './config/sources.ts';
import type { ConfigSet } from './config/schema.ts';
import { compilePolicies, setFor, type CompiledPolicies, type PolicySet } from './policy/compile.ts';
import { BudgetLedger, EmbeddedLimiter, RateLimiter } from './policy/limits.ts';
import { compileProviders, compileRoutes, retireDispatchers, type ProviderRuntime, type Route } from './gateway/routes.ts';
import { CatalogRoutes } from './gateway/catalog-routes.ts';
import { UsageRecorder } from './gateway/usage.ts';
import { embeddedKeyBook, openKeyStore, type KeyStore } from './identity/keys.ts';
import type { BudgetAlert, KeyBook, Limiter, McpSessionRegistry, PushRouteStore, StoreHealth, TaskOwnerStore } from './store/types.ts';
import { memoryPushRoutes, redisPushRoutes } from './store/push-routes.ts';
import { memoryPushHeld, redisPushHeld, type PushHeldStore } from './store/push-held.ts';
import type { Fleet } from './store/fleet.ts';
import { fleetDrivers, fleetEnv } from './store/fleet-lazy.ts';
import type { FleetKeyBook } from './store/fleet-keys.ts';
import type { FleetLimiter } from './store/fleet-limits.ts';
import { FleetMcpSessions } from './store/fleet-mcp-sessions.ts';
import { FleetCache } from './store/fleet-cache.ts';
import { FleetTaskOwners, memoryTaskOwners } from './store/task-owners.ts';
import { memoryLiveCalls, redisLiveCalls, type LiveCalls } from './store/live-calls.ts';
import { openExpiringTable, sealedTable } from './store/sqlite-expiring.ts';
import { memoryMcpSessions } from './store/mcp-sessions.ts';
import type { FleetPins } from './store/fleet-pins.ts';
import type { FleetCredentialRows } from './store/fleet-credentials.ts';
import type { FleetIssuerKeys } from './store/fleet-issuer-keys.ts';
import type { FleetUsage } from './store/fleet-usage.ts';
import { openDatabase } from './store/sqlite.ts';
import { createLogger, logLevelFrom, type Logger } from './observability/log.ts';
import type { DatabaseSync } from 'node:sqlite';
import type { AuditLog } from './audit/log.ts';
import { adminEvent, type AdminActor } from './audit/event.ts';
import { createEventScrubber, type EventScrubber } from './access/scrub-events.ts';
import { clipAfterScrub, type ScrubSource } from './access/egress.ts';
import { ModelCache } from './cache/model-cache.ts';
import { openResponseStore, type ResponseStore } from './store/responses.ts';
import { fleetResponseStore } from './store/fleet-responses.ts';
import { parseDurationSeconds } from './config/duration.ts';
import type { Tracer } from './observability/tracing.ts';
import { IdPool } from './observability/otlp-context.ts';
import { compileGuardrail, type CompiledGuardrail } from './guardrails/engine.ts';
import type { AccessConfig, AuditSink } from './access/runtime-view.ts';
import type { GatewayConfig } from './gateway/plane.ts';
import type { MetricsSink } from './observability/metrics.ts';
import { createScanThread, type ScanThread } from './guardrails/offload.ts';
import { openVault, type Vault } from './credentials/vault.ts';
import { createInjector, perPrincipal, type Injector, type DefaultStyle, type Injection as CredentialInjection } from './credentials/inject.ts';
import { CredentialError } from './credentials/errors.ts';
import type { Injection } from './gateway/upstream.ts';
import type { Identity } from './identity/types.ts';
import type { JwtVerifier, VerifiedSvid } from './identity/jwt-svid.ts';
import { AamError, EvidenceUnavailable } from './access/errors.ts';
import { buildAgentRegistry, type AgentRegistry } from './identity/registry.ts';
import type { Issuer } from './identity/issuer.ts';
import type { Mtls } from './identity/x509-svid.ts';
import { createJoinTokenStore, fleetJoinTokenStore, type JoinTokenStore } from './identity/join-tokens.ts';
import { IdentitySeen, redisSeenBackend, sqliteSeenBackend } from './identity/seen.ts';
import { trustDomainsFromConfig } from './identity/jwks-cache.ts';
import type { McpGateway } from './tools/mcp-shared.ts';
import { OpenStreams } from './lib/open-streams.ts';
import type { HttpToolProxy } from './tools/http-tool.ts';
import { wholeNumberEnv } from './lib/env-number.ts';

/** A compiled config: what the access path reads (AccessConfig) and what the model plane routes by. */
export interface Compiled extends AccessConfig, GatewayConfig {}


export interface RuntimeOptions {
  configPath: string;
  dataDir: string;
  adminToken?: string;
  /** Max request body in bytes (413 above). */
  maxBodyBytes?: number;
  /** Idle time before an SSE comment keeps a silent stream alive. */
  sseKeepaliveMs?: number;
  /** Public base URL of this gateway (AAM_PUBLIC_URL), used in RFC 9728 metadata; never taken from the Host header. */
  publicUrl?: string;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  /** The fleet store (openFleetStores), or none: the embedded store in the data dir. */
  fleet?: FleetStores;
  /**
   * Validates config texts. Default: in a short-lived process (config/isolated.ts), so this one
   * never loads yaml and zod; a process that has loaded them anyway (the tests) may pass
   * load.ts parseConfigTexts to skip the process's start-up.
   */
  parseConfig?: (sources: readonly ConfigSource[]) => ConfigSet;
  /** The config at configPath, already validated (`aam serve` validates it while its modules load). */
  config?: ConfigSet;
}

/** The fleet implementations of the store seam, opened (and migrated) before the runtime. */
export interface FleetStores {
  fleet: Fleet; keys: FleetKeyBook; limiter: FleetLimiter; pins: FleetPins; credentials: FleetCredentialRows; issuerKeys: FleetIssuerKeys;
  /** Usage rollups of the whole fleet (each replica adds its own). */
  usage: FleetUsage;
  /** This replica's heartbeat in Redis (aam fleet status), every AAM_FLEET_HEARTBEAT_MS (default 5 s). */
  heartbeat(config: () => string): { stop(): Promise<void> };
}

/**
 * Fleet mode when AAM_DATABASE_URL and AAM_REDIS_URL are set (null: embedded). A serving replica
 * migrates, follows changes and admits through Redis; `follow: false` is the CLI.
 */
export async function openFleetStores(env: NodeJS.ProcessEnv, opts: { follow: boolean; log?: Logger }): Promise<FleetStores | null> {
  const urls = fleetEnv(env);
  if (!urls) return null;
  const { openFleet, startHeartbeat } = await fleetDrivers();
  // The fleet stores' modules load in fleet mode only (an embedded gateway never holds them).
  const [{ FleetKeyBook }, { FleetLimiter }, { FleetPins }, { FleetCredentialRows }, { FleetIssuerKeys }, { FleetUsage }] = await Promise.all([
    import('./store/fleet-keys.ts'), import('./store/fleet-limits.ts'), import('./store/fleet-pins.ts'),
    import('./store/fleet-credentials.ts'), import('./store/fleet-issuer-keys.ts'), import('./store/fleet-usage.ts'),
  ]);
  // Checked before connecting: a bad value refuses the start naming the variable.
  const poolMax = wholeNumberEnv('AAM_DATABASE_POOL', env.AAM_DATABASE_POOL, { unit: 'connections', min: 1 });
  const pollMs = wholeNumberEnv('AAM_FLEET_POLL_MS', env.AAM_FLEET_POLL_MS, { unit: 'milliseconds', min: 1 });
  const reservationTtlMs = wholeNumberEnv('AAM_RESERVATION_TTL_MS', env.AAM_RESERVATION_TTL_MS, { unit: 'milliseconds', min: 1 });
  const heartbeatMs = wholeNumberEnv('AAM_FLEET_HEARTBEAT_MS', env.AAM_FLEET_HEARTBEAT_MS, { unit: 'milliseconds', min: 1 });
  const fleet = await openFleet(urls, { follow: opts.follow, migrate: opts.follow, admission: opts.follow, poolMax });
  try {
    const onError = (what: string, e: unknown) => opts.log?.warn({ event: 'fleet_store_error', what, err: e }, `fleet store: ${what} failed`);
    const keys = await FleetKeyBook.open(fleet, { follow: opts.follow, pollMs });
    const limiter = new FleetLimiter(fleet, {
      reservationTtlMs, onError,
    });
    const pins = await FleetPins.open(fleet, { follow: opts.follow, pollMs, onError });
    const credentials = await FleetCredentialRows.open(fleet, { follow: opts.follow, pollMs, onError });
    const issuerKeys = new FleetIssuerKeys(fleet, { follow: opts.follow, pollMs, onError });
    const usage = new FleetUsage(fleet.sql, (e) => onError('writing usage rollups', e));
    return { fleet, keys, limiter, pins, credentials, issuerKeys, usage, heartbeat: (config) => startHeartbeat(fleet, config, heartbeatMs) };
  } catch (e) {
    await fleet.close();
    throw e;
  }
}

/** `vault` must already hold this config's credentials (vault.reload(set) first). */
export function compileConfig(set: ConfigSet, vault: Vault, previous?: Compiled): Compiled {
  const version = set.digest.slice(0, 12);
  const providers = compileProviders(set, (name) => { const r = vault.tryResolve(name); return r.ok ? null : r.reason; }, previous?.providers);
  const routes = compileRoutes(set, providers, previous?.routes);
  const guardrails = new Map([...set.guardrails.values()].map((g) => [g.name, compileGuardrail(g.name, g.spec)] as const));
  return { set, version, providers, routes, catalog: new CatalogRoutes(set, providers, previous?.catalog), policies: compilePolicies(set, version), registry: buildAgentRegistry(set), guardrails, guardrailLists: { merged: new WeakMap(), byNames: new WeakMap() } };
}

const STYLE: Record<ProviderRuntime['authStyle'], DefaultStyle> = { bearer: 'bearer', 'x-api-key': 'x-api-key', 'x-goog-api-key': 'header:x-goog-api-key', 'api-key': 'api-key' };

/** Refuse new actions this far below the audit queue bound (100,000), leaving room for their outcomes. */
const AUDIT_ROOM = 90_000;


/** What a callee's credential adds to a call (injectCallee). */
/** What /readyz reports for the embedded store (SQLite in this process: nothing to ask). */
const EMBEDDED_HEALTH: StoreHealth = Object.freeze({ kind: 'embedded', ok: true, stores: Object.freeze({ sqlite: Object.freeze({ ok: true }) }) });
/** A provider without a credential injects nothing: one shared, frozen injection (gateway/upstream.ts reuses its header merge). */
const NO_INJECTION: Injection = Object.freeze({ headers: Object.freeze({}) });

type CalleeInjection = { headers: Record<string, string>; query?: Record<string, string>; credential: CredentialInjection['credential'] };

/** Credential problems reach the agent as a 502/500 naming the credential, never its value. */
function credentialFailure(e: unknown, what: string): AamError {
  if (e instanceof CredentialError) return new AamError(e.status >= 500 && e.status < 600 ? 502 : e.status, 'upstream_error', `${what}: ${e.message}`);
  return new AamError(502, 'upstream_error', `${what}: credential injection failed`);
}

export class Runtime {
  compiled: Compiled;
  readonly options: Required<Omit<RuntimeOptions, 'adminToken' | 'log' | 'env' | 'publicUrl' | 'fleet' | 'parseConfig' | 'config'>> & { adminToken: string | null; publicUrl: string | null };
  readonly log: Logger;
  readonly db: DatabaseSync;
  /** Virtual keys behind the store seam (embedded SQLite or fleet PostgreSQL). */
  readonly keyBook: KeyBook;
  /** Budgets and rate limits behind the store seam (embedded memory or fleet Redis). */
  readonly limiter: Limiter;
  /** The fleet store's connections, or null in embedded mode. */
  readonly fleet: FleetStores | null;
  readonly #keys: KeyStore | null;
  /** Fleet mode: this replica's heartbeat in Redis (aam fleet status). */
  readonly #heartbeat: { stop(): Promise<void> } | null;
  readonly usage: UsageRecorder;
  /** Identity methods each agent used, and when last (console Agents page). */
  readonly identitySeen: IdentitySeen;
  readonly liveCalls: LiveCalls;
  readonly ledger: BudgetLedger;
  readonly rates: RateLimiter;
  /** Response cache (exact and semantic), for routes with spec.cache. */
  readonly cache: ModelCache;
  /** Open MCP sessions and whom they are bound to (embedded memory or fleet Redis). */
  readonly mcpSessions: McpSessionRegistry;
  /** A2A task and context ids and the caller that created each (embedded memory or fleet Redis). */
  readonly a2aTasks: TaskOwnerStore;
  /** A2A push routes (embedded memory or fleet Redis): registered on one replica, delivered by any. */
  readonly a2aPushRoutes: PushRouteStore;
  /** Artifact text held across an A2A push route's notifications (embedded memory or fleet Redis, sealed). */
  readonly a2aPushHeld: PushHeldStore;
  /** Stored Responses API state (previous_response_id, GET /v1/responses/{id}): per agent, expiring. */
  readonly responses: ResponseStore;
  /** How long a stored response lives (AAM_RESPONSES_TTL, default 30d). */
  readonly responsesTtlMs: number;
  /** Hosts (or host:port) A2A push notifications may be delivered to although private (AAM_A2A_PUSH_ALLOW). */
  readonly a2aPushAllow: readonly string[];
  readonly vault: Vault;
  readonly injector: Injector;
  readonly startedAt = Date.now();
  ready = false;
  audit: AuditSink | null = null;
  /** The audit log behind `audit`, for queries (admin API). */
  auditLog: AuditLog | null = null;
  /** AAM_AUDIT_FAIL_MODE=fail_closed: refuse every action while audit storage fails (default: buffer, bounded). */
  auditFailClosed = false;
  metrics: MetricsSink | null = null;
  jwt: JwtVerifier | null = null;
  /** OpenTelemetry tracer; null (zero cost) unless OTEL_EXPORTER_OTLP_ENDPOINT is set. */
  tracer: Tracer | null = null;
  issuer: Issuer | null = null;
  /** Tool plane (set by the server): reloaded with the config. */
  tools: { mcp: McpGateway; http: HttpToolProxy } | null = null;
  /** Audiences accepted in JWT-SVIDs (the first is the one aam mints for itself). */
  audience: string[] = ['aam'];
  readonly joinTokens: JoinTokenStore;
  /** mTLS (X.509-SVIDs), when serving TLS with CA bundles. */
  tls: Mtls | null = null;
  /** Requests being served right now (lets the audit log batch its appends only when it helps). */
  inFlight = 0;
  /** Request handlers not yet settled (server/http.ts counts them; see handlersSettled). */
  handling = 0;
  #onSettled: Array<() => void> = [];
  /** A handler settled (bound once: passed to every request's promise without a closure). */
  readonly handled = (): void => {
    if (--this.handling === 0 && this.#onSettled.length > 0) for (const f of this.#onSettled.splice(0)) f();
  };
  /**
   * Resolves true once every request handler has settled, false after `ms`. A shutdown calls it
   * after cutting the connections the drain left: a cut request's handler still records its usage
   * and outcome, which must land before the stores close.
   */
  handlersSettled(ms: number): Promise<boolean> {
    if (this.handling === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      this.#onSettled.push(() => { clearTimeout(timer); resolve(true); });
    });
  }
  /** Request id sequence (cheap unique ids, no crypto per request). */
  requestSeq = 0;
  /** Guardrail scans of large texts, off the event loop (a worker thread started on first use). */
  readonly scanThread: ScanThread = createScanThread();
  /** Random trace and span ids from a pooled buffer (a randomBytes call per request measured 6-12 us here). */
  readonly ids = new IdPool();

  constructor(opts: RuntimeOptions) {
    // Log lines pass the credential scrubber too (an upstream error may quote a key). The level is the
    // gateway's own env's (a test's in-process gateway has its own), not necessarily this process's.
    this.log = opts.log ?? createLogger({ level: logLevelFrom((opts.env ?? process.env).AAM_LOG_LEVEL), scrub: (line) => (this.vault ? this.vault.scrubber().scrub(line).text : line) });
    this.options = {
      configPath: opts.configPath, dataDir: opts.dataDir, adminToken: opts.adminToken ?? null,
      maxBodyBytes: opts.maxBodyBytes ?? 10 * 1024 * 1024, sseKeepaliveMs: opts.sseKeepaliveMs ?? 15_000, publicUrl: opts.publicUrl ?? null,
    };
    this.#parseConfig = opts.parseConfig;
    const set = opts.config ?? (opts.parseConfig ?? parseConfigIsolated)(readConfigSources(opts.configPath)); // throws ConfigError: refuse to start on a bad config
    this.db = openDatabase(opts.dataDir);
    // Credentials: refuse to start on a wrong master key or a credential that cannot be resolved.
    this.vault = openVault({
      dataDir: opts.dataDir, db: this.db, rows: opts.fleet?.credentials, config: set, env: opts.env ?? process.env,
      // A new version seen by this gateway (file changed, `aam credentials set` elsewhere): evidence of when it took effect.
      onRotated: (name, version, source) => this.adminEvent('credential_rotated', name, 'system', { version, source }),
    });
    this.injector = createInjector({
      vault: this.vault, env: opts.env ?? process.env, issuer: (opts.env ?? process.env).AAM_ISSUER_URL ?? 'aam', // iss of assertions = the issuer's name
      sign: (claims) => {
        if (!this.issuer) throw new CredentialError('credential_principal', 'on-behalf-of assertions need aam\'s issuer, which is not running', { status: 500 });
        return this.issuer.signAssertion(claims);
      },
    });
    this.fleet = opts.fleet ?? null;
    this.#keys = this.fleet ? null : openKeyStore(this.db, opts.dataDir, true);
    this.keyBook = this.fleet ? this.fleet.keys : embeddedKeyBook(this.#keys!);
    this.usage = new UsageRecorder(this.db, { shared: this.fleet?.usage });
    this.liveCalls = this.fleet ? redisLiveCalls(this.fleet.fleet.redis, this.fleet.fleet.prefix) : memoryLiveCalls();
    this.identitySeen = new IdentitySeen(this.fleet ? redisSeenBackend(this.fleet.fleet.redis, this.fleet.fleet.prefix) : sqliteSeenBackend(this.db),
      (e) => this.log.warn({ event: 'identity_seen_write_failed', err: e }, 'identity methods seen: write failed (retried at the next flush)'));
    const onAlert = (a: BudgetAlert) => {
      this.log.warn({ event: 'budget_alert', ...a }, `budget ${a.key} crossed ${a.threshold}% of its ${a.period} limit`);
      // Alerts are evidence too, so they reach the same sinks (webhook, OTLP, file) as the trail.
      this.audit?.record({ type: 'budget_alert', request_id: `budget-${a.key}-${a.period}-${a.threshold}`, budget: { key: a.key, period: a.period, threshold_pct: a.threshold, spent_usd: a.spent, limit_usd: a.limit, window_start: a.windowStart.toISOString() } });
    };
    this.ledger = new BudgetLedger({ onAlert });
    this.rates = new RateLimiter();
    if (this.fleet) {
      this.fleet.limiter.onAlert = onAlert;
      this.fleet.limiter.othersInFlight = () => this.inFlight > 1;
    }
    this.limiter = this.fleet ? this.fleet.limiter : new EmbeddedLimiter(this.ledger, this.rates);
    // Fleet: answers are shared through Redis (each replica keeps a memory copy in front); embedded: memory + SQLite.
    this.cache = new ModelCache(this.fleet ? null : this.db, {
      scrub: (json) => this.scrub(json),
      scrubTexts: (texts) => {
        const sc = this.vault.scrubber();
        if (sc.size === 0) return texts;
        const r = sc.scrubJoined(texts);
        if (r.leaked.length) this.#leak(r.leaked);
        return r.texts;
      },
      shared: this.fleet ? new FleetCache(this.fleet.fleet, { onError: (what, e) => this.log.warn({ event: 'fleet_store_error', what, err: e }, `fleet store: ${what} failed`) }) : undefined,
    });
    this.mcpSessions = this.fleet ? new FleetMcpSessions(this.fleet.fleet.redis, this.fleet.fleet.prefix, this.fleet.fleet) : memoryMcpSessions();
    // Embedded: kept in the data dir across restarts (a callee's task outlives a deploy of aam).
    const kept = (space: string) => openExpiringTable(this.db, space, (err) => this.log.error({ event: 'a2a_state_store_failed', space, err }, `A2A state (${space}) could not be stored: after a restart it is unknown`));
    this.a2aTasks = this.fleet ? new FleetTaskOwners(this.fleet.fleet.redis, this.fleet.fleet.prefix) : memoryTaskOwners(undefined, undefined, undefined, kept('task_owners'));
    this.a2aPushRoutes = this.fleet ? redisPushRoutes(this.fleet.fleet.redis, this.fleet.fleet.prefix) : memoryPushRoutes(undefined, undefined, sealedTable(kept('push_routes'), this.vault.subkey('aam a2a push routes at rest v1')));
    this.a2aPushHeld = this.fleet ? redisPushHeld(this.fleet.fleet.redis, this.fleet.fleet.prefix, this.vault.subkey('aam a2a push held text v1')) : memoryPushHeld();
    this.responses = this.fleet ? fleetResponseStore(this.fleet.fleet.sql)
      : openResponseStore(this.db, Date.now, (err, ids) => this.log.error({ event: 'responses_store_failed', err, ids }, 'storing responses failed; previous_response_id naming them will be 404'));
    this.responsesTtlMs = parseDurationSeconds((opts.env ?? process.env).AAM_RESPONSES_TTL ?? '30d', 'AAM_RESPONSES_TTL') * 1000;
    this.a2aPushAllow = ((opts.env ?? process.env).AAM_A2A_PUSH_ALLOW ?? '').split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
    this.joinTokens = this.fleet ? fleetJoinTokenStore(this.fleet.fleet.sql) : createJoinTokenStore(this.db);
    this.compiled = compileConfig(set, this.vault);
    for (const p of this.compiled.providers.values()) {
      if (!p.enabled) this.log.info({ provider: p.name, reason: p.disabledReason }, `provider ${p.name} is off`);
    }
    if (!this.fleet) this.seedBudgets(); // the fleet seeds each budget from PostgreSQL on first use
    this.#heartbeat = this.fleet ? this.fleet.heartbeat(() => this.compiled.version) : null;
  }

  /** The embedded key store (synchronous; tests and embedded-only tools). Fleet mode has none: use keyBook. */
  get keys(): KeyStore {
    if (!this.#keys) throw new Error('rt.keys is the embedded key store; this gateway runs on the fleet store (use rt.keyBook)');
    return this.#keys;
  }

  /**
   * What /readyz reports: the store in use and whether each backing store answers, asked now (an
   * idle replica would otherwise see a frozen store only when a request uses it).
   */
  probeStores(): StoreHealth | Promise<StoreHealth> {
    return this.fleet ? this.fleet.fleet.probe() : EMBEDDED_HEALTH;
  }

  /** Start budgets from what was already spent this day/month (survives restarts). */
  seedBudgets(now = new Date()): void {
    const dayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    this.usage.flush(); // spend still held in memory counts too
    for (const set of this.compiled.policies.sets.values()) {
      for (const b of set.limits.budgets) {
        const [col, value] = b.key.startsWith('team:') ? ['team' as const, b.key.slice(5)] : ['agent' as const, b.key.slice(6)];
        this.ledger.load(b.key, 'daily', this.usage.spendSince(col, value, dayStart).usd, b, now);
        this.ledger.load(b.key, 'monthly', this.usage.spendSince(col, value, monthStart).usd, b, now);
      }
    }
  }

  /** Before acknowledging a request: its evidence must survive a crash of this process. */
  evidenceSafe(): Promise<void> {
    return this.evidenceSafeNow() ?? Promise.resolve();
  }

  /** See AccessRuntime.evidenceSoon: alone in flight, the fleet's INSERT leaves now, before the answer is encoded. */
  evidenceSoon(): Promise<void> | undefined {
    return this.inFlight <= 1 ? this.audit?.send?.() : undefined;
  }

  /** evidenceSafe() without a promise (nor a loop turn) when the evidence is safe at once: a request alone in flight writes it now. */
  evidenceSafeNow(): Promise<void> | undefined {
    return this.#journaled()?.catch((e: unknown) => { throw this.#unrecorded(e); });
  }

  /** See AccessRuntime.evidenceSafeThen: the wait and its refusal in one promise layer. */
  evidenceSafeThen<T>(h: { safe(): T; refused(e: EvidenceUnavailable): T }): Promise<T> | undefined {
    return this.#journaled()?.then(() => h.safe(), (e: unknown) => h.refused(this.#unrecorded(e)));
  }

  /** What the audit log's write of this request's evidence waits for; undefined when it is safe at once. */
  #journaled(): Promise<void> | undefined {
    const audit = this.audit;
    if (!audit?.journaled) return undefined;
    const now = this.inFlight <= 1;
    return audit.journaledNow ? audit.journaledNow(now) : audit.journaled(now);
  }

  #unrecorded(e: unknown): EvidenceUnavailable {
    return this.evidenceRefusal(`the audit trail could not record this request, so it is not acknowledged: ${(e as Error).message}`);
  }

  /**
   * False when new actions must be refused rather than left unrecorded: the audit queue is
   * (nearly) full, or storage is failing and AAM_AUDIT_FAIL_MODE=fail_closed.
   */
  evidenceRefusal(message: string): EvidenceUnavailable {
    const e = new EvidenceUnavailable(message, { store: this.fleet !== null });
    // Every plane's refusal is made here: counted once, so an outage of the trail shows in the
    // metrics (the refused model calls are counted nowhere else; A2A's only per callee).
    this.metrics?.evidenceRefused?.(e.code);
    return e;
  }

  auditHasRoom(): boolean {
    if (!this.auditLog) return true;
    const s = this.auditLog.stats();
    if (s.failing && this.auditFailClosed) return false;
    return s.queued < AUDIT_ROOM;
  }

  /** Outbound auth for a provider (the agent's own credential is never forwarded). */
  injectProvider(p: ProviderRuntime, identity: Identity): Injection | Promise<Injection> {
    // A provider without a credential (a local model server) injects nothing: no promise for it.
    if (!p.credential) return NO_INJECTION;
    return this.#injectCredential(p, p.credential, identity);
  }

  async #injectCredential(p: ProviderRuntime, credential: string, identity: Identity): Promise<Injection> {
    const refused = this.credentialRefusal(credential, identity);
    if (refused) throw new AamError(403, 'policy_denied', refused);
    try {
      const inj = await this.injector.injectionFor(credential, { principal: identity.agent, defaultStyle: STYLE[p.authStyle] });
      if (inj.credential.kind === 'on_behalf_of') this.identitySeen.note(identity.agent.name, 'on_behalf_of');
      return { headers: inj.headers, query: inj.query, credential: inj.credential, sign: inj.sign };
    } catch (e) {
      throw credentialFailure(e, `provider ${p.name}`);
    }
  }

  /** Why policy forbids this identity's call to use a credential (credentials.allow), or null. */
  credentialRefusal(name: string, identity: Identity, set: PolicySet = setFor(identity.agent, this.compiled.policies)): string | null {
    const c = set.credentials;
    if (!c || c.allow.has(name)) return null;
    return `${identity.agent.spiffeId} may not use credential "${name}": it is not in credentials.allow of policy ${c.policies.map((p) => `"${p}"`).join(', ')}`;
  }

  /**
   * Outbound auth for a credential (an A2A callee): headers and query parameters, one resolution,
   * no environment form. A credential that needs no token (a static secret) is injected at once,
   * without a promise (its failure is thrown); one that does returns a promise.
   */
  injectCallee(name: string, identity: Identity): CalleeInjection | Promise<CalleeInjection> {
    let inj;
    try { inj = this.injector.injectionNow(name, { principal: identity.agent }); } catch (e) { throw credentialFailure(e, `credential "${name}"`); }
    if (inj) return { headers: inj.headers, query: inj.query, credential: inj.credential };
    return this.#injectCalleeToken(name, identity);
  }

  async #injectCalleeToken(name: string, identity: Identity): Promise<CalleeInjection> {
    try {
      const inj = await this.injector.injectionFor(name, { principal: identity.agent });
      if (inj.credential.kind === 'on_behalf_of') this.identitySeen.note(identity.agent.name, 'on_behalf_of');
      return { headers: inj.headers, query: inj.query, credential: inj.credential };
    } catch (e) {
      throw credentialFailure(e, `credential "${name}"`);
    }
  }

  /** Outbound auth for an MCP server or HTTP tool credential: injectCallee's, plus env for stdio servers. */
  async injectTool(name: string, identity: Identity): Promise<{ headers: Record<string, string>; query?: Record<string, string>; env?: Record<string, string>; credential: { name: string; version: number }; perCaller: boolean }> {
    const inj = await this.injectCallee(name, identity);
    try {
      const env = await this.injector.environmentFor(name, name.toUpperCase().replace(/[^A-Z0-9]/g, '_'), { principal: identity.agent });
      return { ...inj, env: env.env, perCaller: perPrincipal(inj.credential.kind) };
    } catch (e) {
      throw credentialFailure(e, `credential "${name}"`);
    }
  }

  /**
   * Remove every credential (and its encodings) from text bound for an agent, the audit trail or
   * a log; a hit is evidence. `max`: clip to that many characters, after scrubbing (a clipped
   * secret would no longer match its pattern).
   */
  scrub(text: string, max?: number): string {
    const sc = this.vault.scrubber();
    let out = text;
    if (sc.size > 0) {
      const r = sc.scrub(text);
      if (r.leaked.length) this.#leak(r.leaked);
      out = r.text;
    }
    return max === undefined ? out : clipAfterScrub(out, max);
  }

  /** What the egress door of every response scrubs with (see access/egress.ts). */
  /** The long-lived streams open on this server, of every plane (MCP listen and GET streams, A2A relays): a shutdown's drain ends them (lib/open-streams.ts). */
  readonly streams = new OpenStreams();
  readonly egress: ScrubSource = { scrubber: () => this.vault.scrubber(), leaked: (names, requestId) => this.#leak(names, requestId) };


  /** Event-level stream scrubber, or null when no credential is active (zero cost). */
  eventScrubber(): EventScrubber | null {
    const sc = this.vault.scrubber();
    return sc.size ? createEventScrubber(() => sc.stream((names) => this.#leak(names)), (texts) => sc.scrubJoined(texts).texts) : null;
  }

  #leak(names: readonly string[], requestId = '-'): void {
    this.log.warn({ event: 'credential_leak', credentials: names, requestId }, 'an upstream response contained a credential; it was redacted');
    this.audit?.record({ type: 'credential_leak', request_id: requestId, credential: { names: [...names] }, outcome: { status: 'redacted' } });
  }

  /** A JWT-SVID minted in exchange for a virtual key dies with that key. */
  isTokenRevoked(v: VerifiedSvid): boolean {
    const keyId = v.claims.aam_key;
    if (typeof keyId !== 'string') return false;
    const k = this.keyBook.get(keyId);
    return !k || k.revokedAt !== null;
  }

  /**
   * Re-read the config; on any error keep the last good one. Returns the error text, or null.
   * `actor` (file-watch, SIGHUP, admin, a person) is named in the admin event of a change or failure.
   * Validation blocks this thread; the server reloads with reloadInBackground.
   */
  reload(actor: AdminActor = 'system'): string | null {
    try {
      const sources = readConfigSources(this.options.configPath);
      if (this.#unchanged(sources, actor)) return null;
      return this.#apply((this.#parseConfig ?? parseConfigIsolated)(sources), actor);
    } catch (e) {
      return this.#refused(e, actor);
    }
  }

  /**
   * reload(), with the validation off the event loop (file watcher, SIGHUP, admin API): requests
   * are served meanwhile by the running config. Reloads run one at a time, in the order asked.
   */
  reloadInBackground(actor: AdminActor = 'system'): Promise<string | null> {
    const run = async (): Promise<string | null> => {
      let sources: readonly ConfigSource[] = [];
      try {
        sources = readConfigSources(this.options.configPath);
        if (this.#unchanged(sources, actor)) return null;
        return this.#apply(this.#parseConfig ? this.#parseConfig(sources) : await parseConfigInBackground(sources), actor);
      } catch (e) {
        // Policy compilation's issues (CEL, rule conflicts) name no line until looked up in the texts.
        return this.#refused(e instanceof ConfigError ? new ConfigError(await linesInBackground(sources, e.issues)) : e, actor);
      }
    };
    const next = this.#reloading.then(run);
    this.#reloading = next;
    return next;
  }

  #parseConfig: ((sources: readonly ConfigSource[]) => ConfigSet) | undefined;
  #reloading: Promise<unknown> = Promise.resolve();

  /** The same text as the running config (a spurious watch event costs one read, no validation). */
  #unchanged(sources: readonly ConfigSource[], actor: AdminActor): boolean {
    const digest = configDigest(sources);
    if (digest !== this.compiled.set.digest) return false;
    // A reload someone asked for (admin API, SIGHUP) is their action even when the file watcher
    // applied the change first: it is on record under their name, marked unchanged.
    if (actor !== 'file-watch' && actor !== 'system') this.adminEvent('config_reloaded', this.compiled.version, actor, { digest, unchanged: true });
    return true;
  }

  #apply(set: ConfigSet, actor: AdminActor): null {
    const prevSet = this.compiled.set;
    this.vault.reload(set);
    let next: Compiled;
    try { next = compileConfig(set, this.vault, this.compiled); } catch (e) { this.vault.reload(prevSet); throw e; }
    const previous = this.compiled;
    this.compiled = next; // atomic swap: in-flight requests keep the object they started with
    retireDispatchers(previous.providers, next.providers);
    this.jwt?.update(trustDomainsFromConfig(set));
    this.tls?.reload(set);
    this.cache.pruneRoutes(next.routes.values());
    this.tools?.http.reload(set);
    this.tools?.mcp.reload(set).catch((e: unknown) => this.log.error({ err: e }, 'MCP gateway reload failed'));
    this.log.info({ event: 'config_reloaded', version: next.version }, 'config reloaded');
    this.adminEvent('config_reloaded', next.version, actor, { digest: set.digest, previous: prevSet.digest });
    return null;
  }

  #refused(e: unknown, actor: AdminActor): string {
    const msg = e instanceof ConfigError ? formatIssues(e.issues) : (e as Error).message;
    this.log.error({ event: 'config_reload_failed', error: msg }, 'config reload failed; keeping the last good config');
    this.adminEvent('config_reload_failed', this.compiled.version, actor, { error: msg.slice(0, 2000) }, 'error');
    return msg;
  }

  /** An administrative action taken by the gateway itself (reload, credential rotation) for the audit trail. */
  adminEvent(action: string, target: string, actor: AdminActor, detail: Record<string, string | number | boolean> = {}, status: number | string = 200): void {
    this.audit?.record(adminEvent(action, target, actor, detail, status));
  }

  #closing: Promise<void> | undefined;

  /** Idempotent: a second call (the gateway's close after a drain closed the runtime) waits for the first. */
  close(): Promise<void> {
    return this.#closing ??= this.#close();
  }

  async #close(): Promise<void> {
    this.usage.close();
    await this.identitySeen.flush();
    this.vault.close();
    this.keyBook.close();
    this.cache.close();
    await this.scanThread.close();
    this.responses.flush?.(); // stored Responses still held in memory (drained requests put them)
    this.a2aTasks.flush?.();
    this.a2aPushRoutes.flush?.();
    // After the drain: what is still open to a provider is idle (or a call the drain cut).
    for (const p of this.compiled.providers.values()) await p.dispatcher?.destroy();
    this.db.close();
    if (this.fleet) {
      await this.#heartbeat?.stop();
      this.fleet.pins.close();
      await this.fleet.pins.flush();
      await this.fleet.credentials.close();
      this.fleet.issuerKeys.close();
      await this.fleet.usage.settled();
      await this.fleet.limiter.close();
      await this.fleet.fleet.close();
    }
  }
}
