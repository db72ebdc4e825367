// Who owns an A2A task or context. A callee sees every caller as aam, so it cannot tell them
// apart: aam binds each task and context id a callee returns to the caller (and skill) of the
// call that created it, and answers another caller's GetTask/CancelTask/SubscribeToTask/push
// config (or a message continuing it) as if the task did not exist. Bounded and expiring.

export interface TaskOwner {
  /** SPIFFE ID of the caller that created it. */
  caller: string;
  /** The skill of the call that created it: later task calls are decided as that skill. */
  skill: string;
  expires: number;
}

export interface TaskIds { tasks: string[]; contexts: string[] }

export class TaskOwners {
  readonly #m = new Map<string, TaskOwner>();
  readonly #max: number;
  readonly #ttlMs: number;

  constructor(max = 50_000, ttlMs = 24 * 60 * 60 * 1000) { this.#max = max; this.#ttlMs = ttlMs; }

  get(callee: string, kind: 'task' | 'context', id: string, now = Date.now()): TaskOwner | undefined {
    const k = `${callee}\0${kind}\0${id}`;
    const o = this.#m.get(k);
    if (o && o.expires < now) { this.#m.delete(k); return undefined; }
    return o;
  }

  /** Bind ids to a caller; an id already owned by another caller keeps its owner. */
  bind(callee: string, ids: TaskIds, caller: string, skill: string, now = Date.now()): void {
    for (const [kind, list] of [['task', ids.tasks], ['context', ids.contexts]] as const) {
      for (const id of list) {
        const cur = this.get(callee, kind, id, now);
        if (cur && cur.caller !== caller) continue;
        const k = `${callee}\0${kind}\0${id}`;
        this.#m.delete(k);
        this.#m.set(k, { caller, skill, expires: now + this.#ttlMs });
        if (this.#m.size > this.#max) this.#m.delete(this.#m.keys().next().value as string);
      }
    }
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/** Task and context ids in a SendMessage/GetTask result or a stream event (v1 shapes). */
export function idsIn(result: unknown): TaskIds {
  const out: TaskIds = { tasks: [], contexts: [] };
  if (!result || typeof result !== 'object') return out;
  const r = result as Record<string, unknown>;
  for (const o of [r, r.task, r.message, r.statusUpdate, r.artifactUpdate]) {
    if (!o || typeof o !== 'object') continue;
    const x = o as Record<string, unknown>;
    const task = str(x.taskId) ?? (x.status !== undefined ? str(x.id) : undefined);
    if (task) out.tasks.push(task);
    const ctx = str(x.contextId);
    if (ctx) out.contexts.push(ctx);
  }
  return out;
}
