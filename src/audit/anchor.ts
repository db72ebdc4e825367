// Checkpoints that leave the data dir. Whoever can write the data dir can cut the trail's tail and
// delete the checkpoints beside it, and the rest still verifies; a signed checkpoint kept
// elsewhere (this file copied out, a sink's copy, a URL) is what `aam audit verify --checkpoint`
// holds the trail to. Each signed checkpoint is appended here, one JSON line, by the writer thread.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { checkpointLine, checkpointOf } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import { isObj, parseJson } from '../lib/json.ts';

export const CHECKPOINT_FILE = 'audit-checkpoints.jsonl';

/** Where signed checkpoints are appended: AAM_AUDIT_CHECKPOINT_FILE (e.g. another volume) or <dataDir>/audit-checkpoints.jsonl. */
export function checkpointFilePath(dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.AAM_AUDIT_CHECKPOINT_FILE || join(dataDir, CHECKPOINT_FILE);
}

/**
 * Append checkpoint lines with one write(2), like segment lines: a killed process loses none.
 * Only the rare shutdown and retention ones are fsynced: an fsync costs the writer thread
 * milliseconds (measured 2.6-3.7 ms p50), a periodic one comes every 1000 events under load,
 * and the next one supersedes it.
 */
export function appendCheckpoints(path: string, cps: readonly Checkpoint[]): void {
  if (cps.length === 0) return;
  // O_APPEND: several processes sharing the data dir append whole lines without interleaving.
  // The directory is made only when missing (a mkdir per checkpoint is a syscall the writer's core pays).
  let fd: number;
  try { fd = openSync(path, 'a', 0o600); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    fd = openSync(path, 'a', 0o600);
  }
  try {
    writeSync(fd, cps.map((c) => checkpointLine(c) + '\n').join(''));
    if (cps.some((c) => c.type !== 'periodic')) fsyncSync(fd);
  } finally { closeSync(fd); }
}

/**
 * Checkpoints in a text: JSON lines (this file, an export or a sink's JSONL file: event lines are
 * skipped), one checkpoint object, or a webhook body `{"checkpoints":[...]}`.
 */
export function parseCheckpoints(text: string): Checkpoint[] {
  const found: unknown[] = [];
  const whole = parseJson(text.trim());
  if (whole !== undefined) found.push(...(Array.isArray(whole) ? whole : isObj(whole) && Array.isArray(whole.checkpoints) ? whole.checkpoints : [whole]));
  else {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line) continue;
      const v = parseJson(line);
      if (v === undefined) throw new Error(`line ${i + 1} is not JSON`);
      found.push(v);
    }
  }
  const out: Checkpoint[] = [];
  for (const v of found) {
    if (isObj(v) && v.kind !== undefined && v.kind !== 'checkpoint') continue;
    const c = checkpointOf(v);
    if (typeof c === 'string') throw new Error(`not a signed audit checkpoint: ${c}`);
    out.push(c);
  }
  if (out.length === 0) throw new Error('holds no checkpoint (expected {"kind":"checkpoint","tree_size":...} lines, as in audit-checkpoints.jsonl)');
  return out;
}

/** The newest checkpoint: the largest tree size (then the latest time). */
export function newestCheckpoint(cps: readonly Checkpoint[]): Checkpoint {
  return cps.reduce((a, b) => (b.tree_size > a.tree_size || (b.tree_size === a.tree_size && b.time > a.time) ? b : a));
}

/** `--checkpoint` argument: an http(s) URL serving checkpoints, a file of them, or one JSON line itself. */
export async function readCheckpointSource(source: string, timeoutMs = 10_000): Promise<Checkpoint[]> {
  let text: string;
  if (/^https?:\/\//i.test(source)) {
    const res = await fetch(source, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json, application/x-ndjson, text/plain' } });
    text = await res.text();
    if (!res.ok) throw new Error(`${source} answered ${res.status}`);
  } else if (source.trimStart().startsWith('{') && !existsSync(source)) {
    text = source;
  } else {
    text = readFileSync(source, 'utf8');
  }
  return parseCheckpoints(text);
}
