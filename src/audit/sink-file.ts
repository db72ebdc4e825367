// JSONL file sink with size-based rotation: <path>, <path>.1 (newest rotated) ... <path>.<keep>.
// Lines are the export format ({"kind":"event",...}) or OCSF, one event per line, and the
// signed checkpoints as {"kind":"checkpoint",...} lines.
import { open, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditSink } from './sinks.ts';
import type { AuditEvent } from './event.ts';
import { exportLine } from './event.ts';
import { toOcsf } from './ocsf.ts';
import { checkpointLine } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';

export interface FileSinkOptions {
  name?: string;
  path: string;
  /** Rotate when the file would exceed this size (default 100 MiB). */
  maxBytes?: number;
  /** Rotated files kept (default 10); older ones are deleted. */
  keep?: number;
  format?: 'native' | 'ocsf';
}

export function fileSink(opts: FileSinkOptions): AuditSink {
  const maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
  const keep = Math.max(1, opts.keep ?? 10);
  let fh: FileHandle | undefined;
  let size = 0;

  async function ensureOpen(): Promise<FileHandle> {
    if (fh) return fh;
    mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
    fh = await open(opts.path, 'a', 0o600);
    size = (await stat(opts.path)).size;
    return fh;
  }

  async function rotate(): Promise<void> {
    await fh?.close();
    fh = undefined;
    await unlink(`${opts.path}.${keep}`).catch(() => undefined);
    for (let i = keep - 1; i >= 1; i--) await rename(`${opts.path}.${i}`, `${opts.path}.${i + 1}`).catch(() => undefined);
    await rename(opts.path, `${opts.path}.1`);
  }

  async function writeChunk(chunk: string, bytes: number): Promise<void> {
    if (!chunk) return;
    const h = await ensureOpen();
    await h.appendFile(chunk);
    // The cursor moves after deliver() returns: the lines must be on disk first.
    await h.datasync();
    size += bytes;
  }

  /** Append lines (each ending in \n), rotating between lines when the file would grow past maxBytes. */
  async function writeLines(lines: readonly string[]): Promise<void> {
    await ensureOpen();
    let chunk = '';
    let chunkBytes = 0;
    for (const line of lines) {
      const bytes = Buffer.byteLength(line);
      if (size + chunkBytes + bytes > maxBytes && size + chunkBytes > 0) {
        await writeChunk(chunk, chunkBytes);
        chunk = '';
        chunkBytes = 0;
        await rotate();
        size = 0;
      }
      chunk += line;
      chunkBytes += bytes;
    }
    await writeChunk(chunk, chunkBytes);
  }

  return {
    name: opts.name ?? `file:${opts.path}`,
    deliver(events: AuditEvent[], texts: string[]) {
      // JSONL lines are the stored texts, so `aam audit verify --file` checks a sink's file too.
      return writeLines(events.map((e, i) => (opts.format === 'ocsf' ? JSON.stringify(toOcsf(e)) : exportLine(texts[i])) + '\n'));
    },
    // Checkpoint lines as in exports (in OCSF files too: a record of its own kind), after the
    // events they cover: the file verifies as an export and serves `verify --checkpoint`.
    deliverCheckpoints(checkpoints: Checkpoint[]) {
      return writeLines(checkpoints.map((c) => checkpointLine(c) + '\n'));
    },
    // Fleet checkpoints likewise: the file then serves `aam audit verify --file` and `--checkpoint` in fleet mode.
    deliverFleetCheckpoints(lines: string[]) {
      return writeLines(lines.map((l) => l + '\n'));
    },
    async close() {
      await fh?.close();
      fh = undefined;
    },
  };
}
