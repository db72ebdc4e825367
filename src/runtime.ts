// The one runtime object: the compiled config (swapped atomically on reload) and the long-lived
// services. Everything mutable in a running gateway hangs off this object; nothing is global.
import { loadConfig, ConfigError, formatIssues } from './config/load.ts';
import type { ConfigSet } from './config/schema.ts';
import { compilePolicies, type CompiledPolicies } from './policy/compile.ts';
import { BudgetLedger, RateLimiter } from './policy/limits.ts';
import { compileProviders, compileRoutes, type ProviderRuntime, type Route } from './gateway/routes.ts';
import { UsageRecorder } from './gateway/usage.ts';
import { KeyStore } from './identity/keys.ts';
import { openDatabase } from './store/sqlite.ts';
import { createLogger, type Logger } from './observability/log.ts';
import type { DatabaseSync } from 'node:sqlite';
import { CredentialResolver, providerInjection } from './gateway/provider-auth.ts';
import { Scrubber, type StreamScrubber } from './credentials/scrub.ts';
import type { Injection } from './gateway/upstream.ts';
import type { Identity } from './identity/types.ts';
import type { JwtVerifier, VerifiedSvid } from './identity/jwt-svid.ts';
import { AamError } from './server/errors.ts';
import { buildAgentRegistry, type AgentRegistry } from './identity/registry.ts';
import type { Issuer } from './identity/issuer.ts';
import { createJoinTokenStore, type JoinTokenStore } from './identity/join-tokens.ts';
import { trustDomainsFromConfig } from './identity/jwks-cache.ts';
import type { McpGateway } from './tools/mcp-gateway.ts';
import type { HttpToolProxy } from './tools/http-tool.ts';

/** Evidence sink (the audit log); optional so tools like `aam validate` need none. */
export interface AuditSink { record(ev: Record<string, unknown>): void; recordDurable?(ev: Record<string, unknown>): Promise<unknown> }
export interface MetricsSink {
  decision(effect: string, agent: string): void;
  limited(code: string, agent: string): void;
  modelCall(agent: string, team: string | undefined, route: string, provider: string, status: number, latencyMs: number, usage: { inputTokens: number; outputTokens: number } | undefined, cost: number | null): void;
}

export interface Compiled {
  set: ConfigSet;
  /** Short config digest stamped on decisions, usage and audit. */
  version: string;
  providers: Map<string, ProviderRuntime>;
  routes: Map<string, Route>;
  policies: CompiledPolicies;
  registry: AgentRegistry;
  /** Every active credential value and its encodings: scrubbed from whatever reaches an agent. */
  scrubber: Scrubber;
}

export interface RuntimeOptions {
  configPath: string;
  dataDir: string;
  adminToken?: string;
  /** Max request body in bytes (413 above). */
  maxBodyBytes?: number;
  /** Idle time before an SSE comment keeps a silent stream alive. */
  sseKeepaliveMs?: number;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
}

export function compileConfig(set: ConfigSet, creds: CredentialResolver, previous?: Compiled): Compiled {
  const version = set.digest.slice(0, 12);
  const providers = compileProviders(set, (name) => creds.problem(name, set), previous?.providers);
  const routes = compileRoutes(set, providers, previous?.routes);
  const secrets = [...set.credentials.keys()].filter((n) => creds.problem(n, set) === null).map((name) => ({ name, value: creds.value(name, set) }));
  return { set, version, providers, routes, policies: compilePolicies(set, version), registry: buildAgentRegistry(set), scrubber: new Scrubber(secrets) };
}

const PASS_THROUGH = { push: (s: string) => s, end: () => '' };

export class Runtime {
  compiled: Compiled;
  readonly options: Required<Omit<RuntimeOptions, 'adminToken' | 'log' | 'env'>> & { adminToken: string | null };
  readonly log: Logger;
  readonly db: DatabaseSync;
  readonly keys: KeyStore;
  readonly usage: UsageRecorder;
  readonly ledger: BudgetLedger;
  readonly rates: RateLimiter;
  readonly creds: CredentialResolver;
  readonly startedAt = Date.now();
  ready = false;
  audit: AuditSink | null = null;
  metrics: MetricsSink | null = null;
  jwt: JwtVerifier | null = null;
  issuer: Issuer | null = null;
  /** Tool plane (set by the server): reloaded with the config. */
  tools: { mcp: McpGateway; http: HttpToolProxy } | null = null;
  /** Audiences accepted in JWT-SVIDs (the first is the one aam mints for itself). */
  audience: string[] = ['aam'];
  readonly joinTokens: JoinTokenStore;
  tls: { clientCa: boolean } | null = null;
  /** Request id sequence (cheap unique ids, no crypto per request). */
  requestSeq = 0;

  constructor(opts: RuntimeOptions) {
    this.log = opts.log ?? createLogger();
    this.options = {
      configPath: opts.configPath, dataDir: opts.dataDir, adminToken: opts.adminToken ?? null,
      maxBodyBytes: opts.maxBodyBytes ?? 10 * 1024 * 1024, sseKeepaliveMs: opts.sseKeepaliveMs ?? 15_000,
    };
    this.creds = new CredentialResolver(opts.env ?? process.env);
    const set = loadConfig(opts.configPath); // throws ConfigError: refuse to start on a bad config
    this.db = openDatabase(opts.dataDir);
    this.keys = new KeyStore(this.db);
    this.usage = new UsageRecorder(this.db);
    this.ledger = new BudgetLedger({ onAlert: (a) => this.log.warn({ event: 'budget_alert', ...a }, `budget ${a.key} crossed ${a.threshold}% of its ${a.period} limit`) });
    this.rates = new RateLimiter();
    this.joinTokens = createJoinTokenStore(this.db);
    this.compiled = compileConfig(set, this.creds);
    for (const p of this.compiled.providers.values()) {
      if (!p.enabled) this.log.info({ provider: p.name, reason: p.disabledReason }, `provider ${p.name} is off`);
    }
    this.seedBudgets();
  }

  /** Start budgets from what was already spent this day/month (survives restarts). */
  seedBudgets(now = new Date()): void {
    const dayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    for (const set of this.compiled.policies.sets.values()) {
      for (const b of set.limits.budgets) {
        const [col, value] = b.key.startsWith('team:') ? ['team' as const, b.key.slice(5)] : ['agent' as const, b.key.slice(6)];
        this.ledger.load(b.key, 'daily', this.usage.spendSince(col, value, dayStart).usd, b, now);
        this.ledger.load(b.key, 'monthly', this.usage.spendSince(col, value, monthStart).usd, b, now);
      }
    }
  }

  /** Outbound auth for a provider (the agent's own credential is never forwarded). */
  async injectProvider(p: ProviderRuntime, _identity: Identity): Promise<Injection> {
    if (!p.credential) return { headers: {} };
    const set = this.compiled.set;
    const problem = this.creds.problem(p.credential, set);
    if (problem) throw new AamError(502, 'upstream_error', `provider ${p.name} has no usable credential: ${problem}`);
    return providerInjection(p, this.creds.value(p.credential, set), p.credential);
  }

  /** Outbound auth for an MCP server or HTTP tool credential (header, or env for stdio servers). */
  async injectTool(name: string, _identity: Identity): Promise<{ headers: Record<string, string>; env?: Record<string, string>; credential: { name: string; version: number } }> {
    const set = this.compiled.set;
    const c = set.credentials.get(name);
    const problem = this.creds.problem(name, set);
    if (!c || problem) throw new AamError(502, 'upstream_error', `credential "${name}" is not usable: ${problem}`);
    const value = this.creds.value(name, set);
    const header = c.spec.inject?.header ?? 'authorization';
    const prefix = c.spec.inject?.prefix ?? (header === 'authorization' ? 'Bearer ' : '');
    return { headers: { [header]: prefix + value }, env: { [name.toUpperCase().replace(/[^A-Z0-9]/g, '_')]: value }, credential: { name, version: 1 } };
  }

  scrub(text: string): string {
    return this.compiled.scrubber.size ? this.compiled.scrubber.scrub(text).text : text;
  }

  streamScrubber(): Pick<StreamScrubber, 'push' | 'end'> {
    return this.compiled.scrubber.size ? this.compiled.scrubber.stream() : PASS_THROUGH;
  }

  /** A JWT-SVID minted in exchange for a virtual key dies with that key. */
  isTokenRevoked(v: VerifiedSvid): boolean {
    const keyId = v.claims.aam_key;
    if (typeof keyId !== 'string') return false;
    const k = this.keys.get(keyId);
    return !k || k.revokedAt !== null;
  }

  /** Re-read the config; on any error keep the last good one. Returns the error text, or null. */
  reload(): string | null {
    try {
      const set = loadConfig(this.options.configPath);
      if (set.digest === this.compiled.set.digest) return null;
      const next = compileConfig(set, this.creds, this.compiled);
      this.compiled = next; // atomic swap: in-flight requests keep the object they started with
      this.jwt?.update(trustDomainsFromConfig(set));
      this.tools?.http.reload(set);
      this.tools?.mcp.reload(set).catch((e: unknown) => this.log.error({ err: e }, 'MCP gateway reload failed'));
      this.log.info({ event: 'config_reloaded', version: next.version }, 'config reloaded');
      return null;
    } catch (e) {
      const msg = e instanceof ConfigError ? formatIssues(e.issues) : (e as Error).message;
      this.log.error({ event: 'config_reload_failed', error: msg }, 'config reload failed; keeping the last good config');
      return msg;
    }
  }

  async close(): Promise<void> {
    this.usage.flush();
    this.db.close();
  }
}
