// Administrative actions taken from the command line (keys, stored credentials) are evidence too:
// each is recorded in the audit trail by the CLI process itself, committed before it exits.
import { userInfo } from 'node:os';
import { openAuditLog } from '../audit/log.ts';
import { adminEvent } from '../audit/event.ts';

/** Who ran the command, as far as the OS knows. */
function cliActor(): string {
  try { return `cli:${userInfo().username}`; } catch { return `cli:uid-${process.getuid?.() ?? '?'}`; }
}

/**
 * Record one admin event durably. Returns an error text when it could not be written (the action
 * itself already happened: the caller says so and exits non-zero), null when recorded or when the
 * trail is off (AAM_AUDIT=off).
 */
export async function recordCliAdmin(dataDir: string, action: string, target: string, detail: Record<string, string | number | boolean> = {}): Promise<string | null> {
  if (process.env.AAM_AUDIT === 'off') return null;
  try {
    // A person is waiting, not a request path: give a busy machine time to commit (default 10 s).
    const log = openAuditLog({ dataDir, durableTimeoutMs: 120_000 });
    try {
      await log.recordDurable(adminEvent(action, target, cliActor(), detail, 200, 'cli-'));
    } finally {
      await log.close();
    }
    return null;
  } catch (e) {
    return `${action} ${target} was done, but its audit event could not be written: ${e instanceof Error ? e.message : String(e)}`;
  }
}
