// Child for audit-crash.test.ts: records under load and prints "ack <seq> <hash>" for every
// durable event once it is committed. The parent kills it with SIGKILL at a random moment.
// Like the gateway (which refuses requests while the audit queue has no room), it pauses while
// the writer is behind: unbounded, the queue outgrew the writer on a loaded CPU (load 24 here), so
// every durable event waited past its 10 s timeout and none was ever acknowledged.
import { openAuditLog } from '../src/audit/log.ts';
import { sampleEvent } from './audit-helpers.ts';

const log = openAuditLog({ dataDir: process.argv[2], checkpointEvery: 500, checkpointIntervalMs: 50 });
let i = 0;
const BEHIND = 5_000;
function burst(): void {
  if (log.stats().queued > BEHIND) { setTimeout(burst, 5); return; }
  for (let k = 0; k < 200; k++) log.record(sampleEvent(i++));
  for (let k = 0; k < 10; k++) {
    log.recordDurable(sampleEvent(i++, { type: 'tool_intent' })).then(
      (r) => process.stdout.write(`ack ${r.seq} ${r.hash}\n`),
      (e: unknown) => process.stderr.write(`durable failed: ${String(e)}\n`),
    );
  }
  setImmediate(burst);
}
burst();
