// Preloaded into a process under test (`node --import bench/lib/mem-report.js ...`, MEM_REPORT_DIR
// set) so the memory benchmark can read its heap from outside: on SIGUSR2 it writes
// process.memoryUsage(), V8 heap-space sizes and the heap of every worker thread (the audit
// writer) to $MEM_REPORT_DIR/<pid>.json, and heap snapshots (main thread, and each worker as
// <file>.worker<i>.heapsnapshot) when $MEM_REPORT_DIR/<pid>.snapshot names a file.
// Plain JavaScript: a .ts preload would load Node's type stripper into the process and distort
// the numbers it reports.
import { createWriteStream, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { getHeapCodeStatistics, getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import wt from 'node:worker_threads';

const dir = process.env.MEM_REPORT_DIR;
if (dir && wt.isMainThread) {
  // Remember the workers the process starts (to read their heaps): a subclass in place of
  // Worker, published to ESM importers of node:worker_threads too.
  const workers = new Set();
  const Base = wt.Worker;
  wt.Worker = class extends Base {
    constructor(...args) {
      super(...args);
      workers.add(this);
      this.once('exit', () => workers.delete(this));
    }
  };
  syncBuiltinESMExports();

  process.on('SIGUSR2', () => {
    void report().catch((e) => process.stderr.write(`mem-report: ${e?.stack ?? e}\n`));
  });

  async function report() {
    const ask = join(dir, `${process.pid}.snapshot`);
    const snapshot = existsSync(ask) ? readFileSync(ask, 'utf8').trim() : null;
    if (snapshot) {
      rmSync(ask, { force: true });
      writeHeapSnapshot(snapshot);
      let i = 0;
      for (const w of workers) await pipeline(await w.getHeapSnapshot(), createWriteStream(`${snapshot}.worker${i++}.heapsnapshot`));
    }
    const spaces = {};
    for (const s of getHeapSpaceStatistics()) if (s.space_size > 0) spaces[s.space_name] = { size: s.space_size, used: s.space_used_size };
    const c = getHeapCodeStatistics();
    const workerHeaps = [];
    for (const w of workers) {
      const h = await w.getHeapStatistics();
      workerHeaps.push({ total: h.total_heap_size, used: h.used_heap_size, external: h.external_memory, malloced: h.malloced_memory });
    }
    const out = { ...process.memoryUsage(), spaces, code: c.code_and_metadata_size, bytecode: c.bytecode_and_metadata_size, workers: workerHeaps, at: Date.now() };
    const file = join(dir, `${process.pid}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(out));
    renameSync(`${file}.tmp`, file);
  }
}
