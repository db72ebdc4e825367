// Write-ahead journal: record() appends each event to a local file with one write(2) before the
// caller acknowledges its request. A process that is killed (kill -9) loses nothing: the OS has
// the bytes, and the next start replays every journal line the database does not hold yet.
// (An fsync per event would also survive power loss; that is what recordDurable is for.)
// Each process writes its own journal file; the database remembers, in the same transaction as
// each batch, up to which byte offset that journal is committed (meta key journal:<gen>).
import { closeSync, openSync, readFileSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const PREFIX = 'audit-journal-';
export const journalMetaKey = (gen: string): string => `journal:${gen}`;

export interface Journal {
  readonly gen: string;
  /** Append one line (already JSON); returns the byte offset after it. */
  append(line: string): number;
  /** Append several lines with one write(2); returns the byte offset after each. */
  appendMany(lines: readonly string[]): number[];
  /** Bytes written to this generation so far. */
  size(): number;
  /** Start a new generation file and delete the old one (only when every line is committed). */
  rotate(): void;
  /** Close; delete the file when everything in it is committed. */
  close(allCommitted: boolean): void;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false; // an earlier incarnation of a reused pid cannot be us
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Journals left by processes that are gone: their lines after the committed offset, in order.
 * `committedEnd(gen)` reads the database mark. Call `done()` once those lines are re-journaled.
 */
export function orphanedLines(dataDir: string, committedEnd: (gen: string) => number | undefined): { lines: string[]; done(): void } {
  const lines: string[] = [];
  const files: string[] = [];
  let names: string[] = [];
  try { names = readdirSync(dataDir).filter((n) => n.startsWith(PREFIX)).sort(); } catch { /* no data dir yet */ }
  for (const name of names) {
    const path = join(dataDir, name);
    const buf = readFileSync(path);
    const nl = buf.indexOf(10);
    if (nl < 0) { files.push(path); continue; }
    let head: { gen?: string; pid?: number };
    try { head = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { gen?: string; pid?: number }; } catch { files.push(path); continue; }
    if (typeof head.pid === 'number' && alive(head.pid)) continue; // another running gateway owns it
    const from = Math.max(committedEnd(String(head.gen)) ?? 0, nl + 1);
    // A torn last line (killed mid-write) has no newline: its request was never acknowledged.
    const complete = buf.subarray(from).toString('utf8').split('\n');
    complete.pop();
    for (const l of complete) if (l) lines.push(l);
    files.push(path);
  }
  return { lines, done: () => { for (const f of files) { try { unlinkSync(f); } catch { /* already gone */ } } } };
}

export function openJournal(dataDir: string): Journal {
  let fd = -1;
  let gen = '';
  let path = '';
  let offset = 0;
  const start = () => {
    gen = randomBytes(8).toString('hex');
    path = join(dataDir, `${PREFIX}${gen}.log`);
    fd = openSync(path, 'wx', 0o600);
    const header = JSON.stringify({ gen, pid: process.pid }) + '\n';
    offset = writeSync(fd, header);
  };
  start();
  return {
    get gen() { return gen; },
    append(line) {
      offset += writeSync(fd, line + '\n');
      return offset;
    },
    appendMany(lines) {
      const ends: number[] = [];
      let end = offset;
      for (const l of lines) { end += Buffer.byteLength(l) + 1; ends.push(end); }
      const text = lines.join('\n') + '\n';
      let written = 0;
      const buf = Buffer.from(text);
      while (written < buf.length) written += writeSync(fd, buf, written);
      offset = end;
      return ends;
    },
    size: () => offset,
    rotate() {
      const old = { fd, path };
      start();
      closeSync(old.fd);
      try { unlinkSync(old.path); } catch { /* already gone */ }
    },
    close(allCommitted) {
      closeSync(fd);
      if (allCommitted) { try { unlinkSync(path); } catch { /* already gone */ } }
    },
  };
}
