// Virtual keys on the fleet store: rows in PostgreSQL (hashes only), mirrored in each replica's
// memory so authentication stays a Map lookup. A change commits first, then is announced over
// Redis; replicas re-read the keys changed since the last change they saw (seq), on the
// announcement (milliseconds) or at the latest on their poll (AAM_FLEET_POLL_MS, default 1 s),
// so a lost message still takes effect within the poll interval.
import { hashKey, newKeyId, newSecret } from './key-secrets.ts';
import { KeyMirror } from './key-mirror.ts';
import { Follower } from './follower.ts';
import type { Fleet } from './fleet.ts';
import type { KeyBook, KeyListing, KeyRecord } from './types.ts';
import type { Sql } from './postgres.ts';

/** Serialises key changes so seq order is commit order (replicas read "seq > last seen"). */
const KEYS_LOCK = 0x61616d2d6b;

interface KeyRow { id: string; agent: string; name: string | null; created_at: string; revoked_at: string | null; expires_at: string | null; seq: string }
interface SecretRowDb { hash: string; key_id: string; expires_at: string | null }

const recordOf = (r: KeyRow): KeyRecord => ({ id: r.id, agent: r.agent, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at, expiresAt: r.expires_at });
const secretOf = (r: SecretRowDb) => ({ hash: r.hash, key_id: r.key_id, expires_at: r.expires_at === null ? null : Number(r.expires_at) });

export class FleetKeyBook implements KeyBook {
  readonly #fleet: Fleet;
  readonly #sql: Sql;
  readonly #mirror = new KeyMirror();
  #seen = 0;
  // The key poll doubles as PostgreSQL's health check.
  readonly #follower = new Follower(() => this.#readChanges(), (e) => this.#fleet.notePostgres(e));

  private constructor(fleet: Fleet) {
    this.#fleet = fleet;
    this.#sql = fleet.sql;
  }

  /** follow: keep the mirror current (a serving replica); the CLI reads and writes PostgreSQL only. */
  static async open(fleet: Fleet, opts: { follow: boolean; pollMs?: number }): Promise<FleetKeyBook> {
    const b = new FleetKeyBook(fleet);
    if (!opts.follow) return b;
    await b.sync();
    b.#follower.follow(fleet, 'keys', opts.pollMs);
    return b;
  }

  /** Re-read keys changed since the last seen change. */
  sync(): Promise<void> { return this.#follower.sync(); }

  async #readChanges(): Promise<void> {
    const keys = await this.#sql<KeyRow[]>`SELECT id, agent, name, created_at, revoked_at, expires_at, seq FROM keys WHERE seq > ${this.#seen} ORDER BY seq`;
    if (keys.length === 0) return;
    const ids = keys.map((k) => k.id);
    const secrets = await this.#sql<SecretRowDb[]>`SELECT hash, key_id, expires_at FROM key_secrets WHERE key_id = ANY(${ids})`;
    this.#mirror.replaceKeys(keys.map(recordOf), secrets.map(secretOf));
    this.#seen = Number(keys[keys.length - 1].seq);
  }

  authenticate(secret: string, now = Date.now()) { return this.#mirror.authenticate(secret, now); }
  generationProblem(keyId: string, generation: string | undefined, now = Date.now()) { return this.#mirror.generationProblem(keyId, generation, now); }
  generationValidUntil(generation: string) { return this.#mirror.generationValidUntil(generation); }
  get(id: string) { return this.#mirror.get(id); }

  /** One key change: serialised, seq-stamped, committed; then announced and (here) applied at once. */
  async #change<T>(fn: (tx: Sql, seq: number) => Promise<T>): Promise<T> {
    const out = await this.#sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${KEYS_LOCK})`;
      const [{ seq }] = await tx<Array<{ seq: string }>>`SELECT nextval('key_seq') AS seq`;
      return fn(tx as unknown as Sql, Number(seq));
    });
    await this.#fleet.announce('keys');
    if (this.#follower.following) await this.sync();
    return out as T;
  }

  async #row(tx: Sql, id: string, lock: boolean): Promise<KeyRecord | undefined> {
    const rows = lock
      ? await tx<KeyRow[]>`SELECT id, agent, name, created_at, revoked_at, expires_at, seq FROM keys WHERE id = ${id} FOR UPDATE`
      : await tx<KeyRow[]>`SELECT id, agent, name, created_at, revoked_at, expires_at, seq FROM keys WHERE id = ${id}`;
    return rows[0] ? recordOf(rows[0]) : undefined;
  }

  create(agent: string, opts: { name?: string; expiresAt?: string } = {}): Promise<{ key: KeyRecord; secret: string }> {
    const id = newKeyId();
    const secret = newSecret();
    const now = new Date().toISOString();
    return this.#change(async (tx, seq) => {
      await tx`INSERT INTO keys (id, agent, name, created_at, expires_at, seq) VALUES (${id}, ${agent}, ${opts.name ?? null}, ${now}, ${opts.expiresAt ?? null}, ${seq})`;
      await tx`INSERT INTO key_secrets (hash, key_id, created_at, expires_at) VALUES (${hashKey(secret)}, ${id}, ${now}, NULL)`;
      return { key: { id, agent, name: opts.name ?? null, createdAt: now, revokedAt: null, expiresAt: opts.expiresAt ?? null }, secret };
    });
  }

  rotate(id: string, graceSeconds: number): Promise<{ key: KeyRecord; secret: string }> {
    const secret = newSecret();
    return this.#change(async (tx, seq) => {
      const key = await this.#row(tx, id, true);
      if (!key) throw new Error(`no API key with id ${id} (see: aam keys list)`);
      if (key.revokedAt) throw new Error(`API key ${id} is revoked; create a new key instead`);
      const now = Date.now();
      const until = now + Math.round(graceSeconds * 1000); // a bigint column: whole ms
      await tx`UPDATE key_secrets SET expires_at = ${until} WHERE key_id = ${id} AND (expires_at IS NULL OR expires_at > ${until})`;
      await tx`INSERT INTO key_secrets (hash, key_id, created_at, expires_at) VALUES (${hashKey(secret)}, ${id}, ${new Date(now).toISOString()}, NULL)`;
      await tx`UPDATE keys SET seq = ${seq} WHERE id = ${id}`;
      return { key, secret };
    });
  }

  revoke(id: string): Promise<KeyRecord> {
    return this.#change(async (tx, seq) => {
      const key = await this.#row(tx, id, true);
      if (!key) throw new Error(`no API key with id ${id} (see: aam keys list)`);
      const revokedAt = key.revokedAt ?? new Date().toISOString();
      await tx`UPDATE keys SET revoked_at = ${revokedAt}, seq = ${seq} WHERE id = ${id}`;
      return { ...key, revokedAt };
    });
  }

  async list(): Promise<KeyListing[]> {
    const rows = await this.#sql<Array<KeyRow & { n: number; last: string | null }>>`
      SELECT k.id, k.agent, k.name, k.created_at, k.revoked_at, k.expires_at, k.seq, count(s.hash)::int AS n, max(s.created_at) AS last
      FROM keys k LEFT JOIN key_secrets s ON s.key_id = k.id GROUP BY k.id ORDER BY k.created_at, k.id`;
    return rows.map((r) => ({ ...recordOf(r), secrets: r.n, lastRotatedAt: r.n > 1 ? r.last : null }));
  }

  close(): void { this.#follower.stop(); }
}
