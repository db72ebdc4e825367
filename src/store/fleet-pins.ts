// Accepted tool definitions in the fleet store: rows in PostgreSQL (tool_pins), mirrored in each
// replica's memory so compiling a server's tools stays synchronous. What a replica sees (a first
// sighting, a changed definition) is applied to its mirror at once and written behind; a person's
// accept is committed before it answers. Every write is seq-stamped under a lock (commit order =
// seq order) and announced over Redis; replicas re-read rows with a newer seq on the announcement
// or at the latest on their poll (AAM_FLEET_POLL_MS, 1 s), and recompile a server whose accepted
// definitions changed, so an accept on one replica releases the tool on all.
import type { Fleet } from './fleet.ts';
import type { Sql } from './postgres.ts';
import { Follower } from './follower.ts';
import type { PinRow, ToolPins } from './tool-pins.ts';

/** Serialises pin writes so seq order is commit order (replicas read "seq > last seen"). */
const PINS_LOCK = 0x61616d2d70;

type Row = PinRow & { seq: string };
const keyOf = (server: string, tool: string) => `${server}\u0000${tool}`;
const pinOf = (r: Row): PinRow => ({
  server: r.server, tool: r.tool, accepted_digest: r.accepted_digest, accepted_def: r.accepted_def,
  current_digest: r.current_digest, current_def: r.current_def, accepted_by: r.accepted_by, accepted_at: r.accepted_at,
});

export class FleetPins implements ToolPins {
  readonly #fleet: Fleet;
  readonly #sql: Sql;
  readonly #rows = new Map<string, PinRow>();
  readonly #listeners: Array<(server: string) => void> = [];
  readonly #onError: (what: string, e: unknown) => void;
  #seen = 0;
  #writes: Promise<void> = Promise.resolve();
  readonly #follower: Follower;

  private constructor(fleet: Fleet, onError: (what: string, e: unknown) => void) {
    this.#fleet = fleet;
    this.#sql = fleet.sql;
    this.#onError = onError;
    this.#follower = new Follower(() => this.#readChanges(), (e) => { if (e) onError('reading accepted tool definitions', e); });
  }

  /** follow: keep the mirror current (a serving replica). */
  static async open(fleet: Fleet, opts: { follow: boolean; pollMs?: number; onError?: (what: string, e: unknown) => void }): Promise<FleetPins> {
    const p = new FleetPins(fleet, opts.onError ?? (() => {}));
    if (!opts.follow) return p;
    await p.#readChanges();
    p.#follower.follow(fleet, 'pins', opts.pollMs);
    return p;
  }

  /** Re-read rows changed since the last seen change. */
  sync(): Promise<void> { return this.#follower.sync(); }

  async #readChanges(): Promise<void> {
    const rows = await this.#sql<Row[]>`SELECT server, tool, accepted_digest, accepted_def, current_digest, current_def, accepted_by, accepted_at, seq
      FROM tool_pins WHERE seq > ${this.#seen} ORDER BY seq`;
    if (rows.length === 0) return;
    const servers = new Set<string>();
    for (const r of rows) {
      const k = keyOf(r.server, r.tool);
      const before = this.#rows.get(k);
      this.#rows.set(k, pinOf(r));
      if (before && before.accepted_digest !== r.accepted_digest) servers.add(r.server);
    }
    this.#seen = Number(rows[rows.length - 1].seq);
    for (const s of servers) for (const fn of this.#listeners) fn(s);
  }

  /** One write: serialised, seq-stamped, committed, announced. */
  async #change<T>(fn: (tx: Sql, seq: number) => Promise<T>): Promise<T> {
    const out = await this.#sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${PINS_LOCK})`;
      const [{ seq }] = await tx<Array<{ seq: string }>>`SELECT nextval('tool_pin_seq') AS seq`;
      return fn(tx as unknown as Sql, Number(seq));
    });
    await this.#fleet.announce('pins');
    return out as T;
  }

  /** What this replica saw, written behind in order (the catalog compiles without waiting). */
  #behind(what: string, fn: (tx: Sql, seq: number) => Promise<unknown>): void {
    this.#writes = this.#writes.then(() => this.#change(fn)).then(() => {}, (e: unknown) => this.#onError(what, e));
  }

  get(server: string, tool: string): PinRow | undefined { return this.#rows.get(keyOf(server, tool)); }

  add(r: PinRow): void {
    const k = keyOf(r.server, r.tool);
    if (this.#rows.has(k)) return;
    this.#rows.set(k, r);
    this.#behind('recording a first-seen tool definition', (tx, seq) => tx`INSERT INTO tool_pins (server, tool, accepted_digest, accepted_def,
        current_digest, current_def, accepted_by, accepted_at, seq)
      VALUES (${r.server}, ${r.tool}, ${r.accepted_digest}, ${r.accepted_def}, ${r.current_digest}, ${r.current_def}, ${r.accepted_by}, ${r.accepted_at}, ${seq})
      ON CONFLICT (server, tool) DO NOTHING`);
  }

  setCurrent(server: string, tool: string, digest: string, def: string): void {
    const r = this.get(server, tool);
    if (r) this.#rows.set(keyOf(server, tool), { ...r, current_digest: digest, current_def: def });
    this.#behind('recording a changed tool definition', (tx, seq) => tx`UPDATE tool_pins SET current_digest = ${digest}, current_def = ${def}, seq = ${seq}
      WHERE server = ${server} AND tool = ${tool}`);
  }

  upgrade(server: string, tool: string, digest: string, def: string): void {
    const r = this.get(server, tool);
    if (r) this.#rows.set(keyOf(server, tool), { ...r, accepted_digest: digest, accepted_def: def, current_digest: digest, current_def: def });
    this.#behind('upgrading a legacy tool digest', (tx, seq) => tx`UPDATE tool_pins SET accepted_digest = ${digest}, accepted_def = ${def},
      current_digest = ${digest}, current_def = ${def}, seq = ${seq} WHERE server = ${server} AND tool = ${tool}`);
  }

  async accept(server: string, tool: string, actor: string, at: string): Promise<PinRow | undefined> {
    await this.#writes; // what this replica saw (the definition the person reviewed here) is stored first
    const [row] = await this.#change((tx, seq) => tx<Row[]>`UPDATE tool_pins SET accepted_digest = current_digest, accepted_def = current_def,
        accepted_by = ${actor}, accepted_at = ${at}, seq = ${seq} WHERE server = ${server} AND tool = ${tool}
      RETURNING server, tool, accepted_digest, accepted_def, current_digest, current_def, accepted_by, accepted_at, seq`);
    if (!row) return undefined;
    this.#rows.set(keyOf(server, tool), pinOf(row));
    return pinOf(row);
  }

  changed(): PinRow[] {
    return [...this.#rows.values()].filter((r) => r.accepted_digest !== r.current_digest)
      .sort((a, b) => (a.server === b.server ? (a.tool < b.tool ? -1 : 1) : (a.server < b.server ? -1 : 1)));
  }

  onAccepted(fn: (server: string) => void): void { this.#listeners.push(fn); }

  /** Wait for what was written behind (tests, shutdown). */
  async flush(): Promise<void> { await this.#writes; }

  close(): void { this.#follower.stop(); }
}
