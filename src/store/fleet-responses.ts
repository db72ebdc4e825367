// Stored Responses in the fleet store (PostgreSQL): the same per-agent, expiring records as the
// embedded store (responses.ts), shared by every replica, so previous_response_id, item_reference
// and GET /v1/responses/{id} work whichever replica a request lands on. A query that fails is
// StoreUnavailable (the plane answers 503 store_unavailable): never "not found" by mistake.
import type { Sql } from './postgres.ts';
import { StoreUnavailable } from './types.ts';
import type { ResponseStore, StoredResponse } from './responses.ts';

/** Expired rows are removed at most this often per replica (reads already ignore them). */
const PURGE_EVERY_MS = 60_000;

interface Row { id: string; agent: string; previous_id: string | null; input: string; response: string; expires_at: string | number }

export function fleetResponseStore(sql: Sql, now: () => number = Date.now): ResponseStore {
  let lastPurge = 0;
  const fail = (e: unknown): never => { throw new StoreUnavailable('postgres', `stored responses: ${(e as Error).message}`); };
  const record = (r: Row): StoredResponse => ({
    id: r.id, agent: r.agent, previousId: r.previous_id, input: r.input, response: r.response, expiresAt: Number(r.expires_at),
  });
  return {
    async put(r, itemIds) {
      const t = now();
      const purge = t - lastPurge > PURGE_EVERY_MS;
      if (purge) lastPurge = t;
      // One statement (atomic on its own): one round trip before the answer instead of BEGIN,
      // DELETE, two INSERTs and COMMIT. The answer waits for it, so a follow-up on any replica finds it.
      const items = [...new Set(itemIds)];
      try {
        await sql`WITH gone AS (DELETE FROM responses WHERE ${purge}::boolean AND expires_at <= ${t}),
          r AS (
            INSERT INTO responses (id, agent, previous_id, input, response, expires_at)
            VALUES (${r.id}, ${r.agent}, ${r.previousId}, ${r.input}, ${r.response}, ${r.expiresAt})
            ON CONFLICT (id) DO UPDATE SET agent = excluded.agent, previous_id = excluded.previous_id, input = excluded.input,
              response = excluded.response, expires_at = excluded.expires_at
            RETURNING id, agent)
          INSERT INTO response_items (agent, item_id, response_id)
            SELECT r.agent, i.item_id, r.id FROM r CROSS JOIN unnest(${items}::text[]) AS i(item_id)
          ON CONFLICT (agent, item_id) DO UPDATE SET response_id = excluded.response_id`;
      } catch (e) { fail(e); }
    },
    async get(agent, id) {
      try {
        const [r] = await sql<Row[]>`SELECT id, agent, previous_id, input, response, expires_at FROM responses
          WHERE id = ${id} AND agent = ${agent} AND expires_at > ${now()}`;
        return r ? record(r) : null;
      } catch (e) { return fail(e); }
    },
    async itemOwner(agent, itemId) {
      try {
        const [r] = await sql<Array<{ id: string }>>`SELECT i.response_id AS id FROM response_items i JOIN responses r ON r.id = i.response_id
          WHERE i.agent = ${agent} AND i.item_id = ${itemId} AND r.agent = ${agent} AND r.expires_at > ${now()}`;
        return r ? r.id : null;
      } catch (e) { return fail(e); }
    },
    async delete(agent, id) {
      try {
        const rows = await sql`DELETE FROM responses WHERE id = ${id} AND agent = ${agent} RETURNING id`;
        return rows.length > 0;
      } catch (e) { return fail(e); }
    },
  };
}
