// Export of the trail as JSONL that verifyExport() checks on its own with the public key:
// {"kind":"checkpoint",...} and {"kind":"event",...} lines, starting at genesis or right after a
// signed checkpoint (so `since` rounds down to the checkpoint before it).
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { firstSeqAtOrAfter, openAuditDb, readCheckpoints, readEvents, retentionAnchor } from './store.ts';
import { checkpointLine } from './checkpoint.ts';
import type { Checkpoint } from './checkpoint.ts';
import { exportLine } from './event.ts';

export interface ExportOptions {
  /** ISO time or Date: export events from this time on (plus the few since the checkpoint before it). */
  since?: string | Date;
  out: Writable;
  /** Called after each event written (cheap: the caller decides how often to report). */
  onProgress?: (events: number) => void;
}

export interface ExportSummary {
  fromSeq: number;
  events: number;
  checkpoints: number;
}

export async function exportJsonl(dataDir: string, opts: ExportOptions): Promise<ExportSummary> {
  const db = openAuditDb(dataDir);
  try {
    const cps = readCheckpoints(db);
    const floor = retentionAnchor(cps)?.tree_size ?? 0;
    let anchor: Checkpoint | undefined = retentionAnchor(cps);
    if (opts.since !== undefined) {
      const since = new Date(opts.since).toISOString();
      const firstWanted = firstSeqAtOrAfter(db, since) ?? Number.MAX_SAFE_INTEGER;
      // Newest checkpoint strictly before the first wanted event, not older than the retention cut.
      for (const c of cps) if (c.tree_size >= floor && c.tree_size < firstWanted && (!anchor || c.tree_size > anchor.tree_size)) anchor = c;
    }
    const fromSeq = (anchor?.tree_size ?? 0) + 1;
    const byTree = new Map<number, Checkpoint[]>();
    for (const c of cps) {
      if (c.tree_size < fromSeq) continue;
      const list = byTree.get(c.tree_size) ?? [];
      list.push(c);
      byTree.set(c.tree_size, list);
    }
    const write = async (line: string): Promise<void> => {
      if (!opts.out.write(line + '\n')) await once(opts.out, 'drain');
    };
    let events = 0;
    let checkpoints = 0;
    if (anchor) { await write(checkpointLine(anchor)); checkpoints++; }
    for (const e of readEvents(db, { fromSeq })) {
      // The stored text is the evidence (its hash covers these bytes): splice the kind in, never re-serialise.
      await write(exportLine(e.text));
      events++;
      opts.onProgress?.(events);
      for (const c of byTree.get(e.seq) ?? []) { await write(checkpointLine(c)); checkpoints++; }
    }
    return { fromSeq, events, checkpoints };
  } finally {
    db.close();
  }
}
