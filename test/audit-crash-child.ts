// Child for audit-crash.test.ts: records under load and prints "ack <seq> <hash>" for every
// durable event once it is committed. The parent kills it with SIGKILL at a random moment.
import { openAuditLog } from '../src/audit/log.ts';
import { sampleEvent } from './audit-helpers.ts';

const log = openAuditLog({ dataDir: process.argv[2], checkpointEvery: 500, checkpointIntervalMs: 50 });
let i = 0;
function burst(): void {
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
