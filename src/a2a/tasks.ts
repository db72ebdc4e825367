// Which A2A task and context ids an answer names. A callee sees every caller as aam, so it cannot
// tell them apart: aam binds each id a callee returns to the caller (and skill) of the call that
// created it (rt.a2aTasks, the store seam: one process or the whole fleet), and answers another
// caller's GetTask/CancelTask/SubscribeToTask/push config (or a message continuing it) as if the
// task did not exist.

import type { TaskIds } from '../store/types.ts';

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);

/**
 * Ids a stream has bound already (its events repeat the task and context ids). The usual stream
 * names one task and one context: those are kept as one string each, and a Set is made only for
 * a second one.
 */
export class SeenIds {
  /** The first task id seen ('' before one). */
  task = '';
  /** The first context id seen ('' before one). */
  context = '';
  /** Task ids after the first, once there is one. */
  moreTasks: Set<string> | null = null;
  /** Context ids after the first, once there is one. */
  moreContexts: Set<string> | null = null;

  /** True when `id` (not empty) is a task id not seen before; it is seen from now on. */
  newTask(id: string): boolean {
    if (this.task === '') { this.task = id; return true; }
    if (id === this.task) return false;
    const more = this.moreTasks ??= new Set();
    return more.size !== more.add(id).size;
  }

  /** True when `id` (not empty) is a context id not seen before; it is seen from now on. */
  newContext(id: string): boolean {
    if (this.context === '') { this.context = id; return true; }
    if (id === this.context) return false;
    const more = this.moreContexts ??= new Set();
    return more.size !== more.add(id).size;
  }
}

/** No ids (shared, never written to: nothing is bound for it). */
const NONE: TaskIds = Object.freeze({ tasks: Object.freeze([]) as unknown as string[], contexts: Object.freeze([]) as unknown as string[] });

/**
 * Task and context ids in a SendMessage/GetTask result or a stream event (v1 and v0.3 shapes). `seen`:
 * the ids this stream bound already, left out (and the new ones added to it). The shared NONE,
 * with no object or array made, when there is nothing (new) to bind: a plain message, a stream's
 * later events.
 */
export function idsIn(result: unknown, seen?: SeenIds): TaskIds {
  if (!result || typeof result !== 'object') return NONE;
  const r = result as Record<string, unknown>;
  // The result itself and the objects it may wrap (no array of them: a stream calls this per event).
  let out = idsOf(r, NONE, seen);
  out = idsOf(r.task, out, seen);
  out = idsOf(r.message, out, seen);
  out = idsOf(r.statusUpdate, out, seen);
  return idsOf(r.artifactUpdate, out, seen);
}

/**
 * The task an object names: a message's, artifact-update's or status-update's `taskId` (v1's
 * `{statusUpdate}` and v0.3's `{kind: 'status-update'}` alike), or a Task's own `id` (it has a status).
 */
const taskOf = (x: Record<string, unknown>): string | undefined => str(x.taskId) ?? (x.status !== undefined ? str(x.id) : undefined);

function idsOf(o: unknown, out: TaskIds, seen: SeenIds | undefined): TaskIds {
  if (!o || typeof o !== 'object') return out;
  const x = o as Record<string, unknown>;
  const task = taskOf(x);
  const t = task && (seen === undefined || seen.newTask(task)) ? task : undefined;
  const ctx = str(x.contextId);
  const c = ctx && (seen === undefined || seen.newContext(ctx)) ? ctx : undefined;
  if (t === undefined && c === undefined) return out;
  // The first ids in arrays of their size (a push onto an empty array reserves room for 16 or more).
  if (out === NONE) return { tasks: t === undefined ? [] : [t], contexts: c === undefined ? [] : [c] };
  if (t !== undefined) out.tasks.push(t);
  if (c !== undefined) out.contexts.push(c);
  return out;
}

/** Who hears of the task states an answer, stream event or push notification reports (statesIn). */
export interface TaskStates {
  /** `task`'s state as reported now: terminal (completed, failed, canceled, rejected) or not. */
  taskState(task: string, terminal: boolean): void;
}

/**
 * Task states `result` reports, each to `to`: the result itself (a Task, or v0.3's unwrapped
 * `{kind: 'status-update', taskId}`: a stream may end on one with no task snapshot after it), and
 * v1's `{task}` and `{statusUpdate}`.
 */
export function statesIn(result: unknown, to: TaskStates): void {
  if (!result || typeof result !== 'object') return;
  const r = result as Record<string, unknown>;
  stateOf(r, to);
  stateOf(r.task, to);
  stateOf(r.statusUpdate, to);
}

function stateOf(o: unknown, to: TaskStates): void {
  if (!o || typeof o !== 'object') return;
  const x = o as Record<string, unknown>;
  const status = x.status as Record<string, unknown> | undefined;
  if (!status || typeof status !== 'object') return;
  const id = taskOf(x);
  if (id !== undefined) to.taskState(id, isTerminal(status.state));
}

/**
 * A task state after which the callee does no more work on the task: completed, failed, canceled,
 * rejected (v1 names, with or without TASK_STATE_, any case; proto numbers 3, 4, 5, 7). Submitted,
 * working, input-required and auth-required are not (nor an unknown state: it holds until the cap).
 */
export function isTerminal(state: unknown): boolean {
  if (typeof state === 'number') return state === 3 || state === 4 || state === 5 || state === 7;
  return typeof state === 'string' && /^(TASK_STATE_)?(COMPLETED|FAILED|CANCELL?ED|REJECTED)$/i.test(state);
}
