// Fleet store, durable half: PostgreSQL through `postgres` (postgres.js: pipelining, prepared
// statements and a pool built in; the fastest pure-JS client). Schema changes are versioned here,
// in code, and applied once per fleet under an advisory lock, so replicas starting together do
// not race; a replica refuses a schema newer than it knows instead of writing to it.
import postgres, { type ISql, type Sql } from 'postgres';
import type { PostgresTls } from './fleet-tls.ts';

export type { Sql } from 'postgres';

export interface Migration { version: number; name: string; sql: string }

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1, name: 'virtual keys',
    // seq: the order of changes, assigned under a transaction lock so commit order = seq order and
    // replicas can follow changes with "seq > last seen".
    sql: `CREATE SEQUENCE key_seq;
      CREATE TABLE keys (id text PRIMARY KEY, agent text NOT NULL, name text, created_at text NOT NULL,
        revoked_at text, expires_at text, seq bigint NOT NULL);
      CREATE INDEX keys_seq ON keys (seq);
      CREATE TABLE key_secrets (hash text PRIMARY KEY, key_id text NOT NULL REFERENCES keys (id),
        created_at text NOT NULL, expires_at bigint);
      CREATE INDEX key_secrets_key ON key_secrets (key_id);`,
  },
  {
    version: 2, name: 'settled budget spend',
    sql: `CREATE TABLE budget_spend (key text NOT NULL, period text NOT NULL, window_start bigint NOT NULL,
        spent_usd double precision NOT NULL, PRIMARY KEY (key, period, window_start));`,
  },
  {
    version: 3, name: 'stored responses (Responses API)',
    sql: `CREATE TABLE responses (id text PRIMARY KEY, agent text NOT NULL, previous_id text, input text NOT NULL,
        response text NOT NULL, expires_at bigint NOT NULL);
      CREATE INDEX responses_expiry ON responses (expires_at);
      CREATE TABLE response_items (agent text NOT NULL, item_id text NOT NULL,
        response_id text NOT NULL REFERENCES responses (id) ON DELETE CASCADE, PRIMARY KEY (agent, item_id));
      CREATE INDEX response_items_response ON response_items (response_id);`,
  },
  {
    version: 4, name: 'audit trail (one hash chain per replica start, signed fleet checkpoints)',
    // body is the sealed event text (the bytes its hash covers); ts/type/request_id/agent are copies for queries.
    sql: `CREATE TABLE audit_chains (replica text PRIMARY KEY, started_at timestamptz NOT NULL DEFAULT now(),
        head_seq bigint NOT NULL DEFAULT 0, head_hash text NOT NULL);
      CREATE TABLE audit_events (replica text NOT NULL REFERENCES audit_chains (replica), seq bigint NOT NULL,
        ts text NOT NULL, type text NOT NULL, request_id text NOT NULL, agent text, prev_hash text NOT NULL,
        hash text NOT NULL, body text NOT NULL, PRIMARY KEY (replica, seq));
      CREATE INDEX audit_events_ts ON audit_events (ts);
      CREATE INDEX audit_events_agent ON audit_events (agent, ts);
      CREATE INDEX audit_events_request ON audit_events (request_id);
      CREATE TABLE audit_keys (key_id text PRIMARY KEY, public_pem text NOT NULL, private_enc text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE audit_checkpoints (id bigserial PRIMARY KEY, time text NOT NULL, heads text NOT NULL,
        key_id text NOT NULL REFERENCES audit_keys (key_id), signature text NOT NULL);`,
  },
  {
    version: 5, name: 'held tool calls (approvals)',
    sql: `CREATE TABLE tool_approvals (id text PRIMARY KEY, status text NOT NULL, spiffe_id text NOT NULL, agent text NOT NULL,
        plane text NOT NULL, target text NOT NULL, resource text NOT NULL, action text NOT NULL, args_digest text NOT NULL,
        policy text NOT NULL, rule int NOT NULL, reason text NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL,
        decided_by text, decided_at bigint, args_review text);
      CREATE INDEX tool_approvals_call ON tool_approvals (spiffe_id, plane, target, args_digest, status);
      CREATE INDEX tool_approvals_created ON tool_approvals (created_at);`,
  },
  {
    version: 6, name: 'audit sinks (cursors per chain) and retention (signed cut per chain)',
    // audit_sinks: one row per sink, locked by the replica delivering for it (no two replicas send
    // the same events); audit_retention: signed (replica, seq, hash) where each pruned chain now starts.
    sql: `CREATE TABLE audit_sinks (name text PRIMARY KEY, checkpoint_id bigint NOT NULL DEFAULT 0,
        updated timestamptz NOT NULL DEFAULT now());
      CREATE TABLE audit_sink_chains (sink text NOT NULL REFERENCES audit_sinks (name), replica text NOT NULL,
        seq bigint NOT NULL, PRIMARY KEY (sink, replica));
      CREATE TABLE audit_retention (id bigserial PRIMARY KEY, time text NOT NULL, cuts text NOT NULL,
        key_id text NOT NULL REFERENCES audit_keys (key_id), signature text NOT NULL);
      ALTER TABLE audit_chains ADD COLUMN base_seq bigint NOT NULL DEFAULT 0, ADD COLUMN base_hash text;`,
  },
  {
    version: 7, name: 'accepted tool definitions (rug-pull pins)',
    // seq: order of changes (written under a transaction lock), so replicas follow "seq > last seen".
    sql: `CREATE SEQUENCE tool_pin_seq;
      CREATE TABLE tool_pins (server text NOT NULL, tool text NOT NULL, accepted_digest text NOT NULL, accepted_def text NOT NULL,
        current_digest text NOT NULL, current_def text NOT NULL, accepted_by text, accepted_at text NOT NULL, seq bigint NOT NULL,
        PRIMARY KEY (server, tool));
      CREATE INDEX tool_pins_seq ON tool_pins (seq);`,
  },
  {
    version: 8, name: 'stored credentials (AES-256-GCM parts under the master key)',
    sql: `CREATE TABLE credential_versions (name text NOT NULL, version int NOT NULL, nonce bytea NOT NULL, ciphertext bytea NOT NULL,
        tag bytea NOT NULL, key_id text NOT NULL, created_at text NOT NULL, PRIMARY KEY (name, version));
      CREATE TABLE credential_meta (k text PRIMARY KEY, v text NOT NULL);
      CREATE TABLE credential_usage (name text PRIMARY KEY, last_used text NOT NULL);`,
  },
  {
    version: 9, name: 'issuer signing keys (sealed under the master key) and one-time join tokens',
    // issuer_keys: one row per key ring (JWT-SVID, on-behalf-of), its JSON state AES-GCM sealed.
    // join_tokens: SHA-256 of each token only; redemption is one conditional UPDATE (one winner fleet-wide).
    sql: `CREATE TABLE issuer_keys (ring text PRIMARY KEY, sealed text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
      CREATE TABLE join_tokens (id text PRIMARY KEY, hash text NOT NULL UNIQUE, agent text NOT NULL, created_at bigint NOT NULL,
        expires_at bigint NOT NULL, used_at bigint, revoked_at bigint, created_by text);`,
  },
  {
    version: 10, name: 'usage rollups (per minute and dimensions, every replica adding its own)',
    // Dimensions are NOT NULL ('' for "none"), as in the embedded table, so the upsert key is exact.
    sql: `CREATE TABLE usage_rollup (minute bigint NOT NULL, agent text NOT NULL, team text NOT NULL, key_id text NOT NULL,
        route text NOT NULL, provider text NOT NULL, model text NOT NULL, status int NOT NULL, stream int NOT NULL, cache text NOT NULL,
        requests bigint NOT NULL, input_tokens bigint, output_tokens bigint, cached_tokens bigint, cost_usd double precision,
        unknown_cost_requests bigint NOT NULL, latency_ms_sum double precision NOT NULL, latency_ms_max double precision NOT NULL,
        PRIMARY KEY (minute, agent, team, key_id, route, provider, model, status, stream, cache));
      CREATE INDEX usage_rollup_minute ON usage_rollup (minute);`,
  },
  {
    version: 11, name: 'audit query keys: trace id, decision and plane',
    // Copies of event fields, like agent and type, so the audit page's filters use an index instead
    // of parsing every body (a trace query scanned about 1 s per million events). Older rows are
    // filled from their bodies here, by the same rules as planeOf() and indexColumns() in audit/event.ts.
    sql: `ALTER TABLE audit_events ADD COLUMN trace_id text, ADD COLUMN decision text, ADD COLUMN plane text;
      UPDATE audit_events SET trace_id = b->>'trace_id',
        decision = coalesce(b#>>'{policy,decision}', CASE WHEN jsonb_typeof(b->'decision') = 'string' THEN b->>'decision' END, b#>>'{decision,effect}'),
        plane = CASE WHEN type = 'admin' THEN 'admin'
          WHEN type = 'model_call' OR (type = 'decision' AND b ? 'model') THEN 'model'
          WHEN type LIKE 'a2a%' OR (type = 'decision' AND b ? 'a2a') THEN 'a2a'
          WHEN type LIKE 'tool%' OR (type = 'decision' AND b ? 'tool') THEN 'tool' END
        FROM (SELECT replica AS r, seq AS s, body::jsonb AS b FROM audit_events) AS parsed WHERE replica = r AND seq = s;
      CREATE INDEX audit_events_trace ON audit_events (trace_id) WHERE trace_id IS NOT NULL;
      CREATE INDEX audit_events_decision ON audit_events (decision, ts);
      CREATE INDEX audit_events_plane ON audit_events (plane, ts);`,
  },
  {
    version: 12, name: 'audit events without the foreign key to their chain',
    // The foreign key made every INSERT of an event (the one PostgreSQL write a request awaits) look
    // up and share-lock its chain's row: ~25 of ~105 us of the backend's CPU per event (interleaved
    // one-row INSERTs, c=1, load ~12). A chain's row is written before any of its events (at open,
    // awaited), rows are never deleted, and verify names a signed chain whose row is gone.
    sql: `ALTER TABLE audit_events DROP CONSTRAINT IF EXISTS audit_events_replica_fkey;`,
  },
  {
    version: 13, name: 'usage rollups count prompt-cache writes',
    // Cache writes (Anthropic's cache_creation_input_tokens, Bedrock's cacheWriteInputTokens) beside
    // the reads (cached_tokens); rows written before have NULL, read as 0.
    sql: `ALTER TABLE usage_rollup ADD COLUMN cache_write_tokens bigint;`,
  },
  {
    version: 14, name: 'audit journal (an event committed alone skips the indexes until moved)',
    // An event committed alone (the c=1 shape: a request waits for that one commit) goes into
    // audit_journal, a heap without any index, and its replica moves it into audit_events (the
    // indexed table) in one statement every ~200 ms, off the request path (fleet-log.ts MOVE_OWN);
    // group commits (load) go straight to audit_events, where the move would cost more CPU than it
    // saves. Readers use audit_trail: both, a journal row hidden once its twin is in audit_events
    // (a retry after a lost reply goes to audit_events). Rows written before stay where they are.
    sql: `CREATE TABLE audit_journal (replica text NOT NULL, seq bigint NOT NULL, ts text NOT NULL, type text NOT NULL,
        request_id text NOT NULL, agent text, prev_hash text NOT NULL, hash text NOT NULL, body text NOT NULL,
        trace_id text, decision text, plane text)
        WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_insert_scale_factor = 0);
      CREATE VIEW audit_trail AS
        SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM audit_events
        UNION ALL
        SELECT j.replica, j.seq, j.ts, j.type, j.request_id, j.agent, j.prev_hash, j.hash, j.body, j.trace_id, j.decision, j.plane
          FROM audit_journal j WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.replica = j.replica AND e.seq = j.seq);`,
  },
  {
    version: 15, name: 'no audit journal: every event goes into audit_events',
    // The journal cost PostgreSQL more CPU than it saved latency: INSERT into it + the move's DELETE,
    // its INSERT into audit_events and the journal's vacuum against one INSERT into audit_events
    // (all PostgreSQL processes' CPU per event committed alone 122 -> 90 us, its commit no slower). Its rows are moved here, once; audit_trail, the view every reader uses (the
    // one place that names the table they read), is audit_events alone.
    sql: `INSERT INTO audit_events (replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane)
        SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM audit_journal ON CONFLICT (replica, seq) DO NOTHING;
      CREATE OR REPLACE VIEW audit_trail AS SELECT replica, seq, ts, type, request_id, agent, prev_hash, hash, body, trace_id, decision, plane FROM audit_events;
      DROP TABLE audit_journal;`,
  },
  {
    version: 16, name: 'audit decision and plane indexes for their rare values only',
    // Most events are allowed model calls: indexing those in (decision, ts) and (plane, ts) cost each
    // INSERT two btree entries no query needs (a filter on allow or model walks audit_events_ts and
    // keeps most rows it meets). PostgreSQL's CPU per event at 6 rows per commit 46.7 -> 38.3 us.
    // queryFleetEvents repeats the index's predicate for the other values, so a generic plan uses it too.
    sql: `DROP INDEX audit_events_decision;
      DROP INDEX audit_events_plane;
      CREATE INDEX audit_events_decision ON audit_events (decision, ts) WHERE decision <> 'allow';
      CREATE INDEX audit_events_plane ON audit_events (plane, ts) WHERE plane <> 'model';`,
  },
  {
    version: 17, name: 'audit trail statistics: a small sample of the query columns, none of bodies and hashes',
    // Autoanalyze of audit_events (each 10 % of growth: about once a minute under load on a young
    // trail) was most of autovacuum's CPU: 0.4-0.6 s a run at 80k-130k events (vacuum 0.1 s), so
    // +25-37 us per request in a bench round it landed in. Its sample is 300 x the largest target:
    // 30,000 rows at the default 100. The query columns get target 10 (3,000 rows: the common
    // agents, types, decisions and planes, n_distinct of the ids, a coarse ts histogram, enough to
    // choose between these indexes; a ts bound past the histogram is read from the index anyway), and
    // body, hash and prev_hash none: no query filters, joins or sorts on them. ANALYZE of 127k
    // events 1.06-1.25 s -> 0.04-0.07 s; every query shape keeps its plan on a 1M-event trail.
    // Autovacuum itself keeps its defaults: its insert-triggered runs set the visibility map and
    // freeze pages of this insert-only table bit by bit, not in one anti-wraparound pass over it all.
    sql: `ALTER TABLE audit_events ALTER COLUMN body SET STATISTICS 0, ALTER COLUMN hash SET STATISTICS 0,
        ALTER COLUMN prev_hash SET STATISTICS 0, ALTER COLUMN replica SET STATISTICS 10, ALTER COLUMN seq SET STATISTICS 10,
        ALTER COLUMN ts SET STATISTICS 10, ALTER COLUMN type SET STATISTICS 10, ALTER COLUMN request_id SET STATISTICS 10,
        ALTER COLUMN agent SET STATISTICS 10, ALTER COLUMN trace_id SET STATISTICS 10, ALTER COLUMN decision SET STATISTICS 10,
        ALTER COLUMN plane SET STATISTICS 10;`,
  },
  {
    version: 18, name: 'audit events keep their hash and prev_hash in the body only',
    // The sealed body is {"seq":S,"prev_hash":"P",...,"hash":"H"} (event.ts sealHead/sealTail): the
    // two columns were copies, 130 of ~1,080 bytes a row, written to the heap and WAL of every
    // event. New rows leave them NULL and audit_trail, the view every reader uses, reads them from
    // the body's fixed places (the tail's 64 hex digits, the head's after "prev_hash":"); rows
    // written before keep theirs (an older trail's bodies need not be in that shape).
    sql: `ALTER TABLE audit_events ALTER COLUMN prev_hash DROP NOT NULL, ALTER COLUMN hash DROP NOT NULL;
      CREATE OR REPLACE VIEW audit_trail AS SELECT replica, seq, ts, type, request_id, agent,
        coalesce(prev_hash, substr(body, strpos(body, '"prev_hash":"') + 13, 64)) AS prev_hash,
        coalesce(hash, substr(body, length(body) - 65, 64)) AS hash, body, trace_id, decision, plane FROM audit_events;`,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** pg_advisory_lock key for migrations ('aam-migrate'); advisory locks are per database. */
const MIGRATION_LOCK = 0x61616d2d6d;

export class SchemaTooNew extends Error {
  constructor(found: number) {
    super(`the fleet database is at schema version ${found}, newer than this aam knows (${SCHEMA_VERSION}): a newer aam migrated it. ` +
      'Run the same aam version as the rest of the fleet (or newer); this aam will not use a schema it does not know.');
    this.name = 'SchemaTooNew';
  }
}

/**
 * An aam command that does not migrate (every one but `serve` and `migrate`) needs the schema it
 * knows: on a newer one it would write rows a newer aam reads otherwise (a replica refuses to start
 * there too), on an older one (a database no replica or `aam migrate` has prepared yet) it failed
 * with `relation "..." does not exist`.
 */
export async function requireSchema(sql: ISql): Promise<void> {
  const found = await schemaVersion(sql);
  if (found > SCHEMA_VERSION) throw new SchemaTooNew(found);
  if (found < SCHEMA_VERSION) {
    throw new Error(`the fleet database is at schema version ${found}, older than this aam (${SCHEMA_VERSION}): run \`aam migrate\` with this aam version first (a replica of it migrates at start too)`);
  }
}

/**
 * Seconds the pool waits before its next connection attempt after `retries` failed ones in a row:
 * 50 ms doubling, at most 1 s, with jitter (half to all of it). postgres.js's own default grows to
 * 10-20 s after seven failures (3^n/100, capped at 20), so a replica whose PostgreSQL was down for
 * ~10 s with requests arriving went on refusing them for up to 20 s after it came back. A refused
 * attempt is one TCP connect, cheap for a down or restarting server; Redis retries at most every 500 ms.
 */
export function reconnectBackoff(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(0.05 * 2 ** Math.max(0, retries - 1), 1);
}

/**
 * A serving replica's deadline for one query (seconds), waiting for a connection and running
 * together. A PostgreSQL that stops answering without closing the connection (a frozen server, a
 * network partition, a proxy that swallows bytes) otherwise leaves the query in flight until TCP
 * gives up, minutes or never: the audit trail's one INSERT at a time, the key follower's read
 * and whatever else was on the connection wait with it, so the replica refused every request
 * long after PostgreSQL answered new connections again. At the deadline the query is canceled
 * (a cancel request on a new connection); a server that answers it ends the query with an error
 * and the caller retries; one that stays silent for CANCEL_TIMEOUT more has the connection
 * closed, and the pool connects again. The hot path's queries take milliseconds.
 */
export const QUERY_TIMEOUT_S = 5;
/** Seconds a canceled query's connection may stay silent before it is closed (postgres.js: 5). */
export const CANCEL_TIMEOUT_S = 2;

export interface PostgresOptions {
  /** Cancel a query after this many seconds (0: no limit, e.g. the CLI's audit verify and migrations). */
  queryTimeout?: number;
  /** application_name, as pg_stat_activity shows the connection (default 'aam'). */
  name?: string;
  /** TLS from the AAM_DATABASE_*_FILE variables (fleet-tls.ts databaseTls); absent: the URL's sslmode, as postgres.js reads it. */
  tls?: PostgresTls;
}

export function connectPostgres(url: string, max = 10, opts: PostgresOptions = {}): Sql {
  return postgres(url, {
    max, onnotice: () => {}, connect_timeout: 5, idle_timeout: 60, backoff: reconnectBackoff,
    query_timeout: opts.queryTimeout ?? 0, cancel_timeout: CANCEL_TIMEOUT_S,
    connection: { application_name: opts.name ?? 'aam' },
    ...(opts.tls ? { ssl: opts.tls } : {}),
  });
}

/** Why aam cannot reach or log in to PostgreSQL, by the error's code (SQLSTATE or socket), with what to check; null: another error. */
export function databaseHint(e: unknown): string | null {
  const code = (e as { code?: unknown } | null)?.code;
  switch (code) {
    case '28P01': case '28000':
      return 'the user or password in AAM_DATABASE_URL is wrong, or pg_hba.conf refuses this host';
    case '3D000':
      return 'the database named in AAM_DATABASE_URL does not exist: create it (createdb), then run aam migrate';
    case 'ECONNREFUSED': case 'ENOTFOUND': case 'EAI_AGAIN': case 'ETIMEDOUT': case 'CONNECT_TIMEOUT': case 'EHOSTUNREACH': case 'ENETUNREACH':
      return 'PostgreSQL is unreachable at the host and port in AAM_DATABASE_URL: check them, and that it is up and lets this host in';
    default:
      return null;
  }
}

/**
 * The one wording of "cannot use the fleet database" for every command and a replica's start: it
 * names AAM_DATABASE_URL and, for a refused login or connection, what to check.
 */
export function databaseError(e: unknown): Error {
  const hint = databaseHint(e);
  const msg = e instanceof Error ? e.message || String((e as { code?: unknown }).code ?? e) : String(e);
  return new Error(`cannot use the fleet database (AAM_DATABASE_URL): ${msg}${hint ? ` (${hint})` : ''}`, { cause: e });
}

/** A refused login or connection as databaseError; any other error (a failed query, a migration) as it is. */
export function connectionError(e: unknown): unknown {
  return databaseHint(e) === null ? e : databaseError(e);
}

/** Apply the migrations this database lacks, one transaction each, under the fleet-wide lock. */
export async function migrate(sql: Sql): Promise<{ from: number; to: number; applied: Migration[] }> {
  const conn = await sql.reserve();
  try {
    await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK})`;
    try {
      await conn`CREATE TABLE IF NOT EXISTS aam_schema (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;
      const from = await schemaVersion(conn);
      if (from > SCHEMA_VERSION) throw new SchemaTooNew(from);
      const applied: Migration[] = [];
      for (const m of MIGRATIONS) {
        if (m.version <= from) continue;
        await conn.unsafe('BEGIN');
        try {
          await conn.unsafe(m.sql);
          await conn`INSERT INTO aam_schema (version, name) VALUES (${m.version}, ${m.name})`;
          await conn.unsafe('COMMIT');
        } catch (e) {
          await conn.unsafe('ROLLBACK').catch(() => {});
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(e as Error).message}`);
        }
        applied.push(m);
      }
      return { from, to: Math.max(from, SCHEMA_VERSION), applied };
    } finally {
      await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {});
    }
  } finally {
    conn.release();
  }
}

/** The schema version the fleet database is at: 0 before the first migration (no aam_schema table yet). */
export async function schemaVersion(sql: ISql): Promise<number> {
  try {
    const [r] = await sql<Array<{ v: number }>>`SELECT coalesce(max(version), 0)::int AS v FROM aam_schema`;
    return r.v;
  } catch (e) {
    if ((e as { code?: unknown }).code === '42P01') return 0; // no aam_schema: never migrated
    throw e;
  }
}

/** The database name (the Redis key prefix is derived from it, so fleets sharing a Redis stay apart). */
export function databaseName(url: string): string {
  try { return decodeURIComponent(new URL(url).pathname.slice(1)) || 'postgres'; } catch { return 'postgres'; }
}
