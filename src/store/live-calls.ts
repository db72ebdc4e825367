// A2A calls whose delegation is live (access/delegation.ts): a call is live while it runs, and
// after its answer while a task it left running (not terminal as aam last saw it) holds it, up to
// the ttl given at its start (the delegation's expiry: a task nobody polls holds it no longer).
// One process: maps in memory. A fleet: this replica's running calls in memory (answered with no
// trip), and in Redis a set per call (a member while it runs, one per task holding it) and a set
// per task (the calls it holds), written without waiting (the callee needs a round trip to its
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

/** The member of a call's set while it runs (a task's member is `t` + its key). */
const RUNNING = 'r';

// KEYS: the call's set. ARGV: ttl ms.
const BEGIN = `redis.call('SADD', KEYS[1], '${RUNNING}') redis.call('PEXPIRE', KEYS[1], ARGV[1])`;
// KEYS: the call's set, then each holding task's set. ARGV: the call's id, then each task's member.
// The tasks hold the call (each task's set lives as long as the call's), then it no longer runs.
const END = `
if #KEYS > 1 and redis.call('EXISTS', KEYS[1]) == 1 then
  local ttl = redis.call('PTTL', KEYS[1])
  for i = 2, #KEYS do
    redis.call('SADD', KEYS[1], ARGV[i])
    redis.call('SADD', KEYS[i], ARGV[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
redis.call('SREM', KEYS[1], '${RUNNING}')`;
// KEYS: the task's set. ARGV: the calls' key prefix, the task's member. The calls it held lose it.
const TASK_ENDED = `
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do redis.call('SREM', ARGV[1] .. c, ARGV[2]) end
redis.call('DEL', KEYS[1])`;

type Scripted = {
  aamLiveBegin(key: string, ttlMs: number): Promise<unknown>;
  aamLiveEnd(n: number, ...a: string[]): Promise<unknown>;
  aamLiveTaskEnded(key: string, callPrefix: string, member: string): Promise<unknown>;
};

export function redisLiveCalls(redis: Redis, prefix: string): LiveCalls {
  redis.defineCommand('aamLiveBegin', { numberOfKeys: 1, lua: BEGIN });
  redis.defineCommand('aamLiveEnd', { lua: END });
  redis.defineCommand('aamLiveTaskEnded', { numberOfKeys: 1, lua: TASK_ENDED });
  const r = redis as unknown as Scripted;
  /** This replica's running calls. */
  const running = new Set<string>();
  const calls = `${prefix}live:c:`;
  const taskKey = (task: string) => `${prefix}live:t:${task}`;
  const ignore = (): void => {};
  return {
    begin(call, ttlMs) {
      running.add(call);
      r.aamLiveBegin(calls + call, ttlMs).catch(ignore);
    },
    end(call, held) {
      running.delete(call);
      const n = held?.length ?? 0;
      if (n === 0) { r.aamLiveEnd(1, calls + call, call).catch(ignore); return; }
      const keys = [calls + call];
      const argv = [call];
      for (const task of held!) { keys.push(taskKey(task)); argv.push(`t${task}`); }
      r.aamLiveEnd(keys.length, ...keys, ...argv).catch(ignore);
    },
    taskEnded(task) {
      r.aamLiveTaskEnded(taskKey(task), calls, `t${task}`).catch(ignore);
    },
    live(call) {
      if (running.has(call)) return true;
      return redis.exists(calls + call).then((n) => n === 1, (e: unknown) => {
        throw new StoreUnavailable('redis', `A2A delegation: cannot tell whether its call still runs: ${(e as Error).message}`);
      });
    },
  };
}
