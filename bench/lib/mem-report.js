// Preloaded into a process under test (`node --import bench/lib/mem-report.js ...`, MEM_REPORT_DIR
// set) so the memory benchmark can read its heap from outside: on SIGUSR2 it writes
// process.memoryUsage() and V8 heap-space sizes to $MEM_REPORT_DIR/<pid>.json, or a heap snapshot
// when $MEM_REPORT_DIR/<pid>.snapshot names a file. Plain JavaScript: a .ts preload would load
// Node's type stripper into the process and distort the numbers it reports.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapCodeStatistics, getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';

const dir = process.env.MEM_REPORT_DIR;
if (dir) {
  process.on('SIGUSR2', () => {
    const ask = join(dir, `${process.pid}.snapshot`);
    if (existsSync(ask)) {
      const file = readFileSync(ask, 'utf8').trim();
      rmSync(ask, { force: true });
      writeHeapSnapshot(file);
    }
    const spaces = {};
    for (const s of getHeapSpaceStatistics()) if (s.space_size > 0) spaces[s.space_name] = { size: s.space_size, used: s.space_used_size };
    const c = getHeapCodeStatistics();
    const out = { ...process.memoryUsage(), spaces, code: c.code_and_metadata_size, bytecode: c.bytecode_and_metadata_size, at: Date.now() };
    const file = join(dir, `${process.pid}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(out));
    renameSync(`${file}.tmp`, file);
  });
}
