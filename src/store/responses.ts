// Stored Responses (the state behind previous_response_id, item_reference and GET
// /v1/responses/{id}), kept by aam itself so they work over every provider. Every record belongs
// to one agent (its SPIFFE ID): a lookup names the agent, so another agent's id reads as unknown.
// Records expire (AAM_RESPONSES_TTL, default 30 days). Embedded: SQLite in the data dir (here);
// fleet: PostgreSQL (fleet-responses.ts), so a conversation continues on any replica.
// Embedded writes are behind the answer: put() keeps the record in memory, where reads find it at
// once (this process is the only one serving them), and the puts of a few milliseconds (GROUP_MS,
// or GROUP_MAX of them, whichever comes first) are written in one transaction after their answers
// have left; flush() drains (shutdown).
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { transaction } from './sqlite.ts';

export interface StoredResponse {
  id: string;
  /** SPIFFE ID of the agent that created it: the only one that can read it. */
  agent: string;
  previousId: string | null;
  /** This request's input items, item references resolved (JSON text, scrubbed). */
  input: string;
  /** The Response object as answered (JSON text, scrubbed). */
  response: string;
  /** Epoch ms after which the record is gone. */
  expiresAt: number;
}

/** Where an item id points: the stored response holding it (input or output). */
export interface ResponseStore {
  /**
   * Store a response and index its items' ids. Once this resolves the agent's reads find it (the
   * answer is acknowledged after it): embedded, held in memory until the next turn's write; fleet, committed.
   */
  put(r: StoredResponse, itemIds: readonly string[]): Promise<void>;
  /** The agent's stored response, or null (unknown, expired, or another agent's). */
  get(agent: string, id: string): Promise<StoredResponse | null>;
  /**
   * Id of the agent's stored response that holds this item, or null. An item id derived from its
   * response's id (derivedOwner) may name that response without it holding the item (the embedded
   * store does not index them): the caller finds the item in the response it reads.
   */
  itemOwner(agent: string, itemId: string): Promise<string | null>;
  delete(agent: string, id: string): Promise<boolean>;
  /** Writes what is still held in memory now (shutdown drain); a no-op for a store that writes through. */
  flush?(): void;
}

/**
 * An item id aam derives from its response's id (gateway/responses.ts withIds: <prefix>_<hex>_in<i>;
 * providers/responses-codec.ts itemId: <prefix>_<hex>_<i>, of resp_<hex>).
 */
const DERIVED_ID = /^(?:msg|fc|fco|item)_([0-9a-f]+)_(?:in)?\d+$/;

/** The response a derived item id names (whether that response holds it is for the caller to check), or null. */
export function derivedOwner(itemId: string): string | null {
  const m = DERIVED_ID.exec(itemId);
  return m === null ? null : `resp_${m[1]}`;
}

/** Expired rows are removed at most this often (reads already ignore them). */
const PURGE_EVERY_MS = 60_000;

/**
 * Held puts are written this long after the first of them, together, or in the next check phase
 * once GROUP_MAX are held. A commit costs far more than a row (bench/responses-store-cost.ts, CPU
 * per put, 2 item ids each, load 6-7): 97-116 us in transactions of 1, 34-46 us of 8, 24 us of 32. One transaction per
 * event-loop turn (as before) held the answers of that turn: one per request at c=1; 5 ms gathers
 * tens at a few thousand requests a second. What a hard kill loses (held puts, already answered)
 * is at most these few milliseconds' worth more than before.
 */
const GROUP_MS = 5;
const GROUP_MAX = 256;

/** `group`: the group commit window and size (tests widen or narrow them). */
export function openResponseStore(db: DatabaseSync, now: () => number = Date.now, onError: (e: unknown, ids: string[]) => void = () => {},
  group: { ms: number; max: number } = { ms: GROUP_MS, max: GROUP_MAX }): ResponseStore {
  const { ms: groupMs, max: groupMax } = group;
  db.exec(`CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, agent TEXT NOT NULL, previous_id TEXT, input TEXT NOT NULL, response TEXT NOT NULL, expires_at INTEGER NOT NULL);
  CREATE INDEX IF NOT EXISTS responses_expiry ON responses(expires_at);
  CREATE TABLE IF NOT EXISTS response_items (
    agent TEXT NOT NULL, item_id TEXT NOT NULL, response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    PRIMARY KEY (agent, item_id));
  CREATE INDEX IF NOT EXISTS response_items_response ON response_items(response_id);`);
  const insert = db.prepare('INSERT OR REPLACE INTO responses (id, agent, previous_id, input, response, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
  const insertItem = db.prepare('INSERT OR REPLACE INTO response_items (agent, item_id, response_id) VALUES (?, ?, ?)');
  const select = db.prepare('SELECT id, agent, previous_id, input, response, expires_at FROM responses WHERE id = ? AND agent = ? AND expires_at > ?');
  const exists = db.prepare('SELECT 1 AS one FROM responses WHERE id = ? AND agent = ? AND expires_at > ?');
  const owner = db.prepare('SELECT i.response_id AS id FROM response_items i JOIN responses r ON r.id = i.response_id WHERE i.agent = ? AND i.item_id = ? AND r.agent = ? AND r.expires_at > ?');
  const remove = db.prepare('DELETE FROM responses WHERE id = ? AND agent = ?');
  const purge = db.prepare('DELETE FROM responses WHERE expires_at <= ?');
  let lastPurge = 0;
  /** Puts not yet written, in put order (by response id), and their items' owners (agent NUL item id -> response id). */
  const pending = new Map<string, { r: StoredResponse; itemIds: readonly string[] }>();
  const pendingItems = new Map<string, string>();
  /** The write to come: a timeout (the group window), or an immediate once groupMax are held. */
  let timer: NodeJS.Timeout | undefined;
  let soon: NodeJS.Immediate | undefined;

  const row = (st: StatementSync, ...args: Array<string | number>) => st.get(...args) as Record<string, string | number | null> | undefined;
  /** A held record as a read sees it: only its agent's, only until it expires (as the SQL reads). */
  const held = (agent: string, id: string): StoredResponse | null | undefined => {
    const p = pending.get(id);
    if (p === undefined) return undefined;
    return p.r.agent === agent && p.r.expiresAt > now() ? { ...p.r } : null;
  };

  function flush(): void {
    if (timer) { clearTimeout(timer); timer = undefined; }
    if (soon) { clearImmediate(soon); soon = undefined; }
    if (pending.size === 0) return;
    const batch = [...pending.values()];
    pending.clear();
    pendingItems.clear();
    const t = now();
    try {
      transaction(db, () => {
        if (t - lastPurge > PURGE_EVERY_MS) { lastPurge = t; purge.run(t); }
        for (const { r, itemIds } of batch) {
          insert.run(r.id, r.agent, r.previousId, r.input, r.response, r.expiresAt);
          for (const id of itemIds) insertItem.run(r.agent, id, r.id);
        }
      });
    } catch (e) {
      // The answers have left: what failed is logged (a later previous_response_id naming it is 404).
      onError(e, batch.map((b) => b.r.id));
    }
  }

  return {
    put(r, itemIds) {
      // Not indexed: the ids derived from this response's own id (itemOwner reads them back from the
      // id). The bench request's two such rows cost 7 of a put's 20 us of CPU in a group commit of
      // 32, 32 of 83 us alone (bench/responses-store-cost.ts --items). An id derived from another
      // response (an item sent back under its id) is indexed: it names this, later copy.
      const indexed = itemIds.filter((id) => derivedOwner(id) !== r.id);
      pending.set(r.id, { r, itemIds: indexed });
      for (const id of indexed) pendingItems.set(`${r.agent}\0${id}`, r.id);
      // Never written on the answer's own path (put is called before its bytes are written).
      if (pending.size >= groupMax) soon ??= setImmediate(flush);
      else timer ??= setTimeout(flush, groupMs);
      return Promise.resolve();
    },
    get(agent, id) {
      const h = held(agent, id);
      if (h !== undefined) return Promise.resolve(h);
      const x = row(select, id, agent, now());
      return Promise.resolve(x ? {
        id: String(x.id), agent: String(x.agent), previousId: x.previous_id === null ? null : String(x.previous_id),
        input: String(x.input), response: String(x.response), expiresAt: Number(x.expires_at),
      } : null);
    },
    itemOwner(agent, itemId) {
      // A held put owns its items over older rows (its write replaces their index entries).
      const id = pendingItems.get(`${agent}\0${itemId}`);
      if (id !== undefined && held(agent, id)) return Promise.resolve(id);
      const x = row(owner, agent, itemId, agent, now());
      if (x) return Promise.resolve(String(x.id));
      // Not indexed: an id derived from its response's id names that response, if it is this agent's and live.
      const d = derivedOwner(itemId);
      if (d === null) return Promise.resolve(null);
      const h = held(agent, d);
      if (h !== undefined) return Promise.resolve(h === null ? null : d);
      return Promise.resolve(row(exists, d, agent, now()) ? d : null);
    },
    delete(agent, id) {
      // Written first, so the delete sees (and cascades over) exactly what a read saw.
      flush();
      return Promise.resolve(Number(remove.run(id, agent).changes) > 0);
    },
    flush,
  };
}
