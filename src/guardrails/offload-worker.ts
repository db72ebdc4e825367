// The guardrail scan thread (see offload.ts): scans one deferred leaf with the walker's own scan.
import { parentPort } from 'node:worker_threads';
import { fromWire, type ScanJob, type ScanReply } from './offload.ts';
import { scanQueued } from './structured.ts';
import type { CompiledGuardrail } from './engine-core.ts';

const guardrails = new Map<number, CompiledGuardrail>();

parentPort!.on('message', (job: ScanJob) => {
  let reply: ScanReply;
  try {
    for (const [id, def] of job.defs) guardrails.set(id, fromWire(def));
    const gs = job.gs.map((id) => guardrails.get(id)!);
    const text = scanQueued(gs, job.dir, job.t, job.q);
    reply = { id: job.id, text: text === job.q.text ? null : text, t: job.t };
  } catch (e) {
    reply = { id: job.id, error: (e as Error).message };
  }
  parentPort!.postMessage(reply);
});
