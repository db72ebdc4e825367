// Which A2A task and context ids an answer names. A callee sees every caller as aam, so it cannot
// tell them apart: aam binds each id a callee returns to the caller (and skill) of the call that
// created it (rt.a2aTasks, the store seam: one process or the whole fleet), and answers another
// caller's GetTask/CancelTask/SubscribeToTask/push config (or a message continuing it) as if the
// task did not exist.

import type { TaskIds } from '../store/types.ts';

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/** Task and context ids in a SendMessage/GetTask result or a stream event (v1 shapes). */
export function idsIn(result: unknown): TaskIds {
  const out: TaskIds = { tasks: [], contexts: [] };
  if (!result || typeof result !== 'object') return out;
  const r = result as Record<string, unknown>;
  // The result itself and the objects it may wrap (no array of them: a stream calls this per event).
  idsOf(r, out);
  idsOf(r.task, out);
  idsOf(r.message, out);
  idsOf(r.statusUpdate, out);
  idsOf(r.artifactUpdate, out);
  return out;
}

function idsOf(o: unknown, out: TaskIds): void {
  if (!o || typeof o !== 'object') return;
  const x = o as Record<string, unknown>;
  const task = str(x.taskId) ?? (x.status !== undefined ? str(x.id) : undefined);
  if (task) out.tasks.push(task);
  const ctx = str(x.contextId);
  if (ctx) out.contexts.push(ctx);
}
