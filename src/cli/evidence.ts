// Administrative actions taken from the command line (keys, stored credentials) are evidence too:
// each is recorded in the audit trail by the CLI process itself, committed before it exits.
import { userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import { openAuditLog } from '../audit/log.ts';
import { openFleetAuditLog, SIGNING_KEY_KEK_INFO } from '../audit/fleet-log.ts';
import { fleetDrivers } from '../store/fleet-lazy.ts';
import { databaseTls } from '../store/fleet-tls.ts';
import { loadMasterKey } from '../credentials/master-key.ts';
import { adminEvent } from '../audit/event.ts';
import { errMsg } from '../lib/error-message.ts';

/** Who ran the command, as far as the OS knows. */
function cliActor(): string {
  try { return `cli:${userInfo().username}`; } catch { return `cli:uid-${process.getuid?.() ?? '?'}`; }
}

/**
 * Throws what would keep an admin event of this command from being recorded, where that can be known
 * before the action: in fleet mode the event's chain needs AAM_MASTER_KEY. A key command checks
 * first, so it refuses with nothing done (before: the key was made and printed, then "its audit event
 * could not be written", exit 1).
 */
export function cliAdminReady(dataDir: string): void {
  if (process.env.AAM_AUDIT === 'off' || !process.env.AAM_DATABASE_URL) return;
  loadMasterKey({ dataDir, env: process.env });
}

/**
 * Record one admin event durably. Returns an error text when it could not be written (the action
 * itself already happened: the caller says so and exits non-zero), null when recorded or when the
 * trail is off (AAM_AUDIT=off).
 */
export async function recordCliAdmin(dataDir: string, action: string, target: string, detail: Record<string, string | number | boolean> = {}): Promise<string | null> {
  if (process.env.AAM_AUDIT === 'off') return null;
  try {
    const fleetUrl = process.env.AAM_DATABASE_URL;
    if (fleetUrl) {
      // Fleet mode: the event joins the fleet's trail in PostgreSQL, on a chain of this command's own.
      const drivers = await fleetDrivers();
      const sql = drivers.connectPostgres(fleetUrl, 1, { tls: databaseTls(process.env, fleetUrl) });
      try {
        const log = await openFleetAuditLog(sql, {
          replica: `cli-${randomBytes(6).toString('hex')}`, commitTimeoutMs: 120_000,
          keyEncryptionKey: loadMasterKey({ dataDir, env: process.env }).derive(SIGNING_KEY_KEK_INFO),
        });
        try { await log.recordDurable(adminEvent(action, target, cliActor(), detail, 200, 'cli-')); } finally { await log.close(); }
      } catch (e) {
        // A refused login or connection in the words every command uses (names AAM_DATABASE_URL, what to check).
        throw drivers.connectionError(e);
      } finally { await sql.end({ timeout: 2 }); }
      return null;
    }
    // A person is waiting, not a request path: give a busy machine time to commit (default 10 s).
    const log = openAuditLog({ dataDir, durableTimeoutMs: 120_000 });
    try {
      await log.recordDurable(adminEvent(action, target, cliActor(), detail, 200, 'cli-'));
    } finally {
      await log.close();
    }
    return null;
  } catch (e) {
    return `${action} ${target} was done, but its audit event could not be written: ${errMsg(e)}`;
  }
}
