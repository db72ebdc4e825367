// A2A calls whose delegation is live (access/delegation.ts): a call is live while it runs, and
// after its answer while a task it left running (not terminal as aam last saw it) holds it, up to
// the ttl given at its start (the delegation's expiry: a task nobody polls holds it no longer).
// One process: maps in memory. A fleet: this replica's running calls in memory (answered with no
// trip), and in Redis a zset of the live calls, a set per call of the tasks holding it and a set per
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

/**
 * A call held after its answer by the tasks it left running, until when at most. A running call
 * is its expiry alone (a number: no object per call, and nothing to sweep in it but that).
 */
interface Held { until: number; tasks: Set<string> }

const untilOf = (h: number | Held): number => (typeof h === 'number' ? h : h.until);

/** Sweep the maps of what outlived its ttl only when this many are held (then at twice as many). */
const SWEEP_AT = 10_000;

export function memoryLiveCalls(now: () => number = Date.now): LiveCalls {
  /** Call -> its expiry while it runs, or what holds it once it has answered. */
  const calls = new Map<string, number | Held>();
  /** Task -> the calls it holds (ended with it). */
  const tasks = new Map<string, Set<string>>();
  let sweepAt = SWEEP_AT;
  const sweep = (t: number): void => {
    for (const [k, h] of calls) if (untilOf(h) <= t) calls.delete(k);
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
      calls.set(call, t + ttlMs);
    },
    end(call, held) {
      const h = calls.get(call);
      if (typeof h !== 'number') return;
      if (held === null || held.length === 0) { calls.delete(call); return; }
      calls.set(call, { until: h, tasks: new Set(held) });
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
        if (typeof h === 'object' && h.tasks.delete(task) && h.tasks.size === 0) calls.delete(call);
      }
    },
    live(call) {
      const h = calls.get(call);
      if (h === undefined) return false;
      return typeof h === 'number' ? h > now() : h.until > now() && h.tasks.size > 0;
    },
  };
}

// KEYS: the running calls' zset, the call's held set, then each holding task's set. ARGV: the
// call's id, the ms left of its ttl, then each task's member. The tasks hold the call (for what is
// left of its ttl); it stays in the zset (live) until its last task ends.
const END_HELD = `
local ttl = tonumber(ARGV[2])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('SADD', KEYS[i], ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
redis.call('PEXPIRE', KEYS[2], ttl)`;
// KEYS: the task's set, the running calls' zset. ARGV: the held sets' key prefix, the task's member.
// The calls it held lose it; one it held alone is no longer live.
const TASK_ENDED = `
for _, c in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = ARGV[1] .. c
  redis.call('SREM', h, ARGV[2])
  if redis.call('EXISTS', h) == 0 then redis.call('ZREM', KEYS[2], c) end
end
redis.call('DEL', KEYS[1])`;

type Scripted = {
  aamLiveEndHeld(n: number, ...a: Array<string | number>): Promise<unknown>;
  aamLiveTaskEnded(key: string, calls: string, heldPrefix: string, member: string): Promise<unknown>;
};

/** Sweep the zset of calls past their ttl (a replica that stopped mid-call left them) at most this often. */
const SWEEP_MS = 60_000;
/**
 * A member never removed (score +inf), longer than zset-max-listpack-value (64 bytes by default):
 * Redis keeps the zset as a skiplist, not a listpack, whose every ZADD and ZREM scans and moves it
 * (fleet c=64, ~100 calls in it: ZADD 2.3-6.1 and ZREM 1.5-8.2 us per call as a listpack).
 * Written with each sweep (a Redis that restarted empty gets it back within a minute).
 */
const KEEP = '~ never a call: keeps this zset a skiplist (a member over 64 bytes), never a listpack';

/**
 * The live calls of the fleet: one zset, `live:calls`, whose members are the calls that run or that
 * tasks hold, each scored with the end of its ttl (epoch ms), and `live:h:<call>`, the set of tasks
 * holding a call (only for a call that left tasks running). A call's start and end are written
 * without waiting, and those of one loop turn together (they are queued and sent at the turn's
 * next tick, in the order of the turn's ends): one ZADD for the calls that started, one ZREM for
 * those that ended, whatever their number (a SET PX and a DEL per call before: 2 commands each; a
 * call that starts and ends within one turn costs none). Live: in the zset with its ttl not past
 * (or, from a replica of the version before, its `live:c:<call>` key or held set exists).
 */
export function redisLiveCalls(redis: Redis, prefix: string): LiveCalls {
  redis.defineCommand('aamLiveEndHeld', { lua: END_HELD });
  redis.defineCommand('aamLiveTaskEnded', { numberOfKeys: 2, lua: TASK_ENDED });
  const r = redis as unknown as Scripted;
  /** This replica's running calls, each with the end of its ttl. */
  const running = new Map<string, number>();
  const calls = `${prefix}live:calls`;
  const runs = `${prefix}live:c:`;
  const held = `${prefix}live:h:`;
  const taskKey = (task: string) => `${prefix}live:t:${task}`;
  const ignore = (): void => {};
  /** Calls started this turn and not yet sent: [score, member] pairs for one ZADD. */
  let adds: Array<string | number> = [];
  /** Of those, the index of each call's score in `adds` (a call ended before it was sent is dropped, never sent). */
  const added = new Map<string, number>();
  /** Calls ended this turn with nothing holding them: one ZREM. */
  let ends: string[] = [];
  /** Scripts of this turn (a call ended with tasks holding it, a task ended), in their order. */
  let scripts: Array<() => void> = [];
  let armed = false;
  let sweepAt = 0;
  const flush = (): void => {
    armed = false;
    const now = Date.now();
    const sweep = now >= sweepAt;
    if (added.size > 0 || sweep) {
      const args: Array<string | number> = [calls];
      if (sweep) args.push('+inf', KEEP);
      for (let i = 0; i < adds.length; i += 2) if (adds[i] !== '') args.push(adds[i], adds[i + 1]);
      redis.zadd(...(args as [string, number, string])).catch(ignore);
    }
    adds = [];
    added.clear();
    const run = scripts;
    scripts = [];
    for (const s of run) s();
    if (ends.length > 0) { redis.zrem(calls, ...ends).catch(ignore); ends = []; }
    if (sweep) { sweepAt = now + SWEEP_MS; redis.zremrangebyscore(calls, '-inf', now).catch(ignore); }
  };
  const arm = (): void => { if (!armed) { armed = true; process.nextTick(flush); } };
  return {
    begin(call, ttlMs) {
      const until = Date.now() + ttlMs;
      running.set(call, until);
      added.set(call, adds.length);
      adds.push(until, call);
      arm();
    },
    end(call, tasks) {
      const until = running.get(call);
      if (until === undefined) return;
      running.delete(call);
      const at = added.get(call);
      if (tasks === null || tasks.length === 0) {
        // Started this turn too: neither its start nor its end is sent.
        if (at !== undefined) { added.delete(call); adds[at] = ''; } else ends.push(call);
        arm();
        return;
      }
      const ttl = until - Date.now();
      if (ttl <= 0) { ends.push(call); arm(); return; }
      const keys = [calls, held + call];
      const argv: Array<string | number> = [call, ttl];
      for (const task of tasks) { keys.push(taskKey(task)); argv.push(`t${task}`); }
      scripts.push(() => { r.aamLiveEndHeld(keys.length, ...keys, ...argv).catch(ignore); });
      arm();
    },
    taskEnded(task) {
      scripts.push(() => { r.aamLiveTaskEnded(taskKey(task), calls, held, `t${task}`).catch(ignore); });
      arm();
    },
    live(call) {
      if (running.has(call)) return true;
      // One round trip (auto-pipelined); the keys a replica of the version before writes are asked too.
      return Promise.all([redis.zscore(calls, call), redis.exists(runs + call, held + call)]).then(([score, n]) => (score !== null && Number(score) > Date.now()) || n > 0, (e: unknown) => {
        throw new StoreUnavailable('redis', `A2A delegation: cannot tell whether its call still runs: ${(e as Error).message}`);
      });
    },
  };
}
