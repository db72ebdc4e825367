// Audit storage alerts in serve's log: a failure is an error someone must see, a recovery is info
// (logged at error level, the "writes to PostgreSQL again" line paged whoever alerts on errors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logAuditAlert } from '../src/cli/serve.ts';
import { createLogger } from '../src/observability/log.ts';

test('audit alerts: write_failed, queue_full and checkpoint_failed log at error, recovered at info', () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'debug', write: (l) => { lines.push(JSON.parse(l)); } });
  for (const kind of ['write_failed', 'queue_full', 'checkpoint_failed', 'recovered'] as const) {
    logAuditAlert(log, { kind, message: `m-${kind}`, queued: 3 });
  }
  assert.deepEqual(lines.map((l) => [l.kind, l.level, l.event, l.message]), [
    ['write_failed', 'error', 'audit_alert', 'm-write_failed'],
    ['queue_full', 'error', 'audit_alert', 'm-queue_full'],
    ['checkpoint_failed', 'error', 'audit_alert', 'm-checkpoint_failed'],
    ['recovered', 'info', 'audit_alert', 'm-recovered'],
  ]);
  assert.equal(lines[3].msg, 'audit storage recovered');
});
