// Accepted tool definitions (the rug-pull defence's pins) behind the store seam: per MCP server
// and tool, the accepted digest and definition, the current one, and who accepted it. Reads are
// synchronous (a tools/list compiles the catalog at once); embedded: SQLite in the data dir (here);
// fleet: PostgreSQL mirrored in memory (fleet-pins.ts), so a definition accepted on one replica is
// accepted on every replica and a change seen by one is flagged on all.
import type { DatabaseSync } from 'node:sqlite';

export interface PinRow {
  server: string; tool: string;
  accepted_digest: string; accepted_def: string;
  current_digest: string; current_def: string;
  accepted_by: string | null; accepted_at: string;
}

export interface ToolPins {
  get(server: string, tool: string): PinRow | undefined;
  /** First sighting: trusted as is (another replica's first sighting, if earlier, wins). */
  add(row: PinRow): void;
  /** The definition the upstream lists now differs from the accepted one. */
  setCurrent(server: string, tool: string, digest: string, def: string): void;
  /** Accepted and current both become this definition (a legacy digest upgraded). */
  upgrade(server: string, tool: string, digest: string, def: string): void;
  /** A person accepted the current definition; durable (and, in a fleet, everywhere) once it resolves. */
  accept(server: string, tool: string, actor: string, at: string): Promise<PinRow | undefined>;
  /** Rows whose current definition differs from the accepted one. */
  changed(): PinRow[];
  /** Called with a server whose accepted definitions another replica changed (recompile its tools). */
  onAccepted(fn: (server: string) => void): void;
}

export function sqlitePins(db: DatabaseSync): ToolPins {
  db.exec(`CREATE TABLE IF NOT EXISTS mcp_tool_digests (
    server TEXT NOT NULL, tool TEXT NOT NULL,
    accepted_digest TEXT NOT NULL, accepted_def TEXT NOT NULL,
    current_digest TEXT NOT NULL, current_def TEXT NOT NULL,
    accepted_by TEXT, accepted_at TEXT NOT NULL, first_seen TEXT NOT NULL,
    PRIMARY KEY (server, tool))`);
  const get = db.prepare('SELECT * FROM mcp_tool_digests WHERE server = ? AND tool = ?');
  const insert = db.prepare(`INSERT OR IGNORE INTO mcp_tool_digests (server, tool, accepted_digest, accepted_def, current_digest, current_def, accepted_by, accepted_at, first_seen)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const setCurrent = db.prepare('UPDATE mcp_tool_digests SET current_digest = ?, current_def = ? WHERE server = ? AND tool = ?');
  const upgrade = db.prepare('UPDATE mcp_tool_digests SET accepted_digest = ?, accepted_def = ?, current_digest = ?, current_def = ? WHERE server = ? AND tool = ?');
  const accept = db.prepare('UPDATE mcp_tool_digests SET accepted_digest = current_digest, accepted_def = current_def, accepted_by = ?, accepted_at = ? WHERE server = ? AND tool = ?');
  const changed = db.prepare('SELECT * FROM mcp_tool_digests WHERE accepted_digest <> current_digest ORDER BY server, tool');
  const row = (server: string, tool: string) => get.get(server, tool) as PinRow | undefined;
  return {
    get: row,
    add: (r) => { insert.run(r.server, r.tool, r.accepted_digest, r.accepted_def, r.current_digest, r.current_def, r.accepted_by, r.accepted_at, r.accepted_at); },
    setCurrent: (server, tool, digest, def) => { setCurrent.run(digest, def, server, tool); },
    upgrade: (server, tool, digest, def) => { upgrade.run(digest, def, digest, def, server, tool); },
    accept: (server, tool, actor, at) => { accept.run(actor, at, server, tool); return Promise.resolve(row(server, tool)); },
    changed: () => changed.all() as unknown as PinRow[],
    onAccepted: () => { /* one process: nobody else accepts */ },
  };
}
