// Stored credentials' rows in the fleet store: PostgreSQL (credential_versions, credential_meta,
// credential_usage), the newest version of each name mirrored in memory so the vault reads
// synchronously. A new version commits first (numbered under a row lock, so two replicas storing at
// once get different versions), then is announced over Redis; replicas re-read on the announcement
// and at the latest on their poll (AAM_FLEET_POLL_MS, 1 s), and the vault takes the new version at
// once. Rows hold AES-GCM parts only: PostgreSQL never sees a value or the master key.
import type { Fleet } from './fleet.ts';
import type { Sql } from './postgres.ts';
import { Follower } from './follower.ts';
import { KEEP_VERSIONS, type CredentialRows, type SealFn, type SealedRow } from './credential-rows.ts';

interface Row { name: string; version: number; nonce: Buffer; ciphertext: Buffer; tag: Buffer; key_id: string; created_at: string }
const sealedOf = (r: Row): SealedRow => ({ version: Number(r.version), nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag, keyId: r.key_id, createdAt: r.created_at });

export class FleetCredentialRows implements CredentialRows {
  readonly #fleet: Fleet;
  readonly #sql: Sql;
  readonly #onError: (what: string, e: unknown) => void;
  #newest = new Map<string, SealedRow>();
  #lastUsed = new Map<string, string>();
  #meta: { check: string; keyId: string } | null = null;
  readonly #listeners: Array<() => void> = [];
  readonly #follower: Follower;
  /** Writes behind (key check, last use), in order; close() waits for them. */
  #usage: Promise<void> = Promise.resolve();

  private constructor(fleet: Fleet, onError: (what: string, e: unknown) => void) {
    this.#fleet = fleet;
    this.#sql = fleet.sql;
    this.#onError = onError;
    this.#follower = new Follower(async () => { if (await this.#read()) for (const fn of this.#listeners) fn(); },
      (e) => { if (e) onError('reading stored credentials', e); });
  }

  /** Reads everything once (CLI and replica); follow: keep it current (a serving replica). */
  static async open(fleet: Fleet, opts: { follow: boolean; pollMs?: number; onError?: (what: string, e: unknown) => void }): Promise<FleetCredentialRows> {
    const c = new FleetCredentialRows(fleet, opts.onError ?? (() => {}));
    const meta = await fleet.sql<Array<{ k: string; v: string }>>`SELECT k, v FROM credential_meta`;
    const m = new Map(meta.map((r) => [r.k, r.v]));
    if (m.has('key_check')) c.#meta = { check: m.get('key_check')!, keyId: m.get('key_id') ?? 'unknown' };
    await c.#read();
    const used = await fleet.sql<Array<{ name: string; last_used: string }>>`SELECT name, last_used FROM credential_usage`;
    c.#lastUsed = new Map(used.map((r) => [r.name, r.last_used]));
    if (opts.follow) c.#follower.follow(fleet, 'credentials', opts.pollMs);
    return c;
  }

  async #read(): Promise<boolean> {
    const rows = await this.#sql<Row[]>`SELECT DISTINCT ON (name) name, version, nonce, ciphertext, tag, key_id, created_at
      FROM credential_versions ORDER BY name, version DESC`;
    const next = new Map(rows.map((r) => [r.name, sealedOf(r)]));
    const changed = next.size !== this.#newest.size || [...next].some(([n, r]) => this.#newest.get(n)?.version !== r.version);
    this.#newest = next;
    return changed;
  }

  /** Re-read the newest versions (listeners hear of a change). */
  sync(): Promise<void> { return this.#follower.sync(); }

  keyCheck(check: string, keyId: string): { check: string; keyId: string } {
    if (this.#meta) return this.#meta;
    // First key of this fleet: recorded behind (ON CONFLICT keeps the first); a replica with another
    // key that raced it is refused at its next start, and its versions would not decrypt elsewhere.
    this.#meta = { check, keyId };
    this.#usage = this.#usage.then(() => this.#sql`INSERT INTO credential_meta (k, v) VALUES ('key_check', ${check}), ('key_id', ${keyId}) ON CONFLICT (k) DO NOTHING`.then(() => {}))
      .catch((e: unknown) => this.#onError('recording the credential key check', e));
    return this.#meta;
  }

  newest(name: string): SealedRow | undefined { return this.#newest.get(name); }

  versions(): Map<string, { version: number; createdAt: string }> {
    return new Map([...this.#newest].map(([n, r]) => [n, { version: r.version, createdAt: r.createdAt }]));
  }

  async put(name: string, keyId: string, seal: SealFn): Promise<{ version: number; createdAt: string }> {
    const createdAt = new Date().toISOString();
    const row = await this.#sql.begin(async (tx) => {
      // Serialise versions of one name across the fleet (a transaction-scoped lock on its hash).
      await tx`SELECT pg_advisory_xact_lock(hashtext(${'aam-credential:' + name}))`;
      const [{ v }] = await tx<Array<{ v: number | null }>>`SELECT max(version)::int AS v FROM credential_versions WHERE name = ${name}`;
      const version = (v ?? 0) + 1;
      const s = seal(version);
      await tx`INSERT INTO credential_versions (name, version, nonce, ciphertext, tag, key_id, created_at)
        VALUES (${name}, ${version}, ${Buffer.from(s.nonce)}, ${Buffer.from(s.ciphertext)}, ${Buffer.from(s.tag)}, ${keyId}, ${createdAt})`;
      await tx`DELETE FROM credential_versions WHERE name = ${name} AND version <= ${version - KEEP_VERSIONS}`;
      return { version, nonce: s.nonce, ciphertext: s.ciphertext, tag: s.tag, keyId, createdAt };
    });
    const cur = this.#newest.get(name);
    if (!cur || cur.version < row.version) this.#newest.set(name, row);
    await this.#fleet.announce('credentials');
    return { version: row.version, createdAt };
  }

  lastUsed(): Map<string, string> { return new Map(this.#lastUsed); }

  recordUse(uses: ReadonlyMap<string, number>): void {
    if (uses.size === 0) return;
    const rows = [...uses].map(([name, t]) => ({ name, last_used: new Date(t).toISOString() }));
    for (const r of rows) if ((this.#lastUsed.get(r.name) ?? '') < r.last_used) this.#lastUsed.set(r.name, r.last_used);
    this.#usage = this.#usage.then(() => this.#sql`INSERT INTO credential_usage ${this.#sql(rows, 'name', 'last_used')}
      ON CONFLICT (name) DO UPDATE SET last_used = greatest(credential_usage.last_used, excluded.last_used)`.then(() => {}))
      .catch((e: unknown) => this.#onError('recording credential use', e));
  }

  onChange(fn: () => void): void { this.#listeners.push(fn); }

  async close(): Promise<void> {
    this.#follower.stop();
    await this.#usage;
  }
}
