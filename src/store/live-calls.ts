// A2A calls whose delegation is live (access/delegation.ts): a call is live while it runs, and
// after its answer while a task it left running (not terminal as aam last saw it) holds it, up to
// the ttl given at its start (the delegation's expiry: a task nobody polls holds it no longer).
// One process: maps in memory. A fleet: this replica's running calls in memory (answered with no
// trip), and in Redis a key per running call, a set per call of the tasks holding it and a set per
// task of the calls it holds, written without waiting (the callee needs a round trip to its
// caller's answer before it can call back, by which time they have landed); an empty set is gone.
import type { Redis } from './redis.ts';
import { StoreUnavailable } from './types.ts';

export interface LiveCalls {
  /** The call `call` runs, live for at most `ttlMs`. */
  begin(call: string, ttlMs: number): void;
  /** The call's answer is out: live from now on only while one of `tasks` (a callee's task key each) holds it. */
  end(call: string, tasks: readonly string[] | null): void;
  /** `task` reached a terminal state: the calls it held are no longer live (unless held otherwise). */
  taskEnded(task: string): void;
  /** Whether `call` is live: at once when this process knows, else (fleet) Redis's answer. */
  live(call: string): boolean | Promise<boolean>;
}

/** A live call: until when at most, whether it runs, the tasks holding it. */
interface Held { until: number; running: boolean; tasks: Set<string> | null }

/** Sweep the maps of what outlived its ttl only when this many are held (then at twice as many). */
const SWEEP_AT = 10_000;

export function memoryLiveCalls(now: () => number = Date.now): LiveCalls {
  const calls = new Map<string, Held>();
  /** Task -> the calls it holds (ended with it). */
  const tasks = new Map<string, Set<string>>();
  let sweepAt = SWEEP_AT;
  const sweep = (t: number): void => {
    for (const [k, h] of calls) if (h.until <= t) calls.delete(k);
    for (const [k, held] of tasks) {
      for (const c of held) if (!calls.has(c)) held.delete(c);
      if (held.size === 0) tasks.delete(k);
    }
    sweepAt = Math.max(SWEEP_AT, (calls.size + tasks.size) * 2);
  };
  return {
    begin(call, ttlMs) {
      const t = now();
      // Calls end far more often than tasks are left running: a sweep only when many are held.
      if (calls.size + tasks.size >= sweepAt) sweep(t);
      calls.set(call, { until: t + ttlMs, running: true, tasks: null });
    },
    end(call, held) {
      const h = calls.get(call);
      if (h === undefined) return;
      if (held === null || held.length === 0) { calls.delete(call); return; }
      h.running = false;
      h.tasks = new Set(held);
      for (const task of held) {
        const by = tasks.get(task);
        if (by) by.add(call); else tasks.set(task, new Set([call]));
      }
    },
    taskEnded(task) {
      const by = tasks.get(task);
      if (by === undefined) return;
      tasks.delete(task);
      for (const call of by) {
        const h = calls.get(call);
        if (h?.tasks?.delete(task) && h.tasks.size === 0 && !h.running) calls.delete(call);
      }
    },
    live(call) {
      const h = calls.get(call);
      return h !== undefined && h.until > now() && (h.running || (h.tasks?.size ?? 0) > 0);
    },
  };
}

// KEYS: the call's running key, its held set, then each holding task's set. ARGV: the call's id,
// then each task's member. The tasks hold the call (for what is left of its ttl), then it no longer runs.
const END_HELD = `
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for i = 3, #KEYS do
    redis.call('SADD', KEYS[2], ARGV[i - 1])
    redis.call('SADD', KEYS[i], ARGV[1])
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('DEL', KEYS[1])`;
// KEYS: the task's set. ARGV: the held sets' key prefix, the task's member. The calls it held lose it.
const TASK_ENDED = `
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('SREM', ARGV[1] .. c, ARGV[2]) end
redis.call('DEL', KEYS[1])`;

type Scripted = {
  aamLiveEndHeld(n: number, ...a: string[]): Promise<unknown>;
  aamLiveTaskEnded(key: string, heldPrefix: string, member: string): Promise<unknown>;
};

/**
 * A call's keys: `live:c:<call>` while it runs (SET with its ttl at its start, DEL at its end: two
 * plain commands, the usual call's whole cost), and `live:h:<call>`, the set of tasks holding it
 * (only for a call that left tasks running). Live: either exists (one EXISTS for both).
 */
export function redisLiveCalls(redis: Redis, prefix: string): LiveCalls {
  redis.defineCommand('aamLiveEndHeld', { lua: END_HELD });
  redis.defineCommand('aamLiveTaskEnded', { numberOfKeys: 1, lua: TASK_ENDED });
  const r = redis as unknown as Scripted;
  /** This replica's running calls. */
  const running = new Set<string>();
  const runs = `${prefix}live:c:`;
  const held = `${prefix}live:h:`;
  const taskKey = (task: string) => `${prefix}live:t:${task}`;
  const ignore = (): void => {};
  return {
    begin(call, ttlMs) {
      running.add(call);
      redis.set(runs + call, '1', 'PX', ttlMs).catch(ignore);
    },
    end(call, tasks) {
      running.delete(call);
      if (tasks === null || tasks.length === 0) { redis.del(runs + call).catch(ignore); return; }
      const keys = [runs + call, held + call];
      const argv = [call];
      for (const task of tasks) { keys.push(taskKey(task)); argv.push(`t${task}`); }
      r.aamLiveEndHeld(keys.length, ...keys, ...argv).catch(ignore);
    },
    taskEnded(task) {
      r.aamLiveTaskEnded(taskKey(task), held, `t${task}`).catch(ignore);
    },
    live(call) {
      if (running.has(call)) return true;
      return redis.exists(runs + call, held + call).then((n) => n > 0, (e: unknown) => {
        throw new StoreUnavailable('redis', `A2A delegation: cannot tell whether its call still runs: ${(e as Error).message}`);
      });
    },
  };
}
