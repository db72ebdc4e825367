// The longest stretch of this thread's CPU time between two event-loop turns while `work` runs:
// a ticker that runs once per turn (setImmediate) reads process.threadCpuUsage(). CPU time, not
// wall time, so a loaded machine that preempts the process does not make a turn look long (the
// clock counts in scheduler ticks of up to ~4 ms, so bounds need a floor).
export async function longestTurnCpuMs(work: () => Promise<unknown>): Promise<{ longest: number; turns: number }> {
  const cpu = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
  let longest = 0, turns = 0, prev = cpu(), running = true;
  const tick = () => {
    const now = cpu();
    longest = Math.max(longest, now - prev);
    prev = now;
    turns++;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  try {
    await work();
  } finally {
    running = false;
  }
  return { longest, turns };
}
