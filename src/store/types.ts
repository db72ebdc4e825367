// The store seam: one interface per kind of state, each with an embedded implementation (SQLite +
// memory, one process) and a fleet one (PostgreSQL + Redis, many replicas). The runtime picks one
// set at start (AAM_DATABASE_URL / AAM_REDIS_URL); planes and the access path only see these
// interfaces. Reads on the hot path stay synchronous (in-memory mirrors); what must be shared at
// the instant of the request (budget reservations, rate counters) may return a promise, which the
// embedded implementation never does.

// ---- Virtual keys -------------------------------------------------------------------------------

export interface KeyRecord {
  id: string;
  agent: string;
  name: string | null;
  createdAt: string;
  revokedAt: string | null;
  expiresAt: string | null;
}

export interface KeyListing extends KeyRecord { secrets: number; lastRotatedAt: string | null }

export type KeyAuth =
  | { ok: true; key: KeyRecord; generation: string }
  | { ok: false; reason: string };

/** Virtual keys: reads answer from memory (the hot path); changes are durable before they resolve. */
export interface KeyBook {
  authenticate(secret: string, now?: number): KeyAuth;
  generationProblem(keyId: string, generation: string | undefined, now?: number): string | undefined;
  generationValidUntil(generation: string): number | null;
  get(id: string): KeyRecord | undefined;
  list(): Promise<KeyListing[]>;
  create(agent: string, opts?: { name?: string; expiresAt?: string }): Promise<{ key: KeyRecord; secret: string }>;
  rotate(id: string, graceSeconds: number): Promise<{ key: KeyRecord; secret: string }>;
  revoke(id: string): Promise<KeyRecord>;
  close(): void;
}

// ---- Budgets and rate limits --------------------------------------------------------------------

export type Period = 'daily' | 'monthly';

/**
 * A refused reservation fires the 100 % alert (when configured) even if settled spend never reaches
 * it exactly, since worst-case estimates stop requests short of it; but only for a request that an
 * unspent budget would admit: one asking more than the whole limit says nothing about what is left
 * (its refusal tells the caller to ask for less). Embedded ledger and fleet script alike.
 */
export function refusalExhausts(amountUsd: number, limitUsd: number): boolean {
  return amountUsd <= limitUsd + 1e-9;
}

/** Budget amounts in USD; a ScopedBudget from limitsFor() fits as is. */
export interface BudgetLimits { daily_usd?: number; monthly_usd?: number; alert_at?: readonly number[] }

export interface RateLimits { rpm?: number; tpm?: number }

export interface BudgetAlert {
  key: string;
  period: Period;
  /** Threshold percent that was crossed (e.g. 80). */
  threshold: number;
  spent: number;
  limit: number;
  /** Start of the UTC window the alert belongs to. */
  windowStart: Date;
}

export interface AdmitRequest {
  /** Rate-limited keys (agent, virtual key), checked and counted all-or-nothing. */
  rates: ReadonlyArray<{ key: string; limits: RateLimits }>;
  tokens: number;
  /** Budget keys (agent:, team:), reserved all-or-nothing. */
  budgets: ReadonlyArray<{ key: string; limits: BudgetLimits }>;
  amountUsd: number;
  /**
   * Fleet: the shared response cache's exact entry to read in the same script (one round trip on
   * cached routes). A live entry there is a hit: it costs $0, so amountUsd is not reserved.
   */
  cacheKey?: string;
}

/** A shared response cache entry: its text (a CachedEntry, JSON) and when it expires. */
export interface SharedCacheEntry { entry: string; expiresAt: number }

/** What settle/release need to undo or charge an admission; opaque to callers. */
export interface Ticket { readonly kind: 'ticket' }

export type AdmitResult =
  /** cached: the entry cacheKey named (null: none); undefined when it was not read. */
  | { ok: true; ticket: Ticket | null; cached?: SharedCacheEntry | null }
  | { ok: false; code: 'rate_limited'; limit: 'rpm' | 'tpm'; key: string; retryAfterSeconds: number }
  | { ok: false; code: 'budget_exceeded'; key: string; resetAt: Date; spent: number; limit: number; period: Period };

/**
 * Admission: rate limits then budget, checked and counted atomically (embedded: synchronously on
 * the one thread; fleet: one Redis script). settle/release never wait (off the response path).
 */
export interface Limiter {
  admit(req: AdmitRequest): AdmitResult | Promise<AdmitResult>;
  /** Charge the real cost (null = unknown: the reserved estimate is charged) and correct tpm. */
  settle(ticket: Ticket, costUsd: number | null, tokens: number | null): void;
  /** Give the reservation back (no upstream cost was incurred). */
  release(ticket: Ticket): void;
}

// ---- The set ------------------------------------------------------------------------------------

export interface StoreHealth {
  kind: 'embedded' | 'fleet';
  ok: boolean;
  /** Each backing store and whether it answers ('sqlite', 'postgres', 'redis'). */
  stores: Record<string, { ok: boolean; error?: string }>;
}

/** Raised by a fleet store that cannot answer; the access path turns it into 503 store_unavailable. */
export class StoreUnavailable extends Error {
  readonly store: 'postgres' | 'redis';
  constructor(store: 'postgres' | 'redis', message: string) {
    super(message);
    this.name = 'StoreUnavailable';
    this.store = store;
  }

  /** The store's name as messages give it. */
  get storeName(): string { return this.store === 'redis' ? 'Redis' : 'PostgreSQL'; }
}

/** Error codes of a PostgreSQL connection that failed or a query it did not answer in time (Node's socket errors, postgres.js's own). */
const PG_CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'QUERY_TIMEOUT']);

/**
 * The fleet's PostgreSQL could not answer, rather than refusing the query: a connection failure,
 * a query past the replica's deadline (postgres.js queues queries while it reconnects, so a server
 * that is down shows as QUERY_TIMEOUT after 5 s), or SQLSTATE class 08 (connection exception), 53
 * (insufficient resources, e.g. too many connections), 57P (shutting down, starting up) or 57014
 * (canceled: the deadline's cancel request).
 */
export function postgresUnreachable(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (PG_CONNECTION_CODES.has(code) || /^(08|53)[0-9A-Z]{3}$|^57P[0-9A-Z]{2}$|^57014$/.test(code));
}

// ---- MCP sessions -------------------------------------------------------------------------------

/** An MCP (2025-11-25 generation) session: whom it is bound to. Any replica may serve it. */
export interface McpSessionRecord {
  id: string;
  /** SPIFFE ID of the identity that opened it: only that identity may use it. */
  owner: string;
  /** null: opened on /mcp; else on /mcp/<server>. */
  scope: string | null;
  /** Trust domain whose cap counts it (identities no Agent registers); null for registered Agents. */
  domain: string | null;
  /** The virtual key (and which of its secrets) it was opened with, if any: the session dies with it. */
  keyId?: string;
  keyGeneration?: string;
  /** The level its client set with logging/setLevel (held with hold(id, LOG_LEVEL_HOLD, level)); read back by touch(). */
  logLevel?: string;
}

/** The hold() key a session's logging/setLevel is kept under (not a URI: no subscription's holder is overwritten). */
export const LOG_LEVEL_HOLD = 'logging/setLevel';

/** Open-session caps (counted over every replica) and the idle time after which a session ends. */
export interface McpSessionCaps { total: number; perIdentity: number; perDomain: number; idleMs: number }

export type McpSessionOpened = { ok: true } | { ok: false; limit: 'identity' | 'domain' | 'total'; open: number };

/**
 * Registry of open MCP sessions (embedded: memory; fleet: Redis), so a session opened on one
 * replica continues on any other. Each replica keeps its own SDK objects and upstream connections
 * and rebuilds them from the record. A fleet registry that cannot answer throws StoreUnavailable.
 */
export interface McpSessionRegistry {
  /** Count a new session against the caps and record it, all or nothing. */
  open(rec: McpSessionRecord, caps: McpSessionCaps): McpSessionOpened | Promise<McpSessionOpened>;
  /** The record with its idle timer restarted, or null once it was closed or expired. */
  touch(id: string, idleMs: number): McpSessionRecord | null | Promise<McpSessionRecord | null>;
  /** End it (DELETE, revoked key): no replica serves it any more. */
  close(id: string): void | Promise<void>;
  /**
   * A notification for the session's client, handed to onNotify on every replica (one process: at
   * once; a fleet: over Redis pub/sub), so the replica holding the client's stream sends it even
   * when the subscription it answers was made on another one. Lost when Redis is down (like the
   * stream); notes that change state (unsubscribed, closed) are backed by hold()/close(), which a
   * replica re-reads after onResync. Resolves once Redis took it (fleet): every replica has it then.
   */
  notify(id: string, message: McpSessionNote): void | Promise<void>;
  onNotify(fn: (id: string, message: McpSessionNote) => void): void;
  /**
   * Which replica holds the session's subscription to `uri` now (null: none), unless the session
   * is gone: the state a note announces, so a replica that missed the note can read it.
   */
  hold(id: string, uri: string, holder: string | null): void | Promise<void>;
  /** Who holds each of the session's subscriptions to `uris` (null: nobody), or null once the session is gone. */
  holders(id: string, uris: readonly string[]): Array<string | null> | null | Promise<Array<string | null> | null>;
  /** Run fn when notes may have been lost (a fleet's pub/sub reconnected; never in one process). */
  onResync(fn: () => void): void;
  /** Fleet only: dropped 2026-07-28 listen streams' catch-up, so a caller's next listen on any replica gets it. */
  readonly listenAway?: ListenAwayStore;
}

/**
 * A dropped 2026-07-28 subscriptions/listen stream as the fleet keeps it, under its caller (SPIFFE
 * ID) and endpoint, for the grace (AAM_MCP_STREAM_GRACE): what it asked for and what it missed
 * since it dropped (one entry per list, one per URI; `unknown`: past the cap, so everything it names).
 */
export interface ListenAwayRecord {
  /** The gateway (replica) that holds its upstream watches: released when another takes it over. */
  holder: string;
  /** Its filter (lists and URIs asked for): a new stream with the same one is preferred. */
  sig: string;
  want: string[];
  subs: string[];
  lists: string[];
  uris: string[];
  unknown: boolean;
}

/**
 * Fleet store of dropped listen streams (Redis): kept by the replica that held the stream, claimed
 * atomically by the replica the caller listens on next, so its catch-up is sent once, on one
 * stream, to that caller only. Calls throw StoreUnavailable when Redis cannot answer.
 */
export interface ListenAwayStore {
  /** Keep a dropped stream `id` of caller `who` on endpoint `scope` for ttlMs. */
  put(who: string, scope: string | null, id: string, rec: ListenAwayRecord, ttlMs: number): Promise<void>;
  /** It missed a list change ('list') or a resource update ('uri'); past `max` URIs it counts as unknown. Nothing once it is gone. */
  missed(who: string, scope: string | null, id: string, kind: 'list' | 'uri', value: string, max: number): Promise<void>;
  /**
   * The kept stream a new one of the same caller and endpoint takes over (the oldest with the same
   * filter, else the latest), with what it missed so far; no one else can claim it after this. It
   * stays, emptied, collecting what its holder still hears, until take().
   */
  claim(who: string, scope: string | null, sig: string): Promise<{ id: string; rec: ListenAwayRecord } | null>;
  /** Remove it: what it missed since it was claimed (null: gone already). */
  take(who: string, scope: string | null, id: string): Promise<ListenAwayRecord | null>;
  /** Tell every replica `id` was taken over (its holder releases its upstream watches). */
  release(id: string): Promise<void>;
  onReleased(fn: (id: string) => void): void;
}

/** A notification relayed to a session's stream (McpSessionRegistry.notify). */
export interface McpSessionNote { method: string; params: Record<string, unknown> }
/** The session id of a note for every session (a server's list_changed heard on one replica). */
export const ALL_SESSIONS = '*';

// ---- Response cache -----------------------------------------------------------------------------

/** A semantic cache entry as the replicas share it (the embedding unit length, float32). */
export interface SharedSemanticEntry {
  scopeKey: string;
  route: string;
  routeVersion: string;
  context: string;
  embedding: Float32Array;
  /** The CachedEntry, JSON. */
  entry: string;
  expiresAt: number;
}

/**
 * The fleet's shared response cache (Redis): exact entries by key, and semantic entries
 * broadcast to every replica's in-memory index. A cache that cannot answer throws
 * StoreUnavailable from get(); writes never throw (a lost write is a later miss).
 */
export interface SharedCache {
  get(key: string): Promise<SharedCacheEntry | null>;
  set(key: string, entry: string, expiresAt: number): void;
  publishSemantic(e: SharedSemanticEntry): void;
  /** Semantic entries stored by other replicas (and, at start, the recent ones still live). */
  onSemantic(fn: (e: SharedSemanticEntry) => void): void;
  close(): void;
}

// ---- A2A task ownership -------------------------------------------------------------------------

/** Who created an A2A task or context through aam (only that caller may use it). */
export interface TaskOwner {
  /** SPIFFE ID of the caller that created it. */
  caller: string;
  /** The skill of the call that created it: later task calls are decided as that skill. */
  skill: string;
}

export interface TaskIds { tasks: string[]; contexts: string[] }

/**
 * A2A task and context ids bound to the caller that created them (embedded: memory; fleet:
 * Redis), so any replica answers a task call and none answers another caller's. Bounded and
 * expiring. A fleet store that cannot answer throws StoreUnavailable (never "not found").
 */
export interface TaskOwnerStore {
  get(callee: string, kind: 'task' | 'context', id: string): TaskOwner | undefined | Promise<TaskOwner | undefined>;
  /** Bind ids to a caller; an id already owned by another caller keeps its owner. Durable once it resolves. */
  bind(callee: string, ids: TaskIds, caller: string, skill: string): void | Promise<void>;
  /** Writes what is still held in memory now (shutdown drain); absent where writes go through. */
  flush?(): void;
}

/**
 * A key ring's storage (aam's issuer, identity/issuer.ts), as the JSON text of its state: a file
 * of the data dir, or a sealed fleet row. update() is read-modify-write under the store's lock
 * (a fleet row lock), so two rotations at once cannot lose one of their keys.
 */
export interface KeyRingStore {
  /** Named in error messages (a file path, or the fleet table and ring). */
  readonly where: string;
  /** How to start over, for the message when the ring is unusable. */
  readonly reset: string;
  read(): Promise<string | undefined>;
  /** Store the first state unless a ring exists already; false when another process won the race. */
  createIfAbsent(text: string): Promise<boolean>;
  update(fn: (text: string | undefined) => string): Promise<void>;
}

/** One usage rollup row: calls per minute and dimensions ('' for "none"); sums null until reported. */
export interface UsageRollupRow {
  minute: number;
  agent: string; team: string; keyId: string; route: string; provider: string; model: string;
  status: number; stream: number; cache: string;
  requests: number;
  inputTokens: number | null; outputTokens: number | null;
  /** Prompt-cache reads and writes (parts of inputTokens). */
  cachedTokens: number | null; cacheWriteTokens: number | null;
  costUsd: number | null;
  unknownCost: number;
  latencySum: number;
  latencyMax: number;
}

/** What usage can be grouped by ('key': the virtual key the calls came with). */
export const USAGE_GROUPINGS = ['agent', 'team', 'model', 'route', 'key'] as const;
export type UsageGrouping = typeof USAGE_GROUPINGS[number];

/** The rollup column (SQL, both stores) a grouping reads; '' dimensions come back as NULL. */
export function usageGroupColumn(by: UsageGrouping): string {
  return by === 'agent' || by === 'route' ? by : `nullif(${by === 'key' ? 'key_id' : by}, '')`;
}

/**
 * A2A push routes (a2a/push.ts) by id, as JSON text: in memory for one process, in Redis for a
 * fleet, so a config registered through one replica delivers when the callee notifies another.
 */
export interface PushRouteStore {
  put(id: string, json: string, ttlMs: number): void | Promise<void>;
  get(id: string): string | undefined | Promise<string | undefined>;
  /** Writes what is still held in memory now (shutdown drain); absent where writes go through. */
  flush?(): void;
}
