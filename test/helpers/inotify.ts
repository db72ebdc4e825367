// inotify watches this process holds, for tests that a closed watcher is released (Linux: one
// "inotify wd:" line per watch in the fdinfo of libuv's inotify descriptor); null elsewhere.
import { readdirSync, readFileSync } from 'node:fs';

export function inotifyWatchCount(): number | null {
  if (process.platform !== 'linux') return null;
  let n = 0;
  for (const fd of readdirSync('/proc/self/fdinfo')) {
    try { n += (readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^inotify wd:/gm) ?? []).length; } catch { /* closed meanwhile */ }
  }
  return n;
}
