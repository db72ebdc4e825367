// What grew between two V8 heap snapshots (e.g. the ones `MEM_SNAPSHOT=1 npm run bench:memory`
// writes after the first and the last round): objects grouped by type and constructor name, with
// count and self size in each snapshot, largest growth first.
//   node bench/lib/heap-diff.ts before.heapsnapshot after.heapsnapshot [top=30]
import { readFileSync } from 'node:fs';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: (string[] | string)[] } };
  nodes: number[];
  strings: string[];
}

type Groups = Map<string, { count: number; size: number }>;

export function groupHeap(file: string): Groups {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0] as string[];
  const width = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const out: Groups = new Map();
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]];
    // Strings are grouped by type only (their "name" is their content).
    const name = type === 'string' || type === 'concatenated string' || type === 'sliced string' || type === 'number' ? '' : s.strings[s.nodes[i + iName]].slice(0, 80);
    const key = `${type}:${name}`;
    const g = out.get(key) ?? { count: 0, size: 0 };
    g.count++;
    g.size += s.nodes[i + iSize];
    out.set(key, g);
  }
  return out;
}

if (import.meta.main) {
  const [a, b, topArg] = process.argv.slice(2);
  if (!a || !b) { console.error('usage: node bench/lib/heap-diff.ts before.heapsnapshot after.heapsnapshot [top]'); process.exit(2); }
  const before = groupHeap(a);
  const after = groupHeap(b);
  const total = (g: Groups): number => [...g.values()].reduce((x, y) => x + y.size, 0);
  const rows = [...new Set([...before.keys(), ...after.keys()])].map((k) => {
    const x = before.get(k) ?? { count: 0, size: 0 };
    const y = after.get(k) ?? { count: 0, size: 0 };
    return { k, dCount: y.count - x.count, dSize: y.size - x.size, count: y.count, size: y.size };
  }).sort((p, q) => q.dSize - p.dSize).slice(0, Number(topArg ?? 30));
  console.log(`self size: ${(total(before) / 1048576).toFixed(2)} MB -> ${(total(after) / 1048576).toFixed(2)} MB`);
  console.log('   delta KB  delta count      count    size KB  type:name');
  for (const r of rows) console.log(`${(r.dSize / 1024).toFixed(1).padStart(11)} ${String(r.dCount).padStart(12)} ${String(r.count).padStart(10)} ${(r.size / 1024).toFixed(1).padStart(10)}  ${r.k}`);
}
