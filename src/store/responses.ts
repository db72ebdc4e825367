// Stored Responses (the state behind previous_response_id, item_reference and GET
// /v1/responses/{id}), kept by aam itself so they work over every provider. Every record belongs
// to one agent (its SPIFFE ID): a lookup names the agent, so another agent's id reads as unknown.
// Records expire (AAM_RESPONSES_TTL, default 30 days). Embedded: SQLite in the data dir (here);
// fleet: PostgreSQL (fleet-responses.ts), so a conversation continues on any replica.
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
  /** Store a response and index its items' ids; the answer is acknowledged once this resolves. */
  put(r: StoredResponse, itemIds: readonly string[]): Promise<void>;
  /** The agent's stored response, or null (unknown, expired, or another agent's). */
  get(agent: string, id: string): Promise<StoredResponse | null>;
  /** Id of the agent's stored response that holds this item, or null. */
  itemOwner(agent: string, itemId: string): Promise<string | null>;
  delete(agent: string, id: string): Promise<boolean>;
}

/** Expired rows are removed at most this often (reads already ignore them). */
const PURGE_EVERY_MS = 60_000;

export function openResponseStore(db: DatabaseSync, now: () => number = Date.now): ResponseStore {
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
  const owner = db.prepare('SELECT i.response_id AS id FROM response_items i JOIN responses r ON r.id = i.response_id WHERE i.agent = ? AND i.item_id = ? AND r.agent = ? AND r.expires_at > ?');
  const remove = db.prepare('DELETE FROM responses WHERE id = ? AND agent = ?');
  const purge = db.prepare('DELETE FROM responses WHERE expires_at <= ?');
  let lastPurge = 0;

  const row = (st: StatementSync, ...args: Array<string | number>) => st.get(...args) as Record<string, string | number | null> | undefined;

  return {
    put(r, itemIds) {
      const t = now();
      try {
        transaction(db, () => {
          if (t - lastPurge > PURGE_EVERY_MS) { lastPurge = t; purge.run(t); }
          insert.run(r.id, r.agent, r.previousId, r.input, r.response, r.expiresAt);
          for (const id of itemIds) insertItem.run(r.agent, id, r.id);
        });
      } catch (e) {
        return Promise.reject(e as Error);
      }
      return Promise.resolve();
    },
    get(agent, id) {
      const x = row(select, id, agent, now());
      return Promise.resolve(x ? {
        id: String(x.id), agent: String(x.agent), previousId: x.previous_id === null ? null : String(x.previous_id),
        input: String(x.input), response: String(x.response), expiresAt: Number(x.expires_at),
      } : null);
    },
    itemOwner(agent, itemId) {
      const x = row(owner, agent, itemId, agent, now());
      return Promise.resolve(x ? String(x.id) : null);
    },
    delete(agent, id) {
      return Promise.resolve(Number(remove.run(id, agent).changes) > 0);
    },
  };
}
