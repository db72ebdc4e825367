// aam's issuer signing keys in the fleet store: one PostgreSQL row per key ring (JWT-SVID,
// on-behalf-of) holding the ring's JSON state sealed with AES-256-GCM under a subkey of the master
// key (PostgreSQL never sees a private key). A rotation locks the row, commits, then announces
// 'issuer' over Redis; every replica re-reads on the announcement and at the latest on its poll
// (AAM_FLEET_POLL_MS, 1 s), so a token signed with the new key verifies everywhere.
import type { Fleet } from './fleet.ts';
import { Follower } from './follower.ts';
import { seal, unseal } from './seal.ts';
import type { KeyRingStore } from './types.ts';

export class FleetIssuerKeys {
  readonly #fleet: Fleet;
  readonly #listeners: Array<() => Promise<void>> = [];
  readonly #follower: Follower;

  constructor(fleet: Fleet, opts: { follow: boolean; pollMs?: number; onError?: (what: string, e: unknown) => void }) {
    this.#fleet = fleet;
    this.#follower = new Follower(async () => { for (const fn of this.#listeners) await fn(); },
      (e) => { if (e) opts.onError?.('reading the issuer keys', e); });
    if (opts.follow) this.#follower.follow(fleet, 'issuer', opts.pollMs);
  }

  /** The ring `name`, sealed with `key` (a master-key subkey of this ring alone: rows cannot be swapped). */
  ring(name: string, key: Buffer): KeyRingStore {
    const sql = this.#fleet.sql;
    const where = `the fleet database (issuer_keys, ring "${name}")`;
    const open = (sealed: string): string => {
      const text = unseal(key, sealed);
      if (text === null) throw new Error(`${where} does not open with this AAM_MASTER_KEY: every replica and CLI of a fleet must use the same master key`);
      return text;
    };
    return {
      where,
      reset: `delete that row (DELETE FROM issuer_keys WHERE ring = '${name}')`,
      read: async () => {
        const [r] = await sql<Array<{ sealed: string }>>`SELECT sealed FROM issuer_keys WHERE ring = ${name}`;
        return r ? open(r.sealed) : undefined;
      },
      createIfAbsent: async (text) => {
        const r = await sql`INSERT INTO issuer_keys (ring, sealed) VALUES (${name}, ${seal(key, text)}) ON CONFLICT (ring) DO NOTHING`;
        return r.count === 1;
      },
      update: async (fn) => {
        await sql.begin(async (tx) => {
          const [r] = await tx<Array<{ sealed: string }>>`SELECT sealed FROM issuer_keys WHERE ring = ${name} FOR UPDATE`;
          const text = fn(r ? open(r.sealed) : undefined);
          await tx`INSERT INTO issuer_keys (ring, sealed) VALUES (${name}, ${seal(key, text)})
            ON CONFLICT (ring) DO UPDATE SET sealed = excluded.sealed, updated_at = now()`;
        });
        await this.#fleet.announce('issuer');
      },
    };
  }

  /** Both of the issuer's rings, each sealed with a subkey of the master key of its own. */
  rings(subkey: (info: string) => Buffer): { svid: KeyRingStore; obo: KeyRingStore } {
    return { svid: this.ring('svid', subkey('aam issuer svid keys v1')), obo: this.ring('obo', subkey('aam issuer obo keys v1')) };
  }

  /** Run fn (the issuer's reload) on every announcement and poll. */
  onChange(fn: () => Promise<void>): void { this.#listeners.push(fn); }

  close(): void { this.#follower.stop(); }
}
